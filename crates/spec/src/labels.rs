//! Labels (with the valid os/arch combinations), annotations and the
//! `sha512-…` image hash, with their decoders.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Serialize, Serializer};

use crate::decode::{Ctx, join};
use crate::gocompat::{http_url_problem, rfc3339_problem};
use crate::json::Node;
use crate::names::AcIdentifier;

/// The appc os → arch table (`actool`'s `ValidOSArch`).
pub const VALID_OS_ARCH: &[(&str, &[&str])] = &[
    (
        "linux",
        &[
            "amd64",
            "i386",
            "aarch64",
            "aarch64_be",
            "armv6l",
            "armv7l",
            "armv7b",
            "ppc64",
            "ppc64le",
            "s390x",
        ],
    ),
    ("freebsd", &["amd64", "i386", "arm"]),
    ("darwin", &["x86_64", "i386"]),
];

/// A `{"name": …, "value": …}` pair, used for labels and annotations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NameValue {
    pub name: AcIdentifier,
    pub value: String,
}

/// Image labels (`version`, `os`, `arch`, …).
pub type Label = NameValue;
/// Free-form annotations (`created`, `homepage`, `authors`, …).
pub type Annotation = NameValue;

/// Looks a name up in a label or annotation list.
pub fn get<'a>(list: &'a [NameValue], name: &str) -> Option<&'a str> {
    list.iter()
        .find(|l| l.name.as_str() == name)
        .map(|l| l.value.as_str())
}

fn decode_name_value(ctx: &mut Ctx, node: &Node, field: &str) -> NameValue {
    let mut nv = NameValue {
        name: AcIdentifier::default(),
        value: String::new(),
    };
    for (key, value) in ctx
        .object(node, field, &["name", "value"])
        .unwrap_or_default()
    {
        let path = join(field, key);
        match key {
            "name" => nv.name = decode_identifier(ctx, value, &path),
            _ => nv.value = ctx.string(value, &path).unwrap_or(nv.value),
        }
    }
    nv
}

/// An `ACIdentifier` field (validated whenever the key is present).
pub(crate) fn decode_identifier(ctx: &mut Ctx, node: &Node, field: &str) -> AcIdentifier {
    let Some(s) = ctx.custom_string(node, field) else {
        return Default::default();
    };
    if ctx.check(field, AcIdentifier::problem(&s)) {
        AcIdentifier::from_validated(s)
    } else {
        AcIdentifier::default()
    }
}

/// A label list: no label called `name`, no duplicates, a known os and an
/// arch valid for it.
pub(crate) fn decode_labels(ctx: &mut Ctx, node: &Node, field: &str) -> Vec<Label> {
    let labels = ctx
        .array(node, field, decode_name_value)
        .unwrap_or_default();
    for (i, label) in labels.iter().enumerate() {
        if label.name.as_str() == "name" {
            ctx.fail(
                &format!("{field}[{i}].name"),
                "a label cannot be called \"name\" (the image name is not a label)",
            );
        }
    }
    ctx.check_unique(field, "label", labels.iter().map(|l| l.name.as_str()));
    let seen: BTreeMap<&str, &str> = labels
        .iter()
        .map(|l| (l.name.as_str(), l.value.as_str()))
        .collect();
    if let Some(problem) = os_arch_problem(&seen) {
        ctx.fail(field, problem);
    }
    labels
}

fn os_arch_problem(labels: &BTreeMap<&str, &str>) -> Option<String> {
    let os = labels.get("os")?;
    let Some((_, arches)) = VALID_OS_ARCH.iter().find(|(name, _)| name == os) else {
        let known: Vec<&str> = VALID_OS_ARCH.iter().map(|(name, _)| *name).collect();
        return Some(format!(
            "bad os '{os}' (must be one of: {})",
            known.join(", ")
        ));
    };
    let arch = labels.get("arch")?;
    if arches.contains(arch) {
        None
    } else {
        Some(format!(
            "bad arch '{arch}' for os '{os}' (must be one of: {})",
            arches.join(", ")
        ))
    }
}

/// An annotation list: no duplicates; `created` must be an RFC 3339 date,
/// `homepage` and `documentation` http(s) URLs.
pub(crate) fn decode_annotations(ctx: &mut Ctx, node: &Node, field: &str) -> Vec<Annotation> {
    let list = ctx
        .array(node, field, decode_name_value)
        .unwrap_or_default();
    ctx.check_unique(field, "annotation", list.iter().map(|a| a.name.as_str()));
    let seen: BTreeMap<&str, &str> = list
        .iter()
        .map(|a| (a.name.as_str(), a.value.as_str()))
        .collect();
    if let Some(created) = seen.get("created") {
        ctx.check(
            field,
            rfc3339_problem(created).map(|p| format!("created: {p}")),
        );
    }
    for key in ["homepage", "documentation"] {
        if let Some(url) = seen.get(key) {
            ctx.check(field, http_url_problem(url).map(|p| format!("{key}: {p}")));
        }
    }
    list
}

/// An image hash as the schema accepts it: `sha512-<value>`, value non-empty.
/// (`actool` checks neither the hex digits nor the length; the store's image
/// IDs are stricter.)
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Hash(String);

impl Hash {
    pub fn parse(s: &str) -> Result<Self, String> {
        match hash_problem(s) {
            Some(why) => Err(why),
            None => Ok(Hash(s.to_string())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn hash_problem(s: &str) -> Option<String> {
    let parts: Vec<&str> = s.split('-').collect();
    let why = match parts.as_slice() {
        [typ, value] if *typ == "sha512" && !value.is_empty() => return None,
        [typ, _] if *typ == "sha512" => "the hash value is empty",
        ["", _] => "the hash type is empty",
        [_, _] => "unknown hash type (only sha512 is supported)",
        _ => "must be sha512-<hex>",
    };
    Some(format!("'{s}' is not a valid image hash: {why}"))
}

pub(crate) fn decode_hash(ctx: &mut Ctx, node: &Node, field: &str) -> Hash {
    let Some(s) = ctx.custom_string(node, field) else {
        return Default::default();
    };
    if ctx.check(field, hash_problem(&s)) {
        Hash(s)
    } else {
        Hash::default()
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Hash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(json: &str) -> Vec<String> {
        let node = crate::json::parse(json.as_bytes()).unwrap();
        let mut ctx = Ctx::new(json.as_bytes());
        decode_labels(&mut ctx, &node, "labels");
        ctx.problems.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn os_and_arch_must_match() {
        assert!(
            labels(r#"[{"name":"os","value":"linux"},{"name":"arch","value":"amd64"}]"#).is_empty()
        );
        assert!(labels(r#"[{"name":"arch","value":"anything"}]"#).is_empty());
        assert_eq!(
            labels(r#"[{"name":"os","value":"linux"},{"name":"arch","value":"x86_64"}]"#),
            [
                "labels: bad arch 'x86_64' for os 'linux' (must be one of: amd64, i386, aarch64, aarch64_be, armv6l, armv7l, armv7b, ppc64, ppc64le, s390x)"
            ]
        );
        assert_eq!(labels(r#"[{"name":"name","value":"x"}]"#).len(), 1);
        assert_eq!(
            labels(r#"[{"name":"a","value":"x"},{"name":"a","value":"y"}]"#).len(),
            1
        );
    }

    #[test]
    fn hashes() {
        assert!(Hash::parse("sha512-abc").is_ok());
        for bad in ["", "sha512-", "sha256-abc", "sha512-a-b", "abc"] {
            assert!(Hash::parse(bad).is_err(), "{bad}");
        }
    }
}
