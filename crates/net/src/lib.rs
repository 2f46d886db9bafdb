//! Pod networking for skiff, the way rkt did it: standard CNI plugins
//! (Debian's `containernetworking-plugins`) driven by a CNI 1.0 runtime
//! written here.
//!
//! * [`config`]: network configurations (`net.d/*.conf(list)`, the built-in
//!   `default`), validated before any plugin runs.
//! * [`plugin`]: one plugin invocation (`CNI_*` environment, JSON on stdin,
//!   a result or an error object on stdout).
//! * [`attach`]: ADD/CHECK/DEL of whole conflists for a pod, with rollback so
//!   a failed ADD leaves nothing behind.
//! * [`builtin`]: the built-in networks' bridge, addresses and NAT done in
//!   process (netlink, nf_tables), with the CNI plugins' result.
//! * [`netns`]: persistent network namespaces (bind-mounted nsfs files).
//! * [`files`]: the pod's `/etc/hosts` and `/etc/resolv.conf`.
//! * [`record`]: what a pod has set up, for teardown and `skiff status`.

pub mod attach;
pub mod builtin;
pub mod config;
pub mod files;
pub mod ifreq;
pub mod netns;
pub mod plugin;
pub mod portmap;
pub mod record;

pub use attach::{Attachment, PortMapping};
pub use config::NetworkConfig;

/// Where CNI plugins are looked for unless `SKIFF_CNI_PATH` says otherwise.
pub const DEFAULT_CNI_PATH: &[&str] = &["/usr/lib/cni", "/opt/cni/bin"];

/// Where skiff keeps its pods' network namespaces.
pub const NETNS_DIR: &str = "/run/skiff/netns";

/// Errors of pod networking; each names the network or file concerned.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("{file}: {problem}")]
    Config { file: String, problem: String },
    #[error(
        "unknown network '{0}' (built in: default, host, none; others come from net.d/*.conflist)"
    )]
    UnknownNetwork(String),
    #[error(
        "network '{network}': CNI plugin '{plugin}' not found in {path} (install containernetworking-plugins or set SKIFF_CNI_PATH)"
    )]
    PluginNotFound {
        network: String,
        plugin: String,
        path: String,
    },
    #[error("network '{network}': plugin {plugin} {command} failed: {message}")]
    Plugin {
        network: String,
        plugin: String,
        command: String,
        message: String,
    },
    #[error(transparent)]
    Io(#[from] skiff_io::IoError),
}

pub(crate) use skiff_io::io_err;

/// The plugin search path: `SKIFF_CNI_PATH` (colon-separated) or the default.
pub fn cni_path() -> Vec<std::path::PathBuf> {
    match std::env::var_os("SKIFF_CNI_PATH") {
        Some(p) if !p.is_empty() => std::env::split_paths(&p).collect(),
        _ => DEFAULT_CNI_PATH
            .iter()
            .map(std::path::PathBuf::from)
            .collect(),
    }
}
