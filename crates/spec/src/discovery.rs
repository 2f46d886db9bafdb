//! appc image discovery, the pure parts: image names with labels
//! (`example.com/app:1.0`, `example.com/app,version=1.0,os=linux`), the
//! `ac-discovery` / `ac-discovery-pubkeys` meta tags of a discovery page, URL
//! templates, and the prefixes a name is discovered at. The network side is
//! in skiff-fetch.

use std::collections::BTreeMap;
use std::fmt;

use crate::names::AcIdentifier;

/// An image name and the labels asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppName {
    pub name: AcIdentifier,
    pub labels: BTreeMap<String, String>,
}

impl AppName {
    /// Parses `name[:version][,label=value...]` as appc's `NewAppFromString`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let first_comma = s.find(',');
        let first_colon = s.find(':');
        if let (Some(colon), Some(comma)) = (first_colon, first_comma)
            && colon > comma
        {
            return Err("a ':' may only follow the image name directly".to_string());
        }
        if s.matches(':').count() > 1 {
            return Err("a ':' may appear at most once".to_string());
        }
        let prepared = format!("name={}", s.replacen(':', ",version=", 1));
        let mut name = None;
        let mut labels = BTreeMap::new();
        for part in prepared.split(',') {
            let Some((key, value)) = part.split_once('=') else {
                return Err(format!("label '{part}' has no value (use label=value)"));
            };
            let previous = if key == "name" {
                name.replace(value.to_string())
            } else {
                AcIdentifier::new(key).map_err(|why| format!("bad label name: {why}"))?;
                labels.insert(key.to_string(), value.to_string())
            };
            if previous.is_some() {
                return Err(format!("'{key}' is given more than once"));
            }
        }
        let name = name.unwrap_or_default();
        let name = AcIdentifier::new(&name).map_err(|why| format!("bad image name: {why}"))?;
        Ok(AppName { name, labels })
    }

    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }

    /// The name's path prefixes, longest first: `a.com/b/c`, `a.com/b`, `a.com`.
    pub fn prefixes(&self) -> Vec<String> {
        let parts: Vec<&str> = self.name.as_str().split('/').collect();
        (1..=parts.len())
            .rev()
            .map(|n| parts[..n].join("/"))
            .collect()
    }
}

impl fmt::Display for AppName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name)?;
        for (k, v) in &self.labels {
            write!(f, ",{k}={v}")?;
        }
        Ok(())
    }
}

/// One `<meta name="ac-…" content="prefix template">` tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaTag {
    pub name: String,
    pub prefix: String,
    pub uri: String,
}

/// Where an image and its signature can be fetched from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AciEndpoint {
    pub aci: String,
    pub asc: String,
}

/// The discovery answer for one app at one prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discovered {
    pub endpoints: Vec<AciEndpoint>,
    pub public_keys: Vec<String>,
}

/// Finds the `ac-*` meta tags of an HTML page (tolerant of any HTML around them).
pub fn meta_tags(html: &str) -> Vec<MetaTag> {
    let mut tags = Vec::new();
    let lower = html.to_ascii_lowercase();
    let mut pos = 0;
    while let Some(found) = lower[pos..].find("<meta") {
        let start = pos + found + 5;
        let Some(end) = tag_end(&html[start..]) else {
            break;
        };
        let attrs = attributes(&html[start..start + end]);
        pos = start + end;
        let get = |key: &str| {
            attrs
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        let (Some(name), Some(content)) = (get("name"), get("content")) else {
            continue;
        };
        let mut parts = content.trim().splitn(2, ' ');
        let (Some(prefix), Some(uri)) = (parts.next(), parts.next()) else {
            continue;
        };
        let uri = uri.trim();
        if name.starts_with("ac-") && !prefix.is_empty() && !uri.is_empty() {
            tags.push(MetaTag {
                name: name.to_string(),
                prefix: prefix.to_string(),
                uri: uri.to_string(),
            });
        }
    }
    tags
}

/// Index of the `>` closing a tag, skipping quoted attribute values.
fn tag_end(s: &str) -> Option<usize> {
    let mut quote = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '>') => return Some(i),
            _ => {}
        }
    }
    None
}

/// Attributes of a tag body, names lower-cased, values entity-decoded.
fn attributes(body: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let chars: Vec<char> = body.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        while i < chars.len() && (chars[i].is_whitespace() || chars[i] == '/') {
            i += 1;
        }
        let start = i;
        while i < chars.len() && !chars[i].is_whitespace() && !matches!(chars[i], '=' | '/' | '>') {
            i += 1;
        }
        let key: String = chars[start..i]
            .iter()
            .collect::<String>()
            .to_ascii_lowercase();
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        if i < chars.len() && chars[i] == '=' {
            i += 1;
            while i < chars.len() && chars[i].is_whitespace() {
                i += 1;
            }
            if i < chars.len() && (chars[i] == '"' || chars[i] == '\'') {
                let q = chars[i];
                i += 1;
                let vs = i;
                while i < chars.len() && chars[i] != q {
                    i += 1;
                }
                value = chars[vs..i].iter().collect();
                i += 1;
            } else {
                let vs = i;
                while i < chars.len() && !chars[i].is_whitespace() {
                    i += 1;
                }
                value = chars[vs..i].iter().collect();
            }
        }
        if key.is_empty() {
            i += 1;
            continue;
        }
        out.push((key, decode_entities(&value)));
    }
    out
}

fn decode_entities(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// Replaces `{key}` placeholders; the flag says whether none is left.
pub fn render_template(template: &str, vars: &[(String, String)]) -> (String, bool) {
    let mut out = template.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    let complete = !has_placeholder(&out);
    (out, complete)
}

fn has_placeholder(s: &str) -> bool {
    s.find('{').is_some_and(|open| s[open..].contains('}'))
}

/// What the meta tags of the page at `prefix` offer for `app` (appc's
/// `doDiscover`): ACI endpoints whose template the app's labels complete,
/// and public key locations. A missing `version` label means `latest`.
pub fn discover(app: &AppName, tags: &[MetaTag]) -> Discovered {
    let mut vars: Vec<(String, String)> = vec![("name".to_string(), app.name.to_string())];
    let mut labels = app.labels.clone();
    labels
        .entry("version".to_string())
        .or_insert_with(|| "latest".to_string());
    vars.extend(labels);
    let mut found = Discovered::default();
    for tag in tags {
        if !app.name.as_str().starts_with(&tag.prefix) {
            continue;
        }
        match tag.name.as_str() {
            "ac-discovery" => {
                let (uri, _) = render_template(&tag.uri, &vars);
                let (asc, asc_ok) = render_template(&uri, &[("ext".into(), "aci.asc".into())]);
                let (aci, aci_ok) = render_template(&uri, &[("ext".into(), "aci".into())]);
                if asc_ok && aci_ok {
                    found.endpoints.push(AciEndpoint { aci, asc });
                }
            }
            "ac-discovery-pubkeys" => found.public_keys.push(tag.uri.clone()),
            _ => {}
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_app_names_like_appc() {
        let a = AppName::parse("example.com/app:1.0").unwrap();
        assert_eq!(a.name.as_str(), "example.com/app");
        assert_eq!(a.label("version"), Some("1.0"));
        let b = AppName::parse("example.com/app,version=1.0,os=linux,arch=amd64").unwrap();
        assert_eq!(b.labels.len(), 3);
        for bad in [
            "",
            "Example.com/x",
            "a,b",
            "a:1:2",
            "a,os=linux:1",
            "a,Os=x",
            "a,os=x,os=y",
        ] {
            assert!(AppName::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(a.prefixes(), ["example.com/app", "example.com"]);
    }

    #[test]
    fn finds_meta_tags_and_renders_templates() {
        let html = r#"<html><head>
            <META name="ac-discovery" content="example.com https://example.com/images/{name}-{version}-{os}-{arch}.{ext}">
            <meta content='example.com/app https://keys.example.com/pubkeys.gpg' name='ac-discovery-pubkeys' />
            <meta name="ac-discovery" content="other.org https://other.org/{name}.{ext}">
            <meta name="description" content="x y">
        </head></html>"#;
        let tags = meta_tags(html);
        assert_eq!(tags.len(), 3);
        let app = AppName::parse("example.com/app,version=1.0,os=linux,arch=amd64").unwrap();
        let d = discover(&app, &tags);
        assert_eq!(
            d.endpoints,
            [AciEndpoint {
                aci: "https://example.com/images/example.com/app-1.0-linux-amd64.aci".into(),
                asc: "https://example.com/images/example.com/app-1.0-linux-amd64.aci.asc".into(),
            }]
        );
        assert_eq!(d.public_keys, ["https://keys.example.com/pubkeys.gpg"]);
        // A template the labels cannot complete gives no endpoint.
        let bare = AppName::parse("example.com/app").unwrap();
        assert!(discover(&bare, &tags).endpoints.is_empty());
    }
}
