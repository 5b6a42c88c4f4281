//! Access tokens (JWT, RS256, with `kid`) and OpenID Connect ID tokens
//! (signed through the `openidconnect` crate, with a `fhirUser` claim).

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use openidconnect::core::{
    CoreGenderClaim, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
    CoreRsaPrivateSigningKey,
};
use openidconnect::{
    AccessToken, AdditionalClaims, Audience, AuthorizationCode, IdToken, IdTokenClaims, IssuerUrl,
    JsonWebKeyId, Nonce, StandardClaims, SubjectIdentifier,
};
use serde::{Deserialize, Serialize};

use super::keys::{KeyError, KeyRing};

/// Leeway for clock skew when checking `exp` and `iat`, in seconds.
pub const CLOCK_LEEWAY_S: u64 = 30;

/// The claims of a Vesta access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AccessClaims {
    pub iss: String,
    /// The user's username, or the client id for backend services.
    pub sub: String,
    /// The FHIR base, plus any RFC 8707 resources the token was asked for.
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub client_id: String,
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encounter: Option<String>,
    #[serde(default, rename = "fhirUser", skip_serializing_if = "Option::is_none")]
    pub fhir_user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// Signs access-token claims with the current key.
pub fn sign_access(ring: &KeyRing, claims: &AccessClaims) -> Result<String, KeyError> {
    let key = ring.current()?;
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(key.kid.clone());
    header.typ = Some("at+jwt".into());
    let enc = EncodingKey::from_rsa_pem(key.pem.as_bytes())
        .map_err(|e| KeyError::Crypto(e.to_string()))?;
    jsonwebtoken::encode(&header, claims, &enc).map_err(|e| KeyError::Crypto(e.to_string()))
}

/// Why a presented token was refused (said in `WWW-Authenticate`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a JWT this server signs")]
    Malformed,
    #[error("the token's signing algorithm is not accepted")]
    Algorithm,
    #[error("the token was signed by an unknown key")]
    UnknownKey,
    #[error("the token's signature, issuer, audience or lifetime is not valid")]
    Invalid,
}

/// Verifies a token: RS256 only (so `alg: none` and HS256 keyed with our
/// public key fail), a known `kid`, our issuer, an audience in `audiences`,
/// and an unexpired lifetime.
pub fn verify_access(
    ring: &KeyRing,
    token: &str,
    issuer: &str,
    audience: &str,
) -> Result<AccessClaims, TokenError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
    if header.alg != Algorithm::RS256 {
        return Err(TokenError::Algorithm);
    }
    let kid = header.kid.ok_or(TokenError::UnknownKey)?;
    let (n, e) = ring.public_key(&kid).ok_or(TokenError::UnknownKey)?;
    let dec = DecodingKey::from_rsa_components(n, e).map_err(|_| TokenError::Invalid)?;
    let mut v = Validation::new(Algorithm::RS256);
    v.leeway = CLOCK_LEEWAY_S;
    v.set_issuer(&[issuer]);
    v.set_audience(&[audience]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    jsonwebtoken::decode::<AccessClaims>(token, &dec, &v)
        .map(|d| d.claims)
        .map_err(|_| TokenError::Invalid)
}

/// The `fhirUser` claim of an ID token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FhirUserClaim {
    #[serde(rename = "fhirUser", skip_serializing_if = "Option::is_none")]
    pub fhir_user: Option<String>,
}
impl AdditionalClaims for FhirUserClaim {}

type VestaIdToken = IdToken<
    FhirUserClaim,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;

/// What an ID token says.
pub struct IdTokenFacts<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub subject: &'a str,
    pub fhir_user: Option<&'a str>,
    pub nonce: Option<&'a str>,
    pub auth_time_s: i64,
    pub now_s: i64,
    pub ttl_s: i64,
    pub access_token: &'a str,
}

fn at(secs: i64) -> Result<chrono::DateTime<chrono::Utc>, KeyError> {
    chrono::DateTime::from_timestamp(secs, 0)
        .ok_or_else(|| KeyError::Crypto("time out of range".into()))
}

/// Signs an OpenID Connect ID token (RS256, `at_hash` included).
pub fn sign_id_token(ring: &KeyRing, f: &IdTokenFacts<'_>) -> Result<String, KeyError> {
    let key = ring.current()?;
    let signer =
        CoreRsaPrivateSigningKey::from_pem(&key.pem, Some(JsonWebKeyId::new(key.kid.clone())))
            .map_err(KeyError::Crypto)?;
    let issuer =
        IssuerUrl::new(f.issuer.to_string()).map_err(|e| KeyError::Crypto(e.to_string()))?;
    let mut claims = IdTokenClaims::new(
        issuer,
        vec![Audience::new(f.client_id.to_string())],
        at(f.now_s + f.ttl_s)?,
        at(f.now_s)?,
        StandardClaims::new(SubjectIdentifier::new(f.subject.to_string())),
        FhirUserClaim {
            fhir_user: f.fhir_user.map(str::to_string),
        },
    );
    claims = claims.set_auth_time(Some(at(f.auth_time_s)?));
    if let Some(n) = f.nonce {
        claims = claims.set_nonce(Some(Nonce::new(n.to_string())));
    }
    let token = VestaIdToken::new(
        claims,
        &signer,
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        Some(&AccessToken::new(f.access_token.to_string())),
        None::<&AuthorizationCode>,
    )
    .map_err(|e| KeyError::Crypto(e.to_string()))?;
    Ok(token.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(now: i64) -> AccessClaims {
        AccessClaims {
            iss: "http://vesta.test".into(),
            sub: "alice".into(),
            aud: vec!["http://vesta.test/fhir".into()],
            exp: now + 300,
            iat: now,
            jti: "j1".into(),
            client_id: "app".into(),
            scope: "patient/*.rs".into(),
            patient: Some("p1".into()),
            encounter: None,
            fhir_user: None,
            role: None,
        }
    }

    #[test]
    fn tokens_verify_and_forgeries_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let ring = KeyRing::load_or_create(dir.path()).unwrap();
        let now = crate::fhir::instant::now_ms() / 1000;
        let t = sign_access(&ring, &claims(now)).unwrap();
        let ok = verify_access(&ring, &t, "http://vesta.test", "http://vesta.test/fhir").unwrap();
        assert_eq!(ok.patient.as_deref(), Some("p1"));
        // Wrong audience, wrong issuer.
        assert_eq!(
            verify_access(&ring, &t, "http://vesta.test", "http://other/fhir"),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            verify_access(&ring, &t, "http://evil", "http://vesta.test/fhir"),
            Err(TokenError::Invalid)
        );
        // Expired.
        let old = sign_access(
            &ring,
            &AccessClaims {
                exp: now - 120,
                iat: now - 400,
                ..claims(now)
            },
        )
        .unwrap();
        assert_eq!(
            verify_access(&ring, &old, "http://vesta.test", "http://vesta.test/fhir"),
            Err(TokenError::Invalid)
        );
        // Tampered payload: signature no longer matches.
        let parts: Vec<&str> = t.split('.').collect();
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut payload: serde_json::Value =
            serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
        payload["patient"] = "p2".into();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            b64.encode(payload.to_string()),
            parts[2]
        );
        assert_eq!(
            verify_access(
                &ring,
                &forged,
                "http://vesta.test",
                "http://vesta.test/fhir"
            ),
            Err(TokenError::Invalid)
        );
        // alg none.
        let none_header = b64.encode(r#"{"alg":"none","typ":"JWT"}"#);
        let unsigned = format!("{none_header}.{}.", parts[1]);
        assert!(verify_access(
            &ring,
            &unsigned,
            "http://vesta.test",
            "http://vesta.test/fhir"
        )
        .is_err());
        // HS256 keyed with the public key.
        let (n, _) = ring.current().unwrap().public_components().unwrap();
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some(ring.current().unwrap().kid.clone());
        let hs = jsonwebtoken::encode(&h, &claims(now), &EncodingKey::from_secret(n.as_bytes()))
            .unwrap();
        assert_eq!(
            verify_access(&ring, &hs, "http://vesta.test", "http://vesta.test/fhir"),
            Err(TokenError::Algorithm)
        );
        // ID token.
        let id = sign_id_token(
            &ring,
            &IdTokenFacts {
                issuer: "http://vesta.test",
                client_id: "app",
                subject: "alice",
                fhir_user: Some("Practitioner/1"),
                nonce: Some("n"),
                auth_time_s: now,
                now_s: now,
                ttl_s: 300,
                access_token: &t,
            },
        )
        .unwrap();
        let payload: serde_json::Value =
            serde_json::from_slice(&b64.decode(id.split('.').nth(1).unwrap()).unwrap()).unwrap();
        assert_eq!(payload["fhirUser"], "Practitioner/1");
        assert_eq!(payload["aud"], serde_json::json!(["app"]));
        assert!(payload["at_hash"].is_string());
    }
}
