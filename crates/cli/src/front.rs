//! The small `skiff`: the whole command line (the same tree, help and
//! errors), running in this process only what starts pods from the store:
//! `run-prepared`, and `run` and `prepare` of images the store holds.
//! Everything else, and a run whose images need a fetch, is executed by
//! `skiff-full` beside it with the same arguments. A pod's start then loads
//! and relocates a binary without fetch, trust, TLS, OpenPGP, build, audit
//! or the servers: ~1 ms of each start (docs/performance.md).

use std::ffi::OsString;
use std::process::ExitCode;

use crate::{Command, Invocation, commands, log};

/// The full command set's binary, beside this one.
pub const FULL: &str = "skiff-full";

/// The commands this process runs (when [`here`] says so).
const HERE: [&str; 3] = ["run-prepared", "run", "prepare"];

/// `skiff`: runs a pod start from the store here, anything else in
/// `skiff-full`.
pub fn main() -> ExitCode {
    crate::restore_sigpipe();
    let args: Vec<OsString> = std::env::args_os().collect();
    // No argument names a command run here: no need to parse them.
    if !args
        .iter()
        .skip(1)
        .any(|arg| HERE.iter().any(|name| arg == name))
    {
        return full(&args);
    }
    let cli = crate::parse(args.clone());
    if !here(&cli) {
        return full(&args);
    }
    log::init_without_env(cli.global.debug);
    if let Some(done) = crate::enter_user_namespace(&cli.command) {
        return done;
    }
    let result = match &cli.command {
        Command::RunPrepared { detach, uuid } => {
            commands::pods::run_prepared(&cli.global, uuid, detach.clone())
        }
        Command::Run { detach, args: run } => {
            match commands::pods::run_stored(&cli.global, run, Some(detach)) {
                Some(result) => result,
                None => return full(&args),
            }
        }
        Command::Prepare { args: run } => {
            match commands::pods::run_stored(&cli.global, run, None) {
                Some(result) => result,
                None => return full(&args),
            }
        }
        _ => return full(&args),
    };
    crate::report(result)
}

/// Whether this process runs the command: a pod start by root whose
/// options are all the store's business. Options about fetching (insecure
/// options, keys from HTTPS, credentials, an architecture), tracing
/// (`--debug`, `SKIFF_LOG`: what is traced before a run is handed on would
/// be said twice) and an ordinary user's commands (which run in the user's
/// own namespace, docs/rootless.md) go to `skiff-full`.
fn here(cli: &Invocation) -> bool {
    let global = &cli.global;
    matches!(
        cli.command,
        Command::RunPrepared { .. } | Command::Run { .. } | Command::Prepare { .. }
    ) && rustix::process::geteuid().is_root()
        && !global.debug
        && std::env::var_os("SKIFF_LOG").is_none()
        && global.insecure_options == skiff_fetch::InsecureOptions::default()
        && !global.trust_keys_from_https
        && global.creds.is_none()
        && global.arch.is_none()
}

/// Executes `skiff-full` beside this program (the file, symlinks resolved)
/// with `args`, its name as typed first so that messages say it; returns
/// only if that fails.
fn full(args: &[OsString]) -> ExitCode {
    use std::os::unix::process::CommandExt;
    let path = match std::env::current_exe() {
        Ok(exe) => exe.with_file_name(FULL),
        Err(e) => {
            log::error(&format!("cannot find this program's path: {e}"));
            return ExitCode::from(125);
        }
    };
    let mut cmd = std::process::Command::new(&path);
    if let Some((name, rest)) = args.split_first() {
        cmd.arg0(name).args(rest);
    }
    let err = cmd.exec();
    log::error(&format!(
        "cannot run {}: {err} (skiff's commands but pod starts are in {FULL}, which belongs beside skiff: install both, e.g. from target/release after cargo build --release)",
        path.display()
    ));
    ExitCode::from(125)
}
