//! What a pod runs, read from its directory: the pod manifest, `runtime.json`
//! and the apps as the pod runs them ([`AppPlan`]). Every flavor starts here.

use crate::Stage1Error;
use skiff_pod::privileges::Grants;
use skiff_pod::{NetMode, Pod, PodNet, Runtime};
use skiff_spec::isolator::{CAPABILITIES_REMOVE_SET, Isolator, IsolatorValue};
use skiff_spec::{AcIdentifier, App, PodManifest};
use std::path::PathBuf;

/// One app as the pod runs it: the pod manifest's app with the image's
/// app as default.
pub struct AppPlan {
    pub name: String,
    pub app: App,
    pub tree: PathBuf,
    pub read_only: bool,
    pub mounts: Vec<PlannedMount>,
    /// `--no-overlay`: the root is a copy of the tree, not an overlay.
    pub copy: bool,
    /// What the user granted beyond what the image can take.
    pub grants: Grants,
}

/// A volume mounted into an app.
pub struct PlannedMount {
    pub volume: skiff_spec::pod::Volume,
    pub target: String,
    pub read_only: bool,
}

pub fn plan(pod: &Pod) -> Result<(PodManifest, Runtime, Vec<AppPlan>), Stage1Error> {
    let bytes = std::fs::read(pod.manifest_path())
        .map_err(|e| Stage1Error::Config(format!("cannot read the pod manifest: {e}")))?;
    let manifest = skiff_spec::parse_pod_manifest(&bytes)
        .map_err(|e| Stage1Error::Config(format!("invalid pod manifest: {e}")))?;
    let runtime = pod
        .runtime()
        .map_err(|e| Stage1Error::Config(e.to_string()))?;
    if !manifest.isolators.is_empty() && runtime.flavor != skiff_pod::Flavor::Ns {
        return Err(Stage1Error::Config(format!(
            "pod-level isolators are applied by the ns flavor only, and this pod is {}",
            runtime.flavor
        )));
    }
    let mut plans = Vec::new();
    for ra in &manifest.apps {
        let rt = runtime
            .apps
            .iter()
            .find(|a| a.name == ra.name.as_str())
            .ok_or_else(|| Stage1Error::Config(format!("runtime.json has no app '{}'", ra.name)))?;
        let mut app = ra.app.clone().ok_or_else(|| {
            Stage1Error::Config(format!(
                "app '{}' has no exec (stage0 writes the effective app)",
                ra.name
            ))
        })?;
        if loopback_closed(runtime.rootless, &runtime.net) {
            app.isolators.push(without_raw_network()?);
        }
        let mut mounts = Vec::new();
        for m in &ra.mounts {
            let volume = manifest
                .volumes
                .iter()
                .find(|v| v.name == m.volume)
                .ok_or_else(|| {
                    Stage1Error::Config(format!(
                        "app '{}' mounts volume '{}', which the pod does not define",
                        ra.name, m.volume
                    ))
                })?
                .clone();
            let point_ro = app
                .mount_points
                .iter()
                .any(|mp| mp.path == m.path && mp.read_only);
            let read_only = volume.read_only.unwrap_or(false) || point_ro;
            mounts.push(PlannedMount {
                volume,
                target: m.path.clone(),
                read_only,
            });
        }
        plans.push(AppPlan {
            name: ra.name.to_string(),
            app,
            tree: rt.tree.clone(),
            grants: rt.grants,
            read_only: ra.read_only_root_fs,
            mounts,
            copy: runtime.no_overlay,
        });
    }
    if plans.is_empty() {
        return Err(Stage1Error::Config("the pod has no apps".to_string()));
    }
    Ok((manifest, runtime, plans))
}

/// Whether the pod is on an ordinary user's user-mode network that keeps
/// the host's loopback out of its reach (`host-loopback` not given).
pub fn loopback_closed(rootless: bool, net: &PodNet) -> bool {
    rootless && net.mode == NetMode::User && !net.host_loopback
}

/// Capabilities a pod on such a network must not have: with raw or packet
/// sockets an app could hand pasta frames addressed to 127.0.0.1 (pasta
/// forwards them to the host's loopback), and with NET_ADMIN reconfigure
/// what pasta sees. Removed last, whatever the image or the user asked for.
pub const RAW_NETWORK: [&str; 2] = ["CAP_NET_RAW", "CAP_NET_ADMIN"];

fn without_raw_network() -> Result<Isolator, Stage1Error> {
    Ok(Isolator {
        name: AcIdentifier::new(CAPABILITIES_REMOVE_SET)
            .map_err(|e| Stage1Error::Config(format!("capabilities remove set: {e}")))?,
        value: IsolatorValue::Capabilities(RAW_NETWORK.map(String::from).to_vec()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// A pod directory with `manifest` as its pod manifest and a
    /// runtime.json for apps `apps` (name, tree).
    fn pod_dir(dir: &Path, manifest: &str, runtime_apps: &[(&str, &str)], extra: &str) -> Pod {
        std::fs::write(dir.join("pod"), manifest).unwrap();
        let apps: Vec<String> = runtime_apps
            .iter()
            .map(|(name, tree)| {
                format!(r#"{{"name":"{name}","imageId":"sha512-aa","imageName":"example.com/{name}","tree":"{tree}"}}"#)
            })
            .collect();
        std::fs::write(
            dir.join("runtime.json"),
            format!(
                r#"{{"flavor":"ns","hostname":"h","apps":[{}]{extra}}}"#,
                apps.join(",")
            ),
        )
        .unwrap();
        Pod {
            uuid: "u".into(),
            state: skiff_pod::State::Run,
            path: dir.to_path_buf(),
        }
    }

    const TWO_APPS: &str = r#"{"acKind":"PodManifest","acVersion":"0.8.11",
        "apps":[
          {"name":"web","image":{"id":"sha512-aa"},
           "app":{"exec":["/web"],"user":"0","group":"0",
                  "mountPoints":[{"name":"data","path":"/data","readOnly":true}]},
           "mounts":[{"volume":"data","path":"/data"}],"readOnlyRootFS":true},
          {"name":"db","image":{"id":"sha512-bb"},
           "app":{"exec":["/db"],"user":"0","group":"0"},
           "mounts":[{"volume":"data","path":"/var/db"}]}],
        "volumes":[{"name":"data","kind":"empty"}]}"#;

    #[test]
    fn plans_follow_the_manifest_and_runtime() {
        let tmp = tempfile::tempdir().unwrap();
        let pod = pod_dir(
            tmp.path(),
            TWO_APPS,
            &[("web", "/trees/web"), ("db", "/trees/db")],
            r#","noOverlay":true"#,
        );
        let (_, runtime, plans) = plan(&pod).unwrap();
        assert_eq!(runtime.flavor, skiff_pod::Flavor::Ns);
        let names: Vec<&str> = plans.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["web", "db"]);
        assert_eq!(plans[0].tree, Path::new("/trees/web"));
        assert!(plans[0].read_only && !plans[1].read_only);
        assert!(plans.iter().all(|p| p.copy));
        // The image's read-only mount point makes web's volume read-only;
        // db mounts the same volume writable.
        assert_eq!(plans[0].mounts[0].target, "/data");
        assert!(plans[0].mounts[0].read_only);
        assert_eq!(plans[1].mounts[0].target, "/var/db");
        assert!(!plans[1].mounts[0].read_only);
    }

    #[test]
    fn inconsistent_pods_are_refused_with_the_reason() {
        let tmp = tempfile::tempdir().unwrap();
        // runtime.json lacks an app of the manifest.
        let pod = pod_dir(tmp.path(), TWO_APPS, &[("web", "/t")], "");
        let err = plan(&pod).err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(err, "runtime.json has no app 'db'");
        // An app mounting a volume the pod does not define.
        let undefined = TWO_APPS.replace(
            r#""volumes":[{"name":"data","kind":"empty"}]"#,
            r#""volumes":[]"#,
        );
        let pod = pod_dir(tmp.path(), &undefined, &[("web", "/t"), ("db", "/t")], "");
        let err = plan(&pod).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            err.contains("mounts volume 'data', which the pod does not define"),
            "{err}"
        );
        // An unknown flavor: an invalid runtime.json, never another flavor.
        std::fs::write(
            tmp.path().join("runtime.json"),
            r#"{"flavor":"nspawn","hostname":"h","apps":[]}"#,
        )
        .unwrap();
        let err = plan(&pod).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("nspawn"), "{err}");
        // No manifest at all.
        std::fs::remove_file(tmp.path().join("pod")).unwrap();
        let err = plan(&pod).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.starts_with("cannot read the pod manifest"), "{err}");
    }
}
