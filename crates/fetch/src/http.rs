//! HTTP(S) downloads: TLS roots (the system bundle, or `SSL_CERT_FILE`),
//! conditional GETs with ETags, Cache-Control max-age, retries with resume
//! on transient failures, and a progress bar on a terminal.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

use crate::FetchError;

/// The Debian CA bundle (package ca-certificates).
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Attempts for one download (first try plus retries).
const ATTEMPTS: u32 = 4;

/// How the client is set up.
#[derive(Debug, Clone, Default)]
pub struct HttpOptions {
    /// PEM bundle of trusted CAs instead of the system bundle (`SSL_CERT_FILE`).
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate (`--insecure-options=tls`).
    pub insecure_tls: bool,
    /// Allow `http://` (`--insecure-options=http`).
    pub allow_http: bool,
    /// Show a progress bar for downloads.
    pub progress: bool,
    /// auth.d credentials for appc hosts ([`crate::auth`]).
    pub auth: Vec<crate::auth::HostAuth>,
}

/// The slowest a body may come, in each minute after its first: a
/// server that trickles bytes (a hostile mirror, or one that starts fast
/// and then slows) cannot hold a fetch for ever, 60 s of silence at a time.
const MIN_RATE: u64 = 16 * 1024;
const WINDOW: Duration = Duration::from_secs(60);

/// Watches a body's pace, a window at a time: the first is a grace, each
/// later one must bring [`MIN_RATE`] bytes a second.
struct Pace {
    window_start: Instant,
    at_window_start: u64,
    grace: bool,
}

impl Pace {
    fn new(now: Instant) -> Self {
        Pace {
            window_start: now,
            at_window_start: 0,
            grace: true,
        }
    }

    /// Whether the body, `total` bytes at `now`, has become too slow.
    fn too_slow(&mut self, total: u64, now: Instant) -> bool {
        let window = now.saturating_duration_since(self.window_start);
        if window < WINDOW {
            return false;
        }
        let brought = total.saturating_sub(self.at_window_start);
        let slow = !self.grace && brought < window.as_secs().saturating_mul(MIN_RATE);
        (self.window_start, self.at_window_start, self.grace) = (now, total, false);
        slow
    }
}

fn too_slow_reason() -> String {
    format!(
        "the server sent less than {} KiB/s for {} s: given up",
        MIN_RATE / 1024,
        WINDOW.as_secs()
    )
}

/// What a failed request says about its server: unreachable (no
/// connection, or one that broke: worth another try, and another server)
/// or an error of the server's own (a certificate that does not verify,
/// a broken answer: no retry, and no other server instead).
fn send_error(url: &str, e: &ureq::Error) -> FetchError {
    let unreachable = match e {
        // TLS failures (rustls's) come through the connection's reads
        // and writes as invalid data.
        ureq::Error::Io(io) => io.kind() != io::ErrorKind::InvalidData,
        ureq::Error::Timeout(_) | ureq::Error::ConnectionFailed => true,
        _ => false,
    };
    let (url, reason) = (url.to_string(), e.to_string());
    if unreachable {
        FetchError::Unreachable { url, reason }
    } else {
        FetchError::Http { url, reason }
    }
}

/// Refuses a download past `limit` bytes.
pub fn within_limit(url: &str, bytes: u64, limit: u64) -> Result<(), FetchError> {
    if bytes > limit {
        return Err(FetchError::Http {
            url: url.to_string(),
            reason: format!(
                "the download is larger than {limit} bytes, the largest image allowed \
                 (--max-image-size raises it)"
            ),
        });
    }
    Ok(())
}

pub struct Http {
    /// Made at the first request: reading and parsing the CA bundle
    /// (~140 certificates, ~0.6 ms here) is work that an operation which
    /// finds everything in the store (`skiff run` of a cached image) does
    /// not need.
    agent: std::sync::OnceLock<ureq::Agent>,
    options: HttpOptions,
}

/// The outcome of a conditional download.
#[derive(Debug, Clone)]
pub enum Download {
    /// 304: what the store has is current.
    NotModified { max_age: i64 },
    Downloaded {
        etag: Option<String>,
        max_age: i64,
        bytes: u64,
    },
}

pub(crate) fn load_roots(path: &Path) -> Result<Vec<Certificate<'static>>, FetchError> {
    let pem = std::fs::read(path)
        .map_err(|e| FetchError::Tls(format!("cannot read CA bundle {}: {e}", path.display())))?;
    let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(FetchError::Tls(format!(
            "no certificates in CA bundle {}",
            path.display()
        )));
    }
    Ok(certs)
}

/// `max-age` from a Cache-Control header (0 if absent or `no-cache`/`no-store`).
fn max_age(cache_control: Option<&str>) -> i64 {
    let Some(cc) = cache_control else { return 0 };
    let mut age = 0;
    for directive in cc.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-cache" || lower == "no-store" {
            return 0;
        }
        if let Some(v) = lower.strip_prefix("max-age=") {
            age = v.trim_matches('"').parse().unwrap_or(0);
        }
    }
    age
}

pub(crate) fn transient(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

impl Http {
    /// A client with `options`; its CA bundle is read at the first
    /// request, and a bundle that cannot be read fails that request.
    pub fn new(options: HttpOptions) -> Self {
        Http {
            agent: std::sync::OnceLock::new(),
            options,
        }
    }

    /// The agent, made on first use.
    fn agent(&self) -> Result<&ureq::Agent, FetchError> {
        if let Some(agent) = self.agent.get() {
            return Ok(agent);
        }
        let agent = Self::make_agent(&self.options)?;
        Ok(self.agent.get_or_init(|| agent))
    }

    fn make_agent(options: &HttpOptions) -> Result<ureq::Agent, FetchError> {
        let roots = if options.insecure_tls {
            RootCerts::WebPki
        } else {
            let path = options
                .ca_file
                .clone()
                .unwrap_or_else(|| PathBuf::from(SYSTEM_CA_BUNDLE));
            RootCerts::Specific(std::sync::Arc::new(load_roots(&path)?))
        };
        let tls = TlsConfig::builder()
            .root_certs(roots)
            .disable_verification(options.insecure_tls)
            .build();
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .https_only(!options.allow_http)
            .http_status_as_error(false)
            .max_redirects(10)
            .timeout_connect(Some(Duration::from_secs(20)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            // No limit on a whole body (a large image on a slow link takes
            // long); a server silent for a minute is given up on.
            .timeout_per_read(Some(Duration::from_secs(60)))
            .user_agent(concat!("skiff/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Ok(agent)
    }

    pub fn check_scheme(&self, url: &str) -> Result<(), FetchError> {
        if url.starts_with("https://") {
            Ok(())
        } else if url.starts_with("http://") {
            if self.options.allow_http {
                Ok(())
            } else {
                Err(FetchError::Insecure {
                    what: format!("{url} is plain HTTP"),
                    option: "http",
                })
            }
        } else {
            Err(FetchError::Unsupported(format!(
                "'{url}' is not an http(s) URL"
            )))
        }
    }

    /// The client for peers, with the same CA roots.
    pub fn peer_client(&self) -> Result<crate::peers::PeerClient, FetchError> {
        crate::peers::PeerClient::new(self.options.ca_file.clone(), self.options.insecure_tls)
    }

    /// Whether plain HTTP is allowed (`--insecure-options=http`).
    pub fn allows_http(&self) -> bool {
        self.options.allow_http
    }

    /// A GET with `headers`, retried on transient failures; any status is
    /// returned.
    pub(crate) fn send(
        &self,
        url: &str,
        headers: &[(&str, String)],
    ) -> Result<ureq::http::Response<ureq::Body>, FetchError> {
        let agent = self.agent()?;
        let mut last = None;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(250 << attempt));
                tracing::info!(url, attempt, "retrying");
            }
            let mut req = agent.get(url);
            for (k, v) in headers {
                req = req.header(*k, v.as_str());
            }
            let own = headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("authorization"));
            // Not to a server whose certificate is not checked
            // (--insecure-options=tls): anyone in between would get them.
            if !own
                && !self.options.insecure_tls
                && let Some(auth) = crate::auth::header_for(&self.options.auth, url)
            {
                req = req.header("Authorization", auth);
            }
            match req.call() {
                Ok(resp) if transient(resp.status().as_u16()) => {
                    last = Some(FetchError::Status {
                        url: url.to_string(),
                        status: resp.status().as_u16(),
                    });
                }
                Ok(resp) => return Ok(resp),
                Err(e) => {
                    let e = send_error(url, &e);
                    if !matches!(e, FetchError::Unreachable { .. }) {
                        return Err(e);
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| FetchError::Http {
            url: url.to_string(),
            reason: "no attempt made".into(),
        }))
    }

    /// A HEAD, or a write (POST, PUT, PATCH) with `body`: sent once (a
    /// retried write could apply twice); any status is returned.
    pub(crate) fn send_once(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        body: Option<&[u8]>,
    ) -> Result<ureq::http::Response<ureq::Body>, FetchError> {
        self.check_scheme(url)?;
        let agent = self.agent()?;
        let err = |reason: String| FetchError::Http {
            url: url.to_string(),
            reason,
        };
        let mut builder = ureq::http::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            builder = builder.header(*k, v.as_str());
        }
        let sent = match body {
            Some(b) => builder
                .body(b)
                .map_err(|e| err(e.to_string()))
                .map(|r| agent.run(r)),
            None => builder
                .body(())
                .map_err(|e| err(e.to_string()))
                .map(|r| agent.run(r)),
        }?;
        sent.map_err(|e| err(e.to_string()))
    }

    /// GETs a small document (discovery page, key) of at most `limit` bytes.
    pub fn get_small(&self, url: &str, limit: u64) -> Result<Vec<u8>, FetchError> {
        self.get_expecting(url, &[], 200, limit)
    }

    /// GETs `url` with `headers`; the body of a `status` answer, at most
    /// `limit` bytes.
    fn get_expecting(
        &self,
        url: &str,
        headers: &[(&str, String)],
        status: u16,
        limit: u64,
    ) -> Result<Vec<u8>, FetchError> {
        self.check_scheme(url)?;
        let resp = self.send(url, headers)?;
        let got = resp.status().as_u16();
        if got != status {
            return Err(FetchError::Status {
                url: url.to_string(),
                status: got,
            });
        }
        let mut body = Vec::new();
        let mut reader = resp.into_body().into_reader().take(limit.saturating_add(1));
        let mut pace = Pace::new(Instant::now());
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(FetchError::Http {
                        url: url.to_string(),
                        reason: e.to_string(),
                    });
                }
            };
            body.extend_from_slice(&buf[..n]);
            if pace.too_slow(body.len() as u64, Instant::now()) {
                return Err(FetchError::Http {
                    url: url.to_string(),
                    reason: too_slow_reason(),
                });
            }
        }
        if body.len() as u64 > limit {
            return Err(FetchError::Http {
                url: url.to_string(),
                reason: format!("answer larger than {limit} bytes"),
            });
        }
        Ok(body)
    }

    /// The size `url` has, from a HEAD's Content-Length (None if not said).
    pub fn size_of(&self, url: &str) -> Option<u64> {
        let resp = self.send_once("HEAD", url, &[], None).ok()?;
        if resp.status().as_u16() != 200 {
            return None;
        }
        resp.headers()
            .get("content-length")?
            .to_str()
            .ok()?
            .parse()
            .ok()
    }

    /// GETs bytes `range` of `url` (which must answer 206 with exactly
    /// them), at most `limit` bytes.
    pub fn get_range(
        &self,
        url: &str,
        range: std::ops::Range<u64>,
        limit: u64,
    ) -> Result<Vec<u8>, FetchError> {
        let header = format!("bytes={}-{}", range.start, range.end.saturating_sub(1));
        self.get_expecting(url, &[("Range", header)], 206, limit)
    }

    /// Downloads `url` into `file` (from its start), conditionally on
    /// `etag`; retries transient failures, resuming with a Range request
    /// when the server supports it. `Ok(None)` for a 404. Stops at `limit`
    /// bytes (a server may not fill the disk).
    pub fn download(
        &self,
        url: &str,
        file: &File,
        etag: Option<&str>,
        what: &str,
        limit: u64,
    ) -> Result<Option<Download>, FetchError> {
        self.check_scheme(url)?;
        let io_err = |e: io::Error| FetchError::Http {
            url: url.to_string(),
            reason: e.to_string(),
        };
        let mut written: u64 = 0;
        let mut resume_etag: Option<String> = None;
        let mut last_error = None;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(250 << attempt));
            }
            let mut headers = Vec::new();
            if let Some(tag) = etag.filter(|_| written == 0) {
                headers.push(("If-None-Match", tag.to_string()));
            }
            if written > 0
                && let Some(tag) = &resume_etag
            {
                headers.push(("Range", format!("bytes={written}-")));
                headers.push(("If-Range", tag.clone()));
            }
            let resp = self.send(url, &headers)?;
            let status = resp.status().as_u16();
            let header = |name: &str| {
                resp.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            let age = max_age(header("cache-control").as_deref());
            match status {
                304 => return Ok(Some(Download::NotModified { max_age: age })),
                404 => return Ok(None),
                200 => written = 0,
                206 if written > 0 => {}
                _ => {
                    return Err(FetchError::Status {
                        url: url.to_string(),
                        status,
                    });
                }
            }
            let new_etag = header("etag");
            resume_etag = new_etag.clone();
            let total = header("content-length")
                .and_then(|v| v.parse::<u64>().ok())
                .map(|n| n + written);
            within_limit(url, total.unwrap_or(0), limit)?;
            let mut out = file.try_clone().map_err(io_err)?;
            out.set_len(written).map_err(io_err)?;
            out.seek(SeekFrom::Start(written)).map_err(io_err)?;
            let bar = self.progress_bar(what, total, written);
            let mut reader = resp.into_body().into_reader();
            let mut buf = vec![0u8; 1 << 16];
            let (mut pace, resumed_at) = (Pace::new(Instant::now()), written);
            let result: io::Result<()> = loop {
                match reader.read(&mut buf) {
                    Ok(0) => break Ok(()),
                    Ok(n) => {
                        if let Err(e) = out.write_all(&buf[..n]) {
                            break Err(e);
                        }
                        written += n as u64;
                        bar.set_position(written);
                        if written > limit {
                            break Ok(());
                        }
                        if pace.too_slow(written - resumed_at, Instant::now()) {
                            break Err(io::Error::other(too_slow_reason()));
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e),
                }
            };
            bar.finish_and_clear();
            within_limit(url, written, limit)?;
            match result {
                Ok(()) if total.is_none_or(|t| t == written) => {
                    return Ok(Some(Download::Downloaded {
                        etag: new_etag,
                        max_age: age,
                        bytes: written,
                    }));
                }
                Ok(()) => last_error = Some(format!("connection closed after {written} bytes")),
                Err(e) => last_error = Some(e.to_string()),
            }
            if resume_etag.is_none() {
                written = 0;
            }
        }
        Err(FetchError::Http {
            url: url.to_string(),
            reason: last_error.unwrap_or_else(|| "download failed".to_string()),
        })
    }

    pub(crate) fn progress_bar(&self, what: &str, total: Option<u64>, done: u64) -> ProgressBar {
        let bar = skiff_io::progress::bar(self.options.progress, what, total);
        bar.set_position(done);
        bar
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trickle_is_too_slow_after_the_grace_even_after_a_fast_start() {
        let start = Instant::now();
        let at = |s| start + Duration::from_secs(s);
        let mut pace = Pace::new(start);
        // The first minute is a grace, however little it brings.
        assert!(!pace.too_slow(0, at(30)));
        assert!(!pace.too_slow(1, at(61)));
        // Each later minute must bring its share…
        assert!(!pace.too_slow(1 + 61 * MIN_RATE, at(122)));
        // …a fast start does not pay for a trickle afterwards.
        let mut pace = Pace::new(start);
        let fast = 1 << 30;
        assert!(!pace.too_slow(fast, at(60)));
        assert!(
            !pace.too_slow(fast + 10 * MIN_RATE, at(100)),
            "within a minute"
        );
        assert!(pace.too_slow(fast + 10 * MIN_RATE, at(121)));
    }

    #[test]
    fn tls_failures_are_the_servers_not_a_way_to_other_servers() {
        let io = |kind| ureq::Error::Io(io::Error::new(kind, "x"));
        let away = |e: &ureq::Error| matches!(send_error("u", e), FetchError::Unreachable { .. });
        assert!(away(&io(io::ErrorKind::ConnectionRefused)));
        assert!(away(&io(io::ErrorKind::ConnectionReset)));
        assert!(away(&ureq::Error::ConnectionFailed));
        // rustls reports a certificate that does not verify as invalid
        // data on the connection.
        assert!(!away(&io(io::ErrorKind::InvalidData)));
        assert!(!away(&ureq::Error::TooManyRedirects));
    }

    #[test]
    fn cache_control() {
        assert_eq!(max_age(Some("public, max-age=300")), 300);
        assert_eq!(max_age(Some("max-age=60, no-cache")), 0);
        assert_eq!(max_age(None), 0);
        assert_eq!(max_age(Some("max-age=abc")), 0);
    }
}
