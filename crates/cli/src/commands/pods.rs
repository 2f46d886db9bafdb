//! Pod commands: run, prepare, run-prepared, enter, list, status, stop,
//! rm, gc. Arguments in, `skiff_ops` call, output.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use skiff_fetch::PullPolicy;
use skiff_ops::pods::{AppInfo, Collected, PodInfo, Stopped};
use skiff_ops::run::{AppSpec, RunOptions, Start};
use skiff_pod::Flavor;
use skiff_pod::prepare::AppRequest;

use crate::config::GlobalArgs;
use crate::format::{human_time, print_json};
use crate::review::TerminalReview;

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
    net: crate::net_args::NetArgs,

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
    /// only; needs a terminal on stdin). `-t` as podman's.
    #[arg(long, short = 't')]
    interactive: bool,

    /// Keep stdin open for the pod (podman's -i): skiff always passes
    /// stdin to the first app, so this changes nothing; `-it` is
    /// --interactive.
    #[arg(short = 'i')]
    keep_stdin: bool,

    /// Bind a host path into every app (podman's -v): SRC:DST[:ro|:rw],
    /// both absolute; a host volume plus a mount (see --volume for rkt's
    /// form).
    #[arg(long = "bind", short = 'v', value_name = "SRC:DST[:ro]")]
    binds: Vec<String>,

    /// Remove the pod once it has ended (its status and logs go with it),
    /// as podman's --rm. Not for the fly flavor.
    #[arg(long = "rm")]
    remove: bool,

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
    #[arg(long = "set-env", short = 'e', value_name = "NAME=VALUE")]
    set_env: Vec<String>,

    /// Environment variables for every app from a file of NAME=VALUE lines
    /// (repeatable; as rkt's); --set-env wins over it.
    #[arg(long = "set-env-file", value_name = "FILE")]
    set_env_file: Vec<String>,

    /// Every app starts with this process's environment (as rkt's
    /// --inherit-env); --set-env, --set-env-file and the image's own win.
    #[arg(long)]
    pub(crate) inherit_env: bool,

    /// Most processes the pod may run at once (cgroup pids.max).
    #[arg(long, value_name = "N")]
    pids_limit: Option<u64>,

    /// Give the pod a host device node, at the same path (repeatable;
    /// `ns` and `oci` flavors), e.g. --device=/dev/fuse: the device policy,
    /// which otherwise lets a pod open only its minimal /dev, lets it read
    /// and write that device.
    #[arg(long = "device", value_name = "PATH")]
    devices: Vec<String>,

    /// Rotate each app's log file when it reaches this size (a quantity:
    /// 10Mi, 20M; default 10Mi, at least 128Ki).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    log_max_size: Option<u64>,

    /// How many log files each app keeps, the current one included
    /// (default 5: at most 50 MiB of output per app by default).
    #[arg(long, value_name = "N")]
    log_max_files: Option<u32>,

    /// Start an app again when it ends: no (the default), on-failure
    /// (a status other than 0), on-failure:N (at most N times) or always.
    /// The wait before each restart doubles from 100 ms up to 30 s, and
    /// goes back to 100 ms after a run of 10 s or more; a stop is never
    /// followed by a restart. `skiff status` shows every run's exit status.
    /// ns flavor.
    #[arg(long, value_name = "POLICY", default_value = "no")]
    restart: skiff_pod::restart::Restart,

    /// Write the pod's UUID to this file.
    #[arg(long, value_name = "FILE")]
    uuid_file_save: Option<PathBuf>,

    /// Run the pod an appc pod manifest describes (as rkt's): its apps
    /// (each an image of the store, by ID; the app as written, or the
    /// image's), volumes, ports, annotations and pod-level memory and CPU
    /// limits. Give no image then; pod options still apply. The manifest is
    /// your own word, as the command line: its apps' capability and
    /// seccomp sets apply as written.
    #[arg(long, value_name = "FILE")]
    pub(crate) pod_manifest: Option<PathBuf>,

    /// Images to run, each followed by its own options, then `-- ARGS` for
    /// its arguments; `---` ends an image's arguments. Per-image options:
    /// --exec=PATH, --name=NAME, --user=USER, --group=GROUP,
    /// --working-dir=DIR, --set-env=NAME=VALUE, --readonly-rootfs,
    /// --memory=LIMIT (e.g. 64M), --cpu=LIMIT (e.g. 500m),
    /// --cpu-shares=WEIGHT (2-262144), --oom-score-adj=N (0-1000: easier to
    /// kill, never harder), --supplementary-gids=GID,..., --mount=volume=NAME,target=/PATH, --set-env-file=FILE,
    /// --cap-retain=CAP,... --cap-remove=CAP,... (rkt's --caps-retain,
    /// --caps-remove too), --user-annotation=NAME=VALUE,
    /// --user-label=NAME=VALUE, --environment=NAME=VALUE (as --set-env),
    /// --seccomp=mode=retain|remove[,errno=ENOSYS],SYSCALL,...
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        required_unless_present = "pod_manifest",
        value_name = "IMAGE [OPTIONS] [-- ARGS]"
    )]
    images: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub(crate) pod: PodArgs,
}

#[derive(Args, Debug, Clone)]
pub struct DetachArgs {
    /// Return once the pod is running; it stays supervised by its own stage1.
    #[arg(long, short = 'd')]
    pub detach: bool,
}

/// The options that come after an image (rkt's per-app options).
const PER_IMAGE: [&str; 22] = [
    "exec",
    "name",
    "user",
    "group",
    "working-dir",
    "mount",
    "memory",
    "cap-retain",
    "cap-remove",
    "seccomp",
    "set-env-file",
    "cpu",
    "set-env",
    "readonly-rootfs",
    "caps-retain",
    "caps-remove",
    "user-annotation",
    "user-label",
    "cpu-shares",
    "oom-score-adj",
    "supplementary-gids",
    "environment",
];

/// The options of `skiff run` itself (before the first image): long
/// names, and short ones as `-x`.
fn pod_options() -> Vec<String> {
    use clap::Args as _;
    let command = RunArgs::augment_args(DetachArgs::augment_args(
        crate::config::GlobalArgs::augment_args(clap::Command::new("run")),
    ));
    command
        .get_arguments()
        .flat_map(|a| {
            a.get_long()
                .map(str::to_string)
                .into_iter()
                .chain(a.get_short().map(|c| format!("-{c}")))
        })
        .collect()
}

/// The error for option `given` (as typed) that is not one where it
/// stands: a pod option after an image, a per-image one before any, a
/// docker habit, or a typo with clap's "did you mean".
fn unknown_option(given: &str, after_image: bool) -> anyhow::Error {
    let name = given.trim_start_matches('-');
    let name = name.split('=').next().unwrap_or(name);
    let pod = pod_options();
    let short = given.split('=').next().unwrap_or(given);
    if after_image && !given.starts_with("--") && short.len() == 2 && pod.iter().any(|p| p == short)
    {
        return anyhow::anyhow!(
            "{short} is an option of the pod: put it before the first image (skiff run {short} … IMAGE)"
        );
    }
    if after_image && pod.iter().any(|p| p == name) {
        return anyhow::anyhow!(
            "--{name} is an option of the pod: put it before the first image (skiff run --{name} IMAGE)"
        );
    }
    if !after_image && PER_IMAGE.contains(&name) {
        return anyhow::anyhow!(
            "--{name} must follow an image (per-image options come after the image)"
        );
    }
    let known: Vec<&str> = PER_IMAGE
        .iter()
        .copied()
        .chain(pod.iter().map(String::as_str))
        .collect();
    let hint = match crate::suggest::habit(given.split('=').next().unwrap_or(given)) {
        Some(ours) => format!(" (skiff's is {ours})"),
        None => match crate::suggest::closest(name, known) {
            Some(close) => format!(" (did you mean --{close}?)"),
            None => " (see skiff run --help)".to_string(),
        },
    };
    anyhow::anyhow!("unknown option {given}{hint}")
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
        // A single dash is no image reference: a short option out of
        // another runtime's habit.
        if tok.starts_with('-') && !tok.starts_with("--") && tok.len() > 1 {
            return Err(unknown_option(tok, !apps.is_empty()));
        }
        if let Some(flag) = tok.strip_prefix("--") {
            let Some(app) = apps.last_mut() else {
                return Err(unknown_option(tok, false));
            };
            let (name, inline) = match flag.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (flag, None),
            };
            if !PER_IMAGE.contains(&name) {
                return Err(unknown_option(tok, true));
            }
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
                // rkt spells them caps-.
                "cap-retain" | "caps-retain" => {
                    r.cap_retain = Some(value.split(',').map(str::to_string).collect())
                }
                "cap-remove" | "caps-remove" => {
                    r.cap_remove = Some(value.split(',').map(str::to_string).collect())
                }
                "seccomp" => r.seccomp = Some(value),
                "set-env-file" => r.env.extend(read_env_file(&value)?),
                "user-annotation" => r
                    .user_annotations
                    .push(parse_env("--user-annotation", &value)?),
                "user-label" => r.user_labels.push(parse_env("--user-label", &value)?),
                "cpu" => r.cpu = Some(value),
                "cpu-shares" => r.cpu_shares = Some(integer("--cpu-shares", &value)?),
                "oom-score-adj" => r.oom_score_adj = Some(integer("--oom-score-adj", &value)?),
                "supplementary-gids" => {
                    r.supplementary_gids = Some(
                        value
                            .split(',')
                            .filter(|g| !g.is_empty())
                            .map(|g| integer("--supplementary-gids", g))
                            .collect::<anyhow::Result<_>>()?,
                    )
                }
                // rkt's app add spells --set-env so.
                "set-env" | "environment" => r.env.push(parse_env(&format!("--{name}"), &value)?),
                _ => return Err(unknown_option(tok, true)),
            }
            continue;
        }
        apps.push(AppSpec {
            image: tok.clone(),
            expected_name: None,
            pinned: false,
            request: AppRequest::default(),
        });
    }
    if apps.is_empty() {
        bail!("no image to run");
    }
    Ok(apps)
}

/// The integer value of `flag`.
fn integer(flag: &str, text: &str) -> anyhow::Result<i64> {
    text.trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("{flag}={text}: not a whole number"))
}

/// A size in bytes, as a quantity (`10Mi`, `20M`, `131072`).
fn parse_size(text: &str) -> Result<u64, String> {
    let bytes = skiff_spec::quantity::Quantity::parse(text)
        .ok()
        .and_then(|q| q.to_scaled(0))
        .and_then(|n| u64::try_from(n).ok());
    bytes.ok_or_else(|| {
        format!("'{text}' is not a size: use bytes or a quantity such as 10Mi or 20M")
    })
}

/// podman's `-v SRC:DST[:ro|:rw]` as a host volume `bind-N` and its target.
fn parse_bind(n: usize, flag: &str) -> anyhow::Result<(skiff_spec::pod::Volume, String)> {
    let parts: Vec<&str> = flag.split(':').collect();
    let (source, target, read_only) = match parts.as_slice() {
        [s, t] => (*s, *t, false),
        [s, t, "ro"] => (*s, *t, true),
        [s, t, "rw"] => (*s, *t, false),
        [_, _, o] => bail!("-v {flag}: option {o:?}: use ro or rw"),
        _ => bail!("-v {flag}: use SRC:DST[:ro|:rw]"),
    };
    if !source.starts_with('/') {
        bail!(
            "-v {flag}: {source:?} is not an absolute host path (named volumes are not supported: use --volume=NAME,kind=empty and --mount)"
        );
    }
    if !target.starts_with('/') {
        bail!("-v {flag}: the target {target:?} must be an absolute path");
    }
    let name = skiff_spec::AcName::new(&format!("bind-{n}")).map_err(anyhow::Error::msg)?;
    let volume = skiff_spec::pod::Volume {
        name,
        kind: "host".to_string(),
        source: source.to_string(),
        read_only: Some(read_only),
        recursive: None,
        mode: None,
        uid: None,
        gid: None,
    };
    Ok((volume, target.to_string()))
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

/// This process's environment as `--inherit-env` passes it on: without
/// what skiff, systemd and the metadata service set for skiff itself (a
/// pod's identity, sockets, internal handles), and without variables that
/// are not UTF-8 (said).
fn inheritable_env() -> Vec<(String, String)> {
    let ours = |name: &str| {
        ["SKIFF_", "LISTEN_", "AC_"]
            .iter()
            .any(|p| name.starts_with(p))
            || name == "NOTIFY_SOCKET"
    };
    std::env::vars_os()
        .filter_map(
            |(name, value)| match (name.into_string(), value.into_string()) {
                (Ok(name), Ok(value)) => Some((name, value)),
                (name, _) => {
                    crate::log::warning(&format!(
                        "--inherit-env: {} is not UTF-8: not passed on",
                        name.unwrap_or_else(|n| n.to_string_lossy().into_owned())
                    ));
                    None
                }
            },
        )
        .filter(|(name, _)| !ours(name))
        .filter(
            |(name, _)| match skiff_spec::image::env_name_problem(name) {
                Some(why) => {
                    crate::log::warning(&format!("--inherit-env: {why}: not passed on"));
                    false
                }
                None => true,
            },
        )
        .collect()
}

/// The NAME=VALUE lines of an environment file (`--set-env-file`; blank
/// lines and `#` comments skipped).
fn read_env_file(path: &str) -> anyhow::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read --set-env-file {path}"))?;
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| {
            line.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .with_context(|| format!("{path}: '{line}' is not NAME=VALUE"))
        })
        .collect()
}

/// `NAME=VALUE`.
fn parse_env(flag: &str, value: &str) -> anyhow::Result<(String, String)> {
    value
        .split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .with_context(|| format!("{flag} {value}: use NAME=VALUE"))
}

/// The operation's options of the arguments.
fn run_options(args: &PodArgs) -> anyhow::Result<RunOptions> {
    let apps = match (&args.pod_manifest, args.images.is_empty()) {
        (Some(_), true) => Vec::new(),
        (Some(_), false) => bail!(
            "--pod-manifest names the pod's images and apps: give no image on the command line"
        ),
        (None, _) => parse_apps(&args.images)?,
    };
    // Later entries win: the files, then --set-env.
    let mut env: Vec<(String, String)> = Vec::new();
    for file in &args.set_env_file {
        env.extend(read_env_file(file)?);
    }
    for e in &args.set_env {
        env.push(parse_env("--set-env", e)?);
    }
    let volumes = args
        .volumes
        .iter()
        .map(|v| {
            skiff_spec::pod::volume_from_flag(v).map_err(|e| anyhow::anyhow!("--volume {v}: {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut volumes = volumes;
    let mut mounts = args
        .mounts
        .iter()
        .map(|m| parse_mount(m))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for (i, bind) in args.binds.iter().enumerate() {
        let (volume, target) = parse_bind(i, bind)?;
        mounts.push((volume.name.to_string(), target));
        volumes.push(volume);
    }
    Ok(RunOptions {
        flavor: args.stage1,
        stage1_options: args.stage1_opts.clone(),
        oci_runtime: args.oci_runtime.clone(),
        net: args.net.options(),
        hostname: args.hostname.clone(),
        pull_policy: args.pull_policy,
        volumes,
        mounts,
        interactive: args.interactive,
        private_users: args.private_users,
        no_overlay: args.no_overlay,
        env,
        inherited_env: match args.inherit_env {
            true => inheritable_env(),
            false => Vec::new(),
        },
        pids_limit: args.pids_limit,
        devices: args.devices.clone(),
        uuid_file: args.uuid_file_save.clone(),
        logs: skiff_pod::logs::Limits::new(
            args.log_max_size
                .unwrap_or(skiff_pod::logs::Limits::DEFAULT_MAX_SIZE),
            args.log_max_files
                .unwrap_or(skiff_pod::logs::Limits::DEFAULT_MAX_FILES),
        )
        .map_err(anyhow::Error::msg)?,
        restart: args.restart,
        pod_manifest: args.pod_manifest.clone(),
        remove: args.remove,
        apps,
    })
}

/// Says what an image asked for and does not get (its words on one line,
/// without controls).
fn say_refused(line: &str) {
    crate::log::warning(line);
}

fn start_mode(detach: &DetachArgs) -> Start {
    if detach.detach {
        Start::Detached
    } else {
        Start::Foreground
    }
}

pub fn run(global: &GlobalArgs, args: RunArgs, detach: DetachArgs) -> anyhow::Result<ExitCode> {
    let opts = run_options(&args.pod)?;
    global.warn_insecure();
    let ctx = global.context()?;
    let review = TerminalReview { skip: false };
    let pod = skiff_ops::run::run(&ctx, &opts, review, start_mode(&detach), say_refused)?;
    println!("{}", pod.uuid);
    Ok(ExitCode::SUCCESS)
}

pub fn prepare_only(global: &GlobalArgs, args: RunArgs) -> anyhow::Result<ExitCode> {
    let opts = run_options(&args.pod)?;
    global.warn_insecure();
    let pod = skiff_ops::run::prepare(
        &global.context()?,
        &opts,
        TerminalReview { skip: false },
        say_refused,
    )?;
    println!("{}", pod.uuid);
    Ok(ExitCode::SUCCESS)
}

/// `run` (or `prepare`, without `how`) of images the store holds, for the
/// small `skiff` (crate::front): `None` when the images need a fetch or a
/// run policy applies, said before any pod is made or anything printed
/// (crate::front hands on at once the runs whose options would print or
/// read input first); then the full command set runs it.
pub fn run_stored(
    global: &GlobalArgs,
    args: &RunArgs,
    how: Option<&DetachArgs>,
) -> Option<anyhow::Result<ExitCode>> {
    let pod = stored_pod(global, args, how).transpose()?;
    Some(pod.map(|pod| {
        println!("{}", pod.uuid);
        ExitCode::SUCCESS
    }))
}

/// [`run_stored`]'s pod, `None` for [`skiff_ops::OpsError::NeedsFetch`].
fn stored_pod(
    global: &GlobalArgs,
    args: &RunArgs,
    how: Option<&DetachArgs>,
) -> anyhow::Result<Option<skiff_pod::Pod>> {
    let opts = run_options(&args.pod)?;
    let ctx = global.context()?;
    let pod = match how {
        Some(detach) => skiff_ops::run::run_stored(&ctx, &opts, start_mode(detach), say_refused),
        None => skiff_ops::run::prepare_stored(&ctx, &opts, say_refused),
    };
    match pod {
        Err(skiff_ops::OpsError::NeedsFetch { .. }) => Ok(None),
        other => Ok(Some(other?)),
    }
}

pub fn run_prepared(
    global: &GlobalArgs,
    uuid: &str,
    detach: DetachArgs,
) -> anyhow::Result<ExitCode> {
    let pod = skiff_ops::run::start_prepared(&global.context()?, uuid, start_mode(&detach))?;
    println!("{}", pod.uuid);
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct EnterArgs {
    /// The app to enter (default: the pod's first app).
    #[arg(long)]
    app: Option<String>,
    /// Give the command a terminal: a pseudo-terminal of the pod's own
    /// devpts, relayed to yours (which is in raw mode meanwhile; window
    /// size changes follow), as `run --interactive` does. What you type
    /// reaches it. Without it, the command's stdout and stderr are yours,
    /// through pipes where they are terminals.
    #[arg(short = 't', long)]
    tty: bool,
    /// Keep stdin open: your stdin reaches the command (through a pipe
    /// where it is a terminal). Without it (and without --tty) the command
    /// reads /dev/null.
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Run as USER[:GROUP] of the app's /etc/passwd and /etc/group (names
    /// or numbers) instead of the app's user. Without a group: the user's
    /// primary group, or 0 for a number not in /etc/passwd. The command
    /// keeps the app's confinement (capabilities only as root).
    #[arg(short = 'u', long, value_name = "USER[:GROUP]")]
    user: Option<String>,
    /// An environment variable for the command, over the app's,
    /// NAME=VALUE (repeatable).
    #[arg(short = 'e', long = "env", value_name = "NAME=VALUE")]
    env: Vec<String>,
    /// The command's working directory in the app's root (default: the
    /// app's).
    #[arg(short = 'w', long, value_name = "DIR")]
    workdir: Option<String>,
    /// Read the pod's UUID from this file (as --uuid-file-save wrote it);
    /// then every argument is the command.
    #[arg(long, value_name = "FILE")]
    uuid_file: Option<PathBuf>,
    /// Pod UUID (or a unique prefix).
    uuid: Option<String>,
    /// Command and arguments (default /bin/sh).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    cmd: Vec<String>,
}

/// Runs a command in a running pod (through stage1's `enter`).
pub fn enter(global: &GlobalArgs, args: EnterArgs) -> anyhow::Result<ExitCode> {
    let options = skiff_ops::enter::EnterOptions {
        app: args.app,
        tty: args.tty,
        interactive: args.interactive,
        user: args.user,
        env: args
            .env
            .iter()
            .map(|e| parse_env("--env", e))
            .collect::<anyhow::Result<Vec<_>>>()?,
        workdir: args.workdir,
    };
    // With --uuid-file the first word is the command's.
    let (uuid, cmd) = match &args.uuid_file {
        Some(_) => {
            let cmd = args
                .uuid
                .iter()
                .cloned()
                .chain(args.cmd)
                .collect::<Vec<_>>();
            (pod_uuid(None, args.uuid_file.as_deref())?, cmd)
        }
        None => (pod_uuid(args.uuid, None)?, args.cmd),
    };
    Err(skiff_ops::enter::enter(&global.context()?, &uuid, &options, &cmd).into())
}

#[derive(Clone, Copy, ValueEnum, Debug)]
pub enum Format {
    Table,
    Json,
}

/// `default:ip4=172.16.28.2` per network, as rkt printed them.
fn networks_text(info: &PodInfo) -> String {
    info.networks
        .iter()
        .map(|net| {
            let addrs: Vec<String> = net
                .ips
                .iter()
                .map(|ip| {
                    let v = if ip.contains(':') { "ip6" } else { "ip4" };
                    format!("{v}={ip}")
                })
                .collect();
            if addrs.is_empty() {
                net.name.clone()
            } else {
                format!("{}:{}", net.name, addrs.join(","))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// How an app ended, for `list`: its exit status (`-` while it runs), an
/// OOM kill, its restarts.
fn app_outcome(app: &AppInfo) -> String {
    let mut parts = vec![app.exit_code.map_or("-".to_string(), |c| c.to_string())];
    if app.oom_killed() {
        parts.push("oom".to_string());
    }
    if app.restarts > 0 {
        parts.push(format!("+{}", app.restarts));
    }
    parts.join(" ")
}

pub fn list(
    global: &GlobalArgs,
    format: Format,
    no_legend: bool,
    full: bool,
    quiet: bool,
) -> anyhow::Result<ExitCode> {
    let pods = skiff_ops::pods::list(&global.context()?)?;
    if quiet {
        for pod in &pods {
            println!("{}", pod.uuid);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Format::Json = format {
        print_json(&pods)?;
        return Ok(ExitCode::SUCCESS);
    }
    if !no_legend {
        println!(
            "{:<36} {:<16} {:<32} {:<9} {:<12} {:<20} NETWORKS",
            "UUID", "APP", "IMAGE NAME", "STATE", "EXIT", "CREATED"
        );
    }
    for pod in &pods {
        let uuid = if full {
            pod.uuid.as_str()
        } else {
            &pod.uuid[..8]
        };
        let (app, image, outcome) = pod
            .apps
            .first()
            .map(|a| (a.name.as_str(), a.image.as_str(), app_outcome(a)))
            .unwrap_or_default();
        println!(
            "{:<36} {:<16} {:<32} {:<9} {:<12} {:<20} {}",
            uuid,
            app,
            image,
            pod.state,
            outcome,
            human_time(pod.created),
            networks_text(pod)
        );
        for a in pod.apps.iter().skip(1) {
            println!(
                "{:<36} {:<16} {:<32} {:<9} {}",
                "",
                a.name,
                a.image,
                "",
                app_outcome(a)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The pod a command is about: its UUID (or a unique prefix), or the file
/// `--uuid-file-save` wrote it to (rkt's `--uuid-file`).
pub fn pod_uuid(
    uuid: Option<String>,
    uuid_file: Option<&std::path::Path>,
) -> anyhow::Result<String> {
    match (uuid, uuid_file) {
        (Some(_), Some(_)) => bail!("give the pod's UUID or --uuid-file, not both"),
        (Some(uuid), None) => Ok(uuid),
        (None, Some(file)) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read --uuid-file {}", file.display()))?;
            let uuid = text.trim();
            if uuid.is_empty()
                || uuid.len() > 36
                || !uuid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
            {
                bail!(
                    "--uuid-file {}: expected one pod UUID (as --uuid-file-save writes it)",
                    file.display()
                );
            }
            Ok(uuid.to_string())
        }
        (None, None) => bail!("give the pod's UUID (or --uuid-file=FILE)"),
    }
}

pub fn status(
    global: &GlobalArgs,
    uuid: &str,
    wait: skiff_ops::pods::Wait,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let pod = skiff_ops::pods::status(&global.context()?, uuid, wait)?;
    if wait == skiff_ops::pods::Wait::Ready && pod.ready.is_none() {
        bail!(
            "pod {} is {}: it ended before every app had started",
            pod.uuid,
            pod.state
        );
    }
    if let Format::Json = format {
        print_json(&pod)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("state={}", pod.state);
    if let Some(f) = pod.flavor {
        println!("flavor={f}");
    }
    if let Some(a) = &pod.accel {
        println!("accel={a}");
    }
    println!("created={}", skiff_pod::rfc3339(pod.created));
    if let Some(s) = pod.started {
        println!("started={}", skiff_pod::rfc3339(s));
    }
    if let Some(r) = pod.ready {
        println!("ready={}", skiff_pod::rfc3339(r));
    }
    if let Some(p) = pod.pid {
        println!("pid={p}");
    }
    if let Some(e) = pod.exited {
        println!("exited={}", skiff_pod::rfc3339(e));
    }
    let nets = networks_text(&pod);
    if !nets.is_empty() {
        println!("networks={nets}");
    }
    // One line per port name (a pod port forwarded from two host ports
    // has both on its line).
    let mut names: Vec<&str> = pod.ports.iter().map(|p| p.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    for name in names {
        let hosts: Vec<String> = pod
            .ports
            .iter()
            .filter(|p| p.name == name)
            .map(|p| p.host())
            .collect();
        println!("port-{name}={}", hosts.join(","));
    }
    for app in &pod.apps {
        if let Some(code) = app.exit_code {
            println!("app-{}={code}", app.name);
        }
        if app.restarts > 0 {
            let runs: Vec<String> = app.runs.iter().map(|r| r.status.to_string()).collect();
            println!("app-{}-restarts={}", app.name, app.restarts);
            // The statuses of the runs that were followed by a restart
            // (the last ones kept), oldest first.
            println!("app-{}-runs={}", app.name, runs.join(","));
        }
        if let Some(kills) = app.oom_kills.filter(|n| *n > 0) {
            println!("app-{}-oom-kills={kills}", app.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints a pod's manifest.
pub fn cat_manifest(global: &GlobalArgs, uuid: &str) -> anyhow::Result<ExitCode> {
    let text = skiff_ops::pods::manifest(&global.context()?, uuid)?;
    print!("{}", crate::format::json_for_terminal(text.trim_end()));
    println!();
    Ok(ExitCode::SUCCESS)
}

pub fn export(
    global: &GlobalArgs,
    uuid: &str,
    app: Option<&str>,
    out: &std::path::Path,
    overwrite: bool,
) -> anyhow::Result<ExitCode> {
    let done = skiff_ops::export::export(&global.context()?, uuid, app, out, overwrite)?;
    for path in &done.skipped {
        eprintln!(
            "skiff: warning: {} is not a file, directory or symlink: left out",
            crate::format::printable(&format!("/{}", path.display()))
        );
    }
    println!(
        "exported app {} of pod {} to {} ({})",
        done.app,
        done.uuid,
        out.display(),
        done.image_id
    );
    Ok(ExitCode::SUCCESS)
}

pub fn stop(global: &GlobalArgs, uuids: &[String], timeout: Duration) -> anyhow::Result<ExitCode> {
    let ctx = global.context()?;
    let mut failed = false;
    for uuid in uuids {
        match skiff_ops::pods::stop(&ctx, uuid, timeout)? {
            Stopped::Stopped { uuid, killed } => {
                if killed && !timeout.is_zero() {
                    eprintln!(
                        "pod {uuid} did not end within {} s of SIGTERM: killed",
                        timeout.as_secs()
                    );
                }
                println!("{uuid}");
            }
            // As podman: stopping a pod that is not running is done.
            Stopped::NotRunning(uuid) => {
                eprintln!("pod {uuid} is not running");
                println!("{uuid}");
            }
            Stopped::StillRunning(uuid) => {
                eprintln!("pod {uuid} still runs after SIGKILL");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

pub fn rm(global: &GlobalArgs, uuids: &[String]) -> anyhow::Result<ExitCode> {
    let ctx = global.context()?;
    for uuid in uuids {
        println!("{}", skiff_ops::pods::rm(&ctx, uuid)?);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn gc(
    global: &GlobalArgs,
    grace: Duration,
    expire_prepared: Duration,
) -> anyhow::Result<ExitCode> {
    let removed =
        skiff_ops::pods::gc(
            &global.context()?,
            grace,
            expire_prepared,
            |event| match event {
                Collected::Removed(id) => println!("{id}"),
                Collected::Problem(line) => eprintln!("{line}"),
            },
        )?;
    eprintln!("removed {removed} pod(s)");
    Ok(ExitCode::SUCCESS)
}

pub fn fsck(global: &GlobalArgs, repair: bool) -> anyhow::Result<ExitCode> {
    let report = skiff_ops::fsck::fsck(&global.context()?, repair)?;
    let problems = report.problems.iter().map(|p| {
        (
            &p.kind,
            p.subject.as_str(),
            p.detail.as_str(),
            p.repair.as_str(),
            p.repaired,
        )
    });
    let checked = format!(
        "checked {} pod(s) ({} running, left alone)",
        report.pods, report.running
    );
    crate::format::finish_fsck(problems, &checked, repair, "skiff fsck --repair")
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
        let message = |v: &[&str]| parse_apps(&s(v)).unwrap_err().to_string();
        assert_eq!(
            message(&["--detatch", "img"]),
            "unknown option --detatch (did you mean --detach?)"
        );
        assert_eq!(
            message(&["img", "--memroy=5M"]),
            "unknown option --memroy=5M (did you mean --memory?)"
        );
        assert!(message(&["img", "-e", "FOO=1"]).contains("-e is an option of the pod"));
        assert!(message(&["img", "-u", "1000"]).contains("skiff's is --user"));
        assert!(message(&["img", "--detach"]).contains("option of the pod"));
        assert!(message(&["--memory=5M", "img"]).contains("must follow an image"));
        assert!(parse_apps(&s(&[])).is_err());
    }
}
