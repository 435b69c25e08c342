//! What requests carry, read into our types: a 400 naming the field for anything that does not parse.

use std::net::IpAddr;

use axum::{Json, extract::rejection::JsonRejection};

use super::ApiError;
use crate::name::DnsName;

/// A service name.
pub(super) fn service(text: &str) -> Result<DnsName, ApiError> {
    DnsName::new(text).map_err(|e| ApiError::bad_request(format!("service: {e}")))
}

/// An address in a path or body, with or without the brackets of an IPv6 literal.
pub(super) fn address(text: &str) -> Result<IpAddr, ApiError> {
    let bare = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    bare.parse::<IpAddr>()
        .map(|ip| ip.to_canonical())
        .map_err(|_| ApiError::bad_request(format!("address: {text:?} is not an IP address")))
}

/// A port, 1-65535.
pub(super) fn port(text: &str) -> Result<u16, ApiError> {
    text.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| ApiError::bad_request(format!("port: {text:?} is not a port (1-65535)")))
}

/// A JSON body, or the extractor's refusal (400, 413, 415, 422) as our JSON error.
pub(super) fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    b.map(|Json(v)| v)
        .map_err(|e| ApiError::from_status(e.status(), e.body_text()))
}
