use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
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
    Build(BuildArgs),
    /// Validate image manifests, pod manifests, ACI files and image layouts.
    ///
    /// Each FILE may be a JSON manifest (image or pod, by its acKind), an
    /// ACI (plain tar or gzip/bzip2/xz-compressed) or an image layout
    /// directory (`manifest` + `rootfs/`). Prints one line per
    /// problem on stderr; exits 0 if every file is valid, 1 otherwise.
    Validate(ValidateArgs),
    /// Print the image manifest of an ACI file as indented JSON.
    CatManifest(CatManifestArgs),
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
    dir: PathBuf,
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
}

#[derive(Args)]
pub struct ValidateArgs {
    /// Manifests (JSON), ACI files or image layout directories to check.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

#[derive(Args)]
pub struct CatManifestArgs {
    /// The ACI file.
    aci: PathBuf,
}

pub fn run(cmd: ImageCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ImageCommand::Build(args) => build(args),
        ImageCommand::Validate(args) => Ok(validate(&args.files)),
        ImageCommand::CatManifest(args) => cat_manifest(&args.aci),
    }
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
    };
    let built = build_aci_file(&args.dir, &args.out, &options, args.overwrite)?;
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
        Err(other) => Err(vec![error_line(&other)]),
    }
}

/// An error and its causes on one line.
fn error_line(err: &dyn std::error::Error) -> String {
    let mut line = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    line
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

fn cat_manifest(aci: &Path) -> anyhow::Result<ExitCode> {
    let file = File::open(aci).with_context(|| format!("cannot open {}", aci.display()))?;
    let bytes = read_manifest_bytes(BufReader::new(file))
        .with_context(|| format!("cannot read {}", aci.display()))?;
    let manifest = parse_image_manifest(&bytes)
        .with_context(|| format!("{} has an invalid image manifest", aci.display()))?;
    println!("{}", to_pretty_json(&manifest));
    Ok(ExitCode::SUCCESS)
}
