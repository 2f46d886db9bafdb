//! mount_setattr(2), which rustix does not wrap.

use std::os::fd::{AsRawFd, BorrowedFd};

/// `struct mount_attr` from <linux/mount.h>.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// mount_setattr on the mount behind `target` (an fd, empty path): sets
/// `attrs` (on every submount too when `recursive`), with `userns` the
/// user namespace of `MOUNT_ATTR_IDMAP`.
pub fn mount_setattr(
    target: BorrowedFd<'_>,
    attrs: u64,
    recursive: bool,
    userns: Option<BorrowedFd<'_>>,
) -> std::io::Result<()> {
    setattr(
        target,
        MountAttr {
            attr_set: attrs,
            attr_clr: 0,
            propagation: 0,
            userns_fd: userns.map_or(0, |fd| fd.as_raw_fd() as u64),
        },
        recursive,
    )
}

/// mount_setattr clearing `attrs` (`MOUNT_ATTR_*`) on the mount behind
/// `target` (and every submount when `recursive`).
pub fn mount_setattr_clear(
    target: BorrowedFd<'_>,
    attrs: u64,
    recursive: bool,
) -> std::io::Result<()> {
    setattr(
        target,
        MountAttr {
            attr_set: 0,
            attr_clr: attrs,
            propagation: 0,
            userns_fd: 0,
        },
        recursive,
    )
}

fn setattr(target: BorrowedFd<'_>, attr: MountAttr, recursive: bool) -> std::io::Result<()> {
    let flags = libc::AT_EMPTY_PATH | if recursive { libc::AT_RECURSIVE } else { 0 };
    // SAFETY: mount_setattr on a borrowed fd, with an empty path and a
    // fully initialised `struct mount_attr` of the size we pass.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            target.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
