//! The learned-latency table: what agents measured of real clients' round-trip times, by client subnet and
//! backend, and the backend that is fastest for a client's subnet.
//!
//! Agents aggregate the RTTs of their app's connections per client subnet and report each subnet's moving
//! average with its sample count; a report replaces what the table held for that subnet and backend (the
//! agent's average already carries the history). Subnets are kept at the prefix length the agent grouped
//! them by (`agent.latency_learning.ipv4_prefix`, `ipv6_prefix`), and a client is looked up by the longest
//! one holding it, so an agent's grouping is honoured whatever it is. The table is bounded: past
//! `max_subnets` the subnet updated longest ago goes, and an entry older than `ttl` neither counts nor
//! stays (`prune`). An entry counts for a choice once it has `min_samples` samples, so one odd connection
//! does not move a subnet.

use std::{
    collections::{BTreeMap, HashMap},
    hash::Hash,
    net::IpAddr,
    sync::{PoisonError, RwLock},
    time::{Duration, Instant},
};

use ipnet::IpNet;

/// The bounds of a [`LearnedTable`], and how a single address put in by hand is grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The prefix length an IPv4 address is grouped by ([`LearnedTable::subnet_of`]).
    pub v4_prefix: u8,
    /// The prefix length an IPv6 address is grouped by.
    pub v6_prefix: u8,
    /// The most subnets held; the subnet updated longest ago makes room.
    pub max_subnets: usize,
    /// How long an entry counts after its last report.
    pub ttl: Duration,
    /// The samples an entry needs before it counts.
    pub min_samples: u64,
}

impl Default for Limits {
    /// The original's defaults: /24 and /48, 100,000 subnets, 7 days, 5 samples.
    fn default() -> Self {
        Self {
            v4_prefix: 24,
            v6_prefix: 48,
            max_subnets: 100_000,
            ttl: Duration::from_secs(7 * 24 * 3600),
            min_samples: 5,
        }
    }
}

/// Who said what a [`Learned`] entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// An agent, from its backend's kernel.
    Agent,
    /// An operator, through the API (`POST /api/v1/overwatch/latency`).
    Api,
}

impl Source {
    /// Its name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Api => "api",
        }
    }
}

/// One backend's latency as seen from one subnet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Learned {
    /// The moving average of the round-trip time.
    pub rtt: Duration,
    /// How many RTT samples the average is made of.
    pub samples: u64,
    /// When it was last reported.
    pub updated: Instant,
    /// Who reported it.
    pub source: Source,
}

#[derive(Debug)]
struct Subnet<B> {
    backends: HashMap<B, Learned>,
    /// This subnet's key in `LearnedTable::by_age`.
    age_key: (Instant, u64),
}

/// The learned-latency table of backends `B` (see the module docs).
#[derive(Debug)]
pub struct LearnedTable<B> {
    limits: Limits,
    subnets: HashMap<IpNet, Subnet<B>>,
    /// Subnets by their last update, oldest first; the counter orders updates made at one instant.
    by_age: BTreeMap<(Instant, u64), IpNet>,
    counter: u64,
    evicted: u64,
    /// The prefix lengths subnets are held at, IPv4's then IPv6's, with how many subnets have each.
    lengths: [BTreeMap<u8, usize>; 2],
}

/// The index of an address's family in [`LearnedTable::lengths`].
fn family(addr: IpAddr) -> usize {
    usize::from(addr.is_ipv6())
}

/// `net` with its host bits cleared, an IPv4-mapped IPv6 network as IPv4.
fn canonical(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.network().to_ipv4_mapped() {
            Some(v4) => IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96).map_or(net, |n| n.trunc()),
            None => net.trunc(),
        },
        _ => net.trunc(),
    }
}

impl<B: Eq + Hash + Clone> LearnedTable<B> {
    /// An empty table with `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            subnets: HashMap::new(),
            by_age: BTreeMap::new(),
            counter: 0,
            evicted: 0,
            lengths: [BTreeMap::new(), BTreeMap::new()],
        }
    }

    /// The table's limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The subnet a single address is grouped in by the limits' prefix lengths (an IPv4-mapped IPv6
    /// address as IPv4).
    pub fn subnet_of(&self, addr: IpAddr) -> IpNet {
        let addr = addr.to_canonical();
        let len = match addr {
            IpAddr::V4(_) => self.limits.v4_prefix.min(32),
            IpAddr::V6(_) => self.limits.v6_prefix.min(128),
        };
        // The length is within the family's bound, so this cannot fail.
        IpNet::new(addr, len).map_or_else(|_| IpNet::from(addr), |net| net.trunc())
    }

    /// Records that `backend`, seen from `subnet` (held at its own prefix length, host bits cleared), has
    /// an average RTT `rtt` over `samples` samples, as of `now`, from an agent.
    pub fn observe(
        &mut self,
        subnet: IpNet,
        backend: B,
        rtt: Duration,
        samples: u64,
        now: Instant,
    ) {
        self.insert(subnet, backend, rtt, samples, now, Source::Agent);
    }

    /// [`LearnedTable::observe`] from any source; returns the subnet as held.
    pub fn insert(
        &mut self,
        subnet: IpNet,
        backend: B,
        rtt: Duration,
        samples: u64,
        now: Instant,
        source: Source,
    ) -> IpNet {
        let net = canonical(subnet);
        self.counter += 1;
        let age_key = (now, self.counter);
        let learned = Learned {
            rtt,
            samples,
            updated: now,
            source,
        };
        if let Some(entry) = self.subnets.get_mut(&net) {
            self.by_age.remove(&entry.age_key);
            entry.age_key = age_key;
            entry.backends.insert(backend, learned);
        } else {
            while self.subnets.len() >= self.limits.max_subnets.max(1) {
                let Some((_, oldest)) = self.by_age.pop_first() else {
                    break;
                };
                self.subnets.remove(&oldest);
                self.forget_length(oldest);
                self.evicted += 1;
            }
            *self.lengths[family(net.network())]
                .entry(net.prefix_len())
                .or_default() += 1;
            self.subnets.insert(
                net,
                Subnet {
                    backends: HashMap::from([(backend, learned)]),
                    age_key,
                },
            );
        }
        self.by_age.insert(age_key, net);
        net
    }

    /// The subnets holding `client`, longest prefix first.
    pub fn subnets_of(&self, client: IpAddr) -> impl Iterator<Item = IpNet> + '_ {
        let client = client.to_canonical();
        self.lengths[family(client)]
            .keys()
            .rev()
            .filter_map(move |len| IpNet::new(client, *len).ok().map(|n| n.trunc()))
            .filter(|net| self.subnets.contains_key(net))
    }

    /// The longest prefix length subnets of `client`'s family are held at (0 when none are): any client
    /// inside a prefix that long gets the same choice, so it is the scope an EDNS Client Subnet answer
    /// holds for.
    pub fn scope_of(&self, client: IpAddr) -> u8 {
        self.lengths[family(client.to_canonical())]
            .keys()
            .next_back()
            .copied()
            .unwrap_or(0)
    }

    /// Of `candidates`, the one with the lowest average RTT from the longest subnet holding `client` that
    /// has an entry that counts (at least `min_samples` samples and the table's own minimum, not older
    /// than the TTL) for any of them; the first of them on a tie. `None` when none has one: the caller
    /// falls back.
    pub fn fastest<'a>(
        &self,
        client: IpAddr,
        candidates: impl IntoIterator<Item = &'a B> + Clone,
        min_samples: u64,
        now: Instant,
    ) -> Option<&'a B>
    where
        B: 'a,
    {
        self.subnets_of(client).find_map(|net| {
            let subnet = self.subnets.get(&net)?;
            let mut best: Option<(&'a B, Duration)> = None;
            for candidate in candidates.clone() {
                let Some(learned) = subnet.backends.get(candidate) else {
                    continue;
                };
                if !self.counts(learned, now) || learned.samples < min_samples {
                    continue;
                }
                if best.is_none_or(|(_, rtt)| learned.rtt < rtt) {
                    best = Some((candidate, learned.rtt));
                }
            }
            best.map(|(backend, _)| backend)
        })
    }

    /// What was learned from `subnet` (as held: host bits cleared), by backend.
    pub fn subnet(&self, subnet: IpNet) -> impl Iterator<Item = (&B, &Learned)> {
        self.subnets
            .get(&canonical(subnet))
            .into_iter()
            .flat_map(|s| s.backends.iter())
    }

    /// Removes the entries older than the TTL, and the subnets left empty; returns how many entries went.
    pub fn prune(&mut self, now: Instant) -> usize {
        let ttl = self.limits.ttl;
        let mut removed = 0;
        let mut emptied = Vec::new();
        for (net, subnet) in &mut self.subnets {
            let before = subnet.backends.len();
            subnet
                .backends
                .retain(|_, learned| now.saturating_duration_since(learned.updated) <= ttl);
            removed += before - subnet.backends.len();
            if subnet.backends.is_empty() {
                emptied.push((*net, subnet.age_key));
            }
        }
        for (net, age_key) in emptied {
            self.subnets.remove(&net);
            self.by_age.remove(&age_key);
            self.forget_length(net);
        }
        removed
    }

    fn forget_length(&mut self, net: IpNet) {
        let lengths = &mut self.lengths[family(net.network())];
        if let Some(n) = lengths.get_mut(&net.prefix_len()) {
            *n -= 1;
            if *n == 0 {
                lengths.remove(&net.prefix_len());
            }
        }
    }

    /// Every entry: subnet, backend, what was learned.
    pub fn entries(&self) -> impl Iterator<Item = (IpNet, &B, &Learned)> {
        self.subnets.iter().flat_map(|(net, subnet)| {
            subnet
                .backends
                .iter()
                .map(move |(backend, learned)| (*net, backend, learned))
        })
    }

    /// How many subnets the table holds.
    pub fn subnet_count(&self) -> usize {
        self.subnets.len()
    }

    /// How many subnets were evicted to keep within `max_subnets`.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    fn counts(&self, learned: &Learned, now: Instant) -> bool {
        learned.samples >= self.limits.min_samples
            && now.saturating_duration_since(learned.updated) <= self.limits.ttl
    }
}

/// The overwatch's learned-latency table of backend addresses (a round-trip time belongs to the path to a
/// host, not to a port or a service), shared by the control loop that writes agents' reports into it, the
/// userspace DNS path that answers from it, and the API. Each query of a `learned-latency` name reads it
/// under a read lock; writes are a report's worth of entries at a time.
#[derive(Debug)]
pub struct LearnedLatency(RwLock<LearnedTable<IpAddr>>);

impl Default for LearnedLatency {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

impl LearnedLatency {
    /// An empty table with `limits`.
    pub fn new(limits: Limits) -> Self {
        Self(RwLock::new(LearnedTable::new(limits)))
    }

    /// Reads the table.
    pub fn read<T>(&self, f: impl FnOnce(&LearnedTable<IpAddr>) -> T) -> T {
        f(&self.0.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Of `records`, the one measured fastest from `client`'s subnet now, with at least `min_samples`
    /// samples ([`LearnedTable::fastest`]).
    pub fn fastest(&self, client: IpAddr, records: &[IpAddr], min_samples: u32) -> Option<IpAddr> {
        self.read(|t| {
            t.fastest(client, records, u64::from(min_samples), Instant::now())
                .copied()
        })
    }

    /// Changes the table.
    pub fn write<T>(&self, f: impl FnOnce(&mut LearnedTable<IpAddr>) -> T) -> T {
        f(&mut self.0.write().unwrap_or_else(PoisonError::into_inner))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn clients_are_grouped_by_the_configured_prefixes() {
        let table = LearnedTable::<&str>::new(Limits::default());
        assert_eq!(
            table.subnet_of("198.51.100.77".parse().unwrap()),
            net("198.51.100.0/24")
        );
        assert_eq!(
            table.subnet_of("::ffff:198.51.100.77".parse().unwrap()),
            net("198.51.100.0/24")
        );
        assert_eq!(
            table.subnet_of("2001:db8:1:2::9".parse().unwrap()),
            net("2001:db8:1::/48")
        );
        let narrow = LearnedTable::<&str>::new(Limits {
            v4_prefix: 200,
            v6_prefix: 64,
            ..Limits::default()
        });
        assert_eq!(
            narrow.subnet_of("198.51.100.77".parse().unwrap()),
            net("198.51.100.77/32")
        );
        assert_eq!(
            narrow.subnet_of("2001:db8:1:2::9".parse().unwrap()),
            net("2001:db8:1:2::/64")
        );
    }

    #[test]
    fn each_subnet_gets_its_fastest_backend_once_it_has_enough_samples() {
        let now = Instant::now();
        let mut table = LearnedTable::new(Limits::default());
        table.observe(net("10.1.0.0/24"), "near-a", ms(5), 10, now);
        table.observe(net("10.1.0.0/24"), "near-b", ms(80), 10, now);
        table.observe(net("10.2.0.7/32"), "near-a", ms(90), 10, now);
        table.observe(net("10.2.0.99/24"), "near-b", ms(4), 10, now);
        let all = ["near-a", "near-b"];
        let a: IpAddr = "10.1.0.200".parse().unwrap();
        let b: IpAddr = "10.2.0.3".parse().unwrap();
        assert_eq!(table.fastest(a, &all, 0, now), Some(&"near-a"));
        assert_eq!(table.fastest(b, &all, 0, now), Some(&"near-b"));
        // Each subnet is held at its own length (host bits cleared); the longest holding a client
        // decides, and the answer's scope is the longest length in use.
        let host: IpAddr = "10.2.0.7".parse().unwrap();
        assert_eq!(
            table.subnets_of(host).collect::<Vec<_>>(),
            [net("10.2.0.7/32"), net("10.2.0.0/24")]
        );
        assert_eq!(table.fastest(host, &all, 0, now), Some(&"near-a"));
        assert_eq!(
            table.fastest(host, &["near-b"], 0, now),
            Some(&"near-b"),
            "else the /24"
        );
        assert_eq!(table.scope_of(host), 32);
        assert_eq!(table.scope_of("2001:db8::1".parse().unwrap()), 0);
        // An IPv4-mapped subnet is held as IPv4.
        table.observe(net("::ffff:10.3.0.0/120"), "near-b", ms(1), 10, now);
        assert_eq!(table.subnet(net("10.3.0.0/24")).count(), 1);
        // Only healthy candidates are offered: the fastest of those.
        assert_eq!(table.fastest(a, &["near-b"], 0, now), Some(&"near-b"));
        // A subnet nothing was learned for: the caller falls back.
        assert_eq!(
            table.fastest("10.4.0.1".parse().unwrap(), &all, 0, now),
            None
        );
        // Too few samples do not count.
        table.observe(net("10.1.0.0/24"), "near-b", ms(1), 4, now);
        assert_eq!(table.fastest(a, &all, 0, now), Some(&"near-a"));
        table.observe(net("10.1.0.0/24"), "near-b", ms(1), 5, now);
        assert_eq!(table.fastest(a, &all, 0, now), Some(&"near-b"));
        // A tie goes to the first candidate.
        table.observe(net("10.1.0.0/24"), "near-a", ms(1), 5, now);
        assert_eq!(table.fastest(a, &all, 0, now), Some(&"near-a"));
        assert_eq!(
            table.fastest(a, &["near-b", "near-a"], 0, now),
            Some(&"near-b")
        );
    }

    #[test]
    fn old_entries_stop_counting_and_are_pruned() {
        let t0 = Instant::now();
        let limits = Limits {
            ttl: Duration::from_secs(60),
            ..Limits::default()
        };
        let mut table = LearnedTable::new(limits);
        table.observe(net("10.1.0.0/24"), "a", ms(5), 10, t0);
        table.observe(
            net("10.1.0.0/24"),
            "b",
            ms(50),
            10,
            t0 + Duration::from_secs(30),
        );
        let client: IpAddr = "10.1.0.1".parse().unwrap();
        let later = t0 + Duration::from_secs(61);
        assert_eq!(table.fastest(client, &["a", "b"], 0, later), Some(&"b"));
        assert_eq!(table.prune(later), 1);
        assert_eq!(table.entries().count(), 1);
        assert_eq!(table.prune(t0 + Duration::from_secs(91)), 1);
        assert_eq!(table.subnet_count(), 0);
        assert_eq!(table.fastest(client, &["a", "b"], 0, later), None);
    }

    #[test]
    fn the_subnet_updated_longest_ago_makes_room() {
        let t0 = Instant::now();
        let limits = Limits {
            max_subnets: 2,
            ..Limits::default()
        };
        let mut table = LearnedTable::new(limits);
        table.observe(net("10.1.0.0/24"), "a", ms(5), 10, t0);
        table.observe(net("10.2.0.0/24"), "a", ms(5), 10, t0);
        // Refreshing 10.1 makes 10.2 the oldest.
        table.observe(net("10.1.0.0/24"), "b", ms(5), 10, t0);
        table.observe(net("10.3.0.0/24"), "a", ms(5), 10, t0);
        assert_eq!(table.subnet_count(), 2);
        assert_eq!(table.evicted(), 1);
        let held: Vec<IpNet> = {
            let mut v: Vec<_> = table.entries().map(|(n, _, _)| n).collect();
            v.sort();
            v.dedup();
            v
        };
        assert_eq!(held, [net("10.1.0.0/24"), net("10.3.0.0/24")]);
        // Bounded however many subnets arrive.
        for i in 0..1000u32 {
            let addr = std::net::Ipv4Addr::from(0x0a00_0000 + (i << 8));
            table.observe(IpNet::from(IpAddr::V4(addr)), "a", ms(1), 10, t0);
        }
        assert_eq!(table.subnet_count(), 2);
        assert_eq!(table.by_age.len(), 2);
        assert_eq!(table.lengths[0].values().sum::<usize>(), 2);
        assert_eq!(table.prune(t0 + Duration::from_secs(8 * 24 * 3600)), 2);
        assert!(table.lengths[0].is_empty());
    }
}
