//! The `ns` flavor: a pod in new mount, pid, UTS and IPC namespaces.
//!
//! Processes (see docs/stage1.md):
//!
//! ```text
//! stage1 supervisor (the `skiff run` process after exec; host namespaces)
//!   └─ pod init (pid 1 of the pod; its own mount/UTS/IPC namespaces;
//!        │        root = a tmpfs holding only the apps' roots)
//!        ├─ app "a" (own mount namespace, root = a's overlay)
//!        └─ app "b"
//! ```
//!
//! The supervisor writes the pod's pid, waits for init, records every
//! app's exit status (reported by init over a pipe, with setup errors)
//! and moves the pod to `exited-garbage`. Mounts live only in the pod's
//! namespaces and disappear with its last process.

use crate::sys::{self, process::Forked};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use rustix::mount::MountFlags;
use rustix::thread::UnshareFlags;
use skiff_pod::{Pod, Pods, Runtime};

use crate::mounts::{self, Root};
use crate::report::{self, Report, send};
use crate::{EXIT_SETUP_FAILED, Stage1Error, cgroups};

use crate::approot::finish_app_root;
use crate::approot::mount_app_root;
use crate::apps::AfterStart;
use crate::apps::run_apps;
use crate::plan::AppPlan;
use crate::plan::plan;
use crate::setup_err;
use crate::supervise::end_pod;
use crate::supervise::forward_to;
use crate::supervise::join_netns;

/// Runs the pod; returns the exit status for `skiff run` (the first app's).
// The supervisor's stderr is the pod's console: app start failures are
// reported there, as they happen.
#[allow(clippy::print_stderr)]
pub fn run(
    pods: &Pods,
    pod: Pod,
    mut launch: crate::supervise::Launch,
) -> Result<i32, Stage1Error> {
    let lock = launch.lock.take();
    let (manifest, runtime, mut plans) = plan(&pod)?;
    // A pod is an ordinary user's exactly when this stage1 is not root of
    // the host: a record saying otherwise is refused (a root pod must not
    // run without cgroups and device policy).
    if runtime.rootless == crate::userns::is_host_root() {
        let (prepared, runs) = match runtime.rootless {
            true => ("by a user other than", "as"),
            false => ("by", "without"),
        };
        return Err(Stage1Error::Config(format!(
            "pod {} was prepared {prepared} root, and stage1 runs {runs} it: prepare it again as the user who runs it",
            pod.uuid
        )));
    }
    let activation = launch
        .listen
        .take()
        .map(|fds| crate::systemd::Activation::new(fds, &mut plans));
    // Every app writes to pipes of its own, read by the logger; with
    // --interactive the app's terminal is relayed instead (not logged).
    let (outputs, logger) = if runtime.interactive {
        (None, None)
    } else {
        let names: Vec<String> = plans.iter().map(|p| p.name.clone()).collect();
        let (outputs, logger) = crate::logger::pipes(&pod, runtime.logs, &names, !launch.detached)?;
        (Some(outputs), Some(logger))
    };
    let limits: Vec<(String, cgroups::Limits)> = plans
        .iter()
        .map(|p| (p.name.clone(), cgroups::limits(&p.app)))
        .collect();
    let pod_cgroups = if runtime.rootless {
        cgroups::PodCgroups::none(&pod.uuid, plans.iter().map(|p| p.name.clone()).collect())
    } else {
        cgroups::PodCgroups::create(
            Path::new(cgroups::ROOT),
            &pod.uuid,
            &cgroups::limits_of(&manifest.isolators),
            &limits,
            runtime.pids_limit,
            &crate::devices::allowed(&runtime.devices),
        )?
    };
    let (init_cgroup, app_cgroups) = pod_cgroups.open_joins()?;
    // With --interactive init makes the pty in the app's devpts and passes
    // the master back over this channel.
    // Otherwise the caller's terminal or file on stdin reaches the pod only
    // through a pipe (crate::stdio).
    let (pty_channel, pipes) = if runtime.interactive {
        (Some(crate::tty::channel()?), None)
    } else {
        (None, crate::stdio::Pipes::for_input()?)
    };
    let (read_end, write_end) =
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| {
            Stage1Error::Setup {
                what: "create the status pipe".into(),
                source: e.into(),
            }
        })?;
    // Made here, in the host pid namespace, where /proc shows its holder.
    let userns = match runtime.private_users {
        Some(base) => Some(crate::userns::create(base, skiff_pod::USERNS_SIZE)?),
        None => None,
    };
    // Networking before the pid namespace: CNI plugins must not become
    // processes of the pod.
    let undo = |e: Stage1Error| {
        let _ = crate::net::tear_down(&pod.path, &pod.uuid);
        pod_cgroups.remove();
        e
    };
    let (netns, user_net, registered) = if runtime.net.mode == skiff_pod::NetMode::User {
        // A user-mode network forwards the metadata service's port into
        // the pod: registered first, to know it.
        let registered = crate::mds::register(&pod, &runtime, &mut plans);
        match crate::usernet::set_up(&pod, &runtime, registered.as_ref().map(|r| r.port)) {
            Ok((netns, user_net)) => (Some(netns), Some(user_net), registered),
            Err(e) => {
                if let Some(r) = registered {
                    r.unregister();
                }
                return Err(undo(e));
            }
        }
    } else {
        let netns = crate::net::set_up(&pod, &runtime).map_err(undo)?;
        (
            netns,
            None,
            crate::mds::register(&pod, &runtime, &mut plans),
        )
    };
    // Init is pid 1 of a new pid namespace; the supervisor stays in its
    // own, so its later threads and children (CNI DEL at the end) do too.
    // It starts with the termination signals blocked until its handler is
    // in place (a pid namespace's init discards a signal it has no handler
    // for); the supervisor keeps them blocked until it passes them on to
    // init (forward_to), then a stop noted before goes to init too.
    let forked = match crate::supervise::fork_blocked(sys::process::fork_in_new_pid_namespace) {
        Ok(forked) => forked,
        Err(source) => {
            if let Some(user_net) = user_net {
                user_net.stop();
            }
            if let Some(r) = registered {
                r.unregister();
            }
            return Err(undo(Stage1Error::Setup {
                what: "fork the pod init in a new pid namespace".into(),
                source,
            }));
        }
    };
    let child = match forked {
        Forked::Parent(child) => child,
        Forked::Child => {
            crate::supervise::forget_stop();
            drop(read_end);
            // Bound to the supervisor first of all, then into the pod's
            // cgroups while init has one thread (cgroups: no host-wide
            // lock, no RCU grace period to wait for), so all it does is
            // the pod's.
            if let Err(e) =
                bind_to_supervisor(&write_end).and_then(|()| cgroups::join(&init_cgroup))
            {
                send(&write_end, &Report::Error(crate::error_line(&e)));
                std::process::exit(EXIT_SETUP_FAILED);
            }
            // Init lives on next to the apps: it keeps no handle on the host
            // beyond what starting them needs (a pod process allowed to trace
            // it, `--cap-retain=CAP_SYS_PTRACE`, could reopen any through
            // /proc/1/fd), and drops those once they are started.
            drop(lock);
            drop(init_cgroup);
            drop(logger);
            let pty_channel = pty_channel.map(|(_, init_end)| init_end);
            // Its own session: init's `kill(0, …)` (code a tracing pod
            // process runs in it could call it) would otherwise reach the
            // caller's process group outside the pod.
            let _ = rustix::process::setsid();
            let attached = match pipes {
                Some(pipes) => pipes.attach().and_then(|()| crate::stdio::null_output()),
                // With --interactive the app gets a pty of the pod's own;
                // init keeps nothing of the caller's terminal.
                None if runtime.interactive => crate::stdio::null_stdio(),
                // The apps write to the logger; init itself reports on
                // its pipe.
                None => crate::stdio::null_output(),
            };
            let joined = attached.and_then(|()| join_netns(netns.as_ref()));
            drop(netns);
            let code = match joined.and_then(|()| {
                let handles = crate::apps::ForApps {
                    cgroups: app_cgroups,
                    tty: None,
                    outputs,
                    userns,
                    activation,
                    restart: runtime.restart,
                };
                init(&pod, &runtime, &plans, handles, pty_channel, &write_end)
            }) {
                Ok(()) => 0,
                Err(e) => {
                    send(&write_end, &Report::Error(crate::error_line(&e)));
                    EXIT_SETUP_FAILED
                }
            };
            std::process::exit(code);
        }
    };
    drop(write_end);
    // The apps' ends of their output pipes are init's alone: the logger
    // sees the end of an app's output when the app's processes are gone.
    drop(outputs);
    drop(activation);
    // Init joined the pod's cgroups itself; the apps join their own, each
    // before its exec, so no app runs outside its limits.
    let mut setup_error = None;
    drop(init_cgroup);
    forward_to(child);
    let copying = match pipes.map(|pipes| pipes.start(child)).transpose() {
        Ok(copying) => copying,
        Err(e) => {
            sys::process::kill(child, libc::SIGKILL);
            setup_error.get_or_insert(crate::error_line(&e));
            None
        }
    };
    let logging = logger.and_then(|l| start_logging(l, child, &mut setup_error));
    pod.set_pid(child);
    let _ = pod.stamp("started");
    let master = pty_channel.and_then(|(supervisor_end, init_end)| {
        drop(init_end);
        crate::tty::receive_master(&supervisor_end)
    });
    let watch = Watch {
        child,
        lock,
        status: read_end,
        netns,
        logging,
        registered,
        cgroups: pod_cgroups,
        apps: plans.iter().map(|p| p.name.clone()).collect(),
        setup_error,
        seen: None,
        quiet: crate::rest::QUIET,
        terms: crate::rest::PodTerms {
            logs: runtime.logs,
            rootless: runtime.rootless,
            restarting: !runtime.restart.is_no(),
            remove: runtime.remove,
        },
        copying,
        user_net,
    };
    supervise(pods, pod, &launch, watch, master)
}

/// `skiff-stage1 resume`: takes up the pod a resting supervisor left at
/// `state_fd` (crate::rest) and supervises it on.
pub fn resume(state_fd: i32) -> Result<i32, Stage1Error> {
    let (state, resumed) = crate::rest::resume(state_fd)?;
    let _ = rustix::thread::set_name(c"skiff-stage1");
    let pod = resumed.pod;
    let data_dir = crate::data_dir(&pod.path).ok_or_else(|| {
        Stage1Error::Config(format!(
            "resume: {} is no pod directory",
            pod.path.display()
        ))
    })?;
    let pods = Pods::new(data_dir);
    let terms = state.pod;
    let quiet = state.next_quiet();
    let mut setup_error = state.setup_error;
    let logging = match resumed.logs.is_empty() {
        true => None,
        false => start_logging(
            crate::logger::Logger::resumed(&pod, terms.logs, &state.apps, resumed.logs),
            state.init,
            &mut setup_error,
        ),
    };
    forward_to(state.init);
    let cgroups = match terms.rootless {
        true => cgroups::PodCgroups::none(&pod.uuid, state.apps.clone()),
        false => cgroups::PodCgroups::resumed(
            Path::new(cgroups::ROOT),
            &pod.uuid,
            state.apps.clone(),
            state.flat_cgroups,
        ),
    };
    let registered = state
        .metadata_port
        .and_then(|port| crate::mds::Registered::resumed(&pod, port));
    let launch = crate::supervise::Launch {
        lock: None,
        detached: true,
        notify: None,
        listen: None,
    };
    let watch = Watch {
        child: state.init,
        lock: resumed.lock,
        status: resumed.status,
        netns: resumed.netns,
        logging,
        registered,
        cgroups,
        apps: state.apps,
        setup_error,
        quiet,
        seen: Some((state.seen, state.ready)),
        terms,
        copying: None,
        user_net: None,
    };
    supervise(&pods, pod, &launch, watch, None)
}

/// A running pod as its supervisor holds it.
struct Watch {
    /// The pod's init.
    child: i32,
    /// The pod's lock (held as long as the pod runs).
    lock: Option<OwnedFd>,
    /// Init's report pipe.
    status: OwnedFd,
    netns: Option<std::fs::File>,
    logging: Option<crate::logger::Logging>,
    registered: Option<crate::mds::Registered>,
    cgroups: cgroups::PodCgroups,
    /// The apps, in plan order.
    apps: Vec<String>,
    /// The supervisor's own setup error.
    setup_error: Option<String>,
    /// What a resting supervisor had recorded, and whether the pod was
    /// ready.
    seen: Option<(report::Seen, bool)>,
    /// How long the pod must be quiet before the supervisor rests.
    quiet: std::time::Duration,
    terms: crate::rest::PodTerms,
    /// Only a supervisor that never rested has these.
    copying: Option<crate::stdio::Copying>,
    user_net: Option<crate::usernet::UserNet>,
}

/// Init's reports, as the supervisor records them.
struct Reports<'a> {
    recorder: report::Recorder<'a>,
    ready: bool,
    launch: &'a crate::supervise::Launch,
    pod: &'a Pod,
}

impl Reports<'_> {
    fn line(&mut self, line: &str) {
        self.recorder.line(line);
        if !self.ready && self.recorder.all_started() {
            self.ready = true;
            self.launch.ready(self.pod);
        }
    }
}

/// Watches the pod until init ends, then ends it: records the apps'
/// exits and OOM kills, releases networks and cgroups.
#[allow(clippy::print_stderr)]
fn supervise(
    pods: &Pods,
    mut pod: Pod,
    launch: &crate::supervise::Launch,
    mut w: Watch,
    master: Option<OwnedFd>,
) -> Result<i32, Stage1Error> {
    let pod_ref = pod.clone();
    let apps = w.apps.clone();
    let recorder = report::Recorder::new(&pod_ref, apps.iter().map(String::as_str).collect())
        .restarting(w.terms.restarting);
    let (recorder, ready) = match w.seen.take() {
        Some((seen, ready)) => match recorder.resume(seen) {
            Some(recorder) => (recorder, ready),
            None => {
                return Err(Stage1Error::Config(
                    "resume: the state is not for this pod's apps".into(),
                ));
            }
        },
        None => (recorder, false),
    };
    let mut reports = Reports {
        recorder,
        ready,
        launch,
        pod: &pod_ref,
    };
    match &master {
        Some(master) => {
            let raw = crate::tty::RawMode::enter();
            crate::tty::relay(master, &w.status, Some(&mut |l: &str| reports.line(l)));
            drop(raw);
        }
        None => read_reports(&pod_ref, launch, &mut w, &mut reports),
    }
    launch.stopping();
    let mut first_status = reports.recorder.first_status;
    let mut setup_error = w.setup_error;
    if let Some(e) = reports.recorder.setup_error.take() {
        setup_error.get_or_insert(e);
    }
    let child = w.child;
    // Signals go on to init until it has ended, and not once its pid may be
    // another process's: it is reaped only after.
    sys::process::has_ended(child, true);
    crate::supervise::forget_init();
    let wstatus = sys::process::wait(child).unwrap_or(0);
    if let Some(copying) = w.copying {
        copying.finish();
    }
    if let Some(logging) = w.logging {
        logging.finish();
    }
    // Init killed (`skiff stop --force`) takes its apps with it before it
    // can report them: they ended by the same signal.
    if libc::WIFSIGNALED(wstatus) {
        let code = crate::exit_code(wstatus);
        for (i, app) in w.apps.iter().enumerate() {
            if pod.app_exit(app).is_none() {
                pod.set_app_exit(app, code);
                if i == 0 {
                    first_status = Some(code);
                }
            }
        }
    }
    for app in &w.apps {
        let kills = w.cgroups.oom_kills(app);
        if kills > 0 {
            pod.set_app_oom_kills(app, kills);
            eprintln!(
                "skiff: app '{}' of pod {} was killed for exceeding its memory limit",
                app, pod.uuid
            );
        }
    }
    drop(w.netns);
    if let Some(user_net) = w.user_net {
        user_net.stop();
    }
    w.cgroups.remove();
    end_pod(pods, &mut pod, w.registered, w.terms.remove);
    drop(w.lock);
    if let Some(e) = setup_error {
        return Err(Stage1Error::Pod(e));
    }
    Ok(first_status.unwrap_or(EXIT_SETUP_FAILED))
}

/// Reads init's reports until init closes its pipe. A detached pod's
/// supervisor rests once nothing has come for its quiet spell:
/// it returns from here only if resting failed (said once) or the pod
/// ended.
#[allow(clippy::print_stderr)]
fn read_reports(
    pod: &Pod,
    launch: &crate::supervise::Launch,
    w: &mut Watch,
    reports: &mut Reports<'_>,
) {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let quiet = Timespec {
        tv_sec: i64::try_from(w.quiet.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: 0,
    };
    let mut may_rest = crate::rest::available()
        && launch.detached
        && launch.notify.is_none()
        && w.copying.is_none()
        && w.user_net.is_none();
    let mut lines = report::LineBuffer::default();
    let mut buf = [0u8; 8192];
    loop {
        let timeout = (may_rest && w.setup_error.is_none()).then_some(&quiet);
        let mut fds = [PollFd::new(&w.status, PollFlags::IN)];
        match rustix::event::poll(&mut fds, timeout) {
            Ok(0) => {
                if lines.is_empty()
                    && let Some(e) = rest(pod, w, reports)
                {
                    eprintln!(
                        "skiff: pod {}: its supervisor stays awake: {}",
                        pod.uuid,
                        crate::error_line(&e)
                    );
                    may_rest = false;
                }
                continue;
            }
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return,
        }
        match rustix::io::read(&w.status, &mut buf) {
            Ok(0) => return,
            Ok(n) => lines.push(&buf[..n], &mut |l: &str| reports.line(l)),
            Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {}
            Err(_) => return,
        }
    }
}

/// Rests the supervisor (crate::rest) if init runs, no output came for the
/// quiet spell and the logger has all it read in the logs; returns only
/// if it did not rest: why, when that is an error (a busy logger is none:
/// the next quiet spell tries again).
fn rest(pod: &Pod, w: &mut Watch, reports: &Reports<'_>) -> Option<Stage1Error> {
    // Init's end wakes the waiter at once: no rest once it has come.
    if sys::process::has_ended(w.child, false) != Some(false)
        || w.logging
            .as_ref()
            .is_some_and(|l| !l.was_quiet_for(w.quiet))
    {
        return None;
    }
    let logger = w.logging.take().and_then(crate::logger::Logging::pause);
    let quiet = logger
        .as_ref()
        .is_none_or(|l| l.is_clean() && l.was_quiet_for(w.quiet));
    let error = match quiet {
        true => Some(crate::rest::rest(crate::rest::Resting {
            pod,
            init: w.child,
            apps: &w.apps,
            flat_cgroups: w.cgroups.is_flat(),
            metadata_port: w.registered.as_ref().map(|r| r.port),
            seen: reports.recorder.seen(),
            ready: reports.ready,
            setup_error: w.setup_error.clone(),
            terms: w.terms,
            quiet: w.quiet,
            lock: w.lock.as_ref().map(AsFd::as_fd),
            status: w.status.as_fd(),
            netns: w.netns.as_ref().map(AsFd::as_fd),
            logs: logger.iter().flat_map(|l| l.reading()).collect(),
        })),
        false => None,
    };
    w.logging = logger.and_then(|l| start_logging(l, w.child, &mut w.setup_error));
    error
}

/// Starts `logger`. If it cannot start, nothing would read the apps'
/// output: init is killed and the error kept as the pod's setup error.
fn start_logging(
    logger: crate::logger::Logger,
    init: i32,
    setup_error: &mut Option<String>,
) -> Option<crate::logger::Logging> {
    match logger.start() {
        Ok(logging) => Some(logging),
        Err(e) => {
            sys::process::kill(init, libc::SIGKILL);
            setup_error.get_or_insert(crate::error_line(&e));
            None
        }
    }
}

/// The pod's pid 1: namespaces, filesystems, apps, reaping.
/// Shows "skiff-init" as its command line and name: the pod's processes
/// see that as their pid 1, not stage1's command line, which names host
/// paths. Best effort.
fn hide_host_cmdline() {
    crate::cmdline::show(&[b"skiff-init"], None);
    let _ = rustix::thread::set_name(c"skiff-init");
}

/// Makes init unreadable to the pod's processes (not dumpable) and has
/// it killed when the supervisor ends. A supervisor already gone (in the
/// new pid namespace `getppid` says 0: the reports' pipe, `report`, has
/// lost its reader) ends init here, with no one to report to. Again after
/// any change of init's filesystem ids, which clears both (the kernel's
/// commit_creds).
fn bind_to_supervisor(report: &OwnedFd) -> Result<(), Stage1Error> {
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .map_err(|e| setup_err("make init non-dumpable")(e.into()))?;
    match sys::process::die_with_reader(report.as_fd()) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => std::process::exit(EXIT_SETUP_FAILED),
        Err(e) => Err(setup_err("arm init's parent-death signal")(e)),
    }
}

pub(crate) fn init(
    pod: &Pod,
    runtime: &Runtime,
    plans: &[AppPlan],
    mut handles: crate::apps::ForApps,
    pty_channel: Option<OwnedFd>,
    report: &OwnedFd,
) -> Result<(), Stage1Error> {
    hide_host_cmdline();
    crate::sys::process::unshare(UnshareFlags::NEWNS | UnshareFlags::NEWUTS | UnshareFlags::NEWIPC)
        .map_err(|e| setup_err("create the mount, UTS and IPC namespaces")(e.into()))?;
    mounts::make_private_rec()?;

    if let Some(base) = runtime.private_users {
        mounts::create_as(base);
    }
    // What the apps will see of their cgroups, read while the host's
    // /sys/fs/cgroup is still in view.
    let cgroup_view = if runtime.rootless {
        cgroups::PodView::default()
    } else {
        cgroups::PodView::detect(Path::new(cgroups::ROOT))
    };
    let stage1_root = pod.path.join("stage1");
    std::fs::create_dir_all(&stage1_root)
        .map_err(setup_err(format!("create {}", stage1_root.display())))?;
    let root = Root::open(&stage1_root)?;
    // Close-on-exec like every fd init holds: no app may inherit a
    // handle on the host's file system.
    let stage1_fd =
        rustix::io::fcntl_dupfd_cloexec(&root.fd, 0).map_err(|e| setup_err("dup")(e.into()))?;
    // A single app's /dev lives here too (mounts::Scratch): 64 MiB, as a
    // tmpfs of its own had.
    mounts::mount(
        "tmpfs",
        &stage1_fd,
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV,
        Some(c"mode=755,size=65536k"),
        "the pod root",
    )?;
    // Opened anew: `root` names the directory under the tmpfs.
    let pod_root = Root::open(&stage1_root)?;
    let mut tty = None;
    for p in plans {
        let app_root = mount_app_root(pod, &stage1_root, p, handles.userns.as_ref())?;
        let scratch = mounts::Scratch::make(&pod_root, &p.name, plans.len() > 1)?;
        mounts::setup_kernel_filesystems(
            &app_root,
            "/dev/null",
            mounts::KernelPaths::of(p.grants),
            &runtime.devices,
            match (runtime.rootless, runtime.net.mode) {
                (true, skiff_pod::NetMode::Host) => mounts::Sys::HostBind,
                _ => mounts::Sys::Mount,
            },
            Some(&scratch),
        )?;
        cgroup_view.prepare(&app_root, &scratch)?;
        finish_app_root(pod, &app_root, p)?;
        if let (Some(channel), None) = (&pty_channel, &tty) {
            let pty = crate::tty::open_in(&app_root)?;
            crate::tty::send_master(channel, &pty.master)?;
            tty = Some(pty.slave);
        }
    }
    rustix::system::sethostname(runtime.hostname.as_bytes())
        .map_err(|e| setup_err(format!("set the hostname '{}'", runtime.hostname))(e.into()))?;
    mounts::pivot_into(&stage1_root)?;
    // Building the roots as the pod's root user (mounts::as_pod_root,
    // with --private-users) changed init's filesystem ids.
    bind_to_supervisor(report)?;
    // The pod root's handles name the host's directory of it: `..` of
    // either leads out of the pod.
    drop(stage1_fd);
    drop(root);
    drop(pod_root);
    drop(pty_channel);
    handles.tty = tty.map(crate::tty::AppTerminal::OwnSession);
    run_apps(
        plans,
        handles,
        Some(&cgroup_view),
        report,
        AfterStart::KeepOnlyKill,
    );
    Ok(())
}
