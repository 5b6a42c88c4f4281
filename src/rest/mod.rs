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

use axum::routing::{any, get};
use axum::Router;

use crate::auth::AuthServer;
use crate::service::FhirService;

/// Shared state of the HTTP app.
pub struct AppState {
    pub service: FhirService,
    pub auth: Arc<AuthServer>,
}

/// The router: FHIR under `/fhir`, health probes, and an OperationOutcome for anything else.
pub fn router(state: Arc<AppState>) -> Router {
    let auth = crate::auth::routes(state.auth.clone());
    Router::new()
        .route("/fhir", any(fhir::handle))
        .route("/fhir/", any(fhir::handle))
        .route("/fhir/{*path}", any(fhir::handle))
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/metrics", get(metrics::metrics))
        .fallback(render::unknown_route)
        .method_not_allowed_fallback(render::method_not_allowed)
        .with_state(state.clone())
        .merge(auth)
        .merge(utoipa_swagger_ui::SwaggerUi::new("/docs").url(
            "/openapi.json",
            openapi::document(&state.auth.issuer, &state.auth.fhir_base),
        ))
}
