//! `skiff generate systemd`: units that run a pod or an image under systemd.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use skiff_ops::generate::UnitOptions;

use crate::config::GlobalArgs;

#[derive(Subcommand, Debug)]
#[command(defer = true)]
pub enum GenerateCommand {
    /// Print a systemd service (Type=notify) that runs IMAGE pinned by its
    /// ID; with --socket, a .socket unit too (see docs/systemd.md).
    Systemd(SystemdArgs),
    /// Write man pages for skiff and each of its commands (skiff.1,
    /// skiff-run.1, skiff-image-list.1, …) into DIR, from the same
    /// definitions as --help.
    /// Print a socket and a service unit that run the metadata service
    /// of this data dir under systemd (socket-activated).
    MetadataService {
        /// The socket unit's ListenStream= (default 18112: every address,
        /// as the service's own default).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// Write skiff-metadata.service and .socket into the current
        /// directory instead of printing them.
        #[arg(long)]
        files: bool,
    },
    Man {
        /// The directory to write into (made if missing).
        #[arg(id = "out_dir", value_name = "DIR")]
        dir: std::path::PathBuf,
    },
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

/// Writes the man page of `cmd` (named `name`) and of each subcommand
/// (`name-sub`) into `dir`; returns the files written.
pub fn man_pages(
    cmd: &clap::Command,
    name: &str,
    dir: &std::path::Path,
) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let page = cmd
        .clone()
        .name(name.to_string())
        .bin_name(name.replace('-', " "));
    let path = dir.join(format!("{name}.1"));
    let mut text = Vec::new();
    clap_mangen::Man::new(page.clone()).render(&mut text)?;
    std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
    let mut written = vec![path];
    for sub in page
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        written.extend(man_pages(sub, &format!("{name}-{}", sub.get_name()), dir)?);
    }
    Ok(written)
}

pub fn run(global: &GlobalArgs, cmd: GenerateCommand) -> anyhow::Result<ExitCode> {
    let args = match cmd {
        GenerateCommand::Systemd(args) => args,
        GenerateCommand::MetadataService { listen, files } => {
            let units =
                skiff_ops::generate::metadata_service(&global.context()?, listen.as_deref())?;
            return print_units(&units, files);
        }
        GenerateCommand::Man { dir } => {
            std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
            let cli = crate::full_command();
            let written = man_pages(&cli, "skiff", &dir)?;
            println!("{} man pages in {}", written.len(), dir.display());
            return Ok(ExitCode::SUCCESS);
        }
    };
    let opts = UnitOptions {
        socket: args.socket,
        name: args.name,
    };
    let units = skiff_ops::generate::systemd(&global.context()?, &args.target, &opts)?;
    print_units(&units, args.files)
}

/// Prints the units, or writes them into the current directory.
fn print_units(units: &skiff_ops::generate::Units, files: bool) -> anyhow::Result<ExitCode> {
    if files {
        for path in skiff_ops::generate::write(units, std::path::Path::new("."))? {
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
