//! The operations on a container, as runtime-spec's runtime.md and runc's
//! command line define them.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oci_spec::runtime::{LinuxNamespaceType, LinuxResources};
use skiff_stage1::sys::{self, process::Forked};

use crate::cgroup::Cgroup;
use crate::config::Bundle;
use crate::init::Launch;
use crate::namespaces::Plan;
use crate::process::Prepared;
use crate::state::{Dir, Saved, Status};
use crate::sync::Msg;
use crate::{Result, RuntimeError, errno, hooks, io_err};

/// `create`'s options beyond the bundle.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub no_pivot: bool,
    pub preserve_fds: u32,
    pub systemd_cgroup: bool,
}

/// Writes a pid file atomically (containerd reads it as soon as the
/// command returns).
pub fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    crate::state::replace_file(path, pid.to_string().as_bytes(), 0o644)
}

/// Whether `create` must run from a sealed copy of the binary
/// ([`crate::selfexe`]): when other processes than init run in the
/// container's pid namespace while init still runs the runtime's code —
/// the container joins an existing pid namespace, or startContainer hooks
/// (programs of the container's image, run as root) run there.
pub fn needs_sealed_binary(bundle: &Bundle) -> bool {
    let joins_pid = bundle
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| {
            ns.iter()
                .any(|n| n.typ() == LinuxNamespaceType::Pid && n.path().is_some())
        });
    let start_hooks = bundle
        .spec
        .hooks()
        .as_ref()
        .and_then(|h| h.start_container().as_ref())
        .is_some_and(|h| !h.is_empty());
    joins_pid || start_hooks
}

/// Creates the container: its init waits for `start`. Returns its pid.
pub fn create(root: &Path, id: &str, bundle: &Bundle, opts: &CreateOptions) -> Result<i32> {
    let dir = Dir::new(root, id)?;
    let spec = &bundle.spec;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| RuntimeError::Invalid("config.json has no process".into()))?;
    let terminal = process.terminal().unwrap_or(false);
    if terminal != opts.console_socket.is_some() {
        return Err(RuntimeError::Invalid(if terminal {
            "process.terminal is true: pass --console-socket (a Unix socket that receives the terminal)".into()
        } else {
            "--console-socket was given but process.terminal is false".into()
        }));
    }
    let linux = spec.linux().clone().unwrap_or_default();
    if opts.systemd_cgroup && !Path::new("/run/systemd/system").is_dir() {
        return Err(RuntimeError::Unsupported(
            "--systemd-cgroup: systemd is not running on this host (no /run/systemd/system); leave the flag out to manage cgroups directly".into(),
        ));
    }
    let prepared = Prepared::new(process, linux.seccomp().as_ref(), opts.preserve_fds)?;
    let cgroup = Cgroup::resolve(linux.cgroups_path().as_deref(), id, opts.systemd_cgroup)?;
    let plan = Plan::of(linux.namespaces().as_deref().unwrap_or_default())?;
    // A namespace "joined" by the path of the host's own is the host's:
    // its sysctls are the host's.
    for name in linux.sysctl().iter().flatten().map(|(k, _)| k) {
        if let Some(t) = crate::config::sysctl_namespace(name)
            && plan.joins_own(t)
        {
            return Err(RuntimeError::Invalid(format!(
                "sysctl {name}: the container's {} namespace is the host's; setting it would change the host",
                crate::namespaces::proc_name(t)
            )));
        }
    }
    if plan.joins(LinuxNamespaceType::Pid) {
        crate::selfexe::check_pid_namespace(&plan)?;
    }
    if plan.joins_own(LinuxNamespaceType::Mount) {
        return Err(RuntimeError::Invalid(
            "the mount namespace to join is the host's: pivot_root there would move the host's processes into the container's root".into(),
        ));
    }
    dir.create(root)?;
    let mut init_pid = None;
    let result = create_in(&dir, bundle, opts, prepared, &cgroup, plan, &mut init_pid);
    if result.is_err() {
        if let Some(pid) = init_pid {
            sys::process::kill(pid, libc::SIGKILL);
        }
        cgroup.remove();
        let _ = dir.remove();
    }
    result
}

fn create_in(
    dir: &Dir,
    bundle: &Bundle,
    opts: &CreateOptions,
    prepared: Prepared,
    cgroup: &Cgroup,
    plan: Plan,
    init_pid: &mut Option<i32>,
) -> Result<i32> {
    let spec = &bundle.spec;
    let linux = spec.linux().clone().unwrap_or_default();
    cgroup.create()?;
    if let Some(res) = linux.resources() {
        cgroup.apply(res)?;
    }
    let cgroup_joins = cgroup.join_files()?;
    // Init waits in accept() on this socket until `start` connects (its
    // path is outside the container's root; only root may connect).
    let dir_fd = dir.open()?;
    let start_socket =
        std::os::unix::net::UnixListener::bind(dir.short_path(&dir_fd, crate::state::START_SOCKET))
            .map_err(io_err(format!("create {}", dir.start_socket().display())))?;
    rustix::fs::chmod(dir.start_socket(), rustix::fs::Mode::from_raw_mode(0o600)).map_err(
        errno(format!("set the mode of {}", dir.start_socket().display())),
    )?;
    let console = opts
        .console_socket
        .as_deref()
        .map(crate::console::connect)
        .transpose()?;
    let created = crate::state::now_rfc3339();
    let mut saved = Saved {
        id: dir.id.clone(),
        bundle: bundle.dir.clone(),
        rootfs: bundle.rootfs.clone(),
        pid: 0,
        start_time: 0,
        created,
        cgroups: cgroup.dirs.clone(),
        config: spec.clone(),
        runtime_exe: (0, 0),
        own_mount_ns: plan.creates(LinuxNamespaceType::Mount)
            || plan.joins(LinuxNamespaceType::Mount),
    };
    let mut state = saved.oci_state(Status::Created);
    state["status"] = "created".into();
    let new_userns = plan.creates(LinuxNamespaceType::User);
    let (mut parent, child) = crate::sync::pair()?;
    let launch = Launch {
        bundle,
        plan,
        cgroup,
        cgroup_joins,
        start_socket,
        console,
        prepared,
        no_pivot: opts.no_pivot,
        state: state.clone(),
    };
    let intermediate = match sys::process::fork().map_err(io_err("fork"))? {
        Forked::Child => {
            drop(parent);
            crate::init::intermediate(launch, child)
        }
        Forked::Parent(pid) => pid,
    };
    drop(child);
    drop(launch);
    let hooks = spec.hooks().clone().unwrap_or_default();
    loop {
        match parent.recv()? {
            Some(Msg::UserNs) if new_userns => {
                let uids = linux.uid_mappings().clone().unwrap_or_default();
                let gids = linux.gid_mappings().clone().unwrap_or_default();
                crate::namespaces::write_maps(intermediate, &uids, &gids)?;
                parent.send(&Msg::Go)?;
            }
            Some(Msg::Pid(pid)) if init_pid.is_none() => {
                *init_pid = Some(pid);
                sys::process::wait(intermediate);
                parent.send(&Msg::Go)?;
            }
            Some(Msg::Hooks) if init_pid.is_some() => {
                state["pid"] = init_pid.unwrap_or(0).into();
                hooks::run(
                    "prestart",
                    hooks.prestart().as_deref().unwrap_or_default(),
                    &state,
                )?;
                hooks::run(
                    "createRuntime",
                    hooks.create_runtime().as_deref().unwrap_or_default(),
                    &state,
                )?;
                parent.send(&Msg::Go)?;
            }
            Some(Msg::Ready) if init_pid.is_some() => break,
            Some(Msg::Error(e)) => {
                if init_pid.is_none() {
                    sys::process::wait(intermediate);
                }
                return Err(RuntimeError::Init(e));
            }
            None => {
                if init_pid.is_none() {
                    sys::process::wait(intermediate);
                }
                return Err(RuntimeError::Init(
                    "the container's init ended during setup".into(),
                ));
            }
            Some(_) => {
                return Err(RuntimeError::Init(
                    "the container's init sent a message out of order".into(),
                ));
            }
        }
    }
    let pid = init_pid.unwrap_or(0);
    let (start_time, _) = crate::state::process_start(pid)
        .ok_or_else(|| RuntimeError::Init("the container's init ended during setup".into()))?;
    saved.pid = pid;
    saved.start_time = start_time;
    saved.runtime_exe = crate::state::exe_id(pid).unwrap_or((0, 0));
    dir.save(&saved)?;
    if let Some(path) = &opts.pid_file {
        write_pid_file(path, pid)?;
    }
    Ok(pid)
}

/// Starts a created container: its init execs the process.
pub fn start(root: &Path, id: &str) -> Result<()> {
    let dir = Dir::new(root, id)?;
    let _lock = dir.lock()?;
    let saved = dir.load()?;
    let status = saved.status(&dir);
    if status != Status::Created {
        return Err(RuntimeError::WrongState {
            id: id.into(),
            status: status.to_string(),
            what: "only a created container can be started".into(),
        });
    }
    let dir_fd = dir.open()?;
    let mut conn = std::os::unix::net::UnixStream::connect(
        dir.short_path(&dir_fd, crate::state::START_SOCKET),
    )
    .map_err(|e| {
        RuntimeError::Init(format!(
            "the init of container '{id}' is not waiting for start ({e})"
        ))
    })?;
    // Gone at once: a `start` that dies from here leaves a running
    // container, not one that says "created".
    let _ = std::fs::remove_file(dir.start_socket());
    conn.set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(io_err("set a timeout"))?;
    loop {
        let mut byte = [0u8; 1];
        match std::io::Read::read(&mut conn, &mut byte) {
            Ok(1) => break,
            Ok(_) => {
                return Err(RuntimeError::Init(format!(
                    "the init of container '{id}' ended before it started"
                )));
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(io_err("hear from the container's init")(e)),
        }
        if !saved.alive() {
            return Err(RuntimeError::Init(format!(
                "the init of container '{id}' ended before it started"
            )));
        }
    }
    let _ = std::fs::remove_file(dir.start_socket());
    let hooks = saved.config.hooks().clone().unwrap_or_default();
    let poststart = hooks.poststart().as_deref().unwrap_or_default();
    if !poststart.is_empty() {
        // Poststart hooks run once the process is executed: when init's
        // executable is no longer the runtime's (or init is gone).
        let deadline = Instant::now() + Duration::from_secs(10);
        while saved.alive()
            && crate::state::exe_id(saved.pid) == Some(saved.runtime_exe)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        hooks::run_warn("poststart", poststart, &saved.oci_state(Status::Running));
    }
    Ok(())
}

/// The runtime-spec state of a container.
pub fn state(root: &Path, id: &str) -> Result<serde_json::Value> {
    let dir = Dir::new(root, id)?;
    let saved = dir.load()?;
    Ok(saved.oci_state(saved.status(&dir)))
}

/// Sends `signal` to the container's init (or, with `all`, to every
/// process of its cgroup).
pub fn kill(root: &Path, id: &str, signal: i32, all: bool) -> Result<()> {
    let dir = Dir::new(root, id)?;
    let saved = dir.load()?;
    let status = saved.status(&dir);
    // `--all` also reaches what a stopped init left behind (containerd's
    // shim sends it when the init of a container in a shared pid
    // namespace has exited).
    if status == Status::Stopped && !all {
        return Err(not_running(id));
    }
    if all {
        let cgroup = Cgroup::from_dirs(&saved.cgroups);
        let pids = cgroup.pids();
        for pid in &pids {
            sys::process::kill(*pid, signal);
        }
        if pids.is_empty() && status != Status::Stopped {
            signal_init(&saved, signal)?;
        }
        if signal == libc::SIGKILL && status == Status::Paused {
            let _ = cgroup.freeze(false);
        }
        return Ok(());
    }
    signal_init(&saved, signal)
}

/// A stopped container has no process to signal. containerd's shim
/// recognises the words "container not running" (runc's) and takes the
/// container as already stopped.
fn not_running(id: &str) -> RuntimeError {
    RuntimeError::WrongState {
        id: id.into(),
        status: "stopped".into(),
        what: "container not running (there is no process to signal)".into(),
    }
}

fn signal_init(saved: &Saved, signal: i32) -> Result<()> {
    // A pidfd names this process even if the pid is reused after the
    // check below.
    let pidfd = rustix::process::Pid::from_raw(saved.pid)
        .map(|pid| rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()))
        .transpose()
        .ok()
        .flatten();
    if !saved.alive() {
        return Err(not_running(&saved.id));
    }
    let sig = rustix::process::Signal::from_named_raw(signal);
    match (pidfd, sig) {
        (Some(fd), Some(sig)) => rustix::process::pidfd_send_signal(fd.as_fd(), sig)
            .map_err(errno(format!("signal the container's init ({signal})"))),
        _ => {
            if sys::process::kill(saved.pid, signal) {
                Ok(())
            } else {
                Err(RuntimeError::Io {
                    what: format!("signal the container's init ({signal})"),
                    source: std::io::Error::last_os_error(),
                })
            }
        }
    }
}

/// Deletes a container: stopped ones (and created ones, whose init is
/// killed) at once, running ones only with `force` (killing every
/// process). Runs the poststop hooks.
pub fn delete(root: &Path, id: &str, force: bool) -> Result<()> {
    let dir = Dir::new(root, id)?;
    let saved = match dir.load() {
        Ok(saved) => saved,
        Err(RuntimeError::NotFound(_)) if dir.path.exists() => {
            // An aborted create left a directory without a state.
            dir.remove()?;
            return Ok(());
        }
        Err(RuntimeError::NotFound(_)) if force => return Ok(()),
        Err(e) => return Err(e),
    };
    let _lock = dir.lock()?;
    let cgroup = Cgroup::from_dirs(&saved.cgroups);
    let status = saved.status(&dir);
    match status {
        // A created container's init is killed; processes of a stopped
        // container without a pid namespace of its own may outlive its init.
        Status::Stopped | Status::Created => kill_all(&saved, &cgroup),
        Status::Running | Status::Paused if force => kill_all(&saved, &cgroup),
        _ => {
            return Err(RuntimeError::WrongState {
                id: id.into(),
                status: status.to_string(),
                what: "stop it first (kill), or delete it with --force".into(),
            });
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while (saved.alive() || !cgroup.pids().is_empty()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    if !saved.own_mount_ns {
        crate::init::unmount_under(&saved.rootfs);
    }
    cgroup.remove();
    let hooks = saved.config.hooks().clone().unwrap_or_default();
    hooks::run_warn(
        "poststop",
        hooks.poststop().as_deref().unwrap_or_default(),
        &saved.oci_state(Status::Stopped),
    );
    dir.remove()
}

/// SIGKILL to every process of the container, frozen first so that none
/// forks away meanwhile, until the cgroup is empty.
fn kill_all(saved: &Saved, cgroup: &Cgroup) {
    if saved.alive() {
        let _ = signal_init(saved, libc::SIGKILL);
    }
    for _ in 0..100 {
        let pids = cgroup.pids();
        if pids.is_empty() {
            break;
        }
        let _ = cgroup.freeze(true);
        for pid in &cgroup.pids() {
            sys::process::kill(*pid, libc::SIGKILL);
        }
        // Thawed whatever the freeze did (a FREEZING cgroup too): frozen
        // processes do not die of SIGKILL on v1.
        let _ = cgroup.freeze(false);
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The pids of the container's processes.
pub fn ps(root: &Path, id: &str) -> Result<Vec<i32>> {
    let dir = Dir::new(root, id)?;
    let saved = dir.load()?;
    let mut pids = Cgroup::from_dirs(&saved.cgroups).pids();
    if pids.is_empty() && saved.alive() {
        pids.push(saved.pid);
    }
    Ok(pids)
}

/// Freezes (`pause`) or thaws (`resume`) the container.
pub fn pause(root: &Path, id: &str, on: bool) -> Result<()> {
    let dir = Dir::new(root, id)?;
    let _lock = dir.lock()?;
    let saved = dir.load()?;
    let status = saved.status(&dir);
    let expected = if on { Status::Running } else { Status::Paused };
    if status != expected {
        return Err(RuntimeError::WrongState {
            id: id.into(),
            status: status.to_string(),
            what: format!(
                "only a {expected} container can be {}",
                if on { "paused" } else { "resumed" }
            ),
        });
    }
    Cgroup::from_dirs(&saved.cgroups).freeze(on)
}

/// Applies new resources to a container and records them.
pub fn update(root: &Path, id: &str, resources: &LinuxResources) -> Result<()> {
    let dir = Dir::new(root, id)?;
    let _lock = dir.lock()?;
    let mut saved = dir.load()?;
    let status = saved.status(&dir);
    if status == Status::Stopped {
        return Err(RuntimeError::WrongState {
            id: id.into(),
            status: status.to_string(),
            what: "a stopped container cannot be updated".into(),
        });
    }
    Cgroup::from_dirs(&saved.cgroups).apply(resources)?;
    let mut linux = saved.config.linux().clone().unwrap_or_default();
    linux.set_resources(Some(resources.clone()));
    saved.config.set_linux(Some(linux));
    dir.save(&saved)
}

/// `run`: create, start and (unless detached) wait for the container and
/// delete it; returns its exit status.
pub fn run(
    root: &Path,
    id: &str,
    bundle: &Bundle,
    opts: &CreateOptions,
    detach: bool,
) -> Result<i32> {
    if !detach {
        rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
            .map_err(errno("become a subreaper"))?;
    }
    let pid = create(root, id, bundle, opts)?;
    if let Err(e) = start(root, id) {
        let _ = delete(root, id, true);
        return Err(e);
    }
    if detach {
        return Ok(0);
    }
    skiff_stage1::supervise::forward_to(pid);
    let code = sys::process::wait(pid).map_or(1, skiff_stage1::exit_code);
    delete(root, id, true)?;
    Ok(code)
}

/// One line of `list`.
pub struct Listed {
    pub id: String,
    pub pid: i32,
    pub status: Status,
    pub bundle: PathBuf,
    pub created: String,
}

pub fn list(root: &Path) -> Vec<Listed> {
    crate::state::list(root)
        .into_iter()
        .filter_map(|id| {
            let dir = Dir::new(root, &id).ok()?;
            let saved = dir.load().ok()?;
            let status = saved.status(&dir);
            Some(Listed {
                id,
                pid: if status == Status::Stopped {
                    0
                } else {
                    saved.pid
                },
                status,
                bundle: saved.bundle,
                created: saved.created,
            })
        })
        .collect()
}
