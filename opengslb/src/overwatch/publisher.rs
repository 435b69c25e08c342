//! Publishing answer tables to both DNS paths: the XDP maps, written incrementally, and a new snapshot
//! (with a new SOA serial) for the userspace server. Timed as `opengslb_table_sync_seconds`.

use std::{collections::BTreeMap, sync::Arc, time::Instant};

use opengslb_common::maps::MAX_ENTRIES;

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

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
    /// Table entries left out of the XDP map at the last publish, by reason.
    left: BTreeMap<&'static str, u64>,
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
            left: BTreeMap::new(),
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

    /// Tells the XDP program the control plane is alive, so it keeps trusting its table (see
    /// `dns.xdp.stale_after`); called from the main loop, so a hung loop stops it.
    pub fn heartbeat(&mut self) {
        if let Some(dp) = self.dp.as_mut()
            && let Err(e) = dp.heartbeat()
        {
            warn!(error = %e, "XDP heartbeat");
        }
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

    /// Shows how many table entries only userspace answers, and says so in the log when that changes.
    fn report_left(&mut self, left: BTreeMap<&'static str, u64>) {
        let total: u64 = left.values().sum();
        if left != self.left {
            if total > 0 {
                let reasons = left
                    .iter()
                    .map(|(why, n)| format!("{n} {why}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                warn!(
                    entries = total,
                    capacity = MAX_ENTRIES,
                    reasons,
                    "table entries not in the XDP map: answered by userspace only"
                );
            } else {
                info!("every table entry is in the XDP map again");
            }
        }
        self.counters.set_left(&left);
        self.left = left;
    }

    /// Writes `published` to both paths. A failed XDP write is logged and userspace still switches.
    pub fn publish(&mut self, published: Published) {
        let started = Instant::now();
        let Published {
            table,
            placement,
            learned,
            ..
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
        let mut rendered = self.renderer.render(&table);
        if let Some(dp) = self.dp.as_mut() {
            let mut applied = dp.apply(&rendered);
            // Slots this render freed are taken only by the next one (the map gets new entries before
            // old ones leave, so it must never need more than its capacity at once): entries that
            // waited for them get in now rather than at the next change.
            if applied.is_ok() && self.renderer.has_room_for(&rendered) {
                rendered = self.renderer.render(&table);
                applied = dp.apply(&rendered);
            }
            match applied {
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
            self.report_left(rendered.left_by_reason());
        }
        self.serial = next_serial(self.serial);
        let snap = Snapshot::new(
            table,
            &rendered,
            self.zones.clone(),
            self.serial,
            self.udp_size,
        )
        .with_placement(placement)
        .with_learned(learned);
        self.tx.send_replace(Arc::new(snap));
        self.table_sync.observe(started.elapsed().as_secs_f64());
    }
}
