//! App roots: each app's overlay (or copy) of its image's tree, finished
//! with the files a pod provides and its volumes.

use crate::Stage1Error;
use crate::mounts::{self, Root};
use crate::plan::AppPlan;
use crate::plan::PlannedMount;
use crate::setup_err;
use rustix::mount::MountFlags;
use skiff_pod::Pod;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// Mounts an app's overlay root at `<stage1_root>/apps/<app>/rootfs`
/// (lower: the rendered tree; upper/work: `overlay/<app>` in the pod dir),
/// `nodev`: device nodes in the root (made by the app or brought by the
/// image) cannot be opened.
pub(crate) fn mount_app_root(
    pod: &Pod,
    stage1_root: &Path,
    p: &AppPlan,
    userns: Option<&OwnedFd>,
) -> Result<Root, Stage1Error> {
    let root = mount_app_root_dev(pod, stage1_root, p, userns)?;
    mounts::set_attrs(
        &root.fd,
        mounts::ATTR_NODEV,
        false,
        &format!("the root of app '{}'", p.name),
    )?;
    Ok(root)
}

fn mount_app_root_dev(
    pod: &Pod,
    stage1_root: &Path,
    p: &AppPlan,
    userns: Option<&OwnedFd>,
) -> Result<Root, Stage1Error> {
    let target = format!("/apps/{}/rootfs", p.name);
    let fd = Root::open(stage1_root)?.resolve(Path::new(&target), true, false)?;
    if p.copy {
        return mount_copied_root(pod, stage1_root, p, &target, &fd, userns);
    }
    let overlay = pod.path.join("overlay").join(&p.name);
    for sub in ["upper", "work"] {
        let dir = overlay.join(sub);
        std::fs::create_dir_all(&dir).map_err(setup_err(format!("create {}", dir.display())))?;
    }
    // With a user namespace the tree (shared, on disk with the image's
    // ids) is an idmapped mount, so in-pod ids read as on-disk ids; the
    // upper layer is the pod's alone and stores what the pod writes under
    // the shifted host ids (a setuid-root file made in the pod is owned
    // by the pod's unprivileged root on disk, not by host root).
    let idmapped = match userns {
        Some(userns) => {
            let tree = stage1_root.join(".idmap").join(&p.name).join("lower");
            std::fs::create_dir_all(&tree)
                .map_err(setup_err(format!("create {}", tree.display())))?;
            crate::userns::bind_idmapped(&p.tree, &tree, userns)?;
            if let Some(base) = mounts::pod_root_id() {
                for sub in ["upper", "work"] {
                    let dir = overlay.join(sub);
                    std::os::unix::fs::chown(&dir, Some(base), Some(base)).map_err(setup_err(
                        format!("give {} to the pod's root", dir.display()),
                    ))?;
                }
            }
            Some(tree)
        }
        None => None,
    };
    let tree = idmapped.as_deref().unwrap_or(p.tree.as_path());
    let overlay = overlay.as_path();
    let lower = tree.display().to_string();
    let upper = overlay.join("upper").display().to_string();
    let work = overlay.join("work").display().to_string();
    if [&lower, &upper, &work]
        .iter()
        .any(|s| s.contains([',', ':', '\n']))
    {
        return Err(Stage1Error::Config(format!(
            "paths with ',' or ':' cannot be used with overlayfs: {lower}"
        )));
    }
    let data = std::ffi::CString::new(format!("lowerdir={lower},upperdir={upper},workdir={work}"))
        .map_err(|_| Stage1Error::Config("NUL in an overlay path".into()))?;
    let mount_overlay = || {
        mounts::mount(
            "overlay",
            &fd,
            "overlay",
            MountFlags::empty(),
            Some(&data),
            &format!("the overlay root of app '{}'", p.name),
        )
    };
    match userns.and(mounts::pod_root_id()) {
        // The overlay works with its mounter's credentials: in-pod root's
        // ids, which the idmapped layers map.
        Some(id) => mounts::as_pod_root(id, mount_overlay),
        None => mount_overlay(),
    }
    .map_err(|e| {
        Stage1Error::Config(format!(
            "{} (without overlayfs support here, run with --no-overlay)",
            crate::error_line(&e)
        ))
    })?;
    // The overlay holds its own reference to the layer.
    if let Some(layer) = &idmapped {
        rustix::mount::unmount(layer, rustix::mount::UnmountFlags::DETACH)
            .map_err(|e| setup_err(format!("unmount {}", layer.display()))(e.into()))?;
    }
    Root::open(&stage1_root.join(target.trim_start_matches('/')))
}

/// `--no-overlay`: copies the tree to `copy/<app>` in the pod dir (once)
/// and binds it as the app's root. With `--private-users` the copy's
/// owners are shifted into the pod's range (what the pod writes there is
/// on disk under its own unprivileged ids, as in an overlay's upper).
fn mount_copied_root(
    pod: &Pod,
    stage1_root: &Path,
    p: &AppPlan,
    target: &str,
    fd: &OwnedFd,
    userns: Option<&OwnedFd>,
) -> Result<Root, Stage1Error> {
    let copies = pod.path.join("copy");
    let copy = copies.join(&p.name);
    if !copy.exists() {
        std::fs::create_dir_all(&copies)
            .map_err(setup_err(format!("create {}", copies.display())))?;
        // Copied under a temporary name so that an interrupted copy is
        // never taken for a complete one.
        let partial = copies.join(format!(".partial-{}", p.name));
        let _ = std::fs::remove_dir_all(&partial);
        let owners = match (userns, mounts::pod_root_id()) {
            (Some(_), Some(base)) => crate::copy::Owners::Shifted { base },
            _ => crate::copy::Owners::Kept,
        };
        crate::copy::copy_tree(&p.tree, &partial, owners)
            .and_then(|()| std::fs::rename(&partial, &copy))
            .map_err(setup_err(format!(
                "copy the root of app '{}' (--no-overlay)",
                p.name
            )))?;
    }
    let mounted = stage1_root.join(target.trim_start_matches('/'));
    mounts::bind(
        &copy.display().to_string(),
        fd,
        false,
        &format!("the copied root of app '{}'", p.name),
    )?;
    Root::open(&mounted)
}

/// Volumes, then read-only if asked (after every mount point exists).
pub(crate) fn finish_app_root(pod: &Pod, app_root: &Root, p: &AppPlan) -> Result<(), Stage1Error> {
    finish_app_root_with(pod, app_root, p, &|_| false)
}

/// [`finish_app_root`], except that the volumes `elsewhere` picks only get
/// their mount point: another party mounts them (the kvm guest).
pub(crate) fn finish_app_root_with(
    pod: &Pod,
    app_root: &Root,
    p: &AppPlan,
    elsewhere: &dyn Fn(&PlannedMount) -> bool,
) -> Result<(), Stage1Error> {
    for m in &p.mounts {
        if elsewhere(m) {
            app_root.resolve(Path::new(&m.target), true, false)?;
        } else {
            mount_volume(pod, app_root, m)?;
        }
    }
    for (source, target) in crate::net::etc_files(&pod.path) {
        let what = format!("the pod's {target}");
        // The pod's root owns its /etc/hosts and resolv.conf, in a user
        // namespace too.
        if let Some(base) = mounts::pod_root_id() {
            std::os::unix::fs::chown(&source, Some(base), Some(base))
                .map_err(setup_err(format!("give {what} to the pod's root")))?;
        }
        let fd = app_root.resolve(Path::new(target), true, true)?;
        mounts::bind(&source.display().to_string(), &fd, false, &what)?;
        if p.read_only {
            let mounted = app_root.resolve(Path::new(target), false, true)?;
            mounts::remount_bind(&mounted, MountFlags::RDONLY, &what)?;
        }
    }
    if p.read_only {
        // Read-only, and still nodev (a plain remount would reset it).
        mounts::set_attrs(
            &app_root.fd,
            mounts::ATTR_RDONLY | mounts::ATTR_NODEV,
            false,
            &format!("the root of app '{}'", p.name),
        )?;
    }
    Ok(())
}

/// The host directory behind a volume (an empty volume lives in the pod
/// directory, made on first use with its mode and owner).
pub(crate) fn volume_source(
    pod: &Pod,
    v: &skiff_spec::pod::Volume,
) -> Result<PathBuf, Stage1Error> {
    if v.kind == "host" {
        return Ok(PathBuf::from(&v.source));
    }
    let dir = pod.path.join("volumes").join(v.name.as_str());
    if !dir.exists() {
        std::fs::create_dir_all(&dir)
            .map_err(setup_err(format!("create the volume {}", dir.display())))?;
        let mode = v
            .mode
            .as_deref()
            .and_then(|m| u32::from_str_radix(m, 8).ok())
            .unwrap_or(0o755);
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(mode))
            .map_err(setup_err(format!("set the mode of volume '{}'", v.name)))?;
        let (mut uid, mut gid) = (
            v.uid.and_then(|u| u32::try_from(u).ok()),
            v.gid.and_then(|g| u32::try_from(g).ok()),
        );
        // In a user namespace the pod's ids are host ids shifted by its base.
        if let Some(base) = mounts::pod_root_id() {
            let shift = |id: Option<u32>| {
                Some(id.unwrap_or(0))
                    .filter(|id| *id < skiff_pod::USERNS_SIZE)
                    .map(|id| base + id)
                    .ok_or_else(|| {
                        Stage1Error::Config(format!(
                            "volume '{}': uid/gid must be below {} with --private-users",
                            v.name,
                            skiff_pod::USERNS_SIZE
                        ))
                    })
            };
            (uid, gid) = (Some(shift(uid)?), Some(shift(gid)?));
        }
        std::os::unix::fs::chown(&dir, uid, gid)
            .map_err(setup_err(format!("set the owner of volume '{}'", v.name)))?;
    }
    Ok(dir)
}

/// Bind-mounts a volume at its target, resolved inside the app's root.
fn mount_volume(pod: &Pod, root: &Root, m: &PlannedMount) -> Result<(), Stage1Error> {
    let source = volume_source(pod, &m.volume)?;
    let is_file = std::fs::metadata(&source)
        .map_err(setup_err(format!(
            "use volume '{}' ({})",
            m.volume.name,
            source.display()
        )))?
        .is_file();
    let what = format!("volume '{}' at {}", m.volume.name, m.target);
    let target = root.resolve(Path::new(&m.target), true, is_file)?;
    let recursive = m.volume.recursive.unwrap_or(false);
    mounts::bind(&source.display().to_string(), &target, recursive, &what)?;
    // nodev, and read-only when asked, on the volume and every submount.
    let mounted = root.resolve(Path::new(&m.target), false, is_file)?;
    let ro = if m.read_only { mounts::ATTR_RDONLY } else { 0 };
    mounts::set_attrs(&mounted, mounts::ATTR_NODEV | ro, recursive, &what)?;
    Ok(())
}
