//! Publishing answer tables to both DNS paths: the XDP maps, written incrementally, and a new snapshot
//! (with a new SOA serial) for the userspace server. Timed as `opengslb_table_sync_seconds`.

use std::{sync::Arc, time::Instant};

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use tokio::sync::watch;
use tracing::{debug, error};

use super::control::Published;
use crate::{
    dns::{QueryCounts, Snapshot, Zone},
    metrics::Metrics,
    routing::Placement,
    table::Renderer,
    xdp::{CounterMetrics, Dataplane},
};

/// The SOA serial for a new table: seconds since the epoch, kept increasing past `previous`.
fn next_serial(previous: u32) -> u32 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32);
    now.max(previous.wrapping_add(1))
}

/// Writes published tables to the XDP map and the userspace server, and owns the data plane.
pub(super) struct Publisher {
    /// The loaded (and, once attached, running) XDP program; `None` when userspace answers alone.
    pub dp: Option<Dataplane>,
    /// Renders each table once, for the XDP map and the userspace snapshot alike.
    renderer: Renderer,
    /// The geolocation table last written to the XDP trie.
    geo: Option<Arc<Placement>>,
    tx: watch::Sender<Arc<Snapshot>>,
    zones: Vec<Zone>,
    serial: u32,
    udp_size: u16,
    table_sync: Histogram,
    counters: Arc<CounterMetrics>,
    /// The per-name query counts the XDP program's answers are added to.
    queries: Arc<QueryCounts>,
}

/// How many entries' answer counters one reading reads at most (one system call each): a table of more
/// names is read over several ticks.
const ANSWER_READS_PER_TICK: usize = 4096;

impl Publisher {
    /// A publisher to `tx`, writing to `dp` when there is one.
    pub fn new(
        dp: Option<Dataplane>,
        tx: watch::Sender<Arc<Snapshot>>,
        zones: Vec<Zone>,
        udp_size: u16,
    ) -> Self {
        Self {
            dp,
            renderer: Renderer::default(),
            geo: None,
            tx,
            zones,
            serial: 0,
            udp_size,
            // 10 µs to about 2.6 s.
            table_sync: Histogram::new(exponential_buckets(0.000_01, 4.0, 10)),
            counters: Arc::default(),
            queries: Arc::default(),
        }
    }

    /// Adds the XDP program's answers to `queries` from now on (the userspace server's counts, so that
    /// both paths show as one metric).
    pub fn count_queries_in(&mut self, queries: Arc<QueryCounts>) {
        self.queries = queries;
    }

    /// The per-name query counts the XDP answers go to.
    pub fn queries(&self) -> Arc<QueryCounts> {
        self.queries.clone()
    }

    /// Registers the sync histogram and the XDP counters (shown once first read).
    pub fn register(&self, metrics: &mut Metrics) {
        metrics.register(
            "opengslb_table_sync_seconds",
            "Time from an answer-table change to the XDP map written and the userspace server switched",
            self.table_sync.clone(),
        );
        metrics.collect(self.counters.clone());
    }

    /// Reads the XDP counters for the metrics, and the answers per name into the query counts; they live
    /// in per-CPU kernel memory, read through the data plane this publisher owns.
    pub fn read_counters(&mut self) {
        let Some(dp) = self.dp.as_mut() else {
            return;
        };
        if let Ok(c) = dp.counters() {
            self.counters.set(c);
        }
        for (entry, n) in dp.take_answers(ANSWER_READS_PER_TICK) {
            self.queries
                .add_answers(Arc::from(entry.name.as_str()), entry.qtype, n);
        }
    }

    /// Writes `published` to both paths. A failed XDP write is logged and userspace still switches.
    pub fn publish(&mut self, published: Published) {
        let started = Instant::now();
        let Published {
            table, placement, ..
        } = published;
        // The trie changes only with the config (each config builds a new one). A failed write is tried
        // again at the next publish: `self.geo` keeps the table last written in full.
        let mut geo_written = true;
        if let Some(dp) = self.dp.as_mut() {
            let same = match (&self.geo, &placement) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            };
            if !same {
                let empty = crate::routing::PrefixTable::new();
                let table = placement.as_ref().map_or(&empty, |p| p.table().prefixes());
                match dp.set_geo(table) {
                    Ok(written) => debug!(written, "XDP geolocation trie updated"),
                    Err(e) => {
                        geo_written = false;
                        error!(
                            error = format!("{e:#}"),
                            "updating the XDP geolocation trie failed"
                        );
                    }
                }
            }
        }
        if geo_written {
            self.geo.clone_from(&placement);
        }
        let rendered = self.renderer.render(&table);
        if let Some(dp) = self.dp.as_mut() {
            match dp.apply(&rendered) {
                Ok(plan) => {
                    for (name, why) in &plan.skipped {
                        debug!(name = %name.name, qtype = name.qtype, why, "not in the XDP map: answered by userspace");
                    }
                    debug!(
                        written = plan.upserts.len(),
                        removed = plan.removals.len(),
                        "XDP map updated"
                    );
                }
                // The XDP map keeps its previous entries; userspace still gets the new table.
                Err(e) => error!(error = format!("{e:#}"), "updating the XDP map failed"),
            }
        }
        self.serial = next_serial(self.serial);
        let snap = Snapshot::new(
            table,
            &rendered,
            self.zones.clone(),
            self.serial,
            self.udp_size,
        )
        .with_placement(placement);
        self.tx.send_replace(Arc::new(snap));
        self.table_sync.observe(started.elapsed().as_secs_f64());
    }
}
