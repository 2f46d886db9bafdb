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

/// How long a pod must be quiet before its supervisor rests.
pub const QUIET: Duration = Duration::from_secs(2);

/// The waiter, built by build.rs; empty where it cannot be built.
#[cfg(skiff_waiter)]
const WAITER: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/skiff-wait"));
#[cfg(not(skiff_waiter))]
const WAITER: &[u8] = &[];

/// Whether this build can rest (the waiter exists for its target).
pub fn available() -> bool {
    !WAITER.is_empty()
}

/// What the resumed supervisor needs of the pod it supervised: the rest it
/// reads again from the pod directory (the runtime record) or finds on the
/// host (its cgroups by name).
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
    fds: Fds,
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
    let state = State {
        pod_dir: r.pod.path.clone(),
        init: r.init,
        apps: r.apps.to_vec(),
        flat_cgroups: r.flat_cgroups,
        metadata_port: r.metadata_port,
        seen: r.seen.clone(),
        ready: r.ready,
        setup_error: r.setup_error.clone(),
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
    let state: State = serde_json::from_slice(&json)
        .map_err(|e| bad(&format!("the state is not readable: {e}")))?;
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
        .chain([&fd])
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
