//! Pod networking flags (`--net`, `--port`, `--dns*`, `--hosts-entry`),
//! resolved by `skiff_ops::network`.

use clap::Args;
use skiff_ops::network::NetOptions;

#[derive(Args, Debug, Default)]
pub struct NetArgs {
    /// Networks: `default` (a private bridge with NAT, the default for the
    /// ns flavor; dual-stack where the host forwards IPv6),
    /// `default-restricted` (a private bridge that reaches only the host),
    /// `host` (the host's network), `none` (only loopback), or
    /// names of CNI configs in net.d/ (local config first, then system
    /// config), each optionally with CNI_ARGS: NAME:K=V[;K=V]. Several
    /// networks (comma-separated or repeated) get eth0, eth1, ... For an
    /// ordinary user `default` is a user-mode network (pasta) that keeps
    /// the host's loopback out of reach unless `default:host-loopback=true`;
    /// named networks need root.
    #[arg(long, value_name = "NETS")]
    net: Vec<String>,

    /// Forward a host port to the pod: NAME:[HOSTIP:]HOSTPORT to an app's
    /// named port (from its image manifest), or
    /// [HOSTIP:]HOSTPORT:PODPORT[/tcp|/udp] to a port number (an IPv6
    /// HOSTIP in brackets), or PODPORT[/tcp|/udp] from a free host port
    /// (said on stderr; `skiff status` shows it as port-NAME). Needs a
    /// network with the portmap plugin (the default network has it); an
    /// ordinary user forwards host ports of 1024 and above.
    #[arg(long = "port", short = 'p', value_name = "PORT")]
    ports: Vec<String>,

    /// Name server for the pod's /etc/resolv.conf (repeatable), or `host`
    /// (copy the host's file) or `none` (keep the image's). Default: the
    /// network's DNS, else the host's name servers (loopback ones left out
    /// on a private network).
    #[arg(long, value_name = "IP|host|none")]
    dns: Vec<String>,

    /// Search domain for /etc/resolv.conf (repeatable).
    #[arg(long, value_name = "DOMAIN")]
    dns_search: Vec<String>,

    /// Resolver option for /etc/resolv.conf, e.g. ndots:2 (repeatable).
    #[arg(long, value_name = "OPT")]
    dns_opt: Vec<String>,

    /// Extra /etc/hosts line IP=HOSTNAME (repeatable), or `host` to start
    /// from the host's /etc/hosts.
    #[arg(long, value_name = "IP=HOST|host")]
    hosts_entry: Vec<String>,

    /// The pod's local domain: resolv.conf's `domain` line (with the
    /// network's or --dns name servers).
    #[arg(long, value_name = "DOMAIN")]
    dns_domain: Option<String>,
}

impl NetArgs {
    pub fn options(&self) -> NetOptions {
        NetOptions {
            net: self.net.clone(),
            ports: self.ports.clone(),
            dns: self.dns.clone(),
            dns_search: self.dns_search.clone(),
            dns_opt: self.dns_opt.clone(),
            hosts_entry: self.hosts_entry.clone(),
            dns_domain: self.dns_domain.clone(),
            manifest_ports: Vec::new(),
        }
    }
}
