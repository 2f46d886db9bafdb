//! What `skiff serve` may read: the blobs, the cached layers, the
//! signature records and the downloads shared while they happen
//! (`cas/partial/`), and nothing else of the data directory.
//!
//! The server runs as an unprivileged user in a mount namespace that holds
//! only these three directories, read-only. So their files are made
//! readable to any user (0644, directories 0755): the data directory
//! itself stays 0700, so no local user reaches them through it; only the
//! server, which is given them by bind mounts, does. Every file the store
//! writes there is created that way ([`share_file`]); [`prepare`] brings
//! files written by an older skiff (0600) in line.

use std::fs::{File, Permissions};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::{StoreError, io_err, layout::Layout, records::Records};

/// Mode of a shared file.
const FILE_MODE: u32 = 0o644;
/// Mode of a shared directory.
const DIR_MODE: u32 = 0o755;

/// The directories a server shares.
#[derive(Debug, Clone)]
pub struct ServedDirs {
    /// `cas/blobs/sha512`: ACIs by image ID.
    pub aci: PathBuf,
    /// `cas/blobs/sha256`: layers by digest.
    pub layers: PathBuf,
    /// `cas/records/signatures`: `<image hex>/<fingerprint>`.
    pub signatures: PathBuf,
    /// `cas/partial`: [`Partial`] downloads.
    pub partial: PathBuf,
}

/// Makes a file the store shares readable by the server.
pub fn share_file(file: &File, path: &Path) -> Result<(), StoreError> {
    file.set_permissions(Permissions::from_mode(FILE_MODE))
        .map_err(io_err("set the permissions of", path))?;
    Ok(())
}

/// The shared directories of the store in `data_dir` (created if missing),
/// with every file and directory in them readable by the server. Files of
/// another owner are left as they are (the server will not find them).
pub fn prepare(data_dir: &Path) -> Result<ServedDirs, StoreError> {
    crate::private_dir(data_dir)?;
    let layout = Layout::new(data_dir);
    let dirs = ServedDirs {
        aci: layout.blobs(),
        layers: layout.layers(),
        signatures: Records::new(&layout.cas()).signatures_dir(),
        partial: layout.partial(),
    };
    for dir in [&dirs.aci, &dirs.layers, &dirs.signatures, &dirs.partial] {
        std::fs::create_dir_all(dir).map_err(io_err("create", dir))?;
        open_up(dir, 1)?;
    }
    Ok(dirs)
}

/// A download shared with a swarm while it happens, in `cas/partial/`:
///
/// ```text
/// <key>        a hard link to the download's staging file (then, once
///              imported, to its blob): the same inode, no copy
/// <key>.have   one byte per piece (protocol::HAS, FETCHING, MISSING)
/// ```
///
/// `key` is the SHA-256 of the piece list. A server serves a piece only if
/// its byte says it is there and the file has another link (a staging
/// file or a blob): once the image is removed (or the download died and
/// its staging file went), it is a leftover, which gc and fsck remove.
pub struct Partial {
    data: PathBuf,
    have_path: PathBuf,
    have: File,
    keep: bool,
}

/// Names of `cas/partial/` entries: the key is 64 lower-case hex digits.
fn check_key(key: &str) -> bool {
    skiff_spec::id::is_lower_hex(key, skiff_spec::id::SHA256_HEX_LEN)
}

impl Partial {
    /// Shares the download in `staged` (of `pieces` pieces) as `key`;
    /// `None` if another download on this host already shares it.
    pub fn publish(
        data_dir: &Path,
        key: &str,
        staged: &Path,
        pieces: usize,
    ) -> Result<Option<Partial>, StoreError> {
        if !check_key(key) {
            return Err(StoreError::Index(format!("bad swarm key '{key}'")));
        }
        let dir = Layout::new(data_dir).partial();
        std::fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        let data = dir.join(key);
        let have_path = dir.join(format!("{key}.have"));
        let mut linked = std::fs::hard_link(staged, &data);
        if linked
            .as_ref()
            .is_err_and(|e| e.kind() == io::ErrorKind::AlreadyExists)
            && std::fs::symlink_metadata(&data).is_ok_and(|m| m.nlink() == 1)
        {
            // Left by a fetch that died or an image since removed: replaced.
            let _ = std::fs::remove_file(&have_path);
            let _ = std::fs::remove_file(&data);
            linked = std::fs::hard_link(staged, &data);
        }
        match linked {
            Ok(()) => {}
            // Another fetch on this host shares it.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(None),
            Err(e) => return Err(io_err("link", &data)(e).into()),
        }
        // The map appears whole (written aside, renamed in): a reader
        // never sees it short.
        let aside = dir.join(format!(".{key}.have.new"));
        let have = File::create(&aside).map_err(io_err("create", &aside))?;
        let partial = Partial {
            data,
            have_path: have_path.clone(),
            have,
            keep: false,
        };
        share_file(&partial.have, &aside)?;
        use std::io::Write;
        (&partial.have)
            .write_all(&vec![b'0'; pieces])
            .map_err(io_err("write", &aside))?;
        std::fs::rename(&aside, &have_path).map_err(io_err("rename", &aside))?;
        Ok(Some(partial))
    }

    /// Marks piece `index` (`state`: one of the protocol's bytes).
    pub fn mark(&self, index: usize, state: u8) {
        use std::os::unix::fs::FileExt;
        if let Err(e) = self.have.write_all_at(&[state], index as u64) {
            tracing::debug!(
                "cannot mark piece {index} in {}: {e}",
                self.have_path.display()
            );
        }
    }

    /// The download was imported: its entries stay, so the swarm is served
    /// from the blob they now share an inode with.
    pub fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.have_path);
            let _ = std::fs::remove_file(&self.data);
        }
    }
}

/// Entries of `cas/partial/` nothing else links to any more (their
/// download died or their image was removed) and stray files.
pub fn stale_partials(data_dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let dir = Layout::new(data_dir).partial();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("read", &dir)(e).into()),
    };
    let mut stale = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err("read", &dir))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let key = name.strip_suffix(".have").unwrap_or(&name);
        let data = dir.join(key);
        let live = check_key(key)
            && std::fs::symlink_metadata(&data)
                .is_ok_and(|m| m.file_type().is_file() && m.nlink() >= 2);
        if !live {
            stale.push(path);
        }
    }
    stale.sort();
    Ok(stale)
}

/// Sets the shared modes on `dir` and what is in it, `depth` levels down.
fn open_up(dir: &Path, depth: u32) -> Result<(), StoreError> {
    let me = rustix::process::geteuid().as_raw();
    set_mode(dir, DIR_MODE, me)?;
    let entries = std::fs::read_dir(dir).map_err(io_err("read", dir))?;
    for entry in entries {
        let entry = entry.map_err(io_err("read", dir))?;
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_file() {
            set_mode(&path, FILE_MODE, me)?;
        } else if kind.is_dir() && depth > 0 {
            open_up(&path, depth - 1)?;
        }
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32, me: u32) -> Result<(), StoreError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("inspect", path)(e).into()),
    };
    if meta.uid() != me || meta.file_type().is_symlink() || meta.mode() & 0o7777 == mode {
        return Ok(());
    }
    // A file with another name elsewhere (a hard link planted in the
    // store) is not opened up: that name may be private.
    if meta.is_file() && meta.nlink() > 1 {
        tracing::warn!(
            "{} has other links: not made readable to the server",
            path.display()
        );
        return Ok(());
    }
    std::fs::set_permissions(path, Permissions::from_mode(mode))
        .map_err(io_err("set the permissions of", path))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_opens_up_shared_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let dirs = prepare(&data).unwrap();
        let blob = dirs.aci.join("a".repeat(128));
        std::fs::write(&blob, b"x").unwrap();
        std::fs::set_permissions(&blob, Permissions::from_mode(0o600)).unwrap();
        let sig_dir = dirs.signatures.join("a".repeat(128));
        std::fs::create_dir_all(&sig_dir).unwrap();
        std::fs::set_permissions(&sig_dir, Permissions::from_mode(0o700)).unwrap();
        std::fs::write(sig_dir.join("ABCD"), b"sig").unwrap();
        std::fs::set_permissions(sig_dir.join("ABCD"), Permissions::from_mode(0o600)).unwrap();
        let private = data.join("cas/db.sqlite");
        std::fs::write(&private, b"db").unwrap();
        std::fs::set_permissions(&private, Permissions::from_mode(0o600)).unwrap();
        prepare(&data).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o777;
        assert_eq!(mode(&blob), 0o644);
        assert_eq!(mode(&sig_dir), 0o755);
        assert_eq!(mode(&sig_dir.join("ABCD")), 0o644);
        assert_eq!(mode(&private), 0o600, "the index is not shared");
        assert_eq!(mode(&data), 0o700, "the data directory stays private");
    }

    #[test]
    fn partials_live_while_linked_and_are_replaced_or_removed_after() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        prepare(&data).unwrap();
        let staged = dir.path().join("stage");
        std::fs::write(&staged, b"0123456789").unwrap();
        let key = "d".repeat(64);
        let partial = Partial::publish(&data, &key, &staged, 3).unwrap().unwrap();
        let have = data.join("cas/partial").join(format!("{key}.have"));
        assert_eq!(std::fs::read(&have).unwrap(), b"000");
        partial.mark(1, b'1');
        assert_eq!(std::fs::read(&have).unwrap(), b"010");
        assert!(
            stale_partials(&data).unwrap().is_empty(),
            "linked twice: live"
        );
        assert!(
            Partial::publish(&data, &key, &staged, 3).unwrap().is_none(),
            "one fetch shares a key at a time"
        );
        drop(partial);
        assert!(!have.exists(), "an unfinished download is withdrawn");
        // Kept, then its other link goes: stale, and replaced by a new fetch.
        Partial::publish(&data, &key, &staged, 3)
            .unwrap()
            .unwrap()
            .keep();
        std::fs::remove_file(&staged).unwrap();
        assert_eq!(stale_partials(&data).unwrap().len(), 2);
        std::fs::write(&staged, b"x").unwrap();
        assert!(Partial::publish(&data, &key, &staged, 1).unwrap().is_some());
        assert!(Partial::publish(&data, "../x", &staged, 1).is_err());
    }
}
