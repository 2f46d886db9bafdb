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

/// The python of target/pyenv (CycloneDX's validator), made by `cargo
/// xtask test`.
fn test_python() -> std::path::PathBuf {
    let python = std::env::var_os("SKIFF_TEST_PYTHON").map_or_else(
        || {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../target/pyenv/bin/python")
        },
        std::path::PathBuf::from,
    );
    assert!(
        python.is_file(),
        "{} is missing: run `cargo xtask test` (it makes target/pyenv) or set SKIFF_TEST_PYTHON",
        python.display()
    );
    python
}

#[test]
fn the_sbom_of_a_real_dpkg_database_lists_every_package_and_validates() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let layout = d.join("layout");
    busybox_layout(&layout);
    // The host's own dpkg database (every package of this Debian machine)
    // and os-release as a symlink, as Debian has it.
    std::fs::create_dir_all(layout.join("rootfs/var/lib/dpkg")).unwrap();
    std::fs::copy(
        "/var/lib/dpkg/status",
        layout.join("rootfs/var/lib/dpkg/status"),
    )
    .unwrap();
    std::fs::create_dir_all(layout.join("rootfs/usr/lib")).unwrap();
    std::fs::copy(
        "/usr/lib/os-release",
        layout.join("rootfs/usr/lib/os-release"),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        "../usr/lib/os-release",
        layout.join("rootfs/etc/os-release"),
    )
    .unwrap();
    let aci = d.join("deb.aci");
    let out = output(skiff().args(["image", "build"]).arg(&layout).arg(&aci));
    assert!(out.status.success(), "{}", stderr(&out));

    let want: std::collections::BTreeSet<(String, String)> = String::from_utf8_lossy(
        &Command::new("dpkg-query")
            .args(["-W", "-f=${db:Status-Abbrev} ${Package} ${Version}\n"])
            .output()
            .unwrap()
            .stdout,
    )
    .lines()
    .filter(|l| l.starts_with("ii"))
    .filter_map(|l| {
        let mut f = l.split_whitespace().skip(1);
        Some((f.next()?.to_string(), f.next()?.to_string()))
    })
    .collect();
    assert!(
        want.len() > 100,
        "too few host packages to be a real test: {}",
        want.len()
    );

    // From the ACI file, and from the store (the rendered tree): the same.
    let from_file = output(
        skiff()
            .args(["image", "audit", "--format=cyclonedx"])
            .arg(&aci),
    );
    assert!(from_file.status.success(), "{}", stderr(&from_file));
    let out = output(
        skiff_in(d)
            .args(["--insecure-options=image", "fetch"])
            .arg(&aci),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let from_store = output(skiff_in(d).args([
        "image",
        "audit",
        "--format=cyclonedx",
        "example.com/busybox:1.0",
    ]));
    assert!(from_store.status.success(), "{}", stderr(&from_store));
    for out in [&from_file, &from_store] {
        let sbom: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let got: std::collections::BTreeSet<(String, String)> = sbom["components"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap().to_string(),
                    c["version"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(got, want, "the SBOM's packages differ from dpkg-query's");
        let purl = sbom["components"][0]["purl"].as_str().unwrap();
        assert!(
            purl.starts_with("pkg:deb/debian/") && purl.contains("distro=debian-"),
            "{purl}"
        );
        // The official CycloneDX 1.5 schema (strict) accepts it.
        assert_valid_cyclonedx(d, &out.stdout);
    }
    // A table for people.
    let table = output(skiff().args(["image", "audit"]).arg(&aci));
    assert!(
        stdout(&table).contains("libc6") && stderr(&table).contains("debian"),
        "{}",
        stderr(&table)
    );
}

/// A dpkg status with versions chosen around the fixture advisories'
/// edges: `+debNuM` suffixes, `~` backports, an epoch, and a Debian 11
/// advisory that must not match.
const EDGE_STATUS: &str = "\
Package: libc6\nStatus: install ok installed\nSource: glibc\nVersion: 2.36-9+deb12u2\nArchitecture: amd64\n\n\
Package: libssl3\nStatus: install ok installed\nSource: openssl\nVersion: 3.0.11-1~deb12u2\nArchitecture: amd64\n\n\
Package: curl\nStatus: install ok installed\nVersion: 7.88.1-10+deb12u4\nArchitecture: amd64\n\n\
Package: login\nStatus: install ok installed\nSource: shadow (1:4.13+dfsg1-1)\nVersion: 1:4.13+dfsg1-1+b1\nArchitecture: amd64\n\n\
Package: libxml2\nStatus: install ok installed\nVersion: 2.9.14+dfsg-1.3~deb12u1\nArchitecture: amd64\n\n\
Package: tar\nStatus: install ok installed\nVersion: 1.34+dfsg-1.2+deb12u1\nArchitecture: amd64\n";

/// The ACI of a busybox layout with [`EDGE_STATUS`] as its dpkg database
/// and Debian 12's os-release, in `d`.
fn edge_image(d: &std::path::Path) -> std::path::PathBuf {
    let layout = d.join("layout");
    busybox_layout(&layout);
    std::fs::create_dir_all(layout.join("rootfs/var/lib/dpkg")).unwrap();
    std::fs::write(layout.join("rootfs/var/lib/dpkg/status"), EDGE_STATUS).unwrap();
    std::fs::write(
        layout.join("rootfs/etc/os-release"),
        "ID=debian\nVERSION_ID=\"12\"\n",
    )
    .unwrap();
    let aci = d.join("edge.aci");
    assert!(
        output(skiff().args(["image", "build"]).arg(&layout).arg(&aci))
            .status
            .success()
    );
    aci
}

/// Asserts that CycloneDX's own strict 1.5 validator accepts `sbom`.
fn assert_valid_cyclonedx(d: &std::path::Path, sbom: &[u8]) {
    let file = d.join("sbom.json");
    std::fs::write(&file, sbom).unwrap();
    let check = Command::new(test_python())
        .arg("-c")
        .arg(
            "import sys\n\
             from cyclonedx.validation.json import JsonStrictValidator\n\
             from cyclonedx.schema import SchemaVersion\n\
             err = JsonStrictValidator(SchemaVersion.V1_5).validate_str(open(sys.argv[1]).read())\n\
             sys.exit(f'invalid: {err}' if err else 0)",
        )
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

/// package, advisory, severity, score, fixed version.
type Expected = (String, String, String, Option<f64>, Option<String>);

#[test]
fn osv_advisories_match_exactly_the_affected_versions() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let aci = edge_image(d);
    let out = import_advisories(d, "osv");
    assert!(stderr(&out).contains("imported 8"), "{}", stderr(&out));

    let out = output(
        skiff_in(d)
            .args(["image", "audit", "--format=json"])
            .arg(&aci),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let got: Vec<Expected> = v["vulnerabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["package"].as_str().unwrap().to_string(),
                f["id"].as_str().unwrap().to_string(),
                f["severity"].as_str().unwrap().to_string(),
                f["score"].as_f64(),
                f["fixed"].as_str().map(str::to_string),
            )
        })
        .collect();
    let want = vec![
        (
            "curl".into(),
            "DSA-5587-1".into(),
            "medium".into(),
            Some(6.5),
            Some("7.88.1-10+deb12u5".into()),
        ),
        (
            "libc6".into(),
            "DSA-5514-1".into(),
            "high".into(),
            Some(7.8),
            Some("2.36-9+deb12u3".into()),
        ),
        (
            "libxml2".into(),
            "DEBIAN-CVE-2024-25062".into(),
            "high".into(),
            Some(7.5),
            Some("2.9.14+dfsg-1.3".into()),
        ),
        (
            "login".into(),
            "DEBIAN-CVE-2023-4641".into(),
            "medium".into(),
            Some(5.5),
            Some("1:4.13+dfsg1-1+deb12u1".into()),
        ),
    ];
    assert_eq!(got, want);

    // The same findings in the SBOM, which CycloneDX's validator accepts.
    let out = output(
        skiff_in(d)
            .args(["image", "audit", "--format=cyclonedx"])
            .arg(&aci),
    );
    let sbom: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sbom["vulnerabilities"].as_array().unwrap().len(), 4);
    assert_valid_cyclonedx(d, &out.stdout);
    // A broken advisory file is named.
    std::fs::write(d.join("bad.json"), "{\"summary\": 1}").unwrap();
    let out = output(
        skiff_in(d)
            .args(["vuln-db", "import"])
            .arg(d.join("bad.json")),
    );
    assert_refused(&out, "not an advisory");
    assert!(stderr(&out).contains("bad.json"), "{}", stderr(&out));
}

/// `skiff vuln-db import` of tests/fixtures/`fixture` into `d`'s store,
/// which must succeed.
fn import_advisories(d: &std::path::Path, fixture: &str) -> std::process::Output {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(fixture);
    let out = output(skiff_in(d).args(["vuln-db", "import"]).arg(&dir));
    assert!(out.status.success(), "{}", stderr(&out));
    out
}

#[test]
fn a_policy_refuses_vulnerable_unsigned_or_untrusted_images_and_says_why() {
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let d = tmp.path();
    let aci = edge_image(d);
    let policy = d.join("policy.toml");

    // max-severity without a database: refused, saying what to do.
    std::fs::write(&policy, "max-severity = \"high\"\n").unwrap();
    let run = |extra: &[&str]| {
        output(
            skiff_in(d)
                .arg("--policy")
                .arg(&policy)
                .args(["run", "--insecure-options=image"])
                .args(extra)
                .arg(&aci)
                .args(["--exec=/bin/sh", "--", "-c", "true"]),
        )
    };
    let out = run(&[]);
    assert_refused(&out, "no database");
    assert!(
        stderr(&out).contains("skiff vuln-db import"),
        "{}",
        stderr(&out)
    );
    import_advisories(d, "osv");
    let out = run(&[]);
    assert_refused(&out, "high vulnerabilities");
    let err = stderr(&out);
    assert!(
        err.contains("DSA-5514-1")
            && err.contains("DEBIAN-CVE-2024-25062")
            && !err.contains("DSA-5587-1"),
        "{err}"
    );
    // critical only: the image passes and runs.
    std::fs::write(&policy, "max-severity = \"critical\"\n").unwrap();
    let out = run(&[]);
    assert!(out.status.success(), "{}", stderr(&out));

    // require-signature: an unsigned image is refused even with
    // --insecure-options=image, which the message says.
    std::fs::write(&policy, "require-signature = true\n").unwrap();
    let out = run(&[]);
    assert_refused(&out, "unsigned");
    assert!(
        stderr(&out).contains("does not override a policy"),
        "{}",
        stderr(&out)
    );
    // Signed by a trusted key: allowed.
    assert!(
        output(skiff().args(["key", "generate", "--out"]).arg(d.join("k")))
            .status
            .success()
    );
    assert!(
        output(
            skiff()
                .args(["image", "sign"])
                .arg(&aci)
                .arg("--key")
                .arg(d.join("k.sec.asc"))
        )
        .status
        .success()
    );
    let trust = output(
        skiff_in(d)
            .args([
                "trust",
                "--prefix",
                "example.com/busybox",
                "--skip-fingerprint-review",
            ])
            .arg(d.join("k.pub.asc")),
    );
    assert!(trust.status.success(), "{}", stderr(&trust));
    let out = output(
        skiff_in(d)
            .arg("--policy")
            .arg(&policy)
            .args(["fetch", "--pull-policy=update"])
            .arg(&aci),
    );
    assert!(out.status.success(), "{}", stderr(&out));

    // trusted-prefixes: refused at fetch, and a refused new image does not
    // stay in the store.
    std::fs::write(&policy, "trusted-prefixes = [\"registry.example.org/\"]\n").unwrap();
    let other = d.join("other.aci");
    busybox_aci(d, "example.com/other", &other);
    let before = image_list(d);
    let out = output(
        skiff_in(d)
            .arg("--policy")
            .arg(&policy)
            .args(["--insecure-options=image", "fetch"])
            .arg(&other),
    );
    assert_refused(&out, "untrusted prefix");
    assert!(
        stderr(&out).contains("not under a trusted prefix"),
        "{}",
        stderr(&out)
    );
    assert_eq!(image_list(d), before);
    // A malformed policy is an error naming it.
    std::fs::write(&policy, "max-severity = \"dreadful\"\n").unwrap();
    let out = run(&[]);
    assert_refused(&out, "bad policy");
    assert!(
        stderr(&out).contains("policy.toml") && stderr(&out).contains("max-severity"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn image_build_writes_the_manifest_from_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let d = tmp.path();
    let layout = d.join("layout");
    busybox_layout(&layout);
    std::fs::remove_file(layout.join("manifest")).unwrap();
    let aci = d.join("flags.aci");
    let out = output(
        skiff()
            .args(["image", "build"])
            .arg(&layout)
            .arg(&aci)
            .args([
                "--name=example.com/flags",
                "--label=version=2.0",
                "--exec=/bin/sh -c env",
                "--env=GREETING=hello",
                "--port=http:tcp:8080",
                "--mount-point=data:/data",
                "--annotation=authors=skiff",
                "--working-dir=/etc",
            ]),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let check = actool().arg("validate").arg(&aci).output().unwrap();
    assert!(
        check.status.success(),
        "actool: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let m = stdout(&output(skiff().args(["image", "cat-manifest"]).arg(&aci)));
    for want in [
        "\"example.com/flags\"",
        "\"8080\"",
        "\"/data\"",
        "\"authors\"",
        "\"/etc\"",
    ] {
        let want = want.replace("\"8080\"", "8080");
        assert!(m.contains(&want), "{want} missing: {m}");
    }
    let out = output(
        skiff_in(d)
            .args(["run", "--insecure-options=image"])
            .arg(&aci),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("GREETING=hello"), "{}", stdout(&out));
    // Without a manifest and without --name there is nothing to build.
    let out = output(
        skiff()
            .args(["image", "build", "--overwrite"])
            .arg(&layout)
            .arg(&aci)
            .arg("--env=A=1"),
    );
    assert_refused(&out, "no name");
    assert!(stderr(&out).contains("--name"), "{}", stderr(&out));
}

#[test]
fn go_modules_in_binaries_are_listed_and_matched() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // A Go module with a local dependency, built offline.
    std::fs::create_dir_all(d.join("lib")).unwrap();
    std::fs::create_dir_all(d.join("hello")).unwrap();
    std::fs::write(d.join("lib/go.mod"), "module example.com/lib\n\ngo 1.19\n").unwrap();
    std::fs::write(
        d.join("lib/lib.go"),
        "package lib\n\nfunc Greeting() string { return \"hi\" }\n",
    )
    .unwrap();
    std::fs::write(
        d.join("hello/go.mod"),
        "module example.com/hello\n\ngo 1.19\n\nrequire example.com/lib v1.2.3\n\nreplace example.com/lib => ../lib\n",
    )
    .unwrap();
    std::fs::write(
        d.join("hello/main.go"),
        "package main\n\nimport (\n\t\"fmt\"\n\t\"example.com/lib\"\n)\n\nfunc main() { fmt.Println(lib.Greeting()) }\n",
    )
    .unwrap();
    let layout = d.join("layout");
    busybox_layout(&layout);
    let go = |args: &[&str], dir: &std::path::Path| {
        Command::new("go")
            .args(args)
            .current_dir(dir)
            .env("GOPATH", d.join("gopath"))
            .env("GOCACHE", d.join("gocache"))
            .env("GOPROXY", "off")
            .env("GOFLAGS", "-mod=mod")
            .env("CGO_ENABLED", "0")
            .output()
            .unwrap()
    };
    let built = go(
        &[
            "build",
            "-o",
            layout.join("rootfs/bin/hello").to_str().unwrap(),
            ".",
        ],
        &d.join("hello"),
    );
    assert!(
        built.status.success(),
        "go build: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    let go_version = String::from_utf8_lossy(&go(&["env", "GOVERSION"], d).stdout)
        .trim()
        .trim_start_matches("go")
        .to_string();
    let aci = d.join("go.aci");
    assert!(
        output(skiff().args(["image", "build"]).arg(&layout).arg(&aci))
            .status
            .success()
    );
    let out = output(
        skiff_in(d)
            .args(["image", "audit", "--format=json"])
            .arg(&aci),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pkgs: Vec<(String, String, String)> = v["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["ecosystem"].as_str().unwrap().to_string(),
                p["name"].as_str().unwrap().to_string(),
                p["version"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        pkgs.contains(&("go".into(), "stdlib".into(), go_version.clone())),
        "{pkgs:?}"
    );
    assert!(
        pkgs.iter()
            .any(|(e, n, _)| e == "go" && n == "example.com/lib"),
        "{pkgs:?}"
    );
    // The Go advisory for the toolchain's net/http matches Debian's Go.
    import_advisories(d, "osv-binaries");
    let out = output(
        skiff_in(d)
            .args(["image", "audit", "--format=json"])
            .arg(&aci),
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = v["vulnerabilities"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["id"].as_str())
        .collect();
    let affected = skiff_semver_lt(&go_version, "1.19.11")
        || (!go_version.starts_with("1.19") && skiff_semver_lt(&go_version, "1.20.6"));
    assert_eq!(
        ids.contains(&"GO-2023-1878"),
        affected,
        "go {go_version}: {ids:?}"
    );
}

/// `a < b` for plain dotted versions.
fn skiff_semver_lt(a: &str, b: &str) -> bool {
    let parse = |v: &str| {
        v.split('.')
            .map(|n| n.parse::<u64>().unwrap_or(0))
            .collect::<Vec<_>>()
    };
    parse(a) < parse(b)
}

#[test]
fn rust_crates_recorded_by_cargo_auditable_are_listed_and_matched() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let layout = d.join("layout");
    busybox_layout(&layout);
    // A `.dep-v0` section as cargo auditable writes it (zlib-compressed
    // JSON), added to an executable with objcopy.
    let script = r#"
import json, sys, zlib
deps = {"packages": [
  {"name": "hello", "version": "0.1.0", "source": "local", "root": True, "dependencies": [1]},
  {"name": "smallvec", "version": "1.6.0", "source": "crates.io"},
  {"name": "cc", "version": "1.0.83", "source": "crates.io", "kind": "build"}]}
open(sys.argv[1], "wb").write(zlib.compress(json.dumps(deps).encode()))
"#;
    assert!(
        Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(d.join("dep.z"))
            .status()
            .unwrap()
            .success()
    );
    let bin = layout.join("rootfs/bin/hello-rust");
    let status = Command::new("objcopy")
        .arg(format!(
            "--add-section=.dep-v0={}",
            d.join("dep.z").display()
        ))
        .arg(std::fs::canonicalize("/bin/busybox").unwrap())
        .arg(&bin)
        .status()
        .unwrap();
    assert!(status.success());
    let aci = d.join("rust.aci");
    assert!(
        output(skiff().args(["image", "build"]).arg(&layout).arg(&aci))
            .status
            .success()
    );
    import_advisories(d, "osv-binaries");
    let out = output(
        skiff_in(d)
            .args(["image", "audit", "--format=cyclonedx"])
            .arg(&aci),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let sbom: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let purls: Vec<&str> = sbom["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["purl"].as_str())
        .collect();
    assert!(
        purls.contains(&"pkg:cargo/smallvec@1.6.0") && purls.contains(&"pkg:cargo/hello@0.1.0"),
        "{purls:?}"
    );
    assert!(
        !purls.iter().any(|p| p.contains("/cc@")),
        "build-only crates are not in the binary: {purls:?}"
    );
    let ids: Vec<&str> = sbom["vulnerabilities"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["id"].as_str())
        .collect();
    assert_eq!(ids, vec!["RUSTSEC-2021-0003"]);
}

#[test]
fn rpm_databases_are_listed() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // A real rpm, built and installed into the image's rpmdb.sqlite with
    // rpm's own tools.
    std::fs::create_dir_all(d.join("top/SPECS")).unwrap();
    std::fs::write(
        d.join("top/SPECS/hello.spec"),
        "Name: skiff-hello\nVersion: 1.2.3\nRelease: 4.el9\nEpoch: 2\nSummary: test\nLicense: MIT\nBuildArch: noarch\n\
         %description\ntest\n%install\nmkdir -p %{buildroot}/usr/share/skiff-hello\necho hi > %{buildroot}/usr/share/skiff-hello/file\n\
         %files\n/usr/share/skiff-hello/file\n",
    )
    .unwrap();
    let built = Command::new("rpmbuild")
        .arg("--define")
        .arg(format!("_topdir {}", d.join("top").display()))
        .args(["-bb"])
        .arg(d.join("top/SPECS/hello.spec"))
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "rpmbuild: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    let layout = d.join("layout");
    busybox_layout(&layout);
    std::fs::write(
        layout.join("rootfs/etc/os-release"),
        "ID=\"rocky\"\nVERSION_ID=\"9.3\"\n",
    )
    .unwrap();
    let rpm = |args: &[&str]| {
        Command::new("rpm")
            .arg("--root")
            .arg(layout.join("rootfs"))
            .args(["--dbpath", "/var/lib/rpm", "--define", "_db_backend sqlite"])
            .args(args)
            .output()
            .unwrap()
    };
    assert!(rpm(&["--initdb"]).status.success());
    let file = d.join("top/RPMS/noarch/skiff-hello-1.2.3-4.el9.noarch.rpm");
    let installed = rpm(&["--nodeps", "-i", file.to_str().unwrap()]);
    assert!(
        installed.status.success(),
        "{}",
        String::from_utf8_lossy(&installed.stderr)
    );
    let aci = d.join("rpm.aci");
    assert!(
        output(skiff().args(["image", "build"]).arg(&layout).arg(&aci))
            .status
            .success()
    );
    let out = output(
        skiff_in(d)
            .args(["--insecure-options=image", "fetch"])
            .arg(&aci),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    for target in [aci.to_str().unwrap(), "example.com/busybox:1.0"] {
        let out = output(skiff_in(d).args(["image", "audit", "--format=cyclonedx", target]));
        assert!(out.status.success(), "{}", stderr(&out));
        let sbom: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let c = &sbom["components"][0];
        assert_eq!(
            (c["name"].as_str(), c["version"].as_str()),
            (Some("skiff-hello"), Some("2:1.2.3-4.el9")),
            "{target}"
        );
        assert_eq!(
            c["purl"].as_str(),
            Some("pkg:rpm/rocky/skiff-hello@1.2.3-4.el9?epoch=2&arch=noarch&distro=rocky-9.3"),
            "{target}"
        );
    }
}
