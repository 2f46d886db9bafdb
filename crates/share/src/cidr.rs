//! Address ranges: `skiff serve --allow=CIDR` (the addresses a server
//! answers) and the addresses mDNS may name. By default, only addresses of
//! a site's own networks (loopback, private, link-local, shared and
//! unique-local ranges): sharing a store with the internet takes an
//! explicit `--allow`.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An address range, `ADDR/PREFIX` (an address alone is the one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }

    /// The ranges of a site's own networks: the default `--allow`.
    pub fn site_local() -> Vec<Cidr> {
        [
            "127.0.0.0/8",
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "169.254.0.0/16",
            "100.64.0.0/10",
            "::1/128",
            "fc00::/7",
            "fe80::/10",
        ]
        .iter()
        .filter_map(|c| c.parse().ok())
        .collect()
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("'{s}' is not an address range (ADDR/PREFIX, e.g. 10.0.0.0/8)"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("'{s}': the prefix must be 0 to {max}"))?,
        };
        // An IPv4-mapped range (::ffff:a.b.c.d/N) is the IPv4 range it maps.
        match addr.to_canonical() {
            IpAddr::V4(v4) if addr.is_ipv6() => {
                let prefix = prefix.checked_sub(96).ok_or_else(|| {
                    format!("'{s}': an IPv4-mapped range needs a prefix of 96 to 128")
                })?;
                Ok(Cidr {
                    addr: IpAddr::V4(v4),
                    prefix,
                })
            }
            addr => Ok(Cidr { addr, prefix }),
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_contain_their_addresses_only() {
        let c: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(c.contains("10.1.200.3".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert!(!c.contains("::1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let one: Cidr = "192.0.2.7".parse().unwrap();
        assert!(one.contains("192.0.2.7".parse().unwrap()));
        assert!(!one.contains("192.0.2.8".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        let mapped: Cidr = "::ffff:10.9.9.9/128".parse().unwrap();
        assert!(mapped.contains("10.9.9.9".parse().unwrap()));
        assert!(!mapped.contains("127.0.0.1".parse().unwrap()));
        let mapped: Cidr = "::ffff:10.0.0.0/104".parse().unwrap();
        assert_eq!(mapped.to_string(), "10.0.0.0/8");
        assert!("::ffff:10.0.0.0/64".parse::<Cidr>().is_err());
        assert!("example.com/8".parse::<Cidr>().is_err());
        let site = Cidr::site_local();
        assert!(
            site.iter()
                .any(|c| c.contains("192.168.1.1".parse().unwrap()))
        );
        assert!(!site.iter().any(|c| c.contains("8.8.8.8".parse().unwrap())));
        assert!(site.iter().any(|c| c.contains("fe80::1".parse().unwrap())));
    }
}
