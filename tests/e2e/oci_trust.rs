//! Verified docker:// images: cosign signatures in a real registry
//! (Debian's docker-registry on the loopback), made apart from skiff's code
//! by tests/fixtures/cosign/cosign_sign.py (Python's `cryptography`), and the
//! forgeries a registry could serve, each refused with nothing stored.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;
use crate::oci::{Registry, layered_image, sh};

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

/// Nothing of the image is in the store: no image, no layer, no tree.
fn assert_nothing_stored(root: &Path, what: &str) {
    assert_eq!(image_list(root).trim(), "[]", "{what}: an image was stored");
    for dir in ["data/cas/blobs/sha256", "data/trees"] {
        let left: Vec<_> = std::fs::read_dir(root.join(dir))
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{what}: left in the store: {left:?}");
    }
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

/// `skiff --policy P ARGS` with `policy` refuses saying `expect`, and
/// leaves nothing in the store.
fn refused_by_policy(root: &Path, policy: &str, args: &[&str], expect: &str) {
    let file = root.join("policy-under-test.toml");
    std::fs::write(&file, policy).unwrap();
    let out = output(skiff_in(root).arg("--policy").arg(&file).args(args));
    assert_refused(&out, policy);
    assert!(stderr(&out).contains(expect), "{policy}: {}", stderr(&out));
    assert_nothing_stored(root, policy);
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
        &format!("no key is trusted for {host}/test/app"),
    );

    // --insecure-options=image does not get past a policy that wants a
    // signature.
    refused_by_policy(
        root,
        "require-signature = true\n",
        &["--insecure-options=image,http", "fetch", &image],
        "no trusted key signed it",
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
    // But not by a policy for other names: refused, and what the fetch
    // added is gone again.
    refused_by_policy(
        root,
        &format!("trusted-prefixes = [\"{host}/test/other\"]\n"),
        &["--insecure-options=http", "fetch", &image],
        "not under a trusted prefix",
    );
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

/// `skiff` with registry credentials for the test registry.
fn with_creds(root: &Path) -> Command {
    let mut cmd = skiff_in(root);
    cmd.args(["--insecure-options=http", "--creds=alice:secret"]);
    cmd
}

#[test]
fn images_pushed_and_signed_by_skiff_verify_elsewhere_and_other_tools_read_them() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let host_b = root.join("b");
    std::fs::create_dir_all(&host_b).unwrap();
    let _guard = PodsGuard { root };
    let _guard_b = PodsGuard { root: &host_b };
    let reg = Registry::start(Some("alice"));
    let host = format!("127.0.0.1:{}", reg.port);

    // An ACI with a 20 MB file of random bytes: its layer goes up in chunks.
    let layout = root.join("layout");
    busybox_layout(&layout);
    let big = layout.join("rootfs/big");
    let status = Command::new("dd")
        .args(["if=/dev/urandom", "bs=1M", "count=20", "status=none"])
        .arg(format!("of={}", big.display()))
        .status()
        .unwrap();
    assert!(status.success());
    let aci = root.join("busybox.aci");
    build_image(&layout, &aci);
    let out = output(
        skiff_in(root)
            .args(["fetch", "--insecure-options=image"])
            .arg(&aci),
    );
    assert!(out.status.success(), "{}", stderr(&out));

    let dest = format!("docker://{host}/skiff/busybox:1.0");
    let out = output(with_creds(root).args(["image", "push", "example.com/busybox", &dest]));
    assert!(out.status.success(), "{}", stderr(&out));
    let digest = stdout(&out).trim().to_string();
    assert!(digest.starts_with("sha256:"), "{digest}");
    assert!(stderr(&out).contains("as an OCI image"), "{}", stderr(&out));
    // POST, three 8 MiB PATCHes, PUT.
    assert!(stderr(&out).contains("in 5 requests"), "{}", stderr(&out));

    // skopeo reads what skiff pushed, and copies it.
    let inspect = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--creds=alice:secret"])
        .arg(&dest)
        .output()
        .unwrap();
    assert!(
        inspect.status.success(),
        "skopeo inspect: {}",
        String::from_utf8_lossy(&inspect.stderr)
    );
    let inspected: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(inspected["Digest"], digest.as_str());
    let copied = root.join("copied");
    let copy = Command::new("skopeo")
        .args([
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            "--src-creds=alice:secret",
        ])
        .arg(&dest)
        .arg(format!("oci:{}:1.0", copied.display()))
        .output()
        .unwrap();
    assert!(
        copy.status.success(),
        "skopeo copy: {}",
        String::from_utf8_lossy(&copy.stderr)
    );

    // Pushed again: every blob is already there.
    let out = output(with_creds(root).args(["image", "push", "example.com/busybox", &dest]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("0 blob(s) uploaded (0 bytes), 2 already there"),
        "{}",
        stderr(&out)
    );

    // A cosign key made by skiff, encrypted as cosign does; skiff signs.
    let keys = root.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let prefix = keys.join("ci");
    let out = output(
        skiff()
            .env("COSIGN_PASSWORD", "s3cret")
            .args(["key", "generate", "--type=cosign", "--out"])
            .arg(&prefix),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let secret = keys.join("ci.key");
    let public = keys.join("ci.pub");
    let mode = std::fs::metadata(&secret).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    let sign = |password: &str| {
        output(
            with_creds(root)
                .env("COSIGN_PASSWORD", password)
                .args(["image", "sign", "--format=cosign", "--key"])
                .arg(&secret)
                .arg(&dest),
        )
    };
    let out = sign("wrong");
    assert_refused(&out, "a wrong key password");
    assert!(stderr(&out).contains("wrong password"), "{}", stderr(&out));
    let out = sign("s3cret");
    assert!(out.status.success(), "{}", stderr(&out));

    // Python's cryptography verifies skiff's signature as cosign lays it
    // out, and opens skiff's encrypted key.
    let py_env = |cmd: &mut Command| {
        cmd.env("REGISTRY_CREDS", "alice:secret")
            .env("COSIGN_PASSWORD", "s3cret");
    };
    let mut verify = Command::new("/usr/bin/python3");
    verify
        .arg(fixture_signer())
        .args(["verify", &host, "skiff/busybox", "1.0"])
        .arg(&public);
    py_env(&mut verify);
    let verified = verify.output().unwrap();
    assert!(
        verified.status.success(),
        "Python's check of skiff's signature: {}",
        String::from_utf8_lossy(&verified.stderr)
    );
    let mut decrypt = Command::new("/usr/bin/python3");
    decrypt
        .arg(fixture_signer())
        .arg("decrypt")
        .arg(&secret)
        .arg(keys.join("opened.pem"));
    py_env(&mut decrypt);
    let opened = decrypt.output().unwrap();
    assert!(
        opened.status.success(),
        "Python opens skiff's encrypted key: {}",
        String::from_utf8_lossy(&opened.stderr)
    );

    // Another host trusts the public key: it fetches and runs the image
    // without --insecure-options=image, byte for byte.
    let out = output(
        skiff_in(&host_b)
            .args([
                "trust",
                "--skip-fingerprint-review",
                "--prefix",
                &format!("{host}/skiff"),
            ])
            .arg(&public),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = output(
        with_creds(&host_b)
            .args(["run", "--net=none", &dest])
            .args(["--exec=/bin/busybox", "--", "sha256sum", "/big"]),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let want =
        String::from_utf8_lossy(&Command::new("sha256sum").arg(&big).output().unwrap().stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string();
    assert!(
        stdout(&out).starts_with(&want),
        "{} vs {want}",
        stdout(&out)
    );

    // Pushed on from that host: as it came (the same digest, the blobs
    // mounted from the repository they are in), so the signature holds.
    let copy = format!("docker://{host}/skiff/copy:1.0");
    let out = output(with_creds(&host_b).args(["image", "push", &dest, &copy]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), digest);
    assert!(
        stderr(&out).contains("as it was fetched") && stderr(&out).contains("2 mounted"),
        "{}",
        stderr(&out)
    );

    // A second signature, by a key Python made, is added beside skiff's.
    let py_key = keys.join("py.key");
    let py_pub = keys.join("py.pub");
    py(&[
        "keygen",
        "ed25519",
        &py_key.display().to_string(),
        &py_pub.display().to_string(),
    ]);
    let out = output(
        with_creds(root)
            .args(["image", "sign", "--format=cosign", "--key"])
            .arg(&py_key)
            .arg(&dest),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("2 signature(s)"), "{}", stderr(&out));
    // The newest signature is by a key host B does not trust; its own
    // key's signature is enough.
    let out = output(with_creds(&host_b).args(["fetch", "--pull-policy=update", &dest]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("signed by cosign key"),
        "{}",
        stderr(&out)
    );
}

/// `skopeo copy --sign-by FPR` of `src` to `dest` with `gpg`'s keys, the
/// signature written to the lookaside directory `sigs`; with `at`, gpg
/// signs as if it were that time (for a key expired since).
fn skopeo_sign(gpg: &Gpg, fpr: &str, src: &str, dest: &str, sigs: &Path, at: Option<&str>) {
    let home = gpg.home.path();
    let regd = home.join("registries.d");
    std::fs::create_dir_all(&regd).unwrap();
    std::fs::write(
        regd.join("default.yaml"),
        format!(
            "default-docker:\n  lookaside-staging: file://{}\n",
            sigs.display()
        ),
    )
    .unwrap();
    let conf = home.join("gpg.conf");
    match at {
        Some(t) => std::fs::write(&conf, format!("faked-system-time {t}\n")).unwrap(),
        None => {
            let _ = std::fs::remove_file(&conf);
        }
    }
    let out = Command::new("skopeo")
        .env("GNUPGHOME", home)
        .arg("--registries.d")
        .arg(&regd)
        .args([
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "--sign-by",
            fpr,
            src,
            dest,
        ])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&conf);
    assert!(
        out.status.success(),
        "skopeo --sign-by: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn skopeo_sign_by_signatures_verify_via_the_lookaside_and_bad_keys_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let _guard = PodsGuard { root };
    let reg = Registry::start(None);
    let host = format!("127.0.0.1:{}", reg.port);
    let layout = layered_image(root, false);
    let src = format!("oci:{}:v1", layout.display());
    let gpg = Gpg::empty();
    let sigs = root.join("sigstore");
    let site = gpg.key("Site <site@example.org>", "ed25519", "now", "never");
    // A key that expired long ago, used while it was valid.
    let old = gpg.key("Old <old@example.org>", "ed25519", "20200101T000000", "1d");
    skopeo_sign(
        &gpg,
        &site,
        &src,
        &format!("docker://{host}/site/app:v1"),
        &sigs,
        None,
    );
    skopeo_sign(
        &gpg,
        &old,
        &src,
        &format!("docker://{host}/site/old:v1"),
        &sigs,
        Some("20200101T120000"),
    );
    // The same image under another tag, not signed for it.
    sh(&format!(
        "skopeo copy --quiet --dest-tls-verify=false {src} docker://{host}/site/app:v2"
    ));

    let regd = root.join("etc/registries.d");
    std::fs::create_dir_all(&regd).unwrap();
    std::fs::write(
        regd.join("site.yaml"),
        format!(
            "docker:\n  {host}/site:\n    lookaside: file://{}\n",
            sigs.display()
        ),
    )
    .unwrap();
    let trust = |fpr: &str| {
        let key = root.join(format!("{fpr}.asc"));
        std::fs::write(&key, gpg.run(&["--armor", "--export", fpr])).unwrap();
        let out = output(
            skiff_in(root)
                .args(["trust", "--skip-fingerprint-review", "--prefix"])
                .arg(format!("{host}/site"))
                .arg(&key),
        );
        assert!(out.status.success(), "{}", stderr(&out));
    };
    trust(&site);
    trust(&old);

    refused_with(
        root,
        &format!("docker://{host}/site/old:v1"),
        "a signature by an expired key",
        "the key has expired",
    );
    refused_with(
        root,
        &format!("docker://{host}/site/app:v2"),
        "a signature for another tag",
        "not tag v2",
    );

    let image = format!("docker://{host}/site/app:v1");
    let out = fetch(root, &image);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "simple signing by OpenPGP key {}",
            site.to_lowercase()
        )),
        "{}",
        stderr(&out)
    );
    let out = output(
        skiff_in(root)
            .args(["--insecure-options=http", "run", "--net=none", &image])
            .args(["--exec=/bin/busybox", "--", "cat", "/etc/new"]),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "new");

    // The same signatures from an HTTPS lookaside.
    let ca = crate::server::TestCa::new("127.0.0.23");
    let ca_file = root.join("ca.pem");
    ca.write_ca(&ca_file);
    let server = crate::server::Server::start("127.0.0.23", 443, Some(&ca));
    for dir in std::fs::read_dir(sigs.join("site")).unwrap().flatten() {
        for file in std::fs::read_dir(dir.path()).unwrap().flatten() {
            let name = format!(
                "/sigstore/site/{}/{}",
                dir.file_name().to_string_lossy(),
                file.file_name().to_string_lossy()
            );
            server.put(
                &name,
                std::fs::read(file.path()).unwrap(),
                None,
                "application/octet-stream",
            );
        }
    }
    std::fs::write(
        regd.join("site.yaml"),
        format!("docker:\n  {host}/site:\n    lookaside: https://127.0.0.23/sigstore\n"),
    )
    .unwrap();
    let out = output(skiff_in(root).env("SSL_CERT_FILE", &ca_file).args([
        "--insecure-options=http",
        "fetch",
        "--pull-policy=update",
        &image,
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("simple signing by OpenPGP key"),
        "{}",
        stderr(&out)
    );
    drop(server);
    std::fs::write(
        regd.join("site.yaml"),
        format!(
            "docker:\n  {host}/site:\n    lookaside: file://{}\n",
            sigs.display()
        ),
    )
    .unwrap();

    // A FIFO in the lookaside does not hang the fetch.
    let old_dir = std::fs::read_dir(sigs.join("site"))
        .unwrap()
        .flatten()
        .find(|d| d.file_name().to_string_lossy().starts_with("old@"))
        .unwrap()
        .path();
    let status = Command::new("mkfifo")
        .arg(old_dir.join("signature-2"))
        .status()
        .unwrap();
    assert!(status.success());
    let before = image_list(root);
    let out = fetch(root, &format!("docker://{host}/site/old:v1"));
    assert_refused(&out, "a FIFO as a signature");
    assert!(
        stderr(&out).contains("not a regular file"),
        "{}",
        stderr(&out)
    );
    assert_eq!(image_list(root), before);

    // Revoked: the key as published with its revocation.
    let rev = gpg.home.path().join(format!("openpgp-revocs.d/{site}.rev"));
    let cert = std::fs::read_to_string(&rev)
        .unwrap()
        .replace(":-----BEGIN", "-----BEGIN");
    let cert_file = root.join("revocation.asc");
    std::fs::write(&cert_file, cert).unwrap();
    gpg.run(&["--import", &cert_file.display().to_string()]);
    let out = output(skiff_in(root).args(["image", "rm", &image]));
    assert!(out.status.success(), "{}", stderr(&out));
    let out = output(skiff_in(root).args(["gc", "--grace-period=0s"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let out = output(skiff_in(root).args(["image", "gc", "--grace-period=0s"]));
    assert!(out.status.success(), "{}", stderr(&out));
    trust(&site);
    refused_with(
        root,
        &image,
        "a signature by a revoked key",
        "the key has been revoked",
    );
}

/// The Python token service of tests/fixtures/cosign/token_server.py,
/// killed on drop.
struct TokenService {
    child: std::process::Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl TokenService {
    fn start() -> TokenService {
        let dir = tempfile::tempdir().unwrap();
        let port = crate::oci::free_port();
        let child = Command::new("/usr/bin/python3")
            .arg(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../../tests/fixtures/cosign/token_server.py"),
            )
            .arg(dir.path())
            .arg(port.to_string())
            .arg("alice:secret")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let ready = dir.path().join("ready");
        eventually("the token service starts", || ready.exists().then_some(()));
        TokenService { child, dir, port }
    }
}

impl Drop for TokenService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_registry_with_bearer_tokens_takes_pushes_and_signatures() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let host_b = root.join("b");
    std::fs::create_dir_all(&host_b).unwrap();
    let tokens = TokenService::start();
    let reg_dir = tempfile::tempdir().unwrap();
    let reg = Registry::start_with(
        reg_dir,
        &format!(
            "auth: {{token: {{realm: \"https://127.0.0.1:{}/token\", service: skiff-test-registry, \
             issuer: skiff-test-issuer, rootcertbundle: {}}}}}\n",
            tokens.port,
            tokens.dir.path().join("signer.pem").display()
        ),
    );
    let host = format!("127.0.0.1:{}", reg.port);
    let ca = tokens.dir.path().join("ca.pem");
    let skiff_at = |dir: &Path| {
        let mut cmd = with_creds(dir);
        cmd.env("SSL_CERT_FILE", &ca).env("COSIGN_PASSWORD", "");
        cmd
    };
    let aci = root.join("app.aci");
    busybox_aci(root, "example.com/bearer", &aci);
    let out = output(
        skiff_in(root)
            .args(["fetch", "--insecure-options=image"])
            .arg(&aci),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let dest = format!("docker://{host}/team/app:1");
    let out = output(skiff_at(root).args(["image", "push", "example.com/bearer", &dest]));
    assert!(out.status.success(), "{}", stderr(&out));
    let digest = stdout(&out).trim().to_string();
    // The token service was asked for push rights, over HTTPS, and the
    // registry's own address never got the password in clear.
    let log = std::fs::read_to_string(tokens.dir.path().join("log")).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("repository:team/app:") && l.contains("push")),
        "{log}"
    );
    assert!(
        !stderr(&out).contains("over plain HTTP"),
        "{}",
        stderr(&out)
    );

    let key = root.join("bearer");
    let out = output(
        skiff_at(root)
            .args(["key", "generate", "--type=cosign", "--out"])
            .arg(&key),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = output(
        skiff_at(root)
            .args(["image", "sign", "--format=cosign", "--key"])
            .arg(root.join("bearer.key"))
            .arg(format!("docker://{host}/team/app@{digest}")),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("signing sha256"),
        "a digest is signed without a warning"
    );

    let out = output(
        skiff_in(&host_b)
            .args(["trust", "--skip-fingerprint-review", "--prefix"])
            .arg(format!("{host}/team"))
            .arg(root.join("bearer.pub")),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = output(skiff_at(&host_b).args(["fetch", &dest]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("signed by cosign key"),
        "{}",
        stderr(&out)
    );
    // Without the password the token service refuses, and so the fetch.
    let out = output(
        skiff_in(root)
            .env("SSL_CERT_FILE", &ca)
            .args([
                "--insecure-options=http",
                "--creds=alice:wrong",
                "image",
                "push",
            ])
            .args([
                "example.com/bearer",
                &format!("docker://{host}/team/other:1"),
            ]),
    );
    assert_refused(&out, "a wrong password");
}
