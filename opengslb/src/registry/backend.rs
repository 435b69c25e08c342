//! One backend and the rule that decides whether DNS answers with it ([`effective_status`]).

use std::{fmt, net::IpAddr, time::Instant};

use crate::name::DnsName;
use serde::{Deserialize, Serialize};

use crate::{
    config::StaleConfig,
    health::{Validation, ValidationState},
};

/// What identifies a backend: the service (a domain name) it serves, its address and its port. The same
/// address and port may back two services; they are then two backends.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BackendKey {
    /// The domain this backend serves.
    pub service: DnsName,
    /// The address DNS answers carry; IPv4-mapped IPv6 addresses are stored as IPv4.
    pub address: IpAddr,
    /// The port health checks probe.
    pub port: u16,
}

impl BackendKey {
    /// A key in canonical form: an IPv4-mapped IPv6 address turned into IPv4, so that an agent
    /// reporting `::ffff:10.0.0.1` claims the static `10.0.0.1` (and both land in the A records, as
    /// `Config::domain_records` puts them).
    pub fn new(service: DnsName, address: IpAddr, port: u16) -> Self {
        Self {
            service,
            address: address.to_canonical(),
            port,
        }
    }
}

impl fmt::Display for BackendKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.address {
            IpAddr::V4(a) => write!(f, "{}/{a}:{}", self.service, self.port),
            IpAddr::V6(a) => write!(f, "{}/[{a}]:{}", self.service, self.port),
        }
    }
}

/// Where a backend came from. An agent's claim on a static or API backend does not change its source:
/// the source says who declared the backend, the claim who reports on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A server of a config region.
    Static,
    /// Created by an agent's report; removed after `stale.remove_after` of silence.
    Agent,
    /// Registered through the API.
    Api,
}

impl Source {
    /// The name the API and metrics show.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Static => "static",
            Self::Agent => "agent",
            Self::Api => "api",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an agent says about a backend it reports on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AgentSays {
    /// Its own checks pass and nothing predicts trouble.
    Healthy,
    /// Its own checks fail.
    Unhealthy,
    /// Going away on purpose: drain file, maintenance, or a predictive signal.
    Draining,
}

impl AgentSays {
    /// The name the API and metrics show.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
            Self::Draining => "draining",
        }
    }
}

/// An agent's claim on a backend: the agent reports on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The agent's identity (its gossip member id).
    pub agent_id: String,
    /// When its last report on this backend arrived.
    pub last_report: Instant,
    /// What that report said.
    pub said: AgentSays,
    /// The report's reason text (`"drain file present"`, `"cpu 97%"`), empty when it gave none.
    pub reason: String,
    /// The weight the agent reported. Used as the backend's weight only for backends the agent created
    /// (see [`Backend::weight`]).
    pub weight: u32,
    /// The region the agent reported, if it has one; as `weight`.
    pub region: Option<String>,
    /// The agent left the cluster gracefully: the backend is out at once.
    pub left: bool,
    /// The agent's reports stopped for K intervals or the gossip failure detector declared it down.
    pub dead: bool,
}

/// An operator's override, set through the API: decides the status whatever else is known.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    /// In (`true`) or out (`false`) of DNS.
    pub healthy: bool,
    /// Why, as the operator wrote it.
    pub reason: String,
    /// Who set it (the API's `X-User`, `"api"` by default).
    pub by: String,
    /// When, in ms since the Unix epoch.
    pub at_ms: u64,
}

/// One backend: who declared it, who reports on it, and what is known about it.
#[derive(Clone, Debug, PartialEq)]
pub struct Backend {
    /// What identifies it.
    pub key: BackendKey,
    /// Relative share under `weighted` routing: the config's for static backends, the API's for API
    /// backends (an agent's default weight must not override a weight the operator wrote), the agent's
    /// for backends an agent created.
    pub weight: u32,
    /// The region it is in (geolocation routing): chosen as `weight` is; empty when unknown.
    pub region: String,
    /// Who declared it.
    pub source: Source,
    /// Its position among the static servers (config order: each domain's regions in order, each region's
    /// servers in order); `None` for agent and API backends, which come after the static ones.
    pub static_order: Option<usize>,
    /// The agent that reports on it, if any.
    pub claim: Option<Claim>,
    /// An operator's override, if any.
    pub override_: Option<Override>,
    /// External validation.
    pub validation: Validation,
}

impl Backend {
    /// A backend with no claim, override or validation yet.
    pub fn new(key: BackendKey, weight: u32, region: String, source: Source) -> Self {
        Self {
            key,
            weight,
            region,
            source,
            static_order: None,
            claim: None,
            override_: None,
            validation: Validation::default(),
        }
    }

    /// Its effective status at `now` ([`effective_status`]).
    pub fn status(&self, now: Instant, stale: &StaleConfig) -> (Status, Reason) {
        effective_status(self, now, stale)
    }
}

/// Whether DNS answers with a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Answered.
    Healthy,
    /// Not answered (unless every backend of its name is out: see the all-down policy).
    Out,
}

impl Status {
    /// The name the API and metrics show.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Out => "out",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a backend has its status: the rule of [`effective_status`] that decided it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// An operator's override (either way).
    Override,
    /// The claiming agent says it is draining.
    AgentDraining,
    /// The claiming agent says it is unhealthy.
    AgentUnhealthy,
    /// The claiming agent left the cluster gracefully.
    AgentLeft,
    /// The claiming agent is dead (failure detector, or its reports stopped).
    AgentDead,
    /// The claiming agent has not reported for `stale.threshold`.
    Stale,
    /// The overwatch's validation probes fail.
    ValidationFailed,
    /// Nothing says otherwise.
    Healthy,
}

impl Reason {
    /// Every reason, in rule order (for metrics that export one series per reason).
    pub const ALL: [Self; 8] = [
        Self::Override,
        Self::AgentDraining,
        Self::AgentUnhealthy,
        Self::AgentLeft,
        Self::AgentDead,
        Self::Stale,
        Self::ValidationFailed,
        Self::Healthy,
    ];

    /// The snake_case name the API and metrics show.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Override => "override",
            Self::AgentDraining => "agent_draining",
            Self::AgentUnhealthy => "agent_unhealthy",
            Self::AgentLeft => "agent_left",
            Self::AgentDead => "agent_dead",
            Self::Stale => "stale",
            Self::ValidationFailed => "validation_failed",
            Self::Healthy => "healthy",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether the claim's last report is older than `stale.threshold` at `now`.
pub(super) fn is_stale(claim: &Claim, now: Instant, stale: &StaleConfig) -> bool {
    now.saturating_duration_since(claim.last_report) >= stale.threshold
}

/// The effective status of a backend at `now`, with the rule that decided it (`docs/control-plane.md`, "The registry and effective
/// status"); the first rule that applies wins:
///
/// 1. an operator override: as set ([`Reason::Override`]);
/// 2. claimed, and the agent says draining or unhealthy: out. A passing validation never overrides the
///    agent's inside knowledge (the original let it, which broke its own drain demo);
/// 3. claimed, and the agent left, is dead, or has been silent for `stale.threshold`: out, whatever
///    validation says (no report = unhealthy);
/// 4. validation is failing: out. [`ValidationState::Unknown`] is not failing, so a backend that has not
///    been probed yet (or whose validation is disabled) is answered;
/// 5. otherwise healthy.
///
/// Rule 2 comes before rule 3 as `docs/control-plane.md` orders them, so a dead agent whose last report said `draining`
/// shows `agent_draining`; either way the backend is out.
pub fn effective_status(b: &Backend, now: Instant, stale: &StaleConfig) -> (Status, Reason) {
    if let Some(o) = &b.override_ {
        let status = if o.healthy {
            Status::Healthy
        } else {
            Status::Out
        };
        return (status, Reason::Override);
    }
    if let Some(c) = &b.claim {
        match c.said {
            AgentSays::Draining => return (Status::Out, Reason::AgentDraining),
            AgentSays::Unhealthy => return (Status::Out, Reason::AgentUnhealthy),
            AgentSays::Healthy => {}
        }
        if c.left {
            return (Status::Out, Reason::AgentLeft);
        }
        if c.dead {
            return (Status::Out, Reason::AgentDead);
        }
        if is_stale(c, now, stale) {
            return (Status::Out, Reason::Stale);
        }
    }
    if b.validation.state == ValidationState::Failing {
        return (Status::Out, Reason::ValidationFailed);
    }
    (Status::Healthy, Reason::Healthy)
}
