//! Who is asking: the client address (believing `X-Forwarded-For` only from configured
//! proxies) and a per-address request limit.

use axum::http::HeaderMap;
use ipnet::IpNet;
use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

/// The client's address. Behind trusted proxies it is the rightmost `X-Forwarded-For`
/// entry that is not itself a trusted proxy; a header from anyone else is ignored, since
/// any client can write one.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|entry| entry.trim().parse().ok())
        .collect();
    forwarded
        .into_iter()
        .rev()
        .find(|ip| !is_trusted(ip))
        .unwrap_or(peer)
}

/// A fixed-window request counter per client address.
pub struct RateLimiter {
    per_minute: u32,
    windows: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

const WINDOW: Duration = Duration::from_secs(60);
/// Past this many tracked addresses, expired windows are swept out.
const SWEEP_AT: usize = 100_000;

impl RateLimiter {
    /// `per_minute` requests per address and minute; 0 allows everything.
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a request from `client`; `false` when it is over the limit.
    pub fn allow(&self, client: IpAddr, now: Instant) -> bool {
        if self.per_minute == 0 {
            return true;
        }
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() >= SWEEP_AT {
            windows.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        }
        let (start, count) = windows.entry(client).or_insert((now, 0));
        if now.duration_since(*start) >= WINDOW {
            *start = now;
            *count = 0;
        }
        *count += 1;
        *count <= self.per_minute
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("198.51.100.7, 203.0.113.9, 10.0.0.2"),
        );
        assert_eq!(
            client_address(ip("10.0.0.1"), &headers, &trusted),
            ip("203.0.113.9")
        );
        assert_eq!(
            client_address(ip("192.0.2.1"), &headers, &trusted),
            ip("192.0.2.1")
        );
        assert_eq!(
            client_address(ip("10.0.0.1"), &HeaderMap::new(), &trusted),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn the_limit_applies_per_address_and_per_minute() {
        let limiter = RateLimiter::new(2);
        let t0 = Instant::now();
        assert!(limiter.allow(ip("192.0.2.1"), t0));
        assert!(limiter.allow(ip("192.0.2.1"), t0));
        assert!(!limiter.allow(ip("192.0.2.1"), t0));
        assert!(limiter.allow(ip("192.0.2.2"), t0));
        assert!(limiter.allow(ip("192.0.2.1"), t0 + WINDOW));
        assert!(RateLimiter::new(0).allow(ip("192.0.2.1"), t0));
    }
}
