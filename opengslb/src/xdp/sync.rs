//! Rendering the answer table into records-map entries, and the incremental plan that takes the map from
//! what it holds to what the table says: only changed keys are written, new and changed entries before any
//! removal, so no name is ever missing in between.

use std::collections::{BTreeMap, HashMap};

use opengslb_common::maps::{MAX_ENTRIES, MAX_RECORDS, MAX_SLOTS, RecordKey, RecordValue, policy};
use tracing::warn;

use crate::{
    routing::{MAX_WEIGHT_SLOTS, weight_slots},
    table::{AnswerTable, Entry, EntryKey, Policy},
};

// The map's slot array holds any table routing makes.
const _: () = assert!(MAX_SLOTS == MAX_WEIGHT_SLOTS);

/// The writes that bring the map in step with a table.
#[derive(Debug, Default)]
pub struct Plan {
    /// Entries to insert or overwrite.
    pub upserts: Vec<(RecordKey, RecordValue)>,
    /// Keys to delete, after the upserts.
    pub removals: Vec<RecordKey>,
    /// Table entries left to userspace, with why.
    pub skipped: Vec<(EntryKey, &'static str)>,
    /// What the map holds once every write succeeded, for [`RecordSync::commit`].
    after: State,
}

impl Plan {
    /// Whether the plan writes nothing.
    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.removals.is_empty()
    }
}

/// What the records map holds, as far as we know it written.
#[derive(Debug, Default)]
pub struct RecordSync {
    state: State,
}

#[derive(Debug, Default)]
struct State {
    current: BTreeMap<EntryKey, (RecordKey, RecordValue)>,
    slots: Slots,
}

/// The rotation slots (per-entry counters) in use and free.
#[derive(Debug, Default, Clone)]
struct Slots {
    free: Vec<u32>,
    next: u32,
}

impl Slots {
    fn alloc(&mut self) -> Option<u32> {
        if let Some(s) = self.free.pop() {
            return Some(s);
        }
        if self.next >= MAX_ENTRIES {
            return None;
        }
        self.next += 1;
        Some(self.next - 1)
    }
}

impl RecordSync {
    /// Plans the writes for `table`. Nothing is taken as written until [`commit`](Self::commit): when a
    /// write fails, the next plan starts again from what the map is known to hold, so no entry is left
    /// stale in the kernel while userspace answers from the new table.
    pub fn plan(&self, table: &AnswerTable) -> Plan {
        let mut plan = Plan::default();
        let mut slots = self.state.slots.clone();
        let current = &self.state.current;
        let mut wanted: BTreeMap<EntryKey, (RecordKey, RecordValue)> = BTreeMap::new();
        let mut by_key: HashMap<RecordKey, Vec<EntryKey>> = HashMap::new();
        for (key, entry) in table.iter() {
            let slot = match current.get(key) {
                Some((_, v)) => Some(v.slot),
                None => slots.alloc(),
            };
            let rendered = slot
                .ok_or("no rotation slot left")
                .and_then(|slot| render(key, entry, slot));
            match rendered {
                Ok((rk, rv)) => {
                    by_key.entry(rk).or_default().push(key.clone());
                    wanted.insert(key.clone(), (rk, rv));
                }
                Err(why) => plan.skipped.push((key.clone(), why)),
            }
        }
        // Two names with one hash would make one of them unreachable from XDP: leave both to userspace.
        for names in by_key.values().filter(|n| n.len() > 1) {
            for name in names {
                warn!(name = %name.name, qtype = name.qtype, "hash collision: answered by userspace only");
                wanted.remove(name);
                plan.skipped.push((name.clone(), "hash collision"));
            }
        }
        for (name, (rk, rv)) in &wanted {
            if current.get(name) != Some(&(*rk, *rv)) {
                plan.upserts.push((*rk, *rv));
            }
        }
        for (name, (rk, rv)) in current {
            if !wanted.contains_key(name) {
                slots.free.push(rv.slot);
                if !wanted.values().any(|(k, _)| k == rk) {
                    plan.removals.push(*rk);
                }
            }
        }
        plan.after = State {
            current: wanted,
            slots,
        };
        plan
    }

    /// Takes `plan` as written, once every write of it succeeded.
    pub fn commit(&mut self, plan: &mut Plan) {
        self.state = std::mem::take(&mut plan.after);
    }

    /// How many entries the map holds.
    pub fn len(&self) -> usize {
        self.state.current.len()
    }

    /// Whether the map holds no entry.
    pub fn is_empty(&self) -> bool {
        self.state.current.is_empty()
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
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::table::{AllDown, NameSpec};

    fn table(names: &[(&str, &[u8])]) -> AnswerTable {
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

    /// Plans `t` and takes it as written, as the loader does once every write succeeded.
    fn written(s: &mut RecordSync, t: &AnswerTable) -> Plan {
        let mut p = s.plan(t);
        s.commit(&mut p);
        p
    }

    #[test]
    fn only_changes_are_written_and_removals_come_last() {
        let mut s = RecordSync::default();
        let p = written(&mut s, &table(&[("a.test", &[1, 2]), ("b.test", &[3])]));
        assert_eq!(p.upserts.len(), 2);
        assert!(p.removals.is_empty());

        let p = written(&mut s, &table(&[("a.test", &[1, 2]), ("b.test", &[3])]));
        assert!(p.is_empty(), "an unchanged table writes nothing");
        assert!(p.skipped.is_empty());

        let p = written(&mut s, &table(&[("a.test", &[1]), ("c.test", &[4])]));
        assert_eq!(p.upserts.len(), 2, "a.test changed, c.test is new");
        assert_eq!(p.removals.len(), 1, "b.test is gone");
        assert_eq!(s.len(), 2);
    }

    /// A plan whose writes failed is not taken as written: the next plan makes the same writes again
    /// (and the removals), from the same slots, instead of leaving the kernel's entries stale.
    #[test]
    fn a_plan_not_committed_is_planned_again() {
        let mut s = RecordSync::default();
        written(&mut s, &table(&[("a.test", &[1]), ("b.test", &[2])]));
        let next = table(&[("a.test", &[9]), ("c.test", &[3])]);
        let failed = s.plan(&next);
        assert_eq!((failed.upserts.len(), failed.removals.len()), (2, 1));
        let again = written(&mut s, &next);
        assert_eq!(again.upserts, failed.upserts);
        assert_eq!(again.removals, failed.removals);
        assert!(written(&mut s, &next).is_empty(), "then it is in step");
    }

    #[test]
    fn slots_are_kept_for_a_name_and_reused_after_removal() {
        let mut s = RecordSync::default();
        let p = written(&mut s, &table(&[("a.test", &[1]), ("b.test", &[2])]));
        let slot_a = p
            .upserts
            .iter()
            .find(|(_, v)| v.name[1] == b'a')
            .unwrap()
            .1
            .slot;
        let p = written(&mut s, &table(&[("a.test", &[9])]));
        assert_eq!(p.upserts[0].1.slot, slot_a);
        let p = written(&mut s, &table(&[("a.test", &[9]), ("c.test", &[3])]));
        let slot_c = p.upserts[0].1.slot;
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
        let p = RecordSync::default().plan(&t);
        let v = p.upserts[0].1;
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
        let p = RecordSync::default().plan(&table(&[("big.test", &many)]));
        assert_eq!(p.upserts[0].1.policy, policy::USERSPACE);
    }
}
