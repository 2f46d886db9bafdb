//! `cargo xtask fuzz [--time=SECONDS] [TARGET...]`: each cargo-fuzz target
//! of fuzz/ (all by default) for at least SECONDS of CPU time, from its
//! checked-in corpus. The targets are built once, before any runs, so one
//! run fuzzes one version of the code. A crash does not stop the others:
//! it is named at the end (its input is in fuzz/artifacts/TARGET/, to turn
//! into a regression test) and the command fails. Needs the nightly
//! toolchain and cargo-fuzz (installed from crates.io if missing).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{run as run_cmd, step};

/// What one target's run measured.
struct Outcome {
    target: String,
    cpu: Duration,
    wall: Duration,
    executions: u64,
    corpus: usize,
    crashed: bool,
}

pub fn run(root: &Path, args: &[String]) -> Result<()> {
    let mut seconds = 60u64;
    let mut wanted = Vec::new();
    for arg in args {
        if let Some(v) = arg.strip_prefix("--time=") {
            seconds = v
                .parse()
                .with_context(|| format!("fuzz: --time={v}: not a number of seconds"))?;
        } else if arg.starts_with("--") {
            bail!("fuzz: unknown flag {arg} (flags: --time=SECONDS)");
        } else {
            wanted.push(arg.clone());
        }
    }
    let dir = root.join("fuzz");
    let targets = targets(&dir, &wanted)?;
    tools()?;
    // Only the targets run are built: a run of others may be using theirs.
    if wanted.is_empty() {
        step("cargo +nightly fuzz build (every target, once)");
        run_cmd(
            Command::new("cargo")
                .current_dir(&dir)
                .args(["+nightly", "fuzz", "build"]),
        )?;
    } else {
        for target in &targets {
            step(&format!("cargo +nightly fuzz build {target}"));
            run_cmd(
                Command::new("cargo")
                    .current_dir(&dir)
                    .args(["+nightly", "fuzz", "build", target]),
            )?;
        }
    }
    let bin_dir = dir.join("target").join(host_triple()?).join("release");
    let logs = root.join("target/fuzz-logs");
    std::fs::create_dir_all(&logs)?;
    let mut outcomes = Vec::new();
    for target in &targets {
        step(&format!("fuzz {target} for {seconds} CPU-seconds"));
        outcomes.push(fuzz_one(root, &bin_dir, &logs, target, seconds)?);
    }
    step("fuzz summary");
    let mut lines = Vec::new();
    for o in &outcomes {
        lines.push(format!(
            "{}: {:.0} CPU-s in {:.0} s, {} runs, corpus {} inputs, {}",
            o.target,
            o.cpu.as_secs_f64(),
            o.wall.as_secs_f64(),
            o.executions,
            o.corpus,
            if o.crashed {
                format!("CRASH (input in fuzz/artifacts/{}/)", o.target)
            } else {
                "no crash".to_string()
            }
        ));
    }
    let summary = lines.join("\n") + "\n";
    print!("{summary}");
    std::fs::write(logs.join("summary.txt"), &summary)?;
    let crashed: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.crashed)
        .map(|o| o.target.as_str())
        .collect();
    if !crashed.is_empty() {
        bail!(
            "fuzz: crashes in {}: each input is in fuzz/artifacts/TARGET/; make it a regression test",
            crashed.join(", ")
        );
    }
    Ok(())
}

/// The targets of fuzz/fuzz_targets, or those named.
fn targets(dir: &Path, wanted: &[String]) -> Result<Vec<String>> {
    let targets: Vec<String> = std::fs::read_dir(dir.join("fuzz_targets"))?
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_suffix(".rs")
                .map(str::to_string)
        })
        .filter(|t| wanted.is_empty() || wanted.contains(t))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if let Some(unknown) = wanted.iter().find(|w| !targets.contains(w)) {
        bail!("fuzz: no target {unknown} in fuzz/fuzz_targets");
    }
    Ok(targets)
}

/// cargo-fuzz (installed if missing) and the nightly toolchain.
fn tools() -> Result<()> {
    let has_fuzz = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_fuzz {
        step("cargo install cargo-fuzz (from crates.io)");
        run_cmd(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))?;
    }
    let nightly = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !nightly {
        bail!("fuzz: the nightly toolchain is missing: rustup toolchain install nightly");
    }
    Ok(())
}

/// The triple cargo-fuzz builds for (the host's).
fn host_triple() -> Result<String> {
    let out = Command::new("rustc")
        .args(["+nightly", "-vV"])
        .output()
        .context("fuzz: cannot run rustc +nightly -vV")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_string)
        .context("fuzz: rustc -vV names no host triple")
}

/// Runs `target` until it has used `seconds` of CPU time (libFuzzer's
/// limit is wall time: on a busy machine one run is not enough), each
/// run resuming from the corpus the last one grew.
fn fuzz_one(
    root: &Path,
    bin_dir: &Path,
    logs: &Path,
    target: &str,
    seconds: u64,
) -> Result<Outcome> {
    let dir = root.join("fuzz");
    let corpus = dir.join("corpus").join(target);
    std::fs::create_dir_all(&corpus)?;
    // New inputs go to a scratch corpus: the checked-in one stays small.
    let scratch = root.join("target/fuzz-corpus").join(target);
    std::fs::create_dir_all(&scratch)?;
    let artifacts = dir.join("artifacts").join(target);
    std::fs::create_dir_all(&artifacts)?;
    let log = logs.join(format!("{target}.log"));
    let _ = std::fs::remove_file(&log);
    let goal = Duration::from_secs(seconds);
    let started = Instant::now();
    let mut cpu = Duration::ZERO;
    let mut executions = 0;
    let mut crashed = false;
    while cpu < goal && !crashed {
        let left = (goal - cpu).as_secs().max(1);
        let before = children_cpu()?;
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let status = Command::new(bin_dir.join(target))
            .arg(&scratch)
            .arg(&corpus)
            .args([
                format!("-max_total_time={left}"),
                "-rss_limit_mb=2048".to_string(),
                "-timeout=20".to_string(),
                "-print_final_stats=1".to_string(),
            ])
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .stdout(err.try_clone()?)
            .stderr(err)
            .status()
            .with_context(|| format!("fuzz: cannot start {}", bin_dir.join(target).display()))?;
        cpu += children_cpu()?.saturating_sub(before);
        crashed = !status.success();
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        executions = text
            .lines()
            .filter_map(|l| l.strip_prefix("stat::number_of_executed_units: "))
            .filter_map(|n| n.trim().parse::<u64>().ok())
            .sum();
        println!(
            "{target}: {:.0} of {seconds} CPU-seconds, {executions} runs{}",
            cpu.as_secs_f64(),
            if crashed {
                format!(", CRASH (see {})", log.display())
            } else {
                String::new()
            }
        );
    }
    Ok(Outcome {
        target: target.to_string(),
        cpu,
        wall: started.elapsed(),
        executions,
        corpus: files_in(&scratch),
        crashed,
    })
}

fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.flatten().count())
}

/// CPU time (user and system) of this process's waited-for children.
fn children_cpu() -> Result<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // The fields after the command name, which may hold spaces: the 3rd
    // field of the line is the first here, so cutime (16th) and cstime
    // (17th) are the 14th and 15th.
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map(|(_, rest)| rest.split(' ').collect())
        .unwrap_or_default();
    let ticks: u64 = fields
        .get(13..15)
        .context("fuzz: /proc/self/stat has no cutime/cstime")?
        .iter()
        .map(|f| f.parse::<u64>().unwrap_or(0))
        .sum();
    let per_second = rustix::param::clock_ticks_per_second();
    Ok(Duration::from_secs_f64(ticks as f64 / per_second as f64))
}
