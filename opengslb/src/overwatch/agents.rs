//! The overwatch's book of agents: it authenticates each report by its service token, drops duplicates,
//! stale and replayed reports, and knows when an agent has gone silent for too long. The registry hears
//! only the result: reports to apply, agents that left, agents that are dead.
//!
//! Tokens: `overwatch.agent_tokens` maps a service to the tokens accepted for it. Without it, the first
//! token seen for a service is pinned (trust on first use) in the store in `data_dir`
//! ([`crate::store`]), as a SHA-256 digest, never the token itself, and every later report for that
//! service must carry the same token. Either way a report may name only configured services.
//!
//! An agent is known by its id *and* its token: the registry sees `<agent id>@<token digest prefix>`. A
//! key holder without an agent's token is therefore a different agent: it cannot make that agent leave,
//! lock it out with a far-future start time, or take its claims.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use sha2::{Digest as _, Sha256};
use tracing::{error, info, warn};

use crate::name::DnsName;
use crate::{
    config::Secret,
    gossip::wire::{LatencyReport, Report, Status, WireError},
    registry::{AgentReport, AgentSays, BackendKey},
    store::{Location, PinRecord, Store, StoreError, legacy},
};

pub use metrics::BookMetrics;

/// The trust-on-first-use file of earlier versions in `data_dir`, imported into the store once.
pub use legacy::PIN_FILE;

/// An agent silent this long (and not alive) is forgotten, so the book stays bounded under churn.
const FORGET_AFTER: Duration = Duration::from_secs(600);

/// How far a report's send time may be from the overwatch's clock. A report captured earlier and
/// replayed after the overwatch restarted (and forgot which datagrams it had seen) is refused.
pub const CLOCK_WINDOW: Duration = Duration::from_secs(30);

/// Most agents in the book; a new one beyond this is refused until silent ones are forgotten.
pub const MAX_AGENTS: usize = 10_000;

/// Why a report was not applied; each is counted under [`Refusal::as_str`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not a report this build can read.
    Malformed(WireError),
    /// The token is not accepted for one of the services.
    BadToken {
        /// The service whose token did not match; empty for a report naming none.
        service: String,
    },
    /// The service is not a configured domain, or `agent_tokens` lists no token for it.
    UnknownService {
        /// The service.
        service: String,
    },
    /// Sent too long ago, or in the future, by the overwatch's clock ([`CLOCK_WINDOW`]).
    Clock,
    /// Not newer than the last report applied from this agent (duplicate, reordered, or from an earlier
    /// life of the agent).
    Stale,
    /// The book is full ([`MAX_AGENTS`]).
    Capacity,
    /// Learned latency from an agent the book does not hold alive: its health reports authenticate it
    /// first.
    NotAlive,
}

impl Refusal {
    /// The metrics label.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::BadToken { .. } => "bad_token",
            Self::UnknownService { .. } => "unknown_service",
            Self::Clock => "clock",
            Self::Stale => "stale",
            Self::Capacity => "capacity",
            Self::NotAlive => "not_alive",
        }
    }
}

/// What an accepted report asks of the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// Apply these backend reports.
    Reports(Vec<AgentReport>),
    /// The agent (by its registry id) is shutting down: every backend it claims is out.
    Left(String),
}

/// Where an agent stands, as the book sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Life {
    /// Reporting.
    Alive,
    /// Said it was leaving.
    Left,
    /// Missed too many reports, or SWIM declared it down.
    Dead,
}

impl Life {
    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alive => "alive",
            Self::Left => "left",
            Self::Dead => "dead",
        }
    }
}

/// One agent in the book.
#[derive(Debug, Clone)]
pub struct AgentEntry {
    /// Its SWIM name (the agent id it reports).
    pub name: String,
    /// Where its last report came from: its gossip socket, also its SWIM address.
    pub from: SocketAddr,
    /// When its last report arrived.
    pub last_report: Instant,
    /// How long it may stay silent (its interval × its missed threshold).
    pub dead_after: Duration,
    /// The sealing epoch of the process that sent the last report (a new one on every start).
    epoch: u64,
    /// That process's start (ms since the epoch) and its last report number.
    started_ms: u64,
    seq: u64,
    /// Alive, left or dead.
    pub life: Life,
    /// Backends in its last report.
    pub backends: usize,
    /// Its last predictive signals.
    pub signals: crate::gossip::wire::Signals,
}

/// One report as it arrived.
#[derive(Debug, Clone, Copy)]
pub struct Arrival<'a> {
    /// The opened payload.
    pub payload: &'a [u8],
    /// The sealing epoch of the sender (authenticated by the seal).
    pub sender_epoch: u64,
    /// Where it came from.
    pub from: SocketAddr,
    /// When it arrived.
    pub now: Instant,
    /// The overwatch's wall clock then, in ms since the Unix epoch.
    pub wall_ms: u64,
}

/// A report applied, to acknowledge once the table that reflects it is published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckDue {
    /// Where the report came from: the agent's gossip socket.
    pub to: SocketAddr,
    /// The report's `started_ms` and `seq`, which the ack repeats.
    pub started_ms: u64,
    /// See `started_ms`.
    pub seq: u64,
    /// The backends applied (those of configured names).
    pub backends: Vec<BackendKey>,
}

/// The book. Pure logic: time comes in with each call.
#[derive(Debug)]
pub struct AgentBook {
    tokens: BTreeMap<DnsName, Vec<[u8; 32]>>,
    services: BTreeSet<DnsName>,
    pins: Pins,
    agents: HashMap<String, AgentEntry>,
    /// Reports by result (`applied`, `left`, or a refusal).
    pub counts: BTreeMap<&'static str, u64>,
    /// Learned-latency reports by result (`applied`, or a refusal).
    pub latency_counts: BTreeMap<&'static str, u64>,
    /// The last report applied, until taken.
    applied: Option<AckDue>,
}

impl AgentBook {
    /// A book for the configured `services` (domain names), accepting the configured tokens, or pinning
    /// on first use in `data_dir` when none are.
    pub fn new(
        agent_tokens: &BTreeMap<DnsName, Vec<Secret>>,
        store: impl Into<Location>,
        services: impl IntoIterator<Item = DnsName>,
    ) -> Self {
        let mut book = Self {
            tokens: BTreeMap::new(),
            services: BTreeSet::new(),
            pins: Pins::disabled(),
            agents: HashMap::new(),
            counts: BTreeMap::new(),
            latency_counts: BTreeMap::new(),
            applied: None,
        };
        book.reload(agent_tokens, store, services);
        book
    }

    /// Takes a reloaded config's tokens and services; the agents and their state stay, and so do pins
    /// already made (even those the file could not keep).
    pub fn reload(
        &mut self,
        agent_tokens: &BTreeMap<DnsName, Vec<Secret>>,
        store: impl Into<Location>,
        services: impl IntoIterator<Item = DnsName>,
    ) {
        let store = store.into();
        self.tokens = agent_tokens
            .iter()
            .map(|(service, list)| {
                let digests = list.iter().map(|t| digest(t.expose())).collect();
                (service.clone(), digests)
            })
            .collect();
        self.services = services.into_iter().collect();
        if !agent_tokens.is_empty() {
            self.pins = Pins::disabled();
        } else if self.pins.broken || self.pins.at.as_ref() != Some(&store) {
            self.pins = Pins::load(store);
        }
    }

    /// A pin another overwatch sharing the store made (`Some`) or removed (`None`).
    pub fn pin_stored(&mut self, service: &DnsName, digest: Option<[u8; 32]>) {
        if self.pins.at.is_none() {
            return;
        }
        match digest {
            Some(d) => self.pins.pinned.insert(service.to_string(), d),
            None => self.pins.pinned.remove(&service.to_string()),
        };
    }

    /// The report [`AgentBook::on_report`] last applied (not a leaving one), to acknowledge.
    pub fn take_applied(&mut self) -> Option<AckDue> {
        self.applied.take()
    }

    /// Reads, authenticates and orders one report payload.
    pub fn on_report(&mut self, arrival: Arrival<'_>) -> Result<Accepted, Refusal> {
        self.applied = None;
        let result = self.judge(arrival);
        let label = match &result {
            Ok(Accepted::Reports(_)) => "applied",
            Ok(Accepted::Left(_)) => "left",
            Err(r) => r.as_str(),
        };
        *self.counts.entry(label).or_default() += 1;
        result
    }

    /// Reads and authenticates one learned-latency payload. Its agent must be alive in the book under the
    /// same identity (its id and token, which its health reports authenticated), its service configured
    /// and its token good for it, and it must be fresh ([`CLOCK_WINDOW`]): a key holder without the
    /// service's token cannot steer clients.
    pub fn on_latency(&mut self, payload: &[u8], wall_ms: u64) -> Result<LatencyReport, Refusal> {
        let result = self.judge_latency(payload, wall_ms);
        let label = match &result {
            Ok(_) => "applied",
            Err(r) => r.as_str(),
        };
        *self.latency_counts.entry(label).or_default() += 1;
        result
    }

    fn judge_latency(&mut self, payload: &[u8], wall_ms: u64) -> Result<LatencyReport, Refusal> {
        let report = LatencyReport::decode(payload).map_err(Refusal::Malformed)?;
        let service = DnsName::new(&report.service)
            .ok()
            .filter(|s| self.services.contains(s))
            .ok_or_else(|| Refusal::UnknownService {
                service: report.service.clone(),
            })?;
        if report.sent_ms.abs_diff(wall_ms) > CLOCK_WINDOW.as_millis() as u64 {
            return Err(Refusal::Clock);
        }
        let token = digest(report.token.expose());
        let id = registry_id(&report.agent_id, &token);
        if self.agents.get(&id).is_none_or(|a| a.life != Life::Alive) {
            return Err(Refusal::NotAlive);
        }
        self.authenticate(&[service], token)?;
        Ok(report)
    }

    fn judge(&mut self, a: Arrival<'_>) -> Result<Accepted, Refusal> {
        let mut report = Report::decode(a.payload).map_err(Refusal::Malformed)?;
        let services = self.known_services(&mut report)?;
        // A process cannot report before it started: a far-future start (to outrank every later life)
        // is refused.
        if report.started_ms > report.sent_ms {
            return Err(Refusal::Clock);
        }
        let token = digest(report.token.expose());
        self.authenticate(&services, token)?;
        let id = registry_id(&report.agent_id, &token);
        let known = self.agents.get(&id);
        let same_process = known.is_some_and(|k| k.epoch == a.sender_epoch);
        // Freshness matters for a process not seen before (a replay after the overwatch restarted); a
        // known one is ordered by its numbers, so a clock step on either side cannot cut it off.
        if !same_process && report.sent_ms.abs_diff(a.wall_ms) > CLOCK_WINDOW.as_millis() as u64 {
            return Err(Refusal::Clock);
        }
        match known {
            // The same process: its numbering decides.
            Some(k) if same_process => {
                if report.seq <= k.seq {
                    return Err(Refusal::Stale);
                }
            }
            // Another process under this id: a restart. While the known one is alive, only a later
            // start replaces it; once it left or died, any start does (a clock stepped back must not
            // lock an agent out). Replays of an earlier life are stopped by the seal and the clock window.
            Some(k) => {
                if k.life == Life::Alive && report.started_ms <= k.started_ms {
                    return Err(Refusal::Stale);
                }
            }
            None => {
                if self.agents.len() >= MAX_AGENTS {
                    self.evict_one();
                }
                if self.agents.len() >= MAX_AGENTS {
                    return Err(Refusal::Capacity);
                }
            }
        }
        let life = if report.leaving {
            Life::Left
        } else {
            Life::Alive
        };
        let previous = self.agents.insert(
            id.clone(),
            AgentEntry {
                name: report.agent_id.clone(),
                from: a.from,
                last_report: a.now,
                dead_after: report.dead_after(),
                epoch: a.sender_epoch,
                started_ms: report.started_ms,
                seq: report.seq,
                life,
                backends: report.backends.len(),
                signals: report.signals,
            },
        );
        if previous.as_ref().is_none_or(|p| p.life != life) {
            info!(agent = %id, from = %a.from, state = life.as_str(), backends = report.backends.len(), "agent");
        }
        if report.leaving {
            return Ok(Accepted::Left(id));
        }
        let reports = report
            .backends
            .iter()
            // `known_services` kept only backends whose service is a configured name.
            .filter_map(|b| Some((DnsName::new(&b.service).ok()?, b)))
            .map(|(service, b)| AgentReport {
                agent_id: id.clone(),
                key: BackendKey::new(service, b.address, b.port),
                weight: b.weight,
                region: report.region.clone(),
                says: match b.status {
                    Status::Healthy => AgentSays::Healthy,
                    Status::Unhealthy => AgentSays::Unhealthy,
                    Status::Draining => AgentSays::Draining,
                },
                reason: b.reason.clone(),
            })
            .collect::<Vec<AgentReport>>();
        self.applied = Some(AckDue {
            to: a.from,
            started_ms: report.started_ms,
            seq: report.seq,
            backends: reports.iter().map(|r| r.key.clone()).collect(),
        });
        Ok(Accepted::Reports(reports))
    }

    /// Drops the report's backends of services that are not configured domains (a reload may have
    /// removed one the agent still reports: its other backends must not suffer), and returns the rest's
    /// services, deduplicated. A report left with none of the backends it named is refused.
    fn known_services(&self, report: &mut Report) -> Result<Vec<DnsName>, Refusal> {
        let named = report.backends.len();
        let mut unknown = None;
        report.backends.retain(|b| {
            let known = DnsName::new(&b.service).is_ok_and(|s| self.services.contains(&s));
            if !known {
                unknown.get_or_insert_with(|| b.service.clone());
            }
            known
        });
        if let Some(service) = unknown
            && report.backends.is_empty()
        {
            return Err(Refusal::UnknownService { service });
        }
        if report.backends.len() < named {
            tracing::debug!(agent = %report.agent_id, dropped = named - report.backends.len(), "backends of services that are not configured domains dropped");
        }
        let mut services: Vec<DnsName> = report
            .backends
            .iter()
            .filter_map(|b| DnsName::new(&b.service).ok())
            .collect();
        services.sort();
        services.dedup();
        Ok(services)
    }

    /// Makes room by forgetting the longest-silent agent that left or died. Alive ones are kept: a
    /// flood of new ids is refused instead, and ends within 100 s (the longest deadline an agent may
    /// announce), when its ids die and can be forgotten.
    fn evict_one(&mut self) {
        let victim = self
            .agents
            .iter()
            .filter(|(_, a)| a.life != Life::Alive)
            .min_by_key(|(_, a)| a.last_report)
            .map(|(id, _)| id.clone());
        if let Some(id) = victim {
            self.agents.remove(&id);
        }
    }

    fn authenticate(&mut self, services: &[DnsName], presented: [u8; 32]) -> Result<(), Refusal> {
        if self.tokens.is_empty() {
            return self.pins.check_or_pin(services, presented);
        }
        // A report naming no backend yet (before its first check) still needs a token that is good for
        // some service, so an agent without one never enters the book.
        if services.is_empty() && !self.tokens.values().flatten().any(|t| *t == presented) {
            return Err(Refusal::BadToken {
                service: String::new(),
            });
        }
        for service in services {
            match self.tokens.get(service) {
                None => {
                    return Err(Refusal::UnknownService {
                        service: service.to_string(),
                    });
                }
                Some(accepted) if !accepted.contains(&presented) => {
                    return Err(Refusal::BadToken {
                        service: service.to_string(),
                    });
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// SWIM declared the member `name` at `addr` down. Only an alive agent whose reports come from that
    /// very address is marked dead: a key holder joining under another agent's name, or the previous
    /// life of a restarted agent (another port), cannot kill it. Returns the registry ids marked dead.
    pub fn member_down(&mut self, name: &str, addr: SocketAddr) -> Vec<String> {
        self.agents
            .iter_mut()
            .filter(|(_, a)| a.life == Life::Alive && a.name == name && same_endpoint(a.from, addr))
            .map(|(id, a)| {
                a.life = Life::Dead;
                id.clone()
            })
            .collect()
    }

    /// Agents alive but silent past their deadline at `now`: marked dead and returned (registry ids).
    /// Long-gone agents are forgotten.
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        let mut dead = Vec::new();
        self.agents.retain(|id, a| {
            let silent = now.saturating_duration_since(a.last_report);
            if a.life == Life::Alive && silent >= a.dead_after {
                a.life = Life::Dead;
                dead.push(id.clone());
            }
            a.life == Life::Alive || silent < FORGET_AFTER
        });
        dead
    }

    /// When the next alive agent's deadline falls, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.agents
            .values()
            .filter(|a| a.life == Life::Alive)
            .map(|a| a.last_report + a.dead_after)
            .min()
    }

    /// Every agent known, by registry id.
    pub fn agents(&self) -> impl Iterator<Item = (&String, &AgentEntry)> {
        self.agents.iter()
    }
}

/// Whether two socket addresses are one endpoint, an IPv4 address and its IPv6-mapped form alike (an
/// overwatch bound to `[::]` sees IPv4 senders mapped).
fn same_endpoint(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && a.ip().to_canonical() == b.ip().to_canonical()
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Trust-on-first-use pins: service → token digest, kept in the store in `data_dir`.
#[derive(Debug)]
struct Pins {
    /// The store the pins are kept in; `None` when tokens are configured.
    at: Option<Location>,
    store: Option<Arc<Store>>,
    pinned: BTreeMap<String, [u8; 32]>,
    /// The store (or the pin file of earlier versions) exists but could not be read: pinning anew could
    /// hand a service to whoever reports first, so every trust-on-first-use report is refused until it
    /// is fixed.
    broken: bool,
    warned_unwritable: bool,
}

impl Pins {
    fn disabled() -> Self {
        Self {
            at: None,
            store: None,
            pinned: BTreeMap::new(),
            broken: false,
            warned_unwritable: false,
        }
    }

    /// Opens the store, imports the pin file of earlier versions once (embedded store), and reads the
    /// pins; a store or pin file that exists but cannot be read fails closed. An embedded store that
    /// cannot be created (an unwritable `data_dir`) leaves the pins in memory until restart, as an
    /// unwritable pin file did.
    fn load(at: Location) -> Self {
        let mut pins = Self {
            at: Some(at.clone()),
            ..Self::disabled()
        };
        let dir = match &at {
            Location::Embedded(dir) => Some(dir.clone()),
            Location::Etcd(_) => None,
        };
        let existed = dir
            .as_ref()
            .is_none_or(|d| std::fs::symlink_metadata(d.join(crate::store::FILE_NAME)).is_ok());
        let loaded = Store::at(&at).and_then(|store| {
            if let Some(dir) = &dir {
                legacy::import_pins(&store, dir)?;
            }
            let list = store.list::<crate::store::Pins>()?;
            Ok((store, list))
        });
        match (loaded, dir) {
            (Ok((store, list)), _) => {
                pins.pinned = list
                    .into_iter()
                    .map(|p| (p.service.to_string(), p.digest))
                    .collect();
                info!(
                    store = store.location(),
                    services = pins.pinned.len(),
                    "agent token pins loaded"
                );
                pins.store = Some(store);
            }
            (Err(e), Some(dir)) if !existed && !matches!(e, StoreError::Legacy { .. }) => {
                warn!(data_dir = %dir.display(), error = %e, "cannot create the store: token pins hold until restart only");
                pins.warned_unwritable = true;
                match legacy::read_pins(&dir) {
                    Ok(list) => {
                        pins.pinned = list
                            .into_iter()
                            .map(|p| (p.service.to_string(), p.digest))
                            .collect();
                    }
                    Err(e) => {
                        error!(error = %e, "cannot read the agent token pins: refusing trust-on-first-use reports until they are readable and the config reloaded (SIGHUP), or overwatch.agent_tokens is set");
                        pins.broken = true;
                    }
                }
            }
            (Err(e), _) => {
                error!(error = %e, "cannot read the agent token pins: refusing trust-on-first-use reports until they are readable and the config reloaded (SIGHUP), or overwatch.agent_tokens is set");
                pins.broken = true;
            }
        }
        pins
    }

    /// Checks every service first, then pins the new ones, so a report refused for one service pins
    /// nothing.
    fn check_or_pin(&mut self, services: &[DnsName], presented: [u8; 32]) -> Result<(), Refusal> {
        let names: Vec<String> = services.iter().map(DnsName::to_string).collect();
        if self.broken {
            return Err(Refusal::BadToken {
                service: names.first().cloned().unwrap_or_default(),
            });
        }
        // A report naming no backend yet: its token must be one already pinned, if any is.
        if names.is_empty()
            && !self.pinned.is_empty()
            && !self.pinned.values().any(|d| *d == presented)
        {
            return Err(Refusal::BadToken {
                service: String::new(),
            });
        }
        if let Some(s) = names
            .iter()
            .find(|s| self.pinned.get(*s).is_some_and(|d| *d != presented))
        {
            return Err(Refusal::BadToken { service: s.clone() });
        }
        let new: Vec<&DnsName> = services
            .iter()
            .filter(|s| !self.pinned.contains_key(&s.to_string()))
            .collect();
        for service in &new {
            self.pinned.insert(service.to_string(), presented);
            warn!(
                service = %service,
                "trust on first use: pinned the first service token seen for this service; set overwatch.agent_tokens to choose the accepted tokens"
            );
            self.save(service, presented);
        }
        Ok(())
    }

    /// Writes one pin durably, unless one is stored already: overwatches sharing a store may see a
    /// service's first report at once, and the first pin written is the one they all keep.
    fn save(&mut self, service: &DnsName, digest: [u8; 32]) {
        let Some(store) = &self.store else { return };
        let record = PinRecord {
            service: service.clone(),
            digest,
        };
        match store.put_new::<crate::store::Pins>(&record) {
            Ok(Some(_)) => {}
            Ok(None) => {
                // Not read back yet, the watch brings it.
                if let Ok(Some(first)) = store.get::<crate::store::Pins>(service) {
                    if first.digest != digest {
                        warn!(service = %service, "another overwatch pinned a different token for this service first: keeping that one");
                    }
                    self.pinned.insert(service.to_string(), first.digest);
                }
            }
            Err(e) if !self.warned_unwritable => {
                self.warned_unwritable = true;
                warn!(error = %e, "cannot write the token pins: they hold until restart only");
            }
            Err(_) => {}
        }
    }
}

/// An agent's id in the book and the registry: its name and 128 bits of its token's digest, so no key
/// holder can find another token that maps to the same id.
fn registry_id(agent_id: &str, token: &[u8; 32]) -> String {
    format!("{agent_id}@{}", &to_hex(token)[..32])
}

fn to_hex(d: &[u8; 32]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

mod metrics;
#[cfg(test)]
mod tests;
