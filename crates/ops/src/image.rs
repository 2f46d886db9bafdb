//! Images in the store: list, remove, collect, verify, audit, export,
//! extract and render; and images as files: build, sign, validate, read
//! the manifest.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use skiff_spec::ImageId;
use skiff_spec::aci::build::{BuildError, read_layout};
use skiff_spec::aci::{FileType, detect_file_type, read_manifest_bytes, validate_aci};
use skiff_spec::image::ImageManifest;
use skiff_spec::{Manifest, parse_image_manifest, parse_manifest};
use skiff_store::ImageRecord;
use skiff_store::gc::{GcReport, VerifyProblem};

use crate::error::io;
use crate::{Context, OpsError, refuse};

/// A stored image as `skiff image list` and `skiff image inspect` show it
/// (their JSON: camelCase keys, RFC 3339 times).
#[derive(Debug, Clone)]
pub struct ImageInfo {
    pub record: ImageRecord,
    /// The digest of the OCI/Docker manifest it was converted from.
    pub origin_digest: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ImageJson<'a> {
    id: &'a str,
    name: &'a str,
    labels: &'a std::collections::BTreeMap<String, String>,
    blob_size: u64,
    size: u64,
    compression: &'a str,
    #[serde(serialize_with = "crate::pods::as_rfc3339")]
    import_time: i64,
    #[serde(serialize_with = "crate::pods::as_rfc3339")]
    last_used: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    origin_digest: Option<&'a str>,
}

impl Serialize for ImageInfo {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = &self.record;
        ImageJson {
            id: r.id.as_str(),
            name: &r.name,
            labels: &r.labels,
            blob_size: r.blob_size,
            size: r.size,
            compression: &r.compression,
            import_time: r.import_time,
            last_used: r.last_used,
            origin_digest: self.origin_digest.as_deref(),
        }
        .serialize(s)
    }
}

/// `skiff image inspect`: a stored image and its manifest.
#[derive(Debug, Clone, Serialize)]
pub struct ImageDetails {
    #[serde(flatten)]
    pub info: ImageInfo,
    pub manifest: serde_json::Value,
}

fn origin_digest(img: &ImageRecord) -> Option<String> {
    let m: serde_json::Value = serde_json::from_slice(&img.manifest).ok()?;
    m["annotations"]
        .as_array()?
        .iter()
        .find(|a| a["name"] == skiff_fetch::docker::convert::DIGEST_ANNOTATION)?["value"]
        .as_str()
        .map(str::to_string)
}

/// The stored image `query` names (name, ID or reference).
pub fn find(ctx: &Context, query: &str) -> Result<ImageRecord, OpsError> {
    Ok(stored(ctx, query)?.1)
}

/// The store and the image `query` names in it.
fn stored(ctx: &Context, query: &str) -> Result<(skiff_store::Store, ImageRecord), OpsError> {
    let store = ctx.store()?;
    let rec = skiff_fetch::resolve_stored(&store, query).map_err(OpsError::FetchSetup)?;
    Ok((store, rec))
}

/// Every stored image.
pub fn list(ctx: &Context) -> Result<Vec<ImageInfo>, OpsError> {
    Ok(ctx
        .store()?
        .images()?
        .into_iter()
        .map(|record| ImageInfo {
            origin_digest: origin_digest(&record),
            record,
        })
        .collect())
}

/// The stored image `query` names, with its manifest.
pub fn inspect(ctx: &Context, query: &str) -> Result<ImageDetails, OpsError> {
    let record = find(ctx, query)?;
    let manifest = serde_json::from_slice(&record.manifest)
        .map_err(|e| refuse!("image {}: its stored manifest is not JSON: {e}", record.id))?;
    Ok(ImageDetails {
        info: ImageInfo {
            origin_digest: origin_digest(&record),
            record,
        },
        manifest,
    })
}

/// Removes the stored image `query` names, unless a pod uses it.
pub fn remove(ctx: &Context, query: &str) -> Result<ImageId, OpsError> {
    let (store, rec) = stored(ctx, query)?;
    let pods = ctx.pods();
    store.remove(&rec.id, || pods.images_in_use(true))?;
    Ok(rec.id)
}

/// Collects images unused for `grace`, and what imports left behind.
pub fn gc(ctx: &Context, grace: Duration) -> Result<GcReport, OpsError> {
    let pods = ctx.pods();
    Ok(ctx.store()?.gc(grace, || pods.images_in_use(false))?)
}

/// Checks the store (and with `repair` repairs it): see
/// `skiff_store::fsck`.
pub fn fsck(ctx: &Context, repair: bool) -> Result<skiff_store::fsck::FsckReport, OpsError> {
    let pods = ctx.pods();
    let dir = &ctx.settings.dir;
    skiff_store::fsck::fsck(dir, repair, ctx.settings.progress, || {
        pods.images_in_use(false)
    })
    .map_err(|source| OpsError::OpenStore {
        dir: dir.clone(),
        source,
    })
}

/// What a verification found.
#[derive(Debug)]
pub struct Verification {
    /// Images checked.
    pub checked: usize,
    /// Images whose blobs do not match their IDs.
    pub problems: Vec<VerifyProblem>,
}

/// Checks that every blob (or those of `images`) matches its ID.
pub fn verify(ctx: &Context, images: &[String]) -> Result<Verification, OpsError> {
    let store = ctx.store()?;
    let wanted: Vec<String> = images
        .iter()
        .map(|i| skiff_fetch::resolve_stored(&store, i).map(|r| r.id.to_string()))
        .collect::<Result<_, _>>()
        .map_err(OpsError::FetchSetup)?;
    let (checked, problems) = store.verify()?;
    let problems = problems
        .into_iter()
        .filter(|p| wanted.is_empty() || wanted.contains(&p.image))
        .collect();
    Ok(Verification {
        checked: if wanted.is_empty() {
            checked
        } else {
            wanted.len()
        },
        problems,
    })
}

/// What is inside an image, and what is known to be wrong with it.
#[derive(Debug)]
pub struct Audit {
    pub inventory: skiff_audit::Inventory,
    pub name: String,
    pub version: Option<String>,
    /// Known vulnerabilities, when a vulnerability database was imported.
    pub findings: Option<Vec<skiff_audit::osv::Finding>>,
}

impl Audit {
    /// A CycloneDX SBOM of the image (with its vulnerabilities, if known).
    pub fn cyclonedx(&self) -> Result<serde_json::Value, OpsError> {
        let uuid = skiff_pod::new_uuid().map_err(io("make a serial number"))?;
        let mut sbom = skiff_audit::sbom::cyclonedx(
            &self.inventory,
            &self.name,
            self.version.as_deref(),
            &uuid,
            &skiff_audit::sbom::rfc3339(skiff_pod::now()),
        );
        if let Some(f) = &self.findings {
            sbom["vulnerabilities"] = skiff_audit::sbom::vulnerabilities(&self.inventory, f);
        }
        Ok(sbom)
    }
}

/// Audits an ACI file, or the stored image `image` names.
pub fn audit(ctx: &Context, image: &str) -> Result<Audit, OpsError> {
    let (inventory, name, version) = if Path::new(image).is_file() {
        let file = File::open(image).map_err(io(format!("read {image}")))?;
        let manifest = read_manifest_bytes(BufReader::new(file))
            .map_err(|e| refuse!("{image}: not an image: {e}"))?;
        let m = parse_image_manifest(&manifest).map_err(|e| refuse!("{image}: {e}"))?;
        let version = m
            .labels
            .iter()
            .find(|l| l.name.as_str() == "version")
            .map(|l| l.value.clone());
        (
            skiff_audit::source::from_aci(Path::new(image))?,
            m.name.to_string(),
            version,
        )
    } else {
        let (store, rec) = stored(ctx, image)?;
        let tree = store.render(&rec.id)?;
        (
            skiff_audit::source::from_tree(&tree.rootfs())?,
            rec.name.clone(),
            rec.labels.get("version").cloned(),
        )
    };
    let db_path = crate::vulndb::path(ctx);
    let findings = if db_path.exists() {
        let conn = skiff_audit::osv::open(&db_path)?;
        Some(skiff_audit::osv::findings(&conn, &inventory)?)
    } else {
        None
    };
    Ok(Audit {
        inventory,
        name,
        version,
        findings,
    })
}

/// Signs the ACI `aci` with the secret key in `key`; writes the armored
/// signature to `out` (default: `<aci>.asc`) and returns where.
pub fn sign(aci: &Path, key: &Path, out: Option<PathBuf>) -> Result<PathBuf, OpsError> {
    let key_bytes = std::fs::read(key).map_err(io(format!("read {}", key.display())))?;
    let open = || File::open(aci).map_err(io(format!("read {}", aci.display())));
    read_manifest_bytes(BufReader::new(open()?))
        .map_err(|e| refuse!("{}: not an image: {e}", aci.display()))?;
    let signature = skiff_trust::sign::sign_detached(&key_bytes, BufReader::new(open()?))?;
    let out = out.unwrap_or_else(|| {
        let mut name = aci.as_os_str().to_owned();
        name.push(".asc");
        PathBuf::from(name)
    });
    std::fs::write(&out, signature).map_err(io(format!("write {}", out.display())))?;
    Ok(out)
}

/// Writes the piece list of the ACI file `aci` (to `out`, default
/// ACI.pieces): published beside the image and its signature, it lets a
/// site's hosts fetch the image as a swarm (docs/distribution.md).
pub fn pieces(aci: &Path, out: Option<PathBuf>) -> Result<(PathBuf, usize), OpsError> {
    let open = || File::open(aci).map_err(io(format!("read {}", aci.display())));
    read_manifest_bytes(BufReader::new(open()?))
        .map_err(|e| refuse!("{}: not an image: {e}", aci.display()))?;
    let file = open()?;
    let size = file
        .metadata()
        .map_err(io(format!("read {}", aci.display())))?
        .len();
    let list = skiff_share::protocol::PieceList::of(BufReader::new(file), size)
        .map_err(io(format!("read {}", aci.display())))?;
    let out = out.unwrap_or_else(|| {
        let mut name = aci.as_os_str().to_owned();
        name.push(".pieces");
        PathBuf::from(name)
    });
    let json =
        serde_json::to_vec(&list).map_err(|e| refuse!("cannot write the piece list: {e}"))?;
    std::fs::write(&out, json).map_err(io(format!("write {}", out.display())))?;
    Ok((out, list.sha256.len()))
}

/// What `export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// The ACI as stored.
    Aci,
    /// An OCI image layout (a directory).
    Oci,
}

/// What was exported.
#[derive(Debug)]
pub struct Exported {
    pub record: ImageRecord,
    /// The layout's reference (OCI only).
    pub tag: Option<String>,
}

/// The directory an export writes its temporary output in (beside
/// `out`); refuses an existing `out` without `overwrite`.
fn output_parent(out: &Path, overwrite: bool) -> Result<&Path, OpsError> {
    if !overwrite && out.exists() {
        return Err(refuse!(
            "{} already exists (use --overwrite to replace it)",
            out.display()
        ));
    }
    Ok(out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new(".")))
}

/// Writes the stored image `image` names to `out`, whole or not at all.
pub fn export(
    ctx: &Context,
    image: &str,
    out: &Path,
    overwrite: bool,
    format: ExportFormat,
) -> Result<Exported, OpsError> {
    let (store, rec) = stored(ctx, image)?;
    let parent = output_parent(out, overwrite)?;
    let write_in = || io(format!("write in {}", parent.display()));
    if format == ExportFormat::Aci {
        let mut tmp = tempfile::NamedTempFile::new_in(parent).map_err(write_in())?;
        let blob = File::open(store.blob_path(&rec.id)).map_err(io("read the stored image"))?;
        let bar = skiff_io::progress::bar(
            ctx.settings.progress,
            &format!("exporting {}", rec.name),
            Some(rec.blob_size),
        );
        std::io::copy(&mut bar.wrap_read(blob), tmp.as_file_mut())
            .map_err(io("write the export"))?;
        drop(bar);
        tmp.as_file().sync_all().map_err(io("write the export"))?;
        tmp.persist(out)
            .map_err(|e| io(format!("write {}", out.display()))(e.error))?;
        return Ok(Exported {
            record: rec,
            tag: None,
        });
    }
    let manifest: ImageManifest = parse_image_manifest(&rec.manifest)
        .map_err(|e| refuse!("the stored manifest of {}: {e}", rec.name))?;
    let tree = store.render(&rec.id)?;
    let tag = rec
        .labels
        .get("version")
        .cloned()
        .unwrap_or_else(|| "latest".into());
    let tmp = tempfile::tempdir_in(parent).map_err(write_in())?;
    skiff_fetch::docker::export::write_layout(&tree.rootfs(), &manifest, &tag, tmp.path())
        .map_err(OpsError::FetchSetup)?;
    if out.exists() {
        std::fs::remove_dir_all(out).map_err(io(format!("replace {}", out.display())))?;
    }
    let kept = tmp.keep();
    std::fs::rename(&kept, out).map_err(io(format!("write {}", out.display())))?;
    Ok(Exported {
        record: rec,
        tag: Some(tag),
    })
}

/// Writes the stored image `image` names into `target`: its own files
/// (`with_dependencies` false) or rendered with its dependencies;
/// `rootfs_only` leaves out the manifest.
pub fn unpack(
    ctx: &Context,
    image: &str,
    target: &Path,
    with_dependencies: bool,
    rootfs_only: bool,
) -> Result<ImageRecord, OpsError> {
    let (store, rec) = stored(ctx, image)?;
    store.extract_to(&rec.id, target, with_dependencies, rootfs_only)?;
    Ok(rec)
}

/// The image manifest of an ACI file, or of the stored image `image` names.
pub fn manifest(ctx: &Context, image: &str) -> Result<ImageManifest, OpsError> {
    let aci = Path::new(image);
    if !aci.is_file() {
        let rec = find(ctx, image)?;
        return parse_image_manifest(&rec.manifest).map_err(|e| OpsError::Image {
            what: "the stored manifest is invalid".to_string(),
            source: Box::new(e),
        });
    }
    let file = File::open(aci).map_err(io(format!("open {}", aci.display())))?;
    let bytes = read_manifest_bytes(BufReader::new(file)).map_err(|e| OpsError::Image {
        what: format!("cannot read {}", aci.display()),
        source: Box::new(e),
    })?;
    parse_image_manifest(&bytes).map_err(|e| OpsError::Image {
        what: format!("{} has an invalid image manifest", aci.display()),
        source: Box::new(e),
    })
}

/// Checks an image layout directory (`manifest` + `rootfs/`).
fn validate_layout(dir: &Path) -> Result<String, Vec<String>> {
    match read_layout(dir) {
        Ok((manifest, _)) => Ok(format!("valid image layout, {}", manifest.name)),
        Err(BuildError::Manifest { source, .. }) => Err(source
            .lines()
            .into_iter()
            .map(|l| format!("invalid image manifest: {l}"))
            .collect()),
        Err(other) => Err(vec![skiff_stage1::error_line(&other)]),
    }
}

/// Checks a manifest, ACI or image layout directory: what it is, or one
/// line per problem.
pub fn validate(path: &Path) -> Result<String, Vec<String>> {
    if path.is_dir() {
        return validate_layout(path);
    }
    let mut file = File::open(path).map_err(|e| vec![format!("cannot open: {e}")])?;
    let mut head = Vec::with_capacity(512);
    (&mut file)
        .take(512)
        .read_to_end(&mut head)
        .map_err(|e| vec![format!("cannot read: {e}")])?;
    let rest = BufReader::new(file);
    match detect_file_type(&head) {
        FileType::Archive(_) => {
            let info =
                validate_aci(std::io::Cursor::new(head).chain(rest)).map_err(|e| e.lines())?;
            Ok(format!(
                "valid ACI, {} {}",
                info.manifest.name, info.image_id
            ))
        }
        FileType::Text => {
            let mut bytes = head;
            BufReader::new(rest)
                .read_to_end(&mut bytes)
                .map_err(|e| vec![format!("cannot read: {e}")])?;
            match parse_manifest(&bytes).map_err(|e| e.lines())? {
                Manifest::Image(m) => Ok(format!("valid ImageManifest {}", m.name)),
                Manifest::Pod(m) => Ok(format!("valid PodManifest with {} app(s)", m.apps.len())),
            }
        }
        FileType::Unknown => Err(vec![
            "unrecognized file type (expected a JSON manifest or an ACI)".to_string(),
        ]),
    }
}

/// Builds the ACI `out` from the image layout `layout`, its manifest
/// changed by `edit` (or made by it, where the layout has none).
pub fn build(
    layout: &Path,
    out: &Path,
    compression: skiff_spec::aci::Compression,
    owner_root: bool,
    edit: &skiff_spec::edit::ManifestEdit,
    overwrite: bool,
    progress: bool,
) -> Result<skiff_spec::aci::build::Built, OpsError> {
    let manifest = if edit.is_empty() {
        None
    } else {
        let path = layout.join("manifest");
        let base = std::fs::read(&path).ok();
        let edited = edit
            .apply(base.as_deref(), &skiff_fetch::default_os_arch())
            .map_err(|e| match e {
                skiff_spec::edit::EditError::NoName => {
                    refuse!("{} has no manifest: give at least --name", layout.display())
                }
                source => OpsError::Edit { path, source },
            })?;
        Some(edited)
    };
    let options = skiff_spec::aci::build::BuildOptions {
        compression,
        owner_root,
        manifest,
        progress: progress.then(|| {
            let file = out.file_name().map_or(out.as_os_str(), |f| f);
            format!("building {}", Path::new(file).display())
        }),
    };
    Ok(skiff_spec::aci::build::build_aci_file(
        layout, out, &options, overwrite,
    )?)
}
