//! Sigstore (cosign) public keys and the signatures cosign attaches to OCI
//! images, checked offline.
//!
//! A cosign signature is a JSON payload ("simple signing": the image's
//! repository and manifest digest) and a signature over it, ECDSA P-256
//! with SHA-256 (ASN.1 DER) or Ed25519, made by a key whose public half is a
//! PEM `PUBLIC KEY` (SubjectPublicKeyInfo). The registry layout (the
//! `sha256-<digest>.sig` tag) is the fetcher's business; this module decides
//! whether signatures vouch for one image:
//! * a signature counts only if a key trusted for the image's repository
//!   verifies it over the payload's exact bytes;
//! * the payload's `docker-manifest-digest` must be the manifest fetched
//!   and its `docker-reference` must name the same repository (containers'
//!   `matchRepository`: the tag is not part of what is signed);
//! * one such signature is enough.

use base64::Engine as _;
use p256::pkcs8::{DecodePublicKey, EncodePublicKey, LineEnding};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::TrustError;
use crate::keystore::TrustedKey;
use crate::verify::Verified;

/// The payload type cosign writes.
pub const COSIGN_PAYLOAD_TYPE: &str = "cosign container image signature";
/// The payload type containers/image ("atomic") writes.
pub const ATOMIC_PAYLOAD_TYPE: &str = "atomic container signature";
/// Largest payload read.
pub const MAX_PAYLOAD: u64 = 64 << 10;

/// A cosign public key.
#[derive(Clone, PartialEq, Eq)]
pub enum CosignKey {
    EcdsaP256(p256::ecdsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl std::fmt::Debug for CosignKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CosignKey({} {})", self.algorithm(), self.fingerprint())
    }
}

/// Whether `bytes` look like a PEM public key (cosign's format) rather
/// than an OpenPGP key.
pub fn is_pem_public_key(bytes: &[u8]) -> bool {
    bytes
        .trim_ascii_start()
        .starts_with(b"-----BEGIN PUBLIC KEY-----")
}

impl CosignKey {
    /// Reads a PEM `PUBLIC KEY` (ECDSA P-256 or Ed25519).
    pub fn from_pem(bytes: &[u8]) -> Result<CosignKey, TrustError> {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| TrustError::BadCosignKey("a PEM public key is text".into()))?;
        let text = text.trim();
        if let Ok(k) = p256::ecdsa::VerifyingKey::from_public_key_pem(text) {
            return Ok(CosignKey::EcdsaP256(k));
        }
        if let Ok(k) = ed25519_dalek::VerifyingKey::from_public_key_pem(text) {
            return Ok(CosignKey::Ed25519(k));
        }
        Err(TrustError::BadCosignKey(
            "not an ECDSA P-256 or Ed25519 public key in PEM (the cosign key types skiff \
             verifies)"
                .into(),
        ))
    }

    fn spki_der(&self) -> Vec<u8> {
        let der = match self {
            CosignKey::EcdsaP256(k) => k.to_public_key_der(),
            CosignKey::Ed25519(k) => k.to_public_key_der(),
        };
        // Encoding a valid key cannot fail; an empty answer would only
        // give a fingerprint no key matches.
        der.map(|d| d.into_vec()).unwrap_or_default()
    }

    /// The PEM `PUBLIC KEY` text.
    pub fn to_pem(&self) -> String {
        let pem = match self {
            CosignKey::EcdsaP256(k) => k.to_public_key_pem(LineEnding::LF),
            CosignKey::Ed25519(k) => k.to_public_key_pem(LineEnding::LF),
        };
        pem.unwrap_or_default()
    }

    /// Lower-case hex SHA-256 of the key's SubjectPublicKeyInfo (DER), as
    /// sigstore names keys.
    pub fn fingerprint(&self) -> String {
        hex::encode(Sha256::digest(self.spki_der()))
    }

    pub fn algorithm(&self) -> &'static str {
        match self {
            CosignKey::EcdsaP256(_) => "ECDSA P-256",
            CosignKey::Ed25519(_) => "Ed25519",
        }
    }

    /// Whether `signature` is this key's over exactly `payload`.
    pub fn verifies(&self, payload: &[u8], signature: &[u8]) -> bool {
        match self {
            CosignKey::EcdsaP256(k) => {
                use p256::ecdsa::signature::Verifier;
                p256::ecdsa::Signature::from_der(signature)
                    .is_ok_and(|s| k.verify(payload, &s).is_ok())
            }
            CosignKey::Ed25519(k) => ed25519_dalek::Signature::from_slice(signature)
                .is_ok_and(|s| k.verify_strict(payload, &s).is_ok()),
        }
    }
}

#[derive(Deserialize)]
struct Payload {
    critical: Critical,
}

#[derive(Deserialize)]
struct Critical {
    identity: Identity,
    image: ImageClaim,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct Identity {
    #[serde(rename = "docker-reference")]
    docker_reference: String,
}

#[derive(Deserialize)]
struct ImageClaim {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: String,
}

/// The simple-signing payload cosign signs for `repository` at `digest`.
pub fn payload(repository: &str, digest: &str) -> Vec<u8> {
    serde_json::json!({
        "critical": {
            "identity": {"docker-reference": repository},
            "image": {"docker-manifest-digest": digest},
            "type": COSIGN_PAYLOAD_TYPE,
        },
        "optional": null,
    })
    .to_string()
    .into_bytes()
}

/// Docker Hub's names for itself.
const DOCKER_HUB_ALIASES: &[&str] = &["docker.io", "index.docker.io", "registry-1.docker.io"];

/// `registry/path` of a docker reference (`[docker://]name[:tag][@digest]`),
/// spelled one way: Docker Hub as `docker.io`, its official images under
/// `library/`, the registry in lower case. `None` if it is not one.
pub fn repository(reference: &str) -> Option<String> {
    let name = reference.strip_prefix("docker://").unwrap_or(reference);
    let name = name.split_once('@').map_or(name, |(n, _)| n);
    let name = match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => &name[..i],
        _ => name,
    };
    let (registry, path) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_ascii_lowercase(), rest.to_string())
        }
        _ => ("docker.io".to_string(), name.to_string()),
    };
    let registry = if DOCKER_HUB_ALIASES.contains(&registry.as_str()) {
        "docker.io".to_string()
    } else {
        registry
    };
    let path = if registry == "docker.io" && !path.contains('/') {
        format!("library/{path}")
    } else {
        path
    };
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let ok = !registry.is_empty()
        && !path.is_empty()
        && path.split('/').all(|p| {
            // A component starts and ends with a letter or digit: `.`
            // and `..` are never one.
            p.as_bytes().first().is_some_and(alnum)
                && p.as_bytes().last().is_some_and(alnum)
                && p.bytes()
                    .all(|b| alnum(&b) || matches!(b, b'_' | b'.' | b'-'))
        });
    ok.then(|| format!("{registry}/{path}"))
}

/// One signature found for an image: the payload's bytes and the raw
/// signature (base64-decoded from the annotation).
pub struct Signature<'a> {
    pub payload: &'a [u8],
    pub signature: &'a [u8],
}

/// Decodes the base64 of a `dev.cosignproject.cosign/signature` annotation.
pub fn decode_signature(annotation: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(annotation.trim())
        .ok()
}

/// What a verified payload must say: the image's repository
/// ([`repository`]'s spelling) and the manifest digests that name it (the
/// index and the platform's manifest, for a multi-platform image); `tag`
/// is the tag asked for, if any.
pub struct Expected<'a> {
    pub repository: &'a str,
    pub digests: &'a [String],
    pub tag: Option<&'a str>,
}

/// The tag of a docker reference, if it has one.
fn tag_of(reference: &str) -> Option<&str> {
    let name = reference.split_once('@').map_or(reference, |(n, _)| n);
    match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => Some(&name[i + 1..]),
        _ => None,
    }
}

/// Why a payload a trusted key signed does not vouch for `expected`, by
/// cosign's rules: the repository must match, the tag is not signed.
fn payload_problem(payload: &[u8], expected: &Expected<'_>) -> Option<String> {
    claims_problem(payload, expected, false)
}

/// Why a signed payload does not vouch for `expected`. With `exact`
/// (containers' `matchRepoDigestOrExact`, for simple signing): an image
/// asked for by tag needs a signature for that very tag.
pub(crate) fn claims_problem(
    payload: &[u8],
    expected: &Expected<'_>,
    exact: bool,
) -> Option<String> {
    let p: Payload = match serde_json::from_slice(payload) {
        Ok(p) => p,
        Err(e) => {
            return Some(format!(
                "its payload is not a simple-signing document ({e})"
            ));
        }
    };
    let c = &p.critical;
    if c.kind != COSIGN_PAYLOAD_TYPE && c.kind != ATOMIC_PAYLOAD_TYPE {
        return Some(format!(
            "its payload is of type {:?}, not a container image signature",
            c.kind
        ));
    }
    if !expected.digests.contains(&c.image.docker_manifest_digest) {
        return Some(format!(
            "it signs manifest {:?}, not the one fetched ({})",
            c.image.docker_manifest_digest,
            expected.digests.join(" or ")
        ));
    }
    match repository(&c.identity.docker_reference) {
        Some(r) if r == expected.repository => {}
        _ => {
            return Some(format!(
                "it signs the image for repository {:?}, not {}",
                c.identity.docker_reference, expected.repository
            ));
        }
    }
    match (exact, expected.tag) {
        (true, Some(tag)) if tag_of(&c.identity.docker_reference) != Some(tag) => Some(format!(
            "it signs {:?}, not tag {tag} (a signature names the tag it is for)",
            c.identity.docker_reference
        )),
        _ => None,
    }
}

/// Checks `signatures` against the cosign keys among `keys` (those trusted
/// for the image); the first signature a trusted key made over a payload
/// that names this image decides. Returns who signed and which of
/// `signatures` it was.
pub fn verify(
    keys: &[TrustedKey],
    signatures: &[Signature<'_>],
    expected: &Expected<'_>,
) -> Result<(Verified, usize), TrustError> {
    let cosign_keys: Vec<(&TrustedKey, &CosignKey)> = keys
        .iter()
        .filter_map(|k| k.key.cosign().map(|c| (k, c)))
        .collect();
    let mut refused: Option<TrustError> = None;
    for (i, sig) in signatures.iter().enumerate() {
        for (trusted, key) in &cosign_keys {
            if !key.verifies(sig.payload, sig.signature) {
                continue;
            }
            match payload_problem(sig.payload, expected) {
                None => return Ok((Verified::by(trusted, trusted.fingerprint.clone()), i)),
                Some(reason) => {
                    refused.get_or_insert(TrustError::Invalid {
                        fingerprint: trusted.fingerprint.clone(),
                        reason,
                    });
                }
            }
        }
    }
    Err(refused.unwrap_or(TrustError::NoValidSignature {
        signatures: signatures.len(),
        keys: cosign_keys.len(),
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn repositories_are_spelled_one_way() {
        for (input, want) in [
            ("busybox", "docker.io/library/busybox"),
            ("docker://busybox:1.36", "docker.io/library/busybox"),
            (
                "index.docker.io/library/busybox",
                "docker.io/library/busybox",
            ),
            ("registry-1.docker.io/team/app", "docker.io/team/app"),
            ("127.0.0.1:5000/test/app:v1", "127.0.0.1:5000/test/app"),
            ("Reg.Example.org/a/b@sha256:00", "reg.example.org/a/b"),
            ("localhost/x", "localhost/x"),
        ] {
            assert_eq!(repository(input).as_deref(), Some(want), "{input}");
        }
        for bad in [
            "",
            "reg.example.org/",
            "reg.example.org/A",
            "a//b",
            "r.org/a/../b",
            "r.org/.",
        ] {
            assert_eq!(repository(bad), None, "{bad}");
        }
    }

    #[test]
    fn payload_claims_are_checked() {
        let digests = vec![format!("sha256:{}", "a".repeat(64))];
        let expected = Expected {
            repository: "reg.example.org/team/app",
            digests: &digests,
            tag: Some("v1"),
        };
        assert_eq!(
            payload_problem(&payload("reg.example.org/team/app", &digests[0]), &expected),
            None
        );
        let other = payload_problem(
            &payload(
                "reg.example.org/team/app",
                &format!("sha256:{}", "b".repeat(64)),
            ),
            &expected,
        )
        .unwrap();
        assert!(other.contains("not the one fetched"), "{other}");
        let repo = payload_problem(
            &payload("reg.example.org/team/other", &digests[0]),
            &expected,
        )
        .unwrap();
        assert!(repo.contains("repository"), "{repo}");
        assert!(payload_problem(b"{}", &expected).is_some());
        // Exact matching (simple signing) wants the tag asked for.
        let atomic = |reference: &str| {
            serde_json::json!({"critical": {"identity": {"docker-reference": reference},
                "image": {"docker-manifest-digest": digests[0]}, "type": ATOMIC_PAYLOAD_TYPE}})
            .to_string()
        };
        assert_eq!(
            claims_problem(
                atomic("reg.example.org/team/app:v1").as_bytes(),
                &expected,
                true
            ),
            None
        );
        for other in ["reg.example.org/team/app:v2", "reg.example.org/team/app"] {
            let p = claims_problem(atomic(other).as_bytes(), &expected, true).unwrap();
            assert!(p.contains("not tag v1"), "{p}");
        }
        assert_eq!(tag_of("127.0.0.1:5000/a/b"), None);
        assert_eq!(tag_of("127.0.0.1:5000/a/b:t@sha256:00"), Some("t"));
    }
}
