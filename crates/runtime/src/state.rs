//! A container's state directory, `<root>/<id>` (0700): `state.json` (what
//! create recorded; 0600, it holds the process's environment),
//! `exec.sock` while the container is created but not started (its init
//! waits in `accept` on it), and a lock file. The status is read from the kernel each time
//! (is the init process, identified by pid *and* start time, alive? is
//! its cgroup frozen?), never trusted from a file.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use crate::{Result, RuntimeError, io_err};

pub const STATE_FILE: &str = "state.json";
pub const START_SOCKET: &str = "exec.sock";
const LOCK_FILE: &str = "lock";

/// What `create` records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Saved {
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub pid: i32,
    /// Field 22 of /proc/<pid>/stat when created: a later process with the
    /// same pid is not this container.
    pub start_time: u64,
    /// RFC 3339.
    pub created: String,
    /// The container's cgroup directories (one per v1 hierarchy, or one).
    pub cgroups: Vec<PathBuf>,
    /// The configuration as created (`update` changes its resources).
    pub config: Spec,
    /// Device and inode of the init's executable before it execs the
    /// process (the runtime's binary): `start` waits for it to change
    /// before the poststart hooks.
    #[serde(default)]
    pub runtime_exe: (u64, u64),
    /// Whether the container has its own mount namespace (without one its
    /// mounts live in the host's and `delete` removes them).
    pub own_mount_ns: bool,
}

/// A container's status, as runtime-spec names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A container ID: letters, digits, `_`, `+`, `-`, `.`; not `.` or `..`
/// (it names a directory under the state root).
pub fn check_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(RuntimeError::Invalid(format!(
            "bad container ID '{}': use letters, digits, '_', '+', '-' and '.' (at most 1024)",
            id.escape_debug()
        )))
    }
}

/// The state directory of one container.
#[derive(Debug, Clone)]
pub struct Dir {
    pub id: String,
    pub path: PathBuf,
}

/// An exclusive lock on a container's state, held until dropped.
pub struct Lock(#[allow(dead_code)] File);

impl Dir {
    pub fn new(root: &Path, id: &str) -> Result<Dir> {
        check_id(id)?;
        Ok(Dir {
            id: id.to_string(),
            path: root.join(id),
        })
    }

    /// The socket `start` connects to.
    pub fn start_socket(&self) -> PathBuf {
        self.path.join(START_SOCKET)
    }

    /// A path of `name` in the directory that is short enough for a Unix
    /// socket address whatever the root's length (through an fd of it).
    pub fn short_path(&self, dir: &std::os::fd::OwnedFd, name: &str) -> PathBuf {
        use std::os::fd::AsRawFd;
        PathBuf::from(format!("/proc/self/fd/{}/{name}", dir.as_raw_fd()))
    }

    /// The directory, open (`O_PATH`).
    pub fn open(&self) -> Result<std::os::fd::OwnedFd> {
        rustix::fs::open(
            &self.path,
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(crate::errno(format!("open {}", self.path.display())))
    }

    /// Makes the directory; refused if the container exists.
    pub fn create(&self, root: &Path) -> Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(io_err(format!("create {}", root.display())))?;
        match std::fs::DirBuilder::new().mode(0o700).create(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(RuntimeError::Exists(self.id.clone()))
            }
            Err(e) => Err(io_err(format!("create {}", self.path.display()))(e)),
        }
    }

    /// Takes the container's lock (waits for another operation on it).
    pub fn lock(&self) -> Result<Lock> {
        let path = self.path.join(LOCK_FILE);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    RuntimeError::NotFound(self.id.clone())
                } else {
                    io_err(format!("open {}", path.display()))(e)
                }
            })?;
        rustix::fs::flock(file.as_fd(), rustix::fs::FlockOperation::LockExclusive)
            .map_err(crate::errno(format!("lock {}", path.display())))?;
        Ok(Lock(file))
    }

    pub fn save(&self, saved: &Saved) -> Result<()> {
        let text = serde_json::to_vec(saved).map_err(|e| RuntimeError::Io {
            what: "encode the state".into(),
            source: std::io::Error::other(e),
        })?;
        replace_file(&self.path.join(STATE_FILE), &text, 0o600)
    }

    pub fn load(&self) -> Result<Saved> {
        let path = self.path.join(STATE_FILE);
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(RuntimeError::NotFound(self.id.clone()));
            }
            Err(e) => return Err(io_err(format!("read {}", path.display()))(e)),
        };
        serde_json::from_slice(&text).map_err(|e| {
            RuntimeError::Invalid(format!(
                "the state of container '{}' ({}) is damaged: {e}; remove it with `delete --force`",
                self.id,
                path.display()
            ))
        })
    }

    /// Removes the directory and everything in it.
    pub fn remove(&self) -> Result<()> {
        match std::fs::remove_dir_all(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(format!("remove {}", self.path.display()))(e)),
        }
    }
}

/// Writes `path` whole or not at all: a new temporary file beside it
/// (never through a symlink, never an existing file), then a rename.
pub fn replace_file(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(io_err(format!("write {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(io_err(format!("write {}", path.display())))
}

/// Field 22 (start time) of /proc/<pid>/stat and whether the process is
/// a zombie or dead; `None` if there is no such process.
pub fn process_start(pid: i32) -> Option<(u64, bool)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); field 22 is index 19.
    let state = fields.first()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((start, matches!(*state, "Z" | "X" | "x")))
}

impl Saved {
    /// Whether the init process still runs (not a zombie).
    pub fn alive(&self) -> bool {
        self.pid > 0
            && matches!(process_start(self.pid), Some((start, false)) if start == self.start_time)
    }

    /// The status, from the kernel.
    pub fn status(&self, dir: &Dir) -> Status {
        if !self.alive() {
            Status::Stopped
        } else if dir.start_socket().exists() {
            Status::Created
        } else if crate::cgroup::Cgroup::from_dirs(&self.cgroups).frozen() {
            Status::Paused
        } else {
            Status::Running
        }
    }

    /// The runtime-spec state (`state` prints it; hooks read it on stdin),
    /// with runc's extra fields (rootfs, created) that containerd reads.
    pub fn oci_state(&self, status: Status) -> serde_json::Value {
        let annotations = self.config.annotations().clone().unwrap_or_default();
        let mut state = serde_json::json!({
            "ociVersion": self.config.version(),
            "id": self.id,
            "status": status.name(),
            "bundle": self.bundle,
            "rootfs": self.rootfs,
            "created": self.created,
            "annotations": annotations,
        });
        if status != Status::Stopped {
            state["pid"] = self.pid.into();
        } else {
            state["pid"] = 0.into();
        }
        state
    }
}

/// Device and inode of `/proc/<pid>/exe`.
pub fn exe_id(pid: i32) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(format!("/proc/{pid}/exe")).ok()?;
    Some((m.dev(), m.ino()))
}

/// Now, RFC 3339 with nanoseconds (as runc writes `created`).
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Every container ID under `root`.
pub fn list(root: &Path) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join(STATE_FILE).exists())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    ids.sort();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_cannot_leave_the_root() {
        for bad in ["", ".", "..", "a/b", "../x", "a b", "a\0b"] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
        for good in ["abc", "a.b-c_d+1", "0123456789abcdef"] {
            check_id(good).unwrap();
        }
    }

    #[test]
    fn own_process_is_alive_with_its_start_time() {
        let pid = std::process::id() as i32;
        let (start, zombie) = process_start(pid).unwrap();
        assert!(!zombie);
        assert!(process_start(i32::MAX).is_none());
        let _ = start;
    }
}
