//! The `skiff-stage1` program's command line (see docs/stage1.md for the
//! contract). The binary itself is built by the `skiff` package
//! (crates/cli/src/bin/skiff-stage1.rs), so that everything that installs
//! `skiff` (a workspace build, `cargo install`) installs its stage1 too.
//!
//! ```text
//! skiff-stage1 run [--debug] [--detached] [--notify-socket=PATH] [--listen-fds=N [--listen-fdnames=A:B]] --lock-fd=N|--lock-stdin <pod-dir>
//! skiff-stage1 resume --state-fd=N        (only from skiff-wait: crate::rest)
//! ```
#![allow(clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;

use crate::{EXIT_SETUP_FAILED, error_line, fly, ns};
use skiff_pod::{Flavor, Pod, Pods, State};

/// The status of a pod that did not start (see docs/stage1.md).
const SETUP_FAILED: u8 = EXIT_SETUP_FAILED as u8;

fn usage() -> u8 {
    eprintln!(
        "usage: skiff-stage1 run [--debug] [--detached] --lock-fd=N|--lock-stdin <pod-dir> | enter [--app=NAME] [--tty] [--interactive] [--user=U[:G]] [--env=N=V] [--workdir=DIR] <pod-dir> [-- CMD...] | gc <pod-dir>   (started by skiff; see docs/stage1.md)"
    );
    SETUP_FAILED
}

/// `skiff-stage1 enter [--app=NAME] [--tty] [--interactive] [--user=USER[:GROUP]]
/// [--env=NAME=VALUE]... [--workdir=DIR] <pod-dir> [-- CMD...]`
fn enter(args: &[String]) -> u8 {
    let mut options = crate::enter::Options::default();
    let mut pod_dir = None;
    let mut cmd = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if arg == "--" {
            cmd = it.cloned().collect();
            break;
        } else if let Some(name) = arg.strip_prefix("--app=") {
            options.app = Some(name.to_string());
        } else if arg == "--tty" {
            options.terminal = crate::enter::Terminal::Pty;
        } else if arg == "--interactive" {
            options.interactive = true;
        } else if let Some(user) = arg.strip_prefix("--user=") {
            options.user = Some(user.to_string());
        } else if let Some((name, value)) =
            arg.strip_prefix("--env=").and_then(|e| e.split_once('='))
        {
            options.env.push((name.to_string(), value.to_string()));
        } else if let Some(dir) = arg.strip_prefix("--workdir=") {
            options.workdir = Some(dir.to_string());
        } else if !arg.starts_with("--") {
            pod_dir = Some(PathBuf::from(arg));
        } else {
            return usage();
        }
    }
    let Some(pod_dir) = pod_dir else {
        return usage();
    };
    let uuid = pod_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let pod = Pod {
        uuid,
        state: State::Run,
        path: pod_dir,
    };
    if let Err(e) = crate::enter::shield_caller() {
        eprintln!("skiff: cannot enter the pod: {}", error_line(&e));
        return SETUP_FAILED;
    }
    let entered = if pod.runtime().is_ok_and(|r| r.flavor == Flavor::Kvm) {
        match options.beyond_output() {
            Some(what) => Err(crate::Stage1Error::Config(format!(
                "{what} is not available for kvm pods yet (enter relays output only); leave it out"
            ))),
            None => crate::kvm::enter::enter(&pod.path, options.app.as_deref(), &cmd),
        }
    } else {
        crate::enter::enter(&pod, &options, &cmd)
    };
    match entered {
        Ok(code) => code.clamp(0, 255) as u8,
        Err(e) => {
            eprintln!("skiff: cannot enter the pod: {}", error_line(&e));
            SETUP_FAILED
        }
    }
}

/// `skiff-stage1 gc <pod-dir>`: releases what an exited pod may still hold
/// (its networks, namespace and cgroups); idempotent.
fn gc(args: &[String]) -> u8 {
    let [pod_dir] = args else {
        return usage();
    };
    let pod_dir = PathBuf::from(pod_dir);
    let uuid = pod_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    crate::cgroups::remove_leftovers(std::path::Path::new(crate::cgroups::ROOT), &uuid);
    match crate::net::tear_down(&pod_dir, &uuid) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!(
                "skiff: pod {uuid}: cannot remove its networks: {}",
                error_line(&e)
            );
            SETUP_FAILED
        }
    }
}

/// `skiff-stage1 resume --state-fd=N`: the supervisor of a pod, woken
/// from its rest by `skiff-wait` (crate::rest), goes on.
fn resume(args: &[String]) -> u8 {
    let [arg] = args else {
        return usage();
    };
    let Some(fd) = arg
        .strip_prefix("--state-fd=")
        .and_then(|n| n.parse::<i32>().ok())
    else {
        return usage();
    };
    match ns::resume(fd) {
        Ok(code) => code.clamp(0, 255) as u8,
        Err(e) => {
            eprintln!("skiff: pod supervisor: {}", error_line(&e));
            SETUP_FAILED
        }
    }
}

/// The most sockets systemd's socket activation passes on (as its own
/// limit on a unit's sockets is far below).
const MAX_LISTEN_FDS: u32 = 1024;

/// The whole program: `main` of the `skiff-stage1` binary.
pub fn main() -> ExitCode {
    if crate::kvm::guest::is_guest_init() {
        crate::kvm::guest::main();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    ExitCode::from(match args.split_first() {
        Some((command, rest)) => match command.as_str() {
            "enter" => enter(rest),
            "gc" => gc(rest),
            "resume" => resume(rest),
            "run" => run(rest),
            _ => usage(),
        },
        None => usage(),
    })
}

/// A process about to become stage1 in place, instead of executing the
/// `skiff-stage1` program: stage0's start in the foreground, which would
/// execute stage1 and never return (docs/stage1.md, "Invocation").
pub struct Here {
    areas: crate::cmdline::Areas,
}

impl Here {
    /// This process, if it can become stage1 as the program's exec would
    /// make it: it has no other thread (which could read, hold or change
    /// what stage1 takes for its own: the environment, fds, locks in
    /// memory), and its argument and environment areas can be
    /// overwritten. Nothing is changed yet.
    pub fn prepare() -> Option<Here> {
        // Field 20 of /proc/self/stat: the number of threads.
        let stat = crate::proc_stat("self")?;
        if stat.get(20) != Some(&1) {
            return None;
        }
        let areas = crate::cmdline::Areas::of(&stat).ok()?;
        Some(Here { areas })
    }

    /// `program run ARGS` in this process. It becomes what the executed
    /// program would be: an environment of `keep_env` only (the rest
    /// cleared unread), the command line of `program` and that
    /// environment in its /proc areas (the caller's overwritten: the
    /// pod's init is a fork of this process), the name `skiff-stage1`,
    /// SIGPIPE ignored (as Rust's runtime leaves a program), no fd but
    /// those stage1 keeps (`lock`, named in `args`, is taken as passed);
    /// then exits with the pod's status.
    pub fn run(
        self,
        program: &std::path::Path,
        lock: std::os::fd::OwnedFd,
        args: &[String],
        keep_env: &[&str],
    ) -> ! {
        // Taken from its number, as an inherited fd is.
        let _ = std::os::fd::IntoRawFd::into_raw_fd(lock);
        let kept: Vec<(std::ffi::OsString, std::ffi::OsString)> = keep_env
            .iter()
            .filter_map(|name| Some(((*name).into(), std::env::var_os(name)?)))
            .collect();
        crate::sys::process::replace_environment(&kept);
        let mut argv: Vec<&[u8]> = vec![program.as_os_str().as_encoded_bytes(), b"run"];
        argv.extend(args.iter().map(|a| a.as_bytes()));
        let env: Vec<Vec<u8>> = kept
            .iter()
            .map(|(name, value)| [name.as_encoded_bytes(), b"=", value.as_encoded_bytes()].concat())
            .collect();
        let Here { mut areas } = self;
        if let Err(e) = areas.show(&argv, Some(&env)) {
            eprintln!(
                "skiff: pod failed to start: cannot overwrite the caller's command line: {e}"
            );
            std::process::exit(EXIT_SETUP_FAILED);
        }
        // Its fd is closed with the others stage1 did not inherit.
        drop(areas);
        let _ = rustix::thread::set_name(c"skiff-stage1");
        crate::sys::signal::ignore(&[libc::SIGPIPE]);
        std::process::exit(i32::from(run(args)))
    }
}

/// `skiff-stage1 run …`: the supervisor of a pod; returns the pod's status.
fn run(args: &[String]) -> u8 {
    // A stop before the flavor's handler is in place is noted, and passed
    // on once it is.
    crate::supervise::note_stops();
    let mut lock_fd = None;
    let mut lock_stdin = false;
    let mut pod_dir = None;
    let mut detached = false;
    let mut notify = None;
    let mut listen_fds = 0u32;
    let mut listen_names = None;
    for arg in args {
        if let Some(n) = arg.strip_prefix("--lock-fd=") {
            lock_fd = n.parse::<i32>().ok();
        } else if arg == "--lock-stdin" {
            lock_stdin = true;
        } else if arg == "--detached" {
            detached = true;
        } else if let Some(socket) = arg.strip_prefix("--notify-socket=") {
            notify = crate::systemd::Notifier::new(socket);
        } else if let Some(n) = arg.strip_prefix("--listen-fds=") {
            let Ok(n) = n.parse::<u32>() else {
                return usage();
            };
            listen_fds = n.min(MAX_LISTEN_FDS);
        } else if let Some(names) = arg.strip_prefix("--listen-fdnames=") {
            listen_names = Some(names.to_string());
        } else if arg == "--debug" {
        } else if !arg.starts_with("--") {
            pod_dir = Some(PathBuf::from(arg));
        } else {
            return usage();
        }
    }
    let Some(pod_dir) = pod_dir else {
        return usage();
    };
    let Some(uuid) = pod_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
    else {
        return usage();
    };
    let Some(data_dir) = crate::data_dir(&pod_dir) else {
        return usage();
    };
    let first = crate::systemd::FIRST_FD as u32;
    // A detached start hands the lock over as standard input: it moves to
    // an fd of its own, above the sockets, and /dev/null takes its place.
    let lock_fd = match (lock_stdin, lock_fd) {
        (true, Some(_)) => return usage(),
        (true, None) => match lock_off_stdin(first + listen_fds) {
            Ok(fd) => Some(fd),
            Err(e) => {
                eprintln!(
                    "skiff: pod failed to start: cannot take the pod's lock from standard input: {e}"
                );
                return SETUP_FAILED;
            }
        },
        (false, fd) => fd,
    };
    // The lock is stage0's, above the sockets: one fd is never both.
    if let Some(fd) = lock_fd
        && listen_fds > 0
        && (first as i32..(first + listen_fds) as i32).contains(&fd)
    {
        eprintln!(
            "skiff: pod failed to start: the pod's lock fd {fd} is among the activated sockets"
        );
        return SETUP_FAILED;
    }
    let keep: Vec<u32> = lock_fd
        .and_then(|fd| u32::try_from(fd).ok())
        .into_iter()
        .chain(first..first + listen_fds)
        .collect();
    if let Err(e) = crate::close_inherited_fds(&keep) {
        eprintln!("skiff: pod failed to start: {}", error_line(&e));
        return SETUP_FAILED;
    }
    let lock = lock_fd.and_then(crate::sys::process::take_inherited_fd);
    // The lock must be the pod's own directory, locked by stage0: anything
    // else (a terminal as standard input, a wrong number) would run the pod
    // unlocked, which every other command takes for ended.
    if let Some(fd) = lock_fd
        && let Err(e) = lock_is_the_pods(lock.as_ref(), fd, &pod_dir)
    {
        eprintln!("skiff: pod failed to start: {e}");
        return SETUP_FAILED;
    }
    let listen = match listen_fds {
        0 => None,
        n => match crate::systemd::ListenFds::take(n, listen_names) {
            Ok(fds) => Some(fds),
            Err(e) => {
                eprintln!("skiff: pod failed to start: {}", error_line(&e));
                return SETUP_FAILED;
            }
        },
    };
    let pods = Pods::new(data_dir);
    let pod = Pod {
        uuid,
        state: State::Run,
        path: pod_dir.clone(),
    };
    let flavor = match pod.runtime() {
        Ok(runtime) => runtime.flavor,
        Err(e) => {
            eprintln!("skiff: pod failed to start: {}", error_line(&e));
            return SETUP_FAILED;
        }
    };
    let launch = crate::supervise::Launch {
        lock,
        detached,
        notify,
        listen,
    };
    let result = match flavor {
        Flavor::Ns => ns::run(&pods, pod, launch),
        Flavor::Fly => fly::run(&pods, pod, launch),
        Flavor::Oci => crate::oci::run(&pods, pod, launch),
        Flavor::Kvm => crate::kvm::run(&pods, pod, launch),
    };
    match result {
        Ok(code) => code.clamp(0, 255) as u8,
        Err(e) => {
            eprintln!("skiff: pod failed to start: {}", error_line(&e));
            SETUP_FAILED
        }
    }
}

/// The pod lock stage0 passed as standard input (`--lock-stdin`), moved
/// to an fd numbered `from` or above (its number, for
/// [`crate::sys::process::take_inherited_fd`] to take), with /dev/null as
/// standard input in its place.
fn lock_off_stdin(from: u32) -> std::io::Result<i32> {
    use std::os::fd::IntoRawFd;
    let from = i32::try_from(from).map_err(|_| std::io::Error::from_raw_os_error(libc::EBADF))?;
    let moved = rustix::io::fcntl_dupfd_cloexec(rustix::stdio::stdin(), from)?;
    let null = std::fs::File::open("/dev/null")?;
    rustix::stdio::dup2_stdin(&null)?;
    Ok(moved.into_raw_fd())
}

/// Whether `lock` (taken from fd `fd`) is an open fd of the directory
/// `pod_dir`, on which this process holds the exclusive lock stage0 took.
fn lock_is_the_pods(
    lock: Option<&std::os::fd::OwnedFd>,
    fd: i32,
    pod_dir: &std::path::Path,
) -> Result<(), String> {
    let wrong = |why: &str| {
        format!(
            "the pod's lock (fd {fd}) {why}: stage1 is started by skiff with the pod's locked directory (docs/stage1.md)"
        )
    };
    let lock = lock.ok_or_else(|| wrong("is not an open file descriptor of this process"))?;
    let held = rustix::fs::fstat(lock).map_err(|e| wrong(&format!("cannot be read ({e})")))?;
    let named = rustix::fs::stat(pod_dir).map_err(|e| {
        wrong(&format!(
            "cannot be compared with {} ({e})",
            pod_dir.display()
        ))
    })?;
    if rustix::fs::FileType::from_raw_mode(held.st_mode) != rustix::fs::FileType::Directory
        || (held.st_dev, held.st_ino) != (named.st_dev, named.st_ino)
    {
        return Err(wrong(&format!(
            "is not the directory {}",
            pod_dir.display()
        )));
    }
    // A no-op on the description stage0 locked; fails if another holds it.
    rustix::fs::flock(lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
        .map_err(|_| wrong("is not locked by this process: another holds the pod's lock"))
}
