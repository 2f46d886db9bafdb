//! `skiff key generate`: an Ed25519 OpenPGP key pair for signing images.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
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
            let key = skiff_trust::sign::generate_key(&uid)?;
            let with = |ext: &str| {
                let mut name = out.clone().into_os_string();
                name.push(ext);
                PathBuf::from(name)
            };
            let (secret, public) = (with(".sec.asc"), with(".pub.asc"));
            for (path, text, mode) in [(&secret, &key.secret, 0o600), (&public, &key.public, 0o644)]
            {
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(mode)
                    .open(path)
                    .with_context(|| {
                        format!("cannot create {} (it must not exist yet)", path.display())
                    })?;
                f.write_all(text.as_bytes())
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
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
