use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use skiff_fetch::{FetchOptions, KeyCandidate, KeyReview};
use skiff_spec::discovery::AppName;
use skiff_trust::Scope;
use skiff_trust::keystore::{fingerprint, parse_keys, user_ids};

use crate::config::GlobalArgs;
use crate::review::TerminalReview;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct TrustArgs {
    #[command(subcommand)]
    command: Option<TrustCommand>,

    /// Trust the keys for images whose name is PREFIX or starts with PREFIX/
    /// (whole path segments).
    #[arg(long, value_name = "PREFIX", conflicts_with = "root")]
    prefix: Option<String>,

    /// Trust the keys for every image.
    #[arg(long)]
    root: bool,

    /// Accept the keys without asking.
    #[arg(long)]
    skip_fingerprint_review: bool,

    /// Key files or https URLs (armored or binary OpenPGP public keys). With
    /// --prefix and no key, the keys are discovered from the prefix
    /// (`ac-discovery-pubkeys`).
    #[arg(value_name = "KEY")]
    keys: Vec<String>,
}

#[derive(Subcommand)]
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

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
}

pub fn run(global: &GlobalArgs, args: TrustArgs) -> anyhow::Result<ExitCode> {
    let ctx = global.context()?;
    let keystore = ctx.keystore();
    match args.command {
        Some(TrustCommand::List { format }) => {
            let keys = keystore.list()?;
            match format {
                Format::Json => {
                    let rows: Vec<_> = keys
                        .iter()
                        .map(|k| {
                            serde_json::json!({
                                "fingerprint": k.fingerprint,
                                "scope": match &k.scope { Scope::Root => "root".to_string(), Scope::Prefix(p) => p.clone() },
                                "userIds": k.user_ids,
                                "vendor": k.vendor,
                                "path": k.path,
                            })
                        })
                        .collect();
                    println!("{}", serde_json::to_string_pretty(&rows)?);
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
                            scope,
                            source,
                            k.user_ids.join(", ")
                        );
                    }
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        Some(TrustCommand::Rm { fingerprints }) => {
            for f in &fingerprints {
                for removed in keystore.remove(f)? {
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
        let options = FetchOptions {
            trust_keys_from_https: true,
            ..ctx.fetch_options(skiff_fetch::PullPolicy::Update)
        };
        let session = ctx.fetch_session(options, review)?;
        let fetcher = session.fetcher();
        let app =
            AppName::parse(prefix).map_err(|e| anyhow::anyhow!("bad prefix '{prefix}': {e}"))?;
        let added = fetcher
            .trust_discovered_keys(&app)
            .with_context(|| format!("cannot discover keys for {prefix}"))?;
        if added == 0 {
            bail!("no key was trusted for {prefix}");
        }
        eprintln!("{added} key(s) trusted for {scope}");
        return Ok(ExitCode::SUCCESS);
    }
    let http = ctx.http()?;
    for location in &args.keys {
        let bytes = if location.starts_with("https://") || location.starts_with("http://") {
            if location.starts_with("http://") && !global.insecure_options.pubkey {
                bail!("{location}: keys over plain HTTP need --insecure-options=pubkey");
            }
            http.get_small(location, 1 << 20)?
        } else {
            std::fs::read(location).with_context(|| format!("cannot read key file {location}"))?
        };
        let keys = parse_keys(&bytes).with_context(|| location.clone())?;
        for key in keys {
            let candidate = KeyCandidate {
                prefix: match &scope {
                    Scope::Root => "(all images)".into(),
                    Scope::Prefix(p) => p.clone(),
                },
                location: location.clone(),
                fingerprint: fingerprint(&key),
                user_ids: user_ids(&key),
            };
            if !review.approve(&candidate) {
                bail!("key {} not trusted", candidate.fingerprint);
            }
            for added in keystore.add(std::slice::from_ref(&key), &scope)? {
                eprintln!(
                    "trusted {} for {} ({})",
                    added.fingerprint,
                    added.scope,
                    added.path.display()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
