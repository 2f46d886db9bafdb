//! The pod's device policy: default deny, with the usual allow-list.
//!
//! A pod's processes may open only the devices of a minimal /dev — null,
//! zero, full, random, urandom, tty, the pod's own ptys and ptmx — and may
//! make device nodes (as in Docker) but not open them. The host's console
//! is not among them: a pod's `/dev/console` is `/dev/null`. The same
//! list is written three ways: v1 `devices` cgroup rules, the OCI
//! `linux.resources.devices` of the `oci` flavor, and (on the unified
//! hierarchy) a `BPF_PROG_TYPE_CGROUP_DEVICE` program ([`crate::devbpf`]).
//! Every mount a pod can write to is also `nodev` ([`crate::mounts`]).
//! Devices the user passes with `--device` are added to the list
//! ([`allowed`]) and bound into the pod's /dev.

/// Block or character device, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Char,
    Block,
    All,
}

/// Kinds of access to a device.
pub const READ: u8 = 1;
pub const WRITE: u8 = 2;
pub const MKNOD: u8 = 4;
pub const ALL: u8 = READ | WRITE | MKNOD;

/// One allowed device (or range): `None` is any number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub kind: Kind,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: u8,
}

const fn char_dev(major: u32, minor: Option<u32>) -> Rule {
    Rule {
        kind: Kind::Char,
        major: Some(major),
        minor,
        access: ALL,
    }
}

/// What a pod may use; everything else is refused.
pub const ALLOWED: [Rule; 10] = [
    // Making nodes of any device (opening them is another matter).
    Rule {
        kind: Kind::Char,
        major: None,
        minor: None,
        access: MKNOD,
    },
    Rule {
        kind: Kind::Block,
        major: None,
        minor: None,
        access: MKNOD,
    },
    char_dev(1, Some(3)), // null
    char_dev(1, Some(5)), // zero
    char_dev(1, Some(7)), // full
    char_dev(1, Some(8)), // random
    char_dev(1, Some(9)), // urandom
    char_dev(5, Some(0)), // tty
    char_dev(5, Some(2)), // ptmx
    char_dev(136, None),  // the pod's ptys (devpts)
];

impl Rule {
    /// The v1 `devices.allow` line: `c 1:3 rwm`.
    pub fn v1_line(&self) -> String {
        let kind = match self.kind {
            Kind::Char => "c",
            Kind::Block => "b",
            Kind::All => "a",
        };
        let number = |n: Option<u32>| n.map_or("*".to_string(), |n| n.to_string());
        let mut access = String::new();
        for (bit, c) in [(READ, 'r'), (WRITE, 'w'), (MKNOD, 'm')] {
            if self.access & bit != 0 {
                access.push(c);
            }
        }
        format!(
            "{kind} {}:{} {access}",
            number(self.major),
            number(self.minor)
        )
    }

    /// The OCI `linux.resources.devices` entry.
    pub fn oci(&self) -> serde_json::Value {
        let mut access = String::new();
        for (bit, c) in [(READ, 'r'), (WRITE, 'w'), (MKNOD, 'm')] {
            if self.access & bit != 0 {
                access.push(c);
            }
        }
        let mut v = serde_json::json!({"allow": true, "access": access});
        match self.kind {
            Kind::Char => v["type"] = "c".into(),
            Kind::Block => v["type"] = "b".into(),
            Kind::All => v["type"] = "a".into(),
        }
        if let Some(major) = self.major {
            v["major"] = major.into();
        }
        if let Some(minor) = self.minor {
            v["minor"] = minor.into();
        }
        v
    }
}

/// The pod's allow-list: [`ALLOWED`] and the devices the user passed
/// (`--device`), each readable and writable.
pub fn allowed(passed: &[skiff_pod::devices::PodDevice]) -> Vec<Rule> {
    use skiff_pod::devices::DeviceKind;
    ALLOWED
        .iter()
        .copied()
        .chain(passed.iter().map(|d| Rule {
            kind: match d.kind {
                DeviceKind::Char => Kind::Char,
                DeviceKind::Block => Kind::Block,
            },
            major: Some(d.major),
            minor: Some(d.minor),
            access: ALL,
        }))
        .collect()
}

/// The OCI device list: deny everything, then the allow-list.
pub fn oci_rules(allowed: &[Rule]) -> serde_json::Value {
    let mut rules = vec![serde_json::json!({"allow": false, "access": "rwm"})];
    rules.extend(allowed.iter().map(Rule::oci));
    serde_json::Value::Array(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_lines_and_oci_entries() {
        let lines: Vec<String> = ALLOWED.iter().map(Rule::v1_line).collect();
        assert_eq!(lines[0], "c *:* m");
        assert_eq!(lines[1], "b *:* m");
        assert!(lines.contains(&"c 1:3 rwm".to_string()));
        assert!(lines.contains(&"c 136:* rwm".to_string()));
        let oci = oci_rules(&ALLOWED);
        assert_eq!(oci[0], serde_json::json!({"allow": false, "access": "rwm"}));
        assert_eq!(
            oci[3],
            serde_json::json!({"allow": true, "access": "rwm", "type": "c", "major": 1, "minor": 3})
        );
        assert!(oci[10].get("minor").is_none());
    }
}
