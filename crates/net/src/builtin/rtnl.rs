//! The rtnetlink requests of the built-in networks: links (bridge, veth
//! pair, up, bridge port hairpin), addresses and routes.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::netlink::{Message, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, Netlink, attributes};

const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_SETLINK: u16 = 19;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;

const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MASTER: u16 = 10;
const IFLA_PROTINFO: u16 = 12;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const IFLA_BRPORT_MODE: u16 = 4;

const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;
const IFA_FLAGS: u16 = 8;
const IFA_F_NODAD: u32 = 0x02;

const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;

const AF_UNSPEC: u8 = 0;
const AF_INET: u8 = 2;
const AF_BRIDGE: u8 = 7;
const AF_INET6: u8 = 10;
const IFF_UP: u32 = 1;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_BOOT: u8 = 3;
const RTN_UNICAST: u8 = 1;

/// A link's index, hardware address and kind (`bridge`, `veth`; empty
/// for a physical device).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub mac: String,
    pub kind: String,
}

/// `struct ifinfomsg`: family, type, index, flags, change mask.
fn ifinfo(family: u8, index: u32, flags: u32, change: u32) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[0] = family;
    h[4..8].copy_from_slice(&index.to_ne_bytes());
    h[8..12].copy_from_slice(&flags.to_ne_bytes());
    h[12..16].copy_from_slice(&change.to_ne_bytes());
    h
}

fn family(ip: &IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => AF_INET,
        IpAddr::V6(_) => AF_INET6,
    }
}

fn octets(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// rtnetlink on one network namespace.
#[derive(Debug)]
pub struct Rtnl(Netlink);

impl Rtnl {
    /// In the calling thread's network namespace.
    pub fn here() -> io::Result<Rtnl> {
        Ok(Rtnl(Netlink::route()?))
    }

    /// In the network namespace `netns` (a socket opened there by a thread
    /// that enters it and ends).
    pub fn within(netns: BorrowedFd<'_>) -> io::Result<Rtnl> {
        let ns = netns.try_clone_to_owned()?;
        std::thread::spawn(move || {
            rustix::thread::move_into_link_name_space(
                std::os::fd::AsFd::as_fd(&ns),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )?;
            Rtnl::here()
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the netlink thread failed")))
    }

    /// The link named `name`, if there is one.
    pub fn link(&mut self, name: &str) -> io::Result<Option<Link>> {
        let mut m = Message::new(RTM_GETLINK, NLM_F_ACK, &ifinfo(AF_UNSPEC, 0, 0, 0));
        m.str(IFLA_IFNAME, name);
        let replies = match self.0.request(&m) {
            Ok(r) => r,
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some(reply) = replies.iter().find(|r| r.kind == RTM_NEWLINK) else {
            return Ok(None);
        };
        let index = reply
            .payload
            .get(4..8)
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| io::Error::other("netlink: short link answer"))?;
        let attrs = attributes(&reply.payload, 16);
        let mac = attrs
            .iter()
            .find(|(k, _)| *k == IFLA_ADDRESS)
            .map(|(_, v)| {
                v.iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(":")
            })
            .unwrap_or_default();
        let kind = attrs
            .iter()
            .find(|(k, _)| *k == IFLA_LINKINFO)
            .and_then(|(_, info)| {
                attributes(info, 0)
                    .into_iter()
                    .find(|(k, _)| *k == IFLA_INFO_KIND)
                    .map(|(_, v)| {
                        String::from_utf8_lossy(v)
                            .trim_end_matches('\0')
                            .to_string()
                    })
            })
            .unwrap_or_default();
        Ok(Some(Link { index, mac, kind }))
    }

    /// Creates bridge `name`, up. An existing one is not an error.
    pub fn add_bridge(&mut self, name: &str) -> io::Result<()> {
        let mut m = Message::new(
            RTM_NEWLINK,
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            &ifinfo(AF_UNSPEC, 0, IFF_UP, IFF_UP),
        );
        m.str(IFLA_IFNAME, name)
            .nest(IFLA_LINKINFO)
            .str(IFLA_INFO_KIND, "bridge")
            .end();
        match self.0.request(&m) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
            other => other.map(drop),
        }
    }

    /// Creates a veth pair: `host` here, up, on bridge `master`; `peer`
    /// (down) in the network namespace `netns`.
    pub fn add_veth(
        &mut self,
        host: &str,
        master: u32,
        peer: &str,
        netns: BorrowedFd<'_>,
    ) -> io::Result<()> {
        let mut m = Message::new(
            RTM_NEWLINK,
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            &ifinfo(AF_UNSPEC, 0, IFF_UP, IFF_UP),
        );
        m.str(IFLA_IFNAME, host)
            .u32(IFLA_MASTER, master)
            .nest(IFLA_LINKINFO)
            .str(IFLA_INFO_KIND, "veth")
            .nest(IFLA_INFO_DATA)
            .nest(VETH_INFO_PEER);
        // The peer's own ifinfomsg comes first inside VETH_INFO_PEER. It
        // is brought up from inside its namespace: up at creation, the
        // kernel refuses (ENOTCONN).
        let peer_header = ifinfo(AF_UNSPEC, 0, 0, 0);
        m.raw(&peer_header)
            .str(IFLA_IFNAME, peer)
            .u32(IFLA_NET_NS_FD, netns.as_raw_fd() as u32)
            .end()
            .end()
            .end();
        self.0.request(&m).map(drop)
    }

    /// Sets link `index` up.
    pub fn set_up(&mut self, index: u32) -> io::Result<()> {
        let m = Message::new(
            RTM_SETLINK,
            NLM_F_ACK,
            &ifinfo(AF_UNSPEC, index, IFF_UP, IFF_UP),
        );
        self.0.request(&m).map(drop)
    }

    /// Sets link `index` down; a link already gone is not an error.
    pub fn set_down(&mut self, index: u32) -> io::Result<()> {
        let m = Message::new(RTM_SETLINK, NLM_F_ACK, &ifinfo(AF_UNSPEC, index, 0, IFF_UP));
        match self.0.request(&m) {
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(()),
            other => other.map(drop),
        }
    }

    /// Turns hairpin mode on for bridge port `index` (a pod can reach
    /// itself through a forwarded port).
    pub fn set_hairpin(&mut self, index: u32) -> io::Result<()> {
        let mut m = Message::new(RTM_SETLINK, NLM_F_ACK, &ifinfo(AF_BRIDGE, index, 0, 0));
        m.nest(IFLA_PROTINFO).attr(IFLA_BRPORT_MODE, &[1]).end();
        self.0.request(&m).map(drop)
    }

    /// Adds `ip/prefix` to link `index`; an address already there is not
    /// an error. IPv6 addresses skip duplicate detection (the pool is the
    /// network's own).
    pub fn add_address(&mut self, index: u32, ip: IpAddr, prefix: u8) -> io::Result<()> {
        let mut h = [0u8; 8];
        h[0] = family(&ip);
        h[1] = prefix;
        h[4..8].copy_from_slice(&index.to_ne_bytes());
        let mut m = Message::new(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, &h);
        m.attr(IFA_LOCAL, &octets(&ip))
            .attr(IFA_ADDRESS, &octets(&ip));
        match ip {
            IpAddr::V4(v4) => {
                let host_bits = 32 - u32::from(prefix.min(32));
                let mask = u32::MAX.checked_shl(host_bits).unwrap_or(0);
                let broadcast = std::net::Ipv4Addr::from(u32::from(v4) | !mask);
                m.attr(IFA_BROADCAST, &broadcast.octets());
            }
            IpAddr::V6(_) => {
                m.u32(IFA_FLAGS, IFA_F_NODAD);
            }
        }
        match self.0.request(&m) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
            other => other.map(drop),
        }
    }

    /// Adds a route to `dst/prefix` via `gateway` out of link `index`.
    pub fn add_route(
        &mut self,
        dst: IpAddr,
        prefix: u8,
        gateway: IpAddr,
        index: u32,
    ) -> io::Result<()> {
        let mut h = [0u8; 12];
        h[0] = family(&dst);
        h[1] = prefix;
        h[4] = RT_TABLE_MAIN;
        h[5] = RTPROT_BOOT;
        h[7] = RTN_UNICAST;
        let mut m = Message::new(RTM_NEWROUTE, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, &h);
        if prefix > 0 {
            m.attr(RTA_DST, &octets(&dst));
        }
        m.attr(RTA_GATEWAY, &octets(&gateway)).u32(RTA_OIF, index);
        self.0.request(&m).map(drop)
    }
}
