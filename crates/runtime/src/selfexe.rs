//! /proc/self/exe protection (CVE-2019-5736): a process of skiff-runtime
//! that joins a pid namespace where container processes already run (`exec`,
//! or a container sharing another's pid namespace) is visible to them, and
//! one allowed to trace it could open its `/proc/<pid>/exe` — the host's
//! binary — and overwrite it once it is no longer being executed. Such
//! commands therefore re-execute themselves from a sealed memfd copy
//! first: what `/proc/<pid>/exe` names then is that copy, which cannot be
//! written. (Containers with a new pid namespace have no other process in
//! it while the runtime's code runs there.) The runtime's process in the
//! container is also non-dumpable until it execs.

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;

use rustix::fs::{MemfdFlags, SealFlags};

use crate::{Result, errno, io_err};

const NAME: &str = "skiff-runtime";

/// Whether this process already runs from the sealed copy.
pub fn is_sealed_copy() -> bool {
    std::fs::read_link("/proc/self/exe")
        .is_ok_and(|p| p.to_string_lossy().starts_with(&format!("/memfd:{NAME}")))
}

/// Environment variable naming `dev:ino` of the binary a sealed copy was
/// made from.
const ORIGIN: &str = "_SKIFF_RUNTIME_ORIGIN";

/// `(dev, ino)` of the runtime's binary on disk (before any sealed copy).
pub fn origin() -> Option<(u64, u64)> {
    if let Some(v) = std::env::var_os(ORIGIN) {
        let v = v.to_string_lossy().into_owned();
        let (d, i) = v.split_once(':')?;
        return Some((d.parse().ok()?, i.parse().ok()?));
    }
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata("/proc/self/exe").ok()?;
    Some((m.dev(), m.ino()))
}

/// Refuses to join a pid namespace where a process still runs the
/// runtime's binary unsealed (the init of a created, not started
/// container): a process of the joining container could open its
/// /proc/<pid>/exe — the host's binary — and write it once it execs.
pub fn check_pid_namespace(plan: &crate::namespaces::Plan) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Some(ns) = plan.joined_file(oci_spec::runtime::LinuxNamespaceType::Pid) else {
        return Ok(());
    };
    let Ok(target) = ns.metadata() else {
        return Ok(());
    };
    let Some(binary) = origin() else {
        return Ok(());
    };
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let path = entry.path();
        let same_ns = std::fs::metadata(path.join("ns/pid"))
            .is_ok_and(|m| (m.dev(), m.ino()) == (target.dev(), target.ino()));
        if !same_ns {
            continue;
        }
        let unsealed =
            std::fs::metadata(path.join("exe")).is_ok_and(|m| (m.dev(), m.ino()) == binary);
        if unsealed {
            return Err(crate::RuntimeError::Invalid(
                "the pid namespace to join holds a container that is created but not started (its init still runs the runtime): start it first".into(),
            ));
        }
    }
    Ok(())
}

/// Re-executes this process (same arguments and environment) from a
/// sealed memfd copy of its binary, unless it already runs from one.
/// Returns only on failure.
pub fn reexec_sealed() -> Result<()> {
    if is_sealed_copy() {
        return Ok(());
    }
    // MFD_EXEC says so where the host asks (vm.memfd_noexec=1 makes
    // memfds without it unexecutable); kernels before 6.3 do not know it.
    let flags = MemfdFlags::ALLOW_SEALING | MemfdFlags::CLOEXEC;
    let memfd = rustix::fs::memfd_create(NAME, flags | MemfdFlags::EXEC)
        .or_else(|_| rustix::fs::memfd_create(NAME, flags))
        .map_err(errno("create a memfd for the sealed binary"))?;
    let mut src = std::fs::File::open("/proc/self/exe").map_err(io_err("open /proc/self/exe"))?;
    let mut dst = std::fs::File::from(memfd);
    std::io::copy(&mut src, &mut dst).map_err(io_err("copy the binary into a memfd"))?;
    rustix::fs::fcntl_add_seals(
        &dst,
        SealFlags::SEAL | SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE,
    )
    .map_err(errno("seal the memfd"))?;
    // Close-on-exec: the kernel opens the binary by this path before it
    // closes the fds, so the new image holds no fd of it.
    let path = format!("/proc/self/fd/{}", dst.as_raw_fd());
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| NAME.into());
    let mut cmd = std::process::Command::new(&path);
    cmd.arg0(arg0).args(args);
    if let Some((dev, ino)) = origin() {
        cmd.env(ORIGIN, format!("{dev}:{ino}"));
    }
    let err = cmd.exec();
    Err(io_err("re-execute from the sealed copy")(err))
}
