//! The API's replies as the commands read them: only the fields they show (docs/api.md names them
//! all). Optional fields are the ones the API leaves out when they do not apply.

use serde::Deserialize;

/// `GET /ready`.
#[derive(Debug, Deserialize)]
pub struct Ready {
    pub ready: bool,
    pub message: Option<String>,
    pub xdp: String,
}

/// `GET /version`.
#[derive(Debug, Deserialize)]
pub struct Version {
    pub version: String,
    pub platform: String,
}

/// `GET /overwatch/stats`.
#[derive(Debug, Deserialize)]
pub struct Stats {
    pub total_backends: usize,
    pub healthy_backends: usize,
    pub unhealthy_backends: usize,
    pub stale_backends: usize,
    pub draining_backends: usize,
    pub active_overrides: usize,
    pub validation_enabled: bool,
    pub validated_backends: usize,
    pub disagreement_count: usize,
    pub active_agents: usize,
    pub unique_services: usize,
    pub names_all_down: Vec<String>,
}

/// `GET /servers`.
#[derive(Debug, Deserialize)]
pub struct Servers {
    pub servers: Vec<Server>,
}

/// A configured server.
#[derive(Debug, Deserialize)]
pub struct Server {
    pub service: String,
    pub address: String,
    pub port: u16,
    pub weight: u32,
    pub region: String,
    pub source: String,
}

/// `GET /overwatch/backends`.
#[derive(Debug, Deserialize)]
pub struct Backends {
    pub backends: Vec<Backend>,
    pub generated_at: String,
}

/// A backend and its status.
#[derive(Debug, Deserialize)]
pub struct Backend {
    pub service: String,
    pub address: String,
    pub port: u16,
    pub region: String,
    pub source: String,
    pub effective_status: String,
    pub reason: String,
    pub agent_id: Option<String>,
    pub agent_last_seen: Option<String>,
    pub override_status: Option<String>,
    pub override_reason: Option<String>,
    pub override_by: Option<String>,
}

/// `GET /overrides`.
#[derive(Debug, Deserialize)]
pub struct Overrides {
    pub overrides: Vec<Override>,
    pub generated_at: String,
}

/// An override in force.
#[derive(Debug, Deserialize)]
pub struct Override {
    pub service: String,
    pub address: String,
    pub port: u16,
    pub healthy: bool,
    pub reason: String,
    pub by: String,
    pub at: String,
}

/// A change's answer.
#[derive(Debug, Deserialize)]
pub struct Done {
    pub message: String,
}

/// `GET /domains`.
#[derive(Debug, Deserialize)]
pub struct Domains {
    pub domains: Vec<Domain>,
}

/// A domain.
#[derive(Debug, Deserialize)]
pub struct Domain {
    pub name: String,
    pub routing_algorithm: String,
    pub regions: Vec<String>,
    pub ttl: Option<u32>,
    pub max_answers: u32,
    pub all_down: Option<String>,
    pub source: String,
}

/// `GET /overwatch/agents`.
#[derive(Debug, Deserialize)]
pub struct Agents {
    pub agents: Vec<Agent>,
    pub gossip_enabled: bool,
    pub generated_at: String,
}

/// An agent.
#[derive(Debug, Deserialize)]
pub struct Agent {
    pub id: String,
    pub name: String,
    pub state: String,
    pub address: String,
    pub last_report: String,
    pub backends: usize,
    #[serde(default)]
    pub signals: Signals,
}

/// An agent's predictive signals.
#[derive(Debug, Default, Deserialize)]
pub struct Signals {
    pub cpu_percent: Option<f64>,
    pub memory_percent: Option<f64>,
    pub error_rate: Option<f64>,
}

/// `GET /dns/explain`.
#[derive(Debug, Deserialize)]
pub struct Explanation {
    pub name: String,
    #[serde(rename = "type")]
    pub qtype: String,
    pub client: Option<String>,
    pub algorithm: String,
    pub all_down_policy: String,
    pub all_down: bool,
    pub answer: String,
    pub policy: Option<Policy>,
    pub ttl: Option<u32>,
    pub max_answers: Option<u32>,
    pub records: Vec<String>,
    pub candidates: Vec<String>,
    pub backends: Vec<BackendWhy>,
}

/// How an answer draws from the records.
#[derive(Debug, Deserialize)]
pub struct Policy {
    pub kind: String,
    pub order: Option<Vec<String>>,
    pub weights: Option<Vec<Weight>>,
    pub geo: Option<Geo>,
}

/// A record's share of the weight slots.
#[derive(Debug, Deserialize)]
pub struct Weight {
    pub address: String,
    pub slots: usize,
    pub of: usize,
}

/// Geolocation's placement of the client and the records.
#[derive(Debug, Deserialize)]
pub struct Geo {
    pub default_region: Option<String>,
    pub client_region_id: Option<u8>,
    pub client_region: Option<String>,
    pub ecs: Option<Ecs>,
    pub records: Vec<RecordRegion>,
}

/// What a query carrying the client as its Client Subnet gets.
#[derive(Debug, Deserialize)]
pub struct Ecs {
    pub region: Option<String>,
    pub scope_prefix: u8,
    pub records: Vec<String>,
}

/// A record's region.
#[derive(Debug, Deserialize)]
pub struct RecordRegion {
    pub address: String,
    pub region: Option<String>,
}

/// A backend of the name explained, and why it is in or out.
#[derive(Debug, Deserialize)]
pub struct BackendWhy {
    pub address: String,
    pub port: u16,
    pub family: String,
    pub region: String,
    pub source: String,
    pub effective_status: String,
    pub reason: String,
    pub weight: u32,
    pub in_table: bool,
}
