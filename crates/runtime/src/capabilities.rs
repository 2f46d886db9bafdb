//! Capabilities a config asks for but that cannot be granted. runtime-spec
//! (config.md, since opencontainers/runtime-spec#1094): "Any value which
//! cannot be mapped to a relevant kernel interface, or cannot be granted
//! otherwise MUST be logged as a warning by the runtime. Runtimes SHOULD NOT
//! fail if the container configuration requests capabilities that cannot be
//! granted". runc, crun and youki warn and go on; so does skiff-runtime. Not
//! granting a capability only takes privilege away, so this is safe: the
//! container gets less than it asked for, never more.

use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities, Process};

use crate::{Result, RuntimeError};

/// The five sets' names in config.json.
const SETS: [&str; 5] = [
    "bounding",
    "effective",
    "inheritable",
    "permitted",
    "ambient",
];

/// The most names one set may list: Linux has 41 capabilities; a longer
/// list is not a mistake but an attempt (hostile input), refused.
const MAX_NAMES: usize = 64;

/// The most unknown names a warning spells out.
const MAX_NAMED: usize = 8;

/// No capability in any set (what a process without `capabilities` gets;
/// oci-spec's `Default` would give three).
pub fn none() -> LinuxCapabilities {
    let mut c = LinuxCapabilities::default();
    c.set_bounding(None)
        .set_effective(None)
        .set_inheritable(None)
        .set_permitted(None)
        .set_ambient(None);
    c
}

/// Whether `name` is a capability's canonical name (`CAP_SYS_ADMIN`, as
/// capabilities(7) and runc spell it): oci-spec also takes `sys_admin`,
/// `CAP_CAP_SYS_ADMIN` and Unicode case variants, which would slip past a
/// policy that checks names; those are treated as unknown.
fn canonical(name: &serde_json::Value) -> bool {
    serde_json::from_value::<Capability>(name.clone())
        .ok()
        .and_then(|c| serde_json::to_value(c).ok())
        .is_some_and(|c| &c == name)
}

/// Removes from a process object (JSON, before it is typed) the capability
/// names this build does not know, and returns them (each once). Entries
/// that are not strings are left for the typed parse to refuse; a set
/// longer than any real one is refused.
pub fn strip_unknown(process: &mut serde_json::Value) -> std::result::Result<Vec<String>, String> {
    let mut unknown = Vec::new();
    let Some(sets) = process
        .get_mut("capabilities")
        .and_then(serde_json::Value::as_object_mut)
    else {
        return Ok(unknown);
    };
    for set in SETS {
        if let Some(names) = sets.get_mut(set).and_then(serde_json::Value::as_array_mut) {
            if names.len() > MAX_NAMES {
                return Err(format!(
                    "process.capabilities.{set} lists {} names; Linux has 41 capabilities (list each at most once)",
                    names.len()
                ));
            }
            names.retain(|name| match name.as_str() {
                Some(text) if !canonical(name) => {
                    if !unknown.iter().any(|u| u == text) {
                        unknown.push(text.to_string());
                    }
                    false
                }
                _ => true,
            });
        }
    }
    Ok(unknown)
}

/// Warns about names [`strip_unknown`] removed, quoted (they are the
/// config's text: no control characters reach a terminal or a log line)
/// and at most [`MAX_NAMED`] of them.
pub fn warn_unknown(unknown: &[String]) {
    if unknown.is_empty() {
        return;
    }
    let mut named: Vec<String> = unknown
        .iter()
        .take(MAX_NAMED)
        .map(|n| format!("{:?}", n.chars().take(64).collect::<String>()))
        .collect();
    if unknown.len() > MAX_NAMED {
        named.push(format!("and {} more", unknown.len() - MAX_NAMED));
    }
    crate::log::warn(&format!(
        "ignoring capabilities this runtime does not know: {} (they are not granted; names are spelled CAP_CHOWN, as in capabilities(7))",
        named.join(", ")
    ));
}

/// Removes from every set of `process` the capabilities this process does
/// not hold in its own bounding set (what it does not hold it cannot grant),
/// warning once about them.
pub fn drop_ungrantable(process: &mut Process) -> Result<()> {
    let Some(mut c) = process.capabilities().clone() else {
        return Ok(());
    };
    let held = caps::read(None, caps::CapSet::Bounding)
        .map_err(|e| RuntimeError::Init(format!("cannot read capabilities: {e}")))?;
    let dropped = retain(&mut c, |cap| {
        format!("CAP_{cap}")
            .parse::<caps::Capability>()
            .is_ok_and(|k| held.contains(&k))
    });
    if !dropped.is_empty() {
        // Canonical names (from the typed value): nothing to quote.
        crate::log::warn(&format!(
            "ignoring capabilities not in this host's bounding set, which cannot be granted: {}",
            dropped.join(", ")
        ));
    }
    let unraisable = drop_unraisable_ambient(&mut c);
    if !unraisable.is_empty() {
        crate::log::warn(&format!(
            "ignoring ambient capabilities that are not also permitted and inheritable, which the kernel cannot raise: {}",
            unraisable.join(", ")
        ));
    }
    if !dropped.is_empty() || !unraisable.is_empty() {
        process.set_capabilities(Some(c));
    }
    Ok(())
}

/// Removes from the ambient set what is not in both the permitted and the
/// inheritable set (the kernel raises nothing else: `PR_CAP_AMBIENT_RAISE`
/// fails with EPERM); returns the names removed, sorted. `runc spec` and
/// `crun spec` write configs with ambient capabilities and no inheritable
/// ones, which runc and crun run without them.
fn drop_unraisable_ambient(c: &mut LinuxCapabilities) -> Vec<String> {
    let (Some(ambient), permitted, inheritable) = (c.ambient(), c.permitted(), c.inheritable())
    else {
        return Vec::new();
    };
    let raisable = |cap: &Capability| {
        permitted.as_ref().is_some_and(|p| p.contains(cap))
            && inheritable.as_ref().is_some_and(|i| i.contains(cap))
    };
    let (kept, removed): (Capabilities, Capabilities) =
        ambient.iter().copied().partition(|cap| raisable(cap));
    let mut names: Vec<String> = removed.iter().map(|cap| format!("CAP_{cap}")).collect();
    names.sort();
    if !names.is_empty() {
        c.set_ambient(Some(kept));
    }
    names
}

/// Keeps in every set what `keep` accepts; returns the names of what it
/// removed, each once, sorted.
fn retain(c: &mut LinuxCapabilities, keep: impl Fn(&Capability) -> bool) -> Vec<String> {
    let mut removed = std::collections::BTreeSet::new();
    let mut filter = |set: &Option<Capabilities>| -> Option<Capabilities> {
        set.as_ref().map(|s| {
            s.iter()
                .filter(|cap| {
                    let k = keep(cap);
                    if !k {
                        removed.insert(format!("CAP_{cap}"));
                    }
                    k
                })
                .copied()
                .collect()
        })
    };
    let bounding = filter(c.bounding());
    let effective = filter(c.effective());
    let inheritable = filter(c.inheritable());
    let permitted = filter(c.permitted());
    let ambient = filter(c.ambient());
    c.set_bounding(bounding)
        .set_effective(effective)
        .set_inheritable(inheritable)
        .set_permitted(permitted)
        .set_ambient(ambient);
    removed.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_are_removed_and_named_once() {
        let mut p = serde_json::json!({"capabilities": {
            "bounding": ["CAP_CHOWN", "CAP_TEST", "CAP_KILL"],
            "effective": ["CAP_TEST", "CAP_NOPE"],
            "ambient": [7],
        }});
        assert_eq!(strip_unknown(&mut p).unwrap(), ["CAP_TEST", "CAP_NOPE"]);
        assert_eq!(
            p["capabilities"]["bounding"],
            serde_json::json!(["CAP_CHOWN", "CAP_KILL"])
        );
        assert_eq!(p["capabilities"]["effective"], serde_json::json!([]));
        // Not a name: left for the typed parse to refuse.
        assert_eq!(p["capabilities"]["ambient"], serde_json::json!([7]));
        let mut none = serde_json::json!({"args": ["sh"]});
        assert!(strip_unknown(&mut none).unwrap().is_empty());
    }

    #[test]
    fn ambient_capabilities_must_be_permitted_and_inheritable() {
        let set = |names: &[Capability]| Some(names.iter().copied().collect::<Capabilities>());
        // What `runc spec` writes: ambient, permitted, no inheritable.
        let mut c = none();
        c.set_permitted(set(&[Capability::Kill, Capability::NetBindService]))
            .set_inheritable(set(&[Capability::NetBindService, Capability::Chown]))
            .set_ambient(set(&[
                Capability::Kill,
                Capability::NetBindService,
                Capability::AuditWrite,
            ]));
        assert_eq!(
            drop_unraisable_ambient(&mut c),
            ["CAP_AUDIT_WRITE", "CAP_KILL"]
        );
        assert_eq!(c.ambient(), &set(&[Capability::NetBindService]));
        assert_eq!(
            c.inheritable(),
            &set(&[Capability::NetBindService, Capability::Chown])
        );
        // Nothing to remove: nothing changes.
        assert!(drop_unraisable_ambient(&mut c).is_empty());
        let mut without = none();
        without.set_ambient(set(&[Capability::Kill]));
        assert_eq!(drop_unraisable_ambient(&mut without), ["CAP_KILL"]);
        assert_eq!(without.ambient(), &set(&[]));
    }

    #[test]
    fn only_canonical_names_count() {
        let mut p = serde_json::json!({"capabilities": {"bounding": [
            "CAP_SYS_ADMIN", "sys_admin", "CAP_CAP_SYS_ADMIN", "cap_sys_admin", "CAP_\u{17f}YS_ADMIN"
        ]}});
        assert_eq!(strip_unknown(&mut p).unwrap().len(), 4);
        assert_eq!(
            p["capabilities"]["bounding"],
            serde_json::json!(["CAP_SYS_ADMIN"])
        );
    }

    #[test]
    fn absurdly_long_sets_are_refused() {
        let names: Vec<String> = (0..100_000).map(|i| format!("A{i}")).collect();
        let mut p = serde_json::json!({"capabilities": {"ambient": names}});
        let err = strip_unknown(&mut p).unwrap_err();
        assert!(err.contains("ambient lists 100000 names"), "{err}");
    }

    #[test]
    fn none_has_no_capability_in_any_set() {
        let c = none();
        for set in [
            c.bounding(),
            c.effective(),
            c.inheritable(),
            c.permitted(),
            c.ambient(),
        ] {
            assert!(set.is_none());
        }
    }

    #[test]
    fn retain_filters_every_set() {
        let mut c: LinuxCapabilities = serde_json::from_value(serde_json::json!({
            "bounding": ["CAP_CHOWN", "CAP_SYS_RESOURCE"],
            "permitted": ["CAP_SYS_RESOURCE"],
            "ambient": ["CAP_KILL"],
        }))
        .unwrap();
        let removed = retain(&mut c, |cap| *cap != Capability::SysResource);
        assert_eq!(removed, ["CAP_SYS_RESOURCE"]);
        assert_eq!(c.bounding().as_ref().map(|s| s.len()), Some(1));
        assert_eq!(c.permitted().as_ref().map(|s| s.len()), Some(0));
        assert_eq!(c.ambient().as_ref().map(|s| s.len()), Some(1));
        assert!(c.effective().is_none());
    }
}
