//! `skiff image export --format=oci`: an OCI image layout (one gzip layer
//! of the image as pods see it, a config mapped from the appc manifest, a
//! manifest and an index naming it by tag) that skopeo and umoci read.

use std::io::Write;
use std::path::Path;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use skiff_spec::image::ImageManifest;

use crate::FetchError;

/// The failure of writing `path` (or into it).
fn io(path: &Path) -> impl FnOnce(std::io::Error) -> skiff_io::IoError + use<> {
    skiff_io::io_err_at("write", path)
}

/// A writer that hashes what passes through it.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `bytes` as a blob; returns its descriptor fields (digest, size).
fn put_blob(out: &Path, bytes: &[u8]) -> Result<(String, u64), FetchError> {
    let hexd = hex(&Sha256::digest(bytes));
    let path = out.join("blobs/sha256").join(&hexd);
    std::fs::write(&path, bytes).map_err(io(&path))?;
    Ok((format!("sha256:{hexd}"), bytes.len() as u64))
}

/// The OCI image config for an appc image manifest.
pub fn oci_config(m: &ImageManifest, diff_id: &str) -> Value {
    let label = |n: &str| {
        m.labels
            .iter()
            .find(|l| l.name.as_str() == n)
            .map(|l| l.value.clone())
    };
    let arch = match label("arch").as_deref() {
        Some("aarch64") => "arm64".to_string(),
        Some("i386") => "386".to_string(),
        Some(a) => a.to_string(),
        None => "amd64".to_string(),
    };
    let mut config = json!({});
    if let Some(app) = &m.app {
        config["Entrypoint"] = json!(app.exec);
        config["Env"] = json!(
            app.environment
                .iter()
                .map(|e| format!("{}={}", e.name, e.value))
                .collect::<Vec<_>>()
        );
        config["WorkingDir"] = json!(if app.working_directory.is_empty() {
            "/"
        } else {
            app.working_directory.as_str()
        });
        config["User"] = json!(format!("{}:{}", app.user, app.group));
        let ports: serde_json::Map<String, Value> = app
            .ports
            .iter()
            .map(|p| (format!("{}/{}", p.port, p.protocol), json!({})))
            .collect();
        config["ExposedPorts"] = Value::Object(ports);
        let volumes: serde_json::Map<String, Value> = app
            .mount_points
            .iter()
            .map(|mp| (mp.path.clone(), json!({})))
            .collect();
        config["Volumes"] = Value::Object(volumes);
    }
    let labels: serde_json::Map<String, Value> = m
        .annotations
        .iter()
        .map(|a| (a.name.to_string(), json!(a.value)))
        .collect();
    config["Labels"] = Value::Object(labels);
    json!({
        "architecture": arch,
        "os": label("os").unwrap_or_else(|| "linux".into()),
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "skiff image export"}],
    })
}

/// Writes an OCI layout at `out` (a new directory) for the tree `rootfs`.
pub fn write_layout(
    rootfs: &Path,
    manifest: &ImageManifest,
    tag: &str,
    out: &Path,
) -> Result<(), FetchError> {
    std::fs::create_dir_all(out.join("blobs/sha256")).map_err(io(out))?;
    std::fs::write(out.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).map_err(io(out))?;
    // The layer: gzip of the tar, hashing both the compressed bytes (the
    // digest) and the tar (the diff id).
    let tmp = out.join("blobs/sha256/.layer.tmp");
    let file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    let compressed = Hashing {
        inner: std::io::BufWriter::new(file),
        hash: Sha256::new(),
        bytes: 0,
    };
    let gz = flate2::write::GzEncoder::new(compressed, flate2::Compression::fast());
    let tar_stream = Hashing {
        inner: gz,
        hash: Sha256::new(),
        bytes: 0,
    };
    let mut builder = tar::Builder::new(tar_stream);
    builder.follow_symlinks(false);
    builder.mode(tar::HeaderMode::Complete);
    builder.append_dir_all(".", rootfs).map_err(io(rootfs))?;
    let tar_stream = builder.into_inner().map_err(io(&tmp))?;
    let diff_id = format!("sha256:{}", hex(&tar_stream.hash.finalize()));
    let mut compressed = tar_stream.inner.finish().map_err(io(&tmp))?;
    compressed.flush().map_err(io(&tmp))?;
    let layer_digest = hex(&compressed.hash.finalize());
    let layer_size = compressed.bytes;
    std::fs::rename(&tmp, out.join("blobs/sha256").join(&layer_digest)).map_err(io(&tmp))?;

    let config =
        serde_json::to_vec(&oci_config(manifest, &diff_id)).map_err(|e| io(out)(e.into()))?;
    let (config_digest, config_size) = put_blob(out, &config)?;
    let image_manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": format!("sha256:{layer_digest}"),
            "size": layer_size,
        }],
    });
    let bytes = serde_json::to_vec(&image_manifest).map_err(|e| io(out)(e.into()))?;
    let (manifest_digest, manifest_size) = put_blob(out, &bytes)?;
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest_size,
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    let path = out.join("index.json");
    std::fs::write(
        &path,
        serde_json::to_vec_pretty(&index).map_err(|e| io(out)(e.into()))?,
    )
    .map_err(io(&path))?;
    Ok(())
}
