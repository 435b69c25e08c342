//! The overwatch's book of agents: it authenticates each report by its service token, drops duplicates
//! and stale reports, and knows when an agent has gone silent for too long. The registry hears only the
//! result: reports to apply, agents that left, agents that are dead.
//!
//! Tokens: `overwatch.agent_tokens` maps a service to the tokens accepted for it; a report naming a
//! service not listed there is refused. Without `agent_tokens`, the first token seen for a service is
//! pinned (trust on first use) in `<data_dir>/agent-tokens.pinned`, as a SHA-256 digest, never the token
//! itself, and every later report for that service must carry the same token.

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use sha2::{Digest as _, Sha256};
use tracing::{info, warn};

use crate::{
    config::Secret,
    gossip::wire::{Report, WireError},
    registry::{AgentReport, BackendKey},
};

/// Name of the trust-on-first-use file in `data_dir`.
pub const PIN_FILE: &str = "agent-tokens.pinned";

/// An agent silent this long (and not alive) is forgotten, so the book stays bounded under churn.
const FORGET_AFTER: Duration = Duration::from_secs(600);

/// Why a report was not applied; each is counted under [`Refusal::as_str`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not a report this build can read.
    Malformed(WireError),
    /// The token is not accepted for one of the services.
    BadToken {
        /// The service whose token did not match.
        service: String,
    },
    /// `agent_tokens` is set and lists no token for the service.
    UnknownService {
        /// The service.
        service: String,
    },
    /// Not newer than the last report applied from this agent (duplicate, reordered, or replayed from an
    /// earlier life of the agent).
    Stale,
}

impl Refusal {
    /// The metrics label.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::BadToken { .. } => "bad_token",
            Self::UnknownService { .. } => "unknown_service",
            Self::Stale => "stale",
        }
    }
}

/// What an accepted report asks of the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// Apply these backend reports.
    Reports(Vec<AgentReport>),
    /// The agent is shutting down: every backend it claims is out.
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
    /// Where its last report came from.
    pub from: SocketAddr,
    /// When its last report arrived.
    pub last_report: Instant,
    /// How long it may stay silent (its interval × its missed threshold).
    pub dead_after: Duration,
    /// Its process start (ms since the epoch) and report number: reports must rise in this order.
    order: (u64, u64),
    /// Alive, left or dead.
    pub life: Life,
    /// Backends in its last report.
    pub backends: usize,
    /// Its last predictive signals.
    pub signals: crate::gossip::wire::Signals,
}

/// The book. Pure logic: time comes in as `now`.
#[derive(Debug)]
pub struct AgentBook {
    tokens: BTreeMap<String, Vec<[u8; 32]>>,
    pins: Pins,
    agents: HashMap<String, AgentEntry>,
    /// Reports by result (`applied`, `left`, or a refusal).
    pub counts: BTreeMap<&'static str, u64>,
}

impl AgentBook {
    /// A book accepting the configured tokens, or pinning on first use in `data_dir` when none are.
    pub fn new(agent_tokens: &BTreeMap<String, Vec<Secret>>, data_dir: &Path) -> Self {
        let tokens = agent_tokens
            .iter()
            .map(|(service, list)| {
                let digests = list.iter().map(|t| digest(t.expose())).collect();
                (crate::table::normalize(service), digests)
            })
            .collect();
        let pins = if agent_tokens.is_empty() {
            Pins::load(data_dir.join(PIN_FILE))
        } else {
            Pins::disabled()
        };
        Self {
            tokens,
            pins,
            agents: HashMap::new(),
            counts: BTreeMap::new(),
        }
    }

    /// Takes the tokens of a reloaded config; the agents and their state stay.
    pub fn reload_tokens(&mut self, agent_tokens: &BTreeMap<String, Vec<Secret>>, data_dir: &Path) {
        let fresh = Self::new(agent_tokens, data_dir);
        self.tokens = fresh.tokens;
        self.pins = fresh.pins;
    }

    /// Reads, authenticates and orders one report payload that arrived at `now` from `from`.
    pub fn on_report(
        &mut self,
        payload: &[u8],
        from: SocketAddr,
        now: Instant,
    ) -> Result<Accepted, Refusal> {
        let result = self.judge(payload, from, now);
        let label = match &result {
            Ok(Accepted::Reports(_)) => "applied",
            Ok(Accepted::Left(_)) => "left",
            Err(r) => r.as_str(),
        };
        *self.counts.entry(label).or_default() += 1;
        result
    }

    fn judge(
        &mut self,
        payload: &[u8],
        from: SocketAddr,
        now: Instant,
    ) -> Result<Accepted, Refusal> {
        let report = Report::decode(payload).map_err(Refusal::Malformed)?;
        self.authenticate(&report)?;
        let order = (report.started_ms, report.seq);
        if let Some(known) = self.agents.get(&report.agent_id)
            && order <= known.order
        {
            return Err(Refusal::Stale);
        }
        let life = if report.leaving {
            Life::Left
        } else {
            Life::Alive
        };
        let previous = self.agents.insert(
            report.agent_id.clone(),
            AgentEntry {
                from,
                last_report: now,
                dead_after: report.dead_after(),
                order,
                life,
                backends: report.backends.len(),
                signals: report.signals,
            },
        );
        if previous.as_ref().is_none_or(|p| p.life != life) {
            info!(agent = %report.agent_id, %from, state = life.as_str(), backends = report.backends.len(), "agent");
        }
        if report.leaving {
            return Ok(Accepted::Left(report.agent_id));
        }
        let reports = report
            .backends
            .iter()
            .map(|b| AgentReport {
                agent_id: report.agent_id.clone(),
                key: BackendKey::new(&b.service, b.address, b.port),
                weight: b.weight,
                region: report.region.clone(),
                says: b.status,
                reason: b.reason.clone(),
            })
            .collect();
        Ok(Accepted::Reports(reports))
    }

    fn authenticate(&mut self, report: &Report) -> Result<(), Refusal> {
        let presented = digest(&report.token);
        // A report naming no backend yet (before its first check) still needs a token that is good for
        // some service, so an agent without one never enters the book.
        if report.backends.is_empty()
            && !self.tokens.is_empty()
            && !self.tokens.values().flatten().any(|t| *t == presented)
        {
            return Err(Refusal::BadToken {
                service: String::new(),
            });
        }
        let mut services: Vec<String> = report
            .backends
            .iter()
            .map(|b| crate::table::normalize(&b.service))
            .collect();
        services.sort();
        services.dedup();
        for service in services {
            if self.tokens.is_empty() {
                if !self.pins.check_or_pin(&service, presented) {
                    return Err(Refusal::BadToken { service });
                }
                continue;
            }
            match self.tokens.get(&service) {
                None => return Err(Refusal::UnknownService { service }),
                Some(accepted) if !accepted.contains(&presented) => {
                    return Err(Refusal::BadToken { service });
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// SWIM declared the member named `agent_id` down. Returns whether it was alive.
    pub fn member_down(&mut self, agent_id: &str) -> bool {
        match self.agents.get_mut(agent_id) {
            Some(a) if a.life == Life::Alive => {
                a.life = Life::Dead;
                true
            }
            _ => false,
        }
    }

    /// Agents alive but silent past their deadline at `now`: marked dead and returned. Long-gone agents
    /// are forgotten.
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

    /// Every agent known, by id.
    pub fn agents(&self) -> impl Iterator<Item = (&String, &AgentEntry)> {
        self.agents.iter()
    }

    /// How many agents are in each state.
    pub fn by_life(&self) -> [(Life, usize); 3] {
        let count = |l| self.agents.values().filter(|a| a.life == l).count();
        [
            (Life::Alive, count(Life::Alive)),
            (Life::Left, count(Life::Left)),
            (Life::Dead, count(Life::Dead)),
        ]
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Trust-on-first-use pins: service → token digest, kept in a file when one can be written.
#[derive(Debug)]
struct Pins {
    path: Option<PathBuf>,
    pinned: BTreeMap<String, [u8; 32]>,
    warned_unwritable: bool,
}

impl Pins {
    fn disabled() -> Self {
        Self {
            path: None,
            pinned: BTreeMap::new(),
            warned_unwritable: false,
        }
    }

    /// Reads the pin file; a missing one is empty, a malformed line is skipped with a warning.
    fn load(path: PathBuf) -> Self {
        let mut pinned = BTreeMap::new();
        if let Ok(text) = std::fs::read_to_string(&path) {
            for (n, line) in text.lines().enumerate() {
                let parsed = line
                    .split_once(' ')
                    .and_then(|(s, hex)| Some((s.to_owned(), from_hex(hex)?)));
                match parsed {
                    Some((service, d)) => {
                        pinned.insert(service, d);
                    }
                    None if line.trim().is_empty() => {}
                    None => {
                        warn!(file = %path.display(), line = n + 1, "malformed pin line skipped")
                    }
                }
            }
            info!(file = %path.display(), services = pinned.len(), "agent token pins loaded");
        }
        Self {
            path: Some(path),
            pinned,
            warned_unwritable: false,
        }
    }

    fn check_or_pin(&mut self, service: &str, presented: [u8; 32]) -> bool {
        if let Some(pinned) = self.pinned.get(service) {
            return *pinned == presented;
        }
        self.pinned.insert(service.to_owned(), presented);
        warn!(
            service,
            "trust on first use: pinned the first service token seen for this service; set overwatch.agent_tokens to choose the accepted tokens"
        );
        self.save();
        true
    }

    fn save(&mut self) {
        let Some(path) = &self.path else { return };
        let text: String = self
            .pinned
            .iter()
            .map(|(s, d)| format!("{s} {}\n", to_hex(d)))
            .collect();
        let tmp = path.with_extension("tmp");
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&tmp, text))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = written
            && !self.warned_unwritable
        {
            self.warned_unwritable = true;
            warn!(file = %path.display(), error = %e, "cannot write the token pins: they hold until restart only");
        }
    }
}

fn to_hex(d: &[u8; 32]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests;
