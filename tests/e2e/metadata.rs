//! The metadata service: per-pod identity (sign as yourself, anyone
//! verifies), tokens bound to their pod, a restart that keeps signatures
//! and tokens working, 1,000 concurrent requests from several pods, and
//! pods that start without a service.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::common::*;

/// A `skiff metadata-service` for one test's data dir, stopped on drop.
pub struct Mds {
    child: Child,
    pub port: u16,
}

impl Mds {
    /// Starts the service on `port` (0: any free one) and waits until it
    /// listens.
    pub fn start(root: &Path, port: u16) -> Mds {
        let mut child = skiff_in(root)
            .args(["metadata-service", &format!("--listen-port={port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let port = loop {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("metadata-service exited before listening"))
                .unwrap();
            if let Some(p) = line.split("port=").nth(1) {
                break p.split_whitespace().next().unwrap().parse().unwrap();
            }
        };
        // Keep draining its log so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Mds { child, port }
    }

    pub fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Mds {
    fn drop(&mut self) {
        self.terminate();
    }
}

const H: &str = "--header 'Metadata-Flavor: AppContainer'";

fn bb(root: &Path) -> std::path::PathBuf {
    let aci = root.join("bb.aci");
    if !aci.exists() {
        busybox_aci(root, "example.com/busybox", &aci);
    }
    aci
}

fn in_pod(root: &Path, script: &str) -> String {
    in_pod_on(root, "--net=default", script)
}

fn in_pod_on(root: &Path, net: &str, script: &str) -> String {
    let out = output(
        skiff_in(root)
            .args(["run", "--insecure-options=image", net])
            .arg(bb(root))
            .args(["--exec=/bin/sh", "--", "-c", script]),
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    stdout(&out).trim().to_string()
}

fn enter(root: &Path, uuid: &str, script: &str) -> String {
    let out = output(skiff_in(root).args(["enter", uuid, "/bin/sh", "-c", script]));
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    stdout(&out).trim().to_string()
}

fn wget(url: &str, post: Option<&str>) -> String {
    let post = post.map_or(String::new(), |p| format!("--post-data '{p}'"));
    format!("/bin/busybox wget -q -O - {H} {post} \"{url}\"")
}

#[test]
fn pods_sign_as_themselves_verify_each_other_and_keep_it_across_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let mds = Mds::start(tmp.path(), 0);
    // Pod A runs on; its URL (with its token) is in its log.
    let out = output(
        skiff_in(tmp.path())
            .args(["run", "--detach", "--insecure-options=image"])
            .arg(bb(tmp.path()))
            .args([
                "--exec=/bin/sh",
                "--",
                "-c",
                "echo URL=$AC_METADATA_URL; exec /bin/busybox sleep 600",
            ]),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let a = stdout(&out).trim().to_string();
    let url_a = eventually("pod A prints its URL", || {
        stdout(&output(skiff_in(tmp.path()).args(["logs", &a])))
            .lines()
            .find_map(|l| l.strip_prefix("URL="))
            .map(str::to_string)
    });
    assert!(
        url_a.starts_with("http://"),
        "pod A has no AC_METADATA_URL: {url_a:?}"
    );
    let m_a = format!("{url_a}/acMetadata/v1");
    let uuid_a = enter(tmp.path(), &a, &wget(&format!("{m_a}/pod/uuid"), None));
    assert_eq!(uuid_a, a);
    let sig = enter(
        tmp.path(),
        &a,
        &wget(&format!("{m_a}/pod/hmac/sign"), Some("content=hello")),
    );
    assert!(sig.len() > 40, "{sig}");
    let sig_enc: String = sig
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();

    // Pod B verifies A's signature with A's uuid; a changed content or
    // another uuid fails; A's token is useless from B.
    let verify = |content: &str, uuid: &str| {
        in_pod(
            tmp.path(),
            &format!(
                "{} >/dev/null && echo VERIFIED || echo REFUSED",
                wget(
                    "$AC_METADATA_URL/acMetadata/v1/pod/hmac/verify",
                    Some(&format!(
                        "content={content}&uuid={uuid}&signature={sig_enc}"
                    ))
                )
            ),
        )
    };
    assert_eq!(verify("hello", &a), "VERIFIED");
    assert_eq!(verify("hellO", &a), "REFUSED");
    assert_eq!(
        verify("hello", "00000000-0000-0000-0000-000000000000"),
        "REFUSED"
    );
    let stolen = in_pod(
        tmp.path(),
        &format!(
            "{} && echo LEAK; {} && echo LEAK; echo done",
            wget(&format!("{m_a}/pod/manifest"), None),
            wget(&format!("{m_a}/pod/hmac/sign"), Some("content=forged"))
        ),
    );
    assert_eq!(stolen, "done", "pod B used pod A's token");
    // From the host: no token, a wrong token, or no Metadata-Flavor header.
    let base = url_a.rsplit_once('/').unwrap().0.to_string();
    for (url, header) in [
        (format!("{base}/acMetadata/v1/pod/uuid"), true),
        (
            format!("{base}/0123456789abcdef0123456789abcdef/acMetadata/v1/pod/uuid"),
            true,
        ),
        (format!("{m_a}/pod/uuid"), false),
    ] {
        let mut curl = Command::new("curl");
        curl.args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
        ]);
        if header {
            curl.args(["-H", "Metadata-Flavor: AppContainer"]);
        }
        let code = String::from_utf8_lossy(&curl.arg(&url).output().unwrap().stdout).into_owned();
        assert!(
            ["400", "401", "404"].contains(&code.as_str()),
            "{url}: HTTP {code}"
        );
    }

    // A restart keeps the key and the registrations: A still signs, with
    // the same URL, and the signature is the same.
    let port = mds.port;
    mds.stop();
    let _mds = Mds::start(tmp.path(), port);
    let again = enter(
        tmp.path(),
        &a,
        &wget(&format!("{m_a}/pod/hmac/sign"), Some("content=hello")),
    );
    assert_eq!(again, sig, "signature changed across a restart");
    assert_eq!(verify("hello", &a), "VERIFIED");
}

#[test]
fn a_thousand_concurrent_requests_from_several_pods() {
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let _mds = Mds::start(tmp.path(), 0);
    bb(tmp.path());
    let script = format!(
        "case $AC_METADATA_URL in http://127.0.0.1:*) ;; *) echo not-loopback; exit 1;; esac; ok=0; i=0; while [ $i -lt 250 ]; do {} >/dev/null && ok=$((ok+1)); i=$((i+1)); done; echo $ok",
        wget("$AC_METADATA_URL/acMetadata/v1/pod/uuid", None)
    );
    let root = tmp.path().to_path_buf();
    let pods: Vec<_> = (0..4)
        .map(|_| {
            let (root, script) = (root.clone(), script.clone());
            // Host-network pods: the requests go to 127.0.0.1.
            std::thread::spawn(move || in_pod_on(&root, "--net=host", &script))
        })
        .collect();
    let answered: u32 = pods
        .into_iter()
        .map(|t| t.join().unwrap().parse::<u32>().unwrap())
        .sum();
    assert_eq!(answered, 1000, "requests without an answer");
}

#[test]
fn without_a_service_pods_start_and_say_why() {
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let out = in_pod(tmp.path(), "echo \"url=[$AC_METADATA_URL]\"");
    assert_eq!(out, "url=[]");
    let why: Vec<String> = std::fs::read_dir(tmp.path().join("data/pods/exited-garbage"))
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path().join("metadata")).unwrap_or_default())
        .collect();
    assert!(
        why.iter().any(|w| w.contains("no metadata service runs")),
        "{why:?}"
    );
}

/// A kvm pod reaches the service through its tap, as itself: its uuid, its
/// manifest and its app's image, and a signature it makes verifies while a
/// changed content does not. busybox's wget sets no deadline, so a guest
/// under TCG (where KVM cannot run it) is checked for what it gets, not for
/// how fast (the ACE validator's 100 ms per request is checked in
/// `ace::ace_validator_passes_in_full_under_kvm`).
#[test]
fn kvm_pods_use_the_metadata_service_through_their_tap() {
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let _mds = Mds::start(tmp.path(), 0);
    let m = "$AC_METADATA_URL/acMetadata/v1";
    // A minute per request: a service that hangs fails the test.
    let patient = |path: &str, post: Option<&str>| {
        format!(
            "/bin/busybox timeout 60 {}",
            wget(&format!("{m}/{path}"), post)
        )
    };
    let get = |path: &str| patient(path, None);
    let script = format!(
        "echo uuid=$({uuid}); \
         {manifest} | /bin/busybox grep -q PodManifest && echo manifest-ok; \
         echo image=$({image}); \
         sig=$({sign} | /bin/busybox sed 's/+/%2B/g; s#/#%2F#g; s/=/%3D/g'); \
         u=$({uuid}); \
         {verify} >/dev/null && echo VERIFIED || echo REFUSED; \
         {forged} >/dev/null && echo VERIFIED || echo REFUSED",
        uuid = get("pod/uuid"),
        manifest = get("pod/manifest"),
        image = get("apps/$AC_APP_NAME/image/id"),
        sign = patient("pod/hmac/sign", Some("content=hello")),
        verify = patient(
            "pod/hmac/verify",
            Some("content=hello&uuid='$u'&signature='$sig'")
        ),
        forged = patient(
            "pod/hmac/verify",
            Some("content=hellO&uuid='$u'&signature='$sig'")
        ),
    );
    let uuid_file = tmp.path().join("uuid");
    let out = output(
        skiff_in(tmp.path())
            .args(["run", "--insecure-options=image", "--stage1=kvm"])
            .arg(format!("--uuid-file-save={}", uuid_file.display()))
            .arg(bb(tmp.path()))
            .args(["--exec=/bin/sh", "--", "-c", &script]),
    );
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    let uuid = std::fs::read_to_string(&uuid_file).unwrap();
    let images = stdout(&output(skiff_in(tmp.path()).args(["image", "list", "-q"])));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            format!("uuid={}", uuid.trim()).as_str(),
            "manifest-ok",
            format!("image={}", images.trim()).as_str(),
            "VERIFIED",
            "REFUSED"
        ],
        "{}",
        stderr(&out)
    );
}

#[test]
fn slow_clients_cannot_starve_other_pods() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let mds = Mds::start(tmp.path(), 0);
    bb(tmp.path());
    // One address opens as many connections as it may, each starting a
    // request it never finishes (slowloris): a byte now and then.
    let mut slow: Vec<TcpStream> = Vec::new();
    for _ in 0..600 {
        let mut s = TcpStream::connect(("127.0.0.1", mds.port)).unwrap();
        let _ = s.write_all(b"GET /x/acMetadata/v1/pod/uuid HTTP/1.1\r\nHost: a\r\n");
        slow.push(s);
    }
    for s in &mut slow {
        let _ = s.write_all(b"X");
    }
    // Those past the per-address limit were closed at once: a read ends
    // (an open one times out without data).
    let closed = slow
        .iter()
        .filter(|s| {
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            match uninterrupted(|| (&mut &**s).read(&mut [0u8; 16])) {
                Ok(0) => true,
                Ok(_) => false,
                Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
            }
        })
        .count();
    assert!(closed >= 600 - 128, "only {closed} of 600 were refused");
    // A pod (its own address) is answered meanwhile.
    let answer = in_pod(
        tmp.path(),
        &wget("$AC_METADATA_URL/acMetadata/v1/pod/uuid", None),
    );
    assert_eq!(answer.len(), 36, "{answer}");
    // And the slow ones are cut once idle: each read ends (the read
    // timeout only keeps a broken service from hanging the test).
    for s in &mut slow {
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut rest = Vec::new();
        match s.read_to_end(&mut rest) {
            Ok(_) => {}
            Err(e) => assert_eq!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset,
                "a slow connection was not cut"
            ),
        }
    }
}
