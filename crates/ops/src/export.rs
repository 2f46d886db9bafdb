//! `skiff export POD OUT.aci` (rkt's): an app of a pod that is not running,
//! as an ACI — its image's tree with what the app wrote laid over it (the
//! overlay's upper layer, or the `--no-overlay` copy), under its image's
//! manifest. The result is an ordinary unsigned ACI file.

use std::path::{Path, PathBuf};

use skiff_spec::aci::Compression;
use skiff_spec::aci::build::{BuildOptions, build_aci_file};
use skiff_spec::id::ImageId;
use skiff_stage1::copy::Owners;

use crate::error::io;
use crate::{Context, OpsError, refuse};

/// What [`export`] wrote.
#[derive(Debug, Clone)]
pub struct PodExport {
    pub uuid: String,
    pub app: String,
    pub image_id: ImageId,
    /// Files of the app's root an image cannot hold (device nodes, FIFOs,
    /// sockets it made), left out.
    pub skipped: Vec<PathBuf>,
}

/// Writes app `app` (the only app if `None`) of pod `uuid` to `out` (an
/// existing file only with `overwrite`).
pub fn export(
    ctx: &Context,
    uuid: &str,
    app: Option<&str>,
    out: &Path,
    overwrite: bool,
) -> Result<PodExport, OpsError> {
    let pod = ctx.pods().find(uuid)?;
    if pod.is_running() || pod.is_preparing() {
        return Err(refuse!(
            "pod {} is running: stop it first (skiff stop {})",
            pod.uuid,
            pod.uuid
        ));
    }
    if !overwrite && std::fs::symlink_metadata(out).is_ok() {
        return Err(refuse!(
            "{} already exists (use --overwrite to replace it)",
            out.display()
        ));
    }
    // Held to the end: the pod cannot be started (or collected) while its
    // layers are read.
    let Some(_lock) = crate::pods::lock_ended(&pod)? else {
        return Err(refuse!(
            "pod {} is in use or changed state: try again once it is not",
            pod.uuid
        ));
    };
    let runtime = pod.runtime()?;
    if runtime.rootless {
        return Err(refuse!(
            "pod {} is an ordinary user's: exporting its apps is not implemented yet",
            pod.uuid
        ));
    }
    let names: Vec<&str> = runtime.apps.iter().map(|a| a.name.as_str()).collect();
    let chosen = match app {
        Some(name) => runtime
            .apps
            .iter()
            .find(|a| a.name == name)
            .ok_or_else(|| {
                refuse!(
                    "pod {} has no app {name:?} (apps: {})",
                    pod.uuid,
                    names.join(", ")
                )
            })?,
        None => match runtime.apps.as_slice() {
            [one] => one,
            _ => {
                return Err(refuse!(
                    "pod {} has several apps ({}): choose one with --app=NAME",
                    pod.uuid,
                    names.join(", ")
                ));
            }
        },
    };
    let manifest_path = pod
        .path
        .join("image-manifests")
        .join(format!("{}.json", chosen.name));
    let manifest =
        std::fs::read(&manifest_path).map_err(io(format!("read {}", manifest_path.display())))?;
    let copy = pod.path.join("copy").join(&chosen.name);
    let (base, upper) = match runtime.no_overlay {
        true => (copy, None),
        false => (
            chosen.tree.clone(),
            Some(pod.path.join("overlay").join(&chosen.name).join("upper")),
        ),
    };
    if !base.is_dir() {
        return Err(refuse!(
            "the root of app {} is gone ({}): render the image again (skiff image render {})",
            chosen.name,
            base.display(),
            chosen.image_id
        ));
    }
    // With --private-users what the pod wrote is on disk under its shifted
    // ids (and a --no-overlay copy entirely so).
    let written = match runtime.private_users {
        Some(base) => Owners::Unshifted { base },
        None => Owners::Kept,
    };
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // 0700: the copy holds the app's setuid files with their real owners
    // (root's, for a --private-users pod's root) until the ACI is written.
    let layout = tempfile::Builder::new()
        .prefix(".skiff-export-")
        .permissions(<std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o700))
        .tempdir_in(&parent)
        .map_err(io(format!("write in {}", parent.display())))?;
    let rootfs = layout.path().join("rootfs");
    let base_owners = if upper.is_some() {
        Owners::Kept
    } else {
        written
    };
    skiff_stage1::copy::copy_tree(&base, &rootfs, base_owners)
        .map_err(io(format!("copy the root of app {}", chosen.name)))?;
    let skipped = match upper.filter(|u| u.is_dir()) {
        Some(upper) => skiff_stage1::copy::apply_upper(&upper, &rootfs, written)
            .map_err(io(format!("read what app {} wrote", chosen.name)))?,
        None => Vec::new(),
    };
    let options = BuildOptions {
        compression: Compression::Gzip,
        owner_root: false,
        manifest: Some(manifest),
        progress: ctx
            .settings
            .progress
            .then(|| format!("exporting {}", chosen.name)),
    };
    let built = build_aci_file(layout.path(), out, &options, overwrite)?;
    Ok(PodExport {
        uuid: pod.uuid,
        app: chosen.name.clone(),
        image_id: built.image_id,
        skipped,
    })
}
