//! `skiff serve`: this host's store, shared read-only with peers.

use std::net::SocketAddr;

use skiff_share::server::{Cidr, ServeConfig, ServeUser};

use crate::{Context, OpsError};

/// What to serve on and to whom.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub user: ServeUser,
    pub allow: Vec<Cidr>,
    /// Announce the server on the local segment (mDNS).
    pub mdns: bool,
}

/// Shares the store of `ctx` until SIGTERM or SIGINT; `ready` hears the
/// address once the server is listening, confined.
pub fn serve(
    ctx: &Context,
    options: ServeOptions,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), OpsError> {
    let dirs = skiff_store::serving::prepare(&ctx.settings.dir)?;
    skiff_share::server::run(
        ServeConfig {
            listen: options.listen,
            dirs,
            user: options.user,
            allow: options.allow,
            mdns: options.mdns,
        },
        ready,
    )?;
    Ok(())
}
