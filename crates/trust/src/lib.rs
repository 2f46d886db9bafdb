//! skiff-trust: which OpenPGP keys may sign which images, and verification
//! of detached signatures (`.aci.asc`) made by GnuPG or any OpenPGP tool.
//!
//! Map of the crate:
//! * [`keystore`]: the keystore directories (`/etc/skiff/trustedkeys`, vendor
//!   keys in `/usr/lib/skiff/trustedkeys`), scopes, masking.
//! * [`cosign`]: cosign's PEM keys and the signatures it attaches to OCI
//!   images (simple-signing payloads).
//! * [`simple_signing`]: containers/image's OpenPGP-signed documents for
//!   OCI images (`skopeo copy --sign-by`).
//! * [`verify`]: signature checks (issuer lookup, subkey bindings, expiry,
//!   revocation, weak digests and keys).
//!
//! A signature is valid for an image only when it was made by a key trusted
//! for the root or for a prefix of the image name that ends at a `/`
//! boundary: a key for `example.com/et` covers `example.com/et/cd` but not
//! `example.com/etcd`.

pub mod cosign;
pub mod cosign_key;
pub mod keystore;
pub mod sign;
pub mod simple_signing;
pub mod verify;

pub use keystore::{Keystore, PublicKey, Scope, TrustedKey};
pub use verify::Verified;

#[cfg(test)]
mod tests;

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error(transparent)]
    Io(#[from] skiff_io::IoError),
    #[error("not an OpenPGP public key: {0}")]
    BadKey(String),
    #[error("{0}")]
    BadCosignKey(String),
    #[error("not an OpenPGP signature: {0}")]
    BadSignature(String),
    #[error("bad trust prefix '{prefix}': {reason}")]
    BadPrefix { prefix: String, reason: String },
    #[error("no trusted key with fingerprint {0} (see `skiff trust list`)")]
    UnknownKey(String),
    #[error(
        "no key trusted for '{image}' made this signature (signed by key {issuer}); \
         trust the signer with `skiff trust --prefix {image} KEY`"
    )]
    Untrusted { image: String, issuer: String },
    #[error(
        "none of its {signatures} signature(s) verifies with the {keys} cosign key(s) trusted \
         for it: it was signed by another key, or changed after it was signed"
    )]
    NoValidSignature { signatures: usize, keys: usize },
    #[error(
        "none of its {signatures} simple-signing signature(s) verifies with the {keys} OpenPGP \
         key(s) trusted for it: it was signed by another key, or changed after it was signed"
    )]
    NoValidSimpleSignature { signatures: usize, keys: usize },
    #[error("the signature by key {fingerprint} cannot be accepted: {reason}")]
    Invalid { fingerprint: String, reason: String },
    /// The signature's math does not hold for these bytes. The library's
    /// own words are logged at debug level (`--debug`), not shown.
    #[error(
        "the signature by key {fingerprint}{} does not match the image: it was changed after \
         it was signed, or the signature is for another file",
        signer.as_deref().map(|s| format!(" ({s})")).unwrap_or_default()
    )]
    Mismatch {
        image: String,
        fingerprint: String,
        signer: Option<String>,
    },
}
