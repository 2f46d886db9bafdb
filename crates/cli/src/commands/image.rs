use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use skiff_spec::aci::Compression;
use skiff_spec::edit::{AppEdit, DependencyEdit, ManifestEdit, MountPointEdit, PortEdit};

use crate::config::GlobalArgs;
use crate::format::{human_size, human_time, print_json, printable};

#[derive(Subcommand, Debug)]
#[command(defer = true)]
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
    /// Show stored images as a JSON array (podman's image inspect): ID,
    /// name, labels, sizes, import and last-use times, the digest of the
    /// OCI manifest it came from, and the image manifest.
    Inspect {
        /// Image IDs (or unique prefixes) or names (`name[:version]`).
        #[arg(required = true)]
        images: Vec<String>,
    },
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
    /// Check the whole store: every blob hashes to its ID, the index and
    /// the blobs agree, cached layers match their digests, rendered trees
    /// are complete, and no dead process left files behind. Exits 1 if
    /// problems remain. Pods keep running meanwhile.
    Fsck {
        /// Repair what is found: rows missing from the index are rebuilt
        /// from the blobs and records (an unreadable index is moved aside
        /// and rebuilt), corrupt blobs and layers, unfinished trees and
        /// leftovers are removed.
        #[arg(long)]
        repair: bool,
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
    /// Sign an image. `--format=openpgp` (default): an ACI file gets an
    /// armored detached OpenPGP signature (ACI.asc, what `skiff fetch`
    /// looks for beside it, and `gpg --verify` checks). `--format=cosign`:
    /// the image a registry's tag names (docker://REGISTRY/REPO:TAG) gets a
    /// cosign signature, attached in the registry as cosign does, that
    /// `skiff fetch` and `cosign verify --key` check.
    Sign {
        /// An ACI file (openpgp), or docker://REGISTRY/REPO:TAG|@DIGEST (cosign).
        #[arg(value_name = "ACI|docker://…")]
        target: String,
        /// The secret key: OpenPGP (armored or binary, no passphrase, e.g.
        /// from `skiff key generate`), or a cosign private key (from `skiff
        /// key generate --type=cosign` or `cosign generate-key-pair`; an
        /// encrypted one takes its password from COSIGN_PASSWORD).
        #[arg(long)]
        key: PathBuf,
        #[arg(long, default_value = "openpgp", value_parser = ["openpgp", "cosign"])]
        format: String,
        /// Where to write the signature (openpgp; default ACI.asc).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Write the piece list of an ACI file (ACI.pieces): published beside
    /// the image and its .asc, it lets a site's hosts fetch the image as a
    /// swarm, each taking different pieces from the origin and the rest
    /// from each other (docs/distribution.md).
    Pieces {
        /// The ACI file, exactly as published.
        aci: PathBuf,
        /// Where to write the list (default ACI.pieces).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Push a stored image to a registry (the OCI distribution API, with
    /// --creds, auth.d or ~/.docker/config.json credentials). An image
    /// fetched from a registry goes as it came (same manifest digest, so its
    /// signatures still hold); any other goes as an OCI image of one layer
    /// (what `image export --format=oci` writes). Blobs the registry has are
    /// skipped, large ones uploaded in chunks.
    Push {
        image: String,
        /// docker://REGISTRY/REPO:TAG
        dest: String,
    },
    /// Unpack one stored image (without its dependencies) into a new
    /// directory. Files lose setuid/setgid bits and file capabilities: the
    /// directory is outside the private store, where other users may reach
    /// them.
    Extract(UnpackArgs),
    /// Unpack a stored image with its dependencies (as pods see it) into a new directory.
    Render(UnpackArgs),
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[arg(long, value_enum, default_value = "table")]
    format: ListFormat,
    /// Leave out the header line.
    #[arg(long)]
    no_legend: bool,
    /// Show full image IDs.
    #[arg(long)]
    full: bool,
    /// Print only the full image IDs, one a line (podman's -q).
    #[arg(long, short = 'q', conflicts_with = "format")]
    quiet: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

#[derive(Args, Debug)]
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

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum CompressionArg {
    Gzip,
    Xz,
    Bzip2,
    None,
}

#[derive(Args, Debug)]
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
    /// The app's command: shell words (quotes group, as in a shell:
    /// "/bin/sh -c 'echo x'"), or a JSON array.
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
    /// The manifest changes the flags ask for.
    fn edit(&self) -> anyhow::Result<ManifestEdit> {
        let pair = |flag: &str, s: &str| -> anyhow::Result<(String, String)> {
            s.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| anyhow::anyhow!("--{flag}={s}: expected NAME=VALUE"))
        };
        let pairs = |flag: &str, values: &[String]| -> anyhow::Result<Vec<(String, String)>> {
            values.iter().map(|v| pair(flag, v)).collect()
        };
        let exec = match &self.exec {
            Some(e) if e.trim_start().starts_with('[') => {
                Some(serde_json::from_str(e).map_err(|err| anyhow::anyhow!("--exec: {err}"))?)
            }
            // Shell words: quotes group, as a shell would read the line.
            Some(e) => Some(shlex::split(e).ok_or_else(|| {
                anyhow::anyhow!(
                    "--exec {e}: unbalanced quotes or a trailing backslash (or give a JSON array)"
                )
            })?),
            None => None,
        };
        let ports = self
            .ports
            .iter()
            .map(|p| {
                let parts: Vec<&str> = p.split(':').collect();
                let [name, protocol, port] = parts.as_slice() else {
                    anyhow::bail!("--port={p}: expected NAME:PROTOCOL:PORT");
                };
                let port: u64 = port
                    .parse()
                    .map_err(|_| anyhow::anyhow!("--port={p}: bad port"))?;
                Ok(PortEdit {
                    name: name.to_string(),
                    protocol: protocol.to_string(),
                    port,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mount_points = self
            .mount_points
            .iter()
            .map(|mp| {
                let parts: Vec<&str> = mp.split(':').collect();
                let (name, path, read_only) = match parts.as_slice() {
                    [n, p] => (*n, *p, false),
                    [n, p, "ro"] => (*n, *p, true),
                    _ => anyhow::bail!("--mount-point={mp}: expected NAME:PATH[:ro]"),
                };
                Ok(MountPointEdit {
                    name: name.to_string(),
                    path: path.to_string(),
                    read_only,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let dependencies = self
            .dependencies
            .iter()
            .map(|d| {
                let mut parts = d.split(',');
                let image = parts.next().unwrap_or_default().to_string();
                let labels = parts
                    .map(|l| pair("dependency", l))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                Ok(DependencyEdit { image, labels })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(ManifestEdit {
            name: self.name.clone(),
            labels: pairs("label", &self.labels)?,
            annotations: pairs("annotation", &self.annotations)?,
            app: AppEdit {
                exec,
                user: self.user.clone(),
                group: self.group.clone(),
                working_directory: self.working_dir.clone(),
                environment: pairs("env", &self.envs)?,
                ports,
                mount_points,
            },
            dependencies,
        })
    }
}

#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// Manifests (JSON), ACI files or image layout directories to check.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub struct CatManifestArgs {
    /// A stored image (ID, prefix or name) or an ACI file.
    image: String,
}

pub fn run(global: &GlobalArgs, cmd: ImageCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ImageCommand::Build(args) => build(*args),
        ImageCommand::Validate(args) => Ok(validate(&args.files)),
        ImageCommand::CatManifest(args) => {
            let manifest = skiff_ops::image::manifest(&global.context()?, &args.image)?;
            print_json(&manifest)?;
            Ok(ExitCode::SUCCESS)
        }
        ImageCommand::List(args) => list(global, &args),
        ImageCommand::Rm { images } => {
            let ctx = global.context()?;
            for image in &images {
                println!("{}", skiff_ops::image::remove(&ctx, image)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        ImageCommand::Inspect { images } => {
            let ctx = global.context()?;
            let mut details = Vec::with_capacity(images.len());
            for image in &images {
                details.push(skiff_ops::image::inspect(&ctx, image)?);
            }
            print_json(&details)?;
            Ok(ExitCode::SUCCESS)
        }
        ImageCommand::Gc { grace_period } => {
            let report = skiff_ops::image::gc(&global.context()?, grace_period)?;
            for id in &report.images {
                println!("{id}");
            }
            eprintln!(
                "removed {} image(s), {} tree(s), {} cached layer(s), {} unfinished import(s), {} blob(s) that were not their image; indexed {} blob(s) again; kept {} image(s) used by pods and {} by skiff commands in progress",
                report.images.len(),
                report.trees,
                report.layers,
                report.staging_files,
                report.bad_blobs,
                report.reindexed_blobs,
                report.kept_in_use,
                report.kept_busy
            );
            Ok(ExitCode::SUCCESS)
        }
        ImageCommand::Verify { images } => verify(global, &images),
        ImageCommand::Fsck { repair } => fsck(global, repair),
        ImageCommand::Export {
            image,
            out,
            overwrite,
            format,
        } => export(global, &image, &out, overwrite, &format),
        ImageCommand::Sign {
            target,
            key,
            format,
            out,
        } => {
            if format == "cosign" {
                if out.is_some() {
                    anyhow::bail!(
                        "--out is for OpenPGP signatures: a cosign signature goes to the registry"
                    );
                }
                let ctx = global.context()?;
                let attached = skiff_ops::registry::sign_cosign(&ctx, &key, &target)?;
                println!("{}", attached.tag);
                eprintln!(
                    "{}",
                    printable(&format!(
                        "signed {} ({}) with cosign key {}: {} signature(s) at {}",
                        target,
                        attached.digest,
                        attached.fingerprint,
                        attached.signatures,
                        attached.tag
                    ))
                );
                return Ok(ExitCode::SUCCESS);
            }
            let aci = PathBuf::from(&target);
            let out = skiff_ops::image::sign(&aci, &key, out)?;
            eprintln!(
                "{}",
                printable(&format!("signed {} -> {}", aci.display(), out.display()))
            );
            Ok(ExitCode::SUCCESS)
        }
        ImageCommand::Pieces { aci, out } => {
            let (out, pieces) = skiff_ops::image::pieces(&aci, out)?;
            eprintln!(
                "{}",
                printable(&format!(
                    "{} pieces of {} -> {}",
                    pieces,
                    aci.display(),
                    out.display()
                ))
            );
            Ok(ExitCode::SUCCESS)
        }
        ImageCommand::Push { image, dest } => {
            let report = skiff_ops::registry::push(&global.context()?, &image, &dest)?;
            let p = &report.pushed;
            println!("{}", p.digest);
            eprintln!(
                "{}",
                printable(&format!(
                    "pushed {} to {} {}: {} blob(s) uploaded ({} bytes), {} already there, {} mounted",
                    report.record.name,
                    report.dest,
                    if report.as_fetched {
                        "as it was fetched"
                    } else {
                        "as an OCI image"
                    },
                    p.uploaded,
                    p.bytes,
                    p.existing,
                    p.mounted
                ))
            );
            Ok(ExitCode::SUCCESS)
        }
        ImageCommand::Audit { image, format } => audit(global, &image, &format),
        ImageCommand::Extract(args) => unpack(global, &args, false),
        ImageCommand::Render(args) => unpack(global, &args, true),
    }
}

fn list(global: &GlobalArgs, args: &ListArgs) -> anyhow::Result<ExitCode> {
    let images = skiff_ops::image::list(&global.context()?)?;
    if args.quiet {
        for info in &images {
            println!("{}", info.record.id);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let ListFormat::Json = args.format {
        print_json(&images)?;
        return Ok(ExitCode::SUCCESS);
    }
    let width = if args.full { 135 } else { 39 };
    if !args.no_legend {
        println!(
            "{:<width$} {:<40} {:>10} {:<20} {:<20} ORIGIN",
            "ID", "NAME", "SIZE", "IMPORTED", "LAST USED"
        );
    }
    for info in &images {
        let img = &info.record;
        let id = if args.full {
            img.id.as_str()
        } else {
            img.id.short()
        };
        let version = img
            .labels
            .get("version")
            .map_or(String::new(), |v| format!(":{v}"));
        let origin = info.origin_digest.clone().map_or(String::new(), |d| {
            if args.full {
                d
            } else {
                d.chars().take(19).collect()
            }
        });
        // Labels and the origin are the image's words: no terminal controls.
        println!(
            "{:<width$} {:<40} {:>10} {:<20} {:<20} {}",
            id,
            printable(&format!("{}{version}", img.name)),
            human_size(img.blob_size),
            human_time(img.import_time),
            human_time(img.last_used),
            printable(&origin)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn fsck(global: &GlobalArgs, repair: bool) -> anyhow::Result<ExitCode> {
    let report = skiff_ops::image::fsck(&global.context()?, repair)?;
    let problems = report.problems.iter().map(|p| {
        (
            &p.kind,
            p.subject.as_str(),
            p.detail.as_str(),
            p.repair.as_str(),
            p.repaired,
        )
    });
    let checked = format!(
        "checked {} blob(s), {} index row(s), {} record(s), {} cached layer(s), {} tree(s) ({} import(s) or render(s) in progress left alone)",
        report.blobs, report.rows, report.records, report.layers, report.trees, report.in_progress,
    );
    crate::format::finish_fsck(problems, &checked, repair, "skiff image fsck --repair")
}

fn verify(global: &GlobalArgs, images: &[String]) -> anyhow::Result<ExitCode> {
    let v = skiff_ops::image::verify(&global.context()?, images)?;
    for p in &v.problems {
        eprintln!("{}: {}", p.image, p.problem);
    }
    if v.problems.is_empty() {
        println!("{} image(s) verified: every blob matches its ID", v.checked);
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "{} of {} image(s) are corrupt (remove them with `skiff image rm` and fetch again)",
            v.problems.len(),
            v.checked
        );
        Ok(ExitCode::FAILURE)
    }
}

fn audit(global: &GlobalArgs, image: &str, format: &str) -> anyhow::Result<ExitCode> {
    let audit = skiff_ops::image::audit(&global.context()?, image)?;
    let inventory = &audit.inventory;
    match format {
        "json" => {
            let mut v = serde_json::to_value(inventory)?;
            if let Some(f) = &audit.findings {
                v["vulnerabilities"] = serde_json::to_value(f)?;
            }
            print_json(&v)?;
        }
        "cyclonedx" => {
            print_json(&audit.cyclonedx()?)?;
        }
        _ => {
            println!("{:<40} {:<32} {:<6} ARCH", "PACKAGE", "VERSION", "TYPE");
            for p in &inventory.packages {
                // Package databases are the image's words.
                println!(
                    "{:<40} {:<32} {:<6} {}",
                    printable(&p.name),
                    printable(&p.version),
                    format!("{:?}", p.ecosystem).to_ascii_lowercase(),
                    printable(p.arch.as_deref().unwrap_or(""))
                );
            }
            let distro = inventory
                .distro
                .as_ref()
                .map_or("unknown distribution".to_string(), |(id, v)| {
                    format!("{id} {v}")
                });
            eprintln!(
                "{} package(s); {}",
                inventory.packages.len(),
                printable(&distro)
            );
            match &audit.findings {
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
                            printable(&v.id),
                            printable(&format!("{} {}", v.package, v.version)),
                            printable(&v.severity),
                            v.score.map_or(String::new(), |s| format!("{s:.1}")),
                            printable(v.fixed.as_deref().unwrap_or("-")),
                            printable(&v.aliases.join(","))
                        );
                    }
                    eprintln!("{} known vulnerabilit(ies)", f.len());
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn export(
    global: &GlobalArgs,
    image: &str,
    out: &Path,
    overwrite: bool,
    format: &str,
) -> anyhow::Result<ExitCode> {
    let format = if format == "oci" {
        skiff_ops::image::ExportFormat::Oci
    } else {
        skiff_ops::image::ExportFormat::Aci
    };
    let done = skiff_ops::image::export(&global.context()?, image, out, overwrite, format)?;
    let rec = &done.record;
    let said = match &done.tag {
        Some(tag) => format!(
            "exported {} ({}) as an OCI layout to {} (ref {tag})",
            rec.name,
            rec.id.short(),
            out.display()
        ),
        None => format!(
            "exported {} ({}) to {}",
            rec.name,
            rec.id.short(),
            out.display()
        ),
    };
    eprintln!("{}", printable(&said));
    Ok(ExitCode::SUCCESS)
}

fn unpack(
    global: &GlobalArgs,
    args: &UnpackArgs,
    with_dependencies: bool,
) -> anyhow::Result<ExitCode> {
    let rec = skiff_ops::image::unpack(
        &global.context()?,
        &args.image,
        &args.target,
        with_dependencies,
        args.rootfs_only,
    )?;
    let said = format!(
        "{} {} into {}",
        if with_dependencies {
            "rendered"
        } else {
            "extracted"
        },
        rec.name,
        args.target.display()
    );
    eprintln!("{}", printable(&said));
    Ok(ExitCode::SUCCESS)
}

fn build(args: BuildArgs) -> anyhow::Result<ExitCode> {
    let compression = match args.compression {
        CompressionArg::Gzip => Compression::Gzip,
        CompressionArg::Xz => Compression::Xz,
        CompressionArg::Bzip2 => Compression::Bzip2,
        CompressionArg::None => Compression::None,
    };
    let built = skiff_ops::image::build(
        &args.layout,
        &args.out,
        compression,
        args.owner_root,
        &args.edit()?,
        args.overwrite,
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
    )?;
    eprintln!(
        "built {} ({}, {} compression)",
        printable(&args.out.display().to_string()),
        built.manifest.name,
        compression.name()
    );
    println!("{}", built.image_id);
    Ok(ExitCode::SUCCESS)
}

fn validate(files: &[PathBuf]) -> ExitCode {
    let mut ok = true;
    for path in files {
        match skiff_ops::image::validate(path) {
            Ok(what) => println!("{}", printable(&format!("{}: {what}", path.display()))),
            Err(problems) => {
                ok = false;
                for problem in problems {
                    eprintln!("{}", printable(&format!("{}: {problem}", path.display())));
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
