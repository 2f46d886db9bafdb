//! The keystore: armored public keys in directories, as rkt laid them out.
//!
//! ```text
//! <config>/trustedkeys/root.d/<fingerprint>            trusted for every image
//! <config>/trustedkeys/prefix.d/<prefix>/<fingerprint> trusted for names under <prefix>
//! ```
//!
//! `<config>` is the local config (`/etc/skiff`, written by `skiff trust`) or
//! the system config (`/usr/lib/skiff`, vendor keys, read-only). In a prefix
//! directory name `/` is written as `,` (`example.com,app`). An empty file in
//! the local config masks the vendor key with the same fingerprint and scope.

use std::fs;
use std::io::{self, BufReader, Cursor};
use std::path::{Path, PathBuf};

use pgp::composed::{Deserializable, SignedPublicKey};
use pgp::types::KeyDetails;
use skiff_spec::AcIdentifier;

use crate::TrustError;
use crate::cosign::CosignKey;

/// What a key is trusted for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Root,
    Prefix(String),
}

impl Scope {
    /// Checks a prefix: an image name or the start of one (`example.com/`
    /// style trailing slashes are dropped). A docker reference's registry
    /// may have a port (`registry.example.org:5000/team`).
    pub fn prefix(prefix: &str) -> Result<Scope, TrustError> {
        let trimmed = prefix.trim_end_matches('/');
        AcIdentifier::new(&appc_form(trimmed)).map_err(|reason| TrustError::BadPrefix {
            prefix: prefix.to_string(),
            reason,
        })?;
        Ok(Scope::Prefix(trimmed.to_string()))
    }

    /// Whether this scope covers the image `name` (whole path segments
    /// only): an appc name, or a docker repository (`host[:port]/path`).
    pub fn covers(&self, name: &str) -> bool {
        match self {
            Scope::Root => true,
            Scope::Prefix(p) => {
                name == p
                    || name
                        .strip_prefix(p.as_str())
                        .is_some_and(|r| r.starts_with('/'))
            }
        }
    }

    fn dir(&self, base: &Path) -> PathBuf {
        match self {
            Scope::Root => base.join("root.d"),
            Scope::Prefix(p) => base.join("prefix.d").join(p.replace('/', ",")),
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Root => f.write_str("root (all images)"),
            Scope::Prefix(p) => write!(f, "prefix {p}"),
        }
    }
}

/// A public key: OpenPGP (appc images, containers' simple signing) or
/// cosign's PEM (OCI images).
#[derive(Debug, Clone)]
pub enum PublicKey {
    OpenPgp(Box<SignedPublicKey>),
    Cosign(CosignKey),
}

impl PublicKey {
    pub fn openpgp(&self) -> Option<&SignedPublicKey> {
        match self {
            PublicKey::OpenPgp(k) => Some(k),
            PublicKey::Cosign(_) => None,
        }
    }

    pub fn cosign(&self) -> Option<&CosignKey> {
        match self {
            PublicKey::Cosign(k) => Some(k),
            PublicKey::OpenPgp(_) => None,
        }
    }

    /// Lower-case hex: the OpenPGP fingerprint, or the SHA-256 of a
    /// cosign key's SubjectPublicKeyInfo.
    pub fn fingerprint(&self) -> String {
        match self {
            PublicKey::OpenPgp(k) => fingerprint(k),
            PublicKey::Cosign(k) => k.fingerprint(),
        }
    }

    /// The OpenPGP user IDs; for a cosign key (which names no one), its type.
    pub fn user_ids(&self) -> Vec<String> {
        match self {
            PublicKey::OpenPgp(k) => user_ids(k),
            PublicKey::Cosign(k) => vec![format!("cosign {} key", k.algorithm())],
        }
    }

    /// `openpgp` or `cosign`.
    pub fn kind(&self) -> &'static str {
        match self {
            PublicKey::OpenPgp(_) => "openpgp",
            PublicKey::Cosign(_) => "cosign",
        }
    }

    /// The key as stored: armored OpenPGP or PEM.
    fn file_text(&self) -> Result<Vec<u8>, TrustError> {
        match self {
            PublicKey::OpenPgp(k) => k
                .to_armored_bytes(Default::default())
                .map_err(|e| TrustError::BadKey(e.to_string())),
            PublicKey::Cosign(k) => Ok(k.to_pem().into_bytes()),
        }
    }
}

/// Parses the keys in a key file: a PEM public key (cosign), or one or
/// more OpenPGP keys, armored or binary.
pub fn parse_any(bytes: &[u8]) -> Result<Vec<PublicKey>, TrustError> {
    if crate::cosign::is_pem_public_key(bytes) {
        return Ok(vec![PublicKey::Cosign(CosignKey::from_pem(bytes)?)]);
    }
    Ok(parse_keys(bytes)?
        .into_iter()
        .map(|k| PublicKey::OpenPgp(Box::new(k)))
        .collect())
}

/// A prefix checked as an appc name: a registry's `host:port` as
/// `host-port` (the only place a `:` may stand).
fn appc_form(prefix: &str) -> String {
    let (first, rest) = prefix
        .split_once('/')
        .map_or((prefix, None), |(f, r)| (f, Some(r)));
    let first = match first.split_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            format!("{host}-{port}")
        }
        _ => first.to_string(),
    };
    match rest {
        Some(r) => format!("{first}/{r}"),
        None => first,
    }
}

/// A key in the keystore.
#[derive(Debug, Clone)]
pub struct TrustedKey {
    /// Lower-case hex fingerprint of the primary key.
    pub fingerprint: String,
    pub scope: Scope,
    pub path: PathBuf,
    /// True for vendor keys (system config).
    pub vendor: bool,
    pub user_ids: Vec<String>,
    pub key: PublicKey,
}

/// Parses every OpenPGP object of type `T` in `bytes`, armored or binary.
pub(crate) fn parse_all<T: Deserializable>(bytes: &[u8]) -> Result<Vec<T>, pgp::errors::Error> {
    let text = bytes.trim_ascii_start();
    if text.starts_with(b"-----BEGIN PGP") {
        let (iter, _) = T::from_armor_many(Cursor::new(text.to_vec()))?;
        iter.collect()
    } else {
        T::from_bytes_many(BufReader::new(Cursor::new(bytes.to_vec())))?.collect()
    }
}

/// Parses one or more public keys, armored or binary.
pub fn parse_keys(bytes: &[u8]) -> Result<Vec<SignedPublicKey>, TrustError> {
    let keys: Vec<SignedPublicKey> =
        parse_all(bytes).map_err(|e| TrustError::BadKey(e.to_string()))?;
    if keys.is_empty() {
        return Err(TrustError::BadKey("no public key found".to_string()));
    }
    for key in &keys {
        key.verify_bindings().map_err(|e| {
            TrustError::BadKey(format!(
                "key {} has invalid self-signatures: {e}",
                fingerprint(key)
            ))
        })?;
    }
    Ok(keys)
}

pub fn fingerprint(key: &SignedPublicKey) -> String {
    format!("{:x}", key.fingerprint())
}

pub fn user_ids(key: &SignedPublicKey) -> Vec<String> {
    key.details
        .users
        .iter()
        .map(|u| String::from_utf8_lossy(u.id.id()).into_owned())
        .collect()
}

/// The keystore over a local (writable) and a system (vendor) config dir.
#[derive(Debug, Clone)]
pub struct Keystore {
    local: PathBuf,
    system: PathBuf,
}

use skiff_io::io_err_at as io_err;

impl Keystore {
    /// `local_config` is e.g. `/etc/skiff`, `system_config` `/usr/lib/skiff`.
    pub fn new(local_config: &Path, system_config: &Path) -> Self {
        Keystore {
            local: local_config.join("trustedkeys"),
            system: system_config.join("trustedkeys"),
        }
    }

    /// Stores `keys` as trusted for `scope`; returns what was added.
    pub fn add(&self, keys: &[PublicKey], scope: &Scope) -> Result<Vec<TrustedKey>, TrustError> {
        let dir = scope.dir(&self.local);
        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        let mut added = Vec::new();
        for key in keys {
            let fpr = key.fingerprint();
            let armored = key.file_text()?;
            let path = dir.join(&fpr);
            let tmp = dir.join(format!(".{fpr}.tmp"));
            fs::write(&tmp, &armored).map_err(io_err("write", &tmp))?;
            fs::rename(&tmp, &path).map_err(io_err("write", &path))?;
            added.push(TrustedKey {
                fingerprint: fpr,
                scope: scope.clone(),
                path,
                vendor: false,
                user_ids: key.user_ids(),
                key: key.clone(),
            });
        }
        Ok(added)
    }

    fn scopes_in(base: &Path) -> Result<Vec<(Scope, PathBuf)>, TrustError> {
        let mut out = vec![(Scope::Root, base.join("root.d"))];
        let prefixes = base.join("prefix.d");
        match fs::read_dir(&prefixes) {
            Ok(rd) => {
                for entry in rd.flatten() {
                    let name = entry.file_name().to_string_lossy().replace(',', "/");
                    out.push((Scope::Prefix(name), entry.path()));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("read", &prefixes)(e).into()),
        }
        Ok(out)
    }

    fn keys_in(dir: &Path) -> Result<Vec<(String, PathBuf, bool)>, TrustError> {
        let mut out = Vec::new();
        match fs::read_dir(dir) {
            Ok(rd) => {
                for entry in rd.flatten() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if name.starts_with('.') {
                        continue;
                    }
                    let empty = entry.metadata().map(|m| m.len() == 0).unwrap_or(false);
                    out.push((name, entry.path(), empty));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("read", dir)(e).into()),
        }
        out.sort();
        Ok(out)
    }

    /// Every trusted key, local ones first; masked vendor keys left out.
    pub fn list(&self) -> Result<Vec<TrustedKey>, TrustError> {
        let mut keys = Vec::new();
        let mut masked = Vec::new();
        for (base, vendor) in [(&self.local, false), (&self.system, true)] {
            for (scope, dir) in Self::scopes_in(base)? {
                for (fpr, path, empty) in Self::keys_in(&dir)? {
                    if empty {
                        masked.push((scope.clone(), fpr));
                        continue;
                    }
                    if vendor && masked.iter().any(|(s, f)| *s == scope && *f == fpr) {
                        continue;
                    }
                    if vendor
                        && keys
                            .iter()
                            .any(|k: &TrustedKey| k.scope == scope && k.fingerprint == fpr)
                    {
                        continue;
                    }
                    let bytes = fs::read(&path).map_err(io_err("read", &path))?;
                    let parsed = parse_any(&bytes)
                        .map_err(|e| TrustError::BadKey(format!("{}: {e}", path.display())))?;
                    for key in parsed {
                        keys.push(TrustedKey {
                            fingerprint: key.fingerprint(),
                            scope: scope.clone(),
                            path: path.clone(),
                            vendor,
                            user_ids: key.user_ids(),
                            key,
                        });
                    }
                }
            }
        }
        Ok(keys)
    }

    /// The keys trusted for the image `name`.
    pub fn keys_for(&self, name: &str) -> Result<Vec<TrustedKey>, TrustError> {
        Ok(self
            .list()?
            .into_iter()
            .filter(|k| k.scope.covers(name))
            .collect())
    }

    /// Stops trusting the key with `fingerprint` (any unique prefix of at
    /// least 8 hex digits) in every scope: local files are removed, vendor
    /// keys are masked with an empty local file. Returns what changed.
    pub fn remove(&self, fingerprint: &str) -> Result<Vec<TrustedKey>, TrustError> {
        let want = fingerprint.to_ascii_lowercase().replace(' ', "");
        if want.len() < 8 {
            return Err(TrustError::UnknownKey(format!(
                "{fingerprint} (give at least 8 hex digits)"
            )));
        }
        let matching: Vec<TrustedKey> = self
            .list()?
            .into_iter()
            .filter(|k| k.fingerprint.starts_with(&want))
            .collect();
        if matching.is_empty() {
            return Err(TrustError::UnknownKey(fingerprint.to_string()));
        }
        for key in &matching {
            if key.vendor {
                let dir = key.scope.dir(&self.local);
                fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
                let mask = dir.join(&key.fingerprint);
                fs::write(&mask, b"").map_err(io_err("write", &mask))?;
            } else {
                fs::remove_file(&key.path).map_err(io_err("remove", &key.path))?;
            }
        }
        Ok(matching)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_whole_segments() {
        let p = Scope::prefix("example.com/et").unwrap();
        assert!(p.covers("example.com/et"));
        assert!(p.covers("example.com/et/cd"));
        assert!(!p.covers("example.com/etcd"));
        assert!(!p.covers("example.co"));
        assert!(Scope::Root.covers("anything"));
        assert!(Scope::prefix("Bad/Prefix").is_err());
        let registry = Scope::prefix("127.0.0.1:5000/team/").unwrap();
        assert!(registry.covers("127.0.0.1:5000/team/app"));
        assert!(!registry.covers("127.0.0.1-5000/team/app"));
        assert!(!registry.covers("127.0.0.1:5000/teams"));
        assert!(!registry.covers("127.0.0.1:50001/team/app"));
        assert!(Scope::prefix("host:port/x").is_err());
        assert!(Scope::prefix("a:1:2/x").is_err());
        assert_eq!(
            Scope::prefix("example.com/").unwrap(),
            Scope::Prefix("example.com".into())
        );
    }
}
