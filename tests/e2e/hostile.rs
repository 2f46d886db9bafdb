//! Hostile archives: each is refused by `skiff fetch` with an error naming
//! the offending entry, and the store is unchanged afterwards. Also
//! concurrency (fetches racing gc) and crash safety (fetches killed with
//! SIGKILL).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::*;

const MANIFEST: &str = r#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/hostile",
 "labels":[{"name":"version","value":"1.0"},{"name":"os","value":"linux"},{"name":"arch","value":"amd64"}]}"#;

/// A raw tar entry: names and link targets are written as given.
#[derive(Clone)]
struct Raw {
    name: Vec<u8>,
    kind: u8,
    mode: u32,
    size: u64,
    data: Vec<u8>,
    link: Vec<u8>,
    dev: (u32, u32),
}

fn entry(name: &str, kind: u8, mode: u32, data: &[u8], link: &str) -> Raw {
    Raw {
        name: name.as_bytes().to_vec(),
        kind,
        mode,
        size: data.len() as u64,
        data: data.to_vec(),
        link: link.as_bytes().to_vec(),
        dev: (0, 0),
    }
}

fn file(name: &str) -> Raw {
    entry(name, b'0', 0o644, b"data", "")
}
fn dir(name: &str) -> Raw {
    entry(name, b'5', 0o755, b"", "")
}
fn symlink(name: &str, target: &str) -> Raw {
    entry(name, b'2', 0o777, b"", target)
}
fn hardlink(name: &str, target: &str) -> Raw {
    entry(name, b'1', 0o644, b"", target)
}

fn header(e: &Raw) -> [u8; 512] {
    let mut h = tar::Header::new_gnu();
    {
        let old = h.as_old_mut();
        let n = e.name.len().min(100);
        old.name[..n].copy_from_slice(&e.name[..n]);
        let l = e.link.len().min(100);
        old.linkname[..l].copy_from_slice(&e.link[..l]);
    }
    h.set_entry_type(tar::EntryType::new(e.kind));
    if e.kind == b'S'
        && let Some(gnu) = h.as_gnu_mut()
    {
        // A well-formed GNU sparse header (empty map, zero real size).
        gnu.realsize = *b"00000000000\0";
    }
    h.set_mode(e.mode);
    h.set_size(e.size);
    h.set_mtime(1_600_000_000);
    if e.kind == b'3' || e.kind == b'4' {
        h.set_device_major(e.dev.0).unwrap();
        h.set_device_minor(e.dev.1).unwrap();
    }
    h.set_cksum();
    let mut out = [0u8; 512];
    out.copy_from_slice(h.as_bytes());
    out
}

/// Writes a gzip ACI: manifest, rootfs/, then `entries`, to `out`.
fn write_aci(out: &Path, manifest: &str, entries: &[Raw]) {
    let file = std::fs::File::create(out).unwrap();
    let mut gz =
        flate2::write::GzEncoder::new(std::io::BufWriter::new(file), flate2::Compression::fast());
    let mut all = vec![
        entry("manifest", b'0', 0o644, manifest.as_bytes(), ""),
        dir("rootfs"),
    ];
    all.extend_from_slice(entries);
    for e in &all {
        gz.write_all(&header(e)).unwrap();
        if e.kind == b'0' && e.size > 1 << 30 {
            // Declared only: skiff must refuse at the header, before the data.
            break;
        } else if e.kind == b'0' && e.size > e.data.len() as u64 {
            // A declared size with zeros for content (ratio bombs).
            let zeros = vec![0u8; 1 << 20];
            let mut left = e.size;
            while left > 0 {
                let n = left.min(zeros.len() as u64) as usize;
                gz.write_all(&zeros[..n]).unwrap();
                left -= n as u64;
            }
        } else {
            gz.write_all(&e.data).unwrap();
        }
        let pad = (512 - (e.size % 512) as usize) % 512;
        gz.write_all(&vec![0u8; pad]).unwrap();
    }
    gz.write_all(&[0u8; 1024]).unwrap();
    gz.finish().unwrap().flush().unwrap();
}

/// A PAX extended header entry setting `path` for the next entry.
fn pax_path(path: &str) -> Raw {
    pax_record("path", path)
}

/// A PAX extended header entry with one `key=value` record.
fn pax_record(key: &str, value: &str) -> Raw {
    let record = {
        let body = format!(" {key}={value}\n");
        let mut len = body.len() + 2;
        if (len + len.to_string().len() - 2).to_string().len() != len.to_string().len() {
            len += 1;
        }
        let total = body.len() + len.to_string().len();
        format!("{total}{body}")
    };
    entry("PaxHeader", b'x', 0o644, record.as_bytes(), "")
}

/// A file whose path may be longer than a tar header holds.
fn long_file(path: &str) -> Vec<Raw> {
    vec![gnu_longname(path), file(path)]
}

/// A GNU long-name entry for the next entry.
fn gnu_longname(path: &str) -> Raw {
    let mut data = path.as_bytes().to_vec();
    data.push(0);
    entry("././@LongLink", b'L', 0o644, &data, "")
}

struct Case {
    name: &'static str,
    entries: Vec<Raw>,
    /// Text the error must contain (the offending entry).
    expect: &'static str,
    extra_args: &'static [&'static str],
}

fn cases() -> Vec<Case> {
    let case = |name, entries, expect| Case {
        name,
        entries,
        expect,
        extra_args: &[],
    };
    let mut dev_mem = entry("rootfs/dev/mem", b'3', 0o640, b"", "");
    dev_mem.dev = (1, 1);
    let mut dev_sda = entry("rootfs/dev/sda", b'4', 0o660, b"", "");
    dev_sda.dev = (8, 0);
    let mut huge = entry("rootfs/huge", b'0', 0o644, b"", "");
    huge.size = 100 << 30;
    let mut zeros = entry("rootfs/zeros", b'0', 0o644, b"", "");
    zeros.size = 300 << 20;
    let big_manifest_pad = "x".repeat(5 << 20);
    vec![
        case("dotdot", vec![file("rootfs/../escape")], "rootfs/../escape"),
        case(
            "dotdot-deep",
            vec![dir("rootfs/a"), file("rootfs/a/../../x")],
            "rootfs/a/../../x",
        ),
        case("dot-dotdot", vec![file("rootfs/./../x")], "rootfs/./../x"),
        case(
            "parent-only",
            vec![file("../../etc/passwd")],
            "../../etc/passwd",
        ),
        case("absolute", vec![file("/etc/passwd")], "/etc/passwd"),
        case("absolute-rootfs", vec![file("/rootfs/x")], "/rootfs/x"),
        case(
            "symlink-abs-then-write",
            vec![symlink("rootfs/evil", "/etc"), file("rootfs/evil/passwd")],
            "rootfs/evil/passwd",
        ),
        case(
            "symlink-rel-then-write",
            vec![
                symlink("rootfs/evil", "../../../tmp"),
                file("rootfs/evil/x"),
            ],
            "rootfs/evil/x",
        ),
        case(
            "symlink-dot-then-write",
            vec![symlink("rootfs/loop", "."), file("rootfs/loop/x")],
            "rootfs/loop/x",
        ),
        case(
            "symlink-then-dir",
            vec![symlink("rootfs/s", "/tmp"), dir("rootfs/s/d")],
            "rootfs/s/d",
        ),
        case(
            "symlink-then-symlink",
            vec![symlink("rootfs/s", "/"), symlink("rootfs/s/x", "/etc")],
            "rootfs/s/x",
        ),
        case(
            "symlink-then-hardlink",
            vec![
                file("rootfs/f"),
                symlink("rootfs/s", "/tmp"),
                hardlink("rootfs/s/h", "rootfs/f"),
            ],
            "rootfs/s/h",
        ),
        case(
            "hardlink-absolute",
            vec![hardlink("rootfs/h", "/etc/shadow")],
            "rootfs/h",
        ),
        case(
            "hardlink-dotdot",
            vec![hardlink("rootfs/h", "../../etc/shadow")],
            "rootfs/h",
        ),
        case(
            "hardlink-missing",
            vec![hardlink("rootfs/h", "rootfs/missing")],
            "rootfs/h",
        ),
        case(
            "hardlink-to-dir",
            vec![dir("rootfs/d"), hardlink("rootfs/h", "rootfs/d")],
            "rootfs/h",
        ),
        case(
            "hardlink-to-symlink",
            vec![
                symlink("rootfs/l", "/etc/passwd"),
                hardlink("rootfs/h", "rootfs/l"),
            ],
            "rootfs/h",
        ),
        case(
            "hardlink-forward",
            vec![hardlink("rootfs/h", "rootfs/later"), file("rootfs/later")],
            "rootfs/h",
        ),
        case(
            "char-device",
            vec![dir("rootfs/dev"), dev_mem],
            "rootfs/dev/mem",
        ),
        case(
            "block-device",
            vec![dir("rootfs/dev"), dev_sda],
            "rootfs/dev/sda",
        ),
        case(
            "setuid",
            vec![entry("rootfs/su", b'0', 0o4755, b"x", "")],
            "rootfs/su",
        ),
        case(
            "setgid",
            vec![entry("rootfs/sg", b'0', 0o2755, b"x", "")],
            "rootfs/sg",
        ),
        case(
            "duplicate-file",
            vec![file("rootfs/a"), file("rootfs/a")],
            "rootfs/a",
        ),
        case(
            "duplicate-manifest",
            vec![entry("manifest", b'0', 0o644, MANIFEST.as_bytes(), "")],
            "manifest",
        ),
        case(
            "file-under-file",
            vec![file("rootfs/f"), file("rootfs/f/g")],
            "rootfs/f/g",
        ),
        case(
            "dir-replaces-file",
            vec![file("rootfs/f"), dir("rootfs/f")],
            "rootfs/f",
        ),
        case(
            "file-replaces-symlink",
            vec![symlink("rootfs/l", "/etc/passwd"), file("rootfs/l")],
            "rootfs/l",
        ),
        case(
            "xattr-overlay-redirect",
            vec![
                pax_record("SCHILY.xattr.trusted.overlay.redirect", "/etc"),
                dir("rootfs/x"),
            ],
            "rootfs/x",
        ),
        case(
            "xattr-file-capabilities",
            vec![
                pax_record("SCHILY.xattr.security.capability", "caps"),
                file("rootfs/ping"),
            ],
            "rootfs/ping",
        ),
        case(
            "pax-path-escape",
            vec![pax_path("rootfs/../../pax-escape"), file("rootfs/innocent")],
            "rootfs/../../pax-escape",
        ),
        case(
            "gnu-longname-escape",
            vec![
                gnu_longname(&format!(
                    "rootfs/{}/../../../../gnu-escape",
                    "d".repeat(120)
                )),
                file("rootfs/innocent"),
            ],
            "gnu-escape",
        ),
        case(
            "sparse-entry",
            vec![entry("rootfs/sparse", b'S', 0o644, b"", "")],
            "rootfs/sparse",
        ),
        case("size-bomb", vec![huge], "rootfs/huge"),
        case(
            "directory-bomb",
            (0..20)
                .flat_map(|i| long_file(&format!("rootfs/{i}/{}f", "a/".repeat(600))))
                .collect(),
            "a directory bomb",
        ),
        case(
            "name-longer-than-linux-takes",
            long_file(&format!("rootfs/{}", "n".repeat(300))),
            "more than 255",
        ),
        case(
            "symlink-over-a-made-directory",
            vec![file("rootfs/d/x"), symlink("rootfs/d", "/etc")],
            "replaces the directory",
        ),
        case(
            "path-longer-than-linux-takes",
            vec![gnu_longname(&"rootfs/a".repeat(700)), file("rootfs/x")],
            "more than 4096",
        ),
        // Zeros through gzip's fastest level inflate about 230 times: past
        // a ratio of 100, measured as they inflate.
        Case {
            name: "ratio-bomb",
            entries: vec![zeros],
            expect: "decompression bomb",
            extra_args: &["--max-decompression-ratio=100"],
        },
        case("stray-top-level", vec![file("etc/passwd")], "etc/passwd"),
        case("rootfs-symlink", vec![], "rootfs"),
        Case {
            name: "entry-count-limit",
            entries: (0..50).map(|i| file(&format!("rootfs/f{i}"))).collect(),
            expect: "rootfs/f",
            extra_args: &["--max-image-entries=20"],
        },
        Case {
            name: "size-limit",
            entries: vec![entry("rootfs/big", b'0', 0o644, &vec![7u8; 4096], "")],
            expect: "rootfs/big",
            extra_args: &["--max-image-size=1000"],
        },
        Case {
            name: "manifest-too-large",
            entries: vec![],
            expect: "manifest",
            extra_args: &[],
        },
    ]
    .into_iter()
    .map(|mut c| {
        if c.name == "manifest-too-large" {
            c.entries = vec![entry(
                "rootfs/pad",
                b'0',
                0o644,
                big_manifest_pad.as_bytes(),
                "",
            )];
        }
        c
    })
    .collect()
}

#[test]
fn hostile_archives_are_refused_and_change_nothing() {
    let root = tempfile::tempdir().unwrap();
    let cases = cases();
    assert!(cases.len() >= 30, "only {} hostile archives", cases.len());
    let before = image_list(root.path());
    let mut failures = Vec::new();
    for case in &cases {
        let aci = root.path().join(format!("{}.aci", case.name));
        let manifest = if case.name == "manifest-too-large" {
            MANIFEST.replace(
                "\"name\"",
                &format!("\"x\":\"{}\",\"name\"", "y".repeat(5 << 20)),
            )
        } else {
            MANIFEST.to_string()
        };
        if case.name == "rootfs-symlink" {
            write_raw_rootfs_symlink(&aci);
        } else {
            write_aci(&aci, &manifest, &case.entries);
        }
        let out = output(
            skiff_in(root.path())
                .args(["--insecure-options=image", "fetch"])
                .args(case.extra_args)
                .arg(&aci),
        );
        let err = stderr(&out);
        if out.status.code() != Some(1)
            || err.contains("panicked")
            || !err.contains(case.expect)
            || err.lines().count() > 3
        {
            failures.push(format!(
                "{}: exit {:?}: {err}",
                case.name,
                out.status.code()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} hostile archives not refused properly:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_eq!(image_list(root.path()), before, "the store changed");
    for sub in ["data/cas/tmp", "data/cas/blobs/sha512", "data/trees"] {
        let left: Vec<_> = std::fs::read_dir(root.path().join(sub)).unwrap().collect();
        assert!(left.is_empty(), "{sub} is not empty: {left:?}");
    }
}

/// `rootfs` itself as a symlink to /.
fn write_raw_rootfs_symlink(out: &Path) {
    let file = std::fs::File::create(out).unwrap();
    let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    for e in [
        entry("manifest", b'0', 0o644, MANIFEST.as_bytes(), ""),
        symlink("rootfs", "/"),
    ] {
        gz.write_all(&header(&e)).unwrap();
        gz.write_all(&e.data).unwrap();
        gz.write_all(&vec![0u8; (512 - (e.size % 512) as usize) % 512])
            .unwrap();
    }
    gz.write_all(&[0u8; 1024]).unwrap();
    gz.finish().unwrap();
}

#[test]
fn concurrent_fetches_and_gc_leave_a_consistent_store() {
    let root = tempfile::tempdir().unwrap();
    let images: Vec<_> = (0..3)
        .map(|i| {
            let aci = root.path().join(format!("img{i}.aci"));
            busybox_aci(root.path(), &format!("example.com/concurrent{i}"), &aci);
            aci
        })
        .collect();
    let mut children = Vec::new();
    for round in 0..10 {
        let aci = &images[round % images.len()];
        children.push(
            skiff_in(root.path())
                .args(["--insecure-options=image", "fetch"])
                .arg(aci)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        if round % 3 == 0 {
            children.push(
                skiff_in(root.path())
                    .args(["image", "gc", "--grace-period=24h"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap(),
            );
        }
    }
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let list: serde_json::Value = serde_json::from_str(&image_list(root.path())).unwrap();
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert_eq!(unique.len(), 3, "duplicate entries: {ids:?}");
    let out = output(skiff_in(root.path()).args(["image", "verify"]));
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn fetches_killed_at_random_points_never_leave_half_imports() {
    let root = tempfile::tempdir().unwrap();
    // An image big enough that an import takes a while.
    let layout = root.path().join("big");
    busybox_layout(&layout);
    let mut noise = vec![0u8; 24 << 20];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for b in noise.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    std::fs::write(layout.join("rootfs/noise"), &noise).unwrap();
    let aci = root.path().join("big.aci");
    let built = output(
        skiff()
            .args(["image", "build", "--compression=none"])
            .arg(&layout)
            .arg(&aci),
    );
    assert!(built.status.success(), "{}", stderr(&built));

    let mut completed = 0;
    for round in 0..12u64 {
        let mut child = skiff_in(root.path())
            .args(["--insecure-options=image", "fetch"])
            .arg(&aci)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5 + (round * 37) % 180));
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg(child.id().to_string())
            .status();
        let status = child.wait().unwrap();
        completed += usize::from(status.success());
        // Whatever happened, the store shows either nothing or a whole image.
        let list: serde_json::Value = serde_json::from_str(&image_list(root.path())).unwrap();
        let n = list.as_array().unwrap().len();
        assert!(n <= 1, "{n} images after round {round}");
        if n == 1 {
            let out = output(skiff_in(root.path()).args(["image", "verify"]));
            assert!(out.status.success(), "round {round}: {}", stderr(&out));
            let out = output(skiff_in(root.path()).args(["image", "rm", "example.com/busybox"]));
            assert!(out.status.success(), "{}", stderr(&out));
        }
    }
    eprintln!("{completed} of 12 fetches completed before the kill");
    let out = output(skiff_in(root.path()).args(["image", "gc", "--grace-period=0s"]));
    assert!(out.status.success(), "{}", stderr(&out));
    for sub in ["data/cas/tmp", "data/cas/blobs/sha512"] {
        let left: Vec<_> = std::fs::read_dir(root.path().join(sub)).unwrap().collect();
        assert!(left.is_empty(), "gc left {sub}: {left:?}");
    }
    let trees: Vec<_> = std::fs::read_dir(root.path().join("data/trees"))
        .unwrap()
        .collect();
    assert!(trees.is_empty(), "gc left trees: {trees:?}");
}

/// A tar that begins with a PAX extended record declaring 2 GiB (the tar
/// reader would hold it whole in memory): as an ACI given to `image
/// audit`, as an `oci-archive:` and as a layer of an `oci:` layout, each
/// is refused at that header, naming it, and nothing is stored. A layer
/// entry with a path longer than Linux takes (5,000 bytes) is refused too
/// (the ancestor checks of such paths cost seconds each).
#[test]
fn oversized_extended_records_are_refused_in_audit_oci_archives_and_layers() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let script = r#"
import gzip, hashlib, io, json, os, sys, tarfile
d = sys.argv[1]
h = tarfile.TarInfo("PaxHeaders/huge"); h.type = tarfile.XHDTYPE; h.size = 2 << 30
hostile = h.tobuf(format=tarfile.USTAR_FORMAT) + b"\0" * 4096
open(d + "/hostile.tar", "wb").write(hostile)
open(d + "/hostile.aci", "wb").write(gzip.compress(hostile))
def layout(name, tar):
    def blob(data):
        digest = hashlib.sha256(data).hexdigest()
        os.makedirs(d + "/" + name + "/blobs/sha256", exist_ok=True)
        open(d + "/" + name + "/blobs/sha256/" + digest, "wb").write(data)
        return {"digest": "sha256:" + digest, "size": len(data)}
    layer = gzip.compress(tar)
    config = json.dumps({"architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(tar).hexdigest()]},
        "config": {"Cmd": ["/bin/sh"]}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": dict(blob(config), mediaType="application/vnd.oci.image.config.v1+json"),
        "layers": [dict(blob(layer), mediaType="application/vnd.oci.image.layer.v1.tar+gzip")]}).encode()
    index = {"schemaVersion": 2, "manifests": [dict(blob(manifest),
        mediaType="application/vnd.oci.image.manifest.v1+json",
        annotations={"org.opencontainers.image.ref.name": "v1"})]}
    json.dump(index, open(d + "/" + name + "/index.json", "w"))
    json.dump({"imageLayoutVersion": "1.0.0"}, open(d + "/" + name + "/oci-layout", "w"))
layout("oci", hostile)
# A path of 5,000 bytes (a GNU long name): more than any path has.
out = io.BytesIO()
with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as t:
    info = tarfile.TarInfo("a/" * 2500 + "x"); info.size = 1
    t.addfile(info, io.BytesIO(b"x"))
layout("oci-long", out.getvalue())
"#;
    python(script, d);
    let audit = output(
        skiff_in(d)
            .args(["image", "audit"])
            .arg(d.join("hostile.aci")),
    );
    assert_refused(&audit, "image audit of the hostile ACI");
    assert!(
        stderr(&audit).contains("extended record"),
        "{}",
        stderr(&audit)
    );
    for (image, why) in [
        (
            format!("oci-archive:{}", d.join("hostile.tar").display()),
            "extended record",
        ),
        (
            format!("oci:{}:v1", d.join("oci").display()),
            "extended record",
        ),
        (
            format!("oci:{}:v1", d.join("oci-long").display()),
            "a path of 5001 bytes",
        ),
    ] {
        let before = image_list(d);
        let out = output(
            skiff_in(d)
                .args(["--insecure-options=image", "fetch"])
                .arg(&image),
        );
        assert_refused(&out, &image);
        assert!(stderr(&out).contains(why), "{image}: {}", stderr(&out));
        assert_eq!(image_list(d), before, "{image}");
    }
}

/// An image's directories win over its dependency's files: where the top
/// image has `x/pwned` and `y/z` (with no entries for `x` and `y`), the
/// dependency's symlink `x` (pointing out of the tree) and file `y` are
/// left out (a hard link to such a file too); the render succeeds and
/// nothing is written outside. A PAX global header is no file.
#[test]
fn an_images_directories_win_over_its_dependencys_files() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let outside = d.join("outside");
    std::fs::create_dir(&outside).unwrap();
    let base = d.join("base.aci");
    write_aci(
        &base,
        &MANIFEST.replace("example.com/hostile", "example.com/base"),
        &[
            symlink("rootfs/x", &outside.to_string_lossy()),
            file("rootfs/y"),
            file("rootfs/a"),
            hardlink("rootfs/b", "rootfs/a"),
        ],
    );
    let top = d.join("top.aci");
    let mut global = pax_record("comment", "global");
    global.kind = b'g';
    global.name = b"rootfs/g".to_vec();
    write_aci(
        &top,
        &MANIFEST.replace(
            r#""name":"example.com/hostile","#,
            r#""name":"example.com/top","dependencies":[{"imageName":"example.com/base"}],"#,
        ),
        &[
            global,
            file("rootfs/x/pwned"),
            file("rootfs/y/z"),
            file("rootfs/a/inner"),
        ],
    );
    for aci in [&base, &top] {
        let out = output(
            skiff_in(d)
                .args(["--insecure-options=image", "fetch"])
                .arg(aci),
        );
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let tree = d.join("tree");
    let out = output(
        skiff_in(d)
            .args(["image", "render", "example.com/top"])
            .arg(&tree),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let rootfs = tree.join("rootfs");
    assert!(
        std::fs::symlink_metadata(rootfs.join("x"))
            .unwrap()
            .is_dir()
    );
    assert!(rootfs.join("x/pwned").is_file() && rootfs.join("y/z").is_file());
    assert!(!rootfs.join("g").exists());
    // The dependency's hard link to its shadowed file goes with it.
    assert!(rootfs.join("a/inner").is_file() && !rootfs.join("b").exists());
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
}

/// `cmd`'s output, or a failed test (and the command killed) if it takes
/// more than two minutes: what it reads must not hang it.
fn output_unless_hung(cmd: &mut Command) -> std::process::Output {
    use std::io::Read;
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} hung");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    child.stderr.take().unwrap().read_to_end(&mut err).unwrap();
    std::process::Output {
        status,
        stdout: out,
        stderr: err,
    }
}

/// An OCI layout is somebody else's directory: a blob or index.json that
/// is a symlink to an endless device, or a FIFO, is refused at once,
/// without hanging, without filling the disk and without storing
/// anything; the same layout with regular files fetches.
#[test]
fn special_files_in_an_oci_layout_are_refused_without_hanging_or_filling_the_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let script = r#"
import gzip, hashlib, io, json, os, sys, tarfile
d = sys.argv[1]
out = io.BytesIO()
with tarfile.open(fileobj=out, mode="w") as t:
    info = tarfile.TarInfo("hello"); info.size = 3
    t.addfile(info, io.BytesIO(b"hi\n"))
tar = out.getvalue()
names = {}
def blob(data, name):
    digest = hashlib.sha256(data).hexdigest()
    os.makedirs(d + "/oci/blobs/sha256", exist_ok=True)
    open(d + "/oci/blobs/sha256/" + digest, "wb").write(data)
    names[name] = digest
    return {"digest": "sha256:" + digest, "size": len(data)}
config = json.dumps({"architecture": "amd64", "os": "linux",
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(tar).hexdigest()]},
    "config": {"Cmd": ["/hello"]}}).encode()
manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": dict(blob(config, "config"), mediaType="application/vnd.oci.image.config.v1+json"),
    "layers": [dict(blob(gzip.compress(tar), "layer"), mediaType="application/vnd.oci.image.layer.v1.tar+gzip")]}).encode()
index = {"schemaVersion": 2, "manifests": [dict(blob(manifest, "manifest"),
    mediaType="application/vnd.oci.image.manifest.v1+json",
    annotations={"org.opencontainers.image.ref.name": "v1"})]}
json.dump(index, open(d + "/oci/index.json", "w"))
json.dump({"imageLayoutVersion": "1.0.0"}, open(d + "/oci/oci-layout", "w"))
json.dump(names, open(d + "/names.json", "w"))
"#;
    python(script, d);
    let names: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("names.json")).unwrap()).unwrap();
    let oci = d.join("oci");
    let image = format!("oci:{}:v1", oci.display());
    let fetch = || {
        output_unless_hung(
            skiff_in(d)
                .args(["--insecure-options=image", "fetch"])
                .arg(&image),
        )
    };
    let blob = |name: &str| oci.join("blobs/sha256").join(names[name].as_str().unwrap());
    let fifo = |path: &Path| {
        let status = Command::new("mkfifo").arg(path).status().unwrap();
        assert!(status.success());
    };
    for (name, file, make) in [
        ("layer", blob("layer"), "zero"),
        ("layer", blob("layer"), "fifo"),
        ("manifest", blob("manifest"), "fifo"),
        ("config", blob("config"), "zero"),
        ("index.json", oci.join("index.json"), "zero"),
        ("index.json", oci.join("index.json"), "fifo"),
    ] {
        let kept = std::fs::read(&file).unwrap();
        std::fs::remove_file(&file).unwrap();
        if make == "zero" {
            std::os::unix::fs::symlink("/dev/zero", &file).unwrap();
        } else {
            fifo(&file);
        }
        let before = image_list(d);
        let out = fetch();
        assert_refused(&out, &format!("{name} as {make}"));
        assert_eq!(image_list(d), before, "{name} as {make}");
        let cached: u64 = ["data/cas/tmp-layers", "data/cas/layers"]
            .iter()
            .flat_map(|dir| {
                std::fs::read_dir(d.join(dir))
                    .into_iter()
                    .flatten()
                    .flatten()
            })
            .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
            .sum();
        assert!(cached < 1 << 20, "{name} as {make}: {cached} bytes cached");
        std::fs::remove_file(&file).unwrap();
        std::fs::write(&file, kept).unwrap();
    }
    let out = fetch();
    assert!(out.status.success(), "{}", stderr(&out));
}
