//! Discovery: `.well-known/smart-configuration`, OpenID Connect and RFC 8414
//! metadata, the JWKS, and the style document apps may use.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::AuthServer;

/// Scopes the server understands (for the metadata).
fn scopes_supported() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = crate::policy::scope::KNOWN_OTHER.to_vec();
    v.extend([
        "patient/*.cruds",
        "user/*.cruds",
        "system/*.cruds",
        "patient/*.read",
        "patient/*.write",
        "user/*.read",
        "user/*.write",
        "system/*.read",
        "system/*.write",
    ]);
    v
}

fn endpoints(a: &AuthServer) -> Value {
    let i = &a.issuer;
    json!({
        "issuer": i,
        "jwks_uri": format!("{i}/auth/jwks"),
        "authorization_endpoint": format!("{i}/auth/authorize"),
        "token_endpoint": format!("{i}/auth/token"),
        "introspection_endpoint": format!("{i}/auth/introspect"),
        "revocation_endpoint": format!("{i}/auth/revoke"),
        "registration_endpoint": format!("{i}/auth/register"),
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": scopes_supported(),
    })
}

/// `GET /.well-known/smart-configuration` (also under the FHIR base).
pub async fn smart_configuration(State(a): State<Arc<AuthServer>>) -> Json<Value> {
    let mut doc = endpoints(&a);
    doc["management_endpoint"] = json!(format!("{}/auth/launch", a.issuer));
    doc["capabilities"] = json!([
        "launch-ehr",
        "launch-standalone",
        "authorize-post",
        "client-public",
        "client-confidential-symmetric",
        "client-confidential-asymmetric",
        "sso-openid-connect",
        "context-passthrough-banner",
        "context-passthrough-style",
        "context-ehr-patient",
        "context-ehr-encounter",
        "context-standalone-patient",
        "permission-offline",
        "permission-online",
        "permission-patient",
        "permission-user",
        "permission-v1",
        "permission-v2"
    ]);
    Json(doc)
}

/// `GET /.well-known/openid-configuration`
pub async fn openid_configuration(State(a): State<Arc<AuthServer>>) -> Json<Value> {
    let mut doc = endpoints(&a);
    doc["subject_types_supported"] = json!(["public"]);
    doc["id_token_signing_alg_values_supported"] = json!(["RS256"]);
    doc["claims_supported"] = json!([
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "auth_time",
        "nonce",
        "fhirUser"
    ]);
    doc["authorization_response_iss_parameter_supported"] = json!(true);
    Json(doc)
}

/// `GET /.well-known/oauth-authorization-server` (RFC 8414).
pub async fn oauth_metadata(State(a): State<Arc<AuthServer>>) -> Json<Value> {
    let mut doc = endpoints(&a);
    doc["authorization_response_iss_parameter_supported"] = json!(true);
    Json(doc)
}

/// `GET /auth/jwks`: the current and the previous public key.
pub async fn jwks(State(a): State<Arc<AuthServer>>) -> Json<Value> {
    Json(a.keys().jwks())
}

/// `GET /auth/smart-style.json`
pub async fn smart_style() -> Json<Value> {
    Json(json!({
        "color_background": "#f6f7f9",
        "color_highlight": "#1f6feb",
        "color_modal_backdrop": "",
        "color_shadow": "",
        "dim_border_radius": "6px",
        "dim_font_size": "14px",
        "dim_spacing_size": "16px",
        "font_family_body": "system-ui, sans-serif",
        "font_family_heading": "system-ui, sans-serif"
    }))
}
