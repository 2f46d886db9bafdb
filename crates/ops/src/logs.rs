//! `skiff logs`: a pod's app output, read back from the log files stage1's
//! logger writes (`skiff_pod::logs`), also after the pod exited and until
//! it is collected. Entries of several apps are merged in time order;
//! `--follow` reads on as the apps write, across rotations, and ends once
//! the pod has ended and its logs are read to their end.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use skiff_pod::logs::{self, Entry, Limits};
use skiff_pod::{Flavor, Pod};
use time::OffsetDateTime;

use crate::error::io;
use crate::{Context, OpsError, refuse};

/// Which entries to show.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    /// One app only (default: every app of the pod).
    pub app: Option<String>,
    /// Go on reading until the pod has ended.
    pub follow: bool,
    /// Only entries at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Only the last this many entries of what is already logged.
    pub tail: Option<usize>,
}

/// An entry and the app that wrote it.
#[derive(Debug, Clone)]
pub struct Line {
    pub app: String,
    pub entry: Entry,
}

/// The start of `--since`: an RFC 3339 time (`2026-12-02T10:00:00Z`,
/// `2026-12-02T11:00:00+01:00`) or a duration back from `now` (`90s`,
/// `10m`, `1h30m`, `2d`).
pub fn parse_since(text: &str, now: OffsetDateTime) -> Result<OffsetDateTime, String> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(t);
    }
    let bad = || {
        format!(
            "--since={text}: use a duration (90s, 10m, 1h30m, 2d) or an RFC 3339 time (2026-12-02T10:00:00Z)"
        )
    };
    let mut total = time::Duration::ZERO;
    let mut rest = text;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let n: i64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => time::Duration::milliseconds(1),
            "s" => time::Duration::SECOND,
            "m" => time::Duration::MINUTE,
            "h" => time::Duration::HOUR,
            "d" => time::Duration::DAY,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total = unit
            .checked_mul(i32::try_from(n).map_err(|_| bad())?)
            .and_then(|d| total.checked_add(d))
            .ok_or_else(bad)?;
    }
    now.checked_sub(total).ok_or_else(bad)
}

/// An app's current log file being read: where, and what of it is read.
struct Reader {
    app: String,
    file: Option<File>,
    inode: u64,
    offset: u64,
    /// The start of an entry not yet ended by its newline.
    pending: Vec<u8>,
}

impl Reader {
    /// Reads what was added to the file since the last read: its complete
    /// entries, in order.
    fn read_new(&mut self, out: &mut Vec<Line>) {
        let Some(file) = &mut self.file else { return };
        let mut bytes = Vec::new();
        if file.seek(SeekFrom::Start(self.offset)).is_err() || file.read_to_end(&mut bytes).is_err()
        {
            return;
        }
        self.offset += bytes.len() as u64;
        self.pending.extend_from_slice(&bytes);
        let Some(end) = self.pending.iter().rposition(|&b| b == b'\n') else {
            return;
        };
        let complete: Vec<u8> = self.pending.drain(..=end).collect();
        parse_into(&self.app, &complete, out);
    }

    /// Follows `path`, the app's current file: finishes the one being read
    /// if it was rotated away, then goes on with the new one.
    fn follow(&mut self, path: &Path, out: &mut Vec<Line>) {
        self.read_new(out);
        let Ok(meta) = std::fs::metadata(path) else {
            return;
        };
        if (self.file.is_none() || meta.ino() != self.inode)
            && let Ok(file) = File::open(path)
        {
            self.file = Some(file);
            self.inode = meta.ino();
            self.offset = 0;
            self.pending.clear();
            self.read_new(out);
        }
    }
}

/// The entries of the log text `bytes` (lines that are not entries, such
/// as one cut by a full disk, are skipped).
fn parse_into(app: &str, bytes: &[u8], out: &mut Vec<Line>) {
    out.extend(
        bytes
            .split(|&b| b == b'\n')
            .filter_map(Entry::parse)
            .map(|entry| Line {
                app: app.to_string(),
                entry,
            }),
    );
}

/// Orders lines of several apps by time (each app's own order is kept).
fn merge(lines: &mut [Line]) {
    lines.sort_by_key(|l| l.entry.time);
}

/// The last `n` entries of `lines`, not starting inside a line: the
/// earlier pieces of a line whose rest is shown are shown too.
fn tail(lines: Vec<Line>, n: usize) -> Vec<Line> {
    let mut start = lines.len().saturating_sub(n);
    // One pass back: the streams whose entry before the shown ones is yet
    // to be looked at, and those passed over since the start last moved.
    let key = |l: &Line| (l.app.clone(), l.entry.stream);
    let mut open: std::collections::HashSet<_> = lines[start..].iter().map(key).collect();
    let mut passed = Vec::new();
    for i in (0..start).rev() {
        if open.is_empty() {
            break;
        }
        let k = key(&lines[i]);
        if !open.contains(&k) {
            passed.push(k);
        } else if lines[i].entry.partial {
            // A piece of a line shown: shown too, with what lies between.
            start = i;
            open.extend(passed.drain(..));
        } else {
            open.remove(&k);
        }
    }
    lines.into_iter().skip(start).collect()
}

/// The apps whose logs are shown: `only`, or every app of the pod.
fn apps_of(pod: &Pod, only: Option<&str>) -> Result<(Vec<String>, Limits), OpsError> {
    let runtime = pod.runtime()?;
    let names: Vec<String> = runtime.apps.iter().map(|a| a.name.clone()).collect();
    if runtime.flavor == Flavor::Kvm {
        return Err(refuse!(
            "pod {} runs the kvm flavor: its apps' output is on the console of `skiff run`, not kept in logs (not implemented for kvm yet)",
            pod.uuid
        ));
    }
    if runtime.interactive {
        return Err(refuse!(
            "pod {} runs with --interactive: its app's terminal is relayed to yours, not kept in logs",
            pod.uuid
        ));
    }
    match only {
        Some(app) if !names.iter().any(|n| n == app) => Err(refuse!(
            "pod {} has no app '{app}' (its apps: {})",
            pod.uuid,
            names.join(", ")
        )),
        Some(app) => Ok((vec![app.to_string()], runtime.logs)),
        None => Ok((names, runtime.logs)),
    }
}

/// How many apps pod `uuid` has.
pub fn app_count(ctx: &Context, uuid: &str) -> Result<usize, OpsError> {
    Ok(ctx.pods().find(uuid)?.runtime()?.apps.len())
}

/// Reads pod `uuid`'s logs and hands each entry shown to `show`, in time
/// order; with `--follow`, until the pod has ended. `show` returning false
/// (its reader went away) ends it early.
pub fn read(
    ctx: &Context,
    uuid: &str,
    opts: &LogOptions,
    mut show: impl FnMut(&Line) -> bool,
) -> Result<(), OpsError> {
    let pods = ctx.pods();
    let mut pod = pods.find(uuid)?;
    let (apps, limits) = apps_of(&pod, opts.app.as_deref())?;
    let wanted = |l: &Line| opts.since.is_none_or(|since| l.entry.time >= since);

    // What is logged so far: the rotated files whole, the current one
    // through a reader that follows it.
    let mut lines = Vec::new();
    let mut readers = Vec::new();
    for app in &apps {
        let files = logs::files(&pod.path, app, limits);
        let current = logs::file(&pod.path, app, 0);
        for path in files.iter().filter(|p| **p != current) {
            let bytes = match std::fs::read(path) {
                Ok(bytes) => bytes,
                // Rotated away meanwhile.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io(format!("read {}", path.display()))(e).into()),
            };
            parse_into(app, &bytes, &mut lines);
        }
        let mut reader = Reader {
            app: app.clone(),
            file: None,
            inode: 0,
            offset: 0,
            pending: Vec::new(),
        };
        reader.follow(&current, &mut lines);
        readers.push(reader);
    }
    lines.retain(wanted);
    merge(&mut lines);
    if let Some(n) = opts.tail {
        lines = tail(lines, n);
    }
    for line in &lines {
        if !show(line) {
            return Ok(());
        }
    }
    if !opts.follow {
        return Ok(());
    }
    loop {
        // Read once more after the pod ended: what it wrote last.
        let ended = !pod.is_running();
        std::thread::sleep(Duration::from_millis(if ended { 0 } else { 100 }));
        let mut lines = Vec::new();
        for reader in &mut readers {
            reader.follow(&logs::file(&pod.path, &reader.app, 0), &mut lines);
        }
        lines.retain(wanted);
        merge(&mut lines);
        for line in &lines {
            if !show(line) {
                return Ok(());
            }
        }
        if ended {
            return Ok(());
        }
        // The pod's directory moves when it exits.
        pod = match pods.find(&pod.uuid) {
            Ok(pod) => pod,
            Err(_) => return Ok(()), // collected meanwhile
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_durations_and_times() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let back = |s: &str| (now - parse_since(s, now).unwrap()).whole_seconds();
        assert_eq!(back("90s"), 90);
        assert_eq!(back("10m"), 600);
        assert_eq!(back("1h30m"), 5400);
        assert_eq!(back("2d"), 172_800);
        assert_eq!(
            parse_since("2026-12-02T10:00:00+01:00", now)
                .unwrap()
                .unix_timestamp(),
            1_796_202_000
        );
        for bad in [
            "",
            "10",
            "m",
            "10x",
            "1h-5m",
            "yesterday",
            "99999999999999d",
        ] {
            assert!(parse_since(bad, now).is_err(), "{bad}");
        }
    }

    fn line(app: &str, secs: i64, partial: bool, text: &str) -> Line {
        Line {
            app: app.into(),
            entry: Entry {
                time: OffsetDateTime::from_unix_timestamp(secs).unwrap(),
                stream: logs::Stream::Stdout,
                partial,
                content: text.as_bytes().to_vec(),
            },
        }
    }

    #[test]
    fn tail_keeps_the_pieces_of_its_first_line_and_merge_orders_apps() {
        let mut lines = vec![
            line("a", 1, false, "a1"),
            line("a", 3, true, "a3-"),
            line("a", 5, false, "end"),
            line("b", 2, false, "b2"),
            line("b", 4, false, "b4"),
        ];
        merge(&mut lines);
        let order: Vec<&str> = lines
            .iter()
            .map(|l| std::str::from_utf8(&l.entry.content).unwrap())
            .collect();
        assert_eq!(order, ["a1", "b2", "a3-", "b4", "end"]);
        let last = tail(lines, 1);
        let shown: Vec<&[u8]> = last.iter().map(|l| &l.entry.content[..]).collect();
        assert_eq!(shown, [&b"a3-"[..], b"b4", b"end"]);
    }
}
