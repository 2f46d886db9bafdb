//! The pod's app logs: one file per app, `<pod>/logs/<app>.log`, rotated
//! to `<app>.log.1` (the newest old one) … `<app>.log.<max_files - 1>`.
//!
//! Each line is an entry in the CRI log format that Kubernetes' kubelet
//! and podman's k8s-file driver use, so their tools read it too:
//!
//! ```text
//! 2026-12-02T11:29:22.123456789Z stdout F a full line
//! 2026-12-02T11:29:22.123456789Z stderr P the start of a line, more follows
//! ```
//!
//! `F` ends a line of the app's output; `P` is a piece of one whose rest
//! follows in later entries (an app that wrote no newline yet, or a line
//! longer than one read). Timestamps are UTC with nine fractional digits,
//! so entries of one file are ordered as their text.
//! stage1's logger writes the files (never blocking an app: what cannot be
//! written is dropped and said so), `skiff logs` reads them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The most the logger reads of an app's output at once: the longest
/// entry holds this much of it.
pub const READ_SIZE: usize = 64 << 10;

/// The directory of a pod's logs.
pub fn dir(pod: &Path) -> PathBuf {
    pod.join("logs")
}

/// An app's current log file; `rotated` 1.. are the older ones.
pub fn file(pod: &Path, app: &str, rotated: u32) -> PathBuf {
    let name = match rotated {
        0 => format!("{app}.log"),
        n => format!("{app}.log.{n}"),
    };
    dir(pod).join(name)
}

/// An app's log files that exist, oldest first.
pub fn files(pod: &Path, app: &str, limits: Limits) -> Vec<PathBuf> {
    (0..limits.max_files.max(1))
        .rev()
        .map(|n| file(pod, app, n))
        .filter(|p| p.exists())
        .collect()
}

/// How much of an app's output is kept: `max_files` files (the current
/// one included) of at most `max_size` bytes each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    pub max_size: u64,
    pub max_files: u32,
}

impl Limits {
    /// 10 MiB per file.
    pub const DEFAULT_MAX_SIZE: u64 = 10 << 20;
    /// The current file and four rotated ones: at most 50 MiB per app.
    pub const DEFAULT_MAX_FILES: u32 = 5;
    /// A file holds at least one whole entry of the largest read of the
    /// app's output ([`READ_SIZE`]).
    pub const MIN_MAX_SIZE: u64 = 2 * READ_SIZE as u64;
    pub const MAX_MAX_FILES: u32 = 1000;

    /// Checks user-given limits (`--log-max-size`, `--log-max-files`).
    pub fn new(max_size: u64, max_files: u32) -> Result<Self, String> {
        if max_size < Self::MIN_MAX_SIZE {
            return Err(format!(
                "--log-max-size must be at least {} KiB (two reads of the app's output)",
                Self::MIN_MAX_SIZE >> 10
            ));
        }
        if !(1..=Self::MAX_MAX_FILES).contains(&max_files) {
            return Err(format!(
                "--log-max-files must be between 1 and {}",
                Self::MAX_MAX_FILES
            ));
        }
        Ok(Self {
            max_size,
            max_files,
        })
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_size: Self::DEFAULT_MAX_SIZE,
            max_files: Self::DEFAULT_MAX_FILES,
        }
    }
}

/// Which of the app's outputs an entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    /// 0 for stdout, 1 for stderr (fd 1 and 2 less one).
    pub fn index(self) -> usize {
        match self {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// A timestamp as entries carry it: UTC, nine fractional digits.
pub fn timestamp(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond()
    )
}

/// The timestamp of an entry made now.
pub fn now() -> String {
    timestamp(OffsetDateTime::now_utc())
}

/// The lines of one read of the app's output, each without its newline
/// and whether it had one (only the last may not).
pub fn lines(bytes: &[u8]) -> impl Iterator<Item = (&[u8], bool)> {
    let mut rest = bytes;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (line, full, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], true, &rest[i + 1..]),
            None => (rest, false, &rest[rest.len()..]),
        };
        rest = next;
        Some((line, full))
    })
}

/// Appends the entries for one read of the app's output, `bytes`, to
/// `out`: an `F` entry per line, a `P` entry for a rest without newline.
pub fn encode(out: &mut Vec<u8>, stamp: &str, stream: Stream, bytes: &[u8]) {
    for (line, full) in lines(bytes) {
        out.extend_from_slice(stamp.as_bytes());
        out.push(b' ');
        out.extend_from_slice(stream.as_str().as_bytes());
        out.extend_from_slice(if full { b" F " } else { b" P " });
        out.extend_from_slice(line);
        out.push(b'\n');
    }
}

/// Whether `c` may change what a terminal shows beyond itself: control
/// characters (escape sequences, carriage return), bidirectional
/// overrides, line separators and zero-width characters.
pub fn unsafe_on_terminal(c: char) -> bool {
    const HIDDEN: [std::ops::RangeInclusive<char>; 5] = [
        '\u{200b}'..='\u{200f}',
        '\u{2028}'..='\u{202e}',
        '\u{2066}'..='\u{2069}',
        '\u{061c}'..='\u{061c}',
        '\u{feff}'..='\u{feff}',
    ];
    c.is_control() || HIDDEN.iter().any(|r| r.contains(&c))
}

/// An app's output as shown on a terminal: what [`unsafe_on_terminal`]
/// names, and bytes that are not UTF-8, written as visible escapes
/// (`\x1b`, `\u{202e}`); tabs kept.
pub fn visible(bytes: &[u8]) -> Vec<u8> {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c != '\t' && unsafe_on_terminal(c) {
                match u32::from(c) {
                    n if n < 0x100 => out.push_str(&format!("\\x{n:02x}")),
                    n => out.push_str(&format!("\\u{{{n:x}}}")),
                }
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out.into_bytes()
}

/// One entry of a log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub time: OffsetDateTime,
    pub stream: Stream,
    /// The line goes on in the next entry of the stream.
    pub partial: bool,
    pub content: Vec<u8>,
}

impl Entry {
    /// Parses one line of a log file (without its newline); `None` if it
    /// is not an entry (a line cut by a full disk, another tool's file).
    pub fn parse(line: &[u8]) -> Option<Entry> {
        let mut parts = line.splitn(4, |&b| b == b' ');
        let stamp = std::str::from_utf8(parts.next()?).ok()?;
        let time = OffsetDateTime::parse(stamp, &Rfc3339).ok()?;
        let stream = match parts.next()? {
            b"stdout" => Stream::Stdout,
            b"stderr" => Stream::Stderr,
            _ => return None,
        };
        let partial = match parts.next()? {
            b"F" => false,
            b"P" => true,
            _ => return None,
        };
        Some(Entry {
            time,
            stream,
            partial,
            content: parts.next().unwrap_or_default().to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_becomes_full_and_partial_entries_that_parse_back() {
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_796_211_082_000_000_007).unwrap();
        let stamp = timestamp(t);
        assert_eq!(stamp, "2026-12-02T11:31:22.000000007Z");
        let mut out = Vec::new();
        encode(&mut out, &stamp, Stream::Stderr, b"one\n\ntwo three\nrest");
        let text = String::from_utf8(out.clone()).unwrap();
        assert_eq!(
            text,
            "2026-12-02T11:31:22.000000007Z stderr F one\n\
             2026-12-02T11:31:22.000000007Z stderr F \n\
             2026-12-02T11:31:22.000000007Z stderr F two three\n\
             2026-12-02T11:31:22.000000007Z stderr P rest\n"
        );
        let entries: Vec<Entry> = out[..out.len() - 1]
            .split(|&b| b == b'\n')
            .map(|l| Entry::parse(l).unwrap())
            .collect();
        assert_eq!(entries.len(), 4);
        assert_eq!(entries[0].time, t);
        assert_eq!(entries[1].content, b"");
        assert_eq!(entries[2].content, b"two three");
        assert!(entries[3].partial && !entries[2].partial);
        assert_eq!(entries[3].stream, Stream::Stderr);
    }

    #[test]
    fn what_could_fool_a_terminal_is_shown_escaped() {
        assert_eq!(
            visible(b"\rweb | ok\x1b[2J\ttab \xff"),
            b"\\x0dweb | ok\\x1b[2J\ttab \\xff".to_vec()
        );
        assert_eq!(visible("a\u{202e}b".as_bytes()), b"a\\u{202e}b".to_vec());
        assert_eq!(visible("plain é".as_bytes()), "plain é".as_bytes().to_vec());
    }

    #[test]
    fn lines_that_are_not_entries_are_skipped() {
        for bad in [
            &b""[..],
            b"garbage",
            b"2026-12-02T11:31:22Z stdin F x",
            b"2026-12-02T11:31:22Z stdout X x",
            b"yesterday stdout F x",
        ] {
            assert_eq!(Entry::parse(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn limits_below_one_read_or_without_a_file_are_refused() {
        assert!(Limits::new(1024, 5).is_err());
        assert!(Limits::new(1 << 20, 0).is_err());
        assert_eq!(
            Limits::new(1 << 20, 2),
            Ok(Limits {
                max_size: 1 << 20,
                max_files: 2
            })
        );
    }
}
