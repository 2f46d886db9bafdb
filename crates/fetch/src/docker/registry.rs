//! The OCI distribution API v2, as much as a pull needs: manifests (with
//! negotiation of the media types), blobs verified by digest while they
//! stream, and auth — Basic, or a Bearer token from the realm a 401 names.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use std::io::{Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::reference::DockerRef;
use crate::FetchError;
use crate::http::Http;

/// Largest manifest or config read.
pub const MAX_MANIFEST: u64 = 4 << 20;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

pub struct Registry<'a> {
    pub(super) http: &'a Http,
    /// `scheme://host[:port]`.
    pub(super) base: String,
    pub(super) repo: String,
    /// `user:password` for Basic auth (and for getting Bearer tokens).
    creds: Option<(String, String)>,
    /// The Authorization header that worked last.
    authorization: Option<String>,
    /// Tokens are asked for pull and push (a writer), else for pull.
    push: bool,
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Standard base64 with padding.
pub(crate) fn base64(input: &[u8]) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, input)
}

/// The parameters of a `WWW-Authenticate: Bearer realm="…",service="…"` header.
fn bearer_params(header: &str) -> Option<Vec<(String, String)>> {
    let rest = header.trim().strip_prefix("Bearer ")?;
    let mut params = Vec::new();
    let mut s = rest;
    while !s.is_empty() {
        let (key, after) = s.split_once('=')?;
        let after = after.trim_start();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            match after.find(',') {
                Some(i) => (&after[..i], &after[i..]),
                None => (after, ""),
            }
        };
        params.push((key.trim().to_string(), value.to_string()));
        s = next.trim_start_matches([',', ' ']);
    }
    Some(params)
}

/// Everything but RFC 3986's unreserved characters.
const RESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes a query value (unreserved characters stay).
pub(super) fn percent(s: &str) -> String {
    utf8_percent_encode(s, RESERVED).to_string()
}

impl<'a> Registry<'a> {
    pub fn new(http: &'a Http, r: &DockerRef, creds: Option<(String, String)>) -> Self {
        let scheme = if http.allows_http() { "http" } else { "https" };
        Registry {
            http,
            base: format!("{scheme}://{}", r.registry),
            repo: r.repo.clone(),
            creds,
            authorization: None,
            push: false,
        }
    }

    /// A registry client that pushes: Bearer tokens are asked for
    /// `pull,push` when the challenge names no scope.
    pub fn writer(mut self) -> Self {
        self.push = true;
        self
    }

    /// The Basic header of the credentials, to send to the registry
    /// itself: only a plain-HTTP registry (--insecure-options=http) gets
    /// them in clear, and the user is told, once per use.
    fn basic(&self) -> Option<String> {
        let header = self.basic_header()?;
        if !self.base.starts_with("https://") {
            tracing::warn!(
                registry = %self.base,
                "sending the registry's credentials over plain HTTP (--insecure-options=http): anyone on the path can read them"
            );
        }
        Some(header)
    }

    /// The Basic header of the credentials, if any.
    fn basic_header(&self) -> Option<String> {
        let (user, password) = self.creds.as_ref()?;
        Some(format!(
            "Basic {}",
            base64(format!("{user}:{password}").as_bytes())
        ))
    }

    /// `headers` with the Authorization header that worked last.
    pub(super) fn headers<'h>(&self, headers: &[(&'h str, String)]) -> Vec<(&'h str, String)> {
        let mut h = headers.to_vec();
        if let Some(a) = &self.authorization {
            h.push(("Authorization", a.clone()));
        }
        h
    }

    /// GET `path` (under /v2/), authenticating once if the registry asks.
    fn get(
        &mut self,
        path: &str,
        accept: &[&str],
    ) -> Result<ureq::http::Response<ureq::Body>, FetchError> {
        let url = format!("{}/v2/{}", self.base, path);
        let mut headers: Vec<(&str, String)> = Vec::new();
        if !accept.is_empty() {
            headers.push(("Accept", accept.join(", ")));
        }
        let resp = self.http.send(&url, &self.headers(&headers))?;
        if resp.status().as_u16() != 401 {
            return Ok(resp);
        }
        self.authenticate(&url, &resp)?;
        let resp = self.http.send(&url, &self.headers(&headers))?;
        refused_credentials(&url, &resp)?;
        Ok(resp)
    }

    /// Answers the challenge of a 401 to `url`: Basic with the credentials,
    /// or a Bearer token from the realm it names.
    pub(super) fn authenticate(
        &mut self,
        url: &str,
        resp: &ureq::http::Response<ureq::Body>,
    ) -> Result<(), FetchError> {
        let challenge = resp
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        self.authorization = if challenge.to_ascii_lowercase().starts_with("basic") {
            Some(self.basic().ok_or_else(|| {
                FetchError::Http {
                    url: url.to_string(),
                    reason: "the registry wants a user name and password (--creds=USER:PASSWORD, \
                         ~/.docker/config.json or /etc/skiff/auth.d)"
                        .into(),
                }
            })?)
        } else if let Some(params) = bearer_params(&challenge) {
            Some(format!("Bearer {}", self.token(&params, url)?))
        } else {
            return Err(FetchError::Http {
                url: url.to_string(),
                reason: format!("unauthorized, with no usable challenge ({challenge:?})"),
            });
        };
        Ok(())
    }

    /// A Bearer token from the challenge's realm.
    fn token(&self, params: &[(String, String)], url: &str) -> Result<String, FetchError> {
        let get = |k: &str| {
            params
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        let realm = get("realm").ok_or_else(|| FetchError::Http {
            url: url.to_string(),
            reason: "Bearer challenge without a realm".into(),
        })?;
        self.http.check_scheme(realm)?;
        // To the token service, which credentials reach only over HTTPS.
        let creds = self.basic_header();
        credentials_may_go_to(realm, creds.is_some())?;
        let mut query = Vec::new();
        if let Some(service) = get("service") {
            query.push(format!("service={}", percent(service)));
        }
        let scope = get("scope").map(str::to_string).unwrap_or_else(|| {
            let actions = if self.push { "pull,push" } else { "pull" };
            format!("repository:{}:{actions}", self.repo)
        });
        query.push(format!("scope={}", percent(&scope)));
        let token_url = format!("{realm}?{}", query.join("&"));
        let mut headers = Vec::new();
        if let Some(b) = creds {
            headers.push(("Authorization", b));
        }
        let resp = self.http.send(&token_url, &headers)?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(FetchError::Status {
                url: token_url,
                status,
            });
        }
        let body = read_limited(resp, &token_url)?;
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| FetchError::Http {
            url: token_url.clone(),
            reason: format!("malformed token answer: {e}"),
        })?;
        v.get("token")
            .or_else(|| v.get("access_token"))
            .and_then(|t| t.as_str())
            .map(str::to_string)
            .ok_or_else(|| FetchError::Http {
                url: token_url,
                reason: "no token in the answer".into(),
            })
    }

    /// A manifest (or index) by tag or digest: its bytes, media type and
    /// digest. Fetched by digest, the bytes must have that digest.
    pub fn manifest(&mut self, reference: &str) -> Result<(Vec<u8>, String, String), FetchError> {
        let path = format!("{}/manifests/{reference}", self.repo);
        self.manifest_if_any(reference)?
            .ok_or_else(|| FetchError::NotFound(format!("{}/v2/{path}", self.base)))
    }

    /// [`Registry::manifest`], `None` if the registry has none by that name.
    pub fn manifest_if_any(
        &mut self,
        reference: &str,
    ) -> Result<Option<(Vec<u8>, String, String)>, FetchError> {
        let path = format!("{}/manifests/{reference}", self.repo);
        let resp = self.get(
            &path,
            &[OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST],
        )?;
        let url = format!("{}/v2/{path}", self.base);
        let status = resp.status().as_u16();
        if status == 404 {
            return Ok(None);
        }
        if status != 200 {
            return Err(FetchError::Status { url, status });
        }
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        let body = read_limited(resp, &url)?;
        let digest = sha256_digest(&body);
        if reference.starts_with("sha256:") && digest != reference {
            return Err(FetchError::Http {
                url,
                reason: format!("the manifest has digest {digest}, not {reference}: refused"),
            });
        }
        let media_type = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("mediaType")?.as_str().map(str::to_string))
            .unwrap_or(content_type);
        Ok(Some((body, media_type, digest)))
    }

    /// Downloads blob `digest` into `out`, hashing as it streams; fails,
    /// leaving `out` to be discarded, if the content has another digest.
    pub fn blob_to(
        &mut self,
        digest: &str,
        out: &mut std::fs::File,
        what: &str,
        limit: u64,
    ) -> Result<u64, FetchError> {
        let path = format!("{}/blobs/{digest}", self.repo);
        let url = format!("{}/v2/{path}", self.base);
        let resp = self.get(&path, &[])?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(FetchError::Status { url, status });
        }
        let total = resp
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        within(&url, what, total.unwrap_or(0), limit)?;
        let bar = self.http.progress_bar(what, total, 0);
        let mut reader = resp.into_body().into_reader();
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut written = 0u64;
        let io = |e: std::io::Error| FetchError::Http {
            url: url.clone(),
            reason: e.to_string(),
        };
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io(e)),
            };
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(io)?;
            written += n as u64;
            bar.set_position(written);
            within(&url, what, written, limit)?;
        }
        bar.finish_and_clear();
        let got = format!("sha256:{}", hex(&hasher.finalize()));
        if got != digest {
            return Err(FetchError::Http {
                url,
                reason: format!(
                    "the blob's content has digest {got}, not {digest}: refused, nothing stored"
                ),
            });
        }
        Ok(written)
    }

    /// A small blob (an image config, a signature payload) of at most
    /// `limit` bytes, verified.
    pub fn small_blob(
        &mut self,
        digest: &str,
        tmp: &Path,
        what: &str,
        limit: u64,
    ) -> Result<Vec<u8>, FetchError> {
        let io = |e: std::io::Error| FetchError::from(skiff_io::io_err_at("read", tmp)(e));
        let mut file = tempfile::tempfile_in(tmp).map_err(io)?;
        let n = self.blob_to(digest, &mut file, what, limit)?;
        if n > limit {
            return Err(FetchError::Http {
                url: digest.to_string(),
                reason: format!("{what} larger than {limit} bytes"),
            });
        }
        let mut bytes = Vec::new();
        std::io::Seek::rewind(&mut file).map_err(io)?;
        file.read_to_end(&mut bytes).map_err(io)?;
        Ok(bytes)
    }
}

/// Refuses a blob past `limit` bytes: a layer by the image size limit,
/// anything else (a config, a signature payload) by its own.
fn within(url: &str, what: &str, bytes: u64, limit: u64) -> Result<(), FetchError> {
    if what.starts_with("layer") {
        return crate::http::within_limit(url, bytes, limit);
    }
    if bytes > limit {
        return Err(FetchError::Http {
            url: url.to_string(),
            reason: format!("the {what} is larger than {limit} bytes: refused"),
        });
    }
    Ok(())
}

/// Refuses a second 401: the credentials given were not accepted.
pub(super) fn refused_credentials(
    url: &str,
    resp: &ureq::http::Response<ureq::Body>,
) -> Result<(), FetchError> {
    if resp.status().as_u16() == 401 {
        return Err(FetchError::Http {
            url: url.to_string(),
            reason: "the registry refused the credentials (HTTP 401)".into(),
        });
    }
    Ok(())
}

pub(super) fn read_limited(
    resp: ureq::http::Response<ureq::Body>,
    url: &str,
) -> Result<Vec<u8>, FetchError> {
    let mut body = Vec::new();
    resp.into_body()
        .into_reader()
        .take(MAX_MANIFEST + 1)
        .read_to_end(&mut body)
        .map_err(|e| FetchError::Http {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
    if body.len() as u64 > MAX_MANIFEST {
        return Err(FetchError::Http {
            url: url.to_string(),
            reason: format!("answer larger than {MAX_MANIFEST} bytes"),
        });
    }
    Ok(body)
}

/// Credentials go to the token realm a registry names (often another
/// host, as Docker Hub's auth.docker.io) only over HTTPS, whatever
/// `--insecure-options` says: a plain-HTTP realm would hand them to
/// anyone on the path.
fn credentials_may_go_to(realm: &str, with_credentials: bool) -> Result<(), FetchError> {
    if with_credentials && !realm.starts_with("https://") {
        return Err(FetchError::Http {
            url: realm.to_string(),
            reason: "the registry asks for credentials to be sent to a token service that is \
                     not HTTPS; skiff sends credentials only over HTTPS"
                .to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges_and_base64() {
        let p = bearer_params(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        )
        .unwrap_or_default();
        assert_eq!(
            p[0],
            ("realm".into(), "https://auth.docker.io/token".into())
        );
        assert_eq!(p[2].1, "repository:library/busybox:pull");
        assert!(bearer_params("Basic realm=x").is_none());
    }

    #[test]
    fn credentials_go_only_to_https_realms() {
        assert!(credentials_may_go_to("https://auth.example.org/token", true).is_ok());
        assert!(credentials_may_go_to("http://auth.example.org/token", false).is_ok());
        let err = credentials_may_go_to("http://evil.example/token", true).unwrap_err();
        assert!(err.to_string().contains("only over HTTPS"), "{err}");
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"a"), "YQ==");
    }
}
