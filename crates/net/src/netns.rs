//! Persistent network namespaces: an nsfs bind mount on a file (as
//! `ip netns add` does), so the namespace outlives the pod's processes until
//! its networks have been deleted — CNI DEL needs it to find what to remove.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;

use rustix::thread::{LinkNameSpaceType, UnshareFlags};

use crate::{NetError, io_err};

/// Creates a network namespace bound at `path`, with `lo` up and ports
/// below 1024 open to the pod's own users (its namespace only, as Docker
/// does: with `--private-users` no app holds host capabilities over it).
pub fn create(path: &Path) -> Result<(), NetError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err(format!("create {}", dir.display())))?;
        // Root's alone: whoever holds a pod's namespace open keeps its
        // devices (and so its address) alive.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io_err(format!("restrict {}", dir.display())))?;
    }
    File::create(path).map_err(io_err(format!("create {}", path.display())))?;
    let original = File::open("/proc/thread-self/ns/net")
        .map_err(io_err("open the current network namespace"))?;
    // SAFETY: NEWNET changes only this thread's network namespace, which is
    // restored below before anything else runs on it.
    let made = unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNET) };
    let set_up = made
        .map_err(|e| NetError::from(io_err("create a network namespace")(e.into())))
        .and_then(|()| {
            rustix::mount::mount_bind("/proc/thread-self/ns/net", path).map_err(|e| {
                NetError::from(io_err(format!(
                    "bind the network namespace to {}",
                    path.display()
                ))(e.into()))
            })
        })
        .and_then(|()| loopback_up())
        .and_then(|()| {
            std::fs::write("/proc/sys/net/ipv4/ip_unprivileged_port_start", "0")
                .map_err(|e| io_err("open low ports in the pod's network namespace")(e).into())
        });
    let back = rustix::thread::move_into_link_name_space(
        original.as_fd(),
        Some(LinkNameSpaceType::Network),
    );
    if let Err(e) = back {
        // Still in the pod's namespace: nothing done here would be right.
        return Err(io_err("return to the host network namespace")(e.into()).into());
    }
    if let Err(e) = set_up {
        remove(path);
        return Err(e);
    }
    Ok(())
}

/// A network namespace held only by the returned handle (no bind mount,
/// which needs root of the host's mount namespace): an ordinary user's
/// pod with `--net=none`; `lo` up and low ports open, as [`create`]. Made
/// on a thread of its own that ends with it: root of a user's namespace
/// cannot return to the host's network namespace.
pub fn create_unbound() -> Result<File, NetError> {
    std::thread::spawn(|| {
        // SAFETY: NEWNET changes only this thread's network namespace, and
        // the thread ends right after.
        unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNET) }
            .map_err(|e| NetError::from(io_err("create a network namespace")(e.into())))?;
        let file = File::open("/proc/thread-self/ns/net")
            .map_err(io_err("open the new network namespace"))?;
        loopback_up()?;
        std::fs::write("/proc/sys/net/ipv4/ip_unprivileged_port_start", "0")
            .map_err(io_err("open low ports in the pod's network namespace"))?;
        Ok(file)
    })
    .join()
    .unwrap_or_else(|_| {
        Err(io_err("create a network namespace")(std::io::Error::other("the thread failed")).into())
    })
}

/// Brings the calling thread's `lo` up.
fn loopback_up() -> Result<(), NetError> {
    let sock = rustix::net::socket_with(
        rustix::net::AddressFamily::INET,
        rustix::net::SocketType::DGRAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| io_err("open a socket to configure lo")(e.into()))?;
    Ok(crate::ifreq::set_up(sock.as_fd(), "lo").map_err(io_err("bring lo up"))?)
}

/// Unbinds and removes a namespace made by [`create`]; what is already
/// gone is not an error.
pub fn remove(path: &Path) {
    let _ = rustix::mount::unmount(path, rustix::mount::UnmountFlags::DETACH);
    let _ = std::fs::remove_file(path);
}

/// The path of pod `uuid`'s network namespace.
pub fn path_for(uuid: &str) -> std::path::PathBuf {
    Path::new(crate::NETNS_DIR).join(uuid)
}
