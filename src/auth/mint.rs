//! `vesta token`: mint an access token from the local signing keys, for
//! operators and scripts (and the test harness). A user's role still limits
//! what is granted.

use std::path::Path;

use super::jwt::{self, AccessClaims};
use super::keys::KeyRing;
use super::smart_config::{confine_patient, SmartConfig};
use super::{now_s, AuthServer};
use crate::policy::scope;

/// Longest lifetime of a minted token: 7 days. Minted tokens belong to no
/// registered client, so they cannot be revoked at `/auth/revoke`; they
/// must not outlive a working week.
pub const MAX_MINT_TTL_S: i64 = 7 * 24 * 3600;

/// What to mint.
#[derive(Debug, Clone, Default)]
pub struct MintRequest {
    pub client_id: String,
    pub scopes: String,
    pub patient: Option<String>,
    /// A username from `smart-config/users.toml`.
    pub user: Option<String>,
    /// Extra audiences (RFC 8707 resources, e.g. the MCP endpoint).
    pub resources: Vec<String>,
    pub ttl_s: i64,
}

/// Mints a token signed with the current key in `key_dir` for the server
/// whose FHIR base is `fhir_base`.
pub fn mint(
    key_dir: &Path,
    config: &SmartConfig,
    fhir_base: &str,
    req: &MintRequest,
) -> anyhow::Result<String> {
    if req.ttl_s <= 0 || req.ttl_s > MAX_MINT_TTL_S {
        anyhow::bail!("--ttl must be 1 to {MAX_MINT_TTL_S} seconds (7 days)");
    }
    let ring = KeyRing::load_or_create(key_dir)?;
    let issuer = crate::startup::origin_of(fhir_base)?;
    let fhir_base = fhir_base.trim_end_matches('/').to_string();
    let mut scopes = scope::parse_list(&req.scopes);
    if scopes.is_empty() {
        anyhow::bail!("no scope this server understands in '{}'", req.scopes);
    }
    let mut patient = req.patient.clone();
    let (sub, role, fhir_user) = match &req.user {
        Some(name) => {
            let u = config.user(name).ok_or_else(|| {
                anyhow::anyhow!("user '{name}' is not in smart-config/users.toml")
            })?;
            let limit = config.role_limit(&u.role).unwrap_or_default();
            scopes = scope::grant(&scopes, &scopes, Some(&limit));
            let own = config.self_patient(Some(&u.role), u.fhir_user.as_deref());
            patient = confine_patient(own.as_deref(), req.patient.as_deref()).map_err(|_| {
                anyhow::anyhow!(
                    "user '{name}' has a self-only role (`{}`): --patient may name only \
                     their own fhirUser Patient",
                    u.role
                )
            })?;
            (
                u.username.clone(),
                Some(u.role.clone()),
                u.fhir_user.clone(),
            )
        }
        None => (req.client_id.clone(), None, None),
    };
    let mut aud = vec![fhir_base.clone()];
    for r in &req.resources {
        let r = r.trim_end_matches('/').to_string();
        if r != fhir_base && r != format!("{issuer}/mcp") {
            anyhow::bail!("resource '{r}' is not one this server protects");
        }
        if !aud.contains(&r) {
            aud.push(r);
        }
    }
    let now = now_s();
    let claims = AccessClaims {
        iss: issuer,
        sub,
        aud,
        exp: now + req.ttl_s.max(60),
        iat: now,
        jti: uuid::Uuid::new_v4().to_string(),
        client_id: req.client_id.clone(),
        scope: scope::to_string(&scopes),
        patient,
        encounter: None,
        fhir_user,
        role,
    };
    Ok(jwt::sign_access(&ring, &claims)?)
}

impl AuthServer {
    /// Mints a token with this server's keys (tests and tools in-process).
    pub fn mint(&self, req: &MintRequest) -> anyhow::Result<String> {
        mint(&self.settings.key_dir, &self.config, &self.fhir_base, req)
    }
}
