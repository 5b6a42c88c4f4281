//! `POST /auth/introspect` (RFC 7662) and `POST /auth/revoke` (RFC 7009).
//! Both need an authenticated client (or, for introspection, a valid bearer
//! token of the caller's own).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{RawForm, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::grant::{Grant, REFRESH_KIND, REVOKED_KIND};
use super::{no_store, sha256_hex, AuthServer, OAuthError};
use crate::store::LIVE;

/// Longest introspection or revocation request, in bytes.
pub const MAX_REQUEST_BYTES: usize = 32 * 1024;

fn form_of(body: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

/// The caller: an authenticated client, or the holder of a valid token.
async fn caller(
    a: &AuthServer,
    form: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<(), OAuthError> {
    if let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        if let Some(token) = auth.strip_prefix("Bearer ") {
            return a
                .verify(token.trim(), &a.fhir_base)
                .await
                .map(|_| ())
                .map_err(|_| OAuthError::invalid_client("the bearer token is not valid"));
        }
    }
    a.authenticate_client(form, headers).await.map(|_| ())
}

pub async fn introspect(
    State(a): State<Arc<AuthServer>>,
    headers: HeaderMap,
    RawForm(body): RawForm,
) -> Response {
    if body.len() > MAX_REQUEST_BYTES {
        return OAuthError::invalid_request("the request is too long").into_response();
    }
    let form = form_of(&body);
    if let Err(e) = caller(&a, &form, &headers).await {
        return e.into_response();
    }
    let Some(token) = form.get("token") else {
        return OAuthError::invalid_request("token is missing").into_response();
    };
    let answer = match a.verify(token, &a.fhir_base).await {
        Ok(c) => {
            let mut v = json!({
                "active": true, "scope": c.scope, "client_id": c.client_id, "sub": c.sub,
                "exp": c.exp, "iat": c.iat, "iss": c.iss, "aud": c.aud, "jti": c.jti, "token_type": "Bearer",
            });
            if c.sub != c.client_id {
                v["username"] = json!(c.sub);
            }
            // The patient the token reaches (a self-only user's own record).
            let patient = a.principal_of(&c).patient;
            for (k, val) in [
                ("patient", &patient),
                ("encounter", &c.encounter),
                ("fhirUser", &c.fhir_user),
            ] {
                if let Some(x) = val {
                    v[k] = json!(x);
                }
            }
            v
        }
        Err(_) => refresh_status(&a, token)
            .await
            .unwrap_or_else(|| json!({"active": false})),
    };
    let mut resp = Json(answer).into_response();
    no_store(&mut resp);
    resp
}

async fn refresh_status(a: &AuthServer, token: &str) -> Option<Value> {
    let rec = a
        .store()
        .auth_get(REFRESH_KIND, &sha256_hex(token))
        .await
        .ok()??;
    if rec.state != LIVE || rec.expires_ms < crate::fhir::instant::now_ms() {
        return None;
    }
    let g: Grant = serde_json::from_str(&rec.value).ok()?;
    Some(json!({
        "active": true, "scope": g.scope, "client_id": g.client_id, "token_type": "refresh_token",
        "exp": rec.expires_ms / 1000, "sub": g.username.unwrap_or(g.client_id.clone()),
    }))
}

pub async fn revoke(
    State(a): State<Arc<AuthServer>>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    RawForm(body): RawForm,
) -> Response {
    let peer = crate::audit::peer_of(&extensions);
    if body.len() > MAX_REQUEST_BYTES {
        return OAuthError::invalid_request("the request is too long").into_response();
    }
    let form = form_of(&body);
    let client = match a.authenticate_client(&form, &headers).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let Some(token) = form.get("token") else {
        return OAuthError::invalid_request("token is missing").into_response();
    };
    // A refresh token: revoke its whole family.
    if let Ok(Some(rec)) = a.store().auth_get(REFRESH_KIND, &sha256_hex(token)).await {
        let owner = serde_json::from_str::<Grant>(&rec.value)
            .map(|g| g.client_id)
            .unwrap_or_default();
        if owner == client.client_id {
            if let Some(f) = rec.family {
                if a.store().auth_revoke_family(&f).await.is_err() {
                    return OAuthError::server_error().into_response();
                }
            }
            tracing::info!(kind = "revoke", "refresh token family revoked");
            let who = crate::policy::Principal {
                client_id: Some(client.client_id.clone()),
                ..crate::policy::Principal::anonymous()
            };
            if let Err(r) = a.audit(who, peer, "token-revoked", 200, None).await {
                return r;
            }
        }
        return StatusCode::OK.into_response();
    }
    // An access token of ours: remember its jti until it would expire anyway.
    if let Ok(c) = a.verify(token, &a.fhir_base).await {
        if c.client_id == client.client_id
            && a.store()
                .auth_revoke_token(REVOKED_KIND, &c.jti, (c.exp + 60) * 1000)
                .await
                .is_err()
        {
            return OAuthError::server_error().into_response();
        }
        tracing::info!(kind = "revoke", "access token revoked");
        if c.client_id == client.client_id {
            if let Err(r) = a
                .audit(a.principal_of(&c), peer, "token-revoked", 200, None)
                .await
            {
                return r;
            }
        }
    }
    // RFC 7009: unknown tokens are not an error.
    StatusCode::OK.into_response()
}
