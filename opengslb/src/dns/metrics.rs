//! The userspace DNS server's counters at `/metrics`, read from its atomics at scrape time.

use std::sync::atomic::Ordering::Relaxed;

use super::{DropReason, queries::QueryCounts, server::Stats};
use crate::metrics::{Collector, DescriptorEncoder, counter, counters};

impl Collector for Stats {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let replies: Vec<([(&str, String); 1], u64)> = self
            .summary()
            .into_iter()
            .map(|(kind, n)| ([("kind", format!("{kind:?}").to_lowercase())], n))
            .collect();
        counters(
            &mut encoder,
            "opengslb_dns_replies",
            "Replies the userspace DNS server sent, by kind",
            replies,
        )?;
        counters(
            &mut encoder,
            "opengslb_dns_dropped",
            "Messages the userspace DNS server did not answer, by reason",
            [
                (DropReason::TooShort, "too_short"),
                (DropReason::Response, "response"),
            ]
            .map(|(reason, label)| ([("reason", label)], self.drops(reason))),
        )?;
        counter(
            &mut encoder,
            "opengslb_dns_tcp_refused",
            "TCP connections closed at once because the connection cap, overall or the client's, was reached",
            self.tcp_refused.load(Relaxed),
        )?;
        counter(
            &mut encoder,
            "opengslb_dns_tcp_timeouts",
            "TCP connections closed for idling or sending too slowly",
            self.tcp_timeouts.load(Relaxed),
        )?;
        counters(
            &mut encoder,
            "opengslb_dns_rate_limited",
            "UDP responses the userspace server held back for their client prefix's rate (dns.rate_limit), by action: dropped, or slipped (sent truncated)",
            [
                ([("action", "dropped")], self.rate_limited.load(Relaxed)),
                ([("action", "slipped")], self.rate_slipped.load(Relaxed)),
            ],
        )
    }
}

impl Collector for QueryCounts {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        counters(
            &mut encoder,
            "opengslb_dns_queries",
            "Queries answered, by the userspace server or the XDP program, by domain (a configured name, or other), type and status (the reply's RCODE)",
            self.rows().into_iter().map(|(domain, qtype, status, n)| {
                (
                    [
                        ("domain", domain.to_string()),
                        ("type", qtype.to_owned()),
                        ("status", status.to_owned()),
                    ],
                    n,
                )
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::metrics::Metrics;

    #[test]
    fn the_server_counters_show_under_their_names() {
        let stats = Arc::new(Stats::default());
        stats.tcp_refused.fetch_add(3, Relaxed);
        let mut m = Metrics::new();
        m.collect(stats);
        let text = m.render();
        for line in [
            "opengslb_dns_replies_total{kind=\"fast\"} 0\n",
            "opengslb_dns_replies_total{kind=\"nxdomain\"} 0\n",
            "opengslb_dns_dropped_total{reason=\"response\"} 0\n",
            "opengslb_dns_tcp_refused_total 3\n",
            "opengslb_dns_rate_limited_total{action=\"slipped\"} 0\n",
            "# HELP opengslb_dns_tcp_timeouts TCP connections closed for idling or sending too slowly\n",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }
}
