//! The supervisor at rest (docs/stage1.md): once a detached pod has been
//! quiet for [`QUIET`] (no report from init, no output from the apps), its
//! supervisor executes `skiff-wait`, a program of a few pages without libc
//! (crates/stage1/waiter), which keeps the supervisor's file descriptors
//! and waits for one of them to say something: a report of init, an app's
//! output, a termination signal (a signalfd; the signals stay blocked and
//! pending) or init's end (a pidfd). Then it executes stage1 again
//! (`skiff-stage1 resume --state-fd=N`, from an fd of this very binary),
//! which takes up the pod from the [`State`] written here and handles
//! the event. Nothing is read in between, so nothing is lost.
//!
//! An idle pod then costs the host one process of ~20 KiB instead of
//! stage1 with glibc and a logger thread (issue: performance, density).

use std::io::{Read, Seek, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use skiff_pod::Pod;
use skiff_pod::logs::Stream;

use crate::Stage1Error;
use crate::report::Seen;

/// skiff-wait's limits, from its own source (`MAX_EXEC_TRIES` is the
/// waiter's alone).
#[allow(dead_code)]
mod waiter {
    include!("../waiter/limits.rs");
}
use waiter::MAX_FDS as WAITER_MAX_FDS;

/// How long a pod must be quiet before its supervisor rests.
pub const QUIET: Duration = Duration::from_secs(2);

/// The longest quiet spell asked for (after rests that each ended soon).
pub const MAX_QUIET: Duration = Duration::from_secs(64);

/// The waiter, built by build.rs; empty where it cannot be built.
#[cfg(skiff_waiter)]
const WAITER: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/skiff-wait"));
#[cfg(not(skiff_waiter))]
const WAITER: &[u8] = &[];

/// Whether this build can rest (the waiter exists for its target).
pub fn available() -> bool {
    !WAITER.is_empty()
}

/// What the resumed supervisor needs of the pod it supervised (it reads
/// nothing of the pod directory to go on: the state is all it needs), but
/// the cgroups it finds on the host by name.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct State {
    pod_dir: PathBuf,
    /// The pod's init, the supervisor's child.
    pub(crate) init: i32,
    /// The apps, in plan order.
    pub(crate) apps: Vec<String>,
    /// The pod has one memory cgroup (crate::cgroups, v1).
    pub(crate) flat_cgroups: bool,
    /// The metadata service's port, when the pod is registered with it.
    pub(crate) metadata_port: Option<u16>,
    pub(crate) seen: Seen,
    /// Every app was reported started (and systemd told).
    pub(crate) ready: bool,
    /// The supervisor's own setup error, if it had one.
    pub(crate) setup_error: Option<String>,
    pub(crate) pod: PodTerms,
    /// The quiet spell the supervisor waited for before this rest, ms.
    pub(crate) quiet_ms: u64,
    /// When it went to rest (`CLOCK_MONOTONIC`, ms).
    pub(crate) rested_at_ms: u64,
    fds: Fds,
}

impl State {
    /// The quiet spell to wait for before the next rest: twice this one's
    /// (up to [`MAX_QUIET`]) if the rest ended within it, else [`QUIET`].
    /// A pod that writes every few seconds cannot make its supervisor
    /// execute stage1 every two.
    pub(crate) fn next_quiet(&self) -> Duration {
        let rested = crate::sys::process::monotonic_ms().saturating_sub(self.rested_at_ms);
        match rested < self.quiet_ms {
            true => (Duration::from_millis(self.quiet_ms) * 2).min(MAX_QUIET),
            false => QUIET,
        }
    }
}

/// What of the pod's runtime record its supervisor goes by.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct PodTerms {
    /// The apps' log rotation.
    pub(crate) logs: skiff_pod::logs::Limits,
    /// An ordinary user's pod (no cgroups).
    pub(crate) rootless: bool,
    /// The pod restarts apps (`--restart`).
    pub(crate) restarting: bool,
    /// `--rm`.
    pub(crate) remove: bool,
}

/// The descriptors kept across the rest, by number.
#[derive(Debug, Serialize, Deserialize)]
struct Fds {
    lock: Option<i32>,
    status: i32,
    netns: Option<i32>,
    /// `(app index, 0 for stdout or 1 for stderr, read end)`.
    logs: Vec<(usize, usize, i32)>,
}

/// What a supervisor rests with.
pub(crate) struct Resting<'a> {
    pub pod: &'a Pod,
    pub init: i32,
    pub apps: &'a [String],
    pub flat_cgroups: bool,
    pub metadata_port: Option<u16>,
    pub seen: Seen,
    pub ready: bool,
    pub setup_error: Option<String>,
    pub terms: PodTerms,
    /// The quiet spell waited for.
    pub quiet: Duration,
    pub lock: Option<BorrowedFd<'a>>,
    pub status: BorrowedFd<'a>,
    pub netns: Option<BorrowedFd<'a>>,
    /// The logger's pipes, paused ([`crate::logger::Logger::reading`]).
    pub logs: Vec<(usize, Stream, BorrowedFd<'a>)>,
}

fn failed(what: &str) -> impl FnOnce(std::io::Error) -> Stage1Error + '_ {
    move |source| Stage1Error::Setup {
        what: format!("rest: {what}"),
        source,
    }
}

fn raw(fd: BorrowedFd<'_>) -> i32 {
    std::os::fd::AsRawFd::as_raw_fd(&fd)
}

/// Sets or clears close-on-exec on `fd`.
fn close_on_exec(fd: BorrowedFd<'_>, on: bool) -> std::io::Result<()> {
    let flags = match on {
        true => rustix::io::FdFlags::CLOEXEC,
        false => rustix::io::FdFlags::empty(),
    };
    rustix::io::fcntl_setfd(fd, flags).map_err(Into::into)
}

/// A sealed, close-on-exec memfd holding `bytes`.
fn sealed_memfd(name: &str, bytes: &[u8], exec: bool) -> std::io::Result<std::fs::File> {
    use rustix::fs::{MemfdFlags, SealFlags};
    let flags = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
    let fd = match exec {
        // MFD_EXEC says so where the host asks (vm.memfd_noexec); kernels
        // before 6.3 do not know it.
        true => rustix::fs::memfd_create(name, flags | MemfdFlags::EXEC)
            .or_else(|_| rustix::fs::memfd_create(name, flags))?,
        false => rustix::fs::memfd_create(name, flags | MemfdFlags::NOEXEC_SEAL)
            .or_else(|_| rustix::fs::memfd_create(name, flags))?,
    };
    let mut file = std::fs::File::from(fd);
    file.write_all(bytes)?;
    file.rewind()?;
    rustix::fs::fcntl_add_seals(
        &file,
        SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL,
    )?;
    Ok(file)
}

/// Executes the waiter for the pod in `r`; returns only if that failed
/// (the supervisor then goes on awake, every descriptor as it was).
pub(crate) fn rest(r: Resting<'_>) -> Stage1Error {
    // Signals that come from here on stay pending for the resumed stage1.
    crate::supervise::block_termination();
    let error = try_rest(&r);
    for fd in kept(&r) {
        let _ = close_on_exec(fd, true);
    }
    crate::supervise::unblock_termination();
    error
}

/// The descriptors of `r` the waiter keeps for the resumed stage1.
fn kept<'a>(r: &Resting<'a>) -> Vec<BorrowedFd<'a>> {
    r.lock
        .into_iter()
        .chain([r.status])
        .chain(r.netns)
        .chain(r.logs.iter().map(|(_, _, fd)| *fd))
        .collect()
}

fn try_rest(r: &Resting<'_>) -> Stage1Error {
    if !available() {
        return Stage1Error::Config("this build of skiff-stage1 has no waiter to rest with".into());
    }
    // The exec ends every other thread, and init's parent-death signal
    // follows the thread that forked it: only that one, alone, may rest.
    if crate::sys::thread::running() > 0 || rustix::thread::gettid() != rustix::process::getpid() {
        return Stage1Error::Config("rest: the supervisor has another thread running".into());
    }
    let state = State {
        pod_dir: r.pod.path.clone(),
        init: r.init,
        apps: r.apps.to_vec(),
        flat_cgroups: r.flat_cgroups,
        metadata_port: r.metadata_port,
        seen: r.seen.clone(),
        ready: r.ready,
        setup_error: r.setup_error.clone(),
        pod: r.terms,
        quiet_ms: u64::try_from(r.quiet.as_millis()).unwrap_or(u64::MAX),
        rested_at_ms: crate::sys::process::monotonic_ms(),
        fds: Fds {
            lock: r.lock.map(raw),
            status: raw(r.status),
            netns: r.netns.map(raw),
            logs: r
                .logs
                .iter()
                .map(|(app, stream, fd)| (*app, stream.index(), raw(*fd)))
                .collect(),
        },
    };
    let watched = 3 + r.logs.len();
    if watched > WAITER_MAX_FDS {
        return Stage1Error::Config(format!(
            "rest: the pod's {watched} descriptors are more than skiff-wait watches ({WAITER_MAX_FDS})"
        ));
    }
    let json = match serde_json::to_vec(&state) {
        Ok(json) => json,
        Err(e) => return Stage1Error::Config(format!("rest: cannot write its state: {e}")),
    };
    let prepared = (|| {
        let state_fd = sealed_memfd("skiff-rest-state", &json, false)
            .map_err(failed("keep the supervisor's state"))?;
        let waiter = sealed_memfd("skiff-wait", WAITER, true).map_err(failed("load skiff-wait"))?;
        let stage1 = std::fs::File::open("/proc/self/exe").map_err(failed("open skiff-stage1"))?;
        let init = rustix::process::Pid::from_raw(r.init)
            .ok_or_else(|| Stage1Error::Config("rest: no init to wait for".into()))?;
        let pidfd = rustix::process::pidfd_open(init, rustix::process::PidfdFlags::empty())
            .map_err(|e| failed("watch the pod's init")(e.into()))?;
        let signals = crate::sys::signal::signalfd(&crate::supervise::TERMINATION_SIGNALS)
            .map_err(failed("watch for termination signals"))?;
        Ok::<_, Stage1Error>((state_fd, waiter, stage1, pidfd, signals))
    })();
    let (state_fd, waiter, stage1, pidfd, signals) = match prepared {
        Ok(p) => p,
        Err(e) => return e,
    };
    let watched: Vec<BorrowedFd<'_>> = [r.status, pidfd.as_fd(), signals.as_fd()]
        .into_iter()
        .chain(r.logs.iter().map(|(_, _, fd)| *fd))
        .collect();
    let inherited: Vec<BorrowedFd<'_>> = kept(r)
        .into_iter()
        .chain([
            state_fd.as_fd(),
            stage1.as_fd(),
            pidfd.as_fd(),
            signals.as_fd(),
        ])
        .collect();
    for fd in &inherited {
        if let Err(e) = close_on_exec(*fd, false) {
            return failed("keep the supervisor's descriptors")(e);
        }
    }
    let mut argv = vec!["skiff-wait".to_string(), raw(stage1.as_fd()).to_string()];
    argv.extend(watched.iter().map(|fd| raw(*fd).to_string()));
    argv.extend([
        "--".to_string(),
        "skiff-stage1".to_string(),
        "resume".to_string(),
        format!("--state-fd={}", raw(state_fd.as_fd())),
    ]);
    let e = crate::sys::process::exec_fd(waiter.as_fd(), &argv);
    failed("execute skiff-wait")(e)
}

/// The state a resting supervisor left at fd `fd`, and the descriptors it
/// names, owned (and close-on-exec) from now on. Every other descriptor is
/// closed first.
pub(crate) fn resume(fd: i32) -> Result<(State, Resumed), Stage1Error> {
    let bad = |what: &str| Stage1Error::Config(format!("resume: {what}"));
    let mut file = crate::sys::process::take_inherited_fd(fd)
        .map(std::fs::File::from)
        .ok_or_else(|| bad("no state at the fd given"))?;
    let mut json = Vec::new();
    file.rewind()
        .and_then(|_| Read::by_ref(&mut file).take(1 << 20).read_to_end(&mut json))
        .map_err(failed("read the supervisor's state"))?;
    drop(file);
    let state: State = serde_json::from_slice(&json)
        .map_err(|e| bad(&format!("the state is not readable: {e}")))?;
    // Init must be this process's child, or nothing is done to it.
    let init = state.init;
    if init <= 1 || crate::sys::process::has_ended(init, false).is_none() {
        return Err(bad(&format!("pid {init} is no child of this process")));
    }
    // From here on, a supervisor that cannot go on ends the pod rather than
    // leave it running unsupervised (skiff gc collects the rest).
    take_fds(state).inspect_err(|_| {
        crate::sys::process::kill(init, libc::SIGKILL);
    })
}

/// The descriptors `state` names, taken (every other one closed).
fn take_fds(state: State) -> Result<(State, Resumed), Stage1Error> {
    let bad = |what: &str| Stage1Error::Config(format!("resume: {what}"));
    let f = &state.fds;
    let numbers: Vec<i32> = f
        .lock
        .into_iter()
        .chain([f.status])
        .chain(f.netns)
        .chain(f.logs.iter().map(|(_, _, fd)| *fd))
        .collect();
    let keep: Vec<u32> = numbers
        .iter()
        .filter_map(|n| u32::try_from(*n).ok())
        .collect();
    crate::close_inherited_fds(&keep)?;
    let mut owned = crate::sys::process::take_resumed_fds(&numbers)
        .ok_or_else(|| bad("a descriptor of the pod is missing"))?
        .into_iter();
    let mut next = || {
        owned
            .next()
            .ok_or_else(|| bad("a descriptor of the pod is missing"))
    };
    let lock = f.lock.map(|_| next()).transpose()?;
    let status = next()?;
    let netns = f
        .netns
        .map(|_| next())
        .transpose()?
        .map(std::fs::File::from);
    let mut logs = Vec::new();
    for (app, stream, _) in &f.logs {
        let stream = match stream {
            0 => Stream::Stdout,
            _ => Stream::Stderr,
        };
        logs.push((*app, stream, next()?));
    }
    let pod = Pod {
        uuid: state
            .pod_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| bad("no pod directory"))?,
        state: skiff_pod::State::Run,
        path: state.pod_dir.clone(),
    };
    Ok((
        state,
        Resumed {
            pod,
            lock,
            status,
            netns,
            logs,
        },
    ))
}

/// The descriptors and pod a resumed supervisor takes up.
pub(crate) struct Resumed {
    pub pod: Pod,
    pub lock: Option<OwnedFd>,
    pub status: OwnedFd,
    pub netns: Option<std::fs::File>,
    pub logs: Vec<(usize, Stream, OwnedFd)>,
}

#[cfg(all(test, skiff_waiter))]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    /// The embedded waiter, written out as a program, run by `sh` with
    /// fd 9 open on `stage1` (the program it executes) and `args`.
    fn waiter_of(dir: &std::path::Path, stage1: &str, args: &str) -> Command {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("skiff-wait");
        if !path.exists() {
            std::fs::write(&path, WAITER).expect("test setup");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .expect("test setup");
        }
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            &format!("exec 9<{stage1}; exec {} {args}", path.display()),
        ]);
        cmd
    }

    fn waiter(dir: &std::path::Path, args: &str) -> Command {
        waiter_of(dir, "/bin/echo", args)
    }

    /// What wakes it is left for stage1 (here `cat`) to read: nothing lost.
    #[test]
    fn the_waiter_executes_stage1_once_a_watched_fd_has_something_and_reads_none_of_it() {
        let dir = tempfile::tempdir().expect("test setup");
        let mut child = waiter_of(dir.path(), "/bin/cat", "9 0 -- cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("test setup");
        let mut stdin = child.stdin.take().expect("test setup");
        stdin.write_all(b"every byte").expect("test setup");
        drop(stdin);
        let out = child.wait_with_output().expect("test setup");
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout), "every byte");
    }

    #[test]
    fn given_more_fds_than_it_watches_the_waiter_executes_stage1_at_once() {
        let dir = tempfile::tempdir().expect("test setup");
        let fds: Vec<String> = (0..=WAITER_MAX_FDS).map(|_| "0".to_string()).collect();
        // stdin is a pipe nobody writes to: only the count wakes it.
        let mut child = waiter(dir.path(), &format!("9 {} -- echo at once", fds.join(" ")))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("test setup");
        let stdin = child.stdin.take();
        let out = child.wait_with_output().expect("test setup");
        drop(stdin);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "at once\n");
    }

    #[test]
    fn the_waiter_refuses_arguments_it_cannot_read() {
        let dir = tempfile::tempdir().expect("test setup");
        for args in [
            "",
            "9",
            "9 0 --",
            "x 0 -- echo",
            "9 0 1x -- echo",
            "9 -- echo",
        ] {
            let out = waiter(dir.path(), args).output().expect("test setup");
            assert_eq!(out.status.code(), Some(2), "{args:?}");
            assert!(String::from_utf8_lossy(&out.stderr).starts_with("usage: skiff-wait"));
        }
    }
}
