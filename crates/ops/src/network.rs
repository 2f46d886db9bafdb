//! Pod networking options (`--net`, `--port`, `--dns*`, `--hosts-entry`),
//! resolved into the pod's [`PodNet`] before anything runs: unknown
//! networks, broken configurations and bad values fail here.

use std::net::IpAddr;

use skiff_net::{PortMapping, config, files};
use skiff_pod::{Dns, DnsMode, NetMode, PodNet};
use skiff_spec::image::ImageManifest;
use skiff_spec::pod::ExposedPort;

use crate::error::refused;
use crate::refuse;
use crate::{Context, OpsError};

/// A pod's networking as asked (each field as its command-line option).
#[derive(Debug, Default, Clone)]
pub struct NetOptions {
    /// `--net`: `default`, `host`, `none` or named networks, each
    /// optionally with CNI_ARGS (`NAME:K=V[;K=V]`); comma-separated.
    pub net: Vec<String>,
    /// `--port`: `NAME:[HOSTIP:]HOSTPORT`.
    pub ports: Vec<String>,
    /// `--dns`: IP, `host` or `none`.
    pub dns: Vec<String>,
    /// `--dns-search`.
    pub dns_search: Vec<String>,
    /// `--dns-opt`.
    pub dns_opt: Vec<String>,
    /// `--hosts-entry`: `IP=HOSTNAME` or `host`.
    pub hosts_entry: Vec<String>,
    /// `--dns-domain`: the pod's local domain (resolv.conf's `domain`).
    pub dns_domain: Option<String>,
    /// The ports of a pod manifest (`--pod-manifest`), after `ports`.
    pub manifest_ports: Vec<PortRequest>,
}

/// `--net` values split into (name, CNI_ARGS): commas separate networks,
/// and a `K=V` part after `NAME:K=V` continues that network's arguments.
/// A `--net` entry: the network's name and its CNI_ARGS.
type NetFlag = (String, Vec<(String, String)>);

fn parse_nets(values: &[String]) -> Result<Vec<NetFlag>, OpsError> {
    let mut nets: Vec<NetFlag> = Vec::new();
    for part in values.iter().flat_map(|v| v.split(',')) {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (name, args) = match part.split_once(':') {
            Some((name, args)) => (Some(name), args),
            None if part.contains('=') => (None, part),
            None => (Some(part), ""),
        };
        if let Some(name) = name {
            nets.push((name.to_string(), Vec::new()));
        }
        let Some((_, list)) = nets.last_mut() else {
            return Err(refuse!(
                "--net={part}: a network name must come before its arguments"
            ));
        };
        for kv in args.split(';').filter(|kv| !kv.is_empty()) {
            let Some((k, v)) = kv.split_once('=') else {
                return Err(refuse!("--net: {kv:?} is not a K=V argument"));
            };
            let ok = |s: &str| !s.is_empty() && !s.contains(|c: char| c.is_control() || c == ';');
            if !ok(k) || !ok(v) || k.contains('=') {
                return Err(refuse!("--net: {kv:?} is not a valid CNI argument"));
            }
            list.push((k.to_string(), v.to_string()));
        }
    }
    Ok(nets)
}

/// What a `--port` forwards to: an app's named port, or a port number of
/// the pod's (`/tcp` unless `/udp`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortTarget {
    Named(String),
    Number { port: u16, protocol: String },
}

/// One `--port`: a host port (on one host address, or all) and what it
/// forwards to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRequest {
    pub target: PortTarget,
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
}

const PORT_FORMS: &str = "expected NAME:[HOSTIP:]HOSTPORT (an app's named port), [HOSTIP:]HOSTPORT:PODPORT[/tcp|/udp] or PODPORT[/tcp|/udp] (a free host port)";

fn port_number(flag: &str, text: &str) -> Result<u16, OpsError> {
    text.parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| refuse!("--port={flag}: {text:?} is not a port (1-65535)"))
}

/// `[HOSTIP:]HOSTPORT` as the flags write it, an IPv6 address in brackets.
pub(crate) fn host_and_port(ip: Option<IpAddr>, port: u64) -> String {
    match ip {
        Some(IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
        Some(ip) => format!("{ip}:{port}"),
        None => port.to_string(),
    }
}

/// `PODPORT[/tcp|/udp]`: the port and its protocol (tcp unless said).
fn pod_port(flag: &str, text: &str) -> Result<(u16, String), OpsError> {
    let (port, protocol) = match text.split_once('/') {
        Some((p, proto @ ("tcp" | "udp"))) => (p, proto),
        Some((_, proto)) => {
            return Err(refuse!("--port={flag}: protocol {proto:?}: use tcp or udp"));
        }
        None => (text, "tcp"),
    };
    Ok((port_number(flag, port)?, protocol.to_string()))
}

fn host_ip(flag: &str, text: &str) -> Result<IpAddr, OpsError> {
    text.strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text)
        .parse()
        .map_err(|_| refuse!("--port={flag}: {text:?} is not an IP address"))
}

impl PortRequest {
    /// `NAME:[HOSTIP:]HOSTPORT` (rkt's), `[HOSTIP:]HOSTPORT:PODPORT[/PROTO]`
    /// or `PODPORT[/PROTO]` (podman's `-p`; a free host port is chosen,
    /// `host_port` 0 until then); an IPv6 host address is written in
    /// brackets. A first part that is a number or an address makes the
    /// numeric form (a port named by digits only is read as a number).
    pub fn parse(flag: &str) -> Result<PortRequest, OpsError> {
        let Some((first, rest)) = flag.split_once(':') else {
            let (port, protocol) = pod_port(flag, flag)?;
            return Ok(PortRequest {
                target: PortTarget::Number { port, protocol },
                host_ip: None,
                host_port: 0,
            });
        };
        let numeric = first.parse::<u16>().is_ok() || first.starts_with('[') || first.contains('.');
        if !numeric {
            skiff_spec::AcName::new(first)
                .map_err(|_| refuse!("--port={flag}: {first:?} is no port name; {PORT_FORMS}"))?;
            let (host_ip, host_port) = match rest.rsplit_once(':') {
                Some((ip, port)) => (Some(host_ip(flag, ip)?), port),
                None => (None, rest),
            };
            return Ok(PortRequest {
                target: PortTarget::Named(first.to_string()),
                host_ip,
                host_port: port_number(flag, host_port)?,
            });
        }
        let (host, pod) = flag
            .rsplit_once(':')
            .ok_or_else(|| refuse!("--port={flag}: {PORT_FORMS}"))?;
        if pod.contains(']') {
            return Err(refuse!(
                "--port={flag}: an address needs ports: {PORT_FORMS}"
            ));
        }
        let (port, protocol) = pod_port(flag, pod)?;
        let (host_ip, host_port) = match host.rsplit_once(':') {
            Some((ip, port)) => (Some(host_ip(flag, ip)?), port),
            None => (None, host),
        };
        Ok(PortRequest {
            target: PortTarget::Number { port, protocol },
            host_ip,
            host_port: port_number(flag, host_port)?,
        })
    }

    /// Whether the host port is still to be chosen (`-p PODPORT`).
    pub fn host_port_chosen_later(&self) -> bool {
        self.host_port == 0
    }

    /// Chooses a free host port (what the kernel gives a socket bound to
    /// port 0 on the host address, then closed) unless one was asked for
    /// or it is in `taken`. Another program may bind it before the pod's
    /// forward does, as with podman: the forward then fails, naming it.
    fn choose_host_port(&mut self, taken: &[PortMapping]) -> Result<(), OpsError> {
        if !self.host_port_chosen_later() {
            return Ok(());
        }
        let PortTarget::Number { protocol, .. } = &self.target else {
            return Ok(());
        };
        let ip = self
            .host_ip
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        let flag = self.flag();
        for _ in 0..16 {
            let addr = std::net::SocketAddr::new(ip, 0);
            let bound = if protocol == "udp" {
                std::net::UdpSocket::bind(addr).and_then(|s| s.local_addr())
            } else {
                std::net::TcpListener::bind(addr).and_then(|s| s.local_addr())
            };
            let port = bound
                .map_err(|e| refuse!("--port={flag}: no free host port on {ip}: {e}"))?
                .port();
            if !taken
                .iter()
                .any(|p| p.host_port == port && &p.protocol == protocol)
            {
                self.host_port = port;
                return Ok(());
            }
        }
        Err(refuse!("--port={flag}: no free host port on {ip}"))
    }

    /// The request as its flag (for messages).
    pub fn flag(&self) -> String {
        if let (0, PortTarget::Number { port, protocol }) = (self.host_port, &self.target) {
            return format!("{port}/{protocol}");
        }
        let host = host_and_port(self.host_ip, self.host_port.into());
        match &self.target {
            PortTarget::Named(name) => format!("{name}:{host}"),
            PortTarget::Number { port, protocol } => format!("{host}:{port}/{protocol}"),
        }
    }

    /// The port mapping and the pod manifest's exposed port, the named
    /// port looked up in the apps' `manifests`.
    fn resolve(
        &self,
        manifests: &[&ImageManifest],
    ) -> Result<(PortMapping, ExposedPort), OpsError> {
        let flag = self.flag();
        let (name, container_port, protocol, pod_port) = match &self.target {
            PortTarget::Number { port, protocol } => {
                let name = skiff_spec::AcName::new(&format!("{protocol}-{port}"))
                    .map_err(|e| refuse!("--port={flag}: {e}"))?;
                let pod_port = skiff_spec::image::Port {
                    name: name.clone(),
                    protocol: protocol.clone(),
                    port: u64::from(*port),
                    count: 1,
                    socket_activated: false,
                };
                (name, *port, protocol.clone(), Some(pod_port))
            }
            PortTarget::Named(name) => {
                let port = manifests
                    .iter()
                    .filter_map(|m| m.app.as_ref())
                    .flat_map(|a| a.ports.iter())
                    .find(|p| p.name.as_str() == name)
                    .ok_or_else(|| {
                        let known: Vec<String> = manifests
                            .iter()
                            .filter_map(|m| m.app.as_ref())
                            .flat_map(|a| a.ports.iter().map(|p| p.name.as_str().to_string()))
                            .collect();
                        refuse!(
                            "--port={flag}: no app has a port named {name:?} (ports: {}; or forward a number: HOSTPORT:PODPORT)",
                            if known.is_empty() {
                                "none".to_string()
                            } else {
                                known.join(", ")
                            }
                        )
                    })?;
                let container_port = u16::try_from(port.port).map_err(|_| {
                    refuse!(
                        "--port={flag}: the image's port {} is out of range",
                        port.port
                    )
                })?;
                (
                    port.name.clone(),
                    container_port,
                    port.protocol.clone(),
                    None,
                )
            }
        };
        let mapping = PortMapping {
            host_port: self.host_port,
            container_port,
            protocol,
            host_ip: self.host_ip.map(|ip| ip.to_string()),
        };
        let exposed = ExposedPort {
            name,
            host_port: u64::from(self.host_port),
            host_ip: self.host_ip,
            pod_port,
        };
        Ok((mapping, exposed))
    }
}

/// Resolves the flags for a pod of `flavor` whose apps come from
/// `manifests`; also returns the pod manifest's exposed ports.
pub fn resolve(
    ctx: &Context,
    args: &NetOptions,
    flavor: skiff_pod::Flavor,
    manifests: &[&ImageManifest],
) -> Result<(PodNet, Vec<ExposedPort>), OpsError> {
    let mut nets = parse_nets(&args.net)?;
    if nets.is_empty() {
        let default = if flavor == skiff_pod::Flavor::Fly {
            "host"
        } else {
            "default"
        };
        nets.push((default.to_string(), Vec::new()));
    }
    let special = nets
        .iter()
        .find(|(n, _)| n == "host" || n == "none")
        .map(|(n, _)| n.clone());
    let mode = match special.as_deref() {
        Some(s) if nets.len() > 1 => {
            return Err(refuse!("--net={s} cannot be combined with other networks"));
        }
        Some(_) if nets.iter().any(|(_, a)| !a.is_empty()) => {
            return Err(refuse!("--net=host and --net=none take no arguments"));
        }
        Some("host") => NetMode::Host,
        Some(_) => NetMode::None,
        None => NetMode::Private,
    };
    // An ordinary user's default network is a user-mode one (pasta): CNI
    // bridges, addresses and NAT rules are root's.
    let rootless = !crate::rootless::is_host_root();
    let (mode, host_loopback) = match mode {
        NetMode::Private if rootless => (NetMode::User, user_network(&nets)?),
        other => (other, false),
    };
    if flavor == skiff_pod::Flavor::Fly && mode != NetMode::Host {
        return Err(refuse!(
            "the fly flavor uses the host's network: use --net=host (or no --net)"
        ));
    }
    if flavor == skiff_pod::Flavor::Kvm && mode == NetMode::Host {
        return Err(refuse!(
            "a VM cannot share the host's network (--net=host): use --net=default, a named network or none"
        ));
    }
    let dirs = ctx.net_dirs();
    let mut networks = Vec::new();
    if mode == NetMode::Private {
        for (i, (name, cni_args)) in nets.into_iter().enumerate() {
            if networks
                .iter()
                .any(|a: &skiff_net::Attachment| a.name == name)
            {
                return Err(refuse!("--net: network {name:?} is given twice"));
            }
            let config = config::load(&name, &dirs)?;
            networks.push(skiff_net::attach::attachment(
                &config,
                &format!("eth{i}"),
                cni_args,
            ));
        }
    }
    let requests = args
        .ports
        .iter()
        .map(|flag| PortRequest::parse(flag))
        .chain(args.manifest_ports.iter().cloned().map(Ok))
        .collect::<Result<Vec<_>, _>>()?;
    if mode != NetMode::User && !requests.is_empty() {
        let forwards = networks
            .iter()
            .any(|a| skiff_net::attach::forwards_ports(&a.config));
        if !forwards {
            return Err(refuse!(
                "--port needs a network with the portmap plugin (\"capabilities\": {{\"portMappings\": true}}); \
                 the default network has one, host, none and default-restricted do not"
            ));
        }
    }
    // Host ports asked for first: a free one is then chosen among the rest.
    let (later, asked): (Vec<_>, Vec<_>) = requests
        .into_iter()
        .partition(PortRequest::host_port_chosen_later);
    let mut ports = Vec::new();
    let mut exposed = Vec::new();
    for mut request in asked.into_iter().chain(later) {
        // Before a port is chosen, the flag is the pod's port (`80/tcp`).
        let pod_port = request.host_port_chosen_later().then(|| request.flag());
        request.choose_host_port(&ports)?;
        if let Some(pod_port) = pod_port {
            tracing::info!(
                "forwarding host port {} to the pod's port {pod_port}",
                request.host_port
            );
        }
        let flag = request.flag();
        let (mapping, e) = request.resolve(manifests)?;
        if ports.iter().any(|p: &PortMapping| {
            p.host_port == mapping.host_port && p.protocol == mapping.protocol
        }) {
            return Err(refuse!(
                "--port={flag}: host port {} is forwarded twice",
                mapping.host_port
            ));
        }
        ports.push(mapping);
        exposed.push(e);
    }
    if mode == NetMode::User {
        check_user_ports(&ports)?;
    }
    Ok((
        PodNet {
            mode,
            networks,
            ports,
            cni_path: skiff_net::cni_path(),
            dns: dns(args)?,
            hosts_entries: args
                .hosts_entry
                .iter()
                .filter(|e| *e != "host")
                .map(|e| files::parse_hosts_entry(e).map_err(refused))
                .collect::<Result<_, OpsError>>()?,
            hosts_from_host: args.hosts_entry.iter().any(|e| e == "host"),
            host_loopback,
        },
        exposed,
    ))
}

/// An ordinary user's `--net` naming networks: only `default`, the
/// user-mode network, with its one argument `host-loopback=true|false`
/// (whether the pod reaches the host's loopback through its gateway
/// address; off by default, as in rootless podman and Docker). Whether the
/// network is there is asked first.
fn user_network(nets: &[NetFlag]) -> Result<bool, OpsError> {
    let [(name, args)] = nets else {
        return Err(refuse!("{NAMED_NETWORKS}"));
    };
    if name != "default" {
        return Err(refuse!("{NAMED_NETWORKS}"));
    }
    let mut host_loopback = false;
    for (k, v) in args {
        host_loopback = match (k.as_str(), v.as_str()) {
            ("host-loopback", "true") => true,
            ("host-loopback", "false") => false,
            _ => {
                return Err(refuse!(
                    "--net=default:{k}={v}: an ordinary user's default network takes only host-loopback=true or host-loopback=false"
                ));
            }
        };
    }
    if skiff_stage1::find_in_path(USER_NETWORK_HELPER).is_none() {
        return Err(refuse!(
            "an ordinary user's default network needs pasta, which is not installed: install the passt package (apt-get install passt), or run with --net=none"
        ));
    }
    Ok(host_loopback)
}

const NAMED_NETWORKS: &str = "an ordinary user's pods use the default network (user-mode, through pasta) or none: named CNI networks need root";

/// The program of an ordinary user's default network.
pub const USER_NETWORK_HELPER: &str = "pasta";

/// Ports an ordinary user forwards are ports the user may bind on the host:
/// at or above the host's `net.ipv4.ip_unprivileged_port_start` (1024
/// unless changed).
fn check_user_ports(ports: &[PortMapping]) -> Result<(), OpsError> {
    let first = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|t| t.trim().parse::<u16>().ok())
        .unwrap_or(1024);
    if let Some(p) = ports.iter().find(|p| p.host_port < first) {
        return Err(refuse!(
            "--port: host port {} is below {first}, which only root may bind on this host: forward a port of {first} or above",
            p.host_port
        ));
    }
    Ok(())
}

fn dns(args: &NetOptions) -> Result<Dns, OpsError> {
    for d in &args.dns_search {
        files::check_domain(d).map_err(|e| refuse!("--dns-search: {e}"))?;
    }
    for o in &args.dns_opt {
        files::check_option(o).map_err(|e| refuse!("--dns-opt: {e}"))?;
    }
    if let Some(d) = &args.dns_domain {
        files::check_domain(d).map_err(|e| refuse!("--dns-domain: {e}"))?;
    }
    let explicit =
        !args.dns_search.is_empty() || !args.dns_opt.is_empty() || args.dns_domain.is_some();
    let special = args.dns.iter().find(|d| *d == "host" || *d == "none");
    let mode = match special.map(String::as_str) {
        Some(s) if args.dns.len() > 1 || explicit => {
            return Err(refuse!(
                "--dns={s} cannot be combined with other --dns, --dns-search, --dns-opt or --dns-domain values"
            ));
        }
        Some("host") => DnsMode::Host,
        Some(_) => DnsMode::None,
        None if args.dns.is_empty() && !explicit => DnsMode::Default,
        None => DnsMode::Explicit,
    };
    let mut servers = Vec::new();
    if mode == DnsMode::Explicit {
        for d in &args.dns {
            let ip: IpAddr = d
                .parse()
                .map_err(|_| refuse!("--dns={d}: not an IP address, host or none"))?;
            servers.push(ip.to_string());
        }
    }
    Ok(Dns {
        mode,
        servers,
        search: args.dns_search.clone(),
        options: args.dns_opt.clone(),
        domain: args.dns_domain.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn a_pod_port_alone_gets_a_free_host_port() {
        let mut udp = PortRequest::parse("53/udp").unwrap();
        assert!(udp.host_port_chosen_later());
        assert_eq!(udp.flag(), "53/udp");
        udp.choose_host_port(&[]).unwrap();
        assert_ne!(udp.host_port, 0);
        let mut tcp = PortRequest::parse("80").unwrap();
        tcp.choose_host_port(&[]).unwrap();
        assert_eq!(
            tcp.target,
            PortTarget::Number {
                port: 80,
                protocol: "tcp".into()
            }
        );
        // Chosen ports are free: something else can bind them now.
        assert!(std::net::TcpListener::bind(("0.0.0.0", tcp.host_port)).is_ok());
        for bad in ["0", "80/sctp", "http"] {
            assert!(PortRequest::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn net_lists_with_cni_args() {
        let nets = parse_nets(&s(&["default:IP=172.16.28.9;X=1,mynet", "other:A=b,C=d"])).unwrap();
        assert_eq!(nets.len(), 3);
        assert_eq!(nets[0].0, "default");
        assert_eq!(
            nets[0].1,
            vec![
                ("IP".into(), "172.16.28.9".into()),
                ("X".into(), "1".into())
            ]
        );
        assert_eq!(nets[1], ("mynet".into(), vec![]));
        assert_eq!(nets[2].1.len(), 2);
        assert!(parse_nets(&s(&["A=b"])).is_err());
        assert!(parse_nets(&s(&["n:novalue"])).is_err());
    }

    #[test]
    fn dns_flags() {
        let mut a = NetOptions::default();
        assert_eq!(dns(&a).unwrap().mode, DnsMode::Default);
        a.dns = s(&["10.0.0.53"]);
        a.dns_search = s(&["corp.example"]);
        let d = dns(&a).unwrap();
        assert_eq!((d.mode, d.servers), (DnsMode::Explicit, s(&["10.0.0.53"])));
        a.dns = s(&["host", "1.1.1.1"]);
        assert!(dns(&a).is_err());
        a.dns = s(&["dns.example"]);
        assert!(dns(&a).is_err());
        a.dns = s(&["1.1.1.1"]);
        a.dns_search = s(&["bad domain"]);
        assert!(dns(&a).is_err());
    }
}
