//! The program's answers per entry, from the per-CPU counters it keeps in each entry's rotation slot
//! (`ROTATION_MAP`): the overwatch adds them to its per-name query counts, so that
//! `opengslb_dns_queries_total` counts what XDP answered as well as what userspace did.

use std::collections::BTreeMap;

use aya::maps::{MapData, PerCpuArray};
use opengslb_common::maps::MAX_ENTRIES;

use crate::table::EntryKey;

/// Per entry in the map: its slot, and the slot's total when last reported. A slot's counter is not
/// reset when an entry gets it (slots are reused), so each entry starts from the total it found.
///
/// Reading a total is a system call, and loading a table writes one entry per slot, so a total is read
/// only where it is not already known. A map the data plane created holds 0 in a slot no entry has had
/// (an adopted one holds what the previous run's entries answered, so such a slot is read); and once no
/// map entry names a slot nothing counts on it, so the total read as its last entry left is still its
/// total when another entry gets it.
#[derive(Debug, Default)]
pub struct Tally {
    /// Whether the map is a previous run's: its unused slots are not known to hold 0.
    adopted: bool,
    entries: BTreeMap<EntryKey, (u32, u64)>,
    /// By slot, up to the highest one an entry has had: indexed rather than hashed, since a load
    /// takes every slot in turn.
    slots: Vec<Slot>,
    /// Where the next reading starts.
    cursor: Option<EntryKey>,
    /// What removed entries answered since their last reading.
    removed: Vec<(EntryKey, u64)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    /// No entry has had it: it holds 0.
    Unused,
    /// Held by this many entries: more than one only while one plan moves entries between slots, and
    /// then what each of them finds there has to be read.
    Held(u32),
    /// Held by none, with the total read as the last one left (`None`: that read failed).
    Free(Option<u64>),
}

/// Slot `slot`'s total over CPUs, or `None` when it cannot be read.
pub fn total(rotation: &PerCpuArray<MapData, u64>, slot: u32) -> Option<u64> {
    rotation
        .get(&slot, 0)
        .ok()
        .map(|per_cpu| per_cpu.iter().fold(0u64, |a, b| a.wrapping_add(*b)))
}

impl Tally {
    /// A tally of a map the data plane created (`adopted`: took over from a previous run).
    pub fn new(adopted: bool) -> Self {
        Self {
            adopted,
            ..Self::default()
        }
    }

    /// An entry was written to the map in `slot`; `read` gives a slot's total.
    pub fn written(
        &mut self,
        name: &EntryKey,
        slot: u32,
        mut read: impl FnMut(u32) -> Option<u64>,
    ) {
        let old = self.entries.get(name).copied();
        if old.map(|(s, _)| s) == Some(slot) {
            return;
        }
        // What it answered in its old slot is reported as a removed entry's would be.
        if let Some((old_slot, last)) = old {
            self.leave(name, old_slot, last, &mut read);
        }
        let start = self.take_slot(slot, &mut read);
        self.entries.insert(name.clone(), (slot, start));
    }

    /// An entry left the map.
    pub fn removed(&mut self, name: &EntryKey, mut read: impl FnMut(u32) -> Option<u64>) {
        if let Some((slot, last)) = self.entries.remove(name) {
            self.leave(name, slot, last, &mut read);
        }
    }

    /// `name` no longer counts on `slot`, where its last reading was `last`.
    fn leave(
        &mut self,
        name: &EntryKey,
        slot: u32,
        last: u64,
        read: &mut impl FnMut(u32) -> Option<u64>,
    ) {
        let now = read(slot);
        if let Some(now) = now
            && now != last
        {
            self.removed.push((name.clone(), now.wrapping_sub(last)));
        }
        if let Some(s) = self.slot_mut(slot) {
            *s = match *s {
                Slot::Held(n) if n > 1 => Slot::Held(n - 1),
                _ => Slot::Free(now),
            };
        }
    }

    /// The total an entry that now counts on `slot` starts from.
    fn take_slot(&mut self, slot: u32, read: &mut impl FnMut(u32) -> Option<u64>) -> u64 {
        let adopted = self.adopted;
        let Some(s) = self.slot_mut(slot) else {
            return read(slot).unwrap_or(0);
        };
        let (held, known) = match *s {
            Slot::Unused => (1, (!adopted).then_some(0)),
            Slot::Held(n) => (n + 1, None),
            Slot::Free(known) => (1, known),
        };
        *s = Slot::Held(held);
        known.or_else(|| read(slot)).unwrap_or(0)
    }

    /// What is known of `slot`; `None` past the rotation map's end, where there is no counter to
    /// know of (its reads fail).
    fn slot_mut(&mut self, slot: u32) -> Option<&mut Slot> {
        if slot >= MAX_ENTRIES {
            return None;
        }
        let i = slot as usize;
        if i >= self.slots.len() {
            self.slots.resize(i + 1, Slot::Unused);
        }
        self.slots.get_mut(i)
    }

    /// The answers since the last reading of up to `max` entries, from the cursor on.
    pub fn take(
        &mut self,
        max: usize,
        mut read: impl FnMut(u32) -> Option<u64>,
    ) -> Vec<(EntryKey, u64)> {
        use std::ops::Bound::{Excluded, Unbounded};
        let mut out = std::mem::take(&mut self.removed);
        let start = self.cursor.take();
        let mut n_read = 0;
        let mut last = None;
        let mut visit = |name: &EntryKey, (slot, seen): &mut (u32, u64)| {
            n_read += 1;
            last = Some(name.clone());
            if let Some(now) = read(*slot)
                && now != *seen
            {
                out.push((name.clone(), now.wrapping_sub(*seen)));
                *seen = now;
            }
        };
        // From the cursor to the end, then from the beginning up to the cursor.
        match &start {
            Some(s) => {
                let tail = self.entries.range_mut((Excluded(s.clone()), Unbounded));
                let mut n = 0;
                for (name, v) in tail.take(max) {
                    visit(name, v);
                    n += 1;
                }
                for (name, v) in self.entries.range_mut(..=s.clone()).take(max - n) {
                    visit(name, v);
                }
            }
            None => {
                for (name, v) in self.entries.iter_mut().take(max) {
                    visit(name, v);
                }
            }
        }
        self.cursor = if n_read < self.entries.len() {
            last
        } else {
            None
        };
        out
    }
}

#[cfg(test)]
mod tests {
    use std::{cell::Cell, collections::HashMap};

    use opengslb_common::maps::QTYPE_A;
    use proptest::prelude::*;

    use super::*;

    fn key(i: usize) -> EntryKey {
        EntryKey {
            name: format!("n{i}.test").parse().expect("name"),
            qtype: QTYPE_A,
        }
    }

    /// The rotation map as the program leaves it: each slot's total, and how often one was read.
    #[derive(Default)]
    struct Rotation {
        totals: HashMap<u32, u64>,
        reads: Cell<usize>,
    }

    impl Rotation {
        fn read(&self) -> impl FnMut(u32) -> Option<u64> + '_ {
            |slot| {
                self.reads.set(self.reads.get() + 1);
                Some(self.totals.get(&slot).copied().unwrap_or(0))
            }
        }

        fn answer(&mut self, slot: u32, n: u64) {
            *self.totals.entry(slot).or_default() += n;
        }
    }

    /// Everything reported, summed per entry.
    fn summed(reports: Vec<(EntryKey, u64)>) -> BTreeMap<EntryKey, u64> {
        let mut out = BTreeMap::new();
        for (k, n) in reports {
            *out.entry(k).or_default() += n;
        }
        out
    }

    #[test]
    fn fresh_slots_and_rewrites_are_not_read() {
        let (mut t, mut rot) = (Tally::default(), Rotation::default());
        for i in 0..1000 {
            t.written(&key(i), i as u32, rot.read());
        }
        // Written again in the same slot (its records changed).
        t.written(&key(7), 7, rot.read());
        assert_eq!(rot.reads.get(), 0);
        rot.answer(7, 3);
        let got = summed(t.take(usize::MAX, rot.read()));
        assert_eq!(got, BTreeMap::from([(key(7), 3)]));
    }

    /// In a map taken over from a previous run, a slot holds what that run's entries answered: an entry
    /// written there starts from it, and is charged only what it answers itself.
    #[test]
    fn an_adopted_maps_slots_are_read() {
        let (mut t, mut rot) = (Tally::new(true), Rotation::default());
        rot.answer(4, 40);
        t.written(&key(0), 4, rot.read());
        assert_eq!(rot.reads.get(), 1);
        rot.answer(4, 2);
        let got = summed(t.take(usize::MAX, rot.read()));
        assert_eq!(got, BTreeMap::from([(key(0), 2)]));
    }

    /// A slot freed by a removal starts its next entry from the total read as the last one left, so
    /// neither entry is charged the other's answers and the reuse needs no read.
    #[test]
    fn a_reused_slot_starts_from_the_total_its_last_entry_left() {
        let (mut t, mut rot) = (Tally::default(), Rotation::default());
        t.written(&key(0), 0, rot.read());
        rot.answer(0, 5);
        t.removed(&key(0), rot.read());
        assert_eq!(rot.reads.get(), 1);
        t.written(&key(1), 0, rot.read());
        assert_eq!(rot.reads.get(), 1, "the freed slot's total is known");
        rot.answer(0, 3);
        let got = summed(t.take(usize::MAX, rot.read()));
        assert_eq!(got, BTreeMap::from([(key(0), 5), (key(1), 3)]));
    }

    /// Two entries swap slots in one plan: each reports what it answered in its old slot, and counts
    /// from there on in the new one, though for a moment both hold the same slot.
    #[test]
    fn entries_that_swap_slots_count_exactly() {
        let (mut t, mut rot) = (Tally::default(), Rotation::default());
        t.written(&key(0), 0, rot.read());
        t.written(&key(1), 1, rot.read());
        rot.answer(0, 4);
        rot.answer(1, 7);
        assert_eq!(t.take(1, rot.read()), [(key(0), 4)]);
        rot.answer(0, 1);
        t.written(&key(0), 1, rot.read());
        t.written(&key(1), 0, rot.read());
        rot.answer(1, 2);
        rot.answer(0, 3);
        let got = summed(t.take(usize::MAX, rot.read()));
        assert_eq!(got, BTreeMap::from([(key(0), 1 + 2), (key(1), 7 + 3)]));
    }

    #[test]
    fn a_slot_whose_total_could_not_be_read_is_read_when_reused() {
        let (mut t, mut rot) = (Tally::default(), Rotation::default());
        t.written(&key(0), 0, rot.read());
        rot.answer(0, 5);
        t.removed(&key(0), |_| None);
        assert!(t.take(usize::MAX, rot.read()).is_empty());
        let reads = rot.reads.get();
        t.written(&key(1), 0, rot.read());
        assert_eq!(rot.reads.get(), reads + 1);
        rot.answer(0, 2);
        assert_eq!(t.take(usize::MAX, rot.read()), [(key(1), 2)]);
    }

    /// A slot past the map's end has no counter to know of: it is read, not tracked.
    #[test]
    fn a_slot_past_the_map_is_read() {
        let (mut t, rot) = (Tally::default(), Rotation::default());
        t.written(&key(0), u32::MAX, rot.read());
        assert_eq!(rot.reads.get(), 1);
        assert!(t.slots.is_empty());
    }

    #[derive(Clone, Debug)]
    enum Op {
        /// Entry `.0` goes to slot `.1`: a new entry, a move, or a rewrite in place.
        Write(usize, u32),
        Remove(usize),
        /// Entry `.0`, if in the map, answers `.1` queries.
        Answer(usize, u64),
        Take(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..8usize, 0..6u32).prop_map(|(e, s)| Op::Write(e, s)),
            (0..8usize).prop_map(Op::Remove),
            (0..8usize, 1..5u64).prop_map(|(e, n)| Op::Answer(e, n)),
            (1..4usize).prop_map(Op::Take),
        ]
    }

    proptest! {
        /// Whatever the writes, moves, removals and readings, each entry is reported exactly what it
        /// answered, and a slot is read for a write only when another entry is on it or has been.
        #[test]
        fn every_answer_is_reported_once_to_its_entry(ops in proptest::collection::vec(op(), 0..200)) {
            let (mut t, mut rot) = (Tally::default(), Rotation::default());
            // The records map: entry → slot; and which slots any entry has had.
            let mut map: BTreeMap<usize, u32> = BTreeMap::new();
            let mut had: std::collections::HashSet<u32> = Default::default();
            let mut answered: BTreeMap<EntryKey, u64> = BTreeMap::new();
            let mut reported = Vec::new();
            for op in ops {
                match op {
                    Op::Write(e, s) => {
                        // As a renderer does it, no two entries keep one slot: the one on `s` swaps
                        // with `e`, or leaves the map when `e` is new; upserts first, as in one plan.
                        let other = map.iter().find(|&(&f, &fs)| f != e && fs == s).map(|(&f, _)| f);
                        let before = rot.reads.get();
                        let old = map.insert(e, s);
                        t.written(&key(e), s, rot.read());
                        if old.is_none() && !had.contains(&s) {
                            prop_assert_eq!(rot.reads.get(), before, "fresh slot {} read", s);
                        }
                        had.insert(s);
                        match (other, old) {
                            (Some(f), Some(old)) => {
                                map.insert(f, old);
                                t.written(&key(f), old, rot.read());
                            }
                            (Some(f), None) => {
                                map.remove(&f);
                                t.removed(&key(f), rot.read());
                            }
                            (None, _) => {}
                        }
                    }
                    Op::Remove(e) => {
                        map.remove(&e);
                        t.removed(&key(e), rot.read());
                    }
                    Op::Answer(e, n) => {
                        if let Some(&s) = map.get(&e) {
                            rot.answer(s, n);
                            *answered.entry(key(e)).or_default() += n;
                        }
                    }
                    Op::Take(max) => reported.extend(t.take(max, rot.read())),
                }
            }
            reported.extend(t.take(usize::MAX, rot.read()));
            prop_assert_eq!(summed(reported), answered);
        }
    }
}
