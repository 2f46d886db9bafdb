//! ACI files: detection of the compression by magic bytes, streaming
//! decompression, the image ID (SHA-512 of the uncompressed tar, computed
//! while reading), layout validation as `actool validate` does it, and
//! building an ACI from an image layout directory ([`build`]).

pub mod build;
pub mod inflation;
pub mod paths;

use std::io::{self, Read};

use sha2::{Digest, Sha512};

use crate::id::ImageId;
use crate::image::ImageManifest;
use crate::manifest::{ManifestError, parse_image_manifest};

/// The largest manifest skiff reads from an archive (a manifest is a few KiB;
/// this only stops a hostile image from making skiff buffer gigabytes).
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Bzip2,
    Xz,
}

impl Compression {
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Bzip2 => "bzip2",
            Compression::Xz => "xz",
        }
    }
}

/// What the first bytes of a file say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    /// A compressed stream or a POSIX tar: an ACI candidate.
    Archive(Compression),
    /// Looks like text (a JSON manifest candidate).
    Text,
    Unknown,
}

/// Sniffs up to the first 512 bytes, as `actool` does.
pub fn detect_file_type(head: &[u8]) -> FileType {
    if head.starts_with(&[0x1f, 0x8b]) {
        FileType::Archive(Compression::Gzip)
    } else if head.starts_with(b"BZh") {
        FileType::Archive(Compression::Bzip2)
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        FileType::Archive(Compression::Xz)
    } else if head.len() > 262 && &head[257..262] == b"ustar" {
        FileType::Archive(Compression::None)
    } else if !head.is_empty() && !head.iter().any(|&b| is_binary_byte(b)) {
        FileType::Text
    } else {
        FileType::Unknown
    }
}

/// Bytes that make Go's `http.DetectContentType` call a file binary.
fn is_binary_byte(b: u8) -> bool {
    matches!(b, 0x00..=0x08 | 0x0b | 0x0e..=0x1a | 0x1c..=0x1f)
}

#[derive(Debug, thiserror::Error)]
pub enum AciError {
    #[error("failed to read the image")]
    Io(#[from] io::Error),
    #[error(
        "not an ACI: the file is not a tar archive (compressed with gzip, bzip2 or xz, or plain)"
    )]
    NotAnArchive,
    #[error("corrupt archive: {0}")]
    Corrupt(String),
    #[error("bad image layout: {0}")]
    Layout(String),
    #[error("refused archive entry '{entry}': {reason}")]
    Refused { entry: String, reason: String },
    #[error("invalid image manifest")]
    Manifest(#[from] ManifestError),
    /// Past the [`inflation::Limits`] as it inflated.
    #[error("image refused: {0}")]
    Inflation(String),
}

impl AciError {
    /// One line per problem for `skiff image validate`.
    pub fn lines(&self) -> Vec<String> {
        match self {
            AciError::Manifest(m) => m
                .lines()
                .into_iter()
                .map(|l| format!("invalid image manifest: {l}"))
                .collect(),
            AciError::Io(e) => vec![format!("{other}: {e}", other = self)],
            other => vec![other.to_string()],
        }
    }
}

/// A reader that feeds everything it reads into a SHA-512.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha512,
    bytes: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha512::new(),
            bytes: 0,
        }
    }

    /// Reads what is left, then returns the image ID and the byte count.
    pub fn finish(mut self) -> io::Result<(ImageId, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((ImageId::from_digest(&self.hasher.finalize()), self.bytes))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Wraps `input` in the decompressor its magic bytes call for.
pub fn decompress<'a, R: Read + 'a>(mut input: R) -> Result<Box<dyn Read + 'a>, AciError> {
    let mut head = Vec::with_capacity(512);
    (&mut input).take(512).read_to_end(&mut head)?;
    let compression = match detect_file_type(&head) {
        FileType::Archive(c) => c,
        _ => return Err(AciError::NotAnArchive),
    };
    let stream = io::Cursor::new(head).chain(input);
    Ok(match compression {
        Compression::None => Box::new(stream),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(stream)),
        Compression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(stream)),
        Compression::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(stream)),
    })
}

/// A validated ACI: its manifest and its image ID.
#[derive(Debug, Clone)]
pub struct AciInfo {
    pub manifest: ImageManifest,
    /// `sha512-<128 hex>` of the uncompressed tar.
    pub image_id: ImageId,
    /// Size of the uncompressed tar in bytes.
    pub size: u64,
}

/// Go's `filepath.Clean` on a tar entry name.
pub fn clean_path(name: &str) -> String {
    let rooted = name.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// What an entry visitor sees of each archive entry.
#[derive(Debug, Clone)]
pub struct EntryInfo {
    /// The name as written in the archive.
    pub raw_path: String,
    /// The name cleaned as Go's `filepath.Clean` does.
    pub path: String,
    pub kind: tar::EntryType,
    pub mode: u32,
    pub size: u64,
    pub uid: u64,
    pub gid: u64,
    /// Target of a symlink or hard link.
    pub link_target: Option<String>,
    /// Names of its extended attributes (`SCHILY.xattr.*` PAX records).
    pub xattrs: Vec<String>,
}

/// Reads an ACI from `input` (any compression), checks it as `actool
/// validate` does (a `manifest` file, a `rootfs` directory, nothing else at
/// the top, no duplicate entries, a valid manifest) and computes its ID.
pub fn validate_aci<R: Read>(input: R) -> Result<AciInfo, AciError> {
    validate_aci_with(input, &mut |_| Ok(()))
}

/// [`validate_aci`] that also shows every entry to `visit`, which may refuse
/// it (the store's hostile-archive policy); a refusal names the entry.
pub fn validate_aci_with<R: Read>(
    input: R,
    visit: &mut dyn FnMut(&EntryInfo) -> Result<(), String>,
) -> Result<AciInfo, AciError> {
    validate_stream(decompress(input)?, visit)
}

/// [`validate_aci_with`] within `limits`: what the archive inflates to is
/// measured as it inflates (headers, extended records, data and anything
/// after the tar's end), and the read that crosses a limit stops it.
pub fn validate_aci_limited<R: Read>(
    input: R,
    limits: inflation::Limits,
    visit: &mut dyn FnMut(&EntryInfo) -> Result<(), String>,
) -> Result<AciInfo, AciError> {
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;
    let compressed = Rc::new(Cell::new(0));
    let verdict = Rc::new(RefCell::new(None));
    let counted = inflation::Counted {
        inner: input,
        count: compressed.clone(),
    };
    let guarded =
        inflation::Guarded::new(decompress(counted)?, compressed, limits, verdict.clone());
    let result = validate_stream(guarded, visit);
    // Whatever error the crossing read turned into, the verdict is what
    // happened.
    match verdict.take() {
        Some(why) => Err(AciError::Inflation(why)),
        None => result,
    }
}

/// [`validate_aci_with`] of a decompressed stream.
fn validate_stream(
    stream: impl Read,
    visit: &mut dyn FnMut(&EntryInfo) -> Result<(), String>,
) -> Result<AciInfo, AciError> {
    let mut hashing = HashingReader::new(stream);
    let mut manifest: Option<Vec<u8>> = None;
    let mut rootfs_seen = false;
    let mut seen = std::collections::HashSet::new();
    let mut stray: Option<String> = None;
    {
        let mut archive = tar::Archive::new(&mut hashing);
        let entries = archive
            .entries()
            .map_err(|e| AciError::Corrupt(e.to_string()))?;
        let mut last = String::new();
        for entry in entries {
            let mut entry = entry.map_err(|e| {
                AciError::Corrupt(if last.is_empty() {
                    e.to_string()
                } else {
                    format!("{e} (in the entry after '{last}')")
                })
            })?;
            let too_long = paths::too_long(&entry.path_bytes()).or_else(|| {
                entry
                    .link_name_bytes()
                    .and_then(|target| paths::too_long(&target))
                    .map(|why| format!("its link target: {why}"))
            });
            let raw_name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            if let Some(reason) = too_long {
                let start: String = raw_name.chars().take(64).collect();
                let more = if start.len() < raw_name.len() {
                    "…"
                } else {
                    ""
                };
                return Err(AciError::Refused {
                    entry: format!("{start}{more}"),
                    reason,
                });
            }
            let name = clean_path(&raw_name);
            last.clone_from(&raw_name);
            let xattrs = entry
                .pax_extensions()
                .ok()
                .flatten()
                .map(|pax| {
                    pax.filter_map(Result::ok)
                        .filter_map(|ext| {
                            ext.key()
                                .ok()
                                .and_then(|k| k.strip_prefix("SCHILY.xattr."))
                                .map(str::to_string)
                        })
                        .collect()
                })
                .unwrap_or_default();
            let header = entry.header();
            let info = EntryInfo {
                raw_path: raw_name.clone(),
                path: name.clone(),
                kind: header.entry_type(),
                mode: header.mode().unwrap_or(0),
                // The size the entry really has (a PAX `size` record
                // overrides the header's field).
                size: entry.size(),
                uid: header.uid().unwrap_or(0),
                gid: header.gid().unwrap_or(0),
                link_target: entry
                    .link_name_bytes()
                    .map(|b| String::from_utf8_lossy(&b).into_owned()),
                xattrs,
            };
            visit(&info).map_err(|reason| AciError::Refused {
                entry: raw_name.clone(),
                reason,
            })?;
            match name.as_str() {
                "." => {}
                "manifest" => {
                    let buf = manifest.get_or_insert_with(Vec::new);
                    let read = (&mut entry)
                        .take(MAX_MANIFEST_SIZE + 1)
                        .read_to_end(buf)
                        .map_err(|e| AciError::Corrupt(e.to_string()))?;
                    if buf.len() as u64 > MAX_MANIFEST_SIZE || read as u64 > MAX_MANIFEST_SIZE {
                        return Err(AciError::Layout(format!(
                            "the manifest is larger than {MAX_MANIFEST_SIZE} bytes"
                        )));
                    }
                }
                "rootfs" => {
                    if !entry.header().entry_type().is_dir() {
                        return Err(AciError::Layout("rootfs is not a directory".to_string()));
                    }
                    rootfs_seen = true;
                }
                _ => {
                    if !seen.insert(name.clone()) {
                        return Err(AciError::Layout(format!(
                            "duplicate entry in archive: {name}"
                        )));
                    }
                    // actool accepts any path that starts with "rootfs" here.
                    if stray.is_none() && !name.starts_with("rootfs") {
                        stray = Some(name);
                    }
                }
            }
        }
    }
    let Some(manifest) = manifest else {
        return Err(AciError::Layout(
            "no image manifest found (need a 'manifest' file at the top)".to_string(),
        ));
    };
    if !rootfs_seen {
        return Err(AciError::Layout(
            "no rootfs directory found (need a 'rootfs/' directory entry)".to_string(),
        ));
    }
    let manifest = parse_image_manifest(&manifest)?;
    if let Some(name) = stray {
        return Err(AciError::Layout(format!(
            "unexpected entry '{name}' (only 'manifest' and 'rootfs/' may be at the top)"
        )));
    }
    let (image_id, size) = hashing.finish()?;
    Ok(AciInfo {
        manifest,
        image_id,
        size,
    })
}

/// Returns the raw bytes of the first `manifest` entry of an ACI.
pub fn read_manifest_bytes<R: Read>(input: R) -> Result<Vec<u8>, AciError> {
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;
    // No inflation limits here (the full read has them), but the same
    // watch on extended records: this runs before any signature check.
    let verdict = Rc::new(RefCell::new(None));
    let guarded = inflation::Guarded::new(
        decompress(input)?,
        Rc::new(Cell::new(0)),
        inflation::UNLIMITED,
        verdict.clone(),
    );
    let result = find_manifest(guarded);
    match verdict.take() {
        Some(why) => Err(AciError::Inflation(why)),
        None => result,
    }
}

/// The manifest entry's bytes of a decompressed ACI stream.
fn find_manifest<R: Read>(input: R) -> Result<Vec<u8>, AciError> {
    let mut archive = tar::Archive::new(input);
    let entries = archive
        .entries()
        .map_err(|e| AciError::Corrupt(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| AciError::Corrupt(e.to_string()))?;
        if clean_path(&String::from_utf8_lossy(&entry.path_bytes())) == "manifest" {
            let mut buf = Vec::new();
            (&mut entry)
                .take(MAX_MANIFEST_SIZE + 1)
                .read_to_end(&mut buf)
                .map_err(|e| AciError::Corrupt(e.to_string()))?;
            if buf.len() as u64 > MAX_MANIFEST_SIZE {
                return Err(AciError::Layout("the manifest is too large".to_string()));
            }
            return Ok(buf);
        }
    }
    Err(AciError::Layout(
        "no image manifest found in the archive".to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_like_go() {
        for (input, want) in [
            ("./manifest", "manifest"),
            ("rootfs/", "rootfs"),
            ("/manifest", "/manifest"),
            ("rootfs/../manifest", "manifest"),
            ("../x", "../x"),
            ("", "."),
            ("/../a", "/a"),
            ("a/../../b", "../b"),
        ] {
            assert_eq!(clean_path(input), want, "{input}");
        }
    }

    #[test]
    fn detects_types() {
        assert_eq!(
            detect_file_type(&[0x1f, 0x8b, 8]),
            FileType::Archive(Compression::Gzip)
        );
        assert_eq!(detect_file_type(b"{\"a\":1}"), FileType::Text);
        assert_eq!(detect_file_type(&[0, 1, 2]), FileType::Unknown);
    }
}
