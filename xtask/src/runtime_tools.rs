//! The OCI runtime-tools compliance suite against `skiff-runtime`: built
//! by `../shared/tools/build-runtime-tools.sh` from Debian's Go packages
//! and the sources shipped beside it (they cannot live in this
//! repository), run by `run-runtime-tools.sh`. Without `../shared` the
//! suite is skipped, saying so.
//!
//! The gate: at least as many passing test files and ok test points as
//! crun, the best peer on this machine kind
//! (`../shared/reference/runtime-tools-baseline.md`); every test crun passes
//! passes; every test that does not pass is named
//! in docs/oci-runtime.md with its reason.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// One test's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub test: String,
    pub status: String,
    pub ok: u64,
}

fn shared(root: &Path) -> PathBuf {
    root.join("../shared")
}

/// crun's per-test statuses and points from the baseline document.
fn crun_baseline(root: &Path) -> Result<Vec<Outcome>> {
    let path = shared(root).join("reference/runtime-tools-baseline.md");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    let mut found = Vec::new();
    for line in text.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | test | runc | runc points | crun | crun points | notes |
        if cells.len() < 6 || !["PASS", "FAIL", "ERROR"].contains(&cells[4]) {
            continue;
        }
        let ok = cells[5]
            .split('/')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        found.push(Outcome {
            test: cells[1].to_string(),
            status: cells[4].to_string(),
            ok,
        });
    }
    if found.len() < 50 {
        bail!("{} lists only {} tests", path.display(), found.len());
    }
    Ok(found)
}

fn parse_summary(tsv: &str) -> Vec<Outcome> {
    tsv.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            Some(Outcome {
                test: f.first()?.to_string(),
                status: f.get(1)?.to_string(),
                ok: f.get(2)?.parse().ok()?,
            })
        })
        .collect()
}

/// Builds (once) and runs the suite against `runtime`, then applies the
/// gate. Returns without running when `../shared` is not there.
pub fn run(root: &Path, runtime: &Path) -> Result<()> {
    let tools = shared(root).join("tools");
    if !tools.join("run-runtime-tools.sh").is_file() {
        println!(
            "skipping the OCI runtime-tools suite: ../shared/tools is not beside this clone (its sources cannot live in the repository)"
        );
        return Ok(());
    }
    let out = root.join("target/runtime-tools");
    if !out.join("validation/default.t").is_file() || !out.join("runtimetest").is_file() {
        crate::step(
            "building the OCI runtime-tools suite (../shared/tools/build-runtime-tools.sh)",
        );
        crate::run(Command::new(tools.join("build-runtime-tools.sh")).arg(&out))?;
    }
    crate::step("the OCI runtime-tools suite against skiff-runtime");
    let results = out.join("results/skiff-runtime-latest");
    let mut ours = run_suite(&tools, runtime, &out, &results, &[])?;
    // Some tests race with the container they start (killsig signals a
    // shell that, as its PID namespace's init, ignores the signal until
    // its trap is set): a test crun passes that failed here runs once
    // more, alone, and both outcomes are printed.
    let crun = crun_baseline(root)?;
    let again: Vec<String> = ours
        .iter()
        .filter(|o| o.status != "PASS")
        .filter(|o| crun.iter().any(|c| c.test == o.test && c.status == "PASS"))
        .map(|o| o.test.clone())
        .collect();
    if !again.is_empty() {
        crate::step(&format!(
            "runtime-tools: {} failed where crun passes: once more, alone",
            again.join(", ")
        ));
        let rerun = run_suite(
            &tools,
            runtime,
            &out,
            &out.join("results/skiff-runtime-rerun"),
            &again,
        )?;
        for second in rerun {
            if let Some(first) = ours.iter_mut().find(|o| o.test == second.test) {
                println!(
                    "runtime-tools: {}: {} on the first run, {} when run again",
                    second.test, first.status, second.status
                );
                *first = second;
            }
        }
    }
    gate(root, &ours)
}

/// Runs the suite (or only `tests`) into `results`; its outcomes.
fn run_suite(
    tools: &Path,
    runtime: &Path,
    out: &Path,
    results: &Path,
    tests: &[String],
) -> Result<Vec<Outcome>> {
    if results.exists() {
        // Bundles of an interrupted run may hold mounts: unmount first.
        let _ = Command::new("umount")
            .args(["-R", "-l"])
            .arg(results.join("tmp"))
            .output();
        std::fs::remove_dir_all(results).ok();
    }
    // A non-zero exit only says that some test did not pass: the gate
    // decides.
    let status = Command::new(tools.join("run-runtime-tools.sh"))
        .arg(runtime)
        .arg(out)
        .args(tests)
        .env("RESULTS_DIR", results)
        .status()
        .context("run run-runtime-tools.sh")?;
    let tsv = std::fs::read_to_string(results.join("summary.tsv"))
        .with_context(|| format!("the suite wrote no summary (exit {status})"))?;
    Ok(parse_summary(&tsv))
}

fn gate(root: &Path, ours: &[Outcome]) -> Result<()> {
    let crun = crun_baseline(root)?;
    let docs = std::fs::read_to_string(root.join("docs/oci-runtime.md"))
        .context("read docs/oci-runtime.md")?;
    let passed = |list: &[Outcome]| list.iter().filter(|o| o.status == "PASS").count();
    let points = |list: &[Outcome]| list.iter().map(|o| o.ok).sum::<u64>();
    println!(
        "runtime-tools: skiff-runtime {} files pass, {} ok points; crun 1.8.1 (baseline) {} files, {} ok points",
        passed(ours),
        points(ours),
        passed(&crun),
        points(&crun)
    );
    let mut problems = Vec::new();
    if ours.len() < crun.len() {
        problems.push(format!("only {} of {} tests ran", ours.len(), crun.len()));
    }
    if passed(ours) < passed(&crun) {
        problems.push(format!(
            "{} test files pass, fewer than crun's {}",
            passed(ours),
            passed(&crun)
        ));
    }
    if points(ours) < points(&crun) {
        problems.push(format!(
            "{} ok test points, fewer than crun's {}",
            points(ours),
            points(&crun)
        ));
    }
    for c in crun.iter().filter(|c| c.status == "PASS") {
        match ours.iter().find(|o| o.test == c.test) {
            Some(o) if o.status == "PASS" => {}
            Some(o) => problems.push(format!("{} is {} (crun passes it)", o.test, o.status)),
            None => problems.push(format!("{} did not run", c.test)),
        }
    }
    for o in ours.iter().filter(|o| o.status != "PASS") {
        if !docs.contains(&format!("`{}`", o.test)) {
            problems.push(format!(
                "{} is {} but docs/oci-runtime.md does not say why",
                o.test, o.status
            ));
        }
    }
    if !problems.is_empty() {
        bail!("the OCI runtime-tools suite: {}", problems.join("; "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_parse() {
        let tsv = "test\tstatus\tok\tnot_ok\n create\tPASS\t4\t0\nhooks\tFAIL\t0\t0\n";
        let got = parse_summary(tsv);
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].status, "FAIL");
        assert_eq!(got[0].ok, 4);
    }
}
