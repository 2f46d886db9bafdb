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

/// The most of an image's /etc/passwd or /etc/group read.
const MAX_ACCOUNTS_FILE: u64 = 1 << 20;

/// A text file of an app's root `root`, as the image has it: resolved
/// inside `root` (its symlinks cannot lead out: `oci` reads it on the
/// host), only if a regular file (a FIFO would hang, a device's open runs
/// its driver), at most [`MAX_ACCOUNTS_FILE`] bytes.
fn read_in_root(root: &Path, rel: &str) -> Option<String> {
    use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
    use std::io::Read;
    let dir = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
    let regular = |fd: &std::os::fd::OwnedFd| {
        rustix::fs::fstat(fd)
            .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::RegularFile)
    };
    let found = rustix::fs::openat2(
        &dir,
        rel,
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        resolve,
    )
    .ok()?;
    if !regular(&found) {
        return None;
    }
    let file = rustix::fs::openat2(
        &dir,
        rel,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
        Mode::empty(),
        resolve,
    )
    .ok()?;
    if !regular(&file) {
        return None;
    }
    let mut text = String::new();
    std::fs::File::from(file)
        .take(MAX_ACCOUNTS_FILE + 1)
        .read_to_string(&mut text)
        .ok()?;
    // A longer file is refused whole: a cut line could still match.
    (text.len() as u64 <= MAX_ACCOUNTS_FILE).then_some(text)
}

fn lookup(root: &Path, file: &str, name: &str, id_field: usize) -> Option<Vec<String>> {
    let text = read_in_root(root, file)?;
    text.lines()
        .map(|l| l.split(':').map(str::to_string).collect::<Vec<_>>())
        .find(|f| f.len() > id_field && f[0] == name)
}

/// The primary group (its number) of `user`, a name or a uid, in the
/// root's /etc/passwd.
pub fn primary_group(root: &Path, user: &str) -> Option<String> {
    let numeric = user.parse::<u32>().is_ok();
    read_in_root(root, "etc/passwd")?
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 3 && if numeric { f[2] == user } else { f[0] == user })
        .map(|f| f[3].to_string())
}

/// Resolves `app.user` / `app.group` (names or numbers) in the app root
/// `root` (usually `/` after entering it), plus supplementary groups.
pub fn credentials(app: &App, root: &Path) -> Result<Credentials, Stage1Error> {
    let (uid, mut home) = match app.user.parse::<u32>() {
        Ok(uid) => (uid, None),
        Err(_) => {
            let entry = lookup(root, "etc/passwd", &app.user, 2).ok_or_else(|| {
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
            let entry = lookup(root, "etc/group", &app.group, 2).ok_or_else(|| {
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
        home = read_in_root(root, "etc/passwd").and_then(|t| {
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
        // `enter --user` without a group: the user's primary group.
        assert_eq!(primary_group(root.path(), "web").as_deref(), Some("1000"));
        assert_eq!(primary_group(root.path(), "1000").as_deref(), Some("1000"));
        assert_eq!(primary_group(root.path(), "4242"), None);
        assert_eq!(primary_group(root.path(), "nobody"), None);
    }

    #[test]
    fn account_files_are_read_inside_the_root_and_only_if_regular() {
        let host = tempfile::tempdir().unwrap();
        std::fs::write(
            host.path().join("passwd"),
            "web:x:1000:1000::/srv:/bin/sh\n",
        )
        .unwrap();
        let root = tempfile::tempdir().unwrap();
        let etc = root.path().join("etc");
        std::fs::create_dir_all(&etc).unwrap();
        // An absolute symlink resolves inside the root, not on the host.
        std::os::unix::fs::symlink(host.path().join("passwd"), etc.join("passwd")).unwrap();
        let a = app(r#"{"exec":["/x"],"user":"web","group":"0"}"#);
        assert!(
            credentials(&a, root.path()).is_err(),
            "followed out of the root"
        );
        std::fs::remove_file(etc.join("passwd")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", etc.join("passwd")).unwrap();
        assert!(credentials(&a, root.path()).is_err());
        std::fs::remove_file(etc.join("passwd")).unwrap();
        rustix::fs::mkfifoat(rustix::fs::CWD, etc.join("passwd"), rustix::fs::Mode::RWXU).unwrap();
        assert!(
            credentials(&a, root.path()).is_err(),
            "a FIFO must not hang"
        );
    }
}
