//! The control plane's state: the registry of backends, the routing policy of each domain, and what the
//! external validation probes. From it come the answer table and the routes both DNS paths answer from.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::Arc,
    time::{Duration, Instant},
};

use tracing::warn;

use crate::{
    config::{Config, HealthCheck, RoutingAlgorithm},
    dns::zone::Route,
    health::{CheckOutcome, CheckPolicy, CheckSpec, Scheduled, Target},
    registry::{self, BackendKey, DomainInfo, NameStatus, Registry},
    routing::{self, Candidate, GeoDb, GeoResolver, GeoTable, PickCtx, PolicySettings},
    table::{AnswerTable, Policy as TablePolicy, Weights},
};

/// Probes in flight at once, over every backend.
pub const PROBE_CONCURRENCY: usize = 32;

/// The registry and what the config says around it.
pub struct Control {
    /// Backends and their status.
    pub registry: Registry,
    domains: Vec<DomainInfo>,
    policies: HashMap<String, Arc<routing::Policy>>,
    checks: HashMap<BackendKey, CheckPolicy>,
    probes: Vec<Scheduled<BackendKey>>,
    /// Region name → id (config order, 1..=255; 0 means none), as `geolocation` map entries say them.
    region_ids: HashMap<String, u8>,
    /// The geolocation trie's contents, when the config has a geolocation resolver.
    geo_table: Option<Arc<GeoTable>>,
}

/// What the DNS paths answer from.
pub struct Published {
    /// The answer table.
    pub table: AnswerTable,
    /// The names answered by a routing policy, with their candidates.
    pub routes: HashMap<String, Route>,
    /// Client prefix → region id: the XDP geolocation trie and the userspace fast path's lookup.
    pub geo: Option<Arc<GeoTable>>,
    /// Each domain, and whether its all-down policy chose its answers.
    pub names: Vec<NameStatus>,
}

impl Control {
    /// The control state a config describes.
    pub fn new(cfg: &Config) -> Self {
        let mut c = Self {
            registry: Registry::from_config(cfg),
            domains: Vec::new(),
            policies: HashMap::new(),
            checks: HashMap::new(),
            probes: Vec::new(),
            region_ids: HashMap::new(),
            geo_table: None,
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
        let geo = geo_resolver(cfg);
        self.region_ids = region_ids(cfg);
        self.geo_table = geo.as_ref().map(|r| {
            let ids = &self.region_ids;
            Arc::new(GeoTable::build(r, |name| ids.get(name).copied()))
        });
        self.policies = cfg
            .domain_records()
            .iter()
            .filter(|d| d.algorithm != RoutingAlgorithm::RoundRobin)
            .map(|d| {
                let domain = cfg.domains.iter().find(|x| x.name == d.name);
                let max_latency = domain.map_or(routing::DEFAULT_MAX_LATENCY, |x| {
                    Duration::from_millis(u64::from(cfg.latency_config_of(x).max_latency_ms))
                });
                let settings = PolicySettings {
                    geo: geo.clone(),
                    max_latency,
                };
                let policy = routing::Policy::from_algorithm(d.algorithm, &settings)
                    .unwrap_or_else(|e| {
                        warn!(domain = %d.name, error = %e, "answering with round-robin instead");
                        routing::Policy::RoundRobin
                    });
                (d.name.clone(), Arc::new(policy))
            })
            .collect();
        let (checks, probes) = probe_plan(cfg);
        self.checks = checks;
        self.probes = probes;
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

    /// The answer table and routes at `now`.
    ///
    /// Names routed `failover`, `latency` or `weighted` are answered from the table itself, by both DNS
    /// paths alike: their records in routing order under [`TablePolicy::FixedOrder`] (failover: config
    /// order; latency: fastest first, the slow ones dropped, as [`routing::pick`] orders them), or with
    /// their weights under [`TablePolicy::Weighted`]. Geolocation names are [`TablePolicy::Geo`] entries
    /// (each record with its region id), answered by the source address through the geolocation trie
    /// ([`Published::geo`]), and also get a route, by which userspace answers queries with EDNS Client
    /// Subnet. Only what the table cannot express (latency measured for one family and not the other)
    /// gets a route alone, which userspace answers per query.
    pub fn publish(&mut self, now: Instant) -> Published {
        let sets = self.registry.answer_sets(&self.domains, now);
        let mut specs: Vec<_> = self
            .domains
            .iter()
            .zip(&sets)
            .map(|(d, set)| registry::name_spec(d, set))
            .collect();
        let mut routes = HashMap::new();
        for ((d, spec), set) in self.domains.iter().zip(specs.iter_mut()).zip(&sets) {
            // Names are normalized when the config is read.
            let name = &d.name;
            let Some(policy) = self.policies.get(name) else {
                continue;
            };
            let candidates: Vec<Candidate> = set
                .keys
                .iter()
                .enumerate()
                .filter_map(|(order, key)| {
                    let b = self.registry.get(key)?;
                    Some(Candidate {
                        addr: key.address,
                        weight: b.weight,
                        region: b.region.clone(),
                        order,
                        latency: b.validation.ewma_latency,
                    })
                })
                .collect();
            match table_form(policy, &candidates, &self.region_ids) {
                Some((table_policy, v4, v6)) => {
                    spec.policy = table_policy;
                    spec.v4 = v4;
                    spec.v6 = v6;
                    if policy.depends_on_client() {
                        // Queries with EDNS Client Subnet are routed by the ECS address (and echo the
                        // scope): userspace, by the route.
                        routes.insert(
                            name.clone(),
                            Route {
                                policy: policy.clone(),
                                candidates,
                            },
                        );
                    }
                }
                None => {
                    spec.policy = TablePolicy::Userspace;
                    routes.insert(
                        name.clone(),
                        Route {
                            policy: policy.clone(),
                            candidates,
                        },
                    );
                }
            }
        }
        let table = AnswerTable::from_specs(&specs);
        let names = self
            .domains
            .iter()
            .zip(&sets)
            .map(|(d, set)| NameStatus {
                name: d.name.clone(),
                policy: d.all_down,
                all_down: set.all_down,
            })
            .collect();
        Published {
            table,
            routes,
            geo: self.geo_table.clone(),
            names,
        }
    }
}

/// How the answer table expresses a routing policy over these candidates (the policy, then the v4 and v6
/// records in answer order, each address once), or `None` if it cannot.
fn table_form(
    policy: &routing::Policy,
    cands: &[Candidate],
    region_ids: &HashMap<String, u8>,
) -> Option<(TablePolicy, Vec<Ipv4Addr>, Vec<Ipv6Addr>)> {
    let family = |v4: bool| -> Vec<Candidate> {
        cands
            .iter()
            .filter(|c| c.addr.is_ipv4() == v4)
            .cloned()
            .collect()
    };
    let (c4, c6) = (family(true), family(false));
    // Every candidate of a family in routing order, by asking for all of them.
    let order = |p: &routing::Policy, f: &[Candidate]| -> Vec<IpAddr> {
        let ctx = PickCtx {
            client: None,
            counter: 0,
            max_answers: f.len(),
        };
        routing::pick(p, f, &ctx).addrs
    };
    let (table_policy, a4, a6) = match policy {
        routing::Policy::RoundRobin => (
            TablePolicy::RoundRobin,
            c4.iter().map(|c| c.addr).collect(),
            c6.iter().map(|c| c.addr).collect(),
        ),
        routing::Policy::Failover => (
            TablePolicy::FixedOrder,
            order(policy, &c4),
            order(policy, &c6),
        ),
        routing::Policy::Latency { .. } => {
            let measured = |f: &[Candidate]| f.iter().any(|c| c.latency.is_some());
            match (
                measured(&c4) || c4.is_empty(),
                measured(&c6) || c6.is_empty(),
            ) {
                // No data at all: routing rotates.
                _ if !measured(cands) => (
                    TablePolicy::RoundRobin,
                    c4.iter().map(|c| c.addr).collect(),
                    c6.iter().map(|c| c.addr).collect(),
                ),
                (true, true) => (
                    TablePolicy::FixedOrder,
                    order(policy, &c4),
                    order(policy, &c6),
                ),
                // One family measured, the other rotating: one table policy cannot say both.
                _ => return None,
            }
        }
        routing::Policy::Weighted => {
            let mut weights = Weights::new();
            for c in cands {
                let w = weights.entry(c.addr).or_insert(0);
                *w = w.saturating_add(c.weight);
            }
            (
                TablePolicy::Weighted(weights),
                c4.iter().map(|c| c.addr).collect(),
                c6.iter().map(|c| c.addr).collect(),
            )
        }
        // By the client's source address, from the geolocation trie: each record with its region's id.
        routing::Policy::Geolocation(resolver) => {
            let id = |r: &str| region_ids.get(r).copied().unwrap_or(0);
            let mut regions = std::collections::BTreeMap::new();
            for c in cands {
                regions.entry(c.addr).or_insert_with(|| id(&c.region));
            }
            (
                TablePolicy::Geo {
                    regions,
                    default_region: resolver.default_region().map_or(0, id),
                },
                c4.iter().map(|c| c.addr).collect(),
                c6.iter().map(|c| c.addr).collect(),
            )
        }
    };
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for ip in a4.into_iter().chain(a6) {
        match ip {
            IpAddr::V4(a) if !v4.contains(&a) => v4.push(a),
            IpAddr::V6(a) if !v6.contains(&a) => v6.push(a),
            _ => {}
        }
    }
    Some((table_policy, v4, v6))
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

/// Per static backend: its thresholds, and the probe of its region's health check.
fn probe_plan(cfg: &Config) -> (HashMap<BackendKey, CheckPolicy>, Vec<Scheduled<BackendKey>>) {
    let mut checks = HashMap::new();
    let mut probes = Vec::new();
    if !cfg.overwatch.validation.enabled {
        return (checks, probes);
    }
    let smoothing = cfg.latency_config.smoothing_factor;
    for region in &cfg.regions {
        let hc: &HealthCheck = &region.health_check;
        for s in &region.servers {
            let key = BackendKey::new(&s.service, s.address, s.port);
            if checks.contains_key(&key) {
                continue;
            }
            checks.insert(key.clone(), CheckPolicy::from_health_check(hc, smoothing));
            probes.push(Scheduled {
                key,
                target: Target {
                    address: s.address,
                    port: s.port,
                    check: CheckSpec::from_config(hc, s.host.as_deref()),
                },
                interval: hc.interval,
            });
        }
    }
    (checks, probes)
}
