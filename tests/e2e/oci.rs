//! docker:// images from a real registry (Debian's docker-registry, started
//! here on 127.0.0.1), built locally with tar + umoci and pushed with skopeo:
//! layering with whiteouts, a multi-arch index, Basic auth, the layer cache,
//! and a registry answer with a flipped byte.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::common::*;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs a shell command; its failure fails the test.
pub fn sh(cmd: &str) {
    let out = Command::new("sh").args(["-c", cmd]).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A docker-registry on 127.0.0.1, killed on drop.
pub struct Registry {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// With `user`: htpasswd Basic auth for that user (password "secret").
    pub fn start(user: Option<&str>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let auth = match user {
            Some(u) => {
                let file = dir.path().join("htpasswd");
                sh(&format!("htpasswd -Bbc {} {u} secret", file.display()));
                format!(
                    "auth: {{htpasswd: {{realm: skiff-test, path: {}}}}}\n",
                    file.display()
                )
            }
            None => String::new(),
        };
        Registry::start_with(dir, &auth)
    }

    /// With `auth`, the `auth:` section of its configuration (YAML).
    pub fn start_with(dir: tempfile::TempDir, auth: &str) -> Registry {
        let port = free_port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{level: warn, accesslog: {{disabled: true}}}}\n\
                 storage: {{filesystem: {{rootdirectory: {}}}, delete: {{enabled: true}}}}\n\
                 http: {{addr: 127.0.0.1:{port}}}\n{auth}",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        eventually("docker-registry listens", || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Registry {
            child,
            port,
            _dir: dir,
        }
    }

    /// Pushes `oci:LAYOUT:TAG` as `REPO:TAG`.
    pub fn push(&self, layout: &Path, tag: &str, repo: &str, all: bool) {
        sh(&format!(
            "skopeo copy {} --dest-tls-verify=false --dest-creds=alice:secret oci:{}:{tag} docker://127.0.0.1:{}/{repo}:{tag}",
            if all { "--all" } else { "" },
            layout.display(),
            self.port
        ));
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An OCI layout with tag `v1`: layer 1 has busybox, /etc/{a,b}, a hard
/// link and /data/{x,y}; layer 2 deletes /etc/a (whiteout), makes /data
/// opaque with only z, adds /etc/new. With `second`: tag `v2` shares
/// layer 1 and adds a third layer.
pub fn layered_image(dir: &Path, second: bool) -> PathBuf {
    let l1 = dir.join("l1");
    let l2 = dir.join("l2");
    std::fs::create_dir_all(l1.join("bin")).unwrap();
    std::fs::create_dir_all(l1.join("etc")).unwrap();
    std::fs::create_dir_all(l1.join("data")).unwrap();
    std::fs::copy(
        std::fs::canonicalize("/bin/busybox").unwrap(),
        l1.join("bin/busybox"),
    )
    .unwrap();
    std::os::unix::fs::symlink("busybox", l1.join("bin/sh")).unwrap();
    for (f, c) in [
        ("etc/a", "a"),
        ("etc/b", "b"),
        ("data/x", "x"),
        ("data/y", "y"),
    ] {
        std::fs::write(l1.join(f), c).unwrap();
    }
    std::fs::hard_link(l1.join("etc/b"), l1.join("etc/b-link")).unwrap();
    std::fs::create_dir_all(l2.join("etc")).unwrap();
    std::fs::create_dir_all(l2.join("data")).unwrap();
    std::fs::write(l2.join("etc/.wh.a"), "").unwrap();
    std::fs::write(l2.join("data/.wh..wh..opq"), "").unwrap();
    std::fs::write(l2.join("data/z"), "z").unwrap();
    std::fs::write(l2.join("etc/new"), "new").unwrap();
    let layout = dir.join("oci");
    let d = dir.display();
    sh(&format!(
        "cd {d} && tar -C l1 -cf l1.tar . && tar -C l2 -cf l2.tar . && umoci init --layout oci && \
         umoci new --image oci:v1 && umoci raw add-layer --image oci:v1 l1.tar && \
         umoci raw add-layer --image oci:v1 l2.tar && \
         umoci config --image oci:v1 --config.cmd /bin/sh --config.env FOO=bar \
           --config.workingdir /etc --config.exposedports 8080/tcp --config.label org.example.team=core"
    ));
    if second {
        std::fs::create_dir_all(dir.join("l3/etc")).unwrap();
        std::fs::write(dir.join("l3/etc/third"), "3").unwrap();
        sh(&format!(
            "cd {d} && tar -C l3 -cf l3.tar . && umoci new --image oci:v2 && \
             umoci raw add-layer --image oci:v2 l1.tar && umoci raw add-layer --image oci:v2 l3.tar && \
             umoci config --image oci:v2 --config.cmd /bin/sh"
        ));
    }
    layout
}

fn skiff_fetch(root: &Path, extra: &[&str], image: &str) -> std::process::Output {
    output(
        skiff_in(root)
            .args(["--insecure-options=image,http"])
            .args(extra)
            .args(["fetch", image]),
    )
}

#[test]
fn docker_images_run_with_their_layers_whiteouts_and_config() {
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let reg = Registry::start(None);
    let layout = layered_image(tmp.path(), false);
    reg.push(&layout, "v1", "test/layered", false);
    let image = format!("docker://127.0.0.1:{}/test/layered:v1", reg.port);

    // Unsigned: refused unless asked for.
    let out = output(skiff_in(tmp.path()).args(["--insecure-options=http", "fetch", &image]));
    assert_refused(&out, "docker:// without --insecure-options=image");
    assert!(
        stderr(&out).contains("--insecure-options=image"),
        "{}",
        stderr(&out)
    );

    // The size limit holds for the whole image, not each layer: a limit
    // above every layer but below their sum refuses it before any download.
    let raw = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(&image)
        .output()
        .unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    let sizes: Vec<u64> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["size"].as_u64().unwrap())
        .collect();
    let largest = *sizes.iter().max().unwrap();
    assert!(sizes.iter().sum::<u64>() > largest + 1, "{sizes:?}");
    let out = output(
        skiff_in(tmp.path())
            .args(["--insecure-options=image,http", "fetch"])
            .arg(format!("--max-image-size={}", largest + 1))
            .arg(&image),
    );
    assert_refused(&out, "layers over the image size limit together");
    assert!(
        stderr(&out).contains("more than the largest image allowed"),
        "{}",
        stderr(&out)
    );
    assert!(
        std::fs::read_dir(tmp.path().join("data/cas/blobs/sha256"))
            .map(|d| d.filter_map(Result::ok).all(|e| !e.path().is_file()))
            .unwrap_or(true),
        "a layer was downloaded"
    );

    let out = output(
        skiff_in(tmp.path())
            .args(["--insecure-options=image,http", "run", &image])
            .args([
                "--exec=/bin/sh",
                "--",
                "-c",
                "pwd; echo FOO=$FOO; ls /etc /data; cat /etc/b-link; echo; cat /data/z; echo; \
                 /bin/busybox stat -c %i /etc/b /etc/b-link; test -e /etc/a && echo A-STILL-THERE; \
                 test -e /data/x && echo X-STILL-THERE; true",
            ]),
    );
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(text.starts_with("/etc\nFOO=bar\n"), "{text}");
    assert!(
        !text.contains("STILL-THERE"),
        "whiteouts not applied: {text}"
    );
    assert!(
        text.contains("/data:\nz\n"),
        "opaque dir not emptied: {text}"
    );
    assert!(text.contains("new") && text.contains("b-link"), "{text}");
    let inodes: Vec<&str> = text.lines().rev().take(2).collect();
    assert_eq!(inodes[0], inodes[1], "hard link lost: {text}");

    // The manifest records the origin and its digest; the list shows it.
    let name = format!("127.0.0.1-{}/test/layered:v1", reg.port);
    let m = stdout(&output(skiff_in(tmp.path()).args([
        "image",
        "cat-manifest",
        &name,
    ])));
    let digest = String::from_utf8_lossy(
        &Command::new("skopeo")
            .args(["inspect", "--tls-verify=false", "--format", "{{.Digest}}"])
            .arg(&image)
            .output()
            .unwrap()
            .stdout,
    )
    .trim()
    .to_string();
    assert!(
        m.contains(&digest) && m.contains("org.example.team"),
        "{digest}: {m}"
    );
    assert!(m.contains("\"8080-tcp\""), "{m}");
    let list = image_list(tmp.path());
    assert!(
        list.contains(&digest),
        "image list does not show the origin digest: {list}"
    );
}

/// A proxy in front of the registry that counts blob requests and, when
/// asked, flips the last byte of every blob it passes on.
struct Proxy {
    port: u16,
    blob_requests: Arc<AtomicUsize>,
}

impl Proxy {
    fn start(upstream: u16, flip: bool) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let blob_requests = Arc::new(AtomicUsize::new(0));
        let counter = blob_requests.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let counter = counter.clone();
                std::thread::spawn(move || {
                    let _ = relay(client, upstream, flip, &counter);
                });
            }
        });
        Proxy {
            port,
            blob_requests,
        }
    }
}

fn relay(
    mut client: TcpStream,
    upstream: u16,
    flip: bool,
    blobs: &AtomicUsize,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let end = line == "\r\n";
        if !line.to_ascii_lowercase().starts_with("connection:") {
            head.push(line);
        }
        if end {
            break;
        }
    }
    let is_blob = head[0].contains("/blobs/sha256:") && head[0].starts_with("GET");
    if is_blob {
        blobs.fetch_add(1, Ordering::SeqCst);
    }
    let last = head.len() - 1;
    head.insert(last, "Connection: close\r\n".into());
    let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
    up.write_all(head.concat().as_bytes())?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer)?;
    let ok = answer.starts_with(b"HTTP/1.1 200");
    if flip && is_blob && ok && answer.last().is_some() {
        let i = answer.len() - 1;
        answer[i] ^= 0x01;
    }
    client.write_all(&answer)
}

#[test]
fn shared_layers_download_once_and_a_flipped_byte_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start(None);
    let layout = layered_image(tmp.path(), true);
    reg.push(&layout, "v1", "test/shared", false);
    reg.push(&layout, "v2", "test/shared", false);
    let proxy = Proxy::start(reg.port, false);
    let out = skiff_fetch(
        tmp.path(),
        &[],
        &format!("docker://127.0.0.1:{}/test/shared:v1", proxy.port),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let first = proxy.blob_requests.load(Ordering::SeqCst);
    assert_eq!(first, 3, "config + 2 layers");
    let out = skiff_fetch(
        tmp.path(),
        &[],
        &format!("docker://127.0.0.1:{}/test/shared:v2", proxy.port),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        proxy.blob_requests.load(Ordering::SeqCst) - first,
        2,
        "v2 should download its config and its own layer only, not the shared one"
    );

    // Through a proxy that flips a byte of every blob: refused, and the
    // store gains nothing (no image, no layer, no leftover download).
    let fresh = tempfile::tempdir().unwrap();
    let flipper = Proxy::start(reg.port, true);
    let before = image_list(fresh.path());
    let out = skiff_fetch(
        fresh.path(),
        &[],
        &format!("docker://127.0.0.1:{}/test/shared:v1", flipper.port),
    );
    assert_refused(&out, "flipped blob");
    assert!(stderr(&out).contains("digest"), "{}", stderr(&out));
    assert_eq!(image_list(fresh.path()), before);
    let cas = fresh.path().join("data/cas");
    for sub in ["blobs/sha256", "blobs/sha512", "tmp", "tmp-layers"] {
        let left: Vec<_> = std::fs::read_dir(cas.join(sub))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(
            left.is_empty(),
            "{sub} not empty after a refused fetch: {left:?}"
        );
    }
}

#[test]
fn basic_auth_from_creds_auth_d_or_docker_config() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start(Some("alice"));
    let layout = layered_image(tmp.path(), false);
    reg.push(&layout, "v1", "private/app", false);
    let image = format!("docker://127.0.0.1:{}/private/app:v1", reg.port);
    let out = output(skiff_in(tmp.path()).env("HOME", tmp.path()).args([
        "--insecure-options=image,http",
        "fetch",
        &image,
    ]));
    assert_refused(&out, "no credentials");
    assert!(stderr(&out).contains("--creds"), "{}", stderr(&out));
    let out = output(skiff_in(tmp.path()).env("HOME", tmp.path()).args([
        "--insecure-options=image,http",
        "--creds=alice:wrong",
        "fetch",
        &image,
    ]));
    assert_refused(&out, "wrong password");
    let out = output(skiff_in(tmp.path()).env("HOME", tmp.path()).args([
        "--insecure-options=image,http",
        "--creds=alice:secret",
        "fetch",
        &image,
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    // From auth.d (rkt's dockerAuth format) under the local config dir.
    let third = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(third.path().join("etc/auth.d")).unwrap();
    std::fs::write(
        third.path().join("etc/auth.d/registry.json"),
        format!(
            r#"{{"rktKind":"dockerAuth","rktVersion":"v1","registries":["127.0.0.1:{}"],"credentials":{{"user":"alice","password":"secret"}}}}"#,
            reg.port
        ),
    )
    .unwrap();
    let out = output(skiff_in(third.path()).env("HOME", third.path()).args([
        "--insecure-options=image,http",
        "fetch",
        &image,
    ]));
    assert!(out.status.success(), "auth.d: {}", stderr(&out));
    // From ~/.docker/config.json.
    let other = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(other.path().join(".docker")).unwrap();
    std::fs::write(
        other.path().join(".docker/config.json"),
        format!(
            r#"{{"auths":{{"127.0.0.1:{}":{{"auth":"YWxpY2U6c2VjcmV0"}}}}}}"#,
            reg.port
        ),
    )
    .unwrap();
    let out = output(skiff_in(other.path()).env("HOME", other.path()).args([
        "--insecure-options=image,http",
        "fetch",
        &image,
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_multi_arch_index_gives_the_machines_platform_or_arch() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start(None);
    let d = tmp.path();
    // Two single-layer images, amd64 and arm64, each with a marker file,
    // and an index over both.
    for arch in ["amd64", "arm64"] {
        let l = d.join(format!("l-{arch}"));
        std::fs::create_dir_all(l.join("etc")).unwrap();
        std::fs::write(l.join("etc/arch"), arch).unwrap();
    }
    sh(&format!(
        "cd {} && umoci init --layout oci && \
         for a in amd64 arm64; do tar -C l-$a -cf l-$a.tar . && umoci new --image oci:$a && \
         umoci raw add-layer --image oci:$a l-$a.tar && umoci config --image oci:$a --architecture $a --os linux --config.cmd /bin/sh; done",
        d.display()
    ));
    let index_path = d.join("oci/index.json");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let mut entries = Vec::new();
    for m in index["manifests"].as_array().unwrap() {
        let arch = m["annotations"]["org.opencontainers.image.ref.name"]
            .as_str()
            .unwrap();
        let mut e = m.clone();
        e.as_object_mut().unwrap().remove("annotations");
        e["platform"] = serde_json::json!({"os": "linux", "architecture": arch});
        entries.push(e);
    }
    let inner = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries
    }))
    .unwrap();
    let digest = {
        use sha2::Digest;
        sha2::Sha256::digest(&inner)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    std::fs::write(d.join("oci/blobs/sha256").join(&digest), &inner).unwrap();
    let mut outer = index.clone();
    outer["manifests"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": format!("sha256:{digest}"), "size": inner.len(),
            "annotations": {"org.opencontainers.image.ref.name": "multi"}
        }));
    std::fs::write(&index_path, serde_json::to_vec(&outer).unwrap()).unwrap();
    reg.push(&d.join("oci"), "multi", "test/multi", true);
    let image = format!("docker://127.0.0.1:{}/test/multi:multi", reg.port);
    for (flags, want) in [(vec![], "amd64"), (vec!["--arch=arm64"], "arm64")] {
        let root = tempfile::tempdir().unwrap();
        let out = skiff_fetch(root.path(), &flags, &image);
        assert!(out.status.success(), "{}", stderr(&out));
        let tree = root.path().join("tree");
        let out = output(
            skiff_in(root.path())
                .args([
                    "image",
                    "render",
                    "--rootfs-only",
                    &format!("127.0.0.1-{}/test/multi:multi", reg.port),
                ])
                .arg(&tree),
        );
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(
            std::fs::read_to_string(tree.join("etc/arch")).unwrap(),
            want
        );
    }
    let out = skiff_fetch(tmp.path(), &["--arch=s390x"], &image);
    assert_refused(&out, "missing platform");
    assert!(
        stderr(&out).contains("linux/amd64") && stderr(&out).contains("--arch"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn oci_layouts_and_archives_in_and_exported_layouts_out() {
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let layout = layered_image(tmp.path(), false);
    let root = tmp.path();
    // In: an OCI layout and an archive of it.
    let out = output(
        skiff_in(root)
            .args(["--insecure-options=image", "fetch"])
            .arg(format!("oci:{}:v1", layout.display())),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    sh(&format!(
        "cd {} && tar -cf {}/layout.tar .",
        layout.display(),
        root.display()
    ));
    let out = output(
        skiff_in(root)
            .args(["--insecure-options=image", "fetch"])
            .arg(format!("oci-archive:{}/layout.tar:v1", root.display())),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = output(
        skiff_in(root)
            .args(["--insecure-options=image", "fetch"])
            .arg(format!("oci:{}:nope", layout.display())),
    );
    assert_refused(&out, "unknown ref");
    assert!(stderr(&out).contains("it has: v1"), "{}", stderr(&out));

    // Out: an OCI layout that skopeo and umoci read, with the same files.
    let exported = root.join("exported");
    let out = output(
        skiff_in(root)
            .args(["image", "export", "--format=oci", "oci/oci:v1"])
            .arg(&exported),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let inspect = Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci:{}:v1", exported.display()))
        .output()
        .unwrap();
    assert!(
        inspect.status.success(),
        "skopeo inspect: {}",
        String::from_utf8_lossy(&inspect.stderr)
    );
    let text = String::from_utf8_lossy(&inspect.stdout);
    assert!(
        text.contains("FOO=bar") && text.contains("\"Architecture\": \"amd64\""),
        "{text}"
    );
    let bundle = root.join("bundle");
    let unpack = Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:v1", exported.display()))
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(
        unpack.status.success(),
        "umoci unpack: {}",
        String::from_utf8_lossy(&unpack.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/data/z")).unwrap(),
        "z"
    );
    assert!(!bundle.join("rootfs/etc/a").exists());
    assert!(bundle.join("rootfs/bin/busybox").is_file());
}

/// What a pod's app sees of its environment (the hostname is set).
const ENVIRONMENT: &str = "id; pwd; hostname; env | sort | grep -v '^AC_METADATA_URL='; \
    grep -E '^(Cap|NoNewPrivs|Seccomp:)' /proc/self/status; ls /; cat /etc/hosts | grep -c localhost";

#[test]
fn the_same_pod_under_ns_crun_and_runc_sees_the_same_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let aci = tmp.path().join("bb.aci");
    busybox_aci(tmp.path(), "example.com/busybox", &aci);
    for app_flags in [
        vec!["--set-env=GREETING=hello"],
        vec![
            "--user=1000",
            "--group=1000",
            "--working-dir=/etc",
            "--cap-retain=CAP_NET_BIND_SERVICE,CAP_CHOWN",
        ],
    ] {
        let mut seen = Vec::new();
        for flavor in [
            vec!["--stage1=ns"],
            vec!["--stage1=oci"],
            vec!["--stage1=oci", "--oci-runtime=runc"],
        ] {
            let out = output(
                skiff_in(tmp.path())
                    .args(["run", "--insecure-options=image", "--hostname=same"])
                    .args(&flavor)
                    .arg(&aci)
                    .args(&app_flags)
                    .args(["--exec=/bin/busybox", "--", "sh", "-c", ENVIRONMENT]),
            );
            assert!(out.status.success(), "{flavor:?}: {}", stderr(&out));
            seen.push((flavor, stdout(&out)));
        }
        for (flavor, text) in &seen[1..] {
            assert_eq!(
                text, &seen[0].1,
                "{flavor:?} differs from ns ({app_flags:?})"
            );
        }
        assert!(
            seen[0].1.contains("Seccomp:\t2") && seen[0].1.contains("NoNewPrivs:\t1"),
            "{}",
            seen[0].1
        );
    }
    // Exit status, stop and gc behave as for ns.
    let out = output(
        skiff_in(tmp.path())
            .args(["run", "--insecure-options=image", "--stage1=oci"])
            .arg(&aci)
            .args(["--exec=/bin/sh", "--", "-c", "exit 7"]),
    );
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    let out = output(
        skiff_in(tmp.path())
            .args([
                "run",
                "--detach",
                "--insecure-options=image",
                "--stage1=oci",
            ])
            .arg(&aci)
            .args([
                "--exec=/bin/sh",
                "--",
                "-c",
                "trap 'exit 3' TERM; while true; do /bin/busybox sleep 0.1; done",
            ]),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let uuid = stdout(&out).trim().to_string();
    assert!(
        output(skiff_in(tmp.path()).args(["stop", &uuid]))
            .status
            .success()
    );
    let status = stdout(&output(skiff_in(tmp.path()).args(["status", &uuid])));
    assert!(
        status.contains("state=exited") && status.contains("app-busybox=3"),
        "{status}"
    );
    let out = output(
        skiff_in(tmp.path())
            .args([
                "run",
                "--stage1=oci",
                "--oci-runtime=/no/such/runtime",
                "--insecure-options=image",
            ])
            .arg(&aci),
    );
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
}

#[test]
fn hostile_layers_are_refused_and_the_store_stays_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // One layer with a device node, one whose entry climbs out with "..".
    let script = r#"
import tarfile, io, sys
def layer(path, build):
    with tarfile.open(path, "w") as t:
        build(t)
def dev(t):
    i = tarfile.TarInfo("dev/evil"); i.type = tarfile.CHRTYPE; i.devmajor = 1; i.devminor = 3; t.addfile(i)
def escape(t):
    data = b"owned"
    i = tarfile.TarInfo("etc/../../escaped"); i.size = len(data); t.addfile(i, io.BytesIO(data))
layer(sys.argv[1] + "/dev.tar", dev)
layer(sys.argv[1] + "/escape.tar", escape)
"#;
    python(script, d);
    sh(&format!(
        "cd {} && umoci init --layout oci && for l in dev escape; do umoci new --image oci:$l && \
         umoci raw add-layer --image oci:$l $l.tar; done",
        d.display()
    ));
    for (tag, why) in [("dev", "device node"), ("escape", "leaves the root")] {
        let before = image_list(d);
        let out = output(
            skiff_in(d)
                .args(["--insecure-options=image", "fetch"])
                .arg(format!("oci:{}/oci:{tag}", d.display())),
        );
        assert_refused(&out, tag);
        assert!(stderr(&out).contains(why), "{tag}: {}", stderr(&out));
        assert_eq!(image_list(d), before);
        let tmp_left = std::fs::read_dir(d.join("data/cas/tmp")).unwrap().count();
        assert_eq!(tmp_left, 0, "{tag}: staging files left");
    }
    assert!(!d.join("escaped").exists() && !d.join("data/escaped").exists());
}

#[test]
fn a_refused_layer_stops_the_conversion_before_it_fills_the_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // 256 MiB of zeros: a small gzip layer that unpacks far past the limit.
    let script = r#"
import tarfile, io, sys
class Zeros(io.RawIOBase):
    def __init__(self, n): self.left = n
    def readable(self): return True
    def readinto(self, b):
        n = min(len(b), self.left); b[:n] = bytes(n); self.left -= n; return n
with tarfile.open(sys.argv[1] + "/bomb.tar", "w") as t:
    i = tarfile.TarInfo("zeros"); i.size = 256 << 20; t.addfile(i, io.BufferedReader(Zeros(i.size)))
"#;
    python(script, d);
    sh(&format!(
        "cd {} && umoci init --layout oci && umoci new --image oci:bomb && \
         umoci raw add-layer --image oci:bomb bomb.tar && rm bomb.tar",
        d.display()
    ));
    let before = image_list(d);
    let mut child = skiff_in(d)
        .args([
            "--insecure-options=image",
            "fetch",
            "--max-image-size=20000000",
        ])
        .arg(format!("oci:{}/oci:bomb", d.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // What the fetch wrote, as the kernel counts it, while it runs.
    let io = format!("/proc/{}/io", child.id());
    let mut most_written = 0u64;
    let status = loop {
        if let Ok(text) = std::fs::read_to_string(&io) {
            let wchar = text
                .lines()
                .find_map(|l| l.strip_prefix("wchar: "))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0);
            most_written = most_written.max(wchar);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("expands to more than 20000000 bytes"), "{err}");
    assert_eq!(image_list(d), before);
    // Refused at the entry's header: the conversion stops there instead of
    // writing the 256 MiB to staging (and as much again to the checker).
    assert!(
        most_written < 64 << 20,
        "the refused fetch wrote {most_written} bytes: {err}"
    );
    // Within the size limit, the layer's inflation itself (what the gzip
    // decoder produced against what it consumed) refuses it, naming the
    // option that lifts the limit.
    let out = output(
        skiff_in(d)
            .args(["--insecure-options=image", "fetch"])
            .arg(format!("oci:{}/oci:bomb", d.display())),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("refused as a decompression bomb (--max-decompression-ratio"),
        "{}",
        stderr(&out)
    );
    assert_eq!(image_list(d), before);
    // A refused image leaves none of its layers in the layer cache.
    let cached = std::fs::read_dir(d.join("data/cas/blobs/sha256"))
        .map(|dir| dir.filter_map(Result::ok).count())
        .unwrap_or(0);
    assert_eq!(cached, 0, "layers of a refused image stayed");
    // And the user can lift it.
    let out = output(
        skiff_in(d)
            .args([
                "--insecure-options=image",
                "fetch",
                "--max-decompression-ratio=100000",
            ])
            .arg(format!("oci:{}/oci:bomb", d.display())),
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

/// An upper layer's directory wins over a lower layer's file or symlink at
/// its path even when the layer has no entry for the directory (only
/// entries beneath it), as Docker does.
#[test]
fn an_upper_layers_directories_win_without_entries_of_their_own() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let script = r#"
import io, sys, tarfile
def layer(path, entries):
    with tarfile.open(path, "w") as t:
        for name, kind, data in entries:
            i = tarfile.TarInfo(name)
            if kind == "link":
                i.type = tarfile.SYMTYPE; i.linkname = data; t.addfile(i)
            else:
                i.size = len(data); t.addfile(i, io.BytesIO(data))
layer(sys.argv[1] + "/lower.tar", [("etc/conf", "file", b"old"), ("lib", "link", "usr/lib"), ("s", "link", "/tmp")])
layer(sys.argv[1] + "/upper.tar", [("etc/conf/x", "file", b"x"), ("lib/foo", "file", b"foo"), ("s/.wh.gone", "file", b"")])
"#;
    python(script, d);
    sh(&format!(
        "cd {} && umoci init --layout oci && umoci new --image oci:v1 && \
         umoci raw add-layer --image oci:v1 lower.tar && umoci raw add-layer --image oci:v1 upper.tar",
        d.display()
    ));
    let out = output(
        skiff_in(d)
            .args(["--insecure-options=image", "fetch"])
            .arg(format!("oci:{}/oci:v1", d.display())),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_string();
    let tree = d.join("tree");
    let out = output(skiff_in(d).args(["image", "render", &id]).arg(&tree));
    assert!(out.status.success(), "{}", stderr(&out));
    let rootfs = tree.join("rootfs");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("etc/conf/x")).unwrap(),
        "x"
    );
    assert!(
        std::fs::symlink_metadata(rootfs.join("lib"))
            .unwrap()
            .is_dir()
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("lib/foo")).unwrap(),
        "foo"
    );
    // A whiteout's parent is the upper layer's directory: the lower
    // symlink is gone (the directory itself has no entry to make it).
    assert!(
        std::fs::symlink_metadata(rootfs.join("s")).is_err(),
        "the lower symlink s stayed"
    );
}

#[test]
fn zstd_layers_made_by_skopeo_fetch_and_run() {
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let reg = Registry::start(None);
    let layout = layered_image(tmp.path(), false);
    let image = format!("docker://127.0.0.1:{}/test/zstd:v1", reg.port);
    sh(&format!(
        "skopeo copy --quiet --format oci --dest-compress-format zstd --dest-tls-verify=false \
         oci:{}:v1 {image}",
        layout.display()
    ));
    let raw = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(&image)
        .output()
        .unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    let types: Vec<&str> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap())
        .collect();
    assert!(
        types.iter().all(|t| t.ends_with("+zstd")),
        "skopeo wrote {types:?}"
    );
    let out = output(
        skiff_in(tmp.path())
            .args(["--insecure-options=image,http", "run", "--net=none", &image])
            .args([
                "--exec=/bin/sh",
                "--",
                "-c",
                "cat /etc/new /data/z; ls /etc",
            ]),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("newz"), "{text}");
    assert!(!text.contains("\na\n"), "whiteout lost: {text}");
}
