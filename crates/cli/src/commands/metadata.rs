//! `skiff metadata-service`.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::config::GlobalArgs;

#[derive(Args, Debug)]
pub struct MetadataArgs {
    /// TCP port pods reach the service on (0: any free port; stage1 learns
    /// the port when it registers a pod) [default: root's 18112; another
    /// user's 0]
    #[arg(long)]
    listen_port: Option<u16>,

    /// Address to listen on. Pods on CNI networks reach the host at their
    /// gateway address, pods on the host network at 127.0.0.1, an ordinary
    /// user's pods on the user-mode network at their own 127.0.0.1 (pasta
    /// forwards the port to the host's); every request must carry its
    /// pod's secret token [default: root's 0.0.0.0; another user's
    /// 127.0.0.1]
    #[arg(long)]
    listen_address: Option<IpAddr>,
}

pub fn run(global: &GlobalArgs, args: MetadataArgs) -> anyhow::Result<ExitCode> {
    let default = skiff_ops::locations::metadata_listen(skiff_ops::rootless::is_host_root());
    // Started by a .socket unit: its socket is fd 3 (docs/systemd.md).
    let activated = match skiff_ops::service::ServiceEnv::from_env().listen_fds {
        0 => None,
        1 => Some(
            skiff_stage1::sys::process::take_listen_fds(3, 1)
                .and_then(|mut fds| fds.pop())
                .context("LISTEN_FDS=1, but fd 3 is not open")?,
        ),
        n => anyhow::bail!(
            "systemd passed {n} sockets (LISTEN_FDS): the metadata service listens on one"
        ),
    };
    skiff_metadata::server::run(skiff_metadata::server::Config {
        activated,
        data_dir: global.context()?.settings.dir,
        listen: SocketAddr::new(
            args.listen_address.unwrap_or(default.ip()),
            args.listen_port.unwrap_or(default.port()),
        ),
    })?;
    Ok(ExitCode::SUCCESS)
}
