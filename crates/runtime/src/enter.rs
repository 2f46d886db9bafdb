//! `exec`: a new process in a running container. An intermediate process
//! joins the container's cgroup and namespaces (those that differ from the
//! caller's, the user namespace first), forks the process, which enters
//! the container's root and becomes the configured process with the
//! container's seccomp profile. The caller runs from a sealed copy of the
//! binary (see [`crate::selfexe`]): it enters a pid namespace where the
//! container's processes run.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use oci_spec::runtime::Process;
use skiff_stage1::sys::{self, process::Forked};

use crate::cgroup::Cgroup;
use crate::namespaces::Plan;
use crate::process::Prepared;
use crate::state::{Dir, Status};
use crate::sync::Msg;
use crate::{Result, RuntimeError, errno, io_err};

pub struct ExecOptions {
    pub process: Process,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub preserve_fds: u32,
    /// The process was given on the command line (not with --process):
    /// what it does not set comes from the container's process, as with
    /// runc — no_new_privs, capabilities, AppArmor and SELinux labels.
    pub inherit: bool,
    /// With `inherit`: whether the user was given (else the container's).
    pub user_given: bool,
}

/// `process` with what it leaves unset taken from the container's.
fn inherited(mut process: Process, container: Option<&Process>, user_given: bool) -> Process {
    let Some(c) = container else {
        return process;
    };
    if !user_given {
        process.set_user(c.user().clone());
    }
    if c.no_new_privileges() == Some(true) {
        process.set_no_new_privileges(Some(true));
    }
    if process.capabilities().is_none() {
        process.set_capabilities(c.capabilities().clone());
    }
    if process.apparmor_profile().is_none() {
        process.set_apparmor_profile(c.apparmor_profile().clone());
    }
    if process.selinux_label().is_none() {
        process.set_selinux_label(c.selinux_label().clone());
    }
    process
}

/// Runs the process; returns its exit status (0 when detached).
pub fn exec(dir: &Dir, opts: ExecOptions) -> Result<i32> {
    let saved = dir.load()?;
    // A pidfd names the container's init even if it ends and its pid is
    // reused while its namespaces are opened below; checked again after.
    let pidfd = rustix::process::Pid::from_raw(saved.pid).and_then(|pid| {
        rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
    });
    let status = saved.status(dir);
    // Not a created container: its init still runs the runtime's binary
    // (not a sealed copy) in the container's pid namespace.
    if status != Status::Running || pidfd.is_none() {
        return Err(RuntimeError::WrongState {
            id: dir.id.clone(),
            status: status.to_string(),
            what: "exec needs a running container (start it first)".into(),
        });
    }
    let mut process = if opts.inherit {
        inherited(
            opts.process.clone(),
            saved.config.process().as_ref(),
            opts.user_given,
        )
    } else {
        opts.process.clone()
    };
    crate::capabilities::drop_ungrantable(&mut process)?;
    let terminal = process.terminal().unwrap_or(false);
    if terminal != opts.console_socket.is_some() {
        return Err(RuntimeError::Invalid(
            "a terminal (--tty, process.terminal) needs --console-socket, and --console-socket needs a terminal".into(),
        ));
    }
    let seccomp = saved
        .config
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().clone());
    let prepared = Prepared::new(&process, seccomp.as_ref(), opts.preserve_fds)?;
    let plan = Plan::of_process(saved.pid)?;
    let root = File::open(format!("/proc/{}/root", saved.pid))
        .map_err(io_err("open the container's root"))?;
    let joins = Cgroup::from_dirs(&saved.cgroups).join_files()?;
    if !saved.alive() {
        return Err(RuntimeError::WrongState {
            id: dir.id.clone(),
            status: "stopped".into(),
            what: "exec needs a running container".into(),
        });
    }
    drop(pidfd);
    let console = opts
        .console_socket
        .as_deref()
        .map(crate::console::connect)
        .transpose()?;
    if !opts.detach {
        rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
            .map_err(errno("become a subreaper"))?;
    }
    let (mut parent, mut child) = crate::sync::pair()?;
    match sys::process::fork().map_err(io_err("fork"))? {
        Forked::Child => {
            drop(parent);
            let result = (|| -> Result<i32> {
                rustix::process::set_dumpable_behavior(
                    rustix::process::DumpableBehavior::NotDumpable,
                )
                .map_err(errno("make the runtime's process non-dumpable"))?;
                crate::init::join_cgroup(&joins)?;
                plan.join_user()?;
                plan.join_others()?;
                match sys::process::fork().map_err(io_err("fork the process"))? {
                    Forked::Parent(pid) => Ok(pid),
                    Forked::Child => {
                        let err = become_in(&mut child, &root, console, &prepared);
                        let _ = child.send(&Msg::Error(crate::error_line(&err)));
                        sys::process::exit_now(1)
                    }
                }
            })();
            let msg = match result {
                Ok(pid) => Msg::Pid(pid),
                Err(e) => Msg::Error(crate::error_line(&e)),
            };
            let _ = child.send(&msg);
            sys::process::exit_now(0)
        }
        Forked::Parent(intermediate) => {
            drop(child);
            drop(joins);
            drop(root);
            let pid = match parent.recv()? {
                Some(Msg::Pid(pid)) => pid,
                Some(Msg::Error(e)) => return Err(RuntimeError::Init(e)),
                _ => {
                    return Err(RuntimeError::Init(
                        "the process ended before it joined the container".into(),
                    ));
                }
            };
            sys::process::wait(intermediate);
            parent.send(&Msg::Go)?;
            // The socket closes on exec; an error arrives before that.
            match parent.recv()? {
                None => {}
                Some(Msg::Error(e)) => {
                    sys::process::wait(pid);
                    return Err(RuntimeError::Init(e));
                }
                Some(_) => {
                    return Err(RuntimeError::Init(
                        "the process sent a malformed message".into(),
                    ));
                }
            }
            if let Some(path) = &opts.pid_file {
                crate::container::write_pid_file(path, pid)?;
            }
            if opts.detach {
                return Ok(0);
            }
            skiff_stage1::supervise::forward_to(pid);
            Ok(sys::process::wait(pid).map_or(1, skiff_stage1::exit_code))
        }
    }
}

/// In the process: waits for the go, enters the container's root, becomes
/// the process; returns only on failure.
fn become_in(
    chan: &mut crate::sync::Channel,
    root: &File,
    console: Option<OwnedFd>,
    prepared: &Prepared,
) -> RuntimeError {
    let result = (|| -> Result<()> {
        chan.wait_go()?;
        rustix::process::fchdir(root).map_err(errno("enter the container's root"))?;
        rustix::process::chroot(".").map_err(errno("enter the container's root"))?;
        let process = prepared.process();
        if let Some(socket) = &console {
            let slave = crate::console::open(
                socket,
                process.console_size().map(|b| (b.height(), b.width())),
                false,
            )?;
            skiff_stage1::tty::attach(&slave)?;
        }
        prepared.become_process()
    })();
    match result {
        Ok(()) => prepared.exec(),
        Err(e) => e,
    }
}
