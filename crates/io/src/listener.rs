//! A TCP listener for skiff's HTTP services (the metadata service, `skiff
//! serve`), guarded against clients that hold connections: every client
//! can reach the service, and a hostile one must not starve the others.
//!
//! - At most [`Limits::total`] connections at once, and at most
//!   [`Limits::per_peer`] from one address: over either, a new connection
//!   is closed at once.
//! - A connection that has not had an answer for [`Limits::idle`] (a
//!   request sent a byte a second, a keep-alive nobody uses) is closed.
//!
//! A service is one async task per connection, so a slow client holds only
//! its own connection, never a thread.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};

/// A service's connection limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once, in all.
    pub total: usize,
    /// Connections open at once from one address.
    pub per_peer: usize,
    /// How long a connection may go without an answer.
    pub idle: Duration,
    /// IPv6 clients are counted per network of this prefix (one host
    /// can hold a whole /64); 128 counts each address.
    pub v6_prefix: u8,
}

/// Whom a connection from `ip` counts against: IPv4 (and IPv4-mapped)
/// addresses each, IPv6 by their first `v6_prefix` bits.
pub fn client_key(ip: IpAddr, v6_prefix: u8) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(v6_prefix.min(128)))
                .unwrap_or(0);
            IpAddr::V6((u128::from(v6) & mask).into())
        }
        v4 => v4,
    }
}

/// Who is connected, by address.
#[derive(Default)]
struct Counts {
    total: usize,
    by_peer: HashMap<IpAddr, usize>,
}

/// A [`TcpListener`] that enforces the limits above.
pub struct Guarded {
    inner: TcpListener,
    limits: Limits,
    counts: Arc<Mutex<Counts>>,
    /// Who may connect at all (others are closed before they count).
    allow: Box<dyn Fn(IpAddr) -> bool + Send + Sync>,
}

impl Guarded {
    pub fn new(inner: TcpListener, limits: Limits) -> Self {
        Self::allowing(inner, limits, |_| true)
    }

    /// Only clients `allow` accepts are kept; others are closed at once,
    /// before they count against any limit.
    pub fn allowing(
        inner: TcpListener,
        limits: Limits,
        allow: impl Fn(IpAddr) -> bool + Send + Sync + 'static,
    ) -> Self {
        Guarded {
            inner,
            limits,
            counts: Arc::default(),
            allow: Box::new(allow),
        }
    }

    /// Counts a new connection from `peer`; false if a limit is reached.
    fn admit(&self, peer: IpAddr) -> bool {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let from_peer = counts.by_peer.get(&peer).copied().unwrap_or(0);
        if counts.total >= self.limits.total || from_peer >= self.limits.per_peer {
            return false;
        }
        counts.total += 1;
        counts.by_peer.insert(peer, from_peer + 1);
        true
    }
}

/// Resolves on SIGTERM or SIGINT: how a service is stopped.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// The address a connection came from (`ConnectInfo<Peer>`).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, Guarded>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, Guarded>) -> Self {
        Peer(*stream.remote_addr())
    }
}

impl axum::serve::Listener for Guarded {
    type Io = Connection;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, peer) = match self.inner.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors or the like: wait, as axum does.
                    tracing::warn!("cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if !(self.allow)(peer.ip().to_canonical()) {
                tracing::debug!(%peer, "not allowed: closed");
                drop(stream);
                continue;
            }
            let key = client_key(peer.ip(), self.limits.v6_prefix);
            if !self.admit(key) {
                tracing::debug!(%peer, "connection limit reached: closed");
                drop(stream);
                continue;
            }
            let connection = Connection {
                stream,
                peer: key,
                counts: self.counts.clone(),
                limit: self.limits.idle,
                idle: Box::pin(tokio::time::sleep(self.limits.idle)),
            };
            return (connection, peer);
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// One admitted connection: uncounted when dropped, closed when idle.
pub struct Connection {
    stream: TcpStream,
    peer: IpAddr,
    counts: Arc<Mutex<Counts>>,
    limit: Duration,
    idle: Pin<Box<Sleep>>,
}

impl Connection {
    fn timed_out(&mut self, cx: &mut Context<'_>) -> bool {
        self.idle.as_mut().poll(cx).is_ready()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.by_peer.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                counts.by_peer.remove(&self.peer);
            }
        }
    }
}

fn idle_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "no complete request within the idle limit",
    )
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.timed_out(cx) {
            return Poll::Ready(Err(idle_error()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.stream).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written
            && n > 0
        {
            // An answer went out: the client has its next idle period.
            let deadline = Instant::now() + self.limit;
            self.idle.as_mut().reset(deadline);
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn limits_count_per_peer_and_in_all() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let limits = Limits {
            total: 200,
            per_peer: 128,
            idle: Duration::from_secs(1),
            v6_prefix: 64,
        };
        let guarded = Guarded::new(listener, limits);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..limits.per_peer {
            assert!(guarded.admit(a));
        }
        assert!(!guarded.admit(a), "one address past its limit");
        assert!(guarded.admit("10.0.0.2".parse().unwrap()));
        let mut counts = guarded.counts.lock().unwrap();
        counts.total = limits.total;
        drop(counts);
        assert!(
            !guarded.admit("10.0.0.3".parse().unwrap()),
            "past the total"
        );
        let a: IpAddr = "fd00::1".parse().unwrap();
        let b: IpAddr = "fd00::2:3".parse().unwrap();
        assert_eq!(client_key(a, 64), client_key(b, 64), "one /64");
        assert_ne!(client_key(a, 128), client_key(b, 128));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(
            client_key(mapped, 64),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
    }
}
