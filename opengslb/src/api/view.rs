//! What the API reads: the last state the control loop published. The loop makes a new view on every
//! publish and every second, so a read never waits for the loop and is at most a second old.

use std::{net::IpAddr, sync::Arc, time::Duration};

use opengslb_common::maps::{QTYPE_A, QTYPE_AAAA};

use crate::{
    config::Config,
    name::DnsName,
    registry::{BackendStatus, NameStatus},
    routing::{Placement, learned::LearnedLatency},
    store::objects::ApiObjects,
    table::AnswerTable,
};

/// The overwatch's state as the API shows it.
#[derive(Clone, Debug, Default)]
pub struct View {
    /// When this view was made, in ms since the Unix epoch; the ages in `backends` count from it.
    pub wall_ms: u64,
    /// Every backend: static, agent and API ones.
    pub backends: Vec<BackendStatus>,
    /// Every configured name, its routing algorithm, and whether its all-down policy answers.
    pub names: Vec<NameStatus>,
    /// The answer table last published to both DNS paths.
    pub table: Arc<AnswerTable>,
    /// Where the published table places clients; `None` without a geolocation resolver.
    pub placement: Option<Arc<Placement>>,
    /// The learned-latency table `learned-latency` names answer from (shared, live).
    pub learned: Arc<LearnedLatency>,
    /// The book of agents and the gossip members; `None` when gossip is off.
    pub book: Option<Arc<BookView>>,
    /// The configured regions, in config order.
    pub regions: Vec<String>,
    /// Whether the overwatch answers as configured.
    pub readiness: Readiness,
    /// Whether static backends are probed.
    pub validation_enabled: bool,
    /// This overwatch's name.
    pub node_id: String,
    /// The region this overwatch serves from (`overwatch.identity.region`), if configured.
    pub region: Option<String>,
    /// When it started, in ms since the Unix epoch.
    pub started_ms: u64,
    /// The config running: the file's, with the objects made through the API.
    pub effective: Arc<Config>,
    /// The objects of `effective` made through the API (stored ones that no longer validate are not).
    pub api_objects: Arc<ApiObjects>,
    /// Where the config file is, for messages.
    pub config_source: String,
    /// The shared store's link to its cluster; `None` for the embedded store.
    pub store_link: Option<crate::store::Link>,
}

/// What readiness needs: the first table published, and XDP attached or knowingly off.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Readiness {
    /// The first answer table is published to the DNS paths.
    pub published: bool,
    /// `attached`, `off` (no `dns.xdp.interfaces`), `unavailable` (it could not attach: the userspace
    /// server answers alone), or `pending` before the attempt.
    pub xdp: &'static str,
}

impl Readiness {
    /// Ready to answer as configured.
    pub fn ready(&self) -> bool {
        self.published && self.xdp != "pending"
    }
}

impl View {
    /// A time `age` before this view was made, in ms since the Unix epoch.
    pub fn ago(&self, age: Duration) -> u64 {
        self.wall_ms
            .saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX))
    }

    /// Whether `ip` is among the records of `name`'s published entry for its family: whether DNS
    /// answers with it (a port is not in DNS, so every port of the address counts alike).
    pub fn in_table(&self, name: &DnsName, ip: IpAddr) -> bool {
        let qtype = if ip.is_ipv4() { QTYPE_A } else { QTYPE_AAAA };
        self.table
            .get(name, qtype)
            .is_some_and(|e| e.records.contains(&ip))
    }
}

/// The overwatch's book of agents, as the metrics and the API show it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BookView {
    /// Reports by result.
    pub reports: Vec<(&'static str, u64)>,
    /// Learned-latency reports by result.
    pub latency_reports: Vec<(&'static str, u64)>,
    /// Each agent.
    pub agents: Vec<AgentRow>,
    /// The gossip members SWIM has told of, up or down.
    pub members: Vec<MemberRow>,
}

/// One gossip member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRow {
    /// Its SWIM name (an agent's id, an overwatch's node id).
    pub name: String,
    /// `agent` or `overwatch`.
    pub role: &'static str,
    /// Its gossip address.
    pub addr: std::net::SocketAddr,
    /// Whether SWIM last said it is up.
    pub up: bool,
}

/// One agent as the metrics and the API show it.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRow {
    /// Its registry id (`<agent id>@<token digest prefix>`).
    pub id: String,
    /// `alive`, `left` or `dead`.
    pub state: &'static str,
    /// When its last report arrived, in seconds since the Unix epoch.
    pub last_report: f64,
    /// Backends in its last report.
    pub backends: usize,
    /// The id the agent reports under.
    pub name: String,
    /// Where its last report came from.
    pub from: std::net::SocketAddr,
    /// Its last predictive signals.
    pub signals: crate::gossip::wire::Signals,
}
