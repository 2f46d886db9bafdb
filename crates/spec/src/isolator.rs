//! Isolators: the standard ones with their value rules, and unknown ones kept
//! verbatim.
//!
//! What `actool` does, and so skiff: an isolator whose name it does not know
//! is kept in a pod manifest but makes an image manifest's `app` invalid; a
//! known one with no `value` is invalid everywhere (actool crashes on it).
//! `os/linux/apparmor-profile` is not part of appc 0.8.11, so it is "unknown"
//! to validation; its value is still read when well formed so a runtime can
//! apply it (see docs/appc-conformance.md).

use std::collections::BTreeMap;

use serde::Serialize;
use serde::ser::SerializeMap;

use crate::decode::{Ctx, join};
use crate::json::{Node, Value};
use crate::labels::decode_identifier;
use crate::names::AcIdentifier;
use crate::quantity::{Quantity, quantity_problem};

pub const RESOURCE_CPU: &str = "resource/cpu";
pub const RESOURCE_MEMORY: &str = "resource/memory";
pub const RESOURCE_BLOCK_BANDWIDTH: &str = "resource/block-bandwidth";
pub const RESOURCE_BLOCK_IOPS: &str = "resource/block-iops";
pub const RESOURCE_NETWORK_BANDWIDTH: &str = "resource/network-bandwidth";
pub const CAPABILITIES_RETAIN_SET: &str = "os/linux/capabilities-retain-set";
pub const CAPABILITIES_REMOVE_SET: &str = "os/linux/capabilities-remove-set";
pub const SECCOMP_RETAIN_SET: &str = "os/linux/seccomp-retain-set";
pub const SECCOMP_REMOVE_SET: &str = "os/linux/seccomp-remove-set";
pub const NO_NEW_PRIVILEGES: &str = "os/linux/no-new-privileges";
pub const OOM_SCORE_ADJ: &str = "os/linux/oom-score-adj";
pub const CPU_SHARES: &str = "os/linux/cpu-shares";
pub const SELINUX_CONTEXT: &str = "os/linux/selinux-context";
pub const APPARMOR_PROFILE: &str = "os/linux/apparmor-profile";
pub const UNIX_SYSCTL: &str = "os/unix/sysctl";

/// A resource isolator's value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Resource {
    pub default: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<Quantity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<Quantity>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct SeccompSet {
    pub set: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub errno: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct SelinuxContext {
    pub user: String,
    pub role: String,
    #[serde(rename = "type")]
    pub type_: String,
    pub level: String,
}

/// The value of an isolator, typed when the name is a standard one.
#[derive(Debug, Clone, PartialEq)]
pub enum IsolatorValue {
    /// `resource/cpu`, `resource/memory`, `resource/block-*`, `resource/network-bandwidth`.
    Resource(Resource),
    /// `os/linux/capabilities-{retain,remove}-set`.
    Capabilities(Vec<String>),
    /// `os/linux/seccomp-{retain,remove}-set`.
    Seccomp(SeccompSet),
    NoNewPrivileges(bool),
    OomScoreAdj(i64),
    CpuShares(i64),
    SelinuxContext(SelinuxContext),
    /// `os/linux/apparmor-profile` (`{"profile": "name"}`), not in appc 0.8.11.
    AppArmorProfile(String),
    UnixSysctl(BTreeMap<String, String>),
    /// Any other isolator, kept as written.
    Unknown(serde_json::Value),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Isolator {
    pub name: AcIdentifier,
    pub value: IsolatorValue,
}

impl Isolator {
    /// Whether `actool` knows this isolator (an image's app may only use these).
    pub fn is_standard(&self) -> bool {
        !matches!(
            self.value,
            IsolatorValue::Unknown(_) | IsolatorValue::AppArmorProfile(_)
        )
    }

    fn multiple_allowed(&self) -> bool {
        matches!(
            self.value,
            IsolatorValue::Resource(_)
                | IsolatorValue::Capabilities(_)
                | IsolatorValue::NoNewPrivileges(_)
        )
    }
}

impl Serialize for IsolatorValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            IsolatorValue::Resource(r) => r.serialize(s),
            IsolatorValue::Capabilities(set) => {
                let mut map = s.serialize_map(Some(1))?;
                map.serialize_entry("set", set)?;
                map.end()
            }
            IsolatorValue::Seccomp(v) => v.serialize(s),
            IsolatorValue::NoNewPrivileges(b) => s.serialize_bool(*b),
            IsolatorValue::OomScoreAdj(v) | IsolatorValue::CpuShares(v) => s.serialize_i64(*v),
            IsolatorValue::SelinuxContext(v) => v.serialize(s),
            IsolatorValue::AppArmorProfile(p) => {
                let mut map = s.serialize_map(Some(1))?;
                map.serialize_entry("profile", p)?;
                map.end()
            }
            IsolatorValue::UnixSysctl(m) => m.serialize(s),
            IsolatorValue::Unknown(v) => v.serialize(s),
        }
    }
}

impl Serialize for Isolator {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("name", &self.name)?;
        map.serialize_entry("value", &self.value)?;
        map.end()
    }
}

pub(crate) fn decode_isolator(ctx: &mut Ctx, node: &Node, field: &str) -> Isolator {
    let mut name = AcIdentifier::default();
    let mut value_node: Option<&Node> = None;
    for (key, value) in ctx
        .object(node, field, &["name", "value"])
        .unwrap_or_default()
    {
        match key {
            "name" => name = decode_identifier(ctx, value, &join(field, key)),
            _ => value_node = Some(value).filter(|v| v.value != Value::Null),
        }
    }
    let path = join(field, "value");
    let value = decode_value(ctx, name.as_str(), value_node, &path);
    Isolator { name, value }
}

fn decode_value(ctx: &mut Ctx, name: &str, node: Option<&Node>, path: &str) -> IsolatorValue {
    let known = matches!(
        name,
        RESOURCE_CPU
            | RESOURCE_MEMORY
            | RESOURCE_BLOCK_BANDWIDTH
            | RESOURCE_BLOCK_IOPS
            | RESOURCE_NETWORK_BANDWIDTH
            | CAPABILITIES_RETAIN_SET
            | CAPABILITIES_REMOVE_SET
            | SECCOMP_RETAIN_SET
            | SECCOMP_REMOVE_SET
            | NO_NEW_PRIVILEGES
            | OOM_SCORE_ADJ
            | CPU_SHARES
            | SELINUX_CONTEXT
            | UNIX_SYSCTL
    );
    let Some(node) = node else {
        if known {
            ctx.fail(path, format!("isolator '{name}' needs a value"));
        }
        return IsolatorValue::Unknown(serde_json::Value::Null);
    };
    match name {
        RESOURCE_CPU | RESOURCE_MEMORY => {
            let r = decode_resource(ctx, node, path);
            if r.default {
                ctx.fail(&join(path, "default"), format!("must be false for {name}"));
            }
            IsolatorValue::Resource(r)
        }
        RESOURCE_BLOCK_BANDWIDTH | RESOURCE_BLOCK_IOPS | RESOURCE_NETWORK_BANDWIDTH => {
            let r = decode_resource(ctx, node, path);
            if !r.default {
                ctx.fail(&join(path, "default"), format!("must be true for {name}"));
            } else if r.request.is_some() {
                ctx.fail(
                    &join(path, "request"),
                    format!("{name} takes no request, only a limit"),
                );
            }
            IsolatorValue::Resource(r)
        }
        CAPABILITIES_RETAIN_SET | CAPABILITIES_REMOVE_SET => {
            let set = decode_set(ctx, node, path, &["set"]).0;
            IsolatorValue::Capabilities(set)
        }
        SECCOMP_RETAIN_SET | SECCOMP_REMOVE_SET => {
            let (set, errno) = decode_set(ctx, node, path, &["set", "errno"]);
            if let Some(problem) = errno_problem(&errno) {
                ctx.fail(&join(path, "errno"), problem);
            }
            IsolatorValue::Seccomp(SeccompSet { set, errno })
        }
        NO_NEW_PRIVILEGES => {
            IsolatorValue::NoNewPrivileges(ctx.boolean(node, path).unwrap_or(false))
        }
        OOM_SCORE_ADJ => {
            let v = ctx.int(node, path).unwrap_or(0);
            if !(-1000..=1000).contains(&v) {
                ctx.fail(
                    path,
                    format!("{name} must be between -1000 and 1000, got {v}"),
                );
            }
            IsolatorValue::OomScoreAdj(v)
        }
        CPU_SHARES => {
            let v = ctx.int(node, path).unwrap_or(0);
            if !(2..=262_144).contains(&v) {
                ctx.fail(
                    path,
                    format!("{name} must be between 2 and 262144, got {v}"),
                );
            }
            IsolatorValue::CpuShares(v)
        }
        SELINUX_CONTEXT => IsolatorValue::SelinuxContext(decode_selinux(ctx, node, path)),
        UNIX_SYSCTL => IsolatorValue::UnixSysctl(ctx.string_map(node, path).unwrap_or_default()),
        APPARMOR_PROFILE => apparmor_profile(&node.value).map_or_else(
            || IsolatorValue::Unknown(node.value.to_serde()),
            IsolatorValue::AppArmorProfile,
        ),
        _ => IsolatorValue::Unknown(node.value.to_serde()),
    }
}

/// `{"profile": "<non-empty>"}`, or `None` (then kept as an unknown value).
fn apparmor_profile(value: &Value) -> Option<String> {
    let Value::Object(fields) = value else {
        return None;
    };
    match fields.as_slice() {
        [(key, node)] if key == "profile" => match &node.value {
            Value::String(p) if !p.is_empty() => Some(p.clone()),
            _ => None,
        },
        _ => None,
    }
}

fn decode_resource(ctx: &mut Ctx, node: &Node, path: &str) -> Resource {
    let mut r = Resource::default();
    let fields = ctx.object(node, path, &["default", "request", "limit"]);
    for (key, value) in fields.unwrap_or_default() {
        let field = join(path, key);
        match key {
            "default" => r.default = ctx.boolean(value, &field).unwrap_or(r.default),
            "request" => r.request = decode_quantity(ctx, value, &field),
            _ => r.limit = decode_quantity(ctx, value, &field),
        }
    }
    r
}

/// Quantities read the raw JSON bytes: `"1G"` and `1000` are both accepted,
/// and the quotes are stripped without unescaping (as in Kubernetes' code).
fn decode_quantity(ctx: &mut Ctx, node: &Node, field: &str) -> Option<Quantity> {
    if node.value == Value::Null {
        return None;
    }
    let raw = String::from_utf8_lossy(ctx.raw(node)).into_owned();
    let unquoted = raw
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .unwrap_or(&raw);
    let text = unquoted.trim();
    if ctx.check(field, quantity_problem(text)) {
        Quantity::parse(text).ok()
    } else {
        None
    }
}

/// A `{"set": [...], "errno": "..."}` value; returns (set, errno).
fn decode_set(
    ctx: &mut Ctx,
    node: &Node,
    path: &str,
    names: &[&'static str],
) -> (Vec<String>, String) {
    let mut set = Vec::new();
    let mut errno = String::new();
    for (key, value) in ctx.object(node, path, names).unwrap_or_default() {
        let field = join(path, key);
        match key {
            "set" => {
                set = ctx
                    .array(value, &field, |c, n, f| c.string(n, f).unwrap_or_default())
                    .unwrap_or_default();
            }
            _ => errno = ctx.string(value, &field).unwrap_or(errno),
        }
    }
    if set.is_empty() {
        ctx.fail(&join(path, "set"), "must not be empty");
    }
    (set, errno)
}

fn errno_problem(errno: &str) -> Option<String> {
    if errno.is_empty() {
        return None;
    }
    for (i, c) in errno.char_indices() {
        if i == 0 && c != 'E' {
            return Some(format!("errno must start with 'E', got '{errno}'"));
        }
        if !(c.is_uppercase() || c.is_numeric()) {
            return Some(format!(
                "errno may only contain upper case letters and digits, got '{errno}'"
            ));
        }
    }
    None
}

fn decode_selinux(ctx: &mut Ctx, node: &Node, path: &str) -> SelinuxContext {
    let mut v = SelinuxContext::default();
    for (key, value) in ctx
        .object(node, path, &["user", "role", "type", "level"])
        .unwrap_or_default()
    {
        let s = ctx.string(value, &join(path, key));
        let slot = match key {
            "user" => &mut v.user,
            "role" => &mut v.role,
            "type" => &mut v.type_,
            _ => &mut v.level,
        };
        if let Some(s) = s {
            *slot = s;
        }
    }
    for (key, val, colon_ok) in [
        ("user", &v.user, false),
        ("role", &v.role, false),
        ("type", &v.type_, false),
        ("level", &v.level, true),
    ] {
        if val.is_empty() || (!colon_ok && val.contains(':')) {
            ctx.fail(&join(path, key), format!("invalid SELinux {key} '{val}'"));
        }
    }
    v
}

/// Rules over an app's isolator list (`actool` applies none to a pod's own
/// list): only standard isolators, only one of the single-instance kinds, no
/// seccomp retain and remove sets together.
pub(crate) fn check_app_isolators(ctx: &mut Ctx, isolators: &[Isolator], field: &str) {
    let mut seen: Vec<&str> = Vec::new();
    for (i, iso) in isolators.iter().enumerate() {
        let path = format!("{field}[{i}]");
        let name = iso.name.as_str();
        if !iso.is_standard() {
            ctx.fail(
                &path,
                format!(
                    "unknown isolator '{name}': an image's app may only use the appc 0.8.11 isolators"
                ),
            );
            continue;
        }
        if seen.contains(&name) && !iso.multiple_allowed() {
            ctx.fail(&path, format!("isolator '{name}' may appear only once"));
        }
        let conflict = match name {
            SECCOMP_RETAIN_SET => Some(SECCOMP_REMOVE_SET),
            SECCOMP_REMOVE_SET => Some(SECCOMP_RETAIN_SET),
            _ => None,
        };
        if let Some(other) = conflict.filter(|c| seen.contains(c)) {
            ctx.fail(&path, format!("'{name}' cannot be combined with '{other}'"));
        }
        seen.push(name);
    }
}
