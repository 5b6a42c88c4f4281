//! The audit trail's last fence: every HTTP request that reaches the router
//! leaves an AuditEvent, refusals included.
//!
//! [`fence`] wraps the whole router. It gives each request a [`Recorded`]
//! counter (a task-local that [`crate::service::Ctx::new`] picks up, and
//! that the MCP guard hands to the tool handlers explicitly, since rmcp may
//! run them on another task); every AuditEvent the service records for a
//! `Ctx` counts there. When the answer is a refusal (status 400 or more, or
//! on `/mcp` a JSON-RPC error) and nothing was recorded for the request (a
//! refusal by the authorization server, rmcp, axum's router, or a layer),
//! the fence records one itself: exactly one AuditEvent, outcome failure.
//! If it cannot be recorded, the answer is a 503 (fail closed).
//!
//! Successful answers that ran no interaction (discovery documents, health
//! probes, metrics, `tools/list`) are not audited: they return nothing
//! about anyone.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::fhir::outcome::Issue;
use crate::policy::Principal;
use crate::service::{Ctx, FhirService, ServiceError};

/// Largest `/mcp` answer read back to see whether it is a JSON-RPC error
/// (error answers are a few hundred bytes; larger ones pass unread).
pub const MAX_PEEK_BYTES: u64 = 64 * 1024;

#[derive(Debug, Default)]
struct Inner {
    count: AtomicUsize,
    request_id: String,
}

/// How many AuditEvents were recorded for one HTTP request, shared by
/// every [`Ctx`] made for it.
#[derive(Debug, Clone, Default)]
pub struct Recorded(Arc<Inner>);

tokio::task_local! {
    static RECORDED: Recorded;
}

impl Recorded {
    fn for_request(request_id: String) -> Recorded {
        Recorded(Arc::new(Inner {
            count: AtomicUsize::new(0),
            request_id,
        }))
    }

    /// One more AuditEvent recorded for the request.
    pub fn note(&self) {
        self.0.count.fetch_add(1, Ordering::AcqRel);
    }

    pub fn count(&self) -> usize {
        self.0.count.load(Ordering::Acquire)
    }

    /// The request's `X-Request-Id` (empty outside the fence).
    pub fn request_id(&self) -> &str {
        &self.0.request_id
    }

    /// The counter of the request being served on this task, or a fresh one
    /// (outside any request: CLI, stdio, tests).
    pub fn current() -> Recorded {
        RECORDED.try_with(Clone::clone).unwrap_or_default()
    }

    /// Runs `f` with this counter as the task's current one.
    pub async fn scope<F: Future>(self, f: F) -> F::Output {
        RECORDED.scope(self, f).await
    }
}

/// Which door a path belongs to, for the AuditEvent and the refusal's form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Door {
    Rest,
    Mcp,
    /// The authorization server, with the event code of its endpoint.
    Auth(&'static str),
}

fn door_of(path: &str) -> Door {
    if path == crate::mcp::http::MCP_PATH || path.starts_with("/mcp/") {
        return Door::Mcp;
    }
    let Some(rest) = path.strip_prefix("/auth/") else {
        return Door::Rest;
    };
    Door::Auth(match rest.trim_end_matches('/') {
        "authorize" => "authorize",
        "login" => "login",
        "consent" => "consent",
        "token" => "token",
        "introspect" => "introspect",
        "revoke" => "revoke",
        "register" => "register",
        "launch" => "launch",
        _ => "auth-request",
    })
}

/// The status recorded for a JSON-RPC error answered with HTTP 200.
fn jsonrpc_status(code: i64) -> u16 {
    match code {
        -32601 => 404,
        -32603 => 500,
        _ => 400,
    }
}

/// When `response` (an `/mcp` answer) is a small JSON-RPC error, the status
/// and code to record; the response is given back whole either way.
async fn jsonrpc_error(response: Response) -> (Response, Option<(u16, i64)>) {
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let small = response
        .body()
        .size_hint()
        .exact()
        .is_some_and(|n| n <= MAX_PEEK_BYTES);
    if !is_json || !small {
        return (response, None);
    }
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_PEEK_BYTES as usize).await else {
        let e = ServiceError::new(
            500,
            Issue::error("exception", "the answer could not be read"),
        );
        return (outcome_response(500, &e), Some((500, -32603)));
    };
    let code = serde_json::from_slice::<Value>(&bytes).ok().and_then(|v| {
        let e = v.get("error")?;
        v.get("result").is_none().then(|| e["code"].as_i64())?
    });
    let response = Response::from_parts(parts, Body::from(bytes));
    (response, code.map(|c| (jsonrpc_status(c), c)))
}

/// The OAuth `error` of an authorization server redirect that refuses the
/// request back to the client (`Location: …?error=access_denied`).
fn redirected_error(door: Door, response: &Response) -> Option<String> {
    if !matches!(door, Door::Auth(_)) || !response.status().is_redirection() {
        return None;
    }
    let location = response.headers().get(header::LOCATION)?.to_str().ok()?;
    let url = url::Url::parse(location).ok()?;
    let error = url
        .query_pairs()
        .find(|(k, _)| k == "error")
        .map(|(_, v)| v.into_owned())?;
    // The code only, and only a well-formed one (RFC 6749 error codes).
    let well_formed = !error.is_empty()
        && error.len() <= 64
        && error.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    Some(if well_formed { error } else { "invalid".into() })
}

fn outcome_response(status: u16, e: &ServiceError) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = (status, axum::Json(e.outcome())).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::fhir::media::FHIR_JSON),
    );
    r
}

/// The answer when the refusal's AuditEvent cannot be stored.
fn unavailable(door: Door) -> Response {
    match door {
        Door::Auth(_) => {
            let mut r = (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({"error": "temporarily_unavailable",
                    "error_description": "the audit trail cannot be written"})),
            )
                .into_response();
            crate::auth::no_store(&mut r);
            r
        }
        _ => outcome_response(503, &ServiceError::unavailable()),
    }
}

/// The middleware: see the module documentation.
pub async fn fence(State(service): State<FhirService>, req: Request, next: Next) -> Response {
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let recorded = Recorded::for_request(request_id.clone());
    let peer = super::peer_of(req.extensions());
    let door = door_of(req.uri().path());
    let response = recorded.clone().scope(next.run(req)).await;
    if recorded.count() > 0 {
        return response;
    }
    let status = response.status().as_u16();
    let (response, status, detail) = if let Some(error) = redirected_error(door, &response) {
        // An authorization refused back to the client (RFC 6749 §4.1.2.1).
        (response, 400, format!("redirected with error {error}"))
    } else if status >= 400 {
        let why = format!(
            "refused before any interaction ran: {}",
            response.status().canonical_reason().unwrap_or("error")
        );
        (response, status, why)
    } else if door == Door::Mcp {
        match jsonrpc_error(response).await {
            (r, Some((status, code))) => (r, status, format!("JSON-RPC error {code}")),
            (r, None) => return r,
        }
    } else {
        return response;
    };
    let ctx = Ctx::new(request_id, Arc::new(Principal::anonymous()));
    let stored = match door {
        Door::Auth(code) => {
            let ctx = ctx.via("auth", peer);
            service
                .audit_auth_event(&ctx, code, status, Some(detail))
                .await
        }
        Door::Mcp | Door::Rest => {
            let ctx = ctx.via(if door == Door::Mcp { "mcp" } else { "rest" }, peer);
            let e = ServiceError::new(status, Issue::error("processing", detail));
            service.audit_refusal(&ctx, None, &e).await
        }
    };
    match stored {
        Ok(()) => response,
        Err(_) => unavailable(door),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doors_by_path() {
        assert_eq!(door_of("/mcp"), Door::Mcp);
        assert_eq!(door_of("/auth/launch"), Door::Auth("launch"));
        assert_eq!(door_of("/auth/other"), Door::Auth("auth-request"));
        assert_eq!(door_of("/fhir/Patient/1"), Door::Rest);
        assert_eq!(door_of("/nowhere"), Door::Rest);
    }

    #[tokio::test]
    async fn the_counter_is_the_tasks_inside_its_scope() {
        let r = Recorded::for_request("rid".into());
        r.clone()
            .scope(async {
                let inner = Recorded::current();
                assert_eq!(inner.request_id(), "rid");
                inner.note();
            })
            .await;
        assert_eq!(r.count(), 1);
        assert_eq!(Recorded::current().count(), 0);
    }
}
