//! HTTP to peers: their own client, apart from the one for origins. A
//! peer may be plain HTTP (what it serves is checked, not trusted), gets
//! no credentials, and may not redirect; it is given short timeouts, since
//! another peer or the origin can serve instead.

use std::fmt;
use std::io::Read;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::DeserializeOwned;
use ureq::tls::{RootCerts, TlsConfig};

use crate::FetchError;

/// A peer: what `skiff serve` listens on, `http(s)://HOST[:PORT]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerUrl(String);

impl PeerUrl {
    /// The URL of a server found at `addr` (by mDNS).
    pub fn from_addr(addr: std::net::SocketAddr) -> Self {
        PeerUrl(format!("http://{addr}"))
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!(
                "'{s}' is not a peer URL ({why}): give what `skiff serve` prints, e.g. http://10.0.0.2:7440"
            )
        };
        let rest = s
            .strip_prefix("http://")
            .or_else(|| s.strip_prefix("https://"))
            .ok_or_else(|| bad("it must start with http:// or https://"))?;
        let host = rest.strip_suffix('/').unwrap_or(rest);
        if host.is_empty() {
            return Err(bad("no host"));
        }
        if host.contains(['/', '?', '#', '@', ' ']) || host.chars().any(char::is_control) {
            return Err(bad("only a host and port, no path, query or user"));
        }
        // HOST, HOST:PORT, [V6] or [V6]:PORT.
        let (name, port) = match host.strip_prefix('[') {
            Some(v6) => {
                let (addr, after) = v6.split_once(']').ok_or_else(|| bad("an unclosed ["))?;
                addr.parse::<std::net::Ipv6Addr>()
                    .map_err(|_| bad("not an IPv6 address in []"))?;
                (
                    addr,
                    after
                        .strip_prefix(':')
                        .map(Some)
                        .unwrap_or_else(|| (!after.is_empty()).then_some("x")),
                )
            }
            None => match host.rsplit_once(':') {
                Some((name, port)) => (name, Some(port)),
                None => (host, None),
            },
        };
        if name.is_empty() || name.contains(['[', ']', ':']) && !host.starts_with('[') {
            return Err(bad("not a host name or address"));
        }
        if let Some(port) = port
            && port.parse::<u16>().map_or(true, |p| p == 0)
        {
            return Err(bad("the port must be 1 to 65535"));
        }
        Ok(PeerUrl(s.strip_suffix('/').unwrap_or(s).to_string()))
    }

    /// `path` (starting with `/`) on this peer.
    pub fn join(&self, path: &str) -> String {
        format!("{}{path}", self.0)
    }
}

impl fmt::Display for PeerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The HTTP client for peers.
pub struct PeerClient {
    agent: ureq::Agent,
}

/// Why a peer's answer was not used.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("{0}")]
    Transport(String),
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("{0}")]
    Bad(String),
}

impl PeerClient {
    /// A client trusting `ca_file` (or the system bundle) for https peers.
    pub fn new(ca_file: Option<PathBuf>, insecure_tls: bool) -> Result<Self, FetchError> {
        let roots = if insecure_tls {
            RootCerts::WebPki
        } else {
            let path = ca_file.unwrap_or_else(|| PathBuf::from(crate::http::SYSTEM_CA_BUNDLE));
            RootCerts::Specific(std::sync::Arc::new(crate::http::load_roots(&path)?))
        };
        let tls = TlsConfig::builder()
            .root_certs(roots)
            .disable_verification(insecure_tls)
            .build();
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .https_only(false)
            .http_status_as_error(false)
            .max_redirects(0)
            // Short: another peer, or the origin, can serve instead.
            .timeout_connect(Some(Duration::from_secs(3)))
            .timeout_recv_response(Some(Duration::from_secs(10)))
            .timeout_per_read(Some(Duration::from_secs(10)))
            .timeout_recv_body(Some(Duration::from_secs(60)))
            .user_agent(concat!("skiff/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Ok(PeerClient { agent })
    }

    /// GETs `path` of `peer` (optionally a byte range); the body, at most
    /// `limit` bytes.
    pub fn get(
        &self,
        peer: &PeerUrl,
        path: &str,
        range: Option<Range<u64>>,
        limit: u64,
    ) -> Result<Vec<u8>, PeerError> {
        let mut req = self.agent.get(peer.join(path));
        if let Some(r) = &range {
            req = req.header(
                "Range",
                format!("bytes={}-{}", r.start, r.end.saturating_sub(1)),
            );
        }
        let resp = req
            .call()
            .map_err(|e| PeerError::Transport(e.to_string()))?;
        let status = resp.status().as_u16();
        let expected = if range.is_some() { 206 } else { 200 };
        if status != expected {
            return Err(PeerError::Status(status));
        }
        let mut body = Vec::new();
        resp.into_body()
            .into_reader()
            .take(limit.saturating_add(1))
            .read_to_end(&mut body)
            .map_err(|e| PeerError::Transport(e.to_string()))?;
        if body.len() as u64 > limit {
            return Err(PeerError::Bad(format!("answer larger than {limit} bytes")));
        }
        Ok(body)
    }

    /// GETs `path` of `peer` (200), its body to read.
    pub fn get_stream(&self, peer: &PeerUrl, path: &str) -> Result<impl Read + use<>, PeerError> {
        let resp = self
            .agent
            .get(peer.join(path))
            .call()
            .map_err(|e| PeerError::Transport(e.to_string()))?;
        match resp.status().as_u16() {
            200 => Ok(resp.into_body().into_reader()),
            status => Err(PeerError::Status(status)),
        }
    }

    /// GETs a JSON document of `peer`.
    pub fn get_json<T: DeserializeOwned>(
        &self,
        peer: &PeerUrl,
        path: &str,
    ) -> Result<T, PeerError> {
        let body = self.get(peer, path, None, skiff_share::protocol::MAX_DOCUMENT)?;
        serde_json::from_slice(&body)
            .map_err(|e| PeerError::Bad(format!("not the expected JSON: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_urls_are_a_host_and_port_only() {
        assert_eq!(
            PeerUrl::parse("http://10.0.0.2:7440/").unwrap().join("/x"),
            "http://10.0.0.2:7440/x"
        );
        assert!(PeerUrl::parse("https://peer.example").is_ok());
        for addr in ["10.0.0.2:7440", "[fd00::2]:7440"] {
            let found = PeerUrl::from_addr(addr.parse().unwrap());
            assert_eq!(PeerUrl::parse(&found.to_string()), Ok(found));
        }
        assert!(PeerUrl::parse("http://[fd00::2]:7440").is_ok());
        assert!(PeerUrl::parse("http://[fd00::2]").is_ok());
        for bad in [
            "10.0.0.2:7440",
            "ftp://x",
            "http://",
            "http://x/path",
            "http://u@x",
            "http://x?q",
            "http://x y",
            "http://[::1",
            "http://x:99999",
            "http://x:0",
            "http://[::1]x",
            "http://a:b:c",
        ] {
            assert!(PeerUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
