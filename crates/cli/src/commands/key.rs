//! `skiff key generate`: a key pair for signing images, OpenPGP (appc
//! images) or cosign (images in registries).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

#[derive(Subcommand, Debug)]
#[command(defer = true)]
pub enum KeyCommand {
    /// Make a signing key pair. `--type=openpgp` (default): an Ed25519
    /// OpenPGP key, PREFIX.sec.asc (the secret key, mode 0600, no
    /// passphrase) and PREFIX.pub.asc (give this one to `skiff trust` or
    /// `gpg --import`). `--type=cosign`: PREFIX.key (mode 0600; encrypted as
    /// cosign encrypts it when COSIGN_PASSWORD is set, even to an empty
    /// password, else unencrypted PKCS#8) and PREFIX.pub (PEM; give it to
    /// `skiff trust --prefix` or `cosign verify --key`).
    Generate {
        /// Where to write the keys (default: skiff-signing for openpgp,
        /// cosign for cosign).
        #[arg(long)]
        out: Option<PathBuf>,
        /// The key's user ID (openpgp).
        #[arg(long, default_value = "skiff image signing key")]
        uid: String,
        #[arg(long = "type", default_value = "openpgp", value_parser = ["openpgp", "cosign"])]
        kind: String,
        /// The cosign key's algorithm.
        #[arg(long, default_value = "ecdsa-p256", value_parser = ["ecdsa-p256", "ed25519"])]
        algorithm: String,
    },
}

pub fn run(cmd: KeyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        KeyCommand::Generate {
            out,
            uid,
            kind,
            algorithm,
        } => {
            let key = if kind == "cosign" {
                let algorithm = if algorithm == "ed25519" {
                    skiff_trust::cosign_key::Algorithm::Ed25519
                } else {
                    skiff_trust::cosign_key::Algorithm::EcdsaP256
                };
                let password = std::env::var_os("COSIGN_PASSWORD")
                    .map(|p| std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str()).to_vec());
                if password.is_none() {
                    crate::log::warning(
                        "COSIGN_PASSWORD is not set: the private key is written unencrypted",
                    );
                }
                let out = out.unwrap_or_else(|| PathBuf::from("cosign"));
                skiff_ops::trust::generate_cosign_key(&out, algorithm, password.as_deref())?
            } else {
                let out = out.unwrap_or_else(|| PathBuf::from("skiff-signing"));
                skiff_ops::trust::generate_key(&out, &uid)?
            };
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
