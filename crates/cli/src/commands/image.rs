use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use crate::config::GlobalArgs;
use crate::format::{human_size, human_time};
use clap::{Args, Subcommand, ValueEnum};
use skiff_spec::aci::build::{BuildError, BuildOptions, build_aci_file, read_layout};
use skiff_spec::aci::{Compression, FileType, detect_file_type, read_manifest_bytes, validate_aci};
use skiff_spec::{Manifest, parse_image_manifest, parse_manifest, to_pretty_json};

#[derive(Subcommand)]
pub enum ImageCommand {
    /// Build an ACI from an image layout directory.
    ///
    /// DIR must hold a `manifest` file (a valid appc image manifest) and a
    /// `rootfs/` directory. Modes, owners, symlinks, hard links and device
    /// nodes are kept. The file is written atomically. Prints the image ID
    /// (SHA-512 of the uncompressed tar) on stdout.
    Build(Box<BuildArgs>),
    /// Validate image manifests, pod manifests, ACI files and image layouts.
    ///
    /// Each FILE may be a JSON manifest (image or pod, by its acKind), an
    /// ACI (plain tar or gzip/bzip2/xz-compressed) or an image layout
    /// directory (`manifest` + `rootfs/`). Prints one line per
    /// problem on stderr; exits 0 if every file is valid, 1 otherwise.
    Validate(ValidateArgs),
    /// Print the image manifest of a stored image or an ACI file as indented JSON.
    CatManifest(CatManifestArgs),
    /// List the images in the store.
    List(ListArgs),
    /// Remove images from the store.
    Rm {
        /// Image IDs (or unique prefixes) or names (`name[:version]`).
        #[arg(required = true, value_name = "IMAGE")]
        images: Vec<String>,
    },
    /// Remove images unused for longer than the grace period, and leftovers
    /// of interrupted imports and renders. Images used by a pod are kept.
    Gc {
        /// How long an image must have been unused (e.g. 24h, 30m, 0s).
        #[arg(long, default_value = "24h", value_parser = crate::config::parse_duration)]
        grace_period: std::time::Duration,
    },
    /// Re-hash stored images and report any whose content no longer matches its ID.
    Verify {
        /// Images to check (default: all).
        #[arg(value_name = "IMAGE")]
        images: Vec<String>,
    },
    /// Write a stored image to an ACI file, byte for byte as it was imported.
    Export {
        image: String,
        out: PathBuf,
        /// Replace OUT if it exists.
        #[arg(long)]
        overwrite: bool,
        /// `aci`: the stored ACI as is (OUT is a file); `oci`: an OCI image
        /// layout directory with the image as pods see it (with its
        /// dependencies), tagged with its version label (or `latest`), for
        /// skopeo, umoci, podman.
        #[arg(long, default_value = "aci", value_parser = ["aci", "oci"])]
        format: String,
    },
    /// What is inside an image: its packages (from dpkg's and apk's
    /// databases) as a table, JSON or a CycloneDX 1.5 SBOM. IMAGE is an
    /// image in the store (with its dependencies, as pods see it) or an
    /// ACI file (that image alone).
    Audit {
        image: String,
        #[arg(long, default_value = "table", value_parser = ["table", "json", "cyclonedx"])]
        format: String,
    },
    /// Sign an image file: an armored detached OpenPGP signature (what
    /// `skiff fetch` looks for beside it, and `gpg --verify` checks).
    Sign {
        aci: PathBuf,
        /// The secret key (armored or binary, no passphrase), e.g. from
        /// `skiff key generate`.
        #[arg(long)]
        key: PathBuf,
        /// Where to write the signature (default ACI.asc).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Unpack one stored image (without its dependencies) into a new directory.
    Extract(UnpackArgs),
    /// Unpack a stored image with its dependencies (as pods see it) into a new directory.
    Render(UnpackArgs),
}

#[derive(Args)]
pub struct ListArgs {
    #[arg(long, value_enum, default_value = "table")]
    format: ListFormat,
    /// Leave out the header line.
    #[arg(long)]
    no_legend: bool,
    /// Show full image IDs.
    #[arg(long)]
    full: bool,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

#[derive(Args)]
pub struct UnpackArgs {
    /// Image ID (or unique prefix) or name.
    image: String,
    /// Directory to create (must not exist or be empty).
    #[arg(value_name = "DIR")]
    target: PathBuf,
    /// Unpack only the root filesystem (no `manifest`, no `rootfs/` level).
    #[arg(long)]
    rootfs_only: bool,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum CompressionArg {
    Gzip,
    Xz,
    Bzip2,
    None,
}

#[derive(Args)]
pub struct BuildArgs {
    /// Image layout directory (with `manifest` and `rootfs/`).
    #[arg(value_name = "DIR")]
    layout: PathBuf,
    /// Where to write the ACI.
    out: PathBuf,
    /// Compression of the archive.
    #[arg(long, value_enum, default_value = "gzip")]
    compression: CompressionArg,
    /// Replace OUT if it exists.
    #[arg(long)]
    overwrite: bool,
    /// Record all files as owned by root (uid 0, gid 0).
    #[arg(long)]
    owner_root: bool,
    /// The image name (with these options DIR needs no `manifest`; with
    /// one, they change it).
    #[arg(long)]
    name: Option<String>,
    /// A label NAME=VALUE (repeatable; os and arch default to this machine's).
    #[arg(long = "label", value_name = "NAME=VALUE")]
    labels: Vec<String>,
    /// The app's command: words separated by spaces, or a JSON array.
    #[arg(long)]
    exec: Option<String>,
    /// The app's user and group (default 0).
    #[arg(long)]
    user: Option<String>,
    #[arg(long)]
    group: Option<String>,
    /// The app's working directory.
    #[arg(long)]
    working_dir: Option<String>,
    /// An environment variable NAME=VALUE (repeatable).
    #[arg(long = "env", value_name = "NAME=VALUE")]
    envs: Vec<String>,
    /// A port NAME:PROTOCOL:PORT, e.g. http:tcp:8080 (repeatable).
    #[arg(long = "port", value_name = "NAME:PROTOCOL:PORT")]
    ports: Vec<String>,
    /// A mount point NAME:PATH[:ro] (repeatable).
    #[arg(long = "mount-point", value_name = "NAME:PATH[:ro]")]
    mount_points: Vec<String>,
    /// A dependency IMAGE[,LABEL=VALUE...] (repeatable).
    #[arg(long = "dependency", value_name = "IMAGE[,LABEL=VALUE]")]
    dependencies: Vec<String>,
    /// An annotation NAME=VALUE (repeatable).
    #[arg(long = "annotation", value_name = "NAME=VALUE")]
    annotations: Vec<String>,
}

impl BuildArgs {
    /// The manifest the flags describe, on top of the layout's (if any);
    /// None when no manifest flag is given.
    fn manifest(&self) -> anyhow::Result<Option<Vec<u8>>> {
        use serde_json::{Value, json};
        let any_flag = self.name.is_some()
            || !self.labels.is_empty()
            || self.exec.is_some()
            || self.user.is_some()
            || self.group.is_some()
            || self.working_dir.is_some()
            || !self.envs.is_empty()
            || !self.ports.is_empty()
            || !self.mount_points.is_empty()
            || !self.dependencies.is_empty()
            || !self.annotations.is_empty();
        if !any_flag {
            return Ok(None);
        }
        let pair = |flag: &str, s: &str| -> anyhow::Result<(String, String)> {
            s.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| anyhow::anyhow!("--{flag}={s}: expected NAME=VALUE"))
        };
        let path = self.layout.join("manifest");
        let mut m: Value = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
            Err(_) => {
                let name = self.name.clone().ok_or_else(|| {
                    anyhow::anyhow!(
                        "{} has no manifest: give at least --name",
                        self.layout.display()
                    )
                })?;
                let [(_, os), (_, arch)] = skiff_fetch::default_os_arch();
                json!({"acKind": "ImageManifest", "acVersion": "0.8.11", "name": name,
                       "labels": [{"name": "os", "value": os}, {"name": "arch", "value": arch}]})
            }
        };
        if let Some(n) = &self.name {
            m["name"] = json!(n);
        }
        let set_named = |list: &mut Value, name: &str, entry: Value| {
            if !list.is_array() {
                *list = json!([]);
            }
            if let Some(arr) = list.as_array_mut() {
                arr.retain(|e| e["name"] != name);
                arr.push(entry);
            }
        };
        for l in &self.labels {
            let (k, v) = pair("label", l)?;
            set_named(&mut m["labels"], &k, json!({"name": k, "value": v}));
        }
        for a in &self.annotations {
            let (k, v) = pair("annotation", a)?;
            set_named(&mut m["annotations"], &k, json!({"name": k, "value": v}));
        }
        let app_flags = self.exec.is_some()
            || self.user.is_some()
            || self.group.is_some()
            || self.working_dir.is_some()
            || !self.envs.is_empty()
            || !self.ports.is_empty()
            || !self.mount_points.is_empty();
        if app_flags {
            if !m["app"].is_object() {
                m["app"] = json!({"user": "0", "group": "0"});
            }
            let app = &mut m["app"];
            if let Some(e) = &self.exec {
                let exec: Vec<String> = if e.trim_start().starts_with('[') {
                    serde_json::from_str(e).map_err(|err| anyhow::anyhow!("--exec: {err}"))?
                } else {
                    e.split_whitespace().map(str::to_string).collect()
                };
                app["exec"] = json!(exec);
            }
            if let Some(u) = &self.user {
                app["user"] = json!(u);
            }
            if let Some(g) = &self.group {
                app["group"] = json!(g);
            }
            if let Some(w) = &self.working_dir {
                app["workingDirectory"] = json!(w);
            }
            for e in &self.envs {
                let (k, v) = pair("env", e)?;
                set_named(&mut app["environment"], &k, json!({"name": k, "value": v}));
            }
            for p in &self.ports {
                let parts: Vec<&str> = p.split(':').collect();
                let [name, protocol, port] = parts.as_slice() else {
                    anyhow::bail!("--port={p}: expected NAME:PROTOCOL:PORT");
                };
                let port: u64 = port
                    .parse()
                    .map_err(|_| anyhow::anyhow!("--port={p}: bad port"))?;
                set_named(
                    &mut app["ports"],
                    name,
                    json!({"name": name, "protocol": protocol, "port": port}),
                );
            }
            for mp in &self.mount_points {
                let parts: Vec<&str> = mp.split(':').collect();
                let (name, path, ro) = match parts.as_slice() {
                    [n, p] => (*n, *p, false),
                    [n, p, "ro"] => (*n, *p, true),
                    _ => anyhow::bail!("--mount-point={mp}: expected NAME:PATH[:ro]"),
                };
                set_named(
                    &mut app["mountPoints"],
                    name,
                    json!({"name": name, "path": path, "readOnly": ro}),
                );
            }
        }
        for d in &self.dependencies {
            let mut parts = d.split(',');
            let image = parts.next().unwrap_or_default();
            let labels = parts
                .map(|l| pair("dependency", l).map(|(k, v)| json!({"name": k, "value": v})))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let mut dep = json!({"imageName": image});
            if !labels.is_empty() {
                dep["labels"] = json!(labels);
            }
            if !m["dependencies"].is_array() {
                m["dependencies"] = json!([]);
            }
            if let Some(arr) = m["dependencies"].as_array_mut() {
                arr.push(dep);
            }
        }
        Ok(Some(serde_json::to_vec_pretty(&m)?))
    }
}

#[derive(Args)]
pub struct ValidateArgs {
    /// Manifests (JSON), ACI files or image layout directories to check.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

#[derive(Args)]
pub struct CatManifestArgs {
    /// A stored image (ID, prefix or name) or an ACI file.
    image: String,
}

pub fn run(global: &GlobalArgs, cmd: ImageCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ImageCommand::Build(args) => build(*args),
        ImageCommand::Validate(args) => Ok(validate(&args.files)),
        ImageCommand::CatManifest(args) => cat_manifest(global, &args.image),
        ImageCommand::List(args) => list(global, &args),
        ImageCommand::Rm { images } => {
            let store = global.context()?.store()?;
            let pods = skiff_pod::Pods::new(&global.dir);
            for image in &images {
                let rec = skiff_fetch::resolve_stored(&store, image)?;
                store.remove(&rec.id, || pods.images_in_use(true))?;
                println!("{}", rec.id);
            }
            Ok(ExitCode::SUCCESS)
        }
        ImageCommand::Gc { grace_period } => {
            let ctx = global.context()?;
            let pods = ctx.pods();
            let report = ctx
                .store()?
                .gc(grace_period, || pods.images_in_use(false))?;
            for id in &report.images {
                println!("{id}");
            }
            eprintln!(
                "removed {} image(s), {} tree(s), {} cached layer(s), {} unfinished import(s), {} orphan blob(s); kept {} image(s) used by pods",
                report.images.len(),
                report.trees,
                report.layers,
                report.staging_files,
                report.orphan_blobs,
                report.kept_in_use
            );
            Ok(ExitCode::SUCCESS)
        }
        ImageCommand::Verify { images } => verify(global, &images),
        ImageCommand::Export {
            image,
            out,
            overwrite,
            format,
        } if format == "oci" => export_oci(global, &image, &out, overwrite),
        ImageCommand::Export {
            image,
            out,
            overwrite,
            ..
        } => export(global, &image, &out, overwrite),
        ImageCommand::Sign { aci, key, out } => sign(&aci, &key, out),
        ImageCommand::Audit { image, format } => audit(global, &image, &format),
        ImageCommand::Extract(args) => unpack(global, &args, false),
        ImageCommand::Render(args) => unpack(global, &args, true),
    }
}

/// The digest of the OCI/Docker manifest an image was converted from.
fn origin_digest(img: &skiff_store::ImageRecord) -> Option<String> {
    let m: serde_json::Value = serde_json::from_slice(&img.manifest).ok()?;
    m["annotations"]
        .as_array()?
        .iter()
        .find(|a| a["name"] == skiff_fetch::docker::convert::DIGEST_ANNOTATION)?["value"]
        .as_str()
        .map(str::to_string)
}

fn list(global: &GlobalArgs, args: &ListArgs) -> anyhow::Result<ExitCode> {
    let images = global.context()?.store()?.images()?;
    if let ListFormat::Json = args.format {
        let rows: Vec<serde_json::Value> = images
            .iter()
            .map(|img| {
                let mut v = serde_json::to_value(img).unwrap_or_default();
                if let Some(d) = origin_digest(img) {
                    v["originDigest"] = serde_json::Value::String(d);
                }
                v
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    let width = if args.full { 135 } else { 39 };
    if !args.no_legend {
        println!(
            "{:<width$} {:<40} {:>10} {:<20} {:<20} ORIGIN",
            "ID", "NAME", "SIZE", "IMPORTED", "LAST USED"
        );
    }
    for img in &images {
        let id = if args.full {
            img.id.as_str()
        } else {
            img.id.short()
        };
        let version = img
            .labels
            .get("version")
            .map_or(String::new(), |v| format!(":{v}"));
        let origin = origin_digest(img).map_or(String::new(), |d| {
            if args.full {
                d
            } else {
                d.chars().take(19).collect()
            }
        });
        println!(
            "{:<width$} {:<40} {:>10} {:<20} {:<20} {}",
            id,
            format!("{}{version}", img.name),
            human_size(img.blob_size),
            human_time(img.import_time),
            human_time(img.last_used),
            origin
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn verify(global: &GlobalArgs, images: &[String]) -> anyhow::Result<ExitCode> {
    let store = global.context()?.store()?;
    let wanted: Vec<String> = images
        .iter()
        .map(|i| skiff_fetch::resolve_stored(&store, i).map(|r| r.id.to_string()))
        .collect::<Result<_, _>>()?;
    let (checked, problems) = store.verify()?;
    let problems: Vec<_> = problems
        .into_iter()
        .filter(|p| wanted.is_empty() || wanted.contains(&p.image))
        .collect();
    for p in &problems {
        eprintln!("{}: {}", p.image, p.problem);
    }
    let count = if wanted.is_empty() {
        checked
    } else {
        wanted.len()
    };
    if problems.is_empty() {
        println!("{count} image(s) verified: every blob matches its ID");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "{} of {count} image(s) are corrupt (remove them with `skiff image rm` and fetch again)",
            problems.len()
        );
        Ok(ExitCode::FAILURE)
    }
}

fn audit(global: &GlobalArgs, image: &str, format: &str) -> anyhow::Result<ExitCode> {
    let (inventory, name, version) = if Path::new(image).is_file() {
        let manifest = skiff_spec::aci::read_manifest_bytes(std::io::BufReader::new(
            File::open(image).with_context(|| format!("cannot read {image}"))?,
        ))
        .map_err(|e| anyhow::anyhow!("{image}: not an image: {e}"))?;
        let m = skiff_spec::parse_image_manifest(&manifest)
            .map_err(|e| anyhow::anyhow!("{image}: {e}"))?;
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
        let store = global.context()?.store()?;
        let rec = skiff_fetch::resolve_stored(&store, image)?;
        let tree = store.render(&rec.id)?;
        let version = rec.labels.get("version").cloned();
        (
            skiff_audit::source::from_tree(&tree.join("rootfs"))?,
            rec.name.clone(),
            version,
        )
    };
    // Findings, when a vulnerability database has been imported.
    let db_path = global.dir.join("vuln/osv.sqlite");
    let findings = if db_path.exists() {
        let conn = skiff_audit::osv::open(&db_path)?;
        Some(skiff_audit::osv::findings(&conn, &inventory)?)
    } else {
        None
    };
    match format {
        "json" => {
            let mut v = serde_json::to_value(&inventory)?;
            if let Some(f) = &findings {
                v["vulnerabilities"] = serde_json::to_value(f)?;
            }
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        "cyclonedx" => {
            let mut sbom = skiff_audit::sbom::cyclonedx(
                &inventory,
                &name,
                version.as_deref(),
                &skiff_pod::new_uuid()?,
                &skiff_audit::sbom::rfc3339(skiff_pod::now()),
            );
            if let Some(f) = &findings {
                sbom["vulnerabilities"] = skiff_audit::sbom::vulnerabilities(&inventory, f);
            }
            println!("{}", serde_json::to_string_pretty(&sbom)?);
        }
        _ => {
            println!("{:<40} {:<32} {:<6} ARCH", "PACKAGE", "VERSION", "TYPE");
            for p in &inventory.packages {
                println!(
                    "{:<40} {:<32} {:<6} {}",
                    p.name,
                    p.version,
                    format!("{:?}", p.ecosystem).to_ascii_lowercase(),
                    p.arch.as_deref().unwrap_or("")
                );
            }
            let distro = inventory
                .distro
                .as_ref()
                .map_or("unknown distribution".to_string(), |(id, v)| {
                    format!("{id} {v}")
                });
            eprintln!("{} package(s); {distro}", inventory.packages.len());
            match &findings {
                None => eprintln!(
                    "no vulnerability database: import OSV advisories with `skiff vuln-db import DIR`"
                ),
                Some(f) => {
                    if !f.is_empty() {
                        println!(
                            "\n{:<22} {:<28} {:<9} {:<6} {:<24} ALIASES",
                            "ADVISORY", "PACKAGE", "SEVERITY", "SCORE", "FIXED IN"
                        );
                    }
                    for v in f {
                        println!(
                            "{:<22} {:<28} {:<9} {:<6} {:<24} {}",
                            v.id,
                            format!("{} {}", v.package, v.version),
                            v.severity,
                            v.score.map_or(String::new(), |s| format!("{s:.1}")),
                            v.fixed.as_deref().unwrap_or("-"),
                            v.aliases.join(",")
                        );
                    }
                    eprintln!("{} known vulnerabilit(ies)", f.len());
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn sign(aci: &Path, key: &Path, out: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let key_bytes = std::fs::read(key).with_context(|| format!("cannot read {}", key.display()))?;
    let file = File::open(aci).with_context(|| format!("cannot read {}", aci.display()))?;
    skiff_spec::aci::read_manifest_bytes(std::io::BufReader::new(
        File::open(aci).with_context(|| format!("cannot read {}", aci.display()))?,
    ))
    .map_err(|e| anyhow::anyhow!("{}: not an image: {e}", aci.display()))?;
    let signature = skiff_trust::sign::sign_detached(&key_bytes, std::io::BufReader::new(file))?;
    let out = out.unwrap_or_else(|| {
        let mut name = aci.as_os_str().to_owned();
        name.push(".asc");
        PathBuf::from(name)
    });
    std::fs::write(&out, signature).with_context(|| format!("cannot write {}", out.display()))?;
    eprintln!("signed {} -> {}", aci.display(), out.display());
    Ok(ExitCode::SUCCESS)
}

/// The directory an export writes its temporary output in (beside
/// `out`); refuses an existing `out` without `--overwrite`.
fn output_parent(out: &Path, overwrite: bool) -> anyhow::Result<&Path> {
    if !overwrite && out.exists() {
        anyhow::bail!(
            "{} already exists (use --overwrite to replace it)",
            out.display()
        );
    }
    Ok(out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new(".")))
}

fn export_oci(
    global: &GlobalArgs,
    image: &str,
    out: &Path,
    overwrite: bool,
) -> anyhow::Result<ExitCode> {
    let store = global.context()?.store()?;
    let rec = skiff_fetch::resolve_stored(&store, image)?;
    let parent = output_parent(out, overwrite)?;
    let manifest = skiff_spec::parse_image_manifest(&rec.manifest)
        .map_err(|e| anyhow::anyhow!("the stored manifest of {}: {e}", rec.name))?;
    let tree = store.render(&rec.id)?;
    let tag = rec
        .labels
        .get("version")
        .cloned()
        .unwrap_or_else(|| "latest".into());
    let tmp = tempfile::tempdir_in(parent)
        .with_context(|| format!("cannot write in {}", parent.display()))?;
    skiff_fetch::docker::export::write_layout(&tree.join("rootfs"), &manifest, &tag, tmp.path())?;
    if out.exists() {
        std::fs::remove_dir_all(out)
            .with_context(|| format!("cannot replace {}", out.display()))?;
    }
    let kept = tmp.keep();
    std::fs::rename(&kept, out).with_context(|| format!("cannot write {}", out.display()))?;
    eprintln!(
        "exported {} ({}) as an OCI layout to {} (ref {tag})",
        rec.name,
        rec.id.short(),
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn export(
    global: &GlobalArgs,
    image: &str,
    out: &Path,
    overwrite: bool,
) -> anyhow::Result<ExitCode> {
    let store = global.context()?.store()?;
    let rec = skiff_fetch::resolve_stored(&store, image)?;
    let parent = output_parent(out, overwrite)?;
    let mut tmp = tempfile::NamedTempFile::new_in(parent)
        .with_context(|| format!("cannot write in {}", parent.display()))?;
    let mut blob = File::open(store.blob_path(&rec.id)).context("cannot read the stored image")?;
    std::io::copy(&mut blob, tmp.as_file_mut()).context("cannot write the export")?;
    tmp.as_file().sync_all()?;
    tmp.persist(out)
        .with_context(|| format!("cannot write {}", out.display()))?;
    eprintln!(
        "exported {} ({}) to {}",
        rec.name,
        rec.id.short(),
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn unpack(
    global: &GlobalArgs,
    args: &UnpackArgs,
    with_dependencies: bool,
) -> anyhow::Result<ExitCode> {
    let store = global.context()?.store()?;
    let rec = skiff_fetch::resolve_stored(&store, &args.image)?;
    store.extract_to(&rec.id, &args.target, with_dependencies, args.rootfs_only)?;
    eprintln!(
        "{} {} into {}",
        if with_dependencies {
            "rendered"
        } else {
            "extracted"
        },
        rec.name,
        args.target.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn build(args: BuildArgs) -> anyhow::Result<ExitCode> {
    let options = BuildOptions {
        compression: match args.compression {
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::Xz => Compression::Xz,
            CompressionArg::Bzip2 => Compression::Bzip2,
            CompressionArg::None => Compression::None,
        },
        owner_root: args.owner_root,
        manifest: args.manifest()?,
    };
    let built = build_aci_file(&args.layout, &args.out, &options, args.overwrite)?;
    eprintln!(
        "built {} ({}, {} compression)",
        args.out.display(),
        built.manifest.name,
        options.compression.name()
    );
    println!("{}", built.image_id);
    Ok(ExitCode::SUCCESS)
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

/// Checks one file (or layout directory); returns its description or one
/// line per problem.
fn validate_file(path: &Path) -> Result<String, Vec<String>> {
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

fn validate(files: &[PathBuf]) -> ExitCode {
    let mut ok = true;
    for path in files {
        match validate_file(path) {
            Ok(what) => println!("{}: {what}", path.display()),
            Err(problems) => {
                ok = false;
                for problem in problems {
                    eprintln!("{}: {problem}", path.display());
                }
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn cat_manifest(global: &GlobalArgs, image: &str) -> anyhow::Result<ExitCode> {
    let aci = Path::new(image);
    if !aci.is_file() {
        let rec = skiff_fetch::resolve_stored(&global.context()?.store()?, image)?;
        let manifest =
            parse_image_manifest(&rec.manifest).context("the stored manifest is invalid")?;
        println!("{}", to_pretty_json(&manifest));
        return Ok(ExitCode::SUCCESS);
    }
    let file = File::open(aci).with_context(|| format!("cannot open {}", aci.display()))?;
    let bytes = read_manifest_bytes(BufReader::new(file))
        .with_context(|| format!("cannot read {}", aci.display()))?;
    let manifest = parse_image_manifest(&bytes)
        .with_context(|| format!("{} has an invalid image manifest", aci.display()))?;
    println!("{}", to_pretty_json(&manifest));
    Ok(ExitCode::SUCCESS)
}
