//! `cargo xtask bench`: each benchmark measures skiff against peers doing
//! the same work in the same run and prints ratios (docs/performance.md).
//!
//! * [`import`]: import and render throughput against sha512sum and tar.
//! * [`start`]: pod start to exit against crun, runc, bwrap, nspawn, podman
//!   (and `--stage1=kvm`).
//! * [`network`]: a pod's start with and without the default network,
//!   against podman's.
//! * [`metadata`]: the metadata service under concurrent requests.
//! * [`pull`]: a registry pull into a fresh store against `skopeo copy`
//!   and `umoci unpack`.
//! * [`audit`]: `skiff image audit` of a Debian minbase image.
//! * [`density`]: idle pods per host, memory per pod.
//! * [`logs`]: an app's output through skiff's logger against /dev/null
//!   and podman's k8s-file logger.
//! * [`containerd`]: `ctr run` with skiff-runtime, runc and crun as the
//!   runc shim's binary.
//! * [`swarm`]: hosts fetching one image at once, from the origin alone
//!   and as a swarm of peers.
//!
//! This module holds what they share: scratch space on tmpfs, timing,
//! OCI bundles for the peers, result files.

mod audit;
mod containerd;
mod density;
mod import;
mod logs;
mod metadata;
mod network;
mod pull;
pub mod report;
mod rootless;
mod start;
mod swarm;

pub use audit::audit;
pub use containerd::containerd;
pub use density::density;
pub use import::import;
pub use logs::logs;
pub use metadata::metadata;
pub use network::network;
pub use pull::pull;
pub use start::{start, start_kvm};
pub use swarm::swarm;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use skiff_store::{ArchivePolicy, Store};

/// Where the benchmark works: tmpfs (CPU-bound numbers).
const WORK: &str = "/dev/shm/skiff-bench";

/// Idle time before each cold run of `bench start`.
const COLD_IDLE: Duration = Duration::from_millis(200);

/// Copies regular files, directories and symlinks from `sources` into
/// `dest` until `budget` bytes of file content are copied; returns bytes.
fn sample_tree(sources: &[&str], dest: &Path, budget: u64) -> Result<u64> {
    let mut copied = 0u64;
    let mut stack: Vec<(PathBuf, PathBuf)> = sources
        .iter()
        .map(|s| (PathBuf::from(s), dest.join(s.trim_start_matches('/'))))
        .collect();
    stack.reverse();
    while let Some((src, dst)) = stack.pop() {
        if copied >= budget {
            break;
        }
        let meta = std::fs::symlink_metadata(&src)?;
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&src)?;
            let _ = std::os::unix::fs::symlink(target, &dst);
        } else if meta.is_dir() {
            std::fs::create_dir_all(&dst)?;
            let mut children: Vec<_> = std::fs::read_dir(&src)?
                .filter_map(|e| e.ok().map(|e| e.file_name()))
                .collect();
            children.sort();
            for child in children.into_iter().rev() {
                stack.push((src.join(&child), dst.join(&child)));
            }
        } else if meta.is_file() {
            std::fs::copy(&src, &dst)?;
            copied += meta.len();
        }
    }
    Ok(copied)
}

fn time<F: FnMut() -> Result<()>>(
    runs: usize,
    mut setup: impl FnMut() -> Result<()>,
    mut f: F,
) -> Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        setup()?;
        let start = Instant::now();
        f()?;
        times.push(start.elapsed());
    }
    times.sort();
    Ok(times)
}

/// The peers' OCI bundle at `bundle`: crun's default spec on a copy of
/// `rootfs`, running `args`, without a network namespace (skiff's pods in
/// these benchmarks use the host's).
fn peer_bundle(bundle: &Path, rootfs: &Path, args: &[&str]) -> Result<()> {
    std::fs::create_dir_all(bundle)?;
    run_quiet(
        Command::new("cp")
            .arg("-a")
            .arg(rootfs)
            .arg(bundle.join("rootfs")),
    )?;
    // systemd-nspawn refuses a tree without /usr.
    std::fs::create_dir_all(bundle.join("rootfs/usr"))?;
    run_quiet(Command::new("crun").arg("spec").current_dir(bundle))?;
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json"))?)?;
    spec["process"]["terminal"] = serde_json::Value::Bool(false);
    spec["process"]["args"] = serde_json::json!(args);
    if let Some(ns) = spec["linux"]["namespaces"].as_array_mut() {
        ns.retain(|n| n["type"] != "network");
    }
    std::fs::write(
        bundle.join("config.json"),
        serde_json::to_vec_pretty(&spec)?,
    )?;
    Ok(())
}

/// cgroup v1 controllers with a v2 mount beside them (crun 1.8 refuses
/// such hosts; machine-notes.md).
fn hybrid_cgroups() -> bool {
    Path::new("/sys/fs/cgroup/unified").exists()
        && !Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// The `cgroup.procs` file of this process's own cgroup (v1: in the pids
/// hierarchy), for [`open_cgroup_window`]; looked up once per run.
fn own_procs_file() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let own = text.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        let wanted = match v2 {
            true => controllers.is_empty(),
            false => controllers.split(',').any(|c| c == "pids"),
        };
        wanted.then(|| path.trim_start_matches('/').to_string())
    })?;
    let root = match v2 {
        true => PathBuf::from("/sys/fs/cgroup"),
        false => PathBuf::from("/sys/fs/cgroup/pids"),
    };
    Some(root.join(own).join("cgroup.procs"))
}

/// Opens the kernel's window in which moves between cgroups go through at
/// once, by moving this process into the cgroup it is in (`procs`, from
/// [`own_procs_file`]). The first move after a quiet spell (a write to
/// `cgroup.procs`, which every runtime here but bwrap makes to start a
/// container) waits for an RCU grace period, ~8 ms here; moves within
/// about one more grace period after it do not wait (docs/performance.md).
/// Called untimed before each warm run: every runtime then starts in the
/// same state, instead of one running free in the window the runtime
/// before it paid for (crun ran right after a skiff row in four rounds of
/// five). Best effort: false if no move was made.
fn open_cgroup_window(procs: Option<&Path>) -> bool {
    procs.is_some_and(|p| std::fs::write(p, "0").is_ok())
}

/// What a report says of [`open_cgroup_window`] before each run of `runs`
/// ("warm runs", "runs"): whether it opened the window every time.
fn cgroup_window_note(runs: &str, opened: bool) -> String {
    match opened {
        true => format!(
            "{runs} each start with cgroup moves not waiting for an RCU grace period (the bench moves itself into its own cgroup, untimed, just before each run)"
        ),
        false => format!(
            "{runs}: the bench could not move itself between cgroups before each run, so a run may wait for an RCU grace period that the run before it did not (or save the one it paid)"
        ),
    }
}

/// Writes `body` to `target/bench/<file>`; returns its path.
fn write_result(root: &Path, file: &str, body: String) -> Result<PathBuf> {
    let dir = root.join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(file);
    std::fs::write(&path, body)?;
    Ok(path)
}

/// An image layout at `layout`: busybox-static as /bin/busybox, `links`
/// to it in /bin, an empty /usr, and a manifest naming
/// `example.com/<name>:1.0` that runs `exec`.
fn busybox_layout(layout: &Path, name: &str, exec: &str, links: &[&str]) -> Result<()> {
    std::fs::create_dir_all(layout.join("rootfs/bin"))?;
    std::fs::create_dir_all(layout.join("rootfs/usr"))?;
    std::fs::copy(
        std::fs::canonicalize("/bin/busybox")?,
        layout.join("rootfs/bin/busybox"),
    )?;
    for link in links {
        std::os::unix::fs::symlink("busybox", layout.join("rootfs/bin").join(link))?;
    }
    let manifest = serde_json::json!({
        "acKind": "ImageManifest", "acVersion": "0.8.11", "name": format!("example.com/{name}"),
        "labels": [{"name": "version", "value": "1.0"}, {"name": "os", "value": "linux"},
                   {"name": "arch", "value": "amd64"}],
        "app": {"exec": [exec], "user": "0", "group": "0"},
    });
    std::fs::write(layout.join("manifest"), manifest.to_string())?;
    Ok(())
}

/// `skiff image build FLAGS LAYOUT ACI` with its output discarded.
fn build_image(skiff: &Path, flags: &[&str], layout: &Path, aci: &Path) -> Result<()> {
    run_quiet(
        Command::new(skiff)
            .args(["image", "build"])
            .args(flags)
            .arg(layout)
            .arg(aci)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    )
}

/// `skiff --dir DATA` with its output discarded.
/// podman's `--ulimit`s for this machine, whose hard limits are below
/// podman's defaults.
const PODMAN_ULIMITS: [&str; 4] = [
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=4096:4096",
];

/// skiff and its companions (skiff-stage1, skiff-full) copied, as
/// installed, into `target/bench/<name>-bin` beside the build: on the file
/// system programs are installed on, as the peers' /usr/bin is, not on the
/// tmpfs that holds the benchmark's data. Loading a program from tmpfs is
/// slower: the same build's `run-prepared` took 7.41 ms with its binaries
/// on /dev/shm against 6.48 ms on this machine's ext4 (40 interleaved
/// rounds; `skiff` alone 1.50 against 1.36 ms, 15 page faults more). Nor
/// straight from target/release, where the linker left the files: that
/// copy started ~0.9 ms slower on this machine (its page-cache layout). Nor
/// as a fresh copy's pages either (below). Returns the directory.
fn install_copy(skiff: &Path, name: &str) -> Result<PathBuf> {
    let target = skiff
        .parent()
        .and_then(Path::parent)
        .context("skiff is not in a target directory")?;
    let bin = target.join("bench").join(format!("{name}-bin"));
    let _ = std::fs::remove_dir_all(&bin);
    std::fs::create_dir_all(&bin)?;
    for name in std::iter::once(&"skiff").chain(crate::build::SKIFF_COMPANIONS) {
        let from = skiff.with_file_name(name);
        let to = bin.join(name);
        std::fs::copy(&from, &to).with_context(|| format!("copy {}", from.display()))?;
        // Written out and dropped from the page cache, so that the first
        // run reads it back as the peers' files were read: a fresh copy's
        // pages, as the write left them, load faster (430 against 449 page
        // faults for `skiff --help`, measured by a review).
        let file = std::fs::File::open(&to)?;
        file.sync_all()?;
        rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed)
            .with_context(|| format!("drop {} from the page cache", to.display()))?;
    }
    Ok(bin)
}

/// `podman` with its storage in `state` (`root`, `run`), runc as the
/// runtime (crun 1.8 refuses hybrid cgroup hosts under podman too) and
/// cgroupfs: the same podman for every benchmark.
fn podman_in(state: &Path) -> Command {
    let mut c = Command::new("podman");
    c.arg("--root")
        .arg(state.join("root"))
        .arg("--runroot")
        .arg(state.join("run"))
        .args(["--runtime", "runc", "--cgroup-manager=cgroupfs"]);
    c
}

fn quiet_skiff(skiff: &Path, data: &Path) -> Command {
    let mut c = Command::new(skiff);
    c.arg("--dir")
        .arg(data)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    c
}

/// Removes the benchmarks' scratch directory once every benchmark cleaned
/// up after itself (it is left when one failed, for a look).
pub fn remove_scratch() {
    let _ = std::fs::remove_dir(WORK);
}

/// Prepares `n` pods with the `skiff … prepare …` command `prepare` makes
/// (untimed set-up): their UUIDs. `who` names the skiff in an error.
fn prepare_pods(n: usize, who: &str, prepare: impl Fn() -> Command) -> Result<Vec<String>> {
    let mut prepared = Vec::with_capacity(n);
    for _ in 0..n {
        let out = prepare()
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .output()?;
        if !out.status.success() {
            bail!(
                "{who} skiff prepare failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        prepared.push(String::from_utf8_lossy(&out.stdout).trim().to_string());
    }
    Ok(prepared)
}

fn run_quiet(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed");
    }
    Ok(())
}

struct Row {
    name: &'static str,
    times: Vec<Duration>,
}

impl Row {
    fn median(&self) -> Duration {
        self.times[self.times.len() / 2]
    }

    /// Prints the (sorted) row as `| name | min | median | max | ratio |`
    /// in whole milliseconds; returns the ratio of its median to
    /// `reference` seconds.
    fn print_with_ratio(&self, reference: f64) -> f64 {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let ratio = self.median().as_secs_f64() / reference.max(1e-9);
        println!(
            "| {} | {:.0} ms | {:.0} ms | {:.0} ms | {ratio:.2}× |",
            self.name,
            ms(self.times[0]),
            ms(self.median()),
            ms(self.times[self.times.len() - 1])
        );
        ratio
    }
}

/// Whether `program` is on PATH.
fn installed(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// Unmounts whatever is mounted under `dir`, deepest first (podman keeps
/// its storage directory mounted after its containers are gone).
fn unmount_under(dir: &Path) -> Result<()> {
    let prefix = dir.display().to_string();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    let mut points: Vec<&str> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        run_quiet(Command::new("umount").args(["-l", p]))?;
    }
    Ok(())
}
