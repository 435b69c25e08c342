//! Learned latency, the agent's side (`agent.latency_learning`): every `poll_interval` the round-trip
//! times of the app's established TCP connections are read from the kernel ([`diag`]); each connection at
//! least `min_connection_age` old gives one sample to its backend's moving average for the client's
//! subnet (`ipv4_prefix`, `ipv6_prefix`); every `report_interval` the subnets with `min_samples` samples
//! go to every overwatch on their own datagrams ([`LatencyReport`]), beside the health reports, which
//! never wait for them. At most `max_subnets` subnets are kept (the one updated longest ago makes room)
//! and one without a sample for `subnet_ttl` is forgotten.

pub mod diag;

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{debug, warn};

use crate::{
    config::{LatencyLearningConfig, Secret},
    gossip::{
        node::Node,
        wire::{LATENCY_VERSION, LatencyReport, MAX_LATENCY_SUBNETS, SubnetLatency},
    },
    metrics::{Collector, DescriptorEncoder, counter, gauge},
    routing::learned::{LearnedTable, Limits},
};
use diag::Conn;

/// One backend whose connections are measured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Measured {
    /// Its service.
    pub service: String,
    /// The address it is checked at: its connections' local address, unless that is a loopback or
    /// unspecified one (the app then takes connections on any address).
    pub checked: IpAddr,
    /// The address it is reported at, which the overwatch knows it by.
    pub reported: IpAddr,
    /// Its port.
    pub port: u16,
}

impl Measured {
    fn owns(&self, c: &Conn) -> bool {
        c.local.port() == self.port
            && (self.checked.is_loopback()
                || self.checked.is_unspecified()
                || c.local.ip().to_canonical() == self.checked.to_canonical())
    }
}

/// The moving averages, per backend (its index) and client subnet. Pure: the clock comes in.
#[derive(Debug)]
pub struct Learner {
    cfg: LatencyLearningConfig,
    backends: Vec<Measured>,
    table: LearnedTable<usize>,
    /// When each connection was first seen, by cookie.
    first_seen: HashMap<u64, Instant>,
}

impl Learner {
    /// A learner for `backends` under `cfg`.
    pub fn new(cfg: &LatencyLearningConfig, backends: Vec<Measured>) -> Self {
        let limits = Limits {
            v4_prefix: cfg.ipv4_prefix,
            v6_prefix: cfg.ipv6_prefix,
            max_subnets: usize::try_from(cfg.max_subnets).unwrap_or(usize::MAX),
            ttl: cfg.subnet_ttl,
            min_samples: u64::from(cfg.min_samples),
        };
        Self {
            cfg: cfg.clone(),
            backends,
            table: LearnedTable::new(limits),
            first_seen: HashMap::new(),
        }
    }

    /// The ports whose connections are read.
    pub fn ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self.backends.iter().map(|b| b.port).collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    /// Takes one read of the kernel's connections at `now`; returns how many samples it gave.
    pub fn observe(&mut self, conns: &[Conn], now: Instant) -> u64 {
        let present: HashSet<u64> = conns.iter().map(|c| c.cookie).collect();
        self.first_seen.retain(|cookie, _| present.contains(cookie));
        let alpha = self.cfg.ewma_alpha;
        let mut samples = 0;
        for c in conns {
            let first = *self.first_seen.entry(c.cookie).or_insert(now);
            if now.saturating_duration_since(first) < self.cfg.min_connection_age {
                continue;
            }
            let Some(i) = self.backends.iter().position(|b| b.owns(c)) else {
                continue;
            };
            let net = self.table.subnet_of(c.remote);
            let sample = c.rtt.as_secs_f64();
            let (avg, n) = match self.table.subnet(net).find(|(b, _)| **b == i) {
                Some((_, l)) => (
                    alpha * sample + (1.0 - alpha) * l.rtt.as_secs_f64(),
                    l.samples + 1,
                ),
                None => (sample, 1),
            };
            self.table
                .observe(net, i, Duration::from_secs_f64(avg), n, now);
            samples += 1;
        }
        samples
    }

    /// Forgets the subnets without a sample for `subnet_ttl`; returns how many entries went.
    pub fn prune(&mut self, now: Instant) -> usize {
        self.table.prune(now)
    }

    /// How many subnets are tracked.
    pub fn subnets(&self) -> usize {
        self.table.subnet_count()
    }

    /// The reports to send now: per backend, its subnets with `min_samples` samples, at most
    /// [`MAX_LATENCY_SUBNETS`] per report.
    pub fn reports(&self, agent_id: &str, token: &Secret, sent_ms: u64) -> Vec<LatencyReport> {
        let mut by_backend: Vec<Vec<SubnetLatency>> = vec![Vec::new(); self.backends.len()];
        for (net, i, l) in self.table.entries() {
            if l.samples < u64::from(self.cfg.min_samples) {
                continue;
            }
            if let Some(list) = by_backend.get_mut(*i) {
                list.push(SubnetLatency {
                    network: net.network(),
                    prefix_len: net.prefix_len(),
                    rtt_us: u32::try_from(l.rtt.as_micros()).unwrap_or(u32::MAX),
                    samples: u32::try_from(l.samples).unwrap_or(u32::MAX),
                });
            }
        }
        let mut out = Vec::new();
        for (b, mut subnets) in self.backends.iter().zip(by_backend) {
            subnets.sort_by_key(|s| (s.network, s.prefix_len));
            for chunk in subnets.chunks(MAX_LATENCY_SUBNETS) {
                out.push(LatencyReport {
                    version: LATENCY_VERSION,
                    agent_id: agent_id.to_owned(),
                    sent_ms,
                    token: token.clone(),
                    service: b.service.clone(),
                    address: b.reported,
                    port: b.port,
                    subnets: chunk.to_vec(),
                });
            }
        }
        out
    }
}

/// The learning's counters at `/metrics`.
#[derive(Debug, Default)]
pub struct LatencyStats {
    observations: AtomicU64,
    reports: AtomicU64,
    errors: AtomicU64,
    subnets: AtomicU64,
}

impl Collector for LatencyStats {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        counter(
            &mut encoder,
            "opengslb_agent_latency_observations",
            "Connection RTT samples taken from the kernel (one per connection per poll, once old enough)",
            self.observations.load(Relaxed),
        )?;
        counter(
            &mut encoder,
            "opengslb_agent_latency_reports_sent",
            "Learned-latency reports sent (each goes to every overwatch)",
            self.reports.load(Relaxed),
        )?;
        counter(
            &mut encoder,
            "opengslb_agent_latency_collector_errors",
            "Reads of the kernel's connections that failed (logged)",
            self.errors.load(Relaxed),
        )?;
        gauge(
            &mut encoder,
            "opengslb_agent_latency_subnets_tracked",
            "Client subnets with a moving average",
            i64::try_from(self.subnets.load(Relaxed)).unwrap_or(i64::MAX),
        )
    }
}

/// Runs the learning on `tracker` until `token` is cancelled, sending through `node`.
pub fn spawn(
    cfg: &LatencyLearningConfig,
    backends: Vec<Measured>,
    identity: (String, Secret),
    node: Node,
    stats: Arc<LatencyStats>,
    tracker: &TaskTracker,
    token: CancellationToken,
) {
    let mut learner = Learner::new(cfg, backends);
    let (poll_every, report_every) = (cfg.poll_interval, cfg.report_interval);
    tracker.spawn(async move {
        let (agent_id, secret) = identity;
        let mut poll = tokio::time::interval(poll_every);
        let mut report = tokio::time::interval_at(tokio::time::Instant::now() + report_every, report_every);
        let mut warned = false;
        loop {
            tokio::select! {
                () = token.cancelled() => break,
                _ = poll.tick() => {
                    let ports = learner.ports();
                    let read = tokio::task::spawn_blocking(move || diag::established(&ports)).await;
                    match read {
                        Ok(Ok(conns)) => {
                            let now = Instant::now();
                            let n = learner.observe(&conns, now);
                            learner.prune(now);
                            stats.observations.fetch_add(n, Relaxed);
                            stats.subnets.store(learner.subnets() as u64, Relaxed);
                            warned = false;
                        }
                        Ok(Err(e)) => {
                            stats.errors.fetch_add(1, Relaxed);
                            if !warned {
                                warn!(error = %e, "reading the kernel's TCP connections failed (logged once until a read succeeds)");
                                warned = true;
                            }
                        }
                        Err(e) => {
                            stats.errors.fetch_add(1, Relaxed);
                            debug!(error = %e, "the connection reader stopped");
                        }
                    }
                }
                _ = report.tick() => {
                    for r in learner.reports(&agent_id, &secret, crate::gossip::unix_ms()) {
                        node.send_latency(r.encode());
                        stats.reports.fetch_add(1, Relaxed);
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests;
