//! `--private-users`: the pod's user namespace and the idmapped mounts
//! that show image files with their in-pod owners.
//!
//! Init stays in the host user namespace (it owns the pod's mount, pid,
//! UTS and IPC namespaces, so all setup keeps working); each app joins the
//! pod's user namespace last, after its root is built, so root in the app
//! has capabilities only over that user namespace and owns nothing else.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use rustix::mount::{MoveMountFlags, OpenTreeFlags};
use rustix::thread::{LinkNameSpaceType, UnshareFlags};

use crate::Stage1Error;
use crate::setup_err;

/// Whether this process is root of the host: uid 0 in the initial user
/// namespace (its uid_map maps every id unshifted). Root of an ordinary
/// user's namespace (a rootless pod's stage1) is not.
pub fn is_host_root() -> bool {
    rustix::process::geteuid().is_root()
        && skiff_pod::idmap::is_initial(&skiff_pod::idmap::of_this_process(
            skiff_pod::idmap::Ids::Uid,
        ))
}

/// Creates a user namespace mapping ids `0..size` to `base..base+size` and
/// returns a descriptor of it. A short-lived child unshares it; this
/// process (privileged in the parent namespace) writes the maps.
pub fn create(base: u32, size: u32) -> Result<OwnedFd, Stage1Error> {
    let (ready_r, ready_w) = pipe()?;
    let (done_r, done_w) = pipe()?;
    let forked =
        crate::sys::process::fork().map_err(setup_err("fork the user namespace holder"))?;
    let child = match forked {
        crate::sys::process::Forked::Parent(child) => child,
        crate::sys::process::Forked::Child => {
            drop(ready_r);
            drop(done_w);
            let ok = crate::sys::process::unshare(UnshareFlags::NEWUSER).is_ok();
            let _ = std::fs::File::from(ready_w).write_all(&[u8::from(ok)]);
            let _ = std::fs::File::from(done_r).read(&mut [0u8]);
            crate::sys::process::exit_now(0);
        }
    };
    drop(ready_w);
    drop(done_r);
    let result = (|| {
        let mut byte = [0u8];
        std::fs::File::from(ready_r)
            .read_exact(&mut byte)
            .map_err(setup_err("wait for the user namespace holder"))?;
        if byte[0] != 1 {
            return Err(Stage1Error::Config(
                "cannot create a user namespace (is user.max_user_namespaces 0?)".into(),
            ));
        }
        let map = format!("0 {base} {size}\n");
        for file in ["uid_map", "gid_map"] {
            let path = format!("/proc/{child}/{file}");
            std::fs::write(&path, &map).map_err(setup_err(format!("write {path}")))?;
        }
        let path = format!("/proc/{child}/ns/user");
        std::fs::File::open(&path)
            .map(OwnedFd::from)
            .map_err(setup_err(format!("open {path}")))
    })();
    drop(done_w);
    crate::sys::process::wait(child);
    result
}

fn pipe() -> Result<(OwnedFd, OwnedFd), Stage1Error> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| setup_err("create a pipe")(e.into()))
}

/// Mounts `source` again at `target` (an existing directory), with file
/// ownership seen through `userns`'s id map.
pub fn bind_idmapped(source: &Path, target: &Path, userns: &OwnedFd) -> Result<(), Stage1Error> {
    let what = |step: &str| format!("{step} an idmapped mount of {}", source.display());
    let tree = rustix::mount::open_tree(
        rustix::fs::CWD,
        source,
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
    )
    .map_err(|e| setup_err(what("open"))(e.into()))?;
    crate::mounts::mount_setattr(&tree, crate::mounts::ATTR_IDMAP, false, Some(userns))
        .map_err(setup_err(what("idmap")))?;
    rustix::mount::move_mount(
        tree.as_fd(),
        "",
        rustix::fs::CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|e| setup_err(what("attach"))(e.into()))
}

/// Joins the user namespace `userns` (the last namespace an app joins).
pub fn join(userns: &OwnedFd) -> Result<(), Stage1Error> {
    rustix::thread::move_into_link_name_space(userns.as_fd(), Some(LinkNameSpaceType::User))
        .map_err(|e| setup_err("join the pod's user namespace")(e.into()))
}
