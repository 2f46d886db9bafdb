//! The appc metadata service (`skiff metadata-service`) and the protocol
//! stage1 uses to register pods with it.
//!
//! * [`protocol`]: registration messages over the service's Unix socket and
//!   the blocking client stage1 uses (no async runtime in stage1).
//! * `server` (feature `server`): the service — registrations, the HMAC
//!   identity key, persistence across restarts, and the HTTP API under
//!   `/<token>/acMetadata/v1` exactly as the appc spec names it.
//! * the connection limits (in all, per address) and the idle limit that
//!   keep one hostile pod from starving the others: [`LIMITS`], enforced by
//!   `skiff_io::listener`.

pub mod protocol;

#[cfg(feature = "server")]
mod api;
#[cfg(feature = "server")]
mod peer;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
mod state;

/// The service's connection limits: a pod has its own address, so 128
/// connections from one address are one pod's.
#[cfg(feature = "server")]
pub const LIMITS: skiff_io::listener::Limits = skiff_io::listener::Limits {
    total: 4096,
    per_peer: 128,
    idle: std::time::Duration::from_secs(10),
    // Pods on one bridge share a /64: each address is its own pod.
    v6_prefix: 128,
};

/// The TCP port the service listens on by default (rkt's).
pub const DEFAULT_PORT: u16 = 18112;
