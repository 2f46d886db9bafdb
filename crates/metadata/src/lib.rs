//! The appc metadata service (`skiff metadata-service`) and the protocol
//! stage1 uses to register pods with it.
//!
//! * [`protocol`]: registration messages over the service's Unix socket and
//!   the blocking client stage1 uses (no async runtime in stage1).
//! * `server` (feature `server`): the service — registrations, the HMAC
//!   identity key, persistence across restarts, and the HTTP API under
//!   `/<token>/acMetadata/v1` exactly as the appc spec names it.
//! * `listener` (feature `server`): connection limits (in all, per address)
//!   and the idle limit that keep one hostile pod from starving the others.

pub mod protocol;

#[cfg(feature = "server")]
mod api;
#[cfg(feature = "server")]
mod listener;
#[cfg(feature = "server")]
mod peer;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
mod state;

/// The TCP port the service listens on by default (rkt's).
pub const DEFAULT_PORT: u16 = 18112;
