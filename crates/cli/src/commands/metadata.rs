//! `skiff metadata-service`.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;

use clap::Args;

use crate::config::GlobalArgs;

#[derive(Args, Debug)]
pub struct MetadataArgs {
    /// TCP port pods reach the service on (0: any free port; stage1 learns
    /// the port when it registers a pod).
    #[arg(long, default_value_t = skiff_metadata::DEFAULT_PORT)]
    listen_port: u16,

    /// Address to listen on. Pods on CNI networks reach the host at their
    /// gateway address, pods on the host network at 127.0.0.1; every
    /// request must carry its pod's secret token.
    #[arg(long, default_value = "0.0.0.0")]
    listen_address: IpAddr,
}

pub fn run(global: &GlobalArgs, args: MetadataArgs) -> anyhow::Result<ExitCode> {
    skiff_metadata::server::run(skiff_metadata::server::Config {
        data_dir: global.context()?.settings.dir,
        listen: SocketAddr::new(args.listen_address, args.listen_port),
    })?;
    Ok(ExitCode::SUCCESS)
}
