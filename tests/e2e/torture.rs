//! Crash-consistency torture: skiff commands killed with SIGKILL at random
//! instants, then checked; and many commands at once.
//!
//! Each round picks an operation (fetch of a signed ACI file, of a signed
//! ACI by HTTPS discovery, of a cosign-signed docker image; render; prepare;
//! run; stop; rm; gc; image gc), sets up what it needs, starts it and kills
//! it after a random delay within its measured duration. Then:
//! `skiff image fsck --repair` and `skiff fsck --repair` must repair all
//! they find, after which both find nothing; every image reported fetched
//! (and not removed since) must still be in the store; the operation run
//! again must succeed; and after `skiff gc`, the host must have no mount,
//! cgroup, network namespace, lease, CNI rule or veth more than before.
//!
//! Sizes come from the environment: `SKIFF_TORTURE_KILLS` (30),
//! `SKIFF_TORTURE_CONCURRENT` (20), `SKIFF_TORTURE_SEED` (random; printed,
//! and a failure names it). A seed replays the sequence of operations and
//! each kill's instant as a fraction of the operation's measured duration. `cargo xtask
//! torture` runs it long; `cargo xtask test` runs the default.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::oci::Registry;

#[path = "../../xtask/src/leftovers.rs"]
mod leftovers;
mod power;

/// xorshift64*: a seeded, replayable sequence.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// `SKIFF_TORTURE_SEED`, or one from the clock (never 0).
fn seed() -> u64 {
    std::env::var("SKIFF_TORTURE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        })
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    FetchFile,
    FetchHttps,
    FetchDocker,
    Render,
    Prepare,
    Run,
    Stop,
    Rm,
    Gc,
    ImageGc,
}

const OPS: [Op; 10] = [
    Op::FetchFile,
    Op::FetchHttps,
    Op::FetchDocker,
    Op::Render,
    Op::Prepare,
    Op::Run,
    Op::Stop,
    Op::Rm,
    Op::Gc,
    Op::ImageGc,
];

struct Bench {
    site: crate::fetch::Site,
    registry: Registry,
    root: PathBuf,
    /// The signed ACI file (a.aci.asc beside it).
    aci: PathBuf,
    docker: String,
    /// Image IDs by reference, once known.
    ids: BTreeMap<&'static str, String>,
    /// Images a command reported fetched and nothing removed since.
    expected: BTreeSet<String>,
    baseline: Vec<String>,
    seed: u64,
    /// What the repairs after the kills found, by kind.
    repaired: BTreeMap<String, usize>,
}

const FILE_NAME: &str = "example.com/torture";
const HTTPS_NAME: &str = "127.0.0.2/busybox:1.0";

impl Bench {
    fn skiff(&self) -> Command {
        let mut cmd = skiff_in(&self.root);
        cmd.env("SSL_CERT_FILE", &self.site.ca_file)
            .arg("--insecure-options=http");
        cmd
    }

    fn must(&self, args: &[&str]) -> Output {
        let out = output(self.skiff().args(args));
        assert!(
            out.status.success(),
            "seed {}: skiff {args:?}: {}",
            self.seed,
            stderr(&out)
        );
        out
    }

    fn reference(&self, op: Op) -> String {
        match op {
            Op::FetchHttps => HTTPS_NAME.to_string(),
            Op::FetchDocker => self.docker.clone(),
            _ => self.aci.display().to_string(),
        }
    }

    /// The command an operation runs, after what it needs is set up.
    fn prepare(&mut self, op: Op) -> Vec<String> {
        let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        match op {
            Op::FetchFile | Op::FetchHttps | Op::FetchDocker => {
                // Not in the store: the fetch downloads, verifies, imports.
                let reference = self.reference(op);
                if let Some(id) = self.ids.get(key_of(op)).cloned() {
                    let out = output(self.skiff().args(["image", "rm", &id]));
                    if out.status.success() {
                        self.expected.remove(&id);
                    }
                }
                vec!["fetch".into(), reference]
            }
            Op::Render => {
                // The tree goes, as image gc takes an unused one; the fetch
                // of the stored image renders it again.
                let id = self.fetched(Op::FetchFile);
                let tree = self.root.join("data/trees").join(&id["sha512-".len()..]);
                let _ = std::fs::remove_dir_all(&tree);
                s(&[
                    "fetch",
                    "--pull-policy=never",
                    &self.aci.display().to_string(),
                ])
            }
            Op::Prepare => {
                self.fetched(Op::FetchFile);
                s(&["prepare", "--net=none", &self.aci.display().to_string()])
            }
            Op::Run => {
                self.fetched(Op::FetchFile);
                s(&[
                    "run",
                    &self.aci.display().to_string(),
                    "--exec=/bin/busybox",
                    "--",
                    "true",
                ])
            }
            Op::Stop => {
                self.fetched(Op::FetchFile);
                let uuid = self.detached();
                s(&["stop", &uuid])
            }
            Op::Rm => {
                self.fetched(Op::FetchFile);
                let uuid = self.detached();
                self.must(&["stop", "--force", &uuid]);
                s(&["rm", &uuid])
            }
            Op::Gc => {
                self.fetched(Op::FetchFile);
                for _ in 0..2 {
                    let uuid = self.detached();
                    self.must(&["stop", "--force", &uuid]);
                }
                s(&["gc", "--grace-period=0s"])
            }
            Op::ImageGc => {
                for op in [Op::FetchFile, Op::FetchHttps, Op::FetchDocker] {
                    self.fetched(op);
                }
                s(&["image", "gc", "--grace-period=0s"])
            }
        }
    }

    /// Fetches `op`'s image (if it is not there); its ID.
    fn fetched(&mut self, op: Op) -> String {
        let out = self.must(&["fetch", &self.reference(op)]);
        let id = stdout(&out).trim().to_string();
        self.ids.insert(key_of(op), id.clone());
        self.expected.insert(id.clone());
        id
    }

    /// A pod on the default network that runs until stopped.
    fn detached(&self) -> String {
        let out = self.must(&[
            "run",
            "--detach",
            &self.aci.display().to_string(),
            "--exec=/bin/busybox",
            "--",
            "sleep",
            "600",
        ]);
        stdout(&out).trim().to_string()
    }

    /// What an operation that ended (killed, or run again) changes in the
    /// images expected to be there.
    fn account(&mut self, op: Op, out: Option<&Output>) {
        match op {
            Op::FetchFile | Op::FetchHttps | Op::FetchDocker => {
                if let Some(out) = out.filter(|o| o.status.success()) {
                    let id = stdout(out).trim().to_string();
                    self.ids.insert(key_of(op), id.clone());
                    self.expected.insert(id);
                }
            }
            // Every image no pod uses may have gone.
            Op::ImageGc => self.expected.clear(),
            _ => {}
        }
    }

    /// The checks after a kill (see the module docs).
    fn check(&mut self, round: usize, op: Op, command: &[String]) {
        let context = format!("seed {} round {round} ({op:?})", self.seed);
        let mut repaired = std::mem::take(&mut self.repaired);
        repair_everything(&|| self.skiff(), &context, &self.expected, &mut repaired);
        self.repaired = repaired;
        // The operation again, whole (a removal that finished, or that the
        // repair finished, has nothing left to do).
        let args: Vec<&str> = command.iter().map(String::as_str).collect();
        if op == Op::Rm
            && !output(self.skiff().args(["status", args[1]]))
                .status
                .success()
        {
            self.settle(&context);
            return;
        }
        let out = output(self.skiff().args(&args));
        assert!(
            out.status.success(),
            "{context}: skiff {args:?} after the kill: {}",
            stderr(&out)
        );
        self.account(op, Some(&out));
        self.settle(&context);
    }

    /// Stops every pod, collects them and compares the host with how it
    /// was before the first round.
    fn settle(&mut self, context: &str) {
        let list = output(self.skiff().args(["list", "--format=json"]));
        if let Ok(serde_json::Value::Array(pods)) = serde_json::from_slice(&list.stdout) {
            for pod in pods.iter().filter(|p| p["state"] == "running") {
                if let Some(uuid) = pod["uuid"].as_str() {
                    self.must(&["stop", "--force", uuid]);
                }
            }
        }
        let gc = output(
            self.skiff()
                .args(["gc", "--grace-period=0s", "--expire-prepared=0s"]),
        );
        assert!(gc.status.success(), "{context}: gc: {}", stderr(&gc));
        let check = output(self.skiff().arg("fsck"));
        assert!(
            check.status.success(),
            "{context}: fsck after gc:\n{}",
            stdout(&check)
        );
        let now = leftovers::leftovers();
        let left: Vec<&String> = now.iter().filter(|l| !self.baseline.contains(l)).collect();
        assert!(left.is_empty(), "{context}: gc left these behind: {left:?}");
    }
}

/// After a crash: `skiff image fsck --repair` and `skiff fsck --repair`
/// repair all they find (counted by kind in `repaired`), after which the
/// store's fsck finds nothing, and every image of `expected` (reported
/// fetched before the crash) is still there. `skiff` makes the command.
fn repair_everything(
    skiff: &dyn Fn() -> Command,
    context: &str,
    expected: &BTreeSet<String>,
    repaired: &mut BTreeMap<String, usize>,
) {
    let repair = output(skiff().args(["image", "fsck", "--repair"]));
    assert!(
        repair.status.success(),
        "{context}: image fsck --repair left problems:\n{}{}",
        stdout(&repair),
        stderr(&repair)
    );
    let again = output(skiff().args(["image", "fsck"]));
    assert!(
        again.status.success() && stdout(&again).is_empty(),
        "{context}: image fsck after the repair:\n{}{}",
        stdout(&again),
        stderr(&again)
    );
    let pods = output(skiff().args(["fsck", "--repair"]));
    assert!(
        pods.status.success(),
        "{context}: fsck --repair left problems:\n{}{}",
        stdout(&pods),
        stderr(&pods)
    );
    for line in stdout(&repair).lines().chain(stdout(&pods).lines()) {
        let kind = line.split(':').next().unwrap_or_default().to_string();
        *repaired.entry(kind).or_default() += 1;
    }
    let list = output(skiff().args(["image", "list", "--quiet"]));
    assert!(list.status.success(), "{context}: {}", stderr(&list));
    for id in expected {
        assert!(
            stdout(&list).contains(id.as_str()),
            "{context}: {id}, reported fetched, is gone after the crash and the repair:\n{}",
            stdout(&repair)
        );
    }
}

fn key_of(op: Op) -> &'static str {
    match op {
        Op::FetchHttps => "https",
        Op::FetchDocker => "docker",
        _ => "file",
    }
}

/// Waits until no process of group `pgid` is left (children a killed
/// command started finish or die with it).
fn wait_group(pgid: i32) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        let alive =
            rustix::process::test_kill_process_group(rustix::process::Pid::from_raw(pgid).unwrap())
                .is_ok();
        if !alive {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("processes of group {pgid} still run a minute after the kill");
}

/// Runs `cmd` in a process group of its own and kills its first process
/// with SIGKILL after `delay`; whether the kill landed (it still ran).
fn run_and_kill(mut cmd: Command, delay: Duration) -> (bool, Duration) {
    cmd.process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let started = Instant::now();
    let mut child = cmd.spawn().unwrap();
    let pgid = child.id() as i32;
    loop {
        if child.try_wait().unwrap().is_some() {
            wait_group(pgid);
            return (false, started.elapsed());
        }
        if started.elapsed() >= delay {
            break;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    let _ = child.kill();
    let _ = child.wait();
    wait_group(pgid);
    (true, started.elapsed())
}

/// A signed ACI of busybox with 16 MiB of incompressible files, so
/// imports and renders take long enough to be cut in the middle.
fn big_image(root: &Path, gpg: &Gpg) -> PathBuf {
    let layout = root.join("layout-torture");
    busybox_layout(&layout);
    std::fs::write(
        layout.join("manifest"),
        format!(
            r#"{{"acKind": "ImageManifest", "acVersion": "0.8.11", "name": "{FILE_NAME}",
               "labels": [{{"name": "version", "value": "1.0"}}, {{"name": "os", "value": "linux"}}, {{"name": "arch", "value": "amd64"}}],
               "app": {{"exec": ["/bin/busybox", "true"], "user": "0", "group": "0"}}}}"#
        ),
    )
    .unwrap();
    let data = layout.join("rootfs/data");
    std::fs::create_dir_all(&data).unwrap();
    let mut rng = Rng(0x5eed);
    for i in 0..256 {
        let bytes: Vec<u8> = (0..8192).flat_map(|_| rng.next().to_le_bytes()).collect();
        std::fs::write(data.join(format!("f{i:03}")), bytes).unwrap();
    }
    let aci = root.join("torture.aci");
    build_image(&layout, &aci);
    let asc = gpg.sign(&aci);
    std::fs::write(root.join("torture.aci.asc"), asc).unwrap();
    aci
}

fn setup(seed: u64) -> Bench {
    let site = crate::fetch::site();
    let root = site.root.path().to_path_buf();
    let key = root.join("signer.asc");
    std::fs::write(&key, site.gpg.public_key()).unwrap();
    for prefix in ["127.0.0.2/busybox", FILE_NAME] {
        let out = output(
            skiff_in(&root)
                .args(["trust", "--skip-fingerprint-review", "--prefix", prefix])
                .arg(&key),
        );
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let aci = big_image(&root, &site.gpg);
    let registry = Registry::start(None);
    let out = output(skiff_in(&root).arg("fetch").arg(&aci));
    assert!(out.status.success(), "{}", stderr(&out));
    let docker = crate::reliability::push_signed(&root, &registry, FILE_NAME, "torture/img:v1");
    let mut bench = Bench {
        site,
        registry,
        root,
        aci,
        docker,
        ids: BTreeMap::new(),
        expected: BTreeSet::new(),
        baseline: leftovers::leftovers(),
        seed,
        repaired: BTreeMap::new(),
    };
    let _ = &bench.registry;
    for op in [Op::FetchFile, Op::FetchHttps, Op::FetchDocker] {
        bench.fetched(op);
    }
    bench
}

/// Pods left running by a failed round are stopped and collected.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        drop(PodsGuard { root: &self.0 });
    }
}

#[test]
#[ignore = "heavy: runs in the serial phase of `cargo xtask test`; `cargo xtask torture` runs it long"]
fn kill_9_at_random_instants_then_everything_is_repaired_and_nothing_lost() {
    let seed = seed();
    let kills = env_number("SKIFF_TORTURE_KILLS", 30) as usize;
    eprintln!("torture: seed {seed} (replay with SKIFF_TORTURE_SEED={seed}), {kills} kills");
    let mut bench = setup(seed);
    let _cleanup = Cleanup(bench.root.clone());
    let mut rng = Rng(seed);
    // How long each operation takes when nothing kills it.
    let mut durations = BTreeMap::new();
    for op in OPS {
        let command = bench.prepare(op);
        let started = Instant::now();
        let args: Vec<&str> = command.iter().map(String::as_str).collect();
        let out = output(bench.skiff().args(&args));
        assert!(out.status.success(), "{op:?}: {}", stderr(&out));
        bench.account(op, Some(&out));
        durations.insert(op, started.elapsed());
        bench.settle(&format!("{op:?} unkilled"));
    }
    eprintln!("torture: durations unkilled {durations:?}");

    let mut landed: BTreeMap<Op, usize> = BTreeMap::new();
    let mut round = 0;
    while landed.values().sum::<usize>() < kills {
        round += 1;
        assert!(round <= kills * 4, "seed {seed}: too few kills landed");
        let op = OPS[rng.below(OPS.len() as u64) as usize];
        let command = bench.prepare(op);
        // The seed fixes the operations and, for each, the instant of its
        // kill as a fraction of its measured duration (0 to 1.25).
        let fraction = rng.below(1250) as f64 / 1000.0;
        let delay = durations[&op].mul_f64(fraction);
        let mut cmd = bench.skiff();
        cmd.args(&command);
        let (killed, _) = run_and_kill(cmd, delay);
        if killed {
            *landed.entry(op).or_default() += 1;
            // What a killed command did is unknown: a fetch may have
            // finished its import (it is then expected after the rerun),
            // an image gc may have removed anything unused.
            if op == Op::ImageGc {
                bench.expected.clear();
            }
        } else {
            bench.account(op, None);
        }
        bench.check(round, op, &command);
    }
    eprintln!(
        "torture: seed {seed}: {round} rounds, {} kills landed: {landed:?}; repaired after them: {:?}",
        landed.values().sum::<usize>(),
        bench.repaired
    );

    let concurrent = env_number("SKIFF_TORTURE_CONCURRENT", 20) as usize;
    concurrently(&mut bench, &mut rng, concurrent);
}

/// `n` commands at once, a mix of every operation (image gc and gc with a
/// grace period of 0 among them): none may fail, and afterwards fsck finds
/// nothing and gc leaves nothing behind.
fn concurrently(bench: &mut Bench, rng: &mut Rng, n: usize) {
    for op in [Op::FetchFile, Op::FetchHttps, Op::FetchDocker] {
        bench.fetched(op);
    }
    let aci = bench.aci.display().to_string();
    let stops = n / 10;
    let running: Vec<String> = (0..stops).map(|_| bench.detached()).collect();
    let mut commands: Vec<Vec<String>> = Vec::new();
    for uuid in &running {
        commands.push(vec!["stop".into(), uuid.clone()]);
    }
    while commands.len() < n {
        let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        commands.push(match rng.below(9) {
            0 | 1 => s(&["fetch", &aci]),
            2 => s(&["fetch", HTTPS_NAME]),
            3 => s(&["fetch", &bench.docker]),
            4 => s(&[
                "run",
                "--net=none",
                &aci,
                "--exec=/bin/busybox",
                "--",
                "true",
            ]),
            5 => s(&["run", &aci, "--exec=/bin/busybox", "--", "true"]),
            6 => s(&["prepare", "--net=none", &aci]),
            7 => s(&["gc", "--grace-period=0s"]),
            _ => s(&["image", "gc", "--grace-period=0s"]),
        });
    }
    let started = Instant::now();
    let results: Vec<(Vec<String>, Output)> = std::thread::scope(|scope| {
        let handles: Vec<_> = commands
            .iter()
            .map(|args| {
                let mut cmd = bench.skiff();
                cmd.args(args);
                scope.spawn(move || (args.clone(), output(&mut cmd)))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let failed: Vec<String> = results
        .iter()
        .filter(|(_, out)| !out.status.success())
        .map(|(args, out)| format!("skiff {args:?}: {}", stderr(out).trim()))
        .collect();
    eprintln!(
        "torture: {} commands at once in {:?}, {} failed",
        results.len(),
        started.elapsed(),
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "seed {}: concurrent commands failed:\n{}",
        bench.seed,
        failed.join("\n")
    );
    let check = output(bench.skiff().args(["image", "fsck"]));
    assert!(
        check.status.success(),
        "seed {}: image fsck after the concurrent commands:\n{}",
        bench.seed,
        stdout(&check)
    );
    let check = output(bench.skiff().arg("fsck"));
    assert!(
        check.status.success(),
        "seed {}: fsck after the concurrent commands:\n{}",
        bench.seed,
        stdout(&check)
    );
    bench.settle(&format!("seed {} concurrent", bench.seed));
}
