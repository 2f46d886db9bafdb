//! skiff-store: the image store.
//!
//! Map of the crate:
//! * [`layout`]: the on-disk layout under the data directory (documented there).
//! * [`db`]: the SQLite index of images, remotes and signatures.
//! * [`lock`]: `flock` file locks, the only inter-process coordination.
//! * [`policy`]: the hostile-archive policy checked while importing.
//! * [`import`]: staging, verifying and committing images atomically.
//! * [`pins`]: images in use by a running skiff command, kept from gc.
//! * [`render`]: rendering an image and its dependencies into a tree.
//! * [`records`]: remotes and signatures as files, so the index is a cache.
//! * [`gc`]: garbage collection and verification.
//! * [`fsck`]: checking the store and repairing it (rebuilding the index).
//!
//! Every mutation is crash-safe: data is written to a staging file, synced
//! and renamed into place before the index mentions it.

pub mod db;
pub mod fsck;
pub mod gc;
pub mod import;
pub mod layout;
pub mod lock;
pub mod pins;
pub mod policy;
pub mod records;
pub mod render;
pub mod serving;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

pub use db::{ImageRecord, RemoteRecord};
pub use import::{Imported, STOPPED, Staged};
pub use policy::ArchivePolicy;
pub use render::RenderedTree;
use skiff_spec::ImageId;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Io(#[from] skiff_io::IoError),
    #[error("store index error: {0}")]
    Index(String),
    #[error(
        "the store's index {} is unreadable ({reason}): rebuild it with `skiff image fsck --repair`",
        path.display()
    )]
    IndexUnreadable { path: PathBuf, reason: String },
    #[error("invalid image")]
    InvalidImage(#[source] skiff_spec::aci::AciError),
    #[error(
        "the image manifest cannot be stored as written ({0}): an entry without a \"name\" key is accepted by appc's parser but is no name; give every label, dependency, isolator, port and annotation a name"
    )]
    UnstorableManifest(String),
    #[error("no image matches '{0}' (see `skiff image list`)")]
    NotFound(String),
    #[error("'{query}' is ambiguous: it matches {}", ids.join(", "))]
    Ambiguous { query: String, ids: Vec<String> },
    #[error("bad image reference '{query}': {reason}")]
    BadReference { query: String, reason: String },
    #[error(
        "image {0} is used by a pod that is prepared or running (stop and remove the pod first)"
    )]
    InUse(String),
    #[error(
        "image {0} is in use by a skiff command in progress (a fetch, run or prepare): try again when it ends"
    )]
    Busy(String),
    #[error("cannot render {image}: {what}")]
    RenderIo {
        image: String,
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot render {image}: {reason}")]
    Render { image: String, reason: String },
    #[error(
        "the data directory {} is not this user's (its owner is uid {owner}): whoever owns it could change the store; choose a directory of your own with --dir",
        dir.display()
    )]
    ForeignDir { dir: PathBuf, owner: u32 },
}

pub(crate) use skiff_io::io_err_at as io_err;

/// The store in one data directory.
pub struct Store {
    layout: layout::Layout,
    index: db::Index,
    records: records::Records,
    /// Show progress bars on a terminal for imports and renders.
    progress: bool,
}

/// Makes `dir` (the data directory) reachable by its owner only: what
/// pods write (setuid copies, device nodes, secrets in their layers) and
/// rendered trees must not be reachable by other local users through it
/// (the CVE-2021-41091 class). One of ours with group or other bits is
/// tightened; a directory of another owner (who could swap what is in it)
/// is refused.
pub fn private_dir(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    std::fs::create_dir_all(dir).map_err(io_err("create", dir))?;
    let Some(meta) = own_dir(dir)? else {
        return Err(io_err("inspect", dir)(io::ErrorKind::NotFound.into()).into());
    };
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io_err("restrict the permissions of", dir))?;
    }
    Ok(())
}

/// Refuses a data directory (if it exists) whose owner is not this
/// process's user: whoever owns it could swap the store, the pods' files
/// and records under it (for root: make it act on their files). Its
/// metadata, if it exists.
pub fn own_dir(dir: &Path) -> Result<Option<std::fs::Metadata>, StoreError> {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(dir) {
        Ok(meta) if meta.uid() != rustix::process::geteuid().as_raw() => {
            Err(StoreError::ForeignDir {
                dir: dir.to_path_buf(),
                owner: meta.uid(),
            })
        }
        Ok(meta) => Ok(Some(meta)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("inspect", dir)(e).into()),
    }
}

impl Store {
    /// Opens (creating if needed) the store under `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        private_dir(data_dir)?;
        let layout = layout::Layout::new(data_dir);
        for dir in [
            layout.blobs(),
            layout.layers(),
            layout.layers_tmp(),
            layout.tmp(),
            layout.trees(),
            layout.locks(),
        ] {
            std::fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        }
        // Opening sets WAL mode and migrates the schema; SQLite answers
        // "database is locked" (without waiting) when processes race on a
        // fresh database, so openers take turns.
        let init_lock = layout.locks().join("index.lock");
        let guard = lock::FileLock::exclusive(&init_lock).map_err(io_err("lock", &init_lock))?;
        let index = db::Index::open(&layout.db())?;
        let store = Store {
            records: records::Records::new(&layout.cas()),
            layout,
            index,
            progress: false,
        };
        if store.index.opened_at_version() == 1 {
            // Written by a skiff that kept remotes and signatures in the
            // index only: they become records once.
            store.write_records_of_index()?;
            store.index.mark_migrated()?;
        }
        drop(guard);
        Ok(store)
    }

    /// Writes a record for every remote and signature row (a migration,
    /// and a repair).
    fn write_records_of_index(&self) -> Result<(), StoreError> {
        for remote in self.index.remotes()? {
            self.records.write_remote(&remote)?;
        }
        for (id, fingerprint, signature) in self.index.signatures()? {
            self.records
                .write_signature(&id, &fingerprint, &signature)?;
        }
        Ok(())
    }

    /// Runs `write` under the store's lock (shared) if image `id` is still
    /// in the store: a gc or `image rm` (exclusive) that removed it
    /// meanwhile leaves nothing for a record to describe.
    fn while_present(
        &self,
        id: &ImageId,
        write: impl FnOnce() -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let lock = self.layout.store_lock();
        let _guard = lock::FileLock::shared(&lock).map_err(io_err("lock", &lock))?;
        if self.index.image(id)?.is_none() {
            tracing::debug!(image = %id.short(), "removed meanwhile: nothing recorded");
            return Ok(());
        }
        write()
    }

    /// Remembers what `rec.url` resolved to: the record file, then the row.
    pub fn set_remote(&self, rec: &RemoteRecord) -> Result<(), StoreError> {
        self.while_present(&rec.image_id, || {
            self.records.write_remote(rec)?;
            self.index.set_remote(rec)
        })
    }

    /// Remembers that the key `fingerprint` verified image `id` with
    /// `signature`: the record file, then the row.
    pub fn add_signature(
        &self,
        id: &ImageId,
        fingerprint: &str,
        signature: &[u8],
    ) -> Result<(), StoreError> {
        self.while_present(id, || {
            self.records.write_signature(id, fingerprint, signature)?;
            self.index.add_signature(id, fingerprint, signature)
        })
    }

    pub fn records(&self) -> &records::Records {
        &self.records
    }

    /// Removes an image's records, row and blob (in that order: a crash
    /// between leaves what gc or fsck finishes).
    pub(crate) fn forget(&self, id: &ImageId) -> Result<bool, StoreError> {
        // Records first: a crash part-way leaves an image that lost its
        // verified state (it is checked again when fetched), never records
        // that a later import of the same ID would inherit.
        for remote in self.index.remotes_of(id)? {
            self.records.remove_remote(&remote.url)?;
        }
        self.records.remove_signatures(id)?;
        let had_row = self.index.remove_image(id)?;
        fsck::remove_path(&self.layout.blob(id))?;
        // A process that opened the pin before this unlink and locks it
        // after finds the pin file replaced or the image gone.
        let _ = std::fs::remove_file(self.layout.pin(id));
        Ok(had_row)
    }

    /// Shows a progress bar (on stderr, when it is a terminal) while an
    /// image is checked on import and while a tree is rendered.
    pub fn show_progress(mut self, shown: bool) -> Self {
        self.progress = shown;
        self
    }

    pub fn layout(&self) -> &layout::Layout {
        &self.layout
    }

    pub fn index(&self) -> &db::Index {
        &self.index
    }

    pub fn images(&self) -> Result<Vec<ImageRecord>, StoreError> {
        self.index.images()
    }

    /// Finds one image by ID (full or a unique prefix of at least 8 hex
    /// digits), or by name with optional labels (`name`, `name:version`,
    /// `name,version=1.0,os=linux`); a name picks the newest import.
    pub fn resolve(&self, query: &str) -> Result<ImageRecord, StoreError> {
        if let Some(hex) = query.strip_prefix("sha512-") {
            if hex.len() < 8 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(StoreError::BadReference {
                    query: query.to_string(),
                    reason: "an image ID needs at least 8 hex digits after 'sha512-'".to_string(),
                });
            }
            let matches = self
                .index
                .images_with_id_prefix(&query.to_ascii_lowercase())?;
            return match matches.len() {
                0 => Err(StoreError::NotFound(query.to_string())),
                1 => Ok(matches.into_iter().next().expect("one match")),
                _ => Err(StoreError::Ambiguous {
                    query: query.to_string(),
                    ids: matches.iter().map(|m| m.id.short().to_string()).collect(),
                }),
            };
        }
        let app = skiff_spec::discovery::AppName::parse(query).map_err(|reason| {
            StoreError::BadReference {
                query: query.to_string(),
                reason,
            }
        })?;
        self.find(app.name.as_str(), &app.labels)?
            .ok_or_else(|| StoreError::NotFound(query.to_string()))
    }

    /// The newest image called `name` whose labels include all of `labels`.
    pub fn find(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<Option<ImageRecord>, StoreError> {
        Ok(self
            .index
            .images_named(name)?
            .into_iter()
            .find(|img| labels.iter().all(|(k, v)| img.labels.get(k) == Some(v))))
    }

    pub fn blob_path(&self, id: &ImageId) -> PathBuf {
        self.layout.blob(id)
    }

    /// Removes an image from the index, then its blob (its rendered tree
    /// goes at the next gc, once no pod uses it). Refused while a prepared
    /// or running pod uses the image: `live_in_use` (the images of pods
    /// that may still run, `skiff_pod::Pods::images_in_use(true)`) is asked
    /// under the store's lock.
    pub fn remove(
        &self,
        id: &ImageId,
        live_in_use: impl FnOnce() -> io::Result<std::collections::HashSet<String>>,
    ) -> Result<(), StoreError> {
        let _guard = lock::FileLock::exclusive(&self.layout.store_lock())
            .map_err(io_err("lock", &self.layout.store_lock()))?;
        // This process is done with it; another's use keeps it. The pods
        // are asked once the pin is held: a command that released its pin
        // made its pod first.
        self.release_pin(id);
        let Some(_pin) = self.unpinned(id)? else {
            return Err(StoreError::Busy(id.to_string()));
        };
        let live =
            live_in_use().map_err(io_err("list the images pods use", &self.layout.pods()))?;
        if live.contains(id.as_str()) {
            return Err(StoreError::InUse(id.to_string()));
        }
        if !self.forget(id)? {
            return Err(StoreError::NotFound(id.to_string()));
        }
        Ok(())
    }
}
