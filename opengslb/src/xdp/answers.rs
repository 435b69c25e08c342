//! The program's answers per entry, from the per-CPU counters it keeps in each entry's rotation slot
//! (`ROTATION_MAP`): the overwatch adds them to its per-name query counts, so that
//! `opengslb_dns_queries_total` counts what XDP answered as well as what userspace did.

use std::collections::BTreeMap;

use aya::maps::{MapData, PerCpuArray};

use crate::table::EntryKey;

/// Per entry in the map: its slot, and the slot's total when last reported. A slot's counter is not
/// reset when an entry gets it (slots are reused), so each entry starts from the total it found.
#[derive(Debug, Default)]
pub struct Tally {
    entries: BTreeMap<EntryKey, (u32, u64)>,
    /// Where the next reading starts.
    cursor: Option<EntryKey>,
    /// What removed entries answered since their last reading.
    removed: Vec<(EntryKey, u64)>,
}

fn total(rotation: &PerCpuArray<MapData, u64>, slot: u32) -> Option<u64> {
    rotation
        .get(&slot, 0)
        .ok()
        .map(|per_cpu| per_cpu.iter().fold(0u64, |a, b| a.wrapping_add(*b)))
}

impl Tally {
    /// An entry was written to the map in `slot`.
    pub fn written(&mut self, name: &EntryKey, slot: u32, rotation: &PerCpuArray<MapData, u64>) {
        if self.entries.get(name).map(|(s, _)| *s) != Some(slot) {
            let start = total(rotation, slot).unwrap_or(0);
            self.entries.insert(name.clone(), (slot, start));
        }
    }

    /// An entry left the map.
    pub fn removed(&mut self, name: &EntryKey, rotation: &PerCpuArray<MapData, u64>) {
        if let Some((slot, last)) = self.entries.remove(name)
            && let Some(now) = total(rotation, slot)
            && now != last
        {
            self.removed.push((name.clone(), now.wrapping_sub(last)));
        }
    }

    /// The answers since the last reading of up to `max` entries, from the cursor on.
    pub fn take(
        &mut self,
        max: usize,
        rotation: &PerCpuArray<MapData, u64>,
    ) -> Vec<(EntryKey, u64)> {
        use std::ops::Bound::{Excluded, Unbounded};
        let mut out = std::mem::take(&mut self.removed);
        let start = self.cursor.take();
        let mut read = 0;
        let mut last = None;
        let mut visit = |name: &EntryKey, (slot, seen): &mut (u32, u64)| {
            read += 1;
            last = Some(name.clone());
            if let Some(now) = total(rotation, *slot)
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
        self.cursor = if read < self.entries.len() {
            last
        } else {
            None
        };
        out
    }
}
