//! Errors as the API answers them: a status and a JSON body `{error, message}`.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Serialize;

/// An error answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A short machine-readable code (`not_found`, `bad_request`, ...).
    pub code: &'static str,
    /// What went wrong, for a person.
    pub message: String,
}

/// The answers every change (POST, PUT, DELETE) of the API can get besides its own, for the OpenAPI
/// document: one list, not a copy in each handler's annotation.
#[derive(utoipa::IntoResponses)]
#[allow(
    dead_code,
    reason = "only its annotations are read, by the OpenAPI document"
)]
pub(super) enum ChangeErrors {
    /// A change without the token, or with a wrong one.
    #[response(status = 401, description = "No or a wrong token")]
    Unauthorized(ErrorBody),
    /// A client outside `api.allowed_networks`.
    #[response(status = 403, description = "Client not allowed")]
    Forbidden(ErrorBody),
    /// The store cannot take the change.
    #[response(
        status = 503,
        description = "The store is unavailable, or shutting down"
    )]
    Unavailable(ErrorBody),
}

/// The answers every change with a JSON body can get for the body alone, for the OpenAPI document.
#[derive(utoipa::IntoResponses)]
#[allow(
    dead_code,
    reason = "only its annotations are read, by the OpenAPI document"
)]
pub(super) enum BodyErrors {
    /// Over the body limit.
    #[response(status = 413, description = "Body too large")]
    TooLarge(ErrorBody),
    /// Not `application/json`.
    #[response(status = 415, description = "Not JSON")]
    NotJson(ErrorBody),
    /// JSON of the wrong shape.
    #[response(status = 422, description = "A body of the wrong shape")]
    WrongShape(ErrorBody),
}

/// The body of every error answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A short machine-readable code: `bad_request`, `unauthorized`, `forbidden`, `not_found`,
    /// `method_not_allowed`, `conflict`, `too_large`, `unsupported_media_type`, `unavailable`, `internal`.
    pub error: &'static str,
    /// What went wrong, for a person.
    pub message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 404: no such thing.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 405: a known path without this method.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            message,
        )
    }

    /// 409: the request clashes with what exists (an object of the config file, one that exists already
    /// or is still in use) or with the configuration (validation off).
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 401: a change without the right token.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403: a client outside `api.allowed_networks`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 503: the overwatch cannot do it now (shutting down, store unavailable).
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// 500: a fault of ours.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// Any status, from a rejected extractor.
    pub fn from_status(status: StatusCode, message: impl Into<String>) -> Self {
        let code = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            StatusCode::UNPROCESSABLE_ENTITY | StatusCode::BAD_REQUEST => "bad_request",
            _ => "error",
        };
        Self::new(status, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code,
            message: self.message,
        };
        (self.status, Json(body)).into_response()
    }
}
