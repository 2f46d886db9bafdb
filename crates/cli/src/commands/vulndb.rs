//! `skiff vuln-db import`: OSV advisories into `<data>/vuln/osv.sqlite`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use crate::config::GlobalArgs;

#[derive(Subcommand, Debug)]
#[command(defer = true)]
pub enum VulnDbCommand {
    /// Load OSV advisories (JSON files in the osv.dev export format, or
    /// directories of them) into the local database; an advisory with the
    /// same id replaces the stored one. No network is used.
    Import {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
}

pub fn run(global: &GlobalArgs, cmd: VulnDbCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        VulnDbCommand::Import { paths } => {
            let ctx = global.context()?;
            let total = skiff_ops::vulndb::import(&ctx, &paths)?;
            eprintln!(
                "imported {total} advisory(ies) into {}",
                skiff_ops::vulndb::path(&ctx).display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
