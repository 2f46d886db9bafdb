//! Garbage collection and verification.
//!
//! gc holds `locks/store.lock` exclusively, so no import is between its
//! rename and its index row while gc looks. It removes, in this order:
//! staging files nobody holds (dead imports), index rows whose blob is gone,
//! images unused for longer than the grace period and not referenced by any
//! pod, and rendered trees whose image is gone or unused, plus unfinished
//! renders nobody holds. A blob the index does not list (an import that
//! died after its rename, or a lost index) is indexed again, not removed.

use std::collections::HashSet;
use std::io;
use std::time::Duration;

use serde::Serialize;

use crate::db::now;
use crate::fsck::{LAYER_TMP_AGE, check_blob, dead_render, dead_staging, older_than, remove_path};
use crate::lock::FileLock;
use crate::records::files_in;
use crate::{Store, StoreError, io_err};

/// What gc removed.
#[derive(Debug, Default, Clone, Serialize)]
pub struct GcReport {
    pub staging_files: usize,
    /// Blobs without a row that were indexed again.
    pub reindexed_blobs: usize,
    /// Blobs without a row that are not the image their name says.
    pub bad_blobs: usize,
    pub dangling_rows: usize,
    pub images: Vec<String>,
    pub trees: usize,
    pub kept_in_use: usize,
    /// Images kept because a skiff command in progress uses them.
    pub kept_busy: usize,
    /// Cached OCI/Docker layers not used within the grace period.
    pub layers: usize,
}

/// One problem found by [`Store::verify`].
#[derive(Debug, Clone, Serialize)]
pub struct VerifyProblem {
    pub image: String,
    pub problem: String,
}

impl Store {
    /// Collects garbage; images unused for longer than `grace` are removed
    /// unless a pod references them: `in_use` (the pods' images, from
    /// `skiff_pod::Pods::images_in_use`) is asked under the store's lock.
    pub fn gc(
        &self,
        grace: Duration,
        in_use: impl FnOnce() -> io::Result<HashSet<String>>,
    ) -> Result<GcReport, StoreError> {
        let layout = self.layout();
        let lock_path = layout.store_lock();
        let _lock = FileLock::exclusive(&lock_path).map_err(io_err("lock", &lock_path))?;
        let mut report = GcReport::default();

        for path in files_in(&layout.tmp())? {
            if dead_staging(&path) {
                remove_path(&path)?;
                report.staging_files += 1;
            }
        }

        // A blob without a row is an import that died between its rename
        // and its row, or an index that was lost: the blob is indexed
        // again if it is the image its name says (the index is a cache),
        // removed if not.
        let known: HashSet<String> = self
            .images()?
            .iter()
            .map(|r| r.id.hex().to_string())
            .collect();
        for path in files_in(&layout.blobs())? {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if known.contains(&name) {
                continue;
            }
            match check_blob(&path) {
                Ok(info) if info.image_id.hex() == name => {
                    self.adopt(&path, &info)?;
                    report.reindexed_blobs += 1;
                }
                _ => {
                    remove_path(&path)?;
                    report.bad_blobs += 1;
                }
            }
        }

        // Candidates take their pins first, then the pods are asked: a
        // command that released its pin (it execs stage1) made its pod
        // before, so the pod is seen.
        // Saturating: a grace period past i64's seconds keeps everything
        // (`as i64` made u64::MAX -1, a cutoff in the future).
        let cutoff = now().saturating_sub(i64::try_from(grace.as_secs()).unwrap_or(i64::MAX));
        let mut live = HashSet::new();
        let mut candidates = Vec::new();
        for row in self.images()? {
            if !layout.blob(&row.id).exists() {
                self.forget(&row.id)?;
                report.dangling_rows += 1;
            } else if grace.is_zero() || crate::db::used_by(row.last_used) < cutoff {
                match self.unpinned(&row.id)? {
                    Some(pin) => candidates.push((row, pin)),
                    // A fetch, run or prepare in progress uses it.
                    None => {
                        report.kept_busy += 1;
                        live.insert(row.id.hex().to_string());
                    }
                }
            } else {
                live.insert(row.id.hex().to_string());
            }
        }
        let in_use = in_use().map_err(io_err("list the images pods use", &layout.pods()))?;
        for (row, _pin) in candidates {
            if in_use.contains(row.id.as_str()) {
                live.insert(row.id.hex().to_string());
            } else {
                self.forget(&row.id)?;
                report.images.push(row.id.to_string());
            }
        }
        report.kept_in_use = self
            .images()?
            .iter()
            .filter(|r| in_use.contains(r.id.as_str()))
            .count();
        self.remove_strays()?;

        // Cached layers: kept while used within the grace period (a fetch
        // that finds one in the cache touches it).
        for path in files_in(&layout.layers())? {
            if (grace.is_zero() || older_than(&path, grace)) && remove_path(&path)? {
                report.layers += 1;
            }
        }
        for path in files_in(&layout.layers_tmp())? {
            if older_than(&path, LAYER_TMP_AGE) {
                let _ = remove_path(&path);
            }
        }
        for path in crate::serving::stale_partials(layout.root())? {
            let _ = remove_path(&path);
        }

        for path in files_in(&layout.trees())? {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            // An unfinished render is stale if nobody holds its tree lock;
            // a tree is kept while its image is kept or any pod uses it.
            let stale = dead_render(self, &name).unwrap_or_else(|| {
                !live.contains(&name) && !in_use.contains(&format!("sha512-{name}"))
            });
            if stale {
                std::fs::remove_dir_all(&path).map_err(io_err("remove", &path))?;
                report.trees += 1;
            }
        }
        Ok(report)
    }

    /// Records and pin files of images the store no longer has (a crash in
    /// a removal, a pin taken for an image that was gone). The caller holds
    /// the store's lock exclusively.
    fn remove_strays(&self) -> Result<(), StoreError> {
        let indexed: HashSet<String> = self
            .images()?
            .iter()
            .map(|r| r.id.hex().to_string())
            .collect();
        let records = self.records();
        for (_, remote) in records.remotes()?.records {
            if !indexed.contains(remote.image_id.hex()) {
                records.remove_remote(&remote.url)?;
            }
        }
        for signature in records.signatures()?.records {
            if !indexed.contains(signature.image.hex()) {
                records.remove_signatures(&signature.image)?;
            }
        }
        for path in files_in(&self.layout().locks())? {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let Some(hex) = name
                .strip_prefix("pin-")
                .and_then(|n| n.strip_suffix(".lock"))
            else {
                continue;
            };
            if !indexed.contains(hex) && matches!(FileLock::try_exclusive(&path), Ok(Some(_))) {
                remove_path(&path)?;
            }
        }
        Ok(())
    }

    /// Checks every indexed blob: a valid image that hashes to its ID.
    pub fn verify(&self) -> Result<(usize, Vec<VerifyProblem>), StoreError> {
        let mut problems = Vec::new();
        let rows = self.images()?;
        for row in &rows {
            let blob = self.layout().blob(&row.id);
            // The same check as fsck's: a valid image that hashes to its ID.
            let problem = match check_blob(&blob) {
                Err(reason) => Some(reason),
                Ok(info) if info.image_id != row.id => Some(format!(
                    "content hashes to {}, not to its ID",
                    info.image_id.short()
                )),
                Ok(_) => None,
            };
            if let Some(problem) = problem {
                problems.push(VerifyProblem {
                    image: row.id.to_string(),
                    problem,
                });
            }
        }
        Ok((rows.len(), problems))
    }
}
