//! The supervisor's logger: every app's stdout and stderr are pipes of
//! their own, read on a thread of the supervisor, which
//! - appends them, timestamped, to the app's log file in the pod directory
//!   (`skiff_pod::logs`: CRI entries, rotated at a size, a bounded number
//!   of files),
//! - sends each line to the journal when the host runs journald
//!   ([`crate::journal`]),
//! - and, in the foreground, passes the bytes on to the caller's stdout or
//!   stderr as they came.
//!
//! Logging never stalls an app on the log: what cannot be written (a full
//! disk) or sent (a journal that does not keep up) is dropped, counted and
//! said, once on the supervisor's stderr and as an entry of the log when it
//! can be written again. Only the caller of a foreground `skiff run` holds
//! the apps back, as any pipe does: what it reads is all the apps wrote.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use skiff_pod::logs::{self, Limits, Stream};

use crate::Stage1Error;
use crate::forward::{Sink, Written};
use crate::journal::Journal;
use crate::stdio::setup;

/// The ends of an app's output pipes the app gets, as its fds 1 and 2.
pub struct AppOutput {
    out: OwnedFd,
    err: OwnedFd,
}

impl AppOutput {
    /// In the app's process: its stdout and stderr become the pipes.
    pub fn attach(&self) -> Result<(), Stage1Error> {
        rustix::stdio::dup2_stdout(&self.out)
            .and_then(|()| rustix::stdio::dup2_stderr(&self.err))
            .map_err(setup(
                "put the log pipes in place of the app's stdout and stderr",
            ))
    }
}

/// One pipe the logger reads.
struct Source {
    app: usize,
    stream: Stream,
    fd: OwnedFd,
}

/// The logger of a pod, before it runs.
pub struct Logger {
    uuid: String,
    forward: bool,
    sources: Vec<Source>,
    /// The apps' log files, in `apps` order (kept across a pause).
    files: Vec<AppLog>,
    /// When output last came (shared with [`Logging`]).
    last_output: LastOutput,
}

/// Pipes for the output of the apps `apps` (in plan order) of `pod`, and
/// the logger that reads them (`forward`: pass the output on to this
/// process's stdout and stderr too). The pipes are close-on-exec; the
/// ends the apps get are dup'ed onto 1 and 2 by [`AppOutput::attach`].
pub fn pipes(
    pod: &skiff_pod::Pod,
    limits: Limits,
    apps: &[String],
    forward: bool,
) -> Result<(Vec<AppOutput>, Logger), Stage1Error> {
    let dir = logs::dir(&pod.path);
    std::fs::create_dir_all(&dir).map_err(crate::setup_err(format!("create {}", dir.display())))?;
    let mut outputs = Vec::new();
    let mut sources = Vec::new();
    for app in 0..apps.len() {
        let mut ends = Vec::new();
        for stream in [Stream::Stdout, Stream::Stderr] {
            let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                .map_err(setup("create an app's log pipe"))?;
            sources.push(Source {
                app,
                stream,
                fd: read,
            });
            ends.push(write);
        }
        let (Some(err), Some(out)) = (ends.pop(), ends.pop()) else {
            continue;
        };
        outputs.push(AppOutput { out, err });
    }
    Ok((
        outputs,
        Logger::new(&pod.path, &pod.uuid, apps, limits, forward, sources),
    ))
}

impl Logger {
    fn new(
        pod: &std::path::Path,
        uuid: &str,
        apps: &[String],
        limits: Limits,
        forward: bool,
        sources: Vec<Source>,
    ) -> Logger {
        Logger {
            uuid: uuid.to_string(),
            forward,
            files: apps
                .iter()
                .map(|name| AppLog::new(pod, uuid, name, limits))
                .collect(),
            sources,
            last_output: LastOutput::default(),
        }
    }

    /// The logger of a resting supervisor, going on with the pipes it
    /// kept: `(app index, stream, read end)` ([`Logger::reading`]). The
    /// output is not forwarded (only a detached pod's supervisor rests).
    pub(crate) fn resumed(
        pod: &skiff_pod::Pod,
        limits: Limits,
        apps: &[String],
        pipes: Vec<(usize, Stream, OwnedFd)>,
    ) -> Logger {
        let sources = pipes
            .into_iter()
            .filter(|(app, _, _)| *app < apps.len())
            .map(|(app, stream, fd)| Source { app, stream, fd })
            .collect();
        Logger::new(&pod.path, &pod.uuid, apps, limits, false, sources)
    }

    /// The pipes still read: `(app index, stream, read end)`.
    pub(crate) fn reading(&self) -> impl Iterator<Item = (usize, Stream, BorrowedFd<'_>)> {
        self.sources.iter().map(|s| (s.app, s.stream, s.fd.as_fd()))
    }

    /// Whether every log has all the output read so far: nothing dropped
    /// and not yet said, no entry torn by a failed write. Only then may
    /// the supervisor rest, which forgets such notes.
    pub(crate) fn is_clean(&self) -> bool {
        self.files.iter().all(|f| f.dropped == 0 && !f.torn)
    }

    /// Whether no output has come for `quiet`.
    pub(crate) fn was_quiet_for(&self, quiet: Duration) -> bool {
        self.last_output.was_quiet_for(quiet)
    }

    /// Starts logging on a thread of its own. Call it after the last fork
    /// of the supervisor (`sys::process::fork` refuses to fork with
    /// another thread running).
    pub fn start(self) -> Result<Logging, Stage1Error> {
        let (stop_read, stop_write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(setup("create the logger's stop pipe"))?;
        let (pause_read, pause_write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(setup("create the logger's pause pipe"))?;
        let last_output = self.last_output.clone();
        let thread = crate::sys::thread::spawn("logger", move || self.run(&stop_read, &pause_read))
            .map_err(|e| Stage1Error::Setup {
                what: "start the logger".into(),
                source: e,
            })?;
        Ok(Logging {
            thread,
            stop: stop_write,
            pause: pause_write,
            last_output,
        })
    }

    /// The logging loop: until every pipe has ended, or, once told to stop
    /// (the pod's processes are gone), until they stay empty for a moment
    /// or half a second has passed (a process left behind may hold one).
    /// Told to pause, it returns itself with the pipes not yet ended, and
    /// what is in them unread.
    fn run(mut self, stop: &OwnedFd, pause: &OwnedFd) -> Option<Logger> {
        let mut files = std::mem::take(&mut self.files);
        let mut journal = Journal::connect(&self.uuid);
        let mut sources: Vec<Option<Source>> = std::mem::take(&mut self.sources)
            .into_iter()
            .map(Some)
            .collect();
        let mut buf = vec![0u8; logs::READ_SIZE];
        let mut draining: Option<Instant> = None;
        // The caller's stdout and stderr, while they take output.
        let mut sinks = match self.forward {
            true => [Some(Sink::of(1)), Some(Sink::of(2))],
            false => [None, None],
        };
        const MOMENT: Timespec = Timespec {
            tv_sec: 0,
            tv_nsec: 50_000_000,
        };
        while sources.iter().any(Option::is_some) {
            if draining.is_some_and(|deadline| Instant::now() > deadline) {
                break;
            }
            let mut fds = Vec::new();
            let mut slots = Vec::new();
            for (i, source) in sources.iter().enumerate() {
                if let Some(source) = source {
                    fds.push(PollFd::new(&source.fd, PollFlags::IN));
                    slots.push(i);
                }
            }
            if draining.is_none() {
                fds.push(PollFd::new(pause, PollFlags::IN));
                fds.push(PollFd::new(stop, PollFlags::IN));
            }
            let timeout = draining.map(|_| &MOMENT);
            let ready = match rustix::event::poll(&mut fds, timeout) {
                Ok(n) => n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => break,
            };
            if ready == 0 {
                break; // draining, and nothing came for a moment
            }
            let revents: Vec<bool> = fds.iter().map(|f| !f.revents().is_empty()).collect();
            drop(fds);
            if draining.is_none() && revents.last() == Some(&true) {
                draining = Some(Instant::now() + DRAIN);
            } else if draining.is_none() && revents.get(slots.len()) == Some(&true) {
                say_journal_drops(&self.uuid, journal);
                self.files = files;
                self.sources = sources.into_iter().flatten().collect();
                return Some(self);
            }
            for (slot, ready) in slots.into_iter().zip(revents) {
                if !ready {
                    continue;
                }
                let Some(source) = &sources[slot] else {
                    continue;
                };
                let n = match rustix::io::read(&source.fd, &mut buf) {
                    Ok(0) => {
                        sources[slot] = None;
                        continue;
                    }
                    Ok(n) => n,
                    Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => continue,
                    Err(_) => {
                        sources[slot] = None;
                        continue;
                    }
                };
                let bytes = &buf[..n];
                self.last_output.now();
                let (app, stream) = (source.app, source.stream);
                if let Some(log) = files.get_mut(app) {
                    log.write(stream, bytes);
                    if let Some(journal) = &mut journal {
                        for (line, _) in logs::lines(bytes) {
                            journal.send(&log.app, stream, line);
                        }
                    }
                }
                let n = stream.index();
                let written = sinks[n]
                    .as_ref()
                    .map(|sink| sink.write(bytes, stop, &mut draining, DRAIN));
                match written {
                    None | Some(Written::Done) => {}
                    Some(Written::Gone) => {
                        // As if the apps held the caller's pipe: their
                        // next write gets SIGPIPE.
                        sinks[n] = None;
                        for s in sources.iter_mut() {
                            if s.as_ref().is_some_and(|s| s.stream == stream) {
                                *s = None;
                            }
                        }
                    }
                    Some(Written::GaveUp) => {
                        sinks = [None, None];
                        say(&format!(
                            "pod {}: the reader of the pod's output took nothing for {} ms after the pod ended: the rest is only in its logs",
                            self.uuid,
                            DRAIN.as_millis()
                        ));
                    }
                }
            }
        }
        say_journal_drops(&self.uuid, journal);
        None
    }
}

/// Says how many lines the journal did not take, if any.
fn say_journal_drops(uuid: &str, journal: Option<Journal>) {
    if let Some(journal) = journal
        && journal.dropped > 0
    {
        say(&format!(
            "pod {uuid}: {} lines of output did not reach the journal (it did not keep up; the pod's log has them)",
            journal.dropped
        ));
    }
}

/// The supervisor's own message, on its stderr (the caller's terminal or
/// the detached pod's stage1.log).
#[allow(clippy::print_stderr)]
fn say(message: &str) {
    eprintln!("skiff: {message}");
}

/// How long the logger goes on once the pod has ended: for output still
/// in the pipes, and for a slow reader of the caller's.
const DRAIN: Duration = Duration::from_millis(500);

/// The logger running; [`Logging::finish`] ends it.
pub struct Logging {
    thread: crate::sys::thread::Joined<Option<Logger>>,
    stop: OwnedFd,
    pause: OwnedFd,
    last_output: LastOutput,
}

/// When the logger last read output.
#[derive(Debug, Clone, Default)]
struct LastOutput(std::sync::Arc<std::sync::Mutex<Option<Instant>>>);

impl LastOutput {
    fn now(&self) {
        if let Ok(mut last) = self.0.lock() {
            *last = Some(Instant::now());
        }
    }

    fn was_quiet_for(&self, quiet: Duration) -> bool {
        self.0
            .lock()
            .map(|last| last.is_none_or(|t| t.elapsed() >= quiet))
            .unwrap_or(false)
    }
}

impl Logging {
    /// Whether no output has come for `quiet` (asked without pausing).
    pub(crate) fn was_quiet_for(&self, quiet: Duration) -> bool {
        self.last_output.was_quiet_for(quiet)
    }

    /// Once the pod's processes are gone: logs what is still in the pipes
    /// (for at most half a second) and waits for the logger to end.
    pub fn finish(self) {
        drop(self.stop);
        self.thread.join();
        drop(self.pause);
    }

    /// Stops reading (what the pipes hold stays there) and hands the
    /// logger back, to be started again; `None` if it had ended (every
    /// pipe closed).
    pub(crate) fn pause(self) -> Option<Logger> {
        let _ = rustix::io::write(&self.pause, b"p");
        let logger = self.thread.join().flatten();
        drop(self.stop);
        logger
    }
}

/// One app's log file, with its rotation and what could not be written.
struct AppLog {
    pod: PathBuf,
    uuid: String,
    app: String,
    limits: Limits,
    file: Option<File>,
    size: u64,
    /// Bytes of output not written since the last successful write.
    dropped: u64,
    /// The last write stopped inside an entry.
    torn: bool,
    entries: Vec<u8>,
}

impl AppLog {
    fn new(pod: &std::path::Path, uuid: &str, app: &str, limits: Limits) -> AppLog {
        AppLog {
            pod: pod.to_path_buf(),
            uuid: uuid.to_string(),
            app: app.to_string(),
            limits,
            file: None,
            size: 0,
            dropped: 0,
            torn: false,
            entries: Vec::with_capacity(logs::READ_SIZE * 2),
        }
    }

    /// The current file, opened (and its size learned) if it is not.
    fn open(&mut self) -> std::io::Result<&mut File> {
        if self.file.is_none() {
            let file = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(logs::file(&self.pod, &self.app, 0))?;
            self.size = file.metadata()?.len();
            self.file = Some(file);
        }
        match &mut self.file {
            Some(file) => Ok(file),
            None => Err(std::io::ErrorKind::NotFound.into()),
        }
    }

    /// Moves `<app>.log` to `<app>.log.1`, and each older one a number up;
    /// the oldest is overwritten. With one file, it starts again empty.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.file = None;
        let current = logs::file(&self.pod, &self.app, 0);
        if self.limits.max_files <= 1 {
            std::fs::remove_file(&current)?;
        } else {
            for n in (1..self.limits.max_files - 1).rev() {
                let from = logs::file(&self.pod, &self.app, n);
                if from.exists() {
                    std::fs::rename(&from, logs::file(&self.pod, &self.app, n + 1))?;
                }
            }
            std::fs::rename(&current, logs::file(&self.pod, &self.app, 1))?;
        }
        self.size = 0;
        Ok(())
    }

    /// Logs one read of the app's `stream`.
    fn write(&mut self, stream: Stream, bytes: &[u8]) {
        let mut entries = std::mem::take(&mut self.entries);
        entries.clear();
        let stamp = logs::now();
        if self.dropped > 0 {
            let note = format!(
                "skiff: {} bytes of this app's output were dropped: the log could not be written\n",
                self.dropped
            );
            if self.torn {
                entries.push(b'\n');
            }
            logs::encode(&mut entries, &stamp, Stream::Stderr, note.as_bytes());
        }
        logs::encode(&mut entries, &stamp, stream, bytes);
        match self.write_entries(&entries) {
            Ok(()) => {
                self.dropped = 0;
                self.torn = false;
            }
            Err(e) => {
                if self.dropped == 0 {
                    say(&format!(
                        "pod {} app '{}': output is dropped until its log can be written again: {e}",
                        self.uuid, self.app
                    ));
                }
                self.dropped += bytes.len() as u64;
                self.file = None;
            }
        }
        self.entries = entries;
    }

    /// Writes whole entries, rotating before a file would pass its size.
    fn write_entries(&mut self, mut entries: &[u8]) -> std::io::Result<()> {
        while !entries.is_empty() {
            self.open()?;
            let room = self.limits.max_size.saturating_sub(self.size) as usize;
            let take = if entries.len() <= room {
                entries.len()
            } else {
                // The entries that fit; at least one in an empty file.
                match entries[..room].iter().rposition(|&b| b == b'\n') {
                    Some(i) => i + 1,
                    None if self.size == 0 => entries.len(),
                    None => 0,
                }
            };
            if take == 0 {
                self.rotate()?;
                continue;
            }
            let file = self.open()?;
            let result = file.write_all(&entries[..take]);
            if let Err(e) = result {
                self.torn = true;
                return Err(e);
            }
            self.size += take as u64;
            entries = &entries[take..];
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_entries(pod: &std::path::Path, app: &str, limits: Limits) -> Vec<logs::Entry> {
        logs::files(pod, app, limits)
            .iter()
            .flat_map(|f| {
                let text = std::fs::read(f).unwrap();
                text.split(|&b| b == b'\n')
                    .filter(|l| !l.is_empty())
                    .map(|l| logs::Entry::parse(l).unwrap())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn files_rotate_at_their_size_and_keep_the_newest_output() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(logs::dir(dir.path())).unwrap();
        let limits = Limits::new(Limits::MIN_MAX_SIZE, 3).unwrap();
        let mut log = AppLog::new(dir.path(), "u", "web", limits);
        let line = [b'x'; 999];
        for i in 0..2000u32 {
            let mut out = format!("{i:05} ").into_bytes();
            out.extend_from_slice(&line);
            out.push(b'\n');
            log.write(Stream::Stdout, &out);
        }
        let files = logs::files(dir.path(), "web", limits);
        assert_eq!(files.len(), 3);
        for f in &files {
            let len = std::fs::metadata(f).unwrap().len();
            assert!(len <= limits.max_size, "{} is {len} bytes", f.display());
        }
        assert!(!logs::file(dir.path(), "web", 3).exists());
        let entries = read_entries(dir.path(), "web", limits);
        // Whole entries, in order, ending with the last line written.
        let numbers: Vec<u32> = entries
            .iter()
            .map(|e| {
                std::str::from_utf8(&e.content[..5])
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        assert_eq!(numbers.last(), Some(&1999));
        assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1));
        assert!(numbers.len() > 200);
    }

    #[test]
    fn a_log_that_cannot_be_written_drops_output_and_says_so_later() {
        let dir = tempfile::tempdir().unwrap();
        // No logs directory: the file cannot be opened.
        let limits = Limits::default();
        let mut log = AppLog::new(dir.path(), "u", "web", limits);
        log.write(Stream::Stdout, b"lost\n");
        assert_eq!(log.dropped, 5);
        std::fs::create_dir_all(logs::dir(dir.path())).unwrap();
        log.write(Stream::Stdout, b"kept\n");
        let entries = read_entries(dir.path(), "web", limits);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].stream, Stream::Stderr);
        assert!(String::from_utf8_lossy(&entries[0].content).contains("5 bytes"));
        assert_eq!(entries[1].content, b"kept");
    }
}
