//! The table rendered as the XDP records map holds it: one map entry per table entry, each with its
//! rotation slot. Rendered once per publish; the XDP map sync writes it, and the userspace server answers
//! the same entries with the same reply builder, so the two paths give the same bytes.

use std::collections::{BTreeMap, HashMap};

use opengslb_common::maps::{MAX_ENTRIES, MAX_RECORDS, RecordKey, RecordValue, policy};
use tracing::warn;

use super::{AnswerTable, Entry, EntryKey, Policy};

/// A table's map entries.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// Each table entry's map key and value.
    pub entries: BTreeMap<EntryKey, (RecordKey, RecordValue)>,
    /// Table entries left to userspace, with why.
    pub skipped: Vec<(EntryKey, &'static str)>,
}

/// Renders tables, keeping each entry's rotation slot from one render to the next (the XDP program's
/// per-entry round-robin position lives in that slot of its rotation map).
#[derive(Debug, Default)]
pub struct Renderer {
    slots: BTreeMap<EntryKey, u32>,
    free: Vec<u32>,
    next: u32,
}

impl Renderer {
    /// The map entries of `table`. Entries that cannot be rendered (no rotation slot left, a name that
    /// does not encode, two names with one hash) are left to userspace.
    pub fn render(&mut self, table: &AnswerTable) -> Rendered {
        let mut out = Rendered::default();
        let mut by_key: HashMap<RecordKey, Vec<EntryKey>> = HashMap::new();
        for (key, entry) in table.iter() {
            let rendered = self
                .slot_for(key)
                .ok_or("no rotation slot left")
                .and_then(|slot| render(key, entry, slot));
            match rendered {
                Ok((rk, rv)) => {
                    by_key.entry(rk).or_default().push(key.clone());
                    out.entries.insert(key.clone(), (rk, rv));
                }
                Err(why) => out.skipped.push((key.clone(), why)),
            }
        }
        // Two names with one hash would make one of them unreachable from XDP: leave both to userspace.
        for names in by_key.values().filter(|n| n.len() > 1) {
            for name in names {
                warn!(name = %name.name, qtype = name.qtype, "hash collision: answered by userspace only");
                out.entries.remove(name);
                out.skipped.push((name.clone(), "hash collision"));
            }
        }
        // Slots of entries gone from the table are free again.
        let gone: Vec<EntryKey> = self
            .slots
            .keys()
            .filter(|k| !out.entries.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(slot) = self.slots.remove(&key) {
                self.free.push(slot);
            }
        }
        out
    }

    fn slot_for(&mut self, key: &EntryKey) -> Option<u32> {
        if let Some(&slot) = self.slots.get(key) {
            return Some(slot);
        }
        let slot = match self.free.pop() {
            Some(s) => s,
            None if self.next < MAX_ENTRIES => {
                self.next += 1;
                self.next - 1
            }
            None => return None,
        };
        self.slots.insert(key.clone(), slot);
        Some(slot)
    }
}

impl AnswerTable {
    /// The map entries of this table, with fresh rotation slots (for a table rendered once, e.g. in
    /// tests; a publisher keeps a [`Renderer`]).
    pub fn render(&self) -> Rendered {
        Renderer::default().render(self)
    }
}

/// The map entry for one table entry, using rotation slot `slot`.
fn render(key: &EntryKey, e: &Entry, slot: u32) -> Result<(RecordKey, RecordValue), &'static str> {
    let max_answers = e.max_answers.clamp(1, MAX_RECORDS as u8);
    let (mut v, hash) = RecordValue::new(key.name.as_str(), e.ttl, max_answers, slot)
        .map_err(|_| "name not encodable")?;
    // A set too large for the map entry: the program passes its queries to userspace.
    v.policy = if e.records.len() > MAX_RECORDS {
        policy::USERSPACE
    } else {
        e.policy.code()
    };
    if let Policy::Geo { default_region } = e.policy {
        v.default_region = default_region;
        for (dst, r) in v.regions.iter_mut().zip(&e.regions) {
            *dst = *r;
        }
    }
    let slots = v
        .slots
        .get_mut(..e.slots.len())
        .ok_or("slot table too long")?;
    slots.copy_from_slice(&e.slots);
    v.slot_count = u8::try_from(e.slots.len()).map_err(|_| "slot table too long")?;
    for ip in e.records.iter().take(MAX_RECORDS) {
        let ok = match ip {
            std::net::IpAddr::V4(a) => v.push(&a.octets()),
            std::net::IpAddr::V6(a) => v.push(&a.octets()),
        };
        if !ok {
            return Err("record does not fit");
        }
    }
    Ok((RecordKey::new(key.qtype, hash), v))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::table::{Family, NameSpec, SpecRecord, weight_slots};

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }

    /// A table of round-robin names, each with addresses 192.0.2.<last>.
    pub(crate) fn table(names: &[(&str, &[u8])]) -> AnswerTable {
        let specs: Vec<NameSpec> = names
            .iter()
            .map(|(n, last)| {
                NameSpec::new(
                    n.parse().unwrap(),
                    5,
                    Policy::RoundRobin,
                    1,
                    last.iter().map(|&l| ip(l)),
                )
            })
            .collect();
        AnswerTable::from_specs(&specs)
    }

    #[test]
    fn slots_are_kept_for_a_name_and_reused_after_removal() {
        let mut r = Renderer::default();
        let slot = |p: &Rendered, name: &str| {
            p.entries
                .iter()
                .find(|(k, _)| k.name == name)
                .unwrap()
                .1
                .1
                .slot
        };
        let p = r.render(&table(&[("a.test", &[1]), ("b.test", &[2])]));
        let slot_a = slot(&p, "a.test");
        let p = r.render(&table(&[("a.test", &[9])]));
        assert_eq!(slot(&p, "a.test"), slot_a);
        let p = r.render(&table(&[("a.test", &[9]), ("c.test", &[3])]));
        let slot_c = slot(&p, "c.test");
        assert!(slot_c < 2, "freed slot reused, got {slot_c}");
    }

    /// A one-name table whose A records are `(last octet, weight, region)`.
    fn one(policy: Policy, records: &[(u8, u32, u8)]) -> (AnswerTable, RecordValue) {
        let mut spec = NameSpec::new("r.test".parse().unwrap(), 5, policy, 2, []);
        spec.v4 = Family {
            policy,
            records: records
                .iter()
                .map(|&(l, weight, region)| SpecRecord {
                    addr: ip(l),
                    weight,
                    region,
                })
                .collect(),
        };
        let t = AnswerTable::from_specs([&spec]);
        let v = t.render().entries.values().next().unwrap().1;
        (t, v)
    }

    #[test]
    fn fixed_order_and_weighted_entries_are_rendered_for_xdp() {
        let (_, v) = one(Policy::FixedOrder, &[(3, 1, 0), (1, 1, 0), (2, 1, 0)]);
        assert_eq!(v.policy, policy::FIXED_ORDER);
        assert_eq!(v.rdata[0][..4], [192, 0, 2, 3], "table order kept");
        assert_eq!(v.slot_count, 0);

        let (t, v) = one(Policy::Weighted, &[(1, 3, 0), (2, 0, 0), (3, 1, 0)]);
        assert_eq!(v.policy, policy::WEIGHTED);
        assert_eq!(v.count, 2, "weight 0 left out");
        assert_eq!(v.rdata[1][..4], [192, 0, 2, 3]);
        let e = t
            .get(&"r.test".parse().unwrap(), opengslb_common::maps::QTYPE_A)
            .unwrap();
        assert_eq!(e.records, [ip(1), ip(3)]);
        let slots = weight_slots(&[3, 1]);
        assert_eq!(e.slots, slots);
        assert_eq!(usize::from(v.slot_count), slots.len());
        assert_eq!(v.slots[..4], slots[..]);
        assert_eq!(slots.iter().filter(|&&i| i == 0).count(), 3);

        // All zero: every record, weight 1 each.
        let (_, v) = one(Policy::Weighted, &[(1, 0, 0), (2, 0, 0)]);
        assert_eq!((v.count, v.slot_count), (2, 2));
    }

    #[test]
    fn geo_entries_carry_each_records_region() {
        let (_, v) = one(
            Policy::Geo { default_region: 2 },
            &[(1, 1, 1), (2, 1, 2), (3, 1, 0)],
        );
        assert_eq!(v.policy, policy::GEO);
        assert_eq!(v.default_region, 2);
        assert_eq!(v.regions[..4], [1, 2, 0, 0]);
    }

    #[test]
    fn entry_answers_agree_with_the_reply_builder() {
        use opengslb_common::dns::{Scratch, build_reply_for, parse_query};
        let q = hickory_proto::op::Message::query()
            .add_query(hickory_proto::op::Query::query(
                hickory_proto::rr::Name::from_ascii("r.test.").unwrap(),
                hickory_proto::rr::RecordType::A,
            ))
            .to_owned()
            .to_vec()
            .unwrap();
        let records = [(1, 5, 1), (2, 0, 2), (3, 2, 1), (4, 1, 3)];
        for policy in [
            Policy::RoundRobin,
            Policy::FixedOrder,
            Policy::Weighted,
            Policy::Geo { default_region: 3 },
        ] {
            let (t, v) = one(policy, &records);
            let e = t
                .get(&"r.test".parse().unwrap(), opengslb_common::maps::QTYPE_A)
                .unwrap();
            for rotation in (0..40).chain(u32::MAX - 5..=u32::MAX) {
                for region in 0..4 {
                    let mut s = Box::new(Scratch::new());
                    s.msg[..q.len()].copy_from_slice(&q);
                    let parsed = parse_query(&mut s, q.len()).unwrap();
                    let len = build_reply_for(&mut s, &parsed, &v, rotation, 1232, region).unwrap();
                    let reply = hickory_proto::op::Message::from_vec(&s.msg[..len]).unwrap();
                    let xdp: Vec<IpAddr> = reply
                        .answers
                        .iter()
                        .filter_map(|a| a.data.ip_addr())
                        .collect();
                    assert_eq!(
                        e.answer(rotation, region),
                        xdp,
                        "{policy:?} at {rotation} in {region}"
                    );
                }
            }
        }
    }

    #[test]
    fn oversized_sets_are_left_to_userspace_and_answered_there() {
        let many: Vec<u8> = (1..=20).collect();
        let t = table(&[("big.test", &many)]);
        let p = t.render();
        assert_eq!(
            p.entries.values().next().unwrap().1.policy,
            policy::USERSPACE
        );
        let e = t
            .get(&"big.test".parse().unwrap(), opengslb_common::maps::QTYPE_A)
            .unwrap();
        let firsts: Vec<IpAddr> = (0..21).map(|r| e.answer(r, 0)[0]).collect();
        assert_eq!(firsts[..20], e.records[..], "rotates over all twenty");
        assert_eq!(firsts[20], ip(1));
    }
}
