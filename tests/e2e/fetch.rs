//! `skiff trust` and `skiff fetch` against a local HTTPS server with a test
//! CA: appc discovery, signatures made by the real gpg, caching, failures
//! that must leave the store unchanged.

use std::process::Output;

use crate::common::*;
use crate::server::{Server, TestCa};

pub const IP: &str = "127.0.0.2";
pub const NAME: &str = "127.0.0.2/busybox";
pub const ACI_PATH: &str = "/images/busybox-1.0-linux-amd64.aci";

pub struct Site {
    server: Server,
    pub root: tempfile::TempDir,
    pub ca_file: std::path::PathBuf,
    pub gpg: Gpg,
    aci: Vec<u8>,
    /// Last, so the server stops before the next test may bind the port.
    _serial: std::sync::MutexGuard<'static, ()>,
}

impl Site {
    fn server(&self) -> &Server {
        &self.server
    }

    /// The site goes away (its port stays reserved for this test).
    pub fn go_offline(&mut self) {
        self.server.shutdown();
    }
}

/// Keeps the tests that serve on 127.0.0.2:443 from running at the same time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn discovery_page(prefix: &str, template: &str, keys: &str) -> Vec<u8> {
    format!(
        "<!DOCTYPE html><html><head>\n\
         <meta name=\"ac-discovery\" content=\"{prefix} {template}\">\n\
         <meta name=\"ac-discovery-pubkeys\" content=\"{prefix} {keys}\">\n\
         </head><body>skiff test site</body></html>\n"
    )
    .into_bytes()
}

/// A site at https://127.0.0.2 serving a signed busybox ACI by discovery.
pub fn site() -> Site {
    let serial = serial();
    let root = tempfile::tempdir().unwrap();
    let ca = TestCa::new(IP);
    let ca_file = root.path().join("ca.pem");
    ca.write_ca(&ca_file);
    let server = Server::start(IP, 443, Some(&ca));
    let gpg = Gpg::new("Test Signer <signer@example.com>", "ed25519");
    let aci_file = root.path().join("busybox.aci");
    busybox_aci(root.path(), NAME, &aci_file);
    let aci = std::fs::read(&aci_file).unwrap();
    let page = discovery_page(
        "127.0.0.2/busybox",
        "https://127.0.0.2/images/busybox-{version}-{os}-{arch}.{ext}",
        "https://127.0.0.2/pubkeys.asc",
    );
    server.put("/busybox?ac-discovery=1", page, None, "text/html");
    server.put(
        ACI_PATH,
        aci.clone(),
        Some("\"v1\""),
        "application/octet-stream",
    );
    server.put(
        &format!("{ACI_PATH}.asc"),
        gpg.sign(&aci_file),
        None,
        "text/plain",
    );
    server.put("/pubkeys.asc", gpg.public_key(), None, "text/plain");
    Site {
        server,
        root,
        ca_file,
        gpg,
        aci,
        _serial: serial,
    }
}

pub fn run(site: &Site, args: &[&str]) -> Output {
    output(
        skiff_in(site.root.path())
            .env("SSL_CERT_FILE", &site.ca_file)
            .args(args),
    )
}

fn trust(site: &Site, prefix: &str, key: &[u8]) {
    let key_file = site
        .root
        .path()
        .join(format!("key-{}.asc", prefix.replace('/', "_")));
    std::fs::write(&key_file, key).unwrap();
    let out = run(
        site,
        &[
            "trust",
            "--prefix",
            prefix,
            "--skip-fingerprint-review",
            &key_file.to_string_lossy(),
        ],
    );
    assert!(out.status.success(), "trust: {}", stderr(&out));
}

fn refused_and_unchanged(site: &Site, args: &[&str], expect: &str) {
    let before = image_list(site.root.path());
    let out = run(site, args);
    assert_refused(&out, &format!("{args:?}"));
    assert!(
        stderr(&out).contains(expect),
        "{args:?}: want '{expect}' in: {}",
        stderr(&out)
    );
    assert_eq!(
        image_list(site.root.path()),
        before,
        "{args:?} changed the store"
    );
    let tmp = site.root.path().join("data/cas/tmp");
    let leftovers = std::fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0);
    assert_eq!(leftovers, 0, "{args:?} left staging files");
}

#[test]
fn discovery_fetch_trust_and_failures() {
    let site = site();
    // Nothing is trusted yet: refused, nothing stored.
    refused_and_unchanged(
        &site,
        &["fetch", "127.0.0.2/busybox:1.0"],
        "no key is trusted for 127.0.0.2/busybox",
    );

    trust(&site, NAME, &site.gpg.public_key());
    let out = run(&site, &["trust", "list"]);
    assert!(
        stdout(&out).contains(&site.gpg.fingerprint),
        "{}",
        stdout(&out)
    );

    let out = run(&site, &["fetch", "127.0.0.2/busybox:1.0"]);
    assert!(out.status.success(), "fetch: {}", stderr(&out));
    let id = stdout(&out).trim().to_string();
    assert!(id.starts_with("sha512-") && id.len() == 135, "{id}");
    assert!(
        stderr(&out).contains("signature of 127.0.0.2/busybox verified"),
        "{}",
        stderr(&out)
    );
    assert_eq!(site.server().full_bodies(ACI_PATH), 1);
    let list = image_list(site.root.path());
    assert!(list.contains(&id), "{list}");

    // Fetching again asks the server, which answers 304: nothing downloaded.
    let out = run(&site, &["fetch", "127.0.0.2/busybox,version=1.0"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), id);
    assert_eq!(
        site.server().full_bodies(ACI_PATH),
        1,
        "the unchanged image was downloaded again"
    );
    // With --pull-policy=new the store answers, no request at all.
    let requests = site.server().requests(ACI_PATH);
    let out = run(
        &site,
        &["fetch", "--pull-policy=new", "127.0.0.2/busybox:1.0"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(site.server().requests(ACI_PATH), requests);
    // Exported bytes are those imported; the tree was rendered at fetch time.
    let exported = site.root.path().join("exported.aci");
    let out = run(
        &site,
        &["image", "export", &id, &exported.to_string_lossy()],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(&exported).unwrap(), site.aci);
    let tree = site
        .root
        .path()
        .join("data/trees")
        .join(&id["sha512-".len()..]);
    assert!(tree.join("rootfs/bin/busybox").is_file());
    let out = run(&site, &["image", "verify"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&site, &["image", "rm", "127.0.0.2/busybox:1.0"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn tampered_unsigned_and_wrongly_signed_images_are_refused() {
    let site = site();
    let server = site.server();
    let sig_path = format!("{ACI_PATH}.asc");
    let good_sig = site.gpg.sign(&{
        let p = site.root.path().join("orig.aci");
        std::fs::write(&p, &site.aci).unwrap();
        p
    });

    // A key trusted only for another prefix does not count.
    trust(&site, "127.0.0.2/other", &site.gpg.public_key());
    refused_and_unchanged(
        &site,
        &["fetch", "127.0.0.2/busybox:1.0"],
        "no key is trusted for 127.0.0.2/busybox",
    );
    // Neither does a key for a name that merely starts with the same letters.
    trust(&site, "127.0.0.2/busy", &site.gpg.public_key());
    refused_and_unchanged(
        &site,
        &["fetch", "127.0.0.2/busybox:1.0"],
        "no key is trusted",
    );

    trust(&site, NAME, &site.gpg.public_key());
    // A download larger than the largest image allowed stops there.
    refused_and_unchanged(
        &site,
        &["fetch", "--max-image-size=1000", "127.0.0.2/busybox:1.0"],
        "larger than 1000 bytes",
    );
    // Tampered image with the original signature.
    let mut tampered = site.aci.clone();
    let at = tampered.len() / 2;
    tampered[at] ^= 0xff;
    server.put(
        ACI_PATH,
        tampered,
        Some("\"v2\""),
        "application/octet-stream",
    );
    refused_and_unchanged(
        &site,
        &["fetch", "127.0.0.2/busybox:1.0"],
        "signature check failed for 127.0.0.2/busybox: the signature by key",
    );
    refused_and_unchanged(
        &site,
        &["fetch", "127.0.0.2/busybox:1.0"],
        "does not match the image: it was changed after it was signed",
    );
    // In skiff's words only; the OpenPGP library's detail is for --debug.
    let out = run(&site, &["fetch", "127.0.0.2/busybox:1.0"]);
    assert!(!stderr(&out).contains("assert"), "{}", stderr(&out));
    let out = run(&site, &["--debug", "fetch", "127.0.0.2/busybox:1.0"]);
    assert!(
        stderr(&out).contains("OpenPGP verification failed"),
        "{}",
        stderr(&out)
    );

    // Signed by a key nobody trusts.
    let stranger = Gpg::new("Stranger <x@example.com>", "ed25519");
    let aci_file = site.root.path().join("orig.aci");
    server.put(
        ACI_PATH,
        site.aci.clone(),
        Some("\"v3\""),
        "application/octet-stream",
    );
    server.put(&sig_path, stranger.sign(&aci_file), None, "text/plain");
    refused_and_unchanged(
        &site,
        &["fetch", "127.0.0.2/busybox:1.0"],
        "no key trusted for '127.0.0.2/busybox' made this signature",
    );

    // No signature at all.
    server.remove(&sig_path);
    refused_and_unchanged(
        &site,
        &["fetch", "127.0.0.2/busybox:1.0"],
        "no signature for 127.0.0.2/busybox",
    );

    // ... unless the user says so, with a warning.
    let out = run(
        &site,
        &["--insecure-options=image", "fetch", "127.0.0.2/busybox:1.0"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("signatures will NOT be verified"),
        "{}",
        stderr(&out)
    );

    // A local file with its .asc beside it.
    let fresh = tempfile::tempdir().unwrap();
    let local = fresh.path().join("img.aci");
    std::fs::write(&local, &site.aci).unwrap();
    std::fs::write(fresh.path().join("img.aci.asc"), &good_sig).unwrap();
    let out = run(&site, &["fetch", &local.to_string_lossy()]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn keys_from_discovery_need_review_or_the_flag() {
    let site = site();
    // Without a terminal and without --skip-fingerprint-review: not trusted.
    let out = run(
        &site,
        &["--trust-keys-from-https", "fetch", "127.0.0.2/busybox:1.0"],
    );
    assert_refused(&out, "discovered key without review");
    assert!(
        stderr(&out).contains(&site.gpg.fingerprint),
        "the fingerprint is shown: {}",
        stderr(&out)
    );
    let out = run(
        &site,
        &[
            "--trust-keys-from-https",
            "fetch",
            "--skip-fingerprint-review",
            "127.0.0.2/busybox:1.0",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // `skiff trust --prefix` alone discovers the key too.
    let other = tempfile::tempdir().unwrap();
    let out = output(
        skiff_in(other.path())
            .env("SSL_CERT_FILE", &site.ca_file)
            .args(["trust", "--prefix", NAME, "--skip-fingerprint-review"]),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = output(skiff_in(other.path()).args(["trust", "list", "--format", "json"]));
    assert!(stdout(&out).contains(&site.gpg.fingerprint));
    let out = output(skiff_in(other.path()).args(["trust", "rm", &site.gpg.fingerprint[..12]]));
    assert!(out.status.success(), "{}", stderr(&out));
    let out = output(skiff_in(other.path()).args(["trust", "list", "--format", "json"]));
    assert!(!stdout(&out).contains(&site.gpg.fingerprint));
}

#[test]
fn tls_must_verify_and_http_needs_the_insecure_option() {
    let site = site();
    trust(&site, NAME, &site.gpg.public_key());
    // Without the test CA the certificate is rejected.
    let out = output(skiff_in(site.root.path()).args(["fetch", "127.0.0.2/busybox:1.0"]));
    assert_refused(&out, "unknown CA");
    assert!(
        stderr(&out).to_lowercase().contains("certificate"),
        "{}",
        stderr(&out)
    );
    // ... unless TLS checks are skipped, loudly.
    let out = output(skiff_in(site.root.path()).args([
        "--insecure-options=tls",
        "fetch",
        "127.0.0.2/busybox:1.0",
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("TLS certificates will NOT be verified"));

    // A plain-HTTP-only host: discovery falls back to HTTP only when allowed.
    let plain_root = tempfile::tempdir().unwrap();
    let http = Server::start("127.0.0.3", 80, None);
    http.put(
        "/busybox?ac-discovery=1",
        discovery_page(
            "127.0.0.3/busybox",
            "http://127.0.0.3/busybox.{ext}",
            "http://127.0.0.3/key.asc",
        ),
        None,
        "text/html",
    );
    let aci = plain_root.path().join("b.aci");
    busybox_aci(plain_root.path(), "127.0.0.3/busybox", &aci);
    http.put(
        "/busybox.aci",
        std::fs::read(&aci).unwrap(),
        None,
        "application/octet-stream",
    );
    let out = output(skiff_in(plain_root.path()).args([
        "--insecure-options=image",
        "fetch",
        "127.0.0.3/busybox:1.0",
    ]));
    assert_refused(&out, "plain http without the option");
    let out = output(skiff_in(plain_root.path()).args([
        "--insecure-options=image,http",
        "fetch",
        "127.0.0.3/busybox:1.0",
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_cached_image_runs_without_the_ca_bundle_a_fetch_needs() {
    let site = site();
    trust(&site, NAME, &site.gpg.public_key());
    let out = run(&site, &["fetch", "127.0.0.2/busybox:1.0"]);
    assert!(out.status.success(), "fetch: {}", stderr(&out));
    // The bundle is read at the first request, which a run of a stored
    // image never makes: it runs with the bundle unreadable.
    let missing = site.root.path().join("no-such-ca.pem");
    let out = output(
        skiff_in(site.root.path())
            .env("SSL_CERT_FILE", &missing)
            .args([
                "run",
                "--net=host",
                "127.0.0.2/busybox:1.0",
                "--exec=/bin/busybox",
                "--",
                "true",
            ]),
    );
    assert!(out.status.success(), "run: {}", stderr(&out));
    // A fetch that must download still says what is wrong, and stores
    // nothing.
    let before = image_list(site.root.path());
    let out = output(
        skiff_in(site.root.path())
            .env("SSL_CERT_FILE", &missing)
            .args(["fetch", "--pull-policy=update", "127.0.0.2/busybox:1.0"]),
    );
    assert_refused(&out, "an unreadable CA bundle");
    assert!(
        stderr(&out).contains("cannot read CA bundle"),
        "{}",
        stderr(&out)
    );
    assert_eq!(image_list(site.root.path()), before);
}

#[test]
fn interrupted_downloads_resume() {
    let site = site();
    trust(&site, NAME, &site.gpg.public_key());
    site.server()
        .state
        .lock()
        .unwrap()
        .cut_once
        .insert(ACI_PATH.to_string(), site.aci.len() / 3);
    let out = run(&site, &["fetch", "127.0.0.2/busybox:1.0"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        site.server().full_bodies(ACI_PATH),
        1,
        "the second request should be a range request"
    );
    assert!(site.server().requests(ACI_PATH) >= 2);
    let out = run(&site, &["image", "verify"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// rkt's auth.d `basic` and `oauth` entries: a site that answers 401
/// without its header serves the image once the entry names it; a wrong
/// password is refused with the status and leaves the store unchanged.
#[test]
fn auth_d_basic_and_oauth_credentials_reach_their_host() {
    let site = site();
    trust(&site, NAME, &site.gpg.public_key());
    let auth_d = site.root.path().join("etc/auth.d");
    std::fs::create_dir_all(&auth_d).unwrap();
    let entry = |kind: &str, credentials: &str| {
        format!(
            r#"{{"rktKind": "auth", "rktVersion": "v1", "domains": ["{IP}"], "type": "{kind}", "credentials": {credentials}}}"#
        )
    };
    // alice:s3cret
    site.server().state.lock().unwrap().required_auth = Some("Basic YWxpY2U6czNjcmV0".into());
    refused_and_unchanged(&site, &["fetch", "127.0.0.2/busybox:1.0"], "401");
    std::fs::write(
        auth_d.join("site.json"),
        entry("basic", r#"{"user": "alice", "password": "wrong"}"#),
    )
    .unwrap();
    refused_and_unchanged(&site, &["fetch", "127.0.0.2/busybox:1.0"], "401");
    std::fs::write(
        auth_d.join("site.json"),
        entry("basic", r#"{"user": "alice", "password": "s3cret"}"#),
    )
    .unwrap();
    let out = run(&site, &["fetch", "127.0.0.2/busybox:1.0"]);
    assert!(out.status.success(), "basic: {}", stderr(&out));
    let id = stdout(&out).trim().to_string();
    let removed = run(&site, &["image", "rm", &id]);
    assert!(removed.status.success(), "{}", stderr(&removed));

    site.server().state.lock().unwrap().required_auth = Some("Bearer tok-123".into());
    std::fs::write(
        auth_d.join("site.json"),
        entry("oauth", r#"{"token": "tok-123"}"#),
    )
    .unwrap();
    let out = run(&site, &["fetch", "127.0.0.2/busybox:1.0"]);
    assert!(out.status.success(), "oauth: {}", stderr(&out));
    assert_eq!(stdout(&out).trim(), id);
}
