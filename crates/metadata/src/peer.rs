//! Who owns the client end of a TCP connection to the service, from the
//! kernel's socket tables (`/proc/net/tcp`, `/proc/net/tcp6`): a TCP peer
//! has no SO_PEERCRED. Pods on an ordinary user's user-mode network reach
//! the service through pasta, which connects as that user; requests for
//! their tokens from any other socket owner (another local user who learnt
//! a token, say by listening on the service's port while it was down) are
//! refused.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The uid (as this process's user namespace sees it) owning the
/// open socket from `peer` to `service` (an unspecified service
/// address: any of this host's); `None` if no such socket is in the
/// tables.
pub fn socket_uid(peer: SocketAddr, service: SocketAddr) -> Option<u32> {
    let v4 = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(v6) => v6.to_ipv4_mapped(),
    };
    let (file, local, remote) = match (v4(peer.ip()), v4(service.ip())) {
        (Some(p), Some(s)) => ("/proc/net/tcp", hex_v4(p), hex_v4(s)),
        _ => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            (
                "/proc/net/tcp6",
                hex_v6(v6(peer.ip())),
                hex_v6(v6(service.ip())),
            )
        }
    };
    let remote = (!service.ip().is_unspecified()).then_some(remote);
    let text = std::fs::read_to_string(file).ok()?;
    find_uid(
        &text,
        &format!("{local}:{:04X}", peer.port()),
        remote.as_deref(),
        service.port(),
    )
}

/// The uid the kernel shows for an owner this user namespace does not map.
pub fn overflow_uid() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/overflowuid")
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(65534)
}

/// In a socket table, the uid of the open socket whose local
/// address is `local` (`ADDR:PORT` as the table writes it) and whose remote
/// end is `remote_address` (if given) port `remote_port`.
fn find_uid(
    table: &str,
    local: &str,
    remote_address: Option<&str>,
    remote_port: u16,
) -> Option<u32> {
    // The client's states while its request is served: ESTABLISHED, and
    // FIN_WAIT1/2 once it shut its sending side. Not TIME_WAIT and the like,
    // whose rows no longer say whose the socket was.
    const OPEN: [&str; 3] = ["01", "04", "05"];
    table.lines().skip(1).find_map(|line| {
        // sl, local_address, rem_address, st, tx:rx, tr:when, retrnsmt, uid
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (own, remote, state, uid) = (
            fields.get(1)?,
            fields.get(2)?,
            fields.get(3)?,
            fields.get(7)?,
        );
        let (address, port) = remote.rsplit_once(':')?;
        let port = u16::from_str_radix(port, 16).ok()?;
        (*own == local
            && port == remote_port
            && OPEN.contains(state)
            && remote_address.is_none_or(|a| a == address))
        .then(|| uid.parse().ok())
        .flatten()
    })
}

/// An IPv4 address as the tables write it: the address's four bytes read
/// as one native-endian word.
fn hex_v4(ip: Ipv4Addr) -> String {
    format!("{:08X}", u32::from_ne_bytes(ip.octets()))
}

/// An IPv6 address as the tables write it: four native-endian words.
fn hex_v6(ip: Ipv6Addr) -> String {
    ip.octets()
        .chunks_exact(4)
        .map(|w| format!("{:08X}", u32::from_ne_bytes([w[0], w[1], w[2], w[3]])))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_of_a_loopback_connection_is_found() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let service = listener.local_addr().unwrap();
        let client = std::net::TcpStream::connect(service).unwrap();
        let (_accepted, peer) = listener.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        let me = Some(rustix::process::geteuid().as_raw());

        assert_eq!(socket_uid(peer, service), me);
        let any = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), service.port());
        assert_eq!(socket_uid(peer, any), me);
        // Not the connection to another port or address.
        let other = SocketAddr::new(service.ip(), service.port().wrapping_add(1));
        assert_eq!(socket_uid(peer, other), None);
        let elsewhere = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), service.port());
        assert_eq!(socket_uid(peer, elsewhere), None);
    }

    #[test]
    fn table_lines_are_matched_by_both_ends_and_state() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:9C40 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1001        0 1 1 0 20 4 30 10 -1\n\
   1: 0100007F:9C41 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  65534        0 1 1 0 20 4 30 10 -1\n\
   2: 0100007F:9C42 0100007F:1F90 06 00000000:00000000 00:00000000 00000000  1001        0 1 1 0 20 4 30 10 -1\n";
        let here = Some("0100007F");
        assert_eq!(find_uid(table, "0100007F:9C40", here, 8080), Some(1001));
        assert_eq!(find_uid(table, "0100007F:9C40", None, 8080), Some(1001));
        assert_eq!(find_uid(table, "0100007F:9C41", here, 8080), Some(65534));
        assert_eq!(find_uid(table, "0100007F:9C40", here, 8081), None);
        assert_eq!(
            find_uid(table, "0100007F:9C40", Some("0200007F"), 8080),
            None
        );
        assert_eq!(
            find_uid(table, "0100007F:9C42", here, 8080),
            None,
            "not established"
        );
        assert_eq!(
            find_uid("garbage\nx y\n", "0100007F:9C40", here, 8080),
            None
        );
        assert_eq!(
            hex_v4(Ipv4Addr::LOCALHOST),
            format!("{:08X}", u32::from_ne_bytes([127, 0, 0, 1]))
        );
        assert_eq!(hex_v6(Ipv6Addr::LOCALHOST).len(), 32);
    }
}
