//! The XDP program's counters at `/metrics`. They are read through the data plane, which its owner
//! holds; the owner hands each reading over here, and a scrape shows the last one.

use std::{collections::BTreeMap, sync::Mutex};

use opengslb_common::counters::Counter;

use super::Counters;
use crate::{
    metrics::{Collector, DescriptorEncoder, counters, gauges},
    table::LEFT_REASONS,
};

/// The XDP counters as last read; nothing shows until the first reading.
#[derive(Debug, Default)]
pub struct CounterMetrics {
    last: Mutex<Option<Counters>>,
    /// Table entries not in the records map, by reason; `None` until the first publish.
    left: Mutex<Option<Vec<(&'static str, u64)>>>,
}

impl CounterMetrics {
    /// Shows `counters` from now on.
    pub fn set(&self, counters: Counters) {
        if let Ok(mut slot) = self.last.lock() {
            *slot = Some(counters);
        }
    }

    /// Shows the table entries left to userspace, by reason, from now on.
    pub fn set_left(&self, left: &BTreeMap<&'static str, u64>) {
        if let Ok(mut slot) = self.left.lock() {
            *slot = Some(left.iter().map(|(k, v)| (*k, *v)).collect());
        }
    }
}

impl Collector for CounterMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(left) = self.left.lock().ok().and_then(|g| g.clone()) {
            // Every reason is shown, 0 when none, so a rule can watch the map filling up.
            let rows = LEFT_REASONS.map(|why| {
                let n = left.iter().find(|(k, _)| *k == why).map_or(0, |(_, n)| *n);
                ([("reason", why)], n)
            });
            gauges(
                &mut encoder,
                "opengslb_xdp_userspace_entries",
                "Answer-table entries (a name and a type) not in the XDP records map, answered by userspace only, by reason",
                rows,
            )?;
        }
        let Some(c) = self.last.lock().ok().and_then(|g| g.clone()) else {
            return Ok(());
        };
        counters(
            &mut encoder,
            "opengslb_xdp_packets",
            "Packets the XDP program saw, by outcome: answered_a/answered_aaaa, or the reason it passed them to userspace (grew_head counts an event besides an outcome)",
            Counter::ALL.map(|outcome| ([("outcome", outcome.name())], c.get(outcome))),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::metrics::Metrics;

    #[test]
    fn the_last_reading_shows_and_none_before_it() {
        let shown = Arc::new(CounterMetrics::default());
        let mut m = Metrics::new();
        m.collect(shown.clone());
        assert!(!m.render().contains("opengslb_xdp_packets"));
        let mut c = Counters([0; opengslb_common::counters::COUNTER_COUNT as usize]);
        c.0[Counter::AnsweredA.index() as usize] = 5;
        shown.set(c);
        let text = m.render();
        assert!(
            text.contains("opengslb_xdp_packets_total{outcome=\"answered_a\"} 5\n"),
            "{text}"
        );
        assert!(!text.contains("opengslb_xdp_userspace_entries"));
        shown.set_left(&BTreeMap::from([(crate::table::MAP_FULL, 7)]));
        let text = m.render();
        assert!(
            text.contains("opengslb_xdp_userspace_entries{reason=\"records map full\"} 7\n")
                && text.contains("opengslb_xdp_userspace_entries{reason=\"hash collision\"} 0\n"),
            "{text}"
        );
    }
}
