//! `skiff key generate`: an Ed25519 OpenPGP key pair for signing images.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Make an Ed25519 OpenPGP signing key: PREFIX.sec.asc (the secret key,
    /// mode 0600, no passphrase) and PREFIX.pub.asc (give this one to
    /// `skiff trust` or `gpg --import`).
    Generate {
        /// Where to write the keys (PREFIX.sec.asc, PREFIX.pub.asc).
        #[arg(long, default_value = "skiff-signing")]
        out: PathBuf,
        /// The key's user ID.
        #[arg(long, default_value = "skiff image signing key")]
        uid: String,
    },
}

pub fn run(cmd: KeyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        KeyCommand::Generate { out, uid } => {
            let key = skiff_ops::trust::generate_key(&out, &uid)?;
            let (secret, public) = (&key.secret, &key.public);
            println!("{}", key.fingerprint);
            eprintln!(
                "secret key: {} (keep it private)\npublic key: {}",
                secret.display(),
                public.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
