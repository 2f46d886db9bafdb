//! skiff-stage1: the program that turns a prepared pod directory into a
//! running pod and supervises it until it ends. The contract between
//! stage0 (`skiff`) and stage1 is documented in docs/stage1.md.
//!
//! Map of the crate:
//! * [`fly`]: the `fly` flavor (chroot, host namespaces, privileged).
//! * [`ns`]: the `ns` flavor (namespaces, overlay roots, pivot_root, the
//!   pod's init, app start-up).
//! * [`mounts`]: mounts on targets resolved inside the app's root
//!   (openat2 RESOLVE_IN_ROOT), /proc, /sys, /dev, masked paths.
//! * [`cgroups`]: the pod's control groups (v1/v2) and resource limits.
//! * [`app`]: environment, users and groups, capabilities of an app.
//! * [`seccomp`]: the BPF filter (default deny-list, appc isolators); [`syscalls`]: x86_64 numbers.
//!
//! `unsafe` is confined to the syscalls std and rustix do not wrap safely
//! (fork, unshare, set*id, sigaction); each block says why it is sound.

pub mod app;
pub mod cgroups;
pub mod enter;
pub mod fly;
pub mod mounts;
pub mod ns;
pub mod seccomp;
pub mod syscalls;
pub mod tty;

/// Exit status of stage1 (and so of `skiff run`) when the pod could not be
/// set up; the reason is printed on stderr.
pub const EXIT_SETUP_FAILED: i32 = 125;

#[derive(Debug, thiserror::Error)]
pub enum Stage1Error {
    #[error("failed to {what}")]
    Setup {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
    #[error("cannot execute {program}")]
    Exec {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Pod(String),
}

/// An error and its causes on one line.
pub fn error_line(err: &dyn std::error::Error) -> String {
    let mut line = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    line
}
