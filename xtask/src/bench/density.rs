//! `cargo xtask bench density`: idle pods per host and memory per pod.

use super::*;

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
