//! The system-call seam of stage1: typed wrappers over what std and rustix
//! do not offer safely (fork, signal dispositions and masks, raw waits).
//! Modules above it call these instead of `libc` in `unsafe` blocks; each
//! `unsafe` here says which invariant makes it sound.
//!
//! * [`process`]: fork, wait, kill, immediate exit, closing inherited fds.
//! * [`signal`]: handlers for groups of signals, masks, default dispositions.
//! * [`thread`]: the only way stage1 starts threads (counted: [`process::fork`]
//!   refuses while one runs).
//! * [`ids`]: filesystem ids, an app's credentials.
//! * [`mount`]: `mount_setattr`. [`seccomp`]: installing a filter.
//!   [`bpf`]: loading and attaching the device program.

// The one place allowed to call them (clippy.toml's disallowed-methods).
#![allow(clippy::disallowed_methods)]

pub mod bpf;
pub mod ids;
pub mod mount;
pub mod process;
pub mod seccomp;
pub mod signal;
pub mod thread;
