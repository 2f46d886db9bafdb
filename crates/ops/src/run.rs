//! Running pods: fetch and render each image (under the run policy),
//! resolve networking, write a prepared pod, and hand it to stage1 — in
//! the foreground (this process becomes the pod's supervisor) or detached.

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use skiff_fetch::{KeyReview, PullPolicy};
use skiff_pod::prepare::{AppRequest, PodRequest};
use skiff_pod::restart::Restart;
use skiff_pod::{Flavor, Pod, PodLock, State};
use skiff_spec::pod::Volume;

use crate::error::io;
use crate::network::NetOptions;
use crate::{Context, OpsError, refuse};

/// One image of a pod with its own options.
#[derive(Debug, Default, Clone)]
pub struct AppSpec {
    /// What to fetch: a name, URL, path or image ID.
    pub image: String,
    /// The image's name as a pod manifest gives it beside the ID: the
    /// image fetched must have it.
    pub expected_name: Option<String>,
    /// `image` is an ID a pod manifest pins: the image must be the stored
    /// one of that ID (not a file of that name, nothing fetched).
    pub pinned: bool,
    /// The app's own options (the image, manifest and tree are filled in
    /// when the image is fetched and rendered).
    pub request: AppRequest,
}

/// A pod as asked for (each field as its `skiff run` option).
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub flavor: Flavor,
    /// `--stage1-opt` values, KEY=VALUE, checked against the flavor.
    pub stage1_options: Vec<String>,
    pub oci_runtime: Option<String>,
    pub net: NetOptions,
    pub hostname: Option<String>,
    pub pull_policy: PullPolicy,
    pub volumes: Vec<Volume>,
    /// Volumes mounted into every app: (volume, target).
    pub mounts: Vec<(String, String)>,
    pub interactive: bool,
    pub private_users: bool,
    pub no_overlay: bool,
    /// Environment for every app (an app's own wins).
    pub env: Vec<(String, String)>,
    /// `--inherit-env`: the caller's environment, for every variable
    /// neither the image nor an option sets.
    pub inherited_env: Vec<(String, String)>,
    pub pids_limit: Option<u64>,
    /// Host device nodes the pod may use.
    pub devices: Vec<String>,
    /// Write the pod's UUID here once it is prepared.
    pub uuid_file: Option<PathBuf>,
    /// How much of each app's output its log keeps.
    pub logs: skiff_pod::logs::Limits,
    /// When an app that ended is started again.
    pub restart: Restart,
    /// `--pod-manifest`: the pod's apps, volumes, ports and pod-level
    /// fields from this appc pod manifest (then `apps` is empty).
    pub pod_manifest: Option<PathBuf>,
    /// `--rm`: the pod is removed once it has ended.
    pub remove: bool,
    pub apps: Vec<AppSpec>,
}

impl RunOptions {
    /// A pod of `apps` with every other option at its default.
    pub fn new(apps: Vec<AppSpec>) -> Self {
        Self {
            flavor: Flavor::Ns,
            stage1_options: Vec::new(),
            oci_runtime: None,
            net: NetOptions::default(),
            hostname: None,
            pull_policy: PullPolicy::New,
            volumes: Vec::new(),
            mounts: Vec::new(),
            interactive: false,
            private_users: false,
            no_overlay: false,
            env: Vec::new(),
            inherited_env: Vec::new(),
            pids_limit: None,
            devices: Vec::new(),
            uuid_file: None,
            logs: skiff_pod::logs::Limits::default(),
            restart: Restart::No,
            pod_manifest: None,
            remove: false,
            apps,
        }
    }
}

/// How a pod starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// This process becomes the pod's supervisor ([`start`] returns only
    /// on failure).
    Foreground,
    /// A new session supervises it; output goes to `<pod>/stage1.log`.
    Detached,
}

/// `--stage1-opt` values, checked against what `flavor` takes.
fn stage1_options(flavor: Flavor, opts: &[String]) -> Result<BTreeMap<String, String>, OpsError> {
    let mut options = BTreeMap::new();
    for opt in opts {
        let Some((key, value)) = opt.split_once('=') else {
            return Err(refuse!("--stage1-opt={opt}: use KEY=VALUE"));
        };
        match (flavor, key) {
            (Flavor::Kvm, "accel") if ["auto", "kvm", "tcg"].contains(&value) => {}
            (Flavor::Kvm, "accel") => {
                return Err(refuse!("--stage1-opt=accel={value}: use auto, kvm or tcg"));
            }
            (Flavor::Kvm, "kernel") if Path::new(value).is_file() => {}
            (Flavor::Kvm, "kernel") => {
                return Err(refuse!("--stage1-opt=kernel={value}: no such file"));
            }
            (Flavor::Kvm, _) => {
                return Err(refuse!(
                    "--stage1-opt={opt}: the kvm flavor takes accel= and kernel="
                ));
            }
            _ => {
                return Err(refuse!(
                    "--stage1-opt={opt}: the {flavor} flavor takes no options"
                ));
            }
        }
        if options.insert(key.to_string(), value.to_string()).is_some() {
            return Err(refuse!("--stage1-opt: {key} is given twice"));
        }
    }
    Ok(options)
}

/// Checks the options that need no image, before anything is fetched.
fn check(opts: &RunOptions) -> Result<(), OpsError> {
    if !crate::rootless::is_host_root() {
        check_rootless(opts)?;
    }
    if opts.apps.is_empty() {
        return Err(refuse!("no image to run"));
    }
    if opts.oci_runtime.is_some() && opts.flavor != Flavor::Oci {
        return Err(refuse!("--oci-runtime goes with --stage1=oci"));
    }
    if opts.private_users && opts.flavor != Flavor::Ns {
        return Err(refuse!("--private-users needs the ns flavor (--stage1=ns)"));
    }
    if !opts.devices.is_empty() && ![Flavor::Ns, Flavor::Oci].contains(&opts.flavor) {
        return Err(refuse!(
            "--device works with --stage1=ns or oci (a kvm pod has the VM's devices, a fly pod the host's)"
        ));
    }
    // The ns flavor's init starts apps again through their keepers; the
    // others have no such process yet.
    if !opts.restart.is_no() && opts.flavor != Flavor::Ns {
        return Err(refuse!(
            "--restart is not implemented for the {} flavor yet: use --stage1=ns, or a systemd unit with Restart= (skiff generate systemd)",
            opts.flavor
        ));
    }
    if opts.remove && opts.flavor == Flavor::Fly {
        return Err(refuse!(
            "--rm is not implemented for the fly flavor (its stage1 becomes the app): remove the pod with skiff rm"
        ));
    }
    if let Some(name) = &opts.hostname
        && let Some(why) = hostname_problem(name)
    {
        return Err(refuse!("--hostname={name}: {why}"));
    }
    if opts.interactive {
        if opts.apps.len() != 1 {
            return Err(refuse!("--interactive works with exactly one image"));
        }
        if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            return Err(refuse!("--interactive needs a terminal on stdin"));
        }
    }
    Ok(())
}

/// The isolators of an image's app that skiff reads but does not enforce,
/// one line each (said before the pod starts, never ignored silently).
fn not_enforced(app: &skiff_spec::App) -> Vec<String> {
    use skiff_spec::isolator::{self as iso, IsolatorValue};
    app.isolators
        .iter()
        .filter_map(|i| {
            let name = i.name.as_str();
            match (&i.value, name) {
                (IsolatorValue::OomScoreAdj(v), _) if *v < 0 => Some(format!(
                    "{name} {v} is applied only where the pod's OOM score is lower already: a lower OOM score is a privilege an image does not get (a higher one is applied)"
                )),
                (
                    _,
                    iso::SELINUX_CONTEXT
                    | iso::APPARMOR_PROFILE
                    | iso::UNIX_SYSCTL
                    | iso::RESOURCE_BLOCK_BANDWIDTH
                    | iso::RESOURCE_BLOCK_IOPS
                    | iso::RESOURCE_NETWORK_BANDWIDTH,
                ) => Some(format!("{name} is not enforced by skiff")),
                _ => None,
            }
        })
        .collect()
}

/// Why `name` is no hostname (RFC 1123: dot-separated labels of letters,
/// digits and inner hyphens, each at most 63 characters, 253 in all).
fn hostname_problem(name: &str) -> Option<&'static str> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.is_empty() || name.len() > 253 {
        Some("a hostname has 1 to 253 characters")
    } else if !name.split('.').all(label_ok) {
        Some(
            "use letters, digits and hyphens in dot-separated labels (a hyphen neither first nor last)",
        )
    } else {
        None
    }
}

/// What an ordinary user's pod (in the user's namespace) can have today
/// (docs/rootless.md): refused with the reason before anything is made.
fn check_rootless(opts: &RunOptions) -> Result<(), OpsError> {
    if crate::rootless::entered().is_none() {
        return Err(refuse!(
            "an ordinary user's pods run in the user's own namespace, and this skiff is in another one (run skiff as the user itself, not under `unshare -r` or in a container)"
        ));
    }
    if opts.flavor != Flavor::Ns {
        return Err(refuse!(
            "an ordinary user's pods use the ns flavor (the fly, oci and kvm flavors need root)"
        ));
    }
    if crate::rootless::single_id() {
        return Err(refuse!(
            "an ordinary user's pods need subordinate ids (a pod's /dev/pts and its apps' groups need more ids than the user's own): add a range with `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 USER`"
        ));
    }
    if opts.private_users {
        return Err(refuse!(
            "--private-users: an ordinary user's pod is already in the user's own namespace, with its subordinate ids"
        ));
    }
    if !opts.devices.is_empty() {
        return Err(refuse!("--device needs root"));
    }
    let limits = opts.pids_limit.is_some()
        || opts
            .apps
            .iter()
            .any(|a| a.request.memory.is_some() || a.request.cpu.is_some());
    if limits {
        return Err(refuse!(
            "--memory, --cpu and --pids-limit need cgroups, and limits for an ordinary user's pods are not implemented yet (they need a cgroup v2 subtree delegated to the user; docs/rootless.md): run without them, or as root"
        ));
    }
    // Host volumes only where the user may read (the kernel would refuse
    // the pod later anyway; said here, before anything is made). access(2)
    // as root of the user's namespace grants nothing over files whose
    // owner the namespace does not map: it answers for the user.
    for v in opts.volumes.iter().filter(|v| v.kind == "host") {
        let path = std::path::Path::new(&v.source);
        let mut need = rustix::fs::Access::READ_OK;
        if path.is_dir() {
            need |= rustix::fs::Access::EXEC_OK;
        }
        if rustix::fs::access(path, need).is_err() {
            return Err(refuse!(
                "volume {}: this user may not read {} (an ordinary user's pod gets only host volumes the user may read)",
                v.name,
                v.source
            ));
        }
    }
    Ok(())
}

/// Whether `app` keeps `CAP_NET_ADMIN`: given by `--cap-retain`, or asked
/// by its image (or the pod manifest) where the user granted what images
/// ask (`--insecure-options=capabilities`, a pod manifest's retain-set).
fn keeps_net_admin(request: &PodRequest, app: &AppRequest) -> bool {
    let named = |c: &String| skiff_pod::privileges::capability_name(c) == "CAP_NET_ADMIN";
    if app.cap_retain.iter().flatten().any(named) {
        return true;
    }
    let effective = app
        .app
        .as_ref()
        .or(app.manifest.as_ref().and_then(|m| m.app.as_ref()));
    skiff_pod::prepare::app_grants(request, app).capabilities
        && effective.is_some_and(|a| {
            a.isolators.iter().any(|i| {
                i.name.as_str() == skiff_spec::isolator::CAPABILITIES_RETAIN_SET
                    && matches!(&i.value, skiff_spec::isolator::IsolatorValue::Capabilities(set) if set.iter().any(named))
            })
        })
}

/// Fetches (if needed) and renders the images, then writes a prepared pod;
/// tells `refused` what the images asked for and do not get (one line
/// each) before the pod is written.
pub fn prepare<R: KeyReview>(
    ctx: &Context,
    opts: &RunOptions,
    review: R,
    refused: impl FnMut(&str),
) -> Result<Pod, OpsError> {
    Ok(prepare_locked(ctx, opts, fetching(ctx, review), refused)?.0)
}

/// Makes a fetch of the options' images (their pull policy), under the run
/// policy, for [`prepare_locked`].
fn fetching<'a, R: KeyReview + 'a>(
    ctx: &'a Context,
    review: R,
) -> impl FnOnce(&RunOptions) -> Result<crate::fetch::Fetching<R>, OpsError> + 'a {
    move |opts| crate::fetch::Fetching::new(ctx, ctx.fetch_options(opts.pull_policy), review)
}

/// Where a pod's images come from: each app's `image` (as `skiff run` takes
/// it) as a stored image, ready to render.
trait Images {
    fn store(&self) -> &skiff_store::Store;
    fn get(&self, ctx: &Context, image: &str) -> Result<skiff_fetch::Fetched, OpsError>;
}

impl<R: KeyReview> Images for crate::fetch::Fetching<R> {
    fn store(&self) -> &skiff_store::Store {
        crate::fetch::Fetching::store(self)
    }

    fn get(&self, ctx: &Context, image: &str) -> Result<skiff_fetch::Fetched, OpsError> {
        self.fetch(ctx, image)
    }
}

/// The store's images alone: what a fetch would take from it without
/// going further ([`skiff_fetch::stored::stored`]), else
/// [`OpsError::NeedsFetch`].
struct Stored {
    store: skiff_store::Store,
    pull_policy: PullPolicy,
}

impl Images for Stored {
    fn store(&self) -> &skiff_store::Store {
        &self.store
    }

    fn get(&self, _ctx: &Context, image: &str) -> Result<skiff_fetch::Fetched, OpsError> {
        skiff_fetch::stored::stored(&self.store, image, self.pull_policy)
            .map_err(|source| OpsError::Fetch {
                image: image.to_string(),
                source,
            })?
            .ok_or_else(|| OpsError::NeedsFetch {
                image: image.to_string(),
                why: "not ready in the store without a fetch",
            })
    }
}

/// [`run`] of images the store holds, fetching nothing: what a fetch would
/// find stored and take as it is (a name or an image ID, its dependencies
/// stored; no file, URL or docker reference, no `--pull-policy=update`),
/// under no run policy. Otherwise [`OpsError::NeedsFetch`], before any pod
/// or tree is made (the store may be): then [`run`] must start it. A start
/// path that links no fetch code runs this (docs/performance.md).
pub fn run_stored(
    ctx: &Context,
    opts: &RunOptions,
    how: Start,
    refused: impl FnMut(&str),
) -> Result<Pod, OpsError> {
    start_with(ctx, opts, |opts| stored_images(ctx, opts), how, refused)
}

/// [`prepare`] of images the store holds, as [`run_stored`].
pub fn prepare_stored(
    ctx: &Context,
    opts: &RunOptions,
    refused: impl FnMut(&str),
) -> Result<Pod, OpsError> {
    Ok(prepare_locked(ctx, opts, |opts| stored_images(ctx, opts), refused)?.0)
}

/// The store alone as the images' source, unless a run policy applies:
/// that is enforced where images are fetched.
fn stored_images(ctx: &Context, opts: &RunOptions) -> Result<Stored, OpsError> {
    if crate::policy::configured(ctx) {
        let first = opts
            .apps
            .first()
            .map_or("the pod", |app| app.image.as_str());
        return Err(OpsError::NeedsFetch {
            image: first.to_string(),
            why: "a run policy applies",
        });
    }
    Ok(Stored {
        store: ctx.store()?,
        pull_policy: opts.pull_policy,
    })
}

/// Finds stage1 (before anything is made: without it no pod can run),
/// prepares the pod with `images` and starts it.
fn start_with<I: Images>(
    ctx: &Context,
    opts: &RunOptions,
    images: impl FnOnce(&RunOptions) -> Result<I, OpsError>,
    how: Start,
    refused: impl FnMut(&str),
) -> Result<Pod, OpsError> {
    let stage1 = ctx.stage1()?;
    check_activation(opts.flavor)?;
    let (pod, lock) = prepare_locked(ctx, opts, images, refused)?;
    start_locked(ctx, &stage1, pod, lock, how)
}

/// [`prepare`], returning the pod still locked (for [`run`]). `images`
/// makes where the images come from, of the options as a pod manifest
/// completed them, once they are checked (it may make the store: bad
/// options are refused before).
fn prepare_locked<I: Images>(
    ctx: &Context,
    opts: &RunOptions,
    images: impl FnOnce(&RunOptions) -> Result<I, OpsError>,
    mut refused: impl FnMut(&str),
) -> Result<(Pod, PodLock), OpsError> {
    let (opts, pod_fields) = match &opts.pod_manifest {
        Some(path) => crate::pod_manifest::apply(opts, crate::pod_manifest::read(path)?)?,
        None => (opts.clone(), skiff_pod::prepare::PodFields::default()),
    };
    let opts = &opts;
    check(opts)?;
    let stage1_options = stage1_options(opts.flavor, &opts.stage1_options)?;
    // The network options but ports (which need the images' manifests),
    // checked before anything is fetched.
    let no_ports = NetOptions {
        ports: Vec::new(),
        manifest_ports: Vec::new(),
        ..opts.net.clone()
    };
    crate::network::resolve(ctx, &no_ports, opts.flavor, &[])?;
    let devices = opts
        .devices
        .iter()
        .map(|d| skiff_pod::devices::PodDevice::at(d))
        .collect::<Result<Vec<_>, _>>()?;
    let mut apps = opts.apps.clone();
    for app in &mut apps {
        let own = std::mem::take(&mut app.request.env);
        app.request.env = opts.env.iter().cloned().chain(own).collect();
    }
    let images = images(opts)?;
    let store = images.store();
    // Every image first, then the renders: a source that cannot give one
    // (Stored) says so before any tree is made.
    let mut resolved = Vec::with_capacity(apps.len());
    for app in &apps {
        let stored = |id: &str| store.resolve(id).is_ok_and(|r| r.id.to_string() == id);
        if app.pinned && !stored(&app.image) {
            return Err(refuse!(
                "--pod-manifest: image {} is not in the store: fetch it first (the manifest pins it by ID)",
                app.image
            ));
        }
        let fetched = images.get(ctx, &app.image)?;
        if app.pinned && fetched.id.to_string() != app.image {
            return Err(refuse!(
                "--pod-manifest: {} resolved to image {}, not the one the manifest pins",
                app.image,
                fetched.id
            ));
        }
        if let Some(expected) = &app.expected_name
            && fetched.manifest.name.as_str() != expected
        {
            return Err(refuse!(
                "--pod-manifest: image {} is {}, not {expected} as the manifest says",
                app.image,
                fetched.manifest.name
            ));
        }
        resolved.push(fetched);
    }
    for (app, fetched) in apps.iter_mut().zip(resolved) {
        let tree = store.render(&fetched.id)?;
        app.request.image_id = fetched.id.to_string();
        app.request.manifest = Some(fetched.manifest);
        app.request.tree = tree.rootfs();
        app.request.tree_images = tree.images().unwrap_or_default();
        // Inherited variables come first, so that everything else wins;
        // the image's own are kept.
        let image_env: Vec<&str> = app
            .request
            .manifest
            .iter()
            .filter_map(|m| m.app.as_ref())
            .flat_map(|a| a.environment.iter().map(|v| v.name.as_str()))
            .collect();
        let inherited: Vec<(String, String)> = opts
            .inherited_env
            .iter()
            .filter(|(name, _)| !image_env.contains(&name.as_str()))
            .cloned()
            .collect();
        let own = std::mem::take(&mut app.request.env);
        app.request.env = inherited.into_iter().chain(own).collect();
    }
    let manifests: Vec<_> = apps
        .iter()
        .filter_map(|a| a.request.manifest.as_ref())
        .collect();
    let (net, exposed_ports) = crate::network::resolve(ctx, &opts.net, opts.flavor, &manifests)?;
    let insecure = ctx.settings.insecure;
    let grants = skiff_pod::privileges::Grants {
        capabilities: insecure.capabilities,
        new_privileges: insecure.capabilities,
        seccomp: insecure.seccomp,
        paths: insecure.paths,
    };
    let request = PodRequest {
        apps: apps.into_iter().map(|a| a.request).collect(),
        grants,
        volumes: opts.volumes.clone(),
        mounts: opts.mounts.clone(),
        flavor: opts.flavor,
        hostname: opts.hostname.clone(),
        debug: ctx.settings.debug,
        pids_limit: opts.pids_limit,
        devices,
        interactive: opts.interactive,
        private_users: opts.private_users,
        no_overlay: opts.no_overlay,
        net,
        oci_runtime: opts.oci_runtime.clone(),
        stage1_options,
        exposed_ports,
        rootless: !crate::rootless::is_host_root(),
        logs: opts.logs,
        restart: opts.restart,
        pod: pod_fields,
        remove: opts.remove,
    };
    // What images asked for and do not get, said before the pod exists.
    if skiff_stage1::plan::loopback_closed(request.rootless, &request.net) {
        for app in &request.apps {
            let asked = app.cap_retain.iter().flatten().filter(|c| {
                skiff_stage1::plan::RAW_NETWORK
                    .contains(&skiff_pod::privileges::capability_name(c).as_str())
            });
            for cap in asked {
                refused(&format!(
                    "{cap} is removed: with it a pod on an ordinary user's default network could reach the host's loopback (--net=default:host-loopback=true keeps it)"
                ));
            }
        }
    }
    // CAP_NET_ADMIN in the host's user namespace reaches past a CNI pod's
    // own namespace: its veth gives it an id for the host's, and netlink
    // requests naming that id (IFLA_TARGET_NETNSID) are checked against the
    // capability. The user's word, so said rather than refused.
    let bridged = request.net.mode == skiff_pod::NetMode::Private;
    if bridged
        && !request.rootless
        && !request.private_users
        && request
            .apps
            .iter()
            .any(|app| keeps_net_admin(&request, app))
    {
        refused(
            "CAP_NET_ADMIN without --private-users lets the pod change the host's network (create and delete host links through its veth's peer namespace): add --private-users to keep it to the pod's own",
        );
    }
    for app in &request.apps {
        let Some(manifest) = &app.manifest else {
            continue;
        };
        let Some(image_app) = app.app.as_ref().or(manifest.app.as_ref()) else {
            continue;
        };
        let app_grants = skiff_pod::prepare::app_grants(&request, app);
        for line in skiff_pod::privileges::refused(image_app, app_grants) {
            refused(&format!("image {}: {line}", manifest.name));
        }
        for line in not_enforced(image_app) {
            refused(&format!("image {}: {line}", manifest.name));
        }
        if !crate::rootless::is_host_root() {
            for iso in image_app
                .isolators
                .iter()
                .filter(|i| i.name.as_str().starts_with("resource/"))
            {
                refused(&format!(
                    "image {}: {} is not applied (an ordinary user's pod has no cgroups here)",
                    manifest.name, iso.name
                ));
            }
        }
    }
    check_apps(&request)?;
    let (pod, lock) = {
        let _step = tracing::debug_span!("prepare").entered();
        skiff_pod::prepare::prepare(&ctx.pods(), &request)?
    };
    if let Some(file) = &opts.uuid_file {
        std::fs::write(file, format!("{}\n", pod.uuid))
            .map_err(io(format!("write {}", file.display())))?;
    }
    Ok((pod, lock))
}

/// Checks what stage1 would otherwise find wrong only once the pod exists:
/// each app's capability names, its user and group in its image's
/// /etc/passwd and /etc/group, the sources of host volumes.
fn check_apps(request: &PodRequest) -> Result<(), OpsError> {
    for volume in &request.volumes {
        if volume.kind == "host" && !Path::new(&volume.source).exists() {
            return Err(refuse!(
                "volume {}: its source {} does not exist (create it, or use kind=empty)",
                volume.name,
                volume.source
            ));
        }
    }
    for app_req in &request.apps {
        let app = skiff_pod::prepare::effective_app(app_req)?;
        let name = app_req
            .manifest
            .as_ref()
            .map_or(String::new(), |m| m.name.to_string());
        let problem = |e: skiff_stage1::Stage1Error| {
            refuse!("image {name}: {}", skiff_stage1::error_line(&e))
        };
        skiff_stage1::app::capabilities(&app, skiff_pod::prepare::app_grants(request, app_req))
            .map_err(problem)?;
        // Names resolve in the image's own files, read as stage1 reads
        // them (inside its root only) — unless a volume over /etc brings
        // the account files, which only stage1 sees.
        let etc = |target: &str| target == "/etc" || target.starts_with("/etc/");
        let volume_over_etc = request
            .mounts
            .iter()
            .chain(&app_req.mounts)
            .map(|(_, target)| target.as_str())
            .chain(app.mount_points.iter().map(|m| m.path.as_str()))
            .any(etc);
        if !app_req.tree.as_os_str().is_empty() && !volume_over_etc {
            skiff_stage1::app::credentials(&app, &app_req.tree).map_err(problem)?;
        }
    }
    Ok(())
}

/// Refuses a pod that is not prepared (not startable).
fn check_prepared(pod: &Pod) -> Result<(), OpsError> {
    if pod.state != State::Prepared {
        return Err(refuse!(
            "pod {} is {}, not prepared",
            pod.uuid,
            pod.display_state()
        ));
    }
    Ok(())
}

/// `skiff run-prepared`: starts the prepared pod `uuid` (a unique prefix
/// will do; see [`start`]).
pub fn start_prepared(ctx: &Context, uuid: &str, how: Start) -> Result<Pod, OpsError> {
    let pod = ctx.pods().find(uuid)?;
    check_prepared(&pod)?;
    check_activation(pod.runtime()?.flavor)?;
    start(ctx, &ctx.stage1()?, pod, how)
}

/// Locks the pod, moves it to `run` and hands it to the stage1 program
/// `stage1` (see [`Start`]). Returns the pod once it runs (detached);
/// in the foreground, returns only on failure.
pub fn start(ctx: &Context, stage1: &Path, pod: Pod, how: Start) -> Result<Pod, OpsError> {
    check_prepared(&pod)?;
    let lock = pod.lock().map_err(|e| match e {
        skiff_pod::PodError::Io(e) if e.kind() == std::io::ErrorKind::NotFound => refuse!(
            "pod {} is no longer prepared: another command started or removed it",
            pod.uuid
        ),
        e => e.into(),
    })?;
    start_locked(ctx, stage1, pod, lock, how)
}

/// [`start`] of a prepared pod the caller has locked.
fn start_locked(
    ctx: &Context,
    stage1: &Path,
    mut pod: Pod,
    lock: PodLock,
    how: Start,
) -> Result<Pod, OpsError> {
    let pods = ctx.pods();
    let service = crate::service::ServiceEnv::from_env();
    service.check()?;
    pod.move_to(&pods, State::Run)?;
    // The locked directory fd stays close-on-exec here, and open across
    // exec for stage1 to hold: only stage1 gets it, not what other threads
    // of a program using this library start meanwhile (see `pass_fd` for
    // the foreground's exec). Detached, it is stage1's standard input
    // (`--lock-stdin`), which the spawn places without a step between fork
    // and exec, so without a full fork of this process; in the
    // foreground, above the sockets of socket activation (fds 3..).
    let lock = lock.into_file();
    let mut args = Vec::new();
    let foreground_lock = match how {
        Start::Foreground => {
            let held = rustix::io::fcntl_dupfd_cloexec(&lock, 3 + service.listen_fds as i32)
                .map_err(|e| io("pass the pod lock to stage1")(e.into()))?;
            args.push(format!("--lock-fd={}", held.as_raw_fd()));
            Some(held)
        }
        Start::Detached => None,
    };
    if ctx.settings.debug {
        args.push("--debug".to_string());
    }
    args.extend(service.stage1_args());
    let mut cmd = Command::new(stage1);
    cmd.arg("run").args(&args).arg(&pod.path);
    // The caller's environment (its tokens, paths) stays out of the pod's
    // init, which a pod process allowed to trace it could read: stage1
    // gets what it uses (PATH for the OCI runtime and CNI plugins, the CNI
    // plugin directory).
    cmd.env_clear();
    for name in STAGE1_ENV {
        if let Some(value) = std::env::var_os(name) {
            cmd.env(name, value);
        }
    }
    if let Some(held) = foreground_lock {
        drop(lock);
        block_termination_signals();
        // The built-in stage1 runs in this process, which executing it would
        // replace anyway: one program loaded less (docs/performance.md).
        if let Some(here) = in_process(ctx, stage1, &pod)
            && let Some(pod_dir) = pod.path.to_str()
        {
            tracing::debug!(pod = %pod.uuid, "stage1 ({}) in this process", stage1.display());
            args.push(pod_dir.to_string());
            here.run(stage1, held, &args, &STAGE1_ENV);
        }
        skiff_stage1::sys::process::pass_fd(&mut cmd, held);
        tracing::debug!(pod = %pod.uuid, "exec {}", stage1.display());
        let err = cmd.exec();
        return Err(io(format!("start stage1 {}", stage1.display()))(err).into());
    }
    cmd.arg("--lock-stdin").stdin(lock);
    cmd.arg("--detached");
    tracing::debug!(pod = %pod.uuid, "start {} (detached)", stage1.display());
    let log_path = pod.path.join("stage1.log");
    let log = std::fs::File::create(&log_path).map_err(io("create the stage1 log"))?;
    let log_err = log.try_clone().map_err(io("create the stage1 log"))?;
    cmd.stdout(log).stderr(log_err).process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(io(format!("start {}", stage1.display())))?;
    drop(cmd); // with its copy of the lock: stage1 holds its own

    // A kvm pod's stage1 may first boot a probe guest (up to 20 s where
    // /dev/kvm cannot run it) before its own guest.
    let patience = match pod.runtime().map(|r| r.flavor) {
        Ok(Flavor::Kvm) => 90,
        _ => 20,
    };
    let deadline = Instant::now() + Duration::from_secs(patience);
    loop {
        let current = match pods.find(&pod.uuid) {
            Ok(current) => Some(current),
            Err(skiff_pod::PodError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        if let Some(current) = current.as_ref().filter(|c| c.pid().is_some()) {
            return Ok(current.clone());
        }
        // Moved on, or collected, without a pid: its stage1 has exited (a
        // gc takes only a pod whose stage1 let go of the lock).
        if current.as_ref().is_none_or(|c| c.state != State::Run) {
            let status = child.wait().map_err(io("wait for stage1"))?;
            return match current {
                Some(moved) => Err(refuse!(
                    "the pod's stage1 exited before it started the pod ({status}); see {}",
                    moved.path.join("stage1.log").display()
                )),
                // Collected with its log: what stage1 said is gone. A pod
                // that ran ends with its first app's status (taken for a
                // setup failure if that is 125, which stage1 uses for one).
                None if status.code().is_none()
                    || status.code() == Some(skiff_stage1::EXIT_SETUP_FAILED) =>
                {
                    Err(refuse!(
                        "the pod's stage1 could not start it ({status}), and a concurrent gc removed the pod with its log"
                    ))
                }
                None => Ok(pod),
            };
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(refuse!(
                "the pod's stage1 exited at once ({status}); see {}",
                log_path.display()
            ));
        }
        if Instant::now() > deadline {
            return Err(refuse!(
                "the pod did not start within {patience} s; see {}",
                log_path.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// This process, if it is to become the built-in stage1 `stage1` of
/// `pod` in place ([`skiff_stage1::entry::Here`]): only where the
/// settings say so (`skiff`'s small front), for the stage1 installed
/// with this program (not a `--stage1-path` one, nor one found in the
/// compiled-in directory, which may be another build's), and for an `ns`
/// pod none of whose apps was granted capabilities or the kernel's paths.
/// A pod process with CAP_SYS_PTRACE (or host root through /proc/sys)
/// could read its init's memory, a fork of this process (the store's
/// pages read here, other images' manifests among them); a `kvm` pod
/// boots the stage1 file, which must be the code that runs it.
fn in_process(ctx: &Context, stage1: &Path, pod: &Pod) -> Option<skiff_stage1::entry::Here> {
    if !ctx.settings.stage1_in_process || ctx.settings.stage1_path.is_some() {
        return None;
    }
    let exe = std::env::current_exe().ok()?;
    if !skiff_pod::stage1::installed_with(stage1, &exe) {
        return None;
    }
    let runtime = pod.runtime().ok()?;
    let granted = runtime
        .apps
        .iter()
        .any(|a| a.grants.capabilities || a.grants.paths);
    if runtime.flavor != Flavor::Ns || granted {
        return None;
    }
    skiff_stage1::entry::Here::prepare()
}

/// What stage1 keeps of the caller's environment: PATH (for the OCI
/// runtime and CNI plugins) and the CNI plugin directory.
const STAGE1_ENV: [&str; 2] = ["PATH", "SKIFF_CNI_PATH"];

/// Blocks SIGINT/SIGTERM/SIGHUP/SIGQUIT until stage1 (which inherits the
/// mask across exec) has its handlers in place and unblocks them: a Ctrl-C
/// at start-up then stops the pod cleanly instead of killing its supervisor.
fn block_termination_signals() {
    skiff_stage1::sys::signal::set_blocked(&skiff_stage1::supervise::TERMINATION_SIGNALS, true);
}

/// `skiff run`: finds stage1 (before anything is made: without it no pod
/// can run), prepares the pod and starts it.
pub fn run<R: KeyReview>(
    ctx: &Context,
    opts: &RunOptions,
    review: R,
    how: Start,
    refused: impl FnMut(&str),
) -> Result<Pod, OpsError> {
    start_with(ctx, opts, fetching(ctx, review), how, refused)
}

/// Socket activation reaches the apps of the `ns` and `fly` flavors only:
/// refused for the others before anything is made.
fn check_activation(flavor: Flavor) -> Result<(), OpsError> {
    let service = crate::service::ServiceEnv::from_env();
    service.check()?;
    if service.listen_fds > 0 && matches!(flavor, Flavor::Oci | Flavor::Kvm) {
        return Err(refuse!(
            "socket activation (LISTEN_FDS) is not implemented for the {flavor} flavor: use --stage1=ns or fly"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage1_options_are_checked_against_the_flavor() {
        let o = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            stage1_options(Flavor::Kvm, &o(&["accel=tcg"])).unwrap()["accel"],
            "tcg"
        );
        for (flavor, bad) in [
            (Flavor::Kvm, "accel=fast"),
            (Flavor::Kvm, "kernel=/nonexistent"),
            (Flavor::Kvm, "memory=1G"),
            (Flavor::Ns, "accel=tcg"),
            (Flavor::Kvm, "accel"),
        ] {
            assert!(stage1_options(flavor, &o(&[bad])).is_err(), "{bad}");
        }
        assert!(stage1_options(Flavor::Kvm, &o(&["accel=tcg", "accel=kvm"])).is_err());
    }

    #[test]
    fn options_needing_no_image_are_refused_first() {
        let app = AppSpec {
            image: "example.com/app".into(),
            ..AppSpec::default()
        };
        let mut opts = RunOptions::new(vec![app]);
        assert!(check(&opts).is_ok());
        opts.private_users = true;
        opts.flavor = Flavor::Fly;
        assert!(check(&opts).is_err());
        assert!(check(&RunOptions::new(Vec::new())).is_err());
        for bad in ["bad host!", "-lead", "a..b", ""] {
            assert!(hostname_problem(bad).is_some(), "{bad}");
        }
        assert!(hostname_problem("web-1.example.org").is_none());
    }
}
