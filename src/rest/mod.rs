//! The FHIR REST door: axum routes that parse HTTP into an [`Interaction`],
//! call the service, and render the outcome as FHIR JSON or XML.
//!
//! [`Interaction`]: crate::service::Interaction

mod body;
mod fhir;
mod health;
mod metrics;
pub mod openapi;
mod render;

use std::sync::Arc;

use axum::routing::{any, get, MethodRouter};
use axum::Router;

use crate::auth::AuthServer;
use crate::service::FhirService;

/// Shared state of the HTTP app.
pub struct AppState {
    pub service: FhirService,
    pub auth: Arc<AuthServer>,
}

/// Where the browsable API documentation (Swagger UI) is mounted.
pub const DOCS_PATH: &str = "/docs";
/// Where the OpenAPI document is served.
pub const OPENAPI_PATH: &str = "/openapi.json";

/// The REST door's own routes with their handlers; [`router`] mounts exactly
/// these (and [`route_paths`] lists them for the OpenAPI check).
fn rest_routes() -> Vec<(&'static str, MethodRouter<Arc<AppState>>)> {
    vec![
        ("/fhir", any(fhir::handle)),
        ("/fhir/", any(fhir::handle)),
        ("/fhir/{*path}", any(fhir::handle)),
        ("/health/live", get(health::live)),
        ("/health/ready", get(health::ready)),
        ("/metrics", get(metrics::metrics)),
    ]
}

/// Every path the router has, as axum route patterns: the REST door's, the
/// authorization server's ([`crate::auth::route_paths`]) and those Swagger UI
/// mounts (`/docs` redirects to `/docs/`, `/docs/{*rest}` serves its assets).
/// The OpenAPI tests check that each is documented.
pub fn route_paths() -> Vec<String> {
    let mut paths: Vec<String> = rest_routes()
        .into_iter()
        .map(|(p, _)| p.to_string())
        .collect();
    paths.extend(crate::auth::route_paths().into_iter().map(str::to_string));
    paths.extend([
        DOCS_PATH.to_string(),
        format!("{DOCS_PATH}/"),
        format!("{DOCS_PATH}/{{*rest}}"),
        OPENAPI_PATH.to_string(),
        crate::mcp::http::MCP_PATH.to_string(),
        crate::mcp::http::METADATA_ROOT_PATH.to_string(),
        crate::mcp::http::METADATA_PATH.to_string(),
    ]);
    paths
}

/// The router: FHIR under `/fhir`, health probes, and an OperationOutcome for anything else.
pub fn router(state: Arc<AppState>) -> Router {
    let auth = crate::auth::routes(state.auth.clone());
    let rest = rest_routes()
        .into_iter()
        .fold(Router::new(), |r, (path, handler)| r.route(path, handler));
    rest.fallback(render::unknown_route)
        .method_not_allowed_fallback(render::method_not_allowed)
        .with_state(state.clone())
        .merge(auth)
        .merge(utoipa_swagger_ui::SwaggerUi::new(DOCS_PATH).url(
            OPENAPI_PATH,
            openapi::document(&state.auth.issuer, &state.auth.fhir_base),
        ))
}
