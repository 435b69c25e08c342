//! `GET/POST /overwatch/latency`: the learned-latency table `learned-latency` names answer from, and
//! entries put in by hand (to try the routing before agents have measured anything, or to steer a
//! subnet). An entry put in by hand is replaced by the next agent report for the same subnet and backend,
//! and ages out like theirs.

use std::{collections::HashMap, net::IpAddr, time::Instant};

use axum::{
    Json,
    extract::{State, rejection::JsonRejection},
    http::StatusCode,
};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    Api, ApiError,
    error::{BodyErrors, ErrorBody},
    handlers::rfc3339,
    parse::{address, body},
};
use crate::routing::learned::{Learned, Source};

/// The longest round-trip time an entry may hold: a minute is far past any real one.
const MAX_LATENCY_MS: f64 = 60_000.0;

/// One learned latency.
#[derive(Debug, Serialize, ToSchema)]
pub struct LatencyEntry {
    /// The client subnet, at the prefix length it was reported (or put in) with.
    pub subnet: String,
    /// The backend's address: a round-trip time belongs to the path to a host, whichever port or
    /// service.
    pub backend: String,
    /// The region of the backends at that address, when one is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The moving average of the round-trip time, in ms.
    pub ewma_ms: f64,
    /// The samples it is made of.
    pub sample_count: u64,
    /// When it was last reported (RFC 3339).
    pub last_updated: String,
    /// `agent` or `api`.
    pub source: &'static str,
}

/// The table.
#[derive(Debug, Serialize, ToSchema)]
pub struct LatencyTable {
    /// Every entry, by subnet then backend.
    pub entries: Vec<LatencyEntry>,
    /// How many entries.
    pub count: usize,
    /// How many subnets.
    pub subnet_count: usize,
    /// Subnets dropped to keep within the table's bound since the start.
    pub evicted: u64,
    /// The most subnets the table holds.
    pub max_subnets: usize,
    /// When the table was read (RFC 3339).
    pub generated_at: String,
}

/// An entry to put in.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LatencyIn {
    /// The client subnet (a CIDR, held at its length) or a client address (grouped in its /24 or /48).
    pub subnet: String,
    /// The backend's address.
    pub backend: String,
    /// The round-trip time, in ms (above 0, at most 60000).
    pub latency_ms: f64,
    /// The samples it stands for (at least 1; default 1). Names whose `latency_config.min_samples` is
    /// higher skip it.
    #[serde(default)]
    pub samples: Option<u64>,
    /// The backend's region, as the original's clients send it: checked against the registry's (the
    /// table is by address, and an address has the region of its backends).
    #[serde(default)]
    pub region: Option<String>,
}

/// When it is now, on both clocks: entries are kept on the monotonic one and shown on the wall clock.
#[derive(Clone, Copy)]
struct Now {
    at: Instant,
    wall_ms: u64,
}

impl Now {
    fn get() -> Self {
        Self {
            at: Instant::now(),
            wall_ms: crate::gossip::unix_ms(),
        }
    }
}

/// An entry as the API shows it; `region` is that of the first backend at its address.
fn entry(
    subnet: IpNet,
    backend: IpAddr,
    l: &Learned,
    region: Option<&str>,
    now: Now,
) -> LatencyEntry {
    let age = now.at.saturating_duration_since(l.updated);
    let updated_ms = now
        .wall_ms
        .saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX));
    LatencyEntry {
        subnet: subnet.to_string(),
        backend: backend.to_string(),
        region: region.map(str::to_owned),
        ewma_ms: l.rtt.as_secs_f64() * 1000.0,
        sample_count: l.samples,
        last_updated: rfc3339(updated_ms),
        source: l.source.as_str(),
    }
}

/// The learned-latency table.
#[utoipa::path(get, path = "/api/v1/overwatch/latency", tag = "overwatch",
    responses(
        (status = 200, description = "Every learned latency", body = LatencyTable),
        (status = 403, description = "Client not allowed", body = ErrorBody),
    ))]
pub(super) async fn list(State(api): State<Api>) -> Json<LatencyTable> {
    let view = api.view();
    let now = Now::get();
    // Once per request, and outside the lock the agents' reports take.
    let mut regions: HashMap<IpAddr, &str> = HashMap::new();
    for b in &view.backends {
        regions.entry(b.key.address).or_insert(b.region.as_str());
    }
    let (mut entries, subnet_count, evicted, max_subnets) = view.learned.read(|t| {
        (
            t.entries()
                .map(|(net, addr, l)| entry(net, *addr, l, regions.get(addr).copied(), now))
                .collect::<Vec<_>>(),
            t.subnet_count(),
            t.evicted(),
            t.limits().max_subnets,
        )
    });
    entries.sort_by(|a, b| (&a.subnet, &a.backend).cmp(&(&b.subnet, &b.backend)));
    Json(LatencyTable {
        count: entries.len(),
        entries,
        subnet_count,
        evicted,
        max_subnets,
        generated_at: rfc3339(now.wall_ms),
    })
}

/// The subnet of a body: a CIDR (`Ok`), or an address (`Err`) to group as agents do by default.
fn subnet(text: &str) -> Result<Result<IpNet, IpAddr>, ApiError> {
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(Ok(net));
    }
    text.parse::<IpAddr>().map(Err).map_err(|_| {
        ApiError::bad_request(format!("subnet: {text:?} is not a CIDR or an IP address"))
    })
}

/// Puts a latency in the table, as an agent's report would.
#[utoipa::path(post, path = "/api/v1/overwatch/latency", tag = "overwatch",
    request_body = LatencyIn,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Put in; the entry as the table holds it", body = LatencyEntry),
        (status = 400, description = "A bad subnet, backend, latency or sample count", body = ErrorBody),
        (status = 401, description = "No or a wrong api.token", body = ErrorBody),
        (status = 403, description = "Client not allowed", body = ErrorBody),
        BodyErrors,
    ))]
pub(super) async fn put(
    State(api): State<Api>,
    b: Result<Json<LatencyIn>, JsonRejection>,
) -> Result<(StatusCode, Json<LatencyEntry>), ApiError> {
    let l = body(b)?;
    let parsed = subnet(&l.subnet)?;
    let backend = address(&l.backend)?;
    if !(l.latency_ms > 0.0 && l.latency_ms <= MAX_LATENCY_MS) {
        return Err(ApiError::bad_request(format!(
            "latency_ms: {} is not above 0 and at most {MAX_LATENCY_MS}",
            l.latency_ms
        )));
    }
    let samples = l.samples.unwrap_or(1);
    if samples == 0 {
        return Err(ApiError::bad_request("samples: must be at least 1"));
    }
    let rtt = std::time::Duration::from_secs_f64(l.latency_ms / 1000.0);
    let now = Now::get();
    let view = api.view();
    let regions: Vec<&str> = view
        .backends
        .iter()
        .filter(|b| b.key.address == backend)
        .map(|b| b.region.as_str())
        .collect();
    if let Some(r) = &l.region
        && !regions.is_empty()
        && !regions.contains(&r.as_str())
    {
        return Err(ApiError::bad_request(format!(
            "region: {r:?} is not the region of backend {backend} ({})",
            regions.join(", ")
        )));
    }
    let held = view.learned.write(|t| {
        let net = parsed.unwrap_or_else(|addr| t.subnet_of(addr));
        let held = t.insert(net, backend, rtt, samples, now.at, Source::Api);
        t.subnet(held)
            .find(|(a, _)| **a == backend)
            .map(|(a, l)| entry(held, *a, l, regions.first().copied(), now))
    });
    held.map(|e| (StatusCode::CREATED, Json(e)))
        .ok_or_else(|| ApiError::internal("the entry was not kept"))
}
