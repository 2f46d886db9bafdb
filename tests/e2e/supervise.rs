//! Supervision without systemd: `--restart` starts an app again as its
//! policy says, `status` shows every run, and a stop is never followed by
//! a restart.

use std::path::Path;

use crate::common::*;

fn status_json(root: &Path, uuid: &str) -> serde_json::Value {
    let out = output(skiff_in(root).args(["status", "--format=json", uuid]));
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn first_uuid(root: &Path) -> String {
    let out = output(skiff_in(root).args(["list", "--full", "--no-legend"]));
    stdout(&out)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// `--restart=on-failure:3`: an app that always fails runs four times
/// (three restarts), the pod ends with its status, and `status` shows
/// each run; an app that fails once and then succeeds is restarted once.
#[test]
fn on_failure_restarts_a_failing_app_at_most_n_times() {
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let aci = tmp.path().join("busybox.aci");
    busybox_aci(tmp.path(), "example.com/busybox", &aci);
    let out = output(
        skiff_in(tmp.path())
            .args([
                "run",
                "--insecure-options=image",
                "--net=none",
                "--restart=on-failure:3",
            ])
            .arg(&aci)
            .args(["--exec=/bin/sh", "--", "-c", "echo run; exit 3"]),
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(stdout(&out), "run\n".repeat(4), "{}", stderr(&out));
    let uuid = first_uuid(tmp.path());
    let text = stdout(&output(skiff_in(tmp.path()).args(["status", &uuid])));
    for line in [
        "app-busybox=3\n",
        "app-busybox-restarts=3\n",
        "app-busybox-runs=3,3,3\n",
    ] {
        assert!(text.contains(line), "{line:?} in {text}");
    }
    // Times are RFC 3339 with a zone, in the text and in JSON.
    assert!(
        text.lines()
            .any(|l| l.starts_with("created=20") && l.ends_with('Z')),
        "{text}"
    );
    let json = status_json(tmp.path(), &uuid);
    assert_eq!(json["apps"][0]["restarts"], 3, "{json}");
    assert_eq!(json["apps"][0]["runs"].as_array().map(Vec::len), Some(3));
    assert!(json["exited"].as_str().is_some_and(|t| t.ends_with('Z')));
    let listed = stdout(&output(skiff_in(tmp.path()).args(["list", "--no-legend"])));
    assert!(listed.contains(" 3 +3 "), "{listed}");
    let _ = output(skiff_in(tmp.path()).args(["rm", &uuid]));

    // Fails on its first run only (a host volume keeps the count).
    let state = tmp.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let out = output(
        skiff_in(tmp.path())
            .args([
                "run",
                "--insecure-options=image",
                "--net=none",
                "--restart=on-failure",
            ])
            .arg(format!(
                "--volume=state,kind=host,source={}",
                state.display()
            ))
            .arg(&aci)
            .args([
                "--mount=volume=state,target=/state",
                "--exec=/bin/sh",
                "--",
                "-c",
                "echo x >> /state/runs; [ $(wc -l < /state/runs) -ge 2 ]",
            ]),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(state.join("runs")).unwrap(),
        "x\nx\n"
    );
    let json = status_json(tmp.path(), &first_uuid(tmp.path()));
    assert_eq!(json["apps"][0]["restarts"], 1, "{json}");
    assert_eq!(json["apps"][0]["runs"][0]["status"], 1, "{json}");
}

/// `--restart=always` restarts an app that succeeds too; `stop` ends the
/// pod with SIGTERM (no SIGKILL needed) and nothing is restarted after it.
#[test]
fn always_restarts_until_the_pod_is_stopped() {
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let aci = tmp.path().join("busybox.aci");
    busybox_aci(tmp.path(), "example.com/busybox", &aci);
    let uuid = run_detached(
        tmp.path(),
        &[
            "--restart=always",
            aci.to_str().unwrap(),
            "--exec=/bin/sh",
            "--",
            "-c",
            "echo tick; sleep 0.2",
        ],
    );
    eventually("two restarts", || {
        let json = status_json(tmp.path(), &uuid);
        (json["apps"][0]["restarts"].as_u64() >= Some(2)).then_some(())
    });
    let out = output(skiff_in(tmp.path()).args(["stop", "--timeout=20", &uuid]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("killed"), "{}", stderr(&out));
    let json = status_json(tmp.path(), &uuid);
    assert_eq!(json["state"], "exited", "{json}");
    let restarts = json["apps"][0]["restarts"].as_u64().unwrap_or(0);
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(
        status_json(tmp.path(), &uuid)["apps"][0]["restarts"].as_u64(),
        Some(restarts),
        "restarted after the stop"
    );
    let logs = stdout(&output(skiff_in(tmp.path()).args(["logs", &uuid])));
    // One run per restart and the first; the last may have been stopped
    // before it printed.
    let ticks = logs.matches("tick").count() as u64;
    assert!(
        ticks == restarts + 1 || ticks == restarts,
        "{restarts} restarts: {logs}"
    );
}

/// Policies are checked before anything is made.
#[test]
fn bad_restart_policies_are_refused_up_front() {
    let tmp = tempfile::tempdir().unwrap();
    for (flags, what) in [
        (&["--restart=sometimes"][..], "no policy 'sometimes'"),
        (&["--restart=on-failure:0"][..], "from 1"),
        (&["--restart=unless-stopped"][..], "systemd unit"),
        (
            &["--restart=always", "--stage1=fly"][..],
            "not implemented for the fly flavor",
        ),
    ] {
        let out = output(
            skiff_in(tmp.path())
                .args(["run", "--insecure-options=image"])
                .args(flags)
                .arg("/nonexistent.aci"),
        );
        assert!(!out.status.success(), "{flags:?}");
        assert!(stderr(&out).contains(what), "{flags:?}: {}", stderr(&out));
    }
    let listed = output(skiff_in(tmp.path()).args(["list", "--no-legend"]));
    assert_eq!(stdout(&listed), "", "a pod was made");
}

/// Waits until the supervisor `pid` rests (it is `skiff-wait`); its RSS.
fn resting_rss_kib(pid: &str) -> u64 {
    eventually("the supervisor to rest", || {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        (comm.trim() == "skiff-wait").then_some(())
    });
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in {status}"))
}

fn logs_of(root: &Path, uuid: &str) -> String {
    stdout(&output(skiff_in(root).args(["logs", uuid])))
}

/// A detached pod that has been quiet for a while is watched by
/// `skiff-wait` (a few pages, no libc) instead of stage1. Output (more
/// than a pipe holds), init's report of an exit and a termination signal
/// each wake stage1, which loses nothing: the log has every line, the
/// exit status and the signal's status are recorded, and the pods' cgroups
/// and directories are cleaned up as by an awake supervisor.
#[test]
fn a_quiet_pods_supervisor_rests_and_wakes_for_output_an_exit_and_a_signal() {
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let aci = tmp.path().join("busybox.aci");
    busybox_aci(tmp.path(), "example.com/busybox", &aci);
    let wait_for = |file: &str| format!("while [ ! -e /{file} ]; do sleep 1; done");
    let talker = run_detached(
        tmp.path(),
        &[
            aci.to_str().unwrap(),
            "--exec=/bin/sh",
            "--",
            "-c",
            &format!(
                "echo first; {}; /bin/busybox seq 1 30000; echo woke-by-output; exec sleep 3600",
                wait_for("go")
            ),
        ],
    );
    let quitter = run_detached(
        tmp.path(),
        &[
            aci.to_str().unwrap(),
            "--exec=/bin/sh",
            "--",
            "-c",
            &format!("{}; exit 7", wait_for("go")),
        ],
    );
    let talker_sup = supervisor_of(tmp.path(), &talker);
    let quitter_sup = supervisor_of(tmp.path(), &quitter);
    for pid in [&talker_sup, &quitter_sup] {
        let rss = resting_rss_kib(pid);
        assert!(rss <= 1024, "a resting supervisor takes {rss} KiB");
    }
    assert!(logs_of(tmp.path(), &talker).contains("first"));

    // Output while it rests: 30,000 lines block the app until stage1 reads.
    let touch = |uuid: &str| {
        let out = output(skiff_in(tmp.path()).args([
            "enter",
            uuid,
            "--",
            "/bin/busybox",
            "touch",
            "/go",
        ]));
        assert!(out.status.success(), "{}", stderr(&out));
    };
    touch(&talker);
    eventually("the output written while resting in the log", || {
        logs_of(tmp.path(), &talker)
            .contains("woke-by-output")
            .then_some(())
    });
    let logs = logs_of(tmp.path(), &talker);
    let numbers: Vec<&str> = logs
        .lines()
        .filter(|l| l.chars().all(|c| c.is_ascii_digit()) && !l.is_empty())
        .collect();
    assert_eq!(numbers.len(), 30000, "lines lost while resting");
    assert_eq!(numbers.last(), Some(&"30000"));
    resting_rss_kib(&talker_sup);

    // An exit reported while it rests.
    touch(&quitter);
    eventually("the quitter to exit", || {
        let status = stdout(&output(skiff_in(tmp.path()).args(["status", &quitter])));
        status.contains("state=exited").then_some(())
    });
    let status = stdout(&output(skiff_in(tmp.path()).args(["status", &quitter])));
    assert!(status.contains("app-busybox=7"), "{status}");

    // A termination signal to the resting supervisor goes on to the pod.
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &talker_sup])
            .status()
            .unwrap()
            .success()
    );
    eventually("the talker to exit", || {
        let status = stdout(&output(skiff_in(tmp.path()).args(["status", &talker])));
        status.contains("state=exited").then_some(())
    });
    let status = stdout(&output(skiff_in(tmp.path()).args(["status", &talker])));
    assert!(status.contains("app-busybox=143"), "{status}");
    for uuid in [&talker, &quitter] {
        // v1 hierarchies, and the unified one of a v2 host.
        for controller in ["memory/", "pids/", "cpu/", ""] {
            let dir = format!("/sys/fs/cgroup/{controller}skiff/{uuid}");
            assert!(!Path::new(&dir).exists(), "{dir} is left");
        }
        let stage1_log = std::fs::read_to_string(
            tmp.path()
                .join("data/pods/exited-garbage")
                .join(uuid)
                .join("stage1.log"),
        )
        .unwrap_or_default();
        assert!(!stage1_log.contains("stays awake"), "{stage1_log}");
    }
}
