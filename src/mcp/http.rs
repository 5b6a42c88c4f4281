//! `/mcp` over streamable HTTP: rmcp's tower service behind our guard
//! (Origin check, bearer token for the MCP audience with the RFC 9728
//! challenge, session owner, rate limit), and the protected-resource
//! metadata documents.
//!
//! Both protocol generations are served: revision 2026-07-28 statelessly
//! (every POST stands alone, any instance can answer it), and the revisions
//! with an `initialize` handshake (2025-11-25 and before) in sessions
//! (`Mcp-Session-Id` issued at `initialize`, required afterwards, ended by
//! DELETE or the idle timeout, 404 once unknown), bounded and bound to the
//! token's subject and client by [`super::sessions`].

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::json;

use super::sessions::{Owner, Sessions, MAX_SESSION_ID_CHARS};
use super::{Caller, McpDoor};
use crate::auth::BearerError;
use crate::fhir::outcome::Issue;
use crate::policy::Principal;
use crate::rest::AppState;
use crate::service::{Ctx, ServiceError};

/// The path of the MCP endpoint.
pub const MCP_PATH: &str = "/mcp";
/// RFC 9728 metadata for the MCP resource (path-suffixed form).
pub const METADATA_PATH: &str = "/.well-known/oauth-protected-resource/mcp";
/// RFC 9728 metadata at the root (clients that try it first).
pub const METADATA_ROOT_PATH: &str = "/.well-known/oauth-protected-resource";
/// The session header of streamable HTTP (revisions before 2026-07-28).
pub const SESSION_HEADER: &str = "mcp-session-id";
/// Deepest JSON-RPC body accepted: tool arguments within
/// [`super::registry::MAX_ARGS_DEPTH`] inside `{"params":{"arguments":…}}`.
pub const MAX_JSON_RPC_DEPTH: usize = super::registry::MAX_ARGS_DEPTH + 2;
/// `Retry-After` when every session is taken, in seconds.
pub const SESSIONS_FULL_RETRY_S: u64 = 30;

/// What the guard needs besides the app state.
struct Gate {
    app: Arc<AppState>,
    /// Origins (`scheme://host[:port]`) allowed to call `/mcp` from a
    /// browser: the server's own and the configured CORS origins.
    allowed_origins: Vec<String>,
    any_origin: bool,
    /// `Host` values (host, optional port) `/mcp` answers to (DNS rebinding).
    allowed_hosts: Vec<(String, Option<u16>)>,
    sessions: Arc<Sessions>,
}

/// A `Host` value as (lower-case host without brackets, port).
fn authority(value: &str) -> Option<(String, Option<u16>)> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    match axum::http::uri::Authority::try_from(value) {
        Ok(a) => Some((
            a.host().trim_matches(['[', ']']).to_ascii_lowercase(),
            a.port_u16(),
        )),
        Err(_) => None,
    }
}

/// The request's `Host` (or HTTP/2 `:authority`) is one `/mcp` answers to;
/// an allowed entry without a port matches any port.
fn host_allowed(gate: &Gate, headers: &HeaderMap, uri: &axum::http::Uri) -> bool {
    let value = match headers.get(header::HOST) {
        Some(v) => v.to_str().ok(),
        None => uri.authority().map(|a| a.as_str()),
    };
    let Some((host, port)) = value.and_then(authority) else {
        return false;
    };
    gate.allowed_hosts
        .iter()
        .any(|(h, p)| *h == host && (p.is_none() || *p == port))
}

/// The `/mcp` routes and the metadata documents, for `startup` to merge.
/// `mcp_allowed_hosts` are the `Host` values besides loopback and the
/// public base URL's host; `mcp_max_sessions` and `mcp_session_idle_s`
/// bound the sessions.
pub fn routes(app: Arc<AppState>, settings: &crate::config::Settings) -> Router {
    let allowed_hosts = &settings.mcp_allowed_hosts;
    let cors_origins = &settings.cors_origins;
    let issuer = app.auth.issuer.clone();
    let mut hosts: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    if let Ok(u) = url::Url::parse(&issuer) {
        if let Some(h) = u.host_str() {
            hosts.push(h.trim_matches(['[', ']']).to_string());
        }
    }
    hosts.extend(allowed_hosts.iter().cloned());
    let host_list = hosts
        .iter()
        .filter_map(|h| {
            authority(h).or_else(|| Some((h.trim_matches(['[', ']']).to_ascii_lowercase(), None)))
        })
        .collect();
    // rmcp keeps its own check of the same list as a second line; ours in
    // `guard` answers first, so the refusal is audited.
    let config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(hosts)
        // Sessions for the handshake revisions; 2026-07-28 requests are
        // served statelessly whatever this says.
        .with_legacy_session_mode(true)
        .with_json_response(true)
        .with_max_request_body_bytes(app.service.limits().max_body_bytes);
    let service = app.service.clone();
    let sessions = Arc::new(Sessions::new(
        settings.mcp_max_sessions,
        settings.mcp_session_idle_s,
    ));
    let mcp = StreamableHttpService::new(
        move || Ok(McpDoor::http(service.clone())),
        sessions.clone(),
        config,
    );
    let gate = Arc::new(Gate {
        allowed_origins: std::iter::once(issuer)
            .chain(
                cors_origins
                    .iter()
                    .map(|o| o.trim_end_matches('/').to_string()),
            )
            .collect(),
        any_origin: cors_origins.iter().any(|o| o == "*"),
        allowed_hosts: host_list,
        app: app.clone(),
        sessions,
    });
    let guarded = Router::new()
        .nest_service(MCP_PATH, mcp)
        .layer(axum::middleware::from_fn_with_state(gate, guard));
    Router::new()
        .route(METADATA_PATH, get(metadata))
        .route(METADATA_ROOT_PATH, get(metadata))
        .with_state(app)
        .merge(guarded)
}

/// RFC 9728 protected-resource metadata for `{issuer}/mcp`.
async fn metadata(State(app): State<Arc<AppState>>) -> Response {
    let a = &app.auth;
    let body = json!({
        "resource": a.mcp_resource(),
        "authorization_servers": [a.issuer],
        "bearer_methods_supported": ["header"],
        "scopes_supported": ["openid", "fhirUser", "launch/patient", "offline_access",
            "patient/*.rs", "patient/*.cruds", "user/*.rs", "user/*.cruds", "system/*.rs", "system/*.cruds"],
        "resource_name": "Vesta MCP server (FHIR R4)",
        "resource_documentation": format!("{}/docs", a.issuer),
    });
    let mut r = Json(body).into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    r
}

fn header_str<'a>(h: &'a HeaderMap, name: &header::HeaderName) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn outcome_response(status: StatusCode, e: &ServiceError) -> Response {
    let mut r = (status, Json(e.outcome())).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::fhir::media::FHIR_JSON),
    );
    r
}

/// The RFC 6750 / RFC 9728 challenge: where to find the metadata, and
/// `invalid_token` when a token was sent but refused.
fn challenge(issuer: &str, invalid: bool) -> String {
    let mut c = format!("Bearer resource_metadata=\"{issuer}{METADATA_PATH}\"");
    if invalid {
        c.push_str(", error=\"invalid_token\"");
    }
    c
}

/// Origin check, bearer token for the MCP audience, rate limit; then the
/// caller rides in the request's extensions to the tool handlers.
/// Reads (and drops) what is left of a refused request's body, within the
/// body limit, before answering: a client still sending would otherwise see
/// its connection reset instead of the refusal.
async fn drained(gate: &Gate, req: Request, refusal: Response) -> Response {
    let limit = gate.app.service.limits().max_body_bytes;
    let _ = axum::body::to_bytes(req.into_body(), limit).await;
    refusal
}

/// A refusal before any token is known: audited under an anonymous
/// principal (503 when that fails, fail closed), then answered with
/// `refusal` once the body is drained.
async fn refused(
    gate: &Gate,
    req: Request,
    request_id: String,
    peer: Option<String>,
    e: &ServiceError,
    refusal: Response,
) -> Response {
    let ctx = Ctx::new(request_id, Arc::new(Principal::anonymous())).via("mcp", peer);
    let answer = match gate.app.service.audit_refusal(&ctx, None, e).await {
        Ok(()) => refusal,
        Err(_) => outcome_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &ServiceError::unavailable(),
        ),
    };
    drained(gate, req, answer).await
}

async fn guard(State(gate): State<Arc<Gate>>, mut req: Request, next: Next) -> Response {
    let app = &gate.app;
    // Streamable HTTP uses POST (and GET/DELETE for sessions); anything
    // else is refused before the token is looked at.
    if !matches!(
        *req.method(),
        axum::http::Method::GET | axum::http::Method::POST | axum::http::Method::DELETE
    ) {
        let e = ServiceError::method_not_allowed("/mcp takes POST (GET and DELETE for sessions)");
        return drained(
            &gate,
            req,
            outcome_response(StatusCode::METHOD_NOT_ALLOWED, &e),
        )
        .await;
    }
    let headers = req.headers().clone();
    let request_id = header_str(&headers, &header::HeaderName::from_static("x-request-id"))
        .unwrap_or_default()
        .to_string();
    let peer = crate::audit::peer_of(req.extensions());
    // DNS rebinding: a page on another name that resolves here.
    if !host_allowed(&gate, &headers, req.uri()) {
        let e = ServiceError::forbidden("this Host may not call the MCP endpoint");
        let r = outcome_response(StatusCode::FORBIDDEN, &e);
        return refused(&gate, req, request_id, peer, &e, r).await;
    }
    if let Some(origin) = header_str(&headers, &header::ORIGIN) {
        let origin = origin.trim_end_matches('/');
        if !gate.any_origin && !gate.allowed_origins.iter().any(|o| o == origin) {
            let e = ServiceError::forbidden("this Origin may not call the MCP endpoint");
            let r = outcome_response(StatusCode::FORBIDDEN, &e);
            return refused(&gate, req, request_id, peer, &e, r).await;
        }
    }
    let authz = header_str(&headers, &header::AUTHORIZATION);
    let principal = match app.auth.principal(authz, &app.auth.mcp_resource()).await {
        Ok(p) => p,
        Err(err) => {
            let (invalid, message) = match err {
                BearerError::Missing => (
                    false,
                    "an access token for the MCP resource is required (Authorization: Bearer …)"
                        .to_string(),
                ),
                BearerError::Invalid(why) => (true, why),
            };
            let e = ServiceError::new(401, Issue::error("login", message));
            let mut r = outcome_response(StatusCode::UNAUTHORIZED, &e);
            if let Ok(v) = HeaderValue::from_str(&challenge(&app.auth.issuer, invalid)) {
                r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
            return refused(&gate, req, request_id, peer, &e, r).await;
        }
    };
    let principal = Arc::new(principal);
    let owner = Owner::of(&principal);
    let session =
        header_str(&headers, &header::HeaderName::from_static(SESSION_HEADER)).map(str::to_string);
    match &session {
        Some(id) => {
            // Bound by its opener's subject and client: any other token is
            // refused even with a valid session id.
            let known = (id.len() <= MAX_SESSION_ID_CHARS)
                .then(|| gate.sessions.owner(id))
                .flatten();
            match known {
                None => {
                    let e = ServiceError::not_found(
                        "no such MCP session (ended, timed out or never opened); initialize again",
                    );
                    return outcome_response(StatusCode::NOT_FOUND, &e);
                }
                Some(o) if o != owner => {
                    let e = ServiceError::forbidden(
                        "this MCP session was opened by another user or client",
                    );
                    let ctx = Ctx::new(request_id, principal).via("mcp", peer);
                    if app.service.audit_refusal(&ctx, None, &e).await.is_err() {
                        return outcome_response(
                            StatusCode::SERVICE_UNAVAILABLE,
                            &ServiceError::unavailable(),
                        );
                    }
                    return outcome_response(StatusCode::FORBIDDEN, &e);
                }
                Some(_) => {}
            }
        }
        None if *req.method() == axum::http::Method::POST && gate.sessions.is_full().await => {
            // Only an `initialize` opens a session; stateless requests pass.
            // (Two `initialize`s racing for the last place both pass here;
            // `Sessions` still refuses the second, which rmcp answers 500.)
            let (parts, body) = req.into_parts();
            let limit = app.service.limits().max_body_bytes;
            let Ok(bytes) = axum::body::to_bytes(body, limit).await else {
                let e = ServiceError::too_large(format!(
                    "the request body is larger than {limit} bytes"
                ));
                return outcome_response(StatusCode::PAYLOAD_TOO_LARGE, &e);
            };
            if is_initialize(&bytes) {
                let e = ServiceError::new(
                    503,
                    Issue::error(
                        "transient",
                        format!(
                            "the server holds its limit of {} MCP sessions; retry later, \
                             or use protocol revision 2026-07-28 (no sessions)",
                            gate.sessions.max()
                        ),
                    ),
                );
                let mut r = outcome_response(StatusCode::SERVICE_UNAVAILABLE, &e);
                r.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(SESSIONS_FULL_RETRY_S),
                );
                return r;
            }
            req = Request::from_parts(parts, axum::body::Body::from(bytes));
        }
        None => {}
    }
    if *req.method() == axum::http::Method::POST {
        // rmcp parses the JSON-RPC body with serde (up to its own 128
        // levels) and our tools walk the arguments: measured here first,
        // without recursion. The envelope (`params.arguments`) takes 3 levels.
        let (parts, body) = req.into_parts();
        let limit = app.service.limits().max_body_bytes;
        let Ok(bytes) = axum::body::to_bytes(body, limit).await else {
            let e =
                ServiceError::too_large(format!("the request body is larger than {limit} bytes"));
            return outcome_response(StatusCode::PAYLOAD_TOO_LARGE, &e);
        };
        if let Err(refusal) = crate::fhir::limits::json_depth(&bytes, MAX_JSON_RPC_DEPTH) {
            let e = ServiceError::new(
                400,
                Issue::error(refusal.code(), refusal.message("the JSON-RPC message")),
            );
            return outcome_response(StatusCode::BAD_REQUEST, &e);
        }
        req = Request::from_parts(parts, axum::body::Body::from(bytes));
    }
    let admit_ctx = Ctx::new(request_id.clone(), principal.clone()).via("mcp", peer.clone());
    if let Err(e) = app.service.admit(&admit_ctx, None).await {
        let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let mut r = outcome_response(status, &e);
        if let Some(secs) = e.retry_after_s {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        return r;
    }
    req.extensions_mut().insert(Caller {
        principal,
        peer,
        request_id,
        purposes: crate::audit::purposes_of_use(&headers),
        recorded: crate::audit::fence::Recorded::current(),
    });
    let response = next.run(req).await;
    if session.is_none() {
        // An `initialize` answered with a new session: it is this token's.
        if let Some(id) = header_str(
            response.headers(),
            &header::HeaderName::from_static(SESSION_HEADER),
        ) {
            gate.sessions.bind(id, owner).await;
        }
    }
    response
}

/// True when a JSON-RPC body is an `initialize` request (the only message
/// that opens a session).
fn is_initialize(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Peek<'a> {
        #[serde(borrow)]
        method: Option<std::borrow::Cow<'a, str>>,
    }
    serde_json::from_slice::<Peek>(body)
        .ok()
        .and_then(|p| p.method)
        .is_some_and(|m| m == "initialize")
}
