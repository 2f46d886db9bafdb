//! `mirrors.d/*.json`: other servers of a prefix's images, as discovery
//! templates, in the local and system configuration directories:
//!
//! ```json
//! { "mirrors": [ { "prefix": "example.com/",
//!     "templates": ["https://mirror.site/aci/{name}-{version}-{os}-{arch}.{ext}"] } ] }
//! ```
//!
//! Their endpoints follow the origin's (they are used when the origin's
//! fail, and as more sources of a swarm's pieces), or stand alone when the
//! origin's discovery page cannot be had. A mirror is not trusted: what it
//! serves is checked like the origin's (signature with this host's keys,
//! then the name and labels asked, before anything is stored), and each
//! piece against the origin's piece list.

use std::path::PathBuf;

use serde::Deserialize;
use skiff_spec::discovery::{AciEndpoint, AppName, MetaTag, discover};

use crate::FetchError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MirrorsFile {
    mirrors: Vec<Mirror>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Mirror {
    prefix: String,
    templates: Vec<String>,
}

const EXPECTED: &str = r#"{"mirrors": [{"prefix": "example.com/", "templates": ["https://HOST/{name}-{version}-{os}-{arch}.{ext}"]}]}"#;

/// The mirrors the files of `dirs` name, as `ac-discovery` tags.
pub fn load(dirs: &[PathBuf]) -> Result<Vec<MetaTag>, FetchError> {
    let mut tags = Vec::new();
    for dir in dirs {
        for (file, parsed) in crate::confdir::load::<MirrorsFile>(dir, EXPECTED)? {
            for mirror in parsed.mirrors {
                let bad = |reason: String| FetchError::Config {
                    file: file.clone(),
                    reason,
                };
                if mirror.prefix.is_empty() {
                    return Err(bad(format!(
                        "a mirror needs a prefix (expected {EXPECTED})"
                    )));
                }
                for template in mirror.templates {
                    check_template(&template).map_err(bad)?;
                    tags.push(MetaTag {
                        name: "ac-discovery".to_string(),
                        prefix: mirror.prefix.clone(),
                        uri: template,
                    });
                }
            }
        }
    }
    Ok(tags)
}

/// The endpoints `tags` give `app`: those whose prefix is the name or
/// ends where one of its path segments does (`example.com` is not a prefix
/// of `example.com.evil.net/app`).
pub fn endpoints(tags: &[MetaTag], app: &AppName) -> Vec<AciEndpoint> {
    let name = app.name.as_str();
    let mine: Vec<MetaTag> = tags
        .iter()
        .filter(|t| {
            name.strip_prefix(t.prefix.as_str()).is_some_and(|rest| {
                rest.is_empty() || t.prefix.ends_with('/') || rest.starts_with('/')
            })
        })
        .cloned()
        .collect();
    discover(app, &mine).endpoints
}

fn check_template(template: &str) -> Result<(), String> {
    let Some(rest) = template
        .strip_prefix("https://")
        .or_else(|| template.strip_prefix("http://"))
    else {
        return Err(format!(
            "mirror template '{template}' must start with https:// (http:// needs --insecure-options=http)"
        ));
    };
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("mirror template '{template}' has no host"));
    }
    if !template.contains("{ext}") {
        return Err(format!(
            "mirror template '{template}' lacks {{ext}} (the image is {{ext}}=aci, its signature aci.asc)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_give_endpoints_for_their_prefix_and_bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = [dir.path().join("missing"), dir.path().to_path_buf()];
        assert!(load(&dirs).unwrap().is_empty());
        std::fs::write(
            dir.path().join("a.json"),
            r#"{"mirrors": [{"prefix": "example.com/", "templates":
                ["https://m.site/{name}-{version}-{os}-{arch}.{ext}"]}]}"#,
        )
        .unwrap();
        let tags = load(&dirs).unwrap();
        let app = AppName::parse("example.com/app:1.0,os=linux,arch=amd64").unwrap();
        let got = endpoints(&tags, &app);
        assert_eq!(
            got,
            vec![AciEndpoint {
                aci: "https://m.site/example.com/app-1.0-linux-amd64.aci".into(),
                asc: "https://m.site/example.com/app-1.0-linux-amd64.aci.asc".into(),
            }]
        );
        let other = AppName::parse("other.org/app:1.0,os=linux,arch=amd64").unwrap();
        assert!(endpoints(&tags, &other).is_empty());
        let cut = |prefix: &str, name: &str| {
            let tag = MetaTag {
                name: "ac-discovery".into(),
                prefix: prefix.into(),
                uri: "https://m/{name}.{ext}".into(),
            };
            endpoints(&[tag], &AppName::parse(name).unwrap()).len()
        };
        assert_eq!(cut("example.com", "example.com/app"), 1);
        assert_eq!(cut("example.com/app", "example.com/app"), 1);
        assert_eq!(cut("example.com", "example.com.evil.net/app"), 0);
        assert_eq!(cut("example.com/ap", "example.com/app"), 0);
        for (bad, says) in [
            (
                r#"{"mirrors": [{"prefix": "", "templates": []}]}"#,
                "prefix",
            ),
            (
                r#"{"mirrors": [{"prefix": "x/", "templates": ["ftp://m/{ext}"]}]}"#,
                "https://",
            ),
            (
                r#"{"mirrors": [{"prefix": "x/", "templates": ["https://m/{name}"]}]}"#,
                "{ext}",
            ),
            (
                r#"{"mirrors": [{"prefix": "x/", "templates": ["https:///{ext}"]}]}"#,
                "no host",
            ),
            (r#"{"mirror": []}"#, "expected"),
        ] {
            std::fs::write(dir.path().join("b.json"), bad).unwrap();
            let err = load(&dirs).unwrap_err().to_string();
            assert!(err.contains("b.json") && err.contains(says), "{bad}: {err}");
        }
    }
}
