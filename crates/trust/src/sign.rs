//! Making keys and signatures, for users without GnuPG: `skiff key
//! generate` (an Ed25519 OpenPGP key) and `skiff image sign` (an armored
//! detached signature that `gpg --verify` and `skiff fetch` accept).

use std::io::Read;

use pgp::composed::{
    ArmorOptions, Deserializable, DetachedSignature, EncryptionCaps, KeyType,
    SecretKeyParamsBuilder, SignedPublicKey, SignedSecretKey,
};
use pgp::crypto::hash::HashAlgorithm;
use pgp::types::Password;

use crate::TrustError;

/// A new key pair: armored secret key, armored public key, fingerprint.
pub struct NewKey {
    pub secret: String,
    pub public: String,
    pub fingerprint: String,
}

/// Generates an Ed25519 signing key for `user_id` (`Name <email>`),
/// without a passphrase (keep the secret file private).
pub fn generate_key(user_id: &str) -> Result<NewKey, TrustError> {
    let bad = |e: String| TrustError::BadKey(format!("cannot generate a key: {e}"));
    let mut params = SecretKeyParamsBuilder::default();
    params
        .key_type(KeyType::Ed25519Legacy)
        .can_certify(true)
        .can_sign(true)
        .can_encrypt(EncryptionCaps::None)
        .primary_user_id(user_id.into());
    let params = params.build().map_err(|e| bad(e.to_string()))?;
    let secret = params
        .generate(rand::thread_rng())
        .map_err(|e| bad(e.to_string()))?;
    let public = SignedPublicKey::from(secret.clone());
    Ok(NewKey {
        secret: secret
            .to_armored_string(ArmorOptions::default())
            .map_err(|e| bad(e.to_string()))?,
        public: public
            .to_armored_string(ArmorOptions::default())
            .map_err(|e| bad(e.to_string()))?,
        fingerprint: crate::keystore::fingerprint(&public),
    })
}

/// Reads a secret key (armored or binary).
fn secret_key(bytes: &[u8]) -> Result<SignedSecretKey, TrustError> {
    let bad = |e: String| TrustError::BadKey(format!("not an OpenPGP secret key: {e}"));
    if bytes.starts_with(b"-----BEGIN") {
        SignedSecretKey::from_armor_single(bytes)
            .map(|(k, _)| k)
            .map_err(|e| bad(e.to_string()))
    } else {
        SignedSecretKey::from_bytes(bytes).map_err(|e| bad(e.to_string()))
    }
}

/// An armored detached signature of `data` by the secret key in `key`.
pub fn sign_detached(key: &[u8], data: impl Read) -> Result<String, TrustError> {
    let key = secret_key(key)?;
    let sig = DetachedSignature::sign_binary_data(
        rand::thread_rng(),
        &key.primary_key,
        &Password::empty(),
        HashAlgorithm::Sha256,
        data,
    )
    .map_err(|e| TrustError::BadSignature(format!("cannot sign: {e}")))?;
    sig.to_armored_string(ArmorOptions::default())
        .map_err(|e| TrustError::BadSignature(e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn generated_keys_sign_what_skiff_verifies() {
        let key = generate_key("Test <test@example.com>").unwrap();
        assert!(key.secret.contains("PRIVATE KEY") && key.public.contains("PUBLIC KEY"));
        let data = b"image bytes";
        let sig = sign_detached(key.secret.as_bytes(), &data[..]).unwrap();
        let keys = crate::keystore::parse_keys(key.public.as_bytes()).unwrap();
        assert_eq!(crate::keystore::fingerprint(&keys[0]), key.fingerprint);
        assert!(sig.contains("BEGIN PGP SIGNATURE"));
        assert!(sign_detached(b"not a key", &data[..]).is_err());
    }
}
