//! Signing keys: RSA 2048, created at first start in the data folder (file
//! mode 0600), rotated by `vesta keys rotate`; the JWKS publishes the
//! current key and the one before it so tokens signed just before a
//! rotation still verify.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// RSA modulus size of new keys, in bits.
pub const KEY_BITS: usize = 2048;
/// Keys kept (and published): the current one and its predecessor.
pub const KEYS_KEPT: usize = 2;
/// File name inside the data folder.
pub const KEY_FILE: &str = "signing-keys.json";

/// One signing key as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredKey {
    pub kid: String,
    /// PKCS#1 PEM of the private key.
    pub pem: String,
    pub created_ms: i64,
}

/// The keys in force, newest last.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct KeyRing {
    pub keys: Vec<StoredKey>,
    /// `(kid, n, e)` of each key, computed once at load (verification is per request).
    #[serde(skip)]
    public: Vec<(String, String, String)>,
}

/// Why keys could not be loaded or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("signing keys at {path}: {message}")]
    Io { path: String, message: String },
    #[error("signing key: {0}")]
    Crypto(String),
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> KeyError {
    KeyError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

pub fn key_path(data_dir: &Path) -> PathBuf {
    data_dir.join(KEY_FILE)
}

fn new_key() -> Result<StoredKey, KeyError> {
    let mut rng = rsa::rand_core::OsRng;
    let key =
        rsa::RsaPrivateKey::new(&mut rng, KEY_BITS).map_err(|e| KeyError::Crypto(e.to_string()))?;
    let pem = key
        .to_pkcs1_pem(LineEnding::LF)
        .map_err(|e| KeyError::Crypto(e.to_string()))?;
    Ok(StoredKey {
        kid: uuid::Uuid::new_v4().simple().to_string(),
        pem: pem.to_string(),
        created_ms: crate::fhir::instant::now_ms(),
    })
}

/// Writes the ring with mode 0600 (atomically, through a temp file).
fn save(path: &Path, ring: &KeyRing) -> Result<(), KeyError> {
    let text = serde_json::to_string_pretty(ring).map_err(|e| io_err(path, e))?;
    crate::private_file::write(path, text.as_bytes()).map_err(|e| io_err(path, e))
}

impl KeyRing {
    /// Loads the ring, creating a first key when there is none.
    pub fn load_or_create(data_dir: &Path) -> Result<KeyRing, KeyError> {
        let path = key_path(data_dir);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let ring: KeyRing = serde_json::from_str(&text).map_err(|e| io_err(&path, e))?;
                if ring.keys.is_empty() {
                    return Err(io_err(&path, "holds no key"));
                }
                ring.with_public()
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let ring = KeyRing {
                    keys: vec![new_key()?],
                    public: Vec::new(),
                };
                save(&path, &ring)?;
                tracing::info!("created a signing key");
                ring.with_public()
            }
            Err(e) => Err(io_err(&path, e)),
        }
    }

    /// Adds a new current key, keeping its predecessor; returns the new kid.
    pub fn rotate(data_dir: &Path) -> Result<String, KeyError> {
        let mut ring = KeyRing::load_or_create(data_dir)?;
        let key = new_key()?;
        let kid = key.kid.clone();
        ring.keys.push(key);
        let excess = ring.keys.len().saturating_sub(KEYS_KEPT);
        ring.keys.drain(..excess);
        save(&key_path(data_dir), &ring)?;
        Ok(kid)
    }

    fn with_public(mut self) -> Result<KeyRing, KeyError> {
        self.public = self
            .keys
            .iter()
            .map(|k| k.public_components().map(|(n, e)| (k.kid.clone(), n, e)))
            .collect::<Result<_, _>>()?;
        Ok(self)
    }

    /// `(n, e)` of the key `kid`, base64url.
    pub fn public_key(&self, kid: &str) -> Option<(&str, &str)> {
        self.public
            .iter()
            .find(|(k, _, _)| k == kid)
            .map(|(_, n, e)| (n.as_str(), e.as_str()))
    }

    /// The key new tokens are signed with.
    pub fn current(&self) -> Result<&StoredKey, KeyError> {
        self.keys
            .last()
            .ok_or_else(|| KeyError::Crypto("no signing key".into()))
    }

    pub fn find(&self, kid: &str) -> Option<&StoredKey> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    /// The public keys as a JWK Set.
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = self
            .public
            .iter()
            .map(|(kid, n, e)| json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": n, "e": e}))
            .collect();
        json!({ "keys": keys })
    }
}

impl StoredKey {
    /// `(n, e)`, base64url without padding.
    pub fn public_components(&self) -> Result<(String, String), KeyError> {
        let key = rsa::RsaPrivateKey::from_pkcs1_pem(&self.pem)
            .map_err(|e| KeyError::Crypto(e.to_string()))?;
        Ok((
            URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
            URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_created_private_and_rotated_keeping_one_predecessor() {
        let dir = tempfile::tempdir().unwrap();
        let ring = KeyRing::load_or_create(dir.path()).unwrap();
        let first = ring.current().unwrap().kid.clone();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(key_path(dir.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let second = KeyRing::rotate(dir.path()).unwrap();
        let third = KeyRing::rotate(dir.path()).unwrap();
        let ring = KeyRing::load_or_create(dir.path()).unwrap();
        let kids: Vec<&str> = ring.keys.iter().map(|k| k.kid.as_str()).collect();
        assert_eq!(kids, vec![second.as_str(), third.as_str()]);
        assert!(ring.find(&first).is_none());
        assert_eq!(ring.jwks()["keys"].as_array().unwrap().len(), 2);
    }
}
