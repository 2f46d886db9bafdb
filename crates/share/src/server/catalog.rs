//! What the server has: the shared directories read as the protocol names
//! them. A request's path never reaches the filesystem: only a validated
//! hex name or fingerprint does, looked up in one of the three directories.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use skiff_store::serving::ServedDirs;

use crate::protocol::{BlobRef, Kind, Offer, OfferedSignature, Offers, PieceList, sha256_hex};

/// Piece lists kept in memory (each costs a full read of its blob).
const PIECE_LISTS_KEPT: usize = 64;
/// Largest piece map read (a piece list has at most this many pieces).
const MAX_HAVE: u64 = 1 << 20;
/// Largest signature file served.
const MAX_SIGNATURE: u64 = 1 << 20;

/// An image's name and labels, read from its manifest once.
#[derive(Clone)]
struct Named {
    name: String,
    labels: BTreeMap<String, String>,
}

pub struct Catalog {
    dirs: ServedDirs,
    /// Image hex → its name (None: not readable as an ACI).
    names: Mutex<HashMap<String, Option<Named>>>,
    pieces: Mutex<VecDeque<(BlobRef, Arc<PieceList>)>>,
}

impl Catalog {
    pub fn new(dirs: ServedDirs) -> Self {
        Catalog {
            dirs,
            names: Mutex::default(),
            pieces: Mutex::default(),
        }
    }

    fn dir(&self, kind: Kind) -> &Path {
        match kind {
            Kind::Aci => &self.dirs.aci,
            Kind::Layer => &self.dirs.layers,
        }
    }

    /// Opens a blob (a regular file, never through a symlink); its size.
    pub fn open(&self, blob: &BlobRef) -> io::Result<(File, u64)> {
        let hex = blob
            .kind
            .check_hex(&blob.hex)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        let file = skiff_io::open_regular(&self.dir(blob.kind).join(hex))?;
        let size = file.metadata()?.len();
        Ok((file, size))
    }

    /// The piece list of a blob (computed once, then kept).
    pub fn pieces(&self, blob: &BlobRef) -> io::Result<Arc<PieceList>> {
        if let Some(hit) = self
            .pieces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|(b, _)| b == blob)
        {
            return Ok(hit.1.clone());
        }
        let (file, size) = self.open(blob)?;
        let list = Arc::new(PieceList::of(io::BufReader::new(file), size)?);
        let mut kept = self.pieces.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() >= PIECE_LISTS_KEPT {
            kept.pop_front();
        }
        kept.push_back((blob.clone(), list.clone()));
        Ok(list)
    }

    /// Which pieces of swarm blob `key` this host has.
    pub fn have(&self, key: &str) -> io::Result<Vec<u8>> {
        self.open_partial_file(key)?;
        self.read_have(key)
    }

    /// A partial download's file and size: only while another link (its
    /// staging file or its blob) keeps it alive.
    pub fn open_partial_file(&self, key: &str) -> io::Result<(File, u64)> {
        use std::os::unix::fs::MetadataExt;
        if Kind::Layer.check_hex(key).is_none() {
            return Err(io::ErrorKind::NotFound.into());
        }
        let file = skiff_io::open_regular(&self.dirs.partial.join(key))?;
        let meta = file.metadata()?;
        if meta.nlink() < 2 {
            return Err(io::ErrorKind::NotFound.into());
        }
        Ok((file, meta.len()))
    }

    /// Whether every piece of `range` of swarm blob `key` (of `size`
    /// bytes) is here.
    pub fn swarm_has(
        &self,
        key: &str,
        size: u64,
        range: &std::ops::Range<u64>,
    ) -> io::Result<bool> {
        let have = self.read_have(key)?;
        let piece_size = crate::protocol::piece_size_for(size);
        Ok(range.end <= size
            && have.len() as u64 == size.div_ceil(piece_size)
            && PieceList::pieces_of(piece_size, range)
                .all(|i| have.get(i) == Some(&crate::protocol::HAS)))
    }

    fn read_have(&self, key: &str) -> io::Result<Vec<u8>> {
        let mut have = Vec::new();
        skiff_io::open_regular(&self.dirs.partial.join(format!("{key}.have")))?
            .take(MAX_HAVE)
            .read_to_end(&mut have)?;
        Ok(have)
    }

    /// A signature record of image `hex` by key `fingerprint`.
    pub fn signature(&self, hex: &str, fingerprint: &str) -> io::Result<Vec<u8>> {
        let path = self.dirs.signatures.join(hex).join(fingerprint);
        let mut bytes = Vec::new();
        skiff_io::open_regular(&path)?
            .take(MAX_SIGNATURE)
            .read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    /// The stored ACIs called `name` whose labels include `labels`.
    pub fn offers(&self, name: &str, labels: &BTreeMap<String, String>) -> io::Result<Offers> {
        let mut images = Vec::new();
        for hex in names_in(&self.dirs.aci, Kind::Aci)? {
            let Some(named) = self.named(&hex) else {
                continue;
            };
            if named.name != name || labels.iter().any(|(k, v)| named.labels.get(k) != Some(v)) {
                continue;
            }
            let blob = BlobRef {
                kind: Kind::Aci,
                hex: hex.clone(),
            };
            let Ok((_, size)) = self.open(&blob) else {
                continue;
            };
            let signatures = self.signatures_of(&hex);
            images.push(Offer {
                id: format!("sha512-{hex}"),
                size,
                name: named.name,
                labels: named.labels,
                signatures,
            });
        }
        Ok(Offers { images })
    }

    fn signatures_of(&self, hex: &str) -> Vec<OfferedSignature> {
        let dir = self.dirs.signatures.join(hex);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut found: Vec<OfferedSignature> = entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|f| crate::protocol::check_fingerprint(f).is_some())
            .filter_map(|fingerprint| {
                let bytes = self.signature(hex, &fingerprint).ok()?;
                Some(OfferedSignature {
                    sha256: sha256_hex(&bytes),
                    fingerprint,
                })
            })
            .collect();
        found.sort_by(|a, b| a.fingerprint.cmp(&b.fingerprint));
        found
    }

    /// The name and labels of image `hex`, from its manifest.
    fn named(&self, hex: &str) -> Option<Named> {
        if let Some(known) = self
            .names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(hex)
        {
            return known.clone();
        }
        let read = self.read_named(&self.dirs.aci.join(hex));
        if let Err(e) = &read {
            tracing::debug!(image = hex, "not offered: {e}");
        }
        let named = read.ok();
        self.names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(hex.to_string(), named.clone());
        named
    }

    fn read_named(&self, path: &Path) -> Result<Named, String> {
        let file = skiff_io::open_regular(path).map_err(|e| e.to_string())?;
        let bytes = skiff_spec::aci::read_manifest_bytes(io::BufReader::new(file))
            .map_err(|e| e.to_string())?;
        let manifest = skiff_spec::parse_image_manifest(&bytes).map_err(|e| e.to_string())?;
        Ok(Named {
            name: manifest.name.to_string(),
            labels: manifest
                .labels
                .iter()
                .map(|l| (l.name.to_string(), l.value.clone()))
                .collect(),
        })
    }
}

/// The valid blob names in `dir`.
fn names_in(dir: &PathBuf, kind: Kind) -> io::Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| kind.check_hex(n).is_some())
        .collect();
    names.sort();
    Ok(names)
}
