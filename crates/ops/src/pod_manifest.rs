//! `--pod-manifest=FILE` (rkt's): a whole appc pod manifest, written by the
//! user, as the pod to prepare — its apps (each an image of the store by
//! ID, with the app as written or the image's), volumes, ports, pod-level
//! isolators and annotations. It is the user's own word, as the command
//! line is: its apps' capability and seccomp sets apply as written.

use std::io::Read;
use std::path::Path;

use skiff_pod::Flavor;
use skiff_pod::prepare::{AppRequest, PodFields};
use skiff_spec::PodManifest;
use skiff_spec::isolator::{IsolatorValue, RESOURCE_CPU, RESOURCE_MEMORY};

use crate::network::{PortRequest, PortTarget};
use crate::run::{AppSpec, RunOptions};
use crate::{OpsError, refuse};

/// The largest pod manifest read (appc's manifests are small).
const MAX_BYTES: u64 = 4 << 20;

/// Reads and parses the pod manifest at `path`.
pub fn read(path: &Path) -> Result<PodManifest, OpsError> {
    let shown = path.display();
    let file = std::fs::File::open(path)
        .map_err(|e| refuse!("--pod-manifest={shown}: cannot open it: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| refuse!("--pod-manifest={shown}: cannot read it: {e}"))?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(refuse!(
            "--pod-manifest={shown}: larger than {} MiB: not a pod manifest",
            MAX_BYTES >> 20
        ));
    }
    skiff_spec::parse_pod_manifest(&bytes)
        .map_err(|e| refuse!("--pod-manifest={shown}: not a valid appc pod manifest: {e}"))
}

/// `opts` with the pod `manifest` describes (its apps, volumes and ports
/// joined to the options'), and the pod-level fields for the pod's own
/// manifest. Refused: images or per-image options beside it, an app
/// without an image ID, `appVolume`s, pod-level isolators other than
/// memory and CPU limits (and those on a flavor other than ns, or for an
/// ordinary user).
pub fn apply(
    opts: &RunOptions,
    manifest: PodManifest,
) -> Result<(RunOptions, PodFields), OpsError> {
    if !opts.apps.is_empty() {
        return Err(refuse!(
            "--pod-manifest names the pod's images and apps: give no image on the command line"
        ));
    }
    if manifest.apps.is_empty() {
        return Err(refuse!("--pod-manifest: the manifest has no apps"));
    }
    let mut out = opts.clone();
    for ra in &manifest.apps {
        let mut mounts = Vec::new();
        for m in &ra.mounts {
            if m.app_volume.is_some() {
                return Err(refuse!(
                    "--pod-manifest: app {}: appVolume is not supported: define the volume in the pod's volumes and mount it by name",
                    ra.name
                ));
            }
            mounts.push((m.volume.to_string(), m.path.clone()));
        }
        out.apps.push(AppSpec {
            image: ra.image.id.to_string(),
            expected_name: ra.image.name.as_ref().map(ToString::to_string),
            pinned: true,
            request: AppRequest {
                name: Some(ra.name.to_string()),
                app: ra.app.clone(),
                read_only_rootfs: ra.read_only_root_fs,
                mounts,
                annotations: ra.annotations.clone(),
                ..AppRequest::default()
            },
        });
    }
    for volume in &manifest.volumes {
        if out.volumes.iter().any(|v| v.name == volume.name) {
            return Err(refuse!(
                "volume {} is defined twice (in the pod manifest and by --volume)",
                volume.name
            ));
        }
        out.volumes.push(volume.clone());
    }
    for port in &manifest.ports {
        let target = match &port.pod_port {
            None => PortTarget::Named(port.name.to_string()),
            Some(p) if p.count > 1 => {
                return Err(refuse!(
                    "--pod-manifest: port {}: a range of ports (count {}) is not supported: forward each port",
                    port.name,
                    p.count
                ));
            }
            Some(p) => PortTarget::Number {
                port: u16::try_from(p.port)
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        refuse!("--pod-manifest: port {}: {} is no port", port.name, p.port)
                    })?,
                protocol: p.protocol.clone(),
            },
        };
        let host_port = u16::try_from(port.host_port)
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                refuse!(
                    "--pod-manifest: port {}: host port {} is no port (1-65535)",
                    port.name,
                    port.host_port
                )
            })?;
        out.net.manifest_ports.push(PortRequest {
            target,
            host_ip: port.host_ip,
            host_port,
        });
    }
    for iso in &manifest.isolators {
        let limit = match (iso.name.as_str(), &iso.value) {
            (RESOURCE_MEMORY | RESOURCE_CPU, IsolatorValue::Resource(r)) => r.limit.as_ref(),
            _ => {
                return Err(refuse!(
                    "--pod-manifest: pod-level isolator {} is not supported (the pod takes {RESOURCE_MEMORY} and {RESOURCE_CPU} limits): put it in each app's isolators",
                    iso.name
                ));
            }
        };
        if !limit.is_some_and(|q| skiff_pod::prepare::limit_above_zero(iso.name.as_str(), q)) {
            return Err(refuse!(
                "--pod-manifest: pod-level isolator {} needs a limit of more than zero",
                iso.name
            ));
        }
        if opts.flavor != Flavor::Ns {
            return Err(refuse!(
                "--pod-manifest: pod-level isolators are applied by the ns flavor only (--stage1=ns)"
            ));
        }
        if !crate::rootless::is_host_root() {
            return Err(refuse!(
                "--pod-manifest: pod-level limits need cgroups, and limits for an ordinary user's pods are not implemented yet: run as root, or without them"
            ));
        }
    }
    let fields = PodFields {
        isolators: manifest.isolators,
        annotations: manifest.annotations,
        user_annotations: manifest.user_annotations,
        user_labels: manifest.user_labels,
    };
    Ok((out, fields))
}
