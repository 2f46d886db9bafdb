//! `cargo xtask bench density`: idle pods per host and memory per pod.

use super::report::{DensityPoint, Report, Table};
use super::*;

/// One density row for `podman run -d` (runc, host network) of `rootfs`
/// at `n`: start rate, running count, RSS/PSS of each container's
/// `conmon` (podman's per-container supervisor); then all removed.
fn podman_density(
    work: &Path,
    rootfs: &Path,
    n: usize,
) -> Result<(Vec<String>, serde_json::Value)> {
    let state = work.join("podman");
    let podman = || podman_in(&state);
    let start = Instant::now();
    for i in 0..n {
        run_quiet(
            podman()
                .args(["run", "-d", "--network=host", "--name"])
                .arg(format!("skiff-density-{i}"))
                .args(PODMAN_ULIMITS)
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
    let row = vec![
        n.to_string(),
        "podman run -d (runc)".into(),
        format!("{:.0} pods/s", n as f64 / secs),
        format!("{running}/{n}"),
        format!("{:.2} / {:.2} MiB (conmon)", per(rss), per(pss)),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
    ];
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
    let value = serde_json::json!({
        "n": n, "runtime": "podman", "pods_per_s": n as f64 / secs, "running": running,
        "supervisor_rss_mib": per(rss), "supervisor_pss_mib": per(pss),
    });
    Ok((row, value))
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

/// Resident and proportional memory of a process, in KiB (from
/// /proc/PID/smaps_rollup).
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

/// The largest N podman is measured at: it starts ~7 containers a second
/// here, so 10,000 would take half an hour.
const PODMAN_MAX_N: usize = 1000;

/// Puts `kernel.pid_max` back as it was.
struct PidMax(Option<String>);

impl PidMax {
    const PATH: &'static str = "/proc/sys/kernel/pid_max";

    /// Raises `kernel.pid_max` to at least `needed` for the run.
    fn at_least(needed: u64) -> Result<PidMax> {
        let now = std::fs::read_to_string(Self::PATH)?;
        if now.trim().parse::<u64>().unwrap_or(0) >= needed {
            return Ok(PidMax(None));
        }
        std::fs::write(Self::PATH, needed.to_string())
            .with_context(|| format!("raise {} to {needed}", Self::PATH))?;
        Ok(PidMax(Some(now)))
    }
}

impl Drop for PidMax {
    fn drop(&mut self) {
        if let Some(old) = &self.0 {
            let _ = std::fs::write(Self::PATH, old.trim());
        }
    }
}

/// Before starting pod `i` (every 100th): why to stop, when the host's
/// available memory is under 2 GiB. Each v1 memory cgroup holds shrinker
/// state for every superblock on the host, so a pod's kernel memory grows
/// with the number of pods (docs/performance.md): the bench stops rather
/// than drive the host out of memory.
fn running_out(i: usize) -> Option<String> {
    if !i.is_multiple_of(100) {
        return None;
    }
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib = |name: &str| {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let available = kib("MemAvailable:");
    (available < 2 << 20).then(|| {
        format!(
            "{:.1} GiB of memory available, {:.1} GiB in unreclaimable kernel slab",
            available as f64 / 1048576.0,
            kib("SUnreclaim:") as f64 / 1048576.0
        )
    })
}

/// Memory of N pods, per pod, in MiB.
#[derive(Default)]
struct PerPod {
    supervisor_rss: f64,
    supervisor_pss: f64,
    init_rss: f64,
    init_pss: f64,
    /// What the pod's memory cgroup counts as kernel memory.
    kernel: f64,
    /// How much the host's unreclaimable slab grew, per pod: the kernel
    /// memory that cgroup does not count (its own structures are charged
    /// to its parent).
    slab: f64,
}

impl PerPod {
    /// Supervisor and init PSS and the slab growth: what one more pod
    /// costs beside its app.
    fn total(&self) -> f64 {
        self.supervisor_pss + self.init_pss + self.slab
    }
}

/// The host's unreclaimable slab, KiB.
fn unreclaimable_slab_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("SUnreclaim:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// `(after - before)` KiB over `n`, in MiB.
fn growth_mib(before: u64, after: u64, n: usize) -> f64 {
    after.saturating_sub(before) as f64 / n.max(1) as f64 / 1024.0
}

/// The pids of the running pods' inits in `pods` (`skiff list
/// --format=json`).
fn running_inits(pods: &serde_json::Value) -> Vec<String> {
    pods.as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["state"] == "running")
        .filter_map(|p| p["pid"].as_i64().map(|x| x.to_string()))
        .collect()
}

/// The parent of process `pid` (a pod's supervisor, for its init).
fn parent_of(pid: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(
        status
            .lines()
            .find_map(|l| l.strip_prefix("PPid:"))?
            .trim()
            .to_string(),
    )
}

/// Waits (up to a minute) until the supervisors of the running pods `pods`
/// rest, as an idle pod's does 2 s after its last event (docs/stage1.md):
/// how many rest, of how many.
fn wait_for_rest(pods: &serde_json::Value) -> (usize, usize) {
    let supervisors: Vec<String> = running_inits(pods)
        .iter()
        .filter_map(|pid| parent_of(pid))
        .collect();
    let resting = || {
        supervisors
            .iter()
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|c| c.trim() == "skiff-wait")
            })
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut n = resting();
    while n < supervisors.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        n = resting();
    }
    (n, supervisors.len())
}

/// Measures the running pods `pods` (`skiff list --format=json`): their
/// inits (the pods' pids), the inits' parents (the supervisors) and the
/// pods' cgroup v1 kernel memory.
fn per_pod(pods: &serde_json::Value) -> (usize, PerPod) {
    let running = running_inits(pods);
    let mut sum = [0u64; 5];
    for pid in &running {
        let (r, p) = rss_pss_kib(pid);
        sum[2] += r;
        sum[3] += p;
        if let Some(ppid) = parent_of(pid) {
            let (r, p) = rss_pss_kib(&ppid);
            sum[0] += r;
            sum[1] += p;
        }
    }
    for p in pods.as_array().into_iter().flatten() {
        let uuid = p["uuid"].as_str().unwrap_or_default();
        let f = format!("/sys/fs/cgroup/memory/skiff/{uuid}/memory.kmem.usage_in_bytes");
        sum[4] += std::fs::read_to_string(f)
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
            .map_or(0, |b| b / 1024);
    }
    let per = |kib: u64| kib as f64 / running.len().max(1) as f64 / 1024.0;
    (
        running.len(),
        PerPod {
            supervisor_rss: per(sum[0]),
            supervisor_pss: per(sum[1]),
            init_rss: per(sum[2]),
            init_pss: per(sum[3]),
            kernel: per(sum[4]),
            slab: 0.0,
        },
    )
}

/// `cargo xtask bench density [--quick] [--n=N[,N…]]`: N idle pods
/// (`sleep` from busybox, `--detach`, host network) — N = 100 (quick),
/// the given sizes, or 100, 1000 and 10,000 — started one after another:
/// start rate, that all N run, the memory of each pod's stage1 supervisor
/// and init and the pods' kernel memory (cgroup v1 kmem), then everything
/// stopped and collected; against `crun run -d` and (up to N = 1000)
/// `podman run -d` of the same rootfs at the same N.
pub fn density(root: &Path, skiff: &Path, quick: bool, sizes: Option<Vec<usize>>) -> Result<()> {
    let sizes = match sizes {
        Some(sizes) => sizes,
        None if quick => vec![100],
        None => vec![100, 1000, 10_000],
    };
    // Four tasks per pod while it starts (supervisor, its logger thread,
    // init, the app; a resting supervisor has no logger thread),
    // with room for the rest of the host.
    let largest = sizes.iter().copied().max().unwrap_or(0) as u64;
    let _pid_max = PidMax::at_least(4 * largest + 16_384)?;
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

    let mut report = Report::new(
        "density",
        quick,
        "idle busybox pods (`sleep 3600`, `--detach`, host network) started one after another, all \
         checked running, then all stopped and collected; `crun run -d` and `podman run -d` (runc) of \
         the same rootfs at the same N",
    );
    let mut table = Table::new(
        "",
        &[
            "N",
            "runtime",
            "start rate",
            "all running",
            "supervisor RSS / PSS per pod",
            "init RSS / PSS per pod",
            "pod cgroup kmem",
            "host slab growth per pod",
            "per-pod cost (supervisor PSS + init PSS + slab growth)",
        ],
    );
    let mut json = Vec::new();
    let mut points = Vec::new();
    for &n in &sizes {
        // skiff
        let slab_before = unreclaimable_slab_kib();
        let start = Instant::now();
        let mut started = 0;
        let mut ran_out = None;
        for i in 0..n {
            if let Some(memory) = running_out(i) {
                ran_out = Some(memory);
                break;
            }
            run_quiet(sk().args([
                "run",
                "--detach",
                "--net=host",
                "--pull-policy=never",
                "example.com/sleep:1",
            ]))?;
            started += 1;
        }
        let secs = start.elapsed().as_secs_f64();
        if let Some(memory) = &ran_out {
            report.note(format!(
                "N = {n}: skiff stopped starting pods at {started}: {memory} (the pods were then stopped and collected)"
            ));
        }
        let n_started = started;
        let list = Command::new(skiff)
            .arg("--dir")
            .arg(&data)
            .args(["list", "--format=json"])
            .output()?;
        let pods: serde_json::Value = serde_json::from_slice(&list.stdout)?;
        let (resting, supervisors) = wait_for_rest(&pods);
        report.note(format!(
            "N = {n}: {resting} of {supervisors} supervisors resting (`skiff-wait`, docs/stage1.md) when measured"
        ));
        let (running, mut m) = per_pod(&pods);
        m.slab = growth_mib(slab_before, unreclaimable_slab_kib(), started);
        table.row(vec![
            n.to_string(),
            "skiff (ns)".into(),
            format!("{:.0} pods/s", n_started as f64 / secs),
            format!("{running}/{n}"),
            format!("{:.2} / {:.2} MiB", m.supervisor_rss, m.supervisor_pss),
            format!("{:.2} / {:.2} MiB", m.init_rss, m.init_pss),
            format!("{:.2} MiB", m.kernel),
            format!("{:.2} MiB", m.slab),
            format!("{:.2} MiB", m.total()),
        ]);
        json.push(serde_json::json!({
            "n": n, "runtime": "skiff", "pods_per_s": n_started as f64 / secs, "running": running,
            "supervisor_rss_mib": m.supervisor_rss, "supervisor_pss_mib": m.supervisor_pss,
            "init_rss_mib": m.init_rss, "init_pss_mib": m.init_pss, "kernel_mib": m.kernel,
            "slab_growth_mib": m.slab,
            "per_pod_mib": m.total(),
        }));
        points.push(DensityPoint {
            runtime: "skiff".into(),
            n,
            pods_per_s: n_started as f64 / secs,
            mib_per_pod: m.total(),
        });
        let uuids: Vec<&str> = pods
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["uuid"].as_str())
            .collect();
        for chunk in uuids.chunks(500) {
            let _ = sk().args(["stop", "--force"]).args(chunk).status();
        }
        run_quiet(sk().args(["gc", "--grace-period=0s"]))?;

        // crun
        let slab_before = unreclaimable_slab_kib();
        let start = Instant::now();
        for i in 0..n {
            if let Some(memory) = running_out(i) {
                report.note(format!(
                    "N = {n}: crun stopped starting containers at {i}: {memory}"
                ));
                break;
            }
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
        let crun_slab = growth_mib(slab_before, unreclaimable_slab_kib(), ids.len());
        table.row(vec![
            n.to_string(),
            "crun run -d".into(),
            format!("{:.0} pods/s", ids.len() as f64 / secs),
            format!("{}/{n}", ids.len()),
            "(no supervisor)".into(),
            "(no init)".into(),
            String::new(),
            format!("{crun_slab:.2} MiB"),
            format!("{crun_slab:.2} MiB"),
        ]);
        json.push(serde_json::json!({
            "n": n, "runtime": "crun", "pods_per_s": ids.len() as f64 / secs, "running": ids.len(),
            "slab_growth_mib": crun_slab, "per_pod_mib": crun_slab,
        }));
        points.push(DensityPoint {
            runtime: "crun".into(),
            n,
            pods_per_s: ids.len() as f64 / secs,
            mib_per_pod: crun_slab,
        });
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
        if podman_measured && n <= PODMAN_MAX_N {
            let (row, value) = podman_density(&work, &bundle.join("rootfs"), n)?;
            points.push(DensityPoint {
                runtime: "podman".into(),
                n,
                pods_per_s: value["pods_per_s"].as_f64().unwrap_or(0.0),
                mib_per_pod: value["supervisor_pss_mib"].as_f64().unwrap_or(0.0),
            });
            table.row(row);
            json.push(value);
        }
    }
    report.table(table);
    if !podman_measured {
        report.note("podman: not measured (not installed; cargo xtask deps installs it).");
    } else if sizes.iter().any(|&n| n > PODMAN_MAX_N) {
        report.note(format!(
            "podman: measured up to N = {PODMAN_MAX_N} (it starts ~7 containers a second here)."
        ));
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
    report.plot(
        "density.svg",
        "start rate and memory per pod (skiff: supervisor PSS + init PSS + host slab growth; crun: host slab growth; podman: conmon PSS) vs N",
        super::report::density_plot(&points),
    );
    report.save(root, serde_json::Value::Array(json))?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}
