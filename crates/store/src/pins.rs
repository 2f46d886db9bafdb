//! Pins: an image a skiff process is using (just imported, found in the
//! cache, being rendered) stays in the store until the process ends, even
//! against `image gc --grace-period=0`: a pod that will use it does not
//! exist yet, so nothing else says it is needed.
//!
//! A pin is a shared `flock` on `locks/pin-<hex>.lock`, held (close-on-exec)
//! until the process exits or execs stage1, by which time the pod that uses
//! the image protects it. gc and `image rm`, holding the store's lock, take
//! the pin exclusively before they remove an image, and skip it if they
//! cannot. Whoever pins checks the image is still there once the pin is
//! held: a gc that removed it just before finds a pin taken too late.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Mutex;

use skiff_spec::ImageId;

use crate::lock::FileLock;
use crate::{Store, StoreError, io_err};

/// The pins this process holds, by their lock file.
static HELD: Mutex<Vec<(PathBuf, FileLock)>> = Mutex::new(Vec::new());

fn held() -> std::sync::MutexGuard<'static, Vec<(PathBuf, FileLock)>> {
    HELD.lock().unwrap_or_else(|e| e.into_inner())
}

impl Store {
    /// Pins image `id` for the rest of this process; false if it is not
    /// (or no longer) in the store.
    pub fn pin(&self, id: &ImageId) -> Result<bool, StoreError> {
        let path = self.layout().pin(id);
        if held().iter().any(|(held, _)| *held == path) {
            return Ok(self.index().image(id)?.is_some());
        }
        // A gc that removed the image unlinks its pin file: a pin taken on
        // the unlinked file would guard nothing, so the lock must be on
        // the file the name still leads to.
        for _ in 0..16 {
            let lock = FileLock::shared(&path).map_err(io_err("lock", &path))?;
            if self.index().image(id)?.is_none() || !self.layout().blob(id).exists() {
                return Ok(false);
            }
            let same = match (lock.file().metadata(), std::fs::metadata(&path)) {
                (Ok(held), Ok(named)) => held.ino() == named.ino() && held.dev() == named.dev(),
                _ => false,
            };
            if same {
                held().push((path, lock));
                return Ok(true);
            }
        }
        Err(io_err("lock", &path)(std::io::Error::other("its pin file kept being replaced")).into())
    }

    /// Pins every image of `ids`; the first that is gone, if any.
    pub fn pin_all<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a ImageId>,
    ) -> Result<Option<&'a ImageId>, StoreError> {
        for id in ids {
            if !self.pin(id)? {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    /// The image's pin, taken exclusively, if no process holds it; the
    /// caller holds the store's lock exclusively and removes the image
    /// while it holds this.
    pub(crate) fn unpinned(&self, id: &ImageId) -> Result<Option<FileLock>, StoreError> {
        let path = self.layout().pin(id);
        FileLock::try_exclusive_creating(&path).map_err(|e| io_err("lock", &path)(e).into())
    }

    /// Releases this process's pin on `id` (it is done with the image).
    pub fn release_pin(&self, id: &ImageId) {
        let path = self.layout().pin(id);
        held().retain(|(held, _)| *held != path);
    }

    /// Releases the pins this process holds in this store (a process that
    /// lives on after its pods are prepared; tests).
    pub fn release_pins(&self) {
        let locks = self.layout().locks();
        held().retain(|(path, _)| !path.starts_with(&locks));
    }
}
