//! containers/image's signature lookaside: where `skopeo copy --sign-by`
//! and podman put simple-signing signatures, beside the registry.
//!
//! Configured as containers' `registries.d`: YAML files (`*.yaml`) in
//! `<local-config>/registries.d` and `<system-config>/registries.d`:
//!
//! ```yaml
//! docker:
//!   registry.example.org/team:            # a registry, or a repository prefix
//!     lookaside: https://sigs.example.org/sigstore
//! default-docker:
//!   lookaside: file:///var/lib/containers/sigstore
//! ```
//!
//! (`sigstore:` is the older name of `lookaside:`; the `-staging` keys are
//! for writers and ignored.) The most specific namespace wins. The
//! signatures of manifest `sha256:HEX` of `REGISTRY/PATH` are
//! `<lookaside>/<PATH>@sha256=HEX/signature-1`, `-2`, … up to the first
//! missing one (the registry is not part of it, as containers/image
//! lays it out).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use skiff_trust::cosign::MAX_PAYLOAD;

use crate::{FetchError, Http};

/// Most signatures read for one manifest.
pub const MAX_SIGNATURES: usize = 16;

#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct File {
    #[serde(default)]
    docker: BTreeMap<String, Namespace>,
    default_docker: Option<Namespace>,
}

#[derive(Deserialize, Default, Clone)]
struct Namespace {
    lookaside: Option<String>,
    sigstore: Option<String>,
}

impl Namespace {
    fn url(&self) -> Option<String> {
        self.lookaside
            .clone()
            .or_else(|| self.sigstore.clone())
            .map(|u| u.trim_end_matches('/').to_string())
    }
}

/// The lookaside configuration of a host.
#[derive(Default)]
pub struct Lookaside {
    /// Namespaces (`host[:port][/path]`) and their lookaside URLs.
    namespaces: Vec<(String, String)>,
    default: Option<String>,
}

impl Lookaside {
    /// Reads `*.yaml` in `dirs` (earlier directories win for a namespace
    /// both name); a file that is not valid is said and skipped.
    pub fn load(dirs: &[PathBuf]) -> Lookaside {
        let mut out = Lookaside::default();
        for file in &crate::auth::config_files(dirs, &["yaml", "yml"]) {
            let parsed = std::fs::read(file)
                .map_err(|e| e.to_string())
                .and_then(|t| serde_norway::from_slice::<File>(&t).map_err(|e| e.to_string()));
            let doc = match parsed {
                Ok(doc) => doc,
                Err(e) => {
                    tracing::warn!("{}: not a registries.d file ({e}); ignored", file.display());
                    continue;
                }
            };
            for (ns, n) in doc.docker {
                let ns = ns.trim_end_matches('/').to_ascii_lowercase();
                if let Some(url) = n.url()
                    && !out.namespaces.iter().any(|(have, _)| *have == ns)
                {
                    out.namespaces.push((ns, url));
                }
            }
            if out.default.is_none() {
                out.default = doc.default_docker.and_then(|n| n.url());
            }
        }

        out
    }

    /// The lookaside URL for `repository` (`host[:port]/path`): the longest
    /// namespace that is it or a prefix of it by whole segments, else the
    /// default.
    pub fn url_for(&self, repository: &str) -> Option<&str> {
        self.namespaces
            .iter()
            .filter(|(ns, _)| {
                repository == ns
                    || repository
                        .strip_prefix(ns.as_str())
                        .is_some_and(|r| r.starts_with('/'))
            })
            .max_by_key(|(ns, _)| ns.len())
            .map(|(_, url)| url.as_str())
            .or(self.default.as_deref())
    }
}

/// The signatures in the lookaside at `base` for `repository`
/// (`REGISTRY/PATH`) at `digest` (`sha256:HEX`), and where they were
/// looked for.
pub fn signatures(
    http: &Http,
    base: &str,
    repository: &str,
    digest: &str,
) -> Result<(Vec<Vec<u8>>, String), FetchError> {
    let path = repository
        .split_once('/')
        .map_or(repository, |(_, path)| path);
    let dir = format!("{path}@{}", digest.replacen(':', "=", 1));
    let mut found = Vec::new();
    let looked_at = format!("{base}/{dir}/signature-1");
    for n in 1..=MAX_SIGNATURES {
        let name = format!("{dir}/signature-{n}");
        let bytes = if let Some(root) = base.strip_prefix("file://") {
            let path = Path::new(root).join(&name);
            match read_small(&path)? {
                Some(b) => b,
                None => break,
            }
        } else {
            let url = format!("{base}/{name}");
            match http.get_small(&url, MAX_PAYLOAD) {
                Ok(b) => b,
                Err(FetchError::Status { status: 404, .. }) => break,
                Err(e) => return Err(e),
            }
        };
        found.push(bytes);
    }
    Ok((found, looked_at))
}

/// A signature file of at most [`MAX_PAYLOAD`] bytes; `None` if missing.
/// Only a regular file: a FIFO or device there would block or never end
/// (opened without blocking, checked before it is read).
fn read_small(path: &Path) -> Result<Option<Vec<u8>>, FetchError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = match std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(skiff_io::io_err_at("read", path)(e).into()),
    };
    let regular = file
        .metadata()
        .map_err(skiff_io::io_err_at("read", path))?
        .is_file();
    if !regular {
        return Err(FetchError::Http {
            url: path.display().to_string(),
            reason: "not a regular file: refused as a signature".into(),
        });
    }
    let mut bytes = Vec::new();
    file.take(MAX_PAYLOAD + 1)
        .read_to_end(&mut bytes)
        .map_err(skiff_io::io_err_at("read", path))?;
    if bytes.len() as u64 > MAX_PAYLOAD {
        return Err(FetchError::Http {
            url: path.display().to_string(),
            reason: format!("a signature over {MAX_PAYLOAD} bytes: refused"),
        });
    }
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_specific_namespace_wins() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(
            dir.path().join("a.yaml"),
            "docker:\n  reg.example.org:\n    lookaside: https://sigs.example.org/all/\n  \
             reg.example.org/team:\n    sigstore: file:///srv/team\n  \
             reg.example.org/te:\n    lookaside: https://wrong\n\
             default-docker:\n  lookaside: file:///var/lib/containers/sigstore\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("b.yaml"), "docker: [not, a, map]\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let l = Lookaside::load(&[dir.path().to_path_buf()]);
        assert_eq!(
            l.url_for("reg.example.org/team/app"),
            Some("file:///srv/team")
        );
        assert_eq!(
            l.url_for("reg.example.org/teams/app"),
            Some("https://sigs.example.org/all")
        );
        assert_eq!(
            l.url_for("other.example.org/x"),
            Some("file:///var/lib/containers/sigstore")
        );
        assert_eq!(Lookaside::default().url_for("reg.example.org/x"), None);
    }
}
