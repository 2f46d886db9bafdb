//! Power loss: the data dir on an ext4 filesystem of its own (a loop
//! device) whose writes stop at a random instant, during an operation or
//! just after it reported success, as when a machine loses power: the
//! filesystem is shut down without flushing its journal (`xfs_io -x -c
//! shutdown`, the ioctl xfstests' crash tests use), so whatever the
//! kernel had not yet written is gone. Then the filesystem is mounted
//! again (its journal replayed), both fscks repair, every image a command
//! reported fetched before the cut must still be there, the operation run
//! again must succeed, and gc must leave the host as it was.
//!
//! `SKIFF_TORTURE_CUTS` (12) sets the number of cuts; the seed is the
//! torture's (`SKIFF_TORTURE_SEED`).

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{Rng, big_image, env_number, leftovers, repair_everything, seed, wait_group};
use crate::common::*;

/// An ext4 filesystem in `image`, on a loop device, mounted at `dir`.
struct Disk {
    image: PathBuf,
    dir: PathBuf,
    device: Option<String>,
}

fn must_run(cmd: &mut Command) -> String {
    let out = output(cmd);
    assert!(out.status.success(), "{cmd:?}: {}", stderr(&out));
    stdout(&out).trim().to_string()
}

impl Disk {
    fn new(image: PathBuf, dir: PathBuf) -> Disk {
        must_run(Command::new("truncate").args(["-s", "1G"]).arg(&image));
        must_run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image));
        std::fs::create_dir_all(&dir).unwrap();
        let mut disk = Disk {
            image,
            dir,
            device: None,
        };
        disk.attach();
        disk
    }

    fn attach(&mut self) {
        let device = must_run(
            Command::new("losetup")
                .args(["-f", "--show"])
                .arg(&self.image),
        );
        self.device = Some(device.clone());
        must_run(Command::new("mount").arg(&device).arg(&self.dir));
    }

    /// The power goes: no write after this reaches the disk.
    fn cut(&self) {
        must_run(
            Command::new("xfs_io")
                .args(["-x", "-c", "shutdown"])
                .arg(&self.dir),
        );
    }

    /// The machine comes back: the filesystem is mounted again.
    fn restart(&mut self) {
        // Not lazily: the image must not be mounted twice.
        must_run(Command::new("umount").arg(&self.dir));
        if let Some(device) = &self.device {
            must_run(Command::new("losetup").arg("-d").arg(device));
        }
        self.device = None;
        self.attach();
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        if let Some(device) = self.device.take() {
            let _ = Command::new("losetup").arg("-d").arg(device).status();
        }
    }
}

/// Kills a process group when dropped during a failure (a failed
/// round's command; otherwise the group is waited for and gone).
struct KillGroup(i32);

impl Drop for KillGroup {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        if let Some(pgid) = rustix::process::Pid::from_raw(self.0) {
            let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Fetch,
    Render,
    Prepare,
    ImageGc,
}

const OPS: [Op; 4] = [Op::Fetch, Op::Render, Op::Prepare, Op::ImageGc];

struct Bench {
    root: PathBuf,
    aci: String,
    disk: Disk,
    seed: u64,
    /// Images a command reported fetched and nothing removed since.
    expected: BTreeSet<String>,
    repaired: BTreeMap<String, usize>,
    baseline: Vec<String>,
}

impl Bench {
    fn must(&self, args: &[&str]) -> String {
        let out = output(skiff_in(&self.root).args(args));
        assert!(
            out.status.success(),
            "seed {}: skiff {args:?}: {}",
            self.seed,
            stderr(&out)
        );
        stdout(&out)
    }

    fn fetched(&mut self) -> String {
        let id = self.must(&["fetch", &self.aci]).trim().to_string();
        self.expected.insert(id.clone());
        id
    }

    /// The command of `op`, after what it needs is set up.
    fn prepare(&mut self, op: Op) -> Vec<String> {
        let id = self.fetched();
        let words = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        match op {
            Op::Fetch => {
                self.must(&["image", "rm", &id]);
                self.expected.remove(&id);
                words(&["fetch", &self.aci])
            }
            Op::Render => {
                let tree = self.root.join("data/trees").join(&id["sha512-".len()..]);
                let _ = std::fs::remove_dir_all(&tree);
                words(&["fetch", "--pull-policy=never", &self.aci])
            }
            Op::Prepare => words(&["prepare", "--net=none", &self.aci]),
            Op::ImageGc => {
                self.must(&["gc", "--grace-period=0s", "--expire-prepared=0s"]);
                words(&["image", "gc", "--grace-period=0s"])
            }
        }
    }

    /// What a command that reported success changed in the images
    /// expected to be there.
    fn account(&mut self, op: Op, out: &str) {
        match op {
            Op::Fetch | Op::Render => {
                self.expected.insert(out.trim().to_string());
            }
            Op::ImageGc => self.expected.clear(),
            Op::Prepare => {}
        }
    }

    /// Runs `command`, cuts the power after `delay` (or once it ended, if
    /// sooner), waits for what it started and brings the disk back.
    /// Whether the command had reported success before the cut.
    fn cut_during(&mut self, op: Op, command: &[String], delay: Duration) -> bool {
        let mut cmd = skiff_in(&self.root);
        cmd.args(command)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let started = Instant::now();
        let mut child = cmd.spawn().unwrap();
        let pgid = child.id() as i32;
        // Should this round fail, what it started goes with it.
        let _group = KillGroup(pgid);
        let mut finished = None;
        while started.elapsed() < delay {
            if let Some(status) = child.try_wait().unwrap() {
                finished = Some(status);
                break;
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        self.disk.cut();
        let status = match finished {
            Some(status) => status,
            None => child.wait().unwrap(),
        };
        let mut out = String::new();
        if let Some(mut pipe) = child.stdout.take() {
            let _ = std::io::Read::read_to_string(&mut pipe, &mut out);
        }
        wait_group(pgid);
        let reported = finished.is_some() && status.success();
        if reported {
            self.account(op, &out);
        } else if op == Op::ImageGc {
            self.expected.clear();
        }
        self.disk.restart();
        reported
    }

    fn check(&mut self, round: usize, op: Op, command: &[String]) {
        let context = format!("seed {} cut {round} ({op:?})", self.seed);
        let root = self.root.clone();
        repair_everything(
            &|| skiff_in(&root),
            &context,
            &self.expected,
            &mut self.repaired,
        );
        let args: Vec<&str> = command.iter().map(String::as_str).collect();
        let rerun = self.must(&args);
        self.account(op, &rerun);
        self.must(&["gc", "--grace-period=0s", "--expire-prepared=0s"]);
        let check = output(skiff_in(&root).arg("fsck"));
        assert!(
            check.status.success(),
            "{context}: fsck after gc:\n{}",
            stdout(&check)
        );
        // The disk's loop device may have another number after a restart.
        let image = self.disk.image.display().to_string();
        let now = leftovers::leftovers();
        let left: Vec<&String> = now
            .iter()
            .filter(|l| !self.baseline.contains(l))
            .filter(|l| !(l.starts_with("loop ") && l.ends_with(&image)))
            .collect();
        assert!(left.is_empty(), "{context}: left behind: {left:?}");
    }
}

#[test]
#[ignore = "heavy: runs in the serial phase of `cargo xtask test`; `cargo xtask torture` runs it long"]
fn power_cuts_at_random_instants_lose_nothing_reported_and_the_store_recovers() {
    let seed = seed();
    let cuts = env_number("SKIFF_TORTURE_CUTS", 12) as usize;
    eprintln!("power: seed {seed} (replay with SKIFF_TORTURE_SEED={seed}), {cuts} cuts");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let gpg = Gpg::new("Power Signer <power@example.com>", "ed25519");
    let aci = big_image(&root, &gpg);
    let key = root.join("signer.asc");
    std::fs::write(&key, gpg.public_key()).unwrap();
    let out = output(
        skiff_in(&root)
            .args(["trust", "--skip-fingerprint-review", "--prefix"])
            .arg(super::FILE_NAME)
            .arg(&key),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let disk = Disk::new(root.join("disk.img"), root.join("data"));
    let mut bench = Bench {
        aci: aci.display().to_string(),
        root,
        disk,
        seed,
        expected: BTreeSet::new(),
        repaired: BTreeMap::new(),
        // The disk's own mount and loop device are not leftovers.
        baseline: leftovers::leftovers(),
    };

    let mut durations = BTreeMap::new();
    for op in OPS {
        let command = bench.prepare(op);
        let started = Instant::now();
        let args: Vec<&str> = command.iter().map(String::as_str).collect();
        let out = bench.must(&args);
        durations.insert(op, started.elapsed());
        bench.account(op, &out);
    }
    eprintln!("power: durations uncut {durations:?}");

    let mut rng = Rng(seed ^ 0x9e37_79b9_7f4a_7c15);
    let (mut during, mut after) = (BTreeMap::<Op, usize>::new(), 0);
    for round in 1..=cuts {
        let op = OPS[rng.below(OPS.len() as u64) as usize];
        let command = bench.prepare(op);
        // Up to 1.25 times the operation's duration: some cuts come just
        // after it reported success, which must then hold.
        let delay = durations[&op].mul_f64(rng.below(1250) as f64 / 1000.0);
        if bench.cut_during(op, &command, delay) {
            after += 1;
        } else {
            *during.entry(op).or_default() += 1;
        }
        bench.check(round, op, &command);
    }
    eprintln!(
        "power: seed {seed}: {cuts} cuts, during an operation {during:?}, after it reported success {after}; repaired after them: {:?}",
        bench.repaired
    );
}
