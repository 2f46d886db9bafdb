//! The container's processes during `create`, from fork to exec.
//!
//! ```text
//! create (host namespaces; exits once the container is created)
//!   └─ intermediate: joins the cgroup and the namespaces given by path,
//!        │            makes the user namespace (create writes its maps),
//!        │            unshares the others, forks and exits
//!        └─ init: pid 1 of a new pid namespace; mounts, devices, hooks,
//!                 pivot_root, then waits on exec.fifo for `start`, and
//!                 becomes the configured process
//! ```
//!
//! Two forks, as runc does: a pid namespace (and one owned by a new user
//! namespace) applies to the children of the process that made it.

use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::Path;

use oci_spec::runtime::{LinuxNamespaceType, Spec};
use skiff_stage1::sys::{self, process::Forked};

use crate::cgroup::Cgroup;
use crate::config::Bundle;
use crate::namespaces::Plan;
use crate::process::Prepared;
use crate::sync::{Channel, Msg};
use crate::{Result, RuntimeError, errno, hooks, io_err, rootfs};

/// Everything the container's processes need, made by `create` first.
pub struct Launch<'a> {
    pub bundle: &'a Bundle,
    pub plan: Plan,
    pub cgroup: &'a Cgroup,
    pub cgroup_joins: Vec<File>,
    pub start_socket: std::os::unix::net::UnixListener,
    pub console: Option<OwnedFd>,
    pub prepared: Prepared,
    pub no_pivot: bool,
    /// The state hooks get (its pid is filled in by init).
    pub state: serde_json::Value,
}

/// Joins the cgroup behind `joins` ([`Cgroup::join_files`]; writing `0`:
/// the caller, the intermediate process just forked, has one thread).
pub fn join_cgroup(joins: &[File]) -> Result<()> {
    for mut f in joins {
        f.write_all(b"0")
            .map_err(io_err("join the container's cgroup"))?;
    }
    Ok(())
}

/// The intermediate process (see the module docs); never returns.
pub fn intermediate(launch: Launch, mut chan: Channel) -> ! {
    let result = enter_namespaces(&launch, &mut chan)
        .and_then(|()| sys::process::fork().map_err(io_err("fork the container's init")));
    match result {
        Ok(Forked::Child) => init(launch, chan),
        Ok(Forked::Parent(pid)) => {
            let _ = chan.send(&Msg::Pid(pid));
            sys::process::exit_now(0)
        }
        Err(e) => {
            let _ = chan.send(&Msg::Error(crate::error_line(&e)));
            sys::process::exit_now(1)
        }
    }
}

/// The intermediate's work before it forks init.
fn enter_namespaces(launch: &Launch, chan: &mut Channel) -> Result<()> {
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .map_err(errno("make the runtime's process non-dumpable"))?;
    join_cgroup(&launch.cgroup_joins)?;
    launch.plan.join_user()?;
    if launch.plan.creates(LinuxNamespaceType::User) {
        crate::namespaces::unshare_user()?;
        chan.send(&Msg::UserNs)?;
        chan.wait_go()?;
        sys::ids::set_credentials(&[], 0, 0)
            .map_err(io_err("become root in the user namespace"))?;
    }
    launch.plan.join_others()?;
    launch.plan.unshare_others()
}

/// The container's init; never returns (it execs or exits).
fn init(launch: Launch, mut chan: Channel) -> ! {
    let spec = &launch.bundle.spec;
    let ready = (|| -> Result<(Option<OwnedFd>, serde_json::Value)> {
        chan.wait_go()?;
        set_up(&launch, spec, &mut chan)
    })();
    let (slave, state) = match ready {
        Ok(x) => x,
        Err(e) => {
            let _ = chan.send(&Msg::Error(crate::error_line(&e)));
            sys::process::exit_now(1)
        }
    };
    if chan.send(&Msg::Ready).is_err() {
        sys::process::exit_now(1);
    }
    drop(chan);
    let err = wait_and_exec(&launch, spec, slave, state);
    crate::log::error(&crate::error_line(&err));
    sys::process::exit_now(1)
}

fn set_up(
    launch: &Launch,
    spec: &Spec,
    chan: &mut Channel,
) -> Result<(Option<OwnedFd>, serde_json::Value)> {
    let plan = &launch.plan;
    let rootfs = launch.bundle.rootfs.as_path();
    let linux = spec.linux().clone().unwrap_or_default();
    // Our pid as the host sees it: the host's /proc is still in view.
    let host_pid: i32 = std::fs::read_link("/proc/self")
        .ok()
        .and_then(|p| p.to_string_lossy().parse().ok())
        .unwrap_or(0);
    let mut state = launch.state.clone();
    state["pid"] = host_pid.into();
    let in_userns = plan.creates(LinuxNamespaceType::User) || plan.joins(LinuxNamespaceType::User);
    // A joined mount namespace is pivoted in, as runc does: its other
    // processes move into the container's root with it (joining the
    // caller's own is refused by `create`). A chroot instead would be
    // escaped with CAP_SYS_CHROOT.
    let new_mount_ns =
        plan.creates(LinuxNamespaceType::Mount) || plan.joins(LinuxNamespaceType::Mount);
    if new_mount_ns {
        rootfs::prepare(rootfs, linux.rootfs_propagation().as_deref())?;
    }
    let dev_mount = rootfs::mount_all(&rootfs::Setup {
        spec,
        bundle: &launch.bundle.dir,
        rootfs,
        in_userns,
        cgroup: launch.cgroup,
        new_cgroupns: plan.creates(LinuxNamespaceType::Cgroup),
    })?;
    rootfs::make_devices(spec, rootfs, in_userns, dev_mount)?;
    let h = spec.hooks().clone().unwrap_or_default();
    let runtime_hooks =
        h.prestart().iter().flatten().count() + h.create_runtime().iter().flatten().count();
    if runtime_hooks > 0 {
        chan.send(&Msg::Hooks)?;
        chan.wait_go()?;
    }
    hooks::run(
        "createContainer",
        h.create_container().as_deref().unwrap_or_default(),
        &state,
    )?;
    // Detached copies of the host's /dev/null, one per masked path, made
    // while it is in view: files are masked with them after the pivot.
    let nulls = rootfs::null_mounts(spec)?;
    rootfs::enter(rootfs, launch.no_pivot, new_mount_ns)?;
    let process = launch.prepared.process();
    let slave = match &launch.console {
        Some(socket) => Some(crate::console::open(
            socket,
            process.console_size().map(|b| (b.height(), b.width())),
            true,
        )?),
        None => None,
    };
    rootfs::finalize(spec, nulls)?;
    if let Some(hostname) = spec.hostname() {
        if !plan.creates(LinuxNamespaceType::Uts) && !plan.joins(LinuxNamespaceType::Uts) {
            return Err(RuntimeError::Invalid(
                "hostname is set but the container has no UTS namespace of its own (add one to linux.namespaces)".into(),
            ));
        }
        rustix::system::sethostname(hostname.as_bytes())
            .map_err(errno(format!("set the hostname {hostname}")))?;
    }
    if let Some(domain) = spec.domainname() {
        rustix::system::setdomainname(domain.as_bytes())
            .map_err(errno(format!("set the domain name {domain}")))?;
    }
    Ok((slave, state))
}

/// Blocks until `start` opens exec.fifo, then runs the startContainer
/// hooks and becomes the process; returns only on failure.
fn wait_and_exec(
    launch: &Launch,
    spec: &Spec,
    slave: Option<OwnedFd>,
    mut state: serde_json::Value,
) -> RuntimeError {
    let result = (|| -> Result<()> {
        // `start` connects; it hears one byte once this process goes on.
        let (mut conn, _) = launch
            .start_socket
            .accept()
            .map_err(io_err("wait for start"))?;
        // `start` may have gone meanwhile: the container starts anyway.
        let _ = conn.write_all(b"0");
        drop(conn);
        state["status"] = "running".into();
        let h = spec.hooks().clone().unwrap_or_default();
        hooks::run(
            "startContainer",
            h.start_container().as_deref().unwrap_or_default(),
            &state,
        )?;
        if let Some(slave) = &slave {
            skiff_stage1::tty::attach(slave)?;
        }
        launch.prepared.become_process()
    })();
    match result {
        Ok(()) => launch.prepared.exec(),
        Err(e) => e,
    }
}

/// Unmounts every mount under `root` (what a container without its own
/// mount namespace left in the host's), deepest first, going on past a
/// failure.
pub fn unmount_under(root: &Path) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for point in skiff_pod::mounts::mount_points_under(&info, root) {
        let _ = rustix::mount::unmount(&point, rustix::mount::UnmountFlags::DETACH);
    }
}
