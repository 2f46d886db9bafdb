//! `cargo xtask bench import [--quick]`: import and render throughput of
//! the store against the floors of the same work done by standard tools
//! (`sha512sum` for hashing, `tar -x` for unpacking), measured in the same
//! run on tmpfs so the disk does not decide the result.

use super::*;

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
