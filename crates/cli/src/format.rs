//! Human-readable sizes and times for tables.

pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Seconds since the epoch as `YYYY-MM-DD HH:MM:SS` (UTC): the RFC 3339
/// form with a space for the `T` and without the `Z`.
pub fn human_time(secs: i64) -> String {
    let stamp = skiff_audit::sbom::rfc3339(secs);
    stamp.trim_end_matches('Z').replacen('T', " ", 1)
}

/// Text a pod chose (a command line, a file name), safe to print: controls,
/// escape sequences and bidirectional overrides become `?`.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if skiff_pod::logs::unsafe_on_terminal(c) {
                '?'
            } else {
                c
            }
        })
        .collect()
}
