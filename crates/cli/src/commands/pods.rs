//! Pod commands: run, prepare, run-prepared, list, status, stop, rm, gc.

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use skiff_fetch::PullPolicy;
use skiff_pod::prepare::{AppRequest, PodRequest, prepare};
use skiff_pod::{Flavor, Pod, Pods, State};

use crate::commands::fetch::{TerminalReview, warn_insecure};
use crate::config::GlobalArgs;
use crate::format::human_time;

#[derive(Args, Debug)]
pub struct PodArgs {
    /// Isolation flavor: `ns` (namespaces, the default), `fly` (chroot
    /// only, host namespaces, full privileges: for trusted system tools),
    /// `oci` (an OCI runtime bundle run by crun or runc; one app per pod)
    /// or `kvm` (a virtual machine per pod with its own kernel; QEMU with
    /// KVM, or TCG where KVM cannot run the guest).
    #[arg(long, default_value = "ns", value_name = "FLAVOR")]
    stage1: Flavor,

    /// A flavor option, KEY=VALUE (repeatable). kvm: accel=auto|kvm|tcg
    /// (default auto: KVM if a probe guest boots under it, else TCG),
    /// kernel=PATH (default: the newest /boot/vmlinuz-*).
    #[arg(long = "stage1-opt", value_name = "KEY=VALUE")]
    stage1_opts: Vec<String>,

    /// The OCI runtime of `--stage1=oci`: a name in PATH or a path
    /// (default crun; runc works too).
    #[arg(long, value_name = "RUNTIME")]
    oci_runtime: Option<String>,

    #[command(flatten)]
    net: crate::commands::network::NetArgs,

    /// The pod's hostname (default: skiff-<first 8 digits of the uuid>).
    #[arg(long)]
    hostname: Option<String>,

    /// When to download images: never, new (default: only if missing), update.
    #[arg(long, default_value = "new", value_name = "POLICY")]
    pull_policy: PullPolicy,

    /// A pod volume: NAME,kind=host,source=/PATH[,readOnly=true][,recursive=true]
    /// or NAME,kind=empty[,mode=0755][,uid=N][,gid=N]. Image mount points
    /// use the volume of the same name (an empty one is made if missing).
    #[arg(long = "volume", value_name = "VOLUME")]
    volumes: Vec<String>,

    /// Mount a volume into every app: volume=NAME,target=/PATH (after an
    /// image: into that app only).
    #[arg(long = "mount", value_name = "MOUNT")]
    mounts: Vec<String>,

    /// Give the app a terminal of its own, relayed to this one (one app
    /// only; needs a terminal on stdin).
    #[arg(long)]
    interactive: bool,

    /// Run the pod in a user namespace of its own: root in the pod is an
    /// unprivileged host uid (a 65536-id block chosen from the pod UUID),
    /// image files appear owned by their in-pod ids through idmapped
    /// mounts. Host volumes keep their host owners. `ns` flavor only.
    #[arg(long)]
    private_users: bool,

    /// Give each app a private copy of its image's tree instead of an
    /// overlayfs (for hosts where overlayfs is missing or the pod dir's
    /// filesystem cannot be an overlay upper layer). Slower to start and
    /// uses disk for each pod.
    #[arg(long)]
    no_overlay: bool,

    /// An environment variable for every app, NAME=VALUE (repeatable; as
    /// rkt's). An image's own --set-env, after the image, wins.
    #[arg(long = "set-env", value_name = "NAME=VALUE")]
    set_env: Vec<String>,

    /// Most processes the pod may run at once (cgroup pids.max).
    #[arg(long, value_name = "N")]
    pids_limit: Option<u64>,

    /// Give the pod a host device node, at the same path (repeatable;
    /// `ns` and `oci` flavors), e.g. --device=/dev/fuse: the device policy,
    /// which otherwise lets a pod open only its minimal /dev, lets it read
    /// and write that device.
    #[arg(long = "device", value_name = "PATH")]
    devices: Vec<String>,

    /// Write the pod's UUID to this file.
    #[arg(long, value_name = "FILE")]
    uuid_file_save: Option<PathBuf>,

    /// Images to run, each followed by its own options, then `-- ARGS` for
    /// its arguments; `---` ends an image's arguments. Per-image options:
    /// --exec=PATH, --name=NAME, --user=USER, --group=GROUP,
    /// --working-dir=DIR, --set-env=NAME=VALUE, --readonly-rootfs,
    /// --memory=LIMIT (e.g. 64M), --cpu=LIMIT (e.g. 500m),
    /// --mount=volume=NAME,target=/PATH, --set-env-file=FILE,
    /// --cap-retain=CAP,... --cap-remove=CAP,...,
    /// --seccomp=mode=retain|remove[,errno=ENOSYS],SYSCALL,...
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        required = true,
        value_name = "IMAGE [OPTIONS] [-- ARGS]"
    )]
    images: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pod: PodArgs,
}

#[derive(Args, Debug)]
pub struct DetachArgs {
    /// Return once the pod is running; it stays supervised by its own stage1.
    #[arg(long)]
    pub detach: bool,
}

/// One image of `skiff run` with its options.
#[derive(Debug, Default)]
struct AppSpec {
    image: String,
    request: AppRequest,
}

/// Parses rkt's grammar: `IMAGE [--opt...] [-- args...] [--- IMAGE ...]`.
fn parse_apps(rest: &[String]) -> anyhow::Result<Vec<AppSpec>> {
    let mut apps: Vec<AppSpec> = Vec::new();
    let mut in_args = false;
    let mut i = 0;
    while i < rest.len() {
        let tok = &rest[i];
        i += 1;
        if in_args {
            if tok == "---" {
                in_args = false;
            } else if let Some(app) = apps.last_mut() {
                app.request
                    .args
                    .get_or_insert_with(Vec::new)
                    .push(tok.clone());
            }
            continue;
        }
        if tok == "---" {
            continue;
        }
        if tok == "--" {
            let Some(app) = apps.last_mut() else {
                bail!("'--' must follow an image")
            };
            app.request.args.get_or_insert_with(Vec::new);
            in_args = true;
            continue;
        }
        if let Some(flag) = tok.strip_prefix("--") {
            let Some(app) = apps.last_mut() else {
                bail!(
                    "--{} must follow an image (per-image options come after the image)",
                    flag.split('=').next().unwrap_or(flag)
                );
            };
            let (name, inline) = match flag.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (flag, None),
            };
            if name == "readonly-rootfs" {
                app.request.read_only_rootfs = inline.as_deref().is_none_or(|v| v == "true");
                continue;
            }
            let value = match inline {
                Some(v) => v,
                None => {
                    let v = rest
                        .get(i)
                        .cloned()
                        .with_context(|| format!("--{name} needs a value"))?;
                    i += 1;
                    v
                }
            };
            let r = &mut app.request;
            match name {
                "exec" => r.exec = Some(value),
                "name" => r.name = Some(value),
                "user" => r.user = Some(value),
                "group" => r.group = Some(value),
                "working-dir" => r.working_dir = Some(value),
                "mount" => r.mounts.push(parse_mount(&value)?),
                "memory" => r.memory = Some(value),
                "cap-retain" => r.cap_retain = Some(value.split(',').map(str::to_string).collect()),
                "cap-remove" => r.cap_remove = Some(value.split(',').map(str::to_string).collect()),
                "seccomp" => r.seccomp = Some(value),
                "set-env-file" => {
                    let text = std::fs::read_to_string(&value)
                        .with_context(|| format!("cannot read --set-env-file {value}"))?;
                    for line in text
                        .lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    {
                        let (k, v) = line
                            .split_once('=')
                            .with_context(|| format!("{value}: '{line}' is not NAME=VALUE"))?;
                        r.env.push((k.to_string(), v.to_string()));
                    }
                }
                "cpu" => r.cpu = Some(value),
                "set-env" => {
                    let (k, v) = value
                        .split_once('=')
                        .with_context(|| format!("--set-env {value}: use NAME=VALUE"))?;
                    r.env.push((k.to_string(), v.to_string()));
                }
                other => bail!("unknown per-image option --{other} (see skiff run --help)"),
            }
            continue;
        }
        apps.push(AppSpec {
            image: tok.clone(),
            request: AppRequest::default(),
        });
    }
    if apps.is_empty() {
        bail!("no image to run");
    }
    Ok(apps)
}

/// `volume=NAME,target=/PATH`.
fn parse_mount(flag: &str) -> anyhow::Result<(String, String)> {
    let (mut volume, mut target) = (None, None);
    for part in flag.split(',') {
        match part.split_once('=') {
            Some(("volume", v)) => volume = Some(v.to_string()),
            Some(("target", t)) => target = Some(t.to_string()),
            _ => bail!("--mount {flag}: use volume=NAME,target=/PATH"),
        }
    }
    match (volume, target) {
        (Some(v), Some(t)) => Ok((v, t)),
        _ => bail!("--mount {flag}: use volume=NAME,target=/PATH"),
    }
}

/// `--stage1-opt` values, checked against what `flavor` takes.
fn stage1_options(
    flavor: Flavor,
    opts: &[String],
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let mut options = std::collections::BTreeMap::new();
    for opt in opts {
        let Some((key, value)) = opt.split_once('=') else {
            bail!("--stage1-opt={opt}: use KEY=VALUE");
        };
        match (flavor, key) {
            (Flavor::Kvm, "accel") if ["auto", "kvm", "tcg"].contains(&value) => {}
            (Flavor::Kvm, "accel") => bail!("--stage1-opt=accel={value}: use auto, kvm or tcg"),
            (Flavor::Kvm, "kernel") if Path::new(value).is_file() => {}
            (Flavor::Kvm, "kernel") => bail!("--stage1-opt=kernel={value}: no such file"),
            (Flavor::Kvm, _) => {
                bail!("--stage1-opt={opt}: the kvm flavor takes accel= and kernel=")
            }
            _ => bail!("--stage1-opt={opt}: the {flavor} flavor takes no options"),
        }
        if options.insert(key.to_string(), value.to_string()).is_some() {
            bail!("--stage1-opt: {key} is given twice");
        }
    }
    Ok(options)
}

fn pods(global: &GlobalArgs) -> Pods {
    Pods::new(&global.dir)
}

/// Fetches (if needed) and renders the images, then writes a prepared pod.
fn prepare_pod(global: &GlobalArgs, args: &PodArgs) -> anyhow::Result<Pod> {
    let stage1_options = stage1_options(args.stage1, &args.stage1_opts)?;
    if args.oci_runtime.is_some() && args.stage1 != Flavor::Oci {
        bail!("--oci-runtime goes with --stage1=oci");
    }
    let mut specs = parse_apps(&args.images)?;
    let pod_env = args
        .set_env
        .iter()
        .map(|e| {
            e.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .with_context(|| format!("--set-env {e}: use NAME=VALUE"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    for spec in &mut specs {
        let own = std::mem::take(&mut spec.request.env);
        spec.request.env = pod_env.iter().cloned().chain(own).collect();
    }
    if args.private_users && args.stage1 != Flavor::Ns {
        bail!("--private-users needs the ns flavor (--stage1=ns)");
    }
    if !args.devices.is_empty() && ![Flavor::Ns, Flavor::Oci].contains(&args.stage1) {
        bail!(
            "--device works with --stage1=ns or oci (a kvm pod has the VM's devices, a fly pod the host's)"
        );
    }
    let devices = args
        .devices
        .iter()
        .map(|d| skiff_pod::devices::PodDevice::at(d))
        .collect::<Result<Vec<_>, _>>()?;
    if args.interactive {
        if specs.len() != 1 {
            bail!("--interactive works with exactly one image");
        }
        if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            bail!("--interactive needs a terminal on stdin");
        }
    }
    let volumes = args
        .volumes
        .iter()
        .map(|v| {
            skiff_spec::pod::volume_from_flag(v).map_err(|e| anyhow::anyhow!("--volume {v}: {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mounts = args
        .mounts
        .iter()
        .map(|m| parse_mount(m))
        .collect::<anyhow::Result<Vec<_>>>()?;
    warn_insecure(global);
    let session = crate::commands::fetch::session(
        global,
        crate::commands::fetch::options(global, args.pull_policy)?,
        TerminalReview { skip: false },
    )?;
    let fetcher = session.fetcher();
    let store = &session.store;
    let policy = crate::policy::load(global)?;
    for spec in &mut specs {
        let before = match &policy {
            Some(_) => crate::policy::snapshot(store)?,
            None => Default::default(),
        };
        let fetched = fetcher
            .fetch(&spec.image)
            .with_context(|| format!("cannot fetch {}", spec.image))?;
        if let Some(policy) = &policy {
            policy.admit(global, store, &fetched.id, &before)?;
        }
        let tree = store.render(&fetched.id)?;
        spec.request.image_id = fetched.id.to_string();
        spec.request.manifest = Some(fetched.manifest);
        spec.request.tree = tree.join("rootfs");
        spec.request.tree_images = std::fs::read_to_string(tree.join("images"))
            .map(|s| s.lines().map(str::to_string).collect())
            .unwrap_or_default();
    }
    let manifests: Vec<_> = specs
        .iter()
        .filter_map(|s| s.request.manifest.as_ref())
        .collect();
    let (net, exposed_ports) =
        crate::commands::network::resolve(global, &args.net, args.stage1, &manifests)?;
    let insecure = global.insecure_options;
    let grants = skiff_pod::privileges::Grants {
        capabilities: insecure.capabilities,
        new_privileges: insecure.capabilities,
        seccomp: insecure.seccomp,
        paths: insecure.paths,
    };
    let request = PodRequest {
        apps: specs.into_iter().map(|s| s.request).collect(),
        grants,
        volumes,
        mounts,
        flavor: args.stage1,
        hostname: args.hostname.clone(),
        debug: global.debug,
        pids_limit: args.pids_limit,
        devices,
        interactive: args.interactive,
        private_users: args.private_users,
        no_overlay: args.no_overlay,
        net,
        oci_runtime: args.oci_runtime.clone(),
        stage1_options,
        exposed_ports,
    };
    // What images asked for and do not get, said before the pod starts.
    for app in &request.apps {
        let Some(manifest) = &app.manifest else {
            continue;
        };
        let Some(image_app) = &manifest.app else {
            continue;
        };
        let app_grants = skiff_pod::prepare::app_grants(&request, app);
        for line in skiff_pod::privileges::refused(image_app, app_grants) {
            eprintln!("skiff: image {}: {line}", manifest.name);
        }
    }
    let pod = prepare(&pods(global), &request)?;
    if let Some(file) = &args.uuid_file_save {
        std::fs::write(file, format!("{}\n", pod.uuid))
            .with_context(|| format!("cannot write {}", file.display()))?;
    }
    Ok(pod)
}

fn stage1_path(global: &GlobalArgs) -> anyhow::Result<PathBuf> {
    Ok(skiff_pod::stage1::locate(global.stage1_path.as_deref())?)
}

/// Locks the pod, moves it to `run` and hands it to stage1: by exec (the
/// `skiff` process becomes the pod's supervisor) or, detached, as a new
/// session whose output goes to `<pod>/stage1.log`.
fn start(
    global: &GlobalArgs,
    stage1: &Path,
    mut pod: Pod,
    detach: bool,
) -> anyhow::Result<ExitCode> {
    let pods = pods(global);
    let lock = pod.lock()?;
    pod.move_to(&pods, State::Run)?;
    // The locked directory fd stays open across exec for stage1 to hold.
    let file = lock.into_file();
    rustix::io::fcntl_setfd(&file, rustix::io::FdFlags::empty())
        .context("cannot pass the pod lock to stage1")?;
    let fd = file.as_raw_fd();
    let mut cmd = Command::new(stage1);
    cmd.arg("run").arg(format!("--lock-fd={fd}"));
    // The caller's environment (its tokens, paths) stays out of the pod's
    // init, which a pod process allowed to trace it could read: stage1
    // gets what it uses (PATH for the OCI runtime and CNI plugins, the CNI
    // plugin directory).
    cmd.env_clear();
    for name in ["PATH", "SKIFF_CNI_PATH"] {
        if let Some(value) = std::env::var_os(name) {
            cmd.env(name, value);
        }
    }
    if global.debug {
        cmd.arg("--debug");
    }
    cmd.arg(&pod.path);
    if !detach {
        block_termination_signals();
        let err = cmd.exec();
        bail!("cannot start stage1 {}: {err}", stage1.display());
    }
    let log = std::fs::File::create(pod.path.join("stage1.log"))
        .context("cannot create the stage1 log")?;
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", stage1.display()))?;
    drop(file); // stage1 holds its own copy of the lock

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let current = pods.find(&pod.uuid)?;
        if current.pid().is_some() || current.state != State::Run {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            bail!(
                "the pod's stage1 exited at once ({status}); see {}",
                pod.path.join("stage1.log").display()
            );
        }
        if Instant::now() > deadline {
            bail!(
                "the pod did not start within 20 s; see {}",
                pod.path.join("stage1.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    println!("{}", pod.uuid);
    Ok(ExitCode::SUCCESS)
}

/// Blocks SIGINT/SIGTERM/SIGHUP/SIGQUIT until stage1 (which inherits the
/// mask across exec) has its handlers in place and unblocks them: a Ctrl-C
/// at start-up then stops the pod cleanly instead of killing its supervisor.
fn block_termination_signals() {
    skiff_stage1::sys::signal::set_blocked(&skiff_stage1::ns::TERMINATION_SIGNALS, true);
}

/// Runs a command in a running pod (through stage1's `enter`).
pub fn enter(
    global: &GlobalArgs,
    uuid: &str,
    app: Option<&str>,
    tty: bool,
    cmd: &[String],
) -> anyhow::Result<ExitCode> {
    let pod = pods(global).find(uuid)?;
    if !pod.is_running() {
        bail!("pod {} is {}, not running", pod.uuid, pod.display_state());
    }
    let mut command = Command::new(stage1_path(global)?);
    command.arg("enter");
    if let Some(app) = app {
        command.arg(format!("--app={app}"));
    }
    if tty {
        command.arg("--tty");
    }
    command.arg(&pod.path).arg("--").args(cmd);
    // The caller's environment (its secrets) never reaches the process
    // that joins the pod; the command gets the app's.
    command.env_clear();
    let err = command.exec();
    bail!("cannot start stage1: {err}")
}

pub fn run(global: &GlobalArgs, args: RunArgs, detach: DetachArgs) -> anyhow::Result<ExitCode> {
    // Found before anything is made: without it no pod can run.
    let stage1 = stage1_path(global)?;
    let pod = prepare_pod(global, &args.pod)?;
    start(global, &stage1, pod, detach.detach)
}

pub fn prepare_only(global: &GlobalArgs, args: RunArgs) -> anyhow::Result<ExitCode> {
    let pod = prepare_pod(global, &args.pod)?;
    println!("{}", pod.uuid);
    Ok(ExitCode::SUCCESS)
}

pub fn run_prepared(
    global: &GlobalArgs,
    uuid: &str,
    detach: DetachArgs,
) -> anyhow::Result<ExitCode> {
    let pod = pods(global).find(uuid)?;
    if pod.state != State::Prepared {
        bail!("pod {} is {}, not prepared", pod.uuid, pod.display_state());
    }
    start(global, &stage1_path(global)?, pod, detach.detach)
}

#[derive(Clone, Copy, ValueEnum, Debug)]
pub enum Format {
    Table,
    Json,
}

fn app_names(pod: &Pod) -> Vec<(String, String)> {
    pod.runtime()
        .map(|r| r.apps.into_iter().map(|a| (a.name, a.image_name)).collect())
        .unwrap_or_default()
}

/// The pod's networks with their addresses, while it has them: `(name,
/// ifname, ips)`; none for host networking or once torn down.
fn networks(pod: &Pod) -> Vec<(String, String, Vec<String>)> {
    skiff_net::record::read(&pod.path)
        .map(|info| {
            info.networks
                .iter()
                .map(|a| {
                    let ips = a.ips().iter().map(|ip| ip.to_string()).collect();
                    (a.name.clone(), a.ifname.clone(), ips)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `default:ip4=172.16.28.2` per network, as rkt printed them.
fn networks_text(pod: &Pod) -> String {
    networks(pod)
        .iter()
        .map(|(name, _, ips)| {
            let addrs: Vec<String> = ips
                .iter()
                .map(|ip| {
                    let v = if ip.contains(':') { "ip6" } else { "ip4" };
                    format!("{v}={ip}")
                })
                .collect();
            if addrs.is_empty() {
                name.clone()
            } else {
                format!("{name}:{}", addrs.join(","))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The pod's isolation flavor, from runtime.json.
fn flavor(pod: &Pod) -> Option<Flavor> {
    pod.runtime().ok().map(|r| r.flavor)
}

/// The accelerator a kvm pod's VM uses, and why.
fn accel(pod: &Pod) -> Option<String> {
    pod.note(skiff_pod::PodNote::Accel)
}

fn pod_json(pod: &Pod) -> serde_json::Value {
    let apps: Vec<_> = app_names(pod)
        .into_iter()
        .map(|(name, image)| serde_json::json!({"name": name, "image": image, "exitCode": pod.app_exit(&name)}))
        .collect();
    serde_json::json!({
        "uuid": pod.uuid,
        "state": pod.display_state(),
        "created": pod.created(),
        "started": pod.started(),
        "exited": pod.exited(),
        "pid": pod.pid(),
        "flavor": flavor(pod),
        "accel": accel(pod),
        "apps": apps,
        "networks": networks(pod)
            .into_iter()
            .map(|(name, ifname, ips)| serde_json::json!({"name": name, "ifname": ifname, "ips": ips}))
            .collect::<Vec<_>>(),
    })
}

pub fn list(
    global: &GlobalArgs,
    format: Format,
    no_legend: bool,
    full: bool,
) -> anyhow::Result<ExitCode> {
    let pods = pods(global).all()?;
    if let Format::Json = format {
        let all: Vec<_> = pods.iter().map(pod_json).collect();
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(ExitCode::SUCCESS);
    }
    if !no_legend {
        println!(
            "{:<36} {:<16} {:<32} {:<9} {:<20} NETWORKS",
            "UUID", "APP", "IMAGE NAME", "STATE", "CREATED"
        );
    }
    for pod in &pods {
        let uuid = if full {
            pod.uuid.as_str()
        } else {
            &pod.uuid[..8]
        };
        let apps = app_names(pod);
        let (app, image) = apps.first().cloned().unwrap_or_default();
        println!(
            "{:<36} {:<16} {:<32} {:<9} {:<20} {}",
            uuid,
            app,
            image,
            pod.display_state(),
            human_time(pod.created()),
            networks_text(pod)
        );
        for (app, image) in apps.iter().skip(1) {
            println!("{:<36} {:<16} {:<32}", "", app, image);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn status(
    global: &GlobalArgs,
    uuid: &str,
    wait: bool,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let pods = pods(global);
    let mut pod = pods.find(uuid)?;
    if wait {
        while pod.is_running() || matches!(pod.state, State::Embryo | State::Prepare) {
            std::thread::sleep(Duration::from_millis(50));
            pod = pods.find(&pod.uuid)?;
        }
    }
    if let Format::Json = format {
        println!("{}", serde_json::to_string_pretty(&pod_json(&pod))?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("state={}", pod.display_state());
    if let Some(f) = flavor(&pod) {
        println!("flavor={f}");
    }
    if let Some(a) = accel(&pod) {
        println!("accel={a}");
    }
    println!("created={}", pod.created());
    if let Some(s) = pod.started() {
        println!("started={s}");
    }
    if let Some(p) = pod.pid() {
        println!("pid={p}");
    }
    if let Some(e) = pod.exited() {
        println!("exited={e}");
    }
    let nets = networks_text(&pod);
    if !nets.is_empty() {
        println!("networks={nets}");
    }
    for (app, _) in app_names(&pod) {
        if let Some(code) = pod.app_exit(&app) {
            println!("app-{app}={code}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn stop(global: &GlobalArgs, uuids: &[String], force: bool) -> anyhow::Result<ExitCode> {
    let pods = pods(global);
    let mut failed = false;
    for uuid in uuids {
        let pod = pods.find(uuid)?;
        if !pod.is_running() {
            eprintln!("pod {} is not running", pod.uuid);
            failed = true;
            continue;
        }
        let pid = pod
            .pid()
            .with_context(|| format!("pod {} has no pid yet", pod.uuid))?;
        let signal = if force {
            rustix::process::Signal::KILL
        } else {
            rustix::process::Signal::TERM
        };
        let target = rustix::process::Pid::from_raw(pid).context("bad pid")?;
        rustix::process::kill_process(target, signal)
            .with_context(|| format!("cannot signal pod {}", pod.uuid))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while pods.find(&pod.uuid)?.is_running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if pods.find(&pod.uuid)?.is_running() {
            eprintln!("pod {} did not stop within 10 s (use --force)", pod.uuid);
            failed = true;
        } else {
            println!("{}", pod.uuid);
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Unmounts anything still mounted under `dir` (deepest first): normally
/// nothing, as pod mounts live in the pod's own namespace.
fn unmount_under(dir: &Path) -> anyhow::Result<()> {
    skiff_pod::mounts::unmount_under(dir)
        .map_err(|(point, e)| anyhow::anyhow!("cannot unmount {}: {e}", point.display()))
}

/// Runs stage1's `gc` on an exited pod: it releases what the pod may still
/// hold after a crash (networks, network namespace, cgroups).
fn stage1_gc(global: &GlobalArgs, pod: &Pod) -> anyhow::Result<()> {
    if !pod.path.join("runtime.json").exists() {
        return Ok(());
    }
    let out = Command::new(stage1_path(global)?)
        .arg("gc")
        .arg(&pod.path)
        .stdin(Stdio::null())
        .output()
        .context("cannot run stage1 gc")?;
    if !out.status.success() {
        bail!(
            "{}",
            String::from_utf8_lossy(&out.stderr)
                .trim()
                .trim_start_matches("skiff: ")
        );
    }
    Ok(())
}

fn remove_pod(global: &GlobalArgs, pods: &Pods, mut pod: Pod) -> anyhow::Result<()> {
    stage1_gc(global, &pod)?;
    if pod.state != State::Garbage {
        pod.move_to(pods, State::Garbage)?;
    }
    unmount_under(&pod.path)?;
    std::fs::remove_dir_all(&pod.path)
        .with_context(|| format!("cannot remove {}", pod.path.display()))
}

pub fn rm(global: &GlobalArgs, uuids: &[String]) -> anyhow::Result<ExitCode> {
    let pods = pods(global);
    for uuid in uuids {
        let pod = pods.find(uuid)?;
        if pod.is_running() || matches!(pod.state, State::Embryo | State::Prepare) {
            bail!("pod {} is {}: stop it first", pod.uuid, pod.display_state());
        }
        let Some(_lock) = pod.try_lock()? else {
            bail!("pod {} is in use", pod.uuid);
        };
        let id = pod.uuid.clone();
        remove_pod(global, &pods, pod)?;
        println!("{id}");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn gc(
    global: &GlobalArgs,
    grace: Duration,
    expire_prepared: Duration,
) -> anyhow::Result<ExitCode> {
    let pods = pods(global);
    let now = skiff_pod::now();
    let mut removed = 0;
    for mut pod in pods.all()? {
        // A `run` pod whose stage1 is gone (crashed or killed) has exited.
        if pod.state == State::Run {
            let Some(_lock) = pod.try_lock()? else {
                continue;
            };
            if pod.exited().is_none() {
                let _ = pod.stamp("exited");
            }
            pod.move_to(&pods, State::ExitedGarbage)?;
        }
        // Networks left by a crashed stage1 are released at once, not
        // after the grace period.
        if pod.state == State::ExitedGarbage
            && pod.path.join("net/info.json").exists()
            && let Some(_lock) = pod.try_lock()?
            && let Err(e) = stage1_gc(global, &pod)
        {
            eprintln!("{e:#}");
        }
        let expired = match pod.state {
            State::ExitedGarbage => now - pod.exited().unwrap_or(0) >= grace.as_secs() as i64,
            State::Prepared => now - pod.created() >= expire_prepared.as_secs() as i64,
            State::Garbage => true,
            _ => false,
        };
        if expired {
            let Some(_lock) = pod.try_lock()? else {
                continue;
            };
            let id = pod.uuid.clone();
            if let Err(e) = remove_pod(global, &pods, pod) {
                eprintln!("pod {id} kept: {e:#}");
                continue;
            }
            println!("{id}");
            removed += 1;
        }
    }
    eprintln!("removed {removed} pod(s)");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn parses_rkt_app_grammar() {
        let apps = parse_apps(&s(&[
            "img1",
            "--exec=/bin/sh",
            "--",
            "-c",
            "echo hi",
            "---",
            "img2",
            "--name",
            "b",
            "img3",
        ]))
        .unwrap();
        assert_eq!(apps.len(), 3);
        assert_eq!(apps[0].request.exec.as_deref(), Some("/bin/sh"));
        assert_eq!(apps[0].request.args, Some(s(&["-c", "echo hi"])));
        assert_eq!(apps[1].request.name.as_deref(), Some("b"));
        assert_eq!(apps[2].image, "img3");
        assert!(parse_apps(&s(&["--exec=/x", "img"])).is_err());
        assert!(parse_apps(&s(&["img", "--bogus=1"])).is_err());
        assert!(parse_apps(&s(&[])).is_err());
    }
}
