//! From images and per-app options to a prepared pod: the pod manifest
//! (with each app's effective `app`: the image's, overridden by the
//! options), `runtime.json` and the list of images in use.

use std::path::PathBuf;

use skiff_spec::image::EnvVar;
use skiff_spec::isolator::{
    CAPABILITIES_REMOVE_SET, CAPABILITIES_RETAIN_SET, CPU_SHARES, Isolator, IsolatorValue,
    OOM_SCORE_ADJ, RESOURCE_CPU, RESOURCE_MEMORY, Resource, SECCOMP_REMOVE_SET, SECCOMP_RETAIN_SET,
    SeccompSet,
};
use skiff_spec::labels::{Annotation, Hash};
use skiff_spec::pod::{Mount, RuntimeApp as ManifestApp, RuntimeImage, Volume};
use skiff_spec::quantity::Quantity;
use skiff_spec::{AcIdentifier, AcName, App, ImageManifest, PodManifest, to_pretty_json};

use crate::privileges::Grants;
use crate::{Pod, PodError, PodLock, Pods, Runtime, RuntimeApp, State};

/// The grants of one app of `req`: a capability or seccomp set the user
/// wrote (a flag, or the app of the user's own pod manifest) applies as
/// written.
pub fn app_grants(req: &PodRequest, app: &AppRequest) -> Grants {
    let written = |names: &[&str]| {
        app.app
            .as_ref()
            .is_some_and(|a| a.isolators.iter().any(|i| names.contains(&i.name.as_str())))
    };
    Grants::for_app(
        req.grants,
        app.cap_retain.is_some() || written(&[CAPABILITIES_RETAIN_SET]),
        app.seccomp.is_some() || written(&[SECCOMP_RETAIN_SET, SECCOMP_REMOVE_SET]),
    )
}

/// One app of a pod to prepare.
#[derive(Debug, Clone, Default)]
pub struct AppRequest {
    pub image_id: String,
    pub manifest: Option<ImageManifest>,
    /// The app as the user's pod manifest (`--pod-manifest`) writes it: it
    /// replaces the image's app; the options below still apply over it.
    pub app: Option<App>,
    /// The pod manifest's annotations of this app.
    pub annotations: Vec<Annotation>,
    /// The rendered tree's rootfs.
    pub tree: PathBuf,
    /// Image IDs of every layer of the rendered tree (for image gc).
    pub tree_images: Vec<String>,
    /// `--name`; default: the last component of the image name.
    pub name: Option<String>,
    /// `--exec`: replaces the program (and, with no `args`, keeps none of the image's).
    pub exec: Option<String>,
    /// Arguments after `--`: replace the image's arguments.
    pub args: Option<Vec<String>>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub working_dir: Option<String>,
    /// `--set-env NAME=VALUE`, in order.
    pub env: Vec<(String, String)>,
    pub read_only_rootfs: bool,
    /// `--memory`: a resource/memory limit (e.g. `64M`), replacing the image's.
    pub memory: Option<String>,
    /// `--cpu`: a resource/cpu limit (e.g. `500m`), replacing the image's.
    pub cpu: Option<String>,
    /// `--cpu-shares`: the app's relative CPU weight (2 to 262144), the
    /// `os/linux/cpu-shares` isolator, replacing the image's.
    pub cpu_shares: Option<i64>,
    /// `--oom-score-adj`: how much easier the kernel kills the app when
    /// memory runs out (0 to 1000; only ever raised), the
    /// `os/linux/oom-score-adj` isolator, replacing the image's.
    pub oom_score_adj: Option<i64>,
    /// `--supplementary-gids`: the app's extra groups, replacing the image's.
    pub supplementary_gids: Option<Vec<i64>>,
    /// `--mount=volume=NAME,target=PATH` for this app: (volume, target).
    pub mounts: Vec<(String, String)>,
    /// `--cap-retain`: the only capabilities kept (replaces the image's isolator).
    pub cap_retain: Option<Vec<String>>,
    /// `--cap-remove`: capabilities dropped from the default set.
    pub cap_remove: Option<Vec<String>>,
    /// `--seccomp=mode=retain|remove[,errno=E],SYSCALL,...`.
    pub seccomp: Option<String>,
    /// `--user-annotation NAME=VALUE` and `--user-label NAME=VALUE` (rkt's):
    /// the app's userAnnotations and userLabels, over the image's.
    pub user_annotations: Vec<(String, String)>,
    pub user_labels: Vec<(String, String)>,
}

/// A pod to prepare.
#[derive(Debug, Clone)]
pub struct PodRequest {
    pub apps: Vec<AppRequest>,
    /// Privileges granted to every app beyond what images can take
    /// (`--insecure-options=capabilities,seccomp`).
    pub grants: Grants,
    /// `--volume` flags.
    pub volumes: Vec<Volume>,
    /// `--mount` flags given before the first image: for every app.
    pub mounts: Vec<(String, String)>,
    pub flavor: crate::Flavor,
    pub hostname: Option<String>,
    pub debug: bool,
    pub pids_limit: Option<u64>,
    pub interactive: bool,
    /// Run the pod in a user namespace of its own.
    pub private_users: bool,
    /// Copy the apps' trees instead of using overlayfs.
    pub no_overlay: bool,
    pub net: crate::PodNet,
    /// `--oci-runtime` for the oci flavor.
    pub oci_runtime: Option<String>,
    /// Flavor options (`--stage1-opt`), already checked.
    pub stage1_options: std::collections::BTreeMap<String, String>,
    /// `--port` flags, for the pod manifest's `ports`.
    pub exposed_ports: Vec<skiff_spec::pod::ExposedPort>,
    /// `--device` flags, already checked.
    pub devices: Vec<crate::devices::PodDevice>,
    /// An ordinary user's pod (see [`crate::Runtime::rootless`]).
    pub rootless: bool,
    /// How much of each app's output is kept.
    pub logs: crate::logs::Limits,
    /// When an app that ended is started again.
    pub restart: crate::restart::Restart,
    /// What a pod manifest (`--pod-manifest`) says of the whole pod.
    pub pod: PodFields,
    /// `--rm`: removed once it has ended.
    pub remove: bool,
}

/// The pod-level fields of a user's pod manifest, kept in the pod's.
#[derive(Debug, Clone, Default)]
pub struct PodFields {
    /// Pod-level isolators (resource limits of the whole pod).
    pub isolators: Vec<Isolator>,
    pub annotations: Vec<Annotation>,
    pub user_annotations: std::collections::BTreeMap<String, String>,
    pub user_labels: std::collections::BTreeMap<String, String>,
}

fn config(reason: String) -> PodError {
    PodError::BadRuntime {
        path: PathBuf::from("pod"),
        reason,
    }
}

/// An app name from an image name: its last path component, made a valid
/// ACName (`example.com/web-server` → `web-server`).
pub fn default_app_name(image_name: &str) -> String {
    let last = image_name
        .rsplit('/')
        .next()
        .unwrap_or(image_name)
        .to_ascii_lowercase();
    let cleaned: String = last
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let trimmed = cleaned.trim_matches('-');
    if trimmed.is_empty() {
        "app".to_string()
    } else {
        trimmed.to_string()
    }
}

/// The app as it will run: the image's app with the request's overrides.
pub fn effective_app(req: &AppRequest) -> Result<App, PodError> {
    let image_app = req
        .app
        .clone()
        .or_else(|| req.manifest.as_ref().and_then(|m| m.app.clone()));
    let mut app = match (image_app, &req.exec) {
        (Some(app), _) => app,
        (None, Some(_)) => App {
            user: "0".into(),
            group: "0".into(),
            ..App::default()
        },
        (None, None) => {
            return Err(config(format!(
                "image {} has no app to run: give --exec",
                req.manifest
                    .as_ref()
                    .map_or("?".into(), |m| m.name.to_string())
            )));
        }
    };
    match (&req.exec, &req.args) {
        (Some(exec), Some(args)) => {
            app.exec = std::iter::once(exec.clone())
                .chain(args.iter().cloned())
                .collect()
        }
        (Some(exec), None) => app.exec = vec![exec.clone()],
        (None, Some(args)) => {
            let program =
                app.exec.first().cloned().ok_or_else(|| {
                    config("the image's app has no exec to pass arguments to".into())
                })?;
            app.exec = std::iter::once(program)
                .chain(args.iter().cloned())
                .collect();
        }
        (None, None) => {}
    }
    if app.exec.is_empty() {
        return Err(config("the app has an empty exec: give --exec".into()));
    }
    if let Some(u) = &req.user {
        app.user = u.clone();
    }
    if let Some(g) = &req.group {
        app.group = g.clone();
    }
    if let Some(w) = &req.working_dir {
        if !w.starts_with('/') {
            return Err(config(format!(
                "--working-dir {w} must be an absolute path"
            )));
        }
        app.working_directory = w.clone();
    }
    let mut replace = |name: &str, value: IsolatorValue, drop: &[&str]| -> Result<(), PodError> {
        app.isolators
            .retain(|i| i.name.as_str() != name && !drop.contains(&i.name.as_str()));
        app.isolators.push(Isolator {
            name: AcIdentifier::new(name).map_err(config)?,
            value,
        });
        Ok(())
    };
    if let Some(set) = &req.cap_retain {
        replace(
            CAPABILITIES_RETAIN_SET,
            IsolatorValue::Capabilities(set.clone()),
            &[],
        )?;
    }
    if let Some(set) = &req.cap_remove {
        replace(
            CAPABILITIES_REMOVE_SET,
            IsolatorValue::Capabilities(set.clone()),
            &[],
        )?;
    }
    if let Some(flag) = &req.seccomp {
        let (mode, value) = parse_seccomp_flag(flag)?;
        let (name, other) = match mode.as_str() {
            "retain" => (SECCOMP_RETAIN_SET, SECCOMP_REMOVE_SET),
            _ => (SECCOMP_REMOVE_SET, SECCOMP_RETAIN_SET),
        };
        replace(name, IsolatorValue::Seccomp(value), &[other])?;
    }
    if let Some(shares) = req.cpu_shares {
        if !(2..=262_144).contains(&shares) {
            return Err(config(format!(
                "--cpu-shares={shares}: a CPU weight is between 2 and 262144 (1024 is the default)"
            )));
        }
        replace(CPU_SHARES, IsolatorValue::CpuShares(shares), &[])?;
    }
    if let Some(adj) = req.oom_score_adj {
        if !(0..=1000).contains(&adj) {
            return Err(config(format!(
                "--oom-score-adj={adj}: give 0 to 1000; skiff only makes a pod easier to kill (a lower score is a privilege: set it on skiff itself, e.g. systemd's OOMScoreAdjust=)"
            )));
        }
        replace(OOM_SCORE_ADJ, IsolatorValue::OomScoreAdj(adj), &[])?;
    }
    if let Some(gids) = &req.supplementary_gids {
        if let Some(bad) = gids
            .iter()
            .find(|g| !(0..=i64::from(u32::MAX - 1)).contains(*g))
        {
            return Err(config(format!(
                "--supplementary-gids: {bad} is not a group ID (0 to 4294967294)"
            )));
        }
        app.supplementary_gids = gids.clone();
    }
    for (isolator, limit) in [(RESOURCE_MEMORY, &req.memory), (RESOURCE_CPU, &req.cpu)] {
        if let Some(limit) = limit {
            let flag = if isolator == RESOURCE_MEMORY {
                "--memory"
            } else {
                "--cpu"
            };
            let quantity =
                Quantity::parse(limit).map_err(|why| config(format!("{flag}={limit}: {why}")))?;
            if !limit_above_zero(isolator, &quantity) {
                return Err(config(format!(
                    "{flag}={limit}: a limit must be more than zero (e.g. {})",
                    if isolator == RESOURCE_MEMORY {
                        "64M"
                    } else {
                        "500m"
                    }
                )));
            }
            app.isolators.retain(|i| i.name.as_str() != isolator);
            app.isolators.push(Isolator {
                name: AcIdentifier::new(isolator).map_err(config)?,
                value: IsolatorValue::Resource(Resource {
                    default: false,
                    request: None,
                    limit: Some(quantity),
                }),
            });
        }
    }
    for (name, value) in &req.user_annotations {
        app.user_annotations.insert(name.clone(), value.clone());
    }
    for (name, value) in &req.user_labels {
        app.user_labels.insert(name.clone(), value.clone());
    }
    for (name, value) in &req.env {
        if let Some(why) = skiff_spec::image::env_name_problem(name) {
            return Err(config(format!("environment variable {name:?}: {why}")));
        }
        match app.environment.iter_mut().find(|v| &v.name == name) {
            Some(v) => v.value = value.clone(),
            None => app.environment.push(EnvVar {
                name: name.clone(),
                value: value.clone(),
            }),
        }
    }
    Ok(app)
}

/// Whether `limit` of the resource isolator `isolator` (memory or CPU) is
/// at least its smallest unit (a byte, a millicore): zero or less is no
/// limit a cgroup takes.
pub fn limit_above_zero(isolator: &str, limit: &Quantity) -> bool {
    let scale = if isolator == RESOURCE_MEMORY { 0 } else { 3 };
    limit.to_scaled(scale).is_some_and(|n| n >= 1)
}

/// The mounts of an app: the explicit `--mount`s, then one per image
/// mount point not covered, from the volume of the same name (created as
/// an empty volume if the pod has none, as rkt did).
fn app_mounts<'a>(
    volumes: &mut Vec<Volume>,
    app: &App,
    explicit: impl Iterator<Item = &'a (String, String)>,
) -> Result<Vec<Mount>, PodError> {
    let mut mounts = Vec::new();
    for (volume, target) in explicit {
        if !target.starts_with('/') {
            return Err(config(format!(
                "--mount target {target} must be an absolute path"
            )));
        }
        let name = AcName::new(volume).map_err(|why| config(format!("--mount volume: {why}")))?;
        if !volumes.iter().any(|v| v.name == name) {
            return Err(config(format!(
                "--mount refers to volume '{volume}', which no --volume defines"
            )));
        }
        mounts.push(Mount {
            volume: name,
            path: target.clone(),
            app_volume: None,
        });
    }
    for mp in &app.mount_points {
        if mounts.iter().any(|m| m.path == mp.path) {
            continue;
        }
        if !volumes.iter().any(|v| v.name == mp.name) {
            volumes.push(Volume {
                name: mp.name.clone(),
                kind: "empty".to_string(),
                source: String::new(),
                read_only: None,
                recursive: None,
                mode: Some("0755".to_string()),
                uid: Some(0),
                gid: Some(0),
            });
        }
        mounts.push(Mount {
            volume: mp.name.clone(),
            path: mp.path.clone(),
            app_volume: None,
        });
    }
    Ok(mounts)
}

/// rkt's `--seccomp=mode=retain|remove[,errno=ERRNO],SYSCALL[,SYSCALL...]`.
fn parse_seccomp_flag(flag: &str) -> Result<(String, SeccompSet), PodError> {
    let mut mode = None;
    let mut set = SeccompSet::default();
    for part in flag.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('=') {
            Some(("mode", m)) if m == "retain" || m == "remove" => mode = Some(m.to_string()),
            Some(("mode", m)) => {
                return Err(config(format!("--seccomp mode={m}: use retain or remove")));
            }
            Some(("errno", e)) => set.errno = e.to_string(),
            Some((k, _)) => return Err(config(format!("--seccomp: unknown option '{k}'"))),
            None => set.set.push(part.to_string()),
        }
    }
    let mode =
        mode.ok_or_else(|| config("--seccomp needs mode=retain or mode=remove".to_string()))?;
    if set.set.is_empty() {
        return Err(config(
            "--seccomp needs at least one system call".to_string(),
        ));
    }
    Ok((mode, set))
}

/// Writes a new pod in `prepared` and returns it, still locked: a `run`
/// starts it under the same lock, so that nothing (`gc
/// --expire-prepared=0s`, `skiff rm`) takes it in between.
pub fn prepare(pods: &Pods, req: &PodRequest) -> Result<(Pod, PodLock), PodError> {
    if req.apps.is_empty() {
        return Err(config("a pod needs at least one image".into()));
    }
    let mut manifest = PodManifest {
        volumes: req.volumes.clone(),
        ports: req.exposed_ports.clone(),
        isolators: req.pod.isolators.clone(),
        annotations: req.pod.annotations.clone(),
        user_annotations: req.pod.user_annotations.clone(),
        user_labels: req.pod.user_labels.clone(),
        ..PodManifest::default()
    };
    let mut runtime_apps = Vec::new();
    let mut images = Vec::new();
    for app_req in &req.apps {
        let image_name = app_req
            .manifest
            .as_ref()
            .map_or(String::new(), |m| m.name.to_string());
        let mut name = app_req
            .name
            .clone()
            .unwrap_or_else(|| default_app_name(&image_name));
        if app_req.name.is_none() {
            let base = name.clone();
            let mut n = 2;
            while manifest.apps.iter().any(|a| a.name.as_str() == name) {
                name = format!("{base}-{n}");
                n += 1;
            }
        }
        let ac_name = AcName::new(&name).map_err(|why| config(format!("bad app name: {why}")))?;
        if manifest.apps.iter().any(|a| a.name == ac_name) {
            return Err(config(format!("two apps are called '{name}': give --name")));
        }
        let app = effective_app(app_req)?;
        let id = Hash::parse(&app_req.image_id).map_err(config)?;
        let mounts = app_mounts(
            &mut manifest.volumes,
            &app,
            req.mounts.iter().chain(&app_req.mounts),
        )?;
        manifest.apps.push(ManifestApp {
            name: ac_name,
            image: RuntimeImage {
                name: app_req.manifest.as_ref().map(|m| m.name.clone()),
                id,
                labels: app_req
                    .manifest
                    .as_ref()
                    .map(|m| m.labels.clone())
                    .unwrap_or_default(),
            },
            app: Some(app),
            read_only_root_fs: app_req.read_only_rootfs,
            mounts,
            annotations: app_req.annotations.clone(),
        });
        runtime_apps.push(RuntimeApp {
            name: name.clone(),
            image_id: app_req.image_id.clone(),
            image_name,
            tree: app_req.tree.clone(),
            grants: app_grants(req, app_req),
        });
        images.extend(app_req.tree_images.iter().cloned());
        images.push(app_req.image_id.clone());
    }
    // Locked until the pod is prepared (and, for a `run`, started): gc,
    // fsck and `status --wait` tell a pod being prepared from one a
    // killed prepare left.
    let (mut pod, lock) = pods.create()?;
    let hostname = req
        .hostname
        .clone()
        .unwrap_or_else(|| format!("skiff-{}", &pod.uuid[..8]));
    let result = (|| {
        let path = pod.manifest_path();
        std::fs::write(&path, to_pretty_json(&manifest)).map_err(crate::io_err("write", &path))?;
        let runtime = |private_users| Runtime {
            flavor: req.flavor,
            hostname: hostname.clone(),
            apps: runtime_apps.clone(),
            debug: req.debug,
            pids_limit: req.pids_limit,
            interactive: req.interactive,
            private_users,
            no_overlay: req.no_overlay,
            net: req.net.clone(),
            oci_runtime: req.oci_runtime.clone(),
            stage1_options: req.stage1_options.clone(),
            devices: req.devices.clone(),
            rootless: req.rootless,
            logs: req.logs,
            restart: req.restart,
            remove: req.remove,
        };
        if req.private_users {
            // Chosen and recorded (in runtime.json) under one lock: no two
            // pods that may run share host ids.
            pods.with_private_users(|in_use| {
                let base = crate::free_private_users_base(&pod.uuid, in_use).ok_or_else(|| {
                    config("every --private-users id range is in use".to_string())
                })?;
                pod.write_runtime(&runtime(Some(base)))
            })?;
        } else {
            pod.write_runtime(&runtime(None))?;
        }
        images.sort();
        images.dedup();
        let path = pod.path.join("images");
        std::fs::write(&path, images.join("\n") + "\n").map_err(crate::io_err("write", &path))?;
        // Each app's image manifest, for the metadata service.
        let dir = pod.path.join("image-manifests");
        for (app, app_req) in manifest.apps.iter().zip(&req.apps) {
            if let Some(m) = &app_req.manifest {
                let path = dir.join(format!("{}.json", app.name.as_str()));
                std::fs::create_dir_all(&dir)
                    .and_then(|()| std::fs::write(&path, to_pretty_json(m)))
                    .map_err(crate::io_err("write", &path))?;
            }
        }
        pod.move_to(pods, State::Prepared)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&pod.path);
        return Err(e);
    }
    Ok((pod, lock))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(app: &str) -> ImageManifest {
        skiff_spec::parse_image_manifest(
            format!(r#"{{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/web-server","app":{app}}}"#).as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn overrides_apply() {
        let req = AppRequest {
            manifest: Some(image(
                r#"{"exec":["/bin/httpd","-f"],"user":"0","group":"0","environment":[{"name":"A","value":"1"}]}"#,
            )),
            args: Some(vec!["-p".into(), "80".into()]),
            env: vec![("A".into(), "2".into()), ("B".into(), "3".into())],
            ..AppRequest::default()
        };
        let app = effective_app(&req).unwrap();
        assert_eq!(app.exec, ["/bin/httpd", "-p", "80"]);
        assert_eq!(app.environment.len(), 2);
        assert_eq!(app.environment[0].value, "2");
        let req = AppRequest {
            exec: Some("/bin/sh".into()),
            args: Some(vec!["-c".into(), "true".into()]),
            ..req
        };
        assert_eq!(effective_app(&req).unwrap().exec, ["/bin/sh", "-c", "true"]);
        assert_eq!(default_app_name("example.com/web_server"), "web-server");
    }

    #[test]
    fn prepares_a_pod() {
        let dir = tempfile::tempdir().unwrap();
        let pods = Pods::new(dir.path());
        let req = PodRequest {
            apps: vec![AppRequest {
                image_id: format!("sha512-{}", "a".repeat(128)),
                manifest: Some(image(r#"{"exec":["/bin/true"],"user":"0","group":"0"}"#)),
                tree: dir.path().join("tree"),
                ..AppRequest::default()
            }],
            grants: Grants::default(),
            volumes: Vec::new(),
            mounts: Vec::new(),
            flavor: crate::Flavor::Ns,
            hostname: None,
            debug: false,
            pids_limit: None,
            interactive: false,
            private_users: false,
            no_overlay: false,
            net: crate::PodNet::default(),
            oci_runtime: None,
            stage1_options: Default::default(),
            exposed_ports: Vec::new(),
            devices: Vec::new(),
            rootless: false,
            logs: crate::logs::Limits::default(),
            restart: crate::restart::Restart::No,
            pod: PodFields::default(),
            remove: false,
        };
        let (pod, _) = prepare(&pods, &req).unwrap();
        assert_eq!(pod.state, State::Prepared);
        let m =
            skiff_spec::parse_pod_manifest(&std::fs::read(pod.manifest_path()).unwrap()).unwrap();
        assert_eq!(m.apps[0].name.as_str(), "web-server");
        assert_eq!(pod.runtime().unwrap().apps[0].tree, dir.path().join("tree"));

        // A --private-users pod's range is on record for the next choice.
        let private = PodRequest {
            private_users: true,
            ..req
        };
        let (pod, _) = prepare(&pods, &private).unwrap();
        let base = pod.runtime().unwrap().private_users.unwrap();
        let in_use = pods
            .with_private_users(|in_use| Ok(in_use.to_vec()))
            .unwrap();
        assert_eq!(in_use, vec![base]);
    }

    #[test]
    fn a_taken_id_range_moves_to_the_next_free_one() {
        let uuid = "0001aaaa-0000-4000-8000-000000000000";
        let own = crate::private_users_base(uuid);
        assert_eq!(crate::free_private_users_base(uuid, &[]), Some(own));
        let next = crate::free_private_users_base(uuid, &[own]).unwrap();
        assert_eq!(next, own + crate::USERNS_SIZE);
        assert_eq!(
            crate::free_private_users_base(uuid, &[own, next]),
            Some(own + 2 * crate::USERNS_SIZE)
        );
    }
}
