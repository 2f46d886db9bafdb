//! Mounts inside a pod, always on targets resolved *inside* the app's root.
//!
//! A path like `/proc` in an image may be a symlink to anywhere (`/etc`,
//! `../../..`). Targets are therefore created and opened with `openat2`
//! (`RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`) relative to the rootfs fd,
//! and mounted through `/proc/self/fd/<n>` — the mount lands on the
//! directory the fd names, which is inside the root whatever the symlinks
//! said (the technique runc uses).

use std::ffi::CStr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};

use crate::Stage1Error;

fn in_root() -> ResolveFlags {
    ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS
}

fn err(what: String) -> impl FnOnce(rustix::io::Errno) -> Stage1Error {
    move |e| Stage1Error::Setup {
        what,
        source: e.into(),
    }
}

/// With `--private-users`, the host id that in-pod root maps to (u32::MAX:
/// none). App roots are idmapped mounts, where host root is unmapped and
/// cannot create files (EOVERFLOW): mount points are then made as this id.
static CREATE_AS: AtomicU32 = AtomicU32::new(u32::MAX);

/// Makes mount points in idmapped app roots as host id `id` (in-pod root).
pub fn create_as(id: u32) {
    CREATE_AS.store(id, Ordering::Relaxed);
}

/// The host id of in-pod root, with `--private-users`.
pub fn pod_root_id() -> Option<u32> {
    Some(CREATE_AS.load(Ordering::Relaxed)).filter(|id| *id != u32::MAX)
}

/// Runs `create` as in-pod root when the pod has a user namespace: what
/// stage1 makes in an app's root (mount points, /etc) then belongs to the
/// pod's root, in idmapped trees and in the upper layer (stored under the
/// shifted ids) alike.
fn create_mapped<T>(create: impl Fn() -> rustix::io::Result<T>) -> rustix::io::Result<T> {
    match CREATE_AS.load(Ordering::Relaxed) {
        u32::MAX => create(),
        id => as_pod_root(id, create),
    }
}

/// Runs `f` with filesystem ids `id` (in-pod root on the host) and every
/// capability still effective; restores filesystem ids 0 after.
pub fn as_pod_root<T>(id: u32, f: impl FnOnce() -> T) -> T {
    crate::sys::ids::set_fs_ids(id);
    // Changing the fsuid from 0 clears the filesystem capabilities from the
    // effective set; they are still permitted.
    if let Ok(permitted) = caps::read(None, caps::CapSet::Permitted) {
        let _ = caps::set(None, caps::CapSet::Effective, &permitted);
    }
    let result = f();
    // Back to 0 also restores the effective capabilities.
    crate::sys::ids::set_fs_ids(0);
    result
}

/// An app's root filesystem, open as a directory fd.
pub struct Root {
    pub fd: OwnedFd,
    pub path: PathBuf,
}

impl Root {
    pub fn open(path: &Path) -> Result<Root, Stage1Error> {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(err(format!("open the root {}", path.display())))?;
        Ok(Root {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// Opens `path` (absolute, inside the root) as an `O_PATH` fd; with
    /// `create`, missing directories (or a final empty file when `file`)
    /// are made on the way — also where a symlink in the root points, as
    /// long as that is inside the root (a dangling `/var/run -> /run`).
    pub fn resolve(&self, path: &Path, create: bool, file: bool) -> Result<OwnedFd, Stage1Error> {
        let what = || format!("resolve {} in {}", path.display(), self.path.display());
        let how = |last: bool| {
            OFlags::PATH
                | OFlags::CLOEXEC
                | if last && file {
                    OFlags::empty()
                } else {
                    OFlags::DIRECTORY
                }
        };
        let mut parts: Vec<std::ffi::OsString> = path
            .components()
            .filter_map(|c| match c {
                Component::Normal(p) => Some(p.to_owned()),
                _ => None,
            })
            .collect();
        // The walk's first open already answered "missing".
        let mut missing = false;
        // Where the walk starts, if not at the root: the parent's fd and
        // the last part's index.
        let mut from = None;
        // Most targets exist: one walk of the whole path, with the flags
        // the walk below would end with, gives the fd it would end with.
        // Anything else (a missing part, a dangling symlink, an error)
        // takes the walk one part at a time — from the parent when only
        // the last part is missing, as it mostly is (each walk of a path
        // again costs ~4 µs, docs/performance.md).
        if !parts.is_empty() {
            let whole: PathBuf = parts.iter().collect();
            match open_in_root(&self.fd, &whole, how(true)) {
                Ok(fd) => return Ok(fd),
                Err(rustix::io::Errno::NOENT) if parts.len() == 1 => missing = true,
                Err(rustix::io::Errno::NOENT) => {
                    let parent: PathBuf = parts[..parts.len() - 1].iter().collect();
                    if let Ok(fd) = open_in_root(&self.fd, &parent, how(false)) {
                        (from, missing) = (Some((fd, parts.len() - 1)), true);
                    }
                }
                Err(_) => {}
            }
        }
        let (mut dir, mut i) = match from {
            Some(from) => from,
            None => (
                rustix::io::fcntl_dupfd_cloexec(&self.fd, 0).map_err(err(what()))?,
                0,
            ),
        };
        // Symlinks followed to make their targets (as the kernel's limit).
        let mut links = 40;
        while i < parts.len() {
            let last = i + 1 == parts.len();
            let how = how(last);
            // Resolve from the root each time so that symlinks stay inside it.
            let sofar: PathBuf = parts[..=i].iter().collect();
            let part = parts[i].clone();
            let opened = match std::mem::take(&mut missing) {
                true => Err(rustix::io::Errno::NOENT),
                false => open_in_root(&self.fd, &sofar, how),
            };
            match opened {
                Ok(fd) => dir = fd,
                Err(rustix::io::Errno::NOENT) if create => {
                    // A dangling symlink: make what it points at instead
                    // (its text resolved inside the root).
                    if let Ok(target) = rustix::fs::readlinkat(&dir, part.as_os_str(), Vec::new()) {
                        links -= 1;
                        if links == 0 {
                            return Err(err(what())(rustix::io::Errno::LOOP));
                        }
                        parts = relink(
                            &parts[..i],
                            Path::new(std::ffi::OsStr::from_bytes(target.as_bytes())),
                            &parts[i + 1..],
                        );
                        i = 0;
                        dir = rustix::io::fcntl_dupfd_cloexec(&self.fd, 0).map_err(err(what()))?;
                        continue;
                    }
                    if last && file {
                        create_mapped(|| {
                            rustix::fs::openat2(
                                &dir,
                                part.as_os_str(),
                                OFlags::CREATE
                                    | OFlags::WRONLY
                                    | OFlags::CLOEXEC
                                    | OFlags::NOFOLLOW,
                                Mode::from_raw_mode(0o644),
                                ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS,
                            )
                            .map(drop)
                        })
                        .map_err(err(what()))?;
                    } else {
                        match create_mapped(|| {
                            rustix::fs::mkdirat(&dir, part.as_os_str(), Mode::from_raw_mode(0o755))
                        }) {
                            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                            Err(e) => return Err(err(what())(e)),
                        }
                    }
                    dir = open_in_root(&self.fd, &sofar, how).map_err(err(what()))?;
                }
                Err(e) => return Err(err(what())(e)),
            }
            i += 1;
        }
        Ok(dir)
    }
}

/// `openat2` of `path` under `root` with `RESOLVE_IN_ROOT`, again while it
/// answers EAGAIN: the kernel says so when a rename or mount elsewhere
/// raced with a `..` in the walk (it cannot then prove the walk stayed
/// inside), which is not an answer about this path.
fn open_in_root(root: &OwnedFd, path: &Path, how: OFlags) -> rustix::io::Result<OwnedFd> {
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(root, path, how, Mode::empty(), in_root()) {
            Err(rustix::io::Errno::AGAIN) if tries < 64 => tries += 1,
            other => return other,
        }
    }
}

/// The components of `before/target/after` inside a root: an absolute
/// `target` starts at the root, `..` stops there.
fn relink(
    before: &[std::ffi::OsString],
    target: &Path,
    after: &[std::ffi::OsString],
) -> Vec<std::ffi::OsString> {
    let mut parts: Vec<std::ffi::OsString> = if target.is_absolute() {
        Vec::new()
    } else {
        before.to_vec()
    };
    for c in target.components() {
        match c {
            Component::Normal(p) => parts.push(p.to_owned()),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    parts.extend(after.iter().cloned());
    parts
}

/// The `/proc/self/fd/<n>` path that names `fd`.
pub fn fd_path(fd: &OwnedFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

pub fn mount(
    source: &str,
    target: &OwnedFd,
    fstype: &str,
    flags: MountFlags,
    data: Option<&CStr>,
    what: &str,
) -> Result<(), Stage1Error> {
    rustix::mount::mount(source, fd_path(target).as_str(), fstype, flags, data)
        .map_err(err(format!("mount {what}")))
}

pub fn bind(
    source: &str,
    target: &OwnedFd,
    recursive: bool,
    what: &str,
) -> Result<(), Stage1Error> {
    let flags = MountFlags::BIND
        | if recursive {
            MountFlags::REC
        } else {
            MountFlags::empty()
        };
    mount(source, target, "", flags, None, what)
}

/// `MOUNT_ATTR_*` of mount_setattr(2).
pub const ATTR_RDONLY: u64 = 0x1;
pub const ATTR_NOSUID: u64 = 0x2;
pub const ATTR_NODEV: u64 = 0x4;
pub const ATTR_NOEXEC: u64 = 0x8;
pub const ATTR_IDMAP: u64 = 0x0010_0000;

/// Sets `attrs` (`ATTR_*`) on the mount at `target` and, with `recursive`,
/// on every mount beneath it (mount_setattr(2), Linux 5.12+): a read-only
/// recursive volume leaves no writable submount.
pub fn set_attrs(
    target: &OwnedFd,
    attrs: u64,
    recursive: bool,
    what: &str,
) -> Result<(), Stage1Error> {
    mount_setattr(target, attrs, recursive, None).map_err(|source| Stage1Error::Setup {
        what: format!("set the mount options of {what}"),
        source,
    })
}

/// mount_setattr(2) on the mount behind `target` (an fd, empty path):
/// sets `attrs`, with `userns` the user namespace of `ATTR_IDMAP`.
pub fn mount_setattr(
    target: &impl AsFd,
    attrs: u64,
    recursive: bool,
    userns: Option<&OwnedFd>,
) -> std::io::Result<()> {
    crate::sys::mount::mount_setattr(
        target.as_fd(),
        attrs,
        recursive,
        userns.map(|fd| fd.as_fd()),
    )
}

/// Remounts a bind mount with `flags` (e.g. read-only).
pub fn remount_bind(target: &OwnedFd, flags: MountFlags, what: &str) -> Result<(), Stage1Error> {
    rustix::mount::mount_remount(fd_path(target).as_str(), MountFlags::BIND | flags, "")
        .map_err(err(format!("remount {what}")))
}

/// Makes every mount of this (new) namespace private, so nothing
/// propagates back to the host.
pub fn make_private_rec() -> Result<(), Stage1Error> {
    rustix::mount::mount_change(
        "/",
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    )
    .map_err(err("make / private".to_string()))
}

/// Host device nodes a pod gets (bind-mounted; the minimal appc /dev,
/// with `console` apart: see [`setup_kernel_filesystems`]).
pub const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Paths under /proc and /sys that are hidden (like Docker's defaults).
pub const MASKED: [&str; 10] = [
    "/proc/kcore",
    "/proc/keys",
    "/proc/timer_list",
    "/proc/sched_debug",
    "/proc/latency_stats",
    "/proc/acpi",
    "/proc/scsi",
    "/sys/firmware",
    "/proc/interrupts",
    // RAPL energy counters: a side channel on what the host computes.
    "/sys/devices/virtual/powercap",
];

/// Paths under /proc made read-only.
pub const READ_ONLY: [&str; 6] = [
    "/proc/sys",
    "/proc/sysrq-trigger",
    "/proc/irq",
    "/proc/bus",
    "/proc/fs",
    "/proc/asound",
];

/// Whether the kernel's sensitive paths are hidden ([`MASKED`] and
/// [`READ_ONLY`]); `Unmasked` only with `--insecure-options=paths`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelPaths {
    Masked,
    Unmasked,
}

impl KernelPaths {
    pub fn of(grants: skiff_pod::privileges::Grants) -> KernelPaths {
        if grants.paths {
            KernelPaths::Unmasked
        } else {
            KernelPaths::Masked
        }
    }
}

/// Where an app's read-only /sys comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sys {
    /// A sysfs of its own (showing the pod's network namespace).
    Mount,
    /// The host's /sys, bound read-only with everything under it: an
    /// ordinary user's pod on the host's network, whose namespace the
    /// user's does not own, so the kernel refuses it a sysfs of its own.
    HostBind,
}

/// Directories on the pod's own tmpfs (init's root) that an app's `/dev`,
/// masked directories and v1 cgroup view are bound from, where each would
/// otherwise be a tmpfs of its own: every superblock costs the kernel a
/// slot in the shrinker map of every memory cgroup of the host (~16 bytes
/// each), so with many pods the cost grows with the square of their
/// number (docs/performance.md, density). The pod's tmpfs holds 64 MiB,
/// what an app's `/dev` held before; in a pod of several apps each app's
/// directories are on a tmpfs of its own, so that no app can fill another's
/// `/dev`.
pub struct Scratch {
    /// The app's `/dev` (mode 755, owned by the pod's root).
    pub dev: OwnedFd,
    /// An empty directory, bound read-only over the masked ones.
    pub empty: OwnedFd,
    /// The base of the app's v1 cgroup view (`/sys/fs/cgroup`).
    pub cgroup: OwnedFd,
}

impl Scratch {
    /// Makes app `app`'s scratch directories in the pod root `pod_root`:
    /// `apps/<app>/{dev,empty,cgroup}` beside its rootfs, or with `own`,
    /// the same under `apps/<app>/scratch`, a tmpfs of 64 MiB.
    pub fn make(pod_root: &Root, app: &str, own: bool) -> Result<Scratch, Stage1Error> {
        let mut base = Path::new("/apps").join(app);
        if own {
            base.push("scratch");
            let target = pod_root.resolve(&base, true, false)?;
            mount(
                "tmpfs",
                &target,
                "tmpfs",
                MountFlags::NOSUID | MountFlags::NODEV,
                Some(c"mode=755,size=65536k"),
                &format!("the scratch tmpfs of app '{app}'"),
            )?;
        }
        let dir = |name: &str| pod_root.resolve(&base.join(name), true, false);
        Ok(Scratch {
            dev: dir("dev")?,
            empty: dir("empty")?,
            cgroup: dir("cgroup")?,
        })
    }
}

/// Binds the directory `source` at `target` (`path` in `root`) and sets
/// `attrs` (`ATTR_*`) on the new mount, reopened by its path: the old fd
/// names the directory under it.
fn bind_with(
    root: &Root,
    source: &OwnedFd,
    target: &OwnedFd,
    path: &str,
    attrs: u64,
) -> Result<(), Stage1Error> {
    bind(&fd_path(source), target, false, path)?;
    let bound = root.resolve(Path::new(path), false, false)?;
    set_attrs(&bound, attrs, false, path)
}

/// /proc, a read-only /sys, a minimal /dev (device nodes, pts, shm,
/// mqueue, the usual symlinks), masked and read-only paths (unless
/// `paths` says otherwise), in `root`. `/dev/console` is a bind of
/// `console`: `/dev/null` for pods on the host (the host's console is the
/// host's), the VM's own console in a guest.
pub fn setup_kernel_filesystems(
    root: &Root,
    console: &str,
    paths: KernelPaths,
    passed: &[skiff_pod::devices::PodDevice],
    sys: Sys,
    scratch: Option<&Scratch>,
) -> Result<(), Stage1Error> {
    let nosuid_nodev_noexec = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    let proc_fd = root.resolve(Path::new("/proc"), true, false)?;
    mount("proc", &proc_fd, "proc", nosuid_nodev_noexec, None, "/proc")?;
    let sys_fd = root.resolve(Path::new("/sys"), true, false)?;
    match sys {
        Sys::Mount => mount(
            "sysfs",
            &sys_fd,
            "sysfs",
            MountFlags::RDONLY | nosuid_nodev_noexec,
            None,
            "/sys",
        )?,
        Sys::HostBind => {
            bind("/sys", &sys_fd, true, "/sys")?;
            let bound = root.resolve(Path::new("/sys"), true, false)?;
            let attrs = ATTR_RDONLY | ATTR_NOSUID | ATTR_NODEV | ATTR_NOEXEC;
            set_attrs(&bound, attrs, true, "/sys")?;
        }
    }

    let dev_fd = root.resolve(Path::new("/dev"), true, false)?;
    // nodev: a node made in /dev cannot be opened; the allowed devices
    // are bind mounts of the host's nodes, mounts of their own.
    match scratch {
        Some(scratch) => bind_with(
            root,
            &scratch.dev,
            &dev_fd,
            "/dev",
            ATTR_NOSUID | ATTR_NODEV | ATTR_NOEXEC,
        )?,
        None => mount(
            "tmpfs",
            &dev_fd,
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NOEXEC | MountFlags::NODEV,
            Some(c"mode=755,size=65536k"),
            "/dev",
        )?,
    }
    let sources = DEVICES
        .iter()
        .map(|dev| (format!("/dev/{dev}"), *dev))
        .chain([(console.to_string(), "console")]);
    for (source, dev) in sources {
        let target = root.resolve(&Path::new("/dev").join(dev), true, true)?;
        bind(&source, &target, false, &format!("/dev/{dev}"))?;
    }
    // Devices the user passed (`--device`), at their host paths.
    for device in passed {
        let shown = device.path.display().to_string();
        let target = root.resolve(&device.path, true, true)?;
        bind(&shown, &target, false, &shown)?;
    }
    let pts = root.resolve(Path::new("/dev/pts"), true, false)?;
    mount(
        "devpts",
        &pts,
        "devpts",
        MountFlags::NOSUID | MountFlags::NOEXEC,
        Some(c"newinstance,ptmxmode=0666,mode=0620,gid=5"),
        "/dev/pts",
    )?;
    let shm = root.resolve(Path::new("/dev/shm"), true, false)?;
    mount(
        "shm",
        &shm,
        "tmpfs",
        nosuid_nodev_noexec,
        Some(c"mode=1777,size=65536k"),
        "/dev/shm",
    )?;
    let mqueue = root.resolve(Path::new("/dev/mqueue"), true, false)?;
    mount(
        "mqueue",
        &mqueue,
        "mqueue",
        nosuid_nodev_noexec,
        None,
        "/dev/mqueue",
    )?;
    let dev_dir = rustix::fs::openat2(
        &root.fd,
        "dev",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        in_root(),
    )
    .map_err(err("open /dev".to_string()))?;
    for (link, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        match rustix::fs::symlinkat(target, &dev_dir, link) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(err(format!("create /dev/{link}"))(e)),
        }
    }

    if paths == KernelPaths::Unmasked {
        return Ok(());
    }
    for path in MASKED {
        let target = match root.resolve(Path::new(path), false, true) {
            Ok(fd) => fd,
            Err(_) => continue, // absent on this kernel
        };
        let is_dir = rustix::fs::fstat(&target)
            .map(|s| rustix::fs::FileType::from_raw_mode(s.st_mode).is_dir())
            .unwrap_or(false);
        if let (true, Some(scratch)) = (is_dir, scratch) {
            let attrs = ATTR_RDONLY | ATTR_NOSUID | ATTR_NODEV | ATTR_NOEXEC;
            bind_with(root, &scratch.empty, &target, path, attrs)?;
        } else if is_dir {
            mount(
                "tmpfs",
                &target,
                "tmpfs",
                MountFlags::RDONLY | nosuid_nodev_noexec,
                Some(c"size=0"),
                path,
            )?;
        } else {
            bind("/dev/null", &target, false, path)?;
        }
    }
    for path in READ_ONLY {
        let Ok(target) = root.resolve(Path::new(path), false, true) else {
            continue;
        };
        bind(&fd_path(&target), &target, true, path)?;
        // Re-open: the old fd names the directory under the new mount.
        let mounted = root.resolve(Path::new(path), false, true)?;
        remount_bind(&mounted, MountFlags::RDONLY | nosuid_nodev_noexec, path)?;
    }
    Ok(())
}

/// `pivot_root` into `new_root` and detach the old root: afterwards
/// nothing outside `new_root` is reachable by path.
pub fn pivot_into(new_root: &Path) -> Result<(), Stage1Error> {
    rustix::process::chdir(new_root).map_err(err(format!("enter {}", new_root.display())))?;
    rustix::process::pivot_root(".", ".").map_err(err("pivot_root".to_string()))?;
    rustix::mount::unmount(".", UnmountFlags::DETACH)
        .map_err(err("detach the old root".to_string()))?;
    rustix::process::chdir("/").map_err(err("chdir /".to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dangling_symlinks_are_made_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("var")).unwrap();
        let outside = dir.path().join("outside");
        std::os::unix::fs::symlink("../run", root.join("var/run")).unwrap();
        std::os::unix::fs::symlink("../../../../outside/x", root.join("escape")).unwrap();
        std::os::unix::fs::symlink("/loop", root.join("loop")).unwrap();
        let r = Root::open(&root).unwrap();
        r.resolve(Path::new("/var/run/lock"), true, false).unwrap();
        assert!(root.join("run/lock").is_dir());
        r.resolve(Path::new("/escape/y"), true, true).unwrap();
        assert!(root.join("outside/x/y").is_file());
        assert!(!outside.exists());
        assert!(r.resolve(Path::new("/loop"), true, false).is_err());
    }

    #[test]
    fn missing_targets_are_made_inside_the_root_whichever_part_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        let outside = dir.path().join("outside");
        std::os::unix::fs::symlink("../run", root.join("etc/run")).unwrap();
        std::os::unix::fs::symlink("../../../outside", root.join("etc/out")).unwrap();
        let r = Root::open(&root).unwrap();
        // The last part missing (walked from its parent), several parts,
        // a single one.
        r.resolve(Path::new("/etc/hosts"), true, true).unwrap();
        assert!(root.join("etc/hosts").is_file());
        r.resolve(Path::new("/new/dir/file"), true, true).unwrap();
        assert!(root.join("new/dir/file").is_file());
        r.resolve(Path::new("/proc"), true, false).unwrap();
        assert!(root.join("proc").is_dir());
        // The last part a dangling symlink: its target is made, inside.
        r.resolve(Path::new("/etc/run"), true, false).unwrap();
        assert!(root.join("run").is_dir());
        r.resolve(Path::new("/etc/out"), true, true).unwrap();
        assert!(root.join("outside").is_file() && !outside.exists());
        // Without `create`, missing stays missing and nothing is made.
        assert!(r.resolve(Path::new("/etc/none"), false, true).is_err());
        assert!(r.resolve(Path::new("/none"), false, false).is_err());
        assert!(!root.join("etc/none").exists() && !root.join("none").exists());
    }

    #[test]
    fn existing_targets_resolve_inside_the_root_in_one_walk() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc/skiff")).unwrap();
        std::fs::create_dir_all(root.join("a")).unwrap();
        std::fs::create_dir_all(dir.path().join("etc/skiff")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("link")).unwrap();
        let r = Root::open(&root).unwrap();
        let ino = |fd: OwnedFd| rustix::fs::fstat(&fd).unwrap().st_ino;
        let inside = std::fs::metadata(root.join("etc/skiff")).unwrap().ino();
        // An absolute symlink leads to the root's /etc, not the host's.
        assert_eq!(
            ino(r.resolve(Path::new("/link/skiff"), false, false).unwrap()),
            inside
        );
        // `..` is dropped as the walk one part at a time drops it.
        assert!(
            r.resolve(Path::new("/a/../etc/skiff"), false, false)
                .is_err()
        );
        assert_eq!(
            ino(r.resolve(Path::new("/etc/./skiff"), false, false).unwrap()),
            inside
        );
        // A directory asked for as a file is still found; a file as a
        // directory is not.
        std::fs::write(root.join("etc/f"), "").unwrap();
        assert!(r.resolve(Path::new("/etc/f"), false, false).is_err());
        assert!(r.resolve(Path::new("/etc/f"), false, true).is_ok());
    }
}
