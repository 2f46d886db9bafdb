//! Interoperability with GnuPG: keys and signatures made by the real `gpg`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::TrustError;
use crate::keystore::{Keystore, Scope, parse_any, parse_keys};
use crate::verify::verify_detached;

struct Gpg {
    home: tempfile::TempDir,
}

impl Gpg {
    fn new() -> Self {
        let home = tempfile::tempdir().unwrap();
        let mut perms = std::fs::metadata(home.path()).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o700);
        std::fs::set_permissions(home.path(), perms).unwrap();
        Gpg { home }
    }

    fn run(&self, args: &[&str]) -> Vec<u8> {
        let out = Command::new("gpg")
            .env("GNUPGHOME", self.home.path())
            .args([
                "--batch",
                "--quiet",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
            ])
            .args(args)
            .output()
            .expect("gpg is installed (cargo xtask deps)");
        assert!(
            out.status.success(),
            "gpg {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// A new key; returns its fingerprint.
    fn key(&self, uid: &str, algo: &str, usage: &str) -> String {
        self.run(&["--quick-gen-key", uid, algo, usage, "never"]);
        let listing =
            String::from_utf8_lossy(&self.run(&["--with-colons", "--list-keys", uid])).into_owned();
        listing
            .lines()
            .find_map(|l| {
                l.strip_prefix("fpr:")
                    .map(|r| r.trim_matches(':').to_lowercase())
            })
            .unwrap()
    }

    fn export(&self, fpr: &str) -> Vec<u8> {
        self.run(&["--armor", "--export", fpr])
    }

    fn sign(&self, fpr: &str, file: &Path, armor: bool) -> PathBuf {
        let out = file.with_extension(if armor { "asc" } else { "sig" });
        let mut args = vec!["--yes", "--local-user", fpr, "--detach-sign", "--output"];
        let out_s = out.to_string_lossy().into_owned();
        args.push(&out_s);
        if armor {
            args.push("--armor");
        }
        let file_s = file.to_string_lossy().into_owned();
        args.push(&file_s);
        self.run(&args);
        out
    }
}

fn keystore() -> (tempfile::TempDir, Keystore) {
    let dir = tempfile::tempdir().unwrap();
    let ks = Keystore::new(&dir.path().join("etc"), &dir.path().join("usr"));
    (dir, ks)
}

#[test]
fn gnupg_ed25519_and_rsa4096_subkey_signatures_verify() {
    let gpg = Gpg::new();
    let ed = gpg.key("Ed <ed@example.com>", "ed25519", "sign");
    let rsa = gpg.key("Rsa <rsa@example.com>", "rsa4096", "cert");
    gpg.run(&["--quick-add-key", &rsa, "rsa4096", "sign", "never"]);

    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("image.aci");
    std::fs::write(&data, vec![7u8; 100_000]).unwrap();
    let (_d, ks) = keystore();
    let prefix = Scope::prefix("example.com/app").unwrap();
    ks.add(&parse_any(&gpg.export(&ed)).unwrap(), &prefix)
        .unwrap();
    ks.add(&parse_any(&gpg.export(&rsa)).unwrap(), &Scope::Root)
        .unwrap();
    assert_eq!(ks.list().unwrap().len(), 2);

    for (fpr, armor) in [(&ed, true), (&ed, false), (&rsa, true)] {
        let sig = std::fs::read(gpg.sign(fpr, &data, armor)).unwrap();
        let keys = ks.keys_for("example.com/app").unwrap();
        let v = verify_detached("example.com/app", &keys, &sig, &data).unwrap();
        assert_eq!(&v.fingerprint, fpr);
        if fpr == &rsa {
            assert_ne!(v.signed_by, rsa, "gpg signs with the RSA signing subkey");
        }
    }

    // Tampered data.
    let sig = std::fs::read(gpg.sign(&ed, &data, true)).unwrap();
    let tampered = work.path().join("tampered.aci");
    let mut bytes = std::fs::read(&data).unwrap();
    bytes[500] ^= 1;
    std::fs::write(&tampered, bytes).unwrap();
    let keys = ks.keys_for("example.com/app").unwrap();
    let err = verify_detached("example.com/app", &keys, &sig, &tampered).unwrap_err();
    assert!(matches!(err, TrustError::Mismatch { .. }), "{err}");
    // In skiff's words, naming the key (the caller names the image); none
    // of the library's.
    let text = err.to_string();
    assert!(text.contains(&ed), "{text}");
    assert!(text.contains("changed after it was signed"), "{text}");
    assert!(!text.contains("assert") && !text.contains("left"), "{text}");

    // The Ed25519 key is trusted for example.com/app only, by whole segments.
    for other in ["example.com/other", "example.com/application"] {
        let keys = ks.keys_for(other).unwrap();
        let err = verify_detached(other, &keys, &sig, &data).unwrap_err();
        assert!(
            matches!(err, TrustError::Untrusted { .. }),
            "{other}: {err}"
        );
    }
    assert!(
        ks.keys_for("example.com/app/sub")
            .unwrap()
            .iter()
            .any(|k| k.fingerprint == ed)
    );

    // Garbage signatures are refused clearly.
    assert!(matches!(
        verify_detached("example.com/app", &keys, b"not a signature", &data),
        Err(TrustError::BadSignature(_))
    ));

    // Removing the key removes the trust.
    ks.remove(&ed[..16]).unwrap();
    let keys = ks.keys_for("example.com/app").unwrap();
    assert!(matches!(
        verify_detached("example.com/app", &keys, &sig, &data),
        Err(TrustError::Untrusted { .. })
    ));
}

#[test]
fn empty_local_file_masks_a_vendor_key() {
    let gpg = Gpg::new();
    let fpr = gpg.key("V <v@example.com>", "ed25519", "sign");
    let dir = tempfile::tempdir().unwrap();
    let vendor = Keystore::new(&dir.path().join("usr"), &dir.path().join("none"));
    vendor
        .add(&parse_any(&gpg.export(&fpr)).unwrap(), &Scope::Root)
        .unwrap();
    let ks = Keystore::new(&dir.path().join("etc"), &dir.path().join("usr"));
    let listed = ks.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].vendor);
    ks.remove(&fpr).unwrap();
    assert!(ks.list().unwrap().is_empty());
    assert!(
        dir.path()
            .join("usr/trustedkeys/root.d")
            .join(&fpr)
            .exists(),
        "vendor file untouched"
    );
}

#[test]
fn garbage_keys_are_refused() {
    for bad in [
        &b""[..],
        b"hello",
        b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n-----END PGP PUBLIC KEY BLOCK-----\n",
    ] {
        assert!(parse_keys(bad).is_err());
    }
}
