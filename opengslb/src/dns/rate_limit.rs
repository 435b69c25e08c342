//! Response rate limiting in the userspace server: the XDP program's buckets and verdicts
//! (`opengslb_common::ratelimit`), kept in LRU maps of our own. The buckets are split over shards, each
//! behind its own lock, so that the UDP sockets' tasks seldom wait for one another.

use std::{
    net::IpAddr,
    num::NonZeroUsize,
    sync::{Mutex, PoisonError},
    time::Instant,
};

use lru::LruCache;
use opengslb_common::{
    maps::geo_key_v4,
    ratelimit::{MAX_RATE_ENTRIES, RateLimit, RateState, Verdict},
};

const SHARDS: usize = 16;

/// One shard: client prefixes → their buckets, the least recently used first to go.
type Shard = Mutex<LruCache<[u8; 16], RateState>>;

/// The buckets of every client prefix the server has answered lately.
pub struct RateLimiter {
    limit: RateLimit,
    shards: Box<[Shard]>,
    epoch: Instant,
}

impl RateLimiter {
    /// A limiter for `limit`, or none when it limits nothing. It tracks as many prefixes as the XDP
    /// program does; the least recent make room for new ones.
    pub fn new(limit: RateLimit) -> Option<Self> {
        if !limit.enabled() {
            return None;
        }
        let per_shard =
            NonZeroUsize::new(MAX_RATE_ENTRIES as usize / SHARDS).unwrap_or(NonZeroUsize::MIN);
        Some(Self {
            limit,
            shards: (0..SHARDS)
                .map(|_| Mutex::new(LruCache::new(per_shard)))
                .collect(),
            epoch: Instant::now(),
        })
    }

    /// Takes one response from `client`'s bucket, or says what to do instead.
    pub fn check(&self, client: IpAddr) -> Verdict {
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.check_at(client, now)
    }

    fn check_at(&self, client: IpAddr, now_ns: u64) -> Verdict {
        // A dual-stack socket sees IPv4 clients as `::ffff:a.b.c.d`: they are IPv4 clients.
        let key = match client.to_canonical() {
            IpAddr::V4(a) => self.limit.key(geo_key_v4(a.octets()), false),
            IpAddr::V6(a) => self.limit.key(a.octets(), true),
        };
        let shard = key.iter().fold(0usize, |h, b| {
            h.wrapping_mul(31).wrapping_add(usize::from(*b))
        });
        let Some(shard) = self.shards.get(shard % SHARDS) else {
            return Verdict::Answer;
        };
        // A panic elsewhere while holding the lock leaves buckets that are still valid numbers.
        let mut buckets = shard.lock().unwrap_or_else(PoisonError::into_inner);
        match buckets.get_mut(&key) {
            Some(b) => b.check(now_ns, &self.limit),
            None => {
                buckets.put(key, RateState::first(now_ns, &self.limit));
                Verdict::Answer
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn one_prefix_is_limited_while_another_is_answered() {
        let limiter = RateLimiter::new(RateLimit::new(100, 10, 2, 24, 56)).expect("enabled");
        let flood: IpAddr = "192.0.2.7".parse().unwrap();
        let same_prefix: IpAddr = "::ffff:192.0.2.200".parse().unwrap();
        let other: IpAddr = "198.51.100.7".parse().unwrap();
        let mut answered = 0;
        let mut slipped = 0;
        // 10 000 a second for a second from one /24, 50 a second from another.
        for i in 0..10_000u64 {
            let who = if i % 2 == 0 { flood } else { same_prefix };
            match limiter.check_at(who, i * 100_000) {
                Verdict::Answer => answered += 1,
                Verdict::Slip => slipped += 1,
                Verdict::Drop => {}
            }
            if i % 200 == 0 {
                assert_eq!(limiter.check_at(other, i * 100_000), Verdict::Answer);
            }
        }
        assert!((109..=111).contains(&answered), "{answered}");
        assert_eq!(slipped, (10_000 - answered) / 2);
        assert!(RateLimiter::new(RateLimit::default()).is_none());
    }

    #[test]
    fn ipv6_clients_share_their_56() {
        let limiter = RateLimiter::new(RateLimit::new(1, 1, 0, 24, 56)).expect("enabled");
        let a: IpAddr = "2001:db8:0:ff::1".parse().unwrap();
        let b: IpAddr = "2001:db8:0:42::2".parse().unwrap();
        let c: IpAddr = "2001:db8:0:100::1".parse().unwrap();
        assert_eq!(limiter.check_at(a, MS), Verdict::Answer);
        assert_eq!(limiter.check_at(b, MS), Verdict::Drop, "the same /56");
        assert_eq!(limiter.check_at(c, MS), Verdict::Answer, "another /56");
    }
}
