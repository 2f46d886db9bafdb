//! User and group ids: filesystem ids for making files as in-pod root,
//! and an app's final credentials.

/// This thread's filesystem uid and gid (what new files are owned by).
pub fn set_fs_ids(id: u32) {
    // SAFETY: setfsuid/setfsgid take plain integers and only change this
    // thread's filesystem ids.
    unsafe {
        libc::setfsgid(id);
        libc::setfsuid(id);
    }
}

/// Real/effective/saved gid and uid, supplementary groups left as they
/// are (in a user namespace whose setgroups is denied, they cannot change).
pub fn set_ids(gid: u32, uid: u32) -> std::io::Result<()> {
    // SAFETY: setresgid/setresuid take plain integers. The caller is
    // single-threaded (it runs before any thread is started).
    let failed =
        unsafe { libc::setresgid(gid, gid, gid) != 0 || libc::setresuid(uid, uid, uid) != 0 };
    if failed {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Supplementary groups, then real/effective/saved gid and uid.
pub fn set_credentials(groups: &[u32], gid: u32, uid: u32) -> std::io::Result<()> {
    // SAFETY: setgroups reads `groups.len()` ids from a live slice;
    // setresgid/setresuid take plain integers. Callers are single-threaded
    // app processes about to exec (glibc's set*id broadcast is not needed).
    let failed = unsafe {
        libc::setgroups(groups.len(), groups.as_ptr()) != 0
            || libc::setresgid(gid, gid, gid) != 0
            || libc::setresuid(uid, uid, uid) != 0
    };
    if failed {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
