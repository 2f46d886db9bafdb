//! Writing to a registry (the OCI distribution API's push): blobs — skipped
//! when the registry has them, mounted from another repository of the same
//! registry when it can, else uploaded in one PUT or, when large, in
//! chunks — and manifests by tag.

use std::io::Read;
use std::path::Path;

use super::registry::{Registry, percent, read_limited, refused_credentials, sha256_digest};
use crate::FetchError;

/// Blobs larger than this are uploaded in chunks of this size.
pub const CHUNK: usize = 8 << 20;

/// What happened to one blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobPushed {
    /// The registry had it.
    Exists,
    /// Mounted from another repository of the registry.
    Mounted,
    /// Uploaded, in this many requests.
    Uploaded { requests: usize },
}

/// Scheme, host (lower case) and port of a URL, the default port spelled out.
fn origin(url: &str) -> Option<(String, String, u16)> {
    let uri: ureq::http::Uri = url.parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let default = match scheme.as_str() {
        "https" => 443,
        "http" => 80,
        _ => return None,
    };
    Some((
        scheme,
        uri.host()?.to_ascii_lowercase(),
        uri.port_u16().unwrap_or(default),
    ))
}

fn octets() -> (&'static str, String) {
    ("Content-Type", "application/octet-stream".to_string())
}

impl Registry<'_> {
    /// A HEAD or write to `url`, authenticating once if the registry asks
    /// (the body is sent again then).
    fn write(
        &mut self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        body: Option<&[u8]>,
    ) -> Result<ureq::http::Response<ureq::Body>, FetchError> {
        let resp = self
            .http
            .send_once(method, url, &self.headers(headers), body)?;
        if resp.status().as_u16() != 401 {
            return Ok(resp);
        }
        self.authenticate(url, &resp)?;
        let resp = self
            .http
            .send_once(method, url, &self.headers(headers), body)?;
        refused_credentials(url, &resp)?;
        Ok(resp)
    }

    fn failed(&self, url: &str, resp: ureq::http::Response<ureq::Body>) -> FetchError {
        let status = resp.status().as_u16();
        let body = read_limited(resp, url).unwrap_or_default();
        // The registry's own error codes (`DENIED`, `NAME_UNKNOWN` …) say why.
        let said = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                let e = v["errors"].get(0)?.clone();
                Some(format!(
                    "{} {}",
                    e["code"].as_str().unwrap_or(""),
                    e["message"].as_str().unwrap_or("")
                ))
            });
        FetchError::Push {
            url: url.to_string(),
            reason: match said {
                Some(s) => format!("HTTP {status}: {}", s.trim()),
                None => format!("HTTP status {status}"),
            },
        }
    }

    /// Where an upload goes on: the `Location` of `resp` (absolute, or
    /// relative to `url`), on this registry. A registry may not send the
    /// upload (and the credentials) to another server or to plain HTTP.
    fn location(
        &self,
        url: &str,
        resp: &ureq::http::Response<ureq::Body>,
    ) -> Result<String, FetchError> {
        let refused = |reason: String| FetchError::Push {
            url: url.to_string(),
            reason,
        };
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| refused("the registry started an upload without a Location".into()))?;
        let absolute = if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            let path = url.split(['?', '#']).next().unwrap_or(url);
            let dir = path.rsplit_once('/').map_or(path, |(d, _)| d);
            format!("{dir}/{location}")
        };
        if origin(&absolute).is_none() || origin(&absolute) != origin(&self.base) {
            return Err(refused(format!(
                "the registry sent the upload to another server ({}); refused",
                location.chars().take(200).collect::<String>()
            )));
        }
        Ok(absolute)
    }

    /// Whether the repository has blob `digest`.
    pub fn blob_exists(&mut self, digest: &str) -> Result<bool, FetchError> {
        let url = format!("{}/v2/{}/blobs/{digest}", self.base, self.repo);
        let resp = self.write("HEAD", &url, &[], None)?;
        match resp.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(self.failed(&url, resp)),
        }
    }

    /// Starts an upload of `digest`, as a mount from `mount_from` if
    /// given: `None` if the mount did it, else where to upload.
    fn start_upload(
        &mut self,
        digest: &str,
        mount_from: Option<&str>,
    ) -> Result<Option<String>, FetchError> {
        let start = match mount_from.filter(|from| *from != self.repo) {
            Some(from) => format!(
                "{}/v2/{}/blobs/uploads/?mount={}&from={}",
                self.base,
                self.repo,
                percent(digest),
                percent(from)
            ),
            None => format!("{}/v2/{}/blobs/uploads/", self.base, self.repo),
        };
        let resp = self.write("POST", &start, &[], Some(&[]))?;
        match resp.status().as_u16() {
            201 if mount_from.is_some() => Ok(None),
            202 => self.location(&start, &resp).map(Some),
            _ => Err(self.failed(&start, resp)),
        }
    }

    /// Ends an upload at `location` with `body`, the last (or only) bytes.
    fn finish_upload(
        &mut self,
        location: &str,
        digest: &str,
        body: &[u8],
    ) -> Result<(), FetchError> {
        let sep = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{sep}digest={}", percent(digest));
        let resp = self.write("PUT", &url, &[octets()], Some(body))?;
        if resp.status().as_u16() != 201 {
            return Err(self.failed(&url, resp));
        }
        Ok(())
    }

    /// Pushes `bytes` as a blob (a signature payload, a config) unless the
    /// repository has it; returns its digest.
    pub fn push_bytes(&mut self, bytes: &[u8]) -> Result<String, FetchError> {
        let digest = sha256_digest(bytes);
        if !self.blob_exists(&digest)?
            && let Some(location) = self.start_upload(&digest, None)?
        {
            self.finish_upload(&location, &digest, bytes)?;
        }
        Ok(digest)
    }

    /// Pushes the blob `digest` (`size` bytes in `path`): nothing if the
    /// repository has it, a mount from `mount_from` (another repository
    /// of this registry) if it has it, else an upload: in one request, or
    /// in chunks of [`CHUNK`] bytes.
    pub fn push_blob(
        &mut self,
        digest: &str,
        path: &Path,
        size: u64,
        mount_from: Option<&str>,
    ) -> Result<BlobPushed, FetchError> {
        if self.blob_exists(digest)? {
            return Ok(BlobPushed::Exists);
        }
        let Some(mut location) = self.start_upload(digest, mount_from)? else {
            return Ok(BlobPushed::Mounted);
        };
        let io = |e: std::io::Error| FetchError::from(skiff_io::io_err_at("read", path)(e));
        let mut file = std::fs::File::open(path).map_err(io)?;
        if size <= CHUNK as u64 {
            let mut body = Vec::new();
            file.read_to_end(&mut body).map_err(io)?;
            self.finish_upload(&location, digest, &body)?;
            return Ok(BlobPushed::Uploaded { requests: 2 });
        }
        let mut requests = 1;
        let mut sent = 0u64;
        let mut chunk = vec![0u8; CHUNK];
        loop {
            let mut n = 0;
            while n < CHUNK {
                match file.read(&mut chunk[n..]) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(io(e)),
                }
            }
            if n == 0 {
                break;
            }
            let range = format!("{sent}-{}", sent + n as u64 - 1);
            let resp = self.write(
                "PATCH",
                &location,
                &[octets(), ("Content-Range", range)],
                Some(&chunk[..n]),
            )?;
            if resp.status().as_u16() != 202 {
                return Err(self.failed(&location, resp));
            }
            location = self.location(&location, &resp)?;
            sent += n as u64;
            requests += 1;
        }
        self.finish_upload(&location, digest, &[])?;
        Ok(BlobPushed::Uploaded {
            requests: requests + 1,
        })
    }

    /// Puts a manifest under `reference` (a tag); returns its digest.
    pub fn put_manifest(
        &mut self,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<String, FetchError> {
        let url = format!("{}/v2/{}/manifests/{reference}", self.base, self.repo);
        let resp = self.write(
            "PUT",
            &url,
            &[("Content-Type", media_type.to_string())],
            Some(bytes),
        )?;
        if resp.status().as_u16() != 201 {
            return Err(self.failed(&url, resp));
        }
        Ok(sha256_digest(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::origin;

    #[test]
    fn origins_compare_normalized() {
        assert_eq!(
            origin("https://Reg.Example.org/v2/"),
            origin("https://reg.example.org:443/x")
        );
        assert_ne!(
            origin("http://reg.example.org/x"),
            origin("https://reg.example.org/x")
        );
        assert_ne!(
            origin("https://reg.example.org.evil/x"),
            origin("https://reg.example.org/x")
        );
        assert_eq!(origin("ftp://reg.example.org/x"), None);
        assert_eq!(origin("not a url"), None);
    }
}
