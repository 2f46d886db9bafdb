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

/// How long ago `secs` (since the epoch) was, as tables show times:
/// "just now", "3 minutes ago", "2 days ago"; a time ahead of the clock is
/// "in the future".
pub fn human_time(secs: i64) -> String {
    ago(skiff_pod::now() - secs)
}

fn ago(elapsed: i64) -> String {
    const UNITS: [(i64, &str); 6] = [
        (365 * 86_400, "year"),
        (30 * 86_400, "month"),
        (7 * 86_400, "week"),
        (86_400, "day"),
        (3_600, "hour"),
        (60, "minute"),
    ];
    if elapsed < 0 {
        return "in the future".to_string();
    }
    if elapsed < 5 {
        return "just now".to_string();
    }
    let (n, unit) = UNITS
        .iter()
        .find(|(len, _)| elapsed >= *len)
        .map_or((elapsed, "second"), |(len, unit)| (elapsed / len, *unit));
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
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

/// JSON with what could drive a terminal (C1 controls, bidirectional
/// overrides: an image chooses its annotations, labels and environment)
/// written as `\uXXXX` escapes. They can only stand inside strings, where
/// the escape means the same; serde_json escaped C0 controls already.
pub fn json_for_terminal(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c != '\n' && skiff_pod::logs::unsafe_on_terminal(c) {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Prints `value` as indented JSON, safe on a terminal.
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!(
        "{}",
        json_for_terminal(&serde_json::to_string_pretty(value)?)
    );
    Ok(())
}

/// An fsck's ending: its problems, one per line on stdout (`kind: subject:
/// what is wrong (repair: …)`), then `checked` and how many problems and
/// what now on stderr; fails while any problem is left.
pub fn finish_fsck<'a, K: serde::Serialize + 'a>(
    problems: impl ExactSizeIterator<Item = (&'a K, &'a str, &'a str, &'a str, bool)>,
    checked: &str,
    repairing: bool,
    repair_command: &str,
) -> anyhow::Result<std::process::ExitCode> {
    let found = problems.len();
    let left = print_problems(problems)?;
    eprintln!(
        "{checked}: {}",
        problems_summary(found, left, repairing, repair_command)
    );
    Ok(if left == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

/// Prints the problems; how many are left unrepaired.
fn print_problems<'a, K: serde::Serialize + 'a>(
    problems: impl IntoIterator<Item = (&'a K, &'a str, &'a str, &'a str, bool)>,
) -> anyhow::Result<usize> {
    let mut left = 0;
    for (kind, subject, detail, repair, repaired) in problems {
        let kind = serde_json::to_value(kind)?;
        println!(
            "{}: {}: {} ({}{})",
            kind.as_str().unwrap_or_default(),
            printable(subject),
            printable(detail),
            if repaired { "repaired: " } else { "repair: " },
            printable(repair)
        );
        left += usize::from(!repaired);
    }
    Ok(left)
}

/// The end of an fsck's summary line: how many problems, and what now.
fn problems_summary(found: usize, left: usize, repairing: bool, repair_command: &str) -> String {
    if found == 0 {
        "0 problem(s)".to_string()
    } else if left == 0 {
        format!("{found} problem(s), all repaired")
    } else if repairing {
        format!("{found} problem(s), {left} not repaired")
    } else {
        format!("{found} problem(s): repair them with `{repair_command}`")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_print_without_terminal_controls_and_stay_json() {
        let json =
            serde_json::to_string_pretty(&serde_json::json!({"a": "x\u{202e}y\u{9b}z\n"})).unwrap();
        let shown = json_for_terminal(&json);
        assert!(
            !shown.contains('\u{202e}') && !shown.contains('\u{9b}'),
            "{shown}"
        );
        let back: serde_json::Value = serde_json::from_str(&shown).unwrap();
        assert_eq!(back["a"], "x\u{202e}y\u{9b}z\n");
    }

    #[test]
    fn times_read_as_how_long_ago() {
        assert_eq!(ago(-3), "in the future");
        assert_eq!(ago(0), "just now");
        assert_eq!(ago(42), "42 seconds ago");
        assert_eq!(ago(60), "1 minute ago");
        assert_eq!(ago(3 * 60 + 59), "3 minutes ago");
        assert_eq!(ago(2 * 3600), "2 hours ago");
        assert_eq!(ago(86_400 + 5), "1 day ago");
        assert_eq!(ago(15 * 86_400), "2 weeks ago");
        assert_eq!(ago(61 * 86_400), "2 months ago");
        assert_eq!(ago(800 * 86_400), "2 years ago");
    }
}
