//! Entry points: parse and validate image or pod manifests from bytes.

use crate::decode::{Ctx, Problem};
use crate::image::{ImageManifest, decode_image_manifest, decode_kind};
use crate::json::{self, Node, SyntaxError, Value};
use crate::names::AcKind;
use crate::pod::{PodManifest, decode_pod_manifest};

/// Why a manifest was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error(transparent)]
    Syntax(#[from] SyntaxError),
    /// Every rule the document breaks, in document order.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<Problem>),
}

impl ManifestError {
    /// One line per problem, for `skiff image validate`.
    pub fn lines(&self) -> Vec<String> {
        match self {
            ManifestError::Syntax(e) => vec![e.to_string()],
            ManifestError::Invalid(problems) => problems.iter().map(ToString::to_string).collect(),
        }
    }
}

/// Either kind of manifest.
#[derive(Debug, Clone, PartialEq)]
pub enum Manifest {
    Image(Box<ImageManifest>),
    Pod(Box<PodManifest>),
}

fn run<T>(bytes: &[u8], decode: impl FnOnce(&mut Ctx, &Node) -> T) -> Result<T, ManifestError> {
    let node = json::parse(bytes)?;
    let mut ctx = Ctx::new(bytes);
    let value = decode(&mut ctx, &node);
    if ctx.problems.is_empty() {
        Ok(value)
    } else {
        Err(ManifestError::Invalid(ctx.problems))
    }
}

pub fn parse_image_manifest(bytes: &[u8]) -> Result<ImageManifest, ManifestError> {
    run(bytes, decode_image_manifest)
}

pub fn parse_pod_manifest(bytes: &[u8]) -> Result<PodManifest, ManifestError> {
    run(bytes, decode_pod_manifest)
}

/// Parses a manifest of either kind, chosen by its `acKind`.
pub fn parse_manifest(bytes: &[u8]) -> Result<Manifest, ManifestError> {
    run(bytes, |ctx, node| {
        let kind = match &node.value {
            Value::Object(_) => ctx
                .object(node, "", &["acKind"])
                .unwrap_or_default()
                .into_iter()
                .fold(None, |_, (_, value)| decode_kind(ctx, value, "acKind")),
            _ => None,
        };
        match kind {
            Some(AcKind::ImageManifest) => {
                Some(Manifest::Image(Box::new(decode_image_manifest(ctx, node))))
            }
            Some(AcKind::PodManifest) => {
                Some(Manifest::Pod(Box::new(decode_pod_manifest(ctx, node))))
            }
            None => {
                if ctx.problems.is_empty() {
                    let reason = match &node.value {
                        Value::Object(_) => "must be set (\"ImageManifest\" or \"PodManifest\")",
                        _ => "a manifest must be a JSON object with an acKind",
                    };
                    ctx.fail("acKind", reason);
                }
                None
            }
        }
    })
    .and_then(|m| m.ok_or_else(|| ManifestError::Invalid(Vec::new())))
}

/// Pretty JSON (two-space indent) of any serializable schema value.
pub fn to_pretty_json<T: serde::Serialize>(value: &T) -> String {
    // Serializing these plain data types cannot fail.
    serde_json::to_string_pretty(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAIN: &str = r#"{
        "acVersion": "0.8.11", "acKind": "ImageManifest", "name": "coreos.com/ace-validator-main",
        "labels": [{"name": "version", "value": "0.8.11"}, {"name": "os", "value": "linux"}, {"name": "arch", "value": "amd64"}],
        "app": {
            "exec": ["/ace-validator", "main"],
            "eventHandlers": [{"name": "pre-start", "exec": ["/ace-validator", "prestart"]}],
            "user": "0", "group": "0", "workingDirectory": "/opt/acvalidator",
            "environment": [{"name": "IN_ACE_VALIDATOR", "value": "correct"}],
            "mountPoints": [{"name": "database", "path": "/db", "readOnly": false}],
            "ports": [{"name": "www", "protocol": "tcp", "port": 80}],
            "isolators": [
                {"name": "resource/memory", "value": {"limit": "1G"}},
                {"name": "os/linux/seccomp-retain-set", "value": {"set": ["read"], "errno": "ENOSYS"}},
                {"name": "os/linux/capabilities-retain-set", "value": {"set": ["CAP_NET_BIND_SERVICE"]}}
            ]
        },
        "annotations": [{"name": "created", "value": "2014-10-27T19:32:27.67021798Z"}, {"name": "homepage", "value": "https://github.com/appc/spec"}],
        "dependencies": [{"imageName": "example.com/base", "imageID": "sha512-abc", "labels": [{"name": "os", "value": "linux"}], "size": 10}],
        "pathWhitelist": ["/ace-validator"]
    }"#;

    #[test]
    fn round_trips_losslessly() {
        let m = parse_image_manifest(MAIN.as_bytes()).unwrap();
        let again = parse_image_manifest(to_pretty_json(&m).as_bytes()).unwrap();
        assert_eq!(m, again);
        assert_eq!(m.app.as_ref().unwrap().ports[0].count, 1);
    }

    #[test]
    fn pod_round_trips_and_keeps_unknown_isolators() {
        let pod = r#"{"acKind":"PodManifest","acVersion":"0.8.11",
            "apps":[{"name":"web","image":{"id":"sha512-aa","name":"example.com/web"},"mounts":[{"volume":"data","path":"/data"}]}],
            "volumes":[{"name":"data","kind":"empty"},{"name":"h","kind":"host","source":"/srv","readOnly":true}],
            "isolators":[{"name":"vendor.com/thing","value":{"deep":[1,2.5,"x"]}}],
            "annotations":[],"ports":[{"name":"http","hostPort":8080,"hostIP":"127.0.0.1"}]}"#;
        let m = parse_pod_manifest(pod.as_bytes()).unwrap();
        assert_eq!(m.volumes[0].mode.as_deref(), Some("0755"));
        let again = parse_pod_manifest(to_pretty_json(&m).as_bytes()).unwrap();
        assert_eq!(m, again);
    }

    #[test]
    fn problems_name_the_field_and_the_rule() {
        let bad = r#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"Foo",
            "app":{"exec":["/x"],"user":"0","group":"","workingDirectory":"rel",
                   "isolators":[{"name":"os/linux/cpu-shares","value":1}]}}"#;
        let err = parse_image_manifest(bad.as_bytes()).unwrap_err();
        assert_eq!(
            err.lines(),
            [
                "name: 'Foo' is not a valid ACIdentifier: uppercase not allowed",
                "app.isolators[0].value: os/linux/cpu-shares must be between 2 and 262144, got 1",
                "app.group: is required (a group name or gid, e.g. \"0\")",
                "app.workingDirectory: must be an absolute path",
            ]
        );
    }

    #[test]
    fn unknown_isolators_invalidate_an_image_app_only() {
        let image = r#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"a",
            "app":{"exec":[],"user":"0","group":"0","isolators":[{"name":"x/y","value":1}]}}"#;
        assert!(parse_image_manifest(image.as_bytes()).is_err());
    }

    #[test]
    fn detects_the_kind() {
        assert!(matches!(
            parse_manifest(MAIN.as_bytes()),
            Ok(Manifest::Image(_))
        ));
        assert!(parse_manifest(br#"{"acVersion":"0.8.11"}"#).is_err());
        assert!(parse_manifest(b"[]").is_err());
        assert!(parse_manifest(br#"{"acKind":"Other"}"#).is_err());
    }
}
