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
    let mut cli = crate::parse(args.clone());
    if !here(&cli, &args) {
        return full(&args);
    }
    // Nothing of a fetch, credentials or the caller's whole environment is
    // in this process: the pod's init, a fork of it, may be one too.
    cli.global.stage1_in_process = true;
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
/// options are all the store's business. To `skiff-full` go: options about
/// fetching (insecure options, keys from HTTPS, credentials, an
/// architecture); tracing (`--debug`, `SKIFF_LOG`: what is traced before a
/// run is handed on would be said twice); `--inherit-env` (its warnings
/// would be); an env file or pod manifest that is not a regular file (a
/// pipe read here would be empty there); and an ordinary user's commands
/// (which run in the user's own namespace, docs/rootless.md).
fn here(cli: &Invocation, args: &[OsString]) -> bool {
    let global = &cli.global;
    let pod = match &cli.command {
        Command::Run { args: run, .. } | Command::Prepare { args: run } => Some(&run.pod),
        Command::RunPrepared { .. } => None,
        _ => return false,
    };
    rustix::process::geteuid().is_root()
        && !global.debug
        && std::env::var_os("SKIFF_LOG").is_none()
        && global.insecure_options == skiff_fetch::InsecureOptions::default()
        && !global.trust_keys_from_https
        && global.creds.is_none()
        && global.arch.is_none()
        && pod.is_none_or(|pod| !pod.inherit_env && pod.pod_manifest.as_deref().is_none_or(regular))
        && files_of("--set-env-file", args).all(|file| regular(std::path::Path::new(&file)))
}

/// Whether `path` is a regular file (which `skiff-full` reads again from
/// its start), not a pipe, a terminal or missing.
fn regular(path: &std::path::Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file())
}

/// The values of `flag` in `args` (`--flag=VALUE` and `--flag VALUE`; also
/// words of an app's own arguments that look so: then the run is only
/// handed on needlessly).
fn files_of<'a>(flag: &'a str, args: &'a [OsString]) -> impl Iterator<Item = OsString> + 'a {
    let prefix = format!("{flag}=");
    args.iter().enumerate().filter_map(move |(i, arg)| {
        let arg = arg.to_str()?;
        match arg.strip_prefix(prefix.as_str()) {
            Some(value) => Some(OsString::from(value)),
            None if arg == flag => Some(args.get(i + 1).cloned().unwrap_or_default()),
            None => None,
        }
    })
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
    // Not this very file under the other name (a link, a copy by mistake):
    // it would hand the command on to itself for ever.
    let same = |a: &std::path::Path, b: &std::path::Path| match (
        std::fs::metadata(a),
        std::fs::metadata(b),
    ) {
        (Ok(a), Ok(b)) => {
            use std::os::unix::fs::MetadataExt;
            (a.dev(), a.ino()) == (b.dev(), b.ino())
        }
        _ => false,
    };
    if same(&path, std::path::Path::new("/proc/self/exe")) {
        log::error(&format!(
            "{} is this skiff itself, not the full command set: install skiff-full from the same build (target/release after cargo build --release) in its place",
            path.display()
        ));
        return ExitCode::from(125);
    }
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
