//! Becoming an app: its credentials, capabilities, seccomp filter,
//! no_new_privs, directory, signals, limits and environment, then exec.
//! Used by every flavor that starts apps and by `skiff enter`.

use crate::plan::AppPlan;
use crate::setup_err;
use crate::sys::{self, process::Forked};
use crate::{EXIT_SETUP_FAILED, Stage1Error, app, seccomp};
use skiff_pod::privileges::Grants;
use skiff_spec::App;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// The open-files limit of apps: 65536 (or the host's hard limit if lower;
/// a process cannot raise its hard limits without CAP_SYS_RESOURCE, which
/// some hosts withhold), keeping the hard limit. Other limits are inherited.
pub const NOFILE_SOFT: u64 = 65536;

fn set_default_rlimits() {
    let current = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let hard = current.maximum;
    let soft = Some(hard.map_or(NOFILE_SOFT, |h| h.min(NOFILE_SOFT)));
    let _ = rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: soft,
            maximum: hard,
        },
    );
}

/// The image's `os/linux/oom-score-adj`, where it makes the app easier to
/// kill than it is (never harder: that is a privilege an image does not
/// get, and stage0 says so).
fn raise_oom_score(app: &App) -> Result<(), Stage1Error> {
    let Some(wanted) = app.isolators.iter().find_map(|i| match &i.value {
        skiff_spec::isolator::IsolatorValue::OomScoreAdj(v) => Some(*v),
        _ => None,
    }) else {
        return Ok(());
    };
    let path = "/proc/self/oom_score_adj";
    // Unreadable: left as it is (it could only be lowered by mistake).
    let Some(current) = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.trim().parse::<i64>().ok())
    else {
        return Ok(());
    };
    if wanted <= current {
        return Ok(());
    }
    std::fs::write(path, wanted.to_string()).map_err(setup_err(format!(
        "set the app's OOM score adjustment to {wanted}"
    )))
}

/// Apps start with every signal at its default action and none blocked,
/// whatever `skiff` inherited (a shell's background job ignores SIGINT).
fn reset_signals() {
    sys::signal::reset_all();
}

/// In a process already inside the app's root and namespaces: apply the
/// app's seccomp filter, capabilities, user and groups, no_new_privs and
/// working directory, then execute `argv` with the app's environment.
/// Returns only on failure. Used to start apps and by `skiff enter`.
pub fn become_app(p: &AppPlan, argv: &[String]) -> Result<Stage1Error, Stage1Error> {
    become_with(&p.app, &p.name, argv, Confinement::Confined(p.grants))
}

/// How much of the app's confinement `become` applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confinement {
    /// Seccomp filter, capability bounding set, no_new_privs (`ns`), with
    /// what the user granted beyond what the image can take.
    Confined(Grants),
    /// Only user, groups, directory and environment (`fly`: privileged tools).
    Privileged,
}

/// [`become_app`] with the choice of [`Confinement`].
pub fn become_with(
    app: &App,
    name: &str,
    argv: &[String],
    confinement: Confinement,
) -> Result<Stage1Error, Stage1Error> {
    let mut became = confine_as(app, name, confinement)?;
    became.seal()?;
    became.exec(argv)
}

/// A process confined as an app (all but a seccomp filter that must come
/// last: [`Became::seal`]), ready to execute its programs.
pub struct Became {
    name: String,
    env: Vec<(String, String)>,
    late_filter: Option<Vec<seccomp::Insn>>,
    /// The filter of a keeper ([`seccomp::for_keeper`]), with the late one.
    keeper_filter: Option<Vec<seccomp::Insn>>,
    /// What each child installs before exec, once the keeper is sealed.
    child_filter: Option<Vec<seccomp::Insn>>,
}

/// Applies the app's capabilities, user and groups, no_new_privs,
/// working directory, signals and limits to this process.
pub fn confine_as(app: &App, name: &str, confinement: Confinement) -> Result<Became, Stage1Error> {
    let creds = app::credentials(app, Path::new("/"))?;
    let grants = match confinement {
        Confinement::Confined(grants) => Some(grants),
        Confinement::Privileged => None,
    };
    let keep = match grants {
        Some(grants) => app::capabilities(app, grants)?,
        None => Default::default(),
    };
    // Nothing but stdio (and the sockets of socket activation, for an app
    // that gets them) may reach the app (CVE-2024-21626): every other fd
    // is marked close-on-exec first, before any filter of the app's could
    // refuse the call, and a failure stops the app.
    let first = 3u32.saturating_add(crate::systemd::passed_fds());
    sys::process::close_range_on_exec(first, u32::MAX)
        .map_err(setup_err("mark inherited fds close-on-exec"))?;
    // The filter is built first, so that a bad isolator fails before
    // anything changes. It is installed last, just before exec, so that
    // no set-up call can be filtered; only without no_new_privs (granted
    // by the user) must it be installed while CAP_SYS_ADMIN is held.
    let no_new_privs = grants.is_some_and(|grants| app::no_new_privileges(app, grants));
    let policy = match grants {
        Some(grants) => Some(seccomp::policy(app, grants)?),
        None => None,
    };
    let filter = policy.as_ref().map(seccomp::program);
    let keeper_filter = match (&policy, no_new_privs) {
        (Some(policy), true) => Some(seccomp::program(&seccomp::for_keeper(policy))),
        _ => None,
    };
    let late_filter = match (filter, no_new_privs) {
        (Some(filter), false) => {
            seccomp::install(&filter)?;
            None
        }
        (filter, _) => filter,
    };
    if grants.is_some() {
        for cap in caps::all() {
            if !keep.contains(&cap) {
                caps::drop(None, caps::CapSet::Bounding, cap).map_err(|e| {
                    Stage1Error::Config(format!("cannot drop {cap} from the bounding set: {e}"))
                })?;
            }
        }
    }
    // While this process is still root: a non-root app could not open its
    // own oom_score_adj once its credentials changed.
    raise_oom_score(app)?;
    sys::ids::set_credentials(&creds.groups, creds.gid, creds.uid).map_err(setup_err(format!(
        "switch to uid {} gid {}",
        creds.uid, creds.gid
    )))?;
    // A change of ids makes this fork of init (and of what stage1's
    // process held: docs/stage1.md, "Invocation") as dumpable as the host's
    // fs.suid_dumpable says, so readable by the app's uid where that is 1:
    // not until exec, which makes the app dumpable as any program.
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .map_err(|e| setup_err("make the app's process non-dumpable")(e.into()))?;
    if grants.is_some() {
        let set: caps::CapsHashSet = if creds.uid == 0 {
            keep.clone()
        } else {
            Default::default()
        };
        // Order matters: inheritable is raised while CAP_SETPCAP is effective;
        // effective must shrink before permitted does.
        for which in [
            caps::CapSet::Inheritable,
            caps::CapSet::Effective,
            caps::CapSet::Permitted,
        ] {
            caps::set(None, which, &set)
                .map_err(|e| Stage1Error::Config(format!("cannot set capabilities: {e}")))?;
        }
    }
    let _ = caps::clear(None, caps::CapSet::Ambient);
    if no_new_privs {
        rustix::thread::set_no_new_privs(true)
            .map_err(|e| setup_err("set no_new_privs")(e.into()))?;
    }
    let cwd = if app.working_directory.is_empty() {
        "/"
    } else {
        app.working_directory.as_str()
    };
    std::env::set_current_dir(cwd)
        .map_err(setup_err(format!("enter the working directory {cwd}")))?;

    reset_signals();
    set_default_rlimits();
    let mut env = app::environment(app, name);
    if !env.iter().any(|(k, _)| k == "HOME") {
        env.push(("HOME".to_string(), creds.home.clone()));
    }
    Ok(Became {
        name: name.to_string(),
        env,
        late_filter,
        keeper_filter,
        child_filter: None,
    })
}

impl Became {
    /// Installs the seccomp filter left for last: from here on this
    /// process can make only the calls the app can.
    pub fn seal(&mut self) -> Result<(), Stage1Error> {
        match self.late_filter.take() {
            Some(filter) => seccomp::install(&filter),
            None => Ok(()),
        }
    }

    /// As [`Became::seal`], for a keeper that starts the app's programs
    /// ([`Became::run`]): its own filter allows forking and waiting too
    /// ([`seccomp::KEEPER_CALLS`]); each child installs the app's exact
    /// filter before exec.
    pub fn seal_as_keeper(&mut self) -> Result<(), Stage1Error> {
        match self.keeper_filter.take() {
            Some(keeper) => {
                seccomp::install(&keeper)?;
                self.child_filter = self.late_filter.take();
                Ok(())
            }
            None => self.seal(),
        }
    }

    /// Executes `argv` with the app's environment; returns only on failure.
    pub fn exec(&self, argv: &[String]) -> Result<Stage1Error, Stage1Error> {
        let Some((program, args)) = argv.split_first() else {
            return Err(Stage1Error::Config(format!(
                "app '{}' has no exec",
                self.name
            )));
        };
        let mut command = std::process::Command::new(program);
        command
            .args(args)
            .env_clear()
            .envs(self.env.iter().cloned());
        // Socket activation names the process that is to use the sockets:
        // this one, in the pod's pid namespace.
        if crate::systemd::passed_fds() > 0 {
            command.env("LISTEN_PID", std::process::id().to_string());
        }
        let error = command.exec();
        Ok(Stage1Error::Exec {
            program: program.clone(),
            source: error,
        })
    }

    /// Forks, executes `argv` in the child, waits: returns its status.
    pub(crate) fn run(&self, argv: &[String]) -> Result<i32, Stage1Error> {
        match self.spawn(argv, None)? {
            Some(pid) => Ok(Self::wait(pid)),
            None => Ok(EXIT_SETUP_FAILED),
        }
    }

    /// The exit status of child `pid`, once it ended.
    pub(crate) fn wait(pid: i32) -> i32 {
        crate::exit_code(sys::process::wait(pid).unwrap_or(0))
    }

    /// Forks and executes `argv` in the child (its termination signals at
    /// their default actions, the app's filter installed): its pid. With
    /// `stop` (a keeper's flag, set by its termination handler), nothing
    /// starts once a stop arrived (None), and a stop that arrives while the
    /// child starts is passed on to it: the signals stay blocked from the
    /// check through the fork (a signal pending then is this process's
    /// only), and the child unblocks them once their actions are the
    /// defaults.
    pub(crate) fn spawn(
        &self,
        argv: &[String],
        stop: Option<&AtomicBool>,
    ) -> Result<Option<i32>, Stage1Error> {
        let signals = crate::supervise::TERMINATION_SIGNALS;
        let stopped = || stop.is_some_and(|s| s.load(Ordering::SeqCst));
        sys::signal::set_blocked(&signals, true);
        if stopped() {
            sys::signal::set_blocked(&signals, false);
            return Ok(None);
        }
        let forked = sys::process::fork();
        if !matches!(forked, Ok(Forked::Child)) {
            // A stop pending now runs the handler, which sets the flag.
            sys::signal::set_blocked(&signals, false);
        }
        match forked.map_err(setup_err("fork"))? {
            Forked::Child => {
                sys::signal::set_default(&signals);
                sys::signal::set_blocked(&signals, false);
                let sealed = match &self.child_filter {
                    Some(filter) => seccomp::install(filter),
                    None => Ok(()),
                };
                let code = match sealed.and_then(|()| self.exec(argv)) {
                    Ok(Stage1Error::Exec { .. }) => 127,
                    _ => EXIT_SETUP_FAILED,
                };
                std::process::exit(code);
            }
            Forked::Parent(pid) => {
                if stopped() {
                    sys::process::kill(pid, libc::SIGTERM);
                }
                Ok(Some(pid))
            }
        }
    }
}
