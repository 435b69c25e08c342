//! Prometheus metrics (`metrics.address`, `/metrics`), and `/health` answering `OK` as the original's
//! metrics server does. Counters that live elsewhere (the XDP program's per-CPU counters, the DNS server's
//! atomics) are read at scrape time by a collector, so they are never copied twice.

use std::{
    io,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, extract::State, http::header, response::IntoResponse, routing::get};
use opengslb_common::counters::Counter;
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _, text::encode},
    metrics::{
        counter::ConstCounter,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::{
    dns::{DropReason, server::Stats},
    xdp::Counters,
};

/// Where the collector reads from; the overwatch fills these in as the parts start.
#[derive(Debug, Default)]
pub struct Sources {
    /// The XDP counters, refreshed by the overwatch (they are read through the data plane it owns).
    pub xdp: Mutex<Option<Counters>>,
    /// The userspace DNS server's counters.
    pub dns: Mutex<Option<Arc<Stats>>>,
    /// The gossip node and the agents' book, when gossip is on.
    pub gossip: Mutex<Option<GossipSource>>,
    /// Every backend's status, as of the last publish (or second).
    pub backends: Mutex<Vec<crate::registry::BackendStatus>>,
    /// Each name's all-down state, as of the last publish (or second).
    pub names: Mutex<Vec<crate::registry::NameStatus>>,
    /// The agent's own state, in agent mode.
    pub agent: Mutex<Option<AgentView>>,
}

/// What an agent shows of itself.
#[derive(Debug, Clone, Default)]
pub struct AgentView {
    /// Why its backends drain, if they do.
    pub draining: Option<String>,
    /// A predictive signal holds the drain.
    pub predictive: bool,
    /// The predictive signals as last measured.
    pub signals: crate::gossip::wire::Signals,
}

/// What the metrics show of gossip: the node's counters, and on an overwatch its book of agents.
#[derive(Debug, Clone)]
pub struct GossipSource {
    /// The node's counters, read at scrape time.
    pub node: Arc<crate::gossip::node::NodeStats>,
    /// The overwatch's book of agents, as of its last snapshot; `None` on an agent.
    pub book: Option<BookView>,
}

/// The overwatch's book of agents, as the metrics show it.
#[derive(Debug, Clone)]
pub struct BookView {
    /// Reports by result.
    pub reports: Vec<(&'static str, u64)>,
    /// Each agent.
    pub agents: Vec<AgentRow>,
}

/// One agent as the metrics show it.
#[derive(Debug, Clone)]
pub struct AgentRow {
    /// Its registry id (`<agent id>@<token digest prefix>`).
    pub id: String,
    /// `alive`, `left` or `dead`.
    pub state: &'static str,
    /// When its last report arrived, in seconds since the Unix epoch.
    pub last_report: f64,
    /// Backends in its last report.
    pub backends: usize,
}

/// The registry and the metrics the overwatch updates directly.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Seconds from a table change to the XDP map written and the userspace snapshot published.
    pub table_sync: Histogram,
    /// What the collector reads.
    pub sources: Arc<Sources>,
}

#[derive(Debug)]
struct SourceCollector(Arc<Sources>);

impl Collector for SourceCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let xdp = self.0.xdp.lock().ok().and_then(|g| g.clone());
        if let Some(c) = xdp {
            let counter = ConstCounter::new(0u64);
            let mut fam = encoder.encode_descriptor(
                "opengslb_xdp_packets",
                "Packets the XDP program saw, by outcome: answered_a/answered_aaaa, or the reason it passed them to userspace (grew_head counts an event besides an outcome)",
                None,
                counter.metric_type(),
            )?;
            for outcome in Counter::ALL {
                let labels = [("outcome", outcome.name())];
                ConstCounter::new(c.get(outcome)).encode(fam.encode_family(&labels)?)?;
            }
        }
        let dns = self.0.dns.lock().ok().and_then(|g| g.clone());
        if let Some(s) = dns {
            let counter = ConstCounter::new(0u64);
            let mut fam = encoder.encode_descriptor(
                "opengslb_dns_replies",
                "Replies the userspace DNS server sent, by kind",
                None,
                counter.metric_type(),
            )?;
            for (kind, n) in s.summary() {
                let name = format!("{kind:?}").to_lowercase();
                let labels = [("kind", name.as_str())];
                ConstCounter::new(n).encode(fam.encode_family(&labels)?)?;
            }
            let mut fam = encoder.encode_descriptor(
                "opengslb_dns_dropped",
                "Messages the userspace DNS server did not answer, by reason",
                None,
                counter.metric_type(),
            )?;
            for (reason, label) in [
                (DropReason::TooShort, "too_short"),
                (DropReason::Response, "response"),
            ] {
                let labels = [("reason", label)];
                ConstCounter::new(s.drops(reason)).encode(fam.encode_family(&labels)?)?;
            }
            for (name, help, v) in [
                (
                    "opengslb_dns_tcp_refused",
                    "TCP connections closed at once because the connection cap was reached",
                    &s.tcp_refused,
                ),
                (
                    "opengslb_dns_tcp_timeouts",
                    "TCP connections closed for idling or sending too slowly",
                    &s.tcp_timeouts,
                ),
            ] {
                let c = ConstCounter::new(v.load(std::sync::atomic::Ordering::Relaxed));
                c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
            }
        }
        let gossip = self.0.gossip.lock().ok().and_then(|g| g.clone());
        if let Some(g) = gossip {
            encode_gossip(&mut encoder, &g)?;
        }
        let agent = self.0.agent.lock().ok().and_then(|a| a.clone());
        if let Some(a) = agent {
            encode_agent(&mut encoder, &a)?;
        }
        let backends = self
            .0
            .backends
            .lock()
            .map(|b| b.clone())
            .unwrap_or_default();
        if !backends.is_empty() {
            encode_backends(&mut encoder, &backends)?;
        }
        let names = self.0.names.lock().map(|n| n.clone()).unwrap_or_default();
        if !names.is_empty() {
            encode_names(&mut encoder, &names)?;
        }
        Ok(())
    }
}

fn encode_gossip(encoder: &mut DescriptorEncoder, g: &GossipSource) -> Result<(), std::fmt::Error> {
    use std::sync::atomic::Ordering::Relaxed;
    let counter = ConstCounter::new(0u64);
    let mut fam = encoder.encode_descriptor(
        "opengslb_gossip_dropped",
        "Gossip datagrams dropped before use, by reason (too_short, too_large, bad_magic, bad_version, no_key_opens, replayed, unknown_kind, bad_swim, queue_full)",
        None,
        counter.metric_type(),
    )?;
    for (reason, n) in g.node.drops() {
        ConstCounter::new(n).encode(fam.encode_family(&[("reason", reason)])?)?;
    }
    let mut fam = encoder.encode_descriptor(
        "opengslb_gossip_datagrams",
        "Gossip datagrams received, sent, and that could not be sent (send_failed)",
        None,
        counter.metric_type(),
    )?;
    for (dir, v) in [
        ("received", &g.node.received),
        ("sent", &g.node.sent),
        ("send_failed", &g.node.send_errors),
    ] {
        ConstCounter::new(v.load(Relaxed)).encode(fam.encode_family(&[("direction", dir)])?)?;
    }
    if let Some(book) = &g.book {
        encode_book(encoder, book)?;
    }
    Ok(())
}

fn encode_book(encoder: &mut DescriptorEncoder, book: &BookView) -> Result<(), std::fmt::Error> {
    let counter = ConstCounter::new(0u64);
    let mut fam = encoder.encode_descriptor(
        "opengslb_agent_reports",
        "Agent reports that opened, by result: applied, left, or why they were refused (malformed, bad_token, unknown_service, stale)",
        None,
        counter.metric_type(),
    )?;
    for (result, n) in &book.reports {
        ConstCounter::new(*n).encode(fam.encode_family(&[("result", *result)])?)?;
    }
    let gauge = prometheus_client::metrics::gauge::ConstGauge::new(0i64);
    let mut fam = encoder.encode_descriptor(
        "opengslb_agents",
        "Agents the overwatch knows, by state (alive, left, dead)",
        None,
        gauge.metric_type(),
    )?;
    for state in ["alive", "left", "dead"] {
        let n = book.agents.iter().filter(|a| a.state == state).count();
        prometheus_client::metrics::gauge::ConstGauge::new(n as i64)
            .encode(fam.encode_family(&[("state", state)])?)?;
    }
    let ts = prometheus_client::metrics::gauge::ConstGauge::new(0f64);
    let mut fam = encoder.encode_descriptor(
        "opengslb_agent_last_report_timestamp_seconds",
        "When each agent's last report arrived (Unix time), with its state",
        None,
        ts.metric_type(),
    )?;
    for a in &book.agents {
        prometheus_client::metrics::gauge::ConstGauge::new(a.last_report)
            .encode(fam.encode_family(&[("agent", a.id.as_str()), ("state", a.state)])?)?;
    }
    let mut fam = encoder.encode_descriptor(
        "opengslb_agent_backends",
        "Backends in each agent's last report",
        None,
        gauge.metric_type(),
    )?;
    for a in &book.agents {
        prometheus_client::metrics::gauge::ConstGauge::new(a.backends as i64)
            .encode(fam.encode_family(&[("agent", a.id.as_str())])?)?;
    }
    Ok(())
}

fn encode_agent(encoder: &mut DescriptorEncoder, a: &AgentView) -> Result<(), std::fmt::Error> {
    use prometheus_client::metrics::gauge::ConstGauge;
    let g = ConstGauge::new(0i64);
    let mut fam = encoder.encode_descriptor(
        "opengslb_agent_draining",
        "1 while this agent reports its backends draining; `reason` says why (drain file present, drained by operator, maintenance window, or the predictive signal)",
        None,
        g.metric_type(),
    )?;
    let reason = a.draining.as_deref().unwrap_or("");
    ConstGauge::new(i64::from(a.draining.is_some()))
        .encode(fam.encode_family(&[("reason", reason)])?)?;
    let bleeding = ConstGauge::new(i64::from(a.predictive));
    bleeding.encode(encoder.encode_descriptor(
        "opengslb_predictive_bleeding",
        "1 while a predictive signal (CPU, memory, error rate) drains this agent's backends",
        None,
        bleeding.metric_type(),
    )?)?;
    for (name, help, v) in [
        (
            "opengslb_predictive_cpu_percent",
            "CPU use of this agent's cgroup, in percent of what it may use",
            a.signals.cpu,
        ),
        (
            "opengslb_predictive_memory_percent",
            "Memory use (working set) of this agent's cgroup, in percent of its limit",
            a.signals.memory,
        ),
        (
            "opengslb_predictive_error_rate",
            "Share of failed requests (or failed checks), in percent",
            a.signals.error_rate,
        ),
    ] {
        if let Some(v) = v {
            let g = ConstGauge::new(f64::from(v));
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
    }
    Ok(())
}

fn encode_backends(
    encoder: &mut DescriptorEncoder,
    backends: &[crate::registry::BackendStatus],
) -> Result<(), std::fmt::Error> {
    let rows = backends.iter().map(|b| {
        let labels = [
            ("service", b.key.service.to_string()),
            ("address", b.key.address.to_string()),
            ("port", b.key.port.to_string()),
            ("source", b.source.as_str().to_owned()),
            ("reason", b.reason.as_str().to_owned()),
            ("agent", b.agent_id.clone().unwrap_or_default()),
        ];
        (labels, b.status == crate::registry::Status::Healthy)
    });
    encode_flags(
        encoder,
        "opengslb_backend_up",
        "1 while the backend's own status is healthy, else 0; DNS may still hand it out under an all-down policy (see opengslb_name_all_down). `reason` says why (healthy, override, agent_draining, agent_unhealthy, agent_left, agent_dead, stale, validation_failed), `agent` who reports on it",
        rows,
    )
}

fn encode_names(
    encoder: &mut DescriptorEncoder,
    names: &[crate::registry::NameStatus],
) -> Result<(), std::fmt::Error> {
    let rows = names.iter().map(|n| {
        let labels = [("name", n.name.as_str()), ("policy", n.policy.as_str())];
        (labels, n.all_down)
    });
    encode_flags(
        encoder,
        "opengslb_name_all_down",
        "1 while no backend of the name is healthy (or it has none), so DNS answers what its all-down `policy` chooses (all: every backend, last_healthy: the last healthy set, empty: none), else 0",
        rows,
    )
}

/// A gauge family of 0/1 samples, one per row: its labels, and whether it reads 1.
fn encode_flags<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (L, bool)>,
) -> Result<(), std::fmt::Error> {
    use prometheus_client::metrics::gauge::ConstGauge;
    let mut fam =
        encoder.encode_descriptor(name, help, None, ConstGauge::new(0i64).metric_type())?;
    for (labels, on) in rows {
        ConstGauge::new(i64::from(on)).encode(fam.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        // 10 µs to about 2.6 s.
        let table_sync = Histogram::new(exponential_buckets(0.000_01, 4.0, 10));
        registry.register(
            "opengslb_table_sync_seconds",
            "Time from an answer-table change to the XDP map written and the userspace server switched",
            table_sync.clone(),
        );
        let sources = Arc::new(Sources::default());
        registry.register_collector(Box::new(SourceCollector(sources.clone())));
        Self {
            registry,
            table_sync,
            sources,
        }
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// Replaces the agent's own state shown at `/metrics`.
    pub fn set_agent(&self, view: AgentView) {
        if let Ok(mut slot) = self.sources.agent.lock() {
            *slot = Some(view);
        }
    }

    /// Replaces the backends' status shown at `/metrics`.
    pub fn set_backends(&self, backends: Vec<crate::registry::BackendStatus>) {
        if let Ok(mut slot) = self.sources.backends.lock() {
            *slot = backends;
        }
    }

    /// Replaces the names' all-down state shown at `/metrics`.
    pub fn set_names(&self, names: Vec<crate::registry::NameStatus>) {
        if let Ok(mut slot) = self.sources.names.lock() {
            *slot = names;
        }
    }

    /// Records one table sync.
    pub fn observe_table_sync(&self, took: Duration) {
        self.table_sync.observe(took.as_secs_f64());
    }
}

/// The HTTP routes: `/metrics` and `/health`.
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .route("/health", get(|| async { "OK" }))
        .with_state(metrics)
}

async fn scrape(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.render(),
    )
}

/// Serves on `listener` until `token` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    token: CancellationToken,
) -> io::Result<()> {
    info!(address = %listener.local_addr()?, "metrics at /metrics");
    axum::serve(listener, router(metrics))
        .with_graceful_shutdown(async move { token.cancelled().await })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_histogram_and_the_sources() {
        let m = Metrics::new();
        m.observe_table_sync(Duration::from_micros(50));
        *m.sources.dns.lock().unwrap() = Some(Arc::new(Stats::default()));
        let text = m.render();
        assert!(
            text.contains("opengslb_table_sync_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains("opengslb_dns_replies_total{kind=\"fast\"} 0"),
            "{text}"
        );
        assert!(text.contains("opengslb_dns_tcp_refused_total 0"), "{text}");
    }
}
