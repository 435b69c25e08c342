//! `POST /overwatch/validate`: probe static backends now instead of at their next interval. The loop owns
//! the prober, so the request goes to it; results come back as every probe's do and reach DNS the same
//! way.

use std::net::IpAddr;

use axum::{
    Json,
    extract::{Query, State, rejection::QueryRejection},
    http::StatusCode,
};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use utoipa::ToSchema;

use super::{Api, ApiError, error::ErrorBody};
use crate::{name::DnsName, registry::BackendKey};

/// Which backends to probe now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Targets {
    /// Every static backend.
    All,
    /// Every backend of a service.
    Service(DnsName),
    /// Every port of a service's address.
    Address(DnsName, IpAddr),
    /// One backend.
    One(BackendKey),
}

impl Targets {
    /// Whether `key` is one of them.
    pub fn matches(&self, key: &BackendKey) -> bool {
        match self {
            Self::All => true,
            Self::Service(s) => key.service == *s,
            Self::Address(s, a) => key.service == *s && key.address == *a,
            Self::One(k) => k == key,
        }
    }
}

/// A request to the control loop to probe `targets` now; the reply lists the backends probed.
#[derive(Debug)]
pub struct ValidateRequest {
    /// What to probe.
    pub targets: Targets,
    /// Told which backends were scheduled, or why none could be.
    pub reply: oneshot::Sender<Result<Vec<BackendKey>, ApiError>>,
}

/// The query of `/overwatch/validate`: nothing (every static backend), a service, a service and an
/// address (every port), or all three.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ValidateQuery {
    /// A service name.
    service: Option<String>,
    /// An address of the service (needs `service`).
    address: Option<String>,
    /// A port of that address (needs `address`).
    port: Option<String>,
}

fn targets(q: ValidateQuery) -> Result<Targets, ApiError> {
    use super::parse::{address, port, service};
    match (q.service, q.address, q.port) {
        (None, None, None) => Ok(Targets::All),
        (Some(s), None, None) => Ok(Targets::Service(service(&s)?)),
        (Some(s), Some(a), None) => Ok(Targets::Address(service(&s)?, address(&a)?)),
        (Some(s), Some(a), Some(p)) => Ok(Targets::One(BackendKey::new(
            service(&s)?,
            address(&a)?,
            port(&p)?,
        ))),
        _ => Err(ApiError::bad_request(
            "address needs service, and port needs service and address",
        )),
    }
}

/// One backend probed.
#[derive(Serialize, ToSchema)]
pub struct Probed {
    service: String,
    address: String,
    port: u16,
}

/// What was scheduled.
#[derive(Serialize, ToSchema)]
pub struct Scheduled {
    /// The backends whose probe starts now (or right after the one in flight).
    scheduled: Vec<Probed>,
    /// How many.
    count: usize,
    /// Where the results show.
    message: String,
}

/// Probes static backends now. The results reach `/overwatch/backends` (`validation_healthy`) and DNS
/// as every probe's do, within the probe's timeout.
#[utoipa::path(
    post,
    path = "/api/v1/overwatch/validate",
    tag = "overwatch",
    params(ValidateQuery),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Probes scheduled", body = Scheduled),
        (status = 400, description = "A bad service, address or port", body = ErrorBody),
        (status = 401, description = "No or a wrong token", body = ErrorBody),
        (status = 403, description = "Client not allowed", body = ErrorBody),
        (status = 404, description = "No such backend", body = ErrorBody),
        (status = 409, description = "Validation is off, or the backend is not one the overwatch probes", body = ErrorBody),
        (status = 503, description = "Shutting down, or too many requests at once", body = ErrorBody),
    )
)]
pub(super) async fn post(
    State(api): State<Api>,
    query: Result<Query<ValidateQuery>, QueryRejection>,
) -> Result<(StatusCode, Json<Scheduled>), ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let targets = targets(q)?;
    let tx = api
        .validate
        .as_ref()
        .ok_or_else(|| ApiError::unavailable("validation requests are not served here"))?;
    let (reply, done) = oneshot::channel();
    let gone = || ApiError::unavailable("the overwatch is shutting down");
    tx.send(ValidateRequest { targets, reply })
        .await
        .map_err(|_| gone())?;
    let keys = done.await.map_err(|_| gone())??;
    let scheduled: Vec<Probed> = keys
        .iter()
        .map(|k| Probed {
            service: k.service.to_string(),
            address: k.address.to_string(),
            port: k.port,
        })
        .collect();
    Ok((
        StatusCode::ACCEPTED,
        Json(Scheduled {
            count: scheduled.len(),
            scheduled,
            message: "probes started; results show in /api/v1/overwatch/backends".to_owned(),
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: Option<&str>, a: Option<&str>, p: Option<&str>) -> ValidateQuery {
        ValidateQuery {
            service: s.map(str::to_owned),
            address: a.map(str::to_owned),
            port: p.map(str::to_owned),
        }
    }

    #[test]
    fn query_shapes() {
        assert_eq!(targets(q(None, None, None)).unwrap(), Targets::All);
        let t = targets(q(Some("App.Test"), Some("[2001:db8::1]"), None)).unwrap();
        let key = BackendKey::new(
            "app.test".parse().unwrap(),
            "2001:db8::1".parse().unwrap(),
            80,
        );
        assert!(t.matches(&key));
        let other = BackendKey::new(
            "app.test".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
            80,
        );
        assert!(!t.matches(&other));
        for bad in [
            q(None, Some("10.0.0.1"), None),
            q(Some("app.test"), None, Some("80")),
            q(Some("app.test"), Some("10.0.0.1"), Some("0")),
            q(Some("a..b"), None, None),
        ] {
            assert_eq!(targets(bad).unwrap_err().status, StatusCode::BAD_REQUEST);
        }
    }
}
