//! Edits of an image manifest, as `skiff image build` makes them: typed
//! changes applied to the manifest's JSON, so that fields and extensions
//! skiff does not model stay as they are. The result is validated like any
//! manifest when the image is built.

use serde_json::{Value, json};

use crate::semver::APPC_SPEC_VERSION;

/// A port of the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortEdit {
    pub name: String,
    pub protocol: String,
    pub port: u64,
}

/// A mount point of the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPointEdit {
    pub name: String,
    pub path: String,
    pub read_only: bool,
}

/// A dependency: an image name and the labels it must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DependencyEdit {
    pub image: String,
    pub labels: Vec<(String, String)>,
}

/// Changes to the app (made if any is given).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppEdit {
    pub exec: Option<Vec<String>>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub working_directory: Option<String>,
    /// Environment variables, replacing those of the same name.
    pub environment: Vec<(String, String)>,
    /// Ports, replacing those of the same name.
    pub ports: Vec<PortEdit>,
    /// Mount points, replacing those of the same name.
    pub mount_points: Vec<MountPointEdit>,
}

impl AppEdit {
    fn is_empty(&self) -> bool {
        *self == AppEdit::default()
    }
}

/// Changes to an image manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManifestEdit {
    pub name: Option<String>,
    /// Labels, replacing those of the same name.
    pub labels: Vec<(String, String)>,
    /// Annotations, replacing those of the same name.
    pub annotations: Vec<(String, String)>,
    pub app: AppEdit,
    /// Dependencies, added after the manifest's own.
    pub dependencies: Vec<DependencyEdit>,
}

/// Why an edit cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("the manifest to edit is not JSON")]
    NotJson(#[source] serde_json::Error),
    #[error("the manifest to edit is not a JSON object")]
    NotAnObject,
    #[error("a new manifest needs a name")]
    NoName,
}

/// `list` as an array of `{"name": …}` objects, with `entry` replacing the
/// one named `name` (or added).
fn set_named(list: &mut Value, name: &str, entry: Value) {
    if !list.is_array() {
        *list = json!([]);
    }
    if let Some(arr) = list.as_array_mut() {
        arr.retain(|e| e["name"] != name);
        arr.push(entry);
    }
}

impl ManifestEdit {
    /// Whether there is nothing to change.
    pub fn is_empty(&self) -> bool {
        *self == ManifestEdit::default()
    }

    /// `base` (a manifest's JSON) with these changes; without `base`, a
    /// new manifest of the current appc version with `default_labels`
    /// (os and arch) first, which needs a name.
    pub fn apply(
        &self,
        base: Option<&[u8]>,
        default_labels: &[(&str, &str)],
    ) -> Result<Vec<u8>, EditError> {
        let mut m: Value = match base {
            Some(bytes) => match serde_json::from_slice(bytes).map_err(EditError::NotJson)? {
                object @ Value::Object(_) => object,
                _ => return Err(EditError::NotAnObject),
            },
            None => {
                let name = self.name.as_ref().ok_or(EditError::NoName)?;
                let labels: Vec<Value> = default_labels
                    .iter()
                    .map(|(k, v)| json!({"name": k, "value": v}))
                    .collect();
                json!({"acKind": "ImageManifest", "acVersion": APPC_SPEC_VERSION,
                       "name": name, "labels": labels})
            }
        };
        if let Some(n) = &self.name {
            m["name"] = json!(n);
        }
        for (k, v) in &self.labels {
            set_named(&mut m["labels"], k, json!({"name": k, "value": v}));
        }
        for (k, v) in &self.annotations {
            set_named(&mut m["annotations"], k, json!({"name": k, "value": v}));
        }
        if !self.app.is_empty() {
            if !m["app"].is_object() {
                m["app"] = json!({"user": "0", "group": "0"});
            }
            let app = &mut m["app"];
            let a = &self.app;
            if let Some(exec) = &a.exec {
                app["exec"] = json!(exec);
            }
            if let Some(u) = &a.user {
                app["user"] = json!(u);
            }
            if let Some(g) = &a.group {
                app["group"] = json!(g);
            }
            if let Some(w) = &a.working_directory {
                app["workingDirectory"] = json!(w);
            }
            for (k, v) in &a.environment {
                set_named(&mut app["environment"], k, json!({"name": k, "value": v}));
            }
            for p in &a.ports {
                set_named(
                    &mut app["ports"],
                    &p.name,
                    json!({"name": p.name, "protocol": p.protocol, "port": p.port}),
                );
            }
            for mp in &a.mount_points {
                set_named(
                    &mut app["mountPoints"],
                    &mp.name,
                    json!({"name": mp.name, "path": mp.path, "readOnly": mp.read_only}),
                );
            }
        }
        for d in &self.dependencies {
            let mut dep = json!({"imageName": d.image});
            if !d.labels.is_empty() {
                let labels: Vec<Value> = d
                    .labels
                    .iter()
                    .map(|(k, v)| json!({"name": k, "value": v}))
                    .collect();
                dep["labels"] = json!(labels);
            }
            if !m["dependencies"].is_array() {
                m["dependencies"] = json!([]);
            }
            if let Some(arr) = m["dependencies"].as_array_mut() {
                arr.push(dep);
            }
        }
        serde_json::to_vec_pretty(&m).map_err(EditError::NotJson)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_manifest_is_valid_and_edits_replace_by_name() {
        let mut edit = ManifestEdit {
            name: Some("example.com/app".into()),
            labels: vec![("version".into(), "1.0".into())],
            ..ManifestEdit::default()
        };
        edit.app.exec = Some(vec!["/bin/app".into(), "--serve".into()]);
        edit.app.ports.push(PortEdit {
            name: "http".into(),
            protocol: "tcp".into(),
            port: 8080,
        });
        let bytes = edit
            .apply(None, &[("os", "linux"), ("arch", "amd64")])
            .unwrap();
        let m = crate::parse_image_manifest(&bytes).unwrap();
        assert_eq!(m.name.as_str(), "example.com/app");
        assert_eq!(m.labels.len(), 3);
        let app = m.app.unwrap();
        assert_eq!(
            app.exec,
            vec!["/bin/app".to_string(), "--serve".to_string()]
        );
        assert_eq!(app.ports.len(), 1);
        // On top of that manifest: the label of the same name is replaced,
        // fields not edited are kept.
        let again = ManifestEdit {
            labels: vec![("version".into(), "2.0".into())],
            ..ManifestEdit::default()
        }
        .apply(Some(&bytes), &[])
        .unwrap();
        let m = crate::parse_image_manifest(&again).unwrap();
        let versions: Vec<_> = m
            .labels
            .iter()
            .filter(|l| l.name.as_str() == "version")
            .map(|l| l.value.clone())
            .collect();
        assert_eq!(versions, vec!["2.0".to_string()]);
        assert_eq!(m.app.unwrap().ports.len(), 1);
        assert!(matches!(
            ManifestEdit::default().apply(None, &[]),
            Err(EditError::NoName)
        ));
        // A base that is JSON but not an object is refused, not indexed.
        assert!(matches!(
            edit.apply(Some(b"[1, 2]"), &[]),
            Err(EditError::NotAnObject)
        ));
    }
}
