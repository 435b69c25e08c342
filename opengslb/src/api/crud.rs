//! Domains, regions, servers and geolocation mappings made through the API, next to the config file's:
//! `/domains`, `/regions`, `/servers`, `/geo/mappings` and `/geo/test`. Bodies take the config file's
//! keys and defaults; a change is checked against the effective config by the control loop (the
//! config's own rules, the file's objects read-only), stored, applied and published before the answer.
//! Reads come from the loop's last view: the effective config, with each object's `source`.

use std::{net::IpAddr, time::Duration};

use axum::{
    Json,
    extract::{Path, Query, State, rejection::JsonRejection},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use ipnet::IpNet;
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::{Value, json};

use super::{Api, ApiError, Change, View};
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

/// A body as JSON, whatever its shape; the shape is checked by [`typed`], which names the field.
fn body(b: Result<Json<Value>, JsonRejection>) -> Result<Value, ApiError> {
    b.map(|Json(v)| v)
        .map_err(|e| ApiError::from_status(e.status(), e.body_text()))
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
    let shown = object_json(&object)?;
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

fn object_json(o: &ApiObject) -> Result<Value, ApiError> {
    Ok(match o {
        ApiObject::Domain(d) => domain_json(&d.to_config(), true),
        ApiObject::Region(r) => {
            let region = r
                .to_config()
                .map_err(|e| ApiError::bad_request(format!("health_check.expected_status: {e}")))?;
            region_json(&region, true)
        }
        ApiObject::Server(s) => server_json(&s.backend, s.weight, &s.region, true),
        ApiObject::GeoMapping(m) => mapping_json(&m.to_config(), true),
    })
}

fn listed(key: &str, rows: Vec<Value>) -> Json<Value> {
    Json(json!({ key: rows, "count": rows.len() }))
}

fn one(rows: Vec<Value>, what: &str) -> Answer {
    rows.into_iter()
        .next()
        .map(|v| Json(v).into_response())
        .ok_or_else(|| ApiError::not_found(format!("no {what}")))
}

// ---- domains ----

fn domain_json(d: &Domain, api_made: bool) -> Value {
    let mut v = serde_json::to_value(DomainRecord::from_config(d)).unwrap_or(Value::Null);
    if let Some(map) = v.as_object_mut() {
        map.insert("source".into(), source(api_made).into());
    }
    v
}

fn domains_of(view: &View, only: Option<&DnsName>) -> Vec<Value> {
    view.effective
        .domains
        .iter()
        .filter(|d| only.is_none_or(|n| &d.name == n))
        .map(|d| domain_json(d, view.api_objects.domains.contains_key(&d.name)))
        .collect()
}

fn domain_name(text: &str) -> Result<DnsName, ApiError> {
    DnsName::new(text).map_err(|e| ApiError::bad_request(format!("name: {e}")))
}

pub(super) async fn list_domains(State(api): State<Api>) -> Json<Value> {
    listed("domains", domains_of(&api.view(), None))
}

pub(super) async fn get_domain(State(api): State<Api>, Path(name): Path<String>) -> Answer {
    let name = domain_name(&name)?;
    one(
        domains_of(&api.view(), Some(&name)),
        &format!("domain {name}"),
    )
}

pub(super) async fn create_domain(
    State(api): State<Api>,
    b: Result<Json<Value>, JsonRejection>,
) -> Answer {
    let d: Domain = typed(body(b)?)?;
    put(&api, ApiObject::Domain(DomainRecord::from_config(&d)), true).await
}

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

fn region_json(r: &Region, api_made: bool) -> Value {
    let h = &r.health_check;
    let statuses: Vec<String> = RegionRecord::from_config(r).health_check.expected_status;
    json!({
        "name": r.name,
        "countries": r.countries,
        "continents": r.continents,
        "health_check": {
            "type": h.kind.as_str(),
            "path": h.path,
            "host": h.host,
            "interval": duration_text(h.interval),
            "timeout": duration_text(h.timeout),
            "failure_threshold": h.failure_threshold,
            "success_threshold": h.success_threshold,
            "expected_status": statuses,
            "tls_verify": h.tls_verify,
        },
        "servers": r.servers.iter()
            .map(|s| BackendId::new(s.service.clone(), s.address, s.port).to_string())
            .collect::<Vec<_>>(),
        "source": source(api_made),
    })
}

fn regions_of(view: &View, only: Option<&str>) -> Vec<Value> {
    view.effective
        .regions
        .iter()
        .filter(|r| only.is_none_or(|n| r.name == n))
        .map(|r| region_json(r, view.api_objects.regions.contains_key(&r.name)))
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

pub(super) async fn list_regions(State(api): State<Api>) -> Json<Value> {
    listed("regions", regions_of(&api.view(), None))
}

pub(super) async fn get_region(State(api): State<Api>, Path(name): Path<String>) -> Answer {
    one(
        regions_of(&api.view(), Some(&name)),
        &format!("region {name:?}"),
    )
}

pub(super) async fn create_region(
    State(api): State<Api>,
    b: Result<Json<Value>, JsonRejection>,
) -> Answer {
    let r = region_of(body(b)?)?;
    put(&api, ApiObject::Region(r), true).await
}

pub(super) async fn update_region(
    State(api): State<Api>,
    Path(name): Path<String>,
    b: Result<Json<Value>, JsonRejection>,
) -> Answer {
    let r = region_of(with_key(body(b)?, "name", Value::from(name))?)?;
    put(&api, ApiObject::Region(r), false).await
}

pub(super) async fn delete_region(State(api): State<Api>, Path(name): Path<String>) -> Answer {
    delete(&api, ObjectKey::Region(name)).await
}

// ---- servers ----

fn server_json(id: &BackendId, weight: u32, region: &str, api_made: bool) -> Value {
    json!({
        "id": id.to_string(),
        "service": id.service.to_string(),
        "address": id.address.to_string(),
        "port": id.port,
        "weight": weight,
        "region": region,
        "source": source(api_made),
    })
}

fn servers_of(view: &View, only: Option<&BackendId>) -> Vec<Value> {
    view.effective
        .regions
        .iter()
        .flat_map(|r| r.servers.iter().map(move |s| (r, s)))
        .map(|(r, s)| (r, s, BackendId::new(s.service.clone(), s.address, s.port)))
        .filter(|(_, _, id)| only.is_none_or(|o| o == id))
        .map(|(r, s, id)| {
            let api_made = view.api_objects.servers.contains_key(&id);
            server_json(&id, s.weight, &r.name, api_made)
        })
        .collect()
}

/// An address in a path or body, bracketed or not.
fn address(text: &str) -> Result<IpAddr, ApiError> {
    let bare = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    bare.parse::<IpAddr>()
        .map(|ip| ip.to_canonical())
        .map_err(|_| ApiError::bad_request(format!("address: {text:?} is not an IP address")))
}

fn port(text: &str) -> Result<u16, ApiError> {
    text.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| ApiError::bad_request(format!("port: {text:?} is not a port (1-65535)")))
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
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerBody {
    #[serde(default, alias = "name")]
    service: Option<DnsName>,
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

pub(super) async fn list_servers(State(api): State<Api>) -> Json<Value> {
    listed("servers", servers_of(&api.view(), None))
}

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

pub(super) async fn get_server_by_id(State(api): State<Api>, Path(id): Path<String>) -> Answer {
    get_server(&api, parse_server_id(&id)?).await
}

pub(super) async fn update_server_by_id(
    State(api): State<Api>,
    Path(id): Path<String>,
    b: Result<Json<Value>, JsonRejection>,
) -> Answer {
    update_server(&api, parse_server_id(&id)?, b).await
}

pub(super) async fn delete_server_by_id(State(api): State<Api>, Path(id): Path<String>) -> Answer {
    delete(&api, ObjectKey::Server(parse_server_id(&id)?)).await
}

pub(super) async fn get_server_by_parts(
    State(api): State<Api>,
    Path((s, a, p)): Path<(String, String, String)>,
) -> Answer {
    get_server(&api, server_id(&s, &a, &p)?).await
}

pub(super) async fn update_server_by_parts(
    State(api): State<Api>,
    Path((s, a, p)): Path<(String, String, String)>,
    b: Result<Json<Value>, JsonRejection>,
) -> Answer {
    update_server(&api, server_id(&s, &a, &p)?, b).await
}

pub(super) async fn delete_server_by_parts(
    State(api): State<Api>,
    Path((s, a, p)): Path<(String, String, String)>,
) -> Answer {
    delete(&api, ObjectKey::Server(server_id(&s, &a, &p)?)).await
}

// ---- geolocation ----

fn mapping_json(m: &CustomMapping, api_made: bool) -> Value {
    json!({
        "cidr": m.cidr.trunc().to_string(),
        "region": m.region,
        "comment": m.comment,
        "source": source(api_made),
    })
}

fn mappings_of(view: &View, only: Option<IpNet>) -> Vec<Value> {
    let Some(geo) = view.effective.geolocation() else {
        return Vec::new();
    };
    geo.custom_mappings
        .iter()
        .filter(|m| only.is_none_or(|c| m.cidr.trunc() == c))
        .map(|m| {
            let api_made = view.api_objects.geo_mappings.contains_key(&m.cidr.trunc());
            mapping_json(m, api_made)
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

pub(super) async fn list_mappings(State(api): State<Api>) -> Json<Value> {
    listed("mappings", mappings_of(&api.view(), None))
}

pub(super) async fn create_mapping(
    State(api): State<Api>,
    b: Result<Json<Value>, JsonRejection>,
) -> Answer {
    let m = mapping_of(body(b)?)?;
    put(&api, ApiObject::GeoMapping(m), true).await
}

pub(super) async fn get_mapping(State(api): State<Api>, Path(c): Path<String>) -> Answer {
    let c = cidr(&c)?;
    one(
        mappings_of(&api.view(), Some(c)),
        &format!("mapping of {c}"),
    )
}

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

pub(super) async fn delete_mapping(State(api): State<Api>, Path(c): Path<String>) -> Answer {
    delete(&api, ObjectKey::GeoMapping(cidr(&c)?)).await
}

/// `?ip=`.
#[derive(Deserialize)]
pub(super) struct TestQuery {
    ip: Option<String>,
}

/// Which region an address gets, by which rule, and the ECS scope: every address in `ecs_scope` gets
/// the same region, which is what an EDNS Client Subnet answer tells the resolver.
pub(super) async fn geo_test(State(api): State<Api>, Query(q): Query<TestQuery>) -> Answer {
    let text =
        q.ip.ok_or_else(|| ApiError::bad_request("ip: required, e.g. ?ip=203.0.113.7"))?;
    let ip = address(&text)?;
    let view = api.view();
    let geo = view.geo.as_ref().ok_or_else(|| {
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
    Ok(Json(json!({
        "ip": ip.to_string(),
        "region": m.region,
        "source": rule,
        "matched": matched,
        "scope_prefix": m.scope_prefix,
        "ecs_scope": scope,
    }))
    .into_response())
}
