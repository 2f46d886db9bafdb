//! `docker://[registry[:port]/]repo[:tag|@sha256:…]` references.

use crate::FetchError;

/// Docker Hub's registry host (what `docker.io` names).
pub const DOCKER_HUB: &str = "registry-1.docker.io";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerRef {
    /// `host[:port]`.
    pub registry: String,
    /// `library/busybox`, `team/app`.
    pub repo: String,
    pub tag: Option<String>,
    /// `sha256:<64 hex>`.
    pub digest: Option<String>,
}

impl DockerRef {
    pub fn parse(input: &str) -> Result<DockerRef, FetchError> {
        let bad = |reason: &str| FetchError::BadReference {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        let rest = input
            .strip_prefix("docker://")
            .ok_or_else(|| bad("expected docker://"))?;
        let (name, digest) = match rest.split_once('@') {
            Some((n, d)) => {
                let hex = d
                    .strip_prefix("sha256:")
                    .ok_or_else(|| bad("only sha256 digests are supported"))?;
                if !skiff_spec::id::is_lower_hex(hex, skiff_spec::id::SHA256_HEX_LEN) {
                    return Err(bad("a digest is sha256: and 64 lowercase hex digits"));
                }
                (n, Some(d.to_string()))
            }
            None => (rest, None),
        };
        // A tag is after the last ':' that follows the last '/'.
        let (name, tag) = match name.rfind(':') {
            Some(i) if !name[i..].contains('/') => (&name[..i], Some(name[i + 1..].to_string())),
            _ => (name, None),
        };
        if let Some(t) = &tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
            if !ok {
                return Err(bad("a tag is 1-128 letters, digits, '_', '.', '-'"));
            }
        }
        let (registry, repo) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                let host = if first == "docker.io" || first == "index.docker.io" {
                    DOCKER_HUB.to_string()
                } else {
                    first.to_string()
                };
                (host, rest.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let repo = if registry == DOCKER_HUB && !repo.contains('/') {
            format!("library/{repo}")
        } else {
            repo
        };
        let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        let ok = !repo.is_empty()
            && repo.split('/').all(|part| {
                part.as_bytes().first().is_some_and(alnum)
                    && part.as_bytes().last().is_some_and(alnum)
                    && part
                        .bytes()
                        .all(|b| alnum(&b) || matches!(b, b'_' | b'.' | b'-'))
            });
        if !ok {
            return Err(bad(
                "a repository is '/'-separated parts of lowercase letters, digits, '_', '.', '-', \
                 each starting and ending with a letter or digit",
            ));
        }
        let tag = match (&tag, &digest) {
            (None, None) => Some("latest".to_string()),
            _ => tag,
        };
        Ok(DockerRef {
            registry,
            repo,
            tag,
            digest,
        })
    }

    /// The manifest reference: the digest if given, else the tag.
    pub fn reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// The appc image name: `registry/repo` with the characters appc
    /// names cannot have (a port's ':') made '-'.
    pub fn aci_name(&self) -> String {
        format!("{}/{}", self.registry, self.repo)
            .to_ascii_lowercase()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '/' | '~') {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    }

    pub fn display(&self) -> String {
        match (&self.tag, &self.digest) {
            (_, Some(d)) => format!("docker://{}/{}@{d}", self.registry, self.repo),
            (Some(t), None) => format!("docker://{}/{}:{t}", self.registry, self.repo),
            (None, None) => format!("docker://{}/{}", self.registry, self.repo),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_docker_references() {
        let r = DockerRef::parse("docker://busybox").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repo.as_str(), r.reference()),
            (DOCKER_HUB, "library/busybox", "latest")
        );
        let r = DockerRef::parse("docker://127.0.0.1:5000/test/layered:v2").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repo.as_str(), r.reference()),
            ("127.0.0.1:5000", "test/layered", "v2")
        );
        assert_eq!(r.aci_name(), "127.0.0.1-5000/test/layered");
        let d = format!("sha256:{}", "a".repeat(64));
        let r = DockerRef::parse(&format!("docker://localhost/x@{d}")).unwrap();
        assert_eq!(
            (r.registry.as_str(), r.reference()),
            ("localhost", d.as_str())
        );
        for bad in [
            "docker://",
            "docker://UPPER/x",
            "docker://x@sha256:abc",
            "docker://x:bad tag",
            "docker://a//b",
            "docker://reg.example.org/a/../b",
            "docker://reg.example.org/.x",
            "busybox",
        ] {
            assert!(DockerRef::parse(bad).is_err(), "{bad}");
        }
    }
}
