//! skiff's operations: what `skiff run`, `prepare`, `stop`, `rm`, `gc`,
//! `fetch`, … do, over typed options and a [`Context`], for any program
//! (the command line in crates/cli only parses, converts and prints).
//!
//! - [`context`]: the settings and the one place store, pods, keystore and
//!   fetch sessions are built.
//! - [`run`]: fetch and render a pod's images, prepare it, start it.
//! - [`copy`]: files between the host and a running pod (`skiff cp`).
//! - [`enter`]: a command in a running pod's app.
//! - [`export`]: an app of a pod as an ACI (`skiff export`).
//! - [`pods`]: what a pod is ([`pods::PodInfo`]), stop, rm, gc.
//! - [`fsck`]: pods left half-way by a killed process, and what they hold.
//! - [`fetch`]: images into the store, under the run policy.
//! - [`generate`]: systemd units for a pod or an image.
//! - [`image`]: images in the store (list, rm, gc, verify, audit, export,
//!   extract, render) and as files (build, sign, validate, manifest).
//! - [`logs`]: a pod's app output, read back (`skiff logs`).
//! - [`locations`]: where a user's data and configuration are by default.
//! - [`network`]: a pod's networking options, resolved.
//! - [`pod_manifest`]: a whole pod from the user's appc pod manifest.
//! - [`rootless`]: an ordinary user's commands in a user namespace of
//!   their own (subordinate ids through newuidmap/newgidmap).
//! - [`procs`], [`stats`]: a running pod's processes and what it uses
//!   (`skiff top`, `skiff stats`).
//! - [`service`]: what systemd hands `skiff run` (notification, sockets).
//! - [`policy`]: the run policy (vulnerabilities, signatures, prefixes).
//! - [`trust`]: trusted keys (list, rm, add, discover) and signing keys.
//! - [`vulndb`]: the vulnerability database (OSV advisories).

pub mod context;
pub mod copy;
pub mod enter;
pub mod error;
pub mod export;
pub mod fetch;
pub mod fsck;
pub mod generate;
pub mod image;
pub mod locations;
pub mod logs;
pub mod network;
pub mod pod_manifest;
pub mod pods;
pub mod policy;
pub mod procs;
pub mod registry;
pub mod rootless;
pub mod run;
pub mod serve;
pub mod service;
pub mod stats;
pub mod trust;
pub mod vulndb;

pub use context::{Context, Settings};
pub use error::OpsError;

/// An [`OpsError::Refused`] with a formatted message.
#[macro_export]
macro_rules! refuse {
    ($($arg:tt)*) => {
        $crate::error::OpsError::Refused(format!($($arg)*))
    };
}
