//! From OCI/Docker layers and an image config to one appc image (ACI):
//! the layers are squashed top-down — a path an upper layer has hides the
//! lower layers' copies, `.wh.NAME` hides NAME below its layer and
//! `.wh..wh..opq` empties a directory of what lower layers put in it — and
//! the config becomes the image manifest.

use std::cell::Cell;
use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use serde_json::{Value, json};

use crate::FetchError;

/// A layer as stored: its file and how it is compressed.
pub struct Layer {
    pub path: PathBuf,
    pub media_type: String,
}

/// Annotation naming where a converted image came from.
pub const ORIGIN_ANNOTATION: &str = "skiff.io/origin";
/// Annotation with the digest of the manifest it was converted from.
pub const DIGEST_ANNOTATION: &str = "skiff.io/origin-digest";

fn bad(what: &str, reason: impl Into<String>) -> FetchError {
    FetchError::Http {
        url: what.to_string(),
        reason: reason.into(),
    }
}

/// An appc name or annotation name from free text: lowercase, and
/// anything but letters, digits, `-._~/` becomes `-`.
fn ac_identifier(s: &str) -> String {
    let out: String = s
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~' | '/') {
                c
            } else {
                '-'
            }
        })
        .collect();
    out.trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

fn ac_name(s: &str) -> String {
    let out: String = s
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let out = out.trim_matches('-').to_string();
    if out.is_empty() { "volume".into() } else { out }
}

/// appc arch labels from OCI architectures.
fn appc_arch(oci: &str) -> &str {
    match oci {
        "arm64" => "aarch64",
        "386" => "i386",
        "arm" => "armv7l",
        other => other,
    }
}

/// The image manifest for a config (`config` is the OCI image config JSON).
pub fn image_manifest(
    name: &str,
    version: Option<&str>,
    config: &Value,
    origin: &str,
    digest: &str,
) -> Value {
    let c = &config["config"];
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect()
    };
    let mut labels = Vec::new();
    if let Some(v) = version {
        labels.push(json!({"name": "version", "value": v}));
    }
    labels.push(json!({"name": "os", "value": config["os"].as_str().unwrap_or("linux")}));
    labels.push(json!({"name": "arch", "value": appc_arch(config["architecture"].as_str().unwrap_or("amd64"))}));
    let mut exec = strings(&c["Entrypoint"]);
    exec.extend(strings(&c["Cmd"]));
    let (user, group) = match c["User"].as_str().filter(|u| !u.is_empty()) {
        // As Docker: a user without a group runs with gid 0 unless
        // /etc/passwd says otherwise (uid only here: no lookup).
        Some(u) => match u.split_once(':') {
            Some((u, g)) => (u.to_string(), g.to_string()),
            None => (u.to_string(), "0".to_string()),
        },
        None => ("0".to_string(), "0".to_string()),
    };
    let environment: Vec<Value> = strings(&c["Env"])
        .into_iter()
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some(json!({"name": k, "value": v}))
        })
        .collect();
    let mut ports: Vec<Value> = c["ExposedPorts"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(spec, _)| {
            let (port, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
            let port: u64 = port.parse().ok()?;
            Some(json!({"name": format!("{port}-{proto}"), "protocol": proto, "port": port}))
        })
        .collect();
    ports.sort_by_key(|p| p["port"].as_u64());
    let mount_points: Vec<Value> = c["Volumes"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(path, _)| json!({"name": ac_name(path), "path": path}))
        .collect();
    let mut annotations: Vec<Value> = c["Labels"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| {
            let name = ac_identifier(k);
            (!name.is_empty()).then(|| json!({"name": name, "value": v.as_str().unwrap_or("")}))
        })
        .collect();
    annotations.push(json!({"name": ORIGIN_ANNOTATION, "value": origin}));
    annotations.push(json!({"name": DIGEST_ANNOTATION, "value": digest}));
    let mut app = json!({
        "user": user,
        "group": group,
        "workingDirectory": c["WorkingDir"].as_str().filter(|w| w.starts_with('/')).unwrap_or("/"),
        "environment": environment,
        "ports": ports,
        "mountPoints": mount_points,
    });
    if !exec.is_empty() {
        app["exec"] = json!(exec);
    }
    json!({
        "acKind": "ImageManifest",
        "acVersion": "0.8.11",
        "name": name,
        "labels": labels,
        "app": app,
        "annotations": annotations,
    })
}

/// Counts the bytes read through it.
struct Counted<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// A decompressed layer that stops once what it inflated to exceeds
/// `max_ratio` times the compressed bytes the decoder really consumed
/// (past [`skiff_store::policy::RATIO_GRACE`]): a small layer of zeros
/// never fills the disk of the conversion.
struct Inflation<R> {
    inner: R,
    compressed: Rc<Cell<u64>>,
    inflated: u64,
    max_ratio: u64,
    layer: String,
}

impl<R: Read> Read for Inflation<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.inflated += n as u64;
        let compressed = self.compressed.get().max(1);
        if self.inflated > skiff_store::policy::RATIO_GRACE
            && self.inflated / compressed > self.max_ratio
        {
            return Err(std::io::Error::other(format!(
                "layer {} inflates to more than {} times its compressed size ({} bytes from {compressed}): \
                 refused as a decompression bomb (--max-decompression-ratio raises the limit)",
                self.layer, self.max_ratio, self.inflated
            )));
        }
        Ok(n)
    }
}

/// A layer's entries, decompressed by media type, within `max_ratio`.
fn open_layer(layer: &Layer, max_ratio: u64) -> Result<Box<dyn Read>, FetchError> {
    let file = std::fs::File::open(&layer.path).map_err(|source| FetchError::Io {
        path: layer.path.clone(),
        source,
    })?;
    let reader = std::io::BufReader::with_capacity(1 << 16, file);
    let mt = layer.media_type.as_str();
    if mt.ends_with("+zstd") || mt.ends_with(".zstd") {
        return Err(bad(
            &layer.path.display().to_string(),
            "zstd-compressed layers are not supported",
        ));
    }
    if mt.ends_with("gzip") || mt.ends_with("+gzip") {
        let compressed = Rc::new(Cell::new(0));
        let counted = Counted {
            inner: reader,
            count: compressed.clone(),
        };
        Ok(Box::new(Inflation {
            inner: flate2::read::GzDecoder::new(counted),
            compressed,
            inflated: 0,
            max_ratio,
            layer: layer
                .path
                .file_name()
                .map(|n| format!("sha256:{}", n.to_string_lossy()))
                .unwrap_or_else(|| layer.path.display().to_string()),
        }))
    } else {
        Ok(Box::new(reader))
    }
}

/// A layer entry's path, relative, without `./`; `..` is refused.
fn clean(raw: &[u8], layer: &Path) -> Result<String, FetchError> {
    let s = String::from_utf8_lossy(raw);
    let parts: Vec<&str> = s
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.contains(&"..") {
        return Err(bad(
            &layer.display().to_string(),
            format!("layer entry {s:?} leaves the root: refused"),
        ));
    }
    Ok(parts.join("/"))
}

fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

/// Writes the squashed ACI (uncompressed) for `layers` (bottom first);
/// a layer that inflates more than `max_ratio` times stops it.
pub fn write_aci<W: Write>(
    out: W,
    manifest: &Value,
    layers: &[Layer],
    max_ratio: u64,
) -> Result<W, FetchError> {
    let mut builder = tar::Builder::new(out);
    builder.mode(tar::HeaderMode::Complete);
    let write_err = |e: std::io::Error| bad("the converted image", e.to_string());
    let manifest_bytes =
        serde_json::to_vec_pretty(manifest).map_err(|e| bad("manifest", e.to_string()))?;
    let mut h = tar::Header::new_gnu();
    h.set_size(manifest_bytes.len() as u64);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    builder
        .append_data(&mut h, "manifest", manifest_bytes.as_slice())
        .map_err(write_err)?;
    let mut d = tar::Header::new_gnu();
    d.set_entry_type(tar::EntryType::Directory);
    d.set_mode(0o755);
    d.set_size(0);
    d.set_cksum();
    builder
        .append_data(&mut d, "rootfs", std::io::empty())
        .map_err(write_err)?;

    // Paths emitted so far (from upper layers), and which are not dirs.
    let mut emitted: HashSet<String> = HashSet::new();
    let mut non_dirs: HashSet<String> = HashSet::new();
    // Hidden by whiteouts of upper layers; directories made opaque by them.
    let mut hidden: HashSet<String> = HashSet::new();
    let mut opaque: HashSet<String> = HashSet::new();
    // Hard links go last, when every target has been written.
    let mut links: Vec<(tar::Header, String, String)> = Vec::new();
    for layer in layers.iter().rev() {
        let (mut new_hidden, mut new_opaque) = (Vec::new(), Vec::new());
        let mut archive = tar::Archive::new(open_layer(layer, max_ratio)?);
        let entries = archive
            .entries()
            .map_err(|e| bad(&layer.path.display().to_string(), e.to_string()))?;
        for entry in entries {
            let mut entry =
                entry.map_err(|e| bad(&layer.path.display().to_string(), e.to_string()))?;
            let path = clean(&entry.path_bytes(), &layer.path)?;
            if path.is_empty() {
                continue;
            }
            let (parent, name) = match path.rsplit_once('/') {
                Some((p, n)) => (p.to_string(), n.to_string()),
                None => (String::new(), path.clone()),
            };
            if name == ".wh..wh..opq" {
                new_opaque.push(parent);
                continue;
            }
            if let Some(target) = name.strip_prefix(".wh.") {
                new_hidden.push(if parent.is_empty() {
                    target.to_string()
                } else {
                    format!("{parent}/{target}")
                });
                continue;
            }
            let shadowed = emitted.contains(&path)
                || hidden.contains(&path)
                || ancestors(&path)
                    .any(|a| hidden.contains(a) || opaque.contains(a) || non_dirs.contains(a));
            if shadowed {
                continue;
            }
            let kind = entry.header().entry_type();
            let mut header = entry.header().clone();
            let full = format!("rootfs/{path}");
            if kind.is_hard_link() {
                let target = entry
                    .link_name_bytes()
                    .map(|t| clean(&t, &layer.path))
                    .transpose()?
                    .unwrap_or_default();
                links.push((header, full, format!("rootfs/{target}")));
            } else if kind.is_symlink() {
                let target = entry
                    .link_name_bytes()
                    .map(|t| String::from_utf8_lossy(&t).into_owned())
                    .unwrap_or_default();
                builder
                    .append_link(&mut header, &full, &target)
                    .map_err(write_err)?;
            } else if kind.is_pax_global_extensions() || kind.is_pax_local_extensions() {
                continue;
            } else {
                builder
                    .append_data(&mut header, &full, &mut entry)
                    .map_err(write_err)?;
            }
            emitted.insert(path.clone());
            if !kind.is_dir() {
                non_dirs.insert(path);
            }
        }
        hidden.extend(new_hidden);
        opaque.extend(new_opaque);
    }
    for (mut header, path, target) in links {
        // A link whose target an upper layer removed or replaced by a
        // directory has nothing to point at.
        let t = target.trim_start_matches("rootfs/");
        if !non_dirs.contains(t) {
            continue;
        }
        builder
            .append_link(&mut header, &path, &target)
            .map_err(write_err)?;
    }
    builder.into_inner().map_err(write_err)
}
