//! A gossip node's counters at `/metrics` (overwatch and agent alike), read at scrape time.

use std::sync::atomic::Ordering::Relaxed;

use super::node::NodeStats;
use crate::metrics::{Collector, DescriptorEncoder, counter, counters};

impl Collector for NodeStats {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        counters(
            &mut encoder,
            "opengslb_gossip_dropped",
            "Gossip datagrams dropped before use, by reason (too_short, too_large, bad_magic, bad_version, no_key_opens, replayed, unknown_kind, bad_swim, queue_full)",
            self.drops()
                .into_iter()
                .map(|(reason, n)| ([("reason", reason)], n)),
        )?;
        counters(
            &mut encoder,
            "opengslb_gossip_datagrams",
            "Gossip datagrams received, sent, and that could not be sent (send_failed)",
            [
                ("received", &self.received),
                ("sent", &self.sent),
                ("send_failed", &self.send_errors),
            ]
            .map(|(dir, v)| ([("direction", dir)], v.load(Relaxed))),
        )?;
        counter(
            &mut encoder,
            "opengslb_gossip_reports_sent",
            "Of the datagrams sent, reports: one per overwatch per report (an agent's; 0 on an overwatch)",
            self.reports_sent.load(Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::metrics::Metrics;

    #[test]
    fn the_node_counters_show_by_direction_and_reason() {
        let stats = Arc::new(NodeStats::default());
        stats.sent.fetch_add(4, Relaxed);
        stats.queue_full.fetch_add(1, Relaxed);
        let mut m = Metrics::new();
        m.collect(stats);
        let text = m.render();
        for line in [
            "opengslb_gossip_datagrams_total{direction=\"sent\"} 4\n",
            "opengslb_gossip_datagrams_total{direction=\"received\"} 0\n",
            "opengslb_gossip_dropped_total{reason=\"queue_full\"} 1\n",
            "opengslb_gossip_dropped_total{reason=\"no_key_opens\"} 0\n",
            "opengslb_gossip_reports_sent_total 0\n",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }
}
