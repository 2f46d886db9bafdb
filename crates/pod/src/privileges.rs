//! What an image may ask for, and what only the user can grant.
//!
//! An image's isolators can only *reduce* an app's privileges: a
//! capability retain-set is intersected with the default set, a seccomp
//! remove-set is added to the default deny-list and a retain-set applies on
//! top of it, `no-new-privileges: false` is ignored. More needs the user:
//! `--cap-retain` or `--insecure-options=capabilities` for capabilities,
//! `--seccomp` or `--insecure-options=seccomp` for the filter. Stage0
//! records the user's word per app ([`Grants`], in runtime.json) and says
//! on stderr what an image asked for and did not get ([`refused`]);
//! stage1 applies the rule when it builds each app's confinement.

use serde::{Deserialize, Serialize};
use skiff_spec::App;
use skiff_spec::isolator::{
    CAPABILITIES_RETAIN_SET, IsolatorValue, NO_NEW_PRIVILEGES, SECCOMP_REMOVE_SET,
    SECCOMP_RETAIN_SET,
};

/// appc's default capability set (the ACE's default
/// `os/linux/capabilities-retain-set`), the most an image can keep.
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_AUDIT_WRITE",
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_KILL",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_NET_BIND_SERVICE",
    "CAP_SETUID",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETFCAP",
    "CAP_SYS_CHROOT",
];

/// Privileges the user granted an app beyond what its image can take.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Grants {
    /// The app's capability retain-set applies as written (it may hold
    /// more than the default set).
    #[serde(default)]
    pub capabilities: bool,
    /// The app's `no-new-privileges: false` is honoured.
    #[serde(default)]
    pub new_privileges: bool,
    /// The app's seccomp isolator replaces the default filter.
    #[serde(default)]
    pub seccomp: bool,
    /// The kernel's paths under /proc and /sys that pods get masked or
    /// read-only (`/proc/kcore`, `/proc/sys`, …) are left as they are
    /// (`--insecure-options=paths`, as rkt).
    #[serde(default)]
    pub paths: bool,
}

impl Grants {
    /// What an app gets: the pod-wide grants (`--insecure-options`), and
    /// capabilities or seccomp when the user wrote the app's set
    /// (`--cap-retain`, `--seccomp`).
    pub fn for_app(pod: Grants, cap_retain_given: bool, seccomp_given: bool) -> Grants {
        Grants {
            capabilities: pod.capabilities || cap_retain_given,
            new_privileges: pod.new_privileges,
            seccomp: pod.seccomp || seccomp_given,
            paths: pod.paths,
        }
    }
}

/// `chown`, `cap_chown`, `CAP_CHOWN` → `CAP_CHOWN`.
pub fn capability_name(name: &str) -> String {
    let upper = name.to_ascii_uppercase();
    if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    }
}

/// Whether `name` is in [`DEFAULT_CAPABILITIES`].
pub fn is_default_capability(name: &str) -> bool {
    DEFAULT_CAPABILITIES.contains(&capability_name(name).as_str())
}

/// What `image_app` (an image's own app, before the user's options) asks
/// for that `grants` do not give it: one sentence each, for stderr.
pub fn refused(image_app: &App, grants: Grants) -> Vec<String> {
    let mut refused = Vec::new();
    for iso in &image_app.isolators {
        match (&iso.value, iso.name.as_str()) {
            (IsolatorValue::Capabilities(set), CAPABILITIES_RETAIN_SET) if !grants.capabilities => {
                let extra: Vec<String> = set
                    .iter()
                    .filter(|c| !is_default_capability(c))
                    .map(|c| capability_name(c))
                    .collect();
                if !extra.is_empty() {
                    refused.push(format!(
                        "{} (in {CAPABILITIES_RETAIN_SET}) not granted: an image can only keep \
                         capabilities of the default set (--cap-retain or \
                         --insecure-options=capabilities grants more)",
                        extra.join(", ")
                    ));
                }
            }
            (IsolatorValue::Seccomp(_), SECCOMP_REMOVE_SET) if !grants.seccomp => {
                refused.push(format!(
                    "its {SECCOMP_REMOVE_SET} is added to the default seccomp filter instead of \
                     replacing it (--seccomp or --insecure-options=seccomp replaces it)"
                ));
            }
            (IsolatorValue::Seccomp(_), SECCOMP_RETAIN_SET) if !grants.seccomp => {
                refused.push(format!(
                    "its {SECCOMP_RETAIN_SET} applies on top of the default seccomp filter \
                     (--seccomp or --insecure-options=seccomp applies it alone)"
                ));
            }
            (IsolatorValue::NoNewPrivileges(false), NO_NEW_PRIVILEGES)
                if !grants.new_privileges =>
            {
                refused.push(format!(
                    "{NO_NEW_PRIVILEGES}: false ignored: apps run with no_new_privs \
                     (--insecure-options=capabilities lifts it)"
                ));
            }
            _ => {}
        }
    }
    refused
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(isolators: &str) -> App {
        let json = format!(
            r#"{{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/x",
                "app":{{"exec":["/x"],"user":"0","group":"0","isolators":[{isolators}]}}}}"#
        );
        skiff_spec::parse_image_manifest(json.as_bytes())
            .expect("valid manifest")
            .app
            .expect("has an app")
    }

    #[test]
    fn images_asking_for_more_are_told_what_they_did_not_get() {
        let hostile = app(
            r#"{"name":"os/linux/capabilities-retain-set","value":{"set":["CAP_SYS_ADMIN","chown","net_admin"]}},
               {"name":"os/linux/seccomp-remove-set","value":{"set":["getpid"]}},
               {"name":"os/linux/no-new-privileges","value":false}"#,
        );
        let lines = refused(&hostile, Grants::default());
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(
            lines[0].starts_with("CAP_SYS_ADMIN, CAP_NET_ADMIN (in"),
            "{lines:?}"
        );
        assert!(
            lines[1].contains("added to the default seccomp filter"),
            "{lines:?}"
        );
        assert!(lines[2].contains("no_new_privs"), "{lines:?}");
        // The user's word lifts each.
        let all = Grants {
            capabilities: true,
            new_privileges: true,
            seccomp: true,
            paths: false,
        };
        assert!(refused(&hostile, all).is_empty());
        // Asking for less is not worth a word.
        let modest = app(
            r#"{"name":"os/linux/capabilities-retain-set","value":{"set":["CAP_CHOWN"]}},
               {"name":"os/linux/capabilities-remove-set","value":{"set":["CAP_KILL"]}}"#,
        );
        assert!(refused(&modest, Grants::default()).is_empty());
    }

    #[test]
    fn capability_names_are_normalised() {
        assert_eq!(capability_name("chown"), "CAP_CHOWN");
        assert_eq!(capability_name("cap_net_raw"), "CAP_NET_RAW");
        assert!(is_default_capability("mknod"));
        assert!(!is_default_capability("CAP_SYS_ADMIN"));
    }
}
