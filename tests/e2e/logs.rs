//! Pod logs: every app's stdout and stderr kept apart in rotating files,
//! read back with `skiff logs` (also following a running pod until it
//! ends), sent to a real journald when the host runs one, and never
//! stalling an app when they cannot be written.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::*;

fn run_detached_with(root: &Path, pod_flags: &[&str], apps: &[&str]) -> String {
    let args: Vec<&str> = pod_flags.iter().chain(apps).copied().collect();
    run_detached(root, &args)
}

fn logs(root: &Path, args: &[&str]) -> std::process::Output {
    let out = output(skiff_in(root).arg("logs").args(args));
    assert!(out.status.success(), "logs {args:?}: {}", stderr(&out));
    out
}

/// Two apps writing to stdout and stderr, detached: `logs --follow`
/// started while they run prints everything and returns when the pod
/// ends; stdout and stderr come back apart; --app, --tail, --since and
/// --timestamps select and decorate.
#[test]
fn a_detached_pods_output_is_read_back_per_app_and_stream() {
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let aci = tmp.path().join("busybox.aci");
    busybox_aci(tmp.path(), "example.com/busybox", &aci);
    let aci = aci.to_str().unwrap();
    let talker =
        "i=1; while [ $i -le 5 ]; do echo out-$i; echo err-$i >&2; i=$((i+1)); sleep 0.3; done";
    let uuid = run_detached_with(
        tmp.path(),
        &[],
        &[
            aci,
            "--name=talker",
            "--exec=/bin/sh",
            "--",
            "-c",
            talker,
            "---",
            aci,
            "--name=quiet",
            "--exec=/bin/sh",
            "--",
            "-c",
            "echo quiet-1; sleep 0.5; printf 'no newline'",
        ],
    );
    // Follow from the start: ends by itself once the pod has ended.
    let followed = logs(tmp.path(), &["--follow", &uuid]);
    let (out, err) = (stdout(&followed), stderr(&followed));
    for i in 1..=5 {
        assert!(out.contains(&format!("talker | out-{i}\n")), "{out}");
        assert!(err.contains(&format!("talker | err-{i}\n")), "{err}");
    }
    assert!(
        !out.contains("err-") && !err.contains("out-"),
        "{out}\n{err}"
    );
    assert!(out.contains("quiet | quiet-1\n"), "{out}");
    assert!(out.contains("quiet | no newline"), "{out}");

    // After the pod exited, until it is collected.
    let one = logs(tmp.path(), &["--app=talker", "--tail=2", &uuid]);
    assert_eq!(stdout(&one), "out-5\n");
    assert_eq!(stderr(&one), "err-5\n");
    let all = logs(tmp.path(), &["--app=talker", &uuid]);
    assert_eq!(stdout(&all), "out-1\nout-2\nout-3\nout-4\nout-5\n");
    let none = logs(tmp.path(), &["--since=2099-01-01T00:00:00Z", &uuid]);
    assert_eq!(stdout(&none), "");
    let recent = logs(tmp.path(), &["--since=10m", "--app=quiet", &uuid]);
    assert_eq!(stdout(&recent), "quiet-1\nno newline");
    let stamped = logs(tmp.path(), &["--timestamps", "--app=quiet", &uuid]);
    let first = stdout(&stamped);
    let (stamp, rest) = first.split_once(' ').unwrap();
    assert_eq!(rest.lines().next(), Some("quiet-1"));
    assert!(
        stamp.len() == 30 && stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T',
        "{stamp}"
    );

    // On a terminal, what could fool it is shown escaped: a carriage
    // return that would hide `evil | ` behind a forged app name, escape
    // sequences.
    let uuid2 = run_detached_with(
        tmp.path(),
        &[],
        &[
            aci,
            "--name=evil",
            "--exec=/bin/sh",
            "--",
            "-c",
            "printf '\\rtalker | forged\\033]0;title\\007\\n'",
        ],
    );
    let mut logs_cmd = skiff_in(tmp.path());
    logs_cmd.args(["logs", "--follow", &uuid2]);
    let (shown, status) = Terminal::start(&shell_line(&logs_cmd)).finish();
    assert_eq!(status, Some(0), "{shown}");
    assert!(
        shown.contains("\\x0dtalker | forged\\x1b]0;title\\x07"),
        "{shown:?}"
    );
    assert!(!shown.contains('\u{1b}'), "{shown:?}");
    for (args, says) in [
        (
            ["--app=nope", &uuid],
            "has no app 'nope' (its apps: talker, quiet)",
        ),
        (
            ["--since=yesterday", &uuid],
            "--since=yesterday: use a duration",
        ),
    ] {
        let out = output(skiff_in(tmp.path()).arg("logs").args(args));
        assert_refused(&out, says);
        assert!(stderr(&out).contains(says), "{}", stderr(&out));
    }
}

/// A chatty app: its log never holds more than --log-max-files files of
/// --log-max-size bytes, and keeps the newest output.
#[test]
fn log_rotation_bounds_the_files_of_a_chatty_app() {
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let aci = tmp.path().join("busybox.aci");
    busybox_aci(tmp.path(), "example.com/busybox", &aci);
    // About 4 MiB of output.
    let out = output(
        skiff_in(tmp.path())
            .args(["run", "--insecure-options=image", "--net=none"])
            .args(["--log-max-size=256Ki", "--log-max-files=3", "--uuid-file-save"])
            .arg(tmp.path().join("uuid"))
            .arg(&aci)
            .args([
                "--exec=/bin/sh",
                "--",
                "-c",
                "yes 0123456789012345678901234567890123456789012345678901234567890123456789 | head -n 60000; echo the-end",
            ]),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        out.stdout.len(),
        60000 * 71 + 8,
        "foreground output passed on whole"
    );
    let uuid = std::fs::read_to_string(tmp.path().join("uuid")).unwrap();
    let uuid = uuid.trim();
    let dir = tmp
        .path()
        .join("data/pods/exited-garbage")
        .join(uuid)
        .join("logs");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["busybox.log", "busybox.log.1", "busybox.log.2"]);
    for name in &names {
        let len = std::fs::metadata(dir.join(name)).unwrap().len();
        assert!(len <= 256 << 10, "{name}: {len} bytes");
    }
    let last = logs(tmp.path(), &["--tail=1", uuid]);
    assert_eq!(stdout(&last), "the-end\n");
    // What is kept is whole lines, newest last.
    let kept = logs(tmp.path(), &[uuid]);
    let text = stdout(&kept);
    assert!(
        text.lines().count() > 4000,
        "{} lines",
        text.lines().count()
    );
    // (The first may be the rest of a line begun in a file rotated away.)
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[1..lines.len() - 1]
            .iter()
            .all(|l| *l == "0123456789012345678901234567890123456789012345678901234567890123456789"),
        "a line was cut"
    );
}

/// Mounts and processes of a journald run in a mount namespace of the
/// test's own: killed at the end even on failure.
struct Journald {
    pid: u32,
}

impl Drop for Journald {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-9", &self.pid.to_string()])
            .status();
    }
}

/// With journald running (a real one, in a mount namespace of the test's
/// own so the host's /run is untouched), every line also reaches the
/// journal with the pod's UUID, the app and the stream as fields.
#[test]
fn app_output_reaches_a_running_journald_with_pod_and_app_fields() {
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let aci = tmp.path().join("busybox.aci");
    busybox_aci(tmp.path(), "example.com/busybox", &aci);
    let uuid_file = tmp.path().join("uuid");
    let mut skiff_cmd = skiff_in(tmp.path());
    skiff_cmd
        .args([
            "run",
            "--insecure-options=image",
            "--net=none",
            "--uuid-file-save",
        ])
        .arg(&uuid_file)
        .arg(&aci)
        .args([
            "--name=web",
            "--exec=/bin/sh",
            "--",
            "-c",
            "echo to-the-journal; echo trouble >&2",
        ]);
    let line = shell_line(&skiff_cmd);
    let journal_dir = tmp.path().join("journal-pid");
    let script = format!(
        "set -e
mount -t tmpfs tmpfs /run/systemd
mkdir -p /run/log && mount -t tmpfs tmpfs /run/log
if [ -d /var/log/journal ]; then mount -t tmpfs tmpfs /var/log/journal; fi
/lib/systemd/systemd-journald & echo $! > '{pid}'
i=0; while [ ! -S /run/systemd/journal/socket ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
{line}
sleep 1
journalctl -o json --no-pager SKIFF_POD_UUID=$(cat '{uuid}')
kill $(cat '{pid}')",
        pid = journal_dir.display(),
        uuid = uuid_file.display(),
    );
    let child = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if let Ok(pid) = std::fs::read_to_string(&journal_dir) {
        drop(Journald {
            pid: pid.trim().parse().unwrap_or(0),
        });
    }
    assert!(out.status.success(), "{}", stderr(&out));
    let uuid = std::fs::read_to_string(&uuid_file).unwrap();
    let records: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let find = |message: &str| {
        records
            .iter()
            .find(|r| r["MESSAGE"] == message)
            .unwrap_or_else(|| panic!("no journal entry '{message}' in {records:?}"))
    };
    let out_record = find("to-the-journal");
    assert_eq!(out_record["SKIFF_POD_UUID"], uuid.trim());
    assert_eq!(out_record["SKIFF_APP"], "web");
    assert_eq!(out_record["SYSLOG_IDENTIFIER"], "skiff-web");
    assert_eq!(out_record["SKIFF_STREAM"], "stdout");
    assert_eq!(out_record["PRIORITY"], "6");
    let err_record = find("trouble");
    assert_eq!(err_record["SKIFF_STREAM"], "stderr");
    assert_eq!(err_record["PRIORITY"], "3");
}

/// A full disk: the app's output that cannot be logged is dropped and the
/// supervisor says so; the app does not stall, and its output still
/// reaches the caller of a foreground run.
#[test]
fn a_full_disk_drops_log_output_without_stalling_the_app() {
    let tmp = tempfile::tempdir().unwrap();
    let aci = tmp.path().join("busybox.aci");
    busybox_aci(tmp.path(), "example.com/busybox", &aci);
    // The data directory on a small file system of its own.
    let small = tmp.path().join("small");
    std::fs::create_dir_all(&small).unwrap();
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"])
        .arg(&small)
        .status()
        .unwrap();
    assert!(status.success());
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(self.0).status();
        }
    }
    let _unmount = Unmount(&small);
    let _guard = PodsGuard { root: &small };
    let out = output(
        skiff_in(&small)
            .args(["run", "--insecure-options=image", "--net=none"])
            .arg(&aci)
            .args([
                "--exec=/bin/sh",
                "--",
                "-c",
                // ~32 MiB of output: twice the file system.
                "yes 0123456789012345678901234567890123456789012345678901234567890123456789 | head -n 480000; echo finished",
            ]),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout.len(), 480000 * 71 + 9);
    assert!(
        stderr(&out).contains("output is dropped until its log can be written again"),
        "{}",
        stderr(&out)
    );
}
