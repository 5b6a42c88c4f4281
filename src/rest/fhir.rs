//! The one handler behind `/fhir/*`: HTTP in, [`Interaction`] out, outcome rendered.
//!
//! [`Interaction`]: crate::service::Interaction

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::Extensions;
use axum::http::{header, HeaderMap, Method, Uri};
use axum::response::Response;

use super::body::{decode, read_limited};
use super::render::{self, Presentation};
use super::AppState;
use crate::auth::BearerError;
use crate::fhir::media::Format;
use crate::policy::Principal;
use crate::service::interaction::{parse, query_pairs, RawRequest};
use crate::service::{Ctx, Interaction, Preference, ServiceError};

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn presentation(uri: &Uri, headers: &HeaderMap) -> Presentation {
    let params = query_pairs(uri.query().unwrap_or(""));
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    Presentation {
        format: Format::negotiate(get("_format"), header_str(headers, header::ACCEPT)),
        pretty: get("_pretty") == Some("true"),
        preference: Preference::from_header(headers.get("prefer").and_then(|v| v.to_str().ok())),
    }
}

/// The principal for a request: the bearer token's, or anonymous for the
/// CapabilityStatement (which SMART clients read before they have a token).
async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    interaction: &Interaction,
) -> Result<Principal, ServiceError> {
    let authz = header_str(headers, header::AUTHORIZATION);
    match state.auth.principal(authz, &state.auth.fhir_base).await {
        Ok(p) => Ok(p),
        Err(BearerError::Missing) if matches!(interaction, Interaction::Capabilities) => {
            Ok(Principal::anonymous())
        }
        Err(e) => Err(unauthorized(e)),
    }
}

/// The `WWW-Authenticate` challenge for a 401 (RFC 6750 §3: no error code
/// when no token was sent).
fn www_authenticate(e: &ServiceError) -> &'static str {
    if e.issues.iter().any(|i| i.diagnostics.starts_with(MISSING)) {
        "Bearer realm=\"vesta\""
    } else {
        "Bearer realm=\"vesta\", error=\"invalid_token\""
    }
}

const MISSING: &str = "an access token is required";

/// 401 with the reason.
fn unauthorized(e: BearerError) -> ServiceError {
    let message = match e {
        BearerError::Missing => format!("{MISSING} (Authorization: Bearer …)"),
        BearerError::Invalid(why) => why,
    };
    ServiceError::new(401, crate::fhir::outcome::Issue::error("login", message))
}

pub async fn handle(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    extensions: Extensions,
    body: Body,
) -> Response {
    let started = std::time::Instant::now();
    let p = presentation(&uri, &headers);
    let mut label = String::from("invalid");
    let mut challenge: Option<&'static str> = None;
    let service = &state.service;
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let peer = crate::audit::peer_of(&extensions);
    // Set once the request's AuditEvent is taken care of (by the service, or
    // here for a refusal at authentication).
    let mut audited = false;
    let result = async {
        let format_param = query_pairs(uri.query().unwrap_or(""))
            .into_iter()
            .find(|(k, _)| k == "_format")
            .map(|(_, v)| v);
        if !Format::acceptable(format_param.as_deref(), header_str(&headers, header::ACCEPT)) {
            return Err(ServiceError::new(
                406,
                crate::fhir::outcome::Issue::error(
                    "not-supported",
                    "this server answers in FHIR JSON (application/fhir+json) or XML (application/fhir+xml) only",
                ),
            ));
        }
        let bytes = read_limited(body, service.limits().max_body_bytes).await?;
        let path = uri.path().trim_start_matches("/fhir").trim_matches('/');
        let is_search = path.ends_with("_search");
        let decoded = decode(
            &bytes,
            header_str(&headers, header::CONTENT_TYPE),
            method.as_str(),
            is_search,
        )?;
        let interaction = parse(RawRequest {
            method: method.as_str(),
            path,
            query: uri.query().unwrap_or(""),
            body: decoded,
            if_match: header_str(&headers, header::IF_MATCH),
            if_none_exist: headers.get("if-none-exist").and_then(|v| v.to_str().ok()),
            prefer: headers.get("prefer").and_then(|v| v.to_str().ok()),
        })?;
        let is_write = matches!(
            interaction,
            Interaction::Create { .. }
                | Interaction::Update { .. }
                | Interaction::Patch { .. }
                | Interaction::ConditionalUpdate { .. }
                | Interaction::ConditionalPatch { .. }
        );
        label = interaction.label();
        tracing::Span::current().record("interaction", label.as_str());
        let principal = match authenticate(&state, &headers, &interaction).await {
            Ok(p) => p,
            Err(e) => {
                challenge = Some(www_authenticate(&e));
                let ctx = Ctx::new(request_id.clone(), Arc::new(Principal::anonymous()))
                    .via("rest", peer.clone());
                audited = true;
                service.audit_refusal(&ctx, Some(&interaction), &e).await?;
                return Err(e);
            }
        };
        let mut ctx = Ctx::new(request_id.clone(), Arc::new(principal)).via("rest", peer.clone());
        ctx.purposes = crate::audit::purposes_of_use(&headers);
        audited = true;
        let outcome = service.handle(&ctx, interaction).await?;
        Ok::<_, ServiceError>((outcome, is_write))
    }
    .await;
    let result = match result {
        Err(e) if !audited => {
            // Refused before it was understood (size, media type, URL):
            // recorded under whoever the token names, if anyone.
            let authz = header_str(&headers, header::AUTHORIZATION);
            let principal = state
                .auth
                .principal(authz, &state.auth.fhir_base)
                .await
                .unwrap_or_else(|_| Principal::anonymous());
            let ctx = Ctx::new(request_id, Arc::new(principal)).via("rest", peer);
            match service.audit_refusal(&ctx, None, &e).await {
                Ok(()) => Err(e),
                Err(audit_failed) => Err(audit_failed),
            }
        }
        other => other,
    };
    let response = match result {
        Ok((o, is_write)) => render::outcome(o, service.base_url(), p, is_write),
        Err(e) => {
            let mut r = render::error(&e, p);
            let value = match (challenge, e.status) {
                (Some(c), _) => Some(c),
                (None, 403) => Some("Bearer realm=\"vesta\", error=\"insufficient_scope\""),
                _ => None,
            };
            if let Some(secs) = e.retry_after_s {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, axum::http::HeaderValue::from(secs));
            }
            if let Some(v) = value {
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    axum::http::HeaderValue::from_static(v),
                );
            }
            r
        }
    };
    crate::metrics::record_request(
        &label,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}
