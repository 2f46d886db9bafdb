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
