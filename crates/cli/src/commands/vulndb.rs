//! `skiff vuln-db import`: OSV advisories into `<data>/vuln/osv.sqlite`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use crate::config::GlobalArgs;

#[derive(Subcommand, Debug)]
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
            let db = global.dir.join("vuln/osv.sqlite");
            let mut conn = skiff_audit::osv::open(&db)?;
            let mut total = 0;
            for p in &paths {
                total += skiff_audit::osv::import(&mut conn, p)?;
            }
            eprintln!("imported {total} advisory(ies) into {}", db.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}
