//! Inspecting a running pod: `skiff top` (its processes by app), `skiff
//! stats` (what it uses, from its cgroups) and `skiff cp` (its files, with
//! paths resolved inside the app's root: a symlink the pod made cannot
//! lead a copy out of it).

use std::path::Path;

use crate::common::*;

fn json(root: &Path, args: &[&str]) -> serde_json::Value {
    let out = output(skiff_in(root).args(args));
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Two apps: `top` shows each one's processes under its name, with pids
/// in the pod; `stats` shows the pod and each app, with the app's memory
/// limit from its cgroup.
#[test]
fn top_and_stats_show_a_pods_processes_and_use_per_app() {
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let aci = tmp.path().join("busybox.aci");
    busybox_aci(tmp.path(), "example.com/busybox", &aci);
    let aci = aci.to_str().unwrap();
    let uuid = run_detached(
        tmp.path(),
        &[
            aci,
            "--name=web",
            "--memory=64M",
            "--exec=/bin/busybox",
            "--",
            "sleep",
            "601",
            "---",
            aci,
            "--name=db",
            "--exec=/bin/sh",
            "--",
            "-c",
            "/bin/busybox sleep 602; echo never",
        ],
    );
    let processes = eventually("both apps to run", || {
        let top = json(tmp.path(), &["top", "--format=json", &uuid]);
        let list = top.as_array()?.clone();
        let has = |app: &str, command: &str| {
            list.iter().any(|p| {
                p["app"] == app && p["command"].as_str().is_some_and(|c| c.contains(command))
            })
        };
        (has("web", "sleep 601") && has("db", "sleep 602")).then_some(list)
    });
    // The pod's init is its pid 1, of no app; app processes have pids in
    // the pod's namespace, not the host's.
    assert!(
        processes
            .iter()
            .any(|p| p["pid"] == 1 && p["app"].is_null()),
        "{processes:?}"
    );
    for p in &processes {
        assert_ne!(p["pid"], p["hostPid"], "{p}");
    }
    let table = stdout(&output(skiff_in(tmp.path()).args(["top", &uuid])));
    assert!(table.starts_with("APP"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("db ") && l.contains("sleep 602")),
        "{table}"
    );

    let stats = json(
        tmp.path(),
        &["stats", "--format=json", "--interval=1s", &uuid],
    );
    assert_eq!(stats["uuid"], uuid.as_str());
    assert!(stats["pod"]["pids"].as_u64() >= Some(3), "{stats}");
    let web = &stats["apps"][0];
    assert_eq!(web["app"], "web", "{stats}");
    assert_eq!(web["memoryLimit"], 64_000_000, "{stats}");
    assert!(web["memory"].as_u64().is_some_and(|m| m > 0), "{stats}");
    assert!(web["pids"].as_u64() >= Some(1), "{stats}");
    let table = stdout(&output(skiff_in(tmp.path()).args(["stats", &uuid])));
    assert!(
        table.lines().nth(1).is_some_and(|l| l.starts_with("(pod)")),
        "{table}"
    );

    let _ = output(skiff_in(tmp.path()).args(["stop", &uuid]));
    let out = output(skiff_in(tmp.path()).args(["top", &uuid]));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not running"), "{}", stderr(&out));
}

/// `cp` both ways, and the attacks: a pod's symlinks to a host directory
/// (absolute, and `..` enough to climb out) lead nowhere on the host, for
/// reading and for writing, and do not come out to name host files there; a magic link and the kernel's own files
/// (/proc, /sys) are refused; set-id bits do not come out.
#[test]
fn cp_copies_both_ways_and_symlinks_cannot_lead_out_of_the_app_root() {
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let aci = tmp.path().join("busybox.aci");
    busybox_aci(tmp.path(), "example.com/busybox", &aci);
    let host = tmp.path().join("host");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("secret"), "HOST-SECRET").unwrap();
    let host_path = host.to_str().unwrap();
    let setup = format!(
        "mkdir -p /data/sub /data/links && echo pod-data > /data/sub/file && echo tool > /data/tool && \
         chmod 4755 /data/tool && ln -s {host_path} /escape && \
         ln -s ../../../../../../../../..{host_path}/secret /climb && \
         ln -s ../sub/file /data/links/inside && ln -s ../../../../../../../..{host_path}/secret /data/links/out && \
         ln -s {host_path}/secret /data/links/abs && mkdir /data/d && ln -s .. /data/d/s && \
         ln -s d/s/d/s/d/s/d/s/../../../../../../../../../..{host_path} /data/chain && \
         echo ready > /ready && \
         exec /bin/busybox sleep 600"
    );
    let uuid = run_detached(
        tmp.path(),
        &[aci.to_str().unwrap(), "--exec=/bin/sh", "--", "-c", &setup],
    );
    eventually("the pod's files", || {
        let out =
            output(skiff_in(tmp.path()).args(["enter", &uuid, "/bin/busybox", "cat", "/ready"]));
        stdout(&out).contains("ready").then_some(())
    });
    let cp = |from: &str, to: &str| output(skiff_in(tmp.path()).args(["cp", from, to]));

    // Out of the pod: a whole directory, set-id bits dropped.
    let out_dir = tmp.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let out = cp(&format!("{uuid}:/data"), out_dir.to_str().unwrap());
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(out_dir.join("data/sub/file")).unwrap(),
        "pod-data\n"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(out_dir.join("data/tool"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o7777, 0o755, "set-id bits came out of the pod");
    // Symlinks come out only where they point inside the copy: on the
    // host, the others would name the host's files.
    let links = out_dir.join("data/links");
    assert_eq!(
        std::fs::read_to_string(links.join("inside")).unwrap(),
        "pod-data\n"
    );
    for skipped in ["out", "abs", "../chain"] {
        assert!(
            std::fs::symlink_metadata(links.join(skipped)).is_err(),
            "the symlink {skipped} came out"
        );
    }
    assert!(stderr(&out).contains("skipped"), "{}", stderr(&out));
    // Whatever came out resolves inside the copy, if at all.
    let mut dirs = vec![out_dir.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if let Ok(real) = std::fs::canonicalize(&path) {
                assert!(
                    real.starts_with(&out_dir),
                    "{} leads to {}",
                    path.display(),
                    real.display()
                );
            }
            if entry.file_type().unwrap().is_dir() {
                dirs.push(path);
            }
        }
    }
    // A host symlink where the copy makes a directory is not written
    // through.
    let again = tmp.path().join("again");
    std::fs::create_dir_all(again.join("data")).unwrap();
    std::os::unix::fs::symlink(&host, again.join("data/sub")).unwrap();
    let out = cp(&format!("{uuid}:/data"), again.to_str().unwrap());
    assert!(!out.status.success(), "{}", stderr(&out));
    assert!(!host.join("file").exists(), "written through a symlink");

    // Reading through the pod's symlinks reaches nothing of the host's.
    // The kernel's files a pod sees are the host's kernel's: not copied.
    for attack in [
        "/escape/secret",
        "/climb",
        "/proc/1/root/ready",
        "/proc/1/environ",
        "/sys/kernel/notes",
    ] {
        let dest = tmp.path().join("stolen");
        let out = cp(&format!("{uuid}:{attack}"), dest.to_str().unwrap());
        let stolen = std::fs::read_to_string(&dest).unwrap_or_default();
        assert!(
            !stolen.contains("HOST-SECRET"),
            "{attack}: read the host's file"
        );
        assert!(!out.status.success(), "{attack}: {}", stderr(&out));
        let _ = std::fs::remove_file(&dest);
    }

    // Writing through them plants nothing on the host.
    let payload = tmp.path().join("planted");
    std::fs::write(&payload, "PAYLOAD").unwrap();
    for attack in [
        "/escape/",
        "/escape",
        "/escape/planted",
        "/climb",
        "/proc/1/comm",
    ] {
        let out = cp(payload.to_str().unwrap(), &format!("{uuid}:{attack}"));
        assert!(!out.status.success(), "{attack}: {}", stderr(&out));
    }
    assert_eq!(
        std::fs::read_dir(&host).unwrap().count(),
        1,
        "a file was planted in the host directory"
    );
    assert_eq!(
        std::fs::read_to_string(host.join("secret")).unwrap(),
        "HOST-SECRET"
    );

    // Into the pod: a file, then a directory into an existing one.
    let out = cp(payload.to_str().unwrap(), &format!("{uuid}:/data/in"));
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cp(
        out_dir.join("data/sub").to_str().unwrap(),
        &format!("{uuid}:/data"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let seen = output(skiff_in(tmp.path()).args([
        "enter",
        &uuid,
        "/bin/busybox",
        "cat",
        "/data/in",
        "/data/sub/file",
    ]));
    assert_eq!(stdout(&seen), "PAYLOADpod-data\n", "{}", stderr(&seen));
    let _ = output(skiff_in(tmp.path()).args(["stop", &uuid]));
}
