//! The appc ACE validator (main + sidekick in one pod, built by
//! `cargo xtask appc-tools`) under the `ns` stage1: in full with
//! the metadata service running, and every other check without it; and
//! in full under the `kvm` stage1.

use crate::common::*;

/// One run of the validator's two apps in a pod of the data dir under
/// `root` with `flags`; the pod is collected afterwards.
fn validator_in(root: &std::path::Path, flags: &[&str]) -> std::process::Output {
    let tools = appc_tools();
    let out = output(
        skiff_in(root)
            .args(["run", "--insecure-options=image"])
            .args(flags)
            .arg(tools.join("ace-validator-main.aci"))
            .arg(tools.join("ace-validator-sidekick.aci")),
    );
    let _ = output(skiff_in(root).args(["gc", "--grace-period=0s"]));
    out
}

fn ace(extra: &[&str]) -> (String, String, Option<i32>) {
    let tmp = tempfile::tempdir().unwrap();
    let flags: Vec<&str> = ["--net=host"].iter().chain(extra).copied().collect();
    let out = validator_in(tmp.path(), &flags);
    (stdout(&out), stderr(&out), out.status.code())
}

/// Asserts that prestart, sidekick and poststop passed; returns main's
/// failures (the `==>` lines).
fn main_failures<'a>(stdout: &str, stderr: &'a str) -> Vec<&'a str> {
    for ok in ["prestart OK", "sidekick OK", "poststop OK"] {
        assert!(
            stdout.lines().any(|l| l == ok),
            "missing '{ok}': {stdout}\n{stderr}"
        );
    }
    stderr.lines().filter(|l| l.starts_with("==>")).collect()
}

fn check(stdout: &str, stderr: &str) {
    // main checks PATH, cwd, env, the /db mount, AC_APP_NAME and the shared
    // volume before the metadata service; only the latter may fail here.
    let failures = main_failures(stdout, stderr);
    assert!(
        failures
            .iter()
            .all(|l| l.contains("METADATA") || l.contains("metadata")),
        "non-metadata checks failed: {failures:?}\n{stdout}"
    );
    assert!(
        stdout.contains("main OK") || !failures.is_empty(),
        "{stdout}"
    );
}

#[test]
fn ace_validator_passes_all_but_the_metadata_checks() {
    let (out, err, _) = ace(&["--volume=database,kind=empty"]);
    check(&out, &err);
    // The implicit empty volume for the `database` mount point works too.
    let (out, err, _) = ace(&[]);
    check(&out, &err);
    // And in a user namespace of the pod's own.
    let (out, err, _) = ace(&["--private-users"]);
    check(&out, &err);
}

#[test]
fn ace_validator_passes_in_full_with_the_metadata_service() {
    full_ace(&[
        ["--net=default", "--stage1=ns"],
        ["--net=host", "--stage1=ns"],
    ]);
}

/// The kvm flavor: the same pod in a VM, networked through its tap device.
/// The validator gives each metadata request 100 ms. Under real KVM the
/// pod must pass in full. Under TCG (software emulation, as on hosts whose
/// KVM cannot run the guest) that deadline is a wall-clock assertion on an
/// emulated CPU: the sidekick's busy wait and the main app's first Go HTTP
/// request share two emulated CPUs, and the request misses 100 ms more
/// often than not on a 2-core host. So under TCG every check must pass but
/// a metadata request that ran out of the validator's time; what the guest
/// gets from the service is checked without a deadline by
/// `metadata::kvm_pods_use_the_metadata_service_through_their_tap`.
/// `cargo xtask test` runs this alone, after the parallel suite.
#[test]
#[ignore = "timing-sensitive under TCG: cargo xtask test runs it alone"]
fn ace_validator_passes_in_full_under_kvm() {
    // The attempts share a data dir: KVM is probed once.
    const ATTEMPTS: usize = 3;
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let _mds = crate::metadata::Mds::start(tmp.path(), 0);
    let mut tcg = false;
    for attempt in 1..=ATTEMPTS {
        let out = validator_in(tmp.path(), &["--net=default", "--stage1=kvm"]);
        if passed_in_full(&out) {
            return;
        }
        tcg |= stderr(&out).contains("kvm: using tcg");
        assert!(
            tcg,
            "under KVM: {}",
            failure(&out, "--net=default --stage1=kvm")
        );
        assert_only_metadata_deadlines(&out);
        eprintln!(
            "kvm ACE attempt {attempt} under TCG: every check passed but a metadata request out of the validator's 100 ms"
        );
    }
}

/// Every check passed but metadata requests that ran out of the
/// validator's time (its HTTP client's deadline).
fn assert_only_metadata_deadlines(out: &std::process::Output) {
    let (text, err) = (stdout(out), stderr(out));
    let failures = main_failures(&text, &err);
    assert!(
        !failures.is_empty()
            && failures.iter().all(|l| {
                l.contains("/acMetadata/v1/") && l.contains("Client.Timeout exceeded")
            }),
        "not only metadata deadlines: {failures:?}\n{text}\n{err}"
    );
}

/// One run of the validator's two apps in a pod with `flags`, the metadata
/// service running.
fn ace_run(flags: &[&str]) -> std::process::Output {
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let _mds = crate::metadata::Mds::start(tmp.path(), 0);
    validator_in(tmp.path(), flags)
}

fn full_ace(cases: &[[&str; 2]]) {
    for flags in cases {
        let out = ace_run(flags);
        assert_passed_in_full(&out, &flags.join(" "));
    }
}

/// Whether every check of the validator passed.
fn passed_in_full(out: &std::process::Output) -> bool {
    let text = stdout(out);
    ["prestart OK", "main OK", "sidekick OK", "poststop OK"]
        .iter()
        .all(|ok| text.lines().any(|l| l == *ok))
        && !stderr(out).contains("==>")
        && out.status.code() == Some(0)
}

/// Every check of the validator passed, the metadata ones included.
pub fn assert_passed_in_full(out: &std::process::Output, what: &str) {
    assert!(passed_in_full(out), "{}", failure(out, what));
}

/// What the validator said, for a failed run.
fn failure(out: &std::process::Output, what: &str) -> String {
    format!(
        "{what}: the validator did not pass in full (exit {:?}):\n{}\n{}",
        out.status.code(),
        stdout(out),
        stderr(out)
    )
}
