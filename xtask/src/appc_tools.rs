//! The reference appc tools the tests compare skiff with: `actool` and the
//! ACE validator (one binary, four modes) with its two images
//! `ace-validator-main.aci` and `ace-validator-sidekick.aci`.
//!
//! Built here from Debian's packages alone (golang-go and
//! golang-github-appc-spec-dev, the appc spec 0.8.11 sources in GOPATH
//! form), so a fresh clone builds them without anything beside it. The
//! image manifests are upstream's `ace/image_manifest_{main,sidekick}.json.in`
//! (which Debian does not ship) with the os and arch filled in; the images
//! are made by the reference `actool build` itself, as upstream's
//! `scripts/build-ace-validator-acis` does.
//!
//! The result is cached in `target/appc-tools`, keyed by this file, the Go
//! compiler and the appc sources: it is rebuilt when any of them changes.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Debian's GOPATH tree with github.com/appc/spec.
const GOPATH: &str = "/usr/share/gocode";
const PACKAGE: &str = "github.com/appc/spec";

/// Builds (or finds cached) the tools; returns their directory:
/// `bin/actool`, `bin/ace-validator`, `ace-validator-{main,sidekick}.aci`.
pub fn ensure(root: &Path) -> Result<PathBuf> {
    let out = root.join("target/appc-tools");
    let validator_src = Path::new(GOPATH)
        .join("src")
        .join(PACKAGE)
        .join("ace/validator.go");
    let source = std::fs::read(&validator_src).with_context(|| {
        format!(
            "cannot read {} (cargo xtask deps installs golang-github-appc-spec-dev)",
            validator_src.display()
        )
    })?;
    let go_version = Command::new("go")
        .arg("version")
        .output()
        .context("cannot run go (cargo xtask deps installs golang-go)")?;
    let mut key = include_str!("appc_tools.rs").as_bytes().to_vec();
    key.extend_from_slice(&go_version.stdout);
    key.extend_from_slice(&source);
    let want = format!("{:x}", crate::fnv1a(&key));
    let stamp = out.join(".stamp");
    let done = [
        "bin/actool",
        "ace-validator-main.aci",
        "ace-validator-sidekick.aci",
    ]
    .iter()
    .all(|f| out.join(f).is_file());
    if done && std::fs::read_to_string(&stamp).ok().as_deref() == Some(want.as_str()) {
        return Ok(out);
    }
    crate::step(
        "building the reference appc tools (actool, ACE validator) from Debian's appc sources",
    );
    let log = root.join("target/appc-tools.log");
    std::fs::create_dir_all(&out)?;
    let _ = std::fs::remove_file(&stamp);
    build(&out, &log)
        .with_context(|| format!("building the appc tools failed; see {}", log.display()))?;
    std::fs::write(&stamp, want)?;
    println!("appc tools: {}", out.display());
    Ok(out)
}

/// Runs `cmd`, its output appended to `log`.
fn logged(cmd: &mut Command, log: &Path) -> Result<()> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let shown = format!("{cmd:?}");
    let status = cmd
        .stdout(file.try_clone()?)
        .stderr(file)
        .status()
        .with_context(|| format!("cannot start {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}

fn build(out: &Path, log: &Path) -> Result<()> {
    std::fs::write(log, "")?;
    let bin = out.join("bin");
    std::fs::create_dir_all(&bin)?;
    // GOPATH mode (Debian ships Go libraries as a GOPATH tree), static
    // binaries (the validator images have no libc), a private build cache.
    let go = |args: &[&str], output: &Path| {
        let mut cmd = Command::new("go");
        cmd.args([
            "build",
            "-trimpath",
            "-ldflags",
            "-extldflags \"-static\"",
            "-o",
        ])
        .arg(output)
        .args(args)
        .env("GO111MODULE", "off")
        .env("GOPATH", GOPATH)
        .env("GOFLAGS", "")
        .env("CGO_ENABLED", "0")
        .env("GOCACHE", out.join(".gocache"))
        .env_remove("GOBIN");
        cmd
    };
    let actool = bin.join("actool");
    let validator = bin.join("ace-validator");
    logged(&mut go(&[&format!("{PACKAGE}/actool")], &actool), log)?;
    logged(&mut go(&[&format!("{PACKAGE}/ace")], &validator), log)?;

    let arch = aci_arch()?;
    let layouts = out.join("layouts");
    if layouts.exists() {
        std::fs::remove_dir_all(&layouts)?;
    }
    for (kind, manifest) in [
        ("main", main_manifest(arch)),
        ("sidekick", sidekick_manifest(arch)),
    ] {
        let layout = layouts.join(format!("ace-validator-{kind}"));
        let rootfs = layout.join("rootfs");
        // The main app's working directory must exist in the image.
        std::fs::create_dir_all(rootfs.join("opt/acvalidator"))?;
        let inside = rootfs.join("ace-validator");
        std::fs::copy(&validator, &inside)?;
        std::fs::set_permissions(&inside, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        std::fs::write(layout.join("manifest"), manifest)?;
        // Fixed times, as upstream does.
        for path in [
            &inside,
            &rootfs.join("opt/acvalidator"),
            &rootfs.join("opt"),
            &rootfs,
        ] {
            std::fs::File::open(path)?.set_modified(std::time::UNIX_EPOCH)?;
        }
        let aci = out.join(format!("ace-validator-{kind}.aci"));
        logged(
            Command::new(&actool)
                .args(["--debug", "validate"])
                .arg(&layout),
            log,
        )?;
        logged(
            Command::new(&actool)
                .args(["build", "--overwrite", "--owner-root"])
                .arg(&layout)
                .arg(&aci),
            log,
        )?;
        logged(
            Command::new(&actool)
                .args(["--debug", "validate"])
                .arg(&aci),
            log,
        )?;
    }
    Ok(())
}

/// The appc `arch` label of this machine (appc's ValidOSArch for linux).
fn aci_arch() -> Result<&'static str> {
    Ok(match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "i386",
        "aarch64" => "aarch64",
        "arm" => "armv7l",
        "powerpc64" => "ppc64",
        "s390x" => "s390x",
        other => bail!("no appc arch label for {other}"),
    })
}

/// The main validator app (ace/validator.go): its name, pre-start and
/// post-stop handlers, working directory, environment and the `database`
/// mount point are what the validator checks; the annotations are
/// compared through the metadata service.
fn main_manifest(arch: &str) -> String {
    format!(
        r#"{{
    "acVersion": "0.8.11",
    "acKind": "ImageManifest",
    "name": "coreos.com/ace-validator-main",
    "labels": [
        {{ "name": "version", "value": "0.8.11" }},
        {{ "name": "os", "value": "linux" }},
        {{ "name": "arch", "value": "{arch}" }}
    ],
    "app": {{
        "exec": ["/ace-validator", "main"],
        "eventHandlers": [
            {{ "name": "pre-start", "exec": ["/ace-validator", "prestart"] }},
            {{ "name": "post-stop", "exec": ["/ace-validator", "poststop"] }}
        ],
        "user": "0",
        "group": "0",
        "workingDirectory": "/opt/acvalidator",
        "environment": [{{ "name": "IN_ACE_VALIDATOR", "value": "correct" }}],
        "mountPoints": [{{ "name": "database", "path": "/db", "readOnly": false }}],
        "ports": [{{ "name": "www", "protocol": "tcp", "port": 80 }}],
        "isolators": [{{ "name": "resource/memory", "value": {{"limit": "1G"}} }}]
    }},
    "annotations": [
        {{ "name": "created", "value": "2014-10-27T19:32:27.67021798Z" }},
        {{ "name": "authors", "value": "Carly Container <carly@example.com>, Nat Network <nat@example.com>" }},
        {{ "name": "homepage", "value": "https://github.com/appc/spec" }},
        {{ "name": "documentation", "value": "https://github.com/appc/spec/blob/master/README.md" }},
        {{ "name": "lorem", "value": "ipsum" }}
    ]
}}
"#
    )
}

/// The sidekick app: it shares the `database` volume with the main app.
fn sidekick_manifest(arch: &str) -> String {
    format!(
        r#"{{
    "acVersion": "0.8.11",
    "acKind": "ImageManifest",
    "name": "coreos.com/ace-validator-sidekick",
    "labels": [
        {{ "name": "version", "value": "0.8.11" }},
        {{ "name": "os", "value": "linux" }},
        {{ "name": "arch", "value": "{arch}" }}
    ],
    "app": {{
        "exec": ["/ace-validator", "sidekick"],
        "user": "0",
        "group": "0",
        "mountPoints": [{{ "name": "database", "path": "/db", "readOnly": false }}]
    }}
}}
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifests_are_json_with_this_machines_arch() {
        for text in [main_manifest("amd64"), sidekick_manifest("amd64")] {
            let value: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
            assert_eq!(value["labels"][2]["value"], "amd64");
            assert_eq!(value["acKind"], "ImageManifest");
        }
    }
}
