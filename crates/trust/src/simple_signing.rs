//! containers/image "simple signing": an OpenPGP-signed JSON document
//! naming an image's repository, tag and manifest digest — what `skopeo
//! copy --sign-by` and `podman push --sign-by` write (to a lookaside store
//! beside the registry; finding them is the fetcher's business).
//!
//! A signature vouches for an image when a trusted OpenPGP key (by the
//! rules of [`crate::verify`]: not revoked or expired, no weak digest)
//! signed a document of type `atomic container signature` that names the
//! manifest digest fetched, the same repository and — when the image was
//! asked for by tag — that tag (containers' `matchRepoDigestOrExact`).

use std::io::{Cursor, Read};

use pgp::composed::{Message, SignedPublicKey, SignedPublicSubKey};

use crate::TrustError;
use crate::cosign::{Expected, MAX_PAYLOAD, claims_problem};
use crate::keystore::TrustedKey;
use crate::verify::{Verified, signature_problem, signing_key_problem};

/// The signed document inside a signature, read at most [`MAX_PAYLOAD`]
/// bytes of it; the message is then read to its end.
fn open(bytes: &[u8]) -> Result<(Vec<u8>, Message<'static>), String> {
    let message = Message::from_bytes(Cursor::new(bytes.to_vec()))
        .map_err(|e| format!("not OpenPGP: {e}"))?;
    let mut message = message
        .decompress()
        .map_err(|e| format!("cannot decompress: {e}"))?;
    if message.is_encrypted() {
        return Err("an encrypted message, not a signature".into());
    }
    let mut content = Vec::new();
    (&mut message)
        .take(MAX_PAYLOAD + 1)
        .read_to_end(&mut content)
        .map_err(|e| format!("unreadable: {e}"))?;
    if content.len() as u64 > MAX_PAYLOAD {
        return Err(format!("the signed document is over {MAX_PAYLOAD} bytes"));
    }
    Ok((content, message))
}

/// The key of `trusted` that made the message's signature: the primary
/// (`None`) or a subkey, with the signature.
fn signer<'k>(
    message: &'k Message<'static>,
    primary: &'k SignedPublicKey,
) -> Option<(Option<&'k SignedPublicSubKey>, &'k pgp::packet::Signature)> {
    if let Ok(sig) = message.verify(&primary.primary_key) {
        return Some((None, sig));
    }
    primary
        .public_subkeys
        .iter()
        .find_map(|sub| message.verify(&sub.key).ok().map(|sig| (Some(sub), sig)))
}

/// Checks simple-signing `signatures` (each one signature file's bytes)
/// against the OpenPGP keys among `keys`; the first a trusted key made over
/// a document that names this image decides.
pub fn verify(
    keys: &[TrustedKey],
    signatures: &[Vec<u8>],
    expected: &Expected<'_>,
) -> Result<Verified, TrustError> {
    let pgp_keys: Vec<(&TrustedKey, &SignedPublicKey)> = keys
        .iter()
        .filter_map(|k| k.key.openpgp().map(|p| (k, p)))
        .collect();
    let mut refused: Option<TrustError> = None;
    let mut unusable: Option<String> = None;
    for bytes in signatures {
        let (content, message) = match open(bytes) {
            Ok(opened) => opened,
            Err(reason) => {
                tracing::debug!("a simple-signing signature is unusable: {reason}");
                unusable.get_or_insert(reason);
                continue;
            }
        };
        for (trusted, primary) in &pgp_keys {
            let Some((subkey, sig)) = signer(&message, primary) else {
                continue;
            };
            let problem = signature_problem(sig)
                .or_else(|| signing_key_problem(primary, subkey))
                .or_else(|| claims_problem(&content, expected, true));
            match problem {
                None => {
                    let signed_by = subkey.map_or_else(
                        || trusted.fingerprint.clone(),
                        |s| format!("{:x}", pgp::types::KeyDetails::fingerprint(&s.key)),
                    );
                    return Ok(Verified::by(trusted, signed_by));
                }
                Some(reason) => {
                    refused.get_or_insert(TrustError::Invalid {
                        fingerprint: trusted.fingerprint.clone(),
                        reason,
                    });
                }
            }
        }
    }
    // A refusal by a trusted key says most; then, if no signature could
    // even be read, why.
    Err(match (refused, unusable) {
        (Some(e), _) => e,
        (None, Some(reason)) if signatures.len() == 1 => TrustError::BadSignature(reason),
        _ => TrustError::NoValidSimpleSignature {
            signatures: signatures.len(),
            keys: pgp_keys.len(),
        },
    })
}
