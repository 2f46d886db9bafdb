//! `skiff serve` and `skiff fetch --peer`: hosts (network namespaces on a
//! bridge, each with its own data dir) fetch from each other when the
//! origin is gone, and hostile peers (one corrupting pieces, one offering
//! an image signed by an untrusted key, one lying about its signer) cannot
//! make a host accept anything else; the server's confinement and what it
//! refuses to answer.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::*;
use crate::server::{Server, TestCa};

/// A switch (a bridge in a namespace of its own), the origin's address on
/// the host's side of it, and hosts in namespaces of their own.
struct Lan {
    id: String,
    subnet: String,
    hosts: Vec<String>,
}

fn ip(args: &[&str]) {
    let out = output(Command::new("ip").args(args));
    assert!(out.status.success(), "ip {args:?}: {}", stderr(&out));
}

impl Lan {
    /// A LAN with `hosts` hosts at .11, .12, …; the origin at .1.
    fn new(hosts: usize) -> Lan {
        // Tests run in parallel: each LAN its own names and subnet.
        static LANS: AtomicUsize = AtomicUsize::new(0);
        let n = LANS.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let id = format!("{}{n}", pid % 100_000);
        let subnet = format!("10.{}.{}", 230 + n % 20, pid % 250);
        let lan = Lan {
            subnet: subnet.clone(),
            hosts: (0..hosts).map(|i| format!("skh{i}-{id}")).collect(),
            id: id.clone(),
        };
        let switch = lan.switch();
        ip(&["netns", "add", &switch]);
        ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &switch, "link", "set", "br0", "up"]);
        let origin_if = format!("sko{id}");
        ip(&[
            "link", "add", &origin_if, "type", "veth", "peer", "name", "o0", "netns", &switch,
        ]);
        ip(&["addr", "add", &format!("{subnet}.1/24"), "dev", &origin_if]);
        ip(&["link", "set", &origin_if, "up"]);
        ip(&["-n", &switch, "link", "set", "o0", "master", "br0", "up"]);
        for (i, host) in lan.hosts.iter().enumerate() {
            ip(&["netns", "add", host]);
            let port = format!("h{i}");
            ip(&[
                "-n", &switch, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                "netns", host,
            ]);
            ip(&["-n", &switch, "link", "set", &port, "master", "br0", "up"]);
            ip(&[
                "-n",
                host,
                "addr",
                "add",
                &format!("{}/24", lan.host_ip(i)),
                "dev",
                "eth0",
            ]);
            ip(&["-n", host, "link", "set", "eth0", "up"]);
            ip(&["-n", host, "link", "set", "lo", "up"]);
        }
        lan
    }

    fn switch(&self) -> String {
        format!("sks-{}", self.id)
    }

    fn origin_ip(&self) -> String {
        format!("{}.1", self.subnet)
    }

    fn host_ip(&self, i: usize) -> String {
        format!("{}.{}", self.subnet, 11 + i)
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        // The veths go with their namespaces (the origin's with its peer).
        for ns in self.hosts.iter().chain([&self.switch()]) {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// One host: its namespace and its own data and configuration.
struct Host {
    ns: String,
    root: PathBuf,
    ca_file: PathBuf,
}

impl Host {
    fn skiff(&self) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns])
            .arg(env!("CARGO_BIN_EXE_skiff"))
            .arg("--dir")
            .arg(self.root.join("data"))
            .arg("--local-config")
            .arg(self.root.join("etc"))
            .arg("--system-config")
            .arg(self.root.join("usr"))
            .env("SSL_CERT_FILE", &self.ca_file);
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        output(self.skiff().args(args))
    }

    /// `skiff fetch --peer P… image`.
    fn fetch_via(&self, peers: &[&str], image: &str) -> Output {
        let mut cmd = self.skiff();
        cmd.arg("fetch");
        for p in peers {
            cmd.args(["--peer", p]);
        }
        output(cmd.arg(image))
    }

    fn trust(&self, prefix: &str, key: &[u8]) {
        let file = self.root.join("key.asc");
        std::fs::write(&file, key).unwrap();
        let out = self.run(&[
            "trust",
            "--prefix",
            prefix,
            "--skip-fingerprint-review",
            &file.to_string_lossy(),
        ]);
        assert!(out.status.success(), "trust: {}", stderr(&out));
    }

    /// The IDs of the images in the store.
    fn images(&self) -> Vec<String> {
        let out = self.run(&["image", "list", "--no-legend", "--full"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let mut ids: Vec<String> = stdout(&out)
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect();
        ids.sort();
        ids
    }

    /// `skiff serve` on `addr`, until dropped.
    fn serve(&self, addr: &str) -> Serving {
        serve(self.skiff().args(["serve", "--listen", addr]))
    }
}

/// A running `skiff serve`: its URL; killed when dropped.
struct Serving {
    child: Child,
    url: String,
}

fn serve(cmd: &mut Command) -> Serving {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    if !line.starts_with("http://") {
        let _ = child.kill();
        let mut err = String::new();
        let _ = child.stderr.take().unwrap().read_to_string(&mut err);
        panic!("skiff serve did not start: {line}{err}");
    }
    Serving {
        child,
        url: line.trim().to_string(),
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn discovery_page(name: &str, origin: &str) -> Vec<u8> {
    format!(
        "<html><head>\n\
         <meta name=\"ac-discovery\" content=\"{name} https://{origin}/images/busybox-{{version}}-{{os}}-{{arch}}.{{ext}}\">\n\
         <meta name=\"ac-discovery-pubkeys\" content=\"{name} https://{origin}/pubkeys.asc\">\n\
         </head></html>\n"
    )
    .into_bytes()
}

/// A peer that passes everything through to `upstream` except the bodies
/// of blob ranges, in which it flips a byte. Counts what it corrupted.
struct CorruptingPeer {
    stop: Arc<AtomicBool>,
    corrupted: Arc<AtomicUsize>,
    addr: SocketAddr,
}

impl CorruptingPeer {
    fn start(ip: &str, upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind((ip, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let corrupted = Arc::new(AtomicUsize::new(0));
        let (st, count) = (stop.clone(), corrupted.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let count = count.clone();
                        std::thread::spawn(move || corrupt_one(client, upstream, &count));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        CorruptingPeer {
            stop,
            corrupted,
            addr,
        }
    }
}

impl Drop for CorruptingPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One request: forwarded with `Connection: close`, the answer passed
/// back, a blob's body with one byte flipped.
fn corrupt_one(client: TcpStream, upstream: SocketAddr, count: &AtomicUsize) {
    client.set_nonblocking(false).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if line == "\r\n" {
            break;
        }
        if !line.to_ascii_lowercase().starts_with("connection:") {
            head.push(line);
        }
    }
    let path = head[0].split(' ').nth(1).unwrap_or("").to_string();
    let blob = path.starts_with("/skiff/v1/aci/") && path.len() == "/skiff/v1/aci/".len() + 128;
    let mut up = TcpStream::connect(upstream).unwrap();
    let request = format!("{}Connection: close\r\n\r\n", head.concat());
    up.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    up.read_to_end(&mut answer).unwrap();
    if blob
        && let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n")
        && answer.len() > end + 4
    {
        let body = end + 4;
        let at = body + (answer.len() - body) / 2;
        answer[at] ^= 0x5a;
        count.fetch_add(1, Ordering::Relaxed);
    }
    let mut client = client;
    let _ = client.write_all(&answer);
    let _ = client.shutdown(Shutdown::Both);
}

fn image_id(out: &Output) -> String {
    assert!(out.status.success(), "fetch failed: {}", stderr(out));
    stdout(out).trim().to_string()
}

/// A second key's image under the same name: an evil host has it, signed
/// and trusted there, and serves it.
fn evil_host(host: &Host, dir: &Path, name: &str) -> Vec<u8> {
    let gpg = Gpg::new("Evil <evil@example.com>", "ed25519");
    let layout = dir.join("evil-layout");
    busybox_layout(&layout);
    let manifest = BUSYBOX_MANIFEST
        .replace("example.com/busybox", name)
        .replace("echo hello", "echo evil");
    std::fs::write(layout.join("manifest"), manifest).unwrap();
    let aci = dir.join("evil.aci");
    build_image(&layout, &aci);
    std::fs::write(format!("{}.asc", aci.display()), gpg.sign(&aci)).unwrap();
    host.trust(name, &gpg.public_key());
    let out = host.run(&["fetch", &aci.to_string_lossy()]);
    assert!(out.status.success(), "evil fetch: {}", stderr(&out));
    gpg.public_key()
}

/// The origin of a test: `https://<lan origin>` with discovery for
/// `<origin>/busybox`, and version 1.0 of it signed by its key.
struct Origin {
    site: Server,
    /// The CA of the origin's certificate (for its address, any port).
    ca: TestCa,
    gpg: Gpg,
    name: String,
    /// `name:1.0`
    wanted: String,
    aci_file: PathBuf,
    ca_file: PathBuf,
}

/// Where the origin serves version 1.0.
const ACI_PATH: &str = "/images/busybox-1.0-linux-amd64.aci";

impl Origin {
    fn start(lan: &Lan, dir: &Path) -> Origin {
        let origin = lan.origin_ip();
        let name = format!("{origin}/busybox");
        let ca = TestCa::new(&origin);
        let ca_file = dir.join("ca.pem");
        ca.write_ca(&ca_file);
        let gpg = Gpg::new("Origin <origin@example.com>", "ed25519");
        let aci_file = dir.join("busybox.aci");
        busybox_aci(dir, &name, &aci_file);
        let site = Server::start(&origin, 443, Some(&ca));
        site.put(
            "/busybox?ac-discovery=1",
            discovery_page(&name, &origin),
            None,
            "text/html",
        );
        site.put(
            ACI_PATH,
            std::fs::read(&aci_file).unwrap(),
            None,
            "application/octet-stream",
        );
        site.put(
            &format!("{ACI_PATH}.asc"),
            gpg.sign(&aci_file),
            None,
            "text/plain",
        );
        Origin {
            site,
            ca,
            gpg,
            wanted: format!("{name}:1.0"),
            name,
            aci_file,
            ca_file,
        }
    }
}

impl Origin {
    /// The LAN's hosts, each trusting the origin's key for its name.
    fn trusting_hosts(&self, lan: &Lan, dir: &Path) -> Vec<Host> {
        let hosts = hosts_of(lan, dir, &self.ca_file);
        for host in &hosts {
            host.trust(&self.name, &self.gpg.public_key());
        }
        hosts
    }
}

#[test]
fn hosts_fetch_from_peers_when_the_origin_is_gone_and_hostile_peers_fail() {
    let lan = Lan::new(4);
    let dir = tempfile::tempdir().unwrap();
    let started = Origin::start(&lan, dir.path());
    let hosts = started.trusting_hosts(&lan, dir.path());
    let Origin {
        mut site,
        name,
        wanted,
        ..
    } = started;
    let origin = lan.origin_ip();
    let aci_path = ACI_PATH;
    let [h1, h2, h3, evil] = &hosts[..] else {
        unreachable!()
    };

    // The first host fetches from the origin and serves.
    let id = image_id(&h1.run(&["fetch", &wanted]));
    assert_eq!(site.full_bodies(aci_path), 1);
    let h1_serving = h1.serve(&format!("{}:7440", lan.host_ip(0)));

    // With the origin up, a peer that has the image serves it: the origin
    // sends only the signature.
    let out = h3.run(&["fetch", "--peer", &h1_serving.url, &wanted]);
    assert_eq!(image_id(&out), id);
    assert!(
        stderr(&out).contains("fetched in pieces (peer http"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        site.full_bodies(aci_path),
        1,
        "the origin sent the image again: {}",
        stderr(&out)
    );
    let out = h3.run(&["image", "rm", &id]);
    assert!(out.status.success(), "{}", stderr(&out));

    // The origin answers that it knows no such name: a peer cannot stand
    // in (only for an origin that is away).
    site.remove("/busybox?ac-discovery=1");
    let out = h3.run(&["fetch", "--peer", &h1_serving.url, &wanted]);
    assert_refused(&out, "a name the origin does not know");
    assert!(stderr(&out).contains("discovery of"), "{}", stderr(&out));
    assert!(h3.images().is_empty(), "{}", stderr(&out));

    site.shutdown();

    // An evil host has an image of that name signed by a key the others do
    // not trust.
    let evil_key = evil_host(evil, dir.path(), &name);
    let evil_serving = evil.serve(&format!("{}:7440", lan.host_ip(3)));
    let before = h3.images();
    let out = h3.run(&["fetch", "--peer", &evil_serving.url, &wanted]);
    assert_refused(&out, "an image signed by an untrusted key");
    assert!(
        stderr(&out).contains("none signed by a key trusted"),
        "{}",
        stderr(&out)
    );
    assert_eq!(h3.images(), before, "the store changed");

    // It lies about its signer (its record file named as the trusted key):
    // the image is downloaded, and refused by the signature check.
    let evil_data = evil.root.join("data/cas/records/signatures");
    let trusted_fingerprint = fingerprint_of(h3, &name);
    for sigs in std::fs::read_dir(&evil_data).unwrap() {
        let sigs = sigs.unwrap().path();
        for record in std::fs::read_dir(&sigs).unwrap() {
            let record = record.unwrap().path();
            std::fs::rename(&record, sigs.join(&trusted_fingerprint)).unwrap();
        }
    }
    let out = h3.run(&["fetch", "--peer", &evil_serving.url, &wanted]);
    assert_refused(&out, "an image whose signature does not verify");
    assert!(stderr(&out).contains("signature"), "{}", stderr(&out));
    assert_eq!(h3.images(), before, "the store changed");
    let leftovers = std::fs::read_dir(h3.root.join("data/cas/tmp"))
        .unwrap()
        .count();
    assert_eq!(leftovers, 0, "a refused peer download left staging files");
    drop(evil_key);

    // The origin is gone: the second host fetches from the first, with the
    // lying evil peer listed first: the right image wins.
    let out = h2.fetch_via(&[&evil_serving.url, &h1_serving.url], &wanted);
    assert_eq!(image_id(&out), id, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("signature of {name} verified")),
        "{err}"
    );

    // A peer that corrupts pieces is dropped and named; the fetch completes
    // from the honest one with the right image.
    let upstream: SocketAddr = h1_serving
        .url
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let corrupting = CorruptingPeer::start(&origin, upstream);
    let bad_url = format!("http://{}", corrupting.addr);
    let out = h3.fetch_via(&[&bad_url, &h1_serving.url], &wanted);
    assert_eq!(image_id(&out), id, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        corrupting.corrupted.load(Ordering::Relaxed) > 0,
        "nothing was corrupted: {err}"
    );
    assert!(
        err.contains(&format!("peer {bad_url} dropped")) && err.contains("does not match"),
        "the corrupting peer was not named: {err}"
    );
    for host in [h2, h3] {
        let out = host.run(&["image", "verify"]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
}

/// The fingerprint of the key `host` trusts for `prefix`.
fn fingerprint_of(host: &Host, prefix: &str) -> String {
    let out = host.run(&["trust", "list", "--format=json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("trust list: {e}: {}", stderr(&out)));
    list.as_array()
        .unwrap()
        .iter()
        .find(|k| k["scope"].as_str() == Some(prefix))
        .and_then(|k| k["fingerprint"].as_str())
        .unwrap_or_else(|| panic!("no key for {prefix}: {list}"))
        .to_ascii_lowercase()
}

/// A raw HTTP/1.1 GET (or `method`) of `path` as written (no client
/// normalises it): the status and the body.
fn raw(addr: &str, method: &str, path: &str, headers: &str) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in: {text}"));
    let body = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(Vec::new(), |at| answer[at + 4..].to_vec());
    (status, body)
}

/// Names, sizes and modification times of everything under `dir`.
fn snapshot(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path.clone());
            }
            out.push(format!(
                "{} {} {:?}",
                path.display(),
                meta.len(),
                meta.modified().ok()
            ));
        }
    }
    out.sort();
    out
}

#[test]
fn the_server_is_confined_and_answers_only_what_it_shares() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let aci = root.join("busybox.aci");
    busybox_aci(root, "example.com/served", &aci);
    let out = output(
        skiff_in(root)
            .args(["fetch", "--insecure-options=image"])
            .arg(&aci),
    );
    let id = image_id(&out);
    let hex = id.trim_start_matches("sha512-");
    let data = root.join("data");
    // Planted by whoever could write the store: never served.
    let shadow = "a".repeat(128);
    std::os::unix::fs::symlink("/etc/shadow", data.join("cas/blobs/sha512").join(&shadow)).unwrap();
    let fifo = "b".repeat(64);
    let made = output(Command::new("mkfifo").arg(data.join("cas/blobs/sha256").join(&fifo)));
    assert!(made.status.success());
    let sigs = data.join("cas/records/signatures").join("c".repeat(128));
    std::fs::create_dir_all(&sigs).unwrap();
    std::os::unix::fs::symlink("/etc/shadow", sigs.join("ABCD")).unwrap();

    let serving = serve(skiff_in(root).args(["serve", "--listen", "127.0.0.1:0"]));
    let before = snapshot(&data);
    let pid = serving.child.id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    for want in [
        "Uid:\t65534\t65534\t65534\t65534",
        "Gid:\t65534\t65534\t65534\t65534",
        "CapPrm:\t0000000000000000",
        "CapEff:\t0000000000000000",
        "CapBnd:\t0000000000000000",
        "NoNewPrivs:\t1",
    ] {
        assert!(status.contains(want), "want {want} in:\n{status}");
    }
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    assert_eq!(mounts.lines().count(), 5, "{mounts}");
    for line in mounts.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        assert!(fields[5].starts_with("ro,"), "not read-only: {line}");
        assert!(
            fields[3] == "/"
                || fields[3].ends_with("/cas/blobs/sha512")
                || fields[3].ends_with("/cas/blobs/sha256")
                || fields[3].ends_with("/cas/records/signatures")
                || fields[3].ends_with("/cas/partial"),
            "the server sees more than it shares: {line}"
        );
    }

    let addr = serving.url.trim_start_matches("http://").to_string();
    let (code, body) = raw(&addr, "GET", &format!("/skiff/v1/aci/{hex}"), "");
    assert_eq!(code, 200);
    assert_eq!(
        body,
        std::fs::read(data.join("cas/blobs/sha512").join(hex)).unwrap()
    );
    let (code, body) = raw(
        &addr,
        "GET",
        &format!("/skiff/v1/aci/{hex}"),
        "Range: bytes=3-12\r\n",
    );
    assert_eq!((code, body.len()), (206, 10));
    let (code, _) = raw(
        &addr,
        "GET",
        &format!("/skiff/v1/aci/{hex}"),
        "Range: bytes=99999999-\r\n",
    );
    assert_eq!(code, 416);
    let (code, body) = raw(
        &addr,
        "GET",
        "/skiff/v1/images?name=example.com%2Fserved",
        "",
    );
    assert_eq!(code, 200);
    assert!(String::from_utf8_lossy(&body).contains(&id));
    for path in [
        format!("/skiff/v1/aci/{shadow}"),
        format!("/skiff/v1/layers/{fifo}"),
        format!("/skiff/v1/layers/{fifo}/pieces"),
        format!("/skiff/v1/aci/{}/signatures/ABCD", "c".repeat(128)),
        "/skiff/v1/aci/../../db.sqlite".to_string(),
        "/skiff/v1/aci/%2e%2e/%2e%2e/db.sqlite".to_string(),
        format!("/skiff/v1/aci/{hex}/../../../db.sqlite"),
        format!("/skiff/v1/aci/{}", hex.to_uppercase()),
        "/skiff/v1/aci".to_string(),
        "/skiff/v1/".to_string(),
        "/".to_string(),
        "/etc/passwd".to_string(),
    ] {
        let (code, body) = raw(&addr, "GET", &path, "");
        assert_eq!(code, 404, "{path}: {}", String::from_utf8_lossy(&body));
        assert!(!String::from_utf8_lossy(&body).contains("root:"), "{path}");
    }
    let (code, _) = raw(
        &addr,
        "PUT",
        &format!("/skiff/v1/aci/{hex}"),
        "Content-Length: 0\r\n",
    );
    assert_eq!(code, 405);
    let (code, _) = raw(&addr, "GET", "/skiff/v1/images", "");
    assert_eq!(code, 400, "an images query without a name");

    // One address asking too fast is refused (429), and it recovers.
    let refused = (0..800)
        .filter(|_| raw(&addr, "GET", "/", "").0 == 429)
        .count();
    assert!(refused > 0, "800 requests at once were never limited");
    assert_eq!(snapshot(&data), before, "serving changed the store");
    drop(serving);

    // Only the addresses --allow names are answered: others are closed at
    // once, so they cannot hold the server's connections either.
    let only =
        serve(skiff_in(root).args(["serve", "--listen", "127.0.0.1:0", "--allow", "10.0.0.0/8"]));
    let addr = only.url.trim_start_matches("http://").to_string();
    let held: Vec<TcpStream> = (0..100)
        .filter_map(|_| TcpStream::connect(&addr).ok())
        .collect();
    for mut s in held {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let _ = write!(s, "GET /skiff/v1/aci/{hex} HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        assert!(answer.is_empty(), "a client outside --allow was answered");
    }
}

/// The hosts of `lan` with data under `dir`, trusting nothing yet.
fn hosts_of(lan: &Lan, dir: &Path, ca_file: &Path) -> Vec<Host> {
    lan.hosts
        .iter()
        .enumerate()
        .map(|(i, ns)| {
            let root = dir.join(format!("host{i}"));
            std::fs::create_dir_all(&root).unwrap();
            Host {
                ns: ns.clone(),
                root,
                ca_file: ca_file.to_path_buf(),
            }
        })
        .collect()
}

#[test]
fn a_swarm_fetching_at_once_takes_each_piece_from_the_origin_about_once() {
    let lan = Lan::new(3);
    let dir = tempfile::tempdir().unwrap();
    // The origin publishes the image, its signature and its piece list, and
    // answers each request for the image only after a while (far away).
    let Origin {
        site,
        gpg,
        name,
        wanted,
        aci_file,
        ca_file,
        ..
    } = Origin::start(&lan, dir.path());
    let hosts = hosts_of(&lan, dir.path(), &ca_file);
    let made = output(skiff().args(["image", "pieces"]).arg(&aci_file));
    assert!(made.status.success(), "{}", stderr(&made));
    let aci_path = ACI_PATH;
    let size = std::fs::metadata(&aci_file).unwrap().len() as usize;
    let pieces = std::fs::read(format!("{}.pieces", aci_file.display())).unwrap();
    site.put(
        &format!("{aci_path}.pieces"),
        pieces,
        None,
        "application/json",
    );
    site.slow_down(aci_path, Duration::from_millis(300));

    // Every host serves and lists the others in peers.d.
    let serving: Vec<Serving> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| h.serve(&format!("{}:7440", lan.host_ip(i))))
        .collect();
    let urls: Vec<String> = serving.iter().map(|s| format!("\"{}\"", s.url)).collect();
    for host in &hosts {
        host.trust(&name, &gpg.public_key());
        let peers_d = host.root.join("etc/peers.d");
        std::fs::create_dir_all(&peers_d).unwrap();
        std::fs::write(
            peers_d.join("site.json"),
            format!("{{\"peers\": [{}]}}", urls.join(", ")),
        )
        .unwrap();
    }
    let fetches: Vec<Child> = hosts
        .iter()
        .map(|h| {
            h.skiff()
                .args(["fetch", &wanted])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<Output> = fetches
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let ids: Vec<String> = outs.iter().map(image_id).collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    let from_members = outs
        .iter()
        .filter(|o| stderr(o).contains("fetched in pieces (peer http://"))
        .count();
    assert!(
        from_members > 0,
        "no host took a piece from another: {:?}",
        outs.iter().map(stderr).collect::<Vec<_>>()
    );
    assert_eq!(site.full_bodies(aci_path), 0, "someone downloaded it whole");
    let sent = site.bytes_sent(aci_path);
    assert!(
        sent <= 2 * size,
        "the origin sent {sent} bytes of a {size}-byte image to 3 hosts"
    );
    for host in &hosts {
        let out = host.run(&["image", "verify"]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    drop(serving);
}

#[test]
fn lying_peers_cannot_downgrade_a_fetch_or_plant_another_version() {
    use sha2::Digest;
    let lan = Lan::new(3);
    let dir = tempfile::tempdir().unwrap();
    let origin = lan.origin_ip();
    let name = format!("{origin}/busybox");
    let ca = TestCa::new(&origin);
    let ca_file = dir.path().join("ca.pem");
    ca.write_ca(&ca_file);
    let hosts = hosts_of(&lan, dir.path(), &ca_file);
    let [h1, victim, fresh] = &hosts[..] else {
        unreachable!()
    };

    // The origin has 1.0 and, as latest, 2.0; both signed by its key.
    let gpg = Gpg::new("Origin <origin@example.com>", "ed25519");
    let v1 = dir.path().join("busybox.aci");
    busybox_aci(dir.path(), &name, &v1);
    let layout = dir.path().join("v2-layout");
    busybox_layout(&layout);
    let manifest = BUSYBOX_MANIFEST
        .replace("example.com/busybox", &name)
        .replace("\"1.0\"", "\"2.0\"");
    std::fs::write(layout.join("manifest"), manifest).unwrap();
    let v2 = dir.path().join("busybox-2.aci");
    build_image(&layout, &v2);
    let mut site = Server::start(&origin, 443, Some(&ca));
    site.put(
        "/busybox?ac-discovery=1",
        discovery_page(&name, &origin),
        None,
        "text/html",
    );
    let (v1_sig, v2_sig) = (gpg.sign(&v1), gpg.sign(&v2));
    for (file, version, sig) in [(&v1, "1.0", &v1_sig), (&v2, "latest", &v2_sig)] {
        let path = format!("/images/busybox-{version}-linux-amd64.aci");
        site.put(
            &path,
            std::fs::read(file).unwrap(),
            None,
            "application/octet-stream",
        );
        site.put(&format!("{path}.asc"), sig.clone(), None, "text/plain");
    }
    for host in &hosts {
        host.trust(&name, &gpg.public_key());
    }
    let v1_id = image_id(&h1.run(&["fetch", &format!("{name}:1.0")]));
    assert_eq!(
        image_id(&victim.run(&["fetch", &format!("{name}:1.0")])),
        v1_id
    );
    let fingerprint = fingerprint_of(victim, &name);
    let v1_hex = v1_id.trim_start_matches("sha512-").to_string();
    let v1_size = std::fs::metadata(&v1).unwrap().len();
    let v2_size = std::fs::metadata(&v2).unwrap().len();

    // A liar claims the victim's stored 1.0 carries the origin's signature
    // of 2.0: the victim still gets 2.0, from the origin.
    let liar = Server::start(&origin, 7450, None);
    let liar_url = format!("http://{origin}:7450");
    let offer = |version: &str, size: u64, sig: &[u8]| {
        format!(
            r#"{{"images":[{{"id":"{v1_id}","size":{size},"name":"{name}","labels":{{"arch":"amd64","os":"linux","version":"{version}"}},"signatures":[{{"fingerprint":"{fingerprint}","sha256":"{}"}}]}}]}}"#,
            hex_of(&sha2::Sha256::digest(sig))
        )
        .into_bytes()
    };
    let query = |labels: &str| {
        format!(
            "/skiff/v1/images?name={}&arch=amd64&os=linux{labels}",
            name.replace('/', "%2F")
        )
    };
    liar.put(
        &query(""),
        offer("2.0", v2_size, &v2_sig),
        None,
        "application/json",
    );
    let out = victim.run(&["fetch", "--peer", &liar_url, &name]);
    let got = image_id(&out);
    assert_ne!(
        got,
        v1_id,
        "a liar made the fetch return the stored 1.0: {}",
        stderr(&out)
    );
    assert!(liar.requests(&query("")) > 0, "the liar was never asked");

    // The origin is gone; the liar offers 1.0 (really signed) as 2.0, and
    // serves it: refused before it is stored.
    site.shutdown();
    let h1_serving = h1.serve(&format!("{}:7440", lan.host_ip(0)));
    let h1_addr = h1_serving.url.trim_start_matches("http://").to_string();
    let (code, pieces) = raw(
        &h1_addr,
        "GET",
        &format!("/skiff/v1/aci/{v1_hex}/pieces"),
        "",
    );
    assert_eq!(code, 200);
    liar.put(
        &query("&version=2.0"),
        offer("2.0", v1_size, &v1_sig),
        None,
        "application/json",
    );
    liar.put(
        &format!("/skiff/v1/aci/{v1_hex}/pieces"),
        pieces,
        None,
        "application/json",
    );
    liar.put(
        &format!("/skiff/v1/aci/{v1_hex}"),
        std::fs::read(&v1).unwrap(),
        None,
        "application/octet-stream",
    );
    liar.put(
        &format!("/skiff/v1/aci/{v1_hex}/signatures/{fingerprint}"),
        v1_sig.clone(),
        None,
        "text/plain",
    );
    let before = fresh.images();
    let out = fresh.run(&["fetch", "--peer", &liar_url, &format!("{name}:2.0")]);
    assert_refused(&out, "1.0 offered as 2.0");
    let err = stderr(&out);
    assert!(err.contains("without labels version=2.0"), "{err}");
    assert!(
        err.contains(&format!("peers {liar_url} offered")),
        "the liar was not named: {err}"
    );
    assert_eq!(fresh.images(), before, "the other version was stored");
    let leftovers = std::fs::read_dir(fresh.root.join("data/cas/tmp"))
        .unwrap()
        .count();
    assert_eq!(leftovers, 0, "a refused download left staging files");
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn docker_layers_come_from_peers_and_a_bad_layer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let registry = crate::oci::Registry::start(None);
    let layout = crate::oci::layered_image(dir.path(), false);
    crate::oci::sh(&format!(
        "skopeo copy --dest-tls-verify=false oci:{}:v1 docker://127.0.0.1:{}/share/app:v1",
        layout.display(),
        registry.port
    ));
    let image = format!("docker://127.0.0.1:{}/share/app:v1", registry.port);
    let fetch = |root: &Path, peers: &[&str]| {
        let mut cmd = skiff_in(root);
        cmd.args(["--insecure-options=image,http", "fetch"]);
        for p in peers {
            cmd.args(["--peer", p]);
        }
        output(cmd.arg(&image))
    };
    let first = dir.path().join("first");
    let id = image_id(&fetch(&first, &[]));
    let serving = serve(skiff_in(&first).args(["serve", "--listen", "127.0.0.1:0"]));
    let layers: Vec<String> = std::fs::read_dir(first.join("data/cas/blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!layers.is_empty());

    // Two lying peers, for every layer: one offers the true piece list
    // and sends other bytes; one offers a list of its own other bytes (each
    // piece matches it, the whole is not the layer). Both are named and
    // skipped; the layers come from the honest peer.
    let honest = serving.url.trim_start_matches("http://").to_string();
    let liar = |wrong_list: bool| {
        let port = crate::oci::free_port();
        let server = Server::start("127.0.0.1", port, None);
        for hex in &layers {
            let (status, list) = raw(
                &honest,
                "GET",
                &format!("/skiff/v1/layers/{hex}/pieces"),
                "",
            );
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&list));
            let mut list: serde_json::Value = serde_json::from_slice(&list).unwrap();
            let size = list["size"].as_u64().unwrap() as usize;
            let piece = list["piece_size"].as_u64().unwrap() as usize;
            let other: Vec<u8> = (0..size).map(|i| (i * 7 + 3) as u8).collect();
            if wrong_list {
                list["sha256"] = other
                    .chunks(piece)
                    .map(|c| hex_of(&<sha2::Sha256 as sha2::Digest>::digest(c)))
                    .collect();
            }
            server.put(
                &format!("/skiff/v1/layers/{hex}/pieces"),
                list.to_string().into_bytes(),
                None,
                "application/json",
            );
            server.put(
                &format!("/skiff/v1/layers/{hex}"),
                other,
                None,
                "application/octet-stream",
            );
        }
        (server, format!("http://127.0.0.1:{port}"))
    };
    let (_wrong_bytes, wrong_bytes_url) = liar(false);
    let (_wrong_list, wrong_list_url) = liar(true);
    let second = dir.path().join("second");
    let out = fetch(&second, &[&wrong_list_url, &wrong_bytes_url, &serving.url]);
    assert_eq!(image_id(&out), id, "{}", stderr(&out));
    let err = stderr(&out);
    for liar in [&wrong_list_url, &wrong_bytes_url] {
        assert!(
            err.contains(&format!("peer {liar} dropped")),
            "the lying peer {liar} was not named: {err}"
        );
    }
    assert!(
        err.contains("its piece list describes another blob"),
        "{err}"
    );
    assert!(
        err.contains(&format!("in pieces from peer {}", serving.url)),
        "{err}"
    );
    let out = output(skiff_in(&second).args(["image", "verify"]));
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A multicast DNS answer announcing a skiff server `instance` at `port`
/// on each of `addrs` (RFC 6762/6763: PTR, SRV, TXT and A records).
fn mdns_answer(instance: &str, port: u16, addrs: &[std::net::Ipv4Addr]) -> Vec<u8> {
    fn name(out: &mut Vec<u8>, name: &str) {
        for label in name.split('.') {
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
        }
        out.push(0);
    }
    fn record(out: &mut Vec<u8>, owner: &str, kind: u16, class: u16, data: &[u8]) {
        name(out, owner);
        out.extend_from_slice(&kind.to_be_bytes());
        out.extend_from_slice(&class.to_be_bytes());
        out.extend_from_slice(&120u32.to_be_bytes());
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(data);
    }
    let service = "_skiff._tcp.local";
    let full = format!("{instance}.{service}");
    let host = format!("{instance}.local");
    let mut out = vec![0, 0, 0x84, 0, 0, 0];
    out.extend_from_slice(&(3 + addrs.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    let mut ptr = Vec::new();
    name(&mut ptr, &full);
    record(&mut out, service, 12, 1, &ptr);
    let mut srv = vec![0, 0, 0, 0];
    srv.extend_from_slice(&port.to_be_bytes());
    name(&mut srv, &host);
    record(&mut out, &full, 33, 0x8001, &srv);
    let txt = b"proto=/skiff/v1";
    let mut data = vec![txt.len() as u8];
    data.extend_from_slice(txt);
    record(&mut out, &full, 16, 0x8001, &data);
    for addr in addrs {
        record(&mut out, &host, 1, 0x8001, &addr.octets());
    }
    out
}

/// Sends `answer` to `to` (the mDNS group, or one host) from inside
/// namespace `ns` (as address `from`) every 100 ms until `stop`; how many
/// were sent.
fn announce_falsely(
    ns: &str,
    from: std::net::Ipv4Addr,
    to: SocketAddr,
    answer: Vec<u8>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<usize> {
    let netns = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
    std::thread::spawn(move || {
        // Only this thread enters the namespace.
        rustix::thread::move_into_link_name_space(
            std::os::fd::AsFd::as_fd(&netns),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .unwrap();
        let socket = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )
        .unwrap();
        socket.set_reuse_address(true).unwrap();
        // Answers count only from port 5353.
        let local = SocketAddr::from(([0, 0, 0, 0], 5353));
        socket.bind(&local.into()).unwrap();
        socket.set_multicast_if_v4(&from).unwrap();
        let mut sent = 0;
        while !stop.load(Ordering::Relaxed) {
            socket.send_to(&answer, &to.into()).unwrap();
            sent += 1;
            std::thread::sleep(Duration::from_millis(100));
        }
        sent
    })
}

#[test]
fn hosts_find_each_other_on_the_segment_and_false_announcements_are_ignored() {
    let lan = Lan::new(3);
    let dir = tempfile::tempdir().unwrap();
    let started = Origin::start(&lan, dir.path());
    let hosts = started.trusting_hosts(&lan, dir.path());
    let Origin {
        mut site, wanted, ..
    } = started;
    let [h1, h2, evil] = &hosts[..] else {
        unreachable!()
    };
    let id = image_id(&h1.run(&["fetch", &wanted]));
    let h1_addr = format!("{}:7440", lan.host_ip(0));
    // Both have a second subnet on their one interface: each joins the
    // group once per interface, and names itself by the address it sends
    // from.
    for (i, host) in [h1, h2].iter().enumerate() {
        let addr = format!("192.168.77.{}/24", 11 + i);
        ip(&["-n", &host.ns, "addr", "add", &addr, "dev", "eth0"]);
    }
    // Announced on the segment; listening on every address.
    let _serving = serve(
        h1.skiff()
            .args(["serve", "--mdns", "--listen", "0.0.0.0:7440"]),
    );
    site.shutdown();

    // The second host names no peer: its peers.d only asks the segment.
    let peers_d = h2.root.join("etc/peers.d");
    std::fs::create_dir_all(&peers_d).unwrap();
    std::fs::write(peers_d.join("site.json"), r#"{"mdns": true}"#).unwrap();
    // Meanwhile another host announces servers at a loopback address, an
    // address off the site, a cloud metadata service's, the fetching
    // host's own address and another host's of the segment (the origin's,
    // on another port): a host may announce only itself.
    let own: std::net::Ipv4Addr = lan.host_ip(1).parse().unwrap();
    let evil_ip: std::net::Ipv4Addr = lan.host_ip(2).parse().unwrap();
    let neighbour: std::net::Ipv4Addr = lan.origin_ip().parse().unwrap();
    let answer = mdns_answer(
        "skiff-evil",
        7441,
        &[
            [127, 0, 0, 1].into(),
            [8, 8, 8, 8].into(),
            [169, 254, 169, 254].into(),
            own,
            neighbour,
        ],
    );
    let group = SocketAddr::from(([224, 0, 0, 251], 5353));
    let stop = Arc::new(AtomicBool::new(false));
    let announcer = announce_falsely(&evil.ns, evil_ip, group, answer, stop.clone());
    // And it announces itself, sending not to the group but to the
    // fetching host alone, as a host off the segment could.
    let unicast = announce_falsely(
        &evil.ns,
        evil_ip,
        SocketAddr::from((own, 5353)),
        mdns_answer("skiff-evil2", 7441, &[evil_ip]),
        stop.clone(),
    );
    let out = h2.run(&["fetch", &wanted]);
    stop.store(true, Ordering::Relaxed);
    assert!(announcer.join().unwrap() > 0 && unicast.join().unwrap() > 0);
    assert_eq!(image_id(&out), id, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("1 peer(s) answered on the local segment"),
        "a false announcement was taken (or the true one missed): {err}"
    );
    assert!(err.contains(&format!("http://{h1_addr}")), "{err}");
    let out = h2.run(&["image", "verify"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn mirrors_and_several_templates_feed_a_fetch_and_a_lying_mirror_is_refused() {
    let lan = Lan::new(4);
    let dir = tempfile::tempdir().unwrap();
    let started = Origin::start(&lan, dir.path());
    let hosts = started.trusting_hosts(&lan, dir.path());
    let Origin {
        mut site,
        ca,
        gpg,
        name,
        wanted,
        aci_file,
        ..
    } = started;
    let origin = lan.origin_ip();
    let [h1, h2, h3, victim] = &hosts[..] else {
        unreachable!()
    };
    // A mirror on another port has the image, its signature and its piece
    // list, as the origin has; the origin's discovery page names both.
    let made = output(skiff().args(["image", "pieces"]).arg(&aci_file));
    assert!(made.status.success(), "{}", stderr(&made));
    let pieces = std::fs::read(format!("{}.pieces", aci_file.display())).unwrap();
    let mirror = Server::start(&origin, 8443, Some(&ca));
    let signature = gpg.sign(&aci_file);
    for server in [&site, &mirror] {
        server.put(
            ACI_PATH,
            std::fs::read(&aci_file).unwrap(),
            None,
            "application/octet-stream",
        );
        server.put(
            &format!("{ACI_PATH}.asc"),
            signature.clone(),
            None,
            "text/plain",
        );
        server.put(
            &format!("{ACI_PATH}.pieces"),
            pieces.clone(),
            None,
            "application/json",
        );
    }
    let template =
        |host: &str| format!("https://{host}/images/busybox-{{version}}-{{os}}-{{arch}}.{{ext}}");
    site.put(
        "/busybox?ac-discovery=1",
        format!(
            "<html><head>\n\
             <meta name=\"ac-discovery\" content=\"{name} {}\">\n\
             <meta name=\"ac-discovery\" content=\"{name} {}\">\n\
             </head></html>\n",
            template(&origin),
            template(&format!("{origin}:8443"))
        )
        .into_bytes(),
        None,
        "text/html",
    );
    // Both servers the page names send pieces of one swarm fetch (a peer
    // is listed, with nothing yet).
    let serving = h2.serve(&format!("{}:7440", lan.host_ip(1)));
    let out = h1.fetch_via(&[&serving.url], &wanted);
    let id = image_id(&out);
    let (from_origin, from_mirror) = (site.bytes_sent(ACI_PATH), mirror.bytes_sent(ACI_PATH));
    assert!(
        from_origin > 0 && from_mirror > 0,
        "origin sent {from_origin} bytes, the mirror {from_mirror}: {}",
        stderr(&out)
    );
    assert_eq!(site.full_bodies(ACI_PATH) + mirror.full_bodies(ACI_PATH), 0);

    // The origin answers that it has no signature: the mirror's is not
    // taken instead (a mirror cannot choose the version while the origin
    // answers), and the fetch fails as it would without mirrors.
    site.remove(&format!("{ACI_PATH}.asc"));
    let out = h3.fetch_via(&[&serving.url], &wanted);
    assert_refused(&out, "a fetch whose origin has no signature");
    assert!(h3.images().is_empty(), "{}", stderr(&out));

    // The origin is gone: a host whose mirrors.d names the mirror fetches
    // from it.
    site.shutdown();
    let mirrors_file = format!(
        r#"{{"mirrors": [{{"prefix": "{name}", "templates": ["{}"]}}]}}"#,
        template(&format!("{origin}:8443"))
    );
    for host in [h3, victim] {
        let mirrors_d = host.root.join("etc/mirrors.d");
        std::fs::create_dir_all(&mirrors_d).unwrap();
        std::fs::write(mirrors_d.join("site.json"), &mirrors_file).unwrap();
    }
    let out = h3.run(&["fetch", &wanted]);
    assert_eq!(image_id(&out), id, "{}", stderr(&out));
    assert!(stderr(&out).contains("mirrors.d"), "{}", stderr(&out));

    // The mirror lies: at 1.0's address it serves 2.0, validly signed. It
    // is refused before it is stored.
    let layout = dir.path().join("v2-layout");
    busybox_layout(&layout);
    let manifest = BUSYBOX_MANIFEST
        .replace("example.com/busybox", &name)
        .replace("\"1.0\"", "\"2.0\"");
    std::fs::write(layout.join("manifest"), manifest).unwrap();
    let v2 = dir.path().join("busybox-2.aci");
    build_image(&layout, &v2);
    mirror.put(
        ACI_PATH,
        std::fs::read(&v2).unwrap(),
        None,
        "application/octet-stream",
    );
    mirror.put(
        &format!("{ACI_PATH}.asc"),
        gpg.sign(&v2),
        None,
        "text/plain",
    );
    let out = victim.run(&["fetch", &wanted]);
    assert_refused(&out, "another version from a mirror");
    assert!(
        stderr(&out).contains("2.0") || stderr(&out).contains("version"),
        "{}",
        stderr(&out)
    );
    assert!(victim.images().is_empty(), "the mirror's image was stored");
    let leftovers = std::fs::read_dir(victim.root.join("data/cas/tmp"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(leftovers, 0, "a refused mirror download left staging files");
    for host in [h1, h3] {
        let out = host.run(&["image", "verify"]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
}
