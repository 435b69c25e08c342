//! The overwatch's HTTP API (docs/api.md): health and state to read, overrides to set. Handlers read
//! the last [`View`] the control loop published and send changes to the loop as [`Request`]s; a change is
//! answered once it is stored and the table it makes is published to both DNS paths, so a query sent
//! after the response sees it.

mod access;
mod crud;
mod error;
mod explain;
mod handlers;
mod latency;
mod openapi;
mod overrides;
mod page;
mod parse;
mod validate;
mod view;

#[cfg(test)]
mod tests;

use std::{net::SocketAddr, sync::Arc};

use axum::{Router, extract::DefaultBodyLimit, middleware, routing::get, routing::post};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use access::Access;
pub use error::ApiError;
pub use explain::{Explanation, ROTATION, explain};
pub use openapi::ApiDoc;
pub use validate::{Targets, ValidateRequest};
pub use view::{AgentRow, BookView, MemberRow, Readiness, View};

use crate::{
    registry::{BackendKey, Override},
    store::objects::ObjectChange,
};

/// The largest request body read; bigger ones get 413.
pub const MAX_BODY: usize = 64 * 1024;

/// One change the API asks of the control loop.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// Set an operator's override on a backend.
    SetOverride(BackendKey, Override),
    /// Clear a backend's override.
    ClearOverride(BackendKey),
    /// Create, replace or delete a domain, region, server or geolocation mapping made through the API.
    Object(ObjectChange),
}

/// Changes to apply together, and where to say how it went.
#[derive(Debug)]
pub struct Request {
    /// The changes.
    pub changes: Vec<Change>,
    /// Told once the changes are stored and published, or why they were not.
    pub reply: oneshot::Sender<Result<(), ApiError>>,
}

/// What every handler shares: the last view, the way to the control loop, who may call.
#[derive(Clone)]
pub struct Api {
    view: watch::Receiver<Arc<View>>,
    requests: mpsc::Sender<Request>,
    access: Arc<Access>,
    /// Where requests to probe now go; `None`: 503.
    validate: Option<mpsc::Sender<ValidateRequest>>,
}

impl Api {
    /// The API over `view`, sending changes on `requests`.
    pub fn new(
        view: watch::Receiver<Arc<View>>,
        requests: mpsc::Sender<Request>,
        access: Access,
    ) -> Self {
        Self {
            view,
            requests,
            access: Arc::new(access),
            validate: None,
        }
    }

    /// Sends requests to probe backends now on `validate`.
    pub fn with_validation(mut self, validate: mpsc::Sender<ValidateRequest>) -> Self {
        self.validate = Some(validate);
        self
    }

    fn view(&self) -> Arc<View> {
        self.view.borrow().clone()
    }

    /// Sends `changes` to the control loop and waits until they are applied.
    async fn change(&self, changes: Vec<Change>) -> Result<(), ApiError> {
        let (reply, done) = oneshot::channel();
        self.requests
            .send(Request { changes, reply })
            .await
            .map_err(|_| ApiError::unavailable("the overwatch is shutting down"))?;
        done.await
            .map_err(|_| ApiError::unavailable("the overwatch is shutting down"))?
    }
}

/// The routes, with access control, body limits and JSON errors.
pub fn router(api: Api) -> Router {
    let v1 = Router::new()
        .route("/ready", get(handlers::ready))
        .route("/live", get(handlers::live))
        .route("/version", get(handlers::version))
        .route("/health/servers", get(handlers::servers))
        .route("/health/regions", get(handlers::regions))
        .route("/overwatch/backends", get(handlers::backends))
        .route(
            "/overwatch/backends/{service}/{address}/{port}/override",
            post(overrides::set).delete(overrides::clear),
        )
        .route("/overwatch/stats", get(handlers::stats))
        .route("/overwatch/latency", get(latency::list).post(latency::put))
        .route("/overwatch/agents", get(handlers::agents))
        .route("/overwatch/agents/{id}", get(handlers::agent))
        .route("/cluster/status", get(handlers::cluster))
        .route(
            "/domains",
            get(crud::list_domains).post(crud::create_domain),
        )
        .route(
            "/domains/{name}",
            get(crud::get_domain)
                .put(crud::update_domain)
                .delete(crud::delete_domain),
        )
        .route(
            "/regions",
            get(crud::list_regions).post(crud::create_region),
        )
        .route(
            "/regions/{name}",
            get(crud::get_region)
                .put(crud::update_region)
                .delete(crud::delete_region),
        )
        .route(
            "/servers",
            get(crud::list_servers).post(crud::create_server),
        )
        .route(
            "/servers/{id}",
            get(crud::get_server_by_id)
                .put(crud::update_server_by_id)
                .delete(crud::delete_server_by_id),
        )
        .route(
            "/servers/{service}/{address}/{port}",
            get(crud::get_server_by_parts)
                .put(crud::update_server_by_parts)
                .delete(crud::delete_server_by_parts),
        )
        .route(
            "/geo/mappings",
            get(crud::list_mappings).post(crud::create_mapping),
        )
        .route(
            "/geo/mappings/{cidr}",
            get(crud::get_mapping)
                .put(crud::update_mapping)
                .delete(crud::delete_mapping),
        )
        .route("/geo/test", get(crud::geo_test))
        .route("/dns/explain", get(explain::get))
        .route("/overwatch/validate", post(validate::post))
        .route("/openapi.json", get(openapi::document))
        .route("/overrides", get(overrides::list))
        .route(
            "/overrides/{service}/{address}",
            get(overrides::get_external)
                .put(overrides::put_external)
                .delete(overrides::delete_external),
        )
        // After every route: it is set on the routes that exist when it is called.
        .method_not_allowed_fallback(handlers::method_not_allowed);
    Router::new()
        .route("/", get(page::index))
        .route("/status.css", get(page::css))
        .route("/status.js", get(page::js))
        .nest("/api/v1", v1)
        .fallback(handlers::not_found)
        .layer(middleware::from_fn_with_state(api.clone(), access::guard))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(api)
}

/// Serves the API on `listener` until `token` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    api: Api,
    token: CancellationToken,
) -> std::io::Result<()> {
    info!(address = %listener.local_addr()?, "HTTP API at /api/v1, status page at /");
    axum::serve(
        listener,
        router(api).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { token.cancelled().await })
    .await
}
