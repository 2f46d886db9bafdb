//! skiff-share: images from peers, verified, not trusted.
//!
//! * [`protocol`]: what a server answers and a fetch asks (offers, piece
//!   lists, paths); always built, the fetch side uses it.
//! * [`cidr`]: address ranges (`--allow`, and what mDNS may name).
//! * `mdns` (feature `mdns`): a site's servers announce themselves on the
//!   local segment, and fetches find them there.
//! * `server` (feature `server`): `skiff serve`, which shares a store's
//!   ACIs, layers and signatures read-only over HTTP, confined to them.
//!
//! It reads (never writes) these paths of a data directory, as
//! [`skiff_store`] lays them out: `cas/blobs/sha512/` (ACIs),
//! `cas/blobs/sha256/` (layers) and `cas/records/signatures/`.

pub mod cidr;
#[cfg(feature = "mdns")]
pub mod mdns;
pub mod protocol;

#[cfg(feature = "server")]
pub mod server;
