//! The peer protocol: what `skiff serve` answers and what a fetch asks.
//!
//! Everything under `/skiff/v1/`, plain HTTP GETs:
//!
//! ```text
//! images?name=N&LABEL=VALUE…        Offers: the stored ACIs called N with those labels
//! aci/<hex>                         an ACI exactly as imported (its image ID's hex); ranges
//! aci/<hex>/pieces                  its PieceList
//! aci/<hex>/signatures/<fingerprint>  the signature that verified it
//! layers/<hex>                      an OCI/Docker layer by its sha256 digest; ranges
//! layers/<hex>/pieces               its PieceList
//! swarm/<key>                       a blob being fetched (or fetched), by the
//!                                   SHA-256 of its piece list; ranges of pieces it has
//! swarm/<key>/have                  which pieces: one byte each, b'1' has it,
//!                                   b'2' fetching it, b'0' not
//! ```
//!
//! Nothing a peer says is trusted: an offer only says where to look, a
//! piece list only lets a fetch check pieces as they arrive (and name the
//! peer that sent a bad one); what decides is the image's signature, checked
//! with the keys trusted for its name as for any download, and its hash
//! (the image ID or layer digest), checked at import.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The path every request starts with.
pub const PREFIX: &str = "/skiff/v1";
/// The default port of `skiff serve`.
pub const DEFAULT_PORT: u16 = 7440;
/// Smallest piece a server cuts or a fetch accepts.
pub const MIN_PIECE: u64 = 64 << 10;
/// Largest piece a server cuts or a fetch accepts (a fetch holds a piece
/// in memory while it checks it).
pub const MAX_PIECE: u64 = 16 << 20;
/// Largest offers or piece list a fetch reads.
pub const MAX_DOCUMENT: u64 = 4 << 20;

/// What kind of blob: an ACI (named by its image ID) or a layer (by its
/// sha256 digest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Aci,
    Layer,
}

impl Kind {
    /// The path segment after [`PREFIX`].
    pub fn segment(self) -> &'static str {
        match self {
            Kind::Aci => "aci",
            Kind::Layer => "layers",
        }
    }

    /// The hex digits that name a blob of this kind (lower case, 128 for
    /// SHA-512, 64 for SHA-256), or None.
    pub fn check_hex(self, hex: &str) -> Option<&str> {
        let len = match self {
            Kind::Aci => 128,
            Kind::Layer => skiff_spec::id::SHA256_HEX_LEN,
        };
        skiff_spec::id::is_lower_hex(hex, len).then_some(hex)
    }
}

/// A blob on a peer: its kind and hex name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlobRef {
    pub kind: Kind,
    pub hex: String,
}

impl BlobRef {
    /// The blob's path on a server.
    pub fn path(&self) -> String {
        format!("{PREFIX}/{}/{}", self.kind.segment(), self.hex)
    }

    /// Its piece list's path.
    pub fn pieces_path(&self) -> String {
        format!("{}/pieces", self.path())
    }
}

/// A piece a swarm member has.
pub const HAS: u8 = b'1';
/// A piece a swarm member is fetching.
pub const FETCHING: u8 = b'2';
/// A piece a swarm member does not have.
pub const MISSING: u8 = b'0';

/// The key of a blob in a swarm: the SHA-256 of its piece list, so the
/// list names the blob's content before anyone has it.
pub fn swarm_key(list: &PieceList) -> String {
    sha256_hex(&serde_json::to_vec(list).unwrap_or_default())
}

/// A swarm blob's path.
pub fn swarm_path(key: &str) -> String {
    format!("{PREFIX}/swarm/{key}")
}

/// Its availability's path.
pub fn have_path(key: &str) -> String {
    format!("{}/have", swarm_path(key))
}

/// The path of an image's signature.
pub fn signature_path(id_hex: &str, fingerprint: &str) -> String {
    format!("{PREFIX}/aci/{id_hex}/signatures/{fingerprint}")
}

/// A key fingerprint as a record file names it (ASCII letters and digits).
pub fn check_fingerprint(fingerprint: &str) -> Option<&str> {
    (!fingerprint.is_empty()
        && fingerprint.len() <= 128
        && fingerprint.bytes().all(|b| b.is_ascii_alphanumeric()))
    .then_some(fingerprint)
}

/// The query for images called `name` with `labels`.
pub fn images_query(name: &str, labels: &BTreeMap<String, String>) -> String {
    let mut query = format!("{PREFIX}/images?name={}", encode(name));
    for (k, v) in labels {
        query.push_str(&format!("&{}={}", encode(k), encode(v)));
    }
    query
}

/// Percent-encodes everything but unreserved characters.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One stored signature of an offered image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferedSignature {
    pub fingerprint: String,
    /// The SHA-256 of the signature file: a fetch that has the origin's
    /// signature finds the peers holding exactly the image it signed.
    pub sha256: String,
}

/// An image a peer has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    /// `sha512-…`
    pub id: String,
    /// The blob's size in bytes (as imported, maybe compressed).
    pub size: u64,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub signatures: Vec<OfferedSignature>,
}

/// The answer to an images query.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offers {
    pub images: Vec<Offer>,
}

/// A blob cut into pieces, each with its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PieceList {
    pub size: u64,
    pub piece_size: u64,
    pub sha256: Vec<String>,
}

/// What is wrong with a piece list.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PieceListError {
    #[error("its piece size {0} is not between {MIN_PIECE} and {MAX_PIECE} bytes")]
    PieceSize(u64),
    #[error("it lists {listed} pieces, but {size} bytes in pieces of {piece_size} make {expected}")]
    Count {
        listed: usize,
        expected: u64,
        size: u64,
        piece_size: u64,
    },
    #[error("it is for {listed} bytes, not {expected}")]
    Size { listed: u64, expected: u64 },
    #[error("piece {0}'s digest is not 64 lower-case hex digits")]
    Digest(usize),
}

/// The piece size a server cuts a blob of `size` bytes into: about 256
/// pieces, a power of two between [`MIN_PIECE`] and [`MAX_PIECE`].
pub fn piece_size_for(size: u64) -> u64 {
    (size / 256).next_power_of_two().clamp(MIN_PIECE, MAX_PIECE)
}

impl PieceList {
    /// The piece list of `bytes` read from `reader` (a server's own blob).
    pub fn of(mut reader: impl std::io::Read, size: u64) -> std::io::Result<Self> {
        let piece_size = piece_size_for(size);
        let mut sha256 = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0u64;
        loop {
            let mut hasher = Sha256::new();
            let mut in_piece = 0u64;
            while in_piece < piece_size {
                let want = (piece_size - in_piece).min(buf.len() as u64) as usize;
                let n = reader.read(&mut buf[..want])?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                in_piece += n as u64;
            }
            if in_piece == 0 {
                break;
            }
            total += in_piece;
            sha256.push(hex::encode(hasher.finalize()));
            if in_piece < piece_size {
                break;
            }
        }
        if total != size {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("read {total} bytes of {size}"),
            ));
        }
        Ok(PieceList {
            size,
            piece_size,
            sha256,
        })
    }

    /// Checks a piece list a peer sent for a blob of `size` bytes.
    pub fn check(&self, size: u64) -> Result<(), PieceListError> {
        if self.size != size {
            return Err(PieceListError::Size {
                listed: self.size,
                expected: size,
            });
        }
        if !(MIN_PIECE..=MAX_PIECE).contains(&self.piece_size) {
            return Err(PieceListError::PieceSize(self.piece_size));
        }
        let expected = size.div_ceil(self.piece_size);
        if self.sha256.len() as u64 != expected {
            return Err(PieceListError::Count {
                listed: self.sha256.len(),
                expected,
                size,
                piece_size: self.piece_size,
            });
        }
        if let Some(bad) = self
            .sha256
            .iter()
            .position(|d| Kind::Layer.check_hex(d).is_none())
        {
            return Err(PieceListError::Digest(bad));
        }
        Ok(())
    }

    /// The byte range of piece `index` (`start..end`).
    pub fn range(&self, index: usize) -> std::ops::Range<u64> {
        let start = index as u64 * self.piece_size;
        start..(start + self.piece_size).min(self.size)
    }

    /// Whether pieces are cut as a server cuts them ([`piece_size_for`]):
    /// only such lists are shared in a swarm, whose members derive the
    /// piece size from the size.
    pub fn standard(&self) -> bool {
        self.piece_size == piece_size_for(self.size)
    }

    /// The pieces a byte range touches.
    pub fn pieces_of(piece_size: u64, range: &std::ops::Range<u64>) -> std::ops::Range<usize> {
        let piece_size = piece_size.max(1);
        let first = range.start / piece_size;
        let last = range.end.saturating_sub(1) / piece_size;
        first as usize..last as usize + 1
    }

    /// Whether `bytes` are piece `index`.
    pub fn matches(&self, index: usize, bytes: &[u8]) -> bool {
        self.sha256
            .get(index)
            .is_some_and(|want| *want == hex::encode(Sha256::digest(bytes)))
    }
}

/// The SHA-256 of `bytes`, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cover_the_blob_and_check() {
        let blob: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let list = PieceList::of(&blob[..], blob.len() as u64).unwrap();
        assert_eq!(list.piece_size, MIN_PIECE);
        assert_eq!(list.sha256.len(), 5);
        list.check(blob.len() as u64).unwrap();
        for i in 0..list.sha256.len() {
            let r = list.range(i);
            assert!(list.matches(i, &blob[r.start as usize..r.end as usize]));
        }
        assert_eq!(list.range(4).end, blob.len() as u64);
        let mut bad = blob[..MIN_PIECE as usize].to_vec();
        bad[7] ^= 1;
        assert!(!list.matches(0, &bad));
        assert!(!list.matches(9, &blob[..1]));
    }

    #[test]
    fn hostile_piece_lists_are_refused() {
        let good = PieceList {
            size: MIN_PIECE * 2,
            piece_size: MIN_PIECE,
            sha256: vec!["0".repeat(64), "a".repeat(64)],
        };
        good.check(MIN_PIECE * 2).unwrap();
        assert!(matches!(
            good.check(MIN_PIECE * 3),
            Err(PieceListError::Size { .. })
        ));
        let tiny = PieceList {
            piece_size: 1,
            ..good.clone()
        };
        assert_eq!(tiny.check(MIN_PIECE * 2), Err(PieceListError::PieceSize(1)));
        let huge = PieceList {
            piece_size: u64::MAX,
            ..good.clone()
        };
        assert!(huge.check(MIN_PIECE * 2).is_err());
        let short = PieceList {
            sha256: vec!["0".repeat(64)],
            ..good.clone()
        };
        assert!(matches!(
            short.check(MIN_PIECE * 2),
            Err(PieceListError::Count { .. })
        ));
        let upper = PieceList {
            sha256: vec!["0".repeat(64), "A".repeat(64)],
            ..good
        };
        assert_eq!(upper.check(MIN_PIECE * 2), Err(PieceListError::Digest(1)));
    }

    #[test]
    fn piece_sizes_stay_in_bounds() {
        assert_eq!(piece_size_for(0), MIN_PIECE);
        assert_eq!(piece_size_for(256 << 20), 1 << 20);
        assert_eq!(piece_size_for(u64::MAX), MAX_PIECE);
    }

    #[test]
    fn names_are_checked_and_queries_encoded() {
        assert!(Kind::Aci.check_hex(&"a".repeat(128)).is_some());
        assert!(Kind::Aci.check_hex(&"a".repeat(64)).is_none());
        assert!(Kind::Layer.check_hex("../../etc/passwd").is_none());
        assert!(check_fingerprint("../x").is_none());
        assert!(check_fingerprint("ABCDEF0123").is_some());
        let mut labels = BTreeMap::new();
        labels.insert("version".to_string(), "1.0 &x=y".to_string());
        assert_eq!(
            images_query("example.com/app", &labels),
            "/skiff/v1/images?name=example.com%2Fapp&version=1.0%20%26x%3Dy"
        );
    }
}
