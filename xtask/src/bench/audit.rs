//! `cargo xtask bench audit`: image audit.

use super::*;

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
