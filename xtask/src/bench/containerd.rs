//! `cargo xtask bench containerd`: `ctr run --rm` start→exit of `/bin/true`
//! in a busybox image with skiff-runtime, runc and crun as the runc shim's
//! binary, side by side in one containerd (Debian's, started here with its
//! own root, state and socket on tmpfs). Runs alternate between the
//! runtimes so that a slow spell of the machine hits all of them.

use super::*;

/// crun refuses hybrid cgroup hosts (machine-notes.md): on such a host it
/// runs through this wrapper, which hides the empty v2 mount in a private
/// mount namespace; the wrapper's own cost is measured and shown.
const CRUN_WRAPPER: &str = "#!/bin/sh\nexec unshare -m sh -c 'umount /sys/fs/cgroup/unified && exec crun \"$@\"' crun \"$@\"\n";

struct Daemon {
    child: std::process::Child,
    socket: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ctr(socket: &Path) -> Command {
    let mut c = Command::new("ctr");
    c.arg("-a").arg(socket).args(["-n", "skiff-bench"]);
    c
}

pub fn containerd(root: &Path, runtime: &Path, quick: bool) -> Result<()> {
    if !installed("containerd") || !installed("ctr") {
        bail!("containerd is not installed (cargo xtask deps installs it)");
    }
    let work = PathBuf::from(WORK).join("containerd");
    let _ = unmount_under(&work);
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(work.join("image/rootfs/bin"))?;
    // The image: busybox, made with umoci.
    std::fs::copy(
        std::fs::canonicalize("/bin/busybox").context("busybox-static is not installed")?,
        work.join("image/rootfs/bin/busybox"),
    )?;
    std::os::unix::fs::symlink("busybox", work.join("image/rootfs/bin/true"))?;
    run_quiet(Command::new("sh").arg("-c").arg(format!(
        "cd {} && tar -C rootfs -cf layer.tar . && umoci init --layout oci && \
         umoci new --image oci:latest && umoci raw add-layer --image oci:latest layer.tar && \
         (cd oci && tar -cf ../busybox.tar .)",
        work.join("image").display()
    )))?;
    let config = format!(
        "version = 2\nroot = \"{w}/root\"\nstate = \"{w}/state\"\n\
         disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = \"{w}/containerd.sock\"\n",
        w = work.display()
    );
    std::fs::write(work.join("config.toml"), config)?;
    let daemon = Daemon {
        child: Command::new("containerd")
            .arg("--config")
            .arg(work.join("config.toml"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(work.join("containerd.log"))?)
            .spawn()?,
        socket: work.join("containerd.sock"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ctr(&daemon.socket)
        .arg("version")
        .output()?
        .status
        .success()
    {
        if Instant::now() > deadline {
            bail!(
                "containerd did not start: see {}",
                work.join("containerd.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    run_quiet(
        ctr(&daemon.socket)
            .args(["images", "import", "--base-name", "docker.io/library/bench"])
            .arg(work.join("image/busybox.tar"))
            .stdout(std::process::Stdio::null()),
    )?;
    let crun = if hybrid_cgroups() {
        let wrapper = work.join("crun-wrapper");
        std::fs::write(&wrapper, CRUN_WRAPPER)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))?;
        wrapper
    } else {
        PathBuf::from("crun")
    };
    let runtimes: [(&'static str, PathBuf); 3] = [
        ("skiff-runtime", runtime.to_path_buf()),
        ("runc", PathBuf::from("runc")),
        ("crun", crun),
    ];
    let runs = if quick { 5 } else { 30 };
    let mut rows: Vec<Row> = runtimes
        .iter()
        .map(|(name, _)| Row {
            name,
            times: Vec::new(),
        })
        .collect();
    let mut n = 0;
    for round in 0..runs + 2 {
        for (i, (_, binary)) in runtimes.iter().enumerate() {
            n += 1;
            let id = format!("b{n}");
            let started = Instant::now();
            run_quiet(
                ctr(&daemon.socket)
                    .args(["run", "--rm", "--runc-binary"])
                    .arg(binary)
                    .args(["docker.io/library/bench:latest", &id, "/bin/true"])
                    .stdout(std::process::Stdio::null()),
            )
            .with_context(|| format!("ctr run with {}", binary.display()))?;
            // The first two rounds warm the caches.
            if round >= 2 {
                rows[i].times.push(started.elapsed());
            }
        }
    }
    drop(daemon);
    unmount_under(&work)?;
    std::fs::remove_dir_all(&work)?;
    let _ = std::fs::remove_dir_all("/run/containerd/runc/skiff-bench");
    for row in &mut rows {
        row.times.sort();
    }
    let reference = rows[0].median().as_secs_f64();
    println!(
        "\nctr run --rm of /bin/true in busybox, containerd {} with the runc shim, {runs} runs each (alternating):\n",
        containerd_version()
    );
    println!("| runtime (shim BinaryName) | min | median | max | ratio to skiff-runtime |");
    println!("|---|---|---|---|---|");
    let mut body = String::new();
    for row in &rows {
        row.print_with_ratio(reference);
        body.push_str(&format!(
            "{}\t{:.3}\n",
            row.name,
            row.median().as_secs_f64() * 1e3
        ));
    }
    if hybrid_cgroups() {
        println!("(crun through its hybrid-cgroup wrapper: unshare -m + umount + exec)");
    }
    let path = write_result(root, "containerd.tsv", body)?;
    println!("results: {}", path.display());
    Ok(())
}

fn containerd_version() -> String {
    Command::new("containerd")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .nth(2)
                .map(String::from)
        })
        .unwrap_or_default()
}
