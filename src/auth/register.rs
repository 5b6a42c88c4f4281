//! `POST /auth/register`: RFC 7591 dynamic client registration of public,
//! symmetric and asymmetric (`jwks` / `jwks_uri`) clients.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::clients::{
    validate_registration, AuthMethod, RegistrationRequest, KIND, MAX_REGISTRATION_BYTES,
};
use super::{no_store, now_s, random_secret, sha256_hex, AuthServer};
use crate::policy::scope::Perms;
use crate::policy::{Decision, PrincipalKind};

fn reg_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut r = (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response();
    no_store(&mut r);
    r
}

/// Is the caller an administrator (initial access token)?
async fn is_admin(a: &AuthServer, headers: &HeaderMap) -> Result<bool, Response> {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(false);
    };
    let p = a.principal(Some(value), &a.fhir_base).await.map_err(|_| {
        reg_error(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "the initial access token is not valid",
        )
    })?;
    // Only a verified token makes an administrator: under `--insecure-open`
    // every caller is "open", and a registration made then would outlive it.
    if p.kind != PrincipalKind::Token {
        return Ok(false);
    }
    Ok(p.role.as_deref() == Some("admin")
        || (p.username.is_none() && p.decide(Perms::ALL, "Patient") == Decision::Unrestricted))
}

pub async fn register(
    State(a): State<Arc<AuthServer>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if body.len() > MAX_REGISTRATION_BYTES {
        return reg_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_client_metadata",
            "the registration is too large",
        );
    }
    let admin = match is_admin(&a, &headers).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let req: RegistrationRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return reg_error(
                StatusCode::BAD_REQUEST,
                "invalid_client_metadata",
                &format!("not a registration document: {e}"),
            )
        }
    };
    let symmetric = matches!(
        req.token_endpoint_auth_method
            .unwrap_or(AuthMethod::ClientSecretBasic),
        AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost
    );
    let secret = symmetric.then(random_secret);
    let client_id = uuid::Uuid::new_v4().to_string();
    let client = match validate_registration(
        req,
        admin,
        client_id,
        secret.as_deref().map(sha256_hex),
        now_s(),
    ) {
        Ok(c) => c,
        Err(e) => return reg_error(StatusCode::BAD_REQUEST, e.error, &e.description),
    };
    if let Some(uri) = &client.jwks_uri {
        if let Err(e) = a.jwks_fetcher().check_registration(uri).await {
            tracing::info!(
                kind = "register",
                reason = e.kind_name(),
                "jwks_uri refused"
            );
            return reg_error(
                StatusCode::BAD_REQUEST,
                "invalid_client_metadata",
                super::jwks_fetch::URI_REFUSED,
            );
        }
    }
    let Ok(value) = serde_json::to_string(&client) else {
        return reg_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "internal error",
        );
    };
    // Registrations do not expire.
    if !matches!(
        a.store()
            .auth_insert(KIND, &client.client_id, &value, None, i64::MAX / 2)
            .await,
        Ok(true)
    ) {
        return reg_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "internal error",
        );
    }
    tracing::info!(kind = "register", "client registered");
    let mut doc = serde_json::to_value(&client).unwrap_or_default();
    if let Some(obj) = doc.as_object_mut() {
        obj.remove("client_secret_sha256");
        if let Some(s) = &secret {
            obj.insert("client_secret".into(), json!(s));
            obj.insert("client_secret_expires_at".into(), json!(0));
        }
    }
    let mut r = (StatusCode::CREATED, Json(doc)).into_response();
    no_store(&mut r);
    r
}
