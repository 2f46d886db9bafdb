//! Where the store keeps things under the data directory (default
//! `/var/lib/skiff`):
//!
//! ```text
//! cas/blobs/sha512/<hex>   image blobs exactly as imported (an ACI, any
//!                          compression), named by the image ID: the SHA-512
//!                          of the uncompressed tar
//! cas/db.sqlite            the index (WAL mode); a cache: rebuildable from
//!                          the blobs and the records (`skiff image fsck --repair`)
//! cas/records/             remotes and signatures, written before their rows
//!                          (see [`crate::records`])
//! cas/tmp/                 staging files of imports in progress, each
//!                          flock-ed by its importer
//! trees/<hex>/rootfs       rendered trees (image + dependencies), read-only
//! trees/<hex>/ready        written last: a tree without it is unfinished
//! locks/store.lock         shared by importers, exclusive for gc
//! locks/tree-<hex>.lock    held while a tree is rendered
//! locks/pin-<hex>.lock     held shared by each process using the image
//! pods/<state>/<uuid>/     pod directories (owned by the pod crate); gc
//!                          reads their `pod` manifests to find images in use
//! ```

use std::path::{Path, PathBuf};

use skiff_spec::ImageId;

#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: &Path) -> Self {
        Layout {
            root: root.to_path_buf(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn cas(&self) -> PathBuf {
        self.root.join("cas")
    }

    pub fn blobs(&self) -> PathBuf {
        self.root.join("cas/blobs/sha512")
    }

    pub fn blob(&self, id: &ImageId) -> PathBuf {
        self.blobs().join(id.hex())
    }

    /// OCI/Docker layers as downloaded, by their sha256 digest (a cache:
    /// a shared layer is downloaded once).
    pub fn layers(&self) -> PathBuf {
        self.root.join("cas/blobs/sha256")
    }

    /// Layer downloads and unpacked OCI archives in progress (gc removes
    /// what is older than a day).
    pub fn layers_tmp(&self) -> PathBuf {
        self.root.join("cas/tmp-layers")
    }

    /// Downloads shared with a swarm while they happen (see
    /// [`crate::serving::Partial`]).
    pub fn partial(&self) -> PathBuf {
        self.root.join("cas/partial")
    }

    pub fn tmp(&self) -> PathBuf {
        self.root.join("cas/tmp")
    }

    pub fn db(&self) -> PathBuf {
        self.root.join("cas/db.sqlite")
    }

    pub fn trees(&self) -> PathBuf {
        self.root.join("trees")
    }

    pub fn tree(&self, id: &ImageId) -> PathBuf {
        self.trees().join(id.hex())
    }

    pub fn locks(&self) -> PathBuf {
        self.root.join("locks")
    }

    pub fn store_lock(&self) -> PathBuf {
        self.locks().join("store.lock")
    }

    /// Held shared by each process using the image (see [`crate::pins`]).
    pub fn pin(&self, id: &ImageId) -> PathBuf {
        self.locks().join(format!("pin-{}.lock", id.hex()))
    }

    pub fn tree_lock(&self, id: &ImageId) -> PathBuf {
        self.locks().join(format!("tree-{}.lock", id.hex()))
    }

    pub fn pods(&self) -> PathBuf {
        self.root.join("pods")
    }
}
