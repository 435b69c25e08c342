//! The incremental plan that takes the XDP records map from what it holds to a rendered table: only
//! changed keys are written, new and changed entries before any removal, so no name is ever missing in
//! between.

use std::collections::BTreeMap;

use opengslb_common::maps::{RecordKey, RecordValue};

use crate::table::{EntryKey, Rendered};

/// The writes that bring the map in step with a rendered table.
#[derive(Debug, Default)]
pub struct Plan {
    /// Entries to insert or overwrite.
    pub upserts: Vec<(RecordKey, RecordValue)>,
    /// Keys to delete, after the upserts.
    pub removals: Vec<RecordKey>,
    /// Table entries left to userspace, with why.
    pub skipped: Vec<(EntryKey, &'static str)>,
    /// What the map holds once every write succeeded, for [`RecordSync::commit`].
    after: BTreeMap<EntryKey, (RecordKey, RecordValue)>,
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
    current: BTreeMap<EntryKey, (RecordKey, RecordValue)>,
}

impl RecordSync {
    /// Plans the writes for `rendered`. Nothing is taken as written until [`commit`](Self::commit): when
    /// a write fails, the next plan starts again from what the map is known to hold, so no entry is left
    /// stale in the kernel while userspace answers from the new table.
    pub fn plan(&self, rendered: &Rendered) -> Plan {
        let wanted = &rendered.entries;
        let upserts = wanted
            .iter()
            .filter(|(name, entry)| self.current.get(*name) != Some(entry))
            .map(|(_, &entry)| entry)
            .collect();
        let removals = self
            .current
            .iter()
            .filter(|(name, (rk, _))| {
                !wanted.contains_key(*name) && !wanted.values().any(|(k, _)| k == rk)
            })
            .map(|(_, (rk, _))| *rk)
            .collect();
        Plan {
            upserts,
            removals,
            skipped: rendered.skipped.clone(),
            after: wanted.clone(),
        }
    }

    /// Takes `plan` as written, once every write of it succeeded.
    pub fn commit(&mut self, plan: &mut Plan) {
        self.current = std::mem::take(&mut plan.after);
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

    /// Plans `t` (rendered by `r`) and takes it as written, as the loader does once every write
    /// succeeded.
    fn written(s: &mut RecordSync, r: &mut Renderer, t: &AnswerTable) -> Plan {
        let mut p = s.plan(&r.render(t));
        s.commit(&mut p);
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

    /// A plan whose writes failed is not taken as written: the next plan makes the same writes again
    /// (and the removals), from the same slots, instead of leaving the kernel's entries stale.
    #[test]
    fn a_plan_not_committed_is_planned_again() {
        let (mut s, mut r) = (RecordSync::default(), Renderer::default());
        written(
            &mut s,
            &mut r,
            &table(&[("a.test", &[1]), ("b.test", &[2])]),
        );
        let next = table(&[("a.test", &[9]), ("c.test", &[3])]);
        let failed = s.plan(&r.render(&next));
        assert_eq!((failed.upserts.len(), failed.removals.len()), (2, 1));
        let again = written(&mut s, &mut r, &next);
        assert_eq!(again.upserts, failed.upserts);
        assert_eq!(again.removals, failed.removals);
        assert!(
            written(&mut s, &mut r, &next).is_empty(),
            "then it is in step"
        );
    }
}
