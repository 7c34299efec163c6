//! Per-address limits on what strangers may make the relay do or store: login attempts
//! (`login`), new visitors and new conversations (`visitor`). One key type, [`Source`], and
//! one limiter, [`PerSource`] (governor's GCRA, keyed), pruned every minute so their memory
//! follows the recent rate, not the history.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::App;

/// Where a request comes from, as the limiters key it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Source(IpAddr);

impl Source {
    /// The key of a peer address: IPv4 as is (also when mapped into IPv6), IPv6 by its /64
    /// (one host usually holds a whole /64).
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(IpAddr::V4(v4)),
                None => {
                    let mask = !0u128 << 64;
                    Self(IpAddr::V6((u128::from(v6) & mask).into()))
                }
            },
        }
    }
}

/// At most `n` a minute per key (bursts of `n`).
pub struct PerSource<K: Clone + Eq + std::hash::Hash = Source>(DefaultKeyedRateLimiter<K>);

impl<K: Clone + Eq + std::hash::Hash> PerSource<K> {
    /// `n` a minute per key (at least one).
    pub fn per_minute(n: u32) -> Self {
        Self(RateLimiter::keyed(Quota::per_minute(
            NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN),
        )))
    }

    /// Counts one; `Err(wait)` when the key is over its limit.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        self.0
            .check_key(key)
            .map_err(|n| n.wait_time_from(DefaultClock::default().now()))
    }

    /// Forgets keys whose limit has fully recovered.
    pub fn prune(&self) {
        self.0.retain_recent();
        self.0.shrink_to_fit();
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Prunes every per-address limiter every minute until shutdown.
pub async fn prune_forever(app: Arc<App>) {
    let mut every = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = app.shutdown.cancelled() => return,
            _ = every.tick() => {
                app.login_throttle.prune();
                app.new_visitors.prune();
                app.new_conversations.prune();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_key_ipv6_by_prefix() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(Source::of(a), Source::of(b), "same /64");
        assert_ne!(Source::of(a), Source::of(c), "another /64");
        let mapped: IpAddr = "::ffff:10.0.0.7".parse().expect("ip");
        let v4: IpAddr = "10.0.0.7".parse().expect("ip");
        assert_eq!(Source::of(mapped), Source::of(v4));
    }

    #[test]
    fn limits_are_per_key() {
        let limit = PerSource::per_minute(2);
        let a = Source::of("10.0.0.1".parse().expect("ip"));
        let b = Source::of("10.0.0.2".parse().expect("ip"));
        assert!(limit.check(&a).is_ok() && limit.check(&a).is_ok());
        assert!(limit.check(&a).is_err_and(|wait| wait > Duration::ZERO));
        assert!(limit.check(&b).is_ok(), "another address has its own");
        assert_eq!(limit.len(), 2);
    }
}
