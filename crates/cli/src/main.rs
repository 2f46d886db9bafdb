//! The `skiff` command line: parses arguments, calls the library crates and
//! prints results. Results go to stdout, diagnostics to stderr.
//!
//! Exit codes: 0 success; 1 the operation failed or the input is invalid;
//! 2 bad usage (unknown flag, missing argument). `skiff run` (later) returns
//! the app's own exit status.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod commands;

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
struct Cli {
    /// Print debug diagnostics on stderr (same as SKIFF_LOG=debug).
    #[arg(long, global = true)]
    debug: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Work with images: build, validate, inspect.
    #[command(subcommand)]
    Image(commands::image::ImageCommand),
    /// Print the skiff version and the appc spec version it implements.
    Version,
}

fn init_logging(debug: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if debug { "debug" } else { "warn" };
    let filter = EnvFilter::try_from_env("SKIFF_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.debug);
    let result = match cli.command {
        Command::Image(cmd) => commands::image::run(cmd),
        Command::Version => commands::version::run(),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            // One line: the error and its causes.
            let chain: Vec<String> = err.chain().map(ToString::to_string).collect();
            eprintln!("skiff: error: {}", chain.join(": "));
            ExitCode::FAILURE
        }
    }
}
