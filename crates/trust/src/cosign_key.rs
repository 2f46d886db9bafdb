//! cosign signing keys: `skiff key generate --type=cosign` and
//! `skiff image sign --format=cosign`.
//!
//! The private key is PKCS#8, stored as cosign stores it: PEM `ENCRYPTED
//! SIGSTORE PRIVATE KEY` whose body is JSON naming the KDF (scrypt), its
//! salt and parameters, the cipher (NaCl secretbox) and its nonce, and the
//! ciphertext; the password may be empty, as with `COSIGN_PASSWORD=`. An
//! unencrypted PKCS#8 `PRIVATE KEY` (what `openssl genpkey` writes) is
//! read too. The public key is a PEM `PUBLIC KEY`.

use base64::Engine as _;
use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::{Key, Nonce, XSalsa20Poly1305};
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use p256::pkcs8::der::pem::{self, LineEnding};
use serde::{Deserialize, Serialize};

use crate::TrustError;
use crate::cosign::CosignKey;

/// The PEM label cosign writes.
pub const ENCRYPTED_LABEL: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
/// The label of older cosign versions.
const LEGACY_LABEL: &str = "ENCRYPTED COSIGN PRIVATE KEY";
/// scrypt's cost as cosign sets it: N = 2^15, r = 8, p = 1.
const SCRYPT_LOG_N: u8 = 15;
const SCRYPT_R: u32 = 8;
const SCRYPT_P: u32 = 1;
/// The most memory scrypt may take for a key file (128·r·N bytes):
/// 64 MiB, twice cosign's own 32 MiB.
const MAX_SCRYPT_MEMORY: u64 = 64 << 20;
/// The most parallel passes (cosign uses 1).
const MAX_SCRYPT_P: u32 = 4;

/// The algorithm of a new key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    EcdsaP256,
    Ed25519,
}

/// A cosign private key.
pub enum CosignSigner {
    EcdsaP256(p256::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
}

#[derive(Serialize, Deserialize)]
struct Encrypted {
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}

#[derive(Serialize, Deserialize)]
struct Kdf {
    name: String,
    params: ScryptParams,
    salt: String,
}

#[derive(Serialize, Deserialize)]
#[allow(non_snake_case)]
struct ScryptParams {
    N: u64,
    r: u32,
    p: u32,
}

#[derive(Serialize, Deserialize)]
struct Cipher {
    name: String,
    nonce: String,
}

fn bad(reason: impl std::fmt::Display) -> TrustError {
    TrustError::BadCosignKey(format!("not a usable cosign private key: {reason}"))
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn scrypt_key(
    password: &[u8],
    salt: &[u8],
    log_n: u8,
    r: u32,
    p: u32,
) -> Result<[u8; 32], TrustError> {
    let params = scrypt::Params::new(log_n, r, p, 32).map_err(|e| bad(format!("scrypt: {e}")))?;
    let mut key = [0u8; 32];
    scrypt::scrypt(password, salt, &params, &mut key).map_err(|e| bad(format!("scrypt: {e}")))?;
    Ok(key)
}

impl CosignSigner {
    pub fn generate(algorithm: Algorithm) -> CosignSigner {
        let mut rng = rand::rngs::OsRng;
        match algorithm {
            Algorithm::EcdsaP256 => {
                CosignSigner::EcdsaP256(p256::ecdsa::SigningKey::random(&mut rng))
            }
            Algorithm::Ed25519 => {
                CosignSigner::Ed25519(ed25519_dalek::SigningKey::generate(&mut rng))
            }
        }
    }

    pub fn public(&self) -> CosignKey {
        match self {
            CosignSigner::EcdsaP256(k) => CosignKey::EcdsaP256(*k.verifying_key()),
            CosignSigner::Ed25519(k) => CosignKey::Ed25519(k.verifying_key()),
        }
    }

    /// The signature of `payload`: ASN.1 DER for ECDSA (SHA-256), 64
    /// bytes for Ed25519.
    pub fn sign(&self, payload: &[u8]) -> Vec<u8> {
        match self {
            CosignSigner::EcdsaP256(k) => {
                use p256::ecdsa::signature::Signer;
                let sig: p256::ecdsa::Signature = k.sign(payload);
                sig.to_der().as_bytes().to_vec()
            }
            CosignSigner::Ed25519(k) => {
                use ed25519_dalek::Signer;
                k.sign(payload).to_bytes().to_vec()
            }
        }
    }

    fn pkcs8_der(&self) -> Result<Vec<u8>, TrustError> {
        let der = match self {
            CosignSigner::EcdsaP256(k) => k.to_pkcs8_der(),
            CosignSigner::Ed25519(k) => k.to_pkcs8_der(),
        };
        der.map(|d| d.as_bytes().to_vec())
            .map_err(|e| bad(format!("cannot encode the key: {e}")))
    }

    fn from_pkcs8_der(der: &[u8]) -> Result<CosignSigner, TrustError> {
        if let Ok(k) = p256::ecdsa::SigningKey::from_pkcs8_der(der) {
            return Ok(CosignSigner::EcdsaP256(k));
        }
        if let Ok(k) = ed25519_dalek::SigningKey::from_pkcs8_der(der) {
            return Ok(CosignSigner::Ed25519(k));
        }
        Err(bad("the key is neither ECDSA P-256 nor Ed25519"))
    }

    /// The key in cosign's encrypted PEM form, under `password` (which may
    /// be empty).
    pub fn to_encrypted_pem(&self, password: &[u8]) -> Result<String, TrustError> {
        let mut salt = [0u8; 32];
        let mut nonce = [0u8; 24];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut salt);
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut nonce);
        let key = scrypt_key(password, &salt, SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P)?;
        let cipher = XSalsa20Poly1305::new(Key::from_slice(&key));
        let ciphertext = cipher
            .encrypt(Nonce::from_slice(&nonce), self.pkcs8_der()?.as_slice())
            .map_err(|_| bad("cannot encrypt the key"))?;
        let doc = Encrypted {
            kdf: Kdf {
                name: "scrypt".into(),
                params: ScryptParams {
                    N: 1 << SCRYPT_LOG_N,
                    r: SCRYPT_R,
                    p: SCRYPT_P,
                },
                salt: b64().encode(salt),
            },
            cipher: Cipher {
                name: "nacl/secretbox".into(),
                nonce: b64().encode(nonce),
            },
            ciphertext: b64().encode(ciphertext),
        };
        let json = serde_json::to_vec(&doc).map_err(bad)?;
        pem::encode_string(ENCRYPTED_LABEL, LineEnding::LF, &json).map_err(bad)
    }

    /// The key as an unencrypted PKCS#8 PEM `PRIVATE KEY`.
    pub fn to_pkcs8_pem(&self) -> Result<String, TrustError> {
        pem::encode_string("PRIVATE KEY", LineEnding::LF, &self.pkcs8_der()?).map_err(bad)
    }

    /// Reads a private key file: cosign's encrypted PEM (decrypted with
    /// `password()`, asked only then) or an unencrypted PKCS#8 PEM.
    pub fn from_pem(
        text: &[u8],
        password: impl FnOnce() -> Result<Vec<u8>, TrustError>,
    ) -> Result<CosignSigner, TrustError> {
        let (label, body) =
            pem::decode_vec(text.trim_ascii()).map_err(|e| bad(format!("PEM: {e}")))?;
        match label {
            "PRIVATE KEY" => Self::from_pkcs8_der(&body),
            ENCRYPTED_LABEL | LEGACY_LABEL => {
                let doc: Encrypted = serde_json::from_slice(&body).map_err(bad)?;
                if doc.kdf.name != "scrypt" || doc.cipher.name != "nacl/secretbox" {
                    return Err(bad(format!(
                        "unknown encryption {} with {}",
                        doc.kdf.name, doc.cipher.name
                    )));
                }
                let n = doc.kdf.params.N;
                let log_n = u8::try_from(n.trailing_zeros()).unwrap_or(u8::MAX);
                let memory = 128u64
                    .saturating_mul(u64::from(doc.kdf.params.r))
                    .saturating_mul(n);
                if !n.is_power_of_two()
                    || n < 2
                    || doc.kdf.params.r == 0
                    || memory > MAX_SCRYPT_MEMORY
                    || doc.kdf.params.p == 0
                    || doc.kdf.params.p > MAX_SCRYPT_P
                {
                    return Err(bad(format!(
                        "scrypt parameters N={n} r={} p={} are out of range (at most 64 MiB \
                         and 4 passes)",
                        doc.kdf.params.r, doc.kdf.params.p
                    )));
                }
                let salt = b64().decode(&doc.kdf.salt).map_err(bad)?;
                let nonce = b64().decode(&doc.cipher.nonce).map_err(bad)?;
                let ciphertext = b64().decode(&doc.ciphertext).map_err(bad)?;
                if nonce.len() != 24 {
                    return Err(bad("the nonce is not 24 bytes"));
                }
                let key = scrypt_key(
                    &password()?,
                    &salt,
                    log_n,
                    doc.kdf.params.r,
                    doc.kdf.params.p,
                )?;
                let plain = XSalsa20Poly1305::new(Key::from_slice(&key))
                    .decrypt(Nonce::from_slice(&nonce), ciphertext.as_slice())
                    .map_err(|_| {
                        TrustError::BadCosignKey(
                            "cannot decrypt the cosign private key: wrong password (set \
                             COSIGN_PASSWORD)"
                                .into(),
                        )
                    })?;
                Self::from_pkcs8_der(&plain)
            }
            other => Err(bad(format!(
                "a PEM {other:?}, not \"{ENCRYPTED_LABEL}\" or \"PRIVATE KEY\""
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn keys_round_trip_encrypted_and_sign_what_verifies() {
        for alg in [Algorithm::EcdsaP256, Algorithm::Ed25519] {
            let key = CosignSigner::generate(alg);
            let pem = key.to_encrypted_pem(b"pw").unwrap();
            assert!(pem.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----"));
            let back = CosignSigner::from_pem(pem.as_bytes(), || Ok(b"pw".to_vec())).unwrap();
            assert_eq!(back.public(), key.public());
            let wrong = CosignSigner::from_pem(pem.as_bytes(), || Ok(b"no".to_vec()));
            assert!(
                matches!(wrong, Err(TrustError::BadCosignKey(m)) if m.contains("wrong password"))
            );
            let sig = back.sign(b"payload");
            assert!(key.public().verifies(b"payload", &sig));
            assert!(!key.public().verifies(b"payload!", &sig));
            let public = CosignKey::from_pem(key.public().to_pem().as_bytes()).unwrap();
            assert_eq!(public, key.public());
            let plain = key.to_pkcs8_pem().unwrap();
            let back = CosignSigner::from_pem(plain.as_bytes(), || panic!("no password")).unwrap();
            assert_eq!(back.public(), key.public());
        }
        assert!(CosignSigner::from_pem(b"garbage", || Ok(Vec::new())).is_err());
    }

    #[test]
    fn key_files_cannot_ask_for_unbounded_work() {
        let doc = serde_json::json!({
            "kdf": {"name": "scrypt", "params": {"N": 1u64 << 30, "r": 8, "p": 1}, "salt": ""},
            "cipher": {"name": "nacl/secretbox", "nonce": ""},
            "ciphertext": "",
        });
        let pem = pem::encode_string(ENCRYPTED_LABEL, LineEnding::LF, doc.to_string().as_bytes())
            .unwrap();
        let err = CosignSigner::from_pem(pem.as_bytes(), || Ok(Vec::new()))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("out of range"), "{err}");
    }
}
