//! The SMART App Launch 2 authorization server: discovery documents,
//! authorize (login, consent, patient picker), token (authorization code
//! with PKCE, refresh with rotation, backend services), introspection,
//! revocation, dynamic registration, EHR launch contexts, signing keys.
//!
//! Its tokens are verified here ([`AuthServer::principal`]) for every door.

pub mod client_auth;
pub mod clients;
pub mod grant;
pub mod jwks_fetch;
pub mod jwt;
pub mod keys;
pub mod lockout;
pub mod mint;
pub mod smart_config;

mod authorize;
mod introspect;
mod launch;
mod metadata;
mod pages;
mod register;
mod token;
mod verified;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::fhir::instant::now_ms;
use crate::policy::scope;
use crate::policy::{Principal, PrincipalKind};
use crate::service::FhirService;
use crate::store::{Store, Topic};
use jwt::{AccessClaims, TokenError};
use keys::KeyRing;
use smart_config::SmartConfig;
use verified::Verified;

/// Default access-token lifetime: 15 minutes.
pub const DEFAULT_ACCESS_TOKEN_TTL_S: i64 = 900;
/// Default refresh-token lifetime (offline access): 30 days.
pub const DEFAULT_REFRESH_TOKEN_TTL_S: i64 = 30 * 24 * 3600;
/// Refresh tokens for `online_access` live as long as a working day.
pub const ONLINE_REFRESH_TOKEN_TTL_S: i64 = 12 * 3600;
/// Authorization codes are single-use and live this long.
pub const CODE_TTL_S: i64 = 60;
/// A pending authorization (login and consent pages) lives this long.
pub const PENDING_TTL_S: i64 = 600;
/// EHR launch contexts live this long.
pub const LAUNCH_TTL_S: i64 = 300;
/// A token with an unknown `kid` re-reads the key file at most this often.
pub const KEY_RELOAD_MIN_S: u64 = 10;
/// Longest bearer token accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Settings of the authorization server.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// `smart-config/` folder (roles, users, static clients).
    pub config_dir: PathBuf,
    /// Where the signing keys live (the data folder).
    pub key_dir: PathBuf,
    pub access_token_ttl_s: i64,
    pub refresh_token_ttl_s: i64,
    /// No authorization at all (local experiments only; logged loudly).
    pub insecure_open: bool,
    /// Hosts a `jwks_uri` may name over http or on internal addresses.
    pub jwks_uri_allow_hosts: Vec<String>,
}

/// The authorization server's state, shared by every door.
pub struct AuthServer {
    /// The issuer: the server's origin (`http://host:port`).
    pub issuer: String,
    /// The FHIR base; every access token's audience includes it.
    pub fhir_base: String,
    pub settings: AuthSettings,
    pub config: SmartConfig,
    keys: RwLock<Arc<KeyRing>>,
    /// When the key file was last re-read (at most once per [`KEY_RELOAD_MIN_S`]).
    keys_read_at: std::sync::Mutex<std::time::Instant>,
    /// Tokens whose signature and claims were checked recently.
    verified: verified::VerifiedTokens,
    store: Store,
    /// For the patient picker, which searches as the signed-in user.
    service: FhirService,
    /// The guarded client for `jwks_uri`s (the only outbound requests).
    jwks: jwks_fetch::JwksFetcher,
    /// Failed sign-ins by username.
    pub(crate) user_failures: lockout::Lockout,
    /// Failed client-secret checks by client id.
    pub(crate) client_failures: lockout::Lockout,
}

/// An OAuth 2.0 error response (RFC 6749 §5.2).
#[derive(Debug, Clone)]
pub struct OAuthError {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: String,
}

impl OAuthError {
    pub fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        OAuthError {
            status,
            error,
            description: description.into(),
        }
    }
    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", d)
    }
    pub fn invalid_grant(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", d)
    }
    pub fn invalid_client(d: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", d)
    }
    pub fn server_error() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "internal error",
        )
    }
}

impl From<crate::store::StoreError> for OAuthError {
    fn from(e: crate::store::StoreError) -> Self {
        // The kind only: driver messages can quote values (ids, user names).
        tracing::error!(
            kind = "store",
            error_kind = e.kind_name(),
            "authorization store error"
        );
        OAuthError::server_error()
    }
}

impl From<keys::KeyError> for OAuthError {
    fn from(e: keys::KeyError) -> Self {
        tracing::error!(kind = "keys", error = %e, "signing key error");
        OAuthError::server_error()
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = json!({"error": self.error, "error_description": self.description});
        let mut resp = (self.status, axum::Json(body)).into_response();
        no_store(&mut resp);
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"vesta\""),
            );
        }
        resp
    }
}

/// Token responses and errors must not be cached (RFC 6749 §5.1).
pub fn no_store(resp: &mut Response) {
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// SHA-256 hex of a secret (codes, refresh tokens, client secrets are stored so).
pub fn sha256_hex(s: &str) -> String {
    let d = Sha256::digest(s.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// A random URL-safe secret of 256 bits.
pub fn random_secret() -> String {
    use base64::Engine;
    use rsa::rand_core::RngCore;
    let mut bytes = [0u8; 32];
    rsa::rand_core::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub fn now_s() -> i64 {
    now_ms() / 1000
}

/// Compares two strings in time independent of where they differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Why a bearer token did not yield a principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BearerError {
    Missing,
    Invalid(String),
}

impl AuthServer {
    pub fn new(
        issuer: String,
        fhir_base: String,
        settings: AuthSettings,
        config: SmartConfig,
        service: FhirService,
    ) -> anyhow::Result<AuthServer> {
        let store = service.store().clone();
        let ring = KeyRing::load_or_create(&settings.key_dir)?;
        let jwks = jwks_fetch::JwksFetcher::new(&settings.jwks_uri_allow_hosts)?;
        Ok(AuthServer {
            issuer: issuer.trim_end_matches('/').to_string(),
            fhir_base: fhir_base.trim_end_matches('/').to_string(),
            settings,
            config,
            keys: RwLock::new(Arc::new(ring)),
            keys_read_at: std::sync::Mutex::new(std::time::Instant::now()),
            verified: verified::VerifiedTokens::default(),
            store,
            service,
            jwks,
            user_failures: lockout::Lockout::default(),
            client_failures: lockout::Lockout::default(),
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn service(&self) -> &FhirService {
        &self.service
    }

    /// Records an authorization event (`login`, `token-issued`,
    /// `token-refreshed`, `token-revoked`) for `principal` from `peer`.
    /// `Err` carries the 503 to answer instead: an event that cannot be
    /// recorded does not happen (fail closed).
    pub(crate) async fn audit(
        &self,
        principal: Principal,
        peer: Option<String>,
        code: &'static str,
        status: u16,
        detail: Option<String>,
    ) -> Result<(), Response> {
        let request_id = crate::audit::fence::Recorded::current()
            .request_id()
            .to_string();
        let ctx = crate::service::Ctx::new(request_id, Arc::new(principal)).via("auth", peer);
        self.service
            .audit_auth_event(&ctx, code, status, detail)
            .await
            .map_err(|_| {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Json(json!({"error": "temporarily_unavailable", "error_description": "the audit trail cannot be written"})),
                )
                    .into_response()
            })
    }

    /// The principal an access token we just issued stands for (for audit).
    pub(crate) async fn principal_of_issued(&self, access_token: &str) -> Option<Principal> {
        let claims = self.verify(access_token, &self.fhir_base).await.ok()?;
        Some(self.principal_of(&claims))
    }

    pub fn jwks_fetcher(&self) -> &jwks_fetch::JwksFetcher {
        &self.jwks
    }

    pub fn token_endpoint(&self) -> String {
        format!("{}/auth/token", self.issuer)
    }

    /// The MCP resource URI (an allowed RFC 8707 `resource`).
    pub fn mcp_resource(&self) -> String {
        format!("{}/mcp", self.issuer)
    }

    /// Resources a token may be issued for (RFC 8707).
    pub fn known_resource(&self, r: &str) -> bool {
        let r = r.trim_end_matches('/');
        r == self.fhir_base || r == self.mcp_resource()
    }

    pub fn keys(&self) -> Arc<KeyRing> {
        self.keys.read().map(|k| k.clone()).unwrap_or_default()
    }

    /// Re-reads the key file (after `vesta keys rotate` on a running server).
    fn reload_keys(&self) {
        match self.keys_read_at.lock() {
            Ok(mut at) if at.elapsed().as_secs() >= KEY_RELOAD_MIN_S => {
                *at = std::time::Instant::now();
            }
            _ => return,
        }
        if let Ok(ring) = KeyRing::load_or_create(&self.settings.key_dir) {
            if let Ok(mut k) = self.keys.write() {
                *k = Arc::new(ring);
            }
            // A key that left the ring must not keep its tokens valid.
            self.verified.clear();
        }
    }

    /// Signs an access token.
    pub fn sign(&self, claims: &AccessClaims) -> Result<String, keys::KeyError> {
        jwt::sign_access(&self.keys(), claims)
    }

    /// Verifies a bearer token for `audience` (the FHIR base or the MCP resource).
    pub async fn verify(&self, token: &str, audience: &str) -> Result<AccessClaims, BearerError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(BearerError::Invalid("the token is too long".into()));
        }
        let now = crate::fhir::instant::now_ms() / 1000;
        let counter = self.store.change_counter(Topic::Revocation);
        let claims = match self.verified.get(token, audience, now) {
            // Found unrevoked, and no token has been revoked anywhere since.
            Some(v) if counter.is_some() && v.unrevoked_at == counter => return Ok(v.claims),
            Some(v) => v.claims,
            None => {
                let mut result = jwt::verify_access(&self.keys(), token, &self.issuer, audience);
                if result == Err(TokenError::UnknownKey) {
                    self.reload_keys();
                    result = jwt::verify_access(&self.keys(), token, &self.issuer, audience);
                }
                result.map_err(|e| BearerError::Invalid(e.to_string()))?
            }
        };
        match self
            .store
            .auth_exists(grant::REVOKED_KIND, &claims.jti)
            .await
        {
            Ok(false) => {
                // The counter was read before the lookup: a revocation
                // committed since has moved it, so this entry is not used.
                let entry = Verified {
                    claims: claims.clone(),
                    unrevoked_at: counter,
                };
                self.verified.insert(token, audience, entry);
                Ok(claims)
            }
            Ok(true) => Err(BearerError::Invalid("the token has been revoked".into())),
            Err(e) => {
                tracing::error!(
                    kind = "store",
                    error_kind = e.kind_name(),
                    "revocation check failed"
                );
                Err(BearerError::Invalid(
                    "the token could not be checked".into(),
                ))
            }
        }
    }

    /// The principal a verified token describes.
    pub fn principal_of(&self, claims: &AccessClaims) -> Principal {
        let role = claims
            .role
            .as_deref()
            .and_then(|r| self.config.roles.get(r));
        // A self-only role without a Patient fhirUser reaches no patient at all.
        let self_patient = self
            .config
            .self_patient(claims.role.as_deref(), claims.fhir_user.as_deref());
        // Whatever patient claim the token carries, a self-only user's
        // `patient/` scopes reach their own record and nobody else's.
        let patient = match &self_patient {
            Some(own) => claims.patient.as_ref().map(|_| own.clone()),
            None => claims.patient.clone(),
        };
        Principal {
            kind: PrincipalKind::Token,
            client_id: Some(claims.client_id.clone()),
            username: (claims.sub != claims.client_id).then(|| claims.sub.clone()),
            fhir_user: claims.fhir_user.clone(),
            role: claims.role.clone(),
            patient,
            encounter: claims.encounter.clone(),
            scopes: scope::resource_scopes(&scope::parse_list(&claims.scope)),
            self_patient,
            token_id: Some(claims.jti.clone()),
            // A user by their role; a backend client (no user) by its scopes.
            audit_reader: match (claims.sub != claims.client_id, role) {
                (true, Some(r)) => r.audit,
                (true, None) => false,
                (false, _) => true,
            },
        }
    }

    /// The principal for an `Authorization` header value, for `audience`.
    pub async fn principal(
        &self,
        authorization: Option<&str>,
        audience: &str,
    ) -> Result<Principal, BearerError> {
        if self.settings.insecure_open {
            return Ok(Principal::open());
        }
        let Some(value) = authorization else {
            return Err(BearerError::Missing);
        };
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| {
                BearerError::Invalid("the Authorization header must be 'Bearer <token>'".into())
            })?
            .trim();
        let claims = self.verify(token, audience).await?;
        Ok(self.principal_of(&claims))
    }
}

/// The authorization server's routes with their handlers; [`routes`] mounts
/// exactly these (and [`route_paths`] lists them for the OpenAPI check).
fn route_table() -> Vec<(&'static str, MethodRouter<Arc<AuthServer>>)> {
    vec![
        (
            "/.well-known/smart-configuration",
            get(metadata::smart_configuration),
        ),
        (
            "/fhir/.well-known/smart-configuration",
            get(metadata::smart_configuration),
        ),
        (
            "/.well-known/openid-configuration",
            get(metadata::openid_configuration),
        ),
        (
            "/.well-known/oauth-authorization-server",
            get(metadata::oauth_metadata),
        ),
        ("/auth/jwks", get(metadata::jwks)),
        ("/auth/smart-style.json", get(metadata::smart_style)),
        (
            "/auth/authorize",
            get(authorize::authorize_get).post(authorize::authorize_post),
        ),
        ("/auth/login", post(authorize::login)),
        ("/auth/consent", post(authorize::consent)),
        ("/auth/token", post(token::token)),
        ("/auth/introspect", post(introspect::introspect)),
        ("/auth/revoke", post(introspect::revoke)),
        ("/auth/register", post(register::register)),
        ("/auth/launch", post(launch::create_launch)),
    ]
}

/// The paths of the authorization server's routes.
pub fn route_paths() -> Vec<&'static str> {
    route_table().into_iter().map(|(p, _)| p).collect()
}

/// The authorization server's routes.
pub fn routes(auth: Arc<AuthServer>) -> Router {
    route_table()
        .into_iter()
        .fold(Router::new(), |r, (path, handler)| r.route(path, handler))
        .with_state(auth)
}
