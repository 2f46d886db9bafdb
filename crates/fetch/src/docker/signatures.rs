//! The signatures of a `docker://` image, found before any layer is
//! downloaded: cosign's, attached in the image's repository under the tag
//! `sha256-<hex>.sig` (an OCI manifest whose layers are the signed
//! payloads, each with its signature in the
//! `dev.cosignproject.cosign/signature` annotation).

use std::path::Path;

use serde_json::Value;
use skiff_trust::cosign::{self, MAX_PAYLOAD};

use super::registry::Registry;
use crate::FetchError;

/// The media type of a cosign payload layer.
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The annotation with a payload's signature (base64).
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// Most signatures read for one image (each is a download).
pub const MAX_SIGNATURES: usize = 32;

/// A payload and its decoded signature.
pub struct Found {
    pub payload: Vec<u8>,
    pub signature: Vec<u8>,
}

/// The tag cosign attaches signatures of manifest `digest` to.
pub fn signature_tag(digest: &str) -> String {
    format!("{}.sig", digest.replacen(':', "-", 1))
}

/// The layers of a signature manifest that carry a payload (named by a
/// sha256 digest) of at most
/// [`MAX_PAYLOAD`] bytes and a signature: `(payload digest, signature)`,
/// newest (last) first, at most [`MAX_SIGNATURES`]; others are skipped.
pub fn signed_layers(manifest: &[u8]) -> Result<Vec<(String, Vec<u8>)>, String> {
    let v: Value = serde_json::from_slice(manifest)
        .map_err(|e| format!("malformed signature manifest: {e}"))?;
    let layers = v["layers"]
        .as_array()
        .ok_or("a signature manifest without layers")?;
    Ok(layers
        .iter()
        .rev()
        .filter(|l| l["mediaType"].as_str() == Some(SIMPLE_SIGNING))
        .filter(|l| l["size"].as_u64().is_some_and(|n| n <= MAX_PAYLOAD))
        .filter_map(|l| {
            // A digest is put into a URL: only a sha256 (a signature layer
            // naming anything else is skipped, not fatal).
            let digest = l["digest"]
                .as_str()
                .filter(|d| super::manifest::digest_hex(d, "").is_ok())?;
            let sig = l["annotations"][SIGNATURE_ANNOTATION].as_str()?;
            Some((digest.to_string(), cosign::decode_signature(sig)?))
        })
        .take(MAX_SIGNATURES)
        .collect())
}

/// The cosign signatures attached to each of `digests` (in order), and
/// where they were looked for.
pub fn cosign_signatures(
    reg: &mut Registry<'_>,
    digests: &[String],
    tmp: &Path,
) -> Result<(Vec<Found>, Vec<String>), FetchError> {
    let mut found = Vec::new();
    let mut looked_at = Vec::new();
    for digest in digests {
        let tag = signature_tag(digest);
        looked_at.push(format!("tag {tag}"));
        let Some((body, _, _)) = reg.manifest_if_any(&tag)? else {
            continue;
        };
        let layers = signed_layers(&body).map_err(|reason| FetchError::Http {
            url: tag.clone(),
            reason,
        })?;
        for (payload_digest, signature) in layers {
            if found.len() >= MAX_SIGNATURES {
                break;
            }
            let payload = reg.small_blob(&payload_digest, tmp, "signature payload", MAX_PAYLOAD)?;
            found.push(Found { payload, signature });
        }
    }
    Ok((found, looked_at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_layers_and_tags() {
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        assert_eq!(
            signature_tag(&format!("sha256:{}", "ab".repeat(32))),
            format!("sha256-{}.sig", "ab".repeat(32))
        );
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "layers": [
                {"mediaType": SIMPLE_SIGNING, "digest": d('1'), "size": 10,
                 "annotations": {SIGNATURE_ANNOTATION: "AAEC"}},
                {"mediaType": "application/octet-stream", "digest": d('2'), "size": 10,
                 "annotations": {SIGNATURE_ANNOTATION: "AAEC"}},
                {"mediaType": SIMPLE_SIGNING, "digest": d('3'), "size": 10},
                {"mediaType": SIMPLE_SIGNING, "digest": d('4'), "size": 10,
                 "annotations": {SIGNATURE_ANNOTATION: "not base64!"}},
                {"mediaType": SIMPLE_SIGNING, "digest": d('5'), "size": MAX_PAYLOAD + 1,
                 "annotations": {SIGNATURE_ANNOTATION: "AAEC"}},
                {"mediaType": SIMPLE_SIGNING, "digest": d('6'), "size": 10,
                 "annotations": {SIGNATURE_ANNOTATION: "AAED"}},
                // Put into a URL: only a sha256 digest.
                {"mediaType": SIMPLE_SIGNING, "digest": "../../other/manifests/latest?x=", "size": 10,
                 "annotations": {SIGNATURE_ANNOTATION: "AAEC"}},
            ]
        });
        let layers = signed_layers(manifest.to_string().as_bytes()).unwrap_or_default();
        assert_eq!(
            layers,
            vec![(d('6'), vec![0, 1, 3]), (d('1'), vec![0, 1, 2])]
        );
        assert!(signed_layers(b"[]").is_err());
    }
}
