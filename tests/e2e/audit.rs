//! Build, sign and look inside images: `skiff key generate` and `skiff
//! image sign` interoperate with GnuPG and `skiff fetch`.

use std::process::Command;

use crate::common::*;

#[test]
fn skiff_keys_and_signatures_work_with_gpg_and_fetch() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let aci = d.join("bb.aci");
    busybox_aci(d, "example.com/busybox", &aci);
    let out = output(
        skiff()
            .args([
                "key",
                "generate",
                "--uid",
                "Signer <signer@example.com>",
                "--out",
            ])
            .arg(d.join("k")),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let fingerprint = stdout(&out).trim().to_string();
    let secret = d.join("k.sec.asc");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&secret).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    // Refuses to overwrite a key.
    let again = output(skiff().args(["key", "generate", "--out"]).arg(d.join("k")));
    assert_refused(&again, "existing key");
    let out = output(
        skiff()
            .args(["image", "sign"])
            .arg(&aci)
            .arg("--key")
            .arg(&secret),
    );
    assert!(out.status.success(), "{}", stderr(&out));

    // GnuPG verifies it.
    let home = d.join("gnupg");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let gpg = |args: &[&str]| {
        Command::new("gpg")
            .env("GNUPGHOME", &home)
            .arg("--batch")
            .args(args)
            .output()
            .unwrap()
    };
    let pubkey = d.join("k.pub.asc");
    assert!(
        gpg(&["--import", pubkey.to_str().unwrap()])
            .status
            .success()
    );
    let verify = gpg(&[
        "--verify",
        &format!("{}.asc", aci.display()),
        aci.to_str().unwrap(),
    ]);
    assert!(
        verify.status.success(),
        "gpg --verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(String::from_utf8_lossy(&verify.stderr).contains("Good signature"));

    // skiff fetch accepts it once the key is trusted, and refuses a
    // tampered copy.
    let out = output(
        skiff_in(d)
            .args([
                "trust",
                "--prefix",
                "example.com/busybox",
                "--skip-fingerprint-review",
            ])
            .arg(&pubkey),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = output(skiff_in(d).arg("fetch").arg(&aci));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains(&fingerprint), "{}", stderr(&out));
    let tampered = d.join("t.aci");
    let mut bytes = std::fs::read(&aci).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&tampered, bytes).unwrap();
    std::fs::copy(format!("{}.asc", aci.display()), d.join("t.aci.asc")).unwrap();
    assert_refused(&output(skiff_in(d).arg("fetch").arg(&tampered)), "tampered");
    // Signing with something that is not a secret key fails clearly.
    let out = output(
        skiff()
            .args(["image", "sign"])
            .arg(&aci)
            .arg("--key")
            .arg(&pubkey),
    );
    assert_refused(&out, "public key as secret");
}
