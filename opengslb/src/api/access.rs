//! Who may call: the client's address against `api.allowed_networks` (IPv4 rules never match an IPv6
//! client; an IPv4-mapped client counts as IPv4), taken from the last `X-Forwarded-For` entry (the
//! address our proxy saw; entries before it are whatever the client wrote) or `X-Real-IP` only with
//! `trust_proxy_headers`; and, when `api.token` is set, a bearer token on every change.
//! Liveness, readiness and version are open to every client, as in the original, so that probes work;
//! so is the OpenAPI document, which holds nothing about this overwatch's state.

use std::net::{IpAddr, SocketAddr};

use axum::{
    extract::{ConnectInfo, Request, State},
    http::{HeaderMap, Method, header::AUTHORIZATION},
    middleware::Next,
    response::{IntoResponse, Response},
};
use ipnet::IpNet;
use sha2::{Digest as _, Sha256};

use super::{Api, ApiError};
use crate::config::ApiConfig;

/// Paths any client may read.
const OPEN: &[&str] = &[
    "/api/v1/ready",
    "/api/v1/live",
    "/api/v1/version",
    "/api/v1/openapi.json",
];

/// The access rules of `api.*`.
#[derive(Clone, Debug)]
pub struct Access {
    allowed: Vec<IpNet>,
    trust_proxy_headers: bool,
    /// SHA-256 of the token, so that comparing takes the same time whatever the guess.
    token: Option<[u8; 32]>,
}

impl Access {
    /// The rules a config gives.
    pub fn from_config(cfg: &ApiConfig) -> Self {
        Self {
            allowed: cfg.allowed_networks.clone(),
            trust_proxy_headers: cfg.trust_proxy_headers,
            token: cfg.token.as_ref().map(|t| digest(t.expose())),
        }
    }

    /// The address the rules judge: the peer's, or the proxy's word for the client when trusted.
    fn client(&self, peer: IpAddr, headers: &HeaderMap) -> Result<IpAddr, ApiError> {
        if self.trust_proxy_headers {
            let forwarded = headers
                .get("x-forwarded-for")
                .or_else(|| headers.get("x-real-ip"));
            if let Some(value) = forwarded {
                // A proxy appends the address it saw: a client can write anything before it.
                let last = value
                    .to_str()
                    .ok()
                    .and_then(|v| v.rsplit(',').next())
                    .map(str::trim)
                    .unwrap_or_default();
                return last
                    .parse::<IpAddr>()
                    .map(|ip| ip.to_canonical())
                    .map_err(|_| {
                        ApiError::bad_request(format!(
                            "proxy header client address {last:?} is not an IP address"
                        ))
                    });
            }
        }
        Ok(peer.to_canonical())
    }

    fn allows(&self, client: IpAddr) -> bool {
        self.allowed.iter().any(|net| net.contains(&client))
    }

    fn token_ok(&self, headers: &HeaderMap) -> bool {
        let Some(want) = &self.token else {
            return true;
        };
        let given = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        given.is_some_and(|g| {
            digest(g)
                .iter()
                .zip(want)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
        })
    }
}

fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// The middleware: refuses what the rules refuse, with a JSON error.
pub(super) async fn guard(State(api): State<Api>, req: Request, next: Next) -> Response {
    match check(&api.access, &req) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

pub(super) fn check(access: &Access, req: &Request) -> Result<(), ApiError> {
    let path = req.uri().path();
    if OPEN.contains(&path) {
        return Ok(());
    }
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .ok_or_else(|| ApiError::internal("no peer address"))?;
    let client = access.client(peer, req.headers())?;
    if !access.allows(client) {
        return Err(ApiError::forbidden(format!(
            "client {client} is not in api.allowed_networks"
        )));
    }
    let reads = [Method::GET, Method::HEAD];
    if !reads.contains(req.method()) && !access.token_ok(req.headers()) {
        return Err(ApiError::unauthorized(
            "changes need the api.token as \"Authorization: Bearer <token>\"",
        ));
    }
    Ok(())
}
