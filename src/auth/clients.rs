//! Client registrations: static ones from `smart-config/clients.toml`, and
//! RFC 7591 dynamic registrations stored in the database.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::policy::scope::{self, Context, Scope};

/// Longest registration document accepted, in bytes.
pub const MAX_REGISTRATION_BYTES: usize = 64 * 1024;
/// Most redirect URIs per client.
pub const MAX_REDIRECT_URIS: usize = 20;
/// Kind under which registrations are kept in `auth_state`.
pub const KIND: &str = "client";

/// How a client proves who it is at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// Public client (PKCE only).
    None,
    ClientSecretBasic,
    ClientSecretPost,
    /// Asymmetric: a JWT signed with a key from `jwks` / `jwks_uri`.
    PrivateKeyJwt,
}

/// One registered client.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Client {
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    pub token_endpoint_auth_method: AuthMethod,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub grant_types: Vec<String>,
    /// The most this client may be granted (space-separated scopes).
    #[serde(default)]
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// SHA-256 (hex) of the client secret, for symmetric clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id_issued_at: Option<i64>,
}

impl Client {
    pub fn allowed_scopes(&self) -> Vec<Scope> {
        scope::parse_list(&self.scope)
    }

    pub fn allows_grant(&self, grant: &str) -> bool {
        if self.grant_types.is_empty() {
            // RFC 7591 default.
            return grant == "authorization_code";
        }
        self.grant_types.iter().any(|g| g == grant)
    }

    pub fn is_public(&self) -> bool {
        self.token_endpoint_auth_method == AuthMethod::None
    }
}

/// A registration request (RFC 7591 §2), before checks.
#[derive(Debug, Clone, Deserialize)]
pub struct RegistrationRequest {
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub token_endpoint_auth_method: Option<AuthMethod>,
    #[serde(default)]
    pub grant_types: Vec<String>,
    #[serde(default)]
    pub client_name: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub jwks: Option<Value>,
    #[serde(default)]
    pub jwks_uri: Option<String>,
}

/// Why a registration was refused (`error` per RFC 7591 §3.2.2).
#[derive(Debug, Clone)]
pub struct RegistrationError {
    pub error: &'static str,
    pub description: String,
}

fn reg_err(error: &'static str, description: impl Into<String>) -> RegistrationError {
    RegistrationError {
        error,
        description: description.into(),
    }
}

/// Checks a registration and builds the client. Without an administrator's
/// initial access token, a client may not hold `system/` scopes: those let
/// a backend act without any user, so an administrator must approve them.
pub fn validate_registration(
    req: RegistrationRequest,
    admin: bool,
    client_id: String,
    secret_sha256: Option<String>,
    now_s: i64,
) -> Result<Client, RegistrationError> {
    let method = req
        .token_endpoint_auth_method
        .unwrap_or(AuthMethod::ClientSecretBasic);
    let grants = if req.grant_types.is_empty() {
        vec!["authorization_code".to_string()]
    } else {
        req.grant_types.clone()
    };
    for g in &grants {
        if !matches!(
            g.as_str(),
            "authorization_code" | "refresh_token" | "client_credentials"
        ) {
            return Err(reg_err(
                "invalid_client_metadata",
                format!("grant type '{g}' is not supported"),
            ));
        }
    }
    if grants.iter().any(|g| g == "authorization_code") && req.redirect_uris.is_empty() {
        return Err(reg_err(
            "invalid_redirect_uri",
            "authorization_code clients need redirect_uris",
        ));
    }
    if req.redirect_uris.len() > MAX_REDIRECT_URIS {
        return Err(reg_err(
            "invalid_redirect_uri",
            format!("at most {MAX_REDIRECT_URIS} redirect_uris"),
        ));
    }
    for uri in &req.redirect_uris {
        let u = url::Url::parse(uri).map_err(|_| {
            reg_err(
                "invalid_redirect_uri",
                format!("'{uri}' is not an absolute URL"),
            )
        })?;
        if u.fragment().is_some() {
            return Err(reg_err(
                "invalid_redirect_uri",
                "redirect URIs may not carry a fragment",
            ));
        }
    }
    if grants.iter().any(|g| g == "client_credentials") && method != AuthMethod::PrivateKeyJwt {
        return Err(reg_err(
            "invalid_client_metadata",
            "client_credentials needs private_key_jwt (SMART Backend Services)",
        ));
    }
    if method == AuthMethod::PrivateKeyJwt {
        match (&req.jwks, &req.jwks_uri) {
            (Some(jwks), None) => {
                if jwks
                    .get("keys")
                    .and_then(Value::as_array)
                    .is_none_or(|k| k.is_empty())
                {
                    return Err(reg_err(
                        "invalid_client_metadata",
                        "jwks must hold at least one key",
                    ));
                }
            }
            (None, Some(uri)) => {
                url::Url::parse(uri)
                    .map_err(|_| reg_err("invalid_client_metadata", "jwks_uri is not a URL"))?;
            }
            _ => {
                return Err(reg_err(
                    "invalid_client_metadata",
                    "private_key_jwt needs exactly one of jwks and jwks_uri",
                ))
            }
        }
    }
    let requested = scope::parse_list(req.scope.as_deref().unwrap_or(
        "openid fhirUser launch launch/patient offline_access online_access patient/*.rs user/*.rs",
    ));
    let system = requested
        .iter()
        .any(|s| matches!(s, Scope::Resource(r) if r.context == Context::System));
    if system && !admin {
        return Err(reg_err(
            "invalid_client_metadata",
            "system/ scopes need an administrator's initial access token (Authorization: Bearer …)",
        ));
    }
    Ok(Client {
        client_id,
        client_name: req.client_name,
        token_endpoint_auth_method: method,
        redirect_uris: req.redirect_uris,
        grant_types: grants,
        scope: scope::to_string(&requested),
        jwks: req.jwks,
        jwks_uri: req.jwks_uri,
        client_secret_sha256: secret_sha256,
        client_id_issued_at: Some(now_s),
    })
}
