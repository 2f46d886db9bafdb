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

/// What a key is trusted for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Root,
    Prefix(String),
}

impl Scope {
    /// Checks a prefix: an image name or the start of one (`example.com/`
    /// style trailing slashes are dropped).
    pub fn prefix(prefix: &str) -> Result<Scope, TrustError> {
        let trimmed = prefix.trim_end_matches('/');
        AcIdentifier::new(trimmed).map_err(|reason| TrustError::BadPrefix {
            prefix: prefix.to_string(),
            reason,
        })?;
        Ok(Scope::Prefix(trimmed.to_string()))
    }

    /// Whether this scope covers the image `name` (whole path segments only).
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
    pub key: SignedPublicKey,
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
    pub fn add(
        &self,
        keys: &[SignedPublicKey],
        scope: &Scope,
    ) -> Result<Vec<TrustedKey>, TrustError> {
        let dir = scope.dir(&self.local);
        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        let mut added = Vec::new();
        for key in keys {
            let fpr = fingerprint(key);
            let armored = key
                .to_armored_bytes(Default::default())
                .map_err(|e| TrustError::BadKey(e.to_string()))?;
            let path = dir.join(&fpr);
            let tmp = dir.join(format!(".{fpr}.tmp"));
            fs::write(&tmp, &armored).map_err(io_err("write", &tmp))?;
            fs::rename(&tmp, &path).map_err(io_err("write", &path))?;
            added.push(TrustedKey {
                fingerprint: fpr,
                scope: scope.clone(),
                path,
                vendor: false,
                user_ids: user_ids(key),
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
                    let parsed = parse_keys(&bytes)
                        .map_err(|e| TrustError::BadKey(format!("{}: {e}", path.display())))?;
                    for key in parsed {
                        keys.push(TrustedKey {
                            fingerprint: fingerprint(&key),
                            scope: scope.clone(),
                            path: path.clone(),
                            vendor,
                            user_ids: user_ids(&key),
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
        assert_eq!(
            Scope::prefix("example.com/").unwrap(),
            Scope::Prefix("example.com".into())
        );
    }
}
