//! Pod networks for the VM. CNI sets the pod's network namespace up as for
//! `ns` (`eth<N>` with its addresses). In that namespace each `eth<N>` gets
//! a tap device `tap<N>` for QEMU, and tc redirects every frame arriving on
//! one to the other, so the guest's virtio-net card — with `eth<N>`'s MAC
//! and addresses — is on the pod's network as `eth<N>` would be (as Kata
//! Containers do). CNI's view is untouched: DEL works as for any pod.

use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::process::Command;

use serde::{Deserialize, Serialize};
use skiff_net::Attachment;

use crate::Stage1Error;
use crate::setup_err;

/// One network card of the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestInterface {
    /// The pod-side CNI interface it stands for (`eth0`…).
    pub name: String,
    pub mac: String,
    /// IPv4 addresses with prefix lengths.
    pub addresses: Vec<String>,
}

/// The guest's network: its cards and default gateway.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestNetwork {
    pub interfaces: Vec<GuestInterface>,
    pub gateway: Option<Ipv4Addr>,
}

/// What the guest takes over from the pod's CNI results.
pub fn guest_network(networks: &[Attachment]) -> Result<GuestNetwork, Stage1Error> {
    let mut net = GuestNetwork::default();
    for a in networks {
        let (mac, addresses) = a.pod_interface().ok_or_else(|| {
            Stage1Error::Config(format!(
                "network '{}': its CNI result names no pod interface {} with a MAC address \
                 (the kvm flavor needs one to give the VM)",
                a.name, a.ifname
            ))
        })?;
        net.interfaces.push(GuestInterface {
            name: a.ifname.clone(),
            mac,
            addresses,
        });
        if net.gateway.is_none() {
            net.gateway = a.gateway().and_then(|g| match g {
                std::net::IpAddr::V4(v4) => Some(v4),
                std::net::IpAddr::V6(_) => None,
            });
        }
    }
    Ok(net)
}

fn run(args: &[&str]) -> Result<(), Stage1Error> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(setup_err(format!("run {}", args[0])))?;
    if !out.status.success() {
        return Err(Stage1Error::Config(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// In the pod's network namespace: `tap<N>` for each interface, joined to
/// it by tc redirects both ways. Returns the QEMU arguments of the cards.
pub fn connect_taps(net: &GuestNetwork) -> Result<Vec<String>, Stage1Error> {
    let mut args = Vec::new();
    for (i, card) in net.interfaces.iter().enumerate() {
        let tap = format!("tap{i}");
        let eth = card.name.as_str();
        run(&["ip", "tuntap", "add", "dev", &tap, "mode", "tap"])?;
        run(&["ip", "link", "set", &tap, "up"])?;
        for (from, to) in [(eth, tap.as_str()), (tap.as_str(), eth)] {
            run(&["tc", "qdisc", "add", "dev", from, "ingress"])?;
            run(&[
                "tc", "filter", "add", "dev", from, "parent", "ffff:", "protocol", "all", "u32",
                "match", "u8", "0", "0", "action", "mirred", "egress", "redirect", "dev", to,
            ])?;
        }
        args.push("-netdev".to_string());
        args.push(format!(
            "tap,id=net{i},ifname={tap},script=no,downscript=no"
        ));
        args.push("-device".to_string());
        args.push(format!("virtio-net-device,netdev=net{i},mac={}", card.mac));
    }
    Ok(args)
}

/// In the guest: loopback up, each card (found by its MAC) with its
/// addresses, the default route.
pub fn configure_guest(net: &GuestNetwork) -> Result<(), Stage1Error> {
    let sock = rustix::net::socket(
        rustix::net::AddressFamily::INET,
        rustix::net::SocketType::DGRAM,
        None,
    )
    .map_err(|e| setup_err("open a socket to configure the network")(e.into()))?;
    let io = |what: String| move |e: std::io::Error| setup_err(what)(e);
    skiff_net::ifreq::set_up(sock.as_fd(), "lo").map_err(io("bring lo up".into()))?;
    for card in &net.interfaces {
        let name = interface_with_mac(&card.mac).ok_or_else(|| {
            Stage1Error::Config(format!(
                "the VM has no network card with MAC {} (for {})",
                card.mac, card.name
            ))
        })?;
        for cidr in &card.addresses {
            let Some((addr, prefix)) = parse_ipv4_cidr(cidr) else {
                continue; // IPv6: not configured in the guest yet
            };
            skiff_net::ifreq::set_ipv4(sock.as_fd(), &name, addr, prefix)
                .map_err(io(format!("give {name} the address {cidr}")))?;
        }
        skiff_net::ifreq::set_up(sock.as_fd(), &name).map_err(io(format!("bring {name} up")))?;
    }
    if let Some(gw) = net.gateway {
        skiff_net::ifreq::add_default_route(sock.as_fd(), gw)
            .map_err(io(format!("add the default route via {gw}")))?;
    }
    Ok(())
}

/// `a.b.c.d/n` as an address and prefix length.
fn parse_ipv4_cidr(cidr: &str) -> Option<(Ipv4Addr, u8)> {
    let (addr, prefix) = cidr.split_once('/')?;
    let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32)?;
    Some((addr.parse().ok()?, prefix))
}

/// The guest interface whose hardware address is `mac`.
fn interface_with_mac(mac: &str) -> Option<String> {
    std::fs::read_dir("/sys/class/net")
        .ok()?
        .filter_map(|e| e.ok())
        .find(|e| {
            std::fs::read_to_string(e.path().join("address"))
                .is_ok_and(|a| a.trim().eq_ignore_ascii_case(mac))
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attachment(result: serde_json::Value) -> Attachment {
        Attachment {
            name: "default".into(),
            ifname: "eth0".into(),
            args: Vec::new(),
            config: serde_json::json!({}),
            result: Some(result),
            builtin: false,
            chained: false,
        }
    }

    #[test]
    fn the_guest_takes_over_the_pod_interface_and_gateway() {
        let a = attachment(serde_json::json!({
            "interfaces": [
                {"name": "skiff0", "mac": "aa:aa:aa:aa:aa:aa"},
                {"name": "veth1", "mac": "bb:bb:bb:bb:bb:bb"},
                {"name": "eth0", "mac": "0a:58:ac:10:1c:05", "sandbox": "/run/skiff/netns/x"}
            ],
            "ips": [{"address": "172.16.28.5/24", "gateway": "172.16.28.1", "interface": 2}]
        }));
        let net = guest_network(&[a]).unwrap();
        assert_eq!(
            net.interfaces,
            vec![GuestInterface {
                name: "eth0".into(),
                mac: "0a:58:ac:10:1c:05".into(),
                addresses: vec!["172.16.28.5/24".into()],
            }]
        );
        assert_eq!(net.gateway, Some(Ipv4Addr::new(172, 16, 28, 1)));
        let bare = attachment(serde_json::json!({"ips": []}));
        let err = guest_network(&[bare]).unwrap_err().to_string();
        assert!(err.contains("names no pod interface eth0"), "{err}");
    }

    #[test]
    fn cidrs_parse_or_are_skipped() {
        assert_eq!(
            parse_ipv4_cidr("10.0.0.2/24"),
            Some((Ipv4Addr::new(10, 0, 0, 2), 24))
        );
        assert_eq!(parse_ipv4_cidr("fd00::2/64"), None);
        assert_eq!(parse_ipv4_cidr("10.0.0.2/33"), None);
    }
}
