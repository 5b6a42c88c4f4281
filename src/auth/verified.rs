//! Recently verified access tokens, so that a client's repeated requests
//! skip the RSA signature check (the largest single cost of a read under
//! load), and the revocation lookup while the store's revocation counter has
//! not moved since the token was last found unrevoked (a revocation on any
//! instance bumps it). An entry is never used past the token's own expiry.

use sha2::{Digest, Sha256};

use super::jwt::AccessClaims;

/// Most verified tokens remembered; the least recently used go first.
pub const MAX_VERIFIED_TOKENS: usize = 10_000;

/// (SHA-256 of the token, audience it was verified for).
type Key = ([u8; 32], String);

/// A verified token: its claims, and the revocation counter under which it
/// was last found unrevoked.
#[derive(Clone)]
pub struct Verified {
    pub claims: AccessClaims,
    pub unrevoked_at: Option<i64>,
}

/// The cache of verified tokens.
pub struct VerifiedTokens {
    cache: quick_cache::sync::Cache<Key, Verified>,
}

impl Default for VerifiedTokens {
    fn default() -> Self {
        VerifiedTokens {
            cache: quick_cache::sync::Cache::new(MAX_VERIFIED_TOKENS),
        }
    }
}

fn key(token: &str, audience: &str) -> Key {
    (
        Sha256::digest(token.as_bytes()).into(),
        audience.to_string(),
    )
}

impl VerifiedTokens {
    /// `token` if it was verified for `audience` and has not expired (`now`
    /// in seconds since the epoch).
    pub fn get(&self, token: &str, audience: &str, now: i64) -> Option<Verified> {
        let k = key(token, audience);
        let v = self.cache.get(&k)?;
        if v.claims.exp > now {
            Some(v)
        } else {
            self.cache.remove(&k);
            None
        }
    }

    /// Remembers a token that was just verified (and, when
    /// `unrevoked_at` is given, found unrevoked under that counter).
    pub fn insert(&self, token: &str, audience: &str, v: Verified) {
        self.cache.insert(key(token, audience), v);
    }

    /// Forgets every token (the signing keys changed).
    pub fn clear(&self) {
        self.cache.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> AccessClaims {
        serde_json::from_value(serde_json::json!({
            "iss": "https://vesta.example", "sub": "app", "aud": ["https://vesta.example/fhir"],
            "exp": exp, "iat": 0, "jti": "j1", "client_id": "app", "scope": "system/*.rs"
        }))
        .expect("claims")
    }

    fn verified(exp: i64) -> Verified {
        Verified {
            claims: claims(exp),
            unrevoked_at: Some(7),
        }
    }

    #[test]
    fn remembers_per_token_and_audience_until_expiry() {
        let v = VerifiedTokens::default();
        v.insert("tok", "aud", verified(100));
        assert_eq!(
            v.get("tok", "aud", 99).and_then(|e| e.unrevoked_at),
            Some(7)
        );
        assert!(v.get("tok", "aud", 99).is_some());
        assert!(v.get("tok", "other-aud", 99).is_none());
        assert!(v.get("tok2", "aud", 99).is_none());
        assert!(
            v.get("tok", "aud", 100).is_none(),
            "expired entries are not used"
        );
        assert!(v.get("tok", "aud", 1).is_none(), "and are dropped");
        v.insert("tok", "aud", verified(100));
        v.clear();
        assert!(v.get("tok", "aud", 1).is_none());
    }
}
