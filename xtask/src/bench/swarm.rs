//! `cargo xtask bench swarm`: hosts fetching one new image at once, from
//! the origin alone and as a swarm of peers.
//!
//! Every host is a network namespace with its own data dir, on one bridge
//! (in a namespace of its own) with the origin; every link, the origin's
//! too, is shaped with `tc` (tbf) to the same rate in both directions. The
//! origin is an HTTPS server (in this process, rustls; byte ranges) with
//! the discovery page, the signed ACI, its signature and its piece list.
//! Each run starts every host's `skiff fetch` at once and takes the time
//! until the last one has the image; it counts the bytes the origin sent
//! for the image. Origin-only: no peers. Swarm: each host runs `skiff
//! serve` and lists every host in peers.d.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsFd;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::*;

/// The origin's address (and the image's name prefix).
const SUBNET: &str = "10.77.0";

/// One benchmark's LAN: its namespaces, deleted when dropped.
struct Lan {
    namespaces: Vec<String>,
}

impl Drop for Lan {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn ip(args: &[&str]) -> Result<()> {
    run_quiet(Command::new("ip").args(args))
}

/// Shapes `dev` in `ns` to `rate` (egress; both ends of a link are shaped).
fn shape(ns: &str, dev: &str, rate: &str) -> Result<()> {
    run_quiet(Command::new("ip").args([
        "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", rate,
        "burst", "256kb", "latency", "100ms",
    ]))
}

/// The switch, the origin (.1) and `hosts` hosts (.11 …).
fn lan(hosts: usize, rate: &str) -> Result<Lan> {
    let tag = std::process::id() % 100_000;
    let switch = format!("sbs-{tag}");
    let origin = format!("sbo-{tag}");
    let mut lan = Lan {
        namespaces: vec![switch.clone()],
    };
    ip(&["netns", "add", &switch])?;
    ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"])?;
    ip(&["-n", &switch, "link", "set", "br0", "up"])?;
    let mut members = vec![(origin.clone(), format!("{SUBNET}.1"))];
    for i in 0..hosts {
        members.push((format!("sbh{i}-{tag}"), host_ip(i)));
    }
    for (i, (ns, addr)) in members.iter().enumerate() {
        ip(&["netns", "add", ns])?;
        lan.namespaces.push(ns.clone());
        let port = format!("p{i}");
        ip(&[
            "-n", &switch, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
            ns,
        ])?;
        ip(&["-n", &switch, "link", "set", &port, "master", "br0", "up"])?;
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", ns, "link", "set", "eth0", "up"])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        shape(ns, "eth0", rate)?;
        shape(&switch, &port, rate)?;
    }
    Ok(lan)
}

fn host_ip(i: usize) -> String {
    format!("{SUBNET}.{}", 11 + i)
}

/// The origin: HTTPS, files from disk, byte ranges, keep-alive; counts the
/// body bytes it sends per path.
struct Origin {
    stop: Arc<AtomicBool>,
    sent: Arc<Mutex<HashMap<String, Arc<AtomicU64>>>>,
}

impl Origin {
    /// Serves `files` (URL path → file) on `addr` in namespace `ns`.
    fn start(
        ns: &str,
        addr: SocketAddr,
        files: HashMap<String, PathBuf>,
        cert: &Cert,
    ) -> Result<Self> {
        // A socket belongs to the namespace it was made in: made by a
        // thread that moved there.
        let netns = std::fs::File::open(format!("/run/netns/{ns}"))?;
        let listener = std::thread::scope(|s| {
            s.spawn(|| -> Result<TcpListener> {
                rustix::thread::move_into_link_name_space(
                    netns.as_fd(),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )?;
                Ok(TcpListener::bind(addr)?)
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the origin's bind thread panicked"))?
        })?;
        listener.set_nonblocking(true)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()?
                .with_no_client_auth()
                .with_single_cert(
                    vec![rustls::pki_types::CertificateDer::from(cert.der.clone())],
                    rustls::pki_types::PrivateKeyDer::try_from(cert.key.clone())
                        .map_err(|e| anyhow::anyhow!("the origin's key: {e}"))?,
                )?,
        );
        let stop = Arc::new(AtomicBool::new(false));
        let sent: Arc<Mutex<HashMap<String, Arc<AtomicU64>>>> = Arc::default();
        let files = Arc::new(files);
        let (st, counters) = (stop.clone(), sent.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                };
                let (config, files, counters) = (config.clone(), files.clone(), counters.clone());
                std::thread::spawn(move || {
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
                    let Ok(conn) = rustls::ServerConnection::new(config) else {
                        return;
                    };
                    let mut tls = rustls::StreamOwned::new(conn, stream);
                    while answer(&mut tls, &files, &counters).unwrap_or(false) {}
                });
            }
        });
        Ok(Origin { stop, sent })
    }

    /// Body bytes sent for `path` so far.
    fn sent(&self, path: &str) -> u64 {
        self.sent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(path)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    fn reset(&self) {
        self.sent.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Answers one request; false when the connection is done.
fn answer<S: Read + Write>(
    stream: &mut S,
    files: &HashMap<String, PathBuf>,
    counters: &Mutex<HashMap<String, Arc<AtomicU64>>>,
) -> Result<bool> {
    let mut reader = BufReader::new(&mut *stream);
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(false);
    }
    let mut range = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" {
            break;
        }
        let lower = header.to_ascii_lowercase();
        if let Some(r) = lower.strip_prefix("range: bytes=") {
            range = r
                .trim()
                .split_once('-')
                .map(|(a, b)| (a.to_string(), b.to_string()));
        }
    }
    drop(reader);
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let Some(file) = files.get(&path) else {
        write!(
            stream,
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
        )?;
        return Ok(true);
    };
    let mut file = std::fs::File::open(file)?;
    let size = file.metadata()?.len();
    let (status, start, end) = match range {
        Some((a, b)) => {
            let start: u64 = a.parse()?;
            let end: u64 = if b.is_empty() {
                size
            } else {
                (b.parse::<u64>()? + 1).min(size)
            };
            ("206 Partial Content", start, end)
        }
        None => ("200 OK", 0, size),
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{size}\r\n\
         Accept-Ranges: bytes\r\n\r\n",
        end - start,
        end.saturating_sub(1)
    )?;
    file.seek(SeekFrom::Start(start))?;
    let counter = counters
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(path)
        .or_default()
        .clone();
    let mut left = end - start;
    let mut buf = vec![0u8; 1 << 16];
    while left > 0 {
        let n = file.read(&mut buf[..left.min(1 << 16) as usize])?;
        if n == 0 {
            break;
        }
        stream.write_all(&buf[..n])?;
        counter.fetch_add(n as u64, Ordering::Relaxed);
        left -= n as u64;
    }
    stream.flush()?;
    Ok(true)
}

/// A self-signed certificate for the origin's address (its own CA).
struct Cert {
    der: Vec<u8>,
    key: Vec<u8>,
    pem: String,
}

fn cert(addr: &str) -> Result<Cert> {
    let key = rcgen::KeyPair::generate()?;
    let params = rcgen::CertificateParams::new(vec![addr.to_string()])?;
    let cert = params.self_signed(&key)?;
    Ok(Cert {
        der: cert.der().to_vec(),
        key: key.serialize_der(),
        pem: cert.pem(),
    })
}

/// One host's directories and its `skiff` command.
struct Host {
    ns: String,
    dir: PathBuf,
}

impl Host {
    fn skiff(&self, skiff: &Path, ca: &Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns])
            .arg(skiff)
            .arg("--dir")
            .arg(self.dir.join("data"))
            .arg("--local-config")
            .arg(self.dir.join("etc"))
            .arg("--system-config")
            .arg(self.dir.join("usr"))
            .env("SSL_CERT_FILE", ca)
            .env("SKIFF_LOG", "warn");
        cmd
    }
}

/// What one run measured.
struct Run {
    seconds: f64,
    origin_bytes: u64,
}

/// Starts every host's fetch at once; the time until the last one ends.
fn fetch_all(hosts: &[Host], skiff: &Path, ca: &Path, image: &str) -> Result<f64> {
    let start = Instant::now();
    let children: Vec<Child> = hosts
        .iter()
        .map(|h| {
            h.skiff(skiff, ca)
                .args(["fetch", image])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
        })
        .collect::<std::io::Result<_>>()?;
    let mut ids = Vec::new();
    for child in children {
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "a host's fetch failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        ids.push(String::from_utf8_lossy(&out.stdout).trim().to_string());
    }
    let seconds = start.elapsed().as_secs_f64();
    if ids.iter().any(|id| *id != ids[0]) {
        bail!("the hosts fetched different images: {ids:?}");
    }
    Ok(seconds)
}

/// Fresh data dirs trusting `key` for `prefix`, peers.d naming `peers`.
fn reset_hosts(
    hosts: &[Host],
    skiff: &Path,
    prefix: &str,
    key: &Path,
    peers: &[String],
) -> Result<()> {
    for h in hosts {
        let _ = std::fs::remove_dir_all(&h.dir);
        std::fs::create_dir_all(h.dir.join("etc/peers.d"))?;
        run_quiet(
            Command::new(skiff)
                .arg("--local-config")
                .arg(h.dir.join("etc"))
                .arg("--system-config")
                .arg(h.dir.join("usr"))
                .args(["trust", "--prefix", prefix, "--skip-fingerprint-review"])
                .arg(key)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )?;
        if !peers.is_empty() {
            let list: Vec<String> = peers.iter().map(|p| format!("\"{p}\"")).collect();
            std::fs::write(
                h.dir.join("etc/peers.d/site.json"),
                format!("{{\"peers\": [{}]}}\n", list.join(", ")),
            )?;
        }
    }
    Ok(())
}

/// `cargo xtask bench swarm [--quick]`.
pub fn swarm(root: &Path, skiff: &Path, quick: bool) -> Result<()> {
    let (n, mib, rate) = if quick {
        (4, 32u64, "100mbit")
    } else {
        (16, 256u64, "100mbit")
    };
    let work = PathBuf::from(WORK).join("swarm");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    println!("bench swarm: {n} hosts fetch a {mib} MiB image at once, every link {rate}");

    // The image: random bytes (nothing to compress), signed, cut in pieces.
    let origin_ip = format!("{SUBNET}.1");
    let prefix = format!("{origin_ip}/swarm");
    let layout = work.join("layout");
    std::fs::create_dir_all(layout.join("rootfs"))?;
    let mut blob = std::fs::File::create(layout.join("rootfs/blob"))?;
    let mut urandom = std::fs::File::open("/dev/urandom")?.take(mib << 20);
    std::io::copy(&mut urandom, &mut blob)?;
    drop(blob);
    std::fs::write(
        layout.join("manifest"),
        format!(
            r#"{{"acKind":"ImageManifest","acVersion":"0.8.11","name":"{prefix}","labels":[{{"name":"version","value":"1.0"}},{{"name":"os","value":"linux"}},{{"name":"arch","value":"amd64"}}]}}"#
        ),
    )?;
    let site = work.join("site");
    std::fs::create_dir_all(&site)?;
    let aci = site.join("swarm-1.0-linux-amd64.aci");
    build_image(skiff, &["--compression", "none"], &layout, &aci)?;
    std::fs::remove_dir_all(&layout)?;
    let keys = work.join("key");
    run_quiet(
        Command::new(skiff)
            .args(["key", "generate", "--out"])
            .arg(&keys)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )?;
    run_quiet(
        Command::new(skiff)
            .args(["image", "sign", "--key"])
            .arg(work.join("key.sec.asc"))
            .arg(&aci)
            .stderr(Stdio::null()),
    )?;
    run_quiet(
        Command::new(skiff)
            .args(["image", "pieces"])
            .arg(&aci)
            .stderr(Stdio::null()),
    )?;
    let size = std::fs::metadata(&aci)?.len();
    let page = site.join("discovery.html");
    std::fs::write(
        &page,
        format!(
            "<html><head><meta name=\"ac-discovery\" content=\"{prefix} https://{origin_ip}/images/swarm-{{version}}-{{os}}-{{arch}}.{{ext}}\"></head></html>\n"
        ),
    )?;
    let image_path = "/images/swarm-1.0-linux-amd64.aci".to_string();
    let mut files = HashMap::new();
    files.insert("/swarm?ac-discovery=1".to_string(), page);
    for ext in ["", ".asc", ".pieces"] {
        let mut file = aci.clone().into_os_string();
        file.push(ext);
        files.insert(format!("{image_path}{ext}"), PathBuf::from(file));
    }

    let cert = cert(&origin_ip)?;
    let ca = work.join("ca.pem");
    std::fs::write(&ca, &cert.pem)?;
    let lan = lan(n, rate)?;
    let origin_ns = lan.namespaces[1].clone();
    let origin = Origin::start(
        &origin_ns,
        format!("{origin_ip}:443").parse()?,
        files,
        &cert,
    )?;
    let hosts: Vec<Host> = lan.namespaces[2..]
        .iter()
        .enumerate()
        .map(|(i, ns)| Host {
            ns: ns.clone(),
            dir: work.join(format!("host{i}")),
        })
        .collect();
    let image = format!("{prefix}:1.0");
    let key = work.join("key.pub.asc");

    // Origin only.
    reset_hosts(&hosts, skiff, &prefix, &key, &[])?;
    origin.reset();
    let alone = Run {
        seconds: fetch_all(&hosts, skiff, &ca, &image)?,
        origin_bytes: origin.sent(&image_path),
    };
    println!(
        "  origin only: {:.1} s, the origin sent {:.2}× the image",
        alone.seconds,
        alone.origin_bytes as f64 / size as f64
    );

    // A swarm: every host serves and knows the others.
    let peers: Vec<String> = (0..n)
        .map(|i| format!("http://{}:7440", host_ip(i)))
        .collect();
    reset_hosts(&hosts, skiff, &prefix, &key, &peers)?;
    let mut servers = Vec::new();
    for (i, h) in hosts.iter().enumerate() {
        let mut child = h
            .skiff(skiff, &ca)
            .args(["serve", "--listen", &format!("{}:7440", host_ip(i))])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            BufReader::new(out).read_line(&mut line)?;
        }
        servers.push(child);
        if !line.starts_with("http://") {
            bail!("skiff serve did not start on host {i}");
        }
    }
    origin.reset();
    let swarm = fetch_all(&hosts, skiff, &ca, &image).map(|seconds| Run {
        seconds,
        origin_bytes: origin.sent(&image_path),
    });
    for mut s in servers {
        let _ = s.kill();
        let _ = s.wait();
    }
    let swarm = swarm?;
    println!(
        "  swarm:       {:.1} s, the origin sent {:.2}× the image",
        swarm.seconds,
        swarm.origin_bytes as f64 / size as f64
    );
    let speedup = alone.seconds / swarm.seconds.max(1e-9);
    println!(
        "  swarm vs origin only: {speedup:.1}× faster (goal ≥ 5×); origin bytes {:.2}× the image (goal ≤ 2×)",
        swarm.origin_bytes as f64 / size as f64
    );
    let path = write_result(
        root,
        "swarm.json",
        serde_json::json!({
            "hosts": n,
            "image_bytes": size,
            "link_rate": rate,
            "origin_only": {"seconds": alone.seconds, "origin_bytes": alone.origin_bytes},
            "swarm": {"seconds": swarm.seconds, "origin_bytes": swarm.origin_bytes},
            "speedup": speedup,
            "quick": quick,
        })
        .to_string(),
    )?;
    println!("  results: {}", path.display());
    drop(origin);
    drop(lan);
    std::fs::remove_dir_all(&work)?;
    Ok(())
}
