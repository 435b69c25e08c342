//! The book of agents at `/metrics`: reports by result, and each agent. A view walks every agent, so
//! the control loop takes one each second rather than per report, and a scrape shows the last one.

use std::{sync::Mutex, time::Instant};

use super::AgentBook;
use crate::api::{AgentRow, BookView};
use crate::metrics::{Collector, DescriptorEncoder, counters, gauges};

impl AgentBook {
    /// The book as the metrics show it at `now`, which is `wall_ms` on the wall clock (report times
    /// are kept on the monotonic clock, the metrics give them on the wall clock).
    pub fn view(&self, now: Instant, wall_ms: u64) -> BookView {
        let wall = wall_ms as f64 / 1000.0;
        BookView {
            reports: self.counts.iter().map(|(k, v)| (*k, *v)).collect(),
            latency_reports: self.latency_counts.iter().map(|(k, v)| (*k, *v)).collect(),
            agents: self
                .agents()
                .map(|(id, a)| AgentRow {
                    id: id.clone(),
                    state: a.life.as_str(),
                    last_report: wall - now.saturating_duration_since(a.last_report).as_secs_f64(),
                    backends: a.backends,
                    name: a.name.clone(),
                    from: a.from,
                    signals: a.signals,
                })
                .collect(),
            members: Vec::new(),
        }
    }
}

/// The last view of the book; nothing shows before the first.
#[derive(Debug, Default)]
pub struct BookMetrics {
    last: Mutex<Option<BookView>>,
}

impl BookMetrics {
    /// Shows `view` from now on.
    pub fn set(&self, view: BookView) {
        if let Ok(mut slot) = self.last.lock() {
            *slot = Some(view);
        }
    }
}

impl Collector for BookMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(book) = self.last.lock().ok().and_then(|g| g.clone()) else {
            return Ok(());
        };
        counters(
            &mut encoder,
            "opengslb_agent_reports",
            "Agent reports that opened, by result: applied, left, or why they were refused (malformed, bad_token, unknown_service, stale)",
            book.reports
                .iter()
                .map(|(result, n)| ([("result", *result)], *n)),
        )?;
        counters(
            &mut encoder,
            "opengslb_agent_latency_reports",
            "Agents' learned-latency reports that opened, by result: applied, or why they were refused (malformed, bad_token, unknown_service, clock, not_alive)",
            book.latency_reports
                .iter()
                .map(|(result, n)| ([("result", *result)], *n)),
        )?;
        gauges(
            &mut encoder,
            "opengslb_agents",
            "Agents the overwatch knows, by state (alive, left, dead)",
            ["alive", "left", "dead"].map(|state| {
                let n = book.agents.iter().filter(|a| a.state == state).count();
                ([("state", state)], n as i64)
            }),
        )?;
        gauges(
            &mut encoder,
            "opengslb_agent_last_report_timestamp_seconds",
            "When each agent's last report arrived (Unix time), with its state",
            book.agents.iter().map(|a| {
                (
                    [("agent", a.id.as_str()), ("state", a.state)],
                    a.last_report,
                )
            }),
        )?;
        gauges(
            &mut encoder,
            "opengslb_agent_backends",
            "Backends in each agent's last report",
            book.agents
                .iter()
                .map(|a| ([("agent", a.id.as_str())], a.backends as i64)),
        )
    }
}
