//! `skiff image push`: an image's manifest, config and layers to a
//! registry — as fetched (the manifest and blobs a `docker://` fetch kept,
//! so the digest, and any signature over it, stays the same), or from an
//! OCI layout that `image export --format=oci` writes for any stored image.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::reference::DockerRef;
use super::registry::{self, Registry};
use super::upload::BlobPushed;
use crate::{FetchError, Http};

/// A blob to push.
#[derive(Debug, Clone)]
pub struct Blob {
    pub digest: String,
    pub size: u64,
    pub path: PathBuf,
}

/// An image ready to push: its manifest and the blobs it names.
#[derive(Debug, Clone)]
pub struct PushImage {
    pub manifest: Vec<u8>,
    pub media_type: String,
    pub blobs: Vec<Blob>,
}

/// What a push did.
#[derive(Debug, Clone, Default)]
pub struct Pushed {
    /// The manifest's digest at the registry.
    pub digest: String,
    pub uploaded: usize,
    pub existing: usize,
    pub mounted: usize,
    /// Bytes uploaded.
    pub bytes: u64,
}

fn bad(what: &str, reason: impl Into<String>) -> FetchError {
    FetchError::Http {
        url: what.to_string(),
        reason: reason.into(),
    }
}

fn hex_of(digest: &str) -> Option<&str> {
    digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The manifest `bytes` with its blobs in `dir` (files named by hex
/// digest); `None` if one is missing there.
pub fn with_blobs_in(
    bytes: Vec<u8>,
    dir: &Path,
    what: &str,
) -> Result<Option<PushImage>, FetchError> {
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|e| bad(what, format!("malformed manifest: {e}")))?;
    let media_type = v["mediaType"]
        .as_str()
        .unwrap_or(registry::OCI_MANIFEST)
        .to_string();
    if media_type != registry::OCI_MANIFEST && media_type != registry::DOCKER_MANIFEST {
        return Err(bad(
            what,
            format!("cannot push a manifest of type {media_type:?}"),
        ));
    }
    let descriptors =
        std::iter::once(&v["config"]).chain(v["layers"].as_array().into_iter().flatten());
    let mut blobs = Vec::new();
    for d in descriptors {
        let digest = d["digest"]
            .as_str()
            .ok_or_else(|| bad(what, "a descriptor without a digest"))?;
        let hex =
            hex_of(digest).ok_or_else(|| bad(what, format!("unsupported digest {digest:?}")))?;
        let path = dir.join(hex);
        let Ok(meta) = std::fs::metadata(&path) else {
            return Ok(None);
        };
        blobs.push(Blob {
            digest: digest.to_string(),
            size: meta.len(),
            path,
        });
    }
    Ok(Some(PushImage {
        manifest: bytes,
        media_type,
        blobs,
    }))
}

/// The image an OCI layout's index names first.
pub fn from_layout(layout: &Path) -> Result<PushImage, FetchError> {
    let what = layout.display().to_string();
    let read = |p: &Path| {
        std::fs::read(p).map_err(|e| FetchError::from(skiff_io::io_err_at("read", p)(e)))
    };
    let index: Value = serde_json::from_slice(&read(&layout.join("index.json"))?)
        .map_err(|e| bad(&what, format!("malformed index.json: {e}")))?;
    let digest = index["manifests"][0]["digest"]
        .as_str()
        .ok_or_else(|| bad(&what, "index.json names no manifest"))?;
    let hex = hex_of(digest).ok_or_else(|| bad(&what, format!("unsupported digest {digest:?}")))?;
    let blobs = layout.join("blobs/sha256");
    let manifest = read(&blobs.join(hex))?;
    with_blobs_in(manifest, &blobs, &what)?
        .ok_or_else(|| bad(&what, "the layout lacks a blob its manifest names"))
}

/// Pushes `image` to `dest` (its tag); `mount_from` is a repository of the
/// same registry that may have the blobs.
pub fn push(
    http: &Http,
    dest: &DockerRef,
    creds: Option<(String, String)>,
    image: &PushImage,
    mount_from: Option<&str>,
) -> Result<Pushed, FetchError> {
    let tag = dest
        .tag
        .as_deref()
        .ok_or_else(|| bad(&dest.display(), "push to a tag (REPO:TAG), not a digest"))?;
    let mut reg = Registry::new(http, dest, creds).writer();
    let mut pushed = Pushed::default();
    for blob in &image.blobs {
        let short: String = blob
            .digest
            .trim_start_matches("sha256:")
            .chars()
            .take(12)
            .collect();
        match reg.push_blob(&blob.digest, &blob.path, blob.size, mount_from)? {
            BlobPushed::Exists => {
                tracing::info!("blob {short}: already in the registry");
                pushed.existing += 1;
            }
            BlobPushed::Mounted => {
                tracing::info!("blob {short}: mounted from {}", mount_from.unwrap_or(""));
                pushed.mounted += 1;
            }
            BlobPushed::Uploaded { requests } => {
                tracing::info!(
                    "blob {short}: uploaded {} bytes in {requests} requests",
                    blob.size
                );
                pushed.uploaded += 1;
                pushed.bytes += blob.size;
            }
        }
    }
    pushed.digest = reg.put_manifest(tag, &image.media_type, &image.manifest)?;
    Ok(pushed)
}
