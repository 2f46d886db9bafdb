//! `skiff fetch docker://…`: resolve the manifest (an index picks the
//! platform), download the config and each layer not already cached —
//! verified by digest before it is kept — and import the squashed appc
//! image.

use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::Digest;
use skiff_store::ArchivePolicy;
use skiff_store::db::RemoteRecord;

use super::convert::{self, Layer};
use super::manifest::{Manifest, digest_hex, pick_platform};
use super::reference::DockerRef;
use super::registry::{self, Registry, base64 as b64};
use super::{lookaside, signatures};
use crate::{FetchError, Fetched, Fetcher, PullPolicy};

/// OCI architecture of this machine.
pub fn default_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// Credentials for `registry` from `auth.d/*.json` files in rkt's format:
/// `{"rktKind": "dockerAuth", "rktVersion": "v1", "registries": [HOST...],
/// "credentials": {"user": U, "password": P}}` (`"skiffKind"` also works).
pub fn auth_d_creds(dirs: &[PathBuf], registry: &str) -> Option<(String, String)> {
    crate::auth::documents(dirs, "dockerAuth")
        .into_iter()
        .find_map(|(_, v)| {
            let covers = v["registries"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|r| r.as_str() == Some(registry));
            let c = &v["credentials"];
            match (covers, c["user"].as_str(), c["password"].as_str()) {
                (true, Some(u), Some(p)) => Some((u.to_string(), p.to_string())),
                _ => None,
            }
        })
}

/// Credentials for `registry`: `--creds`, else `auth.d`, else
/// ~/.docker/config.json.
pub fn creds_for(options: &crate::FetchOptions, registry: &str) -> Option<(String, String)> {
    options
        .creds
        .clone()
        .or_else(|| auth_d_creds(&options.auth_dirs, registry))
        .or_else(|| docker_config_creds(registry))
}

/// Credentials for `registry` from ~/.docker/config.json (`auths`).
pub fn docker_config_creds(registry: &str) -> Option<(String, String)> {
    let home = std::env::var_os("HOME")?;
    let text = std::fs::read(Path::new(&home).join(".docker/config.json")).ok()?;
    let v: Value = serde_json::from_slice(&text).ok()?;
    let auths = v.get("auths")?.as_object()?;
    let entry = auths.iter().find(|(k, _)| {
        let host = k
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or("");
        host == registry
            || (registry == super::reference::DOCKER_HUB
                && (host == "index.docker.io" || host == "docker.io"))
    })?;
    let auth = entry.1.get("auth")?.as_str()?;
    let decoded = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, auth).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// Whether a key trusted now for one of `names` verified the stored image
/// `id` when it was fetched: the name is then the signer's word, not only
/// the image's. (The run policy asks it too.)
pub fn vouched(
    store: &skiff_store::Store,
    keystore: &skiff_trust::Keystore,
    id: &skiff_spec::ImageId,
    names: &[&str],
) -> Result<bool, FetchError> {
    let signers = store.index().signers(id)?;
    if signers.is_empty() {
        return Ok(false);
    }
    for name in names {
        if keystore
            .keys_for(name)?
            .iter()
            .any(|k| signers.contains(&k.fingerprint))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

fn bad(what: &str, reason: impl Into<String>) -> FetchError {
    FetchError::Http {
        url: what.to_string(),
        reason: reason.into(),
    }
}

/// Layers a fetch added to the layer cache; removed again when dropped
/// unless the image they make was imported ([`NewLayers::keep`]), so a
/// refused image leaves none of its layers behind. (A concurrent fetch
/// that found one of them cached reads the file it opened: it loses only
/// the cache entry, and `image push` of its image then exports it.)
#[derive(Default)]
pub(crate) struct NewLayers(Vec<PathBuf>);

impl NewLayers {
    /// The image was imported: its layers stay cached. Returns them.
    pub(crate) fn keep(mut self) -> Vec<PathBuf> {
        std::mem::take(&mut self.0)
    }
}

impl Drop for NewLayers {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Fetcher<'_> {
    pub(crate) fn fetch_docker(&self, r: &DockerRef) -> Result<Fetched, FetchError> {
        let shown = r.display();
        let insecure = self.options.insecure.image;
        let repository = skiff_trust::cosign::repository(&shown)
            .ok_or_else(|| bad(&shown, "not a docker repository"))?;
        let remote = self.store.index().remote(&shown)?;
        let cached = match &remote {
            Some(rec) => self.cached(&rec.image_id)?,
            None => None,
        };
        // A stored copy stands in for the registry's only if it was
        // verified by a key trusted now (or the user accepts it unverified).
        let cached = match cached {
            Some(hit)
                if insecure || vouched(self.store, self.keystore, &hit.id, &[&repository])? =>
            {
                Some(hit)
            }
            Some(_) if self.options.pull_policy == PullPolicy::Never => {
                return Err(FetchError::Unsupported(format!(
                    "{shown} is in the store, but no key trusted for {repository} vouched for it; \
                     fetch it again to check its signature, or accept it with \
                     --insecure-options=image"
                )));
            }
            _ => None,
        };
        match (cached, self.options.pull_policy) {
            (Some(hit), PullPolicy::New | PullPolicy::Never) => return Ok(hit),
            (None, PullPolicy::Never) => return Err(FetchError::NotInStore(shown)),
            _ => {}
        }
        let mut reg = Registry::new(self.http, r, creds_for(self.options, &r.registry));
        let (mut body, mut media_type, mut digest) = reg.manifest(r.reference())?;
        // The digests a signature may name: the index's and the platform's.
        let mut digests = vec![digest.clone()];
        if media_type == registry::OCI_INDEX || media_type == registry::DOCKER_LIST {
            let arch = self
                .options
                .arch
                .clone()
                .unwrap_or_else(|| default_arch().to_string());
            let chosen = pick_platform(&body, &arch, &shown)?;
            (body, media_type, digest) = reg.manifest(&chosen)?;
            digests.push(digest.clone());
        }
        let verified = if insecure {
            tracing::warn!("not checking the signature of {shown} (--insecure-options=image)");
            None
        } else {
            Some(self.verify_docker(&mut reg, r, &repository, &digests)?)
        };
        if media_type != registry::OCI_MANIFEST && media_type != registry::DOCKER_MANIFEST {
            return Err(bad(
                &shown,
                format!("unsupported manifest type {media_type:?}"),
            ));
        }
        let manifest = Manifest::parse(&body, &shown)?;
        let config_digest = manifest.config.as_str();
        let config_bytes = reg.small_blob(
            config_digest,
            &self.store.layout().layers_tmp(),
            "config",
            registry::MAX_MANIFEST,
        )?;
        let config: Value = serde_json::from_slice(&config_bytes)
            .map_err(|e| bad(&shown, format!("malformed image config: {e}")))?;
        // The manifest and config are kept with the layers: `image push`
        // sends the image as it came, with the digest its signatures name.
        let mut new = NewLayers::default();
        for (d, bytes) in [(digest.as_str(), &body), (config_digest, &config_bytes)] {
            self.cache_layer(
                d,
                &mut |out| {
                    std::io::Write::write_all(out, bytes).map_err(|e| {
                        let tmp = self.store.layout().layers_tmp();
                        FetchError::from(skiff_io::io_err_at("write in", &tmp)(e))
                    })
                },
                &mut new,
            )?;
        }
        // The whole image's compressed bytes within the largest image
        // allowed (they are never more than what it unpacks to): refused
        // before any layer is downloaded when the manifest says so, and
        // each download stops at what is left.
        let limit = self.options.archive_policy.max_bytes;
        let declared = manifest.declared_size();
        if declared > limit {
            return Err(bad(
                &shown,
                format!(
                    "the image's layers are {declared} bytes, more than the largest image allowed \
                     ({limit} bytes; --max-image-size raises it): refused, nothing downloaded"
                ),
            ));
        }
        let mut used = 0u64;
        let mut layers = Vec::new();
        for l in &manifest.layers {
            let (path, file) = self.layer(
                &mut reg,
                &l.digest,
                l.size,
                limit - used.min(limit),
                &mut new,
            )?;
            let size = file.metadata().map(|m| m.len()).unwrap_or(0);
            used = used.saturating_add(size);
            crate::http::within_limit(&shown, used, limit)?;
            layers.push(Layer {
                path,
                file,
                media_type: l.media_type.clone(),
            });
        }
        let mut fetched = self.import_layers(
            r.aci_name().as_str(),
            r.tag.as_deref(),
            &config,
            &layers,
            &shown,
            &digest,
        )?;
        if let Some((v, record)) = verified {
            self.store
                .add_signature(&fetched.id, &v.fingerprint, &record)?;
            fetched.verified = Some(v);
        }
        fetched.new_blobs = new.keep();
        Ok(fetched)
    }

    /// Checks the signatures of the manifest `digests` with the keys
    /// trusted for `repository`: cosign's in the registry (cosign keys),
    /// then simple signing's in the lookaside (OpenPGP keys, when
    /// registries.d names one). Returns who signed and the record kept in
    /// the store (the signature that verified).
    fn verify_docker(
        &self,
        reg: &mut Registry<'_>,
        r: &DockerRef,
        repository: &str,
        digests: &[String],
    ) -> Result<(skiff_trust::Verified, Vec<u8>), FetchError> {
        let shown = r.display();
        let _step = tracing::debug_span!("verify", image = shown.as_str()).entered();
        let keys = self.keystore.keys_for(repository)?;
        let lookaside = lookaside::Lookaside::load(&self.options.registries_dirs);
        let lookaside_url = lookaside.url_for(repository).map(str::to_string);
        let cosign = keys.iter().any(|k| k.key.cosign().is_some());
        let simple = keys.iter().any(|k| k.key.openpgp().is_some()) && lookaside_url.is_some();
        if !cosign && !simple {
            let image = repository.to_string();
            return Err(if keys.iter().any(|k| k.key.openpgp().is_some()) {
                FetchError::NoLookaside { image }
            } else {
                FetchError::NoTrustedImageKeys { image }
            });
        }
        let expected = skiff_trust::cosign::Expected {
            repository,
            digests,
            tag: if r.digest.is_some() {
                None
            } else {
                r.tag.as_deref()
            },
        };
        let mut failures = Vec::new();
        if cosign {
            match self.verify_cosign(reg, &shown, &keys, &expected) {
                Ok(done) => return Ok(done),
                Err(e) => failures.push(e),
            }
        }
        if let (true, Some(url)) = (simple, &lookaside_url) {
            match self.verify_simple(url, &shown, &keys, &expected) {
                Ok(done) => return Ok(done),
                Err(e) => failures.push(e),
            }
        }
        if failures.len() == 1 {
            return Err(failures.remove(0));
        }
        Err(FetchError::NotVerified {
            image: shown,
            reasons: failures
                .iter()
                .map(|e| {
                    let mut text = e.to_string();
                    let mut source = std::error::Error::source(e);
                    while let Some(s) = source {
                        text.push_str(&format!(": {s}"));
                        source = s.source();
                    }
                    text
                })
                .collect(),
        })
    }

    fn verify_cosign(
        &self,
        reg: &mut Registry<'_>,
        shown: &str,
        keys: &[skiff_trust::TrustedKey],
        expected: &skiff_trust::cosign::Expected<'_>,
    ) -> Result<(skiff_trust::Verified, Vec<u8>), FetchError> {
        let (found, looked_at) = signatures::cosign_signatures(
            reg,
            expected.digests,
            &self.store.layout().layers_tmp(),
        )?;
        if found.is_empty() {
            return Err(FetchError::MissingImageSignature {
                image: shown.to_string(),
                looked_at: looked_at.join(", "),
            });
        }
        let sigs: Vec<skiff_trust::cosign::Signature<'_>> = found
            .iter()
            .map(|f| skiff_trust::cosign::Signature {
                payload: &f.payload,
                signature: &f.signature,
            })
            .collect();
        let (verified, used) =
            skiff_trust::cosign::verify(keys, &sigs, expected).map_err(|source| {
                FetchError::Signature {
                    image: shown.to_string(),
                    source,
                }
            })?;
        tracing::info!(
            "verified {shown}: signed by cosign key {} (trusted for {})",
            verified.fingerprint,
            verified.scope
        );
        let s = &sigs[used];
        let record = serde_json::json!({
            "format": "cosign",
            "payload": b64(s.payload),
            "signature": b64(s.signature),
        })
        .to_string()
        .into_bytes();
        Ok((verified, record))
    }

    fn verify_simple(
        &self,
        url: &str,
        shown: &str,
        keys: &[skiff_trust::TrustedKey],
        expected: &skiff_trust::cosign::Expected<'_>,
    ) -> Result<(skiff_trust::Verified, Vec<u8>), FetchError> {
        let mut found = Vec::new();
        let mut looked_at = Vec::new();
        for digest in expected.digests {
            let (mut sigs, at) =
                lookaside::signatures(self.http, url, expected.repository, digest)?;
            found.append(&mut sigs);
            looked_at.push(at);
        }
        if found.is_empty() {
            return Err(FetchError::MissingImageSignature {
                image: shown.to_string(),
                looked_at: looked_at.join(", "),
            });
        }
        let verified =
            skiff_trust::simple_signing::verify(keys, &found, expected).map_err(|source| {
                FetchError::Signature {
                    image: shown.to_string(),
                    source,
                }
            })?;
        tracing::info!(
            "verified {shown}: simple signing by OpenPGP key {} (trusted for {})",
            verified.fingerprint,
            verified.scope
        );
        let record = serde_json::json!({
            "format": "simple-signing",
            "signatures": found.iter().map(|s| b64(s)).collect::<Vec<_>>(),
        })
        .to_string()
        .into_bytes();
        Ok((verified, record))
    }

    /// The cached layer `digest` (`size` bytes as declared, 0 if not),
    /// downloaded (and verified) if missing, up to `limit` bytes.
    fn layer(
        &self,
        reg: &mut Registry<'_>,
        digest: &str,
        size: u64,
        limit: u64,
        new: &mut NewLayers,
    ) -> Result<(PathBuf, std::fs::File), FetchError> {
        let short = digest
            .trim_start_matches("sha256:")
            .chars()
            .take(12)
            .collect::<String>();
        let label = format!("layer {short}");
        self.cache_layer(
            digest,
            &mut |out| {
                // A peer first (the digest is the content address: what a
                // peer sends is checked before it is kept), then the registry.
                if self.layer_from_peers(digest, size, out, limit)? {
                    return Ok(());
                }
                reg.blob_to(digest, out, &label, limit).map(drop)
            },
            new,
        )
    }

    /// The cached layer `digest`; if missing, `fill` writes it to a
    /// temporary file whose content must have that digest to be kept, and
    /// it is recorded in `new`.
    pub(crate) fn cache_layer(
        &self,
        digest: &str,
        fill: &mut dyn FnMut(&mut std::fs::File) -> Result<(), FetchError>,
        new: &mut NewLayers,
    ) -> Result<(PathBuf, std::fs::File), FetchError> {
        let hex = digest_hex(digest, digest)?;
        let path = self.store.layout().layers().join(&hex);
        // Opened at once: an image gc with no grace period may remove the
        // name right after, not what was opened. (Anything but a regular
        // file there is replaced by a download.)
        match skiff_io::open_regular(&path) {
            Ok(file) => {
                tracing::debug!(digest, "layer already in the cache");
                // Used now: image gc keeps layers used within its grace period.
                let _ = file.set_modified(std::time::SystemTime::now());
                return Ok((path, file));
            }
            // Not cached, or not a regular file: downloaded (over it).
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    || e.kind() == std::io::ErrorKind::InvalidInput
                    || e.raw_os_error() == Some(libc::ELOOP) => {}
            Err(e) => return Err(skiff_io::io_err_at("read", &path)(e).into()),
        }
        let tmp = self.store.layout().layers_tmp();
        let io = |e: std::io::Error| FetchError::from(skiff_io::io_err_at("read", &tmp)(e));
        let mut file = tempfile::NamedTempFile::new_in(&tmp).map_err(io)?;
        fill(file.as_file_mut())?;
        // Check the digest of what was written (a download is also checked
        // while it streams; a local blob only here).
        let mut reader = std::io::BufReader::new(file.reopen().map_err(io)?);
        let mut hasher = sha2::Sha256::new();
        std::io::copy(&mut reader, &mut hasher).map_err(io)?;
        let got = format!("{:x}", sha2::Digest::finalize(hasher));
        if got != hex {
            return Err(bad(
                digest,
                format!("the layer's content has digest sha256:{got}: refused, nothing stored"),
            ));
        }
        skiff_store::serving::share_file(file.as_file(), file.path())?;
        file.as_file().sync_all().map_err(io)?;
        let file = file.persist(&path).map_err(|e| io(e.error))?;
        new.0.push(path.clone());
        Ok((path, file))
    }

    /// Squashes `layers` into an ACI, imports it, records it as fetched
    /// from `origin` at `digest`, and returns it.
    pub(crate) fn import_layers(
        &self,
        name: &str,
        version: Option<&str>,
        config: &Value,
        layers: &[Layer],
        origin: &str,
        digest: &str,
    ) -> Result<Fetched, FetchError> {
        let manifest = convert::image_manifest(name, version, config, origin, digest);
        // Distribution images have setuid files (su, passwd, ping); pods
        // run with no_new_privs, which makes the bit inert.
        let policy = ArchivePolicy {
            allow_setuid: true,
            ..self.options.archive_policy.clone()
        };
        let mut conversion = Ok(());
        let imported = self.store.import_streamed(&policy, |out| {
            conversion = convert::write_aci(out, &manifest, layers, policy.max_ratio).map(drop);
            conversion
                .as_ref()
                .map(drop)
                .map_err(|e| std::io::Error::other(e.to_string()))
        });
        // When the store refused the image, the conversion was stopped:
        // the store's verdict is the reason.
        let stopped = conversion
            .as_ref()
            .is_err_and(|e| e.to_string().contains(skiff_store::STOPPED));
        let imported = match (stopped, imported) {
            (true, Err(verdict)) => return Err(verdict.into()),
            (_, imported) => {
                conversion?;
                imported?
            }
        };
        // Remembered by origin and digest: `skiff image list` shows where
        // it came from, and image commands accept that reference.
        self.store.set_remote(&RemoteRecord {
            url: origin.to_string(),
            image_id: imported.id.clone(),
            etag: Some(digest.to_string()),
            max_age: 0,
            download_time: skiff_store::db::now(),
        })?;
        Ok(Fetched {
            id: imported.id,
            manifest: imported.manifest,
            verified: None,
            cached: false,
            new_blobs: Vec::new(),
        })
    }
}
