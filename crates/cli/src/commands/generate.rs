//! `skiff generate systemd`: units that run a pod or an image under systemd.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use skiff_ops::generate::UnitOptions;

use crate::config::GlobalArgs;

#[derive(Subcommand, Debug)]
pub enum GenerateCommand {
    /// Print a systemd service (Type=notify) that runs IMAGE pinned by its
    /// ID; with --socket, a .socket unit too (see docs/systemd.md).
    Systemd(SystemdArgs),
}

#[derive(Args, Debug)]
pub struct SystemdArgs {
    /// Also a socket unit listening on ADDR (systemd's ListenStream=:
    /// 8080, 127.0.0.1:8080, /run/app.sock) that passes its socket to the
    /// pod (LISTEN_FDS): to its apps with a socketActivated port, else to
    /// its first app.
    #[arg(long, value_name = "ADDR")]
    socket: Option<String>,
    /// The units' name (default: skiff-<image's last name segment>).
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Write NAME.service (and NAME.socket) into the current directory
    /// instead of printing them.
    #[arg(long)]
    files: bool,
    /// An image in the store (ID, name[:version]). A pod is refused for
    /// now (docs/systemd.md).
    target: String,
}

pub fn run(global: &GlobalArgs, cmd: GenerateCommand) -> anyhow::Result<ExitCode> {
    let GenerateCommand::Systemd(args) = cmd;
    let opts = UnitOptions {
        socket: args.socket,
        name: args.name,
    };
    let units = skiff_ops::generate::systemd(&global.context()?, &args.target, &opts)?;
    if args.files {
        for path in skiff_ops::generate::write(&units, std::path::Path::new("."))? {
            println!("{}", path.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", units.service);
    if let Some(socket) = &units.socket {
        println!();
        print!("{socket}");
    }
    Ok(ExitCode::SUCCESS)
}
