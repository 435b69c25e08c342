//! `GET /openapi.json`: the API as an OpenAPI 3 document, generated from the handlers' types and their
//! `#[utoipa::path]` annotations, so it cannot drift from what they answer.

use std::sync::LazyLock;

use axum::{
    http::header::CONTENT_TYPE,
    response::{IntoResponse, Response},
};
use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};

use super::{crud, error::ErrorBody, explain, handlers, latency, overrides, validate};

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "OpenGSLB overwatch API",
        description = "Health, backends, agents, overrides, domains, regions, servers, geolocation \
                       mappings and DNS explanations (docs/api.md). \
                       Every error answers {error, message}; a client outside api.allowed_networks \
                       gets 403 on every path but ready, live, version and this document."
    ),
    paths(
        handlers::ready,
        handlers::live,
        handlers::version,
        handlers::servers,
        handlers::regions,
        handlers::backends,
        overrides::set,
        overrides::clear,
        handlers::stats,
        latency::list,
        latency::put,
        handlers::agents,
        handlers::agent,
        handlers::cluster,
        overrides::list,
        overrides::get_external,
        overrides::put_external,
        overrides::delete_external,
        explain::get,
        validate::post,
        crud::list_domains,
        crud::get_domain,
        crud::create_domain,
        crud::update_domain,
        crud::delete_domain,
        crud::list_regions,
        crud::get_region,
        crud::create_region,
        crud::update_region,
        crud::delete_region,
        crud::list_servers,
        crud::create_server,
        crud::get_server_by_id,
        crud::update_server_by_id,
        crud::delete_server_by_id,
        crud::get_server_by_parts,
        crud::update_server_by_parts,
        crud::delete_server_by_parts,
        crud::list_mappings,
        crud::create_mapping,
        crud::get_mapping,
        crud::update_mapping,
        crud::delete_mapping,
        crud::geo_test,
    ),
    components(schemas(ErrorBody)),
    modifiers(&Bearer)
)]
pub struct ApiDoc;

/// `api.token` as the bearer scheme that changes name.
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let scheme =
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build());
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", scheme);
    }
}

/// Rendered once: it depends on nothing but the build.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\":\"internal\",\"message\":\"{e}\"}}"))
});

/// The OpenAPI 3 document of this API.
pub(super) async fn document() -> Response {
    ([(CONTENT_TYPE, "application/json")], DOCUMENT.as_str()).into_response()
}
