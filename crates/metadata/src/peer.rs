//! Who owns the client end of a TCP connection to the service, from the
//! kernel's socket tables (`/proc/net/tcp`, `/proc/net/tcp6`): a TCP peer
//! has no SO_PEERCRED. Pods on an ordinary user's user-mode network reach
//! the service through pasta, which connects as that user; requests for
//! their tokens from any other socket owner (another local user who learnt
//! a token, say by listening on the service's port while it was down) are
//! refused.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The uid (as this process's user namespace sees it) owning the socket
/// `peer` connected to this host's port `service_port`; `None` if no such
/// socket is in the tables.
pub fn socket_uid(peer: SocketAddr, service_port: u16) -> Option<u32> {
    let (file, address) = match peer.ip() {
        IpAddr::V4(v4) => ("/proc/net/tcp", hex_v4(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => ("/proc/net/tcp", hex_v4(v4)),
            None => ("/proc/net/tcp6", hex_v6(v6)),
        },
    };
    let text = std::fs::read_to_string(file).ok()?;
    find_uid(
        &text,
        &format!("{address}:{:04X}", peer.port()),
        service_port,
    )
}

/// In a socket table, the uid of the socket whose local address is
/// `local` (`ADDR:PORT` as the table writes it) and whose remote port is
/// `remote_port`.
fn find_uid(table: &str, local: &str, remote_port: u16) -> Option<u32> {
    table.lines().skip(1).find_map(|line| {
        // sl, local_address, rem_address, st, tx:rx, tr:when, retrnsmt, uid
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (own, remote, uid) = (fields.get(1)?, fields.get(2)?, fields.get(7)?);
        let port = u16::from_str_radix(remote.rsplit_once(':')?.1, 16).ok()?;
        (*own == local && port == remote_port)
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
        let port = listener.local_addr().unwrap().port();
        let client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (_, peer) = listener.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        assert_eq!(
            socket_uid(peer, port),
            Some(rustix::process::geteuid().as_raw())
        );
        // Not the connection to another port.
        assert_eq!(socket_uid(peer, port.wrapping_add(1)), None);
    }

    #[test]
    fn table_lines_are_matched_by_address_and_remote_port() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:9C40 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1001        0 1 1 0 20 4 30 10 -1\n\
   1: 0100007F:9C41 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  65534        0 1 1 0 20 4 30 10 -1\n";
        assert_eq!(find_uid(table, "0100007F:9C40", 8080), Some(1001));
        assert_eq!(find_uid(table, "0100007F:9C41", 8080), Some(65534));
        assert_eq!(find_uid(table, "0100007F:9C40", 8081), None);
        assert_eq!(find_uid("garbage\nx y\n", "0100007F:9C40", 8080), None);
        assert_eq!(
            hex_v4(Ipv4Addr::LOCALHOST),
            format!("{:08X}", u32::from_ne_bytes([127, 0, 0, 1]))
        );
        assert_eq!(hex_v6(Ipv6Addr::LOCALHOST).len(), 32);
    }
}
