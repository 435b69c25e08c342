//! The overwatch's own facts at `/metrics`, under the original's names: its version, when its config was
//! loaded and last reloaded, how reloads went, and what the validation probes found and how long they took.

use std::{
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use prometheus_client::{
    encoding::EncodeMetric as _,
    metrics::{
        MetricType, TypedMetric as _,
        counter::Counter,
        family::Family,
        histogram::{Histogram, exponential_buckets},
    },
};

use crate::metrics::{Collector, DescriptorEncoder, counters, gauge, gauges};

type ServiceResult = [(&'static str, String); 2];
type ServiceLabel = [(&'static str, String); 1];

/// Counted by the shell as things happen; read at each scrape.
#[derive(Debug)]
pub struct RunMetrics {
    loaded_at: f64,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    /// The last successful reload's time, as `f64` bits; 0 before one.
    reloaded_at: AtomicU64,
    checks: Family<ServiceResult, Counter>,
    latency: Family<ServiceLabel, Histogram, fn() -> Histogram>,
    /// The shared store's link: [`NO_SHARED_STORE`], or 1 (reachable) or 0, and its last revision.
    store_up: AtomicU64,
    store_revision: AtomicU64,
}

/// `store_up` when the store is the embedded one: nothing to show.
const NO_SHARED_STORE: u64 = u64::MAX;

impl Default for RunMetrics {
    fn default() -> Self {
        Self {
            loaded_at: unix_now(),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            reloaded_at: AtomicU64::new(0),
            checks: Family::default(),
            // 1 ms to ~8 s: a probe's timeout is seconds at most.
            latency: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 14))
            }),
            store_up: AtomicU64::new(NO_SHARED_STORE),
            store_revision: AtomicU64::new(0),
        }
    }
}

impl RunMetrics {
    /// A SIGHUP's outcome: the new config taken, or refused.
    pub fn reloaded(&self, ok: bool) {
        if ok {
            self.reloads_ok.fetch_add(1, Relaxed);
            self.reloaded_at.store(unix_now().to_bits(), Relaxed);
        } else {
            self.reloads_failed.fetch_add(1, Relaxed);
        }
    }

    /// The shared store's link, `None` for the embedded store.
    pub fn store_link(&self, link: Option<&crate::store::Link>) {
        let (up, revision) = link.map_or((NO_SHARED_STORE, 0), |l| (u64::from(l.up), l.revision));
        self.store_up.store(up, Relaxed);
        self.store_revision.store(revision, Relaxed);
    }

    /// One validation probe of a backend of `service`.
    pub fn probed(&self, service: &str, ok: bool, latency: Duration) {
        let result = if ok { "healthy" } else { "unhealthy" };
        self.checks
            .get_or_create(&[("service", service.to_owned()), ("result", result.into())])
            .inc();
        self.latency
            .get_or_create(&[("service", service.to_owned())])
            .observe(latency.as_secs_f64());
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Collector for RunMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        gauges(
            &mut encoder,
            "opengslb_app_info",
            "Always 1; `version` is this build's",
            [([("version", env!("CARGO_PKG_VERSION"))], 1)],
        )?;
        gauge(
            &mut encoder,
            "opengslb_config_load_timestamp_seconds",
            "When the config was first loaded, in seconds since the Unix epoch",
            self.loaded_at,
        )?;
        counters(
            &mut encoder,
            "opengslb_config_reloads",
            "SIGHUP reloads of the config file, by result (success: taken; failure: refused, the running config kept)",
            [
                ([("result", "success")], self.reloads_ok.load(Relaxed)),
                ([("result", "failure")], self.reloads_failed.load(Relaxed)),
            ],
        )?;
        gauge(
            &mut encoder,
            "opengslb_config_reload_timestamp_seconds",
            "When the config was last reloaded successfully, in seconds since the Unix epoch; 0 before that",
            f64::from_bits(self.reloaded_at.load(Relaxed)),
        )?;
        let up = self.store_up.load(Relaxed);
        if up != NO_SHARED_STORE {
            gauge(
                &mut encoder,
                "opengslb_store_up",
                "1 when the shared store (overwatch.store.etcd) answers and changes are accepted; 0 when it cannot be reached (the last state is served, changes are refused)",
                i64::try_from(up).unwrap_or(0),
            )?;
            gauge(
                &mut encoder,
                "opengslb_store_revision",
                "The shared store's last revision this overwatch holds; equal on overwatches that agree",
                i64::try_from(self.store_revision.load(Relaxed)).unwrap_or(i64::MAX),
            )?;
        }
        self.checks.encode(encoder.encode_descriptor(
            "opengslb_overwatch_validation_checks",
            "The overwatch's validation probes of static and API backends, by service and result",
            None,
            MetricType::Counter,
        )?)?;
        self.latency.encode(encoder.encode_descriptor(
            "opengslb_overwatch_validation_latency_seconds",
            "How long each validation probe took, to its verdict (a response, a refusal or the timeout), by service",
            None,
            Family::<ServiceLabel, Histogram>::TYPE,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::metrics::Metrics;

    #[test]
    fn reloads_and_probes_show_under_the_originals_names() {
        let run = Arc::new(RunMetrics::default());
        let mut m = Metrics::new();
        m.collect(run.clone());
        assert!(
            m.render()
                .contains("opengslb_config_reload_timestamp_seconds 0.0\n")
        );
        run.reloaded(true);
        run.reloaded(false);
        run.probed("app.demo.local", true, Duration::from_millis(3));
        run.probed("app.demo.local", false, Duration::from_millis(3));
        run.probed("app.demo.local", false, Duration::from_secs(2));
        let text = m.render();
        for line in [
            "opengslb_config_reloads_total{result=\"success\"} 1\n",
            "opengslb_config_reloads_total{result=\"failure\"} 1\n",
            "opengslb_overwatch_validation_checks_total{service=\"app.demo.local\",result=\"unhealthy\"} 2\n",
            "opengslb_overwatch_validation_latency_seconds_count{service=\"app.demo.local\"} 3\n",
            "opengslb_overwatch_validation_latency_seconds_bucket{le=\"0.004\",service=\"app.demo.local\"} 2\n",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        assert!(text.contains("opengslb_app_info{version=\""), "{text}");
        assert!(
            !text.contains("opengslb_config_reload_timestamp_seconds 0.0\n"),
            "{text}"
        );
    }
}
