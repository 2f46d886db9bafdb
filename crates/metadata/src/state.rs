//! The service's state: the HMAC key and the registered pods, kept in
//! memory and in `<data>/metadata` (mode 0700: the key in `hmac.key`, each
//! pod in `pods/<uuid>.json`, both 0600) so a restarted service serves the
//! same tokens and verifies the same signatures.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha512;

use crate::protocol::Registration;

/// A registered pod.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PodRecord {
    pub token: String,
    pub registration: Registration,
}

pub struct State {
    dir: PathBuf,
    key: Vec<u8>,
    /// Pods by token.
    pods: HashMap<String, PodRecord>,
    /// Where the service listens (an unspecified address: every one).
    pub listen: std::net::SocketAddr,
}

fn random_bytes(n: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    let mut filled = 0;
    while filled < n {
        filled +=
            rustix::rand::getrandom(&mut buf[filled..], rustix::rand::GetRandomFlags::empty())?;
    }
    Ok(buf)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// A UUID (with or without dashes) as its 16 bytes.
pub fn uuid_bytes(uuid: &str) -> Option<[u8; 16]> {
    let hexs: String = uuid.chars().filter(|c| *c != '-').collect();
    if hexs.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hexs.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl State {
    /// Opens (or creates) the state in `dir`, keeping only the pods for
    /// which `running(uuid)` holds.
    pub fn open(
        dir: &Path,
        listen: std::net::SocketAddr,
        running: impl Fn(&str) -> bool,
    ) -> std::io::Result<State> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir.join("pods"))?;
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        let key_path = dir.join("hmac.key");
        let key = match std::fs::read(&key_path) {
            Ok(k) if k.len() == 64 => k,
            _ => {
                let k = random_bytes(64)?;
                write_private(&key_path, &k)?;
                k
            }
        };
        let mut pods = HashMap::new();
        for entry in std::fs::read_dir(dir.join("pods"))?.flatten() {
            let path = entry.path();
            let record: Option<PodRecord> = std::fs::read(&path)
                .ok()
                .and_then(|t| serde_json::from_slice(&t).ok());
            match record {
                Some(r) if running(&r.registration.uuid) => {
                    pods.insert(r.token.clone(), r);
                }
                _ => {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        Ok(State {
            dir: dir.to_path_buf(),
            key,
            pods,
            listen,
        })
    }

    pub fn len(&self) -> usize {
        self.pods.len()
    }

    /// Registers (or re-registers) a pod; returns its new token.
    pub fn register(&mut self, registration: Registration) -> std::io::Result<String> {
        self.unregister(&registration.uuid);
        let token = hex(&random_bytes(16)?);
        let record = PodRecord {
            token: token.clone(),
            registration,
        };
        let path = self
            .dir
            .join("pods")
            .join(format!("{}.json", record.registration.uuid));
        write_private(
            &path,
            &serde_json::to_vec(&record).map_err(std::io::Error::other)?,
        )?;
        self.pods.insert(token.clone(), record);
        Ok(token)
    }

    pub fn unregister(&mut self, uuid: &str) -> bool {
        let before = self.pods.len();
        self.pods.retain(|_, r| r.registration.uuid != uuid);
        let _ = std::fs::remove_file(self.dir.join("pods").join(format!("{uuid}.json")));
        self.pods.len() != before
    }

    pub fn pod(&self, token: &str) -> Option<&PodRecord> {
        self.pods.get(token)
    }

    fn mac(&self, uuid: &[u8; 16], content: &[u8]) -> Hmac<Sha512> {
        // HMAC takes keys of any length, so this cannot fail.
        let mut mac = <Hmac<Sha512> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(uuid);
        mac.update(content);
        mac
    }

    /// The signature of `content` by pod `uuid`: HMAC-SHA512 over the
    /// UUID's 16 bytes and the content.
    pub fn sign(&self, uuid: &[u8; 16], content: &[u8]) -> Vec<u8> {
        self.mac(uuid, content).finalize().into_bytes().to_vec()
    }

    /// Whether `signature` is pod `uuid`'s signature of `content`
    /// (compared in constant time).
    pub fn verify(&self, uuid: &[u8; 16], content: &[u8], signature: &[u8]) -> bool {
        self.mac(uuid, content).verify_slice(signature).is_ok()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const LISTEN: std::net::SocketAddr =
        std::net::SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 1);

    fn reg(uuid: &str) -> Registration {
        Registration {
            uuid: uuid.into(),
            manifest: "{}".into(),
            apps: vec![],
            ip: None,
            forwarded: false,
            mapped_peer: false,
        }
    }

    #[test]
    fn signatures_are_bound_to_the_uuid_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let a = uuid_bytes("11111111-2222-3333-4444-555555555555").unwrap();
        let b = uuid_bytes("11111111222233334444555555555556").unwrap();
        let mut s = State::open(dir.path(), LISTEN, |_| true).unwrap();
        let token = s
            .register(reg("11111111-2222-3333-4444-555555555555"))
            .unwrap();
        let sig = s.sign(&a, b"hello");
        assert!(s.verify(&a, b"hello", &sig));
        assert!(!s.verify(&a, b"hellO", &sig));
        assert!(!s.verify(&b, b"hello", &sig));
        drop(s);
        let s = State::open(dir.path(), LISTEN, |_| true).unwrap();
        assert!(s.verify(&a, b"hello", &sig), "key not kept");
        assert!(s.pod(&token).is_some(), "registration not kept");
        let mode = std::fs::metadata(dir.path().join("hmac.key")).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
            0o600
        );
        // Pods that stopped meanwhile are forgotten.
        let s = State::open(dir.path(), LISTEN, |_| false).unwrap();
        assert!(s.pod(&token).is_none());
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn uuids_parse_with_or_without_dashes() {
        assert!(uuid_bytes("not-a-uuid").is_none());
        assert!(uuid_bytes("zz111111222233334444555555555555").is_none());
        assert_eq!(
            uuid_bytes("00000000000000000000000000000001").unwrap()[15],
            1
        );
    }
}
