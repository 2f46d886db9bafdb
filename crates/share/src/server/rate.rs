//! Requests per second from one address: a token bucket each, so one peer
//! (or one hostile client) cannot keep the server hashing and reading for
//! everyone. Over the limit, a request is answered 429 at once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Addresses remembered at most (the quietest are forgotten first).
const MAX_ADDRESSES: usize = 4096;

pub struct RateLimit {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimit {
    pub fn new(per_second: u32, burst: u32) -> Self {
        RateLimit {
            per_second: f64::from(per_second),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::default(),
        }
    }

    /// Takes one request's token for `peer`; false if it has none left.
    pub fn admit(&self, peer: IpAddr, now: Instant) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_ADDRESSES && !buckets.contains_key(&peer) {
            // Full tokens again after burst / rate: such entries say nothing.
            let full_after = self.burst / self.per_second.max(f64::MIN_POSITIVE);
            buckets.retain(|_, (_, at)| now.duration_since(*at).as_secs_f64() < full_after);
            if buckets.len() >= MAX_ADDRESSES {
                return false;
            }
        }
        let (tokens, at) = buckets.entry(peer).or_insert((self.burst, now));
        let refill = now.duration_since(*at).as_secs_f64() * self.per_second;
        *tokens = (*tokens + refill).min(self.burst);
        *at = now;
        if *tokens < 1.0 {
            return false;
        }
        *tokens -= 1.0;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_then_the_rate() {
        let limit = RateLimit::new(10, 5);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(limit.admit(a, t0));
        }
        assert!(!limit.admit(a, t0), "past the burst");
        assert!(limit.admit(b, t0), "another address has its own bucket");
        assert!(limit.admit(a, t0 + Duration::from_millis(100)), "refilled");
        assert!(!limit.admit(a, t0 + Duration::from_millis(100)));
    }
}
