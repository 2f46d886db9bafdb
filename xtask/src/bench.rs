//! `cargo xtask bench import [--quick]`: import and render throughput of
//! the store against the floors of the same work done by standard tools
//! (`sha512sum` for hashing, `tar -x` for unpacking), measured in the same
//! run on tmpfs so the disk does not decide the result.

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

/// Writes `body` to `target/bench/<file>`; returns its path.
fn write_result(root: &Path, file: &str, body: String) -> Result<PathBuf> {
    let dir = root.join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(file);
    std::fs::write(&path, body)?;
    Ok(path)
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

pub fn import(root: &Path, skiff: &Path, quick: bool) -> Result<()> {
    let budget: u64 = if quick { 50 << 20 } else { 200 << 20 };
    let runs = if quick { 3 } else { 7 };
    let work = PathBuf::from(WORK);
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let layout = work.join("layout");
    std::fs::create_dir_all(layout.join("rootfs"))?;
    let copied = sample_tree(
        &["/usr/lib/x86_64-linux-gnu", "/usr/share", "/usr/lib"],
        &layout.join("rootfs"),
        budget,
    )?;
    std::fs::write(
        layout.join("manifest"),
        r#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/bench","labels":[{"name":"os","value":"linux"},{"name":"arch","value":"amd64"}]}"#,
    )?;
    let aci = work.join("bench.aci");
    let aci_gz = work.join("bench.aci.gz");
    run_quiet(
        Command::new(skiff)
            .args(["image", "build", "--compression=none", "--owner-root"])
            .arg(&layout)
            .arg(&aci)
            .stdout(std::process::Stdio::null()),
    )?;
    run_quiet(
        Command::new(skiff)
            .args(["image", "build", "--compression=gzip", "--owner-root"])
            .arg(&layout)
            .arg(&aci_gz)
            .stdout(std::process::Stdio::null()),
    )?;
    std::fs::remove_dir_all(&layout)?;
    let tar_bytes = std::fs::metadata(&aci)?.len();
    println!(
        "bench import: {:.0} MB tree ({:.0} MB of file data), {runs} runs each, on tmpfs ({WORK})",
        tar_bytes as f64 / 1e6,
        copied as f64 / 1e6
    );

    let out = work.join("out");
    let data = work.join("data");
    let fresh = |p: &Path| -> Result<()> {
        let _ = std::fs::remove_dir_all(p);
        std::fs::create_dir_all(p)?;
        Ok(())
    };
    let policy = ArchivePolicy::default();
    let mut rows = Vec::new();
    rows.push(Row {
        name: "sha512sum (floor: hashing)",
        times: time(
            runs,
            || Ok(()),
            || {
                run_quiet(
                    Command::new("sha512sum")
                        .arg(&aci)
                        .stdout(std::process::Stdio::null()),
                )
            },
        )?,
    });
    rows.push(Row {
        name: "tar -x (floor: unpacking)",
        times: time(
            runs,
            || fresh(&out),
            || run_quiet(Command::new("tar").arg("-xf").arg(&aci).arg("-C").arg(&out)),
        )?,
    });
    rows.push(Row {
        name: "skiff import (hash+verify+store)",
        times: time(
            runs,
            || fresh(&data),
            || {
                let store = Store::open(&data)?;
                store.import(std::fs::File::open(&aci)?, &policy)?;
                Ok(())
            },
        )?,
    });
    let id = std::cell::RefCell::new(None);
    rows.push(Row {
        name: "skiff render (unpack tree)",
        times: time(
            runs,
            || {
                fresh(&data)?;
                let store = Store::open(&data)?;
                *id.borrow_mut() = Some(store.import(std::fs::File::open(&aci)?, &policy)?.id);
                Ok(())
            },
            || {
                let store = Store::open(&data)?;
                store.render(id.borrow().as_ref().context("no image")?)?;
                Ok(())
            },
        )?,
    });
    rows.push(Row {
        name: "gzip -dc into sha512sum (floor: gzip)",
        times: time(
            runs,
            || Ok(()),
            || {
                run_quiet(Command::new("sh").arg("-c").arg(format!(
                    "gzip -dc {} | sha512sum >/dev/null",
                    aci_gz.display()
                )))
            },
        )?,
    });
    rows.push(Row {
        name: "skiff import of the gzip ACI",
        times: time(
            runs,
            || fresh(&data),
            || {
                let store = Store::open(&data)?;
                store.import(std::fs::File::open(&aci_gz)?, &policy)?;
                Ok(())
            },
        )?,
    });

    let mbps = |d: Duration| tar_bytes as f64 / 1e6 / d.as_secs_f64();
    let floor = |name: &str| {
        rows.iter()
            .find(|r| r.name.starts_with(name))
            .map(Row::median)
    };
    println!("\n| scenario | min | median | max | MB/s (median) | ratio to floor |");
    println!("|---|---|---|---|---|---|");
    let mut json = Vec::new();
    for row in &rows {
        let floor_time = match row.name {
            n if n.starts_with("skiff import (") => floor("sha512sum"),
            n if n.starts_with("skiff render") => floor("tar -x"),
            n if n.starts_with("skiff import of the gzip") => floor("gzip -dc"),
            _ => None,
        };
        let ratio = floor_time.map(|f| row.median().as_secs_f64() / f.as_secs_f64());
        println!(
            "| {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.0} | {} |",
            row.name,
            row.times[0].as_secs_f64() * 1e3,
            row.median().as_secs_f64() * 1e3,
            row.times[row.times.len() - 1].as_secs_f64() * 1e3,
            mbps(row.median()),
            ratio.map_or("—".to_string(), |r| format!("{r:.2}×"))
        );
        json.push(format!(
            "{{\"scenario\":{:?},\"min_ms\":{:.3},\"median_ms\":{:.3},\"max_ms\":{:.3},\"mb_per_s\":{:.1},\"ratio\":{}}}",
            row.name,
            row.times[0].as_secs_f64() * 1e3,
            row.median().as_secs_f64() * 1e3,
            row.times[row.times.len() - 1].as_secs_f64() * 1e3,
            mbps(row.median()),
            ratio.map_or("null".to_string(), |r| format!("{r:.3}"))
        ));
    }
    let written = write_result(
        root,
        "import.json",
        format!(
            "{{\"tar_bytes\":{tar_bytes},\"runs\":{runs},\"rows\":[{}]}}\n",
            json.join(",")
        ),
    )?;
    println!("\nwrote {}", written.display());
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// `bench start`: start→exit of `/bin/true` in a busybox rootfs: a prepared
/// skiff pod (`skiff run-prepared`), `skiff run` of a cached image, and the
/// peers crun, runc, bwrap, systemd-nspawn and podman on a copy of the same
/// rootfs, alternating, on tmpfs.
pub fn start(root: &Path, skiff: &Path, quick: bool) -> Result<()> {
    let runs = if quick { 20 } else { 50 };
    let work = PathBuf::from(WORK).join("start");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let data = work.join("data");
    let sk = || {
        let mut c = quiet_skiff(skiff, &data);
        c.arg("--local-config").arg(work.join("etc"));
        c
    };
    fetch_true_image(skiff, &work, sk())?;

    // The peers run a copy of the rendered tree.
    let trees = std::fs::read_dir(data.join("trees"))?
        .filter_map(|e| e.ok())
        .find(|e| !e.file_name().to_string_lossy().starts_with('.'));
    let tree = trees.context("no rendered tree")?.path().join("rootfs");
    let bundle = work.join("bundle");
    peer_bundle(&bundle, &tree, &["/bin/true"])?;

    let hybrid = hybrid_cgroups();
    let mut counter = 0u64;
    let mut next_id = || {
        counter += 1;
        format!("skiff-bench-{}-{counter}", std::process::id())
    };
    // Prepared pods, made ahead (untimed).
    let mut prepared = Vec::new();
    for _ in 0..runs * 2 {
        let out = Command::new(skiff)
            .arg("--dir")
            .arg(&data)
            .arg("--local-config")
            .arg(work.join("etc"))
            // Like the peers' bundle: no network namespace.
            .args([
                "prepare",
                "--net=host",
                "--pull-policy=never",
                "example.com/true:1.0",
            ])
            .output()?;
        if !out.status.success() {
            bail!(
                "skiff prepare failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        prepared.push(String::from_utf8_lossy(&out.stdout).trim().to_string());
    }
    let quiet = |mut c: Command| -> Command {
        c.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        c
    };
    let crun_cmd = |id: &str| -> Command {
        if hybrid {
            // crun refuses hybrid cgroup hosts; hide the empty v2 mount (machine-notes.md).
            let mut c = Command::new("unshare");
            c.args(["-m", "sh", "-c"]).arg(format!(
                "umount /sys/fs/cgroup/unified && exec crun run -b {} {id}",
                bundle.display()
            ));
            c
        } else {
            let mut c = Command::new("crun");
            c.arg("run").arg("-b").arg(&bundle).arg(id);
            c
        }
    };
    let peer_root = bundle.join("rootfs");
    let podman_state = work.join("podman");
    // Each scenario: its row name and the command of one run (`id` names
    // the container, `uuid` a prepared pod).
    type RunCommand<'a> = Box<dyn Fn(&str, &str) -> Command + 'a>;
    type Scenario<'a> = (&'static str, RunCommand<'a>);
    let mut scenarios: Vec<Scenario> = vec![
        (
            "skiff run-prepared (prepared pod)",
            Box::new(|_, uuid| {
                let mut c = sk();
                c.args(["run-prepared", uuid]);
                c
            }),
        ),
        (
            "skiff run (cached image)",
            Box::new(|_, _| {
                let mut c = sk();
                c.args([
                    "run",
                    "--net=host",
                    "--pull-policy=never",
                    "example.com/true:1.0",
                ]);
                c
            }),
        ),
        (CRUN_ROW, Box::new(|id, _| quiet(crun_cmd(id)))),
    ];
    let mut missing = Vec::new();
    // Peers whose exit leaves work behind (podman's conmon runs `podman
    // container cleanup` after the container exits; nspawn's teardown;
    // runc's: a prepared skiff pod measured 6.5 ms alternating with crun
    // and 8.3 ms alternating with runc) are measured in a phase of their
    // own so it does not bleed into the light scenarios' runs.
    let mut heavy: Vec<Scenario> = vec![(
        "runc run",
        Box::new(|id, _| {
            let mut c = Command::new("runc");
            c.arg("run").arg("-b").arg(&bundle).arg(id);
            quiet(c)
        }),
    )];
    for (peer, name) in [
        ("bwrap", "bwrap (pid, ipc, uts, cgroup namespaces)"),
        ("systemd-nspawn", "systemd-nspawn --register=no"),
        ("podman", "podman run --rootfs (runc, host network)"),
    ] {
        if !installed(peer) {
            missing.push(peer);
            continue;
        }
        let run: RunCommand = match peer {
            "bwrap" => Box::new(|_, _| {
                let mut c = Command::new("bwrap");
                c.arg("--bind")
                    .arg(&peer_root)
                    .args(["/", "--proc", "/proc", "--dev", "/dev"])
                    .args(["--unshare-ipc", "--unshare-pid", "--unshare-uts"])
                    .args(["--unshare-cgroup-try", "--die-with-parent", "/bin/true"]);
                quiet(c)
            }),
            "systemd-nspawn" => Box::new(|_, _| {
                // machine-notes.md: needs /usr in the tree, and no registration here.
                let mut c = Command::new("systemd-nspawn");
                c.args(["-q", "--keep-unit", "--register=no", "-D"])
                    .arg(&peer_root)
                    .arg("/bin/true");
                quiet(c)
            }),
            _ => Box::new(|_, _| {
                // crun 1.8 refuses hybrid hosts under podman too; runc works. The
                // default rlimits exceed this machine's hard limits (machine-notes.md).
                let mut c = Command::new("podman");
                c.arg("--root")
                    .arg(podman_state.join("root"))
                    .arg("--runroot")
                    .arg(podman_state.join("run"))
                    .args(["--runtime", "runc", "--cgroup-manager=cgroupfs"])
                    .args(["run", "--rm", "--network=host"])
                    .args([
                        "--ulimit",
                        "nofile=1024:1024",
                        "--ulimit",
                        "nproc=4096:4096",
                    ])
                    .arg("--rootfs")
                    .arg(&peer_root)
                    .arg("/bin/true");
                quiet(c)
            }),
        };
        if peer == "bwrap" {
            scenarios.push((name, run));
        } else {
            heavy.push((name, run));
        }
    }
    if hybrid {
        scenarios.push((
            WRAPPER_ROW,
            Box::new(|_, _| {
                let mut c = Command::new("unshare");
                c.args([
                    "-m",
                    "sh",
                    "-c",
                    "umount /sys/fs/cgroup/unified && exec true",
                ]);
                c
            }),
        ));
    }
    let split = scenarios.len();
    scenarios.extend(heavy);
    let rows = || -> Vec<Row> {
        scenarios
            .iter()
            .map(|(name, _)| Row {
                name,
                times: Vec::new(),
            })
            .collect()
    };
    let (mut warm, mut cold) = (rows(), rows());
    for phase in [0..split, split..scenarios.len()] {
        let count = phase.len();
        for round in 0..runs {
            // Rotate the order each round so no scenario always runs first.
            // Warm: back to back. Cold: after an idle pause, so the first
            // cgroup migration waits a whole RCU grace period (performance.md).
            for (k, is_cold) in (0..count * 2).map(|k| (k % count, k >= count)) {
                let which = phase.start + (round + k) % count;
                let uuid = &prepared[round * 2 + usize::from(is_cold)];
                if is_cold {
                    std::thread::sleep(COLD_IDLE);
                }
                let mut cmd = (scenarios[which].1)(&next_id(), uuid);
                let start = Instant::now();
                run_quiet(&mut cmd)?;
                let took = start.elapsed();
                let rows = if is_cold { &mut cold } else { &mut warm };
                rows[which].times.push(took);
            }
        }
    }
    let mut json = Vec::new();
    println!(
        "\nbench start: /bin/true in a busybox rootfs, {runs} runs each, alternating, data on tmpfs"
    );
    for (title, rows) in [
        ("warm (back to back)", &mut warm),
        ("cold (after 200 ms idle)", &mut cold),
    ] {
        json.extend(print_start_table(title, rows)?);
    }
    for peer in missing {
        println!("{peer}: not measured (not installed; cargo xtask deps installs it)");
    }
    let written = write_result(
        root,
        "start.json",
        format!("{{\"runs\":{runs},\"rows\":[{}]}}\n", json.join(",")),
    )?;
    println!("wrote {}", written.display());
    let svg = write_result(
        root,
        "start.svg",
        start_plot(&[("warm", &warm), ("cold", &cold)]),
    )?;
    println!("wrote {} (start-time distributions)", svg.display());
    unmount_under(&podman_state)?;
    let _ = sk().args(["gc", "--grace-period=0s"]).status();
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// Builds `example.com/true:1.0` (busybox-static's /bin/true) in `work`
/// and fetches it with `fetch` (skiff with the benchmark's data dir).
fn fetch_true_image(skiff: &Path, work: &Path, mut fetch: Command) -> Result<()> {
    let layout = work.join("layout");
    std::fs::create_dir_all(layout.join("rootfs/bin"))?;
    std::fs::copy(
        std::fs::canonicalize("/bin/busybox")?,
        layout.join("rootfs/bin/busybox"),
    )?;
    std::os::unix::fs::symlink("busybox", layout.join("rootfs/bin/true"))?;
    std::fs::write(
        layout.join("manifest"),
        r#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/true","labels":[{"name":"version","value":"1.0"},{"name":"os","value":"linux"},{"name":"arch","value":"amd64"}],"app":{"exec":["/bin/true"],"user":"0","group":"0"}}"#,
    )?;
    let aci = work.join("true.aci");
    build_image(skiff, &["--compression=none"], &layout, &aci)?;
    run_quiet(fetch.args(["--insecure-options=image", "fetch"]).arg(&aci))
}

/// The file in `dir` whose name starts with `prefix`.
fn find_prefixed(dir: &Path, prefix: &str) -> Result<PathBuf> {
    std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .find(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.path())
        .with_context(|| format!("no {prefix}* in {}", dir.display()))
}

/// `bench start --stage1=kvm`: start→exit of `/bin/true` in a kvm pod
/// (`skiff run` of a cached image, `--net=none`) against a bare QEMU
/// boot-to-poweroff of the same guest kernel and initramfs with the same
/// accelerator (the guest init's probe mode: it prints a marker and powers
/// off), alternating.
pub fn start_kvm(root: &Path, skiff: &Path, quick: bool) -> Result<()> {
    let runs = if quick { 5 } else { 10 };
    let work = PathBuf::from(WORK).join("start-kvm");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let data = work.join("data");
    let sk = || quiet_skiff(skiff, &data);
    fetch_true_image(skiff, &work, sk())?;
    let kvm_run = || {
        let mut c = sk();
        c.args([
            "run",
            "--stage1=kvm",
            "--net=none",
            "--pull-policy=never",
            "example.com/true:1.0",
        ]);
        c
    };
    // Untimed: builds the guest image and decides the accelerator.
    run_quiet(&mut kvm_run())?;
    let kvm = data.join("kvm");
    let guest = find_prefixed(&kvm, "guest-")?;
    let verdict: serde_json::Value =
        serde_json::from_slice(&std::fs::read(find_prefixed(&kvm, "accel-guest-")?)?)?;
    let accel = if verdict["usable"] == true {
        "kvm"
    } else {
        "tcg"
    };
    let reason = verdict["reason"].as_str().unwrap_or_default().to_string();
    // The same machine as skiff's (crates/stage1/src/kvm/mod.rs), without
    // the pod's 9p exports.
    let khz = std::fs::read_to_string("/proc/cpuinfo")?
        .lines()
        .find(|l| l.starts_with("cpu MHz"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|mhz| (mhz * 1000.0) as u64)
        .unwrap_or(2_600_000);
    let bare = || {
        let mut c = Command::new("qemu-system-x86_64");
        c.args(["-M", "microvm,x-option-roms=off", "-accel", accel])
            .args(["-cpu", if accel == "kvm" { "host" } else { "max" }])
            .args(["-m", "256M", "-smp", "2", "-nodefaults", "-no-user-config"])
            .args(["-display", "none", "-no-reboot"])
            .args([
                "-chardev",
                "stdio,id=con,signal=off",
                "-serial",
                "chardev:con",
            ])
            .args(["-chardev", "file,id=err,path=/proc/self/fd/2,append=on"])
            .args(["-device", "virtio-serial-device,max_ports=1"])
            .args(["-device", "virtconsole,chardev=err"])
            .arg("-kernel")
            .arg(guest.join("vmlinux"))
            .arg("-initrd")
            .arg(guest.join("initrd.cpio"))
            .arg("-append")
            .arg(format!(
                "console=ttyS0 panic=-1 tsc_early_khz={khz} lpj={} tsc=reliable no_timer_check \
                 pci=off nokaslr mitigations=off rdinit=/init quiet loglevel=1 skiff.probe",
                khz * 4
            ))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        c
    };
    let mut rows = [
        Row {
            name: "skiff run --stage1=kvm (cached image, --net=none)",
            times: Vec::new(),
        },
        Row {
            name: "bare QEMU boot to poweroff (same kernel, initramfs, accel)",
            times: Vec::new(),
        },
    ];
    for round in 0..runs {
        for k in 0..2 {
            let which = (round + k) % 2;
            let mut cmd = if which == 0 { kvm_run() } else { bare() };
            let start = Instant::now();
            run_quiet(&mut cmd)?;
            rows[which].times.push(start.elapsed());
        }
    }
    for row in rows.iter_mut() {
        row.times.sort();
    }
    let bare_median = rows[1].median().as_secs_f64();
    println!(
        "\nbench start --stage1=kvm: /bin/true, {runs} runs each, alternating; accelerator {accel} ({reason})\n"
    );
    println!("| scenario | min | median | max | ratio to bare boot |");
    println!("|---|---|---|---|---|");
    let mut json = Vec::new();
    for row in &rows {
        let ratio = row.print_with_ratio(bare_median);
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        json.push(format!(
            "{{\"scenario\":{:?},\"min_ms\":{:.1},\"median_ms\":{:.1},\"max_ms\":{:.1},\"ratio_to_bare\":{ratio:.3}}}",
            row.name,
            ms(row.times[0]),
            ms(row.median()),
            ms(row.times[row.times.len() - 1])
        ));
    }
    write_result(
        root,
        "start-kvm.json",
        format!(
            "{{\"accel\":{accel:?},\"reason\":{reason:?},\"runs\":{runs},\"rows\":[{}]}}\n",
            json.join(",")
        ),
    )?;
    let _ = sk().args(["gc", "--grace-period=0s"]).status();
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// An SVG strip plot of start times: one band per scenario and mode, a
/// dot per run, the median as a bar, on a shared millisecond axis.
fn start_plot(groups: &[(&str, &Vec<Row>)]) -> String {
    let (left, width, band) = (380.0, 600.0, 26.0);
    let max_ms = groups
        .iter()
        .flat_map(|(_, rows)| rows.iter().flat_map(|r| r.times.iter()))
        .map(|t| t.as_secs_f64() * 1e3)
        .fold(1.0f64, f64::max);
    let x = |ms: f64| left + ms / max_ms * width;
    let lines: usize = groups.iter().map(|(_, rows)| rows.len()).sum();
    let height = 40.0 + band * lines as f64 + 30.0;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <text x=\"10\" y=\"20\" font-size=\"14\">start to exit of /bin/true (ms), each dot one run, bar = median</text>\n",
        left + width + 40.0
    );
    let mut y = 40.0;
    for (mode, rows) in groups {
        for row in rows.iter() {
            svg.push_str(&format!(
                "<text x=\"10\" y=\"{}\">{mode}: {}</text>\n",
                y + 15.0,
                row.name
            ));
            for t in &row.times {
                svg.push_str(&format!(
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"#3366cc\" fill-opacity=\"0.5\"/>\n",
                    x(t.as_secs_f64() * 1e3),
                    y + 11.0
                ));
            }
            if !row.times.is_empty() {
                let mut sorted = row.times.clone();
                sorted.sort();
                let m = x(sorted[sorted.len() / 2].as_secs_f64() * 1e3);
                svg.push_str(&format!(
                    "<line x1=\"{m:.1}\" x2=\"{m:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#cc3333\" stroke-width=\"2\"/>\n",
                    y + 2.0,
                    y + 20.0
                ));
            }
            y += band;
        }
    }
    let axis = y + 10.0;
    svg.push_str(&format!(
        "<line x1=\"{left}\" x2=\"{}\" y1=\"{axis}\" y2=\"{axis}\" stroke=\"black\"/>\n",
        left + width
    ));
    for i in 0..=5 {
        let ms = max_ms * f64::from(i) / 5.0;
        svg.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{ms:.0}</text>\n",
            x(ms),
            axis + 15.0
        ));
    }
    svg.push_str("</svg>\n");
    svg
}

/// The row every `bench start` ratio is taken against.
const CRUN_ROW: &str = "crun run";
/// crun's hybrid-cgroup wrapper alone, subtracted from crun's median.
const WRAPPER_ROW: &str = "crun's hybrid-cgroup wrapper alone";

/// Whether `program` is on PATH.
fn installed(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// Prints one table of `bench start` (ratios to crun net of its wrapper)
/// and returns its rows as JSON objects.
fn print_start_table(title: &str, rows: &mut [Row]) -> Result<Vec<String>> {
    for row in rows.iter_mut() {
        row.times.sort();
    }
    let median_of = |name: &str| rows.iter().find(|r| r.name == name).map(Row::median);
    let crun = median_of(CRUN_ROW).context("no crun row")?;
    let wrapper = median_of(WRAPPER_ROW);
    let hybrid = wrapper.is_some();
    let wrapper = wrapper.unwrap_or_default();
    let crun_net = crun.saturating_sub(wrapper);
    println!("\n{title}:\n\n| scenario | min | median | max | ratio to crun run |");
    println!("|---|---|---|---|---|");
    let mut json = Vec::new();
    for row in rows.iter() {
        let ratio = row.median().as_secs_f64() / crun_net.as_secs_f64().max(1e-9);
        println!(
            "| {} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2}× |",
            row.name,
            row.times[0].as_secs_f64() * 1e3,
            row.median().as_secs_f64() * 1e3,
            row.times[row.times.len() - 1].as_secs_f64() * 1e3,
            ratio
        );
        json.push(format!(
            "{{\"mode\":{title:?},\"scenario\":{:?},\"min_ms\":{:.3},\"median_ms\":{:.3},\"max_ms\":{:.3},\"ratio_to_crun\":{:.3}}}",
            row.name,
            row.times[0].as_secs_f64() * 1e3,
            row.median().as_secs_f64() * 1e3,
            row.times[row.times.len() - 1].as_secs_f64() * 1e3,
            ratio
        ));
    }
    if hybrid {
        println!(
            "\n({title}) crun run is measured inside `unshare -m sh -c 'umount /sys/fs/cgroup/unified && exec crun …'` \
             (crun 1.8 refuses hybrid cgroup hosts); ratios use crun's median minus the wrapper's ({:.2} ms).",
            wrapper.as_secs_f64() * 1e3
        );
    }
    Ok(json)
}

/// One keep-alive HTTP/1.1 exchange on `stream`; returns the status code.
fn http_exchange(
    stream: &mut std::net::TcpStream,
    reader: &mut std::io::BufReader<std::net::TcpStream>,
    request: &[u8],
) -> Result<u16> {
    use std::io::{BufRead, Read, Write};
    stream.write_all(request)?;
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    let code: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    Ok(code)
}

/// `cargo xtask bench metadata [--quick]`: requests/s of the metadata
/// service (GET pod/uuid and POST pod/hmac/sign) from several concurrent
/// keep-alive clients on 127.0.0.1, for a registered host-network pod.
pub fn metadata(root: &Path, skiff: &Path, quick: bool) -> Result<()> {
    use std::io::BufRead;
    let work = PathBuf::from(WORK).join("metadata");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let mut service = Command::new(skiff)
        .arg("--dir")
        .arg(work.join("data"))
        .args([
            "metadata-service",
            "--listen-port=0",
            "--listen-address=127.0.0.1",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let stderr = service.stderr.take().context("no service stderr")?;
    let mut lines = std::io::BufReader::new(stderr).lines();
    let port: u16 = loop {
        let line = lines.next().context("the metadata service exited")??;
        if let Some(p) = line.split("port=").nth(1) {
            break p.split_whitespace().next().unwrap_or("").parse()?;
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let result = (|| -> Result<()> {
        let uuid = "0a6f4d5e-1c2b-4a39-8e7f-123456789abc";
        let (token, _) = skiff_metadata::protocol::register(
            &work.join("data"),
            skiff_metadata::protocol::Registration {
                uuid: uuid.into(),
                manifest: r#"{"acVersion":"0.8.11","acKind":"PodManifest","apps":[]}"#.into(),
                apps: vec![],
                ip: None,
            },
        )?;
        let clients = 8;
        let per_client = if quick { 500 } else { 2500 };
        println!(
            "\nbench metadata: {clients} keep-alive clients x {per_client} requests each, 127.0.0.1:{port}"
        );
        println!("\n| request | requests | seconds | requests/s | errors |\n|---|---|---|---|---|");
        let mut json = Vec::new();
        for (name, request) in [
            (
                "GET pod/uuid",
                format!(
                    "GET /{token}/acMetadata/v1/pod/uuid HTTP/1.1\r\nHost: mds\r\nMetadata-Flavor: AppContainer\r\n\r\n"
                ),
            ),
            (
                "POST pod/hmac/sign",
                format!(
                    "POST /{token}/acMetadata/v1/pod/hmac/sign HTTP/1.1\r\nHost: mds\r\nMetadata-Flavor: AppContainer\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 13\r\n\r\ncontent=hello"
                ),
            ),
        ] {
            let start = Instant::now();
            let threads: Vec<_> = (0..clients)
                .map(|_| {
                    let request = request.clone();
                    std::thread::spawn(move || -> Result<usize> {
                        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
                        stream.set_nodelay(true)?;
                        let mut reader = std::io::BufReader::new(stream.try_clone()?);
                        let mut errors = 0;
                        for _ in 0..per_client {
                            if http_exchange(&mut stream, &mut reader, request.as_bytes())? != 200 {
                                errors += 1;
                            }
                        }
                        Ok(errors)
                    })
                })
                .collect();
            let mut errors = 0;
            for t in threads {
                errors += t.join().map_err(|_| anyhow::anyhow!("client panicked"))??;
            }
            let secs = start.elapsed().as_secs_f64();
            let total = clients * per_client;
            let rate = total as f64 / secs;
            println!("| {name} | {total} | {secs:.2} | {rate:.0} | {errors} |");
            json.push(format!(
                "{{\"request\":{name:?},\"requests\":{total},\"seconds\":{secs:.3},\"per_second\":{rate:.0},\"errors\":{errors}}}"
            ));
            if errors > 0 {
                bail!("{errors} requests failed");
            }
        }
        let written = write_result(root, "metadata.json", format!("[{}]\n", json.join(",")))?;
        println!("wrote {}", written.display());
        Ok(())
    })();
    let _ = Command::new("kill")
        .args(["-TERM", &service.id().to_string()])
        .status();
    let _ = service.wait();
    let _ = std::fs::remove_dir_all(&work);
    result
}

/// `cargo xtask bench pull [--quick]`: a ~200 MB three-layer image pulled
/// from a local docker-registry into a fresh store and rendered (skiff
/// fetch) against `skopeo copy` to an OCI layout + `umoci unpack`, the same
/// work for the peers, alternating, data on tmpfs.
pub fn pull(root: &Path, skiff: &Path, quick: bool) -> Result<()> {
    let budget: u64 = if quick { 60 << 20 } else { 200 << 20 };
    let runs = if quick { 2 } else { 5 };
    let work = PathBuf::from(WORK).join("pull");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    // Three layers from host files.
    let mut copied = 0;
    for (i, (sources, share)) in [
        (&["/usr/lib/x86_64-linux-gnu"][..], 0.6),
        (&["/usr/share"][..], 0.3),
        (&["/usr/bin", "/usr/sbin"][..], 0.1),
    ]
    .into_iter()
    .enumerate()
    {
        let dir = work.join(format!("layer{i}"));
        std::fs::create_dir_all(&dir)?;
        copied += sample_tree(sources, &dir, (budget as f64 * share) as u64)?;
        run_quiet(
            Command::new("tar")
                .arg("-C")
                .arg(&dir)
                .arg("-cf")
                .arg(work.join(format!("layer{i}.tar")))
                .arg("."),
        )?;
        std::fs::remove_dir_all(&dir)?;
    }
    let layout = work.join("oci");
    run_quiet(
        Command::new("umoci")
            .args(["init", "--layout"])
            .arg(&layout),
    )?;
    let image = format!("{}:1", layout.display());
    run_quiet(Command::new("umoci").args(["new", "--image", &image]))?;
    for i in 0..3 {
        run_quiet(
            Command::new("umoci")
                .args(["raw", "add-layer", "--image", &image])
                .arg(work.join(format!("layer{i}.tar"))),
        )?;
        std::fs::remove_file(work.join(format!("layer{i}.tar")))?;
    }
    run_quiet(Command::new("umoci").args([
        "config",
        "--image",
        &image,
        "--config.cmd",
        "/bin/true",
    ]))?;
    // The registry.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let config = work.join("registry.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog: {{level: warn, accesslog: {{disabled: true}}}}\n\
             storage: {{filesystem: {{rootdirectory: {}}}}}\nhttp: {{addr: 127.0.0.1:{port}}}\n",
            work.join("registry").display()
        ),
    )?;
    let mut registry = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let result = (|| -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("docker-registry did not start");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let remote = format!("docker://127.0.0.1:{port}/bench/big:1");
        run_quiet(
            Command::new("skopeo")
                .args(["copy", "--dest-tls-verify=false"])
                .arg(format!("oci:{image}"))
                .arg(&remote)
                .stdout(std::process::Stdio::null()),
        )?;
        std::fs::remove_dir_all(&layout)?;
        let mut rows = vec![
            Row {
                name: "skiff fetch (pull, verify, squash, import, render)",
                times: Vec::new(),
            },
            Row {
                name: "skopeo copy + umoci unpack",
                times: Vec::new(),
            },
        ];
        let scratch = work.join("scratch");
        for round in 0..runs {
            for k in 0..2 {
                let which = (round + k) % 2;
                let _ = std::fs::remove_dir_all(&scratch);
                std::fs::create_dir_all(&scratch)?;
                let start = Instant::now();
                if which == 0 {
                    run_quiet(
                        Command::new(skiff)
                            .arg("--dir")
                            .arg(scratch.join("data"))
                            .args(["--insecure-options=image,http", "fetch", &remote])
                            .stdout(std::process::Stdio::null())
                            .stderr(std::process::Stdio::null()),
                    )?;
                } else {
                    let dir = scratch.join("oci");
                    run_quiet(
                        Command::new("skopeo")
                            .args(["copy", "--src-tls-verify=false", &remote])
                            .arg(format!("oci:{}:1", dir.display()))
                            .stdout(std::process::Stdio::null()),
                    )?;
                    run_quiet(
                        Command::new("umoci")
                            .args(["unpack", "--image"])
                            .arg(format!("{}:1", dir.display()))
                            .arg(scratch.join("bundle"))
                            .stdout(std::process::Stdio::null())
                            .stderr(std::process::Stdio::null()),
                    )?;
                }
                rows[which].times.push(start.elapsed());
            }
        }
        let _ = std::fs::remove_dir_all(&scratch);
        for r in &mut rows {
            r.times.sort();
        }
        let peer = rows[1].median().as_secs_f64();
        println!(
            "\nbench pull: {:.0} MB of files in 3 layers from docker-registry on 127.0.0.1, {runs} runs each, alternating, on tmpfs\n",
            copied as f64 / 1e6
        );
        println!(
            "| scenario | min | median | max | ratio to skopeo+umoci |\n|---|---|---|---|---|"
        );
        let mut json = Vec::new();
        for r in &rows {
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            let ratio = r.print_with_ratio(peer);
            json.push(format!(
                "{{\"scenario\":{:?},\"median_ms\":{:.1},\"ratio\":{ratio:.3}}}",
                r.name,
                ms(r.median())
            ));
        }
        let written = write_result(root, "pull.json", format!("[{}]\n", json.join(",")))?;
        println!("wrote {}", written.display());
        Ok(())
    })();
    let _ = registry.kill();
    let _ = registry.wait();
    let _ = std::fs::remove_dir_all(&work);
    result
}

/// A Debian bookworm minbase root filesystem (debootstrap), cached as
/// target/minbase.tar.
fn minbase(root: &Path) -> Result<PathBuf> {
    let tarball = root.join("target/minbase.tar");
    if tarball.exists() {
        return Ok(tarball);
    }
    let dir = root.join("target/minbase.tmp");
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "making a Debian minbase root filesystem with debootstrap (once; cached in target/minbase.tar)"
    );
    run_quiet(
        Command::new("debootstrap")
            .args(["--variant=minbase", "bookworm"])
            .arg(&dir)
            .arg("http://deb.debian.org/debian")
            .stdout(std::process::Stdio::null()),
    )
    .context("debootstrap failed (it needs the Debian mirror)")?;
    run_quiet(
        Command::new("tar")
            .arg("-C")
            .arg(&dir)
            .arg("-cf")
            .arg(&tarball)
            .arg("."),
    )?;
    std::fs::remove_dir_all(&dir)?;
    Ok(tarball)
}

/// `cargo xtask bench audit [--quick]`: `skiff image audit` of a Debian
/// minbase image (SBOM plus OSV matching), from the store and from the ACI
/// file. Goal: under 1 s.
pub fn audit(root: &Path, skiff: &Path, quick: bool) -> Result<()> {
    let runs = if quick { 3 } else { 10 };
    let tarball = minbase(root)?;
    let work = PathBuf::from(WORK).join("audit");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(work.join("layout/rootfs"))?;
    run_quiet(
        Command::new("tar")
            .arg("-C")
            .arg(work.join("layout/rootfs"))
            .arg("-xf")
            .arg(&tarball),
    )?;
    // Device nodes are the runtime's business (ACIs may not carry them).
    let dev = work.join("layout/rootfs/dev");
    std::fs::remove_dir_all(&dev)?;
    std::fs::create_dir(&dev)?;
    let aci = work.join("minbase.aci");
    build_image(
        skiff,
        &["--name=example.com/minbase", "--label=version=12"],
        &work.join("layout"),
        &aci,
    )?;
    std::fs::remove_dir_all(work.join("layout"))?;
    let data = work.join("data");
    let sk = || quiet_skiff(skiff, &data);
    // Debian has setuid programs (su, passwd, mount).
    run_quiet(
        sk().args(["--insecure-options=image", "fetch", "--allow-setuid"])
            .arg(&aci),
    )?;
    run_quiet(
        sk().args(["vuln-db", "import"])
            .arg(root.join("tests/fixtures/osv")),
    )?;
    let mut rows = [
        Row {
            name: "skiff image audit --format=cyclonedx (image in the store)",
            times: Vec::new(),
        },
        Row {
            name: "skiff image audit --format=cyclonedx minbase.aci (the archive)",
            times: Vec::new(),
        },
    ];
    for _ in 0..runs {
        for (i, row) in rows.iter_mut().enumerate() {
            let start = Instant::now();
            if i == 0 {
                run_quiet(sk().args([
                    "image",
                    "audit",
                    "--format=cyclonedx",
                    "example.com/minbase:12",
                ]))?;
            } else {
                run_quiet(
                    sk().args(["image", "audit", "--format=cyclonedx"])
                        .arg(&aci),
                )?;
            }
            row.times.push(start.elapsed());
        }
    }
    let packages = Command::new(skiff)
        .arg("--dir")
        .arg(work.join("data"))
        .args(["image", "audit", "--format=json", "example.com/minbase:12"])
        .output()?;
    let count = serde_json::from_slice::<serde_json::Value>(&packages.stdout)?["packages"]
        .as_array()
        .map_or(0, Vec::len);
    println!(
        "\nbench audit: Debian bookworm minbase ({count} packages, {:.0} MB ACI), 8 OSV advisories, {runs} runs\n",
        std::fs::metadata(&aci)?.len() as f64 / 1e6
    );
    println!("| scenario | min | median | max | goal < 1 s |\n|---|---|---|---|---|");
    let mut json = Vec::new();
    for r in &mut rows {
        r.times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let met = if r.median() < Duration::from_secs(1) {
            "met"
        } else {
            "missed"
        };
        println!(
            "| {} | {:.0} ms | {:.0} ms | {:.0} ms | {met} |",
            r.name,
            ms(r.times[0]),
            ms(r.median()),
            ms(r.times[r.times.len() - 1])
        );
        json.push(format!(
            "{{\"scenario\":{:?},\"median_ms\":{:.1}}}",
            r.name,
            ms(r.median())
        ));
    }
    write_result(root, "audit.json", format!("[{}]\n", json.join(",")))?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// Resident and proportional memory of a process, in KiB (from
/// /proc/PID/smaps_rollup).
/// One density row for `podman run -d` (runc, host network) of `rootfs`
/// at `n`: start rate, running count, RSS/PSS of each container's
/// `conmon` (podman's per-container supervisor); then all removed.
fn podman_density(work: &Path, rootfs: &Path, n: usize) -> Result<String> {
    let state = work.join("podman");
    let podman = || {
        let mut c = Command::new("podman");
        c.arg("--root")
            .arg(state.join("root"))
            .arg("--runroot")
            .arg(state.join("run"))
            .args(["--runtime", "runc", "--cgroup-manager=cgroupfs"]);
        c
    };
    let start = Instant::now();
    for i in 0..n {
        run_quiet(
            podman()
                .args(["run", "-d", "--network=host", "--name"])
                .arg(format!("skiff-density-{i}"))
                // This machine's hard limits are below podman's defaults.
                .args([
                    "--ulimit",
                    "nofile=1024:1024",
                    "--ulimit",
                    "nproc=4096:4096",
                ])
                .arg("--rootfs")
                .arg(rootfs)
                .args(["/bin/sleep", "3600"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null()),
        )?;
    }
    let secs = start.elapsed().as_secs_f64();
    let ps = podman().args(["ps", "-q"]).output()?;
    let running = String::from_utf8_lossy(&ps.stdout).lines().count();
    // conmon processes of this podman state only.
    let marker = state.display().to_string();
    let conmons = conmon_pids(&marker)?;
    let (mut rss, mut pss) = (0u64, 0u64);
    for pid in &conmons {
        let (r, p) = rss_pss_kib(pid);
        rss += r;
        pss += p;
    }
    let per = |x: u64| x as f64 / conmons.len().max(1) as f64 / 1024.0;
    println!(
        "| {n} | podman run -d (runc) | {:.0} pods/s | {running}/{n} | {:.2} / {:.2} MiB (conmon) | | |",
        n as f64 / secs,
        per(rss),
        per(pss)
    );
    let _ = podman()
        .args(["rm", "--force", "--all", "--time=0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    // Each conmon exits on its own after its container is gone.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !conmon_pids(&marker)?.is_empty() {
        if Instant::now() > deadline {
            bail!("podman's conmon processes still running 60 s after podman rm");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    unmount_under(&state)?;
    Ok(format!(
        "{{\"n\":{n},\"runtime\":\"podman\",\"pods_per_s\":{:.1},\"running\":{running},\"supervisor_rss_mib\":{:.3},\"supervisor_pss_mib\":{:.3}}}",
        n as f64 / secs,
        per(rss),
        per(pss)
    ))
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

/// Pids of the `conmon` processes whose command line mentions `marker`.
fn conmon_pids(marker: &str) -> Result<Vec<String>> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc")?.filter_map(|e| e.ok()) {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        if cmdline.starts_with("/usr/bin/conmon") && cmdline.contains(marker) {
            pids.push(entry.file_name().to_string_lossy().to_string());
        }
    }
    Ok(pids)
}

fn rss_pss_kib(pid: &str) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("Rss:"), field("Pss:"))
}

/// `cargo xtask bench density [--quick]`: N idle pods (`sleep` from
/// busybox, `--detach`, host network) — N = 100 (quick) or 100, 500, 1000 —
/// started one after another: start rate, that all N run, the memory of
/// each pod's stage1 supervisor and init, the pods' kernel memory (cgroup
/// v1 kmem), then everything stopped and collected; against `crun run -d`
/// and `podman run -d` of the same rootfs at the same N.
pub fn density(root: &Path, skiff: &Path, quick: bool) -> Result<()> {
    let sizes: &[usize] = if quick { &[100] } else { &[100, 500, 1000] };
    let work = PathBuf::from(WORK).join("density");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(work.join("layout/rootfs/bin"))?;
    std::fs::copy(
        std::fs::canonicalize("/bin/busybox")?,
        work.join("layout/rootfs/bin/busybox"),
    )?;
    std::os::unix::fs::symlink("busybox", work.join("layout/rootfs/bin/sleep"))?;
    let aci = work.join("sleep.aci");
    build_image(
        skiff,
        &[
            "--name=example.com/sleep",
            "--label=version=1",
            "--exec=/bin/sleep 3600",
        ],
        &work.join("layout"),
        &aci,
    )?;
    let data = work.join("data");
    let sk = || quiet_skiff(skiff, &data);
    run_quiet(sk().args(["--insecure-options=image", "fetch"]).arg(&aci))?;
    // The peers' bundle.
    let bundle = work.join("bundle");
    peer_bundle(
        &bundle,
        &work.join("layout/rootfs"),
        &["/bin/sleep", "3600"],
    )?;
    let hybrid = hybrid_cgroups();
    let crun_root = work.join("crun-state");
    let podman_measured = installed("podman");

    println!(
        "\nbench density: idle busybox pods started one after another (host network), then stopped\n"
    );
    println!(
        "| N | runtime | start rate | all running | supervisor RSS / PSS per pod | init RSS per pod | kernel memory per pod |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut json = Vec::new();
    for &n in sizes {
        // skiff
        let start = Instant::now();
        for _ in 0..n {
            run_quiet(sk().args([
                "run",
                "--detach",
                "--net=host",
                "--pull-policy=never",
                "example.com/sleep:1",
            ]))?;
        }
        let secs = start.elapsed().as_secs_f64();
        let list = Command::new(skiff)
            .arg("--dir")
            .arg(&data)
            .args(["list", "--format=json"])
            .output()?;
        let pods: serde_json::Value = serde_json::from_slice(&list.stdout)?;
        let running: Vec<String> = pods
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["state"] == "running")
            .filter_map(|p| p["pid"].as_i64().map(|x| x.to_string()))
            .collect();
        let (mut sup_rss, mut sup_pss, mut init_rss, mut kmem) = (0u64, 0u64, 0u64, 0u64);
        for pid in &running {
            let (r, _) = rss_pss_kib(pid);
            init_rss += r;
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            if let Some(ppid) = status
                .lines()
                .find_map(|l| l.strip_prefix("PPid:"))
                .map(str::trim)
            {
                let (r, p) = rss_pss_kib(ppid);
                sup_rss += r;
                sup_pss += p;
            }
        }
        for p in pods.as_array().into_iter().flatten() {
            let uuid = p["uuid"].as_str().unwrap_or_default();
            let f = format!("/sys/fs/cgroup/memory/skiff/{uuid}/memory.kmem.usage_in_bytes");
            kmem += std::fs::read_to_string(f)
                .ok()
                .and_then(|t| t.trim().parse::<u64>().ok())
                .unwrap_or(0);
        }
        let per = |x: u64| x as f64 / running.len().max(1) as f64 / 1024.0;
        println!(
            "| {n} | skiff (ns) | {:.0} pods/s | {}/{n} | {:.2} / {:.2} MiB | {:.2} MiB | {:.2} MiB |",
            n as f64 / secs,
            running.len(),
            per(sup_rss),
            per(sup_pss),
            per(init_rss),
            kmem as f64 / running.len().max(1) as f64 / 1048576.0
        );
        json.push(format!(
            "{{\"n\":{n},\"runtime\":\"skiff\",\"pods_per_s\":{:.1},\"running\":{},\"supervisor_rss_mib\":{:.3},\"supervisor_pss_mib\":{:.3}}}",
            n as f64 / secs,
            running.len(),
            per(sup_rss),
            per(sup_pss)
        ));
        for p in pods.as_array().into_iter().flatten() {
            if let Some(uuid) = p["uuid"].as_str() {
                let _ = sk().args(["stop", "--force", uuid]).status();
            }
        }
        run_quiet(sk().args(["gc", "--grace-period=0s"]))?;

        // crun
        let start = Instant::now();
        for i in 0..n {
            let id = format!("skiff-density-{i}");
            let mut c = if hybrid {
                let mut c = Command::new("unshare");
                c.args(["-m", "sh", "-c"]).arg(format!(
                    "umount /sys/fs/cgroup/unified && exec crun --root {} run -d -b {} {id}",
                    crun_root.display(),
                    bundle.display()
                ));
                c
            } else {
                let mut c = Command::new("crun");
                c.arg("--root")
                    .arg(&crun_root)
                    .args(["run", "-d", "-b"])
                    .arg(&bundle)
                    .arg(&id);
                c
            };
            run_quiet(
                c.stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null()),
            )?;
        }
        let secs = start.elapsed().as_secs_f64();
        let listed = Command::new("crun")
            .arg("--root")
            .arg(&crun_root)
            .args(["list", "-q"])
            .output()?;
        let ids: Vec<String> = String::from_utf8_lossy(&listed.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        println!(
            "| {n} | crun run -d | {:.0} pods/s | {}/{n} | (no supervisor) | | |",
            n as f64 / secs,
            ids.len()
        );
        json.push(format!(
            "{{\"n\":{n},\"runtime\":\"crun\",\"pods_per_s\":{:.1},\"running\":{}}}",
            n as f64 / secs,
            ids.len()
        ));
        for id in &ids {
            let _ = Command::new("crun")
                .arg("--root")
                .arg(&crun_root)
                .args(["kill", id, "KILL"])
                .status();
        }
        std::thread::sleep(Duration::from_millis(500));
        for id in &ids {
            let _ = Command::new("crun")
                .arg("--root")
                .arg(&crun_root)
                .args(["delete", "--force", id])
                .stderr(std::process::Stdio::null())
                .status();
        }
        if podman_measured {
            json.push(podman_density(&work, &bundle.join("rootfs"), n)?);
        }
    }
    if !podman_measured {
        println!("\npodman: not measured (not installed; cargo xtask deps installs it).");
    }
    let left = Command::new(skiff)
        .arg("--dir")
        .arg(&data)
        .args(["list", "--format=json"])
        .output()?;
    let left: serde_json::Value = serde_json::from_slice(&left.stdout)?;
    if left.as_array().is_some_and(|a| !a.is_empty()) {
        bail!("pods left after the density run: {left}");
    }
    write_result(root, "density.json", format!("[{}]\n", json.join(",")))?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_plot_has_a_dot_per_run_and_a_median_per_row() {
        let rows = vec![
            Row {
                name: "a",
                times: vec![
                    Duration::from_millis(5),
                    Duration::from_millis(7),
                    Duration::from_millis(6),
                ],
            },
            Row {
                name: "b",
                times: vec![Duration::from_millis(9)],
            },
        ];
        let svg = start_plot(&[("warm", &rows)]);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<circle").count(), 4);
        assert_eq!(svg.matches("stroke=\"#cc3333\"").count(), 2);
        assert!(svg.contains("warm: a") && svg.contains("warm: b"));
    }
}
