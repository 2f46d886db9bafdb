#![allow(clippy::unwrap_used, clippy::print_stderr)]

//! End-to-end tests: they drive the real `skiff` binary (and the reference
//! `actool`, built by `cargo xtask test`) as a user would. One test binary
//! for all of them keeps compile time down.

mod ace;
mod audit;
mod cli_parity;
mod common;
mod containerd;
mod cri;
mod differential;
mod escape;
mod fetch;
mod hostile;
mod image_cli;
mod inspect;
mod kvm;
mod logs;
mod metadata;
mod net;
mod oci;
mod oci_trust;
mod ops;
mod pod_manifest;
mod pods;
mod reliability;
mod rootless;
mod runtime;
mod server;
mod share;
mod supervise;
mod systemd;
mod torture;
mod users;
