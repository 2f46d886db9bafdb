//! Mounting and writing by file descriptor once the container's root is in
//! place. After pivot_root, `/proc` is the container's: a path like
//! `/proc/self/fd/N` or `/proc/self/attr/exec` may lead into a volume the
//! container controls (a symlink `/data -> /proc/self/fd` and a volume on
//! `/data`). So bind mounts go through `open_tree` + `move_mount`, read-only
//! flags through `mount_setattr`, and writes to procfs through a handle
//! checked to be procfs, resolved without symlinks or mount crossings.

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags, OpenTreeFlags};

use crate::{Result, RuntimeError, errno};

/// Binds what `source` names onto what `target` names.
pub fn bind(source: &impl AsFd, target: &impl AsFd, recursive: bool, what: &str) -> Result<()> {
    let mut flags = OpenTreeFlags::OPEN_TREE_CLONE
        | OpenTreeFlags::OPEN_TREE_CLOEXEC
        | OpenTreeFlags::AT_EMPTY_PATH;
    if recursive {
        flags |= OpenTreeFlags::AT_RECURSIVE;
    }
    let tree =
        rustix::mount::open_tree(source, "", flags).map_err(errno(format!("bind {what}")))?;
    attach(&tree, target, what)
}

/// Mounts a new read-only, empty tmpfs on `target`.
pub fn empty_tmpfs(target: &impl AsFd, what: &str) -> Result<()> {
    let fs = rustix::mount::fsopen("tmpfs", FsOpenFlags::FSOPEN_CLOEXEC)
        .map_err(errno(format!("mask {what}")))?;
    rustix::mount::fsconfig_create(&fs).map_err(errno(format!("mask {what}")))?;
    let mnt = rustix::mount::fsmount(
        &fs,
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::MOUNT_ATTR_RDONLY
            | MountAttrFlags::MOUNT_ATTR_NOSUID
            | MountAttrFlags::MOUNT_ATTR_NODEV
            | MountAttrFlags::MOUNT_ATTR_NOEXEC,
    )
    .map_err(errno(format!("mask {what}")))?;
    attach(&mnt, target, what)
}

/// Attaches a detached mount (`open_tree` clone, `fsmount`) on `target`.
pub fn attach(mount: &OwnedFd, target: &impl AsFd, what: &str) -> Result<()> {
    rustix::mount::move_mount(
        mount,
        "",
        target,
        "",
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
    )
    .map_err(errno(format!("mount on {what}")))
}

/// Whether `fd` is on procfs.
pub fn on_procfs(fd: &impl AsFd) -> bool {
    rustix::fs::fstatfs(fd).is_ok_and(|st| st.f_type == rustix::fs::PROC_SUPER_MAGIC)
}

/// The container's `/proc`, checked to be procfs.
pub struct Proc(OwnedFd);

impl Proc {
    pub fn open() -> Result<Proc> {
        let fd = rustix::fs::open(
            "/proc",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
        )
        .map_err(errno("open /proc"))?;
        if !on_procfs(&fd) {
            return Err(RuntimeError::Invalid(
                "/proc in the container is not procfs: mount proc on /proc (and nothing over it)"
                    .into(),
            ));
        }
        Ok(Proc(fd))
    }

    /// Writes `value` to `rel` (e.g. `sys/net/ipv4/ip_forward`,
    /// `<pid>/attr/exec`) below /proc: no symlink, no other mount.
    pub fn write(&self, rel: &str, value: &str) -> Result<()> {
        let fd = rustix::fs::openat2(
            &self.0,
            rel,
            OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH
                | ResolveFlags::NO_SYMLINKS
                | ResolveFlags::NO_MAGICLINKS
                | ResolveFlags::NO_XDEV,
        )
        .map_err(errno(format!("open /proc/{rel}")))?;
        std::fs::File::from(fd)
            .write_all(value.as_bytes())
            .map_err(crate::io_err(format!("write {value} to /proc/{rel}")))
    }

    /// This process's directory name in the container's /proc.
    pub fn own() -> String {
        rustix::process::getpid().as_raw_nonzero().to_string()
    }
}
