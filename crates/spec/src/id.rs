//! Image IDs as skiff stores them: `sha512-` and the 128 lower-case hex
//! digits of the SHA-512 of the uncompressed ACI tar. (The schema's own
//! [`crate::labels::Hash`] is looser, as `actool` is.)

use std::fmt;

use serde::{Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageId(String);

const PREFIX: &str = "sha512-";
const HEX_LEN: usize = 128;
/// Hex digits of a SHA-256 digest (layers, swarm keys, piece digests).
pub const SHA256_HEX_LEN: usize = 64;

/// Whether `s` is exactly `len` lower-case hex digits: the only spelling
/// of a digest skiff accepts, so one digest has one file name.
pub fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl ImageId {
    /// Parses a full image ID.
    pub fn parse(s: &str) -> Result<Self, String> {
        let hex = s
            .strip_prefix(PREFIX)
            .ok_or_else(|| format!("'{s}' is not an image ID: must start with '{PREFIX}'"))?;
        if !is_lower_hex(hex, HEX_LEN) {
            return Err(format!(
                "'{s}' is not an image ID: need {HEX_LEN} lower-case hex digits after '{PREFIX}'"
            ));
        }
        Ok(ImageId(s.to_string()))
    }

    pub fn from_digest(digest: &[u8]) -> Self {
        ImageId(format!("{PREFIX}{}", hex::encode(digest)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The hex digits alone (for content-addressed paths).
    pub fn hex(&self) -> &str {
        &self.0[PREFIX.len()..]
    }

    /// `sha512-` and the first 32 hex digits, for display (as rkt shows IDs).
    pub fn short(&self) -> &str {
        &self.0[..PREFIX.len() + 32]
    }
}

impl fmt::Display for ImageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for ImageId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_full_lowercase_ids() {
        let id = ImageId::from_digest(&[0xab; 64]);
        assert_eq!(ImageId::parse(id.as_str()), Ok(id.clone()));
        assert_eq!(id.short().len(), 39);
        assert_eq!(id.hex().len(), 128);
        for bad in [
            "",
            "sha512-",
            "sha512-abc",
            &id.as_str().to_uppercase(),
            &id.as_str().replace("sha512", "sha256"),
        ] {
            assert!(ImageId::parse(bad).is_err(), "{bad}");
        }
    }
}
