//! The answer table: for each name and record type, the TTL, the routing policy, how many records one
//! answer carries, and the records. It is the one source of truth that both DNS paths are rendered from:
//! the XDP map (through [`crate::xdp::sync`]) and, later, the userspace server.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use opengslb_common::maps::{QTYPE_A, QTYPE_AAAA};

/// How the records of one answer are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Policy {
    /// Rotate through the set, `max_answers` at a time.
    RoundRobin,
    /// A policy only userspace implements (weighted, failover, geolocation, latency: later issues).
    Userspace,
}

/// What a name answers when every one of its backends is out (DESIGN.md, "All down"). Health checking
/// (the overwatch issue) is what takes backends out; until then every configured backend is in, and this
/// is carried so that both DNS paths get it from the one table.
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
                        policy: s.policy,
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
