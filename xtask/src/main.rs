//! `cargo xtask …`: project automation.
//!
//! * `deps`: installs the Debian packages the project needs (only the missing ones).
//! * `demo`: builds skiff and shows what it can do today, printing each step.
//! * `test`: deps, the appc reference tools, fmt, clippy and the whole test suite.
//!
//! Everything builds with the release profile (see .cargo/config.toml), so the
//! workspace is compiled once for the demo, the tests and the acceptance scripts.
//! Every command builds every binary it runs ([`build::Binaries`]) and needs
//! nothing beside the project: the appc reference tools are built here too
//! ([`appc_tools`]).
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod appc_tools;
mod bench;
mod build;
mod fuzz;
mod leftovers;
mod runtime_tools;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Debian packages the project needs, and why.
const PACKAGES: &[(&str, &str)] = &[
    ("busybox-static", "sample images and test pods"),
    ("golang-go", "builds the reference actool and ACE validator"),
    (
        "golang-github-appc-spec-dev",
        "appc spec sources for actool",
    ),
    ("gnupg", "signing keys and signatures in tests"),
    ("xz-utils", "xz-compressed ACIs in tests"),
    ("bzip2", "bzip2-compressed ACIs in tests"),
    ("ca-certificates", "HTTPS to the package registries"),
    ("crun", "peer runtime measured by cargo xtask bench"),
    (
        "protobuf-compiler",
        "protoc, for the Kubernetes CRI client of the tests (k8s-cri)",
    ),
    (
        "containerd",
        "runs containers with skiff-runtime as the runc shim's binary (tests, bench)",
    ),
    ("runc", "peer runtime measured by cargo xtask bench"),
    (
        "uidmap",
        "newuidmap/newgidmap: an ordinary user's user namespace from /etc/subuid (rootless)",
    ),
    (
        "passt",
        "pasta, an ordinary user's default (user-mode) pod network (rootless)",
    ),
    (
        "bubblewrap",
        "peer sandbox measured by cargo xtask bench start",
    ),
    (
        "systemd-container",
        "systemd-nspawn, peer runtime measured by cargo xtask bench start",
    ),
    (
        "podman",
        "peer runtime measured by cargo xtask bench start and density",
    ),
    (
        "qemu-system-x86",
        "the virtual machines of the kvm flavor (QEMU microvm)",
    ),
    (
        "linux-image-amd64",
        "the guest kernel and modules of the kvm flavor",
    ),
    ("binutils", "objcopy strips the kvm flavor's guest init"),
    (
        "containernetworking-plugins",
        "CNI plugins (bridge, host-local, portmap) for pod networks",
    ),
    (
        "iptables",
        "NAT and port forwarding rules made by the CNI plugins",
    ),
    ("iproute2", "network checks in tests"),
    (
        "nftables",
        "nft shows the default network's NAT rule (tests, operators)",
    ),
    (
        "xfsprogs",
        "xfs_io shuts a filesystem down mid-write: the power-loss torture",
    ),
    ("e2fsprogs", "mkfs.ext4: the power-loss torture's disk"),
    ("curl", "port-forwarding checks in tests"),
    (
        "strace",
        "holds a system call of a pod's init in a test of the race around it",
    ),
    (
        "docker-registry",
        "a local OCI registry for docker:// tests",
    ),
    ("skopeo", "pushes test images; the pull benchmark's peer"),
    (
        "python3-cryptography",
        "an independent cosign signer in the OCI trust tests",
    ),
    (
        "python3-nacl",
        "opens skiff's encrypted cosign keys in the OCI trust tests",
    ),
    ("umoci", "builds test OCI images; the pull benchmark's peer"),
    (
        "apache2-utils",
        "htpasswd for the registry's Basic auth in tests",
    ),
    (
        "debootstrap",
        "the Debian minbase image of cargo xtask bench audit",
    ),
    ("rpm", "builds an rpm database for the audit tests"),
    (
        "gcc",
        "compiles the static attack programs of the security tests (TIOCSTI)",
    ),
    ("libc6-dev", "static libc for those programs"),
];

fn main() -> std::process::ExitCode {
    match real_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = project_root()?;
    match args.first().map(String::as_str) {
        Some("deps") => deps(),
        Some("demo") => demo(&root),
        Some("test") => test(&root, &args[1..]),
        Some("appc-tools") => appc_tools::ensure(&root).map(|_| ()),
        Some("torture") => torture(&root, &args[1..]),
        Some("fuzz") => fuzz::run(&root, &args[1..]),
        Some("package") => package(&root, true),
        Some("runtime-tools") => {
            deps()?;
            let binaries = build::Binaries::build(&root)?;
            runtime_tools::run(&root, binaries.get("skiff-runtime")?)
        }
        Some("bench") => {
            let quick = args.iter().any(|a| a == "--quick");
            let kvm = args.iter().any(|a| a == "--stage1=kvm");
            let sizes = args
                .iter()
                .find_map(|a| a.strip_prefix("--n="))
                .map(|list| {
                    list.split(',')
                        .map(|n| match n.parse::<usize>() {
                            Ok(n) if (1..=50_000).contains(&n) => Ok(n),
                            _ => Err(anyhow::anyhow!(
                                "bench: --n={list}: each size must be a number of pods from 1 to 50000"
                            )),
                        })
                        .collect::<Result<Vec<_>>>()
                })
                .transpose()?;
            if let Some(flag) = args[1..].iter().find(|a| {
                a.starts_with("--")
                    && *a != "--quick"
                    && *a != "--stage1=kvm"
                    && !a.starts_with("--n=")
            }) {
                bail!(
                    "bench: unknown flag {flag} (flags: --quick, --stage1=kvm with start, --n=N[,N…] with density)"
                );
            }
            let which: Vec<&str> = args[1..]
                .iter()
                .map(String::as_str)
                .filter(|a| !a.starts_with("--"))
                .collect();
            if which == ["report"] {
                return bench::report::report(&root);
            }
            let binaries = build::Binaries::build(&root)?;
            let skiff = binaries.skiff()?;
            deps()?;
            let result = match which.as_slice() {
                ["import"] => bench::import(&root, skiff, quick),
                ["start"] if kvm => bench::start_kvm(&root, skiff, quick),
                ["start"] => bench::start(&root, skiff, quick),
                ["network"] => bench::network(&root, skiff, quick),
                ["metadata"] => bench::metadata(&root, skiff, quick),
                ["pull"] => bench::pull(&root, skiff, quick),
                ["audit"] => bench::audit(&root, skiff, quick),
                ["density"] => bench::density(&root, skiff, quick, sizes),
                ["logs"] => bench::logs(&root, skiff, quick),
                ["containerd"] => bench::containerd(&root, binaries.get("skiff-runtime")?, quick),
                ["swarm"] => bench::swarm(&root, skiff, quick),
                [] | ["all"] => {
                    bench::import(&root, skiff, quick)?;
                    bench::start(&root, skiff, quick)?;
                    bench::start_kvm(&root, skiff, quick)?;
                    bench::network(&root, skiff, quick)?;
                    bench::pull(&root, skiff, quick)?;
                    bench::metadata(&root, skiff, quick)?;
                    bench::audit(&root, skiff, quick)?;
                    bench::containerd(&root, binaries.get("skiff-runtime")?, quick)?;
                    bench::logs(&root, skiff, quick)?;
                    bench::swarm(&root, skiff, quick)?;
                    bench::density(&root, skiff, quick, sizes)
                }
                other => bail!(
                    "unknown benchmark {other:?} (available: import, start, network, pull, metadata, audit, density, containerd, logs, swarm, all)"
                ),
            };
            bench::remove_scratch();
            result
        }
        _ => {
            eprintln!(
                "usage: cargo xtask <command>\n\n\
                 commands:\n  \
                 deps        install the Debian packages skiff needs (apt-get; only missing ones)\n  \
                 demo        build skiff, then build, validate and inspect a sample image\n  \
                 test        deps + appc reference tools + fmt + clippy + the whole test suite\n  \
                 package     cargo package for every crate, each compiled from its package (a second, debug build)\n  \
                 appc-tools  build the reference actool and ACE validator images (cached, from Debian's appc sources)\n  \
                 runtime-tools  the OCI runtime-tools compliance suite against skiff-runtime (needs ../shared)\n  \
                 fuzz [--time=SECONDS] [TARGET...]  every cargo-fuzz target of fuzz/ (nightly) for SECONDS of CPU time each (default 60), corpora in fuzz/corpus\n  \
                 torture [--kills=200] [--concurrent=100] [--cuts=60] [--seed=N]  kill -9 skiff commands at random instants, then fsck, rerun, leak check; N commands at once; power cuts of the data dir's disk\n  \
                 bench [all|import|start|network|pull|metadata|audit|density|containerd|logs|swarm] [--quick] [--stage1=kvm] [--n=N,…]  skiff against its peers, same run\n  \
                 bench report  the last runs of start, network and density into docs/performance.md"
            );
            bail!("no or unknown xtask command")
        }
    }
}

/// The crash torture of tests/e2e/torture.rs, long: at least 200 kills
/// across every operation, 100 commands at once and 60 power cuts by
/// default.
fn torture(root: &Path, args: &[String]) -> Result<()> {
    let mut kills = "200".to_string();
    let mut concurrent = "100".to_string();
    let mut cuts = "60".to_string();
    let mut seed = None;
    for arg in args {
        let number = |v: &str| -> Result<String> {
            v.parse::<u64>()
                .map(|n| n.to_string())
                .with_context(|| format!("torture: {arg}: not a number"))
        };
        if let Some(v) = arg.strip_prefix("--kills=") {
            kills = number(v)?;
        } else if let Some(v) = arg.strip_prefix("--concurrent=") {
            concurrent = number(v)?;
        } else if let Some(v) = arg.strip_prefix("--cuts=") {
            cuts = number(v)?;
        } else if let Some(v) = arg.strip_prefix("--seed=") {
            seed = Some(number(v)?);
        } else {
            bail!(
                "torture: unknown argument {arg} (flags: --kills=N, --concurrent=N, --cuts=N, --seed=N)"
            );
        }
    }
    deps()?;
    let tools = appc_tools::ensure(root)?;
    build::Binaries::build(root)?;
    step(&format!(
        "crash torture: {kills} kills, {concurrent} commands at once, {cuts} power cuts"
    ));
    let before = leftovers::leftovers();
    let mut cmd = cargo(root);
    cmd.args(["test", "--release", "-p", "skiff", "--test", "e2e"])
        .args([
            "--",
            "torture::",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SKIFF_APPC_TOOLS", &tools)
        .env("SKIFF_TORTURE_KILLS", &kills)
        .env("SKIFF_TORTURE_CONCURRENT", &concurrent)
        .env("SKIFF_TORTURE_CUTS", &cuts);
    if let Some(seed) = seed {
        cmd.env("SKIFF_TORTURE_SEED", seed);
    }
    run(&mut cmd)?;
    let leaked: Vec<String> = leftovers::leftovers()
        .into_iter()
        .filter(|l| !before.contains(l))
        .collect();
    if !leaked.is_empty() {
        bail!("the torture left these behind: {leaked:?}");
    }
    Ok(())
}

fn project_root() -> Result<PathBuf> {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .context("xtask has no parent directory")
}

pub(crate) fn step(what: &str) {
    println!("\n==> {what}");
}

pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}").replace('"', "");
    let status = cmd
        .status()
        .with_context(|| format!("failed to start {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn deps() -> Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(p, _)| !installed(p))
        .map(|(p, _)| *p)
        .collect();
    if missing.is_empty() {
        println!("deps: all {} Debian packages present", PACKAGES.len());
        return Ok(());
    }
    step(&format!(
        "installing Debian packages: {}",
        missing.join(" ")
    ));
    run(Command::new("apt-get").args(["update", "-q"]))?;
    run(Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing))
}

/// Python packages the tests use, pinned: CycloneDX's own library, whose
/// strict validator carries the official CycloneDX 1.5 JSON schema.
const PYTHON_PACKAGES: &[&str] = &["cyclonedx-python-lib[json-validation]==11.12.0"];

/// A virtualenv in target/pyenv with [`PYTHON_PACKAGES`] (from PyPI),
/// made once; returns its python.
fn python_tools(root: &Path) -> Result<PathBuf> {
    let env = root.join("target/pyenv");
    let python = env.join("bin/python");
    let stamp = env.join(".packages");
    let want = PYTHON_PACKAGES.join("\n");
    if python.exists() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(want.as_str()) {
        return Ok(python);
    }
    step("making target/pyenv with the CycloneDX schema validator (pip, PyPI)");
    let _ = std::fs::remove_dir_all(&env);
    run(Command::new("python3").args(["-m", "venv"]).arg(&env))?;
    run(Command::new(env.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .args(PYTHON_PACKAGES))?;
    std::fs::write(&stamp, want)?;
    Ok(python)
}

/// A small, stable content hash for cache stamps.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

pub(crate) fn cargo(root: &Path) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root);
    cmd
}

/// `cargo deny check` (deny.toml) when cargo-deny is installed; offline:
/// advisories only from a RustSec database already on this machine.
fn cargo_deny(root: &Path) -> Result<()> {
    let installed = cargo(root)
        .args(["deny", "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        println!(
            "cargo-deny is not installed: skipping `cargo deny check` (cargo install --locked cargo-deny)"
        );
        return Ok(());
    }
    let home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")));
    let have_db = home.is_some_and(|h| h.join("advisory-dbs").is_dir());
    let mut checks = vec!["licenses", "bans", "sources"];
    if have_db {
        checks.push("advisories");
    } else {
        println!("no RustSec database here (`cargo deny fetch`): advisories not checked");
    }
    step("cargo deny check");
    run(cargo(root)
        .args(["deny", "--offline", "check", "--disable-fetch"])
        .args(checks))
}

/// `cargo package` for every published crate: each builds from what it
/// would upload (its own files, dependencies by version). `verify` also
/// compiles each package as crates.io would: a second, debug build of the
/// whole tree, so the test suite packages without it and `cargo xtask
/// package` runs it in full.
fn package(root: &Path, verify: bool) -> Result<()> {
    step(if verify {
        "cargo package (every crate, each compiled from its package)"
    } else {
        "cargo package --no-verify (every crate: manifests, versions, files)"
    });
    let mut cmd = cargo(root);
    cmd.args([
        "package",
        "--workspace",
        "--exclude",
        "xtask",
        "--allow-dirty",
        "--offline",
    ]);
    if !verify {
        cmd.arg("--no-verify");
    }
    run(&mut cmd)
}

fn test(root: &Path, extra: &[String]) -> Result<()> {
    deps()?;
    let tools = appc_tools::ensure(root)?;
    let python = python_tools(root)?;
    step("cargo fmt --check");
    run(cargo(root).args(["fmt", "--all", "--", "--check"]))?;
    step("cargo clippy --all-targets -- -D warnings");
    run(cargo(root).args([
        "clippy",
        "--release",
        "--workspace",
        "--all-targets",
        "--quiet",
        "--",
        "-D",
        "warnings",
    ]))?;
    cargo_deny(root)?;
    package(root, false)?;
    // The same build step as the demo's and the benchmarks' (same profile:
    // `cargo test` compiles nothing of it again), with its guard: skiff's
    // stage1 comes from the same build.
    let binaries = build::Binaries::build(root)?;
    step("cargo test (unit, differential against actool, end-to-end)");
    let before = leftovers::leftovers();
    run(cargo(root)
        .args(["test", "--release", "--workspace"])
        .args(extra)
        .env("SKIFF_APPC_TOOLS", &tools)
        .env("SKIFF_TEST_PYTHON", &python))?;
    step(
        "cargo test: the timing-sensitive and heavy end-to-end tests, one at a time on a quiet machine",
    );
    run(cargo(root)
        .args(["test", "--release", "-p", "skiff", "--test", "e2e"])
        .args(["--", "--ignored", "--test-threads=1"])
        .env("SKIFF_APPC_TOOLS", &tools)
        .env("SKIFF_TEST_PYTHON", &python))?;
    runtime_tools::run(root, binaries.get("skiff-runtime")?)?;
    step(
        "checking that the suite left no mount, pod cgroup, network namespace, CNI rule, lease, veth or test user behind",
    );
    let after = leftovers::leftovers();
    let leaked: Vec<&String> = after.iter().filter(|m| !before.contains(m)).collect();
    if !leaked.is_empty() {
        bail!("the test suite left these behind: {leaked:?}");
    }
    println!(
        "none: {} mounts and other items before and after",
        after.len()
    );
    Ok(())
}

fn demo(root: &Path) -> Result<()> {
    deps()?;
    let binaries = build::Binaries::build(root)?;
    let skiff = binaries.skiff()?.to_path_buf();
    let work = root.join("target/demo");
    let layout = work.join("busybox-layout");
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    step("making an image layout from Debian's busybox-static");
    let bin = layout.join("rootfs/bin");
    std::fs::create_dir_all(&bin)?;
    std::fs::create_dir_all(layout.join("rootfs/etc"))?;
    std::fs::copy(
        std::fs::canonicalize("/bin/busybox").context("busybox-static is not installed")?,
        bin.join("busybox"),
    )?;
    for tool in [
        "sh", "echo", "ls", "cat", "id", "hostname", "sleep", "true", "grep", "ps", "ip",
    ] {
        std::os::unix::fs::symlink("busybox", bin.join(tool))?;
    }
    std::fs::write(
        layout.join("rootfs/etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\n",
    )?;
    std::fs::write(layout.join("rootfs/etc/group"), "root:x:0:\n")?;
    std::fs::write(
        layout.join("manifest"),
        r#"{
  "acKind": "ImageManifest",
  "acVersion": "0.8.11",
  "name": "example.com/busybox",
  "labels": [
    {"name": "version", "value": "1.0"},
    {"name": "os", "value": "linux"},
    {"name": "arch", "value": "amd64"}
  ],
  "app": {
    "exec": ["/bin/sh", "-c", "echo hello from skiff"],
    "user": "0",
    "group": "0",
    "environment": [{"name": "PATH", "value": "/bin"}],
    "isolators": [{"name": "resource/memory", "value": {"limit": "64Mi"}}]
  },
  "annotations": [{"name": "created", "value": "2026-11-26T00:00:00Z"}]
}
"#,
    )?;
    println!("layout: {}", layout.display());
    let aci = work.join("busybox.aci");
    step("skiff image build (gzip)");
    run(Command::new(&skiff)
        .arg("image")
        .arg("build")
        .arg(&layout)
        .arg(&aci))?;
    step("skiff image validate");
    run(Command::new(&skiff).arg("image").arg("validate").arg(&aci))?;
    step("skiff image cat-manifest");
    run(Command::new(&skiff)
        .arg("image")
        .arg("cat-manifest")
        .arg(&aci))?;
    step("skiff refuses a broken manifest (expected to fail, one line per problem)");
    let broken = work.join("broken-manifest.json");
    std::fs::write(
        &broken,
        r#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"Example.com/x",
            "labels":[{"name":"os","value":"linux"},{"name":"arch","value":"sparc"}],
            "app":{"exec":["/bin/sh"],"user":"0","group":"","workingDirectory":"tmp"}}"#,
    )?;
    let status = Command::new(&skiff)
        .arg("image")
        .arg("validate")
        .arg(&broken)
        .status()?;
    println!("(exit status {})", status.code().unwrap_or(-1));
    if status.success() {
        bail!("skiff accepted a broken manifest");
    }

    // A private store and config under target/demo, so the demo leaves the host alone.
    let data = work.join("data");
    let etc = work.join("etc");
    let sk = || {
        let mut cmd = Command::new(&skiff);
        cmd.arg("--dir").arg(&data).arg("--local-config").arg(&etc);
        cmd
    };
    step("signing the image with a new GnuPG key (gpg --detach-sign)");
    let gnupg = work.join("gnupg");
    std::fs::create_dir_all(&gnupg)?;
    std::fs::set_permissions(&gnupg, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    let gpg = |args: &[&str]| -> Result<Vec<u8>> {
        let out = Command::new("gpg")
            .env("GNUPGHOME", &gnupg)
            .args([
                "--batch",
                "--quiet",
                "--yes",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
            ])
            .args(args)
            .output()
            .context("cannot run gpg (cargo xtask deps installs gnupg)")?;
        if !out.status.success() {
            bail!(
                "gpg {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(out.stdout)
    };
    gpg(&[
        "--quick-gen-key",
        "skiff demo <demo@example.com>",
        "ed25519",
        "sign",
        "never",
    ])?;
    std::fs::write(
        work.join("demo.pub.asc"),
        gpg(&["--armor", "--export", "demo@example.com"])?,
    )?;
    gpg(&[
        "--armor",
        "--detach-sign",
        "--output",
        &format!("{}.asc", aci.display()),
        &aci.to_string_lossy(),
    ])?;
    println!("signature: {}.asc", aci.display());
    step("skiff trust --prefix example.com/busybox demo.pub.asc");
    run(sk()
        .args([
            "trust",
            "--prefix",
            "example.com/busybox",
            "--skip-fingerprint-review",
        ])
        .arg(work.join("demo.pub.asc")))?;
    step("skiff fetch busybox.aci (signature verified, imported, rendered)");
    run(sk().arg("fetch").arg(&aci))?;
    step("skiff image list");
    run(sk().args(["image", "list"]))?;
    step("a tampered copy is refused (expected to fail)");
    let tampered = work.join("tampered.aci");
    let mut bytes = std::fs::read(&aci)?;
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&tampered, bytes)?;
    std::fs::copy(
        format!("{}.asc", aci.display()),
        format!("{}.asc", tampered.display()),
    )?;
    let status = sk().arg("fetch").arg(&tampered).status()?;
    println!("(exit status {})", status.code().unwrap_or(-1));
    if status.success() {
        bail!("skiff accepted a tampered image");
    }
    step("skiff image render example.com/busybox:1.0 (the tree a pod would get)");
    let rendered = work.join("rendered");
    run(sk()
        .args([
            "image",
            "render",
            "--rootfs-only",
            "example.com/busybox:1.0",
        ])
        .arg(&rendered))?;
    run(Command::new("ls").arg("-l").arg(rendered.join("bin")))?;
    step("skiff run example.com/busybox:1.0 (a real pod: namespaces, overlay root, seccomp, caps)");
    run(sk().args(["run", "example.com/busybox:1.0"]))?;
    step("inside a pod: its own hostname, pid namespace, no_new_privs, seccomp, capabilities");
    run(sk().args([
        "run",
        "example.com/busybox:1.0",
        "--exec=/bin/sh",
        "--",
        "-c",
        "echo hostname: $(hostname); echo processes: $(ls /proc | grep -c '^[0-9]'); grep -E 'NoNewPrivs|Seccomp:|CapEff' /proc/self/status",
    ]))?;
    step(
        "networking: the pod's own interface and address on the default CNI network (a bridge with NAT)",
    );
    run(sk().args([
        "run",
        "example.com/busybox:1.0",
        "--exec=/bin/sh",
        "--",
        "-c",
        "ip -o -4 addr show; ip route; cat /etc/hosts",
    ]))?;
    step("skiff run --net=none: only loopback");
    run(sk().args([
        "run",
        "--net=none",
        "example.com/busybox:1.0",
        "--exec=/bin/sh",
        "--",
        "-c",
        "ip -o link",
    ]))?;
    step("skiff run --private-users: root in the pod is an unprivileged host uid");
    run(sk().args([
        "run",
        "--private-users",
        "example.com/busybox:1.0",
        "--exec=/bin/sh",
        "--",
        "-c",
        "echo uid inside: $(id -u); echo 'uid map (inside outside count):' $(cat /proc/self/uid_map); ls -ln /bin/busybox",
    ]))?;
    step("the exit status of the app is skiff run's (expected: 3)");
    let status = sk()
        .args([
            "run",
            "example.com/busybox:1.0",
            "--exec=/bin/sh",
            "--",
            "-c",
            "exit 3",
        ])
        .status()?;
    println!("(exit status {})", status.code().unwrap_or(-1));
    if status.code() != Some(3) {
        bail!("the pod's exit status was not propagated");
    }
    step("skiff list; skiff gc --grace-period=0s");
    run(sk().args(["list"]))?;
    run(sk().args(["gc", "--grace-period=0s"]))?;
    step("skiff version");
    run(Command::new(&skiff).arg("version"))?;
    println!(
        "\ndemo done: an image built, validated, signed, trusted, fetched, rendered and run \
         as isolated pods with their own networks."
    );
    Ok(())
}
