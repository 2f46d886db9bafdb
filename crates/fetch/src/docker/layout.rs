//! `oci:<layout-dir>[:ref]` and `oci-archive:<file>[:ref]`: images from an
//! OCI image layout on disk (an archive is a tar of one). Every blob is
//! checked against its digest as it is copied into the layer cache.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::convert::Layer;
use super::manifest::{Manifest, digest_hex};
use super::registry::{self, sha256_digest};
use crate::{FetchError, Fetched, Fetcher};

/// Largest index/manifest/config read from a layout.
const MAX_DOC: u64 = 4 << 20;

/// Splits `DIR[:REF]`: the whole string when it names an existing path.
pub fn split_ref(spec: &str) -> (PathBuf, Option<String>) {
    if Path::new(spec).exists() {
        return (PathBuf::from(spec), None);
    }
    match spec.rsplit_once(':') {
        Some((p, r)) if !r.contains('/') && !r.is_empty() => {
            (PathBuf::from(p), Some(r.to_string()))
        }
        _ => (PathBuf::from(spec), None),
    }
}

fn bad(what: &Path, reason: impl Into<String>) -> FetchError {
    FetchError::Http {
        url: what.display().to_string(),
        reason: reason.into(),
    }
}

fn blob_path(layout: &Path, digest: &str) -> Result<PathBuf, FetchError> {
    let hex = digest_hex(digest, &layout.display().to_string())?;
    Ok(layout.join("blobs/sha256").join(hex))
}

/// A small file of the layout (at most [`MAX_DOC`] bytes, a regular file).
fn read_small(path: &Path) -> Result<Vec<u8>, FetchError> {
    let file = skiff_io::open_regular(path).map_err(skiff_io::io_err_at("read", path))?;
    let mut bytes = Vec::new();
    file.take(MAX_DOC + 1)
        .read_to_end(&mut bytes)
        .map_err(skiff_io::io_err_at("read", path))?;
    if bytes.len() as u64 > MAX_DOC {
        return Err(bad(path, "larger than 4 MiB"));
    }
    Ok(bytes)
}

/// A small document blob, verified.
fn read_doc(layout: &Path, digest: &str) -> Result<Vec<u8>, FetchError> {
    let path = blob_path(layout, digest)?;
    let bytes = read_small(&path)?;
    if sha256_digest(&bytes) != digest {
        return Err(bad(
            &path,
            format!("content does not match its digest {digest}: refused"),
        ));
    }
    Ok(bytes)
}

/// Extracts an OCI archive's `index.json` and `blobs/sha256/*` (regular
/// files only; nothing else is written) into `dir`.
fn unpack_archive(archive: &Path, dir: &Path) -> Result<(), FetchError> {
    let io =
        |source: std::io::Error| FetchError::from(skiff_io::io_err_at("read", archive)(source));
    let file = std::fs::File::open(archive).map_err(io)?;
    std::fs::create_dir_all(dir.join("blobs/sha256")).map_err(io)?;
    let mut tar = tar::Archive::new(skiff_spec::aci::inflation::ExtensionWatch::new(
        std::io::BufReader::new(file),
    ));
    for entry in tar.entries().map_err(io)? {
        let mut entry = entry.map_err(io)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let name = raw.trim_start_matches("./");
        let target = if name == "index.json" {
            dir.join("index.json")
        } else if let Some(hex) = name.strip_prefix("blobs/sha256/") {
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            dir.join("blobs/sha256").join(hex)
        } else {
            continue;
        };
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)
            .map_err(io)?;
        std::io::copy(&mut entry, &mut out).map_err(io)?;
    }
    Ok(())
}

impl Fetcher<'_> {
    /// `oci:DIR[:REF]` (`archive`: `oci-archive:FILE[:REF]`).
    pub(crate) fn fetch_layout(&self, spec: &str, archive: bool) -> Result<Fetched, FetchError> {
        let scheme = if archive { "oci-archive" } else { "oci" };
        if !self.options.insecure.image {
            return Err(FetchError::Unsupported(format!(
                "{scheme}:{spec}: OCI images carry no appc signature, so skiff cannot verify who made it; \
                 fetch it with --insecure-options=image to accept it unverified"
            )));
        }
        let (path, reference) = split_ref(spec);
        let path = std::fs::canonicalize(&path).map_err(skiff_io::io_err_at("read", &path))?;
        let unpacked;
        let layout = if archive {
            unpacked =
                tempfile::tempdir_in(self.store.layout().layers_tmp()).map_err(|source| {
                    FetchError::from(skiff_io::io_err_at(
                        "read",
                        &self.store.layout().layers_tmp(),
                    )(source))
                })?;
            unpack_archive(&path, unpacked.path())?;
            unpacked.path().to_path_buf()
        } else {
            path.clone()
        };
        let index_path = layout.join("index.json");
        let index: Value = read_small(&index_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| bad(&path, "no readable index.json: not an OCI image layout"))?;
        let entries = index["manifests"].as_array().cloned().unwrap_or_default();
        let ref_of = |m: &Value| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .map(str::to_string)
        };
        let entry = match &reference {
            Some(r) => entries
                .iter()
                .find(|m| ref_of(m).as_deref() == Some(r.as_str())),
            None if entries.len() == 1 => entries.first(),
            None => None,
        };
        let Some(entry) = entry else {
            let refs: Vec<String> = entries.iter().filter_map(ref_of).collect();
            return Err(bad(
                &path,
                format!(
                    "no image {} in the layout (it has: {}); name one as {scheme}:DIR:REF",
                    reference.as_deref().unwrap_or("(none given)"),
                    refs.join(", ")
                ),
            ));
        };
        let mut digest = entry["digest"].as_str().unwrap_or("").to_string();
        let mut body = read_doc(&layout, &digest)?;
        let doc: Value = serde_json::from_slice(&body).map_err(|e| bad(&path, e.to_string()))?;
        let media = |d: &Value, fallback: &Value| {
            d["mediaType"]
                .as_str()
                .or(fallback["mediaType"].as_str())
                .unwrap_or("")
                .to_string()
        };
        if media(&doc, entry) == registry::OCI_INDEX || media(&doc, entry) == registry::DOCKER_LIST
        {
            let arch = self
                .options
                .arch
                .clone()
                .unwrap_or_else(|| super::pull::default_arch().to_string());
            digest = super::manifest::pick_platform(&body, &arch, &path.display().to_string())?;
            body = read_doc(&layout, &digest)?;
        }
        let manifest = Manifest::parse(&body, &path.display().to_string())?;
        let origin = format!(
            "{scheme}:{}{}",
            path.display(),
            reference
                .as_deref()
                .map_or(String::new(), |r| format!(":{r}"))
        );
        if let Some(rec) = self.store.index().remote(&origin)?
            && rec.etag.as_deref() == Some(digest.as_str())
            && let Some(hit) = self.cached(&rec.image_id)?
        {
            return Ok(hit);
        }
        let config: Value = serde_json::from_slice(&read_doc(&layout, &manifest.config)?)
            .map_err(|e| bad(&path, format!("malformed image config: {e}")))?;
        let mut layers = Vec::new();
        let mut new = super::pull::NewLayers::default();
        // Held to the largest image allowed, as downloads are.
        let limit = self.options.archive_policy.max_bytes;
        let mut used = 0u64;
        let shown = path.display().to_string();
        for l in &manifest.layers {
            let d = l.digest.as_str();
            let source = blob_path(&layout, d)?;
            let left = limit - used.min(limit);
            let (cached, file) = self.cache_layer(
                d,
                &mut |out| {
                    let f =
                        skiff_io::open_regular(&source).map_err(|e| bad(&source, e.to_string()))?;
                    // No more than the limit leaves: a blob may be larger
                    // than it was, or endless.
                    let copied = std::io::copy(&mut f.take(left.saturating_add(1)), out)
                        .map_err(|e| bad(&source, e.to_string()))?;
                    crate::http::within_limit(&shown, used.saturating_add(copied), limit)
                },
                &mut new,
            )?;
            let size = file.metadata().map(|m| m.len()).unwrap_or(0);
            used = used.saturating_add(size);
            crate::http::within_limit(&shown, used, limit)?;
            layers.push(Layer {
                path: cached,
                file,
                media_type: l.media_type.clone(),
            });
        }
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_else(|| "image".into());
        let name: String = format!("{scheme}/{stem}")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '-') {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let mut fetched = self.import_layers(
            &name,
            reference.as_deref(),
            &config,
            &layers,
            &origin,
            &digest,
        )?;
        fetched.new_blobs = new.keep();
        Ok(fetched)
    }
}
