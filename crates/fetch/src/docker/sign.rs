//! `skiff image sign --format=cosign`: signs the manifest a registry's tag
//! names and attaches the signature as cosign does — the simple-signing
//! payload as a layer of the OCI manifest tagged `sha256-<hex>.sig`, the
//! signature in its annotation, after the signatures already there.

use serde_json::{Value, json};
use skiff_trust::cosign;
use skiff_trust::cosign_key::CosignSigner;

use super::reference::DockerRef;
use super::registry::{self, Registry, base64 as b64};
use super::signatures::{self, SIGNATURE_ANNOTATION, SIMPLE_SIGNING};
use crate::{FetchError, Http};

/// A signature attached.
#[derive(Debug, Clone)]
pub struct Attached {
    /// The manifest signed.
    pub digest: String,
    /// Where the signature is: `REPO:sha256-<hex>.sig`.
    pub tag: String,
    /// The key's fingerprint.
    pub fingerprint: String,
    /// How many signatures the tag has now.
    pub signatures: usize,
}

/// Signs what `dest` names (its tag or digest) with `signer` and attaches
/// the signature in its repository.
pub fn attach_cosign(
    http: &Http,
    dest: &DockerRef,
    creds: Option<(String, String)>,
    signer: &CosignSigner,
) -> Result<Attached, FetchError> {
    let shown = dest.display();
    let repository = cosign::repository(&shown).ok_or_else(|| FetchError::BadReference {
        input: shown.clone(),
        reason: "not a docker repository".into(),
    })?;
    let mut reg = Registry::new(http, dest, creds).writer();
    let (_, _, digest) = reg.manifest(dest.reference())?;
    if dest.digest.is_none() {
        tracing::warn!(
            "signing {digest}, the manifest the registry answers for {shown} now: to sign exactly \
             the image you pushed or checked, sign {}/{}@DIGEST (what `skiff image push` printed)",
            dest.registry,
            dest.repo
        );
    }
    let payload = cosign::payload(&repository, &digest);
    let signature = b64(&signer.sign(&payload));
    let tag = signatures::signature_tag(&digest);
    let mut layers: Vec<Value> = match reg.manifest_if_any(&tag)? {
        Some((body, _, _)) => serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["layers"].as_array().cloned())
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let payload_digest = reg.push_bytes(&payload)?;
    let ours = json!({
        "mediaType": SIMPLE_SIGNING,
        "size": payload.len(),
        "digest": payload_digest,
        "annotations": {SIGNATURE_ANNOTATION: signature},
    });
    // The same payload signed again replaces the old signature (ECDSA
    // signatures differ each time); others are kept.
    let fingerprint = signer.public().fingerprint();
    layers.retain(|l| {
        let same_payload = l["digest"].as_str() == Some(payload_digest.as_str());
        let by_this_key = l["annotations"][SIGNATURE_ANNOTATION]
            .as_str()
            .and_then(cosign::decode_signature)
            .is_some_and(|s| signer.public().verifies(&payload, &s));
        !(same_payload && by_this_key)
    });
    layers.push(ours);
    let diff_ids: Vec<&str> = layers.iter().filter_map(|l| l["digest"].as_str()).collect();
    let config = json!({
        "architecture": "",
        "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"}],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "config": {},
    })
    .to_string()
    .into_bytes();
    let config_digest = reg.push_bytes(&config)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": registry::OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "size": config.len(),
            "digest": config_digest,
        },
        "layers": layers,
    })
    .to_string()
    .into_bytes();
    reg.put_manifest(&tag, registry::OCI_MANIFEST, &manifest)?;
    Ok(Attached {
        digest,
        tag: format!("{}/{}:{tag}", dest.registry, dest.repo),
        fingerprint,
        signatures: layers.len(),
    })
}
