//! The container's root filesystem, in its own mount namespace: the
//! config's mounts on targets resolved *inside* the rootfs
//! (`skiff_stage1::mounts::Root`, openat2 `RESOLVE_IN_ROOT`, mounted through
//! `/proc/self/fd`), devices, the console, `pivot_root`, then read-only and
//! masked paths, sysctls and the root's propagation.

use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount, Spec};
use rustix::fs::{Mode, OFlags};
use rustix::mount::{MountFlags, MountPropagationFlags};
use skiff_stage1::mounts::{self, Root, fd_path};

use crate::{Result, RuntimeError, errno, io_err};

/// One mount's options, split into flags, propagation, recursive
/// attributes and the data string for the file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub flags: MountFlags,
    pub clear: MountFlags,
    pub propagation: Vec<MountPropagationFlags>,
    /// mount_setattr attributes to set / clear recursively (`rro`, …).
    pub attr_set: u64,
    pub attr_clear: u64,
    pub data: Vec<String>,
    pub bind: bool,
    pub recursive: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            flags: MountFlags::empty(),
            clear: MountFlags::empty(),
            propagation: Vec::new(),
            attr_set: 0,
            attr_clear: 0,
            data: Vec::new(),
            bind: false,
            recursive: false,
        }
    }
}

const ATTR_NOSUID: u64 = 0x2;
const ATTR_NODEV: u64 = 0x4;
const ATTR_NOEXEC: u64 = 0x8;
const ATTR_NOATIME: u64 = 0x10;
const ATTR_STRICTATIME: u64 = 0x20;
const ATTR_NODIRATIME: u64 = 0x80;

pub fn parse_options(options: &[String]) -> Result<Options> {
    let mut o = Options::default();
    for opt in options {
        let set = |o: &mut Options, f: MountFlags| {
            o.flags |= f;
            o.clear.remove(f);
        };
        let clear = |o: &mut Options, f: MountFlags| {
            o.flags.remove(f);
            o.clear |= f;
        };
        match opt.as_str() {
            "defaults" => {}
            "ro" => set(&mut o, MountFlags::RDONLY),
            "rw" => clear(&mut o, MountFlags::RDONLY),
            "nosuid" => set(&mut o, MountFlags::NOSUID),
            "suid" => clear(&mut o, MountFlags::NOSUID),
            "nodev" => set(&mut o, MountFlags::NODEV),
            "dev" => clear(&mut o, MountFlags::NODEV),
            "noexec" => set(&mut o, MountFlags::NOEXEC),
            "exec" => clear(&mut o, MountFlags::NOEXEC),
            "sync" => set(&mut o, MountFlags::SYNCHRONOUS),
            "async" => clear(&mut o, MountFlags::SYNCHRONOUS),
            "dirsync" => set(&mut o, MountFlags::DIRSYNC),
            // Mandatory locking is gone from Linux (5.15).
            "mand" | "nomand" => {}
            "atime" => clear(&mut o, MountFlags::NOATIME),
            "noatime" => set(&mut o, MountFlags::NOATIME),
            "diratime" => clear(&mut o, MountFlags::NODIRATIME),
            "nodiratime" => set(&mut o, MountFlags::NODIRATIME),
            "relatime" => set(&mut o, MountFlags::RELATIME),
            "norelatime" => clear(&mut o, MountFlags::RELATIME),
            "strictatime" => set(&mut o, MountFlags::STRICTATIME),
            "nostrictatime" => clear(&mut o, MountFlags::STRICTATIME),
            "remount" => {}
            "bind" => o.bind = true,
            "rbind" => {
                o.bind = true;
                o.recursive = true;
            }
            "private" => o.propagation.push(MountPropagationFlags::PRIVATE),
            "rprivate" => o
                .propagation
                .push(MountPropagationFlags::PRIVATE | MountPropagationFlags::REC),
            "shared" => o.propagation.push(MountPropagationFlags::SHARED),
            "rshared" => o
                .propagation
                .push(MountPropagationFlags::SHARED | MountPropagationFlags::REC),
            "slave" => o.propagation.push(MountPropagationFlags::DOWNSTREAM),
            "rslave" => o
                .propagation
                .push(MountPropagationFlags::DOWNSTREAM | MountPropagationFlags::REC),
            "unbindable" => o.propagation.push(MountPropagationFlags::UNBINDABLE),
            "runbindable" => o
                .propagation
                .push(MountPropagationFlags::UNBINDABLE | MountPropagationFlags::REC),
            "rro" => o.attr_set |= mounts::ATTR_RDONLY,
            "rrw" => o.attr_clear |= mounts::ATTR_RDONLY,
            "rnosuid" => o.attr_set |= ATTR_NOSUID,
            "rsuid" => o.attr_clear |= ATTR_NOSUID,
            "rnodev" => o.attr_set |= ATTR_NODEV,
            "rdev" => o.attr_clear |= ATTR_NODEV,
            "rnoexec" => o.attr_set |= ATTR_NOEXEC,
            "rexec" => o.attr_clear |= ATTR_NOEXEC,
            "rnoatime" => o.attr_set |= ATTR_NOATIME,
            "rstrictatime" => o.attr_set |= ATTR_STRICTATIME,
            "rnodiratime" => o.attr_set |= ATTR_NODIRATIME,
            "rdiratime" => o.attr_clear |= ATTR_NODIRATIME,
            "idmap" | "ridmap" => {
                return Err(RuntimeError::Unsupported(
                    "the mount option idmap is not supported by skiff-runtime".into(),
                ));
            }
            // crun's extension: ignored, as runc ignores it.
            "tmpcopyup" => {}
            other => o.data.push(other.to_string()),
        }
    }
    Ok(o)
}

/// What the container's mounts need from the setup around them.
pub struct Setup<'a> {
    pub spec: &'a Spec,
    pub bundle: &'a Path,
    pub rootfs: &'a Path,
    pub in_userns: bool,
    /// The container's cgroup, for `cgroup` mounts.
    pub cgroup: &'a crate::cgroup::Cgroup,
    pub new_cgroupns: bool,
}

fn cstring(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| RuntimeError::Invalid(format!("mount data '{s}' holds a NUL byte")))
}

/// Makes `/` of the new mount namespace a slave (or what
/// `rootfsPropagation` says) so nothing propagates to the host, and binds
/// the rootfs onto itself (pivot_root needs a mount point).
pub fn prepare(rootfs: &Path, propagation: Option<&str>) -> Result<()> {
    // Shared and unbindable are set on the new root at the end
    // ([`finalize`]): until then nothing may propagate to the host, and
    // the rootfs must stay bindable.
    let flags = match propagation {
        Some("shared") | Some("rshared") | Some("slave") | Some("rslave") | Some("unbindable")
        | Some("runbindable") | None => {
            MountPropagationFlags::DOWNSTREAM | MountPropagationFlags::REC
        }
        Some("private") | Some("rprivate") => {
            MountPropagationFlags::PRIVATE | MountPropagationFlags::REC
        }
        Some(other) => {
            return Err(RuntimeError::Invalid(format!(
                "linux.rootfsPropagation '{other}' is not one of shared, slave, private, unbindable"
            )));
        }
    };
    rustix::mount::mount_change("/", flags).map_err(errno("set the propagation of /"))?;
    rustix::mount::mount_bind_recursive(rootfs, rootfs)
        .map_err(errno(format!("bind the rootfs {}", rootfs.display())))?;
    Ok(())
}

/// The config's mounts, in order. Returns the mount id of the tmpfs the
/// config mounted on /dev, if it did: devices are made only there.
pub fn mount_all(setup: &Setup) -> Result<Option<u64>> {
    let root = Root::open(setup.rootfs)?;
    let mut dev = None;
    for m in setup.spec.mounts().iter().flatten() {
        mount_one(setup, &root, m)?;
        // The last mount on /dev itself decides; mounts inside it do not.
        if m.destination() == Path::new("/dev") {
            let tmpfs = m.typ().as_deref() == Some("tmpfs")
                && !m
                    .options()
                    .iter()
                    .flatten()
                    .any(|o| o == "bind" || o == "rbind");
            dev = if tmpfs {
                Some(mount_id(&root.resolve(Path::new("/dev"), false, false)?)?)
            } else {
                None
            };
        }
    }
    Ok(dev)
}

/// The id of the mount `fd` is on.
fn mount_id(fd: &OwnedFd) -> Result<u64> {
    rustix::fs::statx(
        fd,
        "",
        rustix::fs::AtFlags::EMPTY_PATH,
        rustix::fs::StatxFlags::MNT_ID,
    )
    .map(|st| st.stx_mnt_id)
    .map_err(errno("read a mount id"))
}

fn source_path(bundle: &Path, source: &Path) -> PathBuf {
    if source.is_absolute() {
        source.to_path_buf()
    } else {
        bundle.join(source)
    }
}

/// Files of /proc that may be bind-mounted over (lxcfs's, as runc allows).
const PROC_ALLOWED: [&str; 10] = [
    "/proc/cpuinfo",
    "/proc/diskstats",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/swaps",
    "/proc/uptime",
    "/proc/loadavg",
    "/proc/slabinfo",
    "/proc/net/dev",
    "/proc/sys/kernel/ns_last_pid",
];

/// Refuses a mount whose target is inside a procfs (a symlink
/// `/data -> /proc/self/fd` would put a volume over the runtime's own
/// file descriptors, or `/proc/<pid>/attr`).
fn check_target(target: &OwnedFd, dest: &Path, bind: bool) -> Result<()> {
    if crate::fdmount::on_procfs(target)
        && !(bind && PROC_ALLOWED.iter().any(|p| Path::new(p) == dest))
    {
        return Err(RuntimeError::Invalid(format!(
            "the mount destination {} is inside /proc (through a symlink?): refused",
            dest.display()
        )));
    }
    Ok(())
}

fn mount_one(setup: &Setup, root: &Root, m: &Mount) -> Result<()> {
    let dest = m.destination();
    let what = dest.display().to_string();
    let o = parse_options(m.options().as_deref().unwrap_or_default())?;
    let typ = m.typ().clone().unwrap_or_default();
    if typ == "cgroup" || typ == "cgroup2" {
        return mount_cgroup(setup, root, dest, &o);
    }
    if o.bind || typ == "bind" {
        let source = source_path(setup.bundle, m.source().as_deref().unwrap_or(Path::new("")));
        let meta = std::fs::metadata(&source).map_err(io_err(format!(
            "find the source {} of the mount on {what}",
            source.display()
        )))?;
        let target = root.resolve(dest, true, !meta.is_dir())?;
        check_target(&target, dest, true)?;
        let flags = MountFlags::BIND
            | if o.recursive {
                MountFlags::REC
            } else {
                MountFlags::empty()
            };
        rustix::mount::mount(&source, fd_path(&target).as_str(), "", flags, None)
            .map_err(errno(format!("bind {} on {what}", source.display())))?;
        let remount = o.flags - (MountFlags::BIND | MountFlags::REC);
        if !remount.is_empty() {
            let mounted = root.resolve(dest, false, !meta.is_dir())?;
            let mut flags = remount;
            if setup.in_userns {
                flags |= locked_flags(&mounted);
            }
            mounts::remount_bind(&mounted, flags, &what)?;
        }
        finish(root, dest, !meta.is_dir(), &o, &what)?;
        return Ok(());
    }
    let target = root.resolve(dest, true, false)?;
    check_target(&target, dest, false)?;
    let source = m
        .source()
        .as_ref()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| typ.clone());
    let data = (!o.data.is_empty())
        .then(|| cstring(&o.data.join(",")))
        .transpose()?;
    let mount = |data: Option<&CString>| {
        rustix::mount::mount(
            source.as_str(),
            fd_path(&target).as_str(),
            typ.as_str(),
            o.flags,
            data.map(|d| d.as_c_str()),
        )
    };
    match mount(data.as_ref()) {
        Ok(()) => {}
        // An SELinux context on a host without SELinux (crun and runc
        // both run such configs): mounted without it.
        Err(rustix::io::Errno::INVAL)
            if o.data.iter().any(|d| d.starts_with("context="))
                && !crate::process::selinux_enabled() =>
        {
            let rest: Vec<&str> = o
                .data
                .iter()
                .filter(|d| !d.starts_with("context="))
                .map(String::as_str)
                .collect();
            let data = (!rest.is_empty())
                .then(|| cstring(&rest.join(",")))
                .transpose()?;
            mount(data.as_ref()).map_err(errno(format!("mount {typ} on {what}")))?;
        }
        Err(e) => return Err(errno(format!("mount {typ} on {what}"))(e)),
    }
    finish(root, dest, false, &o, &what)
}

/// Propagation and recursive attributes after a mount.
fn finish(root: &Root, dest: &Path, file: bool, o: &Options, what: &str) -> Result<()> {
    if o.propagation.is_empty() && o.attr_set == 0 && o.attr_clear == 0 {
        return Ok(());
    }
    let mounted = root.resolve(dest, false, file)?;
    for p in &o.propagation {
        rustix::mount::mount_change(fd_path(&mounted).as_str(), *p)
            .map_err(errno(format!("set the propagation of {what}")))?;
    }
    if o.attr_set != 0 {
        mounts::set_attrs(&mounted, o.attr_set, true, what)?;
    }
    if o.attr_clear != 0 {
        skiff_stage1::sys::mount::mount_setattr_clear(
            std::os::fd::AsFd::as_fd(&mounted),
            o.attr_clear,
            true,
        )
        .map_err(io_err(format!("clear mount options of {what}")))?;
    }
    Ok(())
}

/// The flags a user namespace may not drop from a bind mount's source
/// (the kernel refuses a remount without them).
fn locked_flags(target: &OwnedFd) -> MountFlags {
    let Ok(st) = rustix::fs::fstatvfs(target) else {
        return MountFlags::empty();
    };
    let f = st.f_flag;
    let mut flags = MountFlags::empty();
    for (bit, flag) in [
        (rustix::fs::StatVfsMountFlags::NOSUID, MountFlags::NOSUID),
        (rustix::fs::StatVfsMountFlags::NODEV, MountFlags::NODEV),
        (rustix::fs::StatVfsMountFlags::NOEXEC, MountFlags::NOEXEC),
        (rustix::fs::StatVfsMountFlags::RDONLY, MountFlags::RDONLY),
    ] {
        if f.contains(bit) {
            flags |= flag;
        }
    }
    flags
}

/// A `cgroup` mount: the container's own cgroups. On v1 a tmpfs with each
/// hierarchy's directory of the container bound in; on v2 the cgroup2 file
/// system (in a cgroup namespace) or the container's directory bound.
fn mount_cgroup(setup: &Setup, root: &Root, dest: &Path, o: &Options) -> Result<()> {
    let what = dest.display().to_string();
    let ro = o.flags.contains(MountFlags::RDONLY);
    let base = o.flags & (MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC);
    let target = root.resolve(dest, true, false)?;
    check_target(&target, dest, false)?;
    if setup.cgroup.is_v2() {
        if setup.new_cgroupns {
            rustix::mount::mount(
                "cgroup2",
                fd_path(&target).as_str(),
                "cgroup2",
                o.flags,
                None,
            )
            .map_err(errno(format!("mount cgroup2 on {what}")))?;
        } else if let Some(dir) = setup.cgroup.dirs.first() {
            rustix::mount::mount(dir, fd_path(&target).as_str(), "", MountFlags::BIND, None)
                .map_err(errno(format!("bind the container's cgroup on {what}")))?;
            let mounted = root.resolve(dest, false, false)?;
            mounts::remount_bind(&mounted, o.flags - MountFlags::BIND, &what)?;
        }
        return Ok(());
    }
    rustix::mount::mount(
        "tmpfs",
        fd_path(&target).as_str(),
        "tmpfs",
        base,
        Some(c"mode=755"),
    )
    .map_err(errno(format!("mount tmpfs on {what}")))?;
    for dir in &setup.cgroup.dirs {
        // /sys/fs/cgroup/<hierarchy>/<path>: the hierarchy's name.
        let Some(name) = dir
            .strip_prefix(skiff_stage1::cgroups::ROOT)
            .ok()
            .and_then(|rel| rel.components().next())
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
        else {
            continue;
        };
        let sub = dest.join(&name);
        let t = root.resolve(&sub, true, false)?;
        rustix::mount::mount(dir, fd_path(&t).as_str(), "", MountFlags::BIND, None).map_err(
            errno(format!("bind the container's cgroup on {}", sub.display())),
        )?;
        let mounted = root.resolve(&sub, false, false)?;
        let mut flags = base;
        if ro {
            flags |= MountFlags::RDONLY;
        }
        mounts::remount_bind(&mounted, flags, &sub.display().to_string())?;
        // cpu,cpuacct is also reachable as cpu and cpuacct.
        if name.contains(',') {
            let parent = root.resolve(dest, false, false)?;
            for part in name.split(',') {
                let part = part.strip_prefix("name=").unwrap_or(part);
                let _ = rustix::fs::symlinkat(name.as_str(), &parent, part);
            }
        }
    }
    if ro {
        let mounted = root.resolve(dest, false, false)?;
        mounts::remount_bind(&mounted, base | MountFlags::RDONLY, &what)?;
    }
    Ok(())
}

/// The devices every container has (runtime-spec's default devices).
const DEFAULT_DEVICES: [(&str, u64, u64); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// Whether /dev is a bind mount (of the host's, or any directory): then
/// no node is made in it, as runc does.
pub fn dev_is_bound(spec: &Spec) -> bool {
    spec.mounts().iter().flatten().any(|m| {
        m.destination() == Path::new("/dev")
            && (m.typ().as_deref() == Some("bind")
                || m.options()
                    .iter()
                    .flatten()
                    .any(|o| o == "bind" || o == "rbind"))
    })
}

/// Default devices, the config's devices and /dev's symlinks. In a user
/// namespace nodes cannot be made: the host's are bound instead.
pub fn make_devices(
    spec: &Spec,
    rootfs: &Path,
    in_userns: bool,
    dev_mount: Option<u64>,
) -> Result<()> {
    let root = Root::open(rootfs)?;
    let configured: Vec<LinuxDevice> = spec
        .linux()
        .as_ref()
        .and_then(|l| l.devices().clone())
        .unwrap_or_default();
    // Nodes are made only in the tmpfs the config mounted on /dev, as the
    // path resolves now: a bind of a host directory on /dev, or on a
    // symlink to it (`/data -> /dev`), gets none.
    let ours = match dev_mount {
        Some(id) if !dev_is_bound(spec) => {
            let dev = root.resolve(Path::new("/dev"), false, false)?;
            mount_id(&dev)? == id
        }
        _ => false,
    };
    if !ours {
        if configured.is_empty() {
            return Ok(());
        }
        return Err(RuntimeError::Invalid(
            "linux.devices are made only in a tmpfs the config mounts on /dev (and nothing else mounted over it)".into(),
        ));
    }
    let dev_mount = dev_mount.unwrap_or(0);
    for (name, major, minor) in DEFAULT_DEVICES {
        let path = PathBuf::from("/dev").join(name);
        if configured.iter().any(|d| d.path() == &path) {
            continue;
        }
        make_node(
            &root,
            dev_mount,
            &path,
            'c',
            major,
            minor,
            0o666,
            Some((0, 0)),
            in_userns,
        )?;
    }
    let dev = root.resolve(Path::new("/dev"), true, false)?;
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        match rustix::fs::symlinkat(target, &dev, link) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(errno(format!("create /dev/{link}"))(e)),
        }
    }
    if Path::new("/proc/kcore").exists() {
        let _ = rustix::fs::symlinkat("/proc/kcore", &dev, "core");
    }
    for d in &configured {
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => 'c',
            LinuxDeviceType::B => 'b',
            LinuxDeviceType::P => 'p',
            LinuxDeviceType::A => {
                return Err(RuntimeError::Invalid(format!(
                    "device {}: type 'a' is for cgroup rules, not nodes",
                    d.path().display()
                )));
            }
        };
        let mode = d.file_mode().unwrap_or(0o666);
        let owner = Some((d.uid().unwrap_or(0), d.gid().unwrap_or(0)));
        let number = |n: i64| {
            u32::try_from(n).map(u64::from).map_err(|_| {
                RuntimeError::Invalid(format!(
                    "device {}: {n} is not a device number",
                    d.path().display()
                ))
            })
        };
        make_node(
            &root,
            dev_mount,
            d.path(),
            kind,
            number(d.major())?,
            number(d.minor())?,
            mode,
            owner,
            in_userns,
        )?;
    }
    Ok(())
}

/// The host's node of device `major:minor` (`/dev/char/M:m`, or a node
/// directly in /dev where udev made no such links).
fn host_device(kind: char, major: u64, minor: u64) -> Option<PathBuf> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let rdev = rustix::fs::makedev(major as u32, minor as u32);
    let matches = |p: &Path| {
        std::fs::symlink_metadata(p).is_ok_and(|m| {
            let t = m.file_type();
            m.rdev() == rdev
                && if kind == 'b' {
                    t.is_block_device()
                } else {
                    t.is_char_device()
                }
        })
    };
    let linked = Path::new(if kind == 'b' {
        "/dev/block"
    } else {
        "/dev/char"
    })
    .join(format!("{major}:{minor}"));
    if let Ok(target) = std::fs::canonicalize(&linked)
        && matches(&target)
    {
        return Some(target);
    }
    std::fs::read_dir("/dev")
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| matches(p))
}

#[allow(clippy::too_many_arguments)]
fn make_node(
    root: &Root,
    dev_mount: u64,
    path: &Path,
    kind: char,
    major: u64,
    minor: u64,
    mode: u32,
    owner: Option<(u32, u32)>,
    in_userns: bool,
) -> Result<()> {
    let what = path.display().to_string();
    if !path.starts_with("/dev")
        || path == Path::new("/dev")
        || path
            .components()
            .any(|c| c == std::path::Component::ParentDir)
    {
        return Err(RuntimeError::Invalid(format!(
            "device path {what} must be under /dev, without '..'"
        )));
    }
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(RuntimeError::Invalid(format!("bad device path {what}")));
    };
    let dir = root.resolve(parent, true, false)?;
    // Open the parent for real (O_PATH fds cannot make nodes in newer
    // kernels' checks): through its /proc/self/fd name.
    let dir = rustix::fs::open(
        fd_path(&dir).as_str(),
        OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::RDONLY,
        Mode::empty(),
    )
    .map_err(errno(format!("open the directory of {what}")))?;
    // Only in the /dev tmpfs of the container (a mount inside /dev may be
    // a host directory): there replacing what is in the way is safe.
    if mount_id(&dir)? != dev_mount {
        return Err(RuntimeError::Invalid(format!(
            "device {what}: its directory is not in the container's /dev tmpfs"
        )));
    }
    let _ = rustix::fs::unlinkat(&dir, name, rustix::fs::AtFlags::empty());
    if in_userns && kind != 'p' {
        // A file to bind the host's node (found by its numbers) onto.
        let host = host_device(kind, major, minor).ok_or_else(|| {
            RuntimeError::Invalid(format!("the host has no device {major}:{minor} for {what}"))
        })?;
        let f = rustix::fs::openat(
            &dir,
            name,
            OFlags::CREATE | OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::from_raw_mode(0o644),
        )
        .map_err(errno(format!("create {what}")))?;
        drop(f);
        let target = root.resolve(path, false, true)?;
        rustix::mount::mount(&host, fd_path(&target).as_str(), "", MountFlags::BIND, None)
            .map_err(errno(format!(
                "bind the host's {} on {what}",
                host.display()
            )))?;
        return Ok(());
    }
    let file_type = match kind {
        'b' => rustix::fs::FileType::BlockDevice,
        'p' => rustix::fs::FileType::Fifo,
        _ => rustix::fs::FileType::CharacterDevice,
    };
    let dev = rustix::fs::makedev(major as u32, minor as u32);
    rustix::fs::mknodat(
        &dir,
        name,
        file_type,
        Mode::from_raw_mode(mode & 0o7777),
        dev,
    )
    .map_err(errno(format!("create the device {what}")))?;
    // mknod applies the umask: set the mode exactly.
    rustix::fs::chmodat(
        &dir,
        name,
        Mode::from_raw_mode(mode & 0o7777),
        rustix::fs::AtFlags::empty(),
    )
    .map_err(errno(format!("set the mode of {what}")))?;
    if let Some((uid, gid)) = owner {
        rustix::fs::chownat(
            &dir,
            name,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(errno(format!("set the owner of {what}")))?;
    }
    Ok(())
}

/// `pivot_root` into the rootfs (or, with `--no-pivot`, in a joined mount
/// namespace or without a mount namespace of its own, `chroot`; with
/// --no-pivot after moving the rootfs onto `/`). pivot_root in a namespace
/// other processes share would move their root too.
pub fn enter(rootfs: &Path, no_pivot: bool, new_mount_ns: bool) -> Result<()> {
    if !new_mount_ns {
        rustix::process::chdir(rootfs).map_err(errno(format!("enter {}", rootfs.display())))?;
        rustix::process::chroot(".").map_err(errno("chroot into the rootfs"))?;
        return rustix::process::chdir("/").map_err(errno("chdir /"));
    }
    if no_pivot {
        rustix::process::chdir(rootfs).map_err(errno(format!("enter {}", rootfs.display())))?;
        rustix::mount::mount_move(".", "/").map_err(errno("move the rootfs onto /"))?;
        rustix::process::chroot(".").map_err(errno("chroot into the rootfs"))?;
        return rustix::process::chdir("/").map_err(errno("chdir /"));
    }
    mounts::pivot_into(rootfs)?;
    Ok(())
}

/// After the pivot: the root read-only, read-only and masked paths,
/// sysctls, the root's propagation. No path through /proc is trusted here
/// ([`crate::fdmount`]); `nulls` are [`null_mounts`], for masking files.
pub fn finalize(spec: &Spec, mut nulls: Vec<OwnedFd>) -> Result<()> {
    let linux = spec.linux().clone().unwrap_or_default();
    if let Some(sysctls) = linux.sysctl().as_ref().filter(|s| !s.is_empty()) {
        let proc = crate::fdmount::Proc::open()?;
        for (key, value) in sysctls {
            proc.write(&format!("sys/{}", key.replace('.', "/")), value)?;
        }
    }
    let root = Root::open(Path::new("/"))?;
    for p in linux.readonly_paths().iter().flatten() {
        let path = Path::new(p);
        let Ok(target) = root.resolve(path, false, true) else {
            continue;
        };
        crate::fdmount::bind(&target, &target, true, p)?;
        let mounted = root.resolve(path, false, true)?;
        mounts::set_attrs(
            &mounted,
            mounts::ATTR_RDONLY | ATTR_NOSUID | ATTR_NODEV | ATTR_NOEXEC,
            true,
            p,
        )?;
    }
    for p in linux.masked_paths().iter().flatten() {
        let path = Path::new(p);
        let Ok(target) = root.resolve(path, false, true) else {
            continue;
        };
        let is_dir = rustix::fs::fstat(&target)
            .is_ok_and(|st| rustix::fs::FileType::from_raw_mode(st.st_mode).is_dir());
        if is_dir {
            crate::fdmount::empty_tmpfs(&target, p)?;
        } else if let Some(null) = nulls.pop() {
            crate::fdmount::attach(&null, &target, p)?;
        }
    }
    if spec
        .root()
        .as_ref()
        .is_some_and(|r| r.readonly() == Some(true))
    {
        rustix::mount::mount_remount(
            "/",
            MountFlags::BIND | MountFlags::RDONLY | locked_root(),
            "",
        )
        .map_err(errno("make the root read-only"))?;
    }
    if let Some(prop) = linux.rootfs_propagation().as_deref() {
        let flags = match prop {
            "shared" | "rshared" => MountPropagationFlags::SHARED,
            "slave" | "rslave" => MountPropagationFlags::DOWNSTREAM,
            "private" | "rprivate" => MountPropagationFlags::PRIVATE,
            _ => MountPropagationFlags::UNBINDABLE,
        };
        rustix::mount::mount_change("/", flags | MountPropagationFlags::REC)
            .map_err(errno(format!("make the root {prop}")))?;
    }
    Ok(())
}

/// Detached mounts of the host's /dev/null (`open_tree` clones), one per
/// masked path: made before pivot_root, attached after it.
pub fn null_mounts(spec: &Spec) -> Result<Vec<OwnedFd>> {
    let count = spec
        .linux()
        .as_ref()
        .and_then(|l| l.masked_paths().as_ref())
        .map_or(0, Vec::len);
    (0..count)
        .map(|_| {
            rustix::mount::open_tree(
                rustix::fs::CWD,
                "/dev/null",
                rustix::mount::OpenTreeFlags::OPEN_TREE_CLONE
                    | rustix::mount::OpenTreeFlags::OPEN_TREE_CLOEXEC,
            )
            .map_err(errno("copy /dev/null for masked paths"))
        })
        .collect()
}

fn locked_root() -> MountFlags {
    match rustix::fs::open("/", OFlags::PATH | OFlags::CLOEXEC, Mode::empty()) {
        Ok(fd) => locked_flags(&fd) - MountFlags::RDONLY,
        Err(_) => MountFlags::empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_flags_propagation_and_data() {
        let o = parse_options(
            &[
                "nosuid",
                "noexec",
                "rbind",
                "rslave",
                "mode=755",
                "size=65536k",
                "ro",
                "rw",
            ]
            .map(String::from),
        )
        .unwrap();
        assert!(o.bind && o.recursive);
        assert_eq!(o.flags, MountFlags::NOSUID | MountFlags::NOEXEC);
        assert_eq!(
            o.data,
            vec!["mode=755".to_string(), "size=65536k".to_string()]
        );
        assert_eq!(
            o.propagation,
            vec![MountPropagationFlags::DOWNSTREAM | MountPropagationFlags::REC]
        );
        assert!(parse_options(&["idmap".to_string()]).is_err());
    }
}
