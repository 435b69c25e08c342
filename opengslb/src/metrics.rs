//! Prometheus metrics (`metrics.address`, `/metrics`), and `/health` answering `OK` as the original's
//! metrics server does.
//!
//! Each component keeps its own values and shows them through its own prometheus-client [`Collector`]
//! (the DNS server's atomics, the XDP counters, the gossip node, the book of agents, the backends'
//! status, the agent's drain); a process registers the collectors of the parts it runs, once, before it
//! serves. Counters are read at scrape time, so they are never copied twice. This module holds the
//! registry, the endpoint and the helpers the collectors encode with; it imports nothing of the crate,
//! so every component can use it.

use std::{io, sync::Arc};

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, header},
    response::IntoResponse,
    routing::get,
};
pub use prometheus_client::{collector::Collector, encoding::DescriptorEncoder};
use prometheus_client::{
    encoding::{EncodeGaugeValue, EncodeLabelSet, EncodeMetric as _, text::encode},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::{Metric, Registry},
};
use tokio_util::sync::CancellationToken;
use tracing::info;

/// The registry of one process's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    registry: Registry,
}

impl Metrics {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a component's collector; it is asked for its samples at every scrape.
    pub fn collect(&mut self, collector: impl Collector) {
        self.registry.register_collector(Box::new(collector));
    }

    /// Adds a metric a component updates itself (e.g. a histogram).
    pub fn register(&mut self, name: &str, help: &str, metric: impl Metric) {
        self.registry.register(name, help, metric);
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// A counter family, one sample per row (`name` without `_total`, which the encoding adds).
pub fn counters<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (L, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut fam = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, n) in rows {
        ConstCounter::new(n).encode(fam.encode_family(&labels)?)?;
    }
    Ok(())
}

/// One counter without labels.
pub fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    n: u64,
) -> Result<(), std::fmt::Error> {
    ConstCounter::new(n).encode(encoder.encode_descriptor(name, help, None, MetricType::Counter)?)
}

/// A gauge family, one sample per row.
pub fn gauges<L: EncodeLabelSet, N: EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (L, N)>,
) -> Result<(), std::fmt::Error> {
    let mut fam = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in rows {
        ConstGauge::new(v).encode(fam.encode_family(&labels)?)?;
    }
    Ok(())
}

/// One gauge without labels.
pub fn gauge<N: EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: N,
) -> Result<(), std::fmt::Error> {
    ConstGauge::new(v).encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

/// A gauge family of 0/1 samples, one per row: its labels, and whether it reads 1.
pub fn flags<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (L, bool)>,
) -> Result<(), std::fmt::Error> {
    gauges(
        encoder,
        name,
        help,
        rows.into_iter().map(|(l, on)| (l, i64::from(on))),
    )
}

/// The HTTP routes: `/metrics` and `/health`.
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .route("/health", get(|| async { "OK" }))
        .with_state(metrics)
}

/// OpenMetrics to a scraper that asks for it (Prometheus does), else the classic text format, which
/// `promtool check metrics`, curl and older scrapers read.
async fn scrape(State(m): State<Arc<Metrics>>, headers: HeaderMap) -> impl IntoResponse {
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    if openmetrics {
        (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            m.render(),
        )
    } else {
        (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            classic_text(&m.render()),
        )
    }
}

/// The classic (0.0.4) text format of an OpenMetrics exposition. They differ in what this changes: a
/// counter's HELP and TYPE name its samples' `_total` name, an info metric is a gauge named `_info`,
/// `unknown` is `untyped`, HELP does not escape quotes, and there are no UNIT or EOF lines.
fn classic_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    // HELP comes before TYPE, and only TYPE tells what the family's samples are called.
    let mut help: Option<(&str, &str)> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest.split_once(' ').unwrap_or((rest, "")));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (suffix, kind) = match kind {
                "counter" => ("_total", "counter"),
                "info" => ("_info", "gauge"),
                "unknown" | "stateset" => ("", "untyped"),
                "gaugehistogram" => ("", "histogram"),
                other => ("", other),
            };
            if let Some((help_name, text)) = help.take().filter(|(n, _)| *n == name) {
                out.push_str(&format!(
                    "# HELP {help_name}{suffix} {}\n",
                    text.replace("\\\"", "\"")
                ));
            }
            out.push_str(&format!("# TYPE {name}{suffix} {kind}\n"));
        } else if !(line.starts_with("# UNIT ") || line == "# EOF") {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
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

    #[derive(Debug)]
    struct Two;

    impl Collector for Two {
        fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            counters(&mut encoder, "t_hits", "Hits", [([("k", "a")], 2)])?;
            flags(&mut encoder, "t_up", "Up", [([("k", "b")], true)])
        }
    }

    #[test]
    fn a_registered_collector_is_read_at_each_render() {
        let mut m = Metrics::new();
        assert_eq!(m.render(), "# EOF\n");
        m.collect(Two);
        let text = m.render();
        assert!(text.contains("# TYPE t_hits counter\n"), "{text}");
        assert!(text.contains("t_hits_total{k=\"a\"} 2\n"), "{text}");
        assert!(text.contains("t_up{k=\"b\"} 1\n"), "{text}");
    }

    #[test]
    fn the_classic_format_names_a_counters_help_and_type_after_its_samples() {
        let om = "# HELP t_hits Hits, \\\"all\\\" of them\n# TYPE t_hits counter\n# UNIT t_hits hits\n\
                  t_hits_total{k=\"a\"} 2\n# HELP t_up Up\n# TYPE t_up gauge\nt_up 1\n\
                  # HELP t_build Build\n# TYPE t_build info\nt_build_info{v=\"1\"} 1\n# EOF\n";
        assert_eq!(
            classic_text(om),
            "# HELP t_hits_total Hits, \"all\" of them\n# TYPE t_hits_total counter\n\
             t_hits_total{k=\"a\"} 2\n# HELP t_up Up\n# TYPE t_up gauge\nt_up 1\n\
             # HELP t_build_info Build\n# TYPE t_build_info gauge\nt_build_info{v=\"1\"} 1\n"
        );
    }
}
