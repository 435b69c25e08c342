//! The read-only endpoints: liveness, readiness, version, health, backends, stats, agents, cluster.

use std::collections::BTreeMap;

use axum::{
    Json,
    extract::{Path, Query, State, rejection::QueryRejection},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Api, ApiError, View, view::AgentRow};
use crate::{
    health::ValidationState,
    name::DnsName,
    registry::{AgentSays, BackendStatus, Reason, Status},
};

/// A time in ms since the Unix epoch, as RFC 3339 (UTC, milliseconds).
pub(super) fn rfc3339(ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(t).to_string()
}

/// The original's four effective states: `healthy`, `draining`, `stale`, or `unhealthy` for every
/// other way out. Our `reason` says which.
pub(super) fn effective_status(b: &BackendStatus) -> &'static str {
    match (b.status, b.reason) {
        (Status::Healthy, _) => "healthy",
        (_, Reason::AgentDraining) => "draining",
        (_, Reason::Stale) => "stale",
        _ => "unhealthy",
    }
}

/// One backend as `/overwatch/backends` shows it: the original's fields, and ours.
#[derive(Serialize, ToSchema)]
pub(super) struct BackendRow {
    service: String,
    address: String,
    port: u16,
    weight: u32,
    region: String,
    source: &'static str,
    effective_status: &'static str,
    reason: &'static str,
    /// DNS answers with its address now (the published table has it).
    in_table: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    agent_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    agent_healthy: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    agent_status: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    agent_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    agent_last_seen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    validation_healthy: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    validation_latency_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    override_status: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    override_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    override_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    override_at: Option<String>,
}

impl BackendRow {
    pub(super) fn new(view: &View, b: &BackendStatus) -> Self {
        let o = b.override_.as_ref();
        Self {
            service: b.key.service.to_string(),
            address: b.key.address.to_string(),
            port: b.key.port,
            weight: b.weight,
            region: b.region.clone(),
            source: b.source.as_str(),
            effective_status: effective_status(b),
            reason: b.reason.as_str(),
            in_table: view.in_table(&b.key.service, b.key.address),
            agent_id: b.agent_id.clone(),
            agent_healthy: b.agent_says.as_ref().map(|(s, _)| *s == AgentSays::Healthy),
            agent_status: b.agent_says.as_ref().map(|(s, _)| s.as_str()),
            agent_reason: b
                .agent_says
                .as_ref()
                .map(|(_, r)| r.clone())
                .filter(|r| !r.is_empty()),
            agent_last_seen: b.last_report_age.map(|age| rfc3339(view.ago(age))),
            validation_healthy: match b.validation {
                ValidationState::Passing => Some(true),
                ValidationState::Failing => Some(false),
                ValidationState::Unknown => None,
            },
            validation_latency_ms: b.latency.map(|l| l.as_secs_f64() * 1000.0),
            override_status: o.map(|o| if o.healthy { "healthy" } else { "unhealthy" }),
            override_reason: o.map(|o| o.reason.clone()),
            override_by: o.map(|o| o.by.clone()),
            override_at: o.map(|o| rfc3339(o.at_ms)),
        }
    }
}

pub(super) async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint (see /api/v1/ and docs/api.md)")
}

pub(super) async fn method_not_allowed(method: axum::http::Method) -> ApiError {
    ApiError::method_not_allowed(format!(
        "{method} is not allowed here; the Allow header lists what is"
    ))
}

/// Readiness.
#[derive(Serialize, ToSchema)]
pub(super) struct Ready {
    ready: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'static str>,
    dns_ready: bool,
    health_ready: bool,
    xdp: &'static str,
    store: StoreOut,
}

/// Where operators' changes are kept, and whether they can be made now.
#[derive(Serialize, ToSchema)]
pub(super) struct StoreOut {
    /// `embedded` (the file in `overwatch.data_dir`) or `etcd` (shared by several overwatches).
    backend: &'static str,
    /// Whether changes can be made: the embedded store always; etcd when it answers. When it does not,
    /// DNS keeps answering from the last state and changes are refused with 503.
    writable: bool,
    /// Why etcd cannot be reached.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// When etcd became reachable or unreachable (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    since: Option<String>,
    /// The last etcd revision this overwatch holds: equal on overwatches that agree.
    #[serde(skip_serializing_if = "Option::is_none")]
    revision: Option<u64>,
}

pub(super) fn store_out(view: &View) -> StoreOut {
    match &view.store_link {
        None => StoreOut {
            backend: "embedded",
            writable: true,
            error: None,
            since: None,
            revision: None,
        },
        Some(l) => StoreOut {
            backend: "etcd",
            writable: l.up,
            error: l.reason.clone(),
            since: Some(rfc3339(l.since_ms)),
            revision: Some(l.revision),
        },
    }
}

/// Whether the overwatch answers as configured.
#[utoipa::path(get, path = "/api/v1/ready", tag = "probes", responses(
    (status = 200, description = "Ready", body = Ready),
    (status = 503, description = "Not ready yet", body = Ready),
))]
pub(super) async fn ready(State(api): State<Api>) -> Response {
    let view = api.view();
    let r = &view.readiness;
    let body = Ready {
        ready: r.ready(),
        message: (!r.ready()).then_some(if r.published {
            "XDP is being attached"
        } else {
            "the first answer table is not published yet"
        }),
        dns_ready: r.published,
        health_ready: r.published,
        xdp: r.xdp,
        store: store_out(&view),
    };
    let status = if r.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// Liveness.
#[derive(Serialize, ToSchema)]
pub(super) struct Live {
    alive: bool,
}

/// Whether the process serves requests.
#[utoipa::path(get, path = "/api/v1/live", tag = "probes", responses(
    (status = 200, description = "Alive", body = Live),
))]
pub(super) async fn live() -> Json<Live> {
    Json(Live { alive: true })
}

/// The build.
#[derive(Serialize, ToSchema)]
pub(super) struct Version {
    version: &'static str,
    platform: String,
    generated_at: String,
}

/// The version and platform.
#[utoipa::path(get, path = "/api/v1/version", tag = "probes", responses(
    (status = 200, description = "The build", body = Version),
))]
pub(super) async fn version(State(api): State<Api>) -> Json<Version> {
    Json(Version {
        version: env!("CARGO_PKG_VERSION"),
        platform: format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
        generated_at: rfc3339(api.view().wall_ms),
    })
}

/// One backend as `/health/servers` shows it.
#[derive(Serialize, ToSchema)]
pub(super) struct ServerRow {
    service: String,
    address: String,
    port: u16,
    region: String,
    source: &'static str,
    healthy: bool,
    status: &'static str,
    reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_ms: Option<f64>,
}

/// Every backend.
#[derive(Serialize, ToSchema)]
pub(super) struct Servers {
    servers: Vec<ServerRow>,
    generated_at: String,
}

/// Every backend with its effective status and why.
#[utoipa::path(get, path = "/api/v1/health/servers", tag = "health", responses(
    (status = 200, description = "Every backend", body = Servers),
    (status = 403, description = "Client not allowed", body = super::error::ErrorBody),
))]
pub(super) async fn servers(State(api): State<Api>) -> Json<Servers> {
    let view = api.view();
    let rows: Vec<ServerRow> = view
        .backends
        .iter()
        .map(|b| ServerRow {
            service: b.key.service.to_string(),
            address: b.key.address.to_string(),
            port: b.key.port,
            region: b.region.clone(),
            source: b.source.as_str(),
            healthy: b.status == Status::Healthy,
            status: effective_status(b),
            reason: b.reason.as_str(),
            latency_ms: b.latency.map(|l| l.as_secs_f64() * 1000.0),
        })
        .collect();
    Json(Servers {
        servers: rows,
        generated_at: rfc3339(view.wall_ms),
    })
}

/// One region's health.
#[derive(Serialize, ToSchema)]
pub(super) struct RegionRow {
    name: String,
    total_servers: usize,
    healthy_count: usize,
    unhealthy_count: usize,
    health_percent: f64,
}

/// Every region.
#[derive(Serialize, ToSchema)]
pub(super) struct Regions {
    regions: Vec<RegionRow>,
    generated_at: String,
}

/// Per region: how many backends, how many healthy.
#[utoipa::path(get, path = "/api/v1/health/regions", tag = "health", responses(
    (status = 200, description = "Every region", body = Regions),
    (status = 403, description = "Client not allowed", body = super::error::ErrorBody),
))]
pub(super) async fn regions(State(api): State<Api>) -> Json<Regions> {
    let view = api.view();
    // Configured regions first, in config order, then those only agents name.
    let mut names = view.regions.clone();
    for b in &view.backends {
        if !names.contains(&b.region) {
            names.push(b.region.clone());
        }
    }
    let rows: Vec<RegionRow> = names
        .into_iter()
        .map(|name| {
            let of: Vec<&BackendStatus> =
                view.backends.iter().filter(|b| b.region == name).collect();
            let healthy = of.iter().filter(|b| b.status == Status::Healthy).count();
            RegionRow {
                total_servers: of.len(),
                healthy_count: healthy,
                unhealthy_count: of.len() - healthy,
                health_percent: if of.is_empty() {
                    0.0
                } else {
                    healthy as f64 * 100.0 / of.len() as f64
                },
                name,
            }
        })
        .collect();
    Json(Regions {
        regions: rows,
        generated_at: rfc3339(view.wall_ms),
    })
}

/// The filters of `/overwatch/backends`.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct BackendFilter {
    /// A service name, any spelling.
    service: Option<String>,
    /// A region.
    region: Option<String>,
    /// `healthy`, `unhealthy`, `stale` or `draining`.
    status: Option<String>,
}

/// Backends.
#[derive(Serialize, ToSchema)]
pub(super) struct Backends {
    backends: Vec<BackendRow>,
    count: usize,
    generated_at: String,
}

const STATUSES: [&str; 4] = ["healthy", "unhealthy", "stale", "draining"];

/// Every backend with the original's fields and ours, filtered.
#[utoipa::path(get, path = "/api/v1/overwatch/backends", tag = "overwatch", params(BackendFilter), responses(
    (status = 200, description = "The backends", body = Backends),
    (status = 400, description = "A bad filter", body = super::error::ErrorBody),
    (status = 403, description = "Client not allowed", body = super::error::ErrorBody),
))]
pub(super) async fn backends(
    State(api): State<Api>,
    filter: Result<Query<BackendFilter>, QueryRejection>,
) -> Result<Json<Backends>, ApiError> {
    let Query(f) = filter.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let service = f
        .service
        .as_deref()
        .map(DnsName::new)
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("service: {e}")))?;
    if let Some(s) = &f.status
        && !STATUSES.contains(&s.as_str())
    {
        return Err(ApiError::bad_request(format!(
            "status: {s:?} is not one of {}",
            STATUSES.join(", ")
        )));
    }
    let view = api.view();
    let rows: Vec<BackendRow> = view
        .backends
        .iter()
        .filter(|b| service.as_ref().is_none_or(|s| b.key.service == *s))
        .filter(|b| f.region.as_ref().is_none_or(|r| b.region == *r))
        .filter(|b| f.status.as_ref().is_none_or(|s| effective_status(b) == s))
        .map(|b| BackendRow::new(&view, b))
        .collect();
    Ok(Json(Backends {
        count: rows.len(),
        backends: rows,
        generated_at: rfc3339(view.wall_ms),
    }))
}

/// Counts over every backend.
#[derive(Serialize, ToSchema)]
pub(super) struct Stats {
    total_backends: usize,
    healthy_backends: usize,
    unhealthy_backends: usize,
    stale_backends: usize,
    draining_backends: usize,
    active_overrides: usize,
    validation_enabled: bool,
    validated_backends: usize,
    disagreement_count: usize,
    active_agents: usize,
    unique_services: usize,
    backends_by_service: BTreeMap<String, usize>,
    backends_by_region: BTreeMap<String, usize>,
    names_all_down: Vec<String>,
    generated_at: String,
}

/// Counts over every backend, agent and name.
#[utoipa::path(get, path = "/api/v1/overwatch/stats", tag = "overwatch", responses(
    (status = 200, description = "The counts", body = Stats),
    (status = 403, description = "Client not allowed", body = super::error::ErrorBody),
))]
pub(super) async fn stats(State(api): State<Api>) -> Json<Stats> {
    let view = api.view();
    let count = |s: &str| {
        view.backends
            .iter()
            .filter(|b| effective_status(b) == s)
            .count()
    };
    let mut by_service: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_region: BTreeMap<String, usize> = BTreeMap::new();
    for b in &view.backends {
        *by_service.entry(b.key.service.to_string()).or_default() += 1;
        *by_region.entry(b.region.clone()).or_default() += 1;
    }
    // The agent and the overwatch's own probe disagree.
    let disagreements = view
        .backends
        .iter()
        .filter(|b| {
            matches!(
                (&b.agent_says, b.validation),
                (Some((AgentSays::Healthy, _)), ValidationState::Failing)
                    | (Some((AgentSays::Unhealthy, _)), ValidationState::Passing)
            )
        })
        .count();
    let agents = view.book.as_ref().map_or(0, |b| {
        b.agents.iter().filter(|a| a.state == "alive").count()
    });
    Json(Stats {
        total_backends: view.backends.len(),
        healthy_backends: count("healthy"),
        unhealthy_backends: count("unhealthy"),
        stale_backends: count("stale"),
        draining_backends: count("draining"),
        active_overrides: view
            .backends
            .iter()
            .filter(|b| b.override_.is_some())
            .count(),
        validation_enabled: view.validation_enabled,
        validated_backends: view
            .backends
            .iter()
            .filter(|b| b.validation != ValidationState::Unknown)
            .count(),
        disagreement_count: disagreements,
        active_agents: agents,
        unique_services: by_service.len(),
        backends_by_service: by_service,
        backends_by_region: by_region,
        names_all_down: view
            .names
            .iter()
            .filter(|n| n.all_down)
            .map(|n| n.name.to_string())
            .collect(),
        generated_at: rfc3339(view.wall_ms),
    })
}

/// One agent.
#[derive(Serialize, ToSchema)]
pub(super) struct AgentOut {
    id: String,
    name: String,
    state: &'static str,
    address: String,
    last_report: String,
    backends: usize,
    signals: Signals,
}

/// An agent's predictive signals.
#[derive(Serialize, ToSchema)]
pub(super) struct Signals {
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu_percent: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    memory_percent: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_rate: Option<f32>,
}

fn agent_out(a: &AgentRow) -> AgentOut {
    AgentOut {
        id: a.id.clone(),
        name: a.name.clone(),
        state: a.state,
        address: a.from.to_string(),
        last_report: rfc3339((a.last_report * 1000.0) as u64),
        backends: a.backends,
        signals: Signals {
            cpu_percent: a.signals.cpu,
            memory_percent: a.signals.memory,
            error_rate: a.signals.error_rate,
        },
    }
}

/// Every agent.
#[derive(Serialize, ToSchema)]
pub(super) struct Agents {
    agents: Vec<AgentOut>,
    count: usize,
    gossip_enabled: bool,
    generated_at: String,
}

/// Each agent in the book.
#[utoipa::path(get, path = "/api/v1/overwatch/agents", tag = "overwatch", responses(
    (status = 200, description = "The agents", body = Agents),
    (status = 403, description = "Client not allowed", body = super::error::ErrorBody),
))]
pub(super) async fn agents(State(api): State<Api>) -> Json<Agents> {
    let view = api.view();
    let rows: Vec<AgentOut> = view
        .book
        .iter()
        .flat_map(|b| b.agents.iter().map(agent_out))
        .collect();
    Json(Agents {
        count: rows.len(),
        agents: rows,
        gossip_enabled: view.book.is_some(),
        generated_at: rfc3339(view.wall_ms),
    })
}

/// One agent and its backends.
#[derive(Serialize, ToSchema)]
pub(super) struct AgentDetail {
    agent: AgentOut,
    backends: Vec<BackendRow>,
    generated_at: String,
}

/// One agent, by its id or the name it reports under.
#[utoipa::path(get, path = "/api/v1/overwatch/agents/{id}", tag = "overwatch",
    params(("id" = String, Path, description = "The agent's id or name")),
    responses(
        (status = 200, description = "The agent", body = AgentDetail),
        (status = 403, description = "Client not allowed", body = super::error::ErrorBody),
        (status = 404, description = "No such agent", body = super::error::ErrorBody),
    ))]
pub(super) async fn agent(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<Json<AgentDetail>, ApiError> {
    let view = api.view();
    let a = view
        .book
        .iter()
        .flat_map(|b| b.agents.iter())
        .find(|a| a.id == id || a.name == id)
        .ok_or_else(|| ApiError::not_found(format!("no agent {id:?}")))?;
    let backends: Vec<BackendRow> = view
        .backends
        .iter()
        .filter(|b| b.agent_id.as_deref() == Some(a.id.as_str()))
        .map(|b| BackendRow::new(&view, b))
        .collect();
    Ok(Json(AgentDetail {
        agent: agent_out(a),
        backends,
        generated_at: rfc3339(view.wall_ms),
    }))
}

/// The query of `/cluster/status`.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ClusterQuery {
    /// How many agents must be alive for `cluster_healthy`.
    expected_agents: Option<usize>,
}

/// This overwatch.
#[derive(Serialize, ToSchema)]
pub(super) struct OverwatchOut {
    node_id: String,
    /// `overwatch.identity.region`; null when not configured.
    region: Option<String>,
    /// `ready` or `starting`.
    status: &'static str,
    uptime_seconds: u64,
    store: StoreOut,
}

/// One gossip member.
#[derive(Serialize, ToSchema)]
pub(super) struct MemberOut {
    name: String,
    /// `agent` or `overwatch`.
    role: &'static str,
    address: String,
    /// `alive` or `down`.
    state: &'static str,
}

/// Backends in and out.
#[derive(Serialize, ToSchema)]
pub(super) struct BackendSummary {
    total: usize,
    healthy: usize,
    out: usize,
}

/// The cluster as this overwatch sees it.
#[derive(Serialize, ToSchema)]
pub(super) struct Cluster {
    cluster_healthy: bool,
    overwatch: OverwatchOut,
    agents: Vec<AgentOut>,
    healthy_agents: usize,
    gossip_members: usize,
    members: Vec<MemberOut>,
    backend_summary: BackendSummary,
    generated_at: String,
}

/// The overwatch, the agents and the gossip members.
#[utoipa::path(get, path = "/api/v1/cluster/status", tag = "cluster", params(ClusterQuery), responses(
    (status = 200, description = "The cluster", body = Cluster),
    (status = 400, description = "A bad query", body = super::error::ErrorBody),
    (status = 403, description = "Client not allowed", body = super::error::ErrorBody),
))]
pub(super) async fn cluster(
    State(api): State<Api>,
    query: Result<Query<ClusterQuery>, QueryRejection>,
) -> Result<Json<Cluster>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let view = api.view();
    let agents: Vec<AgentOut> = view
        .book
        .iter()
        .flat_map(|b| b.agents.iter().map(agent_out))
        .collect();
    let alive = agents.iter().filter(|a| a.state == "alive").count();
    let members: Vec<MemberOut> = view
        .book
        .iter()
        .flat_map(|b| b.members.iter())
        .map(|m| MemberOut {
            name: m.name.clone(),
            role: m.role,
            address: m.addr.to_string(),
            state: if m.up { "alive" } else { "down" },
        })
        .collect();
    let healthy = view
        .backends
        .iter()
        .filter(|b| b.status == Status::Healthy)
        .count();
    Ok(Json(Cluster {
        cluster_healthy: view.readiness.ready() && alive >= q.expected_agents.unwrap_or(0),
        overwatch: OverwatchOut {
            node_id: view.node_id.clone(),
            region: view.region.clone(),
            status: if view.readiness.ready() {
                "ready"
            } else {
                "starting"
            },
            uptime_seconds: view.wall_ms.saturating_sub(view.started_ms) / 1000,
            store: store_out(&view),
        },
        agents,
        healthy_agents: alive,
        gossip_members: members.iter().filter(|m| m.state == "alive").count(),
        members,
        backend_summary: BackendSummary {
            total: view.backends.len(),
            healthy,
            out: view.backends.len() - healthy,
        },
        generated_at: rfc3339(view.wall_ms),
    }))
}
