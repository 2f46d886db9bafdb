//! skiff as an ordinary user (docs/rootless.md): its own directories, its
//! own trust, signed fetches over HTTPS discovery; pods are refused until
//! rootless pods exist, saying so; root's store is out of its reach.

use std::os::unix::fs::PermissionsExt;

use crate::common::*;
use crate::fetch;
use crate::users::TestUser;

#[test]
fn an_ordinary_user_trusts_and_fetches_in_its_own_directories() {
    let site = fetch::site();
    let user = TestUser::new("fetch");
    let ca = user.copy_in(&site.ca_file);
    let key_file = site.root.path().join("signer.asc");
    std::fs::write(&key_file, site.gpg.public_key()).unwrap();
    let key = user.copy_in(&key_file);

    let out = output(
        user.skiff()
            .args([
                "trust",
                "--prefix",
                fetch::NAME,
                "--skip-fingerprint-review",
            ])
            .arg(&key),
    );
    assert!(out.status.success(), "trust: {}", stderr(&out));
    let out = output(
        user.skiff()
            .env("SSL_CERT_FILE", &ca)
            .args(["fetch", "127.0.0.2/busybox:1.0"]),
    );
    assert!(out.status.success(), "fetch: {}", stderr(&out));
    let id = stdout(&out).trim().to_string();
    assert!(
        stderr(&out).contains("signature of 127.0.0.2/busybox verified"),
        "{}",
        stderr(&out)
    );
    let out = output(user.skiff().args(["image", "list", "--format", "json"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(&id), "{}", stdout(&out));

    // In the XDG directories, the data one private, all of it the user's.
    let data = user.home().join(".local/share/skiff");
    assert!(data.join("cas").is_dir(), "no store in {}", data.display());
    let mode = std::fs::metadata(&data).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "the data directory is {mode:o}");
    let keys = user.home().join(".config/skiff/trustedkeys");
    assert!(keys.is_dir(), "no trusted keys in {}", keys.display());
    assert_eq!(user.foreign_files(), Vec::<std::path::PathBuf>::new());

    // A pod: refused, saying why, before anything is made.
    let out = output(
        user.skiff()
            .env("SSL_CERT_FILE", &ca)
            .args(["run", "127.0.0.2/busybox:1.0"]),
    );
    assert_refused(&out, "run as an ordinary user");
    assert!(
        stderr(&out).contains("pods cannot run as an ordinary user yet"),
        "{}",
        stderr(&out)
    );
    assert!(
        !data.join("pods").exists()
            || std::fs::read_dir(data.join("pods/prepare"))
                .map_or(true, |mut d| d.next().is_none())
    );

    // Root's store, even where the user can reach its directory, is not
    // readable: root's data directory is its own (0700).
    std::fs::set_permissions(site.root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = fetch::run(&site, &["image", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = output(
        user.skiff()
            .arg("--dir")
            .arg(site.root.path().join("data"))
            .args(["image", "list"]),
    );
    assert_refused(&out, "the user listing root's store");
    assert!(
        stderr(&out).contains("ermission denied"),
        "{}",
        stderr(&out)
    );
}
