//! The `skiff` command line: parses arguments, calls the library crates and
//! prints results. Results go to stdout, diagnostics to stderr.
//!
//! Exit codes: 0 success; 1 the operation failed or the input is invalid;
//! 2 bad usage (unknown flag, missing argument). `skiff run` (later) returns
//! the app's own exit status.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod commands;
mod config;
mod format;
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
#[derive(Parser)]
#[command(
    name = "skiff",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub(crate) struct Cli {
    #[command(flatten)]
    global: config::GlobalArgs,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
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
    let mut cmd = <Cli as clap::CommandFactory>::command();
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

fn main() -> ExitCode {
    restore_sigpipe();
    let cli = Cli::parse();
    log::init(cli.global.debug);
    // An ordinary user's command runs as root of the user's own user
    // namespace (docs/rootless.md); before anything starts a thread. Not
    // `enter`: it joins the pod's own user namespace, which only the user,
    // outside any, may do.
    if !matches!(
        cli.command,
        Command::Version { .. } | Command::Enter(_) | Command::Completion { .. }
    ) {
        match skiff_ops::rootless::enter(log::warning) {
            Ok(None) => {}
            Ok(Some(status)) => return ExitCode::from(u8::try_from(status).unwrap_or(1)),
            Err(err) => {
                log::error(&err.to_string());
                return ExitCode::from(125);
            }
        }
    }
    let result = match cli.command {
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
    };
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
    use clap::Parser;

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
        let cli = super::Cli::try_parse_from(["skiff", "--dir", "/d", "run-prepared", "-d", "abc"])
            .expect("parses");
        assert!(matches!(cli.command, super::Command::RunPrepared { .. }));
        let cli = super::Cli::try_parse_from(["skiff", "generate", "man", "--dir", "/d", "/out"])
            .expect("parses");
        assert!(matches!(cli.command, super::Command::Generate(_)));
        assert!(super::Cli::try_parse_from(["skiff", "run-prepared", "--bogus", "abc"]).is_err());
        assert!(super::Cli::try_parse_from(["skiff", "trust", "list", "--format", "json"]).is_ok());
    }
}
