//! Domains, regions, servers and geolocation mappings made through the API, next to the config file's:
//! `/domains`, `/regions`, `/servers`, `/geo/mappings` and `/geo/test`. Bodies take the config file's
//! keys and defaults; a change is checked against the effective config by the control loop (the
//! config's own rules, the file's objects read-only), stored, applied and published before the answer.
//! Reads come from the loop's last view: the effective config, with each object's `source`.

use std::time::Duration;

use axum::{
    Json,
    extract::{
        Path, Query, State,
        rejection::{JsonRejection, QueryRejection},
    },
    http::StatusCode,
    response::{IntoResponse, Response},
};
use ipnet::IpNet;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::Value;
use utoipa::ToSchema;

use super::{
    Api, ApiError, Change, View,
    error::{BodyErrors, ChangeErrors, ErrorBody},
    parse::{address, body, port},
};
use crate::{
    config::{CustomMapping, Domain, Region},
    name::DnsName,
    routing::GeoSource,
    store::{
        BackendId, DomainRecord, GeoMappingRecord, RegionRecord, ServerRecord,
        objects::{ApiObject, ObjectChange, ObjectKey},
    },
};

type Answer = Result<Response, ApiError>;

fn source(api_made: bool) -> &'static str {
    if api_made { "api" } else { "config" }
}

/// The body as a config entry, with the config file's defaults; an error names the field.
fn typed<T: DeserializeOwned>(v: Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            ApiError::bad_request(e.inner().to_string())
        } else {
            ApiError::bad_request(format!("{path}: {}", e.inner()))
        }
    })
}

/// Puts `key` into an object body from the path, or checks that the body's agrees.
fn with_key(mut v: Value, field: &str, from_path: Value) -> Result<Value, ApiError> {
    let Some(map) = v.as_object_mut() else {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    };
    match map.get(field) {
        None => {
            map.insert(field.to_owned(), from_path);
        }
        Some(given) if *given == from_path => {}
        Some(given) => {
            return Err(ApiError::bad_request(format!(
                "{field}: {given} differs from the path's {from_path}; it cannot be changed (delete \
                 and create instead)"
            )));
        }
    }
    Ok(v)
}

async fn put(api: &Api, object: ApiObject, create: bool) -> Answer {
    let shown = object_out(&object)?;
    api.change(vec![Change::Object(ObjectChange::Put { object, create })])
        .await?;
    let status = if create {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(shown)).into_response())
}

async fn delete(api: &Api, key: ObjectKey) -> Answer {
    api.change(vec![Change::Object(ObjectChange::Delete(key))])
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Any one object as its read answers show it.
#[derive(Serialize)]
#[serde(untagged)]
enum ObjectOut {
    Domain(DomainOut),
    Region(RegionOut),
    Server(ServerOut),
    GeoMapping(MappingOut),
}

fn object_out(o: &ApiObject) -> Result<ObjectOut, ApiError> {
    Ok(match o {
        ApiObject::Domain(d) => ObjectOut::Domain(domain_out(&d.to_config(), true)),
        ApiObject::Region(r) => {
            let region = r
                .to_config()
                .map_err(|e| ApiError::bad_request(format!("health_check.expected_status: {e}")))?;
            ObjectOut::Region(region_out(&region, true))
        }
        ApiObject::Server(s) => {
            ObjectOut::Server(server_out(&s.backend, s.weight, &s.region, true))
        }
        ApiObject::GeoMapping(m) => ObjectOut::GeoMapping(mapping_out(&m.to_config(), true)),
    })
}

fn one<T: Serialize>(rows: Vec<T>, what: &str) -> Answer {
    rows.into_iter()
        .next()
        .map(|v| Json(v).into_response())
        .ok_or_else(|| ApiError::not_found(format!("no {what}")))
}

// ---- domains ----

/// A domain: the keys of the config's `domains[]` entry, and where it comes from.
#[derive(Serialize, ToSchema)]
pub(super) struct DomainOut {
    name: String,
    /// `round-robin`, `weighted`, `failover`, `geolocation`, `latency`.
    routing_algorithm: String,
    regions: Vec<String>,
    /// `null`: `dns.default_ttl`.
    ttl: Option<u32>,
    max_answers: u8,
    /// `all`, `last-healthy`, `empty`; `null`: the config's default.
    all_down: Option<String>,
    latency_config: LatencyOut,
    /// How long a backend that comes back ramps up to its full share, e.g. `30s`; `null`: off.
    slow_start: Option<String>,
    /// `config` or `api`.
    source: &'static str,
}

/// A domain's `latency_config`; `null`: the top-level value.
#[derive(Serialize, ToSchema)]
pub(super) struct LatencyOut {
    smoothing_factor: Option<f64>,
    max_latency_ms: Option<u32>,
    min_samples: Option<u32>,
}

/// Every domain.
#[derive(Serialize, ToSchema)]
pub(super) struct DomainList {
    domains: Vec<DomainOut>,
    count: usize,
}

/// A domain body: the config's `domains[]` keys, with its defaults.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct DomainIn {
    name: String,
    routing_algorithm: Option<String>,
    regions: Option<Vec<String>>,
    ttl: Option<u32>,
    max_answers: Option<u8>,
    all_down: Option<String>,
    latency_config: Option<LatencyIn>,
    /// A duration such as `30s`, 1s..=1h; absent: off.
    slow_start: Option<String>,
}

/// A domain's `latency_config` in a body.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct LatencyIn {
    smoothing_factor: Option<f64>,
    max_latency_ms: Option<u32>,
    min_samples: Option<u32>,
}

// Built from the store's record: it is what the API stores, so the answer shows what was kept.
fn domain_out(d: &Domain, api_made: bool) -> DomainOut {
    let r = DomainRecord::from_config(d);
    DomainOut {
        name: r.name.to_string(),
        routing_algorithm: r.routing_algorithm.to_string(),
        regions: r.regions,
        ttl: r.ttl,
        max_answers: r.max_answers,
        all_down: r.all_down.map(|a| a.to_string()),
        latency_config: LatencyOut {
            smoothing_factor: r.latency_config.smoothing_factor,
            max_latency_ms: r.latency_config.max_latency_ms,
            min_samples: r.latency_config.min_samples,
        },
        slow_start: r.slow_start_ms.map(|ms| match ms % 1000 {
            0 => format!("{}s", ms / 1000),
            _ => format!("{ms}ms"),
        }),
        source: source(api_made),
    }
}

fn domains_of(view: &View, only: Option<&DnsName>) -> Vec<DomainOut> {
    view.effective
        .domains
        .iter()
        .filter(|d| only.is_none_or(|n| &d.name == n))
        .map(|d| domain_out(d, view.api_objects.domains.contains_key(&d.name)))
        .collect()
}

fn domain_name(text: &str) -> Result<DnsName, ApiError> {
    DnsName::new(text).map_err(|e| ApiError::bad_request(format!("name: {e}")))
}

#[utoipa::path(get, path = "/api/v1/domains", tag = "domains",
    responses(
        (status = 200, description = "Every domain", body = DomainList),
        (status = 403, description = "Client not allowed", body = ErrorBody),
    ))]
pub(super) async fn list_domains(State(api): State<Api>) -> Json<DomainList> {
    let domains = domains_of(&api.view(), None);
    Json(DomainList {
        count: domains.len(),
        domains,
    })
}

#[utoipa::path(get, path = "/api/v1/domains/{name}", tag = "domains",
    params(
        ("name" = String, Path, description = "The domain name"),
    ),
    responses(
        (status = 200, description = "The domain", body = DomainOut),
        (status = 400, description = "A bad name", body = ErrorBody),
        (status = 403, description = "Client not allowed", body = ErrorBody),
        (status = 404, description = "No such domain", body = ErrorBody),
    ))]
pub(super) async fn get_domain(State(api): State<Api>, Path(name): Path<String>) -> Answer {
    let name = domain_name(&name)?;
    one(
        domains_of(&api.view(), Some(&name)),
        &format!("domain {name}"),
    )
}

#[utoipa::path(post, path = "/api/v1/domains", tag = "domains",
    request_body = DomainIn,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = DomainOut),
        (status = 400, description = "A bad body, or one that breaks a config rule", body = ErrorBody),
        (status = 409, description = "An object of the config file, one that exists already or is still in use", body = ErrorBody),
        BodyErrors,
        ChangeErrors,
    ))]
pub(super) async fn create_domain(
    State(api): State<Api>,
    b: Result<Json<Value>, JsonRejection>,
) -> Answer {
    let d: Domain = typed(body(b)?)?;
    put(&api, ApiObject::Domain(DomainRecord::from_config(&d)), true).await
}

#[utoipa::path(put, path = "/api/v1/domains/{name}", tag = "domains",
    params(
        ("name" = String, Path, description = "The domain name"),
    ),
    request_body = DomainIn,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Replaced", body = DomainOut),
        (status = 400, description = "A bad name or body, or one that breaks a config rule", body = ErrorBody),
        (status = 404, description = "No such domain", body = ErrorBody),
        (status = 409, description = "An object of the config file, one that exists already or is still in use", body = ErrorBody),
        BodyErrors,
        ChangeErrors,
    ))]
pub(super) async fn update_domain(
    State(api): State<Api>,
    Path(name): Path<String>,
    b: Result<Json<Value>, JsonRejection>,
) -> Answer {
    let name = domain_name(&name)?;
    let mut v = body(b)?;
    // The body may spell the name differently (case, trailing dot): compare names, not text.
    if let Some(given) = v.get("name") {
        let given: DnsName = typed(given.clone())
            .map_err(|e| ApiError::bad_request(format!("name: {}", e.message)))?;
        if given != name {
            return Err(ApiError::bad_request(format!(
                "name: {given} differs from the path's {name}; a domain cannot be renamed"
            )));
        }
        if let Some(map) = v.as_object_mut() {
            map.remove("name");
        }
    }
    let d: Domain = typed(with_key(v, "name", Value::from(name.to_string()))?)?;
    put(
        &api,
        ApiObject::Domain(DomainRecord::from_config(&d)),
        false,
    )
    .await
}

#[utoipa::path(delete, path = "/api/v1/domains/{name}", tag = "domains",
    params(
        ("name" = String, Path, description = "The domain name"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "A bad name", body = ErrorBody),
        (status = 404, description = "No such domain", body = ErrorBody),
        (status = 409, description = "An object of the config file, one that exists already or is still in use", body = ErrorBody),
        ChangeErrors,
    ))]
pub(super) async fn delete_domain(State(api): State<Api>, Path(name): Path<String>) -> Answer {
    delete(&api, ObjectKey::Domain(domain_name(&name)?)).await
}

// ---- regions ----

fn duration_text(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// A region: the keys of the config's `regions[]` entry, its servers' ids, and where it comes from.
#[derive(Serialize, ToSchema)]
pub(super) struct RegionOut {
    name: String,
    countries: Vec<String>,
    continents: Vec<String>,
    health_check: HealthCheckOut,
    /// Each server's id, `service/address/port`.
    servers: Vec<String>,
    /// `config` or `api`.
    source: &'static str,
}

/// A region's `health_check`, durations as the config writes them (`30s`, `500ms`).
#[derive(Serialize, ToSchema)]
pub(super) struct HealthCheckOut {
    #[serde(rename = "type")]
    kind: &'static str,
    path: String,
    host: Option<String>,
    interval: String,
    timeout: String,
    failure_threshold: u32,
    success_threshold: u32,
    expected_status: Vec<String>,
    tls_verify: bool,
}

/// Every region.
#[derive(Serialize, ToSchema)]
pub(super) struct RegionList {
    regions: Vec<RegionOut>,
    count: usize,
}

/// A region body: the config's `regions[]` keys but `servers`, with its defaults.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct RegionIn {
    name: String,
    countries: Option<Vec<String>>,
    continents: Option<Vec<String>>,
    health_check: Option<HealthCheckIn>,
}

/// A region's `health_check` in a body.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct HealthCheckIn {
    /// `http`, `https`, `tcp`.
    #[schema(rename = "type")]
    kind: Option<String>,
    path: Option<String>,
    host: Option<String>,
    /// A duration such as `30s`.
    interval: Option<String>,
    /// A duration such as `5s`.
    timeout: Option<String>,
    failure_threshold: Option<u32>,
    success_threshold: Option<u32>,
    /// A status, a range (`200-299`) or a list of them.
    expected_status: Option<Value>,
    tls_verify: Option<bool>,
}

fn region_out(r: &Region, api_made: bool) -> RegionOut {
    let h = &r.health_check;
    RegionOut {
        name: r.name.clone(),
        countries: r.countries.clone(),
        continents: r.continents.clone(),
        health_check: HealthCheckOut {
            kind: h.kind.as_str(),
            path: h.path.clone(),
            host: h.host.clone(),
            interval: duration_text(h.interval),
            timeout: duration_text(h.timeout),
            failure_threshold: h.failure_threshold,
            success_threshold: h.success_threshold,
            expected_status: RegionRecord::from_config(r).health_check.expected_status,
            tls_verify: h.tls_verify,
        },
        servers: r
            .servers
            .iter()
            .map(|s| BackendId::new(s.service.clone(), s.address, s.port).to_string())
            .collect(),
        source: source(api_made),
    }
}

fn regions_of(view: &View, only: Option<&str>) -> Vec<RegionOut> {
    view.effective
        .regions
        .iter()
        .filter(|r| only.is_none_or(|n| r.name == n))
        .map(|r| region_out(r, view.api_objects.regions.contains_key(&r.name)))
        .collect()
}

/// A region body: the config's entry, without servers (they are made through `/servers`), with its
/// codes uppercased as the config loader does.
fn region_of(v: Value) -> Result<RegionRecord, ApiError> {
    let mut r: Region = typed(v)?;
    if !r.servers.is_empty() {
        return Err(ApiError::bad_request(
            "servers: a region's servers are made through /api/v1/servers",
        ));
    }
    let codes = r.countries.iter_mut().chain(&mut r.continents);
    codes.for_each(|c| c.make_ascii_uppercase());
    Ok(RegionRecord::from_config(&r))
}

#[utoipa::path(get, path = "/api/v1/regions", tag = "regions",
    responses(
        (status = 200, description = "Every region", body = RegionList),
        (status = 403, description = "Client not allowed", body = ErrorBody),
    ))]
pub(super) async fn list_regions(State(api): State<Api>) -> Json<RegionList> {
    let regions = regions_of(&api.view(), None);
    Json(RegionList {
        count: regions.len(),
        regions,
    })
}

#[utoipa::path(get, path = "/api/v1/regions/{name}", tag = "regions",
    params(
        ("name" = String, Path, description = "The region name"),
    ),
    responses(
        (status = 200, description = "The region", body = RegionOut),
        (status = 403, description = "Client not allowed", body = ErrorBody),
        (status = 404, description = "No such region", body = ErrorBody),
    ))]
pub(super) async fn get_region(State(api): State<Api>, Path(name): Path<String>) -> Answer {
    one(
        regions_of(&api.view(), Some(&name)),
        &format!("region {name:?}"),
    )
}

#[utoipa::path(post, path = "/api/v1/regions", tag = "regions",
    request_body = RegionIn,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = RegionOut),
        (status = 400, description = "A bad body, or one that breaks a config rule", body = ErrorBody),
        (status = 409, description = "An object of the config file, one that exists already or is still in use", body = ErrorBody),
        BodyErrors,
        ChangeErrors,
    ))]
pub(super) async fn create_region(
    State(api): State<Api>,
    b: Result<Json<Value>, JsonRejection>,
) -> Answer {
    let r = region_of(body(b)?)?;
    put(&api, ApiObject::Region(r), true).await
}

#[utoipa::path(put, path = "/api/v1/regions/{name}", tag = "regions",
    params(
        ("name" = String, Path, description = "The region name"),
    ),
    request_body = RegionIn,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Replaced", body = RegionOut),
        (status = 400, description = "A bad body, or one that breaks a config rule", body = ErrorBody),
        (status = 404, description = "No such region", body = ErrorBody),
        (status = 409, description = "An object of the config file, one that exists already or is still in use", body = ErrorBody),
        BodyErrors,
        ChangeErrors,
    ))]
pub(super) async fn update_region(
    State(api): State<Api>,
    Path(name): Path<String>,
    b: Result<Json<Value>, JsonRejection>,
) -> Answer {
    let r = region_of(with_key(body(b)?, "name", Value::from(name))?)?;
    put(&api, ApiObject::Region(r), false).await
}

#[utoipa::path(delete, path = "/api/v1/regions/{name}", tag = "regions",
    params(
        ("name" = String, Path, description = "The region name"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "A bad name", body = ErrorBody),
        (status = 404, description = "No such region", body = ErrorBody),
        (status = 409, description = "An object of the config file, one that exists already or is still in use", body = ErrorBody),
        ChangeErrors,
    ))]
pub(super) async fn delete_region(State(api): State<Api>, Path(name): Path<String>) -> Answer {
    delete(&api, ObjectKey::Region(name)).await
}

// ---- servers ----

/// A server.
#[derive(Serialize, ToSchema)]
pub(super) struct ServerOut {
    /// `service/address/port`.
    id: String,
    service: String,
    address: String,
    port: u16,
    weight: u32,
    region: String,
    /// `config` or `api`.
    source: &'static str,
}

/// Every server.
#[derive(Serialize, ToSchema)]
pub(super) struct ServerList {
    servers: Vec<ServerOut>,
    count: usize,
}

fn server_out(id: &BackendId, weight: u32, region: &str, api_made: bool) -> ServerOut {
    ServerOut {
        id: id.to_string(),
        service: id.service.to_string(),
        address: id.address.to_string(),
        port: id.port,
        weight,
        region: region.to_owned(),
        source: source(api_made),
    }
}

fn servers_of(view: &View, only: Option<&BackendId>) -> Vec<ServerOut> {
    view.effective
        .regions
        .iter()
        .flat_map(|r| r.servers.iter().map(move |s| (r, s)))
        .map(|(r, s)| (r, s, BackendId::new(s.service.clone(), s.address, s.port)))
        .filter(|(_, _, id)| only.is_none_or(|o| o == id))
        .map(|(r, s, id)| {
            let api_made = view.api_objects.servers.contains_key(&id);
            server_out(&id, s.weight, &r.name, api_made)
        })
        .collect()
}

/// A server's id from its parts; `/` separates them, which no name or address holds (the original's
/// `:` broke on IPv6).
fn server_id(service: &str, addr: &str, p: &str) -> Result<BackendId, ApiError> {
    Ok(BackendId::new(
        domain_name(service)?,
        address(addr)?,
        port(p)?,
    ))
}

/// `service/address/port`, from one path segment (its slashes encoded as `%2F`).
fn parse_server_id(id: &str) -> Result<BackendId, ApiError> {
    let bad = || ApiError::bad_request(format!("id: {id:?} is not service/address/port"));
    let (service, rest) = id.split_once('/').ok_or_else(bad)?;
    let (addr, p) = rest.rsplit_once('/').ok_or_else(bad)?;
    server_id(service, addr, p)
}

/// A server body: the config's server keys (`service`, or the original's `name`; `address`, `port`
/// (default 80), `weight` (default 100)) and its `region`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ServerBody {
    /// Also accepted as `name`; required on POST.
    #[serde(default, alias = "name")]
    #[schema(value_type = Option<String>)]
    service: Option<DnsName>,
    /// Required on POST.
    #[serde(default)]
    address: Option<String>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default = "default_weight")]
    weight: u32,
    region: String,
}

fn default_weight() -> u32 {
    100
}

fn server_record(body: ServerBody, id: Option<BackendId>) -> Result<ServerRecord, ApiError> {
    let backend = match id {
        None => {
            let service = body
                .service
                .ok_or_else(|| ApiError::bad_request("service: required"))?;
            let addr = body
                .address
                .ok_or_else(|| ApiError::bad_request("address: required"))?;
            let p = body.port.unwrap_or(80);
            if p == 0 {
                return Err(ApiError::bad_request("port: must be between 1 and 65535"));
            }
            BackendId::new(service, address(&addr)?, p)
        }
        Some(id) => {
            let same = body.service.as_ref().is_none_or(|s| *s == id.service)
                && match &body.address {
                    None => true,
                    Some(a) => address(a)? == id.address,
                }
                && body.port.is_none_or(|p| p == id.port);
            if !same {
                return Err(ApiError::bad_request(format!(
                    "service, address and port identify the server {id} and cannot be changed \
                     (delete and create instead)"
                )));
            }
            id
        }
    };
    Ok(ServerRecord {
        backend,
        weight: body.weight,
        region: body.region,
    })
}

#[utoipa::path(get, path = "/api/v1/servers", tag = "servers",
    responses(
        (status = 200, description = "Every server", body = ServerList),
        (status = 403, description = "Client not allowed", body = ErrorBody),
    ))]
pub(super) async fn list_servers(State(api): State<Api>) -> Json<ServerList> {
    let servers = servers_of(&api.view(), None);
    Json(ServerList {
        count: servers.len(),
        servers,
    })
}

#[utoipa::path(post, path = "/api/v1/servers", tag = "servers",
    request_body = ServerBody,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = ServerOut),
        (status = 400, description = "A bad body, or one that breaks a config rule", body = ErrorBody),
        (status = 404, description = "No such region", body = ErrorBody),
        (status = 409, description = "An object of the config file, one that exists already or is still in use", body = ErrorBody),
        BodyErrors,
        ChangeErrors,
    ))]
pub(super) async fn create_server(
    State(api): State<Api>,
    b: Result<Json<Value>, JsonRejection>,
) -> Answer {
    let s = server_record(typed(body(b)?)?, None)?;
    put(&api, ApiObject::Server(s), true).await
}

async fn get_server(api: &Api, id: BackendId) -> Answer {
    one(servers_of(&api.view(), Some(&id)), &format!("server {id}"))
}

async fn update_server(api: &Api, id: BackendId, b: Result<Json<Value>, JsonRejection>) -> Answer {
    let s = server_record(typed(body(b)?)?, Some(id))?;
    put(api, ApiObject::Server(s), false).await
}

#[utoipa::path(get, path = "/api/v1/servers/{id}", tag = "servers",
    params(
        ("id" = String, Path, description = "service/address/port, each / written %2F"),
    ),
    responses(
        (status = 200, description = "The server", body = ServerOut),
        (status = 400, description = "A bad id", body = ErrorBody),
        (status = 403, description = "Client not allowed", body = ErrorBody),
        (status = 404, description = "No such server", body = ErrorBody),
    ))]
pub(super) async fn get_server_by_id(State(api): State<Api>, Path(id): Path<String>) -> Answer {
    get_server(&api, parse_server_id(&id)?).await
}

#[utoipa::path(put, path = "/api/v1/servers/{id}", tag = "servers",
    params(
        ("id" = String, Path, description = "service/address/port, each / written %2F"),
    ),
    request_body = ServerBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Replaced", body = ServerOut),
        (status = 400, description = "A bad id or body, or one that breaks a config rule", body = ErrorBody),
        (status = 404, description = "No such server", body = ErrorBody),
        (status = 409, description = "An object of the config file, one that exists already or is still in use", body = ErrorBody),
        BodyErrors,
        ChangeErrors,
    ))]
pub(super) async fn update_server_by_id(
    State(api): State<Api>,
    Path(id): Path<String>,
    b: Result<Json<Value>, JsonRejection>,
) -> Answer {
    update_server(&api, parse_server_id(&id)?, b).await
}

#[utoipa::path(delete, path = "/api/v1/servers/{id}", tag = "servers",
    params(
        ("id" = String, Path, description = "service/address/port, each / written %2F"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "A bad id", body = ErrorBody),
        (status = 404, description = "No such server", body = ErrorBody),
        (status = 409, description = "An object of the config file, one that exists already or is still in use", body = ErrorBody),
        ChangeErrors,
    ))]
pub(super) async fn delete_server_by_id(State(api): State<Api>, Path(id): Path<String>) -> Answer {
    delete(&api, ObjectKey::Server(parse_server_id(&id)?)).await
}

#[utoipa::path(get, path = "/api/v1/servers/{service}/{address}/{port}", tag = "servers",
    params(
        ("service" = String, Path, description = "The service name"),
        ("address" = String, Path, description = "The server's IP address (IPv6 bare or bracketed)"),
        ("port" = String, Path, description = "The server's port (1-65535)"),
    ),
    responses(
        (status = 200, description = "The server", body = ServerOut),
        (status = 400, description = "A bad service, address or port", body = ErrorBody),
        (status = 403, description = "Client not allowed", body = ErrorBody),
        (status = 404, description = "No such server", body = ErrorBody),
    ))]
pub(super) async fn get_server_by_parts(
    State(api): State<Api>,
    Path((s, a, p)): Path<(String, String, String)>,
) -> Answer {
    get_server(&api, server_id(&s, &a, &p)?).await
}

#[utoipa::path(put, path = "/api/v1/servers/{service}/{address}/{port}", tag = "servers",
    params(
        ("service" = String, Path, description = "The service name"),
        ("address" = String, Path, description = "The server's IP address (IPv6 bare or bracketed)"),
        ("port" = String, Path, description = "The server's port (1-65535)"),
    ),
    request_body = ServerBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Replaced", body = ServerOut),
        (status = 400, description = "A bad service, address, port or body, or one that breaks a config rule", body = ErrorBody),
        (status = 404, description = "No such server", body = ErrorBody),
        (status = 409, description = "An object of the config file, one that exists already or is still in use", body = ErrorBody),
        BodyErrors,
        ChangeErrors,
    ))]
pub(super) async fn update_server_by_parts(
    State(api): State<Api>,
    Path((s, a, p)): Path<(String, String, String)>,
    b: Result<Json<Value>, JsonRejection>,
) -> Answer {
    update_server(&api, server_id(&s, &a, &p)?, b).await
}

#[utoipa::path(delete, path = "/api/v1/servers/{service}/{address}/{port}", tag = "servers",
    params(
        ("service" = String, Path, description = "The service name"),
        ("address" = String, Path, description = "The server's IP address (IPv6 bare or bracketed)"),
        ("port" = String, Path, description = "The server's port (1-65535)"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "A bad service, address or port", body = ErrorBody),
        (status = 404, description = "No such server", body = ErrorBody),
        (status = 409, description = "An object of the config file, one that exists already or is still in use", body = ErrorBody),
        ChangeErrors,
    ))]
pub(super) async fn delete_server_by_parts(
    State(api): State<Api>,
    Path((s, a, p)): Path<(String, String, String)>,
) -> Answer {
    delete(&api, ObjectKey::Server(server_id(&s, &a, &p)?)).await
}

// ---- geolocation ----

/// A custom geolocation mapping.
#[derive(Serialize, ToSchema)]
pub(super) struct MappingOut {
    cidr: String,
    region: String,
    comment: Option<String>,
    /// `config` or `api`.
    source: &'static str,
}

/// Every custom geolocation mapping.
#[derive(Serialize, ToSchema)]
pub(super) struct MappingList {
    mappings: Vec<MappingOut>,
    count: usize,
}

/// A mapping body.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct MappingIn {
    /// Optional on PUT, where the path names it; host bits are cleared.
    cidr: Option<String>,
    region: String,
    comment: Option<String>,
}

fn mapping_out(m: &CustomMapping, api_made: bool) -> MappingOut {
    MappingOut {
        cidr: m.cidr.trunc().to_string(),
        region: m.region.clone(),
        comment: m.comment.clone(),
        source: source(api_made),
    }
}

fn mappings_of(view: &View, only: Option<IpNet>) -> Vec<MappingOut> {
    let Some(geo) = view.effective.geolocation() else {
        return Vec::new();
    };
    geo.custom_mappings
        .iter()
        .filter(|m| only.is_none_or(|c| m.cidr.trunc() == c))
        .map(|m| {
            let api_made = view.api_objects.geo_mappings.contains_key(&m.cidr.trunc());
            mapping_out(m, api_made)
        })
        .collect()
}

fn cidr(text: &str) -> Result<IpNet, ApiError> {
    text.parse::<IpNet>().map(|n| n.trunc()).map_err(|_| {
        ApiError::bad_request(format!("cidr: {text:?} is not a CIDR such as 10.0.0.0/8"))
    })
}

fn mapping_of(v: Value) -> Result<GeoMappingRecord, ApiError> {
    let m: CustomMapping = typed(v)?;
    Ok(GeoMappingRecord::from_config(&m))
}

#[utoipa::path(get, path = "/api/v1/geo/mappings", tag = "geolocation",
    responses(
        (status = 200, description = "Every custom mapping", body = MappingList),
        (status = 403, description = "Client not allowed", body = ErrorBody),
    ))]
pub(super) async fn list_mappings(State(api): State<Api>) -> Json<MappingList> {
    let mappings = mappings_of(&api.view(), None);
    Json(MappingList {
        count: mappings.len(),
        mappings,
    })
}

#[utoipa::path(post, path = "/api/v1/geo/mappings", tag = "geolocation",
    request_body = MappingIn,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = MappingOut),
        (status = 400, description = "A bad body, or one that breaks a config rule", body = ErrorBody),
        (status = 409, description = "An object of the config file, one that exists already or is still in use; no geolocation section", body = ErrorBody),
        BodyErrors,
        ChangeErrors,
    ))]
pub(super) async fn create_mapping(
    State(api): State<Api>,
    b: Result<Json<Value>, JsonRejection>,
) -> Answer {
    let m = mapping_of(body(b)?)?;
    put(&api, ApiObject::GeoMapping(m), true).await
}

#[utoipa::path(get, path = "/api/v1/geo/mappings/{cidr}", tag = "geolocation",
    params(
        ("cidr" = String, Path, description = "The CIDR, its / written %2F"),
    ),
    responses(
        (status = 200, description = "The mapping", body = MappingOut),
        (status = 400, description = "A bad CIDR", body = ErrorBody),
        (status = 403, description = "Client not allowed", body = ErrorBody),
        (status = 404, description = "No such mapping", body = ErrorBody),
    ))]
pub(super) async fn get_mapping(State(api): State<Api>, Path(c): Path<String>) -> Answer {
    let c = cidr(&c)?;
    one(
        mappings_of(&api.view(), Some(c)),
        &format!("mapping of {c}"),
    )
}

#[utoipa::path(put, path = "/api/v1/geo/mappings/{cidr}", tag = "geolocation",
    params(
        ("cidr" = String, Path, description = "The CIDR, its / written %2F"),
    ),
    request_body = MappingIn,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Replaced", body = MappingOut),
        (status = 400, description = "A bad CIDR or body, or one that breaks a config rule", body = ErrorBody),
        (status = 404, description = "No such mapping", body = ErrorBody),
        (status = 409, description = "An object of the config file, one that exists already or is still in use", body = ErrorBody),
        BodyErrors,
        ChangeErrors,
    ))]
pub(super) async fn update_mapping(
    State(api): State<Api>,
    Path(c): Path<String>,
    b: Result<Json<Value>, JsonRejection>,
) -> Answer {
    let c = cidr(&c)?;
    let mut v = body(b)?;
    // The body may write the CIDR with host bits set: compare networks, not text.
    if let Some(given) = v.get("cidr").and_then(Value::as_str) {
        if cidr(given)? != c {
            return Err(ApiError::bad_request(format!(
                "cidr: {given} differs from the path's {c}; delete and create instead"
            )));
        }
        if let Some(map) = v.as_object_mut() {
            map.remove("cidr");
        }
    }
    let m = mapping_of(with_key(v, "cidr", Value::from(c.to_string()))?)?;
    put(&api, ApiObject::GeoMapping(m), false).await
}

#[utoipa::path(delete, path = "/api/v1/geo/mappings/{cidr}", tag = "geolocation",
    params(
        ("cidr" = String, Path, description = "The CIDR, its / written %2F"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "A bad CIDR", body = ErrorBody),
        (status = 404, description = "No such mapping", body = ErrorBody),
        (status = 409, description = "An object of the config file, one that exists already or is still in use", body = ErrorBody),
        ChangeErrors,
    ))]
pub(super) async fn delete_mapping(State(api): State<Api>, Path(c): Path<String>) -> Answer {
    delete(&api, ObjectKey::GeoMapping(cidr(&c)?)).await
}

/// `?ip=`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct TestQuery {
    /// The address to place (IPv6 bare or bracketed); required.
    ip: Option<String>,
}

/// Where an address is placed.
#[derive(Serialize, ToSchema)]
pub(super) struct GeoTest {
    ip: String,
    /// `null`: no region (none by default either).
    region: Option<String>,
    /// The rule that decided: `custom`, `country`, `continent`, `default`.
    source: &'static str,
    /// The mapping or the code that matched.
    matched: Option<String>,
    scope_prefix: u8,
    /// The range every address of which gets the same region.
    ecs_scope: Option<String>,
}

/// Which region an address gets, by which rule, and the ECS scope: every address in `ecs_scope` gets
/// the same region, which is what an EDNS Client Subnet answer tells the resolver.
#[utoipa::path(get, path = "/api/v1/geo/test", tag = "geolocation", params(TestQuery),
    responses(
        (status = 200, description = "The region and the rule", body = GeoTest),
        (status = 400, description = "A missing or bad address", body = ErrorBody),
        (status = 403, description = "Client not allowed", body = ErrorBody),
        (status = 404, description = "Geolocation is not configured", body = ErrorBody),
    ))]
pub(super) async fn geo_test(
    State(api): State<Api>,
    query: Result<Query<TestQuery>, QueryRejection>,
) -> Result<Json<GeoTest>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let text =
        q.ip.ok_or_else(|| ApiError::bad_request("ip: required, e.g. ?ip=203.0.113.7"))?;
    let ip = address(&text)?;
    let view = api.view();
    let geo = view
        .placement
        .as_ref()
        .map(|p| p.resolver())
        .ok_or_else(|| {
            ApiError::not_found("geolocation is not configured (overwatch.geolocation)")
        })?;
    let m = geo.resolve(ip);
    let (rule, matched) = match &m.source {
        GeoSource::Custom(net) => ("custom", Some(net.to_string())),
        GeoSource::Country(c) => ("country", Some(c.clone())),
        GeoSource::Continent(c) => ("continent", Some(c.clone())),
        GeoSource::Default => ("default", None),
    };
    let scope = IpNet::new(ip, m.scope_prefix)
        .map(|n| n.trunc().to_string())
        .ok();
    Ok(Json(GeoTest {
        ip: ip.to_string(),
        region: m.region.map(str::to_owned),
        source: rule,
        matched,
        scope_prefix: m.scope_prefix,
        ecs_scope: scope,
    }))
}
