//! Who is asking: the client address (believing `X-Forwarded-For` only from configured
//! proxies), and a request limit per client network for what costs without giving.
//!
//! Mailbox providers send the one-click POSTs of all their users from a few egress
//! addresses, so an opt-out with a valid token is never limited: refusing it would lose
//! it. What is limited is what a stranger can make us do for nothing: page views (each one
//! a store read) and links that do not verify. The key is the client's network, /64 for
//! IPv6 (one subscriber line gets a whole /64) and the address for IPv4.

use axum::http::HeaderMap;
use governor::{DefaultKeyedRateLimiter, Quota};
use ipnet::IpNet;
use std::{
    net::{IpAddr, Ipv6Addr},
    num::NonZeroU32,
    sync::atomic::{AtomicU32, Ordering},
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

/// The network a client address is counted under, as its first address.
fn network(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V4(_) => client,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !0 << 64)),
        },
    }
}

/// A per-network request limit (GCRA, from `governor`), or none.
pub struct RateLimiter {
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// Checks since the state of idle networks was last dropped.
    checks: AtomicU32,
}

/// How often idle networks' state is dropped, in checks.
const SWEEP_EVERY: u32 = 10_000;

impl RateLimiter {
    /// `per_minute` requests per client network and minute, in bursts of as many; 0 allows
    /// everything.
    pub fn new(per_minute: u32) -> Self {
        let limiter =
            NonZeroU32::new(per_minute).map(|n| governor::RateLimiter::keyed(Quota::per_minute(n)));
        Self {
            limiter,
            checks: AtomicU32::new(0),
        }
    }

    /// Counts a request from `client`; `false` when its network is over the limit.
    pub fn allow(&self, client: IpAddr) -> bool {
        let Some(limiter) = &self.limiter else {
            return true;
        };
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            limiter.retain_recent();
        }
        limiter.check_key(&network(client)).is_ok()
    }
}

/// The token of an `Authorization: Bearer …` header value.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_headers() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearer"), None);
    }
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
    fn the_limit_applies_per_network() {
        let limiter = RateLimiter::new(2);
        assert!(limiter.allow(ip("192.0.2.1")));
        assert!(limiter.allow(ip("192.0.2.1")));
        assert!(!limiter.allow(ip("192.0.2.1")));
        assert!(limiter.allow(ip("192.0.2.2")));
        // One /64 is one client; the next /64 is another.
        assert!(limiter.allow(ip("2001:db8:0:1::1")));
        assert!(limiter.allow(ip("2001:db8:0:1::2")));
        assert!(!limiter.allow(ip("2001:db8:0:1:ffff::3")));
        assert!(limiter.allow(ip("2001:db8:0:2::1")));
        assert!(!limiter.allow(ip("::ffff:192.0.2.1")));
        assert!(RateLimiter::new(0).allow(ip("192.0.2.1")));
    }
}
