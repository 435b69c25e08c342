//! The status page at `/`: static HTML, CSS and JS built into the binary, which poll the JSON API
//! (`/api/v1/ready`, `/api/v1/overwatch/backends`) every second, so the page shows exactly what the API
//! does and has no state of its own. Served behind the same access rules as the API.

use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS,
};
use axum::response::IntoResponse;

const HTML: &str = include_str!("page/index.html");
const CSS: &str = include_str!("page/status.css");
const JS: &str = include_str!("page/status.js");

/// Only this origin's files and API: the page loads nothing from elsewhere, and injected markup
/// (which textContent already prevents) could run no inline script.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, content_type),
            // A new binary may bring a new page: always revalidate.
            (CACHE_CONTROL, "no-cache"),
            (CONTENT_SECURITY_POLICY, CSP),
            (X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
}

pub(super) async fn index() -> impl IntoResponse {
    asset("text/html; charset=utf-8", HTML)
}

pub(super) async fn css() -> impl IntoResponse {
    asset("text/css; charset=utf-8", CSS)
}

pub(super) async fn js() -> impl IntoResponse {
    asset("text/javascript; charset=utf-8", JS)
}
