//! `POST /auth/token`: authorization code (PKCE S256, single use), refresh
//! (rotated on every use; reuse of a rotated token revokes its family), and
//! client credentials for SMART Backend Services.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{RawForm, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use openidconnect::{PkceCodeChallenge, PkceCodeVerifier};

use super::grant::{
    CodeRecord, Grant, LaunchContext, ACCESS_KIND, CODE_KIND, REFRESH_KIND, REVOKED_KIND,
};
use super::{constant_time_eq, no_store, now_s, sha256_hex, AuthServer, OAuthError};
use crate::policy::scope::{self, Context, Scope};
use crate::policy::Principal;
use crate::store::{LIVE, USED};

/// Longest token request accepted, in bytes.
pub const MAX_TOKEN_REQUEST_BYTES: usize = 32 * 1024;

pub async fn token(
    State(a): State<Arc<AuthServer>>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    RawForm(body): RawForm,
) -> Response {
    let peer = crate::audit::peer_of(&extensions);
    if body.len() > MAX_TOKEN_REQUEST_BYTES {
        return OAuthError::invalid_request("the token request is too long").into_response();
    }
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let result = match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => authorization_code(&a, &form, &headers).await,
        Some("refresh_token") => refresh(&a, &form, &headers).await,
        Some("client_credentials") => client_credentials(&a, &form, &headers).await,
        Some(_) => Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type is not supported",
        )),
        None => Err(OAuthError::invalid_request("grant_type is missing")),
    };
    let code = if form.get("grant_type").map(String::as_str) == Some("refresh_token") {
        "token-refreshed"
    } else {
        "token-issued"
    };
    match result {
        Ok(body) => {
            tracing::info!(kind = "token", outcome = "issued", "token issued");
            let principal = match body["access_token"].as_str() {
                Some(t) => a.principal_of_issued(t).await,
                None => None,
            }
            .unwrap_or_else(Principal::anonymous);
            if let Err(r) = a.audit(principal, peer, code, 200, None).await {
                return r;
            }
            let mut resp = Json(body).into_response();
            no_store(&mut resp);
            resp
        }
        Err(e) => {
            tracing::info!(
                kind = "token",
                outcome = "refused",
                error = e.error,
                "token request refused"
            );
            let principal = Principal {
                client_id: form.get("client_id").cloned(),
                ..Principal::anonymous()
            };
            let detail = Some(e.error.to_string());
            if let Err(r) = a
                .audit(principal, peer, code, e.status.as_u16(), detail)
                .await
            {
                return r;
            }
            e.into_response()
        }
    }
}

fn need<'a>(form: &'a HashMap<String, String>, key: &str) -> Result<&'a str, OAuthError> {
    form.get(key)
        .map(String::as_str)
        .ok_or_else(|| OAuthError::invalid_request(format!("{key} is missing")))
}

async fn authorization_code(
    a: &AuthServer,
    form: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<serde_json::Value, OAuthError> {
    let client = a.authenticate_client(form, headers).await?;
    let code = need(form, "code")?;
    let key = sha256_hex(code);
    let rec = a
        .store()
        .auth_get(CODE_KIND, &key)
        .await?
        .ok_or_else(|| OAuthError::invalid_grant("unknown code"))?;
    let record: CodeRecord =
        serde_json::from_str(&rec.value).map_err(|_| OAuthError::server_error())?;
    // Single use: a second use revokes what the first one issued, refresh
    // and access tokens alike (RFC 6749 §4.1.2).
    if !a.store().auth_take(CODE_KIND, &key, USED).await? {
        let revoked = a
            .store()
            .auth_revoke_family_tokens(&record.family, ACCESS_KIND, REVOKED_KIND)
            .await?;
        tracing::warn!(
            kind = "token",
            outcome = "code_reuse",
            revoked_access_tokens = revoked,
            "authorization code reused; its tokens are revoked"
        );
        return Err(OAuthError::invalid_grant(
            "the code has been used already or has expired",
        ));
    }
    if record.grant.client_id != client.client_id {
        return Err(OAuthError::invalid_grant(
            "the code was issued to another client",
        ));
    }
    if need(form, "redirect_uri")? != record.redirect_uri {
        return Err(OAuthError::invalid_grant(
            "redirect_uri differs from the authorization request",
        ));
    }
    let verifier = need(form, "code_verifier")?;
    if !(43..=128).contains(&verifier.len()) {
        return Err(OAuthError::invalid_grant(
            "code_verifier must be 43 to 128 characters",
        ));
    }
    let challenge =
        PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(verifier.to_string()));
    if !constant_time_eq(challenge.as_str(), &record.code_challenge) {
        return Err(OAuthError::invalid_grant(
            "code_verifier does not match the code_challenge",
        ));
    }
    a.token_response(
        &record.grant,
        &record.family,
        client.allows_grant("refresh_token") || client.grant_types.is_empty(),
    )
    .await
}

async fn refresh(
    a: &AuthServer,
    form: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<serde_json::Value, OAuthError> {
    let client = a.authenticate_client(form, headers).await?;
    let token = need(form, "refresh_token")?;
    let key = sha256_hex(token);
    let rec = a
        .store()
        .auth_get(REFRESH_KIND, &key)
        .await?
        .ok_or_else(|| OAuthError::invalid_grant("unknown refresh token"))?;
    let family = rec.family.clone().unwrap_or_default();
    let mut grant: Grant =
        serde_json::from_str(&rec.value).map_err(|_| OAuthError::server_error())?;
    if grant.client_id != client.client_id {
        return Err(OAuthError::invalid_grant(
            "the refresh token was issued to another client",
        ));
    }
    if rec.state == USED {
        // A rotated token came back: someone holds a copy. Revoke the family.
        a.store().auth_revoke_family(&family).await?;
        tracing::warn!(
            kind = "token",
            outcome = "reuse",
            "rotated refresh token reused; family revoked"
        );
        return Err(OAuthError::invalid_grant(
            "the refresh token has been used already; its family is revoked",
        ));
    }
    if rec.state != LIVE || !a.store().auth_take(REFRESH_KIND, &key, USED).await? {
        return Err(OAuthError::invalid_grant(
            "the refresh token is revoked or expired",
        ));
    }
    // A refresh may narrow the scopes, never widen them.
    if let Some(asked) = form.get("scope") {
        let held = scope::parse_list(&grant.scope);
        let narrowed = scope::grant(&scope::parse_list(asked), &held, None);
        if narrowed.is_empty() {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                "the scopes asked are not held",
            ));
        }
        grant.scope = scope::to_string(&narrowed);
    }
    a.token_response(&grant, &family, true).await
}

async fn client_credentials(
    a: &AuthServer,
    form: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<serde_json::Value, OAuthError> {
    let client = a.authenticate_client(form, headers).await?;
    if !client.allows_grant("client_credentials") {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            "this client may not use client_credentials",
        ));
    }
    let requested = scope::parse_list(form.get("scope").map(String::as_str).unwrap_or(""));
    let granted: Vec<Scope> = scope::grant(&requested, &client.allowed_scopes(), None)
        .into_iter()
        .filter(|s| matches!(s, Scope::Resource(r) if r.context == Context::System))
        .collect();
    if granted.is_empty() {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "no system/ scope this client may hold was requested",
        ));
    }
    let mut audience = vec![a.fhir_base.clone()];
    if let Some(r) = form.get("resource") {
        if !a.known_resource(r) {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "invalid_target",
                "resource is not one this server protects",
            ));
        }
        let r = r.trim_end_matches('/').to_string();
        if !audience.contains(&r) {
            audience.push(r);
        }
    }
    let grant = Grant {
        client_id: client.client_id.clone(),
        username: None,
        role: None,
        fhir_user: None,
        scope: scope::to_string(&granted),
        context: LaunchContext::default(),
        audience,
        nonce: None,
        auth_time_s: now_s(),
    };
    a.token_response(&grant, "", false).await
}
