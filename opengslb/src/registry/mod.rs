//! The backend registry: every backend the overwatch knows, what each source says about it, and the rule
//! that turns that into DNS answers.
//!
//! Backends come from three sources ([`Source`]): the static servers of the config's regions, agents'
//! reports, and the API. They are keyed by service, address and port ([`BackendKey`]); an agent reporting
//! the key of a static or API backend *claims* it rather than creating a second one. Each backend carries
//! its runtime state: the agent's claim, the overwatch's validation (with hysteresis), and an operator's
//! override. [`effective_status`] decides from these, first rule wins (`docs/control-plane.md`, "The registry and effective
//! status"), and [`Registry::answer_table`] renders the healthy backends of each domain, applying the
//! domain's all-down policy when none is healthy.
//!
//! Everything here is pure logic: no sockets, no clocks. Time comes in as a `now: Instant`, so tests are
//! deterministic. Every input returns whether it changed anything the answers or the status view depend
//! on, so the caller republishes only on change; staleness is the one change that comes from time alone,
//! and [`Registry::next_deadline`] says when the next one is due.
//!
//! Where the original's registry (reference §4.1) is wrong, the rules of `docs/control-plane.md` are followed: a passing
//! validation never overrides an agent's drain; a SIGHUP keeps agent and API backends and all runtime state;
//! validation has thresholds; `last_healthy` is implemented.

mod backend;
mod metrics;
#[cfg(test)]
mod tests;

use std::{
    collections::{BTreeMap, HashMap, HashSet, btree_map::Entry},
    net::IpAddr,
    time::{Duration, Instant},
};

use tracing::debug;

pub use backend::{
    AgentSays, Backend, BackendKey, Claim, Override, Reason, Source, Status, effective_status,
};
pub use metrics::StatusMetrics;

use crate::{
    config::{AllDownPolicy, Config, DomainRecords, RoutingAlgorithm, StaleConfig},
    health::{CheckOutcome, CheckPolicy, ValidationState},
    name::DnsName,
    table::AllDown,
};

/// Why an operator's request on the registry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// No backend has this key.
    #[error("no backend {0}")]
    UnknownBackend(BackendKey),
    /// The API tried to register a key another source already declared.
    #[error("backend {key} already exists as a {existing} backend")]
    AlreadyExists {
        /// The key.
        key: BackendKey,
        /// Who declared it.
        existing: Source,
    },
    /// The API tried to remove a backend it did not register (static ones go with the config; agent ones
    /// expire).
    #[error(
        "backend {key} is a {existing} backend, not an API one: only API backends can be removed"
    )]
    NotApi {
        /// The key.
        key: BackendKey,
        /// Who declared it.
        existing: Source,
    },
}

/// One report of an agent on one backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentReport {
    /// The reporting agent's identity.
    pub agent_id: String,
    /// The backend: the service and the address clients reach (the agent's advertised address).
    pub key: BackendKey,
    /// The weight the agent's config gives it.
    pub weight: u32,
    /// The agent's region, if it has one.
    pub region: Option<String>,
    /// What the agent says.
    pub says: AgentSays,
    /// Why, as the agent words it; may be empty.
    pub reason: String,
}

/// What the answer table needs of one domain besides its backends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainInfo {
    /// The name, which is also the service its backends serve.
    pub name: DnsName,
    /// TTL of its answers, seconds.
    pub ttl: u32,
    /// How many records one answer carries.
    pub max_answers: u8,
    /// What to answer when every backend is out.
    pub all_down: AllDown,
    /// How long a backend that comes back ramps up to its full share; `None`: at once.
    pub slow_start: Option<Duration>,
}

impl DomainInfo {
    /// The settings of one domain of `Config::domain_records`.
    pub fn from_records(d: &DomainRecords) -> Self {
        Self {
            name: d.name.clone(),
            ttl: d.ttl,
            max_answers: d.max_answers,
            all_down: match d.all_down {
                AllDownPolicy::All => AllDown::All,
                AllDownPolicy::LastHealthy => AllDown::LastHealthy,
                AllDownPolicy::Empty => AllDown::Empty,
            },
            slow_start: d.slow_start,
        }
    }

    /// Every domain of a config, in config order.
    pub fn from_config(cfg: &Config) -> Vec<Self> {
        cfg.domain_records()
            .iter()
            .map(Self::from_records)
            .collect()
    }
}

/// The backends one domain answers with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AnswerSet {
    /// In answer order: static backends in config order, then the others by key.
    pub keys: Vec<BackendKey>,
    /// No backend of the domain is healthy (or it has none), so `keys` is what the all-down policy chose.
    pub all_down: bool,
}

/// Whether a name answers by its all-down policy, as the metrics show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameStatus {
    /// The name.
    pub name: DnsName,
    /// Its all-down policy.
    pub policy: AllDown,
    /// Every backend of the name is out (or it has none), so DNS answers what `policy` chose.
    pub all_down: bool,
    /// The routing algorithm its table entries were built by (`geolocation` without a resolver falls
    /// back to `round-robin`, and this says so).
    pub algorithm: RoutingAlgorithm,
}

/// One backend as the API and metrics show it.
#[derive(Clone, Debug, PartialEq)]
pub struct BackendStatus {
    /// What identifies it.
    pub key: BackendKey,
    /// Who declared it.
    pub source: Source,
    /// Whether DNS answers with it.
    pub status: Status,
    /// Why.
    pub reason: Reason,
    /// Its weight.
    pub weight: u32,
    /// Its region; empty when unknown.
    pub region: String,
    /// The agent that claims it.
    pub agent_id: Option<String>,
    /// What that agent last said, and why.
    pub agent_says: Option<(AgentSays, String)>,
    /// Time since the agent's last report.
    pub last_report_age: Option<Duration>,
    /// The validation verdict.
    pub validation: ValidationState,
    /// The smoothed validation latency.
    pub latency: Option<Duration>,
    /// The operator's override, if any.
    pub override_: Option<Override>,
}

/// What of a backend the answers and the status view show, less what moves with every report or probe
/// (report times, counters, latency): the changes worth a republish.
#[derive(PartialEq)]
struct Visible {
    weight: u32,
    region: String,
    source: Source,
    static_order: Option<usize>,
    claim: Option<(String, AgentSays, String, bool, bool)>,
    override_: Option<Override>,
    validation: ValidationState,
}

fn visible(b: &Backend) -> Visible {
    Visible {
        weight: b.weight,
        region: b.region.clone(),
        source: b.source,
        static_order: b.static_order,
        claim: b
            .claim
            .as_ref()
            .map(|c| (c.agent_id.clone(), c.said, c.reason.clone(), c.left, c.dead)),
        override_: b.override_.clone(),
        validation: b.validation.state,
    }
}

/// The backends, their runtime state, and the last healthy set of each name.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    backends: BTreeMap<BackendKey, Backend>,
    stale: StaleConfig,
    /// Per name, the last non-empty healthy set an answer was built from, for `last_healthy`.
    last_healthy: HashMap<DnsName, Vec<BackendKey>>,
    /// Overrides restored for backends not known yet (an agent's, before its first report after a
    /// restart): each is attached when its backend appears.
    parked: HashMap<BackendKey, Override>,
}

impl Registry {
    /// An empty registry with these staleness settings.
    pub fn new(stale: StaleConfig) -> Self {
        Self {
            backends: BTreeMap::new(),
            stale,
            last_healthy: HashMap::new(),
            parked: HashMap::new(),
        }
    }

    /// The registry of a config: its static servers and its `overwatch.stale` settings.
    pub fn from_config(cfg: &Config) -> Self {
        let mut registry = Self::new(cfg.overwatch.stale.clone());
        registry.reload(cfg);
        registry
    }

    /// Applies a new config (SIGHUP): its static servers replace the old ones, and everything else stays.
    ///
    /// - A key that stays static keeps its claim, validation and override; its weight, region and order
    ///   are the new config's.
    /// - A static key the config no longer lists is removed, unless an agent claims it: then it becomes an
    ///   agent backend (with the agent's weight and region), since the agent still reports it and it
    ///   will expire like any agent backend once the agent goes silent.
    /// - A new static key that an agent or the API had already registered becomes static and keeps its
    ///   runtime state.
    /// - Agent and API backends stay (the original dropped them from DNS until their next heartbeat).
    pub fn reload(&mut self, cfg: &Config) -> bool {
        let before: BTreeMap<BackendKey, Visible> = self
            .backends
            .iter()
            .map(|(k, b)| (k.clone(), visible(b)))
            .collect();
        let servers = static_servers(cfg);
        let wanted: HashSet<&BackendKey> = servers.iter().map(|(k, _, _)| k).collect();
        self.backends.retain(|key, b| {
            if b.source != Source::Static || wanted.contains(key) {
                return true;
            }
            let Some(claim) = &b.claim else {
                debug!(backend = %key, "static backend removed by the new config");
                return false;
            };
            debug!(backend = %key, agent = %claim.agent_id, "no longer in the config, kept as the agent's");
            b.source = Source::Agent;
            b.static_order = None;
            b.weight = claim.weight;
            b.region = claim.region.clone().unwrap_or_default();
            true
        });
        for (order, (key, weight, region)) in servers.into_iter().enumerate() {
            let b = match self.backends.entry(key) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => {
                    let key = e.key().clone();
                    e.insert(Backend::new(key, weight, region.clone(), Source::Static))
                }
            };
            b.source = Source::Static;
            b.static_order = Some(order);
            b.weight = weight;
            b.region = region;
        }
        let stale_changed = self.stale != cfg.overwatch.stale;
        self.stale = cfg.overwatch.stale.clone();
        let after: BTreeMap<BackendKey, Visible> = self
            .backends
            .iter()
            .map(|(k, b)| (k.clone(), visible(b)))
            .collect();
        stale_changed || before != after
    }

    /// The staleness settings in force.
    pub fn stale(&self) -> &StaleConfig {
        &self.stale
    }

    /// The backend with this key.
    pub fn get(&self, key: &BackendKey) -> Option<&Backend> {
        self.backends.get(&canonical(key))
    }

    /// Every backend, by key.
    pub fn iter(&self) -> impl Iterator<Item = &Backend> {
        self.backends.values()
    }

    /// How many backends there are.
    pub fn len(&self) -> usize {
        self.backends.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.backends.is_empty()
    }

    /// The backends of a service in answer order: static ones in config order, then the others by key.
    pub fn backends_of(&self, service: &DnsName) -> Vec<&Backend> {
        ordered(&self.backends, service)
    }

    /// A validation probe's result. Hysteresis: `success_threshold` passes in a row make the backend
    /// passing, `failure_threshold` failures in a row (or one definitive failure) make it failing;
    /// anything short of that keeps the state it had. The prober re-probes at once after a first failure,
    /// so a dead backend still goes out within about one interval. Passing probes feed the latency
    /// average. A result for a key no longer registered (removed by a reload while its probe ran) is
    /// dropped. Returns whether the verdict changed (latency alone is no change: it moves with every
    /// probe).
    pub fn apply_validation(
        &mut self,
        key: &BackendKey,
        outcome: CheckOutcome,
        policy: CheckPolicy,
    ) -> bool {
        let Some(b) = self.backends.get_mut(&canonical(key)) else {
            return false;
        };
        b.validation.record(outcome, policy)
    }

    /// An agent's report on a backend, received at `now`. It claims the backend at that key (a static or
    /// API backend keeps its configured weight and region: an agent's default weight must not silently
    /// replace one the operator wrote), or creates an agent backend with the report's weight and region.
    /// A claim held by another agent passes to this one only once that agent left, died or went stale
    /// (two live agents on one backend would make it flap); a report from an agent marked left or dead
    /// means it is back. Returns whether anything visible changed, including a stale backend coming back.
    pub fn apply_agent_report(&mut self, report: AgentReport, now: Instant) -> bool {
        let key = canonical(&report.key);
        // Two live agents on one backend would make it flap with every report: the first keeps it.
        if let Some(held) = self.backends.get(&key).and_then(|b| b.claim.as_ref())
            && held.agent_id != report.agent_id
            && !held.left
            && !held.dead
            && !backend::is_stale(held, now, &self.stale)
        {
            debug!(backend = %key, holder = %held.agent_id, agent = %report.agent_id, "backend already claimed by a live agent: report ignored");
            return false;
        }
        let before = self.backends.get(&key).map(|b| {
            let was_stale = b
                .claim
                .as_ref()
                .is_some_and(|c| backend::is_stale(c, now, &self.stale));
            (visible(b), was_stale)
        });
        let claim = Claim {
            agent_id: report.agent_id,
            last_report: now,
            said: report.says,
            reason: report.reason,
            weight: report.weight,
            region: report.region,
            left: false,
            dead: false,
        };
        let b = match self.backends.entry(key) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                let key = e.key().clone();
                debug!(backend = %key, agent = %claim.agent_id, "new agent backend");
                let region = claim.region.clone().unwrap_or_default();
                e.insert(parked_onto(
                    &mut self.parked,
                    Backend::new(key, claim.weight, region, Source::Agent),
                ))
            }
        };
        if b.source == Source::Agent {
            b.weight = claim.weight;
            if let Some(region) = &claim.region {
                b.region.clone_from(region);
            }
        }
        b.claim = Some(claim);
        let after = visible(b);
        before.is_none_or(|(v, was_stale)| was_stale || v != after)
    }

    /// The agent left the cluster gracefully: every backend it claims is out at once.
    pub fn agent_left(&mut self, agent_id: &str) -> bool {
        self.mark_claims(agent_id, |c| &mut c.left)
    }

    /// The agent is dead (failure detector, or K missed report intervals): every backend it claims is out.
    pub fn agent_dead(&mut self, agent_id: &str) -> bool {
        self.mark_claims(agent_id, |c| &mut c.dead)
    }

    fn mark_claims(&mut self, agent_id: &str, flag: impl Fn(&mut Claim) -> &mut bool) -> bool {
        let mut changed = false;
        for claim in self.backends.values_mut().filter_map(|b| b.claim.as_mut()) {
            if claim.agent_id == agent_id {
                let f = flag(claim);
                changed |= !*f;
                *f = true;
            }
        }
        changed
    }

    /// Sets an operator's override on a backend. Returns whether it differs from the one it replaces
    /// (the time it was set aside).
    pub fn set_override(&mut self, key: &BackendKey, o: Override) -> Result<bool, RegistryError> {
        let b = self.get_mut(key)?;
        let same = b.override_.as_ref().is_some_and(|old| {
            (old.healthy, &old.reason, &old.by) == (o.healthy, &o.reason, &o.by)
        });
        b.override_ = Some(o);
        Ok(!same)
    }

    /// An override kept from before a restart: set on its backend now, or when the backend appears.
    /// Returns whether a known backend changed.
    pub fn restore_override(&mut self, key: &BackendKey, o: Override) -> bool {
        match self.set_override(key, o.clone()) {
            Ok(changed) => changed,
            Err(_) => {
                self.parked.insert(canonical(key), o);
                false
            }
        }
    }

    /// Forgets the override of `key`, set or parked: another overwatch sharing the store cleared it.
    /// Returns whether a known backend changed.
    pub fn forget_override(&mut self, key: &BackendKey) -> bool {
        let key = canonical(key);
        self.parked.remove(&key);
        self.backends
            .get_mut(&key)
            .is_some_and(|b| b.override_.take().is_some())
    }

    /// The keys of every override, set or parked.
    pub fn override_keys(&self) -> Vec<BackendKey> {
        self.backends
            .values()
            .filter(|b| b.override_.is_some())
            .map(|b| b.key.clone())
            .chain(self.parked.keys().cloned())
            .collect()
    }

    /// Clears a backend's override. Returns whether it had one.
    pub fn clear_override(&mut self, key: &BackendKey) -> Result<bool, RegistryError> {
        Ok(self.get_mut(key)?.override_.take().is_some())
    }

    /// Registers a backend through the API, or updates the weight and region of one it registered.
    pub fn add_api_backend(
        &mut self,
        key: &BackendKey,
        weight: u32,
        region: &str,
    ) -> Result<bool, RegistryError> {
        let key = canonical(key);
        match self.backends.entry(key) {
            Entry::Vacant(e) => {
                let key = e.key().clone();
                e.insert(parked_onto(
                    &mut self.parked,
                    Backend::new(key, weight, region.to_owned(), Source::Api),
                ));
                Ok(true)
            }
            Entry::Occupied(e) => {
                let b = e.into_mut();
                if b.source != Source::Api {
                    return Err(RegistryError::AlreadyExists {
                        key: b.key.clone(),
                        existing: b.source,
                    });
                }
                let changed = b.weight != weight || b.region != region;
                b.weight = weight;
                region.clone_into(&mut b.region);
                Ok(changed)
            }
        }
    }

    /// Removes a backend the API registered. One an agent still claims stays, as the agent's (it expires
    /// when the agent goes silent), since the agent keeps reporting it.
    pub fn remove_api_backend(&mut self, key: &BackendKey) -> Result<bool, RegistryError> {
        let key = canonical(key);
        let b = self.get_mut(&key)?;
        if b.source != Source::Api {
            return Err(RegistryError::NotApi {
                key,
                existing: b.source,
            });
        }
        if let Some(claim) = &b.claim {
            b.weight = claim.weight;
            b.region = claim.region.clone().unwrap_or_default();
            b.source = Source::Agent;
        } else {
            self.backends.remove(&key);
        }
        Ok(true)
    }

    /// Removes the agent backends whose agent has been silent for `stale.remove_after`. Static and API
    /// backends stay even when their claiming agent is long gone: they keep the claim, and so stay out
    /// (no report = unhealthy) rather than quietly returning on validation alone.
    pub fn expire(&mut self, now: Instant) -> bool {
        let remove_after = self.stale.remove_after;
        let before = self.backends.len();
        self.backends.retain(|key, b| {
            let silent = b
                .claim
                .as_ref()
                .is_none_or(|c| now.saturating_duration_since(c.last_report) >= remove_after);
            let expired = b.source == Source::Agent && silent;
            if expired {
                debug!(backend = %key, "agent backend removed after {remove_after:?} of silence");
            }
            !expired
        });
        self.backends.len() != before
    }

    /// The next instant after `now` at which time alone changes something: a claim turning stale, or an
    /// agent backend due for [`expire`](Self::expire). The caller re-evaluates then (a timer), so that
    /// staleness reaches DNS without waiting for some other input.
    pub fn next_deadline(&self, now: Instant) -> Option<Instant> {
        self.backends
            .values()
            .filter_map(|b| b.claim.as_ref().map(|c| (b.source, c)))
            .flat_map(|(source, c)| {
                let stale = c.last_report.checked_add(self.stale.threshold);
                let expiry = (source == Source::Agent)
                    .then(|| c.last_report.checked_add(self.stale.remove_after))
                    .flatten();
                [stale, expiry]
            })
            .flatten()
            .filter(|&t| t > now)
            .min()
    }

    /// The backends one domain answers with at `now`: its healthy backends in answer order; if none is
    /// healthy, what its all-down policy says:
    ///
    /// - `All`: every backend of the service, in answer order;
    /// - `LastHealthy`: the last non-empty healthy set [remembered](Self::remember_healthy) for this
    ///   name, less the backends removed since; if nothing of it is left (or the name was never healthy
    ///   since start), every backend, as `All`: an old answer is better than none only while it exists;
    /// - `Empty`: nothing.
    pub fn answer_set(&self, domain: &DomainInfo, now: Instant) -> AnswerSet {
        let name = &domain.name;
        let all = ordered(&self.backends, name);
        let healthy: Vec<BackendKey> = all
            .iter()
            .filter(|b| effective_status(b, now, &self.stale).0 == Status::Healthy)
            .map(|b| b.key.clone())
            .collect();
        if !healthy.is_empty() {
            return AnswerSet {
                keys: healthy,
                all_down: false,
            };
        }
        let every = || all.iter().map(|b| b.key.clone()).collect::<Vec<_>>();
        let keys = match domain.all_down {
            AllDown::All => every(),
            AllDown::Empty => Vec::new(),
            AllDown::LastHealthy => {
                let remembered: Vec<BackendKey> = self
                    .last_healthy
                    .get(name)
                    .into_iter()
                    .flatten()
                    .filter(|k| self.backends.contains_key(k))
                    .cloned()
                    .collect();
                if remembered.is_empty() {
                    every()
                } else {
                    remembered
                }
            }
        };
        AnswerSet {
            keys,
            all_down: true,
        }
    }

    /// The [`answer_set`](Self::answer_set) of each domain at `now`, in the order given.
    pub fn answer_sets(&self, domains: &[DomainInfo], now: Instant) -> Vec<AnswerSet> {
        domains.iter().map(|d| self.answer_set(d, now)).collect()
    }

    /// Remembers each domain's set if it is healthy, for `LastHealthy`: whatever the domain's policy, so
    /// a reload that switches to it has a set at hand. Names no longer among `domains` are forgotten.
    pub fn remember_healthy(&mut self, domains: &[DomainInfo], sets: &[AnswerSet]) {
        let names: HashSet<&DnsName> = domains.iter().map(|d| &d.name).collect();
        self.last_healthy.retain(|name, _| names.contains(name));
        for (d, set) in domains.iter().zip(sets) {
            if !set.all_down && !set.keys.is_empty() {
                self.last_healthy.insert(d.name.clone(), set.keys.clone());
            }
        }
    }

    /// Every backend with its status and what it was decided from, by key.
    pub fn status_view(&self, now: Instant) -> Vec<BackendStatus> {
        self.backends
            .values()
            .map(|b| {
                let (status, reason) = effective_status(b, now, &self.stale);
                BackendStatus {
                    key: b.key.clone(),
                    source: b.source,
                    status,
                    reason,
                    weight: b.weight,
                    region: b.region.clone(),
                    agent_id: b.claim.as_ref().map(|c| c.agent_id.clone()),
                    agent_says: b.claim.as_ref().map(|c| (c.said, c.reason.clone())),
                    last_report_age: b
                        .claim
                        .as_ref()
                        .map(|c| now.saturating_duration_since(c.last_report)),
                    validation: b.validation.state,
                    latency: b.validation.ewma_latency,
                    override_: b.override_.clone(),
                }
            })
            .collect()
    }

    fn get_mut(&mut self, key: &BackendKey) -> Result<&mut Backend, RegistryError> {
        let key = canonical(key);
        match self.backends.get_mut(&key) {
            Some(b) => Ok(b),
            None => Err(RegistryError::UnknownBackend(key)),
        }
    }
}

/// `b` with the override parked for it, if any.
fn parked_onto(parked: &mut HashMap<BackendKey, Override>, mut b: Backend) -> Backend {
    if let Some(o) = parked.remove(&b.key) {
        b.override_ = Some(o);
    }
    b
}

/// The key in canonical form, whatever the caller built it from.
fn canonical(key: &BackendKey) -> BackendKey {
    BackendKey::new(key.service.clone(), key.address, key.port)
}

/// The backends of `service` in answer order: static ones by config order, then the others by
/// key (the map's order), so answers and failover order do not depend on arrival order.
fn ordered<'a>(backends: &'a BTreeMap<BackendKey, Backend>, service: &DnsName) -> Vec<&'a Backend> {
    // Keys sort by service first, so a service's backends are one range, starting at its lowest address.
    let start = BackendKey {
        service: service.clone(),
        address: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        port: 0,
    };
    let mut out: Vec<&Backend> = backends
        .range(start..)
        .take_while(|(k, _)| k.service == *service)
        .map(|(_, b)| b)
        .collect();
    // A stable sort keeps the key order among the non-static ones.
    out.sort_by_key(|b| (b.static_order.is_none(), b.static_order));
    out
}

/// The static servers a config declares, in config order (each domain's regions in the order it lists
/// them, each region's servers in order), as `Config::domain_records` takes them: a server counts only
/// for a domain that lists its region, since no other would ever answer with it. A key declared twice
/// keeps its first place.
fn static_servers(cfg: &Config) -> Vec<(BackendKey, u32, String)> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for domain in &cfg.domains {
        let regions = domain
            .regions
            .iter()
            .filter_map(|name| cfg.regions.iter().find(|r| &r.name == name));
        for region in regions {
            for server in region.servers.iter().filter(|s| s.service == domain.name) {
                let key = BackendKey::new(server.service.clone(), server.address, server.port);
                if seen.insert(key.clone()) {
                    out.push((key, server.weight, region.name.clone()));
                }
            }
        }
    }
    out
}
