//! `/auth/authorize` (GET and POST), then the sign-in and consent pages,
//! ending in a redirect that carries a single-use code, `state` and `iss`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{RawForm, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::clients::Client;
use super::grant::{
    CodeRecord, Grant, LaunchContext, Pending, CODE_KIND, LAUNCH_KIND, PENDING_KIND,
};
use super::pages::{self, PatientChoice};
use super::smart_config::confine_patient;
use super::{now_s, random_secret, sha256_hex, AuthServer, CODE_TTL_S, PENDING_TTL_S};
use crate::policy::scope::{self, Scope};
use crate::policy::{Principal, PrincipalKind};
use crate::service::{Ctx, Interaction};

/// Longest authorization request accepted, in bytes (query or form).
pub const MAX_AUTHORIZE_BYTES: usize = 16 * 1024;
/// Patients listed by the picker.
pub const PICKER_PATIENTS: usize = 50;

fn pairs(raw: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw).into_owned().collect()
}

fn first(params: &[(String, String)], key: &str) -> Option<String> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
}

/// A redirect back to the client with `params` (plus `iss`, RFC 9207).
fn redirect(a: &AuthServer, redirect_uri: &str, params: &[(&str, &str)]) -> Response {
    let Ok(mut url) = url::Url::parse(redirect_uri) else {
        return pages::error(StatusCode::BAD_REQUEST, "the redirect_uri is not a URL");
    };
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
        q.append_pair("iss", &a.issuer);
    }
    (StatusCode::SEE_OTHER, [(header::LOCATION, url.to_string())]).into_response()
}

fn redirect_error(
    a: &AuthServer,
    redirect_uri: &str,
    state: Option<&str>,
    error: &str,
    description: &str,
) -> Response {
    let mut params = vec![("error", error), ("error_description", description)];
    if let Some(s) = state {
        params.push(("state", s));
    }
    redirect(a, redirect_uri, &params)
}

fn client_label(c: &Client) -> String {
    c.client_name.clone().unwrap_or_else(|| c.client_id.clone())
}

pub async fn authorize_get(State(a): State<Arc<AuthServer>>, uri: Uri) -> Response {
    let raw = uri.query().unwrap_or("");
    if raw.len() > MAX_AUTHORIZE_BYTES {
        return pages::error(
            StatusCode::URI_TOO_LONG,
            "the authorization request is too long",
        );
    }
    start(&a, pairs(raw.as_bytes())).await
}

pub async fn authorize_post(State(a): State<Arc<AuthServer>>, RawForm(body): RawForm) -> Response {
    if body.len() > MAX_AUTHORIZE_BYTES {
        return pages::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the authorization request is too long",
        );
    }
    start(&a, pairs(&body)).await
}

/// Checks the request; problems with the client or redirect URI are shown
/// here, everything else goes back to the client as an error redirect.
async fn start(a: &AuthServer, p: Vec<(String, String)>) -> Response {
    let Some(client_id) = first(&p, "client_id") else {
        return pages::error(StatusCode::BAD_REQUEST, "client_id is missing");
    };
    let client = match a.client(&client_id).await {
        Ok(Some(c)) => c,
        Ok(None) => return pages::error(StatusCode::BAD_REQUEST, "unknown client_id"),
        Err(_) => return pages::error(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
    };
    let redirect_uri = match first(&p, "redirect_uri") {
        Some(r) if client.redirect_uris.contains(&r) => r,
        Some(_) => {
            return pages::error(
                StatusCode::BAD_REQUEST,
                "redirect_uri is not registered for this client",
            )
        }
        None if client.redirect_uris.len() == 1 => client.redirect_uris[0].clone(),
        None => return pages::error(StatusCode::BAD_REQUEST, "redirect_uri is missing"),
    };
    let state = first(&p, "state");
    let fail = |error: &str, d: &str| redirect_error(a, &redirect_uri, state.as_deref(), error, d);
    if first(&p, "response_type").as_deref() != Some("code") {
        return fail("unsupported_response_type", "response_type must be code");
    }
    if !client.allows_grant("authorization_code") {
        return fail(
            "unauthorized_client",
            "this client may not use the authorization code grant",
        );
    }
    let Some(challenge) = first(&p, "code_challenge") else {
        return fail(
            "invalid_request",
            "PKCE is required: code_challenge with code_challenge_method=S256",
        );
    };
    if first(&p, "code_challenge_method").as_deref() != Some("S256") {
        return fail("invalid_request", "code_challenge_method must be S256");
    }
    if !(43..=128).contains(&challenge.len()) {
        return fail(
            "invalid_request",
            "code_challenge must be a base64url SHA-256",
        );
    }
    match first(&p, "aud") {
        Some(aud) if aud.trim_end_matches('/') == a.fhir_base => {}
        Some(_) => return fail("invalid_request", "aud must be this server's FHIR base URL"),
        None => return fail("invalid_request", "aud (the FHIR base URL) is required"),
    }
    let mut audience = vec![a.fhir_base.clone()];
    for (k, v) in &p {
        if k == "resource" {
            if !a.known_resource(v) {
                return fail("invalid_target", "resource is not one this server protects");
            }
            let v = v.trim_end_matches('/').to_string();
            if !audience.contains(&v) {
                audience.push(v);
            }
        }
    }
    let scope_text = first(&p, "scope").unwrap_or_default();
    if scope::parse_list(&scope_text).is_empty() {
        return fail(
            "invalid_scope",
            "no scope this server understands was requested",
        );
    }
    let launch = match first(&p, "launch") {
        None => None,
        Some(id) => match a.store().auth_get(LAUNCH_KIND, &id).await {
            Ok(Some(rec)) if rec.expires_ms > crate::fhir::instant::now_ms() => {
                serde_json::from_str::<LaunchContext>(&rec.value).ok()
            }
            Ok(_) => return fail("invalid_request", "unknown or expired launch"),
            Err(_) => return fail("server_error", "internal error"),
        },
    };
    let pending = Pending {
        client_id: client.client_id.clone(),
        redirect_uri,
        state,
        scope: scope_text,
        code_challenge: challenge,
        nonce: first(&p, "nonce"),
        audience,
        launch,
        username: None,
        auth_time_s: None,
    };
    let key = random_secret();
    let Ok(value) = serde_json::to_string(&pending) else {
        return pages::error(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
    };
    let expires = (now_s() + PENDING_TTL_S) * 1000;
    if a.store()
        .auth_insert(PENDING_KIND, &sha256_hex(&key), &value, None, expires)
        .await
        .is_err()
    {
        return pages::error(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
    }
    pages::login(&key, &client_label(&client), None)
}

async fn load_pending(a: &AuthServer, key: &str) -> Option<Pending> {
    let rec = a
        .store()
        .auth_get(PENDING_KIND, &sha256_hex(key))
        .await
        .ok()??;
    if rec.state != crate::store::LIVE || rec.expires_ms < crate::fhir::instant::now_ms() {
        return None;
    }
    serde_json::from_str(&rec.value).ok()
}

/// The scopes this user may grant this client for this request.
fn grantable(a: &AuthServer, pending: &Pending, client: &Client, role: &str) -> Vec<Scope> {
    let requested = scope::parse_list(&pending.scope);
    let role_limit = a.config.role_limit(role).unwrap_or_default();
    let mut granted = scope::grant(&requested, &client.allowed_scopes(), Some(&role_limit));
    // `launch` only makes sense with a launch; `launch/patient` is kept for the picker.
    granted
        .retain(|s| !(matches!(s, Scope::Other(o) if o == "launch") && pending.launch.is_none()));
    granted
}

fn needs_picker(pending: &Pending, granted: &[Scope]) -> bool {
    let asks = granted
        .iter()
        .any(|s| matches!(s, Scope::Other(o) if o == "launch/patient"));
    asks && pending
        .launch
        .as_ref()
        .and_then(|l| l.patient.as_ref())
        .is_none()
}

/// The principal of a signed-in user, for the picker's search.
fn user_principal(a: &AuthServer, user: &super::smart_config::User) -> Principal {
    let role = a.config.roles.get(&user.role);
    let scopes = a.config.role_limit(&user.role).unwrap_or_default();
    let self_patient = a
        .config
        .self_patient(Some(&user.role), user.fhir_user.as_deref());
    Principal {
        kind: PrincipalKind::Token,
        username: Some(user.username.clone()),
        fhir_user: user.fhir_user.clone(),
        role: Some(user.role.clone()),
        scopes: scope::resource_scopes(&scopes)
            .into_iter()
            .map(|mut s| {
                s.context = scope::Context::User;
                s
            })
            .collect(),
        self_patient,
        audit_reader: role.is_some_and(|r| r.audit),
        ..Principal::open()
    }
}

async fn picker_choices(a: &AuthServer, principal: Principal) -> Vec<PatientChoice> {
    let ctx = Ctx::new("picker", Arc::new(principal));
    let search = Interaction::Search {
        target: crate::service::search::SearchTarget::Type("Patient".into()),
        params: vec![
            ("_count".into(), PICKER_PATIENTS.to_string()),
            ("_sort".into(), "family".into()),
        ],
        strict: false,
    };
    let Ok(outcome) = a.service().execute(&ctx, search).await else {
        return vec![];
    };
    let crate::service::Body::Generated(bundle) = outcome.body else {
        return vec![];
    };
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let r = &e["resource"];
            let id = r["id"].as_str()?.to_string();
            let name = &r["name"][0];
            let given: Vec<&str> = name["given"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let label = format!(
                "{} {} ({}, {})",
                given.join(" "),
                name["family"].as_str().unwrap_or(""),
                r["birthDate"].as_str().unwrap_or("birth date unknown"),
                id
            );
            Some(PatientChoice { id, label })
        })
        .collect()
}

async fn consent_page(
    a: &AuthServer,
    key: &str,
    pending: &Pending,
    message: Option<&str>,
) -> Response {
    let (Some(username), Ok(Some(client))) =
        (&pending.username, a.client(&pending.client_id).await)
    else {
        return pages::error(
            StatusCode::BAD_REQUEST,
            "this authorization request has expired; start again",
        );
    };
    let Some(user) = a.config.user(username) else {
        return pages::error(StatusCode::BAD_REQUEST, "unknown user");
    };
    let granted = grantable(a, pending, &client, &user.role);
    let picker = if needs_picker(pending, &granted)
        && !a.config.roles.get(&user.role).is_some_and(|r| r.self_only)
    {
        Some(picker_choices(a, user_principal(a, user)).await)
    } else {
        None
    };
    let scopes: Vec<String> = granted.iter().map(Scope::to_string).collect();
    pages::consent(
        key,
        &client_label(&client),
        &scopes,
        picker.as_deref(),
        message,
    )
}

/// True when `pending` carries an EHR launch for a patient other than
/// `user`'s own record while the user's role is `self_only`.
fn launch_for_another(a: &AuthServer, user: &super::smart_config::User, pending: &Pending) -> bool {
    let own = a
        .config
        .self_patient(Some(&user.role), user.fhir_user.as_deref());
    let asked = pending.launch.as_ref().and_then(|l| l.patient.as_deref());
    confine_patient(own.as_deref(), asked).is_err()
}

/// Ends `pending` and sends the client `access_denied`: a self-only user
/// may not take a launch context naming another patient.
async fn refuse_foreign_launch(a: &AuthServer, key: &str, pending: &Pending) -> Response {
    tracing::warn!(
        kind = "authorize",
        outcome = "refused",
        "self-only user refused a launch for another patient"
    );
    let _ = a
        .store()
        .auth_take(PENDING_KIND, &sha256_hex(key), crate::store::USED)
        .await;
    redirect_error(
        a,
        &pending.redirect_uri,
        pending.state.as_deref(),
        "access_denied",
        "this user may open their own record only",
    )
}

/// `POST /auth/login`
pub async fn login(
    State(a): State<Arc<AuthServer>>,
    extensions: axum::http::Extensions,
    RawForm(body): RawForm,
) -> Response {
    let peer = crate::audit::peer_of(&extensions);
    let f: HashMap<String, String> = pairs(&body).into_iter().collect();
    let key = f.get("pending").cloned().unwrap_or_default();
    let Some(mut pending) = load_pending(&a, &key).await else {
        return pages::error(
            StatusCode::BAD_REQUEST,
            "this authorization request has expired; start again",
        );
    };
    let username = f.get("username").map(String::as_str).unwrap_or("");
    let password = f.get("password").map(String::as_str).unwrap_or("");
    // Hashing is deliberately slow; keep it off the async workers.
    // A locked username (known or not) answers as a wrong password would.
    let locked = a.user_failures.is_locked(username);
    let auth = a.clone();
    let (u, pw) = (username.to_string(), password.to_string());
    let ok = !locked
        && tokio::task::spawn_blocking(move || auth.config.authenticate(&u, &pw).is_some())
            .await
            .unwrap_or(false);
    if ok {
        a.user_failures.succeeded(username);
    } else if !locked {
        a.user_failures.failed(username);
    }
    let who = Principal {
        username: Some(username.to_string()),
        client_id: Some(pending.client_id.clone()),
        ..Principal::anonymous()
    };
    let status = if ok { 200 } else { 401 };
    let detail = (!ok).then(|| "unknown username or wrong password".to_string());
    if let Err(r) = a.audit(who, peer, "login", status, detail).await {
        return r;
    }
    if !ok {
        tracing::warn!(kind = "login", outcome = "failure", "sign-in failed");
        let name = a
            .client(&pending.client_id)
            .await
            .ok()
            .flatten()
            .map(|c| client_label(&c))
            .unwrap_or_default();
        return pages::login(&key, &name, Some("Unknown username or wrong password."));
    }
    tracing::info!(kind = "login", outcome = "success", "signed in");
    if let Some(user) = a.config.user(username) {
        if launch_for_another(&a, user, &pending) {
            return refuse_foreign_launch(&a, &key, &pending).await;
        }
    }
    pending.username = Some(username.to_string());
    pending.auth_time_s = Some(now_s());
    let Ok(value) = serde_json::to_string(&pending) else {
        return pages::error(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
    };
    if !matches!(
        a.store()
            .auth_set_value(PENDING_KIND, &sha256_hex(&key), &value)
            .await,
        Ok(true)
    ) {
        return pages::error(
            StatusCode::BAD_REQUEST,
            "this authorization request has expired; start again",
        );
    }
    consent_page(&a, &key, &pending, None).await
}

/// `POST /auth/consent`: approve (possibly narrowed) or deny; ends the request.
pub async fn consent(State(a): State<Arc<AuthServer>>, RawForm(body): RawForm) -> Response {
    let form = pairs(&body);
    let key = first(&form, "pending").unwrap_or_default();
    let Some(pending) = load_pending(&a, &key).await else {
        return pages::error(
            StatusCode::BAD_REQUEST,
            "this authorization request has expired; start again",
        );
    };
    let (Some(username), Ok(Some(client))) =
        (pending.username.clone(), a.client(&pending.client_id).await)
    else {
        return pages::error(StatusCode::BAD_REQUEST, "sign in first");
    };
    let Some(user) = a.config.user(&username).cloned() else {
        return pages::error(StatusCode::BAD_REQUEST, "unknown user");
    };
    let state = pending.state.as_deref();
    if launch_for_another(&a, &user, &pending) {
        return refuse_foreign_launch(&a, &key, &pending).await;
    }
    if first(&form, "decision").as_deref() != Some("approve") {
        let _ = a
            .store()
            .auth_take(PENDING_KIND, &sha256_hex(&key), crate::store::USED)
            .await;
        return redirect_error(
            &a,
            &pending.redirect_uri,
            state,
            "access_denied",
            "the user denied access",
        );
    }
    // Only scopes offered on the page can be approved (narrowing, never widening).
    let offered = grantable(&a, &pending, &client, &user.role);
    let ticked: Vec<String> = form
        .iter()
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v.clone())
        .collect();
    let approved: Vec<Scope> = offered
        .iter()
        .filter(|s| ticked.contains(&s.to_string()))
        .cloned()
        .collect();
    let mut context = pending.launch.clone().unwrap_or_default();
    let own = a
        .config
        .self_patient(Some(&user.role), user.fhir_user.as_deref());
    if needs_picker(&pending, &approved) {
        if let Some(own) = &own {
            context.patient = Some(own.clone()).filter(|p| !p.is_empty());
        } else {
            let chosen = first(&form, "patient_id")
                .filter(|s| !s.trim().is_empty())
                .or_else(|| first(&form, "patient").filter(|s| !s.is_empty()));
            let Some(pid) = chosen.map(|s| s.trim().to_string()) else {
                return consent_page(&a, &key, &pending, Some("Choose a patient.")).await;
            };
            // The user must be able to read the patient they pick.
            let ctx = Ctx::new("picker", Arc::new(user_principal(&a, &user)));
            let readable = match crate::fhir::ResourceType::parse("Patient") {
                Some(res_type) if crate::fhir::is_valid_id(&pid) => {
                    let read = Interaction::Read {
                        res_type,
                        id: pid.clone(),
                    };
                    a.service().execute(&ctx, read).await.is_ok()
                }
                _ => false,
            };
            if !readable {
                return consent_page(&a, &key, &pending, Some("That patient cannot be chosen."))
                    .await;
            }
            context.patient = Some(pid);
        }
    }
    match confine_patient(own.as_deref(), context.patient.as_deref()) {
        Ok(p) => context.patient = p,
        Err(_) => return refuse_foreign_launch(&a, &key, &pending).await,
    }
    if !a
        .store()
        .auth_take(PENDING_KIND, &sha256_hex(&key), crate::store::USED)
        .await
        .unwrap_or(false)
    {
        return pages::error(
            StatusCode::BAD_REQUEST,
            "this authorization request was used already",
        );
    }
    let grant = Grant {
        client_id: client.client_id.clone(),
        username: Some(user.username.clone()),
        role: Some(user.role.clone()),
        fhir_user: user.fhir_user.clone(),
        scope: scope::to_string(&approved),
        context,
        audience: pending.audience.clone(),
        nonce: pending.nonce.clone(),
        auth_time_s: pending.auth_time_s.unwrap_or_else(now_s),
    };
    let code = random_secret();
    let record = CodeRecord {
        grant,
        redirect_uri: pending.redirect_uri.clone(),
        code_challenge: pending.code_challenge.clone(),
        family: uuid::Uuid::new_v4().to_string(),
    };
    let Ok(value) = serde_json::to_string(&record) else {
        return pages::error(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
    };
    let expires = (now_s() + CODE_TTL_S) * 1000;
    if a.store()
        .auth_insert(
            CODE_KIND,
            &sha256_hex(&code),
            &value,
            Some(&record.family),
            expires,
        )
        .await
        .is_err()
    {
        return pages::error(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
    }
    let mut params = vec![("code", code.as_str())];
    if let Some(s) = state {
        params.push(("state", s));
    }
    redirect(&a, &pending.redirect_uri, &params)
}
