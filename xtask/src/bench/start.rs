//! `cargo xtask bench start [--stage1=kvm]`: pod start to exit, warm and
//! cold, against the peers, with a table and a plot.

use super::report::{Report, Table};
use super::*;

/// `bench start`: start→exit of `/bin/true` in a busybox rootfs: a prepared
/// skiff pod (`skiff run-prepared`), `skiff run` of a cached image, and the
/// peers crun, runc, bwrap, systemd-nspawn and podman on a copy of the same
/// rootfs, alternating, on tmpfs.
pub fn start(root: &Path, skiff: &Path, quick: bool) -> Result<()> {
    let runs = if quick { 20 } else { 50 };
    let set_up = TrueImage::set_up("start", skiff)?;
    let (work, data, skiff, tree) = (&set_up.work, &set_up.data, &set_up.skiff, &set_up.tree);
    let sk = || set_up.sk();
    // The peers run a copy of the rendered tree.
    let bundle = work.join("bundle");
    peer_bundle(&bundle, tree, &["/bin/true"])?;

    let hybrid = hybrid_cgroups();
    let mut counter = 0u64;
    let mut next_id = || {
        counter += 1;
        format!("skiff-bench-{}-{counter}", std::process::id())
    };
    // Prepared pods, made ahead (untimed); like the peers' bundle, with no
    // network namespace.
    let prepare = [
        "prepare",
        "--net=host",
        "--pull-policy=never",
        "example.com/true:1.0",
    ];
    let prepared = prepare_pods(runs * 2, "the", || {
        let mut c = Command::new(skiff);
        c.arg("--dir")
            .arg(data)
            .arg("--local-config")
            .arg(work.join("etc"))
            .args(prepare);
        c
    })?;
    // A baseline build to compare with side by side
    // (`SKIFF_BENCH_BASELINE=DIR`: its `skiff`, with `skiff-stage1` (and,
    // since the small skiff, `skiff-full`) beside
    // it), in a data directory of its own with the same image and pods.
    let baseline = std::env::var_os("SKIFF_BENCH_BASELINE").map(PathBuf::from);
    let baseline_data = work.join("baseline-data");
    let mut baseline_pods = std::collections::HashMap::new();
    if let Some(dir) = &baseline {
        let bin = dir.join("skiff");
        let bsk = || {
            let mut c = quiet_skiff(&bin, &baseline_data);
            c.arg("--local-config").arg(work.join("etc"));
            c
        };
        run_quiet(
            bsk()
                .args(["--insecure-options=image", "fetch"])
                .arg(work.join("true.aci")),
        )?;
        let pods = prepare_pods(prepared.len(), "the baseline's", || {
            let mut c = bsk();
            c.args(prepare);
            c
        })?;
        baseline_pods.extend(prepared.iter().cloned().zip(pods));
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
    // An ordinary user's prepared pods, and podman as that user.
    let rootless = rootless::set_up(work, skiff, &work.join("true.aci"), tree, runs * 2)?;
    let user_pods: std::collections::HashMap<String, String> = prepared
        .iter()
        .cloned()
        .zip(rootless.prepared.iter().cloned())
        .collect();
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
    if let Some(dir) = &baseline {
        let bin = dir.join("skiff");
        let (data, pods, etc) = (&baseline_data, &baseline_pods, work.join("etc"));
        scenarios.insert(
            1,
            (
                "skiff run-prepared (baseline build)",
                Box::new(move |_, uuid| {
                    let mut c = quiet_skiff(&bin, data);
                    c.arg("--local-config").arg(&etc);
                    c.arg("run-prepared")
                        .arg(pods.get(uuid).map_or("", String::as_str));
                    c
                }),
            ),
        );
    }
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
    heavy.push((
        "skiff run-prepared as a user (rootless, --net=none)",
        Box::new(|_, uuid| {
            let mut c = rootless.user.command(&rootless.skiff);
            c.arg("run-prepared")
                .arg(user_pods.get(uuid).map_or("", String::as_str));
            quiet(c)
        }),
    ));
    if rootless.podman {
        heavy.push((
            "podman run --rootfs as the user (rootless, runc, no network)",
            Box::new(|_, _| rootless::podman(&rootless.user, &rootless.rootfs)),
        ));
    }
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
                let mut c = podman_in(&podman_state);
                c.args(["run", "--rm", "--network=host"])
                    .args(PODMAN_ULIMITS)
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
        // The wrapper ends by running `true`, where crun's runs go on to
        // crun: what the wrapper's median takes away from crun's includes
        // one process started and ended, which every other row pays.
        scenarios.push((TRUE_ROW, Box::new(|_, _| quiet(Command::new("/bin/true")))));
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
    let own_procs = own_procs_file();
    let mut window_opened = true;
    for phase in [0..split, split..scenarios.len()] {
        let count = phase.len();
        for round in 0..runs {
            // Rotate the order each round so no scenario always runs first.
            // Warm: back to back, each run starting in the window in which
            // cgroup moves do not wait (opened untimed just before it).
            // Cold: after an idle pause, so the first cgroup move waits a
            // whole RCU grace period (performance.md).
            for (k, is_cold) in (0..count * 2).map(|k| (k % count, k >= count)) {
                let which = phase.start + (round + k) % count;
                let uuid = &prepared[round * 2 + usize::from(is_cold)];
                if is_cold {
                    std::thread::sleep(COLD_IDLE);
                } else {
                    window_opened &= open_cgroup_window(own_procs.as_deref());
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
    let mut report = Report::new(
        "start",
        quick,
        format!(
            "start→exit of `/bin/true` in a busybox rootfs, {runs} runs each, alternating, data on tmpfs"
        ),
    );
    let mut json = Vec::new();
    for (title, rows) in [
        ("warm (back to back)", &mut warm),
        ("cold (after 200 ms idle)", &mut cold),
    ] {
        json.extend(start_table(&mut report, title, rows)?);
    }
    report.note(format!(
        "{}; cold runs wait for one",
        cgroup_window_note("warm runs", window_opened)
    ));
    for peer in missing {
        report.note(format!(
            "{peer}: not measured (not installed; cargo xtask deps installs it)"
        ));
    }
    if !rootless.podman {
        report.note("podman as a user: not measured (it does not run rootless here)");
    }
    rootless.clean_up()?;
    report.plot(
        "start.svg",
        "start to exit of /bin/true, each dot one run, bar = median",
        start_plot(&[("warm", &warm), ("cold", &cold)]),
    );
    report.save(root, serde_json::json!({"runs": runs, "rows": json}))?;
    unmount_under(&podman_state)?;
    let _ = sk().args(["gc", "--grace-period=0s"]).status();
    let _ = std::fs::remove_dir_all(work);
    Ok(())
}

/// What `bench start` and `bench network` set up alike: a scratch
/// directory `WORK/<name>`, skiff installed in it, `example.com/true:1.0`
/// fetched into its data directory, and the rendered tree (the peers run
/// a copy of it).
pub(super) struct TrueImage {
    pub work: PathBuf,
    pub data: PathBuf,
    pub skiff: PathBuf,
    pub tree: PathBuf,
}

impl TrueImage {
    pub fn set_up(name: &str, skiff: &Path) -> Result<TrueImage> {
        let work = PathBuf::from(WORK).join(name);
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work)?;
        let skiff = install_copy(skiff, name)?.join("skiff");
        let set_up = TrueImage {
            data: work.join("data"),
            tree: PathBuf::new(),
            work,
            skiff,
        };
        fetch_true_image(&set_up.skiff, &set_up.work, set_up.sk())?;
        let tree = std::fs::read_dir(set_up.data.join("trees"))?
            .filter_map(|e| e.ok())
            .find(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .context("no rendered tree")?
            .path()
            .join("rootfs");
        Ok(TrueImage { tree, ..set_up })
    }

    /// `skiff --dir DATA --local-config WORK/etc`, its output discarded.
    pub fn sk(&self) -> Command {
        let mut c = quiet_skiff(&self.skiff, &self.data);
        c.arg("--local-config").arg(self.work.join("etc"));
        c
    }
}

/// Builds `example.com/true:1.0` (busybox-static's /bin/true) in `work`
/// and fetches it with `fetch` (skiff with the benchmark's data dir).
fn fetch_true_image(skiff: &Path, work: &Path, mut fetch: Command) -> Result<()> {
    let layout = work.join("layout");
    busybox_layout(&layout, "true", "/bin/true", &["true"])?;
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
/// A process started and waited for, added back to crun's median net of
/// the wrapper (the wrapper's own last step is one).
const TRUE_ROW: &str = "/bin/true (one process started and ended)";

/// Prints one table of `bench start` (ratios to crun net of its wrapper)
/// into `report`; returns its rows, every sample included, as JSON.
fn start_table(
    report: &mut Report,
    title: &str,
    rows: &mut [Row],
) -> Result<Vec<serde_json::Value>> {
    for row in rows.iter_mut() {
        row.times.sort();
    }
    let median_of = |name: &str| rows.iter().find(|r| r.name == name).map(Row::median);
    let crun = median_of(CRUN_ROW).context("no crun row")?;
    let wrapper = median_of(WRAPPER_ROW);
    let hybrid = wrapper.is_some();
    let wrapper = wrapper.unwrap_or_default();
    let one_process = median_of(TRUE_ROW).unwrap_or_default();
    // crun's median less what the wrapper adds before crun starts: its
    // median less the `true` it ends with.
    let crun_net = (crun + one_process).saturating_sub(wrapper);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mut table = Table::new(
        format!("{title}:"),
        &["scenario", "min", "median", "max", "ratio to crun run"],
    );
    let mut json = Vec::new();
    for row in rows.iter() {
        let ratio = row.median().as_secs_f64() / crun_net.as_secs_f64().max(1e-9);
        table.row(vec![
            row.name.to_string(),
            format!("{:.2} ms", ms(row.times[0])),
            format!("{:.2} ms", ms(row.median())),
            format!("{:.2} ms", ms(row.times[row.times.len() - 1])),
            format!("{ratio:.2}×"),
        ]);
        json.push(serde_json::json!({
            "mode": title,
            "scenario": row.name,
            "median_ms": ms(row.median()),
            "ratio_to_crun": ratio,
            "ms": row.times.iter().map(|t| ms(*t)).collect::<Vec<_>>(),
        }));
    }
    report.table(table);
    if hybrid {
        report.note(format!(
            "({title}) crun run is measured inside `unshare -m sh -c 'umount /sys/fs/cgroup/unified && exec crun …'` \
             (crun 1.8 refuses hybrid cgroup hosts); ratios use crun's median less what the wrapper adds before crun starts: \
             the wrapper's median ({:.2} ms) less that of `/bin/true` ({:.2} ms), the process the wrapper ends with where crun's runs go on to crun \
             (crun net: {:.2} ms).",
            ms(wrapper),
            ms(one_process),
            ms(crun_net)
        ));
    }
    Ok(json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crun_is_net_of_what_its_wrapper_adds_before_crun_starts() {
        let row = |name, ms| Row {
            name,
            times: vec![Duration::from_millis(ms)],
        };
        let mut rows = vec![
            row("skiff", 9),
            row(CRUN_ROW, 13),
            row(WRAPPER_ROW, 5),
            row(TRUE_ROW, 1),
        ];
        let mut report = Report::new("start", true, "test".to_string());
        let json = start_table(&mut report, "warm", &mut rows).unwrap();
        let ratio = |name: &str| {
            json.iter()
                .find(|r| r["scenario"] == name)
                .and_then(|r| r["ratio_to_crun"].as_f64())
                .unwrap()
        };
        // crun net = 13 - (5 - 1) = 9 ms.
        assert!((ratio("skiff") - 1.0).abs() < 1e-9);
        assert!((ratio(CRUN_ROW) - 13.0 / 9.0).abs() < 1e-9);
    }

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
