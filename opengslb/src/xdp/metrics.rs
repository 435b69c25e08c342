//! The XDP program's counters at `/metrics`. They are read through the data plane, which its owner
//! holds; the owner hands each reading over here, and a scrape shows the last one.

use std::sync::Mutex;

use opengslb_common::counters::Counter;

use super::Counters;
use crate::metrics::{Collector, DescriptorEncoder, counters};

/// The XDP counters as last read; nothing shows until the first reading.
#[derive(Debug, Default)]
pub struct CounterMetrics {
    last: Mutex<Option<Counters>>,
}

impl CounterMetrics {
    /// Shows `counters` from now on.
    pub fn set(&self, counters: Counters) {
        if let Ok(mut slot) = self.last.lock() {
            *slot = Some(counters);
        }
    }
}

impl Collector for CounterMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
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
    }
}
