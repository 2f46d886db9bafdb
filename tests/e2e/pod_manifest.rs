//! rkt's whole-pod surface: `--pod-manifest` (two apps, a shared volume,
//! a pod-level memory limit, annotations) and `skiff export` of a pod's app
//! as an ACI that actool accepts and skiff runs — with what the app wrote
//! (a hostile app's symlinks stay symlinks, its device nodes stay out).

use std::path::Path;
use std::process::Command;

use crate::common::*;

fn fetch(root: &Path, aci: &Path) -> String {
    let out = output(
        skiff_in(root)
            .args(["fetch", "--insecure-options=image"])
            .arg(aci),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).trim().to_string()
}

fn pod_count(root: &Path) -> usize {
    stdout(&output(skiff_in(root).args(["list", "-q"])))
        .lines()
        .count()
}

/// The pod-level memory limit as the host's cgroup shows it.
fn pod_memory_limit(uuid: &str) -> Option<String> {
    [
        format!("/sys/fs/cgroup/memory/skiff/{uuid}/memory.limit_in_bytes"),
        format!("/sys/fs/cgroup/skiff/{uuid}/memory.max"),
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok())
    .map(|t| t.trim().to_string())
}

#[test]
fn a_pod_manifest_with_two_apps_and_a_pod_level_limit_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let writer = image_with_app(
        tmp.path(),
        "example.com/writer",
        r#"{"exec": ["/bin/sh", "-c", "echo from-image"], "user": "0", "group": "0"}"#,
    );
    let reader = image_with_app(
        tmp.path(),
        "example.com/reader",
        r#"{"exec": ["/bin/sh", "-c", "while [ ! -e /shared/note ]; do /bin/busybox sleep 0.1; done; echo reader read $(/bin/busybox cat /shared/note); exec /bin/busybox sleep 600"],
            "user": "0", "group": "0"}"#,
    );
    let writer_id = fetch(tmp.path(), &writer);
    let reader_id = fetch(tmp.path(), &reader);
    let manifest = |pod_isolators: &str, writer_name: &str| {
        format!(
            r#"{{"acKind": "PodManifest", "acVersion": "0.8.11",
               "apps": [
                 {{"name": "writer",
                   "image": {{"name": "{writer_name}", "id": "{writer_id}"}},
                   "app": {{"exec": ["/bin/sh", "-c", "echo $GREETING > /shared/note.new; /bin/busybox mv /shared/note.new /shared/note; echo writer wrote; exec /bin/busybox sleep 600"],
                           "user": "0", "group": "0",
                           "environment": [{{"name": "GREETING", "value": "hello-from-the-manifest"}}]}},
                   "mounts": [{{"volume": "shared", "path": "/shared"}}],
                   "annotations": [{{"name": "example.com/role", "value": "writer"}}]}},
                 {{"name": "reader",
                   "image": {{"id": "{reader_id}"}},
                   "mounts": [{{"volume": "shared", "path": "/shared"}}]}}
               ],
               "volumes": [{{"name": "shared", "kind": "empty"}}],
               "isolators": {pod_isolators},
               "annotations": [{{"name": "example.com/owner", "value": "team-a"}}],
               "userLabels": {{"tier": "test"}}}}"#
        )
    };
    let limit = r#"[{"name": "resource/memory", "value": {"limit": "96Mi"}}]"#;
    let file = tmp.path().join("pod.json");
    std::fs::write(&file, manifest(limit, "example.com/writer")).unwrap();
    let out = output(
        skiff_in(tmp.path())
            .args(["run", "--detach", "--net=none", "--insecure-options=image"])
            .arg(format!("--pod-manifest={}", file.display())),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let uuid = stdout(&out).trim().to_string();
    let logs = eventually("both apps wrote their lines", || {
        let logs = stdout(&output(skiff_in(tmp.path()).args(["logs", &uuid])));
        (logs.contains("writer wrote") && logs.contains("reader read")).then_some(logs)
    });
    assert!(
        logs.contains("reader read hello-from-the-manifest"),
        "{logs}"
    );
    assert_eq!(
        pod_memory_limit(&uuid).as_deref(),
        Some("100663296"),
        "the pod-level limit is not on the pod's cgroup"
    );
    let pod: serde_json::Value =
        serde_json::from_slice(&output(skiff_in(tmp.path()).args(["cat-manifest", &uuid])).stdout)
            .unwrap();
    assert_eq!(pod["isolators"][0]["name"], "resource/memory", "{pod}");
    assert_eq!(pod["annotations"][0]["value"], "team-a", "{pod}");
    assert_eq!(pod["userLabels"]["tier"], "test", "{pod}");
    assert_eq!(pod["apps"][0]["annotations"][0]["value"], "writer", "{pod}");
    let stopped = output(skiff_in(tmp.path()).args(["stop", &uuid]));
    assert!(stopped.status.success(), "{}", stderr(&stopped));

    // Refused before any pod is made.
    let before = pod_count(tmp.path());
    let bad = [
        (
            manifest(
                r#"[{"name": "os/linux/capabilities-retain-set", "value": {"set": ["CAP_SYS_ADMIN"]}}]"#,
                "example.com/writer",
            ),
            vec![],
            "pod-level isolator os/linux/capabilities-retain-set is not supported",
        ),
        (
            manifest("[]", "example.com/someone-else"),
            vec![],
            "not example.com/someone-else",
        ),
        (
            manifest(limit, "example.com/writer"),
            vec!["--stage1=fly"],
            "ns flavor only",
        ),
        (
            manifest("[]", "example.com/writer")
                .replace(&writer_id, &format!("sha512-{}", "0".repeat(128))),
            vec![],
            "sha512-000",
        ),
        (
            "{\"acKind\": \"ImageManifest\"}".to_string(),
            vec![],
            "not a valid appc pod manifest",
        ),
    ];
    for (text, extra, why) in bad {
        std::fs::write(&file, &text).unwrap();
        let out = output(
            skiff_in(tmp.path())
                .args(["prepare", "--net=none", "--insecure-options=image"])
                .args(&extra)
                .arg(format!("--pod-manifest={}", file.display())),
        );
        assert_refused(&out, why);
        assert!(stderr(&out).contains(why), "{why}: {}", stderr(&out));
        assert_eq!(pod_count(tmp.path()), before, "{why}: a pod was made");
    }
    // A file named like the pinned ID (an impostor with the same name)
    // in the working directory is not the stored image.
    let impostor_dir = tmp.path().join("cwd");
    std::fs::create_dir(&impostor_dir).unwrap();
    std::fs::copy(&reader, impostor_dir.join(&writer_id)).unwrap();
    std::fs::write(
        &file,
        manifest("[]", "example.com/reader")
            .replace(&writer_id, &format!("sha512-{}", "1".repeat(128))),
    )
    .unwrap();
    std::fs::copy(
        &reader,
        impostor_dir.join(format!("sha512-{}", "1".repeat(128))),
    )
    .unwrap();
    let out = output(
        skiff_in(tmp.path())
            .current_dir(&impostor_dir)
            .args(["prepare", "--net=none", "--insecure-options=image"])
            .arg(format!("--pod-manifest={}", file.display())),
    );
    assert_refused(&out, "a file named like the pinned ID");
    assert!(
        stderr(&out).contains("not in the store"),
        "{}",
        stderr(&out)
    );
    assert_eq!(pod_count(tmp.path()), before, "an impostor file made a pod");
    std::fs::write(&file, manifest("[]", "example.com/writer")).unwrap();
    let out = output(
        skiff_in(tmp.path())
            .args(["run", "--net=none", "--insecure-options=image"])
            .arg(format!("--pod-manifest={}", file.display()))
            .arg(&writer),
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("give no image on the command line"),
        "{}",
        stderr(&out)
    );
}

/// The tar listing of an ACI (`tar tzvf`).
fn listing(aci: &Path) -> String {
    let out = output(Command::new("tar").arg("tzvf").arg(aci));
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

#[test]
fn an_exported_app_is_an_aci_actool_accepts_and_skiff_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let aci = tmp.path().join("busybox.aci");
    busybox_aci(tmp.path(), "example.com/busybox", &aci);
    let secret = tmp.path().join("host-secret");
    std::fs::write(&secret, "host only").unwrap();
    // The app changes its root as a hostile one would: a new file, a
    // deleted one, a replaced directory, a symlink to a host path, a
    // device node and a FIFO.
    let script = format!(
        "echo changed > /etc/motd && /bin/busybox rm /etc/passwd && \
         /bin/busybox mkdir -p /data && echo kept > /data/file && \
         /bin/busybox ln -s {} /etc/escape && \
         /bin/busybox mknod /etc/disk c 1 3 && /bin/busybox mkfifo /etc/pipe && echo done",
        secret.display()
    );
    let uuid_file = tmp.path().join("uuid");
    let out = output(
        skiff_in(tmp.path())
            .args(["run", "--net=none", "--insecure-options=image"])
            .arg(format!("--uuid-file-save={}", uuid_file.display()))
            .arg(&aci)
            .args(["--exec=/bin/sh", "--", "-c", &script]),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "done\n", "{}", stderr(&out));
    let uuid = std::fs::read_to_string(&uuid_file)
        .unwrap()
        .trim()
        .to_string();

    let exported = tmp.path().join("exported.aci");
    let out = output(skiff_in(tmp.path()).args(["export", &uuid]).arg(&exported));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("sha512-"), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("/etc/disk is not a file"),
        "{}",
        stderr(&out)
    );
    let valid = output(actool().arg("validate").arg(&exported));
    assert!(valid.status.success(), "actool: {}", stderr(&valid));
    let list = listing(&exported);
    let entry = |path: &str| list.lines().find(|l| l.contains(path)).map(str::to_string);
    assert!(entry("rootfs/etc/motd").is_some(), "{list}");
    assert!(
        entry("rootfs/etc/passwd").is_none(),
        "a deleted file came back: {list}"
    );
    assert!(
        entry("rootfs/etc/disk").is_none(),
        "a device node was exported: {list}"
    );
    let escape = entry("rootfs/etc/escape").unwrap_or_default();
    assert!(
        escape.starts_with('l') && escape.contains(&format!("-> {}", secret.display())),
        "the symlink was followed: {escape}"
    );
    assert!(!list.contains("host only"));

    // Without --overwrite the file stays; a running pod is refused.
    let again = output(skiff_in(tmp.path()).args(["export", &uuid]).arg(&exported));
    assert_refused(&again, "export over an existing file");
    let running = run_detached(
        tmp.path(),
        &[
            aci.to_str().unwrap(),
            "--exec=/bin/busybox",
            "--",
            "sleep",
            "600",
        ],
    );
    let out = output(
        skiff_in(tmp.path())
            .args(["export", &running])
            .arg(tmp.path().join("running.aci")),
    );
    assert_refused(&out, "export of a running pod");
    assert!(stderr(&out).contains("stop it first"), "{}", stderr(&out));
    assert!(!tmp.path().join("running.aci").exists());

    // The export runs, with the app's changes.
    let out = output(
        skiff_in(tmp.path())
            .args(["run", "--net=none", "--insecure-options=image"])
            .arg(&exported)
            .args([
                "--exec=/bin/sh",
                "--",
                "-c",
                "/bin/busybox cat /etc/motd /data/file; [ -e /etc/passwd ] || echo no-passwd",
            ]),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "changed\nkept\nno-passwd\n");
}
