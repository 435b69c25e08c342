//! The control plane's state: the registry of backends, the routing policy of each domain, and what the
//! external validation probes. From it comes the answer table both DNS paths answer from.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use tracing::warn;

use super::policy::{Candidate, Routing, ramp};
use crate::{
    config::{Config, HealthCheck, RoutingAlgorithm},
    health::{CheckOutcome, CheckPolicy, CheckSpec, Scheduled, Target},
    registry::{AnswerSet, BackendKey, DomainInfo, NameStatus, Registry},
    routing::{
        GeoDb, GeoResolver, Placement,
        learned::{LearnedLatency, Limits},
    },
    table::{AnswerTable, NameSpec},
};

/// Probes in flight at once, over every backend.
pub const PROBE_CONCURRENCY: usize = 32;

/// The registry and what the config says around it.
pub struct Control {
    /// Backends and their status.
    pub registry: Registry,
    domains: Vec<DomainInfo>,
    /// How each domain routes, in `domains` order.
    routings: Vec<Routing>,
    checks: HashMap<BackendKey, CheckPolicy>,
    probes: Vec<Scheduled<BackendKey>>,
    /// Where clients are, when the config has a geolocation resolver.
    placement: Option<Arc<Placement>>,
    /// The backends of domains with `slow_start` that the last publish left out of their healthy set.
    out: HashSet<BackendKey>,
    /// When each backend still ramping came back into its domain's healthy set.
    came_back: HashMap<BackendKey, Instant>,
    /// What agents measured of clients' latency, for `learned-latency` names; kept across reloads.
    pub learned: Arc<LearnedLatency>,
    /// When `learned` was last pruned.
    pruned: Option<Instant>,
}

/// What the DNS paths answer from.
pub struct Published {
    /// The answer table.
    pub table: Arc<AnswerTable>,
    /// Where clients are: the XDP geolocation trie, and the userspace paths' placement by source address
    /// and by EDNS Client Subnet.
    pub placement: Option<Arc<Placement>>,
    /// Each domain, and whether its all-down policy chose its answers.
    pub names: Vec<NameStatus>,
    /// The learned-latency table `learned-latency` names answer from, per query.
    pub learned: Arc<LearnedLatency>,
}

impl Control {
    /// The control state a config describes.
    pub fn new(cfg: &Config) -> Self {
        let mut c = Self {
            registry: Registry::from_config(cfg),
            domains: Vec::new(),
            routings: Vec::new(),
            checks: HashMap::new(),
            probes: Vec::new(),
            placement: None,
            out: HashSet::new(),
            came_back: HashMap::new(),
            learned: Arc::new(LearnedLatency::new(Limits {
                // Agents report a subnet once it has their `latency_learning.min_samples`; each name then
                // asks for its own `latency_config.min_samples`.
                min_samples: 1,
                ..Limits::default()
            })),
            pruned: None,
        };
        c.configure(cfg);
        c
    }

    /// A new config (SIGHUP): static backends replaced, agent and API ones and all runtime state kept.
    pub fn reload(&mut self, cfg: &Config) {
        self.registry.reload(cfg);
        self.configure(cfg);
    }

    fn configure(&mut self, cfg: &Config) {
        self.domains = DomainInfo::from_config(cfg);
        let ecs = cfg.geolocation().is_none_or(|g| g.ecs_enabled);
        self.placement =
            geo_resolver(cfg).map(|r| Arc::new(Placement::new(r, region_ids(cfg)).with_ecs(ecs)));
        let default_region = self.placement.as_ref().map_or(0, |p| p.default_region());
        self.routings = cfg
            .domain_records()
            .iter()
            .map(|d| {
                let domain = cfg.domains.iter().find(|x| x.name == d.name);
                let max_latency = domain.map_or(super::policy::DEFAULT_MAX_LATENCY, |x| {
                    Duration::from_millis(u64::from(cfg.latency_config_of(x).max_latency_ms))
                });
                let algorithm = if d.algorithm == RoutingAlgorithm::Geolocation
                    && self.placement.is_none()
                {
                    warn!(domain = %d.name, "geolocation routing needs a geolocation resolver: answering with round-robin instead");
                    RoutingAlgorithm::RoundRobin
                } else {
                    d.algorithm
                };
                Routing {
                    algorithm,
                    max_latency,
                    default_region,
                    min_samples: domain.map_or(1, |x| cfg.latency_config_of(x).min_samples),
                }
            })
            .collect();
        let (checks, probes) = probe_plan(cfg);
        self.checks = checks;
        self.probes = probes;
    }

    /// Drops learned latencies older than the table's TTL, at most once a minute: they no longer count
    /// anyway, this gives their memory back.
    pub fn prune_learned(&mut self, now: Instant) {
        if self
            .pruned
            .is_some_and(|at| now.saturating_duration_since(at) < Duration::from_secs(60))
        {
            return;
        }
        self.pruned = Some(now);
        let removed = self.learned.write(|t| t.prune(now));
        if removed > 0 {
            tracing::debug!(removed, "learned latencies past their TTL dropped");
        }
    }

    /// What external validation probes (empty when `overwatch.validation.enabled` is false).
    pub fn probes(&self) -> Vec<Scheduled<BackendKey>> {
        self.probes.clone()
    }

    /// Applies one probe result; true if a backend's status changed.
    pub fn apply_probe(&mut self, key: &BackendKey, outcome: CheckOutcome) -> bool {
        let policy = self.checks.get(key).copied().unwrap_or_default();
        self.registry.apply_validation(key, outcome, policy)
    }

    /// The answer table at `now`: each domain's answer set (computed once), routed by its algorithm
    /// into the table's records and policy per family ([`Routing::family`]). A domain whose set is
    /// empty (all-down policy `empty`, or no backend at all) has no entry, but the table keeps it among
    /// its empty names: it answers NODATA, not NXDOMAIN.
    pub fn publish(&mut self, now: Instant) -> Published {
        let sets = self.registry.answer_sets(&self.domains, now);
        self.registry.remember_healthy(&self.domains, &sets);
        self.track_returns(&sets, now);
        let specs: Vec<NameSpec> = self
            .domains
            .iter()
            .zip(&self.routings)
            .zip(&sets)
            .map(|((d, routing), set)| self.name_spec(d, routing, set, now))
            .collect();
        let names = self
            .domains
            .iter()
            .zip(&self.routings)
            .zip(&sets)
            .map(|((d, routing), set)| NameStatus {
                name: d.name.clone(),
                policy: d.all_down,
                all_down: set.all_down,
                algorithm: routing.algorithm,
            })
            .collect();
        Published {
            table: Arc::new(AnswerTable::from_specs(&specs)),
            placement: self.placement.clone(),
            names,
            learned: self.learned.clone(),
        }
    }

    /// Notes, for the domains with `slow_start`, which backends came back into their domain's healthy set
    /// since the last publish (from being out: a backend new to the registry does not ramp, so a start
    /// or an agent's first report takes no slow start), and forgets those whose ramp is over or that are
    /// out again. A name answering by its all-down policy has no healthy set: its backends count as out.
    fn track_returns(&mut self, sets: &[AnswerSet], now: Instant) {
        let mut out = HashSet::new();
        let mut windows = HashMap::new();
        for (d, set) in self.domains.iter().zip(sets) {
            let Some(window) = d.slow_start else {
                continue;
            };
            windows.insert(&d.name, window);
            let healthy: HashSet<&BackendKey> = if set.all_down {
                HashSet::new()
            } else {
                set.keys.iter().collect()
            };
            for b in self.registry.backends_of(&d.name) {
                if !healthy.contains(&b.key) {
                    out.insert(b.key.clone());
                } else if self.out.contains(&b.key) {
                    self.came_back.insert(b.key.clone(), now);
                }
            }
        }
        self.came_back.retain(|key, at| {
            !out.contains(key)
                && windows
                    .get(&key.service)
                    .is_some_and(|&w| ramp::step(now.saturating_duration_since(*at), w).is_some())
        });
        self.out = out;
    }

    fn name_spec(
        &self,
        d: &DomainInfo,
        routing: &Routing,
        set: &AnswerSet,
        now: Instant,
    ) -> NameSpec {
        let candidates: Vec<Candidate> = set
            .keys
            .iter()
            .filter_map(|key| {
                let b = self.registry.get(key)?;
                let ramp = self
                    .came_back
                    .get(key)
                    .zip(d.slow_start)
                    .and_then(|(&at, w)| ramp::step(now.saturating_duration_since(at), w));
                Some(Candidate {
                    addr: key.address,
                    weight: b.weight,
                    region: self.placement.as_ref().map_or(0, |p| p.id(&b.region)),
                    latency: b
                        .validation
                        .ewma_latency
                        .filter(|_| b.validation.latency_samples >= routing.min_samples),
                    ramp,
                })
            })
            .collect();
        let (v4, v6): (Vec<Candidate>, Vec<Candidate>) = candidates
            .iter()
            .partition(|c| matches!(c.addr, IpAddr::V4(_)));
        NameSpec {
            name: d.name.clone(),
            ttl: d.ttl,
            max_answers: d.max_answers,
            all_down: d.all_down,
            v4: routing.family(&v4),
            v6: routing.family(&v6),
        }
    }
}

/// Region ids: 1..=255 in config order (0 means none); regions past the 255th get none, so XDP sends
/// their clients to the default region.
fn region_ids(cfg: &Config) -> HashMap<String, u8> {
    let mut ids = HashMap::new();
    for (i, r) in cfg.regions.iter().enumerate() {
        match u8::try_from(i + 1) {
            Ok(id) => {
                ids.entry(r.name.clone()).or_insert(id);
            }
            Err(_) => {
                warn!(region = %r.name, "more than 255 regions: geolocation in XDP ignores it")
            }
        }
    }
    ids
}

/// The geolocation resolver the config describes, if any.
fn geo_resolver(cfg: &Config) -> Option<Arc<GeoResolver>> {
    let g = cfg.geolocation()?;
    let mut r = GeoResolver::new(g.default_region.clone())
        .with_mappings(g.custom_mappings.iter().map(|m| (m.cidr, m.region.clone())))
        .with_regions(&cfg.regions);
    if let Some(path) = &g.database_path {
        match GeoDb::open(path) {
            Ok(db) => r = r.with_database(db),
            Err(e) => warn!(error = %e, "geolocation database not loaded"),
        }
    }
    Some(Arc::new(r))
}

/// Per static backend: its thresholds, and the probe of its region's health check. Every backend is probed
/// at least every `overwatch.validation.check_interval` and each probe is bounded by `check_timeout` (the
/// original's validation cycle); a region's `health_check.interval` and `timeout`, when shorter, apply to
/// its servers. The latency average uses the smoothing factor of the backend's domain.
fn probe_plan(cfg: &Config) -> (HashMap<BackendKey, CheckPolicy>, Vec<Scheduled<BackendKey>>) {
    let mut checks = HashMap::new();
    let mut probes = Vec::new();
    let validation = &cfg.overwatch.validation;
    if !validation.enabled {
        return (checks, probes);
    }
    for region in &cfg.regions {
        let hc: &HealthCheck = &region.health_check;
        for s in &region.servers {
            let key = BackendKey::new(s.service.clone(), s.address, s.port);
            if checks.contains_key(&key) {
                continue;
            }
            let smoothing = cfg
                .domains
                .iter()
                .find(|d| d.name == s.service)
                .map_or(cfg.latency_config.smoothing_factor, |d| {
                    cfg.latency_config_of(d).smoothing_factor
                });
            checks.insert(key.clone(), CheckPolicy::from_health_check(hc, smoothing));
            let mut check = CheckSpec::from_config(hc, s.host.as_deref());
            check.timeout = check.timeout.min(validation.check_timeout);
            probes.push(Scheduled {
                key,
                target: Target {
                    address: s.address,
                    port: s.port,
                    check,
                },
                interval: hc.interval.min(validation.check_interval),
            });
        }
    }
    (checks, probes)
}
