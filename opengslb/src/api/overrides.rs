//! Operators' overrides: `POST`/`DELETE /overwatch/backends/{service}/{address}/{port}/override` on one
//! backend, and the original's `/overrides/{service}/{address}` (which never reached DNS there) on every
//! port of a service's address. Both act on the same overrides, which reach DNS and persist.

use std::net::IpAddr;

use axum::{
    Json,
    extract::{Path, State, rejection::JsonRejection},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde::Deserialize;

use super::{Api, ApiError, Change, handlers::rfc3339};
use crate::{
    name::DnsName,
    registry::{BackendKey, BackendStatus, Override},
};

/// Who made a change: the `X-User` header, else `fallback`.
fn user(headers: &HeaderMap, fallback: &str) -> Result<String, ApiError> {
    match headers.get("x-user") {
        None => Ok(fallback.to_owned()),
        Some(v) => v
            .to_str()
            .ok()
            .map(str::trim)
            .filter(|u| !u.is_empty() && u.len() <= 256)
            .map(str::to_owned)
            .ok_or_else(|| {
                ApiError::bad_request("X-User must be 1 to 256 visible ASCII characters")
            }),
    }
}

fn service(text: &str) -> Result<DnsName, ApiError> {
    DnsName::new(text).map_err(|e| ApiError::bad_request(format!("service: {e}")))
}

/// An address in a path, with or without the brackets of an IPv6 literal.
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

fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    b.map(|Json(v)| v)
        .map_err(|e| ApiError::from_status(e.status(), e.body_text()))
}

/// The body of an override.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SetBody {
    healthy: bool,
    #[serde(default)]
    reason: String,
}

fn reason(text: String) -> Result<String, ApiError> {
    if text.len() > 1024 {
        return Err(ApiError::bad_request("reason: at most 1024 bytes"));
    }
    Ok(text)
}

fn now_ms() -> u64 {
    crate::gossip::unix_ms()
}

pub(super) async fn set(
    State(api): State<Api>,
    Path((svc, addr, p)): Path<(String, String, String)>,
    headers: HeaderMap,
    b: Result<Json<SetBody>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let key = BackendKey::new(service(&svc)?, address(&addr)?, port(&p)?);
    let b = body(b)?;
    let o = Override {
        healthy: b.healthy,
        reason: reason(b.reason)?,
        by: user(&headers, "api")?,
        at_ms: now_ms(),
    };
    api.change(vec![Change::SetOverride(key.clone(), o)])
        .await?;
    Ok(Json(serde_json::json!({
        "success": true,
        "message": format!("override set on {key}"),
    })))
}

pub(super) async fn clear(
    State(api): State<Api>,
    Path((svc, addr, p)): Path<(String, String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let key = BackendKey::new(service(&svc)?, address(&addr)?, port(&p)?);
    api.change(vec![Change::ClearOverride(key.clone())]).await?;
    Ok(Json(serde_json::json!({
        "success": true,
        "message": format!("override cleared on {key}"),
    })))
}

fn override_json(b: &BackendStatus) -> Option<serde_json::Value> {
    let o = b.override_.as_ref()?;
    Some(serde_json::json!({
        "service": b.key.service.to_string(),
        "address": b.key.address.to_string(),
        "port": b.key.port,
        "healthy": o.healthy,
        "reason": o.reason,
        "by": o.by,
        "at": rfc3339(o.at_ms),
    }))
}

pub(super) async fn list(State(api): State<Api>) -> Json<serde_json::Value> {
    let view = api.view();
    let rows: Vec<serde_json::Value> = view.backends.iter().filter_map(override_json).collect();
    Json(serde_json::json!({
        "overrides": rows,
        "count": rows.len(),
        "generated_at": rfc3339(view.wall_ms),
    }))
}

/// The backends of a service at an address, every port.
fn backends_at(api: &Api, svc: &str, addr: &str) -> Result<Vec<BackendStatus>, ApiError> {
    let (svc, addr) = (service(svc)?, address(addr)?);
    let found: Vec<BackendStatus> = api
        .view()
        .backends
        .iter()
        .filter(|b| b.key.service == svc && b.key.address == addr)
        .cloned()
        .collect();
    if found.is_empty() {
        return Err(ApiError::not_found(format!(
            "no backend of {svc} at {addr}"
        )));
    }
    Ok(found)
}

pub(super) async fn get_external(
    State(api): State<Api>,
    Path((svc, addr)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let rows: Vec<serde_json::Value> = backends_at(&api, &svc, &addr)?
        .iter()
        .filter_map(override_json)
        .collect();
    if rows.is_empty() {
        return Err(ApiError::not_found(format!(
            "no override on {svc} at {addr}"
        )));
    }
    Ok(Json(serde_json::json!({ "overrides": rows })))
}

/// The original's body: `source` names the tool that set it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ExternalBody {
    #[serde(default)]
    healthy: bool,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    source: Option<String>,
}

pub(super) async fn put_external(
    State(api): State<Api>,
    Path((svc, addr)): Path<(String, String)>,
    headers: HeaderMap,
    b: Result<Json<ExternalBody>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let b = body(b)?;
    let found = backends_at(&api, &svc, &addr)?;
    let by = user(&headers, b.source.as_deref().unwrap_or("api"))?;
    let reason = reason(b.reason)?;
    let at_ms = now_ms();
    let changes = found
        .iter()
        .map(|s| {
            let o = Override {
                healthy: b.healthy,
                reason: reason.clone(),
                by: by.clone(),
                at_ms,
            };
            Change::SetOverride(s.key.clone(), o)
        })
        .collect();
    api.change(changes).await?;
    let rows: Vec<serde_json::Value> = backends_at(&api, &svc, &addr)?
        .iter()
        .filter_map(override_json)
        .collect();
    Ok(Json(serde_json::json!({ "overrides": rows })))
}

pub(super) async fn delete_external(
    State(api): State<Api>,
    Path((svc, addr)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let with: Vec<Change> = backends_at(&api, &svc, &addr)?
        .iter()
        .filter(|b| b.override_.is_some())
        .map(|b| Change::ClearOverride(b.key.clone()))
        .collect();
    if with.is_empty() {
        return Err(ApiError::not_found(format!(
            "no override on {svc} at {addr}"
        )));
    }
    api.change(with).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
