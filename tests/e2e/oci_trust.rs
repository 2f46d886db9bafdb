//! Verified docker:// images: cosign signatures in a real registry
//! (Debian's docker-registry on the loopback), made apart from skiff's code
//! by tests/fixtures/cosign/cosign_sign.py (Python's `cryptography`), and the
//! forgeries a registry could serve, each refused with nothing stored.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;
use crate::oci::{Registry, layered_image};

fn fixture_signer() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/cosign/cosign_sign.py")
}

/// Runs the Python signer (Debian's python3 and python3-cryptography,
/// installed by `cargo xtask deps`).
fn py(args: &[&str]) -> String {
    let out = Command::new("/usr/bin/python3")
        .arg(fixture_signer())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cosign_sign.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Nothing of the image is in the store: no image, no layer.
fn assert_nothing_stored(root: &Path, what: &str) {
    assert_eq!(image_list(root).trim(), "[]", "{what}: an image was stored");
    let layers: Vec<_> = std::fs::read_dir(root.join("data/cas/blobs/sha256"))
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(layers.is_empty(), "{what}: layers were stored: {layers:?}");
}

fn fetch(root: &Path, image: &str) -> std::process::Output {
    output(skiff_in(root).args(["--insecure-options=http", "fetch", image]))
}

fn refused_with(root: &Path, image: &str, what: &str, expect: &str) {
    let out = fetch(root, image);
    assert_refused(&out, what);
    let err = stderr(&out);
    assert!(
        err.contains(expect),
        "{what}: expected {expect:?} in: {err}"
    );
    assert_nothing_stored(root, what);
}

#[test]
fn cosign_signatures_made_by_another_tool_verify_and_forgeries_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let _guard = PodsGuard { root };
    let reg = Registry::start(None);
    let layout = layered_image(root, false);
    reg.push(&layout, "v1", "test/app", false);
    let host = format!("127.0.0.1:{}", reg.port);
    let image = format!("docker://{host}/test/app:v1");
    let keys = root.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let key = |name: &str| keys.join(name).display().to_string();
    py(&["keygen", "ecdsa", &key("a.key"), &key("a.pub")]);
    py(&["keygen", "ed25519", &key("b.key"), &key("b.pub")]);
    let sign = |k: &str, extra: &[&str]| {
        let mut args = vec!["sign", &host, "test/app", "v1"];
        let k = key(k);
        args.push(&k);
        args.extend_from_slice(extra);
        py(&args);
    };

    // No key trusted for the repository: refused, and says how to go on.
    refused_with(
        root,
        &image,
        "no trusted key",
        &format!("no cosign key is trusted for {host}/test/app"),
    );

    let out = output(skiff_in(root).args([
        "trust",
        "--skip-fingerprint-review",
        "--prefix",
        &format!("{host}/test"),
        &key("a.pub"),
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    let listed = stdout(&output(skiff_in(root).args([
        "trust",
        "list",
        "--format=json",
    ])));
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed[0]["type"], "cosign", "{listed}");
    let fingerprint_a = listed[0]["fingerprint"].as_str().unwrap().to_string();

    refused_with(root, &image, "no signature", "no signature for");

    sign("b.key", &[]);
    refused_with(
        root,
        &image,
        "a signature by an untrusted key",
        "verifies with the 1 cosign key(s) trusted",
    );

    sign("a.key", &["--tamper"]);
    refused_with(
        root,
        &image,
        "a tampered payload",
        "verifies with the 1 cosign key(s) trusted",
    );

    sign("a.key", &[&format!("--reference={host}/test/other")]);
    refused_with(
        root,
        &image,
        "a signature for another repository",
        &format!("repository \"{host}/test/other\""),
    );

    sign("a.key", &[&format!("--digest=sha256:{}", "0".repeat(64))]);
    refused_with(
        root,
        &image,
        "a signature for another digest",
        "not the one fetched",
    );

    // Signed by the trusted key: fetched and run without --insecure-options=image.
    sign("a.key", &[]);
    let out = fetch(root, &image);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("signed by cosign key {fingerprint_a}")),
        "which key verified is said: {}",
        stderr(&out)
    );
    let policy = root.join("policy.toml");
    std::fs::write(
        &policy,
        format!("require-signature = true\ntrusted-prefixes = [\"{host}/test/\"]\n"),
    )
    .unwrap();
    let out = output(
        skiff_in(root)
            .arg("--policy")
            .arg(&policy)
            .args(["--insecure-options=http", "run", "--net=none", &image])
            .args(["--exec=/bin/busybox", "--", "cat", "/etc/new"]),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "new");

    // Ed25519, from the second key once it is trusted too.
    sign("b.key", &[]);
    let out = output(skiff_in(root).args([
        "trust",
        "--skip-fingerprint-review",
        "--prefix",
        &format!("{host}/test/app"),
        &key("b.pub"),
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    let out = output(skiff_in(root).args([
        "--insecure-options=http",
        "fetch",
        "--pull-policy=update",
        &image,
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("signed by cosign key") && !stderr(&out).contains(&fingerprint_a),
        "verified by the Ed25519 key: {}",
        stderr(&out)
    );
}
