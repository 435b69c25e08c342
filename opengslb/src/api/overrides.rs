//! Operators' overrides: `POST`/`DELETE /overwatch/backends/{service}/{address}/{port}/override` on one
//! backend, and the original's `/overrides/{service}/{address}` (which never reached DNS there) on every
//! port of a service's address. Both act on the same overrides, which reach DNS and persist.

use axum::{
    Json,
    extract::{Path, State, rejection::JsonRejection},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    Api, ApiError, Change,
    error::{BodyErrors, ChangeErrors, ErrorBody},
    handlers::rfc3339,
    parse::{address, body, port, service},
};
use crate::registry::{BackendKey, BackendStatus, Override};

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

/// The body of an override.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SetBody {
    /// In DNS (`true`) or out.
    healthy: bool,
    /// Why, for the record (at most 1024 bytes).
    #[serde(default)]
    #[schema(max_length = 1024)]
    reason: String,
}

/// A change done.
#[derive(Serialize, ToSchema)]
pub(super) struct Done {
    success: bool,
    message: String,
}

/// One override.
#[derive(Serialize, ToSchema)]
pub(super) struct OverrideOut {
    service: String,
    address: String,
    port: u16,
    healthy: bool,
    reason: String,
    by: String,
    at: String,
}

/// Every override.
#[derive(Serialize, ToSchema)]
pub(super) struct OverrideList {
    overrides: Vec<OverrideOut>,
    count: usize,
    generated_at: String,
}

/// The overrides of one service's address.
#[derive(Serialize, ToSchema)]
pub(super) struct AddressOverrides {
    overrides: Vec<OverrideOut>,
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

/// Sets an operator's override on one backend; it reaches DNS before the answer.
#[utoipa::path(post, path = "/api/v1/overwatch/backends/{service}/{address}/{port}/override",
    tag = "overrides", params(
        ("service" = String, Path, description = "The service name"),
        ("address" = String, Path, description = "The backend's IP address (IPv6 bare or bracketed)"),
        ("port" = String, Path, description = "The backend's port (1-65535)"),
    ),
    request_body = SetBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Set", body = Done),
        (status = 400, description = "A bad service, address, port or body", body = ErrorBody),
        (status = 404, description = "No such backend", body = ErrorBody),
        BodyErrors,
        ChangeErrors,
    ))]
pub(super) async fn set(
    State(api): State<Api>,
    Path((svc, addr, p)): Path<(String, String, String)>,
    headers: HeaderMap,
    b: Result<Json<SetBody>, JsonRejection>,
) -> Result<Json<Done>, ApiError> {
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
    Ok(Json(Done {
        success: true,
        message: format!("override set on {key}"),
    }))
}

/// Clears one backend's override.
#[utoipa::path(delete, path = "/api/v1/overwatch/backends/{service}/{address}/{port}/override",
    tag = "overrides", params(
        ("service" = String, Path, description = "The service name"),
        ("address" = String, Path, description = "The backend's IP address (IPv6 bare or bracketed)"),
        ("port" = String, Path, description = "The backend's port (1-65535)"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Cleared", body = Done),
        (status = 400, description = "A bad service, address or port", body = ErrorBody),
        (status = 404, description = "No such backend", body = ErrorBody),
        ChangeErrors,
    ))]
pub(super) async fn clear(
    State(api): State<Api>,
    Path((svc, addr, p)): Path<(String, String, String)>,
) -> Result<Json<Done>, ApiError> {
    let key = BackendKey::new(service(&svc)?, address(&addr)?, port(&p)?);
    api.change(vec![Change::ClearOverride(key.clone())]).await?;
    Ok(Json(Done {
        success: true,
        message: format!("override cleared on {key}"),
    }))
}

fn override_json(b: &BackendStatus) -> Option<OverrideOut> {
    let o = b.override_.as_ref()?;
    Some(OverrideOut {
        service: b.key.service.to_string(),
        address: b.key.address.to_string(),
        port: b.key.port,
        healthy: o.healthy,
        reason: o.reason.clone(),
        by: o.by.clone(),
        at: rfc3339(o.at_ms),
    })
}

/// Every override.
#[utoipa::path(get, path = "/api/v1/overrides", tag = "overrides", responses(
    (status = 200, description = "Every override", body = OverrideList),
    (status = 403, description = "Client not allowed", body = ErrorBody),
))]
pub(super) async fn list(State(api): State<Api>) -> Json<OverrideList> {
    let view = api.view();
    let rows: Vec<OverrideOut> = view.backends.iter().filter_map(override_json).collect();
    Json(OverrideList {
        count: rows.len(),
        overrides: rows,
        generated_at: rfc3339(view.wall_ms),
    })
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

/// The overrides on every port of a service's address.
#[utoipa::path(get, path = "/api/v1/overrides/{service}/{address}", tag = "overrides", params(
        ("service" = String, Path, description = "The service name"),
        ("address" = String, Path, description = "The backend's IP address (IPv6 bare or bracketed)"),
    ),
    responses(
        (status = 200, description = "The overrides", body = AddressOverrides),
        (status = 400, description = "A bad service or address", body = ErrorBody),
        (status = 403, description = "Client not allowed", body = ErrorBody),
        (status = 404, description = "No backend there, or no override", body = ErrorBody),
    ))]
pub(super) async fn get_external(
    State(api): State<Api>,
    Path((svc, addr)): Path<(String, String)>,
) -> Result<Json<AddressOverrides>, ApiError> {
    let rows: Vec<OverrideOut> = backends_at(&api, &svc, &addr)?
        .iter()
        .filter_map(override_json)
        .collect();
    if rows.is_empty() {
        return Err(ApiError::not_found(format!(
            "no override on {svc} at {addr}"
        )));
    }
    Ok(Json(AddressOverrides { overrides: rows }))
}

/// The original's body: `source` names the tool that set it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ExternalBody {
    /// In DNS or out (default: out).
    #[serde(default)]
    healthy: bool,
    /// Why (at most 1024 bytes).
    #[serde(default)]
    #[schema(max_length = 1024)]
    reason: String,
    /// Recorded as `by` when there is no `X-User` header.
    #[serde(default)]
    source: Option<String>,
}

/// Sets an override on every port of a service's address.
#[utoipa::path(put, path = "/api/v1/overrides/{service}/{address}", tag = "overrides", params(
        ("service" = String, Path, description = "The service name"),
        ("address" = String, Path, description = "The backend's IP address (IPv6 bare or bracketed)"),
    ),
    request_body = ExternalBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Set", body = AddressOverrides),
        (status = 400, description = "A bad service, address or body", body = ErrorBody),
        (status = 404, description = "No backend there", body = ErrorBody),
        BodyErrors,
        ChangeErrors,
    ))]
pub(super) async fn put_external(
    State(api): State<Api>,
    Path((svc, addr)): Path<(String, String)>,
    headers: HeaderMap,
    b: Result<Json<ExternalBody>, JsonRejection>,
) -> Result<Json<AddressOverrides>, ApiError> {
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
    let rows: Vec<OverrideOut> = backends_at(&api, &svc, &addr)?
        .iter()
        .filter_map(override_json)
        .collect();
    Ok(Json(AddressOverrides { overrides: rows }))
}

/// Clears the overrides on every port of a service's address.
#[utoipa::path(delete, path = "/api/v1/overrides/{service}/{address}", tag = "overrides", params(
        ("service" = String, Path, description = "The service name"),
        ("address" = String, Path, description = "The backend's IP address (IPv6 bare or bracketed)"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Cleared"),
        (status = 400, description = "A bad service or address", body = ErrorBody),
        (status = 404, description = "No backend there, or no override", body = ErrorBody),
        ChangeErrors,
    ))]
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
