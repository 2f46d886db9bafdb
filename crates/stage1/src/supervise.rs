//! The supervisor's part that every flavor shares: passing termination
//! signals on to the pod, joining the pod's network namespace, and ending
//! the pod (unregister, networks, exited-garbage).

use crate::Stage1Error;
use crate::setup_err;
use crate::sys;
use skiff_pod::{Pod, Pods, State};

/// What stage0 hands a flavor's supervisor beyond the pod.
pub struct Launch {
    /// The pod's lock, held as long as the pod runs.
    pub lock: Option<std::os::fd::OwnedFd>,
    /// `skiff run --detach`: the apps' output goes only to their logs,
    /// not on to this process's stdout and stderr (the stage1.log).
    pub detached: bool,
    /// systemd's notification socket (`Type=notify` units).
    pub notify: Option<crate::systemd::Notifier>,
    /// Sockets from systemd's socket activation, for the apps.
    pub listen: Option<crate::systemd::ListenFds>,
}

impl Launch {
    /// Refuses socket activation for a flavor that does not pass it on.
    pub(crate) fn refuse_listen_fds(&self, flavor: &str) -> Result<(), Stage1Error> {
        match &self.listen {
            Some(_) => Err(Stage1Error::Config(format!(
                "socket activation is not implemented for the {flavor} flavor: use --stage1=ns or fly"
            ))),
            None => Ok(()),
        }
    }

    /// Records that every app of `pod` has started (`skiff status
    /// --wait-ready`) and tells systemd, if it asked.
    pub(crate) fn ready(&self, pod: &Pod) {
        let _ = pod.stamp("ready");
        if let Some(n) = &self.notify {
            n.ready();
        }
    }

    /// Tells systemd (if it asked) that the pod is ending.
    pub(crate) fn stopping(&self) {
        if let Some(n) = &self.notify {
            n.stopping();
        }
    }
}

/// The end of every flavor's supervisor: unregister from the metadata
/// service, delete the pod's networks (gc retries a failure), stamp the
/// exit and move the pod to exited-garbage.
#[allow(clippy::print_stderr)]
pub(crate) fn end_pod(
    pods: &Pods,
    pod: &mut Pod,
    registered: Option<crate::mds::Registered>,
    remove: bool,
) {
    if let Some(r) = registered {
        r.unregister();
    }
    if let Err(e) = crate::net::tear_down(&pod.path, &pod.uuid) {
        eprintln!(
            "skiff: pod {}: removing its networks failed (skiff gc retries): {}",
            pod.uuid,
            crate::error_line(&e)
        );
    }
    let _ = pod.stamp("exited");
    let _ = pod.move_to(pods, State::ExitedGarbage);
    if remove && let Err(e) = pod.remove(pods) {
        eprintln!(
            "skiff: pod {}: --rm: cannot remove it (skiff gc removes it later): {e}",
            pod.uuid
        );
    }
}

/// Moves init into the pod's network namespace (before it makes its other
/// namespaces, while it still holds the host's capabilities).
pub(crate) fn join_netns(netns: Option<&std::fs::File>) -> Result<(), Stage1Error> {
    match netns {
        Some(ns) => rustix::thread::move_into_link_name_space(
            std::os::fd::AsFd::as_fd(ns),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .map_err(|e| setup_err("join the pod's network namespace")(e.into())),
        None => Ok(()),
    }
}

/// The pod init's pid, for the supervisor's signal handler.
static INIT_PID: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn forward_to_init(sig: libc::c_int) {
    let pid = INIT_PID.load(std::sync::atomic::Ordering::Relaxed);
    if pid > 0 {
        sys::process::kill(pid, sig);
    }
}

/// In the supervisor: Ctrl-C, `kill` and hang-ups go to the pod's init
/// (which passes them to the apps) instead of killing the supervisor, so
/// the pod is always stopped cleanly and its status recorded. A stop noted
/// before ([`note_stops`]) goes to init now.
pub fn forward_to(init: i32) {
    INIT_PID.store(init, std::sync::atomic::Ordering::Relaxed);
    on_termination(forward_to_init);
}

/// Once init is reaped: signals are no longer passed on (its pid may be
/// another process's by then).
pub fn forget_init() {
    INIT_PID.store(0, std::sync::atomic::Ordering::Relaxed);
}

/// Installs `handler` for the [`TERMINATION_SIGNALS`] and unblocks them.
/// A stop this process noted before ([`note_stops`], or a handler's
/// [`note_stop`]) runs `handler` at once; one that arrives while it is
/// installed runs it once it is (the signals are blocked meanwhile).
pub(crate) fn on_termination(handler: sys::signal::Handler) {
    block_termination();
    sys::signal::on(&TERMINATION_SIGNALS, handler, true);
    let noted = STOP_SIGNAL.load(std::sync::atomic::Ordering::SeqCst);
    if noted > 0 {
        handler(noted);
    }
    unblock_termination();
}

/// The termination signal this process last took (0: none yet), noted by
/// its handler ([`note_stop`]): a child forked after that missed it, and a
/// handler installed after that is to act on it.
static STOP_SIGNAL: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// For a handler: notes `sig` for the processes this one starts later
/// ([`fork_stoppable`]) and the handlers it installs later
/// ([`on_termination`]). Async-signal-safe.
pub(crate) fn note_stop(sig: libc::c_int) {
    STOP_SIGNAL.store(sig, std::sync::atomic::Ordering::SeqCst);
}

extern "C" fn note_only(sig: libc::c_int) {
    note_stop(sig);
}

/// stage1's first handler, until a flavor has something to pass a stop on
/// to: notes it (unblocked, the signal would kill the supervisor before it
/// can end the pod; blocked, the helpers it runs meanwhile, CNI plugins
/// and the like, would start with it blocked). Unblocks the signals
/// stage0 blocks before exec.
pub(crate) fn note_stops() {
    on_termination(note_only);
}

/// In a child that is to take its stops from its parent (a pod's init,
/// which the supervisor passes them on to): forgets the one the parent
/// noted, which the parent passes on.
pub(crate) fn forget_stop() {
    STOP_SIGNAL.store(0, std::sync::atomic::Ordering::SeqCst);
}

/// Forks with `fork` while the [`TERMINATION_SIGNALS`] are blocked, and
/// leaves them blocked in both processes: the child keeps them so until it
/// resets them before exec (or installs its own handler), so a stop passed
/// on to it meanwhile waits for it instead of running this process's
/// handler; the parent until it installs the handler that passes stops on
/// to the child ([`on_termination`], which unblocks them). If the fork
/// fails, they are unblocked again.
pub(crate) fn fork_blocked(
    fork: impl FnOnce() -> std::io::Result<sys::process::Forked>,
) -> std::io::Result<sys::process::Forked> {
    block_termination();
    let forked = fork();
    if forked.is_err() {
        unblock_termination();
    }
    forked
}

/// Forks a child that is to be stopped with this process's other children
/// ([`fork_blocked`]), for a process whose handler is already in place
/// (instead of running it, which passes the signal on to everyone but the
/// child, a stop waits for the child). In the parent, still blocked,
/// `started` gets the child's pid (for the handler to reach it), a stop
/// noted before is passed on to the child, and the signals are unblocked:
/// a stop that arrives meanwhile runs the handler once the child is known.
pub(crate) fn fork_stoppable(started: impl FnOnce(i32)) -> std::io::Result<sys::process::Forked> {
    let forked = fork_blocked(sys::process::fork)?;
    if let sys::process::Forked::Parent(pid) = forked {
        started(pid);
        let sig = STOP_SIGNAL.load(std::sync::atomic::Ordering::SeqCst);
        if sig > 0 {
            sys::process::kill(pid, sig);
        }
        unblock_termination();
    }
    Ok(forked)
}

/// The signals that stop a pod.
pub const TERMINATION_SIGNALS: [libc::c_int; 4] =
    [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT];

/// Blocks the [`TERMINATION_SIGNALS`] (while the supervisor rests, they
/// wait for it: crate::rest; a child forked while they are blocked starts
/// with them blocked).
pub(crate) fn block_termination() {
    sys::signal::set_blocked(&TERMINATION_SIGNALS, true);
}

/// Stage0 blocks these before exec-ing stage1 (the mask survives exec), so
/// that a Ctrl-C before the handlers are in place waits for them
/// ([`note_stops`] unblocks them).
pub(crate) fn unblock_termination() {
    sys::signal::set_blocked(&TERMINATION_SIGNALS, false);
}
