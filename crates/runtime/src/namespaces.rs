//! The namespaces of a container: new ones (unshared) and existing ones
//! joined by path (a pod sandbox's network, IPC and UTS namespaces).
//! Paths are opened by the create process, before it forks: a path that
//! does not name a namespace of the right type is refused there.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;

use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType};
use rustix::thread::{LinkNameSpaceType, UnshareFlags};

use crate::{Result, RuntimeError, errno, io_err};

/// The order namespaces are joined in: the user namespace first (joining
/// the others needs its capabilities), the mount namespace last (its root
/// hides the host's paths).
const JOIN_ORDER: [LinuxNamespaceType; 8] = [
    LinuxNamespaceType::User,
    LinuxNamespaceType::Ipc,
    LinuxNamespaceType::Uts,
    LinuxNamespaceType::Network,
    LinuxNamespaceType::Pid,
    LinuxNamespaceType::Cgroup,
    LinuxNamespaceType::Time,
    LinuxNamespaceType::Mount,
];

fn link_type(t: LinuxNamespaceType) -> LinkNameSpaceType {
    match t {
        LinuxNamespaceType::User => LinkNameSpaceType::User,
        LinuxNamespaceType::Ipc => LinkNameSpaceType::InterProcessCommunication,
        LinuxNamespaceType::Uts => LinkNameSpaceType::HostNameAndNISDomainName,
        LinuxNamespaceType::Network => LinkNameSpaceType::Network,
        LinuxNamespaceType::Pid => LinkNameSpaceType::ProcessID,
        LinuxNamespaceType::Cgroup => LinkNameSpaceType::ControlGroup,
        LinuxNamespaceType::Time => LinkNameSpaceType::Time,
        LinuxNamespaceType::Mount => LinkNameSpaceType::Mount,
    }
}

fn flag(t: LinuxNamespaceType) -> UnshareFlags {
    match t {
        LinuxNamespaceType::User => UnshareFlags::NEWUSER,
        LinuxNamespaceType::Ipc => UnshareFlags::NEWIPC,
        LinuxNamespaceType::Uts => UnshareFlags::NEWUTS,
        LinuxNamespaceType::Network => UnshareFlags::NEWNET,
        LinuxNamespaceType::Pid => UnshareFlags::NEWPID,
        LinuxNamespaceType::Cgroup => UnshareFlags::NEWCGROUP,
        LinuxNamespaceType::Time => UnshareFlags::NEWTIME,
        LinuxNamespaceType::Mount => UnshareFlags::NEWNS,
    }
}

/// The /proc/<pid>/ns/ name of a type.
pub fn proc_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Time => "time",
        LinuxNamespaceType::Mount => "mnt",
    }
}

/// Namespaces to join (open files) and to create.
#[derive(Debug, Default)]
pub struct Plan {
    pub join: Vec<(LinuxNamespaceType, File)>,
    pub new: Vec<LinuxNamespaceType>,
}

impl Plan {
    pub fn of(list: &[LinuxNamespace]) -> Result<Plan> {
        let mut plan = Plan::default();
        for ns in list {
            match ns.path() {
                Some(path) => {
                    let file = File::open(path).map_err(io_err(format!(
                        "open the {} namespace {}",
                        proc_name(ns.typ()),
                        path.display()
                    )))?;
                    plan.join.push((ns.typ(), file));
                }
                None => plan.new.push(ns.typ()),
            }
        }
        plan.join
            .sort_by_key(|(t, _)| JOIN_ORDER.iter().position(|o| o == t));
        Ok(plan)
    }

    /// Joins of the running container `pid`'s namespaces that differ from
    /// this process's (for `exec`).
    pub fn of_process(pid: i32) -> Result<Plan> {
        let mut plan = Plan::default();
        for t in JOIN_ORDER {
            let theirs = format!("/proc/{pid}/ns/{}", proc_name(t));
            let ours = format!("/proc/self/ns/{}", proc_name(t));
            let (Ok(a), Ok(b)) = (std::fs::metadata(&theirs), std::fs::metadata(&ours)) else {
                continue;
            };
            use std::os::unix::fs::MetadataExt;
            if (a.dev(), a.ino()) == (b.dev(), b.ino()) {
                continue;
            }
            let file = File::open(&theirs).map_err(io_err(format!("open {theirs}")))?;
            plan.join.push((t, file));
        }
        Ok(plan)
    }

    /// Whether the namespace of type `t` joined by path is this process's
    /// own (the host's, for `create`).
    pub fn joins_own(&self, t: LinuxNamespaceType) -> bool {
        use std::os::unix::fs::MetadataExt;
        let ours = std::fs::metadata(format!("/proc/self/ns/{}", proc_name(t)));
        self.join.iter().any(|(j, file)| {
            *j == t
                && match (file.metadata(), &ours) {
                    (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
                    _ => false,
                }
        })
    }

    /// The open file of the namespace of type `t` joined by path.
    pub fn joined_file(&self, t: LinuxNamespaceType) -> Option<&File> {
        self.join.iter().find(|(j, _)| *j == t).map(|(_, f)| f)
    }

    pub fn creates(&self, t: LinuxNamespaceType) -> bool {
        self.new.contains(&t)
    }

    pub fn joins(&self, t: LinuxNamespaceType) -> bool {
        self.join.iter().any(|(j, _)| *j == t)
    }

    /// Joins the user namespace to join, if any (first of all).
    pub fn join_user(&self) -> Result<()> {
        for (t, file) in &self.join {
            if *t == LinuxNamespaceType::User {
                join(*t, file)?;
            }
        }
        Ok(())
    }

    /// Joins every other namespace, in [`JOIN_ORDER`].
    pub fn join_others(&self) -> Result<()> {
        for (t, file) in &self.join {
            if *t != LinuxNamespaceType::User {
                join(*t, file)?;
            }
        }
        Ok(())
    }

    /// Creates every new namespace but the user namespace: the mount,
    /// UTS, IPC, network, cgroup and time namespaces for this process,
    /// the pid namespace for its next child.
    pub fn unshare_others(&self) -> Result<()> {
        let flags = self
            .new
            .iter()
            .filter(|t| **t != LinuxNamespaceType::User)
            .fold(UnshareFlags::empty(), |f, t| f | flag(*t));
        if flags.is_empty() {
            return Ok(());
        }
        skiff_stage1::sys::process::unshare(flags)
            .map_err(errno("create the container's namespaces"))
    }
}

fn join(t: LinuxNamespaceType, file: &File) -> Result<()> {
    rustix::thread::move_into_link_name_space(file.as_fd(), Some(link_type(t))).map_err(|e| {
        if e == rustix::io::Errno::INVAL {
            RuntimeError::Invalid(format!(
                "the {} namespace path does not name a {} namespace",
                proc_name(t),
                proc_name(t)
            ))
        } else {
            errno(format!("join the {} namespace", proc_name(t)))(e)
        }
    })
}

/// Creates the user namespace (the create process then writes its maps).
pub fn unshare_user() -> Result<()> {
    skiff_stage1::sys::process::unshare(UnshareFlags::NEWUSER)
        .map_err(errno("create the user namespace"))
}

/// Writes `/proc/<pid>/{uid,gid}_map` for a new user namespace.
pub fn write_maps(
    pid: i32,
    uids: &[oci_spec::runtime::LinuxIdMapping],
    gids: &[oci_spec::runtime::LinuxIdMapping],
) -> Result<()> {
    let text = |maps: &[oci_spec::runtime::LinuxIdMapping]| {
        maps.iter()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect::<String>()
    };
    for (file, maps) in [("uid_map", uids), ("gid_map", gids)] {
        if maps.is_empty() {
            continue;
        }
        let path = Path::new("/proc").join(pid.to_string()).join(file);
        std::fs::write(&path, text(maps)).map_err(io_err(format!("write {}", path.display())))?;
    }
    Ok(())
}
