//! The image manifest (`acKind: ImageManifest`) and the app it describes.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::decode::{Ctx, join};
use crate::isolator::{Isolator, check_app_isolators, decode_isolator};
use crate::json::Node;
use crate::labels::{
    Annotation, Hash, Label, decode_annotations, decode_hash, decode_identifier, decode_labels,
};
use crate::names::{AcIdentifier, AcKind, AcName};
use crate::semver::SemVer;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    pub ac_kind: AcKind,
    pub ac_version: SemVer,
    pub name: AcIdentifier,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<Label>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<App>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub annotations: Vec<Annotation>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<Dependency>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub path_whitelist: Vec<String>,
}

impl ImageManifest {
    /// A minimal manifest for `name` (no app).
    pub fn new(name: AcIdentifier) -> Self {
        ImageManifest {
            ac_kind: AcKind::ImageManifest,
            ac_version: SemVer::appc(),
            name,
            labels: Vec::new(),
            app: None,
            annotations: Vec::new(),
            dependencies: Vec::new(),
            path_whitelist: Vec::new(),
        }
    }

    pub fn label(&self, name: &str) -> Option<&str> {
        crate::labels::get(&self.labels, name)
    }

    pub fn annotation(&self, name: &str) -> Option<&str> {
        crate::labels::get(&self.annotations, name)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct App {
    pub exec: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub event_handlers: Vec<EventHandler>,
    pub user: String,
    pub group: String,
    #[serde(rename = "supplementaryGIDs", skip_serializing_if = "Vec::is_empty")]
    pub supplementary_gids: Vec<i64>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub working_directory: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub environment: Vec<EnvVar>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mount_points: Vec<MountPoint>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<Port>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub isolators: Vec<Isolator>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub user_annotations: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub user_labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventHandler {
    /// `pre-start` or `post-stop`.
    pub name: String,
    pub exec: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MountPoint {
    pub name: AcName,
    pub path: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Port {
    pub name: AcName,
    pub protocol: String,
    pub port: u64,
    /// Number of ports in the range starting at `port` (at least 1).
    pub count: u64,
    pub socket_activated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Dependency {
    pub image_name: AcIdentifier,
    #[serde(rename = "imageID", skip_serializing_if = "Option::is_none")]
    pub image_id: Option<Hash>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<Label>,
    #[serde(skip_serializing_if = "is_zero")]
    pub size: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

pub(crate) fn decode_image_manifest(ctx: &mut Ctx, node: &Node) -> ImageManifest {
    let mut kind = None;
    let mut version = None;
    let mut m = ImageManifest::new(AcIdentifier::default());
    let names = &[
        "acKind",
        "acVersion",
        "name",
        "labels",
        "app",
        "annotations",
        "dependencies",
        "pathWhitelist",
    ];
    let Some(fields) = ctx.object(node, "", names) else {
        ctx.fail("", "a manifest must be a JSON object");
        return m;
    };
    for (key, value) in fields {
        let f = key;
        match key {
            "acKind" => kind = decode_kind(ctx, value, f),
            "acVersion" => version = decode_version(ctx, value, f),
            "name" => m.name = decode_identifier(ctx, value, f),
            "labels" => m.labels = decode_labels(ctx, value, f),
            "app" => m.app = decode_optional_app(ctx, value, f),
            "annotations" => m.annotations = decode_annotations(ctx, value, f),
            "dependencies" => {
                m.dependencies = ctx.array(value, f, decode_dependency).unwrap_or_default();
            }
            _ => {
                m.path_whitelist = ctx
                    .array(value, f, |c, n, p| c.string(n, p).unwrap_or_default())
                    .unwrap_or_default();
            }
        }
    }
    expect_kind(ctx, kind, AcKind::ImageManifest);
    match version {
        Some(v) => m.ac_version = v,
        None => ctx.fail("acVersion", "must be set (e.g. \"0.8.11\")"),
    }
    if m.name.is_empty() && !ctx.problems.iter().any(|p| p.field == "name") {
        ctx.fail("name", "must be set (e.g. \"example.com/app\")");
    }
    m
}

pub(crate) fn decode_kind(ctx: &mut Ctx, node: &Node, field: &str) -> Option<AcKind> {
    let s = ctx.custom_string(node, field)?;
    match AcKind::parse(&s) {
        Ok(kind) => Some(kind),
        Err(why) => {
            ctx.fail(field, why);
            None
        }
    }
}

pub(crate) fn expect_kind(ctx: &mut Ctx, kind: Option<AcKind>, want: AcKind) {
    if kind != Some(want) && !ctx.problems.iter().any(|p| p.field == "acKind") {
        ctx.fail("acKind", format!("must be \"{want}\""));
    }
}

pub(crate) fn decode_version(ctx: &mut Ctx, node: &Node, field: &str) -> Option<SemVer> {
    let s = ctx.custom_string(node, field)?;
    match SemVer::parse(&s) {
        Ok(v) => Some(v),
        Err(why) => {
            ctx.fail(field, why);
            None
        }
    }
}

/// `app` as a pointer field: `null` means no app.
pub(crate) fn decode_optional_app(ctx: &mut Ctx, node: &Node, field: &str) -> Option<App> {
    if node.value == crate::json::Value::Null {
        return None;
    }
    Some(decode_app(ctx, node, field))
}

fn decode_exec(ctx: &mut Ctx, node: &Node, field: &str) -> Vec<String> {
    ctx.array(node, field, |c, n, p| c.string(n, p).unwrap_or_default())
        .unwrap_or_default()
}

fn decode_app(ctx: &mut Ctx, node: &Node, field: &str) -> App {
    let mut app = App::default();
    let names = &[
        "exec",
        "eventHandlers",
        "user",
        "group",
        "supplementaryGIDs",
        "workingDirectory",
        "environment",
        "mountPoints",
        "ports",
        "isolators",
        "userAnnotations",
        "userLabels",
    ];
    for (key, value) in ctx.object(node, field, names).unwrap_or_default() {
        let f = &join(field, key);
        match key {
            "exec" => app.exec = decode_exec(ctx, value, f),
            "eventHandlers" => {
                app.event_handlers = ctx
                    .array(value, f, decode_event_handler)
                    .unwrap_or_default();
            }
            "user" => app.user = ctx.string(value, f).unwrap_or(app.user),
            "group" => app.group = ctx.string(value, f).unwrap_or(app.group),
            "supplementaryGIDs" => {
                app.supplementary_gids = ctx
                    .array(value, f, |c, n, p| c.int(n, p).unwrap_or_default())
                    .unwrap_or_default();
            }
            "workingDirectory" => {
                app.working_directory = ctx.string(value, f).unwrap_or(app.working_directory);
            }
            "environment" => app.environment = decode_environment(ctx, value, f),
            "mountPoints" => {
                app.mount_points = ctx.array(value, f, decode_mount_point).unwrap_or_default();
            }
            "ports" => app.ports = ctx.array(value, f, decode_port).unwrap_or_default(),
            "isolators" => {
                app.isolators = ctx.array(value, f, decode_isolator).unwrap_or_default();
                check_app_isolators(ctx, &app.isolators, f);
            }
            "userAnnotations" => {
                app.user_annotations = ctx.string_map(value, f).unwrap_or_default()
            }
            _ => app.user_labels = ctx.string_map(value, f).unwrap_or_default(),
        }
    }
    if app.user.is_empty() {
        ctx.fail(
            &join(field, "user"),
            "is required (a user name or uid, e.g. \"0\")",
        );
    }
    if app.group.is_empty() {
        ctx.fail(
            &join(field, "group"),
            "is required (a group name or gid, e.g. \"0\")",
        );
    }
    if !app.working_directory.is_empty() && !app.working_directory.starts_with('/') {
        ctx.fail(&join(field, "workingDirectory"), "must be an absolute path");
    }
    ctx.check_unique(
        &join(field, "eventHandlers"),
        "event handler",
        app.event_handlers.iter().map(|h| h.name.as_str()),
    );
    app
}

fn decode_event_handler(ctx: &mut Ctx, node: &Node, field: &str) -> EventHandler {
    let mut handler = EventHandler {
        name: String::new(),
        exec: Vec::new(),
    };
    for (key, value) in ctx
        .object(node, field, &["name", "exec"])
        .unwrap_or_default()
    {
        let f = &join(field, key);
        match key {
            "name" => handler.name = ctx.string(value, f).unwrap_or(handler.name),
            _ => handler.exec = decode_exec(ctx, value, f),
        }
    }
    match handler.name.as_str() {
        "pre-start" | "post-stop" => {}
        "" => ctx.fail(
            &join(field, "name"),
            "must be set (\"pre-start\" or \"post-stop\")",
        ),
        other => ctx.fail(
            &join(field, "name"),
            format!("unknown event handler '{other}' (must be \"pre-start\" or \"post-stop\")"),
        ),
    }
    handler
}

/// Why `name` is no environment variable name an app may have.
pub fn env_name_problem(name: &str) -> Option<String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if name.is_empty() {
        return Some("must not be empty".to_string());
    }
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
        return Some(format!(
            "'{name}' is not a valid variable name (letters, digits, '_', '.', '-'; not starting with a digit)"
        ));
    }
    None
}

pub(crate) fn decode_environment(ctx: &mut Ctx, node: &Node, field: &str) -> Vec<EnvVar> {
    let vars = ctx
        .array(node, field, |c, n, f| {
            let mut var = EnvVar {
                name: String::new(),
                value: String::new(),
            };
            for (key, value) in c.object(n, f, &["name", "value"]).unwrap_or_default() {
                let p = &join(f, key);
                match key {
                    "name" => var.name = c.string(value, p).unwrap_or(var.name),
                    _ => var.value = c.string(value, p).unwrap_or(var.value),
                }
            }
            var
        })
        .unwrap_or_default();
    for (i, var) in vars.iter().enumerate() {
        ctx.check(&format!("{field}[{i}].name"), env_name_problem(&var.name));
    }
    ctx.check_unique(
        field,
        "environment variable",
        vars.iter().map(|v| v.name.as_str()),
    );
    vars
}

pub(crate) fn decode_ac_name(ctx: &mut Ctx, node: &Node, field: &str) -> AcName {
    let Some(s) = ctx.custom_string(node, field) else {
        return Default::default();
    };
    if ctx.check(field, AcName::problem(&s)) {
        AcName::from_validated(s)
    } else {
        AcName::default()
    }
}

fn decode_mount_point(ctx: &mut Ctx, node: &Node, field: &str) -> MountPoint {
    let mut mp = MountPoint {
        name: AcName::default(),
        path: String::new(),
        read_only: false,
    };
    let names = &["name", "path", "readOnly"];
    for (key, value) in ctx.object(node, field, names).unwrap_or_default() {
        let f = &join(field, key);
        match key {
            "name" => mp.name = decode_ac_name(ctx, value, f),
            "path" => mp.path = ctx.string(value, f).unwrap_or(mp.path),
            _ => mp.read_only = ctx.boolean(value, f).unwrap_or(mp.read_only),
        }
    }
    mp
}

pub(crate) fn decode_port(ctx: &mut Ctx, node: &Node, field: &str) -> Port {
    let mut port = Port {
        name: AcName::default(),
        protocol: String::new(),
        port: 0,
        count: 0,
        socket_activated: false,
    };
    let names = &["name", "protocol", "port", "count", "socketActivated"];
    for (key, value) in ctx.object(node, field, names).unwrap_or_default() {
        let f = &join(field, key);
        match key {
            "name" => port.name = decode_ac_name(ctx, value, f),
            "protocol" => port.protocol = ctx.string(value, f).unwrap_or(port.protocol),
            "port" => port.port = ctx.uint(value, f).unwrap_or(port.port),
            "count" => port.count = ctx.uint(value, f).unwrap_or(port.count),
            _ => port.socket_activated = ctx.boolean(value, f).unwrap_or(port.socket_activated),
        }
    }
    if !(1..=65535).contains(&port.port) {
        ctx.fail(&join(field, "port"), "must be in the range 1-65535");
    } else if port.port.wrapping_add(port.count) > 65536 {
        // Wrapping, as Go's uint arithmetic does.
        ctx.fail(
            &join(field, "count"),
            "the port range must end at or below 65535",
        );
    }
    if port.count == 0 {
        port.count = 1;
    }
    port
}

fn decode_dependency(ctx: &mut Ctx, node: &Node, field: &str) -> Dependency {
    let mut dep = Dependency {
        image_name: AcIdentifier::default(),
        image_id: None,
        labels: Vec::new(),
        size: 0,
    };
    let names = &["imageName", "imageID", "labels", "size"];
    for (key, value) in ctx.object(node, field, names).unwrap_or_default() {
        let f = &join(field, key);
        match key {
            "imageName" => dep.image_name = decode_identifier(ctx, value, f),
            "imageID" => {
                dep.image_id =
                    (value.value != crate::json::Value::Null).then(|| decode_hash(ctx, value, f));
            }
            "labels" => dep.labels = decode_labels(ctx, value, f),
            _ => dep.size = ctx.uint(value, f).unwrap_or(dep.size),
        }
    }
    if dep.image_name.is_empty() {
        ctx.fail(&join(field, "imageName"), "must be set");
    }
    dep
}
