//! `enter`: run a command inside a running pod's app, in its namespaces,
//! root, and with its user, capabilities, seccomp filter and environment.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;

use rustix::thread::LinkNameSpaceType;
use skiff_pod::Pod;
use skiff_spec::App;

use crate::confine::Confinement;
use crate::confine::become_with;
use crate::plan::plan;
use crate::{EXIT_SETUP_FAILED, Stage1Error};

/// Finds the host pid of app `name` of pod `uuid`: the process stage1
/// started for it (a child of the pod's init) in the app's own cgroup.
/// Not by what the app can change itself (its environment, its name).
fn app_pid(uuid: &str, init: i32, name: &str) -> Result<i32, Stage1Error> {
    let pids = crate::cgroups::app_pids(Path::new(crate::cgroups::ROOT), uuid, name)?;
    // Field 4 of /proc/<pid>/stat: the parent.
    let parent = |pid: i32| -> Option<i32> {
        i32::try_from(*crate::proc_stat(&pid.to_string())?.get(4)?).ok()
    };
    pids.iter()
        .copied()
        .find(|pid| parent(*pid) == Some(init))
        .ok_or_else(|| Stage1Error::Config(format!("app '{name}' is not running in this pod")))
}

/// The host pid of the running app `name` of the ns pod whose init is
/// `init`: what stage1 recorded, not what the app says of itself.
pub fn running_app_pid(pod: &Pod, init: i32, name: &str) -> Result<i32, Stage1Error> {
    match pod.runtime().is_ok_and(|r| r.rootless) {
        true => reported_app_pid(pod, init, name),
        false => app_pid(&pod.uuid, init, name),
    }
}

/// Whether `file` is this process's own namespace of type `ns`.
fn same_namespace(file: &File, ns: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(theirs), Ok(ours)) = (
        file.metadata(),
        std::fs::metadata(format!("/proc/self/ns/{ns}")),
    ) else {
        return false;
    };
    (theirs.dev(), theirs.ino()) == (ours.dev(), ours.ino())
}

/// Finds the host pid of app `name` of a pod without cgroups (an ordinary
/// user's): the child of the pod's init whose pid in the pod's namespace is
/// the one init reported for the app when it started it.
fn reported_app_pid(pod: &Pod, init: i32, name: &str) -> Result<i32, Stage1Error> {
    let not_running = || Stage1Error::Config(format!("app '{name}' is not running in this pod"));
    // An app that ended is not looked for: another process of the pod may
    // have its pid by now.
    if pod.app_exit(name).is_some() {
        return Err(not_running());
    }
    let inner = pod.app_pid(name).ok_or_else(not_running)?;
    let pids = crate::proc_pids().map_err(|e| Stage1Error::Setup {
        what: "read /proc".to_string(),
        source: e,
    })?;
    for pid in pids {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .map(str::split_whitespace)
        };
        let parent = field("PPid:").and_then(|mut f| f.next()?.parse::<i32>().ok());
        // NSpid: the pid in each pid namespace, from this one inwards.
        let innermost = field("NSpid:").and_then(|f| f.last()?.parse::<i32>().ok());
        if parent == Some(init) && innermost == Some(inner) {
            return Ok(pid);
        }
    }
    Err(not_running())
}

/// Before anything of the pod is touched: this process becomes
/// non-dumpable (a pod process cannot read its memory, environment, fds or
/// `/proc/<pid>/exe`; exec makes the command dumpable again) and closes
/// every fd the caller passed beyond stdio.
pub fn shield_caller() -> Result<(), Stage1Error> {
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .map_err(|e| Stage1Error::Setup {
            what: "make the entering process non-dumpable".to_string(),
            source: e.into(),
        })?;
    crate::close_inherited_fds(&[])
}

/// How the entered command is connected to the caller's terminal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Terminal {
    /// Its stdio is the caller's, through pipes where they are terminals
    /// (see [`crate::stdio`]).
    #[default]
    Caller,
    /// A pseudo-terminal of the pod's own devpts (`enter --tty`), relayed
    /// to the caller's terminal in raw mode, as with `run --interactive`.
    Pty,
}

/// What the entered command gets of the app and of the caller
/// (`skiff enter`'s options; stage0 checked their form).
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The app (default: the pod's first).
    pub app: Option<String>,
    pub terminal: Terminal,
    /// The caller's stdin reaches the command; otherwise /dev/null.
    pub interactive: bool,
    /// USER[:GROUP] instead of the app's.
    pub user: Option<String>,
    /// Variables over the app's environment.
    pub env: Vec<(String, String)>,
    /// The working directory instead of the app's.
    pub workdir: Option<String>,
}

impl Options {
    /// The first option that needs more than relaying output (what a kvm
    /// pod's enter does), if any.
    pub fn beyond_output(&self) -> Option<&'static str> {
        [
            (self.terminal == Terminal::Pty, "--tty"),
            (self.interactive, "--interactive"),
            (self.user.is_some(), "--user"),
            (!self.env.is_empty(), "--env"),
            (self.workdir.is_some(), "--workdir"),
        ]
        .into_iter()
        .find_map(|(given, flag)| given.then_some(flag))
    }

    /// The app as the command runs: with the user, environment and working
    /// directory asked for. Names are resolved in the app's root, where
    /// this process is by now.
    fn applied_to(&self, app: &App) -> App {
        let mut app = app.clone();
        if let Some(spec) = &self.user {
            let (user, group) = match spec.split_once(':') {
                Some((user, group)) => (user, Some(group.to_string())),
                None => (spec.as_str(), None),
            };
            app.user = user.to_string();
            app.group = group.unwrap_or_else(|| {
                crate::app::primary_group(Path::new("/"), user).unwrap_or_else(|| "0".to_string())
            });
            // The app's extra groups are its user's, not this one's.
            app.supplementary_gids.clear();
        }
        for (name, value) in &self.env {
            app.environment.retain(|v| v.name != *name);
            app.environment.push(skiff_spec::image::EnvVar {
                name: name.clone(),
                value: value.clone(),
            });
        }
        if let Some(dir) = &self.workdir {
            app.working_directory = dir.clone();
        }
        app
    }
}

/// Runs `cmd` (default `/bin/sh`) in the pod's app `options.app` (default:
/// the first); returns its exit status.
pub fn enter(pod: &Pod, options: &Options, cmd: &[String]) -> Result<i32, Stage1Error> {
    let terminal = options.terminal;
    if terminal == Terminal::Pty && !rustix::termios::isatty(rustix::stdio::stdin()) {
        return Err(Stage1Error::Config(
            "--tty needs a terminal on stdin (run it from a terminal, or leave out --tty)".into(),
        ));
    }
    // Without -i the command reads /dev/null: the host's, opened before
    // anything of the pod is joined.
    let null_input = match options.terminal == Terminal::Caller && !options.interactive {
        true => Some(crate::stdio::open_null()?),
        false => None,
    };
    let (_, _, plans) = plan(pod)?;
    let target = match &options.app {
        Some(name) => plans
            .iter()
            .find(|p| p.name == *name)
            .ok_or_else(|| Stage1Error::Config(format!("the pod has no app '{name}'")))?,
        None => &plans[0],
    };
    let fly = pod
        .runtime()
        .map(|r| r.flavor == skiff_pod::Flavor::Fly)
        .unwrap_or(false);
    let argv: Vec<String> = if cmd.is_empty() {
        vec!["/bin/sh".to_string()]
    } else {
        cmd.to_vec()
    };
    if fly {
        if terminal == Terminal::Pty {
            return Err(Stage1Error::Config(
                "--tty is not available for fly pods (they have no devpts of their own); leave it out"
                    .into(),
            ));
        }
        let root = pod
            .path
            .join("stage1/apps")
            .join(&target.name)
            .join("rootfs");
        rustix::process::chroot(&root).map_err(|e| Stage1Error::Setup {
            what: format!("chroot into {}", root.display()),
            source: e.into(),
        })?;
        rustix::process::chdir("/").map_err(|e| Stage1Error::Setup {
            what: "chdir /".into(),
            source: e.into(),
        })?;
        let app = options.applied_to(&target.app);
        return run_as(
            &app,
            &target.name,
            &argv,
            Confinement::Privileged,
            options,
            null_input,
        );
    }
    let init = pod
        .pid()
        .ok_or_else(|| Stage1Error::Config("the pod has not started (no pid)".to_string()))?;
    // Right after `run --detach` returns the app may still be starting
    // (init sets up its root first): wait for it a little, unless it
    // already ended.
    let runtime = pod.runtime().ok();
    let rootless = runtime.as_ref().is_some_and(|r| r.rootless);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let pid = loop {
        match running_app_pid(pod, init, &target.name) {
            Ok(pid) => break pid,
            Err(e)
                if std::time::Instant::now() > deadline || pod.app_exit(&target.name).is_some() =>
            {
                return Err(e);
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
        }
    };
    // Opened before the mount namespace changes what /proc shows.
    let private_users = runtime.as_ref().is_some_and(|r| r.private_users.is_some());
    let userns = if private_users || rootless {
        let path = format!("/proc/{pid}/ns/user");
        Some(
            File::open(&path)
                .map(std::os::fd::OwnedFd::from)
                .map_err(|e| Stage1Error::Setup {
                    what: format!("open {path}"),
                    source: e,
                })?,
        )
    } else {
        None
    };
    // An ordinary user's pod: its user namespace owns the others, and only
    // joining it first gives this process (the user, outside) the
    // privilege to join them. It has no cgroups to join.
    if rootless {
        if let Some(userns) = &userns {
            crate::userns::join(userns)?;
        }
    } else {
        // The app's cgroups first (while /sys/fs/cgroup is the host's): what
        // runs here has the app's limits and device policy.
        crate::cgroups::join_app(
            std::path::Path::new(crate::cgroups::ROOT),
            &pod.uuid,
            &target.name,
        )?;
    }
    // Join the namespaces: pid (for the child), IPC, UTS, network from init; the
    // mount and cgroup namespaces (and so the root) of the app itself; its user
    // namespace last (joining it gives up privilege over the others).
    // All opened first: after the mount namespace, /proc is the pod's.
    let namespaces = [
        (init, "pid", LinkNameSpaceType::ProcessID),
        (init, "ipc", LinkNameSpaceType::InterProcessCommunication),
        (init, "uts", LinkNameSpaceType::HostNameAndNISDomainName),
        (init, "net", LinkNameSpaceType::Network),
        (pid, "cgroup", LinkNameSpaceType::ControlGroup),
        (pid, "mnt", LinkNameSpaceType::Mount),
    ]
    .into_iter()
    .map(|(proc_pid, ns, kind)| {
        let path = format!("/proc/{proc_pid}/ns/{ns}");
        File::open(&path)
            .map(|file| (file, ns, kind))
            .map_err(|e| Stage1Error::Setup {
                what: format!("open {path}"),
                source: e,
            })
    })
    .collect::<Result<Vec<_>, _>>()?;
    for (file, ns, kind) in namespaces {
        // One this process is in already (the host's network, for a pod
        // with --net=host): nothing to join, and an ordinary user could not
        // join the host's own.
        if same_namespace(&file, ns) {
            continue;
        }
        rustix::thread::move_into_link_name_space(file.as_fd(), Some(kind)).map_err(|e| {
            Stage1Error::Setup {
                what: format!("join the {ns} namespace of the pod"),
                source: e.into(),
            }
        })?;
    }
    if let (Some(userns), false) = (&userns, rootless) {
        crate::userns::join(userns)?;
    }
    let app = options.applied_to(&target.app);
    run_as(
        &app,
        &target.name,
        &argv,
        Confinement::Confined(target.grants),
        options,
        null_input,
    )
}

/// Forks `argv` as `app` (named `name`), waits, returns its status.
fn run_as(
    app: &App,
    name: &str,
    argv: &[String],
    confinement: Confinement,
    options: &Options,
    null_input: Option<std::os::fd::OwnedFd>,
) -> Result<i32, Stage1Error> {
    let confined = matches!(confinement, Confinement::Confined(_));
    let input = options.interactive;
    // --tty: the child makes the pty in the pod's devpts and passes the
    // master back; otherwise the caller's terminal and files reach a
    // confined command only through pipes (crate::stdio), and its stdin
    // only with --interactive.
    let (channel, pipes) = match options.terminal {
        Terminal::Pty => (Some(crate::tty::channel()?), None),
        Terminal::Caller if confined && input => (None, crate::stdio::Pipes::for_caller()?),
        Terminal::Caller if confined => (None, crate::stdio::Pipes::for_output()?),
        Terminal::Caller => (None, None),
    };
    let forked = crate::sys::process::fork().map_err(|source| Stage1Error::Setup {
        what: "fork".to_string(),
        source,
    })?;
    let child = match forked {
        crate::sys::process::Forked::Parent(child) => child,
        crate::sys::process::Forked::Child => {
            let terminal = (|| -> Result<(), Stage1Error> {
                if let Some(pipes) = pipes {
                    pipes.attach()?;
                }
                if let Some(null) = &null_input {
                    rustix::stdio::dup2_stdin(null)
                        .map_err(|e| crate::setup_err("put /dev/null on stdin")(e.into()))?;
                }
                match (&channel, confined) {
                    (Some((_, child_end)), _) => {
                        // In the pod's pid namespace, so the pod's /proc
                        // resolves the pty's path.
                        let root = crate::mounts::Root::open(Path::new("/"))?;
                        let pty = crate::tty::open_in(&root)?;
                        crate::tty::send_master(child_end, &pty.master)?;
                        crate::tty::attach(&pty.slave)
                    }
                    // Away from the caller's terminal: a pod process cannot
                    // type into the caller's shell.
                    (None, true) => crate::tty::new_session(),
                    (None, false) => Ok(()),
                }
            })();
            let code = match terminal.and_then(|()| become_with(app, name, argv, confinement)) {
                Ok(Stage1Error::Exec { program, source }) => {
                    let _ = std::io::Write::write_all(
                        &mut std::io::stderr(),
                        format!(
                            "skiff: cannot execute {}\n",
                            crate::error_line(&Stage1Error::Exec { program, source })
                                .trim_start_matches("cannot execute ")
                        )
                        .as_bytes(),
                    );
                    127
                }
                Ok(other) | Err(other) => {
                    let _ = std::io::Write::write_all(
                        &mut std::io::stderr(),
                        format!(
                            "skiff: cannot enter the pod: {}\n",
                            crate::error_line(&other)
                        )
                        .as_bytes(),
                    );
                    EXIT_SETUP_FAILED
                }
            };
            std::process::exit(code);
        }
    };
    // Ctrl-C and the like reach the command, which has left the caller's
    // session (and so its terminal's signals).
    crate::supervise::forward_to(child);
    // On this thread: this process cannot start threads, its children
    // going to the pod's pid namespace.
    let relayed = (|| -> Result<(), Stage1Error> {
        if let Some((parent_end, child_end)) = channel {
            drop(child_end);
            // None: the child failed before it had a pty (it said why).
            if let Some(master) = crate::tty::receive_master(&parent_end) {
                let exited = crate::stdio::watch(child)?;
                let raw = crate::tty::RawMode::enter();
                crate::tty::relay(&master, &exited, None);
                drop(raw);
            }
        }
        match pipes {
            Some(pipes) => pipes.copy_until_exit(child),
            None => Ok(()),
        }
    })();
    if relayed.is_err() {
        crate::sys::process::kill(child, libc::SIGKILL);
    }
    let status = crate::sys::process::wait(child).unwrap_or(0);
    relayed?;
    Ok(crate::exit_code(status))
}
