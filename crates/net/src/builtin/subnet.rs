//! An IP subnet (`172.16.28.0/24`, `fd73:6b69:6666::/64`) and its
//! addresses, counted as integers.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A network address and prefix length; the address is the network's
/// (host bits clear).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    pub network: IpAddr,
    pub prefix: u8,
}

impl Subnet {
    /// Parses `ADDRESS/PREFIX`; the host bits are cleared.
    pub fn parse(text: &str) -> Option<Subnet> {
        let (addr, prefix) = text.split_once('/')?;
        let addr: IpAddr = addr.parse().ok()?;
        let prefix: u8 = prefix.parse().ok()?;
        if prefix > bits(&addr) {
            return None;
        }
        let subnet = Subnet {
            network: addr,
            prefix,
        };
        Some(Subnet {
            network: subnet.address(to_int(&addr) & subnet.mask()),
            prefix,
        })
    }

    fn width(&self) -> u8 {
        bits(&self.network)
    }

    /// The prefix mask as an integer of the family's width.
    fn mask(&self) -> u128 {
        let host = u32::from(self.width() - self.prefix);
        let all = if self.width() == 32 {
            u128::from(u32::MAX)
        } else {
            u128::MAX
        };
        all.checked_shr(host)
            .and_then(|m| m.checked_shl(host))
            .unwrap_or(0)
    }

    /// The address `n` of the family (an integer in range).
    fn address(&self, n: u128) -> IpAddr {
        match self.network {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(n as u32)),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(n)),
        }
    }

    /// The `n`th address of the subnet (0 is the network's), if inside it.
    pub fn nth(&self, n: u128) -> Option<IpAddr> {
        let size_minus_one = !self.mask() & self.family_max();
        (n <= size_minus_one).then(|| self.address(to_int(&self.network) + n))
    }

    /// The position of `ip` in the subnet, if it is inside it.
    pub fn offset(&self, ip: &IpAddr) -> Option<u128> {
        (bits(ip) == self.width() && to_int(ip) & self.mask() == to_int(&self.network))
            .then(|| to_int(ip) - to_int(&self.network))
    }

    fn family_max(&self) -> u128 {
        if self.width() == 32 {
            u128::from(u32::MAX)
        } else {
            u128::MAX
        }
    }

    /// The highest host position (before IPv4's broadcast address).
    pub fn last_host(&self) -> u128 {
        let size_minus_one = !self.mask() & self.family_max();
        match self.network {
            IpAddr::V4(_) => size_minus_one.saturating_sub(1),
            IpAddr::V6(_) => size_minus_one,
        }
    }

    /// The gateway (host side) address: the first after the network's.
    pub fn gateway(&self) -> Option<IpAddr> {
        self.nth(1)
    }

    pub fn network_bytes(&self) -> Vec<u8> {
        match self.network {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets().to_vec(),
        }
    }

    pub fn mask_bytes(&self) -> Vec<u8> {
        match self.network {
            IpAddr::V4(_) => (self.mask() as u32).to_be_bytes().to_vec(),
            IpAddr::V6(_) => self.mask().to_be_bytes().to_vec(),
        }
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

fn bits(ip: &IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn to_int(ip: &IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(*v4)),
        IpAddr::V6(v6) => u128::from(*v6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_v4_subnet_has_its_network_gateway_and_last_host() {
        let s = Subnet::parse("172.16.28.77/24").unwrap();
        assert_eq!(s.to_string(), "172.16.28.0/24");
        assert_eq!(s.gateway().unwrap().to_string(), "172.16.28.1");
        assert_eq!(s.last_host(), 254);
        assert_eq!(s.nth(255).unwrap().to_string(), "172.16.28.255");
        assert_eq!(s.nth(256), None);
        assert_eq!(s.offset(&"172.16.28.9".parse().unwrap()), Some(9));
        assert_eq!(s.offset(&"172.16.29.9".parse().unwrap()), None);
        assert_eq!(s.offset(&"fd00::9".parse().unwrap()), None);
        assert_eq!(s.mask_bytes(), vec![255, 255, 255, 0]);
    }

    #[test]
    fn a_v6_subnet_and_the_edges_parse() {
        let s = Subnet::parse("fd73:6b69:6666::5/64").unwrap();
        assert_eq!(s.to_string(), "fd73:6b69:6666::/64");
        assert_eq!(s.gateway().unwrap().to_string(), "fd73:6b69:6666::1");
        assert_eq!(s.last_host(), u128::from(u64::MAX));
        assert_eq!(
            Subnet::parse("10.0.0.0/0").unwrap().mask_bytes(),
            vec![0; 4]
        );
        assert_eq!(Subnet::parse("10.0.0.1/32").unwrap().last_host(), 0);
        assert!(Subnet::parse("10.0.0.0/33").is_none());
        assert!(Subnet::parse("10.0.0.0").is_none());
        assert!(Subnet::parse("x/8").is_none());
        assert_eq!(
            Subnet::parse("::/0")
                .unwrap()
                .nth(u128::MAX)
                .unwrap()
                .to_string(),
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
        );
    }
}
