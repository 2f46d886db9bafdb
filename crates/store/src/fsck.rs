//! Checking the store, and repairing it: `skiff image fsck [--repair]`.
//!
//! What is checked: the index file (SQLite's own check); that every blob
//! hashes to its ID and is a valid image; that every index row has its blob
//! and every blob its row; that the remote and signature records
//! ([`crate::records`]) and their rows agree; that every cached layer
//! hashes to its digest; that every rendered tree is complete (its `ready`
//! marker, written last, its `rootfs` and `images`); that no staging file
//! or unfinished render was left by a process that died.
//!
//! The index is a cache: a repair rebuilds every row it lacks from the
//! blobs and the records (an unreadable index is moved aside first), and
//! removes what cannot be right (a blob that does not hash to its name, a
//! row without its blob, leftovers of dead processes).
//!
//! Readers are never stopped: blobs are hashed without a lock (a blob,
//! once in place, never changes), and only the comparison and the repairs
//! hold `locks/store.lock` exclusively, as gc does, so no import is between
//! its rename and its row meanwhile.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};
use skiff_spec::ImageId;
use skiff_spec::aci::{AciInfo, validate_aci_with};

use crate::db::now;
use crate::lock::FileLock;
use crate::records::files_in;
use crate::{Store, StoreError, io_err};

/// What kind of problem fsck found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemKind {
    /// The index file is not a sound SQLite database.
    IndexUnreadable,
    /// An index row whose blob is gone.
    RowWithoutBlob,
    /// A blob the index does not list.
    BlobWithoutRow,
    /// A blob that does not hash to its name, or is no valid image.
    BadBlob,
    /// A cached layer that does not hash to its digest.
    BadLayer,
    /// A tree without its `ready` marker, `rootfs` or `images`, or a render
    /// whose process died.
    UnfinishedTree,
    /// A staging file or record write whose process died.
    Leftover,
    /// A remote or signature record without its index row.
    RecordWithoutRow,
    /// A remote or signature row without its record.
    RowWithoutRecord,
    /// A remote row that names another image than its record.
    RecordMismatch,
    /// A record of an image the store does not have, or a file in the
    /// records that is not one.
    StrayRecord,
}

/// One problem, and whether the repair fixed it.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub kind: ProblemKind,
    /// The file, image or URL concerned.
    pub subject: String,
    /// What is wrong.
    pub detail: String,
    /// What the repair does (or did).
    pub repair: String,
    pub repaired: bool,
}

/// What fsck looked at and found.
#[derive(Debug, Default, Clone, Serialize)]
pub struct FsckReport {
    pub blobs: usize,
    pub rows: usize,
    pub layers: usize,
    pub trees: usize,
    pub records: usize,
    /// Imports and renders in progress, left alone.
    pub in_progress: usize,
    pub problems: Vec<Problem>,
}

impl FsckReport {
    /// Problems that are still there.
    pub fn unrepaired(&self) -> usize {
        self.problems.iter().filter(|p| !p.repaired).count()
    }
}

/// Staging files and layer downloads nobody has touched for this long are
/// leftovers (layer downloads are not locked; their writes keep them young).
pub const LAYER_TMP_AGE: Duration = Duration::from_secs(24 * 3600);

/// `.new-*` staging files older than this are an importer's that died in
/// its first microseconds.
const NEW_STAGE_AGE: Duration = Duration::from_secs(600);

pub(crate) fn older_than(path: &Path, age: Duration) -> bool {
    std::fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t.elapsed().is_ok_and(|a| a >= age))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Whether a file in `cas/tmp` belongs to an importer that died.
pub(crate) fn dead_staging(path: &Path) -> bool {
    // Only skiff's regular files are staged; anything else (a FIFO would
    // block the open below) is no import's.
    if !std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file()) {
        return true;
    }
    if file_name(path).starts_with(crate::import::NEW_PREFIX) {
        older_than(path, NEW_STAGE_AGE)
    } else {
        matches!(FileLock::try_exclusive(path), Ok(Some(_)))
    }
}

/// Whether `trees/.render-<hex>-<pid>` is a render nobody is doing.
pub(crate) fn dead_render(store: &Store, name: &str) -> Option<bool> {
    let rest = name.strip_prefix(".render-")?;
    let hex = rest.split('-').next().unwrap_or_default();
    Some(match ImageId::parse(&format!("sha512-{hex}")) {
        Ok(id) => matches!(
            FileLock::try_exclusive(&store.layout().tree_lock(&id)),
            Ok(Some(_)) | Err(_)
        ),
        Err(_) => true,
    })
}

/// Removes a file or a directory tree; gone already is fine.
pub(crate) fn remove_path(path: &Path) -> Result<bool, StoreError> {
    let result = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err("remove", path)(e).into()),
    }
}

/// Problems as they are found, each repaired at once with `repair`.
struct Findings {
    repair: bool,
    problems: Vec<Problem>,
}

impl Findings {
    fn add(
        &mut self,
        kind: ProblemKind,
        subject: String,
        detail: String,
        repair: &str,
        fix: &mut dyn FnMut() -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        // A repair that fails is reported as such; the others go on.
        let (repaired, repair) = match self.repair.then(fix) {
            None => (false, repair.to_string()),
            Some(Ok(())) => (true, repair.to_string()),
            Some(Err(e)) => (false, format!("{repair} failed: {}", error_chain(&e))),
        };
        self.problems.push(Problem {
            kind,
            subject,
            detail,
            repair,
            repaired,
        });
        Ok(())
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut line = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        line.push_str(": ");
        line.push_str(&c.to_string());
        cause = c.source();
    }
    line
}

/// What a blob turned out to be.
type Checked = Result<AciInfo, String>;

/// Opens a file the store made: a regular file, not through a symlink
/// (a FIFO would block, a link would lead elsewhere).
fn open_regular(path: &Path) -> Result<std::fs::File, String> {
    skiff_io::open_regular(path).map_err(|e| match e.kind() {
        io::ErrorKind::InvalidInput => e.to_string(),
        _ => format!("unreadable: {e}"),
    })
}

pub(crate) fn check_blob(path: &Path) -> Checked {
    let file = open_regular(path)?;
    validate_aci_with(BufReader::with_capacity(1 << 16, file), &mut |_| Ok(()))
        .map_err(|e| format!("not a valid image: {e}"))
}

fn check_layer(path: &Path) -> Result<(), String> {
    let mut file = open_regular(path)?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher).map_err(|e| format!("unreadable: {e}"))?;
    let got = hex::encode(hasher.finalize());
    if got == file_name(path) {
        Ok(())
    } else {
        Err(format!("its content has digest sha256:{got}"))
    }
}

/// Moves an unreadable index (and its WAL files) aside, so a new one can
/// be built; returns where it went.
fn move_index_aside(db: &Path) -> Result<PathBuf, StoreError> {
    let aside = db.with_extension(format!("sqlite.unreadable-{}", now()));
    for suffix in ["", "-wal", "-shm"] {
        let from = PathBuf::from(format!("{}{suffix}", db.display()));
        let to = PathBuf::from(format!("{}{suffix}", aside.display()));
        match std::fs::rename(&from, &to) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("move aside", &from)(e).into()),
        }
    }
    Ok(aside)
}

/// Checks the store in `data_dir` and, with `repair`, repairs it (see the
/// module docs). `in_use` gives the images of pods that may still run
/// (their trees are never removed).
pub fn fsck(
    data_dir: &Path,
    repair: bool,
    progress: bool,
    in_use: impl FnOnce() -> io::Result<HashSet<String>>,
) -> Result<FsckReport, StoreError> {
    let mut report = FsckReport::default();
    let layout = crate::layout::Layout::new(data_dir);
    let unreadable = match Store::open(data_dir) {
        Ok(store) => store.index().check()?,
        Err(StoreError::IndexUnreadable { reason, .. }) => Some(reason),
        Err(e) => return Err(e),
    };
    if let Some(reason) = unreadable {
        let mut problem = Problem {
            kind: ProblemKind::IndexUnreadable,
            subject: layout.db().display().to_string(),
            detail: reason,
            repair: "moved aside and rebuilt from the blobs and records".into(),
            repaired: false,
        };
        if repair {
            let aside = move_index_aside(&layout.db())?;
            problem.repair = format!(
                "moved to {} and rebuilt from the blobs and records",
                aside.display()
            );
            problem.repaired = true;
        }
        report.problems.push(problem);
        if !repair {
            return Ok(report);
        }
    }
    let store = Store::open(data_dir)?.show_progress(progress);
    store.fsck_open(repair, in_use, report)
}

impl Store {
    fn fsck_open(
        &self,
        repair: bool,
        in_use: impl FnOnce() -> io::Result<HashSet<String>>,
        mut report: FsckReport,
    ) -> Result<FsckReport, StoreError> {
        let layout = self.layout().clone();
        // Without the lock: every blob and layer hashed.
        let blob_paths = files_in(&layout.blobs())?;
        let layer_paths = files_in(&layout.layers())?;
        let total: u64 = blob_paths
            .iter()
            .chain(&layer_paths)
            .filter_map(|p| std::fs::metadata(p).ok().map(|m| m.len()))
            .sum();
        let bar = skiff_io::progress::bar(self.progress, "checking", Some(total));
        let mut blobs: BTreeMap<String, (PathBuf, Checked)> = BTreeMap::new();
        for path in blob_paths {
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            let checked = check_blob(&path);
            bar.inc(size);
            blobs.insert(file_name(&path), (path, checked));
        }
        let mut bad_layers = Vec::new();
        for path in layer_paths {
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            if let Err(why) = check_layer(&path) {
                bad_layers.push((path, why));
            }
            bar.inc(size);
            report.layers += 1;
        }
        drop(bar);

        let lock_path = layout.store_lock();
        let _lock = FileLock::exclusive(&lock_path).map_err(io_err("lock", &lock_path))?;
        let mut found = Findings {
            repair,
            problems: std::mem::take(&mut report.problems),
        };

        // What looked wrong before the lock is checked again under it
        // (imports and removals wait for it now): a blob or layer removed
        // and fetched again meanwhile is whole.
        for (name, (path, checked)) in blobs.iter_mut() {
            let bad = checked
                .as_ref()
                .map_or(true, |info| info.image_id.hex() != name);
            if bad {
                *checked = check_blob(path);
            }
        }
        blobs.retain(|_, (path, checked)| checked.is_ok() || path.exists());
        bad_layers.retain_mut(|(path, why)| match check_layer(path) {
            Ok(()) => false,
            Err(now) => {
                *why = now;
                path.exists()
            }
        });

        // Blobs against rows.
        let rows = self.images()?;
        let mut indexed: HashSet<String> = HashSet::new();
        // Images removed with their records by the repair of their own
        // problem: their records are not problems of their own.
        let mut doomed: HashSet<String> = HashSet::new();
        for row in &rows {
            let hex = row.id.hex().to_string();
            doomed.insert(hex.clone());
            match blobs.get(&hex) {
                // Imported after the listing: its import checked it.
                None if layout.blob(&row.id).exists() => {
                    doomed.remove(&hex);
                    indexed.insert(hex);
                }
                None => found.add(
                    ProblemKind::RowWithoutBlob,
                    row.id.to_string(),
                    "the index lists it, its blob is gone".into(),
                    "removed from the index; fetch it again",
                    &mut || self.forget(&row.id).map(drop),
                )?,
                Some((path, Err(why))) => found.add(
                    ProblemKind::BadBlob,
                    path.display().to_string(),
                    why.to_string(),
                    "removed; fetch it again",
                    &mut || self.forget(&row.id).map(drop),
                )?,
                Some((path, Ok(info))) if info.image_id != row.id => found.add(
                    ProblemKind::BadBlob,
                    path.display().to_string(),
                    format!(
                        "its content hashes to {}, not to its name",
                        info.image_id.short()
                    ),
                    "removed; fetch it again",
                    &mut || self.forget(&row.id).map(drop),
                )?,
                Some(_) => {
                    doomed.remove(&hex);
                    indexed.insert(hex);
                }
            }
        }
        report.rows = rows.len();
        let known: HashSet<String> = rows.iter().map(|r| r.id.hex().to_string()).collect();
        for (name, (path, checked)) in &blobs {
            report.blobs += 1;
            if known.contains(name) {
                continue;
            }
            if !path.exists() {
                continue; // removed meanwhile (gc, image rm)
            }
            match checked {
                Ok(info) if info.image_id.hex() == name => {
                    found.add(
                        ProblemKind::BlobWithoutRow,
                        info.image_id.to_string(),
                        format!("{} is not in the index", info.manifest.name),
                        "indexed again",
                        &mut || self.adopt(path, info),
                    )?;
                    // Indexed by the repair: its records are its own.
                    indexed.insert(name.clone());
                }
                Ok(info) => found.add(
                    ProblemKind::BadBlob,
                    path.display().to_string(),
                    format!(
                        "its content hashes to {}, not to its name",
                        info.image_id.short()
                    ),
                    "removed",
                    &mut || remove_path(path).map(drop),
                )?,
                Err(why) => found.add(
                    ProblemKind::BadBlob,
                    path.display().to_string(),
                    why.to_string(),
                    "removed",
                    &mut || remove_path(path).map(drop),
                )?,
            }
        }
        for (path, why) in &bad_layers {
            found.add(
                ProblemKind::BadLayer,
                path.display().to_string(),
                why.to_string(),
                "removed; a fetch downloads it again",
                &mut || remove_path(path).map(drop),
            )?;
        }

        // Records against rows, for the images that are (now) indexed.
        let records = self.records();
        let crate::records::Found {
            records: remote_files,
            bad: bad_remotes,
        } = records.remotes()?;
        let crate::records::Found {
            records: signature_files,
            bad: bad_signatures,
        } = records.signatures()?;
        report.records = remote_files.len() + signature_files.len();
        for bad in bad_remotes.iter().chain(&bad_signatures) {
            let kind = if file_name(&bad.path).starts_with(".tmp-") {
                ProblemKind::Leftover
            } else {
                ProblemKind::StrayRecord
            };
            found.add(
                kind,
                bad.path.display().to_string(),
                bad.reason.clone(),
                "removed",
                &mut || records.remove_bad(bad),
            )?;
        }
        let remote_rows: HashMap<String, crate::RemoteRecord> = self
            .index()
            .remotes()?
            .into_iter()
            .map(|r| (r.url.clone(), r))
            .collect();
        let mut remote_urls = HashSet::new();
        for (path, rec) in &remote_files {
            remote_urls.insert(rec.url.clone());
            if doomed.contains(rec.image_id.hex()) {
                continue;
            }
            if !indexed.contains(rec.image_id.hex()) {
                found.add(
                    ProblemKind::StrayRecord,
                    path.display().to_string(),
                    format!(
                        "{} resolved to {}, which the store does not have",
                        rec.url,
                        rec.image_id.short()
                    ),
                    "removed",
                    &mut || {
                        records.remove_remote(&rec.url)?;
                        self.index().remove_remote(&rec.url)
                    },
                )?;
                continue;
            }
            match remote_rows.get(&rec.url) {
                None => found.add(
                    ProblemKind::RecordWithoutRow,
                    rec.url.clone(),
                    format!("resolves to {}", rec.image_id.short()),
                    "indexed again",
                    &mut || self.index().set_remote(rec),
                )?,
                Some(row) if row.image_id != rec.image_id => found.add(
                    ProblemKind::RecordMismatch,
                    rec.url.clone(),
                    format!(
                        "the index says {}, the record (written first) {}",
                        row.image_id.short(),
                        rec.image_id.short()
                    ),
                    "the record's kept",
                    &mut || self.index().set_remote(rec),
                )?,
                Some(_) => {}
            }
        }
        for (url, row) in &remote_rows {
            if remote_urls.contains(url) || doomed.contains(row.image_id.hex()) {
                continue;
            }
            if indexed.contains(row.image_id.hex()) {
                found.add(
                    ProblemKind::RowWithoutRecord,
                    url.clone(),
                    "the index lists it without its record".into(),
                    "record written",
                    &mut || records.write_remote(row),
                )?;
            } else {
                found.add(
                    ProblemKind::RowWithoutRecord,
                    url.clone(),
                    format!(
                        "resolves to {}, which the store does not have",
                        row.image_id.short()
                    ),
                    "removed",
                    &mut || self.index().remove_remote(url),
                )?;
            }
        }
        // Read once: rows the loop below adds have their records.
        let signatures = self.index().signatures()?;
        let signature_rows: HashSet<(String, String)> = signatures
            .iter()
            .map(|(id, fp, _)| (id.to_string(), fp.clone()))
            .collect();
        let mut signature_records = HashSet::new();
        for crate::records::SignatureRecord {
            image: id,
            fingerprint,
            signature,
        } in &signature_files
        {
            signature_records.insert((id.to_string(), fingerprint.clone()));
            if doomed.contains(id.hex()) {
                continue;
            }
            if !indexed.contains(id.hex()) {
                found.add(
                    ProblemKind::StrayRecord,
                    format!("{} signed by {fingerprint}", id.short()),
                    "a signature record of an image the store does not have".into(),
                    "removed",
                    &mut || {
                        records.remove_signatures(id)?;
                        self.index().remove_signature(id, fingerprint)
                    },
                )?;
            } else if !signature_rows.contains(&(id.to_string(), fingerprint.clone())) {
                found.add(
                    ProblemKind::RecordWithoutRow,
                    format!("{} signed by {fingerprint}", id.short()),
                    "the signature is not in the index".into(),
                    "indexed again",
                    &mut || self.index().add_signature(id, fingerprint, signature),
                )?;
            }
        }
        for (id, fingerprint, signature) in signatures {
            if signature_records.contains(&(id.to_string(), fingerprint.clone()))
                || doomed.contains(id.hex())
            {
                continue;
            }
            let subject = format!("{} signed by {fingerprint}", id.short());
            if indexed.contains(id.hex()) {
                found.add(
                    ProblemKind::RowWithoutRecord,
                    subject,
                    "the index lists it without its record".into(),
                    "record written",
                    &mut || records.write_signature(&id, &fingerprint, &signature),
                )?;
            } else {
                found.add(
                    ProblemKind::RowWithoutRecord,
                    subject,
                    "a signature of an image the store does not have".into(),
                    "removed",
                    &mut || self.index().remove_signature(&id, &fingerprint),
                )?;
            }
        }

        // Leftovers of dead importers and layer downloads.
        for path in files_in(&layout.tmp())? {
            if dead_staging(&path) {
                found.add(
                    ProblemKind::Leftover,
                    path.display().to_string(),
                    "a staging file of an import that did not finish".into(),
                    "removed",
                    &mut || remove_path(&path).map(drop),
                )?;
            } else {
                report.in_progress += 1;
            }
        }
        for path in files_in(&layout.layers_tmp())? {
            if older_than(&path, LAYER_TMP_AGE) {
                found.add(
                    ProblemKind::Leftover,
                    path.display().to_string(),
                    "a layer download untouched for a day".into(),
                    "removed",
                    &mut || remove_path(&path).map(drop),
                )?;
            } else {
                report.in_progress += 1;
            }
        }

        for path in crate::serving::stale_partials(layout.root())? {
            found.add(
                ProblemKind::Leftover,
                path.display().to_string(),
                "a download shared with a swarm whose fetch died or whose image is gone".into(),
                "removed",
                &mut || remove_path(&path).map(drop),
            )?;
        }

        // Trees.
        let in_use = in_use().map_err(io_err("list the images pods use", &layout.pods()))?;
        for path in files_in(&layout.trees())? {
            let name = file_name(&path);
            if let Some(dead) = dead_render(self, &name) {
                if dead {
                    found.add(
                        ProblemKind::UnfinishedTree,
                        path.display().to_string(),
                        "a render whose process died".into(),
                        "removed",
                        &mut || remove_path(&path).map(drop),
                    )?;
                } else {
                    report.in_progress += 1;
                }
                continue;
            }
            report.trees += 1;
            let missing: Vec<&str> = ["ready", "rootfs", "images"]
                .into_iter()
                .filter(|part| !path.join(part).exists())
                .collect();
            if missing.is_empty() {
                continue;
            }
            let detail = format!("it has no {}", missing.join(", "));
            if in_use.contains(&format!("sha512-{name}")) {
                found.problems.push(Problem {
                    kind: ProblemKind::UnfinishedTree,
                    subject: path.display().to_string(),
                    detail,
                    repair: "none: a pod uses it (remove the pod, then repair)".into(),
                    repaired: false,
                });
                continue;
            }
            found.add(
                ProblemKind::UnfinishedTree,
                path.display().to_string(),
                detail.clone(),
                "removed; rendered again when used",
                &mut || remove_path(&path).map(drop),
            )?;
        }
        report.problems = found.problems;
        Ok(report)
    }

    /// Indexes a blob that is in place but has no row (its import died
    /// between the rename and the row, or the index was lost).
    pub(crate) fn adopt(&self, path: &Path, info: &AciInfo) -> Result<(), StoreError> {
        let imported = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or_else(now, |d| d.as_secs() as i64);
        let (blob_size, compression) = crate::import::describe_blob(path)?;
        self.index().insert_image(&crate::import::record_of(
            info,
            blob_size,
            compression,
            imported,
        ))?;
        Ok(())
    }
}
