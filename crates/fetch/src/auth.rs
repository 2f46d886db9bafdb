//! rkt's `auth.d` credentials for appc HTTPS fetches (discovery, images,
//! signatures, keys): files `*.json` of the form
//! `{"rktKind": "auth", "rktVersion": "v1", "domains": ["example.com"],
//! "type": "basic", "credentials": {"user": "U", "password": "P"}}` or
//! `"type": "oauth", "credentials": {"token": "T"}` (`"skiffKind"` also
//! works). The header goes only to the hosts named (`host` or
//! `host:port`), only over HTTPS, and never across a redirect.

use std::path::PathBuf;

use serde_json::Value;

/// An `Authorization` header for some hosts.
#[derive(Clone, PartialEq, Eq)]
pub struct HostAuth {
    domains: Vec<String>,
    header: String,
}

impl std::fmt::Debug for HostAuth {
    // The credentials never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostAuth")
            .field("domains", &self.domains)
            .finish_non_exhaustive()
    }
}

/// The header of one `auth` document (`dockerAuth` ones are for
/// registries); a broken one is said and skipped.
fn parse(v: &Value, file: &std::path::Path) -> Option<HostAuth> {
    let domains: Vec<String> = v["domains"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_ascii_lowercase)
        .collect();
    let c = &v["credentials"];
    let header = match (
        v["type"].as_str(),
        c["user"].as_str(),
        c["password"].as_str(),
        c["token"].as_str(),
    ) {
        (Some("basic"), Some(user), Some(password), _) => format!(
            "Basic {}",
            base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                format!("{user}:{password}")
            )
        ),
        (Some("oauth"), _, _, Some(token)) => format!("Bearer {token}"),
        (kind, ..) => {
            tracing::warn!(
                "{}: an auth entry needs \"type\": \"basic\" with credentials user and password, or \"oauth\" with a token (got {kind:?}); ignored",
                file.display()
            );
            return None;
        }
    };
    if domains.is_empty() || header.chars().any(|c| c.is_control()) {
        tracing::warn!(
            "{}: an auth entry needs domains and credentials without control characters; ignored",
            file.display()
        );
        return None;
    }
    Some(HostAuth { domains, header })
}

/// The files of a configuration directory list (`auth.d`,
/// `registries.d`) with one of `extensions`, in order: the directories as
/// given (local config first), each one's files by name; missing
/// directories are skipped.
pub fn config_files(dirs: &[PathBuf], extensions: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|f| {
                f.extension()
                    .is_some_and(|e| extensions.iter().any(|x| e == *x))
            })
            .collect();
        files.sort();
        out.append(&mut files);
    }
    out
}

/// The documents of kind `kind` (`rktKind` or `skiffKind`) of the
/// `*.json` files in `dirs`, in order (local config first, files by name),
/// with their files; a file that is not JSON is said and skipped.
pub fn documents(dirs: &[PathBuf], kind: &str) -> Vec<(PathBuf, Value)> {
    let mut found = Vec::new();
    for file in config_files(dirs, &["json"]) {
        let Some(v) = std::fs::read(&file)
            .ok()
            .and_then(|t| serde_json::from_slice::<Value>(&t).ok())
        else {
            tracing::warn!("{}: not JSON; ignored", file.display());
            continue;
        };
        let of_kind = v
            .get("rktKind")
            .or_else(|| v.get("skiffKind"))
            .and_then(Value::as_str)
            == Some(kind);
        if of_kind {
            found.push((file, v));
        }
    }

    found
}

/// Every `auth` entry of the `*.json` files in `dirs` (in order: the
/// first entry naming a host wins).
pub fn load(dirs: &[PathBuf]) -> Vec<HostAuth> {
    documents(dirs, "auth")
        .iter()
        .filter_map(|(file, v)| parse(v, file))
        .collect()
}

/// The `Authorization` header for `url`: an HTTPS URL whose host (on port
/// 443) or host:port an entry names.
pub fn header_for<'a>(auths: &'a [HostAuth], url: &str) -> Option<&'a str> {
    let uri: ureq::http::Uri = url.parse().ok()?;
    if uri.scheme_str() != Some("https") {
        return None;
    }
    let host = uri.host()?.to_ascii_lowercase();
    // A bare host covers HTTPS's own port; `host:port` that port.
    let port = uri.port_u16().unwrap_or(443);
    let with_port = format!("{host}:{port}");
    auths
        .iter()
        .find(|a| {
            a.domains
                .iter()
                .any(|d| *d == with_port || (*d == host && port == 443))
        })
        .map(|a| a.header.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_and_oauth_go_only_to_their_hosts_over_https() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.json"),
            r#"{"rktKind": "auth", "rktVersion": "v1", "domains": ["images.example.com"],
                "type": "basic", "credentials": {"user": "alice", "password": "s3cret"}}"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("b.json"),
            r#"{"rktKind": "auth", "rktVersion": "v1", "domains": ["tokens.example.com:8443"],
                "type": "oauth", "credentials": {"token": "tok"}}"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("c.json"),
            r#"{"rktKind": "auth", "domains": ["x.example.com"], "type": "digest", "credentials": {}}"#,
        )
        .unwrap();
        let auths = load(&[dir.path().to_path_buf()]);
        assert_eq!(auths.len(), 2);
        assert_eq!(
            header_for(&auths, "https://images.example.com/app.aci"),
            Some("Basic YWxpY2U6czNjcmV0")
        );
        assert_eq!(
            header_for(&auths, "https://tokens.example.com:8443/app.aci"),
            Some("Bearer tok")
        );
        assert_eq!(
            header_for(&auths, "http://images.example.com/app.aci"),
            None
        );
        assert_eq!(
            header_for(&auths, "https://tokens.example.com/app.aci"),
            None
        );
        assert_eq!(
            header_for(&auths, "https://evil.example.org/images.example.com"),
            None
        );
        assert_eq!(
            header_for(&auths, "https://images.example.com.evil.org/"),
            None
        );
        assert!(!format!("{auths:?}").contains("s3cret"));
    }
}
