//! The pod manifest (`acKind: PodManifest`): the apps of a pod, their images,
//! volumes, mounts, isolators and exposed ports.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Serialize;

use crate::decode::{Ctx, join};
use crate::image::{
    App, Port, decode_ac_name, decode_kind, decode_optional_app, decode_port, decode_version,
    expect_kind,
};
use crate::isolator::{Isolator, decode_isolator};
use crate::json::{Node, Value};
use crate::labels::{
    Annotation, Hash, Label, decode_annotations, decode_hash, decode_identifier, decode_labels,
};
use crate::names::{AcIdentifier, AcKind, AcName};
use crate::semver::SemVer;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodManifest {
    /// `actool` does not require it in a pod manifest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ac_version: Option<SemVer>,
    pub ac_kind: AcKind,
    pub apps: Vec<RuntimeApp>,
    pub volumes: Vec<Volume>,
    pub isolators: Vec<Isolator>,
    pub annotations: Vec<Annotation>,
    pub ports: Vec<ExposedPort>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub user_annotations: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub user_labels: BTreeMap<String, String>,
}

impl Default for PodManifest {
    fn default() -> Self {
        PodManifest {
            ac_version: Some(SemVer::appc()),
            ac_kind: AcKind::PodManifest,
            apps: Vec::new(),
            volumes: Vec::new(),
            isolators: Vec::new(),
            annotations: Vec::new(),
            ports: Vec::new(),
            user_annotations: BTreeMap::new(),
            user_labels: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeApp {
    pub name: AcName,
    pub image: RuntimeImage,
    /// Overrides the image's app when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<App>,
    #[serde(rename = "readOnlyRootFS", skip_serializing_if = "std::ops::Not::not")]
    pub read_only_root_fs: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub annotations: Vec<Annotation>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct RuntimeImage {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<AcIdentifier>,
    pub id: Hash,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<Label>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Mount {
    pub volume: AcName,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_volume: Option<Volume>,
}

/// A pod volume: `host` (a host directory) or `empty` (a fresh directory).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    pub name: AcName,
    pub kind: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recursive: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gid: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExposedPort {
    pub name: AcName,
    pub host_port: u64,
    #[serde(rename = "hostIP", skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_port: Option<Port>,
}

pub(crate) fn decode_pod_manifest(ctx: &mut Ctx, node: &Node) -> PodManifest {
    let mut kind = None;
    let mut m = PodManifest {
        ac_version: None,
        ..PodManifest::default()
    };
    let names = &[
        "acVersion",
        "acKind",
        "apps",
        "volumes",
        "isolators",
        "annotations",
        "ports",
        "userAnnotations",
        "userLabels",
    ];
    let Some(fields) = ctx.object(node, "", names) else {
        ctx.fail("", "a manifest must be a JSON object");
        return m;
    };
    for (key, value) in fields {
        let f = key;
        match key {
            "acVersion" => m.ac_version = decode_version(ctx, value, f),
            "acKind" => kind = decode_kind(ctx, value, f),
            "apps" => m.apps = ctx.array(value, f, decode_runtime_app).unwrap_or_default(),
            "volumes" => m.volumes = ctx.array(value, f, decode_volume).unwrap_or_default(),
            "isolators" => m.isolators = ctx.array(value, f, decode_isolator).unwrap_or_default(),
            "annotations" => m.annotations = decode_annotations(ctx, value, f),
            "ports" => m.ports = ctx.array(value, f, decode_exposed_port).unwrap_or_default(),
            "userAnnotations" => m.user_annotations = ctx.string_map(value, f).unwrap_or_default(),
            _ => m.user_labels = ctx.string_map(value, f).unwrap_or_default(),
        }
    }
    expect_kind(ctx, kind, AcKind::PodManifest);
    ctx.check_unique("apps", "app name", m.apps.iter().map(|a| a.name.as_str()));
    ctx.check_unique(
        "volumes",
        "volume name",
        m.volumes.iter().map(|v| v.name.as_str()),
    );
    m
}

fn decode_runtime_app(ctx: &mut Ctx, node: &Node, field: &str) -> RuntimeApp {
    let mut app = RuntimeApp {
        name: AcName::default(),
        image: RuntimeImage::default(),
        app: None,
        read_only_root_fs: false,
        mounts: Vec::new(),
        annotations: Vec::new(),
    };
    let names = &[
        "name",
        "image",
        "app",
        "readOnlyRootFS",
        "mounts",
        "annotations",
    ];
    for (key, value) in ctx.object(node, field, names).unwrap_or_default() {
        let f = &join(field, key);
        match key {
            "name" => app.name = decode_ac_name(ctx, value, f),
            "image" => app.image = decode_runtime_image(ctx, value, f, app.image),
            "app" => app.app = decode_optional_app(ctx, value, f),
            "readOnlyRootFS" => {
                app.read_only_root_fs = ctx.boolean(value, f).unwrap_or(app.read_only_root_fs);
            }
            "mounts" => app.mounts = ctx.array(value, f, decode_mount).unwrap_or_default(),
            _ => app.annotations = decode_annotations(ctx, value, f),
        }
    }
    app
}

fn decode_runtime_image(
    ctx: &mut Ctx,
    node: &Node,
    field: &str,
    mut image: RuntimeImage,
) -> RuntimeImage {
    for (key, value) in ctx
        .object(node, field, &["name", "id", "labels"])
        .unwrap_or_default()
    {
        let f = &join(field, key);
        match key {
            "name" => {
                image.name = (value.value != Value::Null).then(|| decode_identifier(ctx, value, f));
            }
            "id" => image.id = decode_hash(ctx, value, f),
            _ => image.labels = decode_labels(ctx, value, f),
        }
    }
    image
}

fn decode_mount(ctx: &mut Ctx, node: &Node, field: &str) -> Mount {
    let mut mount = Mount {
        volume: AcName::default(),
        path: String::new(),
        app_volume: None,
    };
    for (key, value) in ctx
        .object(node, field, &["volume", "path", "appVolume"])
        .unwrap_or_default()
    {
        let f = &join(field, key);
        match key {
            "volume" => mount.volume = decode_ac_name(ctx, value, f),
            "path" => mount.path = ctx.string(value, f).unwrap_or(mount.path),
            _ => {
                mount.app_volume =
                    (value.value != Value::Null).then(|| decode_volume(ctx, value, f))
            }
        }
    }
    mount
}

pub(crate) fn decode_volume(ctx: &mut Ctx, node: &Node, field: &str) -> Volume {
    let mut v = Volume {
        name: AcName::default(),
        kind: String::new(),
        source: String::new(),
        read_only: None,
        recursive: None,
        mode: None,
        uid: None,
        gid: None,
    };
    let names = &[
        "name",
        "kind",
        "source",
        "readOnly",
        "recursive",
        "mode",
        "uid",
        "gid",
    ];
    for (key, value) in ctx.object(node, field, names).unwrap_or_default() {
        let f = &join(field, key);
        let null = value.value == Value::Null;
        match key {
            "name" => v.name = decode_ac_name(ctx, value, f),
            "kind" => v.kind = ctx.string(value, f).unwrap_or(v.kind),
            "source" => v.source = ctx.string(value, f).unwrap_or(v.source),
            "readOnly" => v.read_only = if null { None } else { ctx.boolean(value, f) },
            "recursive" => v.recursive = if null { None } else { ctx.boolean(value, f) },
            "mode" => v.mode = if null { None } else { ctx.string(value, f) },
            "uid" => v.uid = if null { None } else { ctx.int(value, f) },
            _ => v.gid = if null { None } else { ctx.int(value, f) },
        }
    }
    if v.kind == "empty" {
        v.mode.get_or_insert_with(|| "0755".to_string());
        v.uid.get_or_insert(0);
        v.gid.get_or_insert(0);
    }
    let problem = if v.name.is_empty() {
        Some(("name", "must be set".to_string()))
    } else {
        match v.kind.as_str() {
            "empty" if !v.source.is_empty() => {
                Some(("source", "must be empty for an empty volume".to_string()))
            }
            "empty" => None,
            "host" if v.source.is_empty() => {
                Some(("source", "must be set for a host volume".to_string()))
            }
            "host" if v.mode.is_some() || v.uid.is_some() || v.gid.is_some() => Some((
                "kind",
                "a host volume cannot set mode, uid or gid".to_string(),
            )),
            "host" if !v.source.starts_with('/') => {
                Some(("source", "must be an absolute path".to_string()))
            }
            "host" => None,
            other => Some((
                "kind",
                format!("unknown volume kind '{other}' (must be \"empty\" or \"host\")"),
            )),
        }
    };
    if let Some((key, why)) = problem {
        ctx.fail(&join(field, key), why);
    }
    v
}

fn decode_exposed_port(ctx: &mut Ctx, node: &Node, field: &str) -> ExposedPort {
    let mut p = ExposedPort {
        name: AcName::default(),
        host_port: 0,
        host_ip: None,
        pod_port: None,
    };
    let names = &["name", "hostPort", "hostIP", "podPort"];
    for (key, value) in ctx.object(node, field, names).unwrap_or_default() {
        let f = &join(field, key);
        match key {
            "name" => p.name = decode_ac_name(ctx, value, f),
            "hostPort" => p.host_port = ctx.uint(value, f).unwrap_or(p.host_port),
            "hostIP" => match ctx.string(value, f).as_deref() {
                None | Some("") => p.host_ip = None,
                Some(text) => match text.parse::<IpAddr>() {
                    Ok(ip) => p.host_ip = Some(ip),
                    Err(_) => ctx.fail(f, format!("'{text}' is not an IP address")),
                },
            },
            _ => p.pod_port = (value.value != Value::Null).then(|| decode_port(ctx, value, f)),
        }
    }
    p
}

/// Parses the command-line form of a volume, as rkt's `--volume`:
/// `name,kind=host,source=/srv,readOnly=true,recursive=true` or
/// `name,kind=empty,mode=0700,uid=1000,gid=1000`. Checked with the same
/// rules as a volume in a pod manifest.
pub fn volume_from_flag(flag: &str) -> Result<Volume, String> {
    let mut parts = flag.split(',');
    let name = parts.next().unwrap_or_default();
    let mut obj = serde_json::Map::new();
    obj.insert("name".into(), serde_json::Value::String(name.to_string()));
    for part in parts {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| format!("volume option '{part}' has no value (use key=value)"))?;
        let json = match key {
            "kind" | "source" | "mode" => serde_json::Value::String(value.to_string()),
            "readOnly" | "recursive" => serde_json::Value::Bool(
                value
                    .parse()
                    .map_err(|_| format!("{key}={value}: use true or false"))?,
            ),
            "uid" | "gid" => serde_json::Value::Number(
                value
                    .parse::<i64>()
                    .map_err(|_| format!("{key}={value}: not a number"))?
                    .into(),
            ),
            other => return Err(format!("unknown volume option '{other}'")),
        };
        if obj.insert(key.to_string(), json).is_some() {
            return Err(format!("volume option '{key}' given twice"));
        }
    }
    let text = serde_json::Value::Object(obj).to_string();
    let node = crate::json::parse(text.as_bytes()).map_err(|e| e.to_string())?;
    let mut ctx = Ctx::new(text.as_bytes());
    let volume = decode_volume(&mut ctx, &node, "volume");
    match ctx.problems.first() {
        Some(p) => Err(p.to_string()),
        None => Ok(volume),
    }
}

#[cfg(test)]
mod flag_tests {
    use super::*;

    #[test]
    fn volume_flags() {
        let v = volume_from_flag("data,kind=host,source=/srv,readOnly=true").unwrap();
        assert_eq!(
            (v.kind.as_str(), v.source.as_str(), v.read_only),
            ("host", "/srv", Some(true))
        );
        let v = volume_from_flag("db,kind=empty,mode=0700,uid=5").unwrap();
        assert_eq!(
            (v.mode.as_deref(), v.uid, v.gid),
            (Some("0700"), Some(5), Some(0))
        );
        for bad in [
            "x,kind=host",
            "x,kind=host,source=rel",
            "Bad,kind=empty",
            "x,kind=other",
            "x,kind=empty,foo=1",
            "x,kind",
        ] {
            assert!(volume_from_flag(bad).is_err(), "{bad}");
        }
    }
}
