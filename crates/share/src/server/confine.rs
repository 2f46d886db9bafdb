//! The server's confinement, set up once before it serves: a mount
//! namespace whose root is an empty read-only tmpfs holding exactly the
//! four shared directories, bound read-only (and nosuid, nodev, noexec);
//! then no capabilities, no new privileges, and (when started as root) an
//! unprivileged user. What a bug in the server could reach is what it
//! serves anyway.
//!
//! Started by another user, it does the same in a user namespace of its
//! own (that user mapped to root there, then every capability dropped).

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags, StatVfsMountFlags};
use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};
use rustix::thread::UnshareFlags;
use skiff_io::{IoError, io_err};
use skiff_store::serving::ServedDirs;

/// Where the new root is mounted before it becomes `/` (in the server's
/// own mount namespace only).
const STAGING: &str = "/tmp";

/// The unprivileged user a server started by root becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeUser {
    pub uid: u32,
    pub gid: u32,
}

impl Default for ServeUser {
    /// `nobody` (65534), as Debian numbers it.
    fn default() -> Self {
        ServeUser {
            uid: 65534,
            gid: 65534,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    #[error("the server must confine itself before it starts any thread, but this process has {0}")]
    Threads(usize),
    #[error(transparent)]
    Step(#[from] IoError),
}

fn sys(step: impl Into<String>) -> impl FnOnce(rustix::io::Errno) -> IoError {
    let step = step.into();
    move |e| IoError::new(step, e.into())
}

/// Confines this (single-threaded) process to `dirs`, read-only; returns
/// the directories as the confined process sees them.
pub fn confine(dirs: &ServedDirs, user: ServeUser) -> Result<ServedDirs, ConfineError> {
    let threads = std::fs::read_dir("/proc/self/task")
        .map_err(io_err("read /proc/self/task"))?
        .count();
    if threads != 1 {
        return Err(ConfineError::Threads(threads));
    }
    let root = rustix::process::geteuid().is_root();
    // Root of the host: it can become the serving user. Root of a user
    // namespace (an ordinary user's skiff runs in one) keeps its IDs and
    // drops its capabilities, as an ordinary user does in its own.
    let host_root = root && initial_user_namespace();
    if root {
        unshare(UnshareFlags::NEWNS)?;
    } else {
        let (uid, gid) = (
            rustix::process::getuid().as_raw(),
            rustix::process::getgid().as_raw(),
        );
        unshare(UnshareFlags::NEWUSER | UnshareFlags::NEWNS)?;
        std::fs::write("/proc/self/setgroups", "deny")
            .map_err(io_err("write /proc/self/setgroups"))?;
        std::fs::write("/proc/self/uid_map", format!("0 {uid} 1"))
            .map_err(io_err("write /proc/self/uid_map"))?;
        std::fs::write("/proc/self/gid_map", format!("0 {gid} 1"))
            .map_err(io_err("write /proc/self/gid_map"))?;
    }
    rustix::mount::mount_change(
        "/",
        MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
    )
    .map_err(sys("make the server's mounts private"))?;
    // Opened in the new namespace (a bind takes its source from the
    // caller's own mounts) and before the tmpfs may cover them.
    let shared = [
        ("aci", open_dir(&dirs.aci)?),
        ("layers", open_dir(&dirs.layers)?),
        ("signatures", open_dir(&dirs.signatures)?),
        ("partial", open_dir(&dirs.partial)?),
    ];
    let quiet = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    rustix::mount::mount(
        "tmpfs",
        STAGING,
        "tmpfs",
        quiet,
        Some(c"size=64k,mode=0755"),
    )
    .map_err(sys(format!("mount a tmpfs on {STAGING}")))?;
    let mut inside = Vec::new();
    for (name, fd) in &shared {
        let target = Path::new(STAGING).join(name);
        rustix::fs::mkdir(&target, Mode::from_raw_mode(0o755))
            .map_err(sys(format!("create {}", target.display())))?;
        let source = format!("/proc/self/fd/{}", fd.as_raw_fd());
        rustix::mount::mount_bind_recursive(source.as_str(), &target)
            .map_err(sys(format!("bind {}", target.display())))?;
        // Remounting a bind must keep the flags it cannot lose in a user
        // namespace (atime ones); read-only and the rest are added.
        let kept = rustix::fs::statvfs(&target)
            .map_err(sys(format!("inspect {}", target.display())))?
            .f_flag;
        let mut flags = MountFlags::BIND | MountFlags::RDONLY | quiet;
        for (st, ms) in [
            (StatVfsMountFlags::NOATIME, MountFlags::NOATIME),
            (StatVfsMountFlags::NODIRATIME, MountFlags::NODIRATIME),
            (StatVfsMountFlags::RELATIME, MountFlags::RELATIME),
        ] {
            if kept.contains(st) {
                flags |= ms;
            }
        }
        rustix::mount::mount_remount(&target, flags, "")
            .map_err(sys(format!("make {} read-only", target.display())))?;
        inside.push(PathBuf::from("/").join(name));
    }
    drop(shared);
    std::env::set_current_dir(STAGING).map_err(io_err(format!("enter {STAGING}")))?;
    rustix::process::pivot_root(".", ".").map_err(sys("pivot into the server's root"))?;
    rustix::mount::unmount(".", UnmountFlags::DETACH).map_err(sys("detach the host's root"))?;
    std::env::set_current_dir("/").map_err(io_err("enter the server's root"))?;
    rustix::mount::mount_remount("/", MountFlags::RDONLY | quiet, "")
        .map_err(sys("make the server's root read-only"))?;
    drop_privileges(host_root, user)?;
    let [aci, layers, signatures, partial]: [PathBuf; 4] = inside.try_into().map_err(|_| {
        IoError::new(
            "bind the shared directories",
            std::io::ErrorKind::Other.into(),
        )
    })?;
    Ok(ServedDirs {
        aci,
        layers,
        signatures,
        partial,
    })
}

/// Whether this process is in the host's user namespace (all IDs mapped
/// to themselves).
fn initial_user_namespace() -> bool {
    std::fs::read_to_string("/proc/self/uid_map")
        .is_ok_and(|map| map.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"])
}

/// Closes the descriptors this process inherited (those without
/// close-on-exec: skiff opens every one of its own with it), so the
/// confined server holds nothing of the host's: a directory descriptor
/// would lead out of its mount namespace.
pub fn close_inherited() -> Result<(), IoError> {
    // Standard descriptors stay, but not as a way out: one that is a
    // directory (`< /`) becomes /dev/null.
    let null = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(io_err("open /dev/null"))?;
    let dirs = [0, 1, 2].map(|raw| {
        // SAFETY: 0, 1 and 2 are only borrowed to read their type; a closed
        // one fails the call.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(raw) };
        rustix::fs::fstat(fd).is_ok_and(|st| {
            rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory
        })
    });
    if dirs[0] {
        rustix::stdio::dup2_stdin(&null).map_err(sys("replace stdin"))?;
    }
    if dirs[1] {
        rustix::stdio::dup2_stdout(&null).map_err(sys("replace stdout"))?;
    }
    if dirs[2] {
        rustix::stdio::dup2_stderr(&null).map_err(sys("replace stderr"))?;
    }
    drop(null);
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map_err(io_err("read /proc/self/fd"))?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for raw in fds {
        // SAFETY: `raw` was open when listed and is only borrowed to read
        // its flags; a descriptor closed meanwhile (the listing's own)
        // fails the call, which is ignored.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(raw) };
        match rustix::io::fcntl_getfd(fd) {
            Ok(flags) if !flags.contains(rustix::io::FdFlags::CLOEXEC) => {
                // SAFETY: an inherited descriptor (no close-on-exec), which
                // nothing in this process owns or will close again.
                unsafe { rustix::io::close(raw) };
            }
            _ => {}
        }
    }
    Ok(())
}

fn open_dir(path: &Path) -> Result<OwnedFd, IoError> {
    rustix::fs::open(
        path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(sys(format!("open {}", path.display())))
}

fn unshare(flags: UnshareFlags) -> Result<(), IoError> {
    // SAFETY: unshare changes the calling thread's namespaces; `confine`
    // checked that this process has only this thread, so no other thread
    // is left behind in the old namespaces or shares its filesystem state.
    unsafe { rustix::thread::unshare_unsafe(flags) }.map_err(sys("create the server's namespaces"))
}

/// Root becomes `user` (which loses every capability); another user, root
/// in its own namespace, drops its capabilities there.
fn drop_privileges(root: bool, user: ServeUser) -> Result<(), IoError> {
    caps::clear(None, caps::CapSet::Bounding)
        .map_err(|e| IoError::new("drop the bounding capabilities", std::io::Error::other(e)))?;
    if root {
        let (uid, gid) = (
            rustix::process::Uid::from_raw(user.uid),
            rustix::process::Gid::from_raw(user.gid),
        );
        rustix::thread::set_thread_groups(&[]).map_err(sys("drop supplementary groups"))?;
        rustix::thread::set_thread_res_gid(gid, gid, gid)
            .map_err(sys(format!("become group {}", user.gid)))?;
        rustix::thread::set_thread_res_uid(uid, uid, uid)
            .map_err(sys(format!("become user {}", user.uid)))?;
        let became = (
            rustix::process::getuid().as_raw(),
            rustix::process::geteuid().as_raw(),
            rustix::process::getgid().as_raw(),
            rustix::process::getegid().as_raw(),
        );
        if became != (user.uid, user.uid, user.gid, user.gid) {
            return Err(IoError::new(
                format!("become {}:{} (still {became:?})", user.uid, user.gid),
                std::io::ErrorKind::PermissionDenied.into(),
            ));
        }
    }
    for set in [
        caps::CapSet::Effective,
        caps::CapSet::Permitted,
        caps::CapSet::Inheritable,
        caps::CapSet::Ambient,
    ] {
        caps::clear(None, set)
            .map_err(|e| IoError::new("drop capabilities", std::io::Error::other(e)))?;
    }
    rustix::thread::set_no_new_privs(true).map_err(sys("set no_new_privs"))?;
    Ok(())
}
