//! Progress of long operations (downloads, imports, renders, builds,
//! exports): one bar style on stderr. A bar is drawn only when the caller
//! asks for it and stderr is a terminal (never on a pipe or into a file,
//! where indicatif hides it), and is cleared when the work is done or
//! abandoned, so what stays on the screen is the command's own output.

pub use indicatif::ProgressBar;
use indicatif::{ProgressFinish, ProgressStyle};

/// A bar for `what` over `total` bytes (a byte counter without a total),
/// hidden unless `shown`.
pub fn bar(shown: bool, what: &str, total: Option<u64>) -> ProgressBar {
    if !shown {
        return ProgressBar::hidden();
    }
    let (bar, template) = match total {
        Some(t) => (
            ProgressBar::new(t),
            "{msg} [{wide_bar}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ),
        None => (ProgressBar::no_length(), "{msg} {bytes} {bytes_per_sec}"),
    };
    let style = ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.with_style(style)
        .with_message(what.to_string())
        .with_finish(ProgressFinish::AndClear)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bar_not_asked_for_is_hidden() {
        assert!(bar(false, "x", Some(10)).is_hidden());
        // Under the test harness stderr is captured, not a terminal.
        let shown = bar(true, "x", None);
        shown.inc(5);
        assert_eq!(shown.position(), 5);
    }
}
