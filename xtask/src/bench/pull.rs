//! `cargo xtask bench pull`: registry pulls.

use super::*;

/// `cargo xtask bench pull [--quick]`: a ~200 MB three-layer image pulled
/// from a local docker-registry into a fresh store and rendered (skiff
/// fetch) — unverified, and verified with a cosign signature (so the cost of
/// verification is measured) — against `skopeo copy` to an OCI layout +
/// `umoci unpack`, the same work for the peers, alternating, data on tmpfs.
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
        // A cosign key, trusted in one config, signs the image.
        let etc = work.join("etc");
        let key = work.join("cosign");
        let skiff_with = |dir: &Path| {
            let mut cmd = Command::new(skiff);
            cmd.env("COSIGN_PASSWORD", "")
                .arg("--dir")
                .arg(dir)
                .arg("--local-config")
                .arg(&etc)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            cmd
        };
        let signer = work.join("signer");
        run_quiet(
            skiff_with(&signer)
                .args(["key", "generate", "--type=cosign", "--out"])
                .arg(&key),
        )?;
        run_quiet(
            skiff_with(&signer)
                .args([
                    "--insecure-options=http",
                    "image",
                    "sign",
                    "--format=cosign",
                ])
                .arg("--key")
                .arg(work.join("cosign.key"))
                .arg(&remote),
        )?;
        run_quiet(
            skiff_with(&signer)
                .args(["trust", "--skip-fingerprint-review", "--prefix"])
                .arg(format!("127.0.0.1:{port}/bench"))
                .arg(work.join("cosign.pub")),
        )?;
        let mut rows = vec![
            Row {
                name: "skiff fetch, unverified (pull, squash, import, render)",
                times: Vec::new(),
            },
            Row {
                name: "skiff fetch, cosign signature verified",
                times: Vec::new(),
            },
            Row {
                name: "skopeo copy + umoci unpack",
                times: Vec::new(),
            },
        ];
        let scratch = work.join("scratch");
        for round in 0..runs {
            for k in 0..3 {
                let which = (round + k) % 3;
                let _ = std::fs::remove_dir_all(&scratch);
                std::fs::create_dir_all(&scratch)?;
                let start = Instant::now();
                if which == 0 {
                    run_quiet(skiff_with(&scratch.join("data")).args([
                        "--insecure-options=image,http",
                        "fetch",
                        &remote,
                    ]))?;
                } else if which == 1 {
                    run_quiet(skiff_with(&scratch.join("data")).args([
                        "--insecure-options=http",
                        "fetch",
                        &remote,
                    ]))?;
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
        let peer = rows[2].median().as_secs_f64();
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
        let cost = rows[1].median().as_secs_f64() / rows[0].median().as_secs_f64().max(1e-9);
        println!("\ncost of verification: verified / unverified median = {cost:.3}");
        json.push(format!(
            "{{\"scenario\":\"verification cost (verified / unverified)\",\"ratio\":{cost:.3}}}"
        ));
        let written = write_result(root, "pull.json", format!("[{}]\n", json.join(",")))?;
        println!("wrote {}", written.display());
        Ok(())
    })();
    let _ = registry.kill();
    let _ = registry.wait();
    let _ = std::fs::remove_dir_all(&work);
    result
}
