//! Importing images: stage, check, commit.
//!
//! 1. [`Store::stage`] gives a staging file in `cas/tmp`, flock-ed for as
//!    long as the importer lives (a download goes there, and its signature is
//!    checked against it by the caller).
//! 2. [`Store::commit`] reads the staged bytes once: decompresses, hashes (the
//!    image ID), validates layout and manifest, and applies the
//!    [`ArchivePolicy`] to every entry. Then it syncs the file, renames it to
//!    `cas/blobs/sha512/<hex>` and only then adds the index row.
//!
//! A crash before the rename leaves an unlocked staging file (gc deletes it);
//! between rename and index, an unindexed blob (gc deletes it). Importers hold
//! `locks/store.lock` shared across rename and index so gc, which takes it
//! exclusively, never sees that window.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use skiff_spec::aci::{FileType, detect_file_type, validate_aci_limited};
use skiff_spec::{ImageId, ImageManifest};

use crate::db::{ImageRecord, now};
use crate::lock::FileLock;
use crate::policy::{ArchivePolicy, EntryChecker};
use crate::{Store, StoreError, io_err};

/// Staging files in use are named `stage-*` and always locked.
pub(crate) const STAGE_PREFIX: &str = "stage-";
/// A staging file being created (before it is locked).
pub(crate) const NEW_PREFIX: &str = ".new-";

/// A staging file for an import in progress.
pub struct Staged {
    lock: FileLock,
    path: PathBuf,
    keep: bool,
}

impl Staged {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The staging file, for writing the download into.
    pub fn file(&self) -> &File {
        self.lock.file()
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A locked staging file in `tmp` made unnamed and then linked in; `None`
/// where the file system (or a missing /proc) does not allow it.
fn stage_unnamed(tmp: &Path) -> io::Result<Option<Staged>> {
    use rustix::fs::{Mode, OFlags};
    use rustix::io::Errno;
    use std::hash::{BuildHasher, Hasher};
    use std::os::fd::AsRawFd;
    let file = match rustix::fs::open(
        tmp,
        OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
        Mode::RUSR | Mode::WUSR,
    ) {
        Ok(fd) => File::from(fd),
        Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    file.lock()?;
    let fd_path = format!("/proc/self/fd/{}", file.as_raw_fd());
    for _ in 0..16 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        let path = tmp.join(format!("{STAGE_PREFIX}{:016x}", h.finish()));
        match rustix::fs::linkat(
            rustix::fs::CWD,
            fd_path.as_str(),
            rustix::fs::CWD,
            &path,
            rustix::fs::AtFlags::SYMLINK_FOLLOW,
        ) {
            Ok(()) => {
                return Ok(Some(Staged {
                    lock: FileLock::lock_file(file, &path)?,
                    path,
                    keep: false,
                }));
            }
            Err(Errno::EXIST) => continue,
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
    Err(io::Error::from(io::ErrorKind::AlreadyExists))
}

/// The result of a commit.
#[derive(Debug, Clone)]
pub struct Imported {
    pub id: ImageId,
    pub manifest: ImageManifest,
    /// False if the store already had this image.
    pub newly_added: bool,
}

/// Writes to the staging file and to the checker's pipe.
/// What a producer's writes fail with once the checker refused the image
/// (the checker's verdict is the error to report).
pub const STOPPED: &str = "stopped: the image was refused";

struct Tee<'a, W: Write> {
    file: W,
    pipe: Option<io::PipeWriter>,
    written: u64,
    /// Set by the checker once it refused the image: the producer stops
    /// (a converted OCI image must not fill the disk past the verdict).
    refused: &'a AtomicBool,
    /// Most bytes a stream of an image the policy admits can take.
    limit: u64,
}

impl<W: Write> Write for Tee<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.refused.load(Ordering::Relaxed) {
            return Err(io::Error::other(STOPPED));
        }
        if self.written > self.limit {
            return Err(io::Error::other("the image is larger than the limit"));
        }
        let n = self.file.write(buf)?;
        if let Some(pipe) = &mut self.pipe
            && pipe.write_all(&buf[..n]).is_err()
        {
            // The checker's verdict is the error to report.
            self.pipe = None;
        }
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Decompresses, hashes and validates an image, applying the policy to
/// every entry.
fn check<R: Read>(
    input: R,
    policy: &ArchivePolicy,
) -> Result<skiff_spec::aci::AciInfo, StoreError> {
    let mut checker = EntryChecker::new(policy);
    let info = validate_aci_limited(input, policy.inflation(), &mut |entry| checker.check(entry))
        .map_err(StoreError::InvalidImage)?;
    // The index keeps the manifest as skiff writes it; what appc's parser
    // lets through but cannot read back once written (a list entry with
    // no "name" key gets an empty one) is refused here, not found
    // unusable at render time.
    let written = skiff_spec::to_pretty_json(&info.manifest);
    if let Err(e) = skiff_spec::parse_image_manifest(written.as_bytes()) {
        return Err(StoreError::UnstorableManifest(e.to_string()));
    }
    Ok(info)
}

/// Size and compression of a stored blob.
pub(crate) fn describe_blob(path: &Path) -> Result<(u64, String), StoreError> {
    let mut file = File::open(path).map_err(io_err("read", path))?;
    let size = file.metadata().map_err(io_err("read", path))?.len();
    let mut head = Vec::with_capacity(512);
    (&mut file)
        .take(512)
        .read_to_end(&mut head)
        .map_err(io_err("read", path))?;
    Ok((size, compression_of(&head)))
}

fn compression_of(head: &[u8]) -> String {
    match detect_file_type(head) {
        FileType::Archive(c) => c.name().to_string(),
        _ => "unknown".to_string(),
    }
}

/// The index row of a checked image.
pub(crate) fn record_of(
    info: &skiff_spec::aci::AciInfo,
    blob_size: u64,
    compression: String,
    import_time: i64,
) -> ImageRecord {
    ImageRecord {
        id: info.image_id.clone(),
        name: info.manifest.name.to_string(),
        labels: info
            .manifest
            .labels
            .iter()
            .map(|l| (l.name.to_string(), l.value.clone()))
            .collect(),
        manifest: skiff_spec::to_pretty_json(&info.manifest).into_bytes(),
        blob_size,
        size: info.size,
        compression,
        import_time,
        last_used: now(),
    }
}

impl Store {
    /// A new, locked staging file in `cas/tmp`.
    pub fn stage(&self) -> Result<Staged, StoreError> {
        let tmp = self.layout().tmp();
        // Made unnamed (O_TMPFILE), locked, then linked in as `stage-*`: an
        // importer killed at any instant leaves nothing, or a `stage-*` file
        // whose lock died with it (gc removes it).
        if let Some(staged) =
            stage_unnamed(&tmp).map_err(io_err("create a staging file in", &tmp))?
        {
            return Ok(staged);
        }
        // Where the file system has no O_TMPFILE: created under a name gc
        // leaves alone for a while, locked, then renamed: gc never sees an
        // unlocked `stage-*` file that is still in use.
        let (file, new_path) = tempfile::Builder::new()
            .prefix(NEW_PREFIX)
            .tempfile_in(&tmp)
            .map_err(io_err("create a staging file in", &tmp))?
            .keep()
            .map_err(|e| io_err("keep a staging file in", &tmp)(e.error))?;
        let lock = FileLock::lock_file(file, &new_path).map_err(io_err("lock", &new_path))?;
        let name = new_path
            .file_name()
            .map(|n| n.to_string_lossy().replacen(NEW_PREFIX, STAGE_PREFIX, 1))
            .unwrap_or_else(|| STAGE_PREFIX.to_string());
        let path = tmp.join(name);
        std::fs::rename(&new_path, &path).map_err(io_err("name a staging file in", &tmp))?;
        Ok(Staged {
            lock,
            path,
            keep: false,
        })
    }

    /// Stages everything `input` yields and commits it.
    pub fn import<R: Read>(
        &self,
        mut input: R,
        policy: &ArchivePolicy,
    ) -> Result<Imported, StoreError> {
        let staged = self.stage()?;
        let mut writer = io::BufWriter::new(staged.file());
        io::copy(&mut input, &mut writer).map_err(io_err("write", staged.path()))?;
        writer.flush().map_err(io_err("write", staged.path()))?;
        drop(writer);
        self.commit(staged, policy)
    }

    /// Checks a staged image and moves it into the store (see the module docs).
    pub fn commit(&self, staged: Staged, policy: &ArchivePolicy) -> Result<Imported, StoreError> {
        let path = staged.path.clone();
        let mut file = staged.file().try_clone().map_err(io_err("read", &path))?;
        file.rewind().map_err(io_err("read", &path))?;
        let blob_size = file.metadata().map_err(io_err("read", &path))?.len();
        let mut head = Vec::with_capacity(512);
        (&mut file)
            .take(512)
            .read_to_end(&mut head)
            .map_err(io_err("read", &path))?;
        file.rewind().map_err(io_err("read", &path))?;
        let compression = compression_of(&head);
        let bar = skiff_io::progress::bar(self.progress, "importing", Some(blob_size));
        let info = check(
            BufReader::with_capacity(1 << 16, bar.wrap_read(file)),
            policy,
        )?;
        drop(bar);
        self.publish(staged, info, blob_size, compression)
    }

    /// Imports the uncompressed ACI that `produce` writes: the bytes go to
    /// a staging file and, at the same time, through the checks on a
    /// second thread (one pass instead of write-then-read). The stream is
    /// not compressed, so the decompression ratio is the producer's to
    /// check (the OCI converter checks each layer's real inflation); every
    /// other limit of `policy` holds.
    pub fn import_streamed(
        &self,
        policy: &ArchivePolicy,
        produce: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> Result<Imported, StoreError> {
        let policy = &ArchivePolicy {
            max_ratio: u64::MAX,
            ..policy.clone()
        };
        let staged = self.stage()?;
        let path = staged.path.clone();
        let (reader, pipe) = io::pipe().map_err(io_err("create a pipe for", &path))?;
        let refused = AtomicBool::new(false);
        // The entries' bytes plus their headers and padding.
        let limit = policy
            .max_bytes
            .saturating_add(policy.max_entries.saturating_mul(1024));
        let (written, info) = std::thread::scope(|scope| {
            let refused = &refused;
            let checker = scope.spawn(move || {
                let mut input = BufReader::with_capacity(1 << 16, reader);
                let checked = check(&mut input, policy);
                if checked.is_err() {
                    refused.store(true, Ordering::Relaxed);
                }
                // Read to the end whatever the verdict, so the writer never
                // meets a closed pipe (SIGPIPE).
                let _ = io::copy(&mut input, &mut io::sink());
                checked
            });
            let mut tee = Tee {
                file: io::BufWriter::with_capacity(1 << 20, staged.file()),
                pipe: Some(pipe),
                written: 0,
                refused,
                limit,
            };
            let produced = produce(&mut tee).and_then(|()| tee.flush());
            let written = tee.written;
            // Closing the pipe ends the checker's input.
            drop(tee);
            let info = checker.join().unwrap_or_else(|_| {
                Err(StoreError::InvalidImage(skiff_spec::aci::AciError::Io(
                    io::Error::other("the checker thread panicked"),
                )))
            });
            (produced.map(|()| written), info)
        });
        // The checker's verdict first: it is why the producer stopped.
        let info = info?;
        let written = written.map_err(io_err("write", &path))?;
        self.publish(staged, info, written, "none".to_string())
    }

    fn publish(
        &self,
        mut staged: Staged,
        info: skiff_spec::aci::AciInfo,
        blob_size: u64,
        compression: String,
    ) -> Result<Imported, StoreError> {
        let path = staged.path.clone();
        crate::serving::share_file(staged.file(), &path)?;
        staged.file().sync_all().map_err(io_err("sync", &path))?;
        let record = record_of(&info, blob_size, compression, now());

        let store_lock = self.layout().store_lock();
        let _guard = FileLock::shared(&store_lock).map_err(io_err("lock", &store_lock))?;
        let blob = self.layout().blob(&info.image_id);
        let mut record = record;
        match rustix::fs::renameat_with(
            rustix::fs::CWD,
            &path,
            rustix::fs::CWD,
            &blob,
            rustix::fs::RenameFlags::NOREPLACE,
        ) {
            Ok(()) => {
                staged.keep = true;
                let blobs = self.layout().blobs();
                File::open(&blobs)
                    .and_then(|d| d.sync_all())
                    .map_err(io_err("sync", &blobs))?;
            }
            // Another importer got the same image in first: keep its blob
            // and describe that one.
            Err(rustix::io::Errno::EXIST) => {
                let (size, compression) = describe_blob(&blob)?;
                record.blob_size = size;
                record.compression = compression;
            }
            Err(e) => return Err(io_err("move into the store", &blob)(e.into()).into()),
        }
        // Records left by a removal that crashed part-way describe another
        // fetch of this image: a new import starts without them.
        if self.index().image(&info.image_id)?.is_none() {
            self.records().remove_signatures(&info.image_id)?;
        }
        let newly_added = self.index().insert_image(&record)?;
        if !newly_added {
            self.index().touch(&info.image_id)?;
        }
        // Under the store's lock still: no gc between the row and the pin.
        self.pin(&info.image_id)?;
        Ok(Imported {
            id: info.image_id,
            manifest: info.manifest,
            newly_added,
        })
    }
}
