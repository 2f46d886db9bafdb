//! Host devices the user passes to a pod (`skiff run --device=PATH`): the
//! only way past the default device policy, which lets a pod open nothing
//! but the minimal /dev (docs/security.md). Checked before anything is
//! made: an absolute path under `/dev` naming a character or block device.

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Character or block device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    Char,
    Block,
}

/// A host device node given to a pod, at the same path in the pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodDevice {
    /// Its path on the host and in the pod (under `/dev`).
    pub path: PathBuf,
    pub kind: DeviceKind,
    pub major: u32,
    pub minor: u32,
    /// The host node's permission bits (the `oci` flavor's node gets them).
    pub mode: u32,
}

/// Why a `--device` is refused.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("--device {0}: give an absolute path under /dev, e.g. --device=/dev/fuse")]
    NotUnderDev(String),
    #[error("--device {path}")]
    Missing {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("--device {0}: not a device node (give the device itself, not a symlink or file)")]
    NotADevice(String),
    #[error(
        "--device {0}: the pod's /dev already has it (null, zero, full, random, urandom, tty, console, ptmx, pts, shm, mqueue, fd, stdin, stdout, stderr)"
    )]
    Builtin(String),
}

/// Names the pod's own /dev has (see stage1's mounts).
const BUILTIN: [&str; 15] = [
    "null", "zero", "full", "random", "urandom", "tty", "console", "ptmx", "pts", "shm", "mqueue",
    "fd", "stdin", "stdout", "stderr",
];

impl PodDevice {
    /// The device node at `path` (not followed if it is a symlink).
    pub fn at(path: &str) -> Result<PodDevice, DeviceError> {
        let p = Path::new(path);
        let normal = p.is_absolute()
            && p.components()
                .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
        let mut parts = p.components().skip(1);
        if !normal || parts.next() != Some(Component::Normal("dev".as_ref())) {
            return Err(DeviceError::NotUnderDev(path.to_string()));
        }
        match parts.next() {
            None => return Err(DeviceError::NotUnderDev(path.to_string())),
            Some(first)
                if BUILTIN
                    .iter()
                    .any(|b| first == Component::Normal(b.as_ref())) =>
            {
                return Err(DeviceError::Builtin(path.to_string()));
            }
            Some(_) => {}
        }
        let stat = rustix::fs::lstat(p).map_err(|e| DeviceError::Missing {
            path: path.to_string(),
            source: e.into(),
        })?;
        let kind = match rustix::fs::FileType::from_raw_mode(stat.st_mode) {
            rustix::fs::FileType::CharacterDevice => DeviceKind::Char,
            rustix::fs::FileType::BlockDevice => DeviceKind::Block,
            _ => return Err(DeviceError::NotADevice(path.to_string())),
        };
        Ok(PodDevice {
            path: p.to_path_buf(),
            kind,
            major: rustix::fs::major(stat.st_rdev),
            minor: rustix::fs::minor(stat.st_rdev),
            mode: stat.st_mode & 0o777,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_device_nodes_under_dev() {
        let null_like = PodDevice::at("/dev/full");
        assert!(matches!(null_like, Err(DeviceError::Builtin(_))));
        for bad in [
            "dev/fuse",
            "/etc/passwd",
            "/dev/../etc/passwd",
            "/dev",
            "/devices/x",
        ] {
            assert!(
                matches!(PodDevice::at(bad), Err(DeviceError::NotUnderDev(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            PodDevice::at("/dev/no-such-device"),
            Err(DeviceError::Missing { .. })
        ));
        // A directory, and a symlink (/dev/stdin is one, but builtin; /dev/fd too).
        let dir = PodDevice::at("/dev/net");
        assert!(
            matches!(
                dir,
                Err(DeviceError::NotADevice(_)) | Err(DeviceError::Missing { .. })
            ),
            "{dir:?}"
        );
        if Path::new("/dev/fuse").exists() {
            let fuse = PodDevice::at("/dev/fuse").unwrap();
            assert_eq!(
                (fuse.kind, fuse.major, fuse.minor),
                (DeviceKind::Char, 10, 229)
            );
        }
    }
}
