//! Images to registries: `skiff image push` (an image fetched from a
//! registry as it came, any other as an OCI image) and `skiff image sign
//! --format=cosign` (a cosign signature attached in the registry).

use std::path::Path;

use skiff_fetch::docker::DockerRef;
use skiff_fetch::docker::push::{self, PushImage, Pushed};
use skiff_fetch::docker::sign::Attached;
use skiff_fetch::{PullPolicy, resolve_stored};
use skiff_spec::parse_image_manifest;
use skiff_store::{ImageRecord, Store};
use skiff_trust::cosign_key::CosignSigner;

use crate::error::io;
use crate::{Context, OpsError, refuse};

/// What `push` did.
#[derive(Debug)]
pub struct PushReport {
    pub record: ImageRecord,
    pub dest: String,
    /// True when the image went as it was fetched (same manifest digest).
    pub as_fetched: bool,
    pub pushed: Pushed,
}

fn dest_ref(dest: &str) -> Result<DockerRef, OpsError> {
    if !dest.starts_with("docker://") {
        return Err(refuse!(
            "{dest}: push to docker://REGISTRY/REPO:TAG (the only destination skiff pushes to)"
        ));
    }
    let r = DockerRef::parse(dest).map_err(OpsError::FetchSetup)?;
    if r.digest.is_some() {
        return Err(refuse!("{dest}: push to a tag (REPO:TAG), not a digest"));
    }
    Ok(r)
}

/// The image as a `docker://` fetch kept it (manifest, config, layers in
/// the layer cache), and the repository it came from.
fn as_fetched(
    store: &Store,
    rec: &ImageRecord,
) -> Result<Option<(PushImage, DockerRef)>, OpsError> {
    let layers = store.layout().layers();
    for remote in store.index().remotes_of(&rec.id)? {
        let (Ok(origin), Some(digest)) = (DockerRef::parse(&remote.url), remote.etag) else {
            continue;
        };
        let Some(hex) = digest.strip_prefix("sha256:") else {
            continue;
        };
        let Ok(manifest) = std::fs::read(layers.join(hex)) else {
            continue;
        };
        if let Some(image) =
            push::with_blobs_in(manifest, &layers, &remote.url).map_err(OpsError::FetchSetup)?
        {
            return Ok(Some((image, origin)));
        }
    }
    Ok(None)
}

/// Pushes the stored image `image` to `dest` (`docker://REG/REPO:TAG`).
pub fn push(ctx: &Context, image: &str, dest: &str) -> Result<PushReport, OpsError> {
    let dest_ref = dest_ref(dest)?;
    let store = ctx.store()?;
    let rec = resolve_stored(&store, image).map_err(OpsError::FetchSetup)?;
    let http = ctx.http();
    let creds = skiff_fetch::docker::pull::creds_for(
        &ctx.fetch_options(PullPolicy::New),
        &dest_ref.registry,
    );
    if let Some((image, origin)) = as_fetched(&store, &rec)? {
        let mount_from = (origin.registry == dest_ref.registry).then_some(origin.repo.as_str());
        let pushed = push::push(&http, &dest_ref, creds, &image, mount_from)
            .map_err(OpsError::FetchSetup)?;
        return Ok(PushReport {
            record: rec,
            dest: dest_ref.display(),
            as_fetched: true,
            pushed,
        });
    }
    // Any other image goes as `image export --format=oci` writes it: one
    // layer of the rendered tree, the config mapped from its manifest.
    let manifest = parse_image_manifest(&rec.manifest)
        .map_err(|e| refuse!("the stored manifest of {}: {e}", rec.name))?;
    let tree = store.render(&rec.id)?;
    let tmp = tempfile::tempdir_in(store.layout().layers_tmp())
        .map_err(io("make a temporary directory in the store"))?;
    let layout = tmp.path().join("oci");
    let tag = dest_ref.tag.clone().unwrap_or_else(|| "latest".into());
    skiff_fetch::docker::export::write_layout(&tree.rootfs(), &manifest, &tag, &layout)
        .map_err(OpsError::FetchSetup)?;
    let image = push::from_layout(&layout).map_err(OpsError::FetchSetup)?;
    let pushed = push::push(&http, &dest_ref, creds, &image, None).map_err(OpsError::FetchSetup)?;
    Ok(PushReport {
        record: rec,
        dest: dest_ref.display(),
        as_fetched: false,
        pushed,
    })
}

/// The password of an encrypted cosign key: `COSIGN_PASSWORD`, as cosign.
fn cosign_password() -> Result<Vec<u8>, skiff_trust::TrustError> {
    std::env::var_os("COSIGN_PASSWORD")
        .map(|p| std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str()).to_vec())
        .ok_or_else(|| {
            skiff_trust::TrustError::BadCosignKey(
                "the cosign key is encrypted: give its password in COSIGN_PASSWORD".into(),
            )
        })
}

/// Signs what `dest` (`docker://REG/REPO:TAG` or `@DIGEST`) names with the
/// cosign key in `key` and attaches the signature in the registry.
pub fn sign_cosign(ctx: &Context, key: &Path, dest: &str) -> Result<Attached, OpsError> {
    if !dest.starts_with("docker://") {
        return Err(refuse!(
            "{dest}: --format=cosign signs an image in a registry: docker://REGISTRY/REPO:TAG"
        ));
    }
    let dest_ref = DockerRef::parse(dest).map_err(OpsError::FetchSetup)?;
    let text = std::fs::read(key).map_err(io(format!("read {}", key.display())))?;
    let signer =
        CosignSigner::from_pem(&text, cosign_password).map_err(|source| OpsError::Key {
            location: key.display().to_string(),
            source,
        })?;
    let http = ctx.http();
    let creds = skiff_fetch::docker::pull::creds_for(
        &ctx.fetch_options(PullPolicy::New),
        &dest_ref.registry,
    );
    skiff_fetch::docker::sign::attach_cosign(&http, &dest_ref, creds, &signer)
        .map_err(OpsError::FetchSetup)
}
