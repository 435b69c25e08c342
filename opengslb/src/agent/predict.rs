//! The predictive drain: samples CPU, memory and the error rate every `predictive.check_interval`, and
//! drains while a threshold is crossed. Each threshold has a hysteresis band and holds for at least its
//! `bleed_duration`, so a backend does not flap in and out of DNS.

use std::{time::Duration, time::Instant};

use anyhow::Context as _;
use tokio::sync::{mpsc, watch};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::debug;

use super::signals::{
    CheckWindow, CpuSampler, ErrorRateFromCounters, Trigger, memory_percent, verdict,
};
use crate::config::{MetricSelector, PredictiveConfig};
use crate::gossip::wire::Signals;

/// How far below its threshold CPU or memory must fall before a drain ends, in percentage points.
const HYSTERESIS_LOAD: f64 = 5.0;

/// As [`HYSTERESIS_LOAD`], for the error rate.
const HYSTERESIS_ERRORS: f64 = 2.0;

/// How long a scrape of the app's metrics may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the error rate comes from.
#[expect(
    clippy::large_enum_variant,
    reason = "one per agent, built once: boxing would only add a pointer to follow"
)]
enum ErrorSource {
    /// The app's Prometheus endpoint.
    Scrape {
        client: reqwest::Client,
        url: url::Url,
        total: MetricSelector,
        failed: MetricSelector,
        rate: ErrorRateFromCounters,
    },
    /// The agent's own failed checks over the window.
    Checks(CheckWindow),
}

/// A drain reason, if a signal fires, and the values measured.
pub(super) type Prediction = (Option<String>, Signals);

/// The predictive signals and their triggers; inert when `predictive.enabled` is false.
pub(super) struct Predictor {
    enabled: bool,
    interval: Duration,
    cpu: CpuSampler,
    /// Whether CPU and memory are sampled (`agent.predictive.{cpu,memory}.enabled`).
    cpu_enabled: bool,
    memory_enabled: bool,
    cpu_trigger: Trigger,
    memory_trigger: Trigger,
    errors: ErrorSource,
    error_trigger: Trigger,
}

impl Predictor {
    /// Builds the predictor; fails only if the HTTP client for the metrics endpoint cannot be built.
    pub fn new(cfg: &PredictiveConfig) -> anyhow::Result<Self> {
        let host_cpus = std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64);
        let errors = match &cfg.error_rate.source {
            Some(src) => ErrorSource::Scrape {
                client: crate::http_client::builder()
                    .timeout(SCRAPE_TIMEOUT)
                    .build()
                    .context("HTTP client for agent.predictive.error_rate.source")?,
                url: src.url.clone(),
                total: src.total_metric.clone(),
                failed: src.failed_metric.clone(),
                rate: ErrorRateFromCounters::new(),
            },
            None => ErrorSource::Checks(CheckWindow::new(cfg.error_rate.window)),
        };
        Ok(Self {
            enabled: cfg.enabled,
            interval: cfg.check_interval,
            cpu: CpuSampler::new("/", host_cpus),
            cpu_enabled: cfg.cpu.enabled,
            memory_enabled: cfg.memory.enabled,
            cpu_trigger: Trigger::new(cfg.cpu.threshold, HYSTERESIS_LOAD, cfg.cpu.bleed_duration),
            memory_trigger: Trigger::new(
                cfg.memory.threshold,
                HYSTERESIS_LOAD,
                cfg.memory.bleed_duration,
            ),
            errors,
            error_trigger: Trigger::new(
                cfg.error_rate.threshold,
                HYSTERESIS_ERRORS,
                cfg.error_rate.bleed_duration,
            ),
        })
    }

    /// Runs the predictor in a task: it samples every `check_interval` and publishes the drain reason
    /// (if any) and the values measured; health-check results come in on the returned sender.
    pub fn spawn(
        mut self,
        tracker: &TaskTracker,
        token: CancellationToken,
    ) -> (mpsc::Sender<(Instant, bool)>, watch::Receiver<Prediction>) {
        let (checks_tx, mut checks) = mpsc::channel(1024);
        let (tx, rx) = watch::channel((None, Signals::default()));
        tracker.spawn(async move {
            let mut tick = tokio::time::interval(self.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = token.cancelled() => break,
                    Some((at, ok)) = checks.recv() => self.record_check(at, ok),
                    _ = tick.tick() => {
                        let sample = self.sample(Instant::now()).await;
                        tx.send_if_modified(|old| {
                            let changed = *old != sample;
                            *old = sample;
                            changed
                        });
                    }
                }
            }
        });
        (checks_tx, rx)
    }

    /// Counts a health check towards the error rate when no metrics endpoint is configured.
    fn record_check(&mut self, now: Instant, ok: bool) {
        if let ErrorSource::Checks(w) = &mut self.errors {
            w.record(now, ok);
        }
    }

    /// Samples the signals; returns the drain reason if any trigger fires, and the values measured.
    async fn sample(&mut self, now: Instant) -> (Option<String>, Signals) {
        if !self.enabled {
            return (None, Signals::default());
        }
        let cpu = self.cpu_enabled.then(|| self.cpu.sample(now)).flatten();
        let memory = self.memory_enabled.then(|| memory_percent("/")).flatten();
        let error_rate = match &mut self.errors {
            ErrorSource::Checks(w) => w.rate(now),
            ErrorSource::Scrape {
                client,
                url,
                total,
                failed,
                rate,
            } => match scrape(client, url).await {
                Ok(text) => rate.update_from_text(&text, total, failed),
                Err(e) => {
                    debug!(url = %without_userinfo(url), error = %e, "scraping the app's metrics failed");
                    None
                }
            },
        };
        self.cpu_trigger.update(now, cpu);
        self.memory_trigger.update(now, memory);
        self.error_trigger.update(now, error_rate);
        let v = verdict(&[
            ("cpu", &self.cpu_trigger, cpu),
            ("memory", &self.memory_trigger, memory),
            ("error rate", &self.error_trigger, error_rate),
        ]);
        let signals = Signals {
            cpu: cpu.map(|v| v as f32),
            memory: memory.map(|v| v as f32),
            error_rate: error_rate.map(|v| v as f32),
        };
        (v.draining.then_some(v.reason), signals)
    }
}

/// The URL without a `user:password@` part, for logs.
fn without_userinfo(url: &url::Url) -> url::Url {
    let mut u = url.clone();
    // Both fail only for URLs that cannot hold credentials: then there are none to remove.
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u
}

async fn scrape(client: &reqwest::Client, url: &url::Url) -> anyhow::Result<String> {
    let response = client.get(url.clone()).send().await?.error_for_status()?;
    Ok(response.text().await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials_for_the_log() {
        let shown = |url: &str| without_userinfo(&url.parse().unwrap()).to_string();
        assert_eq!(
            shown("http://user:secret@127.0.0.1:9100/metrics"),
            "http://127.0.0.1:9100/metrics"
        );
        assert_eq!(
            shown("https://app.example/metrics?x=1"),
            "https://app.example/metrics?x=1"
        );
    }

    /// Config validation once accepted `(4|5)..`, which the agent then refused at start: now the
    /// selectors the config parsed are the ones the agent matches with.
    #[test]
    fn the_agent_uses_the_selectors_the_config_accepted() {
        let yaml = r#"
mode: agent
agent:
  identity: { region: r1, service_token: "0123456789abcdef" }
  backends:
    - { service: app.example.com, address: 127.0.0.1, port: 80, health_check: { interval: 2s, timeout: 1s } }
  gossip: { encryption_key: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", overwatch_nodes: ["10.0.0.1:7946"] }
  predictive:
    enabled: true
    error_rate:
      source:
        url: "http://127.0.0.1:9/metrics"
        total_metric: http_requests_total
        failed_metric: 'http_requests_total{code=~"(4|5).."}'
"#;
        let config = crate::config::Config::from_yaml_str(yaml).expect("config");
        let predictor = Predictor::new(&config.agent.predictive).expect("predictor");
        let ErrorSource::Scrape {
            total,
            failed,
            mut rate,
            ..
        } = predictor.errors
        else {
            panic!("a source is configured, so the rate comes from scrapes");
        };
        let scrape = |ok: u32, client: u32, server: u32| {
            format!(
                "http_requests_total{{code=\"200\"}} {ok}\n\
                 http_requests_total{{code=\"404\"}} {client}\n\
                 http_requests_total{{code=\"503\"}} {server}\n"
            )
        };
        assert_eq!(
            rate.update_from_text(&scrape(0, 0, 0), &total, &failed),
            None
        );
        let percent = rate.update_from_text(&scrape(70, 20, 10), &total, &failed);
        assert!(
            percent.is_some_and(|p| (p - 30.0).abs() < 1e-9),
            "{percent:?}"
        );
    }

    /// A busy host must not drain a service whose CPU and memory signals are turned off.
    #[tokio::test]
    async fn disabled_signals_are_not_sampled_and_never_fire() {
        let predictive = |cpu: &str| {
            let yaml = format!(
                r#"
mode: agent
agent:
  identity: {{ region: r1, service_token: "0123456789abcdef" }}
  backends:
    - {{ service: app.example.com, address: 127.0.0.1, port: 80, health_check: {{ interval: 2s, timeout: 1s }} }}
  gossip: {{ encryption_key: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", overwatch_nodes: ["10.0.0.1:7946"] }}
  predictive: {{ enabled: true, cpu: {cpu}, memory: {cpu} }}
"#
            );
            crate::config::Config::from_yaml_str(&yaml)
                .expect("config")
                .agent
                .predictive
        };
        // Thresholds every host exceeds: with the signals on they fire, off they cannot.
        let on = predictive("{ threshold: 0.001, bleed_duration: 1ms }");
        assert!(on.cpu.enabled && on.memory.enabled, "enabled by default");
        let mut p = Predictor::new(&on).expect("predictor");
        let t0 = Instant::now();
        p.sample(t0).await;
        let (draining, signals) = p.sample(t0 + Duration::from_millis(200)).await;
        assert!(signals.memory.is_some(), "{signals:?}");
        assert!(draining.is_some(), "{signals:?}");

        let off = predictive("{ enabled: false, threshold: 0.001, bleed_duration: 1ms }");
        let mut p = Predictor::new(&off).expect("predictor");
        p.sample(t0).await;
        let (draining, signals) = p.sample(t0 + Duration::from_millis(200)).await;
        assert_eq!((draining, signals.cpu, signals.memory), (None, None, None));
    }
}
