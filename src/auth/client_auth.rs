//! Who is calling the token, introspection and revocation endpoints:
//! public clients by `client_id`, symmetric ones by secret (Basic or form),
//! asymmetric ones by a `private_key_jwt` assertion (RS384 or ES384, keys
//! inline or by JWKS URL, `exp` at most five minutes ahead, `jti` once).

use std::collections::HashMap;

use axum::http::HeaderMap;
use base64::Engine;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

use super::clients::{AuthMethod, Client, KIND};
use super::grant::ASSERTION_KIND;
use super::{constant_time_eq, now_s, sha256_hex, AuthServer, OAuthError};

/// The client-assertion type of RFC 7523.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Latest `exp` accepted on a client assertion, in seconds from now.
pub const MAX_ASSERTION_LIFETIME_S: i64 = 300;
/// Longest client assertion accepted, in bytes.
pub const MAX_ASSERTION_BYTES: usize = 16 * 1024;

#[derive(Debug, Deserialize)]
struct AssertionClaims {
    iss: String,
    sub: String,
    exp: i64,
    jti: String,
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let b64 = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (id, secret) = text.split_once(':')?;
    // RFC 6749 §2.3.1: both parts are form-urlencoded.
    let dec = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((dec(id)?, dec(secret)?))
}

impl AuthServer {
    /// A registered client by id: static ones first, then dynamic ones.
    pub async fn client(&self, client_id: &str) -> Result<Option<Client>, OAuthError> {
        if let Some(c) = self
            .config
            .clients
            .iter()
            .find(|c| c.client_id == client_id)
        {
            return Ok(Some(c.clone()));
        }
        match self.store().auth_get(KIND, client_id).await? {
            Some(rec) => Ok(serde_json::from_str(&rec.value).ok()),
            None => Ok(None),
        }
    }

    /// Authenticates the calling client from the form and headers.
    pub async fn authenticate_client(
        &self,
        form: &HashMap<String, String>,
        headers: &HeaderMap,
    ) -> Result<Client, OAuthError> {
        let unknown = || OAuthError::invalid_client("unknown client or bad credentials");
        if let Some((id, secret)) = basic_credentials(headers) {
            let Some(client) = self.client(&id).await? else {
                self.client_failures.failed(&id);
                return Err(unknown());
            };
            return self.check_secret(client, &secret);
        }
        if let Some(kind) = form.get("client_assertion_type") {
            if kind != JWT_BEARER {
                return Err(OAuthError::invalid_client(
                    "client_assertion_type must be jwt-bearer",
                ));
            }
            let assertion = form
                .get("client_assertion")
                .ok_or_else(|| OAuthError::invalid_client("client_assertion is missing"))?;
            return self.check_assertion(assertion, form.get("client_id")).await;
        }
        let id = form
            .get("client_id")
            .ok_or_else(|| OAuthError::invalid_client("no client authentication"))?;
        let client = self.client(id).await?.ok_or_else(unknown)?;
        match (client.token_endpoint_auth_method, form.get("client_secret")) {
            (AuthMethod::None, None) => Ok(client),
            (AuthMethod::ClientSecretPost | AuthMethod::ClientSecretBasic, Some(secret)) => {
                let secret = secret.clone();
                self.check_secret(client, &secret)
            }
            _ => Err(OAuthError::invalid_client(
                "this client must authenticate with its registered method",
            )),
        }
    }

    /// Checks a client secret; a client locked after failed checks gets
    /// the answer of a wrong secret.
    fn check_secret(&self, client: Client, secret: &str) -> Result<Client, OAuthError> {
        let locked = self.client_failures.is_locked(&client.client_id);
        let ok = !locked
            && matches!(
                client.token_endpoint_auth_method,
                AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost
            )
            && client
                .client_secret_sha256
                .as_deref()
                .is_some_and(|h| constant_time_eq(h, &sha256_hex(secret)));
        if ok {
            self.client_failures.succeeded(&client.client_id);
            Ok(client)
        } else {
            if !locked {
                self.client_failures.failed(&client.client_id);
            }
            Err(OAuthError::invalid_client(
                "unknown client or bad credentials",
            ))
        }
    }

    async fn client_keys(&self, client: &Client) -> Result<JwkSet, OAuthError> {
        let bad = |d: &str| OAuthError::invalid_client(d.to_string());
        let doc: Value = match (&client.jwks, &client.jwks_uri) {
            (Some(j), _) => j.clone(),
            (None, Some(uri)) => self.jwks_fetcher().fetch(uri).await.map_err(|e| {
                // The kind only: the URI and its answer stay out of the log.
                tracing::warn!(
                    kind = "jwks_fetch",
                    reason = e.kind_name(),
                    "a client's jwks_uri could not be used"
                );
                // One answer for every failure: no port or host oracle.
                OAuthError::invalid_client(super::jwks_fetch::FETCH_FAILED)
            })?,
            (None, None) => return Err(bad("the client has no keys")),
        };
        // Keys of types we cannot use are skipped, not fatal.
        let keys: Vec<Jwk> = doc
            .get("keys")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|k| serde_json::from_value(k.clone()).ok())
            .collect();
        Ok(JwkSet { keys })
    }

    async fn check_assertion(
        &self,
        assertion: &str,
        form_client: Option<&String>,
    ) -> Result<Client, OAuthError> {
        let bad = |d: &str| OAuthError::invalid_client(d.to_string());
        if assertion.len() > MAX_ASSERTION_BYTES {
            return Err(bad("the client assertion is too long"));
        }
        let header = jsonwebtoken::decode_header(assertion)
            .map_err(|_| bad("the client assertion is not a JWT"))?;
        if !matches!(header.alg, Algorithm::RS384 | Algorithm::ES384) {
            return Err(bad("client assertions must be signed with RS384 or ES384"));
        }
        // Read `iss` unverified only to find whose keys to verify with.
        let payload = assertion
            .split('.')
            .nth(1)
            .ok_or_else(|| bad("the client assertion is not a JWT"))?;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| bad("the client assertion is not a JWT"))?;
        let unverified: Value =
            serde_json::from_slice(&raw).map_err(|_| bad("the client assertion is not a JWT"))?;
        let client_id = unverified
            .get("iss")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("the client assertion has no iss"))?
            .to_string();
        if form_client.is_some_and(|c| *c != client_id) {
            return Err(bad("client_id and the assertion's iss differ"));
        }
        let client = self
            .client(&client_id)
            .await?
            .ok_or_else(|| bad("unknown client"))?;
        if client.token_endpoint_auth_method != AuthMethod::PrivateKeyJwt {
            return Err(bad("this client is not registered for private_key_jwt"));
        }
        let set = self.client_keys(&client).await?;
        let candidates: Vec<&Jwk> = match &header.kid {
            Some(kid) => set
                .keys
                .iter()
                .filter(|k| k.common.key_id.as_deref() == Some(kid))
                .collect(),
            None => set.keys.iter().collect(),
        };
        if candidates.is_empty() {
            return Err(bad("no registered key matches the assertion's kid"));
        }
        let mut v = Validation::new(header.alg);
        v.leeway = super::jwt::CLOCK_LEEWAY_S;
        v.set_audience(&[self.token_endpoint()]);
        v.set_issuer(&[&client_id]);
        v.sub = Some(client_id.clone());
        v.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        let claims: AssertionClaims = candidates
            .iter()
            .filter_map(|k| DecodingKey::from_jwk(k).ok())
            .find_map(|key| jsonwebtoken::decode::<AssertionClaims>(assertion, &key, &v).ok())
            .map(|d| d.claims)
            .ok_or_else(|| {
                bad("the client assertion's signature, audience or lifetime is not valid")
            })?;
        let now = now_s();
        if claims.exp > now + MAX_ASSERTION_LIFETIME_S + super::jwt::CLOCK_LEEWAY_S as i64 {
            return Err(bad(
                "the client assertion's exp is more than five minutes ahead",
            ));
        }
        if claims.iss != claims.sub || claims.jti.is_empty() {
            return Err(bad("the client assertion needs iss = sub and a jti"));
        }
        let fresh = self
            .store()
            .auth_insert(
                ASSERTION_KIND,
                &format!("{client_id}\u{1f}{}", claims.jti),
                "",
                None,
                (claims.exp + super::jwt::CLOCK_LEEWAY_S as i64) * 1000,
            )
            .await?;
        if !fresh {
            return Err(bad("this client assertion (jti) has been used already"));
        }
        Ok(client)
    }
}
