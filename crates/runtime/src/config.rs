//! A bundle's config.json, read and checked before anything is made: what
//! the runtime-spec says a runtime MUST refuse (unknown rlimits, duplicates,
//! relative hook paths, …) is refused here with the field named; unknown
//! capabilities are dropped with a warning, as the spec says
//! ([`crate::capabilities`]).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};

use crate::{Result, RuntimeError};

/// The largest config.json read (a config is a few KiB; hostile input must
/// not exhaust memory).
const MAX_CONFIG: u64 = 16 << 20;

/// A checked configuration and where its bundle is.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub dir: PathBuf,
    pub spec: Spec,
    /// The root filesystem, absolute.
    pub rootfs: PathBuf,
}

fn invalid(bundle: &Path, message: impl Into<String>) -> RuntimeError {
    RuntimeError::Config {
        bundle: bundle.to_path_buf(),
        message: message.into(),
    }
}

/// Reads `<bundle>/config.json` and checks it.
pub fn load(bundle: &Path) -> Result<Bundle> {
    let dir = std::path::absolute(bundle).map_err(crate::io_err(format!(
        "resolve the bundle {}",
        bundle.display()
    )))?;
    let path = dir.join("config.json");
    let file = std::fs::File::open(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            RuntimeError::Invalid(format!(
                "no config.json in the bundle {} (pass the bundle directory with --bundle, or create one with `skiff-runtime spec`)",
                dir.display()
            ))
        } else {
            crate::io_err(format!("read {}", path.display()))(e)
        }
    })?;
    let mut text = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(file, MAX_CONFIG + 1), &mut text)
        .map_err(crate::io_err(format!("read {}", path.display())))?;
    if text.len() as u64 > MAX_CONFIG {
        return Err(invalid(&dir, "larger than 16 MiB"));
    }
    let mut spec = parse(&dir, &text)?;
    if let Some(mut process) = spec.process().clone() {
        crate::capabilities::drop_ungrantable(&mut process)?;
        spec.set_process(Some(process));
    }
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| invalid(&dir, "no root (root.path names the root filesystem)"))?;
    let rootfs =
        std::fs::canonicalize(dir.join(root.path())).unwrap_or_else(|_| dir.join(root.path()));
    if !rootfs.is_dir() {
        return Err(invalid(
            &dir,
            format!("root.path {} is not a directory", rootfs.display()),
        ));
    }
    Ok(Bundle { dir, spec, rootfs })
}

/// Parses and checks a config (also for `update` and tests).
pub fn parse(bundle: &Path, text: &[u8]) -> Result<Spec> {
    let mut value = json_without_duplicate_keys(text).map_err(|e| invalid(bundle, e))?;
    if let Some(process) = value.get_mut("process") {
        let unknown =
            crate::capabilities::strip_unknown(process).map_err(|e| invalid(bundle, e))?;
        crate::capabilities::warn_unknown(&unknown);
    }
    let spec: Spec = serde_json::from_value(value).map_err(|e| invalid(bundle, e.to_string()))?;
    check(bundle, &spec)?;
    Ok(spec)
}

fn check(bundle: &Path, spec: &Spec) -> Result<()> {
    let version = spec.version();
    if !version.starts_with("1.") {
        return Err(invalid(
            bundle,
            format!(
                "ociVersion '{version}' is not supported (skiff-runtime implements runtime-spec 1.x)"
            ),
        ));
    }
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| invalid(bundle, "no process: a container needs process.args"))?;
    check_process(process).map_err(|m| invalid(bundle, m))?;
    if let Some(linux) = spec.linux() {
        let mut seen = HashSet::new();
        for ns in linux.namespaces().iter().flatten() {
            if !seen.insert(ns.typ()) {
                return Err(invalid(
                    bundle,
                    format!("linux.namespaces lists {:?} twice", ns.typ()),
                ));
            }
            if let Some(path) = ns.path()
                && !path.is_absolute()
            {
                return Err(invalid(
                    bundle,
                    format!(
                        "the path of the {:?} namespace, {}, is not absolute",
                        ns.typ(),
                        path.display()
                    ),
                ));
            }
        }
        let has_userns = seen.contains(&LinuxNamespaceType::User);
        let maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
            || linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
        if maps && !has_userns {
            return Err(invalid(
                bundle,
                "uidMappings/gidMappings need a user namespace in linux.namespaces",
            ));
        }
        for sysctl in linux.sysctl().iter().flatten().map(|(k, _)| k) {
            if sysctl.is_empty() || sysctl.contains("..") || sysctl.contains('/') {
                return Err(invalid(bundle, format!("bad sysctl name '{sysctl}'")));
            }
            check_sysctl(sysctl, &seen).map_err(|m| invalid(bundle, m))?;
        }
        for p in linux
            .masked_paths()
            .iter()
            .flatten()
            .chain(linux.readonly_paths().iter().flatten())
        {
            if !p.starts_with('/') {
                return Err(invalid(
                    bundle,
                    format!("masked and read-only paths must be absolute: '{p}'"),
                ));
            }
        }
    }
    if let Some(hooks) = spec.hooks() {
        let all = [
            hooks.prestart(),
            hooks.create_runtime(),
            hooks.create_container(),
            hooks.start_container(),
            hooks.poststart(),
            hooks.poststop(),
        ];
        for hook in all.into_iter().flatten().flatten() {
            if !hook.path().is_absolute() {
                return Err(invalid(
                    bundle,
                    format!("hook path {} is not absolute", hook.path().display()),
                ));
            }
        }
    }
    for m in spec.mounts().iter().flatten() {
        if m.destination().as_os_str().is_empty() {
            return Err(invalid(bundle, "a mount has no destination"));
        }
    }
    Ok(())
}

/// The namespace a sysctl belongs to (for [`check_sysctl`]'s callers).
pub fn sysctl_namespace(name: &str) -> Option<LinuxNamespaceType> {
    if name.starts_with("net.") {
        Some(LinuxNamespaceType::Network)
    } else if name.starts_with("kernel.") || name.starts_with("fs.mqueue.") {
        Some(LinuxNamespaceType::Ipc)
    } else {
        None
    }
}

/// The sysctls a container may set: only those of a namespace it has of
/// its own (IPC, network, UTS), as runc allows; any other would change the
/// host (`kernel.core_pattern` runs a program as host root).
fn check_sysctl(name: &str, namespaces: &HashSet<LinuxNamespaceType>) -> Result<(), String> {
    const IPC: [&str; 8] = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    let needs = if IPC.contains(&name) || name.starts_with("fs.mqueue.") {
        LinuxNamespaceType::Ipc
    } else if name.starts_with("net.") {
        LinuxNamespaceType::Network
    } else if name == "kernel.hostname" || name == "kernel.domainname" {
        return Err(format!(
            "sysctl {name}: set the container's names with hostname and domainname instead"
        ));
    } else {
        return Err(format!(
            "sysctl {name} is not namespaced: setting it would change the host (only IPC, network and UTS sysctls are allowed)"
        ));
    };
    if namespaces.contains(&needs) {
        Ok(())
    } else {
        Err(format!(
            "sysctl {name} needs a {needs:?} namespace of the container's own (add it to linux.namespaces)"
        ))
    }
}

/// What the runtime-spec requires of a process (also for `exec`'s
/// process.json).
pub fn check_process(process: &Process) -> Result<(), String> {
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err("process.args is empty: name the program to run".into());
    }
    if !process.cwd().is_absolute() {
        return Err(format!(
            "process.cwd {} is not absolute",
            process.cwd().display()
        ));
    }
    let mut types = Vec::new();
    for limit in process.rlimits().iter().flatten() {
        if types.contains(&limit.typ()) {
            return Err(format!("process.rlimits lists {:?} twice", limit.typ()));
        }
        types.push(limit.typ());
        if limit.soft() > limit.hard() {
            return Err(format!(
                "process.rlimits {:?}: soft limit {} above the hard limit {}",
                limit.typ(),
                limit.soft(),
                limit.hard()
            ));
        }
    }
    for var in process.env().iter().flatten() {
        if !var.contains('=') {
            return Err(format!("process.env entry '{var}' is not NAME=VALUE"));
        }
    }
    Ok(())
}

/// JSON text as a value, refusing an object that has a key twice: serde
/// would take the last one silently, where a tool that checked the config
/// may have read the first (`"capabilities": {…}, "capabilities": {…}`).
fn json_without_duplicate_keys(text: &[u8]) -> std::result::Result<serde_json::Value, String> {
    serde_json::from_slice::<unique::Unique>(text).map_err(|e| e.to_string())?;
    serde_json::from_slice(text).map_err(|e| e.to_string())
}

mod unique {
    //! A JSON document walked only to find an object with a key twice.
    use std::collections::HashSet;
    use std::fmt;

    use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

    pub struct Unique;

    impl<'de> Deserialize<'de> for Unique {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(UniqueVisitor)
        }
    }

    struct UniqueVisitor;

    impl<'de> Visitor<'de> for UniqueVisitor {
        type Value = Unique;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("JSON")
        }
        fn visit_bool<E>(self, _: bool) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_str<E>(self, _: &str) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_unit<E>(self) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Unique, A::Error> {
            while seq.next_element::<Unique>()?.is_some() {}
            Ok(Unique)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Unique, A::Error> {
            let mut keys = HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                if !keys.insert(key.clone()) {
                    return Err(de::Error::custom(format!(
                        "the key '{}' appears twice in one object (say it once)",
                        key.escape_debug()
                    )));
                }
                map.next_value::<Unique>()?;
            }
            Ok(Unique)
        }
    }
}

/// A process.json for `exec`.
pub fn parse_process(text: &[u8]) -> Result<Process> {
    let invalid = |e| RuntimeError::Invalid(format!("process JSON: {e}"));
    let mut value = json_without_duplicate_keys(text).map_err(invalid)?;
    let unknown = crate::capabilities::strip_unknown(&mut value).map_err(invalid)?;
    crate::capabilities::warn_unknown(&unknown);
    let process: Process = serde_json::from_value(value)
        .map_err(|e| RuntimeError::Invalid(format!("process JSON: {e}")))?;
    check_process(&process).map_err(|m| RuntimeError::Invalid(format!("process JSON: {m}")))?;
    Ok(process)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(process: &str) -> Vec<u8> {
        format!(r#"{{"ociVersion":"1.0.2","root":{{"path":"rootfs"}},"process":{process}}}"#)
            .into_bytes()
    }

    #[test]
    fn refuses_what_the_spec_says_must_fail() {
        let b = Path::new("/b");
        let ok = config(r#"{"cwd":"/","args":["sh"],"user":{"uid":0,"gid":0}}"#);
        assert!(parse(b, &ok).is_ok());
        // An unknown capability is not granted, not refused (runtime-spec
        // since #1094).
        let unknown = config(
            r#"{"cwd":"/","args":["sh"],"user":{"uid":0,"gid":0},"capabilities":{"bounding":["CAP_TEST","CAP_KILL"]}}"#,
        );
        let spec = parse(b, &unknown).unwrap();
        let bounding = spec
            .process()
            .as_ref()
            .and_then(|p| p.capabilities().as_ref())
            .and_then(|c| c.bounding().clone());
        assert_eq!(
            bounding,
            Some([oci_spec::runtime::Capability::Kill].into_iter().collect())
        );
        for (bad, why) in [
            (
                r#"{"cwd":"/","args":["sh"],"user":{"uid":0,"gid":0},"rlimits":[{"type":"RLIMIT_TEST","soft":1,"hard":1}]}"#,
                "RLIMIT_TEST",
            ),
            (
                r#"{"cwd":"/","args":["sh"],"user":{"uid":0,"gid":0},"rlimits":[{"type":"RLIMIT_NOFILE","soft":1,"hard":1},{"type":"RLIMIT_NOFILE","soft":2,"hard":2}]}"#,
                "twice",
            ),
            (
                r#"{"cwd":"rel","args":["sh"],"user":{"uid":0,"gid":0}}"#,
                "not absolute",
            ),
            (r#"{"cwd":"/","args":[],"user":{"uid":0,"gid":0}}"#, "empty"),
            (
                r#"{"cwd":"/","args":["sh"],"user":{"uid":0,"gid":0},"capabilities":{"bounding":[]},"capabilities":{"bounding":["CAP_SYS_ADMIN"]}}"#,
                "appears twice",
            ),
        ] {
            let err = parse(b, &config(bad)).unwrap_err().to_string();
            assert!(err.contains(why), "{err}");
        }
    }

    #[test]
    fn exec_processes_drop_unknown_capabilities_too() {
        let p = parse_process(
            br#"{"cwd":"/","args":["sh"],"user":{"uid":0,"gid":0},"capabilities":{"ambient":["CAP_TEST"],"effective":["CAP_CHOWN"]}}"#,
        )
        .unwrap();
        let c = p.capabilities().clone().unwrap();
        assert_eq!(c.ambient().as_ref().map(|s| s.len()), Some(0));
        assert_eq!(c.effective().as_ref().map(|s| s.len()), Some(1));
    }
}
