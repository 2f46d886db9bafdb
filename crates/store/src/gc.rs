//! Garbage collection and verification.
//!
//! gc holds `locks/store.lock` exclusively, so no import is between its
//! rename and its index row while gc looks. It removes, in this order:
//! staging files nobody holds (dead imports), blobs the index does not know
//! (an import that died after its rename), index rows whose blob is gone,
//! images unused for longer than the grace period and not referenced by any
//! pod, and rendered trees whose image is gone or unused, plus unfinished
//! renders nobody holds.

use std::collections::HashSet;
use std::io::{self, BufReader};
use std::time::Duration;

use serde::Serialize;
use skiff_spec::ImageId;
use skiff_spec::aci::{HashingReader, decompress};

use crate::db::now;
use crate::lock::FileLock;
use crate::{Store, StoreError, io_err};

/// What gc removed.
#[derive(Debug, Default, Clone, Serialize)]
pub struct GcReport {
    pub staging_files: usize,
    pub orphan_blobs: usize,
    pub dangling_rows: usize,
    pub images: Vec<String>,
    pub trees: usize,
    pub kept_in_use: usize,
    /// Cached OCI/Docker layers not used within the grace period.
    pub layers: usize,
}

/// One problem found by [`Store::verify`].
#[derive(Debug, Clone, Serialize)]
pub struct VerifyProblem {
    pub image: String,
    pub problem: String,
}

fn entries(dir: &std::path::Path) -> Result<Vec<std::path::PathBuf>, StoreError> {
    match std::fs::read_dir(dir) {
        Ok(rd) => Ok(rd.filter_map(|e| e.ok().map(|e| e.path())).collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io_err("list", dir)(e).into()),
    }
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

        for path in entries(&layout.tmp())? {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let dead = if name.starts_with(crate::import::NEW_PREFIX) {
                // Left by an importer that died within its first microseconds.
                std::fs::metadata(&path)
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > Duration::from_secs(600)))
            } else {
                matches!(FileLock::try_exclusive(&path), Ok(Some(_)))
            };
            if dead {
                match std::fs::remove_file(&path) {
                    Ok(()) => report.staging_files += 1,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err("remove", &path)(e).into()),
                }
            }
        }

        let rows = self.images()?;
        let known: HashSet<String> = rows.iter().map(|r| r.id.hex().to_string()).collect();
        for path in entries(&layout.blobs())? {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !known.contains(&name) {
                std::fs::remove_file(&path).map_err(io_err("remove", &path))?;
                report.orphan_blobs += 1;
            }
        }

        let in_use = in_use().map_err(io_err("list the images pods use", &layout.pods()))?;
        let cutoff = now() - grace.as_secs() as i64;
        let mut live = HashSet::new();
        for row in &rows {
            if !layout.blob(&row.id).exists() {
                self.index().remove_image(&row.id)?;
                report.dangling_rows += 1;
            } else if in_use.contains(row.id.as_str()) {
                report.kept_in_use += 1;
                live.insert(row.id.hex().to_string());
            } else if grace.is_zero() || row.last_used < cutoff {
                self.index().remove_image(&row.id)?;
                let blob = layout.blob(&row.id);
                std::fs::remove_file(&blob).map_err(io_err("remove", &blob))?;
                report.images.push(row.id.to_string());
            } else {
                live.insert(row.id.hex().to_string());
            }
        }

        // Cached layers: kept while used within the grace period (a fetch
        // that finds one in the cache touches it).
        let older_than = |path: &std::path::Path, age: Duration| {
            std::fs::symlink_metadata(path)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|a| a >= age))
        };
        for path in entries(&layout.layers())? {
            if grace.is_zero() || older_than(&path, grace) {
                match std::fs::remove_file(&path) {
                    Ok(()) => report.layers += 1,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err("remove", &path)(e).into()),
                }
            }
        }
        for path in entries(&layout.layers_tmp())? {
            if older_than(&path, Duration::from_secs(24 * 3600)) {
                let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
            }
        }

        for path in entries(&layout.trees())? {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let stale = if let Some(rest) = name.strip_prefix(".render-") {
                // An unfinished render: stale if nobody holds its tree lock.
                let hex = rest.split('-').next().unwrap_or_default();
                let id = ImageId::parse(&format!("sha512-{hex}"));
                match id {
                    Ok(id) => matches!(
                        FileLock::try_exclusive(&layout.tree_lock(&id)),
                        Ok(Some(_)) | Err(_)
                    ),
                    Err(_) => true,
                }
            } else {
                // Kept while its image is kept or any pod uses it.
                let id = format!("sha512-{name}");
                !live.contains(&name) && !in_use.contains(&id)
            };
            if stale {
                std::fs::remove_dir_all(&path).map_err(io_err("remove", &path))?;
                report.trees += 1;
            }
        }
        Ok(report)
    }

    /// Re-hashes every blob and compares it with its image ID.
    pub fn verify(&self) -> Result<(usize, Vec<VerifyProblem>), StoreError> {
        let mut problems = Vec::new();
        let rows = self.images()?;
        for row in &rows {
            let blob = self.layout().blob(&row.id);
            let problem = match std::fs::File::open(&blob) {
                Err(e) => Some(format!("blob {} cannot be read: {e}", blob.display())),
                Ok(file) => match decompress(BufReader::with_capacity(1 << 16, file)) {
                    Err(e) => Some(format!("blob is not an archive: {e}")),
                    Ok(stream) => match HashingReader::new(stream).finish() {
                        Err(e) => Some(format!("blob cannot be decompressed: {e}")),
                        Ok((id, _)) if id != row.id => {
                            Some(format!("content hashes to {}, not to its ID", id.short()))
                        }
                        Ok(_) => None,
                    },
                },
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
