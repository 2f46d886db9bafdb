//! `cargo xtask bench logs`: an app writing 1 GiB to stdout. Through
//! skiff's logger (per-app rotating CRI log, passed on to `skiff run`'s
//! stdout), against the same app writing to /dev/null inside the pod, and
//! against `podman run` with its k8s-file logger (conmon), also beside its
//! own /dev/null run. Everything on tmpfs: the figures are the logging
//! path's CPU cost, not a disk's.

use super::*;

/// One line of output: 70 characters and a newline.
const LINE: &str = "0123456789012345678901234567890123456789012345678901234567890123456789";

/// `cargo xtask bench logs [--quick]`: MB/s of each way (median of the
/// runs), and its ratio to skiff's /dev/null run.
pub fn logs(root: &Path, skiff: &Path, quick: bool) -> Result<()> {
    let work = PathBuf::from(WORK).join("logs");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let bytes: u64 = if quick { 64 << 20 } else { 1 << 30 };
    let runs = if quick { 1 } else { 3 };
    let data = work.join("data");
    let sk = || quiet_skiff(skiff, &data);

    let layout = work.join("layout");
    busybox_layout(&layout, "writer", "/bin/sh", &["sh"])?;
    let aci = work.join("writer.aci");
    build_image(skiff, &["--compression=none"], &layout, &aci)?;
    run_quiet(sk().args(["--insecure-options=image", "fetch"]).arg(&aci))?;

    let write = format!("yes {LINE} | head -c {bytes}");
    let to_null = format!("{write} > /dev/null");
    let skiff_run = |script: &str| {
        let mut c = sk();
        c.args(["run", "--net=none", "example.com/writer:1.0", "--"])
            .args(["-c", script]);
        c
    };
    let podman_state = work.join("podman");
    let podman = |script: &str| {
        let mut c = podman_in(&podman_state);
        c.args(["run", "--rm", "--network=host", "--log-driver=k8s-file"])
            .args(PODMAN_ULIMITS)
            .arg("--rootfs")
            .arg(layout.join("rootfs"))
            .args(["/bin/sh", "-c", script])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        c
    };
    let mut scenarios: Vec<(&'static str, Command)> = vec![
        (
            "skiff run, app writes to /dev/null in the pod",
            skiff_run(&to_null),
        ),
        (
            "skiff run, app writes to stdout (logger, passed on to /dev/null)",
            skiff_run(&write),
        ),
    ];
    if installed("podman") {
        scenarios.push(("podman run, app writes to /dev/null", podman(&to_null)));
        scenarios.push((
            "podman run --log-driver=k8s-file, app writes to stdout",
            podman(&write),
        ));
    }
    println!(
        "\nbench logs: an app writing {} MiB of 71-byte lines, {runs} run(s) each, data on tmpfs",
        bytes >> 20
    );
    let mut rows = Vec::new();
    for (name, mut cmd) in scenarios {
        let times = time(runs, || Ok(()), || run_quiet(&mut cmd))?;
        rows.push(Row { name, times });
    }
    let mbps = |row: &Row| bytes as f64 / 1e6 / row.median().as_secs_f64();
    let reference = rows[0].median().as_secs_f64();
    println!("| way | MB/s | median | ratio to skiff /dev/null |");
    println!("|---|---|---|---|");
    let mut json = Vec::new();
    for row in &rows {
        let ratio = row.median().as_secs_f64() / reference.max(1e-9);
        println!(
            "| {} | {:.0} | {:.2} s | {ratio:.2}× |",
            row.name,
            mbps(row),
            row.median().as_secs_f64()
        );
        json.push(serde_json::json!({
            "name": row.name,
            "mbPerSecond": mbps(row),
            "seconds": row.times.iter().map(|t| t.as_secs_f64()).collect::<Vec<_>>(),
        }));
    }
    let path = write_result(
        root,
        "logs.json",
        serde_json::to_string_pretty(&serde_json::json!({"bytes": bytes, "rows": json}))?,
    )?;
    println!("results: {}", path.display());
    unmount_under(&podman_state)?;
    let _ = sk().args(["gc", "--grace-period=0s"]).status();
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}
