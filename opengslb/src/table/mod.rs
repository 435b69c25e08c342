//! The answer table: for each name and record type, the TTL, the routing policy, how many records one
//! answer carries, and the records. It is the one source of truth of both DNS paths: rendered once per
//! publish (by a [`Renderer`]) into the entries the XDP map holds and the userspace server's fast path answers
//! from, and read as it is by the userspace server for everything else.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use opengslb_common::{
    dns::{answer_count, rotated_index},
    maps::{QTYPE_A, QTYPE_AAAA},
};

use crate::routing;

pub(crate) mod render;

pub use render::{Rendered, Renderer};

/// How the records of one answer are chosen. Both DNS paths implement each of these alike: the XDP
/// program from the map entry a [`Renderer`] makes, userspace through the same reply builder (or,
/// off the fast path, [`Entry::answer`], which gives the same records).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Policy {
    /// Rotate through the set, `max_answers` at a time.
    RoundRobin,
    /// The first `max_answers` records in table order, no rotation: `failover` and `latency`, whose order
    /// the control plane computes (and republishes when it changes).
    FixedOrder,
    /// `weighted`: the first record by the weight slot table ([`crate::routing::weight_slots`]) at the
    /// rotation position, the next ones the following records in table order. Records of weight 0 are
    /// left out, unless every record has weight 0 (then each counts as 1).
    Weighted(Weights),
    /// `geolocation` by the client's source address: each record's region id, and the default region's
    /// (ids 1..=255 in config order; 0: none). The XDP program and the userspace fast path place the
    /// client by the geolocation trie ([`crate::routing::GeoTable`]), then answer round-robin among the
    /// records of its region, else of the default region, else all (`opengslb_common::dns::select`).
    /// Queries with EDNS Client Subnet go to the name's route.
    Geo {
        /// Region id per record address (absent: 0).
        regions: BTreeMap<IpAddr, u8>,
        /// The default region's id.
        default_region: u8,
    },
    /// A policy only userspace implements.
    Userspace,
}

/// The weights of a `weighted` name's addresses (both families). An address without one has weight 1.
pub type Weights = BTreeMap<IpAddr, u32>;

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

/// The key of one entry: a lowercased name without a trailing dot, and A or AAAA.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryKey {
    /// Lowercase, no trailing dot.
    pub name: String,
    /// [`QTYPE_A`] or [`QTYPE_AAAA`].
    pub qtype: u16,
}

/// What one name answers for one record type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// TTL of the answer records, seconds.
    pub ttl: u32,
    /// How the records are chosen.
    pub policy: Policy,
    /// How many records one answer carries.
    pub max_answers: u8,
    /// What to answer when every backend is out.
    pub all_down: AllDown,
    /// The records, all of the entry's type, in configured order.
    pub records: Vec<IpAddr>,
}

impl Entry {
    /// The records an answer draws from, in order, with their weights: under [`Policy::Weighted`] the
    /// records of positive weight (all of them, at weight 1, if none has one); otherwise every record, at
    /// weight 1. The XDP map holds exactly these.
    pub fn answer_set(&self) -> Vec<(IpAddr, u32)> {
        let Policy::Weighted(weights) = &self.policy else {
            return self.records.iter().map(|&ip| (ip, 1)).collect();
        };
        let weighted: Vec<(IpAddr, u32)> = self
            .records
            .iter()
            .map(|&ip| (ip, weights.get(&ip).copied().unwrap_or(1)))
            .filter(|&(_, w)| w > 0)
            .collect();
        if weighted.is_empty() {
            self.records.iter().map(|&ip| (ip, 1)).collect()
        } else {
            weighted
        }
    }

    /// [`answer_set`](Self::answer_set) as routing candidates (`order`: the position in it).
    pub fn candidates(&self) -> Vec<routing::Candidate> {
        self.answer_set()
            .into_iter()
            .enumerate()
            .map(|(order, (addr, weight))| routing::Candidate {
                addr,
                weight,
                region: String::new(),
                order,
                latency: None,
            })
            .collect()
    }

    /// The records one answer carries at rotation position `rotation`, by the entry's policy: what the
    /// XDP reply builder answers from the rendered map entry (up to
    /// [`MAX_RECORDS`](opengslb_common::maps::MAX_RECORDS) of them), for any
    /// number of records.
    pub fn answer(&self, rotation: u32) -> Vec<IpAddr> {
        let cands = self.candidates();
        let count = cands.len();
        let n = answer_count(self.max_answers, count.min(255) as u8).min(count);
        let ctx = routing::PickCtx {
            client: None,
            counter: u64::from(rotation),
            max_answers: n,
        };
        match self.policy {
            Policy::Weighted(_) => routing::pick(&routing::Policy::Weighted, &cands, &ctx).addrs,
            Policy::FixedOrder => cands.iter().take(n).map(|c| c.addr).collect(),
            // Without a client: the default region's records, else all.
            Policy::Geo {
                ref regions,
                default_region,
            } => {
                let in_default: Vec<&routing::Candidate> = cands
                    .iter()
                    .filter(|c| {
                        default_region != 0 && regions.get(&c.addr) == Some(&default_region)
                    })
                    .collect();
                let set: Vec<&routing::Candidate> = if in_default.is_empty() {
                    cands.iter().collect()
                } else {
                    in_default
                };
                let m = set.len();
                (0..n.min(m))
                    .filter_map(|k| set.get(rotated_index(rotation, k, m)))
                    .map(|c| c.addr)
                    .collect()
            }
            Policy::RoundRobin | Policy::Userspace => (0..n)
                .filter_map(|k| cands.get(rotated_index(rotation, k, count)))
                .map(|c| c.addr)
                .collect(),
        }
    }
}

/// One name's input to the table: its settings and its addresses of both families.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameSpec {
    /// The name (any case, trailing dot optional).
    pub name: String,
    /// TTL, seconds.
    pub ttl: u32,
    /// How the records are chosen.
    pub policy: Policy,
    /// How many records one answer carries.
    pub max_answers: u8,
    /// What to answer when every backend is out.
    pub all_down: AllDown,
    /// IPv4 addresses.
    pub v4: Vec<Ipv4Addr>,
    /// IPv6 addresses.
    pub v6: Vec<Ipv6Addr>,
}

/// The answer table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AnswerTable {
    entries: BTreeMap<EntryKey, Entry>,
    /// Names that exist with no address at all (all-down policy `empty`, or no backend yet): they answer
    /// NODATA, not NXDOMAIN.
    empty: BTreeSet<String>,
}

impl AnswerTable {
    /// Builds the table from per-name specs. A family with no address gives no entry (NODATA for that
    /// type, answered by userspace).
    pub fn from_specs<'a>(specs: impl IntoIterator<Item = &'a NameSpec>) -> Self {
        let mut entries = BTreeMap::new();
        let mut empty = BTreeSet::new();
        for s in specs {
            let name = normalize(&s.name);
            if s.v4.is_empty() && s.v6.is_empty() {
                empty.insert(name.clone());
            }
            let families: [(u16, Vec<IpAddr>); 2] = [
                (QTYPE_A, s.v4.iter().copied().map(IpAddr::V4).collect()),
                (QTYPE_AAAA, s.v6.iter().copied().map(IpAddr::V6).collect()),
            ];
            for (qtype, records) in families {
                if records.is_empty() {
                    continue;
                }
                entries.insert(
                    EntryKey {
                        name: name.clone(),
                        qtype,
                    },
                    Entry {
                        ttl: s.ttl,
                        policy: s.policy.clone(),
                        max_answers: s.max_answers.max(1),
                        all_down: s.all_down,
                        records,
                    },
                );
            }
        }
        Self { entries, empty }
    }

    /// Names that exist without any address.
    pub fn empty_names(&self) -> impl Iterator<Item = &str> {
        self.empty.iter().map(String::as_str)
    }

    /// The entry for a name and type.
    pub fn get(&self, name: &str, qtype: u16) -> Option<&Entry> {
        self.entries.get(&EntryKey {
            name: normalize(name),
            qtype,
        })
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

/// Lowercase, without a trailing dot: the form every table key uses.
pub fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> NameSpec {
        NameSpec {
            name: "App.Demo.Local.".into(),
            ttl: 5,
            policy: Policy::RoundRobin,
            max_answers: 0,
            all_down: AllDown::All,
            v4: vec![Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2)],
            v6: vec![],
        }
    }

    #[test]
    fn names_are_normalized_and_empty_families_have_no_entry() {
        let t = AnswerTable::from_specs([&spec()]);
        assert_eq!(t.len(), 1);
        let e = t.get("APP.demo.local", QTYPE_A).unwrap();
        assert_eq!(e.records.len(), 2);
        assert_eq!(e.max_answers, 1, "0 is raised to 1");
        assert!(t.get("app.demo.local.", QTYPE_AAAA).is_none());
    }
}
