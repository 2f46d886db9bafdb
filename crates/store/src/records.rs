//! What the index knows that the blobs do not say: where an image came
//! from (remotes) and which key's signature verified it. Each is written to
//! a file under `cas/records/`, synced, before its index row, so the index
//! stays a cache: `skiff image fsck --repair` rebuilds every row from the
//! blobs and these files.
//!
//! ```text
//! cas/records/remotes/<sha256 of the URL>.json     a RemoteRecord
//! cas/records/signatures/<image hex>/<fingerprint> the signature (or the
//!                                                  verification record) as stored
//! ```

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use skiff_spec::ImageId;

use crate::db::RemoteRecord;
use crate::fsck::remove_path;
use crate::{StoreError, io_err};

/// The record files of one data directory.
#[derive(Debug, Clone)]
pub struct Records {
    root: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct RemoteFile {
    url: String,
    image_id: String,
    etag: Option<String>,
    max_age: i64,
    download_time: i64,
}

/// A fingerprint as a file name: what skiff's verifiers produce (hex).
fn fingerprint_name(fingerprint: &str) -> Result<&str, StoreError> {
    if fingerprint.is_empty()
        || fingerprint.len() > 128
        || !fingerprint.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(StoreError::Index(format!(
            "the key fingerprint '{}' cannot name a record file (expected hex)",
            fingerprint.escape_debug()
        )));
    }
    Ok(fingerprint)
}

/// Writes `bytes` to `dir/name` atomically and durably: a synced temporary
/// file renamed into place, then the directory synced.
fn write_durably(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
    std::fs::create_dir_all(dir).map_err(io_err("create", dir))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(io_err("create a file in", dir))?;
    tmp.write_all(bytes).map_err(io_err("write", tmp.path()))?;
    crate::serving::share_file(tmp.as_file(), tmp.path())?;
    tmp.as_file()
        .sync_all()
        .map_err(io_err("sync", tmp.path()))?;
    let path = dir.join(name);
    tmp.persist(&path)
        .map_err(|e| io_err("write", &path)(e.error))?;
    sync_dir(dir)
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("sync", dir))?;
    Ok(())
}

/// The records of one kind, and the files among them that are not one.
#[derive(Debug, Clone)]
pub struct Found<T> {
    pub records: Vec<T>,
    pub bad: Vec<BadRecord>,
}

/// A signature record: the key's fingerprint and what was stored.
#[derive(Debug, Clone)]
pub struct SignatureRecord {
    pub image: ImageId,
    pub fingerprint: String,
    pub signature: Vec<u8>,
}

/// A record file that is not what a record should be.
#[derive(Debug, Clone)]
pub struct BadRecord {
    pub path: PathBuf,
    pub reason: String,
}

impl Records {
    pub fn new(cas: &Path) -> Self {
        Records {
            root: cas.join("records"),
        }
    }

    pub fn remotes_dir(&self) -> PathBuf {
        self.root.join("remotes")
    }

    pub fn signatures_dir(&self) -> PathBuf {
        self.root.join("signatures")
    }

    fn signatures_of(&self, id: &ImageId) -> PathBuf {
        self.signatures_dir().join(id.hex())
    }

    fn remote_name(url: &str) -> String {
        format!("{}.json", hex::encode(Sha256::digest(url.as_bytes())))
    }

    pub fn remote_path(&self, url: &str) -> PathBuf {
        self.remotes_dir().join(Self::remote_name(url))
    }

    pub fn write_remote(&self, rec: &RemoteRecord) -> Result<(), StoreError> {
        let file = RemoteFile {
            url: rec.url.clone(),
            image_id: rec.image_id.to_string(),
            etag: rec.etag.clone(),
            max_age: rec.max_age,
            download_time: rec.download_time,
        };
        let json = serde_json::to_vec(&file).map_err(|e| StoreError::Index(e.to_string()))?;
        write_durably(&self.remotes_dir(), &Self::remote_name(&rec.url), &json)
    }

    pub fn remove_remote(&self, url: &str) -> Result<(), StoreError> {
        remove_path(&self.remote_path(url)).map(drop)
    }

    pub fn write_signature(
        &self,
        id: &ImageId,
        fingerprint: &str,
        signature: &[u8],
    ) -> Result<(), StoreError> {
        let name = fingerprint_name(fingerprint)?;
        let dir = self.signatures_of(id);
        write_durably(&dir, name, signature)?;
        sync_dir(&self.signatures_dir())
    }

    /// Removes the signature records of an image.
    pub fn remove_signatures(&self, id: &ImageId) -> Result<(), StoreError> {
        remove_path(&self.signatures_of(id)).map(drop)
    }

    /// Every remote record, and the files that are not one.
    pub fn remotes(&self) -> Result<Found<(PathBuf, RemoteRecord)>, StoreError> {
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for path in files_in(&self.remotes_dir())? {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name.starts_with(".tmp-") {
                bad.push(BadRecord {
                    path,
                    reason: "an unfinished record write".into(),
                });
                continue;
            }
            match read_remote(&path) {
                Ok(rec) if Self::remote_name(&rec.url) == name => good.push((path, rec)),
                Ok(_) => bad.push(BadRecord {
                    path,
                    reason: "its name is not the hash of its URL".into(),
                }),
                Err(reason) => bad.push(BadRecord { path, reason }),
            }
        }
        Ok(Found { records: good, bad })
    }

    /// Every signature record, and the files that are not one.
    pub fn signatures(&self) -> Result<Found<SignatureRecord>, StoreError> {
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for dir in files_in(&self.signatures_dir())? {
            let hex = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let Ok(id) = ImageId::parse(&format!("sha512-{hex}")) else {
                bad.push(BadRecord {
                    path: dir,
                    reason: "not named by an image ID".into(),
                });
                continue;
            };
            if !std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
                bad.push(BadRecord {
                    path: dir,
                    reason: "not a directory (or a symlink)".into(),
                });
                continue;
            }
            for path in files_in(&dir)? {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if name.starts_with(".tmp-") || fingerprint_name(&name).is_err() || !regular(&path)
                {
                    bad.push(BadRecord {
                        path,
                        reason: "an unfinished record write or a stray file".into(),
                    });
                    continue;
                }
                match std::fs::read(&path) {
                    Ok(signature) => good.push(SignatureRecord {
                        image: id.clone(),
                        fingerprint: name,
                        signature,
                    }),
                    Err(e) => bad.push(BadRecord {
                        path,
                        reason: format!("unreadable: {e}"),
                    }),
                }
            }
        }
        Ok(Found { records: good, bad })
    }

    /// Removes a file or directory fsck found to be no record.
    pub fn remove_bad(&self, bad: &BadRecord) -> Result<(), StoreError> {
        if std::fs::symlink_metadata(&bad.path).is_ok_and(|m| m.is_dir()) {
            std::fs::remove_dir_all(&bad.path).map_err(io_err("remove", &bad.path))?;
            Ok(())
        } else {
            remove_path(&bad.path).map(drop)
        }
    }
}

/// Whether `path` is a regular file itself (not through a symlink).
fn regular(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file())
}

fn read_remote(path: &Path) -> Result<RemoteRecord, String> {
    if !regular(path) {
        return Err("not a regular file".into());
    }
    let bytes = std::fs::read(path).map_err(|e| format!("unreadable: {e}"))?;
    let file: RemoteFile =
        serde_json::from_slice(&bytes).map_err(|e| format!("not a remote record: {e}"))?;
    Ok(RemoteRecord {
        url: file.url,
        image_id: ImageId::parse(&file.image_id).map_err(|e| format!("bad image ID: {e}"))?,
        etag: file.etag,
        max_age: file.max_age,
        download_time: file.download_time,
    })
}

/// The entries of `dir` (none if it does not exist).
pub(crate) fn files_in(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    match std::fs::read_dir(dir) {
        Ok(rd) => {
            let mut out: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
            out.sort();
            Ok(out)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io_err("list", dir)(e).into()),
    }
}
