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
use skiff_spec::aci::paths::{DirCounter, MAX_PATH_BYTES, PathSet};

use crate::FetchError;

/// A layer as stored: its file and how it is compressed.
pub struct Layer {
    /// Where it is cached (named in messages).
    pub path: PathBuf,
    /// The file, open since it was found in the cache or written there:
    /// a concurrent `image gc` may remove the cached name, not what this
    /// reads.
    pub file: std::fs::File,
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

/// What the image's layers consumed and produced so far, together: the
/// ratio is the image's, and its grace is counted once (twenty small
/// bombs, each under the grace, are one big bomb).
#[derive(Clone, Default)]
struct Inflated {
    compressed: Rc<Cell<u64>>,
    produced: Rc<Cell<u64>>,
}

/// Counts the bytes read through it into `count`.
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

/// A decompressed layer that stops once what the image's layers inflated
/// to exceeds `max_ratio` times the compressed bytes their decoders really
/// consumed (past [`skiff_store::policy::RATIO_GRACE`]): a small layer of
/// zeros never fills the disk of the conversion.
struct Inflation<R> {
    inner: R,
    totals: Inflated,
    max_ratio: u64,
    layer: String,
}

impl<R: Read> Read for Inflation<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let produced = self.totals.produced.get() + n as u64;
        self.totals.produced.set(produced);
        let compressed = self.totals.compressed.get().max(1);
        if produced > skiff_store::policy::RATIO_GRACE && produced / compressed > self.max_ratio {
            return Err(std::io::Error::other(format!(
                "the image inflates to more than {} times its compressed size ({produced} bytes \
                 from {compressed}, at layer {}): refused as a decompression bomb \
                 (--max-decompression-ratio raises the limit)",
                self.max_ratio, self.layer
            )));
        }
        Ok(n)
    }
}

/// The largest zstd window a layer may use: 2^27 bytes (128 MiB).
const ZSTD_WINDOW_LOG_MAX: u32 = 27;

/// A layer's entries, decompressed by media type (every member of a
/// gzip stream, every frame of a zstd one, as other runtimes read them),
/// counted in `totals`.
fn open_layer(
    layer: &Layer,
    totals: &Inflated,
    max_ratio: u64,
) -> Result<Box<dyn Read>, FetchError> {
    let mut file = layer
        .file
        .try_clone()
        .map_err(skiff_io::io_err_at("read", &layer.path))?;
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(0))
        .map_err(skiff_io::io_err_at("read", &layer.path))?;
    let reader = std::io::BufReader::with_capacity(1 << 16, file);
    let mt = layer.media_type.as_str();
    let counted = Counted {
        inner: reader,
        count: totals.compressed.clone(),
    };
    let name = layer
        .path
        .file_name()
        .map(|n| format!("sha256:{}", n.to_string_lossy()))
        .unwrap_or_else(|| layer.path.display().to_string());
    let inner: Box<dyn Read> = if mt.ends_with("gzip") || mt.ends_with("+gzip") {
        Box::new(flate2::read::MultiGzDecoder::new(counted))
    } else if mt.ends_with("+zstd") || mt.ends_with(".zstd") {
        // Every frame is read. A frame's window is at most 2^27 bytes
        // (libzstd's default limit, said here so no default can widen it):
        // a layer cannot make the decoder take more memory than that.
        let mut decoder = zstd::stream::read::Decoder::with_buffer(
            std::io::BufReader::with_capacity(1 << 16, counted),
        )
        .map_err(|e| bad(&name, format!("zstd: {e}")))?;
        decoder
            .window_log_max(ZSTD_WINDOW_LOG_MAX)
            .map_err(|e| bad(&name, format!("zstd: {e}")))?;
        Box::new(decoder)
    } else {
        // Uncompressed: counted on both sides (ratio 1).
        Box::new(counted)
    };
    // The tar reader is kept from holding a huge extended record.
    Ok(Box::new(skiff_spec::aci::inflation::ExtensionWatch::new(
        Inflation {
            inner,
            totals: totals.clone(),
            max_ratio,
            layer: name,
        },
    )))
}

/// A layer entry's path, relative, without `./`; `..` is refused.
fn clean(raw: &[u8], layer: &Path) -> Result<String, FetchError> {
    if let Some(why) = skiff_spec::aci::paths::too_long(raw) {
        return Err(bad(
            &layer.display().to_string(),
            format!("layer entry refused: {why}"),
        ));
    }
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
    // (PathSets: each entry's ancestors are looked up in one pass.)
    let mut emitted: HashSet<String> = HashSet::new();
    let mut non_dirs = PathSet::new();
    // Hidden by whiteouts of upper layers; directories made opaque by them.
    let mut hidden = PathSet::new();
    let mut opaque = PathSet::new();
    // Directories emitted, named or parents of what was: a lower layer's
    // file or symlink there is shadowed (an upper layer's directory wins).
    let mut made_dirs = DirCounter::new();
    // Every entry's path counts (whiteouts too, which are remembered).
    let mut path_bytes: u64 = 0;
    // Hard links go last, when every target has been written.
    let mut links: Vec<(tar::Header, String, String)> = Vec::new();
    let totals = Inflated::default();
    for layer in layers.iter().rev() {
        let (mut new_hidden, mut new_opaque) = (Vec::new(), Vec::new());
        let mut archive = tar::Archive::new(open_layer(layer, &totals, max_ratio)?);
        let entries = archive
            .entries()
            .map_err(|e| bad(&layer.path.display().to_string(), e.to_string()))?;
        for entry in entries {
            let mut entry =
                entry.map_err(|e| bad(&layer.path.display().to_string(), e.to_string()))?;
            let path = clean(&entry.path_bytes(), &layer.path)?;
            // What is remembered of an entry: its path, its link target,
            // and 64 bytes of bookkeeping (many tiny entries cost more
            // than their names).
            let target_len = entry.link_name_bytes().map_or(0, |t| t.len());
            path_bytes = path_bytes.saturating_add((path.len() + target_len + 64) as u64);
            if path_bytes > MAX_PATH_BYTES {
                return Err(bad(
                    &layer.path.display().to_string(),
                    format!(
                        "the layers' entries and paths take more than {MAX_PATH_BYTES} bytes to keep track of (no real image's)"
                    ),
                ));
            }
            if path.is_empty() {
                continue;
            }
            let (parent, name) = match path.rsplit_once('/') {
                Some((p, n)) => (p.to_string(), n.to_string()),
                None => (String::new(), path.clone()),
            };
            // A whiteout's or an opaque marker's parent is a directory of
            // this layer: it wins over a lower file or symlink there.
            if name.starts_with(".wh.") && !parent.is_empty() {
                made_dirs.add(&parent, true);
            }
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
            let kind = entry.header().entry_type();
            let shadowed = emitted.contains(&path)
                || hidden.contains(&path)
                || hidden.ancestor_of(&path).is_some()
                || opaque.ancestor_of(&path).is_some()
                || non_dirs.ancestor_of(&path).is_some()
                || (!kind.is_dir() && made_dirs.contains(&path));
            if shadowed {
                continue;
            }
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
            if !kind.is_dir() {
                non_dirs.insert(&path);
            }
            made_dirs.add(&path, kind.is_dir());
            emitted.insert(path);
        }
        for path in new_hidden {
            hidden.insert(&path);
        }
        for path in new_opaque {
            opaque.insert(&path);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    impl Layer {
        /// The layer written at `path`.
        fn open(path: PathBuf, media_type: String) -> Result<Layer, FetchError> {
            let file = std::fs::File::open(&path).map_err(skiff_io::io_err_at("read", &path))?;
            Ok(Layer {
                path,
                file,
                media_type,
            })
        }
    }

    /// A gzip layer with one file of `mib` MiB of zeros, `members` gzip
    /// members long (concatenated, as `cat a.gz b.gz` makes).
    fn zeros_layer(dir: &Path, name: &str, mib: usize, members: usize) -> Layer {
        compressed_zeros(dir, name, mib, members, false)
    }

    /// The same in zstd frames.
    fn compressed_zeros(dir: &Path, name: &str, mib: usize, members: usize, zstd: bool) -> Layer {
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size((mib << 20) as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(
            &mut header,
            name,
            std::io::repeat(0).take((mib << 20) as u64),
        )
        .unwrap();
        let bytes = tar.into_inner().unwrap();
        let mut out = Vec::new();
        for part in bytes.chunks(bytes.len().div_ceil(members)) {
            if zstd {
                out.extend(zstd::stream::encode_all(part, 19).unwrap());
            } else {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
                gz.write_all(part).unwrap();
                out.extend(gz.finish().unwrap());
            }
        }
        let path = dir.join(name);
        std::fs::write(&path, out).unwrap();
        let kind = if zstd { "zstd" } else { "gzip" };
        Layer::open(
            path,
            format!("application/vnd.oci.image.layer.v1.tar+{kind}"),
        )
        .unwrap()
    }

    #[test]
    fn zstd_layers_convert_every_frame_and_bombs_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let manifest = json!({"acKind": "ImageManifest"});
        let two = [compressed_zeros(tmp.path(), "frames", 8, 2, true)];
        let out = write_aci(Vec::new(), &manifest, &two, 250).unwrap();
        assert!(out.len() > 8 << 20, "{}", out.len());
        let bomb = [compressed_zeros(tmp.path(), "bomb", 200, 1, true)];
        let err = write_aci(std::io::sink(), &manifest, &bomb, 250)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("decompression bomb"), "{err:?}");
        // A frame that asks for a 2 GiB window is refused, not allocated.
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        encoder.window_log(31).unwrap();
        encoder.long_distance_matching(true).unwrap();
        encoder.write_all(&[0u8; 4096]).unwrap();
        let path = tmp.path().join("wide");
        std::fs::write(&path, encoder.finish().unwrap()).unwrap();
        let wide =
            [Layer::open(path, "application/vnd.oci.image.layer.v1.tar+zstd".into()).unwrap()];
        let err = write_aci(std::io::sink(), &manifest, &wide, 250)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("Frame requires too much memory"), "{err:?}");
    }

    #[test]
    fn small_bombs_add_up_to_one_and_every_gzip_member_counts() {
        let tmp = tempfile::tempdir().unwrap();
        let manifest = json!({"acKind": "ImageManifest"});
        // Each layer is under the grace; together they are not.
        let layers: Vec<Layer> = (0..3)
            .map(|i| zeros_layer(tmp.path(), &format!("l{i}"), 40, 1))
            .collect();
        let err = write_aci(std::io::sink(), &manifest, &layers, 250)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("decompression bomb"), "{err:?}");
        // One layer under the grace converts, all of it.
        let one = [zeros_layer(tmp.path(), "single", 40, 1)];
        let out = write_aci(Vec::new(), &manifest, &one, 250).unwrap();
        assert!(out.len() > 40 << 20);
        // A layer in two gzip members: the second member is read too.
        let split = [zeros_layer(tmp.path(), "split", 8, 2)];
        let out = write_aci(Vec::new(), &manifest, &split, 250).unwrap();
        assert!(out.len() > 8 << 20, "{}", out.len());
    }
}
