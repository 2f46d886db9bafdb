//! `skiff image build|validate|cat-manifest` and `skiff version`.

use std::process::Command;

use crate::common::*;

fn sh(script: &str) -> std::process::Output {
    output(Command::new("sh").arg("-c").arg(script))
}

#[test]
fn version_names_skiff_and_appc() {
    let out = output(skiff().arg("version"));
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(
        text.contains(&format!("skiff version {}", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    assert!(text.contains("appc version 0.8.11"), "{text}");
    // What it was built from and with, and what it runs pods with.
    let json: serde_json::Value =
        serde_json::from_slice(&output(skiff().args(["version", "--format=json"])).stdout).unwrap();
    assert!(
        json["rustc"]
            .as_str()
            .is_some_and(|r| r.starts_with("rustc ")),
        "{json}"
    );
    assert!(
        json["built"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{json}"
    );
    assert_eq!(
        json["flavors"],
        serde_json::json!(["ns", "fly", "oci", "kvm"])
    );
    assert!(
        json["stage1"]
            .as_str()
            .is_some_and(|s| s.ends_with("skiff-stage1")),
        "{json}"
    );
    let commit = json["commit"].as_str().unwrap_or_default();
    assert!(!commit.is_empty(), "{json}");
}

#[test]
fn help_is_everywhere_and_unknown_flags_are_usage_errors() {
    for args in [
        &["--help"][..],
        &["image", "--help"],
        &["image", "build", "--help"],
        &["image", "validate", "--help"],
        &["image", "cat-manifest", "--help"],
        &["version", "--help"],
    ] {
        let out = output(skiff().args(args));
        assert!(out.status.success(), "{args:?}");
        assert!(
            stdout(&out).contains("Usage: skiff"),
            "{args:?}: {}",
            stdout(&out)
        );
    }
    let out = output(skiff().args(["image", "validate", "--frobnicate", "x"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--frobnicate"), "{}", stderr(&out));
}

#[test]
fn built_images_pass_actool_and_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    busybox_layout(&layout);
    for (compression, decompress) in [
        ("gzip", "gzip -dc"),
        ("xz", "xz -dc"),
        ("bzip2", "bzip2 -dc"),
        ("none", "cat"),
    ] {
        let aci = tmp.path().join(format!("bb-{compression}.aci"));
        let out = output(
            skiff()
                .args(["image", "build", "--compression", compression])
                .arg(&layout)
                .arg(&aci),
        );
        assert!(
            out.status.success(),
            "build {compression}: {}",
            stderr(&out)
        );

        let out = output(actool().arg("--debug").arg("validate").arg(&aci));
        assert!(
            out.status.success(),
            "actool rejects the {compression} ACI: {}",
            stderr(&out)
        );

        let out = output(skiff().arg("image").arg("validate").arg(&aci));
        assert!(
            out.status.success(),
            "skiff rejects its own ACI: {}",
            stderr(&out)
        );
        // The printed image ID is the SHA-512 of the uncompressed tar.
        let sum = sh(&format!("{decompress} {} | sha512sum", aci.display()));
        let hex = stdout(&sum).split_whitespace().next().unwrap().to_string();
        assert!(
            stdout(&out).contains(&format!("sha512-{hex}")),
            "{}",
            stdout(&out)
        );

        // Symlink, hard link and FIFO survive as such.
        let listing = stdout(&sh(&format!("{decompress} {} | tar -tvf -", aci.display())));
        assert!(listing.contains("rootfs/bin/sh -> busybox"), "{listing}");
        assert!(
            listing.contains("rootfs/bin/busybox-hardlink link to rootfs/bin/busybox"),
            "{listing}"
        );
        assert!(
            listing
                .lines()
                .any(|l| l.starts_with('p') && l.ends_with("rootfs/etc/fifo")),
            "{listing}"
        );

        let out = output(skiff().arg("image").arg("cat-manifest").arg(&aci));
        assert!(out.status.success(), "{}", stderr(&out));
        let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let original: serde_json::Value = serde_json::from_str(BUSYBOX_MANIFEST).unwrap();
        assert_eq!(printed["name"], original["name"]);
        assert_eq!(printed["labels"], original["labels"]);
        assert_eq!(printed["app"]["exec"], original["app"]["exec"]);
    }
}

#[test]
fn build_refuses_to_overwrite_and_leaves_nothing_behind_on_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    busybox_layout(&layout);
    let aci = tmp.path().join("out.aci");
    std::fs::write(&aci, b"keep me").unwrap();
    let out = output(skiff().args(["image", "build"]).arg(&layout).arg(&aci));
    assert_refused(&out, "existing output");
    assert!(stderr(&out).contains("--overwrite"), "{}", stderr(&out));
    assert_eq!(std::fs::read(&aci).unwrap(), b"keep me");

    std::fs::write(
        layout.join("manifest"),
        br#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"Bad"}"#,
    )
    .unwrap();
    let fresh = tmp.path().join("fresh.aci");
    let out = output(skiff().args(["image", "build"]).arg(&layout).arg(&fresh));
    assert_refused(&out, "invalid manifest");
    assert!(
        stderr(&out).contains("uppercase not allowed"),
        "{}",
        stderr(&out)
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !left
            .iter()
            .any(|n| n.starts_with(".fresh") || n == "fresh.aci"),
        "{left:?}"
    );

    std::fs::write(layout.join("stray"), b"x").unwrap();
    std::fs::write(layout.join("manifest"), BUSYBOX_MANIFEST).unwrap();
    let out = output(skiff().args(["image", "build"]).arg(&layout).arg(&fresh));
    assert_refused(&out, "stray top-level entry");
    assert!(stderr(&out).contains("'stray'"), "{}", stderr(&out));
}

/// Each bad input gets exit 1 and exactly the expected number of lines.
#[test]
fn bad_inputs_get_one_clear_line_each() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let layout = dir.join("layout");
    busybox_layout(&layout);
    let good = dir.join("good.aci");
    assert!(
        output(skiff().args(["image", "build"]).arg(&layout).arg(&good))
            .status
            .success()
    );
    let bytes = std::fs::read(&good).unwrap();

    let mut cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated.aci",
            bytes[..bytes.len() / 2].to_vec(),
            "corrupt",
        ),
        (
            "garbage.bin",
            (0u8..=255).cycle().take(4096).collect(),
            "unrecognized file type",
        ),
        ("text.json", b"this is not json".to_vec(), "malformed JSON"),
        (
            "unterminated.json",
            br#"{"acKind": "ImageManifest""#.to_vec(),
            "malformed JSON",
        ),
        (
            "wrongtype.json",
            br#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":5}"#.to_vec(),
            "name: must be a string, not a number",
        ),
        (
            "badkind.json",
            br#"{"acKind":"Image","acVersion":"0.8.11","name":"a"}"#.to_vec(),
            "acKind: bad acKind",
        ),
        ("empty.json", Vec::new(), "unrecognized file type"),
    ];
    // A gzip header followed by garbage.
    let mut fake_gzip = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    fake_gzip.extend(std::iter::repeat_n(0xA5u8, 600));
    cases.push(("fake.aci", fake_gzip, "corrupt"));

    for (name, content, expect) in &cases {
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        let out = output(skiff().arg("image").arg("validate").arg(&path));
        assert_refused(&out, name);
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{name}: want one line, got: {err}");
        assert!(err.contains(expect), "{name}: want '{expect}' in: {err}");
        assert!(
            err.starts_with(&format!("{}: ", path.display())),
            "{name}: {err}"
        );
    }

    // Archives with a wrong layout, made with the system tar.
    let mk = |name: &str, setup: &str| {
        let work = dir.join(format!("{name}.d"));
        std::fs::create_dir_all(&work).unwrap();
        std::fs::write(work.join("manifest"), BUSYBOX_MANIFEST).unwrap();
        std::fs::create_dir_all(work.join("rootfs")).unwrap();
        let out = sh(&format!(
            "cd {} && {setup} && tar -czf ../{name} $(ls -A)",
            work.display()
        ));
        assert!(out.status.success(), "{}", stderr(&out));
        dir.join(name)
    };
    for (name, setup, expect) in [
        ("extra-top.aci", "echo x > etc", "unexpected entry 'etc'"),
        ("no-manifest.aci", "rm manifest", "no image manifest"),
        ("no-rootfs.aci", "rmdir rootfs && touch keep", "no rootfs"),
        (
            "rootfs-file.aci",
            "rmdir rootfs && touch rootfs",
            "rootfs is not a directory",
        ),
        (
            "bad-manifest.aci",
            "echo '{\"acKind\":\"ImageManifest\"}' > manifest",
            "invalid image manifest",
        ),
    ] {
        let aci = mk(name, setup);
        let out = output(skiff().arg("image").arg("validate").arg(&aci));
        assert_refused(&out, name);
        assert!(
            stderr(&out).contains(expect),
            "{name}: want '{expect}' in: {}",
            stderr(&out)
        );
        let actool_out = output(actool().arg("validate").arg(&aci));
        assert!(!actool_out.status.success(), "{name}: actool accepts it");
    }

    let out = output(
        skiff()
            .arg("image")
            .arg("cat-manifest")
            .arg(dir.join("garbage.bin")),
    );
    assert_refused(&out, "cat-manifest of garbage");
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
}

#[test]
fn validate_reports_every_problem_and_checks_every_file() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"Example.com/x",
            "labels":[{"name":"os","value":"linux"},{"name":"arch","value":"sparc"}],
            "app":{"exec":["/bin/sh"],"user":"0","group":"","workingDirectory":"tmp"}}"#,
    )
    .unwrap();
    let good = tmp.path().join("pod.json");
    std::fs::write(
        &good,
        r#"{"acKind":"PodManifest","acVersion":"0.8.11","apps":[]}"#,
    )
    .unwrap();
    let out = output(skiff().arg("image").arg("validate").arg(&bad).arg(&good));
    assert_refused(&out, "bad manifest");
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 4, "{err}");
    for expect in [
        "name: 'Example.com/x' is not a valid ACIdentifier: uppercase not allowed",
        "labels: bad arch 'sparc' for os 'linux'",
        "app.group: is required",
        "app.workingDirectory: must be an absolute path",
    ] {
        assert!(err.contains(expect), "want '{expect}' in: {err}");
    }
    assert!(
        stdout(&out).contains("pod.json: valid PodManifest"),
        "{}",
        stdout(&out)
    );
}

/// Owners, modes, xattrs, hard links, symlinks and FIFOs survive
/// build → fetch → render.
#[test]
fn metadata_survives_build_fetch_and_render() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    busybox_layout(&layout);
    let data_file = layout.join("rootfs/etc/owned");
    std::fs::write(&data_file, b"owned by 1234:5678").unwrap();
    std::os::unix::fs::chown(&data_file, Some(1234), Some(5678)).unwrap();
    std::fs::set_permissions(
        &data_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o640),
    )
    .unwrap();
    rustix::fs::setxattr(
        &data_file,
        "user.skiff",
        b"hello",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    let aci = tmp.path().join("meta.aci");
    assert!(
        output(skiff().args(["image", "build"]).arg(&layout).arg(&aci))
            .status
            .success()
    );
    let root = tmp.path().join("store");
    let out = output(
        skiff_in(&root)
            .args(["--insecure-options=image", "fetch"])
            .arg(&aci),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let tree = tmp.path().join("tree");
    let out = output(
        skiff_in(&root)
            .args(["image", "render", "--rootfs-only", "example.com/busybox"])
            .arg(&tree),
    );
    assert!(out.status.success(), "{}", stderr(&out));

    let owned = tree.join("etc/owned");
    let meta = std::fs::metadata(&owned).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (1234, 5678, 0o640)
    );
    let mut value = [0u8; 16];
    let n = rustix::fs::getxattr(&owned, "user.skiff", &mut value[..]).unwrap();
    assert_eq!(&value[..n], b"hello");
    let bb = std::fs::metadata(tree.join("bin/busybox")).unwrap();
    let link = std::fs::metadata(tree.join("bin/busybox-hardlink")).unwrap();
    assert_eq!(bb.ino(), link.ino(), "hard link became a copy");
    assert_eq!(
        std::fs::read_link(tree.join("bin/sh")).unwrap(),
        std::path::Path::new("busybox")
    );
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(
        &std::fs::symlink_metadata(tree.join("etc/fifo"))
            .unwrap()
            .file_type()
    ));
    let src_mtime = std::fs::metadata(layout.join("rootfs/bin/busybox"))
        .unwrap()
        .mtime();
    assert_eq!(bb.mtime(), src_mtime);
}
