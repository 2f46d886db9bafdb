//! What the pod's init tells its supervisor: one JSON [`Report`] per line,
//! over a pipe (`ns`) or the share's status file (`kvm`, written by the
//! guest).
//!
//! The supervisor runs on the host with its privileges, and what writes
//! the lines is inside the pod: a VM's guest kernel, or code a pod process
//! allowed to trace init (`--cap-retain=CAP_SYS_PTRACE`) runs there. So
//! every line is hostile: lines are bounded ([`MAX_LINE`]), and a report
//! counts only for an app the pod has.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use skiff_pod::Pod;

/// A message from the pod's init to the supervisor (one JSON line).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum Report {
    /// Setup failed; the pod did not start.
    Error(String),
    /// An app could not be started.
    AppError { app: String, error: String },
    /// An app ended with this status (128+signal when killed).
    Exit { app: String, status: i32 },
    /// An app's process was started: its pid in the pod's pid namespace
    /// (what `enter` finds it by where the pod has no cgroups).
    Started { app: String, pid: i32 },
    /// A run of an app ended with this status and the app is started again
    /// (`--restart`; sent by its keeper).
    Restart { app: String, status: i32 },
}

/// Restart reports of one app closer together than this are ignored (a
/// keeper waits at least [`skiff_pod::restart::FIRST_BACKOFF`] between
/// runs): a hostile keeper cannot make the supervisor write the record
/// more than 20 times a second.
const MIN_RESTART_GAP: std::time::Duration = std::time::Duration::from_millis(50);

/// The longest report line kept; longer ones are dropped whole.
pub(crate) const MAX_LINE: usize = 64 * 1024;

/// Writes one report (best effort: the supervisor may be gone).
pub(crate) fn send(fd: &OwnedFd, report: &Report) {
    if let Ok(mut line) = serde_json::to_vec(report) {
        line.push(b'\n');
        let _ = rustix::io::write(fd, &line);
    }
}

/// Splits bytes as they arrive into lines of at most [`MAX_LINE`] bytes:
/// a longer line is dropped up to its newline, so memory stays bounded
/// whatever the writer sends.
#[derive(Debug, Default)]
pub(crate) struct LineBuffer {
    pending: Vec<u8>,
    dropping: bool,
}

impl LineBuffer {
    /// Adds `bytes`, calling `on_line` for every line completed.
    pub(crate) fn push(&mut self, mut bytes: &[u8], on_line: &mut dyn FnMut(&str)) {
        while let Some(end) = bytes.iter().position(|b| *b == b'\n') {
            if !self.dropping && self.pending.len() + end <= MAX_LINE {
                self.pending.extend_from_slice(&bytes[..end]);
                on_line(String::from_utf8_lossy(&self.pending).trim_end());
            }
            self.pending.clear();
            self.dropping = false;
            bytes = &bytes[end + 1..];
        }
        if !self.dropping {
            if self.pending.len() + bytes.len() > MAX_LINE {
                self.pending.clear();
                self.dropping = true;
            } else {
                self.pending.extend_from_slice(bytes);
            }
        }
    }
}

impl LineBuffer {
    /// Whether no part of a line is pending.
    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty() && !self.dropping
    }
}

/// Reads `reader` to its end (or an error), at most `limit` bytes,
/// calling `on_line` for every line.
pub(crate) fn read_lines(reader: impl Read, limit: u64, on_line: &mut dyn FnMut(&str)) {
    let mut reader = reader.take(limit);
    let mut lines = LineBuffer::default();
    let mut buf = [0u8; 8192];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => lines.push(&buf[..n], on_line),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// What the supervisor makes of init's report lines: each app's exit
/// status (in `apps/<app>/exit`), start errors (on stderr), a setup error.
/// Reports naming an app the pod does not have, a second report of the
/// same kind for an app, and lines that are no report are ignored: a
/// hostile writer can make the host do no more than once per app.
pub(crate) struct Recorder<'a> {
    pod: &'a Pod,
    apps: Vec<&'a str>,
    exited: Vec<bool>,
    failed: Vec<bool>,
    started: Vec<bool>,
    /// Whether the pod restarts apps, and when each app's last restart was
    /// recorded.
    restarts: bool,
    last_restart: Vec<Option<Instant>>,
    /// The first app's exit status, once reported.
    pub(crate) first_status: Option<i32>,
    /// The setup error, if init reported one (the first only).
    pub(crate) setup_error: Option<String>,
}

/// What a [`Recorder`] has seen, kept while the supervisor rests
/// ([`crate::rest`]). Restart times are not kept: the supervisor rests only
/// after a quiet spell far longer than [`MIN_RESTART_GAP`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Seen {
    exited: Vec<bool>,
    failed: Vec<bool>,
    started: Vec<bool>,
    first_status: Option<i32>,
    setup_error: Option<String>,
}

impl<'a> Recorder<'a> {
    /// What this recorder has seen.
    pub(crate) fn seen(&self) -> Seen {
        Seen {
            exited: self.exited.clone(),
            failed: self.failed.clone(),
            started: self.started.clone(),
            first_status: self.first_status,
            setup_error: self.setup_error.clone(),
        }
    }

    /// Goes on from `seen` (refused if it is not for as many apps).
    pub(crate) fn resume(mut self, seen: Seen) -> Option<Self> {
        let n = self.apps.len();
        if [&seen.exited, &seen.failed, &seen.started]
            .iter()
            .any(|v| v.len() != n)
        {
            return None;
        }
        self.exited = seen.exited;
        self.failed = seen.failed;
        self.started = seen.started;
        self.first_status = seen.first_status;
        self.setup_error = seen.setup_error;
        Some(self)
    }

    /// For `pod`, whose apps are `apps` (the first is the one whose status
    /// `skiff run` returns).
    pub(crate) fn new(pod: &'a Pod, apps: Vec<&'a str>) -> Self {
        let n = apps.len();
        Self {
            pod,
            apps,
            exited: vec![false; n],
            failed: vec![false; n],
            started: vec![false; n],
            restarts: false,
            last_restart: vec![None; n],
            first_status: None,
            setup_error: None,
        }
    }

    /// For a pod with a restart policy: restart reports are recorded.
    pub(crate) fn restarting(mut self, restarts: bool) -> Self {
        self.restarts = restarts;
        self
    }

    /// Whether every app was reported started.
    pub(crate) fn all_started(&self) -> bool {
        self.started.iter().all(|s| *s)
    }

    /// Records one line.
    #[allow(clippy::print_stderr)]
    pub(crate) fn line(&mut self, line: &str) {
        let index = |app: &str| self.apps.iter().position(|a| *a == app);
        match serde_json::from_str::<Report>(line) {
            Ok(Report::Exit { app, status }) => {
                let Some(i) = index(&app).filter(|i| !self.exited[*i]) else {
                    return;
                };
                self.exited[i] = true;
                self.pod.set_app_exit(&app, status);
                if i == 0 {
                    self.first_status = Some(status);
                }
            }
            Ok(Report::AppError { app, error }) => {
                let Some(i) = index(&app).filter(|i| !self.failed[*i]) else {
                    return;
                };
                self.failed[i] = true;
                eprintln!(
                    "skiff: app '{app}' of pod {}: {}",
                    self.pod.uuid,
                    printable(&error)
                );
            }
            // Once per app: init reports each start once.
            Ok(Report::Started { app, pid }) => {
                let Some(i) = index(&app).filter(|i| !self.started[*i]) else {
                    return;
                };
                self.started[i] = true;
                self.pod.set_app_pid(&app, pid);
            }
            // Restarts come once per back-off (at least FIRST_BACKOFF
            // apart): one sooner is not the keeper's, and is ignored.
            Ok(Report::Restart { app, status }) if self.restarts => {
                let Some(i) = index(&app).filter(|i| !self.exited[*i]) else {
                    return;
                };
                let now = Instant::now();
                if self.last_restart[i]
                    .is_some_and(|last| now.duration_since(last) < MIN_RESTART_GAP)
                {
                    return;
                }
                self.last_restart[i] = Some(now);
                self.pod.add_app_run(&app, status);
            }
            Ok(Report::Error(e)) if self.setup_error.is_none() => {
                self.setup_error = Some(printable(&e));
            }
            _ => {}
        }
    }
}

/// `text` without control characters, bidirectional overrides, line
/// separators or zero-width characters (it is printed on the caller's
/// terminal).
pub(crate) fn printable(text: &str) -> String {
    text.chars()
        .filter(|c| !skiff_pod::logs::unsafe_on_terminal(*c))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(chunks: &[&[u8]]) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = LineBuffer::default();
        for chunk in chunks {
            buf.push(chunk, &mut |l| out.push(l.to_string()));
        }
        out
    }

    #[test]
    fn lines_are_split_across_chunks() {
        assert_eq!(
            lines_of(&[b"one\ntw", b"o\n", b"three"]),
            vec!["one".to_string(), "two".to_string()]
        );
    }

    #[test]
    fn an_endless_line_is_dropped_and_memory_stays_bounded() {
        let big = vec![b'x'; MAX_LINE / 2 + 1];
        let mut buf = LineBuffer::default();
        let mut out = Vec::new();
        for _ in 0..100 {
            buf.push(&big, &mut |l| out.push(l.to_string()));
            assert!(buf.pending.len() <= MAX_LINE);
        }
        buf.push(b"tail\nnext\n", &mut |l| out.push(l.to_string()));
        assert_eq!(out, vec!["next".to_string()]);
        // A line of exactly MAX_LINE bytes is kept.
        let exact = [vec![b'y'; MAX_LINE], b"\n".to_vec()].concat();
        assert_eq!(lines_of(&[&exact[..10], &exact[10..]]).len(), 1);
    }

    #[test]
    fn report_lines_record_exits_and_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let (pod, _) = skiff_pod::Pods::new(tmp.path()).create().unwrap();
        let mut recorder = Recorder::new(&pod, vec!["web", "db"]);
        let exit = |app: &str, status| {
            serde_json::to_string(&Report::Exit {
                app: app.into(),
                status,
            })
            .unwrap()
        };
        recorder.line(&exit("web", 3));
        recorder.line(&exit("db", 0));
        // A second report for an app, and one for an app the pod does not
        // have, count for nothing.
        recorder.line(&exit("web", 9));
        recorder.line(&exit("../../x", 1));
        assert_eq!(recorder.first_status, Some(3));
        assert_eq!(
            (pod.app_exit("web"), pod.app_exit("db")),
            (Some(3), Some(0))
        );
        let error = serde_json::to_string(&Report::Error("failed to mount x".into())).unwrap();
        recorder.line(&error);
        recorder.line(&serde_json::to_string(&Report::Error("later".into())).unwrap());
        assert_eq!(recorder.setup_error.as_deref(), Some("failed to mount x"));
    }

    #[test]
    fn restarts_count_only_where_the_pod_restarts_and_not_too_often() {
        let tmp = tempfile::tempdir().unwrap();
        let (pod, _) = skiff_pod::Pods::new(tmp.path()).create().unwrap();
        let restart = |app: &str, status| {
            serde_json::to_string(&Report::Restart {
                app: app.into(),
                status,
            })
            .unwrap()
        };
        let mut recorder = Recorder::new(&pod, vec!["web"]);
        recorder.line(&restart("web", 1));
        assert_eq!(pod.app_runs("web").count, 0, "no --restart: ignored");
        let mut recorder = recorder.restarting(true);
        for _ in 0..100 {
            recorder.line(&restart("web", 1));
        }
        recorder.line(&restart("../x", 1));
        assert_eq!(pod.app_runs("web").count, 1, "a flood counts once");
        recorder.last_restart[0] = Some(Instant::now() - MIN_RESTART_GAP);
        recorder.line(&restart("web", 2));
        let runs = pod.app_runs("web");
        assert_eq!(runs.count, 2);
        assert_eq!(runs.last[1].status, 2);
    }

    #[test]
    fn printable_drops_controls_and_bidi_overrides() {
        assert_eq!(printable("a\u{1b}[2Jb\u{202e}c\td"), "a[2Jbcd");
    }

    #[test]
    fn read_lines_stops_at_the_limit() {
        let mut out = Vec::new();
        read_lines(&b"a\nb\nc\n"[..], 4, &mut |l| out.push(l.to_string()));
        assert_eq!(out, vec!["a".to_string(), "b".to_string()]);
    }
}
