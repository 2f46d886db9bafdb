//! Building an ACI from an image layout directory (`manifest` + `rootfs/`).
//!
//! Entries are written in a fixed order (`manifest`, then `rootfs` walked in
//! byte order) with the files' own modes, owners and mtimes, symlinks as
//! symlinks, hard links as links to the first path, and device nodes and
//! FIFOs as such; sockets are skipped (they cannot be archived).

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha512};

use super::Compression;
use crate::id::ImageId;
use crate::image::ImageManifest;
use crate::manifest::{ManifestError, parse_image_manifest};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot read the image layout at {}", path.display())]
    ReadLayout {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("bad image layout at {}: {reason}", path.display())]
    Layout { path: PathBuf, reason: String },
    #[error("invalid manifest {}", path.display())]
    Manifest {
        path: PathBuf,
        #[source]
        source: ManifestError,
    },
    #[error("{} already exists (use --overwrite to replace it)", .0.display())]
    Exists(PathBuf),
    #[error("failed to write the archive")]
    Write(#[source] io::Error),
}

/// Options for [`build_aci`].
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub compression: Compression,
    /// Record every file as owned by root (0:0), as `actool build --owner-root`.
    pub owner_root: bool,
    /// The manifest to use instead of the layout's `manifest` file (which
    /// may then be absent).
    pub manifest: Option<Vec<u8>>,
    /// A progress bar with this label over the files' bytes (drawn on
    /// stderr when it is a terminal).
    pub progress: Option<String>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            compression: Compression::Gzip,
            owner_root: false,
            manifest: None,
            progress: None,
        }
    }
}

/// Reads and validates the layout's manifest and checks the top level.
pub fn read_layout(dir: &Path) -> Result<(ImageManifest, Vec<u8>), BuildError> {
    read_layout_with(dir, None)
}

/// [`read_layout`] with `manifest` instead of the layout's file.
pub fn read_layout_with(
    dir: &Path,
    manifest: Option<&[u8]>,
) -> Result<(ImageManifest, Vec<u8>), BuildError> {
    let read_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BuildError::ReadLayout { path, source }
    };
    let layout_err = |reason: String| BuildError::Layout {
        path: dir.to_path_buf(),
        reason,
    };
    let rootfs = dir.join("rootfs");
    let meta = fs::symlink_metadata(&rootfs).map_err(read_err(&rootfs))?;
    if !meta.is_dir() {
        return Err(layout_err("rootfs is not a directory".to_string()));
    }
    for entry in fs::read_dir(dir).map_err(read_err(dir))? {
        let name = entry.map_err(read_err(dir))?.file_name();
        let name = name.to_string_lossy();
        if name != "manifest" && !name.starts_with("rootfs") {
            return Err(layout_err(format!(
                "unexpected entry '{name}' (only 'manifest' and 'rootfs/' may be at the top)"
            )));
        }
    }
    let manifest_path = dir.join("manifest");
    let bytes = match manifest {
        Some(m) => m.to_vec(),
        None => fs::read(&manifest_path).map_err(read_err(&manifest_path))?,
    };
    let manifest = parse_image_manifest(&bytes).map_err(|source| BuildError::Manifest {
        path: manifest_path,
        source,
    })?;
    Ok((manifest, bytes))
}

/// What was built.
#[derive(Debug, Clone)]
pub struct Built {
    pub manifest: ImageManifest,
    /// The image ID: SHA-512 of the uncompressed tar, hashed while writing.
    pub image_id: ImageId,
}

/// Writes the ACI for the layout in `dir` to `out`.
pub fn build_aci<W: Write>(
    dir: &Path,
    out: W,
    options: &BuildOptions,
) -> Result<Built, BuildError> {
    let (manifest, manifest_bytes) = read_layout_with(dir, options.manifest.as_deref())?;
    let sink = match options.compression {
        Compression::None => Sink::Plain(out),
        Compression::Gzip => Sink::Gzip(flate2::write::GzEncoder::new(
            out,
            flate2::Compression::default(),
        )),
        Compression::Bzip2 => Sink::Bzip2(bzip2::write::BzEncoder::new(
            out,
            bzip2::Compression::default(),
        )),
        Compression::Xz => Sink::Xz(liblzma::write::XzEncoder::new(out, 6)),
    };
    let mut tar = tar::Builder::new(HashingWriter {
        inner: sink,
        hasher: Sha512::new(),
    });
    tar.follow_symlinks(false);
    // The manifest's time: its file's, or (given as an option) the rootfs'.
    let timed = if options.manifest.is_some() {
        dir.join("rootfs")
    } else {
        dir.join("manifest")
    };
    let manifest_meta = fs::metadata(&timed).map_err(|source| BuildError::ReadLayout {
        path: timed.clone(),
        source,
    })?;
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(manifest_bytes.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(u64::try_from(manifest_meta.mtime()).unwrap_or(0));
    tar.append_data(&mut header, "manifest", manifest_bytes.as_slice())
        .map_err(BuildError::Write)?;
    let rootfs = dir.join("rootfs");
    let bar = match &options.progress {
        Some(what) => skiff_io::progress::bar(true, what, Some(file_bytes(&rootfs))),
        None => skiff_io::progress::bar(false, "", None),
    };
    let mut walker = Walker {
        tar: &mut tar,
        options,
        links: HashMap::new(),
        bar,
    };
    walker.add(&rootfs, Path::new("rootfs"))?;
    let hashing = tar.into_inner().map_err(BuildError::Write)?;
    let image_id = ImageId::from_digest(&hashing.hasher.finalize());
    let mut out = hashing.inner.finish().map_err(BuildError::Write)?;
    out.flush().map_err(BuildError::Write)?;
    Ok(Built { manifest, image_id })
}

/// Hashes the uncompressed tar on its way to the compressor.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha512,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The output stream with its compressor, finished explicitly so that write
/// errors at the end of the stream are reported, not lost in a `Drop`.
enum Sink<W: Write> {
    Plain(W),
    Gzip(flate2::write::GzEncoder<W>),
    Bzip2(bzip2::write::BzEncoder<W>),
    Xz(liblzma::write::XzEncoder<W>),
}

impl<W: Write> Sink<W> {
    fn finish(self) -> io::Result<W> {
        match self {
            Sink::Plain(w) => Ok(w),
            Sink::Gzip(e) => e.finish(),
            Sink::Bzip2(e) => e.finish(),
            Sink::Xz(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Sink<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Plain(w) => w.write(buf),
            Sink::Gzip(e) => e.write(buf),
            Sink::Bzip2(e) => e.write(buf),
            Sink::Xz(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Plain(w) => w.flush(),
            Sink::Gzip(e) => e.flush(),
            Sink::Bzip2(e) => e.flush(),
            Sink::Xz(e) => e.flush(),
        }
    }
}

/// A PAX extended header body: `"<len> <key>=<value>\n"` records.
pub fn pax_records(records: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, value) in records {
        let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
        let mut len = rest + 1;
        while len != rest + len.to_string().len() {
            len = rest + len.to_string().len();
        }
        out.extend_from_slice(format!("{len} {key}=").as_bytes());
        out.extend_from_slice(value);
        out.push(b'\n');
    }
    out
}

/// The extended attributes of `path` (not following symlinks).
fn xattrs(path: &Path) -> io::Result<Vec<(String, Vec<u8>)>> {
    let size = match rustix::fs::llistxattr_query(path) {
        Ok(n) => n,
        Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    if size == 0 {
        return Ok(Vec::new());
    }
    let mut names = vec![0u8; size];
    let n = rustix::fs::llistxattr(path, &mut names[..])?;
    let mut out = Vec::new();
    for name in names[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(name).into_owned();
        let len = rustix::fs::lgetxattr_query(path, name.as_str())?;
        let mut value = vec![0u8; len];
        let got = rustix::fs::lgetxattr(path, name.as_str(), &mut value[..])?;
        value.truncate(got);
        out.push((format!("SCHILY.xattr.{name}"), value));
    }
    Ok(out)
}

/// The bytes of the regular files under `dir` (each hard-linked file
/// once), for the build's progress bar; what cannot be read counts 0.
fn file_bytes(dir: &Path) -> u64 {
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = fs::symlink_metadata(entry.path()) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() && (meta.nlink() == 1 || seen.insert((meta.dev(), meta.ino())))
            {
                total += meta.len();
            }
        }
    }
    total
}

struct Walker<'a, W: Write> {
    tar: &'a mut tar::Builder<W>,
    options: &'a BuildOptions,
    /// (dev, inode) → first archived path, for hard links.
    links: HashMap<(u64, u64), PathBuf>,
    /// Advanced by the files' bytes as they are archived.
    bar: skiff_io::progress::ProgressBar,
}

impl<W: Write> Walker<'_, W> {
    /// Writes a PAX header carrying the xattrs of `path`, if it has any.
    fn add_xattrs(&mut self, path: &Path, name: &Path) -> Result<(), BuildError> {
        let records = xattrs(path).map_err(|source| BuildError::ReadLayout {
            path: path.to_path_buf(),
            source,
        })?;
        if records.is_empty() {
            return Ok(());
        }
        let body = pax_records(&records);
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::XHeader);
        header.set_size(body.len() as u64);
        header.set_mode(0o644);
        let pax_name = format!("PaxHeaders/{}", name.display());
        let short: String = pax_name.chars().take(99).collect();
        header.set_path(&short).map_err(BuildError::Write)?;
        header.set_cksum();
        self.tar
            .append(&header, body.as_slice())
            .map_err(BuildError::Write)
    }

    fn add(&mut self, path: &Path, name: &Path) -> Result<(), BuildError> {
        let read_err = |source| BuildError::ReadLayout {
            path: path.to_path_buf(),
            source,
        };
        let meta = fs::symlink_metadata(path).map_err(read_err)?;
        let ft = meta.file_type();
        if ft.is_socket() {
            tracing::warn!(path = %path.display(), "skipping a socket: sockets cannot be archived");
            return Ok(());
        }
        let mut header = tar::Header::new_gnu();
        header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
        if self.options.owner_root {
            header.set_uid(0);
            header.set_gid(0);
        }
        let _ = header.set_username("");
        let _ = header.set_groupname("");
        if ft.is_file() && meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = self.links.get(&key) {
                header.set_entry_type(tar::EntryType::Link);
                header.set_size(0);
                let first = first.clone();
                return self
                    .tar
                    .append_link(&mut header, name, &first)
                    .map_err(BuildError::Write);
            }
            self.links.insert(key, name.to_path_buf());
        }
        if !ft.is_symlink() {
            self.add_xattrs(path, name)?;
        }
        if ft.is_symlink() {
            let target = fs::read_link(path).map_err(read_err)?;
            header.set_size(0);
            return self
                .tar
                .append_link(&mut header, name, &target)
                .map_err(BuildError::Write);
        }
        if ft.is_file() {
            let file = fs::File::open(path).map_err(read_err)?;
            return self
                .tar
                .append_data(&mut header, name, self.bar.wrap_read(file))
                .map_err(BuildError::Write);
        }
        if ft.is_dir() {
            header.set_size(0);
            self.tar
                .append_data(&mut header, name, io::empty())
                .map_err(BuildError::Write)?;
            let mut children: Vec<_> = fs::read_dir(path)
                .map_err(read_err)?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<Result<_, _>>()
                .map_err(read_err)?;
            children.sort();
            for child in children {
                self.add(&path.join(&child), &name.join(&child))?;
            }
            return Ok(());
        }
        // Character and block devices and FIFOs: header only.
        header.set_size(0);
        self.tar
            .append_data(&mut header, name, io::empty())
            .map_err(BuildError::Write)
    }
}

/// Builds the ACI into the file `out` atomically: a temporary file beside it
/// is written, synced and renamed, so a failed build leaves nothing behind.
/// Refuses to replace an existing file unless `overwrite`.
pub fn build_aci_file(
    dir: &Path,
    out: &Path,
    options: &BuildOptions,
    overwrite: bool,
) -> Result<Built, BuildError> {
    if !overwrite && fs::symlink_metadata(out).is_ok() {
        return Err(BuildError::Exists(out.to_path_buf()));
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image.aci".to_string());
    let tmp = parent.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let result = (|| {
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(BuildError::Write)?;
        let mut writer = io::BufWriter::new(file);
        let built = build_aci(dir, &mut writer, options)?;
        let file = writer
            .into_inner()
            .map_err(|e| BuildError::Write(e.into_error()))?;
        file.sync_all().map_err(BuildError::Write)?;
        fs::rename(&tmp, out).map_err(BuildError::Write)?;
        Ok(built)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}
