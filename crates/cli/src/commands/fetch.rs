use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use skiff_fetch::peers::PeerUrl;
use skiff_fetch::{FetchOptions, PullPolicy};
use skiff_store::ArchivePolicy;

use crate::config::GlobalArgs;
use crate::review::TerminalReview;

#[derive(Args, Debug)]
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

    /// A peer to fetch appc images from: what `skiff serve` on another host
    /// prints, e.g. http://10.0.0.2:7440 (repeatable; with those of
    /// peers.d). Peers are not trusted: every image is verified as from its
    /// origin, which is used when no peer has it (docs/distribution.md).
    #[arg(long = "peer", value_name = "URL", value_parser = parse_peer)]
    peers: Vec<PeerUrl>,

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

fn parse_peer(s: &str) -> Result<PeerUrl, String> {
    PeerUrl::parse(s)
}

pub fn run(global: &GlobalArgs, args: FetchArgs) -> anyhow::Result<ExitCode> {
    global.warn_insecure();
    let ctx = global.context()?;
    let options = FetchOptions {
        archive_policy: ArchivePolicy {
            allow_setuid: args.allow_setuid,
            allow_devices: args.allow_devices,
            max_bytes: args.max_image_size,
            max_entries: args.max_image_entries,
            max_ratio: args.max_decompression_ratio,
        },
        signature: args.signature.clone(),
        peers: args.peers.clone(),
        ..ctx.fetch_options(args.pull_policy)
    };
    let review = TerminalReview {
        skip: args.skip_fingerprint_review,
    };
    let fetching = skiff_ops::fetch::Fetching::new(&ctx, options, review)?;
    for image in &args.images {
        let fetched = fetching.fetch(&ctx, image)?;
        if let Some(v) = &fetched.verified {
            let who = v.user_ids.first().map_or(String::new(), |u| {
                format!(" ({})", crate::format::printable(u))
            });
            eprintln!(
                "signature of {} verified: key {}{who}, trusted for {}",
                fetched.manifest.name, v.fingerprint, v.scope
            );
        }
        println!("{}", fetched.id);
    }
    Ok(ExitCode::SUCCESS)
}
