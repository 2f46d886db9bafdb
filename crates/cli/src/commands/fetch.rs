use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use skiff_fetch::{
    FetchOptions, FetchSession, Http, HttpOptions, KeyCandidate, KeyReview, PullPolicy,
};
use skiff_store::ArchivePolicy;

use crate::config::GlobalArgs;

#[derive(Args)]
pub struct FetchArgs {
    /// Images to fetch: an appc name with optional labels
    /// (`example.com/app:1.0`, `example.com/app,version=1.0,os=linux`), an
    /// `https://…/x.aci` URL, or a local path / `file://` URL.
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<String>,

    /// When to download: `never` (store only), `new` (only if not in the
    /// store), `update` (ask the server; unchanged images are not downloaded
    /// again).
    #[arg(long, default_value = "update", value_name = "POLICY")]
    pull_policy: PullPolicy,

    /// Signature file for the image (default: the image path or URL plus `.asc`).
    #[arg(long, value_name = "FILE")]
    signature: Option<PathBuf>,

    /// Accept keys found by discovery without asking (with --trust-keys-from-https).
    #[arg(long)]
    skip_fingerprint_review: bool,

    /// Accept setuid/setgid files in images (refused by default).
    #[arg(long)]
    allow_setuid: bool,

    /// Accept device nodes in images (refused by default; the runtime provides /dev).
    #[arg(long)]
    allow_devices: bool,

    /// Refuse images that unpack to more than this many bytes.
    #[arg(long, value_name = "BYTES", default_value_t = ArchivePolicy::default().max_bytes)]
    max_image_size: u64,

    /// Refuse images with more than this many archive entries.
    #[arg(long, value_name = "N", default_value_t = ArchivePolicy::default().max_entries)]
    max_image_entries: u64,

    /// Refuse images that unpack to more than this many times their compressed size
    /// (checked past the first 64 MiB).
    #[arg(long, value_name = "RATIO", default_value_t = ArchivePolicy::default().max_ratio)]
    max_decompression_ratio: u64,
}

/// Asks on the terminal before trusting a discovered key.
pub struct TerminalReview {
    pub skip: bool,
}

impl KeyReview for TerminalReview {
    fn approve(&self, key: &KeyCandidate) -> bool {
        eprintln!("key for prefix {} from {}:", key.prefix, key.location);
        eprintln!("  fingerprint {}", key.fingerprint);
        for uid in &key.user_ids {
            eprintln!("  user id     {uid}");
        }
        if self.skip {
            eprintln!("trusting it (--skip-fingerprint-review)");
            return true;
        }
        if !std::io::stdin().is_terminal() {
            eprintln!(
                "not trusting it: no terminal to confirm on (pass --skip-fingerprint-review to accept)"
            );
            return false;
        }
        eprint!("Are you sure you want to trust this key (yes/no)? ");
        let mut answer = String::new();
        let _ = std::io::stdin().read_line(&mut answer);
        matches!(answer.trim().to_ascii_lowercase().as_str(), "yes" | "y")
    }
}

pub fn http(global: &GlobalArgs) -> anyhow::Result<Http> {
    Ok(Http::new(HttpOptions {
        ca_file: global.ca_file(),
        insecure_tls: global.insecure_options.tls,
        allow_http: global.insecure_options.http,
        progress: std::io::stderr().is_terminal(),
    })?)
}

/// The fetch options of the global flags, for `pull_policy`; commands
/// change the fields they have flags for.
pub fn options(global: &GlobalArgs, pull_policy: PullPolicy) -> anyhow::Result<FetchOptions> {
    Ok(FetchOptions {
        insecure: global.insecure_options,
        pull_policy,
        archive_policy: ArchivePolicy::default(),
        trust_keys_from_https: global.trust_keys_from_https,
        signature: None,
        creds: global.creds()?,
        auth_dirs: global.auth_dirs(),
        arch: global.arch.clone(),
    })
}

/// Store, keystore and HTTP client of the global flags, with `options`
/// and `review`: the one place a fetch is set up.
pub fn session(
    global: &GlobalArgs,
    options: FetchOptions,
    review: TerminalReview,
) -> anyhow::Result<FetchSession<TerminalReview>> {
    Ok(FetchSession {
        store: global.store()?,
        keystore: global.keystore(),
        http: http(global)?,
        options,
        review,
    })
}

pub fn warn_insecure(global: &GlobalArgs) {
    for warning in global.insecure_options.warnings() {
        eprintln!("warning: {warning}");
    }
}

pub fn run(global: &GlobalArgs, args: FetchArgs) -> anyhow::Result<ExitCode> {
    warn_insecure(global);
    let options = FetchOptions {
        archive_policy: ArchivePolicy {
            allow_setuid: args.allow_setuid,
            allow_devices: args.allow_devices,
            max_bytes: args.max_image_size,
            max_entries: args.max_image_entries,
            max_ratio: args.max_decompression_ratio,
        },
        signature: args.signature.clone(),
        ..options(global, args.pull_policy)?
    };
    let review = TerminalReview {
        skip: args.skip_fingerprint_review,
    };
    let session = session(global, options, review)?;
    let fetcher = session.fetcher();
    let store = &session.store;
    let policy = crate::policy::load(global)?;
    for image in &args.images {
        let before = match &policy {
            Some(_) => crate::policy::snapshot(store)?,
            None => Default::default(),
        };
        let fetched = fetcher
            .fetch(image)
            .with_context(|| format!("cannot fetch {image}"))?;
        // What the policy refuses (the image or a dependency) does not
        // stay in the store.
        if let Some(policy) = &policy {
            policy.admit(global, store, &fetched.id, &before)?;
        }
        if let Some(v) = &fetched.verified {
            let who = v
                .user_ids
                .first()
                .map_or(String::new(), |u| format!(" ({u})"));
            eprintln!(
                "signature of {} verified: key {}{who}, trusted for {}",
                fetched.manifest.name, v.fingerprint, v.scope
            );
        }
        println!("{}", fetched.id);
    }
    Ok(ExitCode::SUCCESS)
}
