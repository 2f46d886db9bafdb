//! A site's servers without a central list: `skiff serve --mdns` answers
//! multicast DNS (RFC 6762) questions for `_skiff._tcp.local` with DNS-SD
//! records (RFC 6763), and a fetch whose `peers.d` says `"mdns": true` asks
//! the segment who serves. IPv4 only.
//!
//! Both sides are small and keep no cache: what arrives is hostile.
//!
//! * Each interface has its own socket, bound to the mDNS group and member
//!   of it on that interface only: a packet counts only if it was sent to
//!   the group (link-local scope, which routers never forward; unicast is
//!   not heard), arrived on that interface, came from port 5353 and from a
//!   host address of one of that interface's subnets.
//! * Its 12-byte header is checked before it is parsed: at most 1,500
//!   bytes, a question or an answer as expected, at most 16 of each kind
//!   of record.
//! * A server answers only addresses its `--allow` admits, by multicast,
//!   at most four times a second per interface, and says goodbye when it
//!   is told to stop. skiff's own pod bridges are not the segment.
//! * A fetch takes from one answer only the servers that answer announces
//!   for its own sender: PTR, SRV, TXT and an A record naming the packet's
//!   source address, all live (TTL > 0, class IN), one server per address.
//!   Short of spoofing its source on the segment, a host cannot announce
//!   another host, nor take over another server's name. It keeps at most
//!   [`MAX_FOUND`] servers, each a private-range unicast address (10/8,
//!   172.16/12, 192.168/16; not link-local, shared or loopback: cloud
//!   metadata services live there), not one of this host's, with a port
//!   ≥ 1024. What they serve is verified like any peer's
//!   (`docs/distribution.md`).
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
/// Answers on one interface, at most one per this long: short enough
/// that a browse (1 s, asking twice) is answered even if another host's
/// question was answered just before it began (answers are multicast: each
/// one is heard by every browse under way).
const ANSWER_EVERY: Duration = Duration::from_millis(250);
/// Interfaces of skiff's own pod networks (`skiff0`, `skiff1`, …): pods
/// are not the site's hosts, and are neither answered nor heard.
const OWN_BRIDGES: &str = "skiff";
/// A packet is looked at only up to this size (an Ethernet frame's).
const MAX_PACKET: usize = 1500;
/// Records of each kind (questions, answers, authority, additional) a
/// packet may carry to be looked at.
const MAX_RECORDS: u16 = 16;
/// Addresses one answer announces for an interface, at most.
const MAX_ADDRESSES: usize = 8;
/// How long a wait for packets lasts before the loop looks at its clock.
const TICK: Duration = Duration::from_millis(100);
/// Packets read from one socket before the others get their turn.
const BURST: usize = 64;

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

    /// Whether `ip` is a host of this subnet: in it, and neither its
    /// network nor its broadcast address (where a subnet has those).
    fn has_host(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::from(self.mask);
        let host = u32::from(ip) & !mask;
        self.contains(ip) && (mask.leading_ones() >= 31 || (host != 0 && host != !mask))
    }
}

/// One network interface of this host with its IPv4 subnets.
#[derive(Debug, Clone)]
struct Link {
    index: u32,
    subnets: Vec<Subnet>,
}

impl Link {
    /// Whether a packet from `ip` on this interface is from a neighbour.
    fn has_host(&self, ip: Ipv4Addr) -> bool {
        self.subnets.iter().any(|s| s.has_host(ip))
    }
}

/// This host's interfaces with IPv4 subnets, loopback and skiff's own
/// pod bridges excluded; with
/// `only`, just the subnet with that address.
fn links(only: Option<Ipv4Addr>) -> Result<Vec<Link>, MdnsError> {
    let mut links: BTreeMap<u32, Vec<Subnet>> = BTreeMap::new();
    for interface in if_addrs::get_if_addrs().map_err(MdnsError::Addresses)? {
        let (if_addrs::IfAddr::V4(v4), Some(index)) = (interface.addr, interface.index) else {
            continue;
        };
        if v4.ip.is_loopback()
            || interface.name.starts_with(OWN_BRIDGES)
            || only.is_some_and(|ip| ip != v4.ip)
        {
            continue;
        }
        let subnets = links.entry(index).or_default();
        if subnets.len() < MAX_ADDRESSES {
            subnets.push(Subnet {
                addr: v4.ip,
                mask: v4.netmask,
            });
        }
    }
    Ok(links
        .into_iter()
        .map(|(index, subnets)| Link { index, subnets })
        .collect())
}

/// A socket that hears the mDNS group on one interface only, and sends
/// to it there.
struct LinkSocket {
    link: Link,
    socket: UdpSocket,
}

impl LinkSocket {
    fn open(link: Link) -> Result<Self, MdnsError> {
        use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};
        let first = link
            .subnets
            .first()
            .map_or(Ipv4Addr::UNSPECIFIED, |s| s.addr);
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
            .and_then(|s| {
                // Shared with other responders on this host (avahi,
                // another skiff): every socket sees the group's packets.
                s.set_reuse_address(true)?;
                // Bound to the group: what was sent to this host alone
                // (perhaps from afar) does not arrive.
                s.bind(&SocketAddr::from((GROUP, PORT)).into())?;
                // Only this socket's own membership counts: the group's
                // packets from other interfaces do not arrive either.
                s.set_multicast_all_v4(false)?;
                s.join_multicast_v4_n(&GROUP, &InterfaceIndexOrAddress::Index(link.index))?;
                s.set_multicast_if_v4(&first)?;
                s.set_multicast_ttl_v4(255)?;
                s.set_nonblocking(true)?;
                Ok(s)
            })
            .map_err(MdnsError::Socket)?;
        Ok(LinkSocket {
            link,
            socket: socket.into(),
        })
    }

    fn open_all(links: Vec<Link>) -> Result<Vec<Self>, MdnsError> {
        links.into_iter().map(Self::open).collect()
    }

    fn send(&self, packet: &[u8]) {
        if let Err(e) = self.socket.send_to(packet, SocketAddr::from((GROUP, PORT))) {
            tracing::debug!(interface = self.link.index, "mDNS send failed: {e}");
        }
    }

    /// The next waiting packet.
    fn receive<'b>(&self, buf: &'b mut [u8]) -> Received<'b> {
        let Ok((len, from)) = self.socket.recv_from(buf) else {
            return Received::Nothing;
        };
        match from {
            SocketAddr::V4(from) if from.port() == PORT && self.link.has_host(*from.ip()) => {
                buf.get(..len).map_or(Received::Ignored, |bytes| {
                    Received::Packet(*from.ip(), bytes)
                })
            }
            _ => Received::Ignored,
        }
    }
}

/// What a socket had waiting.
enum Received<'b> {
    /// Nothing (or an error): the socket's turn is over.
    Nothing,
    /// A packet not from a neighbour's port 5353.
    Ignored,
    /// A neighbour's packet and its source.
    Packet(Ipv4Addr, &'b [u8]),
}

/// Which of `sockets` have packets waiting, after at most `wait`.
fn readable(sockets: &[LinkSocket], wait: Duration) -> Vec<usize> {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let mut fds: Vec<PollFd<'_>> = sockets
        .iter()
        .map(|s| PollFd::new(&s.socket, PollFlags::IN))
        .collect();
    let timeout = Timespec::try_from(wait).ok();
    if rustix::event::poll(&mut fds, timeout.as_ref()).is_err() {
        // Interrupted: the caller's loop comes back.
        return Vec::new();
    }
    fds.iter()
        .enumerate()
        .filter(|(_, fd)| !fd.revents().is_empty())
        .map(|(i, _)| i)
        .collect()
}

/// Whether a packet's header is worth parsing: a question (`response`
/// false) or an answer, a standard query's opcode, and few records.
fn plausible(bytes: &[u8], response: bool) -> bool {
    let Some(header) = bytes.first_chunk::<12>() else {
        return false;
    };
    let count = |at: usize| u16::from_be_bytes([header[at], header[at + 1]]);
    let (questions, answers, authority, additional) = (count(4), count(6), count(8), count(10));
    let is_response = header[2] & 0x80 != 0;
    let opcode = (header[2] >> 3) & 0x0f;
    bytes.len() <= MAX_PACKET
        && is_response == response
        && opcode == 0
        && questions <= MAX_RECORDS
        && (response || questions > 0)
        && answers <= MAX_RECORDS
        && authority <= MAX_RECORDS
        && additional <= MAX_RECORDS
}

/// The records that announce one server.
struct Records {
    instance: String,
    host: String,
    port: u16,
}

impl Records {
    /// An answer announcing this server at `addrs` (an interface's).
    fn packet(&self, addrs: &[Ipv4Addr], ttl: u32) -> Result<Vec<u8>, MdnsError> {
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
        for addr in addrs.iter().take(MAX_ADDRESSES) {
            packet.answers.push(flush(
                ResourceRecord::new(host.clone(), CLASS::IN, ttl, RData::A(A::from(*addr)))
                    .into_owned(),
            ));
        }
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

/// Tells an [`Announcement`] to say goodbye now, from anywhere (a signal
/// handler's task), before the server has finished.
#[derive(Clone)]
pub struct Withdraw(Arc<AtomicBool>);

impl Withdraw {
    pub fn now(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A server's announcement: a thread that answers the segment's
/// questions, and says goodbye when withdrawn.
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
        let links = links((!ip.is_unspecified()).then_some(ip))?;
        if links.is_empty() {
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
        let addrs =
            |link: &Link| -> Vec<Ipv4Addr> { link.subnets.iter().map(|s| s.addr).collect() };
        let answers: Vec<Vec<u8>> = links
            .iter()
            .map(|l| records.packet(&addrs(l), TTL))
            .collect::<Result<_, _>>()?;
        let goodbyes: Vec<Vec<u8>> = links
            .iter()
            .map(|l| records.packet(&addrs(l), 0))
            .collect::<Result<_, _>>()?;
        let sockets = LinkSocket::open_all(links)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("mdns".into())
            .spawn(move || {
                let mut last: Vec<Option<Instant>> = vec![None; sockets.len()];
                // Announced twice, a second apart (RFC 6762 §8.3).
                let mut announce_at = vec![Instant::now(), Instant::now() + ANSWER_EVERY];
                let mut buf = vec![0u8; MAX_PACKET + 1];
                while !stopping.load(Ordering::Relaxed) {
                    if announce_at.first().is_some_and(|t| *t <= Instant::now()) {
                        announce_at.remove(0);
                        for (i, socket) in sockets.iter().enumerate() {
                            socket.send(&answers[i]);
                            last[i] = Some(Instant::now());
                        }
                    }
                    for i in readable(&sockets, TICK) {
                        for _ in 0..BURST {
                            let (from, bytes) = match sockets[i].receive(&mut buf) {
                                Received::Nothing => break,
                                Received::Ignored => continue,
                                Received::Packet(from, bytes) => (from, bytes),
                            };
                            // The cheap checks first: a flood costs a
                            // look at the sender and at the header.
                            if last[i].is_some_and(|t| t.elapsed() < ANSWER_EVERY)
                                || !allow.iter().any(|c| c.contains(IpAddr::V4(from)))
                                || !plausible(bytes, false)
                            {
                                continue;
                            }
                            if Packet::parse(bytes).is_ok_and(|q| records.asked(&q)) {
                                sockets[i].send(&answers[i]);
                                last[i] = Some(Instant::now());
                            }
                        }
                    }
                }
                for (socket, goodbye) in sockets.iter().zip(&goodbyes) {
                    socket.send(goodbye);
                }
            })
            .map_err(MdnsError::Socket)?;
        Ok(Announcement {
            stop,
            thread: Some(thread),
        })
    }

    /// A handle that withdraws the announcement without waiting.
    pub fn withdraw(&self) -> Withdraw {
        Withdraw(self.stop.clone())
    }

    /// Withdraws the announcement (peers that cached it forget it) and
    /// waits until the goodbye is sent.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The servers a browse has found, bounded.
#[derive(Default)]
struct Found(BTreeSet<SocketAddrV4>);

impl Found {
    /// Takes the servers `answer`, from `from`, announces at `from`, as
    /// [`acceptable`] filters them.
    /// One server per address: a host cannot fill the slots alone.
    fn take(&mut self, answer: &Packet<'_>, from: Ipv4Addr, own: &[Ipv4Addr]) {
        let Some(port) = announced(answer, from).into_iter().next() else {
            return;
        };
        let known = self.0.iter().any(|s| *s.ip() == from);
        if !known && self.0.len() < MAX_FOUND && acceptable(from, port, own) {
            self.0.insert(SocketAddrV4::new(from, port));
        }
    }
}

/// The ports of the servers `answer` announces at `from`, its source: each
/// instance it names with a PTR record has one SRV record in it, a TXT
/// saying it speaks skiff's protocol, and its target an A record for
/// `from`; every one live.
fn announced(answer: &Packet<'_>, from: Ipv4Addr) -> Vec<u16> {
    let records: Vec<(String, &RData<'_>)> = answer
        .answers
        .iter()
        .chain(&answer.additional_records)
        .filter(|r| r.ttl > 0 && r.class == CLASS::IN)
        .map(|r| (r.name.to_string().to_ascii_lowercase(), &r.rdata))
        .collect();
    let lower = |name: &Name<'_>| name.to_string().to_ascii_lowercase();
    let mut ports = Vec::new();
    for (name, rdata) in &records {
        let RData::PTR(PTR(instance)) = rdata else {
            continue;
        };
        if name != SERVICE {
            continue;
        }
        let instance = lower(instance);
        let mut services = records.iter().filter_map(|(n, r)| match r {
            RData::SRV(srv) if *n == instance => Some(srv),
            _ => None,
        });
        // One SRV record: two would leave the choice to the sender.
        let (Some(srv), None) = (services.next(), services.next()) else {
            continue;
        };
        let host = lower(&srv.target);
        let speaking = records
            .iter()
            .any(|(n, r)| *n == instance && matches!(r, RData::TXT(txt) if speaks(txt)));
        let at_source = records.iter().any(|(n, r)| {
            *n == host && matches!(r, RData::A(a) if Ipv4Addr::from(a.address) == from)
        });
        if speaking && at_source && !ports.contains(&srv.port) {
            ports.push(srv.port);
        }
    }
    ports
}

/// The skiff servers that answer on the local segment within `wait`, in
/// address order, filtered as the module says.
pub fn browse(wait: Duration) -> Result<Vec<SocketAddr>, MdnsError> {
    let links = links(None)?;
    let own: Vec<Ipv4Addr> = links
        .iter()
        .flat_map(|l| l.subnets.iter().map(|s| s.addr))
        .collect();
    if links.is_empty() {
        return Ok(Vec::new());
    }
    let sockets = LinkSocket::open_all(links)?;
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
    let mut found = Found::default();
    let mut buf = vec![0u8; MAX_PACKET + 1];
    while start.elapsed() < wait {
        if ask_at.first().is_some_and(|t| *t <= Instant::now()) {
            ask_at.remove(0);
            for socket in &sockets {
                socket.send(&query);
            }
        }
        let left = wait.saturating_sub(start.elapsed()).min(TICK);
        for i in readable(&sockets, left) {
            for _ in 0..BURST {
                let (from, bytes) = match sockets[i].receive(&mut buf) {
                    Received::Nothing => break,
                    Received::Ignored => continue,
                    Received::Packet(from, bytes) => (from, bytes),
                };
                if plausible(bytes, true)
                    && let Ok(answer) = Packet::parse(bytes)
                {
                    found.take(&answer, from, &own);
                }
            }
        }
    }
    Ok(found.0.into_iter().map(SocketAddr::V4).collect())
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
fn acceptable(ip: Ipv4Addr, port: u16, own: &[Ipv4Addr]) -> bool {
    let private = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]
        .iter()
        .filter_map(|c| c.parse::<Cidr>().ok())
        .any(|c| c.contains(IpAddr::V4(ip)));
    private && port >= 1024 && !own.contains(&ip)
}

/// Entry points for the fuzzer (feature `fuzzing`, which skiff's own
/// build never enables).
#[cfg(feature = "fuzzing")]
pub mod fuzzing {
    use super::*;

    /// The servers a browse takes from `bytes` heard from 10.0.0.7, a
    /// neighbour of this host (10.0.0.1); each passes the filters.
    pub fn answer(bytes: &[u8]) -> Vec<SocketAddr> {
        let from = Ipv4Addr::new(10, 0, 0, 7);
        let own = [Ipv4Addr::new(10, 0, 0, 1)];
        let mut found = Found::default();
        if plausible(bytes, true)
            && let Ok(packet) = Packet::parse(bytes)
        {
            found.take(&packet, from, &own);
        }
        assert!(found.0.len() <= MAX_FOUND);
        for server in &found.0 {
            assert!(*server.ip() == from && acceptable(from, server.port(), &own));
        }
        found.0.into_iter().map(SocketAddr::V4).collect()
    }

    /// Whether a server's responder answers `bytes`.
    pub fn query(bytes: &[u8]) -> bool {
        let records = Records {
            instance: format!("skiff-abc.{SERVICE}"),
            host: "skiff-abc.local".into(),
            port: 7440,
        };
        plausible(bytes, false) && Packet::parse(bytes).is_ok_and(|q| records.asked(&q))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn records(name: &str, port: u16) -> Records {
        Records {
            instance: format!("{name}.{SERVICE}"),
            host: format!("{name}.local"),
            port,
        }
    }

    fn found(bytes: &[u8], from: &str) -> Vec<SocketAddrV4> {
        let mut found = Found::default();
        assert!(plausible(bytes, true));
        found.take(&Packet::parse(bytes).unwrap(), ip(from), &[ip("10.0.0.1")]);
        found.0.into_iter().collect()
    }

    #[test]
    fn only_private_addresses_of_other_hosts_are_taken() {
        let own = [ip("10.0.0.1")];
        let ok = |addr: &str, port| acceptable(ip(addr), port, &own);
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
    fn a_subnets_network_and_broadcast_addresses_are_no_neighbours() {
        let link = Link {
            index: 2,
            subnets: vec![Subnet {
                addr: ip("10.0.0.1"),
                mask: ip("255.255.255.0"),
            }],
        };
        assert!(link.has_host(ip("10.0.0.7")));
        assert!(!link.has_host(ip("10.0.0.0")));
        assert!(!link.has_host(ip("10.0.0.255")));
        assert!(!link.has_host(ip("10.0.1.7")), "another subnet");
        let point_to_point = Subnet {
            addr: ip("10.0.0.0"),
            mask: ip("255.255.255.254"),
        };
        assert!(point_to_point.has_host(ip("10.0.0.1")));
    }

    #[test]
    fn a_server_is_found_only_from_its_own_address() {
        let bytes = records("skiff-abc", 7440)
            .packet(&[ip("10.0.0.7")], TTL)
            .unwrap();
        assert_eq!(
            found(&bytes, "10.0.0.7"),
            vec!["10.0.0.7:7440".parse().unwrap()]
        );
        // The same answer sent by another host: it cannot announce a
        // third one (nor itself with another's records).
        assert!(found(&bytes, "10.0.0.8").is_empty());
        // A goodbye (TTL 0) announces nothing.
        let goodbye = records("skiff-abc", 7440)
            .packet(&[ip("10.0.0.7")], 0)
            .unwrap();
        assert!(found(&goodbye, "10.0.0.7").is_empty());
        // Of an interface's several addresses, the sender's counts.
        let bytes = records("skiff-abc", 7440)
            .packet(&[ip("10.0.0.9"), ip("10.0.0.7")], TTL)
            .unwrap();
        assert_eq!(
            found(&bytes, "10.0.0.7"),
            vec!["10.0.0.7:7440".parse().unwrap()]
        );
    }

    #[test]
    fn an_instance_with_two_srv_records_is_not_taken() {
        let mut bytes = records("skiff-abc", 7440)
            .packet(&[ip("10.0.0.7")], TTL)
            .unwrap();
        let packet = Packet::parse(&bytes).unwrap();
        let mut forged = packet.clone();
        let mut second = packet.answers[1].clone();
        if let RData::SRV(srv) = &mut second.rdata {
            srv.port = 9999;
        }
        forged.answers.push(second);
        bytes = forged.build_bytes_vec().unwrap();
        assert!(found(&bytes, "10.0.0.7").is_empty());
    }

    #[test]
    fn questions_and_answers_are_told_apart_before_parsing() {
        let answer = records("skiff-abc", 7440)
            .packet(&[ip("10.0.0.7")], TTL)
            .unwrap();
        assert!(plausible(&answer, true) && !plausible(&answer, false));
        let mut query = Packet::new_query(0);
        query.questions.push(Question::new(
            Name::new(SERVICE).unwrap(),
            QTYPE::TYPE(TYPE::PTR),
            QCLASS::CLASS(CLASS::IN),
            false,
        ));
        let asked = query.build_bytes_vec().unwrap();
        assert!(plausible(&asked, false) && !plausible(&asked, true));
        assert!(records("skiff-abc", 7440).asked(&query));
        // Too many records, too short, too long: not parsed.
        let mut many = asked.clone();
        many[6..8].copy_from_slice(&(MAX_RECORDS + 1).to_be_bytes());
        assert!(!plausible(&many, false));
        assert!(!plausible(&asked[..11], false));
        let mut long = asked.clone();
        long.resize(MAX_PACKET + 1, 0);
        assert!(!plausible(&long, false));
        // Another service's question is not answered.
        let mut other = Packet::new_query(0);
        other.questions.push(Question::new(
            Name::new("_http._tcp.local").unwrap(),
            QTYPE::TYPE(TYPE::PTR),
            QCLASS::CLASS(CLASS::IN),
            false,
        ));
        assert!(!records("skiff-abc", 7440).asked(&other));
    }

    #[test]
    fn a_flood_of_servers_is_bounded() {
        let mut found = Found::default();
        for i in 0..500u32 {
            let from = Ipv4Addr::from(u32::from(ip("10.0.1.0")) + i);
            let bytes = records(&format!("skiff-{i}"), 7440)
                .packet(&[from], TTL)
                .unwrap();
            found.take(&Packet::parse(&bytes).unwrap(), from, &[ip("10.0.0.1")]);
        }
        assert_eq!(found.0.len(), MAX_FOUND);
        // One host announcing many ports takes one slot.
        let mut found = Found::default();
        let from = ip("10.0.0.7");
        for port in 7440..7540 {
            let bytes = records(&format!("skiff-{port}"), port)
                .packet(&[from], TTL)
                .unwrap();
            found.take(&Packet::parse(&bytes).unwrap(), from, &[ip("10.0.0.1")]);
        }
        assert_eq!(found.0.len(), 1);
    }
}
