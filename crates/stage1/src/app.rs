//! How an app is started: environment, user and groups (resolved in the
//! app's own /etc/passwd and /etc/group), capabilities, working directory.

use caps::CapsHashSet;
use std::path::Path;

use caps::Capability;
use skiff_spec::App;
use skiff_spec::isolator::{
    CAPABILITIES_REMOVE_SET, CAPABILITIES_RETAIN_SET, IsolatorValue, NO_NEW_PRIVILEGES,
};

use skiff_pod::privileges::{DEFAULT_CAPABILITIES, Grants, capability_name};

use crate::Stage1Error;

/// The PATH an app gets when its image sets none (the ACE requires it).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The environment of an app, in order: the image's (and the pod's
/// overrides, already merged into `app`), then `AC_APP_NAME`, and `PATH`
/// if the image sets none.
pub fn environment(app: &App, app_name: &str) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = app
        .environment
        .iter()
        .map(|v| (v.name.clone(), v.value.clone()))
        .collect();
    env.retain(|(k, _)| k != "AC_APP_NAME" && k != "container");
    env.push(("AC_APP_NAME".to_string(), app_name.to_string()));
    // The ACE's "container" variable: the name of the runtime.
    env.push(("container".to_string(), "skiff".to_string()));
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push(("PATH".to_string(), DEFAULT_PATH.to_string()));
    }
    env
}

/// Capabilities an app keeps: the default set, or its retain set — within
/// the default set unless the user granted more — minus any remove set
/// (see [`skiff_pod::privileges`]).
pub fn capabilities(app: &App, grants: Grants) -> Result<CapsHashSet, Stage1Error> {
    let parse = |names: &[String]| -> Result<Vec<Capability>, Stage1Error> {
        names
            .iter()
            .map(|n| {
                capability_name(n)
                    .parse::<Capability>()
                    .map_err(|_| Stage1Error::Config(format!("unknown capability '{n}'")))
            })
            .collect()
    };
    let default: CapsHashSet = parse(&DEFAULT_CAPABILITIES.map(str::to_string))?
        .into_iter()
        .collect();
    let mut set = default.clone();
    for iso in &app.isolators {
        if let IsolatorValue::Capabilities(names) = &iso.value {
            match iso.name.as_str() {
                CAPABILITIES_RETAIN_SET => {
                    set = parse(names)?
                        .into_iter()
                        .filter(|c| grants.capabilities || default.contains(c))
                        .collect();
                }
                CAPABILITIES_REMOVE_SET => {
                    for cap in parse(names)? {
                        set.remove(&cap);
                    }
                }
                _ => {}
            }
        }
    }
    Ok(set)
}

/// appc apps always run with no_new_privs; an isolator saying false counts
/// only when the user granted it.
pub fn no_new_privileges(app: &App, grants: Grants) -> bool {
    !(grants.new_privileges
        && app.isolators.iter().any(|i| {
            i.name.as_str() == NO_NEW_PRIVILEGES && i.value == IsolatorValue::NoNewPrivileges(false)
        }))
}

/// A resolved user: uid, primary gid, home.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub home: String,
}

fn lookup(file: &Path, name: &str, id_field: usize) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines()
        .map(|l| l.split(':').map(str::to_string).collect::<Vec<_>>())
        .find(|f| f.len() > id_field && f[0] == name)
}

/// Resolves `app.user` / `app.group` (names or numbers) in the app root
/// `root` (usually `/` after entering it), plus supplementary groups.
pub fn credentials(app: &App, root: &Path) -> Result<Credentials, Stage1Error> {
    let passwd = root.join("etc/passwd");
    let group = root.join("etc/group");
    let (uid, mut home) = match app.user.parse::<u32>() {
        Ok(uid) => (uid, None),
        Err(_) => {
            let entry = lookup(&passwd, &app.user, 2).ok_or_else(|| {
                Stage1Error::Config(format!(
                    "user '{}' is not in the image's /etc/passwd",
                    app.user
                ))
            })?;
            let uid = entry[2].parse().map_err(|_| {
                Stage1Error::Config(format!("bad uid for '{}' in /etc/passwd", app.user))
            })?;
            (uid, entry.get(5).cloned())
        }
    };
    let gid = match app.group.parse::<u32>() {
        Ok(gid) => gid,
        Err(_) => {
            let entry = lookup(&group, &app.group, 2).ok_or_else(|| {
                Stage1Error::Config(format!(
                    "group '{}' is not in the image's /etc/group",
                    app.group
                ))
            })?;
            entry[2].parse().map_err(|_| {
                Stage1Error::Config(format!("bad gid for '{}' in /etc/group", app.group))
            })?
        }
    };
    if home.is_none() {
        home = std::fs::read_to_string(&passwd).ok().and_then(|t| {
            t.lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() > 5 && f[2] == uid.to_string())
                .map(|f| f[5].to_string())
        });
    }
    let mut groups: Vec<u32> = app
        .supplementary_gids
        .iter()
        .filter_map(|g| u32::try_from(*g).ok())
        .collect();
    groups.insert(0, gid);
    groups.dedup();
    Ok(Credentials {
        uid,
        gid,
        groups,
        home: home.unwrap_or_else(|| "/".to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(json: &str) -> App {
        let m = skiff_spec::parse_image_manifest(
            format!(r#"{{"acKind":"ImageManifest","acVersion":"0.8.11","name":"a","app":{json}}}"#)
                .as_bytes(),
        )
        .unwrap();
        m.app.unwrap()
    }

    #[test]
    fn environment_has_app_name_and_default_path() {
        let a = app(
            r#"{"exec":["/x"],"user":"0","group":"0","environment":[{"name":"FOO","value":"1"}]}"#,
        );
        let env = environment(&a, "web");
        assert!(env.contains(&("AC_APP_NAME".into(), "web".into())));
        assert!(env.contains(&("container".into(), "skiff".into())));
        assert!(env.contains(&("PATH".into(), DEFAULT_PATH.into())));
        assert!(env.contains(&("FOO".into(), "1".into())));
    }

    #[test]
    fn capability_isolators() {
        let none = Grants::default();
        let a = app(r#"{"exec":["/x"],"user":"0","group":"0"}"#);
        assert_eq!(capabilities(&a, none).unwrap().len(), 14);
        let a = app(r#"{"exec":["/x"],"user":"0","group":"0","isolators":[
            {"name":"os/linux/capabilities-retain-set","value":{"set":["CAP_NET_ADMIN","chown"]}}]}"#);
        // An image keeps only what the default set has ...
        assert_eq!(
            capabilities(&a, none).unwrap(),
            [Capability::CAP_CHOWN].into_iter().collect::<CapsHashSet>()
        );
        // ... unless the user granted its set as written.
        let granted = Grants {
            capabilities: true,
            ..Grants::default()
        };
        assert_eq!(
            capabilities(&a, granted).unwrap(),
            [Capability::CAP_CHOWN, Capability::CAP_NET_ADMIN]
                .into_iter()
                .collect::<CapsHashSet>()
        );
        let a = app(r#"{"exec":["/x"],"user":"0","group":"0","isolators":[
            {"name":"os/linux/capabilities-remove-set","value":{"set":["CAP_NET_RAW"]}}]}"#);
        assert!(
            !capabilities(&a, none)
                .unwrap()
                .contains(&Capability::CAP_NET_RAW)
        );
    }

    #[test]
    fn no_new_privs_is_lifted_only_by_the_user() {
        let a = app(r#"{"exec":["/x"],"user":"0","group":"0","isolators":[
            {"name":"os/linux/no-new-privileges","value":false}]}"#);
        assert!(no_new_privileges(&a, Grants::default()));
        let granted = Grants {
            new_privileges: true,
            ..Grants::default()
        };
        assert!(!no_new_privileges(&a, granted));
        let plain = app(r#"{"exec":["/x"],"user":"0","group":"0"}"#);
        assert!(no_new_privileges(&plain, granted));
    }

    #[test]
    fn users_resolve_in_the_image() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("etc")).unwrap();
        std::fs::write(
            root.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nweb:x:1000:1000::/srv:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(root.path().join("etc/group"), "root:x:0:\nweb:x:1000:\n").unwrap();
        let a = app(r#"{"exec":["/x"],"user":"web","group":"web","supplementaryGIDs":[5,6]}"#);
        let c = credentials(&a, root.path()).unwrap();
        assert_eq!(
            (c.uid, c.gid, c.groups.clone(), c.home.as_str()),
            (1000, 1000, vec![1000, 5, 6], "/srv")
        );
        let a = app(r#"{"exec":["/x"],"user":"nobody","group":"0"}"#);
        assert!(credentials(&a, root.path()).is_err());
    }
}
