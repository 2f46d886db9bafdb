//! Registration with the metadata service (`skiff metadata-service`), when
//! one runs for the pod's data dir: the pod gets a secret token and each app
//! `AC_METADATA_URL=http://<host address>:<port>/<token>`. Without a
//! service (or without a network to reach it) pods start anyway, without
//! the variable; the reason is kept in `<pod>/metadata` (and printed with
//! `--debug`).

use std::net::IpAddr;
use std::path::PathBuf;

use skiff_metadata::protocol::{self, AppImage, Registration};
use skiff_pod::{NetMode, Pod, Runtime};
use skiff_spec::image::EnvVar;

use crate::plan::AppPlan;

/// A pod registered with the service (unregistered at exit).
pub struct Registered {
    data_dir: PathBuf,
    uuid: String,
    /// The service's port.
    pub port: u16,
}

impl Registered {
    /// The registration of pod `pod` (taken up by a resumed supervisor).
    pub(crate) fn resumed(pod: &Pod, port: u16) -> Option<Registered> {
        Some(Registered {
            data_dir: crate::data_dir(&pod.path)?.to_path_buf(),
            uuid: pod.uuid.clone(),
            port,
        })
    }

    pub fn unregister(self) {
        let _ = protocol::unregister(&self.data_dir, &self.uuid);
    }
}

/// `<data>` from `<data>/pods/run/<uuid>`.
#[allow(clippy::print_stderr)]
fn note(pod: &Pod, runtime: &Runtime, text: &str) {
    let _ = std::fs::write(pod.path.join("metadata"), format!("{text}\n"));
    if runtime.debug {
        eprintln!("skiff: pod {}: {text}", pod.uuid);
    }
}

/// Registers the pod and sets `AC_METADATA_URL` in each app's environment.
pub fn register(pod: &Pod, runtime: &Runtime, plans: &mut [AppPlan]) -> Option<Registered> {
    // Where the pod reaches the host, and where its requests come from.
    let (host, pod_ip): (IpAddr, Option<IpAddr>) = match runtime.net.mode {
        // A user-mode network forwards the port on the pod's own loopback
        // to the host's (crate::usernet); requests come from there.
        NetMode::Host | NetMode::User => (IpAddr::from([127, 0, 0, 1]), None),
        NetMode::None => {
            note(
                pod,
                runtime,
                "no metadata service: the pod has no network (--net=none)",
            );
            return None;
        }
        NetMode::Private => {
            let first = skiff_net::record::read(&pod.path)?
                .networks
                .into_iter()
                .next()?;
            match (first.gateway(), first.ips().first().copied()) {
                (Some(gw), Some(ip)) => (gw, Some(ip)),
                _ => {
                    note(
                        pod,
                        runtime,
                        &format!(
                            "no metadata service: network '{}' gave no gateway",
                            first.name
                        ),
                    );
                    return None;
                }
            }
        }
    };
    let data_dir = crate::data_dir(&pod.path)?.to_path_buf();
    let manifest = std::fs::read_to_string(pod.manifest_path()).ok()?;
    let apps = plans
        .iter()
        .zip(&runtime.apps)
        .map(|(p, r)| AppImage {
            name: p.name.clone(),
            image_id: r.image_id.clone(),
            manifest: std::fs::read_to_string(
                pod.path
                    .join("image-manifests")
                    .join(format!("{}.json", p.name)),
            )
            .unwrap_or_default(),
        })
        .collect();
    let registration = Registration {
        uuid: pod.uuid.clone(),
        manifest,
        apps,
        ip: pod_ip.map(|ip| ip.to_string()),
        forwarded: runtime.net.mode == NetMode::User,
        mapped_peer: runtime.rootless && runtime.net.mode == NetMode::Host,
    };
    let (token, port) = match protocol::register(&data_dir, registration) {
        Ok(answer) => answer,
        Err(e) => {
            note(pod, runtime, &format!("AC_METADATA_URL not set: {e}"));
            return None;
        }
    };
    let host = match host {
        IpAddr::V6(v6) => format!("[{v6}]"),
        v4 => v4.to_string(),
    };
    let url = format!("http://{host}:{port}/{token}");
    for p in plans.iter_mut() {
        p.app.environment.retain(|v| v.name != "AC_METADATA_URL");
        p.app.environment.push(EnvVar {
            name: "AC_METADATA_URL".into(),
            value: url.clone(),
        });
    }
    note(
        pod,
        runtime,
        &format!("registered with the metadata service on port {port}"),
    );
    Some(Registered {
        data_dir,
        uuid: pod.uuid.clone(),
        port,
    })
}
