//! Verifying a detached signature over an image with the keys trusted for
//! its name.
//!
//! rPGP checks the cryptography; the policy is here, as
//! `golang.org/x/crypto/openpgp.CheckArmoredDetachedSignature` did it for
//! rkt, with today's rules added:
//! * the signing key is found by the signature's issuer fingerprint or key
//!   ID among the trusted primary keys and their subkeys;
//! * a subkey must be bound to its primary (checked when the key is loaded),
//!   flagged for signing, and neither revoked nor expired;
//! * a revoked or expired primary key is refused;
//! * MD5, SHA-1 and RIPEMD-160 digests and RSA keys under 2048 bits are refused;
//! * only binary and text document signatures count.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use pgp::composed::{DetachedSignature, SignedPublicKey, SignedPublicSubKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::{Signature, SignatureType};
use pgp::types::{KeyDetails, PublicParams, Timestamp};

use crate::TrustError;
use crate::keystore::{Scope, TrustedKey};

/// Who signed, once verified.
#[derive(Debug, Clone)]
pub struct Verified {
    /// Fingerprint of the trusted primary key.
    pub fingerprint: String,
    /// Fingerprint of the key that made the signature (a subkey or the primary).
    pub signed_by: String,
    pub scope: Scope,
    pub user_ids: Vec<String>,
}

impl Verified {
    /// Verified by `trusted`, the signature made by `signed_by` (its
    /// fingerprint, or a subkey's).
    pub fn by(trusted: &TrustedKey, signed_by: String) -> Verified {
        Verified {
            fingerprint: trusted.fingerprint.clone(),
            signed_by,
            scope: trusted.scope.clone(),
            user_ids: trusted.user_ids.clone(),
        }
    }
}

fn parse_signatures(bytes: &[u8]) -> Result<Vec<DetachedSignature>, TrustError> {
    let sigs: Vec<DetachedSignature> =
        crate::keystore::parse_all(bytes).map_err(|e| TrustError::BadSignature(e.to_string()))?;
    if sigs.is_empty() {
        return Err(TrustError::BadSignature("no signature found".to_string()));
    }
    Ok(sigs)
}

fn issuer_text(sig: &Signature) -> String {
    if let Some(fpr) = sig.issuer_fingerprint().first() {
        format!("{fpr:x}")
    } else if let Some(id) = sig.issuer_key_id().first() {
        format!("id {}", hex::encode(id.as_ref()))
    } else {
        "unknown".to_string()
    }
}

fn issued_by(sig: &Signature, key: &impl KeyDetails) -> bool {
    let fpr = key.fingerprint();
    let id = key.legacy_key_id();
    sig.issuer_fingerprint().iter().any(|f| **f == fpr)
        || sig.issuer_key_id().iter().any(|k| **k == id)
}

fn now() -> u32 {
    Timestamp::now().as_secs()
}

/// Checks whether a key created at `created` with expiry from `sig`
/// (seconds after creation; 0 or absent: never) has expired.
fn expired(created: Timestamp, sig: Option<&Signature>) -> bool {
    let secs = sig
        .and_then(Signature::key_expiration_time)
        .map_or(0, |d| d.as_secs());
    secs != 0 && u64::from(created.as_secs()) + u64::from(secs) < u64::from(now())
}

/// The newest self-signature of the primary key's user IDs.
fn primary_self_signature(key: &SignedPublicKey) -> Option<&Signature> {
    key.details
        .users
        .iter()
        .flat_map(|u| u.signatures.iter())
        .chain(key.details.direct_signatures.iter())
        .max_by_key(|s| s.created().map_or(0, |t| t.as_secs()))
}

fn weak_key(params: &PublicParams) -> Option<String> {
    if let PublicParams::RSA(rsa) = params {
        let bits = rsa::traits::PublicKeyParts::size(&rsa.key) * 8;
        if bits < 2048 {
            return Some(format!("RSA key of {bits} bits (at least 2048 required)"));
        }
    }
    None
}

/// The checks on the signing (sub)key; `None` when it may sign.
pub(crate) fn signing_key_problem(
    primary: &SignedPublicKey,
    subkey: Option<&SignedPublicSubKey>,
) -> Option<String> {
    if !primary.details.revocation_signatures.is_empty() {
        return Some("the key has been revoked".to_string());
    }
    if expired(
        primary.primary_key.created_at(),
        primary_self_signature(primary),
    ) {
        return Some("the key has expired".to_string());
    }
    match subkey {
        None => weak_key(primary.primary_key.public_params()),
        Some(sub) => {
            if sub
                .signatures
                .iter()
                .any(|s| s.typ() == Some(SignatureType::SubkeyRevocation))
            {
                return Some("the signing subkey has been revoked".to_string());
            }
            let binding = sub
                .signatures
                .iter()
                .filter(|s| s.typ() == Some(SignatureType::SubkeyBinding))
                .max_by_key(|s| s.created().map_or(0, |t| t.as_secs()));
            let Some(binding) = binding else {
                return Some("the subkey is not bound to its key".to_string());
            };
            if !binding.key_flags().sign() {
                return Some("the subkey is not a signing key".to_string());
            }
            if expired(sub.key.created_at(), Some(binding)) {
                return Some("the signing subkey has expired".to_string());
            }
            weak_key(sub.key.public_params())
        }
    }
}

pub(crate) fn signature_problem(sig: &Signature) -> Option<String> {
    match sig.typ() {
        Some(SignatureType::Binary | SignatureType::Text) => {}
        other => return Some(format!("not a document signature ({other:?})")),
    }
    match sig.hash_alg() {
        Some(
            HashAlgorithm::Md5
            | HashAlgorithm::Sha1
            | HashAlgorithm::Ripemd160
            | HashAlgorithm::None,
        )
        | None => {
            return Some(format!("weak or unknown digest {:?}", sig.hash_alg()));
        }
        _ => {}
    }
    if let (Some(created), Some(valid_for)) = (sig.created(), sig.signature_expiration_time())
        && valid_for.as_secs() != 0
        && u64::from(created.as_secs()) + u64::from(valid_for.as_secs()) < u64::from(now())
    {
        return Some("the signature has expired".to_string());
    }
    None
}

/// Verifies `signature` (armored or binary, possibly several signatures)
/// over the file `data` for the image `image`, with `keys` (the keys trusted
/// for that name). The first signature made by a trusted key decides.
pub fn verify_detached(
    image: &str,
    keys: &[TrustedKey],
    signature: &[u8],
    data: &Path,
) -> Result<Verified, TrustError> {
    let sigs = parse_signatures(signature)?;
    let mut issuer = String::new();
    for detached in &sigs {
        let sig = &detached.signature;
        issuer = issuer_text(sig);
        for trusted in keys {
            let Some(primary) = trusted.key.openpgp() else {
                continue;
            };
            let subkey = primary
                .public_subkeys
                .iter()
                .find(|s| issued_by(sig, &s.key));
            if subkey.is_none() && !issued_by(sig, &primary.primary_key) {
                continue;
            }
            let invalid = |reason: String| TrustError::Invalid {
                fingerprint: trusted.fingerprint.clone(),
                reason,
            };
            if let Some(problem) =
                signature_problem(sig).or_else(|| signing_key_problem(primary, subkey))
            {
                return Err(invalid(problem));
            }
            let file = File::open(data).map_err(skiff_io::io_err_at("read", data))?;
            let reader = BufReader::with_capacity(1 << 16, file);
            let (result, signed_by) = match subkey {
                Some(sub) => (
                    sig.verify(&sub.key, reader),
                    format!("{:x}", sub.key.fingerprint()),
                ),
                None => (
                    sig.verify(&primary.primary_key, reader),
                    trusted.fingerprint.clone(),
                ),
            };
            result.map_err(|e| {
                tracing::debug!(image, key = %signed_by, "OpenPGP verification failed: {e}");
                TrustError::Mismatch {
                    image: image.to_string(),
                    fingerprint: trusted.fingerprint.clone(),
                    signer: trusted.user_ids.first().cloned(),
                }
            })?;
            return Ok(Verified::by(trusted, signed_by));
        }
    }
    Err(TrustError::Untrusted {
        image: image.to_string(),
        issuer,
    })
}
