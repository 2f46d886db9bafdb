//! A site's servers without a central list: `skiff serve --mdns` answers
//! multicast DNS (RFC 6762) questions for `_skiff._tcp.local` with DNS-SD
//! records (RFC 6763), and a fetch whose `peers.d` says `"mdns": true` asks
//! the segment who serves. IPv4 only.
//!
//! Both sides are small and keep no cache: what arrives is hostile.
//!
//! * Only packets from port 5353 and from an address on one of this
//!   host's IPv4 subnets count (a routed sender is not on the segment), and
//!   a server answers only addresses its `--allow` admits, by multicast (not
//!   routed), at most once a second per interface.
//! * A fetch keeps at most [`MAX_FOUND`] servers, each a private-range
//!   unicast address (10/8, 172.16/12, 192.168/16; not link-local, shared
//!   or loopback: cloud metadata services live there) in the subnet of the
//!   packet that named it, not one of this host's, with a port ≥ 1024.
//!   What they serve is verified like any peer's (`docs/distribution.md`).
//!
//! DNS messages are parsed and built by the `simple-dns` crate.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use simple_dns::rdata::{A, PTR, RData, SRV, TXT};
use simple_dns::{CLASS, Name, Packet, PacketFlag, QCLASS, QTYPE, Question, ResourceRecord, TYPE};

use crate::cidr::Cidr;

/// The DNS-SD service type skiff servers announce.
pub const SERVICE: &str = "_skiff._tcp.local";
/// How long a fetch listens for answers.
pub const BROWSE: Duration = Duration::from_secs(1);
/// Servers taken from one browse, at most.
pub const MAX_FOUND: usize = 32;
/// The TXT attribute that marks a skiff server: the protocol it speaks.
const PROTOCOL: &str = "proto=/skiff/v1";
const GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 251);
const PORT: u16 = 5353;
/// How long peers may remember an answer.
const TTL: u32 = 120;
/// Answers on one interface, at most one per this long.
const ANSWER_EVERY: Duration = Duration::from_secs(1);
/// Names a browse keeps track of, at most (of each kind).
const MAX_NAMES: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum MdnsError {
    #[error("mDNS: cannot list this host's addresses: {0}")]
    Addresses(std::io::Error),
    #[error("mDNS: cannot use UDP port {PORT}: {0}")]
    Socket(std::io::Error),
    #[error("mDNS announces IPv4 addresses: {0} is not one (listen on 0.0.0.0 or an IPv4 address)")]
    NotIpv4(IpAddr),
    #[error("mDNS: no IPv4 interface (other than loopback) has address {0}")]
    NoInterface(IpAddr),
    #[error("mDNS: cannot build a message: {0}")]
    Message(#[from] simple_dns::SimpleDnsError),
}

/// An IPv4 subnet of this host: its address there and its mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Subnet {
    addr: Ipv4Addr,
    mask: Ipv4Addr,
}

impl Subnet {
    fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::from(self.mask);
        u32::from(self.addr) & mask == u32::from(ip) & mask
    }
}

/// This host's IPv4 subnets, loopback excluded.
fn subnets() -> Result<Vec<Subnet>, MdnsError> {
    Ok(if_addrs::get_if_addrs()
        .map_err(MdnsError::Addresses)?
        .into_iter()
        .filter_map(|i| match i.addr {
            if_addrs::IfAddr::V4(v4) if !v4.ip.is_loopback() => Some(Subnet {
                addr: v4.ip,
                mask: v4.netmask,
            }),
            _ => None,
        })
        .collect())
}

/// A UDP socket on port 5353 that hears the mDNS group on `subnets`.
fn socket(subnets: &[Subnet]) -> Result<UdpSocket, MdnsError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
        .and_then(|s| {
            // Shared with other responders on this host (avahi, another
            // skiff): every socket sees the group's packets.
            s.set_reuse_address(true)?;
            s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, PORT)).into())?;
            s.set_multicast_ttl_v4(255)?;
            s.set_read_timeout(Some(Duration::from_millis(100)))?;
            Ok(s)
        })
        .map_err(MdnsError::Socket)?;
    for subnet in subnets {
        socket
            .join_multicast_v4(&GROUP, &subnet.addr)
            .map_err(MdnsError::Socket)?;
    }
    Ok(socket.into())
}

/// Sends `packet` to the group out of the interface of `subnet`.
fn send(socket: &UdpSocket, subnet: &Subnet, packet: &[u8]) {
    let socket = socket2::SockRef::from(socket);
    let sent = socket
        .set_multicast_if_v4(&subnet.addr)
        .and_then(|()| socket.send_to(packet, &SocketAddr::from((GROUP, PORT)).into()));
    if let Err(e) = sent {
        tracing::debug!(addr = %subnet.addr, "mDNS send failed: {e}");
    }
}

/// The next packet from the segment: from port 5353 and an address on one
/// of `subnets` (whose subnet is returned), within the read timeout.
fn receive<'b>(
    socket: &UdpSocket,
    subnets: &[Subnet],
    buf: &'b mut [u8],
) -> Option<(Ipv4Addr, Subnet, &'b [u8])> {
    let (len, from) = socket.recv_from(buf).ok()?;
    let SocketAddr::V4(from) = from else {
        return None;
    };
    if from.port() != PORT {
        return None;
    }
    let subnet = subnets.iter().find(|s| s.contains(*from.ip()))?;
    Some((*from.ip(), *subnet, &buf[..len]))
}

/// The records that announce one server on one subnet.
struct Records {
    instance: String,
    host: String,
    port: u16,
}

impl Records {
    fn packet(&self, addr: Ipv4Addr, ttl: u32) -> Result<Vec<u8>, MdnsError> {
        let mut packet = Packet::new_reply(0);
        packet.set_flags(PacketFlag::AUTHORITATIVE_ANSWER);
        let service = Name::new(SERVICE)?;
        let instance = Name::new(&self.instance)?;
        let host = Name::new(&self.host)?;
        packet.answers.push(ResourceRecord::new(
            service,
            CLASS::IN,
            ttl,
            RData::PTR(PTR(instance.clone())),
        ));
        let flush = |mut r: ResourceRecord<'static>| {
            r.cache_flush = true;
            r
        };
        packet.answers.push(flush(
            ResourceRecord::new(
                instance.clone(),
                CLASS::IN,
                ttl,
                RData::SRV(SRV {
                    priority: 0,
                    weight: 0,
                    port: self.port,
                    target: host.clone(),
                }),
            )
            .into_owned(),
        ));
        packet.answers.push(flush(
            ResourceRecord::new(
                instance,
                CLASS::IN,
                ttl,
                RData::TXT(TXT::new().with_string(PROTOCOL)?),
            )
            .into_owned(),
        ));
        packet.answers.push(flush(
            ResourceRecord::new(host, CLASS::IN, ttl, RData::A(A::from(addr))).into_owned(),
        ));
        Ok(packet.build_bytes_vec_compressed()?)
    }

    /// Whether `query` asks for any of these records.
    fn asked(&self, query: &Packet<'_>) -> bool {
        query.questions.iter().any(|q| {
            let name = q.qname.to_string().to_ascii_lowercase();
            let any = q.qtype == QTYPE::ANY;
            let is = |t: TYPE| any || q.qtype == QTYPE::TYPE(t);
            (name == SERVICE && is(TYPE::PTR))
                || (name == self.instance && (is(TYPE::SRV) || is(TYPE::TXT)))
                || (name == self.host && is(TYPE::A))
        })
    }
}

/// A server's announcement: a thread that answers the segment's
/// questions, and says goodbye when stopped.
pub struct Announcement {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Announcement {
    /// Announces a server listening on `listen` (on that IPv4 address's
    /// interface, or every interface if it is 0.0.0.0), answering only
    /// addresses `allow` admits.
    ///
    /// It starts a thread: call it after anything that needs the process
    /// single-threaded (entering namespaces).
    pub fn start(listen: SocketAddr, allow: Vec<Cidr>) -> Result<Self, MdnsError> {
        let IpAddr::V4(ip) = listen.ip() else {
            return Err(MdnsError::NotIpv4(listen.ip()));
        };
        let subnets: Vec<Subnet> = subnets()?
            .into_iter()
            .filter(|s| ip.is_unspecified() || s.addr == ip)
            .collect();
        if subnets.is_empty() {
            return Err(MdnsError::NoInterface(listen.ip()));
        }
        // Unique on the segment: hosts often share a host name (network
        // namespaces on one machine always do).
        let mut tag = [0u8; 6];
        // A failed read leaves zeros: the name is then less unique, no worse.
        let _ = rustix::rand::getrandom(&mut tag, rustix::rand::GetRandomFlags::empty());
        let name = format!("skiff-{}", hex::encode(tag));
        let records = Records {
            instance: format!("{name}.{SERVICE}"),
            host: format!("{name}.local"),
            port: listen.port(),
        };
        let answers: Vec<Vec<u8>> = subnets
            .iter()
            .map(|s| records.packet(s.addr, TTL))
            .collect::<Result<_, _>>()?;
        let goodbyes: Vec<Vec<u8>> = subnets
            .iter()
            .map(|s| records.packet(s.addr, 0))
            .collect::<Result<_, _>>()?;
        let socket = socket(&subnets)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("mdns".into())
            .spawn(move || {
                let mut last: Vec<Option<Instant>> = vec![None; subnets.len()];
                // Announced twice, a second apart (RFC 6762 §8.3).
                let mut announce_at = vec![Instant::now(), Instant::now() + ANSWER_EVERY];
                let mut buf = vec![0u8; 9000];
                while !stopping.load(Ordering::Relaxed) {
                    if announce_at.first().is_some_and(|t| *t <= Instant::now()) {
                        announce_at.remove(0);
                        for (i, subnet) in subnets.iter().enumerate() {
                            send(&socket, subnet, &answers[i]);
                            last[i] = Some(Instant::now());
                        }
                    }
                    let Some((from, subnet, bytes)) = receive(&socket, &subnets, &mut buf) else {
                        continue;
                    };
                    let Some(i) = subnets.iter().position(|s| *s == subnet) else {
                        continue;
                    };
                    let asked = Packet::parse(bytes).is_ok_and(|query| {
                        !query.has_flags(PacketFlag::RESPONSE) && records.asked(&query)
                    });
                    let recent = last[i].is_some_and(|t| t.elapsed() < ANSWER_EVERY);
                    if asked && !recent && allow.iter().any(|c| c.contains(IpAddr::V4(from))) {
                        send(&socket, &subnet, &answers[i]);
                        last[i] = Some(Instant::now());
                    }
                }
                for (subnet, goodbye) in subnets.iter().zip(&goodbyes) {
                    send(&socket, subnet, goodbye);
                }
            })
            .map_err(MdnsError::Socket)?;
        Ok(Announcement {
            stop,
            thread: Some(thread),
        })
    }

    /// Withdraws the announcement (peers that cached it forget it).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What one browse has heard, bounded.
#[derive(Default)]
struct Heard {
    /// Instances named by PTR records, with the subnet of the packet.
    instances: BTreeMap<String, Subnet>,
    /// Instance → (host, port) from SRV records.
    services: BTreeMap<String, (String, u16)>,
    /// Instances whose TXT says they speak the protocol.
    speaking: BTreeSet<String>,
    /// Host → addresses from A records, each in the packet's subnet.
    hosts: BTreeMap<String, BTreeSet<Ipv4Addr>>,
}

impl Heard {
    fn take(&mut self, answer: &Packet<'_>, subnet: Subnet) {
        let records = answer.answers.iter().chain(&answer.additional_records);
        for record in records {
            let name = record.name.to_string().to_ascii_lowercase();
            match &record.rdata {
                RData::PTR(PTR(target)) if name == SERVICE && self.instances.len() < MAX_NAMES => {
                    self.instances
                        .insert(target.to_string().to_ascii_lowercase(), subnet);
                }
                RData::SRV(srv) if self.services.len() < MAX_NAMES => {
                    self.services.insert(
                        name,
                        (srv.target.to_string().to_ascii_lowercase(), srv.port),
                    );
                }
                RData::TXT(txt) if self.speaking.len() < MAX_NAMES && speaks(txt) => {
                    self.speaking.insert(name);
                }
                RData::A(a)
                    if subnet.contains(Ipv4Addr::from(a.address))
                        && (self.hosts.len() < MAX_NAMES || self.hosts.contains_key(&name)) =>
                {
                    let addrs = self.hosts.entry(name).or_default();
                    if addrs.len() < 8 {
                        addrs.insert(Ipv4Addr::from(a.address));
                    }
                }
                _ => {}
            }
        }
    }

    /// The servers heard of, filtered by [`acceptable`].
    fn servers(&self, own: &[Subnet]) -> Vec<SocketAddr> {
        let mut found = BTreeSet::new();
        for (instance, subnet) in &self.instances {
            let Some((host, port)) = self.services.get(instance) else {
                continue;
            };
            if !self.speaking.contains(instance) {
                continue;
            }
            for &addr in self.hosts.get(host).into_iter().flatten() {
                if subnet.contains(addr) && acceptable(addr, *port, own) {
                    found.insert(SocketAddr::V4(SocketAddrV4::new(addr, *port)));
                }
            }
        }
        found.into_iter().take(MAX_FOUND).collect()
    }
}

/// The skiff servers that answer on the local segment within `wait`, in
/// address order, filtered as the module says.
pub fn browse(wait: Duration) -> Result<Vec<SocketAddr>, MdnsError> {
    let own = subnets()?;
    if own.is_empty() {
        return Ok(Vec::new());
    }
    let socket = socket(&own)?;
    let mut query = Packet::new_query(0);
    query.questions.push(Question::new(
        Name::new(SERVICE)?,
        QTYPE::TYPE(TYPE::PTR),
        QCLASS::CLASS(CLASS::IN),
        false,
    ));
    let query = query.build_bytes_vec()?;
    let start = Instant::now();
    // Asked twice (a lost packet), at the start and half-way.
    let mut ask_at = vec![start, start + wait / 2];
    let mut heard = Heard::default();
    let mut buf = vec![0u8; 9000];
    while start.elapsed() < wait {
        if ask_at.first().is_some_and(|t| *t <= Instant::now()) {
            ask_at.remove(0);
            for subnet in &own {
                send(&socket, subnet, &query);
            }
        }
        let Some((_, subnet, bytes)) = receive(&socket, &own, &mut buf) else {
            continue;
        };
        if let Ok(answer) = Packet::parse(bytes)
            && answer.has_flags(PacketFlag::RESPONSE)
        {
            heard.take(&answer, subnet);
        }
    }
    Ok(heard.servers(&own))
}

/// Whether a TXT record says its server speaks this protocol.
fn speaks(txt: &TXT<'_>) -> bool {
    txt.iter_raw().any(|(k, v)| {
        let mut text = k.to_vec();
        if let Some(v) = v {
            text.push(b'=');
            text.extend_from_slice(v);
        }
        text == PROTOCOL.as_bytes()
    })
}

/// Whether a server at `ip:port` may be asked: a private-range unicast
/// address, not this host's, and a port that is not a system service's.
fn acceptable(ip: Ipv4Addr, port: u16, own: &[Subnet]) -> bool {
    let private = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]
        .iter()
        .filter_map(|c| c.parse::<Cidr>().ok())
        .any(|c| c.contains(IpAddr::V4(ip)));
    private && port >= 1024 && !own.iter().any(|s| s.addr == ip)
}

/// Entry points for the fuzzer (feature `fuzzing`, which skiff's own
/// build never enables).
#[cfg(feature = "fuzzing")]
pub mod fuzzing {
    use super::*;

    /// The servers a browse takes from `bytes` heard from a neighbour on
    /// 10.0.0.0/16 (this host 10.0.0.1); each passes the filters.
    pub fn answer(bytes: &[u8]) -> Vec<SocketAddr> {
        let here = Subnet {
            addr: Ipv4Addr::new(10, 0, 0, 1),
            mask: Ipv4Addr::new(255, 255, 0, 0),
        };
        let mut heard = Heard::default();
        if let Ok(packet) = Packet::parse(bytes) {
            heard.take(&packet, here);
        }
        assert!(heard.instances.len() <= MAX_NAMES && heard.hosts.len() <= MAX_NAMES);
        let found = heard.servers(&[here]);
        for server in &found {
            let SocketAddr::V4(v4) = server else {
                panic!("{server}: not IPv4");
            };
            assert!(here.contains(*v4.ip()) && acceptable(*v4.ip(), v4.port(), &[here]));
        }
        assert!(found.len() <= MAX_FOUND);
        found
    }

    /// Whether a server's responder answers `bytes`.
    pub fn query(bytes: &[u8]) -> bool {
        let records = Records {
            instance: format!("skiff-abc.{SERVICE}"),
            host: "skiff-abc.local".into(),
            port: 7440,
        };
        Packet::parse(bytes).is_ok_and(|q| !q.has_flags(PacketFlag::RESPONSE) && records.asked(&q))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subnet(addr: &str, mask: &str) -> Subnet {
        Subnet {
            addr: addr.parse().unwrap(),
            mask: mask.parse().unwrap(),
        }
    }

    #[test]
    fn only_private_addresses_of_other_hosts_are_taken() {
        let own = [subnet("10.0.0.1", "255.255.255.0")];
        let ok = |ip: &str, port| acceptable(ip.parse().unwrap(), port, &own);
        assert!(ok("10.0.0.2", 7440));
        assert!(ok("192.168.1.9", 7440));
        assert!(!ok("10.0.0.2", 0));
        assert!(!ok("10.0.0.2", 80), "a system service's port");
        assert!(!ok("10.0.0.1", 7440), "this host");
        assert!(!ok("127.0.0.1", 7440));
        assert!(!ok("8.8.8.8", 7440), "not the site's");
        assert!(
            !ok("169.254.169.254", 7440),
            "link-local: metadata services"
        );
        assert!(!ok("100.100.100.200", 7440), "shared: metadata services");
        assert!(!ok("224.0.0.251", 7440));
        assert!(!ok("0.0.0.0", 7440));
    }

    #[test]
    fn a_server_is_found_from_its_own_answer_and_only_in_the_answers_subnet() {
        let records = Records {
            instance: format!("skiff-abc.{SERVICE}"),
            host: "skiff-abc.local".into(),
            port: 7440,
        };
        let here = subnet("10.0.0.1", "255.255.255.0");
        let bytes = records.packet("10.0.0.7".parse().unwrap(), TTL).unwrap();
        let answer = Packet::parse(&bytes).unwrap();
        let mut heard = Heard::default();
        heard.take(&answer, here);
        assert_eq!(
            heard.servers(&[here]),
            vec!["10.0.0.7:7440".parse::<SocketAddr>().unwrap()]
        );
        // The same answer naming an address of another subnet: ignored.
        let bytes = records.packet("10.9.0.7".parse().unwrap(), TTL).unwrap();
        let mut heard = Heard::default();
        heard.take(&Packet::parse(&bytes).unwrap(), here);
        assert!(heard.servers(&[here]).is_empty());
        // A query for the service is recognised; another one is not.
        let mut query = Packet::new_query(0);
        query.questions.push(Question::new(
            Name::new(SERVICE).unwrap(),
            QTYPE::TYPE(TYPE::PTR),
            QCLASS::CLASS(CLASS::IN),
            false,
        ));
        assert!(records.asked(&query));
        let mut other = Packet::new_query(0);
        other.questions.push(Question::new(
            Name::new("_http._tcp.local").unwrap(),
            QTYPE::TYPE(TYPE::PTR),
            QCLASS::CLASS(CLASS::IN),
            false,
        ));
        assert!(!records.asked(&other));
    }

    #[test]
    fn a_flood_of_names_is_bounded() {
        let here = subnet("10.0.0.1", "255.255.0.0");
        let mut heard = Heard::default();
        for i in 0..500u32 {
            let records = Records {
                instance: format!("skiff-{i}.{SERVICE}"),
                host: format!("skiff-{i}.local"),
                port: 7440,
            };
            let addr = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 1, 0)) + i);
            let bytes = records.packet(addr, TTL).unwrap();
            heard.take(&Packet::parse(&bytes).unwrap(), here);
        }
        assert!(heard.instances.len() <= MAX_NAMES && heard.hosts.len() <= MAX_NAMES);
        assert_eq!(heard.servers(&[here]).len(), MAX_FOUND);
    }
}
