//! The table rendered as the XDP records map holds it: one map entry per table entry, each with its
//! rotation slot. Rendered once per publish; the XDP map sync writes it, and the userspace server answers
//! the same entries with the same reply builder, so the two paths give the same bytes.

use std::collections::{BTreeMap, HashMap};

use opengslb_common::maps::{MAX_ENTRIES, MAX_RECORDS, MAX_SLOTS, RecordKey, RecordValue, policy};
use tracing::warn;

use super::{AnswerTable, Entry, EntryKey, Policy};
use crate::routing::{MAX_WEIGHT_SLOTS, weight_slots};

// The map's slot array holds any table routing makes.
const _: () = assert!(MAX_SLOTS == MAX_WEIGHT_SLOTS);

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
    let (mut v, hash) =
        RecordValue::new(&key.name, e.ttl, max_answers, slot).map_err(|_| "name not encodable")?;
    // The records XDP answers from: for `weighted`, those routing may answer with.
    let set = e.answer_set();
    v.policy = match e.policy {
        _ if set.len() > MAX_RECORDS => policy::USERSPACE,
        Policy::RoundRobin => policy::ROUND_ROBIN,
        Policy::FixedOrder => policy::FIXED_ORDER,
        Policy::Weighted(_) => policy::WEIGHTED,
        Policy::Geo { .. } => policy::GEO,
        Policy::Userspace => policy::USERSPACE,
    };
    if let Policy::Geo {
        regions,
        default_region,
    } = &e.policy
        && v.policy == policy::GEO
    {
        v.default_region = *default_region;
        for (dst, (ip, _)) in v.regions.iter_mut().zip(set.iter()) {
            *dst = regions.get(ip).copied().unwrap_or(0);
        }
    }
    if v.policy == policy::WEIGHTED {
        // The slot table userspace routing indexes too, over the same records.
        let slots = weight_slots(&e.candidates());
        let dst = v
            .slots
            .get_mut(..slots.len())
            .ok_or("slot table too long")?;
        dst.copy_from_slice(&slots);
        v.slot_count = u8::try_from(slots.len()).map_err(|_| "slot table too long")?;
    }
    for (ip, _) in set.iter().take(MAX_RECORDS) {
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
    use std::net::Ipv4Addr;

    use super::*;
    use crate::table::{AllDown, NameSpec};

    /// A table of round-robin names, each with addresses 192.0.2.<last>.
    pub(crate) fn table(names: &[(&str, &[u8])]) -> AnswerTable {
        let specs: Vec<NameSpec> = names
            .iter()
            .map(|(n, last)| NameSpec {
                name: (*n).into(),
                ttl: 5,
                policy: Policy::RoundRobin,
                max_answers: 1,
                all_down: AllDown::All,
                v4: last.iter().map(|l| Ipv4Addr::new(192, 0, 2, *l)).collect(),
                v6: vec![],
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

    fn one(policy: Policy, last: &[u8]) -> (AnswerTable, RecordValue) {
        let spec = NameSpec {
            name: "r.test".into(),
            ttl: 5,
            policy,
            max_answers: 2,
            all_down: AllDown::All,
            v4: last.iter().map(|l| Ipv4Addr::new(192, 0, 2, *l)).collect(),
            v6: vec![],
        };
        let t = AnswerTable::from_specs([&spec]);
        let v = t.render().entries.values().next().unwrap().1;
        (t, v)
    }

    #[test]
    fn fixed_order_and_weighted_entries_are_rendered_for_xdp() {
        let (_, v) = one(Policy::FixedOrder, &[3, 1, 2]);
        assert_eq!(v.policy, policy::FIXED_ORDER);
        assert_eq!(v.rdata[0][..4], [192, 0, 2, 3], "table order kept");
        assert_eq!(v.slot_count, 0);

        let ip = |l| std::net::IpAddr::V4(Ipv4Addr::new(192, 0, 2, l));
        let weights = [(ip(1), 3), (ip(2), 0), (ip(3), 1)].into_iter().collect();
        let (t, v) = one(Policy::Weighted(weights), &[1, 2, 3]);
        assert_eq!(v.policy, policy::WEIGHTED);
        assert_eq!(v.count, 2, "weight 0 left out");
        assert_eq!(v.rdata[1][..4], [192, 0, 2, 3]);
        let e = t.get("r.test", opengslb_common::maps::QTYPE_A).unwrap();
        let slots = weight_slots(&e.candidates());
        assert_eq!(slots.len(), 4);
        assert_eq!(usize::from(v.slot_count), slots.len());
        assert_eq!(v.slots[..4], slots[..]);
        assert_eq!(slots.iter().filter(|&&i| i == 0).count(), 3);

        // All zero: every record, weight 1 each.
        let zero = [(ip(1), 0), (ip(2), 0)].into_iter().collect();
        let (_, v) = one(Policy::Weighted(zero), &[1, 2]);
        assert_eq!((v.count, v.slot_count), (2, 2));
    }

    #[test]
    fn entry_answers_agree_with_the_reply_builder() {
        use opengslb_common::dns::{answer_count, first_index};
        let ip = |l| std::net::IpAddr::V4(Ipv4Addr::new(192, 0, 2, l));
        let weights = [(ip(1), 5), (ip(2), 0), (ip(3), 2), (ip(4), 1)]
            .into_iter()
            .collect();
        for policy in [
            Policy::RoundRobin,
            Policy::FixedOrder,
            Policy::Weighted(weights),
        ] {
            let (t, v) = one(policy.clone(), &[1, 2, 3, 4]);
            let e = t.get("r.test", opengslb_common::maps::QTYPE_A).unwrap();
            for rotation in (0..40).chain(u32::MAX - 5..=u32::MAX) {
                let count = usize::from(v.count);
                let first = first_index(&v, rotation, count).unwrap();
                let n = answer_count(v.max_answers, v.count);
                let xdp: Vec<std::net::IpAddr> = (0..n)
                    .map(|k| {
                        let [a, b, c, d, ..] = v.rdata[(first + k) % count];
                        std::net::IpAddr::V4(Ipv4Addr::new(a, b, c, d))
                    })
                    .collect();
                assert_eq!(e.answer(rotation), xdp, "{policy:?} at {rotation}");
            }
        }
    }

    #[test]
    fn oversized_sets_are_left_to_userspace_policy() {
        let many: Vec<u8> = (1..=20).collect();
        let p = table(&[("big.test", &many)]).render();
        assert_eq!(
            p.entries.values().next().unwrap().1.policy,
            policy::USERSPACE
        );
    }
}
