use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, Subcommand, ValueEnum};
use skiff_trust::Scope;

use crate::config::GlobalArgs;
use crate::review::TerminalReview;

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct TrustArgs {
    #[command(subcommand)]
    command: Option<TrustCommand>,

    /// Trust the keys for images whose name is PREFIX or starts with PREFIX/
    /// (whole path segments). For docker:// images the name is the
    /// repository: registry.example.org[:PORT]/team/app (Docker Hub's is
    /// docker.io/library/NAME).
    #[arg(long, value_name = "PREFIX", conflicts_with = "root")]
    prefix: Option<String>,

    /// Trust the keys for every image.
    #[arg(long)]
    root: bool,

    /// Accept the keys without asking.
    #[arg(long)]
    skip_fingerprint_review: bool,

    /// Key files or https URLs: armored or binary OpenPGP public keys (appc
    /// images; containers' simple signing), or a cosign public key in PEM
    /// (ECDSA P-256 or Ed25519: docker:// images signed with cosign). With
    /// --prefix and no key, the keys are discovered from the prefix
    /// (`ac-discovery-pubkeys`).
    #[arg(value_name = "KEY")]
    keys: Vec<String>,
}

#[derive(Subcommand, Debug)]
#[command(defer = true)]
enum TrustCommand {
    /// List the trusted keys.
    List {
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Stop trusting a key (a vendor key is masked in the local config).
    Rm {
        /// Fingerprint, or a unique prefix of at least 8 hex digits.
        #[arg(required = true)]
        fingerprints: Vec<String>,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Format {
    Table,
    Json,
}

pub fn run(global: &GlobalArgs, args: TrustArgs) -> anyhow::Result<ExitCode> {
    let ctx = global.context()?;
    match args.command {
        Some(TrustCommand::List { format }) => {
            let keys = skiff_ops::trust::list(&ctx)?;
            match format {
                Format::Json => {
                    let rows: Vec<_> = keys
                        .iter()
                        .map(|k| {
                            serde_json::json!({
                                "fingerprint": k.fingerprint,
                                "type": k.key.kind(),
                                "scope": match &k.scope { Scope::Root => "root".to_string(), Scope::Prefix(p) => p.clone() },
                                "userIds": k.user_ids,
                                "vendor": k.vendor,
                                "path": k.path,
                            })
                        })
                        .collect();
                    crate::format::print_json(&rows)?;
                }
                Format::Table => {
                    println!(
                        "{:<42} {:<32} {:<7} USER ID",
                        "FINGERPRINT", "PREFIX", "SOURCE"
                    );
                    for k in &keys {
                        let scope = match &k.scope {
                            Scope::Root => "(root)".to_string(),
                            Scope::Prefix(p) => p.clone(),
                        };
                        let source = if k.vendor { "vendor" } else { "local" };
                        println!(
                            "{:<42} {:<32} {:<7} {}",
                            k.fingerprint,
                            crate::format::printable(&scope),
                            source,
                            crate::format::printable(&k.user_ids.join(", "))
                        );
                    }
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        Some(TrustCommand::Rm { fingerprints }) => {
            for f in &fingerprints {
                for removed in skiff_ops::trust::remove(&ctx, f)? {
                    eprintln!(
                        "no longer trusted: {} for {}",
                        removed.fingerprint, removed.scope
                    );
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        None => {}
    }
    let scope = match (&args.prefix, args.root) {
        (Some(p), false) => Scope::prefix(p)?,
        (None, true) => Scope::Root,
        _ => bail!(
            "say what the keys are trusted for: --prefix PREFIX or --root (see skiff trust --help)"
        ),
    };
    global.warn_insecure();
    let review = TerminalReview {
        skip: args.skip_fingerprint_review,
    };
    if args.keys.is_empty() {
        let Scope::Prefix(prefix) = &scope else {
            bail!("--root needs a key file or URL");
        };
        let added = skiff_ops::trust::discover(&ctx, prefix, review)?;
        eprintln!("{added} key(s) trusted for {scope}");
        return Ok(ExitCode::SUCCESS);
    }
    skiff_ops::trust::add(&ctx, &scope, &args.keys, &review, |added| {
        eprintln!(
            "trusted {} for {} ({})",
            added.fingerprint,
            added.scope,
            added.path.display()
        );
    })?;
    Ok(ExitCode::SUCCESS)
}
