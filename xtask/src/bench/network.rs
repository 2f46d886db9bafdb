//! `cargo xtask bench network`: what a pod's network costs at start.
//! The same `/bin/true` pod with `--net=none` and on the built-in default
//! network (prepared, and `skiff run` of a cached image), against podman
//! with `--network=none` and with its default network, alternating.

use super::report::{Report, Table};
use super::*;

/// The row the skiff ratios are taken against.
const NONE_ROW: &str = "skiff run-prepared --net=none";
/// The row the podman ratio is taken against.
const PODMAN_ROW: &str = "podman run (runc, default network)";

/// `bench network`: start→exit of `/bin/true` with and without a network.
pub fn network(root: &Path, skiff: &Path, quick: bool) -> Result<()> {
    let runs = if quick { 10 } else { 40 };
    let set_up = super::start::TrueImage::set_up("network", skiff)?;
    let (work, data, skiff, tree) = (&set_up.work, &set_up.data, &set_up.skiff, &set_up.tree);
    let sk = || set_up.sk();
    let peer_root = work.join("rootfs");
    run_quiet(Command::new("cp").arg("-a").arg(tree).arg(&peer_root))?;
    std::fs::create_dir_all(peer_root.join("usr"))?;

    let (data_dir, etc) = (data, work.join("etc"));
    let prepare = |net: &'static str| {
        prepare_pods(runs, "the", || {
            let mut c = Command::new(skiff);
            c.arg("--dir")
                .arg(data_dir)
                .arg("--local-config")
                .arg(&etc)
                .args([
                    "prepare",
                    net,
                    "--pull-policy=never",
                    "example.com/true:1.0",
                ]);
            c
        })
    };
    let pods_none = prepare("--net=none")?;
    let pods_default = prepare("--net=default")?;
    let podman_state = work.join("podman");
    let podman = |network: &str| {
        let mut c = podman_in(&podman_state);
        c.args(["run", "--rm"]).args(PODMAN_ULIMITS);
        if !network.is_empty() {
            c.arg(network);
        }
        c.arg("--rootfs").arg(&peer_root).arg("/bin/true");
        c.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        c
    };
    type RunCommand<'a> = Box<dyn Fn(usize) -> Command + 'a>;
    let mut scenarios: Vec<(&'static str, RunCommand)> = vec![
        (
            NONE_ROW,
            Box::new(|i| {
                let mut c = sk();
                c.args(["run-prepared", &pods_none[i]]);
                c
            }),
        ),
        (
            "skiff run-prepared (default network)",
            Box::new(|i| {
                let mut c = sk();
                c.args(["run-prepared", &pods_default[i]]);
                c
            }),
        ),
        (
            "skiff run --net=none (cached image)",
            Box::new(|_| {
                let mut c = sk();
                c.args(["run", "--net=none", "--pull-policy=never"])
                    .arg("example.com/true:1.0");
                c
            }),
        ),
        (
            "skiff run (cached image, default network)",
            Box::new(|_| {
                let mut c = sk();
                c.args(["run", "--pull-policy=never", "example.com/true:1.0"]);
                c
            }),
        ),
    ];
    let has_podman = installed("podman");
    if has_podman {
        scenarios.push((
            "podman run --network=none (runc)",
            Box::new(|_| podman("--network=none")),
        ));
        scenarios.push((PODMAN_ROW, Box::new(|_| podman(""))));
    }
    let mut rows: Vec<Row> = scenarios
        .iter()
        .map(|(name, _)| Row {
            name,
            times: Vec::new(),
        })
        .collect();
    let count = scenarios.len();
    let own_procs = own_procs_file();
    let mut window_opened = true;
    for round in 0..runs {
        // Rotated each round so no scenario always runs first; each run
        // starts in the window in which cgroup moves do not wait (opened
        // untimed just before it), whichever scenario ran before it (the
        // `--net=none` row mostly followed podman's, which leaves it shut).
        for k in 0..count {
            let which = (round + k) % count;
            window_opened &= open_cgroup_window(own_procs.as_deref());
            let mut cmd = (scenarios[which].1)(round);
            let start = Instant::now();
            run_quiet(&mut cmd)?;
            rows[which].times.push(start.elapsed());
        }
    }
    for row in rows.iter_mut() {
        row.times.sort();
    }
    let median = |name: &str| {
        rows.iter()
            .find(|r| r.name == name)
            .map(|r| r.median().as_secs_f64())
    };
    let none = median(NONE_ROW).context("no --net=none row")?;
    let podman_default = median(PODMAN_ROW);
    let mut report = Report::new(
        "network",
        quick,
        format!(
            "start→exit of `/bin/true` in a busybox rootfs with and without a network, {runs} runs each, alternating, data on tmpfs"
        ),
    );
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mut table = Table::new(
        "",
        &[
            "scenario",
            "min",
            "median",
            "max",
            &format!("ratio to {NONE_ROW}"),
            "podman default network ÷ this",
        ],
    );
    let mut samples = Vec::new();
    for row in &rows {
        let m = row.median().as_secs_f64();
        let speedup = podman_default.map(|p| p / m.max(1e-9));
        table.row(vec![
            row.name.to_string(),
            format!("{:.1} ms", ms(row.times[0])),
            format!("{:.1} ms", ms(row.median())),
            format!("{:.1} ms", ms(row.times[row.times.len() - 1])),
            format!("{:.2}×", m / none.max(1e-9)),
            speedup.map_or("–".into(), |s| format!("{s:.2}×")),
        ]);
        samples.push(serde_json::json!({
            "scenario": row.name,
            "ms": row.times.iter().map(|t| ms(*t)).collect::<Vec<_>>(),
        }));
    }
    report.table(table);
    report.note(cgroup_window_note("runs", window_opened));
    if !has_podman {
        report.note("podman: not measured (not installed; cargo xtask deps installs it)");
    }
    report.save(root, serde_json::json!({"runs": runs, "rows": samples}))?;
    unmount_under(&podman_state)?;
    let _ = sk().args(["gc", "--grace-period=0s"]).status();
    let _ = std::fs::remove_dir_all(work);
    Ok(())
}
