//! The pod init's app loop, shared by the `ns` init and the `kvm` guest's
//! init: start every app (behind a gate until init has confined itself),
//! then reap and report. An app with event handlers or a restart policy
//! has a keeper that runs them and starts it again, confined like the app.

use crate::confine::Became;
use crate::confine::Confinement;
use crate::confine::become_app;
use crate::confine::confine_as;
use crate::mounts::{self, Root};
use crate::plan::AppPlan;
use crate::report::{Report, send};
use crate::setup_err;
use crate::supervise::TERMINATION_SIGNALS;
use crate::supervise::on_termination;
use crate::sys::{self, process::Forked};
use crate::{EXIT_SETUP_FAILED, Stage1Error, cgroups, seccomp};
use rustix::thread::UnshareFlags;
use skiff_pod::restart::{self, Restart};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Forwards termination signals from pid 1 to every process of the pod
/// (-1: every process this pid-1 init may signal, the pod's).
extern "C" fn forward_signal(sig: libc::c_int) {
    crate::supervise::note_stop(sig);
    sys::process::kill(-1, sig);
}

fn install_forwarding() {
    on_termination(forward_signal);
}

/// In the pod's init, its root in place (`/apps/<app>/rootfs` each): starts
/// every app in its cgroups (`tty` as its terminal if given, else its
/// `outputs` as its stdout and stderr if given) and reaps every
/// process of the pod until the apps are done, reporting each app's start
/// error and exit status on `report`. The cgroup, terminal and user
/// namespace handles are closed once every app has started: while the
/// apps run, init holds only `report` and its stdio.
pub(crate) fn run_apps(
    plans: &[AppPlan],
    handles: ForApps,
    cgroup_view: Option<&cgroups::PodView>,
    report: &OwnedFd,
    after_start: AfterStart,
) {
    let ForApps {
        cgroups: app_cgroups,
        tty,
        outputs,
        userns,
        activation,
        restart,
    } = handles;
    install_forwarding();

    // The apps wait at this gate until init has given up its privileges:
    // none runs while init could still be made to use them.
    let (gate_in, gate_out) = match rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC) {
        Ok(gate) => gate,
        Err(e) => {
            send(
                report,
                &Report::Error(format!("cannot create the apps' start gate: {e}")),
            );
            return;
        }
    };
    let mut gate_out = Some(gate_out);
    let mut children = Vec::new();
    for (i, (p, cgroup)) in plans.iter().zip(&app_cgroups).enumerate() {
        let pid = match crate::supervise::fork_stoppable(|_| {}) {
            Ok(Forked::Parent(pid)) => pid,
            Ok(Forked::Child) => {
                // A stop while it waits is for the app it becomes: its
                // termination signals stay blocked from the fork until they
                // are reset, and unblocked, before exec.
                drop(gate_out.take());
                wait_for_gate(&gate_in);
                let output = outputs.as_ref().and_then(|o| o.get(i));
                let attached = match &tty {
                    Some(terminal) => terminal.attach(),
                    None => crate::tty::new_session(),
                }
                .and_then(|()| output.map_or(Ok(()), crate::logger::AppOutput::attach))
                .and_then(|()| activation.as_ref().map_or(Ok(()), |a| a.attach(i)));
                let error = match cgroups::join(cgroup).and(attached) {
                    Ok(()) => {
                        exec_app(p, cgroup_view, userns.as_ref(), Keeping { restart, report })
                    }
                    Err(e) => e,
                };
                send(
                    report,
                    &Report::AppError {
                        app: p.name.clone(),
                        error: crate::error_line(&error),
                    },
                );
                std::process::exit(match error {
                    Stage1Error::Exec { .. } => 127,
                    _ => EXIT_SETUP_FAILED,
                });
            }
            Err(e) => {
                send(
                    report,
                    &Report::AppError {
                        app: p.name.clone(),
                        error: e.to_string(),
                    },
                );
                continue;
            }
        };
        send(
            report,
            &Report::Started {
                app: p.name.clone(),
                pid,
            },
        );
        children.push((pid, p.name.clone()));
    }
    drop(app_cgroups);
    drop(tty);
    drop(outputs);
    drop(activation);
    drop(userns);
    if after_start == AfterStart::KeepOnlyKill {
        keep_only_kill();
        if let Err(e) = confine_init() {
            // Init must not go on holding more than it needs while pod
            // processes may trace it: end the pod instead.
            send(
                report,
                &Report::Error(format!(
                    "init could not confine itself once the apps started ({}): the pod was stopped",
                    crate::error_line(&e)
                )),
            );
            let _ = sys::process::kill(-1, libc::SIGKILL);
        }
    }
    drop(gate_in);
    drop(gate_out);
    // Reap every process of the pod until the apps are done.
    crate::reap(
        &children,
        |_| {},
        |name, code| {
            send(
                report,
                &Report::Exit {
                    app: name.to_string(),
                    status: code,
                },
            );
        },
    );
}

/// What init starts the apps with, and closes once they have started.
#[derive(Default)]
pub(crate) struct ForApps {
    /// Each app's cgroups to join (in plan order).
    pub cgroups: Vec<Vec<std::fs::File>>,
    /// The app's terminal (one app only).
    pub tty: Option<crate::tty::AppTerminal>,
    /// Without a terminal: each app's stdout and stderr (the logger's pipes).
    pub outputs: Option<Vec<crate::logger::AppOutput>>,
    /// The pod's user namespace (`--private-users`).
    pub userns: Option<OwnedFd>,
    /// Sockets from systemd's socket activation, for the apps that get them.
    pub activation: Option<crate::systemd::Activation>,
    /// When an app that ended is started again (`--restart`).
    pub restart: Restart,
}

/// What an app's keeper needs beyond the app: its restart policy, and
/// where it reports the runs it restarts.
#[derive(Clone, Copy)]
struct Keeping<'a> {
    restart: Restart,
    report: &'a OwnedFd,
}

/// Blocks until the write end of `gate` is closed everywhere.
fn wait_for_gate(gate: &OwnedFd) {
    let mut byte = [0u8; 1];
    loop {
        match rustix::io::read(gate, &mut byte) {
            Err(rustix::io::Errno::INTR) => continue,
            Ok(n) if n > 0 => continue,
            _ => return,
        }
    }
}

/// What init keeps of its capabilities once the apps have started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterStart {
    /// All (the kvm guest's init still powers the VM off).
    KeepAll,
    /// Only CAP_KILL, to pass signals on: a pod process allowed to trace
    /// init (`--cap-retain=CAP_SYS_PTRACE`) could run code in it, which
    /// must then have no privilege over the host.
    KeepOnlyKill,
}

/// Drops every capability of this process but CAP_KILL, bounding set
/// included (best effort: init goes on reaping whatever happens).
fn keep_only_kill() {
    let kill: caps::CapsHashSet = [caps::Capability::CAP_KILL].into_iter().collect();
    for cap in caps::all() {
        if cap != caps::Capability::CAP_KILL {
            let _ = caps::drop(None, caps::CapSet::Bounding, cap);
        }
    }
    let _ = caps::set(None, caps::CapSet::Inheritable, &caps::CapsHashSet::new());
    let _ = caps::set(None, caps::CapSet::Effective, &kill);
    let _ = caps::set(None, caps::CapSet::Permitted, &kill);
}

/// Limits init to the calls it makes while the apps run
/// ([`seccomp::INIT_AFTER_START`]; no new privileges).
fn confine_init() -> Result<(), Stage1Error> {
    rustix::thread::set_no_new_privs(true)
        .map_err(|e| setup_err("set no_new_privs on init")(e.into()))?;
    seccomp::install(&seccomp::program(&seccomp::init_after_start()))
}

/// In the forked app process: enter its root, drop privileges, exec.
/// Returns only on failure.
fn exec_app(
    p: &AppPlan,
    cgroup_view: Option<&cgroups::PodView>,
    userns: Option<&OwnedFd>,
    keeping: Keeping,
) -> Stage1Error {
    match prepare_app(p, cgroup_view, userns, keeping) {
        Ok(cmd) => cmd,
        Err(e) => e,
    }
}

fn prepare_app(
    p: &AppPlan,
    cgroup_view: Option<&cgroups::PodView>,
    userns: Option<&OwnedFd>,
    keeping: Keeping,
) -> Result<Stage1Error, Stage1Error> {
    crate::sys::process::unshare(UnshareFlags::NEWNS)
        .map_err(|e| setup_err("create the app's mount namespace")(e.into()))?;
    mounts::make_private_rec()?;
    mounts::pivot_into(Path::new(&format!("/apps/{}/rootfs", p.name)))?;
    if let Some(view) = cgroup_view {
        view.mount(&Root::open(Path::new("/"))?)?;
    }
    if let Some(userns) = userns {
        crate::userns::join(userns)?;
    }
    let handler = |name: &str| {
        p.app
            .event_handlers
            .iter()
            .find(|h| h.name == name)
            .map(|h| h.exec.clone())
    };
    let (pre_start, post_stop) = (handler("pre-start"), handler("post-stop"));
    if pre_start.is_none() && post_stop.is_none() && keeping.restart.is_no() {
        return become_app(p, &p.app.exec);
    }
    // With event handlers or a restart policy this process stays as the
    // app's keeper: it runs pre-start, the app (again, as the policy says,
    // until the pod is stopped), then post-stop, all in the app's root and
    // with its restrictions, and exits with the app's last status. The
    // keeper's reports are no more trusted than the app (the supervisor
    // bounds what it does for them: crate::report). The keeper takes
    // the app's confinement itself first (credentials, capabilities, the
    // app's seccomp filter plus forking and waiting): a pod process that
    // can trace it gains no privilege. It keeps no handle but its stdio,
    // the sockets of socket activation and its report pipe (init's
    // handles on the host's cgroups and the other apps' sockets close).
    let mut kept: Vec<u32> = (3..3 + crate::systemd::passed_fds()).collect();
    kept.extend(u32::try_from(keeping.report.as_raw_fd()).ok());
    crate::close_inherited_fds(&kept)?;
    let mut became = confine_as(&p.app, &p.name, Confinement::Confined(p.grants))?;
    became.seal_as_keeper()?;
    if let Some(exec) = pre_start {
        let status = became.run(&exec)?;
        if status != 0 {
            return Err(Stage1Error::Config(format!(
                "the pre-start handler of app '{}' failed with status {status}",
                p.name
            )));
        }
    }
    note_termination();
    let status = keep(p, &became, keeping)?;
    if let Some(exec) = post_stop {
        let _ = became.run(&exec);
    }
    std::process::exit(status);
}

/// Runs the app, and again as its restart policy says, waiting longer
/// after each quick failure ([`restart::backoff`]), until it is not to be
/// restarted or the pod is stopped. Each run followed by a restart is
/// reported; returns the last run's status.
fn keep(p: &AppPlan, became: &Became, keeping: Keeping) -> Result<i32, Stage1Error> {
    // A stop before the first run: the app ends as SIGTERM would end it.
    let mut status = 128 + libc::SIGTERM;
    let mut restarts = 0u32;
    let mut wait = None;
    loop {
        let began = Instant::now();
        let Some(pid) = became.spawn(&p.app.exec, Some(&STOPPED))? else {
            return Ok(status);
        };
        // Reported once the app runs again: a run that ended the app (a
        // stop during the wait) is its exit status, not a restart.
        if wait.is_some() {
            send(
                keeping.report,
                &Report::Restart {
                    app: p.name.clone(),
                    status,
                },
            );
            restarts = restarts.saturating_add(1);
        }
        status = Became::wait(pid);
        if STOPPED.load(Ordering::SeqCst) || !keeping.restart.again(status, restarts) {
            return Ok(status);
        }
        let next = restart::backoff(wait, began.elapsed());
        wait = Some(next);
        if stopped_within(next) {
            return Ok(status);
        }
    }
}

/// Set once the keeper is told to stop (a termination signal): no restart
/// follows.
static STOPPED: AtomicBool = AtomicBool::new(false);

/// Notes a stop: the keeper outlives a SIGTERM sent to every process, to
/// run post-stop, and restarts nothing after it (its child resets the
/// handler on exec).
extern "C" fn note_stop(_: libc::c_int) {
    STOPPED.store(true, Ordering::SeqCst);
}

fn note_termination() {
    sys::signal::on(&TERMINATION_SIGNALS, note_stop, true);
}

/// Waits `wait` unless the pod is stopped first (or was already):
/// whether it was.
fn stopped_within(wait: std::time::Duration) -> bool {
    // Blocked while the flag is checked, so a stop in between is taken by
    // the wait rather than lost.
    sys::signal::set_blocked(&TERMINATION_SIGNALS, true);
    let stopped = STOPPED.load(Ordering::SeqCst)
        || sys::signal::timed_wait(&TERMINATION_SIGNALS, wait).is_some();
    sys::signal::set_blocked(&TERMINATION_SIGNALS, false);
    stopped
}
