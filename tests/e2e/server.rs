//! A small HTTP/HTTPS server for fetch tests: a test CA made with rcgen, one
//! thread per connection, files from memory, ETags (304), byte ranges (206),
//! and per-path request counters. It listens on a loopback address given by
//! the test (127.0.0.N, port 443 or 80: tests run as root), so image names
//! like `127.0.0.2/app` discover against it exactly as against a real host.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

/// A CA and a server certificate for one IP address.
pub struct TestCa {
    pub ca_pem: String,
    cert_der: Vec<u8>,
    key_der: Vec<u8>,
}

impl TestCa {
    pub fn new(ip: &str) -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "skiff test CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf_params = CertificateParams::new(vec![ip.to_string()]).unwrap();
        let issuer = Issuer::from_params(&ca_params, &ca_key);
        let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
        TestCa {
            ca_pem: ca_cert.pem(),
            cert_der: leaf.der().to_vec(),
            key_der: leaf_key.serialize_der(),
        }
    }

    /// Writes the CA certificate to `path` (for SSL_CERT_FILE).
    pub fn write_ca(&self, path: &std::path::Path) {
        std::fs::write(path, &self.ca_pem).unwrap();
    }
}

#[derive(Clone)]
pub struct Resource {
    pub body: Vec<u8>,
    pub etag: Option<String>,
    pub content_type: &'static str,
}

#[derive(Default)]
pub struct State {
    pub files: HashMap<String, Resource>,
    /// GETs per path (with the query).
    pub requests: HashMap<String, usize>,
    /// Full-body (200) answers per path.
    pub full_bodies: HashMap<String, usize>,
    /// Body bytes sent per path (whole or ranges).
    pub bytes_sent: HashMap<String, usize>,
    /// Paths answered only after this delay (a distant origin).
    pub slow: HashMap<String, std::time::Duration>,
    /// Paths whose next answer is cut after this many bytes (once).
    pub cut_once: HashMap<String, usize>,
    /// The `Authorization` header every request must carry (401 if not).
    pub required_auth: Option<String>,
}

pub struct Server {
    pub state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Starts serving on `ip:port`, with TLS if `ca` is given.
    pub fn start(ip: &str, port: u16, ca: Option<&TestCa>) -> Self {
        let addr = SocketAddr::new(ip.parse::<IpAddr>().unwrap(), port);
        let listener = TcpListener::bind(addr)
            .unwrap_or_else(|e| panic!("bind {addr}: {e} (tests run as root)"));
        listener.set_nonblocking(true).unwrap();
        let tls = ca.map(|ca| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(
                    vec![rustls::pki_types::CertificateDer::from(ca.cert_der.clone())],
                    rustls::pki_types::PrivateKeyDer::try_from(ca.key_der.clone()).unwrap(),
                )
                .unwrap();
            Arc::new(config)
        });
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !sp.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (st, tls) = (st.clone(), tls.clone());
                        std::thread::spawn(move || {
                            let _ = stream.set_nonblocking(false);
                            let _ =
                                stream.set_read_timeout(Some(std::time::Duration::from_secs(10)));
                            match tls {
                                Some(cfg) => {
                                    let Ok(conn) = rustls::ServerConnection::new(cfg) else {
                                        return;
                                    };
                                    let mut tls_stream = rustls::StreamOwned::new(conn, stream);
                                    serve(&mut tls_stream, &st);
                                }
                                None => {
                                    let mut s = stream;
                                    serve(&mut s, &st);
                                }
                            }
                        });
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
                }
            }
        });
        Server {
            state,
            stop,
            thread: Some(thread),
        }
    }

    pub fn put(&self, path: &str, body: Vec<u8>, etag: Option<&str>, content_type: &'static str) {
        self.state.lock().unwrap().files.insert(
            path.to_string(),
            Resource {
                body,
                etag: etag.map(str::to_string),
                content_type,
            },
        );
    }

    pub fn remove(&self, path: &str) {
        self.state.lock().unwrap().files.remove(path);
    }

    pub fn full_bodies(&self, path: &str) -> usize {
        *self
            .state
            .lock()
            .unwrap()
            .full_bodies
            .get(path)
            .unwrap_or(&0)
    }

    /// Answers `path` only after `delay` from now on.
    pub fn slow_down(&self, path: &str, delay: std::time::Duration) {
        self.state
            .lock()
            .unwrap()
            .slow
            .insert(path.to_string(), delay);
    }

    pub fn bytes_sent(&self, path: &str) -> usize {
        *self
            .state
            .lock()
            .unwrap()
            .bytes_sent
            .get(path)
            .unwrap_or(&0)
    }

    pub fn requests(&self, path: &str) -> usize {
        *self.state.lock().unwrap().requests.get(path).unwrap_or(&0)
    }
}

impl Server {
    /// Stops listening: the site is gone from then on.
    pub fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn serve<S: Read + Write>(stream: &mut S, state: &Mutex<State>) {
    let mut reader = BufReader::new(&mut *stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut headers = HashMap::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() || line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    drop(reader);
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_string();
    let (resource, cut) = {
        let mut st = state.lock().unwrap();
        *st.requests.entry(path.clone()).or_default() += 1;
        if st.required_auth.is_some() && st.required_auth.as_ref() != headers.get("authorization") {
            drop(st);
            let _ = stream.write_all(
                b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            return;
        }
        let cut = st.cut_once.remove(&path);
        let slow = st.slow.get(&path).copied();
        drop(st);
        if let Some(delay) = slow {
            std::thread::sleep(delay);
        }
        let st = state.lock().unwrap();
        (st.files.get(&path).cloned(), cut)
    };
    let Some(res) = resource else {
        let _ = stream
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    };
    let etag_header = res
        .etag
        .as_ref()
        .map_or(String::new(), |e| format!("ETag: {e}\r\n"));
    if let (Some(tag), Some(want)) = (&res.etag, headers.get("if-none-match"))
        && tag == want
    {
        let _ = write!(
            stream,
            "HTTP/1.1 304 Not Modified\r\n{etag_header}Connection: close\r\n\r\n"
        );
        return;
    }
    // `bytes=START-` or `bytes=START-END`, honoured if If-Range matches.
    let range = headers
        .get("range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
        .and_then(|(a, b)| {
            let start = a.parse::<usize>().ok()?;
            let end = match b {
                "" => res.body.len(),
                b => (b.parse::<usize>().ok()? + 1).min(res.body.len()),
            };
            (start < end).then_some(start..end)
        })
        .filter(|_| headers.get("if-range") == res.etag.as_ref());
    if request_line.starts_with("HEAD ") {
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\n{etag_header}Connection: close\r\n\r\n",
            res.content_type,
            res.body.len()
        );
        return;
    }
    let (status, body) = match range {
        Some(r) => ("206 Partial Content", &res.body[r]),
        None => {
            *state
                .lock()
                .unwrap()
                .full_bodies
                .entry(path.clone())
                .or_default() += 1;
            ("200 OK", &res.body[..])
        }
    };
    *state
        .lock()
        .unwrap()
        .bytes_sent
        .entry(path.clone())
        .or_default() += body.len();
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{etag_header}Connection: close\r\n\r\n",
        res.content_type,
        body.len()
    );
    let send = cut.map_or(body.len(), |c| c.min(body.len()));
    let _ = stream.write_all(&body[..send]);
    let _ = stream.flush();
}
