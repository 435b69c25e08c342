//! The answer table: for each name and record type, the TTL, the routing policy, how many records one
//! answer carries, and the records. It is the one source of truth of both DNS paths: rendered once per
//! publish (by a [`Renderer`]) into the entries the XDP map holds and the userspace server's fast path answers
//! from, and read as it is by the userspace server for everything else.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use crate::{name::DnsName, routing::learned::LearnedLatency};
use opengslb_common::{
    dns::{Draw, answer_indices},
    maps::{MAX_RECORDS, MAX_SLOTS, QTYPE_A, QTYPE_AAAA, policy},
};

pub(crate) mod render;
mod weights;

pub use render::{LEFT_REASONS, MAP_FULL, Rendered, Renderer};
pub use weights::{MAX_WEIGHT_SLOTS, weight_slots};

// The map's slot array holds any slot table.
const _: () = assert!(MAX_SLOTS == MAX_WEIGHT_SLOTS);

/// How one answer draws from an entry's records. The control plane decides it from the name's routing
/// algorithm when it builds the table (`overwatch::control`); both DNS paths then draw alike, through
/// `opengslb_common::dns` (the XDP program from the rendered map entry, userspace by [`Entry::answer`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Policy {
    /// Rotate through the records, `max_answers` at a time.
    #[default]
    RoundRobin,
    /// The first `max_answers` records in table order, no rotation: `failover` and measured `latency`,
    /// whose order the control plane decides (and republishes when it changes).
    FixedOrder,
    /// `weighted`: the first record by the entry's weight slot table at the rotation position, the next
    /// ones the following records in table order.
    Weighted,
    /// `geolocation`: the client's region id (from its source address through the geolocation trie, or
    /// from EDNS Client Subnet), then round-robin among the records of that region, else of
    /// `default_region`, else all.
    Geo {
        /// The region id (1..=255; 0: none) of clients placed nowhere.
        default_region: u8,
    },
    /// `learned-latency`: the backend agents measured fastest from the client's subnet
    /// ([`LearnedLatency`](crate::routing::learned::LearnedLatency)) first, then the rest as
    /// [`Policy::Geo`] draws them; a subnet with nothing learned gets the `Geo` answer (round-robin among
    /// all without regions). Userspace only: the table changes with every report, not every publish, so
    /// the XDP program passes these queries up.
    Learned {
        /// As [`Policy::Geo`]'s.
        default_region: u8,
        /// The samples a learned latency needs to count (`latency_config.min_samples`).
        min_samples: u32,
    },
}

impl Policy {
    /// The records map's code for it.
    pub const fn code(self) -> u8 {
        match self {
            Self::RoundRobin => policy::ROUND_ROBIN,
            Self::FixedOrder => policy::FIXED_ORDER,
            Self::Weighted => policy::WEIGHTED,
            Self::Geo { .. } => policy::GEO,
            Self::Learned { .. } => policy::USERSPACE,
        }
    }

    /// The code [`Entry::answer`] draws by: a [`Policy::Learned`] entry's fallback is geolocation.
    const fn draw_code(self) -> u8 {
        match self {
            Self::Learned { .. } => policy::GEO,
            other => other.code(),
        }
    }

    const fn default_region(self) -> u8 {
        match self {
            Self::Geo { default_region } | Self::Learned { default_region, .. } => default_region,
            _ => 0,
        }
    }
}

/// What a name answers when every one of its backends is out (docs/control-plane.md, "All down"). The
/// registry applies it when it builds the name's answer set
/// ([`Registry::answer_set`](crate::registry::Registry::answer_set)), so an entry's records are already
/// what it chose and neither DNS path acts on it again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AllDown {
    /// Answer with every configured backend, so one bad signal cannot black-hole a service (gdnsd's way).
    #[default]
    All,
    /// Answer with the last set that was healthy (`dns.return_last_healthy: true`).
    LastHealthy,
    /// NOERROR with no answer and the SOA (NODATA), negatively cached for `dns.soa.negative_ttl`.
    Empty,
}

impl AllDown {
    /// The name the config and the metrics give it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::LastHealthy => "last_healthy",
            Self::Empty => "empty",
        }
    }
}

/// The key of one entry: a name, and A or AAAA.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryKey {
    /// The name.
    pub name: DnsName,
    /// [`QTYPE_A`] or [`QTYPE_AAAA`].
    pub qtype: u16,
}

/// What one name answers for one record type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// TTL of the answer records, seconds.
    pub ttl: u32,
    /// How one answer draws from the records.
    pub policy: Policy,
    /// How many records one answer carries.
    pub max_answers: u8,
    /// What to answer when every backend is out.
    pub all_down: AllDown,
    /// The records an answer draws from, all of the entry's type, in answer order (under
    /// [`Policy::Weighted`] those of positive weight, or all if none has one).
    pub records: Vec<IpAddr>,
    /// [`Policy::Weighted`]: the weight slot table ([`weight_slots`]), indices into `records`.
    pub slots: Vec<u8>,
    /// [`Policy::Geo`] and [`Policy::Learned`]: each record's region id (0: none).
    pub regions: Vec<u8>,
}

impl Entry {
    fn new(ttl: u32, max_answers: u8, all_down: AllDown, family: &Family) -> Self {
        let weighted = family.policy == Policy::Weighted;
        let mut records: Vec<&SpecRecord> = family.records.iter().collect();
        if weighted && records.iter().any(|r| r.weight > 0) {
            records.retain(|r| r.weight > 0);
        }
        let weights: Vec<u32> = records.iter().map(|r| r.weight.max(1)).collect();
        Self {
            ttl,
            policy: family.policy,
            max_answers: max_answers.max(1),
            all_down,
            slots: if weighted {
                weight_slots(&weights)
            } else {
                Vec::new()
            },
            regions: match family.policy {
                Policy::Geo { .. } | Policy::Learned { .. } => {
                    records.iter().map(|r| r.region).collect()
                }
                _ => Vec::new(),
            },
            records: records.iter().map(|r| r.addr).collect(),
        }
    }

    /// A [`Policy::Learned`] answer for `client`: of `drawn` (the geolocation draw), the record agents
    /// measured fastest from the client's subnet (with the entry's `min_samples`) first, then the others,
    /// as many as one answer carries. `drawn` as it is under any other policy, or when nothing that counts
    /// was learned there.
    pub fn learned_first(
        &self,
        drawn: Vec<IpAddr>,
        learned: &LearnedLatency,
        client: IpAddr,
    ) -> Vec<IpAddr> {
        let Policy::Learned { min_samples, .. } = self.policy else {
            return drawn;
        };
        let Some(first) = learned.fastest(client, &self.records, min_samples) else {
            return drawn;
        };
        let mut out = Vec::with_capacity(drawn.len().max(1));
        out.push(first);
        out.extend(drawn.into_iter().filter(|ip| *ip != first));
        out.truncate(usize::from(self.max_answers.max(1)));
        out
    }

    /// The records one answer carries at rotation position `rotation`, for a client in region `region`
    /// (0: none; only [`Policy::Geo`] reads it): what the XDP reply builder answers from the rendered map
    /// entry, for any number of records.
    pub fn answer(&self, rotation: u32, region: u8) -> Vec<IpAddr> {
        let mut slots = [0; MAX_SLOTS];
        for (dst, s) in slots.iter_mut().zip(&self.slots) {
            *dst = *s;
        }
        let draw = Draw {
            policy: self.policy.draw_code(),
            max_answers: self.max_answers,
            count: self.records.len(),
            slots: &slots,
            slot_count: u8::try_from(self.slots.len()).unwrap_or(0),
            regions: &self.regions,
            default_region: self.policy.default_region(),
        };
        let mut out = [0; MAX_RECORDS];
        let n = answer_indices(&draw, rotation, region, &mut out).unwrap_or(0);
        out.iter()
            .take(n)
            .filter_map(|&i| self.records.get(i).copied())
            .collect()
    }
}

/// One record as the control plane hands it to the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpecRecord {
    /// The address.
    pub addr: IpAddr,
    /// Its share under [`Policy::Weighted`] (0: left out, unless every record has 0).
    pub weight: u32,
    /// Its region id under [`Policy::Geo`] (0: none).
    pub region: u8,
}

impl From<IpAddr> for SpecRecord {
    fn from(addr: IpAddr) -> Self {
        Self {
            addr,
            weight: 1,
            region: 0,
        }
    }
}

/// One family's records of a name, in answer order, and how an answer draws from them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Family {
    /// How an answer draws from the records.
    pub policy: Policy,
    /// The records, each address once.
    pub records: Vec<SpecRecord>,
}

impl Family {
    /// Records of weight 1 and no region, drawn by `policy`.
    pub fn of(policy: Policy, addrs: impl IntoIterator<Item = impl Into<IpAddr>>) -> Self {
        Self {
            policy,
            records: addrs
                .into_iter()
                .map(|a| SpecRecord::from(a.into()))
                .collect(),
        }
    }
}

/// One name's input to the table: its settings and its records of both families.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameSpec {
    /// The name.
    pub name: DnsName,
    /// TTL, seconds.
    pub ttl: u32,
    /// How many records one answer carries.
    pub max_answers: u8,
    /// What to answer when every backend is out.
    pub all_down: AllDown,
    /// The IPv4 records.
    pub v4: Family,
    /// The IPv6 records.
    pub v6: Family,
}

impl NameSpec {
    /// A name whose records of both families (`addrs`, split by family) are drawn by `policy`.
    pub fn new(
        name: DnsName,
        ttl: u32,
        policy: Policy,
        max_answers: u8,
        addrs: impl IntoIterator<Item = IpAddr>,
    ) -> Self {
        let (v4, v6): (Vec<IpAddr>, Vec<IpAddr>) = addrs.into_iter().partition(IpAddr::is_ipv4);
        Self {
            name,
            ttl,
            max_answers,
            all_down: AllDown::All,
            v4: Family::of(policy, v4),
            v6: Family::of(policy, v6),
        }
    }
}

/// The answer table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AnswerTable {
    entries: BTreeMap<EntryKey, Entry>,
    /// Names that exist with no address at all (all-down policy `empty`, or no backend yet): they answer
    /// NODATA, not NXDOMAIN.
    empty: BTreeSet<DnsName>,
}

impl AnswerTable {
    /// Builds the table from per-name specs. A family with no address gives no entry (NODATA for that
    /// type, answered by userspace).
    pub fn from_specs<'a>(specs: impl IntoIterator<Item = &'a NameSpec>) -> Self {
        let mut entries = BTreeMap::new();
        let mut empty = BTreeSet::new();
        for s in specs {
            let name = &s.name;
            if s.v4.records.is_empty() && s.v6.records.is_empty() {
                empty.insert(name.clone());
            }
            for (qtype, family) in [(QTYPE_A, &s.v4), (QTYPE_AAAA, &s.v6)] {
                if family.records.is_empty() {
                    continue;
                }
                entries.insert(
                    EntryKey {
                        name: name.clone(),
                        qtype,
                    },
                    Entry::new(s.ttl, s.max_answers, s.all_down, family),
                );
            }
        }
        Self { entries, empty }
    }

    /// Names that exist without any address.
    pub fn empty_names(&self) -> impl Iterator<Item = &DnsName> {
        self.empty.iter()
    }

    /// The entry for a name and type.
    pub fn get(&self, name: &DnsName, qtype: u16) -> Option<&Entry> {
        self.entry(&EntryKey {
            name: name.clone(),
            qtype,
        })
    }

    /// The entry for a key.
    pub fn entry(&self, key: &EntryKey) -> Option<&Entry> {
        self.entries.get(key)
    }

    /// Every entry, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&EntryKey, &Entry)> {
        self.entries.iter()
    }

    /// How many entries there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> NameSpec {
        let ip = |l| IpAddr::from([192, 0, 2, l]);
        let name = "App.Demo.Local.".parse().unwrap();
        NameSpec::new(name, 5, Policy::RoundRobin, 0, [ip(1), ip(2)])
    }

    #[test]
    fn empty_families_have_no_entry() {
        let t = AnswerTable::from_specs([&spec()]);
        assert_eq!(t.len(), 1);
        let name = "app.demo.local".parse().unwrap();
        let e = t.get(&name, QTYPE_A).unwrap();
        assert_eq!(e.records.len(), 2);
        assert_eq!(e.max_answers, 1, "0 is raised to 1");
        assert!(t.get(&name, QTYPE_AAAA).is_none());
        assert_eq!(t.empty_names().count(), 0);
    }
}
