//! The incremental plan that takes the XDP records map from what it holds to a rendered table: only
//! changed keys are written, new and changed entries before any removal, so no name is ever missing in
//! between.

use std::collections::{BTreeMap, HashSet};

use opengslb_common::maps::{RecordKey, RecordValue};

use crate::table::{EntryKey, Rendered};

/// One map entry: its key and value.
pub type MapEntry = (RecordKey, RecordValue);

/// The writes that bring the map in step with a rendered table.
#[derive(Debug, Default)]
pub struct Plan {
    /// Entries to insert or overwrite, by table key.
    pub upserts: Vec<(EntryKey, MapEntry)>,
    /// Entries that leave the map, after the upserts; their map key is deleted unless a wanted entry
    /// now has it (`None`).
    pub removals: Vec<(EntryKey, Option<RecordKey>)>,
    /// Table entries left to userspace, with why.
    pub skipped: Vec<(EntryKey, &'static str)>,
}

impl Plan {
    /// Whether the plan writes nothing.
    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.removals.is_empty()
    }
}

/// What the records map holds, as far as we know it written: each write is recorded as it succeeds, so
/// after a failed one the next plan starts from what the kernel really holds, and nothing written is
/// ever left there untracked while userspace answers from a newer table.
#[derive(Debug, Default)]
pub struct RecordSync {
    current: BTreeMap<EntryKey, MapEntry>,
}

impl RecordSync {
    /// Plans the writes for `rendered`.
    pub fn plan(&self, rendered: &Rendered) -> Plan {
        let wanted = &rendered.entries;
        // Both maps are in key order: one walk over each instead of a search per entry.
        let mut cur = self.current.iter().peekable();
        let upserts = wanted
            .iter()
            .filter(|(name, entry)| {
                while cur.next_if(|(k, _)| k < name).is_some() {}
                cur.next_if(|(k, v)| k == name && v == entry).is_none()
            })
            .map(|(name, entry)| (name.clone(), *entry))
            .collect();
        let mut want = wanted.keys().peekable();
        let leaving: Vec<(&EntryKey, &MapEntry)> = self
            .current
            .iter()
            .filter(|(name, _)| {
                while want.next_if(|k| k < name).is_some() {}
                want.next_if(|k| k == name).is_none()
            })
            .collect();
        // A removed name's map key may now belong to a wanted entry (a rename to a colliding name).
        let wanted_keys: HashSet<RecordKey> = if leaving.is_empty() {
            HashSet::new()
        } else {
            wanted.values().map(|(k, _)| *k).collect()
        };
        let removals = leaving
            .into_iter()
            .map(|(name, (k, _))| (name.clone(), (!wanted_keys.contains(k)).then_some(*k)))
            .collect();
        Plan {
            upserts,
            removals,
            skipped: rendered.skipped.clone(),
        }
    }

    /// Records an upsert that succeeded.
    pub fn upserted(&mut self, name: &EntryKey, entry: MapEntry) {
        self.current.insert(name.clone(), entry);
    }

    /// Records a removal that succeeded (or needed no write).
    pub fn removed(&mut self, name: &EntryKey) {
        self.current.remove(name);
    }

    /// The map keys the map holds.
    pub fn keys(&self) -> HashSet<RecordKey> {
        self.current.values().map(|(k, _)| *k).collect()
    }

    /// How many entries the map holds.
    pub fn len(&self) -> usize {
        self.current.len()
    }

    /// Whether the map holds no entry.
    pub fn is_empty(&self) -> bool {
        self.current.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::{AnswerTable, Renderer, render::tests::table};

    /// Plans `t` (rendered by `r`) and makes every write succeed, as the loader records them.
    fn written(s: &mut RecordSync, r: &mut Renderer, t: &AnswerTable) -> Plan {
        let p = s.plan(&r.render(t));
        for (name, entry) in &p.upserts {
            s.upserted(name, *entry);
        }
        for (name, _) in &p.removals {
            s.removed(name);
        }
        p
    }

    #[test]
    fn only_changes_are_written_and_removals_come_last() {
        let (mut s, mut r) = (RecordSync::default(), Renderer::default());
        let p = written(
            &mut s,
            &mut r,
            &table(&[("a.test", &[1, 2]), ("b.test", &[3])]),
        );
        assert_eq!(p.upserts.len(), 2);
        assert!(p.removals.is_empty());

        let p = written(
            &mut s,
            &mut r,
            &table(&[("a.test", &[1, 2]), ("b.test", &[3])]),
        );
        assert!(p.is_empty(), "an unchanged table writes nothing");
        assert!(p.skipped.is_empty());

        let p = written(
            &mut s,
            &mut r,
            &table(&[("a.test", &[1]), ("c.test", &[4])]),
        );
        assert_eq!(p.upserts.len(), 2, "a.test changed, c.test is new");
        assert_eq!(p.removals.len(), 1, "b.test is gone");
        assert_eq!(s.len(), 2);
    }

    /// Writes are recorded as they succeed: after a plan that failed part-way, the next one neither
    /// repeats what was written nor forgets it (an entry written and then dropped from the table is
    /// removed), and it makes the writes that never happened.
    #[test]
    fn a_plan_that_failed_part_way_is_finished_by_the_next() {
        let (mut s, mut r) = (RecordSync::default(), Renderer::default());
        written(&mut s, &mut r, &table(&[("a.test", &[1])]));
        let failed = s.plan(&r.render(&table(&[
            ("a.test", &[1]),
            ("b.test", &[2]),
            ("c.test", &[3]),
        ])));
        assert_eq!(failed.upserts.len(), 2);
        // b.test's write succeeded; c.test's failed, and the loader stopped there.
        let (name, entry) = &failed.upserts[0];
        assert_eq!(name.name, "b.test");
        s.upserted(name, *entry);

        // The next table has neither: b.test, written, must go; c.test was never written.
        let next = written(&mut s, &mut r, &table(&[("a.test", &[1])]));
        assert!(next.upserts.is_empty());
        let gone: Vec<&str> = next.removals.iter().map(|(n, _)| n.name.as_str()).collect();
        assert_eq!(gone, ["b.test"]);
        assert!(next.removals[0].1.is_some(), "its map key is deleted");
        assert_eq!(s.len(), 1);
    }
}
