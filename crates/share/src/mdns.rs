//! A site's servers without a central list: `skiff serve --mdns` announces
//! itself as `_skiff._tcp.local.` on the local segment (multicast DNS,
//! RFC 6762, with DNS-SD names, RFC 6763), and a fetch whose `peers.d`
//! says `"mdns": true` asks the segment who serves.
//!
//! Anyone on the segment can answer, so an answer is as hostile as any
//! peer: only unicast addresses of the site's own ranges
//! ([`Cidr::site_local`]), never loopback nor this host's own addresses,
//! at most [`MAX_FOUND`] servers. What they serve is verified like any
//! peer's (see `docs/distribution.md`).

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use mdns_sd::{ServiceDaemon, ServiceEvent, ServiceInfo};

use crate::cidr::Cidr;

/// The DNS-SD service type skiff servers announce.
pub const SERVICE: &str = "_skiff._tcp.local.";
/// How long a fetch listens for answers. A settled server answers within
/// about 100 ms; one that started a moment ago within about a second.
pub const BROWSE: Duration = Duration::from_secs(1);
/// Servers taken from one browse, at most.
pub const MAX_FOUND: usize = 32;
/// The TXT property that marks a skiff server, and the protocol it speaks.
const PROTOCOL: (&str, &str) = ("proto", crate::protocol::PREFIX);

#[derive(Debug, thiserror::Error)]
pub enum MdnsError {
    #[error("mDNS: {0}")]
    Daemon(#[from] mdns_sd::Error),
    #[error("mDNS: cannot list this host's addresses: {0}")]
    Addresses(std::io::Error),
}

/// A server's announcement, withdrawn (a goodbye sent) when stopped.
pub struct Announcement {
    daemon: ServiceDaemon,
    fullname: String,
}

impl Announcement {
    /// Announces a server listening on `listen`: that address, or every
    /// address of this host if it is unspecified (0.0.0.0 or ::).
    ///
    /// It starts a thread: call it after anything that needs the process
    /// single-threaded (entering namespaces).
    pub fn start(listen: SocketAddr) -> Result<Self, MdnsError> {
        let daemon = ServiceDaemon::new()?;
        // Unique on the segment: hosts often share a host name (and network
        // namespaces on one machine always do).
        let mut tag = [0u8; 6];
        // A failed read leaves zeros: the name is then less unique, no worse.
        let _ = rustix::rand::getrandom(&mut tag, rustix::rand::GetRandomFlags::empty());
        let instance = format!("skiff-{}", hex::encode(tag));
        let host = format!("{instance}.local.");
        let addrs: Vec<IpAddr> = if listen.ip().is_unspecified() {
            Vec::new()
        } else {
            vec![listen.ip()]
        };
        let info = ServiceInfo::new(
            SERVICE,
            &instance,
            &host,
            &addrs[..],
            listen.port(),
            &[PROTOCOL][..],
        )?;
        let info = if addrs.is_empty() {
            info.enable_addr_auto()
        } else {
            info
        };
        let fullname = info.get_fullname().to_string();
        daemon.register(info)?;
        Ok(Announcement { daemon, fullname })
    }

    /// Withdraws the announcement (peers that cached it forget it) and
    /// stops the daemon, waiting at most a second for each.
    pub fn stop(self) {
        if let Ok(done) = self.daemon.unregister(&self.fullname) {
            let _ = done.recv_timeout(Duration::from_secs(1));
        }
        if let Ok(done) = self.daemon.shutdown() {
            let _ = done.recv_timeout(Duration::from_secs(1));
        }
    }
}

/// The skiff servers that answer on the local segment within `wait`, in
/// address order, filtered as the module says.
pub fn browse(wait: Duration) -> Result<Vec<SocketAddr>, MdnsError> {
    let own: BTreeSet<IpAddr> = if_addrs::get_if_addrs()
        .map_err(MdnsError::Addresses)?
        .iter()
        .map(|i| i.ip())
        .collect();
    let daemon = ServiceDaemon::new()?;
    let answers = daemon.browse(SERVICE)?;
    let deadline = Instant::now() + wait;
    let mut found = BTreeSet::new();
    while found.len() < MAX_FOUND {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let Ok(event) = answers.recv_timeout(left) else {
            break;
        };
        let ServiceEvent::ServiceResolved(service) = event else {
            continue;
        };
        if service.txt_properties.get_property_val_str(PROTOCOL.0) != Some(PROTOCOL.1) {
            continue;
        }
        for ip in service.addresses.iter().map(|a| a.to_ip_addr()) {
            if found.len() < MAX_FOUND && acceptable(ip, service.port, &own) {
                found.insert(SocketAddr::new(ip, service.port));
            }
        }
    }
    if let Ok(done) = daemon.shutdown() {
        let _ = done.recv_timeout(Duration::from_millis(200));
    }
    Ok(found.into_iter().collect())
}

/// Whether an address an answer names may be asked: a unicast address of
/// the site's own ranges, not loopback, not this host's, not IPv6
/// link-local (a URL cannot carry its interface), and a port.
fn acceptable(ip: IpAddr, port: u16, own: &BTreeSet<IpAddr>) -> bool {
    let ip = ip.to_canonical();
    let link_local_v6 = matches!(ip, IpAddr::V6(v6) if v6.is_unicast_link_local());
    port != 0
        && !ip.is_loopback()
        && !ip.is_unspecified()
        && !ip.is_multicast()
        && !link_local_v6
        && !own.contains(&ip)
        && Cidr::site_local().iter().any(|c| c.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_site_addresses_of_other_hosts_are_taken() {
        let own: BTreeSet<IpAddr> = ["10.0.0.1".parse().unwrap()].into();
        let ok = |ip: &str, port| acceptable(ip.parse().unwrap(), port, &own);
        assert!(ok("10.0.0.2", 7440));
        assert!(ok("192.168.1.9", 7440));
        assert!(ok("fd00::9", 7440));
        assert!(!ok("10.0.0.2", 0));
        assert!(!ok("10.0.0.1", 7440), "this host");
        assert!(!ok("127.0.0.1", 7440));
        assert!(!ok("::1", 7440));
        assert!(!ok("::ffff:127.0.0.1", 7440));
        assert!(!ok("8.8.8.8", 7440), "not the site's");
        assert!(!ok("fe80::1", 7440), "needs an interface");
        assert!(!ok("224.0.0.251", 7440));
        assert!(!ok("0.0.0.0", 7440));
    }
}
