//! `skiff serve`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use clap::Args;
use skiff_share::server::{Cidr, ServeUser};

use crate::config::GlobalArgs;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address and port to serve on (port 0: any free one; the address
    /// served is printed on stdout).
    #[arg(long, value_name = "ADDR:PORT",
          default_value_t = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), skiff_share::protocol::DEFAULT_PORT))]
    listen: SocketAddr,

    /// Address ranges that may fetch (repeatable) [default: loopback,
    /// private, link-local and unique-local ranges; the internet needs an
    /// explicit --allow=0.0.0.0/0]
    #[arg(long, value_name = "CIDR")]
    allow: Vec<Cidr>,

    /// The user (UID:GID) a server started by root runs as; it can read
    /// only the shared directories [default: 65534:65534, nobody]
    #[arg(long, value_name = "UID:GID", value_parser = parse_user)]
    user: Option<ServeUser>,

    /// Announce this server on the local segment (mDNS, as
    /// _skiff._tcp.local.), so that hosts whose peers.d says
    /// {"mdns": true} find it without a list
    #[arg(long)]
    mdns: bool,
}

fn parse_user(s: &str) -> Result<ServeUser, String> {
    let (uid, gid) = s
        .split_once(':')
        .ok_or_else(|| format!("'{s}' is not UID:GID (e.g. 65534:65534)"))?;
    let number = |n: &str| {
        n.parse::<u32>()
            .map_err(|_| format!("'{n}' in '{s}' is not a number (UID:GID)"))
    };
    let user = ServeUser {
        uid: number(uid)?,
        gid: number(gid)?,
    };
    if user.uid == 0 || user.gid == 0 {
        return Err("the server must not run as root: choose another UID:GID".into());
    }
    if user.uid == u32::MAX || user.gid == u32::MAX {
        return Err(format!(
            "{} is not a user or group ID (it means \"unchanged\")",
            u32::MAX
        ));
    }
    Ok(user)
}

pub fn run(global: &GlobalArgs, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let ctx = global.context()?;
    let allow = if args.allow.is_empty() {
        Cidr::site_local()
    } else {
        args.allow
    };
    let shown: Vec<String> = allow.iter().map(ToString::to_string).collect();
    let dir = ctx.settings.dir.clone();
    skiff_ops::serve::serve(
        &ctx,
        skiff_ops::serve::ServeOptions {
            listen: args.listen,
            user: args.user.unwrap_or_default(),
            allow,
            mdns: args.mdns,
        },
        |addr| {
            eprintln!(
                "serving the images of {} read-only to {} (Ctrl-C stops)",
                dir.display(),
                shown.join(", ")
            );
            println!("http://{addr}");
        },
    )?;
    Ok(ExitCode::SUCCESS)
}
