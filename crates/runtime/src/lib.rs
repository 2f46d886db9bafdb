//! skiff-runtime: an OCI runtime with runc's command line, so that
//! containerd (`io.containerd.runc.v2` with `BinaryName`), CRI-O
//! (`runtime_path`) and so Kubernetes (a `RuntimeClass`) can run containers
//! with skiff's isolation code: the namespaces, mounts, seccomp filters,
//! capabilities, credentials and cgroups are those of `skiff-stage1`
//! (docs/oci-runtime.md).
//!
//! Map of the crate, from the top down:
//! * [`container`]: the operations (create, start, state, kill, delete,
//!   exec, ps, pause, resume, update) over a container's [`state`].
//! * [`init`]: the container's first process, from fork to exec;
//!   [`enter`]: a process joining a running container (`exec`).
//! * [`process`]: becoming the configured process (limits, user,
//!   capabilities, no_new_privs, seccomp, exec), for both.
//! * [`rootfs`] (mounts, devices, pivot), [`cgroup`] (OCI resources on v1
//!   and v2), [`namespaces`], [`seccomp`] (OCI profiles to
//!   `skiff_stage1::filter`), [`hooks`], [`console`], [`sync`] (the create
//!   process and init talking), [`config`] (config.json read and checked),
//!   [`selfexe`] (running from a sealed copy of the binary).

pub mod capabilities;
pub mod cgroup;
pub mod config;
pub mod console;
pub mod container;
pub mod enter;
pub mod fdmount;
pub mod features;
pub mod hooks;
pub mod init;
pub mod log;
pub mod namespaces;
pub mod process;
pub mod rootfs;
pub mod seccomp;
pub mod selfexe;
pub mod signals;
pub mod state;
pub mod sync;

use std::path::PathBuf;

/// Where containers' state lives unless `--root` says otherwise.
pub const DEFAULT_ROOT: &str = "/run/skiff-runtime";

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// Bad input: the message names the problem and the fix.
    #[error("{0}")]
    Invalid(String),
    #[error("container '{0}' does not exist")]
    NotFound(String),
    #[error("container '{0}' already exists (delete it first, or choose another ID)")]
    Exists(String),
    #[error("container '{id}' is {status}: {what}")]
    WrongState {
        id: String,
        status: String,
        what: String,
    },
    #[error("cannot {what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("config.json of {bundle}: {message}")]
    Config { bundle: PathBuf, message: String },
    /// What the container's init reported before it could start.
    #[error("{0}")]
    Init(String),
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Stage1(#[from] skiff_stage1::Stage1Error),
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// Maps an I/O error of the step `what` to [`RuntimeError::Io`].
pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RuntimeError {
    let what = what.into();
    move |source| RuntimeError::Io { what, source }
}

/// As [`io_err`] for rustix's errors.
pub(crate) fn errno(what: impl Into<String>) -> impl FnOnce(rustix::io::Errno) -> RuntimeError {
    let what = what.into();
    move |e| RuntimeError::Io {
        what,
        source: e.into(),
    }
}

/// An error and its causes on one line.
pub fn error_line(err: &dyn std::error::Error) -> String {
    skiff_stage1::error_line(err)
}
