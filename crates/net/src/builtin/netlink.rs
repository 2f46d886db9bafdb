//! A small synchronous netlink client: messages built attribute by
//! attribute, sent on a socket of the calling thread's network namespace,
//! answered by an acknowledgement or an error. It speaks only what the
//! built-in networks need (a handful of rtnetlink and nf_tables messages),
//! so it is written here rather than taken from a general crate.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use rustix::net::{AddressFamily, Protocol, RecvFlags, SendFlags, SocketType};

/// `NLMSG_ERROR`: an acknowledgement (code 0) or an error.
const NLMSG_ERROR: u16 = 2;
/// `NLMSG_DONE`: the end of a dump.
const NLMSG_DONE: u16 = 3;
pub const NLM_F_REQUEST: u16 = 1;
pub const NLM_F_ACK: u16 = 4;
/// `NLM_F_ROOT | NLM_F_MATCH`: every object that matches, ended by `NLMSG_DONE`.
pub const NLM_F_DUMP: u16 = 0x300;
pub const NLM_F_EXCL: u16 = 0x200;
pub const NLM_F_CREATE: u16 = 0x400;
/// Marks a nested attribute.
const NLA_F_NESTED: u16 = 0x8000;
/// Longest wait for the kernel's answer.
const TIMEOUT: Duration = Duration::from_secs(10);

/// One netlink message being built: its header, then a fixed family
/// header, then attributes (nested ones through [`Message::nest`]).
#[derive(Debug, Clone)]
pub struct Message {
    buf: Vec<u8>,
    open: Vec<usize>,
    acked: bool,
}

impl Message {
    /// A message of `kind` with `flags` (`NLM_F_REQUEST` is added) and the
    /// family header `header`.
    pub fn new(kind: u16, flags: u16, header: &[u8]) -> Message {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&0u32.to_ne_bytes());
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        buf.extend_from_slice(&[0; 8]);
        buf.extend_from_slice(header);
        pad(&mut buf);
        Message {
            buf,
            open: Vec::new(),
            // A dump is answered up to its NLMSG_DONE.
            acked: flags & NLM_F_ACK != 0 || flags & NLM_F_DUMP == NLM_F_DUMP,
        }
    }

    /// Appends attribute `kind` holding `data`.
    pub fn attr(&mut self, kind: u16, data: &[u8]) -> &mut Self {
        let len = 4 + data.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(data);
        pad(&mut self.buf);
        self
    }

    /// Appends `bytes` as they are (a header inside a nested attribute).
    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(bytes);
        pad(&mut self.buf);
        self
    }

    /// A NUL-terminated string attribute.
    pub fn str(&mut self, kind: u16, value: &str) -> &mut Self {
        let mut data = Vec::with_capacity(value.len() + 1);
        data.extend_from_slice(value.as_bytes());
        data.push(0);
        self.attr(kind, &data)
    }

    /// A host-order u32 attribute (rtnetlink).
    pub fn u32(&mut self, kind: u16, value: u32) -> &mut Self {
        self.attr(kind, &value.to_ne_bytes())
    }

    /// A network-order u32 attribute (nf_tables).
    pub fn be32(&mut self, kind: u16, value: u32) -> &mut Self {
        self.attr(kind, &value.to_be_bytes())
    }

    /// Opens a nested attribute; [`Message::end`] closes it.
    pub fn nest(&mut self, kind: u16) -> &mut Self {
        self.open.push(self.buf.len());
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        self
    }

    /// Closes the innermost open nested attribute.
    pub fn end(&mut self) -> &mut Self {
        if let Some(start) = self.open.pop() {
            let len = (self.buf.len() - start) as u16;
            self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        }
        self
    }

    /// The message's bytes with its length and sequence number set.
    fn finish(&self, seq: u32) -> Vec<u8> {
        let mut buf = self.buf.clone();
        let len = buf.len() as u32;
        buf[0..4].copy_from_slice(&len.to_ne_bytes());
        buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        buf
    }
}

fn pad(buf: &mut Vec<u8>) {
    while !buf.len().is_multiple_of(4) {
        buf.push(0);
    }
}

/// One answer to a request: its type and payload (after the header).
#[derive(Debug, Clone)]
pub struct Reply {
    pub kind: u16,
    pub payload: Vec<u8>,
}

/// A netlink socket of one protocol in the network namespace of the
/// thread that opened it.
#[derive(Debug)]
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

impl Netlink {
    /// `NETLINK_ROUTE`.
    pub fn route() -> io::Result<Netlink> {
        Netlink::open(None)
    }

    /// `NETLINK_NETFILTER`.
    pub fn netfilter() -> io::Result<Netlink> {
        Netlink::open(Some(rustix::net::netlink::NETFILTER))
    }

    fn open(protocol: Option<Protocol>) -> io::Result<Netlink> {
        let fd = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::RAW,
            rustix::net::SocketFlags::CLOEXEC,
            protocol,
        )?;
        rustix::net::sockopt::set_socket_timeout(
            &fd,
            rustix::net::sockopt::Timeout::Recv,
            Some(TIMEOUT),
        )?;
        Ok(Netlink { fd, seq: 0 })
    }

    /// Sends `message` (which must ask for an acknowledgement) and returns
    /// the replies before it; the kernel's error becomes an `io::Error`.
    pub fn request(&mut self, message: &Message) -> io::Result<Vec<Reply>> {
        self.exchange(&[message])
    }

    /// Sends `messages` in one write (an nf_tables batch) and waits until
    /// every one that asked for an acknowledgement has one (and every dump
    /// its end), or for the first error.
    pub fn exchange(&mut self, messages: &[&Message]) -> io::Result<Vec<Reply>> {
        let mut out = Vec::new();
        let mut waiting = Vec::new();
        for m in messages {
            self.seq = self.seq.wrapping_add(1);
            if m.acked {
                waiting.push(self.seq);
            }
            out.extend_from_slice(&m.finish(self.seq));
        }
        let sent = rustix::net::send(self.fd.as_fd(), &out, SendFlags::empty())?;
        if sent != out.len() {
            return Err(io::Error::other("netlink: short send"));
        }
        let mut replies = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        while !waiting.is_empty() {
            let (n, _) = rustix::net::recv(self.fd.as_fd(), &mut buf[..], RecvFlags::empty())?;
            let mut rest = &buf[..n];
            while rest.len() >= 16 {
                let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                if len < 16 || len > rest.len() {
                    return Err(io::Error::other("netlink: malformed answer"));
                }
                let kind = u16::from_ne_bytes([rest[4], rest[5]]);
                let seq = u32::from_ne_bytes([rest[8], rest[9], rest[10], rest[11]]);
                let payload = &rest[16..len];
                match kind {
                    NLMSG_ERROR => {
                        let code = payload
                            .get(0..4)
                            .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                            .ok_or_else(|| io::Error::other("netlink: short error"))?;
                        if code != 0 {
                            return Err(io::Error::from_raw_os_error(-code));
                        }
                        waiting.retain(|&s| s != seq);
                    }
                    NLMSG_DONE => {
                        // A failed dump says why in its DONE's payload.
                        let code = payload
                            .get(0..4)
                            .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                        if code < 0 {
                            return Err(io::Error::from_raw_os_error(-code));
                        }
                        waiting.retain(|&s| s != seq);
                    }
                    _ => replies.push(Reply {
                        kind,
                        payload: payload.to_vec(),
                    }),
                }
                let aligned = (len + 3) & !3;
                rest = rest.get(aligned..).unwrap_or(&[]);
            }
        }
        Ok(replies)
    }
}

/// The attributes of a payload after its `header` bytes: `(kind, data)`
/// pairs, the nested flag cleared.
pub fn attributes(payload: &[u8], header: usize) -> Vec<(u16, &[u8])> {
    let mut found = Vec::new();
    let mut rest = payload.get(header..).unwrap_or(&[]);
    while rest.len() >= 4 {
        let len = u16::from_ne_bytes([rest[0], rest[1]]) as usize;
        let kind = u16::from_ne_bytes([rest[2], rest[3]]) & !NLA_F_NESTED;
        if len < 4 || len > rest.len() {
            break;
        }
        found.push((kind, &rest[4..len]));
        rest = rest.get((len + 3) & !3..).unwrap_or(&[]);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_padded_and_nested_lengths_are_set() {
        let mut m = Message::new(16, NLM_F_ACK, &[1, 2, 3]);
        m.str(3, "eth0").nest(18).u32(1, 7).end();
        let bytes = m.finish(9);
        assert_eq!(bytes.len() % 4, 0);
        assert_eq!(
            u32::from_ne_bytes(bytes[0..4].try_into().unwrap()) as usize,
            bytes.len()
        );
        assert_eq!(u32::from_ne_bytes(bytes[8..12].try_into().unwrap()), 9);
        // Header 16 + family header 3 padded to 4.
        let attrs = attributes(&bytes[16..], 4);
        assert_eq!(attrs.len(), 2);
        assert_eq!(attrs[0], (3, &b"eth0\0"[..]));
        assert_eq!(attrs[1].0, 18);
        assert_eq!(
            attributes(attrs[1].1, 0),
            vec![(1, &7u32.to_ne_bytes()[..])]
        );
    }

    #[test]
    fn truncated_attributes_end_the_walk() {
        assert!(attributes(&[8, 0, 1, 0, 1], 0).is_empty());
        assert!(attributes(&[], 4).is_empty());
    }
}
