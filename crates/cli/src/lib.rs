//! The `skiff` command line: parses arguments, calls the library crates and
//! prints results. Results go to stdout, diagnostics to stderr. The binary
//! (`src/main.rs`) is [`main`]; a library so that more than one binary can
//! share the command line (docs/performance.md).
//!
//! Exit codes: 0 success; 1 the operation failed or the input is invalid;
//! 2 bad usage (unknown flag, missing argument). `skiff run` (later) returns
//! the app's own exit status.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod commands;
mod config;
mod format;
pub mod front;
mod log;
mod net_args;
mod review;
mod suggest;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// skiff — a daemonless, secure App Container runtime.
///
/// skiff fetches, verifies and runs appc images (ACIs) and OCI images with
/// no daemon: each command is a short-lived process working on the on-disk
/// store.
// The command line's root and its global options; `command_tree` adds the
// subcommands, all of them or those the arguments name.
#[derive(Parser)]
#[command(
    name = "skiff",
    version,
    propagate_version = true,
    max_term_width = 100,
    subcommand_required = true,
    arg_required_else_help = true
)]
pub(crate) struct Cli {
    #[command(flatten)]
    global: config::GlobalArgs,
}

/// A parsed command line.
pub(crate) struct Invocation {
    global: config::GlobalArgs,
    command: Command,
}

#[derive(Subcommand, Debug)]
#[command(defer = true)]
enum Command {
    /// Run images in a new pod (fetching them if needed).
    Run {
        #[command(flatten)]
        detach: commands::pods::DetachArgs,
        #[command(flatten)]
        args: commands::pods::RunArgs,
    },
    /// Prepare a pod without running it; prints its UUID.
    Prepare {
        #[command(flatten)]
        args: commands::pods::RunArgs,
    },
    /// Run a prepared pod.
    RunPrepared {
        #[command(flatten)]
        detach: commands::pods::DetachArgs,
        /// Pod UUID (or a unique prefix).
        uuid: String,
    },
    /// List pods.
    ///
    /// The pods in this user's data directory (root's /var/lib/skiff; an
    /// ordinary user's ~/.local/share/skiff). Another user's pods are in
    /// theirs and never listed here: run `skiff list` as that user.
    List {
        #[arg(long, value_enum, default_value = "table")]
        format: commands::pods::Format,
        /// Leave out the header line.
        #[arg(long)]
        no_legend: bool,
        /// Show full UUIDs.
        #[arg(long)]
        full: bool,
        /// Print only the pods' full UUIDs, one a line (podman's -q).
        #[arg(long, short = 'q', conflicts_with = "format")]
        quiet: bool,
    },
    /// Show a pod's state, times, pid and exit statuses.
    Status {
        /// Pod UUID (or a unique prefix).
        #[arg(required_unless_present = "uuid_file")]
        uuid: Option<String>,
        /// Read the pod's UUID from this file (as --uuid-file-save wrote it).
        #[arg(long, value_name = "FILE")]
        uuid_file: Option<PathBuf>,
        /// Wait until the pod has exited.
        #[arg(long, conflicts_with = "wait_ready")]
        wait: bool,
        /// Wait until every app of the pod has started (what systemd's
        /// READY=1 says); fails if the pod ends first.
        #[arg(long)]
        wait_ready: bool,
        #[arg(long, value_enum, default_value = "table")]
        format: commands::pods::Format,
    },
    /// Run a command inside a running pod's app (default: /bin/sh).
    Enter(commands::pods::EnterArgs),
    /// Generate files for other tools: systemd units, man pages.
    #[command(subcommand)]
    Generate(commands::generate::GenerateCommand),
    /// Print a pod's app output (stdout to stdout, stderr to stderr), kept
    /// per app in rotating files until the pod is collected.
    Logs(commands::logs::LogsArgs),
    /// Show a running pod's processes: app, pid in the pod and on the
    /// host, user id in the pod, memory, CPU time, command line.
    Top(commands::inspect::TopArgs),
    /// Show what a running pod uses, in total and per app: CPU (percent of
    /// one CPU over --interval, and time), memory and processes from its
    /// cgroups, with their limits.
    Stats(commands::inspect::StatsArgs),
    /// Copy files between the host and a running pod's app: skiff cp
    /// UUID:PATH HOST-PATH, or skiff cp HOST-PATH UUID:PATH. Paths in the
    /// pod resolve inside the app's root as the app sees them (symlinks
    /// cannot lead out of it); directories are copied whole; what comes
    /// out loses set-id bits and belongs to you.
    Cp(commands::inspect::CpArgs),
    /// Stop running pods (SIGTERM to every app; --force: SIGKILL).
    Stop {
        /// Pods to stop (unambiguous UUID prefixes accepted).
        #[arg(required_unless_present = "uuid_file", value_name = "UUID")]
        uuids: Vec<String>,
        /// Read the pod's UUID from this file (as --uuid-file-save wrote it).
        #[arg(long, value_name = "FILE")]
        uuid_file: Option<PathBuf>,
        /// Kill the pod at once (SIGKILL to its init, taking every app
        /// with it) instead of asking its apps to end (SIGTERM); the same
        /// as --timeout=0.
        #[arg(long)]
        force: bool,
        /// Seconds the apps get to end after SIGTERM before SIGKILL ends
        /// the pod (as podman's and rkt's stop).
        #[arg(long, value_name = "SECONDS", default_value_t = 10)]
        timeout: u64,
    },
    /// Remove exited or prepared pods now.
    Rm {
        #[arg(required_unless_present = "uuid_file", value_name = "UUID")]
        uuids: Vec<String>,
        /// Read the pod's UUID from this file (as --uuid-file-save wrote it).
        #[arg(long, value_name = "FILE")]
        uuid_file: Option<PathBuf>,
    },
    /// Print a pod's manifest (rkt's cat-manifest): every app as it runs,
    /// with the image's app and the options given.
    CatManifest {
        /// Pod UUID (or a unique prefix).
        #[arg(required_unless_present = "uuid_file")]
        uuid: Option<String>,
        /// Read the pod's UUID from this file (as --uuid-file-save wrote it).
        #[arg(long, value_name = "FILE")]
        uuid_file: Option<PathBuf>,
    },
    /// Write an app of a pod that is not running as an ACI (rkt's export):
    /// its image's files with what the app changed, under the image's
    /// manifest; unsigned. Device nodes, FIFOs and sockets the app made
    /// are left out (and named).
    Export {
        /// Pod UUID (or a unique prefix).
        uuid: String,
        /// The ACI file to write.
        out: PathBuf,
        /// The app to export (needed when the pod has several).
        #[arg(long, value_name = "NAME")]
        app: Option<String>,
        /// Replace OUT if it exists.
        #[arg(long)]
        overwrite: bool,
    },
    /// Remove pods that exited longer ago than the grace period, and prepared
    /// pods never run.
    Gc {
        /// How long exited pods are kept (for `skiff status`).
        #[arg(long, default_value = "30m", value_parser = config::parse_duration)]
        grace_period: std::time::Duration,
        /// How long prepared pods are kept.
        #[arg(long, default_value = "24h", value_parser = config::parse_duration)]
        expire_prepared: std::time::Duration,
    },
    /// Check pods for what a killed process left half-way: pods a dead
    /// `prepare` abandoned, pods whose stage1 died without recording the
    /// exit, removals cut short, and networks, cgroups, network namespaces
    /// and mounts still held by pods that no longer run. Exits 1 if
    /// problems remain; running pods are left alone. The store has its
    /// own: `skiff image fsck`.
    Fsck {
        /// Repair what is found (as gc would, at once).
        #[arg(long)]
        repair: bool,
    },
    /// Fetch images into the store, verifying their signatures.
    Fetch(commands::fetch::FetchArgs),
    /// Manage the keys trusted to sign images.
    Trust(commands::trust::TrustArgs),
    /// Work with images: list, inspect, build, validate, export, gc.
    #[command(subcommand)]
    Image(commands::image::ImageCommand),
    /// The offline vulnerability database `skiff image audit` matches
    /// against.
    #[command(subcommand)]
    VulnDb(commands::vulndb::VulnDbCommand),
    /// Make keys for signing images.
    #[command(subcommand)]
    Key(commands::key::KeyCommand),
    /// Serve the appc metadata API to pods: per-pod identity (HMAC signing
    /// and verification) and pod/app metadata. Optional and separate: pods
    /// started while it runs get AC_METADATA_URL; it runs no pods.
    MetadataService(commands::metadata::MetadataArgs),
    /// Share this host's images with its peers: their ACIs, layers and
    /// signatures, read-only over HTTP, by a confined unprivileged server.
    /// Peers fetch with `skiff fetch --peer=URL` and still check every
    /// signature (docs/distribution.md).
    Serve(commands::serve::ServeArgs),
    /// Print the skiff version, the appc spec version it implements, its
    /// commit, build date and compiler, its flavors and its stage1.
    Version {
        #[arg(long, value_enum, default_value = "table")]
        format: commands::pods::Format,
    },
    /// Print a shell completion script: bash, zsh, fish, elvish or
    /// powershell (e.g. `skiff completion bash > /etc/bash_completion.d/skiff`,
    /// or `source <(skiff completion bash)`).
    Completion {
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
}

/// Dies quietly on a closed stdout (`skiff image list | head`), as Unix
/// tools do, instead of panicking in `println!`.
fn restore_sigpipe() {
    skiff_stage1::sys::signal::set_default(&[libc::SIGPIPE]);
}

/// The whole command tree, built. Each subcommand's arguments are deferred
/// (`#[command(defer = true)]`): a run builds only its own command's, which
/// keeps ~80 page faults and ~0.9 ms off every start of skiff
/// (docs/performance.md). Completions and man pages need the whole tree.
/// `help`'s copy of it is taken before the deferred parts are built, so
/// the subcommands of a command with arguments of its own (`trust list`)
/// are copied in afterwards, as clap copies the others.
pub(crate) fn full_command() -> clap::Command {
    fn help_copy(cmd: &clap::Command, bin_name: &str) -> clap::Command {
        let bin_name = format!("{bin_name} {}", cmd.get_name());
        let mut copy = clap::Command::new(cmd.get_name().to_string())
            .hide(cmd.is_hide_set())
            .disable_help_flag(true)
            .disable_version_flag(true)
            .bin_name(bin_name.clone())
            .display_name(bin_name.replace(' ', "-"));
        if let Some(about) = cmd.get_about() {
            copy = copy.about(about.clone());
        }
        copy
    }
    let mut cmd = command_tree(|_| true);
    cmd.build();
    let missing: Vec<(String, Vec<clap::Command>)> = cmd
        .get_subcommands()
        .filter(|sub| sub.get_name() != "help")
        .filter_map(|sub| {
            let copied = cmd
                .find_subcommand("help")?
                .find_subcommand(sub.get_name())?;
            let bin_name = format!("skiff help {}", sub.get_name());
            let lacking: Vec<clap::Command> = sub
                .get_subcommands()
                .filter(|s| {
                    s.get_name() != "help" && copied.find_subcommand(s.get_name()).is_none()
                })
                .map(|s| help_copy(s, &bin_name))
                .collect();
            (!lacking.is_empty()).then(|| (sub.get_name().to_string(), lacking))
        })
        .collect();
    for (name, lacking) in missing {
        cmd = cmd.mut_subcommand("help", |help| {
            help.mut_subcommand(name, |copied| copied.subcommands(lacking))
        });
    }
    cmd
}

/// The root with the subcommands `keep` keeps, none built yet.
fn command_tree(keep: impl Fn(&clap::Command) -> bool) -> clap::Command {
    let all = <Command as clap::Subcommand>::augment_subcommands(clap::Command::new("skiff"));
    <Cli as clap::CommandFactory>::command()
        .subcommands(all.get_subcommands().filter(|sub| keep(sub)).cloned())
}

/// `args` parsed; on bad usage, `--help` or `--version`, what clap says,
/// and an exit.
fn parse(args: Vec<std::ffi::OsString>) -> Invocation {
    try_parse(&args).unwrap_or_else(|err| err.exit())
}

/// `args` parsed, or what clap would say instead (bad usage, help, the
/// version).
///
/// clap copies each global option (`--dir`, `--debug`, ten of them) into
/// every subcommand of the tree it builds: ~300 copies, ~0.3 ms and ~80
/// page faults on every start of skiff, though one subcommand runs
/// (docs/performance.md). So the tree is cut first to the subcommands the
/// arguments name: the one that runs is named, and the others could not
/// have matched. Whenever that parse does not give a command to run (an
/// error, help, the version, no subcommand named), the whole tree parses
/// the arguments again, so every message is the one it always gave.
fn try_parse(args: &[std::ffi::OsString]) -> Result<Invocation, clap::Error> {
    let named = |sub: &clap::Command| args.iter().skip(1).any(|arg| arg == sub.get_name());
    let cut = command_tree(named);
    if cut.has_subcommands()
        && let Ok(invocation) = cut
            .try_get_matches_from(args)
            .and_then(|matches| invocation(&matches))
    {
        return Ok(invocation);
    }
    let mut whole = command_tree(|_| true);
    whole
        .try_get_matches_from_mut(args)
        .and_then(|matches| invocation(&matches))
        .map_err(|err| err.format(&mut whole))
}

fn invocation(matches: &clap::ArgMatches) -> Result<Invocation, clap::Error> {
    use clap::FromArgMatches;
    Ok(Invocation {
        global: config::GlobalArgs::from_arg_matches(matches)?,
        command: Command::from_arg_matches(matches)?,
    })
}

/// The whole command line (`skiff-full`): parses this process's arguments,
/// runs the command and says how it went.
pub fn main() -> ExitCode {
    restore_sigpipe();
    let cli = parse(std::env::args_os().collect());
    log::init(cli.global.debug);
    if let Some(done) = enter_user_namespace(&cli.command) {
        return done;
    }
    report(run(cli))
}

/// An ordinary user's command runs as root of the user's own user
/// namespace (docs/rootless.md); before anything starts a thread. Not
/// `enter`: it joins the pod's own user namespace, which only the user,
/// outside any, may do. `Some`: this process is done (the command ran in
/// the namespace, or could not).
fn enter_user_namespace(command: &Command) -> Option<ExitCode> {
    if matches!(
        command,
        Command::Version { .. } | Command::Enter(_) | Command::Completion { .. }
    ) {
        return None;
    }
    match skiff_ops::rootless::enter(log::warning) {
        Ok(None) => None,
        Ok(Some(status)) => Some(ExitCode::from(u8::try_from(status).unwrap_or(1))),
        Err(err) => {
            log::error(&err.to_string());
            Some(ExitCode::from(125))
        }
    }
}

/// Runs the command.
fn run(cli: Invocation) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run { detach, args } => commands::pods::run(&cli.global, args, detach),
        Command::Prepare { args } => commands::pods::prepare_only(&cli.global, args),
        Command::RunPrepared { detach, uuid } => {
            commands::pods::run_prepared(&cli.global, &uuid, detach)
        }
        Command::List {
            format,
            no_legend,
            full,
            quiet,
        } => commands::pods::list(&cli.global, format, no_legend, full, quiet),
        Command::Status {
            uuid,
            uuid_file,
            wait,
            wait_ready,
            format,
        } => {
            let wait = match (wait, wait_ready) {
                (true, _) => skiff_ops::pods::Wait::Exited,
                (false, true) => skiff_ops::pods::Wait::Ready,
                (false, false) => skiff_ops::pods::Wait::No,
            };
            commands::pods::pod_uuid(uuid, uuid_file.as_deref())
                .and_then(|uuid| commands::pods::status(&cli.global, &uuid, wait, format))
        }
        Command::CatManifest { uuid, uuid_file } => {
            commands::pods::pod_uuid(uuid, uuid_file.as_deref())
                .and_then(|uuid| commands::pods::cat_manifest(&cli.global, &uuid))
        }
        Command::Enter(args) => commands::pods::enter(&cli.global, args),
        Command::Export {
            uuid,
            out,
            app,
            overwrite,
        } => commands::pods::export(&cli.global, &uuid, app.as_deref(), &out, overwrite),
        Command::Stop {
            uuids,
            uuid_file,
            force,
            timeout,
        } => {
            let wait = match force {
                true => std::time::Duration::ZERO,
                false => std::time::Duration::from_secs(timeout),
            };
            with_uuid_file(uuids, uuid_file)
                .and_then(|uuids| commands::pods::stop(&cli.global, &uuids, wait))
        }
        Command::Generate(cmd) => commands::generate::run(&cli.global, cmd),
        Command::Logs(args) => commands::logs::run(&cli.global, args),
        Command::Top(args) => commands::inspect::top(&cli.global, args),
        Command::Stats(args) => commands::inspect::stats(&cli.global, args),
        Command::Cp(args) => commands::inspect::cp(&cli.global, args),
        Command::Rm { uuids, uuid_file } => with_uuid_file(uuids, uuid_file)
            .and_then(|uuids| commands::pods::rm(&cli.global, &uuids)),
        Command::Gc {
            grace_period,
            expire_prepared,
        } => commands::pods::gc(&cli.global, grace_period, expire_prepared),
        Command::Fsck { repair } => commands::pods::fsck(&cli.global, repair),
        Command::Fetch(args) => commands::fetch::run(&cli.global, args),
        Command::Trust(args) => commands::trust::run(&cli.global, args),
        Command::Image(cmd) => commands::image::run(&cli.global, cmd),
        Command::Key(cmd) => commands::key::run(cmd),
        Command::VulnDb(cmd) => commands::vulndb::run(&cli.global, cmd),
        Command::MetadataService(args) => commands::metadata::run(&cli.global, args),
        Command::Serve(args) => commands::serve::run(&cli.global, args),
        Command::Version { format } => commands::version::run(&cli.global, format),
        Command::Completion { shell } => {
            clap_complete::generate(shell, &mut full_command(), "skiff", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The command's exit code, or its error said on one line.
fn report(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(err) => {
            // One line: the error and its causes.
            let mut line = skiff_stage1::error_line(err.as_ref())
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            if storage_full(err.as_ref()) {
                line.push_str(
                    " (the file system is full: free space, e.g. `skiff image gc` and `skiff gc`, or use a data directory elsewhere with --dir; what was left half-way is removed, and `skiff image fsck` checks the store)",
                );
            }
            // Errors may carry what a pod or an image chose (file names,
            // messages): nothing in them may drive the terminal.
            let line =
                String::from_utf8_lossy(&skiff_pod::logs::visible(line.as_bytes())).into_owned();
            log::error(&line);
            ExitCode::FAILURE
        }
    }
}

/// Whether a cause of `err` is a full file system (ENOSPC, EDQUOT).
fn storage_full(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
            )
        {
            return true;
        }
        cause = e.source();
    }
    false
}

/// `uuids`, plus the one in `uuid_file` if given.
fn with_uuid_file(
    mut uuids: Vec<String>,
    uuid_file: Option<PathBuf>,
) -> anyhow::Result<Vec<String>> {
    if uuid_file.is_some() {
        uuids.push(commands::pods::pod_uuid(None, uuid_file.as_deref())?);
    }
    Ok(uuids)
}

#[cfg(test)]
mod tests {

    /// `help`'s copy of the tree reaches every subcommand's subcommands,
    /// deferred or not, as it did before the arguments were deferred.
    #[test]
    fn the_help_tree_holds_every_subcommand() {
        let cmd = super::full_command();
        let help = cmd.find_subcommand("help").expect("a help subcommand");
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            let copied = help
                .find_subcommand(sub.get_name())
                .unwrap_or_else(|| panic!("help lacks {}", sub.get_name()));
            for inner in sub.get_subcommands().filter(|s| s.get_name() != "help") {
                assert!(
                    copied.find_subcommand(inner.get_name()).is_some(),
                    "help {} lacks {}",
                    sub.get_name(),
                    inner.get_name()
                );
            }
        }
    }

    /// A deferred subcommand still gets its own arguments and the global
    /// ones, and refuses what it does not know.
    #[test]
    fn deferred_subcommands_parse_their_arguments() {
        let cli = parse(&["--dir", "/d", "run-prepared", "-d", "abc"]).expect("parses");
        assert!(matches!(cli.command, super::Command::RunPrepared { .. }));
        let cli = parse(&["generate", "man", "--dir", "/d", "/out"]).expect("parses");
        assert!(matches!(cli.command, super::Command::Generate(_)));
        assert!(parse(&["run-prepared", "--bogus", "abc"]).is_err());
        assert!(parse(&["trust", "list", "--format", "json"]).is_ok());
    }

    fn parse(args: &[&str]) -> Result<super::Invocation, clap::Error> {
        let args: Vec<std::ffi::OsString> = std::iter::once("skiff")
            .chain(args.iter().copied())
            .map(Into::into)
            .collect();
        super::try_parse(&args)
    }

    /// What the whole tree parses `args` to, or says about them.
    fn whole(args: &[&str]) -> Result<String, String> {
        let mut whole = super::command_tree(|_| true);
        whole
            .try_get_matches_from_mut(std::iter::once("skiff").chain(args.iter().copied()))
            .and_then(|matches| super::invocation(&matches))
            .map(|cli| format!("{:?} {:?}", cli.global, cli.command))
            .map_err(|err| err.format(&mut whole).render().to_string())
    }

    /// Why a cut tree parses as the whole tree does: the root has no
    /// positional arguments, no option whose value may be left out, no
    /// subcommand aliases, flags or external subcommands, and does not
    /// infer subcommands from prefixes. Each would let an argument that
    /// names no kept subcommand be taken; adding one means changing
    /// `try_parse`.
    #[test]
    fn the_root_leaves_a_cut_tree_nothing_to_take_differently() {
        let mut whole = super::command_tree(|_| true);
        whole.build();
        assert_eq!(whole.get_positionals().count(), 0);
        assert!(!whole.is_allow_external_subcommands_set());
        assert!(!whole.is_args_conflicts_with_subcommands_set());
        assert!(!whole.is_subcommand_precedence_over_arg_set());
        assert!(!whole.is_multicall_set());
        for arg in whole.get_arguments() {
            if let Some(range) = arg.get_num_args()
                && range.takes_values()
            {
                assert!(
                    range.min_values() >= 1,
                    "--{:?} may go without its value",
                    arg.get_long()
                );
            }
        }
        for sub in whole.get_subcommands() {
            assert_eq!(sub.get_all_aliases().count(), 0, "{}", sub.get_name());
            assert!(sub.get_short_flag().is_none() && sub.get_long_flag().is_none());
        }
        assert!(parse(&["run-prep", "abc"]).is_err(), "a prefix was taken");
        assert!(
            whole
                .try_get_matches_from(["skiff", "run-prep", "abc"])
                .is_err()
        );
    }

    /// Cut to the subcommands the arguments name, the tree parses every
    /// command line as the whole tree does, and says the same about the
    /// ones it does not take: names of subcommands as option values and
    /// operands, global options before and after the subcommand, help,
    /// the version, typos.
    #[test]
    fn the_cut_tree_parses_as_the_whole_tree_does() {
        let lines: &[&[&str]] = &[
            &["--dir", "run", "run-prepared", "-d", "abc"],
            &["run-prepared", "--dir", "/d", "list"],
            &[
                "run",
                "--net=host",
                "list",
                "--exec",
                "/bin/status",
                "--",
                "stop",
            ],
            &["--debug", "image", "list", "--format", "json"],
            &["image", "rm", "list", "--dir", "gc"],
            &["stop", "--force", "rm", "gc"],
            &["status", "--wait", "--format", "json", "abc"],
            &["trust", "list", "--dir", "/d"],
            &["help", "run"],
            &["run", "--help"],
            &["image", "--help"],
            &["--version"],
            &["version", "--version"],
            &[],
            &["--dir"],
            &["rn", "abc"],
            &["list", "--bogus"],
            &["run-prepared"],
            &["run-prepared", "a", "b"],
            &["gc", "--grace-period", "5x"],
            &["list", "run"],
        ];
        for line in lines {
            let cut = parse(line)
                .map(|cli| format!("{:?} {:?}", cli.global, cli.command))
                .map_err(|err| err.render().to_string());
            let whole = whole(line);
            if whole.is_ok() {
                let named = |sub: &clap::Command| line.contains(&sub.get_name());
                let alone = super::command_tree(named)
                    .try_get_matches_from(std::iter::once("skiff").chain(line.iter().copied()));
                assert!(
                    alone.is_ok(),
                    "{line:?}: the cut tree alone does not parse it"
                );
            }
            assert_eq!(cut, whole, "{line:?}");
        }
    }
}
