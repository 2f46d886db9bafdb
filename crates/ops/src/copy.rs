//! `skiff cp`: files between the host and a running pod's app.
//!
//! The app's root is opened as a directory fd (`/proc/<app pid>/root`,
//! the root in the app's own mount namespace, volumes included; a `fly`
//! pod's root on the host), and every path in it is resolved by openat2
//! with `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`: a symlink the pod made
//! resolves inside the app's root as the app would see it, never on the
//! host, and `/proc/*/root`-style magic links are refused. Files are
//! reopened through the fd that was checked (never by path again), only
//! regular files, directories and symlinks are copied, and what comes out
//! of a pod loses its set-id bits and belongs to the caller. A symlink
//! comes out only where it points inside what is copied: on the host, an
//! absolute or climbing one would name the host's files.

use std::ffi::OsStr;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use skiff_pod::{Flavor, Pod};

use crate::{Context, OpsError, refuse};

/// Deeper trees than this are not copied (a pod can make any depth).
const MAX_DEPTH: usize = 128;

/// One side of a copy: `UUID:PATH` in a pod's app, or a host path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Host(PathBuf),
    Pod { uuid: String, path: String },
}

impl Endpoint {
    /// `UUID:PATH` (a pod) when there is a colon before any slash;
    /// anything else is a host path (`./a:b` for a host file with a colon).
    pub fn parse(text: &str) -> Endpoint {
        match text.split_once(':') {
            Some((uuid, path)) if !uuid.is_empty() && !uuid.contains('/') => Endpoint::Pod {
                uuid: uuid.to_string(),
                path: path.to_string(),
            },
            _ => Endpoint::Host(PathBuf::from(text)),
        }
    }
}

/// What a copy did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Copied {
    pub files: u64,
    pub bytes: u64,
    /// Entries left out (devices, FIFOs, sockets, too deep), one line each.
    pub skipped: Vec<String>,
}

/// Copies `from` to `to`: one of them in a pod's app (`app`, default the
/// pod's first), the other on the host. A directory is copied whole.
pub fn cp(
    ctx: &Context,
    from: &Endpoint,
    to: &Endpoint,
    app: Option<&str>,
) -> Result<Copied, OpsError> {
    match (from, to) {
        (Endpoint::Pod { uuid, path }, Endpoint::Host(dest)) => {
            let root = AppRoot::open(ctx, uuid, app)?;
            // What the path names in the pod, a last symlink followed there.
            let source = in_root(&root.fd, path, OFlags::PATH)
                .map_err(|e| refuse!("{path} in the pod: {e}"))?;
            let name = base_name(path)?;
            let target = host_target(dest, &name)?;
            let (parent, name) = host_parent(&target)?;
            let mut copied = Copied::default();
            out_of_pod(&source, path, &parent, &name, &target, 0, &mut copied)?;
            Ok(copied)
        }
        (Endpoint::Host(source), Endpoint::Pod { uuid, path }) => {
            let root = AppRoot::open(ctx, uuid, app)?;
            let meta = std::fs::symlink_metadata(source)
                .map_err(|e| refuse!("{}: {e}", source.display()))?;
            let name = source
                .file_name()
                .map(|n| n.to_os_string())
                .ok_or_else(|| refuse!("{}: name a file or directory", source.display()))?;
            let (parent, name) = root.target(path, &name)?;
            let mut copied = Copied::default();
            into_pod(source, &meta, &parent, &name, root.owner, 0, &mut copied)?;
            Ok(copied)
        }
        (Endpoint::Pod { .. }, Endpoint::Pod { .. }) => Err(refuse!(
            "copy between pods through the host: skiff cp POD:PATH DIR, then skiff cp DIR/NAME POD:PATH"
        )),
        (Endpoint::Host(_), Endpoint::Host(_)) => Err(refuse!(
            "one side must be in a pod: UUID:PATH (the pod's UUID or a unique prefix)"
        )),
    }
}

/// A running app's root, opened.
struct AppRoot {
    fd: OwnedFd,
    /// Who owns what is copied in: the pod's root (its user namespace's
    /// first host id with --private-users).
    owner: Option<(u32, u32)>,
}

impl AppRoot {
    fn open(ctx: &Context, uuid: &str, app: Option<&str>) -> Result<AppRoot, OpsError> {
        let pod = ctx.pods().find(uuid)?;
        if !pod.is_running() {
            return Err(refuse!(
                "pod {} is {}, not running (its files are in its directory until it is collected)",
                pod.uuid,
                pod.display_state()
            ));
        }
        let runtime = pod.runtime()?;
        let name = match app {
            Some(name) => runtime
                .apps
                .iter()
                .find(|a| a.name == name)
                .map(|a| a.name.clone())
                .ok_or_else(|| refuse!("pod {} has no app '{name}'", pod.uuid))?,
            None => runtime
                .apps
                .first()
                .map(|a| a.name.clone())
                .ok_or_else(|| refuse!("pod {} has no apps", pod.uuid))?,
        };
        if runtime.rootless {
            return Err(refuse!(
                "skiff cp is not available for an ordinary user's pods yet: use skiff enter {} with cat or tar",
                pod.uuid
            ));
        }
        let fd = match runtime.flavor {
            Flavor::Kvm => {
                return Err(refuse!(
                    "skiff cp cannot reach into a kvm pod's VM: use skiff enter {} with cat",
                    pod.uuid
                ));
            }
            Flavor::Fly => open_root(&pod.path.join("stage1/apps").join(&name).join("rootfs"))
                .map_err(|e| refuse!("cannot open the root of app '{name}': {e}"))?,
            Flavor::Ns | Flavor::Oci => {
                // The process is held (a pidfd) while its root is opened, and
                // checked to be the app's before and alive after: its pid
                // cannot have been reused for another's in between.
                let pid = app_pid(&pod, &name)?;
                let gone = || refuse!("app '{name}' ended or restarted meanwhile: try again");
                let held = rustix::process::Pid::from_raw(pid)
                    .and_then(|p| {
                        rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok()
                    })
                    .ok_or_else(gone)?;
                if app_pid(&pod, &name)? != pid {
                    return Err(gone());
                }
                let fd = open_root(Path::new(&format!("/proc/{pid}/root")))
                    .map_err(|e| refuse!("cannot open the root of app '{name}': {e}"))?;
                if exited(&held) {
                    return Err(gone());
                }
                fd
            }
        };
        let owner = runtime.private_users.map(|base| (base, base));
        Ok(AppRoot { fd, owner })
    }

    /// Where a host file named `name` goes for `path`: into `path` when it
    /// is a directory, else `path` itself (its parent must exist).
    fn target(&self, path: &str, name: &OsStr) -> Result<(OwnedFd, PathBuf), OpsError> {
        if let Ok(dir) = in_root(&self.fd, path, OFlags::PATH | OFlags::DIRECTORY) {
            return Ok((dir, PathBuf::from(name)));
        }
        let trimmed = path.trim_end_matches('/');
        let (parent, last) = match trimmed.rsplit_once('/') {
            Some((parent, last)) => (if parent.is_empty() { "/" } else { parent }, last),
            None => (".", trimmed),
        };
        if last.is_empty() || last == "." || last == ".." {
            return Err(refuse!("{path}: name a file or directory in the pod"));
        }
        let dir = in_root(&self.fd, parent, OFlags::PATH | OFlags::DIRECTORY)
            .map_err(|e| refuse!("{parent} in the pod: {e}"))?;
        Ok((dir, PathBuf::from(last)))
    }
}

fn open_root(dir: &Path) -> rustix::io::Result<OwnedFd> {
    rustix::fs::open(
        dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Whether the process of `pidfd` has exited (its pidfd is readable).
fn exited(pidfd: &OwnedFd) -> bool {
    let mut fds = [rustix::event::PollFd::new(
        pidfd,
        rustix::event::PollFlags::IN,
    )];
    let now = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    !matches!(rustix::event::poll(&mut fds, Some(&now)), Ok(0))
}

/// The host pid of app `name`: the ns flavor's app process as stage1
/// recorded it, the oci flavor's container process.
fn app_pid(pod: &Pod, name: &str) -> Result<i32, OpsError> {
    let init = pod
        .pid()
        .ok_or_else(|| refuse!("pod {} has no pid yet", pod.uuid))?;
    if pod.runtime()?.flavor == Flavor::Oci {
        return Ok(init);
    }
    skiff_stage1::enter::running_app_pid(pod, init, name)
        .map_err(|e| refuse!("{}", skiff_stage1::error_line(&e)))
}

/// openat2 under `root` with the pod's paths confined to it.
fn in_root(root: &OwnedFd, path: &str, flags: OFlags) -> rustix::io::Result<OwnedFd> {
    let relative = path.trim_start_matches('/');
    rustix::fs::openat2(
        root,
        if relative.is_empty() { "." } else { relative },
        flags | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
}

/// The last component of a pod path (`/` copies as the root's name `.`
/// refused: name what to copy).
fn base_name(path: &str) -> Result<PathBuf, OpsError> {
    let last = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    if last.is_empty() || last == "." || last == ".." {
        return Err(refuse!("{path}: name a file or directory in the pod"));
    }
    Ok(PathBuf::from(last))
}

/// Where a pod entry named `name` lands for host path `dest`: inside it
/// when it is a directory, else `dest` itself.
fn host_target(dest: &Path, name: &Path) -> Result<PathBuf, OpsError> {
    if dest.is_dir() {
        return Ok(dest.join(name));
    }
    match dest.parent() {
        Some(parent) if parent.as_os_str().is_empty() || parent.is_dir() => Ok(dest.to_path_buf()),
        _ => Err(refuse!("{}: its directory does not exist", dest.display())),
    }
}

/// The kernel's own filesystems a copy never reads or writes: their files
/// are the host's (sysctls, kernel memory, cgroup knobs) even where a pod
/// sees them, and a pod's symlink could point a copy at them.
const KERNEL_FILESYSTEMS: [(i64, &str); 9] = [
    (0x9fa0, "proc"),
    (0x6265_6572, "sysfs"),
    (0x0027_e0eb, "cgroup"),
    (0x6367_7270, "cgroup2"),
    (0x6462_6720, "debugfs"),
    (0x7472_6163, "tracefs"),
    (0x7363_6673, "securityfs"),
    (0xcafe_4a11, "bpf"),
    (0x1cd1, "devpts"),
];

/// Refuses `fd` when it is on one of the [`KERNEL_FILESYSTEMS`].
fn not_kernel_fs(fd: &OwnedFd, shown: &str) -> Result<(), OpsError> {
    let stat = rustix::fs::fstatfs(fd).map_err(|e| refuse!("{shown}: {e}"))?;
    match KERNEL_FILESYSTEMS
        .iter()
        .find(|(magic, _)| *magic == stat.f_type as i64)
    {
        Some((_, name)) => Err(refuse!(
            "{shown} is on the kernel's {name} filesystem: skiff cp copies only the app's files"
        )),
        None => Ok(()),
    }
}

/// The directory of host path `target`, opened (the user's path, followed
/// as given), and its last component: everything below is made relative
/// to this handle, never through a host path again.
fn host_parent(target: &Path) -> Result<(OwnedFd, std::ffi::OsString), OpsError> {
    let name = target
        .file_name()
        .ok_or_else(|| refuse!("{}: name a file or directory", target.display()))?;
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let fd = rustix::fs::open(
        parent,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| refuse!("{}: {e}", parent.display()))?;
    Ok((fd, name.to_os_string()))
}

/// Opens `name` in `dir` to be written as a regular file: made with `mode`
/// if missing (then `true`), else truncated if it is a regular file. A
/// symlink, FIFO or device there is refused, never followed or waited on.
fn open_for_writing(dir: &OwnedFd, name: &OsStr, mode: u32) -> rustix::io::Result<(OwnedFd, bool)> {
    let flags = OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    match rustix::fs::openat(
        dir,
        name,
        flags | OFlags::CREATE | OFlags::EXCL,
        Mode::from_raw_mode(mode),
    ) {
        Ok(fd) => Ok((fd, true)),
        Err(rustix::io::Errno::EXIST) => {
            let fd = rustix::fs::openat(dir, name, flags, Mode::empty())?;
            let stat = rustix::fs::fstat(&fd)?;
            if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
                return Err(rustix::io::Errno::EXIST);
            }
            rustix::fs::ftruncate(&fd, 0)?;
            Ok((fd, false))
        }
        Err(e) => Err(e),
    }
}

/// Makes directory `name` in `dir` (then `true`), or takes the one there
/// if it is a directory, not a symlink to one; opened for reading.
fn make_dir(dir: &OwnedFd, name: &OsStr, mode: u32) -> rustix::io::Result<(OwnedFd, bool)> {
    let created = match rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(mode)) {
        Ok(()) => true,
        Err(rustix::io::Errno::EXIST) => false,
        Err(e) => return Err(e),
    };
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Ok((fd, created))
}

/// Reopens the file `opath` (an O_PATH fd) for reading: the same inode,
/// whatever the pod renamed meanwhile.
fn reopen(opath: &OwnedFd, flags: OFlags) -> rustix::io::Result<OwnedFd> {
    rustix::fs::open(
        format!("/proc/self/fd/{}", opath.as_raw_fd()),
        flags | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Copies the pod entry `source` (O_PATH, `shown` in messages) into the
/// host directory `dir` as `name` (`dest` in messages).
fn out_of_pod(
    source: &OwnedFd,
    shown: &str,
    dir: &OwnedFd,
    name: &OsStr,
    dest: &Path,
    depth: usize,
    copied: &mut Copied,
) -> Result<(), OpsError> {
    not_kernel_fs(source, shown)?;
    let stat = rustix::fs::fstat(source).map_err(|e| refuse!("{shown}: {e}"))?;
    // Set-id and sticky bits do not leave the pod.
    let mode = stat.st_mode & 0o777;
    let failed = |e: rustix::io::Errno| refuse!("{}: {e}", dest.display());
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::RegularFile => {
            let file =
                File::from(reopen(source, OFlags::RDONLY).map_err(|e| refuse!("{shown}: {e}"))?);
            let (out, _) = open_for_writing(dir, name, mode).map_err(failed)?;
            let mut out = File::from(out);
            let bytes = std::io::copy(&mut &file, &mut out).map_err(|e| refuse!("{shown}: {e}"))?;
            out.flush()
                .map_err(|e| refuse!("{}: {e}", dest.display()))?;
            copied.files += 1;
            copied.bytes += bytes;
        }
        FileType::Symlink => {
            let target = rustix::fs::readlinkat(source, "", Vec::new())
                .map_err(|e| refuse!("{shown}: {e}"))?;
            let target = Path::new(OsStr::from_bytes(target.as_bytes()));
            if !stays_within(target, depth) {
                copied.skipped.push(format!(
                    "{shown}: a symlink to {} (outside what is copied: on the host it would name the host's files)",
                    target.display()
                ));
                return Ok(());
            }
            rustix::fs::symlinkat(target, dir, name).map_err(failed)?;
            copied.files += 1;
        }
        FileType::Directory if depth < MAX_DEPTH => {
            // Owner-only while it fills; the pod's mode at the end.
            let (made, _) = make_dir(dir, name, 0o700).map_err(failed)?;
            let source_dir = reopen(source, OFlags::RDONLY | OFlags::DIRECTORY)
                .map_err(|e| refuse!("{shown}: {e}"))?;
            let names = entries(&source_dir).map_err(|e| refuse!("{shown}: {e}"))?;
            for child_name in names {
                // One component, not followed: nothing to resolve.
                let child = match rustix::fs::openat(
                    &source_dir,
                    child_name.as_os_str(),
                    OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(child) => child,
                    // Gone meanwhile (the pod runs).
                    Err(_) => continue,
                };
                let shown = format!("{}/{}", shown.trim_end_matches('/'), child_name.display());
                out_of_pod(
                    &child,
                    &shown,
                    &made,
                    child_name.as_os_str(),
                    &dest.join(&child_name),
                    depth + 1,
                    copied,
                )?;
            }
            rustix::fs::fchmod(&made, Mode::from_raw_mode(mode)).map_err(failed)?;
        }
        FileType::Directory => copied
            .skipped
            .push(format!("{shown}: deeper than {MAX_DEPTH} levels")),
        other => copied
            .skipped
            .push(format!("{shown}: a {other:?} is not copied")),
    }
    Ok(())
}

/// Whether a symlink `depth` levels below the top of a copy (1: in the top
/// directory) with `target` points inside the copy: relative, some `..`
/// first that climb no higher than the top directory, then only names.
/// (A `..` after a name could climb out through a symlink the pod made
/// for that name; names below stay inside, whatever symlinks they are.)
fn stays_within(target: &Path, depth: usize) -> bool {
    use std::path::Component;
    let mut climbs = 0;
    let mut descended = false;
    for component in target.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir if !descended => climbs += 1,
            Component::Normal(_) => descended = true,
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    depth > 0 && climbs < depth && (descended || climbs > 0)
}

/// The names in directory `dir` but `.` and `..`.
fn entries(dir: &OwnedFd) -> rustix::io::Result<Vec<PathBuf>> {
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(PathBuf::from(OsStr::from_bytes(name)));
        }
    }
    Ok(names)
}

/// Copies the host entry `source` into the pod's directory `parent` as
/// `name` (never following a symlink the pod put there).
fn into_pod(
    source: &Path,
    meta: &std::fs::Metadata,
    parent: &OwnedFd,
    name: &Path,
    owner: Option<(u32, u32)>,
    depth: usize,
    copied: &mut Copied,
) -> Result<(), OpsError> {
    use std::os::unix::fs::MetadataExt;
    let shown = || format!("{} in the pod", name.display());
    not_kernel_fs(parent, &shown())?;
    let mode = meta.mode() & 0o777;
    let file_type = meta.file_type();
    let failed = |e: rustix::io::Errno| refuse!("{}: {e}", shown());
    // Only what this copy made changes owner: an existing file or
    // directory (a host volume's, say) keeps its own.
    let (made, created): (OwnedFd, bool) = if file_type.is_file() {
        let (fd, created) = open_for_writing(parent, name.as_os_str(), mode).map_err(failed)?;
        let mut input = File::open(source).map_err(|e| refuse!("{}: {e}", source.display()))?;
        let mut out = File::from(fd);
        let bytes = std::io::copy(&mut input, &mut out).map_err(|e| refuse!("{}: {e}", shown()))?;
        copied.files += 1;
        copied.bytes += bytes;
        (OwnedFd::from(out), created)
    } else if file_type.is_symlink() {
        let target =
            std::fs::read_link(source).map_err(|e| refuse!("{}: {e}", source.display()))?;
        rustix::fs::symlinkat(&target, parent, name.as_os_str()).map_err(failed)?;
        copied.files += 1;
        let fd = rustix::fs::openat(
            parent,
            name.as_os_str(),
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(failed)?;
        (fd, true)
    } else if file_type.is_dir() {
        if depth >= MAX_DEPTH {
            copied.skipped.push(format!(
                "{}: deeper than {MAX_DEPTH} levels",
                source.display()
            ));
            return Ok(());
        }
        let (dir, created) = make_dir(parent, name.as_os_str(), mode)
            .map_err(|e| refuse!("{}: not a directory ({e})", shown()))?;
        for entry in std::fs::read_dir(source).map_err(|e| refuse!("{}: {e}", source.display()))? {
            let entry = entry.map_err(|e| refuse!("{}: {e}", source.display()))?;
            let meta = entry
                .metadata()
                .map_err(|e| refuse!("{}: {e}", entry.path().display()))?;
            into_pod(
                &entry.path(),
                &meta,
                &dir,
                Path::new(&entry.file_name()),
                owner,
                depth + 1,
                copied,
            )?;
        }
        (dir, created)
    } else {
        copied.skipped.push(format!(
            "{}: only files, directories and symlinks are copied",
            source.display()
        ));
        return Ok(());
    };
    if !created {
        return Ok(());
    }
    if let Some((uid, gid)) = owner {
        let ids = (
            rustix::fs::Uid::from_raw(uid),
            rustix::fs::Gid::from_raw(gid),
        );
        rustix::fs::chownat(
            &made,
            "",
            Some(ids.0),
            Some(ids.1),
            rustix::fs::AtFlags::EMPTY_PATH | rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| refuse!("{}: {e}", shown()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_pods_only_with_a_colon_before_any_slash() {
        assert_eq!(
            Endpoint::parse("0123abcd:/etc/hostname"),
            Endpoint::Pod {
                uuid: "0123abcd".into(),
                path: "/etc/hostname".into()
            }
        );
        assert_eq!(Endpoint::parse("./a:b"), Endpoint::Host("./a:b".into()));
        assert_eq!(Endpoint::parse("/tmp/x"), Endpoint::Host("/tmp/x".into()));
        assert_eq!(Endpoint::parse(":x"), Endpoint::Host(":x".into()));
    }

    #[test]
    fn symlinks_resolve_inside_the_root_and_magic_links_are_refused() {
        let host = tempfile::tempdir().unwrap();
        std::fs::write(host.path().join("secret"), "host").unwrap();
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::write(r.join("secret"), "pod").unwrap();
        std::os::unix::fs::symlink(host.path().join("secret"), r.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../../../../secret", r.join("up")).unwrap();
        std::os::unix::fs::symlink("/proc/self/root/etc/passwd", r.join("magic")).unwrap();
        let fd = rustix::fs::open(r, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let read = |path: &str| {
            in_root(&fd, path, OFlags::RDONLY)
                .ok()
                .map(|f| std::io::read_to_string(File::from(f)).unwrap())
        };
        // The absolute link names a path the root does not have.
        assert_eq!(read("abs"), None);
        assert_eq!(read("up").as_deref(), Some("pod"));
        assert_eq!(read("magic"), None);
        assert_eq!(read("/../../secret").as_deref(), Some("pod"));
    }

    #[test]
    fn only_symlinks_inside_the_copy_come_out() {
        assert!(stays_within(Path::new("file"), 1));
        assert!(stays_within(Path::new("../sub/file"), 2));
        assert!(stays_within(Path::new("./a/./b"), 1));
        assert!(stays_within(Path::new(".."), 2));
        assert!(!stays_within(Path::new("../file"), 1));
        assert!(!stays_within(Path::new("a/../../x"), 1));
        assert!(!stays_within(Path::new("/etc/passwd"), 3));
        // A `..` after a name, which a symlink of the pod's could turn
        // into a climb (d/s -> .. then d/s/d/s/../../..).
        assert!(!stays_within(Path::new("d/s/d/s/../../../x"), 1));
        assert!(!stays_within(Path::new("a/../b"), 3));
        // The copy's top itself: nothing it points at is copied.
        assert!(!stays_within(Path::new("file"), 0));
    }

    #[test]
    fn the_kernels_filesystems_are_refused() {
        let proc_fd = rustix::fs::open("/proc/self", OFlags::PATH, Mode::empty()).unwrap();
        assert!(not_kernel_fs(&proc_fd, "/proc/self").is_err());
        let sys_fd = rustix::fs::open("/sys/kernel", OFlags::PATH, Mode::empty()).unwrap();
        assert!(not_kernel_fs(&sys_fd, "/sys/kernel").is_err());
        let tmp = tempfile::tempdir().unwrap();
        let tmp_fd = rustix::fs::open(tmp.path(), OFlags::PATH, Mode::empty()).unwrap();
        assert!(not_kernel_fs(&tmp_fd, "tmp").is_ok());
    }

    #[test]
    fn copies_out_lose_set_id_bits_and_skip_fifos() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let tree = root.path().join("tree");
        std::fs::create_dir(&tree).unwrap();
        std::fs::write(tree.join("tool"), "x").unwrap();
        std::fs::set_permissions(tree.join("tool"), std::fs::Permissions::from_mode(0o4755))
            .unwrap();
        rustix::fs::mkfifoat(rustix::fs::CWD, tree.join("fifo"), Mode::RWXU).unwrap();
        let fd =
            rustix::fs::open(root.path(), OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let source = in_root(&fd, "/tree", OFlags::PATH | OFlags::NOFOLLOW).unwrap();
        let out = tempfile::tempdir().unwrap();
        let (dir, name) = host_parent(&out.path().join("tree")).unwrap();
        let mut copied = Copied::default();
        out_of_pod(
            &source,
            "/tree",
            &dir,
            &name,
            &out.path().join("tree"),
            0,
            &mut copied,
        )
        .unwrap();
        let mode = std::fs::metadata(out.path().join("tree/tool"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o755);
        assert_eq!(copied.files, 1);
        assert_eq!(copied.skipped.len(), 1, "{:?}", copied.skipped);
        assert!(!out.path().join("tree/fifo").exists());
    }
}
