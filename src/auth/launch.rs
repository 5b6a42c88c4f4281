//! `POST /auth/launch`: an EHR-side caller binds patient, encounter and
//! `fhirContext` to a short-lived `launch` value, then opens the app at
//! `launch_url` (its launch URL with `iss` and `launch`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::grant::{LaunchContext, LAUNCH_KIND};
use super::{now_s, random_secret, AuthServer, LAUNCH_TTL_S};
use crate::policy::scope::Perms;

/// Largest launch request, in bytes.
pub const MAX_LAUNCH_BYTES: usize = 16 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LaunchRequest {
    patient: Option<String>,
    encounter: Option<String>,
    #[serde(rename = "fhirContext")]
    fhir_context: Option<Value>,
    need_patient_banner: Option<bool>,
    /// The app's launch URL; the answer then carries the URL to open.
    app_launch_url: Option<String>,
}

fn err(status: StatusCode, msg: &str) -> Response {
    (
        status,
        Json(json!({"error": "invalid_request", "error_description": msg})),
    )
        .into_response()
}

pub async fn create_launch(
    State(a): State<Arc<AuthServer>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let authz = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let principal = match a.principal(authz, &a.fhir_base).await {
        Ok(p) => p,
        Err(_) => {
            let mut r = err(
                StatusCode::UNAUTHORIZED,
                "an EHR user's or system's bearer token is required",
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"vesta\""),
            );
            return r;
        }
    };
    // Staff who may read patients (not a patient, not a confined token).
    if principal.is_confined() || principal.decide(Perms::R, "Patient").is_denied() {
        return err(
            StatusCode::FORBIDDEN,
            "this token may not create launch contexts",
        );
    }
    if body.len() > MAX_LAUNCH_BYTES {
        return err(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the launch request is too large",
        );
    }
    let req: LaunchRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return err(
                StatusCode::BAD_REQUEST,
                &format!("not a launch request: {e}"),
            )
        }
    };
    for id in [&req.patient, &req.encounter].into_iter().flatten() {
        if !crate::fhir::is_valid_id(id) {
            return err(
                StatusCode::BAD_REQUEST,
                "patient and encounter must be resource ids",
            );
        }
    }
    let ctx = LaunchContext {
        patient: req.patient,
        encounter: req.encounter,
        fhir_context: req.fhir_context,
        need_patient_banner: Some(req.need_patient_banner.unwrap_or(false)),
    };
    let id = random_secret();
    let Ok(value) = serde_json::to_string(&ctx) else {
        return err(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
    };
    if a.store()
        .auth_insert(
            LAUNCH_KIND,
            &id,
            &value,
            None,
            (now_s() + LAUNCH_TTL_S) * 1000,
        )
        .await
        .is_err()
    {
        return err(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
    }
    let mut answer = json!({"launch": id, "expires_in": LAUNCH_TTL_S, "iss": a.fhir_base});
    if let Some(app) = req.app_launch_url {
        match url::Url::parse(&app) {
            Ok(mut u) => {
                u.query_pairs_mut()
                    .append_pair("iss", &a.fhir_base)
                    .append_pair("launch", &id);
                answer["launch_url"] = json!(u.to_string());
            }
            Err(_) => return err(StatusCode::BAD_REQUEST, "app_launch_url is not a URL"),
        }
    }
    (StatusCode::CREATED, Json(answer)).into_response()
}
