//! skiff-runtime: an OCI runtime with runc's command line (containerd's
//! `io.containerd.runc.v2` shim and CRI-O run it by name). It only parses,
//! converts and prints; the work is in the `skiff-runtime` library.

#![allow(clippy::print_stdout)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use skiff_runtime::container::{self, CreateOptions};
use skiff_runtime::enter::ExecOptions;
use skiff_runtime::{RuntimeError, config, log, signals};

#[derive(Parser)]
#[command(
    name = "skiff-runtime",
    version,
    about = "An OCI runtime (runc's command line) on skiff's isolation code",
    long_about = "An OCI runtime with runc's command line, for containerd (BinaryName of the \
runc shim), CRI-O (runtime_path) and Kubernetes (a RuntimeClass). Containers are made from \
OCI bundles (a directory with config.json and the root filesystem) with skiff's namespaces, \
mounts, seccomp, capabilities and cgroups. See docs/oci-runtime.md and docs/kubernetes.md."
)]
struct Cli {
    /// Where containers' state is kept.
    #[arg(long, global = true, default_value = skiff_runtime::DEFAULT_ROOT)]
    root: PathBuf,
    /// Also write errors and warnings to this file.
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// The format of --log.
    #[arg(long = "log-format", global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Manage cgroups through systemd (cgroupsPath is then slice:prefix:name).
    #[arg(long = "systemd-cgroup", global = true)]
    systemd_cgroup: bool,
    /// Accepted for compatibility; no effect.
    #[arg(long, global = true, hide = true)]
    debug: bool,
    /// Rootless mode: only "auto" and "false" are accepted (see issue #20).
    #[arg(long, global = true, hide = true)]
    rootless: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum, Default)]
enum Format {
    #[default]
    Table,
    Json,
}

#[derive(clap::Args)]
struct CreateArgs {
    /// The bundle directory (config.json and the rootfs).
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    /// Write the container's pid here.
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// A Unix socket that receives the terminal's master (process.terminal).
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// Use chroot instead of pivot_root (for a rootfs on a ramdisk).
    #[arg(long = "no-pivot")]
    no_pivot: bool,
    /// Accepted for compatibility: no session keyring is made either way.
    #[arg(long = "no-new-keyring")]
    no_new_keyring: bool,
    /// Pass fds 3 to 3+N-1 to the container's process.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    /// The container's ID.
    id: String,
}

#[derive(Subcommand)]
enum Command {
    /// Create a container from a bundle; its process waits for `start`.
    Create(CreateArgs),
    /// Start a created container's process.
    Start { id: String },
    /// Print a container's state (runtime-spec JSON).
    State { id: String },
    /// Send a signal (default TERM) to a container's process.
    Kill {
        /// Signal every process of the container.
        #[arg(short, long)]
        all: bool,
        id: String,
        signal: Option<String>,
    },
    /// Delete a container (a running one only with --force).
    Delete {
        /// Kill its processes first if it runs.
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// Create and start a container; without --detach wait for it and delete it.
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Return once the container runs.
        #[arg(short, long)]
        detach: bool,
    },
    /// Run a new process in a running container.
    Exec(ExecArgs),
    /// List a container's processes.
    Ps {
        #[arg(short, long, value_enum, default_value = "table")]
        format: Format,
        id: String,
        /// ps(1) options are accepted and ignored.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        ps_args: Vec<String>,
    },
    /// Freeze every process of a container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// Change a container's resources.
    Update(UpdateArgs),
    /// Print what this runtime implements (runtime-spec features.json).
    Features,
    /// Write a starting config.json into the bundle directory.
    Spec {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
    },
    /// List containers.
    List {
        #[arg(short, long, value_enum, default_value = "table")]
        format: Format,
        /// Only IDs.
        #[arg(short, long)]
        quiet: bool,
    },
}

#[derive(clap::Args)]
struct ExecArgs {
    /// The process as runtime-spec JSON (config.json's "process").
    #[arg(short, long)]
    process: Option<PathBuf>,
    /// Give the process a terminal (needs --console-socket).
    #[arg(short, long)]
    tty: bool,
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// Return once the process runs.
    #[arg(short, long)]
    detach: bool,
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Working directory (default /).
    #[arg(long)]
    cwd: Option<PathBuf>,
    /// NAME=VALUE (repeatable).
    #[arg(short, long)]
    env: Vec<String>,
    /// UID[:GID].
    #[arg(short, long)]
    user: Option<String>,
    /// Extra groups (repeatable).
    #[arg(short = 'g', long = "additional-gids")]
    additional_gids: Vec<u32>,
    /// Capabilities to add (CAP_…; repeatable).
    #[arg(short, long)]
    cap: Vec<String>,
    #[arg(long = "no-new-privs")]
    no_new_privs: bool,
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    id: String,
    /// The command and its arguments (without --process).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(clap::Args)]
struct UpdateArgs {
    /// LinuxResources JSON from a file, or - for stdin.
    #[arg(short, long)]
    resources: Option<PathBuf>,
    #[arg(long)]
    memory: Option<i64>,
    #[arg(long = "memory-reservation")]
    memory_reservation: Option<i64>,
    #[arg(long = "memory-swap")]
    memory_swap: Option<i64>,
    #[arg(long = "cpu-shares")]
    cpu_shares: Option<u64>,
    #[arg(long = "cpu-period")]
    cpu_period: Option<u64>,
    #[arg(long = "cpu-quota")]
    cpu_quota: Option<i64>,
    #[arg(long = "cpuset-cpus")]
    cpuset_cpus: Option<String>,
    #[arg(long = "cpuset-mems")]
    cpuset_mems: Option<String>,
    #[arg(long = "pids-limit")]
    pids_limit: Option<i64>,
    #[arg(long = "blkio-weight")]
    blkio_weight: Option<u16>,
    id: String,
}

fn create_options(args: &CreateArgs, systemd_cgroup: bool) -> CreateOptions {
    CreateOptions {
        pid_file: args.pid_file.clone(),
        console_socket: args.console_socket.clone(),
        no_pivot: args.no_pivot,
        preserve_fds: args.preserve_fds,
        systemd_cgroup,
    }
}

/// The bundle, re-executing from a sealed copy first when the container's
/// pid namespace will hold other processes while its init runs the
/// runtime's code.
fn load_bundle(dir: &Path) -> Result<config::Bundle, RuntimeError> {
    let (bundle, warnings) = skiff_runtime::log::holding_warnings(|| config::load(dir));
    let reexec = match &bundle {
        // The sealed copy reads the config again, and warns.
        Ok(b) if container::needs_sealed_binary(b) => skiff_runtime::selfexe::reexec_sealed(),
        _ => Ok(()),
    };
    for warning in &warnings {
        skiff_runtime::log::warn(warning);
    }
    reexec?;
    bundle
}

fn print_json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

fn exec_process(args: &ExecArgs) -> Result<oci_spec::runtime::Process, RuntimeError> {
    let mut process = match &args.process {
        Some(path) => {
            let text = std::fs::read(path).map_err(|e| RuntimeError::Io {
                what: format!("read {}", path.display()),
                source: e,
            })?;
            config::parse_process(&text)?
        }
        None => {
            if args.command.is_empty() {
                return Err(RuntimeError::Invalid(
                    "name a command to run, or pass --process FILE".into(),
                ));
            }
            let mut text = serde_json::json!({
                "args": args.command,
                "cwd": args.cwd.clone().unwrap_or_else(|| PathBuf::from("/")),
                "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "user": {"uid": 0, "gid": 0},
                "terminal": args.tty,
                "noNewPrivileges": args.no_new_privs,
            });
            if let Some(user) = &args.user {
                let (uid, gid) = user.split_once(':').unwrap_or((user, "0"));
                let (Ok(uid), Ok(gid)) = (uid.parse::<u32>(), gid.parse::<u32>()) else {
                    return Err(RuntimeError::Invalid(format!(
                        "--user '{user}' is not UID[:GID] in numbers"
                    )));
                };
                text["user"] = serde_json::json!({"uid": uid, "gid": gid, "additionalGids": args.additional_gids});
            }
            if !args.cap.is_empty() {
                text["capabilities"] = serde_json::json!({
                    "bounding": args.cap, "effective": args.cap, "permitted": args.cap
                });
            }
            config::parse_process(text.to_string().as_bytes())?
        }
    };
    if let Some(env) = process.env_mut() {
        env.extend(args.env.iter().cloned());
    } else if !args.env.is_empty() {
        process.set_env(Some(args.env.clone()));
    }
    if args.tty {
        process.set_terminal(Some(true));
    }
    Ok(process)
}

fn update_resources(args: &UpdateArgs) -> Result<oci_spec::runtime::LinuxResources, RuntimeError> {
    if let Some(path) = &args.resources {
        let mut text = Vec::new();
        let read = if path == Path::new("-") {
            std::io::stdin().read_to_end(&mut text).map(drop)
        } else {
            std::fs::read(path).map(|t| text = t)
        };
        read.map_err(|e| RuntimeError::Io {
            what: format!("read {}", path.display()),
            source: e,
        })?;
        return serde_json::from_slice(&text)
            .map_err(|e| RuntimeError::Invalid(format!("--resources: {e}")));
    }
    let mut res = serde_json::json!({});
    let mut memory = serde_json::Map::new();
    if let Some(v) = args.memory {
        memory.insert("limit".into(), v.into());
    }
    if let Some(v) = args.memory_reservation {
        memory.insert("reservation".into(), v.into());
    }
    if let Some(v) = args.memory_swap {
        memory.insert("swap".into(), v.into());
    }
    if !memory.is_empty() {
        res["memory"] = memory.into();
    }
    let mut cpu = serde_json::Map::new();
    if let Some(v) = args.cpu_shares {
        cpu.insert("shares".into(), v.into());
    }
    if let Some(v) = args.cpu_period {
        cpu.insert("period".into(), v.into());
    }
    if let Some(v) = args.cpu_quota {
        cpu.insert("quota".into(), v.into());
    }
    if let Some(v) = &args.cpuset_cpus {
        cpu.insert("cpus".into(), v.clone().into());
    }
    if let Some(v) = &args.cpuset_mems {
        cpu.insert("mems".into(), v.clone().into());
    }
    if !cpu.is_empty() {
        res["cpu"] = cpu.into();
    }
    if let Some(v) = args.pids_limit {
        res["pids"] = serde_json::json!({ "limit": v });
    }
    if let Some(v) = args.blkio_weight {
        res["blockIO"] = serde_json::json!({ "weight": v });
    }
    serde_json::from_value(res).map_err(|e| RuntimeError::Invalid(format!("update: {e}")))
}

fn run(cli: Cli) -> Result<i32, RuntimeError> {
    if cli.rootless.as_deref() == Some("true") {
        return Err(RuntimeError::Unsupported(
            "--rootless=true is not supported yet: run skiff-runtime as root".into(),
        ));
    }
    let root = cli.root.as_path();
    match cli.command {
        Command::Create(args) => {
            let bundle = load_bundle(&args.bundle)?;
            container::create(
                root,
                &args.id,
                &bundle,
                &create_options(&args, cli.systemd_cgroup),
            )?;
        }
        Command::Run { create, detach } => {
            let bundle = load_bundle(&create.bundle)?;
            let opts = create_options(&create, cli.systemd_cgroup);
            return container::run(root, &create.id, &bundle, &opts, detach);
        }
        Command::Start { id } => container::start(root, &id)?,
        Command::State { id } => print_json(&container::state(root, &id)?),
        Command::Kill { all, id, signal } => {
            let signal = signals::parse(signal.as_deref().unwrap_or("TERM"))?;
            container::kill(root, &id, signal, all)?;
        }
        Command::Delete { force, id } => container::delete(root, &id, force)?,
        Command::Exec(args) => {
            skiff_runtime::selfexe::reexec_sealed()?;
            let process = exec_process(&args)?;
            let dir = skiff_runtime::state::Dir::new(root, &args.id)?;
            return skiff_runtime::enter::exec(
                &dir,
                ExecOptions {
                    process,
                    detach: args.detach,
                    pid_file: args.pid_file.clone(),
                    console_socket: args.console_socket.clone(),
                    preserve_fds: args.preserve_fds,
                    inherit: args.process.is_none(),
                    user_given: args.user.is_some(),
                },
            );
        }
        Command::Ps { format, id, .. } => {
            let pids = container::ps(root, &id)?;
            match format {
                Format::Json => print_json(&pids),
                Format::Table => {
                    println!("{:>8} CMD", "PID");
                    for pid in pids {
                        let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
                            .map(|c| {
                                // The container's bytes: no control
                                // characters reach the terminal.
                                String::from_utf8_lossy(&c)
                                    .split('\0')
                                    .filter(|s| !s.is_empty())
                                    .collect::<Vec<_>>()
                                    .join(" ")
                                    .chars()
                                    .map(|ch| if ch.is_control() { '?' } else { ch })
                                    .collect::<String>()
                            })
                            .unwrap_or_default();
                        println!("{pid:>8} {cmd}");
                    }
                }
            }
        }
        Command::Pause { id } => container::pause(root, &id, true)?,
        Command::Resume { id } => container::pause(root, &id, false)?,
        Command::Update(args) => {
            let resources = update_resources(&args)?;
            container::update(root, &args.id, &resources)?;
        }
        Command::Features => print_json(&skiff_runtime::features::document()),
        Command::Spec { bundle } => {
            let path = bundle.join("config.json");
            if path.exists() {
                return Err(RuntimeError::Invalid(format!(
                    "{} exists: remove it first, or choose another --bundle",
                    path.display()
                )));
            }
            let text = serde_json::to_string_pretty(&skiff_runtime::features::template())
                .unwrap_or_default();
            std::fs::write(&path, text + "\n").map_err(|e| RuntimeError::Io {
                what: format!("write {}", path.display()),
                source: e,
            })?;
        }
        Command::List { format, quiet } => {
            let all = container::list(root);
            if quiet {
                for c in &all {
                    println!("{}", c.id);
                }
            } else {
                match format {
                    Format::Json => {
                        let list: Vec<_> = all
                            .iter()
                            .map(|c| {
                                serde_json::json!({
                                    "id": c.id, "pid": c.pid, "status": c.status.name(),
                                    "bundle": c.bundle, "created": c.created,
                                })
                            })
                            .collect();
                        print_json(&list);
                    }
                    Format::Table => {
                        println!(
                            "{:<24} {:>8} {:<8} {:<40} CREATED",
                            "ID", "PID", "STATUS", "BUNDLE"
                        );
                        for c in &all {
                            println!(
                                "{:<24} {:>8} {:<8} {:<40} {}",
                                c.id,
                                c.pid,
                                c.status.name(),
                                c.bundle.display(),
                                c.created
                            );
                        }
                    }
                }
            }
        }
    }
    Ok(0)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    log::init(
        cli.log.clone(),
        match cli.log_format {
            LogFormat::Text => log::Format::Text,
            LogFormat::Json => log::Format::Json,
        },
    );
    match run(cli) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            log::error(&skiff_runtime::error_line(&e));
            ExitCode::from(1)
        }
    }
}
