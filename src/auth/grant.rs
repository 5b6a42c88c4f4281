//! What an authorization grants, how it is kept between steps (pending
//! request, code, refresh token), and the token response it produces.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::jwt::{self, AccessClaims, IdTokenFacts};
use super::smart_config::confine_patient;
use super::{now_s, random_secret, sha256_hex, AuthServer, OAuthError, ONLINE_REFRESH_TOKEN_TTL_S};
use crate::policy::scope::{self, Scope};

/// `auth_state` kinds.
pub const PENDING_KIND: &str = "pending";
pub const CODE_KIND: &str = "code";
pub const LAUNCH_KIND: &str = "launch";
pub const REFRESH_KIND: &str = "refresh";
pub const REVOKED_KIND: &str = "revoked";
pub const ASSERTION_KIND: &str = "assertion-jti";
/// Access tokens issued under a family (key `jti`), so that a replayed
/// authorization code can revoke them.
pub const ACCESS_KIND: &str = "access";

/// The context an EHR launch binds (and a standalone launch's picker fills).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LaunchContext {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encounter: Option<String>,
    #[serde(
        default,
        rename = "fhirContext",
        skip_serializing_if = "Option::is_none"
    )]
    pub fhir_context: Option<Value>,
    #[serde(default)]
    pub need_patient_banner: Option<bool>,
}

/// What the user (or the backend client) was granted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Grant {
    pub client_id: String,
    pub username: Option<String>,
    pub role: Option<String>,
    pub fhir_user: Option<String>,
    /// Granted scopes, space-separated.
    pub scope: String,
    #[serde(default)]
    pub context: LaunchContext,
    /// Token audiences: the FHIR base and any RFC 8707 resources.
    pub audience: Vec<String>,
    pub nonce: Option<String>,
    pub auth_time_s: i64,
}

/// An authorization request between the authorize, login and consent pages.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pending {
    pub client_id: String,
    pub redirect_uri: String,
    pub state: Option<String>,
    /// Requested scopes, space-separated.
    pub scope: String,
    pub code_challenge: String,
    pub nonce: Option<String>,
    pub audience: Vec<String>,
    /// Bound by an EHR launch (`launch` parameter).
    pub launch: Option<LaunchContext>,
    /// Set once the user has signed in.
    pub username: Option<String>,
    pub auth_time_s: Option<i64>,
}

/// What a code stands for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CodeRecord {
    pub grant: Grant,
    pub redirect_uri: String,
    pub code_challenge: String,
    /// The refresh-token family the code's tokens start (revoked on code reuse).
    pub family: String,
}

fn has(scopes: &[Scope], name: &str) -> bool {
    scopes
        .iter()
        .any(|s| matches!(s, Scope::Other(o) if o == name))
}

impl AuthServer {
    /// Issues the token response for a grant: an access token, and a
    /// refresh token (same family) and ID token when the scopes ask.
    pub async fn token_response(
        &self,
        grant: &Grant,
        family: &str,
        with_refresh: bool,
    ) -> Result<Value, OAuthError> {
        let now = now_s();
        let ttl = self.settings.access_token_ttl_s;
        let scopes = scope::parse_list(&grant.scope);
        // Every code and refresh token comes through here: a self-only
        // user's token names their own record or no patient, never another.
        let own = self
            .config
            .self_patient(grant.role.as_deref(), grant.fhir_user.as_deref());
        let patient =
            confine_patient(own.as_deref(), grant.context.patient.as_deref()).map_err(|_| {
                OAuthError::invalid_grant("this user's tokens may name their own record only")
            })?;
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            sub: grant
                .username
                .clone()
                .unwrap_or_else(|| grant.client_id.clone()),
            aud: grant.audience.clone(),
            exp: now + ttl,
            iat: now,
            jti: uuid::Uuid::new_v4().to_string(),
            client_id: grant.client_id.clone(),
            scope: grant.scope.clone(),
            patient: patient.clone(),
            encounter: grant.context.encounter.clone(),
            fhir_user: grant.fhir_user.clone(),
            role: grant.role.clone(),
        };
        let access = self.sign(&claims)?;
        if !family.is_empty() {
            let expires = (claims.exp + jwt::CLOCK_LEEWAY_S as i64) * 1000;
            self.store()
                .auth_insert(ACCESS_KIND, &claims.jti, "", Some(family), expires)
                .await?;
        }
        let mut body = json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": ttl,
            "scope": grant.scope,
        });
        let offline = has(&scopes, "offline_access");
        if with_refresh && (offline || has(&scopes, "online_access")) {
            let refresh = random_secret();
            let refresh_ttl = if offline {
                self.settings.refresh_token_ttl_s
            } else {
                ONLINE_REFRESH_TOKEN_TTL_S
            };
            let value = serde_json::to_string(grant).map_err(|_| OAuthError::server_error())?;
            self.store()
                .auth_insert(
                    REFRESH_KIND,
                    &sha256_hex(&refresh),
                    &value,
                    Some(family),
                    (now + refresh_ttl) * 1000,
                )
                .await?;
            body["refresh_token"] = json!(refresh);
        }
        if has(&scopes, "openid") && grant.username.is_some() {
            let id = jwt::sign_id_token(
                &self.keys(),
                &IdTokenFacts {
                    issuer: &self.issuer,
                    client_id: &grant.client_id,
                    subject: grant.username.as_deref().unwrap_or_default(),
                    fhir_user: grant
                        .fhir_user
                        .as_deref()
                        .filter(|_| has(&scopes, "fhirUser") || has(&scopes, "profile")),
                    nonce: grant.nonce.as_deref(),
                    auth_time_s: grant.auth_time_s,
                    now_s: now,
                    ttl_s: ttl,
                    access_token: &access,
                },
            )?;
            body["id_token"] = json!(id);
        }
        let ctx = &grant.context;
        if let Some(p) = &patient {
            body["patient"] = json!(p);
        }
        if let Some(e) = &ctx.encounter {
            body["encounter"] = json!(e);
        }
        if let Some(fc) = &ctx.fhir_context {
            body["fhirContext"] = fc.clone();
        }
        if grant.username.is_some() {
            body["need_patient_banner"] =
                json!(ctx.need_patient_banner.unwrap_or(patient.is_some()));
            body["smart_style_url"] = json!(format!("{}/auth/smart-style.json", self.issuer));
        }
        Ok(body)
    }
}
