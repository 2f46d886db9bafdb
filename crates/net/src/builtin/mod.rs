//! The built-in networks (`default`, `default-restricted`) set up in
//! process: what the CNI bridge plugin with host-local addresses does —
//! the bridge with the gateway address, a veth pair into the pod with its
//! address and routes, hairpin mode, forwarding, and for `default` NAT —
//! by netlink instead of two plugin processes and an iptables chain per
//! pod. The CNI result is the same as the plugins', and is kept the same
//! way, so what reads results (status, the kvm flavor, CNI tools) sees no
//! difference. Named networks keep running the real CNI plugins; so do
//! the plugins chained after the bridge (portmap, for a pod that forwards
//! ports).
//!
//! * [`netlink`]: the netlink socket and message encoding.
//! * [`rtnl`]: links, addresses, routes.
//! * [`nft`]: the network-wide masquerade rule.
//! * [`ipam`]: leases in host-local's format.
//! * [`subnet`]: subnet arithmetic.

pub mod ipam;
pub mod netlink;
pub mod nft;
pub mod rtnl;
pub mod subnet;

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::NetError;
use crate::attach::Attachment;
use ipam::Leases;
use rtnl::Rtnl;
use subnet::Subnet;

/// What the built-in bridge plugin object of a conflist asks for.
#[derive(Debug, Clone, PartialEq)]
struct Bridge {
    network: String,
    bridge: String,
    /// One subnet per range set, in order (the range's index is its ID).
    subnets: Vec<Subnet>,
    default_route: bool,
    masquerade: bool,
    /// Neither NAT nor a default route: nothing is forwarded to or from
    /// the bridge (`default-restricted`).
    isolated: bool,
    hairpin: bool,
    data_dir: PathBuf,
    cni_version: String,
}

impl Bridge {
    fn of(a: &Attachment) -> Result<Bridge, NetError> {
        let bad = |problem: &str| NetError::Config {
            file: format!("built-in network '{}'", a.name),
            problem: problem.to_string(),
        };
        let plugin = a
            .config
            .get("plugins")
            .and_then(|p| p.get(0))
            .filter(|p| p.get("type").and_then(Value::as_str) == Some("bridge"))
            .ok_or_else(|| bad("its first plugin is not a bridge"))?;
        let flag = |key: &str| plugin.get(key).and_then(Value::as_bool) == Some(true);
        let ipam = plugin
            .get("ipam")
            .filter(|i| i.get("type").and_then(Value::as_str) == Some("host-local"))
            .ok_or_else(|| bad("its addresses are not host-local"))?;
        let subnets = ipam
            .get("ranges")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|set| {
                set.get(0)
                    .and_then(|r| r.get("subnet"))
                    .and_then(Value::as_str)
                    .and_then(Subnet::parse)
                    .ok_or_else(|| bad("a range has no valid subnet"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if subnets.is_empty() {
            return Err(bad("no address range"));
        }
        let name = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
        let bridge = name(plugin.get("bridge")).ok_or_else(|| bad("no bridge name"))?;
        if bridge.is_empty() || bridge.len() > 15 || bridge.contains(['/', ' ', '\0']) {
            return Err(bad("bad bridge name"));
        }
        Ok(Bridge {
            network: a.name.clone(),
            bridge,
            subnets,
            default_route: flag("isDefaultGateway"),
            masquerade: flag("ipMasq"),
            isolated: !flag("isDefaultGateway") && !flag("ipMasq"),
            hairpin: flag("hairpinMode"),
            data_dir: name(ipam.get("dataDir"))
                .map(PathBuf::from)
                .ok_or_else(|| bad("no lease directory"))?,
            cni_version: name(a.config.get("cniVersion")).unwrap_or_else(|| "1.0.0".into()),
        })
    }
}

/// ADDs built-in network `a` for pod `id` in the namespace at `netns`;
/// returns the CNI result. On failure, [`del`] undoes what was done.
pub fn add(a: &Attachment, id: &str, netns: &Path) -> Result<Value, NetError> {
    let net = Bridge::of(a)?;
    let failed = |step: &str| fail(&net.network, step);
    let ns = File::open(netns).map_err(failed(&format!("open {}", netns.display())))?;
    let leases =
        Leases::lock(&net.data_dir, &net.network).map_err(failed("lock the lease pool"))?;
    let mut ips = Vec::new();
    for (range, subnet) in net.subnets.iter().enumerate() {
        let ip = leases
            .reserve(range, subnet, id, &a.ifname)
            .map_err(failed(&format!("lease an address of {subnet}")))?;
        ips.push((ip, *subnet));
    }
    drop(leases);
    if net.masquerade {
        for subnet in &net.subnets {
            nft::masquerade(&net.network, &net.bridge, subnet).map_err(failed(&format!(
                "add the NAT rule for {subnet} (nf_tables)"
            )))?;
        }
    }
    if net.isolated {
        nft::isolate(&net.network, &net.bridge).map_err(failed(
            "add the rule that keeps it from forwarding (nf_tables)",
        ))?;
    }
    let mut host = Rtnl::here().map_err(failed("open netlink"))?;
    host.add_bridge(&net.bridge)
        .map_err(failed(&format!("create bridge {}", net.bridge)))?;
    let bridge = host
        .link(&net.bridge)
        .map_err(failed(&format!("find bridge {}", net.bridge)))?
        .ok_or_else(|| failed("find the bridge")(std::io::ErrorKind::NotFound.into()))?;
    if bridge.kind != "bridge" {
        return Err(NetError::Config {
            file: format!("built-in network '{}'", net.network),
            problem: format!(
                "{} exists and is not a bridge (it is a {} device): remove or rename it",
                net.bridge,
                if bridge.kind.is_empty() {
                    "physical"
                } else {
                    &bridge.kind
                }
            ),
        });
    }
    for subnet in &net.subnets {
        let gateway = gateway(subnet)?;
        host.add_address(bridge.index, gateway, subnet.prefix)
            .map_err(failed(&format!("give {} address {gateway}", net.bridge)))?;
    }
    host.set_up(bridge.index)
        .map_err(failed(&format!("bring {} up", net.bridge)))?;
    if net.subnets.iter().any(|s| s.network.is_ipv4()) {
        enable_forwarding().map_err(failed("turn IPv4 forwarding on"))?;
    }
    let (veth_name, veth) = add_veth(&mut host, bridge.index, &a.ifname, &ns)
        .map_err(failed("create the pod's veth pair"))?;
    if net.hairpin {
        host.set_hairpin(veth.index)
            .map_err(failed(&format!("set hairpin mode on {veth_name}")))?;
    }
    let mut pod = Rtnl::within(ns.as_fd()).map_err(failed("open netlink in the pod"))?;
    let inside = pod
        .link(&a.ifname)
        .map_err(failed(&format!("find {} in the pod", a.ifname)))?
        .ok_or_else(|| failed(&a.ifname)(std::io::ErrorKind::NotFound.into()))?;
    pod.set_up(inside.index)
        .map_err(failed(&format!("bring {} up", a.ifname)))?;
    let mut routes = Vec::new();
    for (ip, subnet) in &ips {
        pod.add_address(inside.index, *ip, subnet.prefix)
            .map_err(failed(&format!("give {} address {ip}", a.ifname)))?;
        if net.default_route {
            let any = match ip {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            };
            let gw = gateway(subnet)?;
            pod.add_route(any, 0, gw, inside.index)
                .map_err(failed(&format!("add the default route via {gw}")))?;
            routes.push(json!({"dst": format!("{any}/0"), "gw": gw.to_string()}));
        }
    }
    let mut result = json!({
        "cniVersion": net.cni_version,
        "interfaces": [
            {"name": net.bridge, "mac": bridge.mac},
            {"name": veth_name, "mac": veth.mac},
            {"name": a.ifname, "mac": inside.mac, "sandbox": netns.display().to_string()},
        ],
        "ips": ips.iter().map(|(ip, subnet)| json!({
            "interface": 2,
            "address": format!("{ip}/{}", subnet.prefix),
            "gateway": subnet.gateway().map(|g| g.to_string()),
        })).collect::<Vec<_>>(),
        "dns": {},
    });
    if !routes.is_empty() {
        result["routes"] = Value::Array(routes);
    }
    Ok(result)
}

/// For `map_err`: step `step` of network `network` failed.
fn fail(network: &str, step: &str) -> impl FnOnce(std::io::Error) -> NetError + use<> {
    let step = format!("network '{network}': {step}");
    move |e| crate::io_err(step)(e).into()
}

fn gateway(subnet: &Subnet) -> Result<IpAddr, NetError> {
    subnet.gateway().ok_or_else(|| NetError::Config {
        file: "built-in network".into(),
        problem: format!("{subnet} has no gateway address"),
    })
}

/// Creates the veth pair with a fresh host-side name (`veth` and 8 hex
/// digits, as the bridge plugin names them); returns its name and link.
fn add_veth(
    host: &mut Rtnl,
    bridge: u32,
    ifname: &str,
    ns: &File,
) -> std::io::Result<(String, rtnl::Link)> {
    let mut tries = 0;
    loop {
        let mut random = [0u8; 4];
        rustix::rand::getrandom(&mut random, rustix::rand::GetRandomFlags::empty())?;
        let name = format!(
            "veth{}",
            u32::from_ne_bytes(random)
                .to_be_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        match host.add_veth(&name, bridge, ifname, ns.as_fd()) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) && tries < 3 => {
                // The pod side may be what exists: then nothing helps.
                tries += 1;
                continue;
            }
            Err(e) => return Err(e),
            Ok(()) => {}
        }
        let link = host
            .link(&name)?
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))?;
        return Ok((name, link));
    }
}

/// `net.ipv4.ip_forward=1`, as the bridge plugin sets for a gateway
/// (written only when it is off).
fn enable_forwarding() -> std::io::Result<()> {
    const PATH: &str = "/proc/sys/net/ipv4/ip_forward";
    if std::fs::read_to_string(PATH)?.trim() != "1" {
        std::fs::write(PATH, "1")?;
    }
    Ok(())
}

/// DELs built-in network `a` of pod `id`: cuts the pod off the bridge and
/// releases its leases. What is already gone is not an error. The
/// network's rules stay, like its bridge, when the last pod goes: they
/// match only the bridge's own traffic, and deleting a base chain waits
/// for an RCU grace period (10–30 ms measured here) that every one-off
/// pod would pay.
pub fn del(a: &Attachment, id: &str) -> Result<(), NetError> {
    let net = Bridge::of(a)?;
    let failed = |step: &str| fail(&net.network, step);
    sever(a).map_err(failed("cut the pod off the bridge"))?;
    Leases::lock(&net.data_dir, &net.network)
        .and_then(|leases| leases.release(id, &a.ifname))
        .map_err(failed("release the pod's addresses"))
}

/// Sets the pod's host-side veth down before its leases go back to the
/// pool. The pair goes with the namespace when stage1 removes it, but
/// whatever holds the namespace open (an `nsenter` session) would keep it
/// on the bridge — with the pod's address — after the lease went to
/// another pod. Nothing inside the pod is trusted for this: a pod with
/// `CAP_NET_ADMIN` can rename its interface, put a decoy in its place or
/// move its address; the host side is out of its reach, and a bridge
/// neither forwards to nor takes from a port that is down. (Deleting the
/// pair instead would wait for the kernel's RCU grace periods, ~45 ms per
/// pod measured.) The link is the pod's only if its name and hardware
/// address are the ones recorded at ADD: a name reused since by another
/// pod's pair is left alone.
fn sever(a: &Attachment) -> std::io::Result<()> {
    let Some(veth) = a.result.as_ref().and_then(|r| r.get("interfaces")?.get(1)) else {
        return Ok(());
    };
    let (Some(name), Some(mac)) = (
        veth.get("name")
            .and_then(Value::as_str)
            .filter(|n| is_our_veth(n)),
        veth.get("mac").and_then(Value::as_str),
    ) else {
        return Ok(());
    };
    let mut host = Rtnl::here()?;
    match host.link(name)? {
        Some(link) if link.kind == "veth" && link.mac.eq_ignore_ascii_case(mac) => {
            host.set_down(link.index)
        }
        _ => Ok(()),
    }
}

/// Whether `name` is a host-side veth as [`add_veth`] names them.
fn is_our_veth(name: &str) -> bool {
    name.len() == 12 && name.starts_with("veth") && name[4..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// CHECKs built-in network `a`: the pod holds its leases and its
/// interface is in its namespace.
pub fn check(a: &Attachment, id: &str, netns: &Path) -> Result<(), NetError> {
    let net = Bridge::of(a)?;
    let failed = |step: &str| fail(&net.network, step);
    let leases =
        Leases::lock(&net.data_dir, &net.network).map_err(failed("lock the lease pool"))?;
    let held = leases
        .held_by(id, &a.ifname)
        .map_err(failed("read the lease pool"))?;
    let missing = |what: String| failed(&what)(std::io::ErrorKind::NotFound.into());
    if held.len() < net.subnets.len() {
        return Err(missing(format!("the pod's lease of {}", a.ifname)));
    }
    let ns = File::open(netns).map_err(failed(&format!("open {}", netns.display())))?;
    let mut pod = Rtnl::within(ns.as_fd()).map_err(failed("open netlink in the pod"))?;
    pod.link(&a.ifname)
        .map_err(failed(&format!("find {}", a.ifname)))?
        .ok_or_else(|| missing(format!("{} in the pod", a.ifname)))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attach::attachment;
    use crate::config::{NetworkConfig, default_network, restricted_network};

    #[test]
    fn the_built_in_networks_parse_into_what_the_bridge_step_does() {
        let default = Bridge::of(&attachment(&default_network().unwrap(), "eth0", vec![])).unwrap();
        assert_eq!(default.network, "default");
        assert_eq!(default.bridge, "skiff0");
        assert!(default.default_route && default.masquerade && default.hairpin);
        assert_eq!(default.data_dir, Path::new(crate::config::DEFAULT_IPAM_DIR));
        assert!(default.subnets[0].network.is_ipv4());
        let restricted =
            Bridge::of(&attachment(&restricted_network().unwrap(), "eth0", vec![])).unwrap();
        assert_eq!(restricted.bridge, "skiff1");
        assert!(!restricted.default_route && !restricted.masquerade && restricted.hairpin);
    }

    #[test]
    fn a_configuration_the_bridge_step_cannot_do_is_refused() {
        let with = |plugin: Value| {
            let config = NetworkConfig::from_json(
                "test",
                json!({"cniVersion": "1.0.0", "name": "n", "plugins": [plugin]}),
            )
            .unwrap();
            Bridge::of(&attachment(&config, "eth0", vec![]))
        };
        let ipam = json!({"type": "host-local", "ranges": [[{"subnet": "10.9.0.0/24"}]], "dataDir": "/run/x"});
        assert!(with(json!({"type": "bridge", "bridge": "b0", "ipam": ipam})).is_ok());
        for bad in [
            json!({"type": "ptp", "ipam": ipam}),
            json!({"type": "bridge", "ipam": ipam}),
            json!({"type": "bridge", "bridge": "a/b", "ipam": ipam}),
            json!({"type": "bridge", "bridge": "much-too-long-name", "ipam": ipam}),
            json!({"type": "bridge", "bridge": "b0", "ipam": {"type": "dhcp"}}),
            json!({"type": "bridge", "bridge": "b0",
                   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.9.0.0"}]], "dataDir": "/x"}}),
            json!({"type": "bridge", "bridge": "b0",
                   "ipam": {"type": "host-local", "ranges": [], "dataDir": "/x"}}),
            json!({"type": "bridge", "bridge": "b0",
                   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.9.0.0/24"}]]}}),
        ] {
            assert!(with(bad.clone()).is_err(), "{bad}");
        }
    }
}
