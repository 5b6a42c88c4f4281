//! Settings: defaults, then an optional `vesta.toml`, then `VESTA_*`
//! environment variables and command-line flags (which clap merges).
//! Embedded SQLite in `./vesta-data` is the default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::guard::RateLimitSettings;
use crate::service::Limits;

/// Default listen address.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8080";
/// Default data folder (SQLite file, keys).
pub const DEFAULT_DATA_DIR: &str = "vesta-data";
/// Default database pool size.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 8;
/// Default wait for a pooled connection.
pub const DEFAULT_ACQUIRE_TIMEOUT_MS: u64 = 5_000;
/// Default folder of roles, users and static clients.
pub const DEFAULT_SMART_CONFIG_DIR: &str = "smart-config";
/// Default time in-flight requests get to finish after a shutdown signal.
pub const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 10_000;

/// Everything the server needs to start.
#[derive(Debug, Clone)]
pub struct Settings {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    /// `postgres://…` for PostgreSQL; `None` for SQLite in `data_dir`.
    pub database_url: Option<String>,
    /// The FHIR base clients see (behind a proxy); defaults to `http://<addr>/fhir`.
    pub public_base_url: Option<String>,
    pub limits: Limits,
    pub max_connections: u32,
    pub acquire_timeout_ms: u64,
    /// SQLite: fsync the WAL on every commit (power-loss durability).
    pub sqlite_sync_full: bool,
    /// SQLite: each AuditEvent of a read, search or sign-in waits for its
    /// own fsynced commit; `false` journals them and leaves the fsync to
    /// the checkpointer's next pass.
    pub sqlite_audit_sync_full: bool,
    pub shutdown_grace_ms: u64,
    /// `smart-config/`: roles, users, static clients.
    pub smart_config_dir: PathBuf,
    /// Access-token lifetime, in seconds.
    pub access_token_ttl_s: i64,
    /// Refresh-token lifetime (offline access), in seconds.
    pub refresh_token_ttl_s: i64,
    /// No authorization at all: every request is allowed. Local experiments only.
    pub insecure_open: bool,
    /// PEM certificate chain: with `tls_key`, Vesta serves HTTPS itself.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Origins (`https://app.example.org`, or `*`) that browser apps may call
    /// the API from; empty: no cross-origin access.
    pub cors_origins: Vec<String>,
    /// Extra `Host` values (`name` or `name:port`) the MCP endpoint answers
    /// besides loopback and the public base URL's host (DNS-rebinding guard).
    pub mcp_allowed_hosts: Vec<String>,
    /// Most live MCP sessions (protocol revisions with `initialize`) one
    /// instance holds; an `initialize` beyond it gets 503.
    pub mcp_max_sessions: usize,
    /// An MCP session with no message for this many seconds is closed.
    pub mcp_session_idle_s: u64,
    /// Requests per minute per user (by role) and per backend client.
    pub rate_limits: RateLimitSettings,
    /// `permit` (opt-out: a patient without a privacy Consent is shared) or
    /// `deny` (opt-in: only patients with a permitting Consent are).
    pub consent_default: String,
    /// Roles that may assert break-glass (purpose of use BTG or ETREAT).
    pub break_glass_roles: Vec<String>,
    /// Roles that may create, change or revoke any patient's Consent (a
    /// patient may always manage their own; backend clients by scope).
    pub consent_manager_roles: Vec<String>,
    /// Hosts a client's `jwks_uri` may name although they are internal
    /// (loopback, private addresses) or served over plain http.
    pub jwks_uri_allow_hosts: Vec<String>,
}

impl Settings {
    /// How the service enforces patients' Consents.
    pub fn consent_settings(&self) -> crate::service::consent::ConsentSettings {
        crate::service::consent::ConsentSettings {
            default: if self.consent_default == "deny" {
                crate::policy::consent::ConsentVerdict::Deny
            } else {
                crate::policy::consent::ConsentVerdict::Permit
            },
            break_glass_roles: self.break_glass_roles.clone(),
            manager_roles: self.consent_manager_roles.clone(),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            addr: DEFAULT_ADDR
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8080))),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            database_url: None,
            public_base_url: None,
            limits: Limits::default(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            acquire_timeout_ms: DEFAULT_ACQUIRE_TIMEOUT_MS,
            sqlite_sync_full: true,
            sqlite_audit_sync_full: false,
            shutdown_grace_ms: DEFAULT_SHUTDOWN_GRACE_MS,
            smart_config_dir: PathBuf::from(DEFAULT_SMART_CONFIG_DIR),
            access_token_ttl_s: crate::auth::DEFAULT_ACCESS_TOKEN_TTL_S,
            refresh_token_ttl_s: crate::auth::DEFAULT_REFRESH_TOKEN_TTL_S,
            insecure_open: false,
            tls_cert: None,
            tls_key: None,
            cors_origins: Vec::new(),
            mcp_allowed_hosts: Vec::new(),
            mcp_max_sessions: crate::mcp::sessions::DEFAULT_MCP_MAX_SESSIONS,
            mcp_session_idle_s: crate::mcp::sessions::DEFAULT_MCP_SESSION_IDLE_S,
            consent_default: "permit".into(),
            break_glass_roles: vec!["clinician".into(), "admin".into()],
            consent_manager_roles: vec!["admin".into(), "privacy".into()],
            rate_limits: RateLimitSettings::default(),
            jwks_uri_allow_hosts: Vec::new(),
        }
    }
}

/// The keys `vesta.toml` may hold; every one is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    pub addr: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub public_base_url: Option<String>,
    pub max_body_bytes: Option<usize>,
    pub max_bundle_entries: Option<usize>,
    pub max_count: Option<usize>,
    pub default_count: Option<usize>,
    pub max_connections: Option<u32>,
    pub acquire_timeout_ms: Option<u64>,
    pub sqlite_sync_full: Option<bool>,
    pub sqlite_audit_sync_full: Option<bool>,
    pub shutdown_grace_ms: Option<u64>,
    pub smart_config_dir: Option<PathBuf>,
    pub access_token_ttl_s: Option<i64>,
    pub refresh_token_ttl_s: Option<i64>,
    pub insecure_open: Option<bool>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub cors_origins: Option<Vec<String>>,
    pub mcp_allowed_hosts: Option<Vec<String>>,
    pub mcp_max_sessions: Option<usize>,
    pub mcp_session_idle_s: Option<u64>,
    pub consent_default: Option<String>,
    pub break_glass_roles: Option<Vec<String>>,
    pub consent_manager_roles: Option<Vec<String>>,
    /// Role name → requests per minute; merged over the defaults.
    pub rate_limit_role_per_minute: Option<std::collections::BTreeMap<String, u32>>,
    pub rate_limit_user_per_minute: Option<u32>,
    pub rate_limit_backend_per_minute: Option<u32>,
    pub jwks_uri_allow_hosts: Option<Vec<String>>,
}

/// A setting that stops start-up, naming the key at fault.
#[derive(Debug, thiserror::Error)]
#[error("configuration key '{key}': {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

fn bad(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        message: message.into(),
    }
}

impl FileSettings {
    pub fn load(path: &Path) -> Result<FileSettings, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| bad("config", format!("cannot read {}: {e}", path.display())))?;
        toml::from_str(&text).map_err(|e| bad("config", e.to_string()))
    }

    /// Applies the file's values over `s`.
    pub fn apply(self, s: &mut Settings) -> Result<(), ConfigError> {
        if let Some(a) = self.addr {
            s.addr = a
                .parse()
                .map_err(|_| bad("addr", "must be host:port, e.g. 127.0.0.1:8080"))?;
        }
        if let Some(v) = self.data_dir {
            s.data_dir = v;
        }
        if let Some(v) = self.database_url {
            s.database_url = Some(v);
        }
        if let Some(v) = self.public_base_url {
            s.public_base_url = Some(v);
        }
        if let Some(v) = self.max_body_bytes {
            s.limits.max_body_bytes = v;
        }
        if let Some(v) = self.max_bundle_entries {
            s.limits.max_bundle_entries = v;
        }
        if let Some(v) = self.max_count {
            s.limits.max_count = v;
        }
        if let Some(v) = self.default_count {
            s.limits.default_count = v;
        }
        if let Some(v) = self.max_connections {
            s.max_connections = v;
        }
        if let Some(v) = self.acquire_timeout_ms {
            s.acquire_timeout_ms = v;
        }
        if let Some(v) = self.sqlite_sync_full {
            s.sqlite_sync_full = v;
        }
        if let Some(v) = self.sqlite_audit_sync_full {
            s.sqlite_audit_sync_full = v;
        }
        if let Some(v) = self.shutdown_grace_ms {
            s.shutdown_grace_ms = v;
        }
        if let Some(v) = self.smart_config_dir {
            s.smart_config_dir = v;
        }
        if let Some(v) = self.access_token_ttl_s {
            s.access_token_ttl_s = v;
        }
        if let Some(v) = self.refresh_token_ttl_s {
            s.refresh_token_ttl_s = v;
        }
        if let Some(v) = self.insecure_open {
            s.insecure_open = v;
        }
        if let Some(v) = self.tls_cert {
            s.tls_cert = Some(v);
        }
        if let Some(v) = self.tls_key {
            s.tls_key = Some(v);
        }
        if let Some(v) = self.cors_origins {
            s.cors_origins = v;
        }
        if let Some(v) = self.mcp_allowed_hosts {
            s.mcp_allowed_hosts = v;
        }
        if let Some(v) = self.mcp_max_sessions {
            s.mcp_max_sessions = v;
        }
        if let Some(v) = self.mcp_session_idle_s {
            s.mcp_session_idle_s = v;
        }
        if let Some(v) = self.consent_default {
            s.consent_default = v;
        }
        if let Some(v) = self.break_glass_roles {
            s.break_glass_roles = v;
        }
        if let Some(v) = self.consent_manager_roles {
            s.consent_manager_roles = v;
        }
        if let Some(roles) = self.rate_limit_role_per_minute {
            s.rate_limits.role_per_minute.extend(roles);
        }
        if let Some(v) = self.rate_limit_user_per_minute {
            s.rate_limits.user_per_minute = v;
        }
        if let Some(v) = self.rate_limit_backend_per_minute {
            s.rate_limits.backend_per_minute = v;
        }
        if let Some(v) = self.jwks_uri_allow_hosts {
            s.jwks_uri_allow_hosts = v;
        }
        Ok(())
    }
}

impl Settings {
    /// Checks ranges that would make the server misbehave.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.limits.max_body_bytes < 1024 {
            return Err(bad("max_body_bytes", "must be at least 1024"));
        }
        if self.limits.max_bundle_entries == 0 {
            return Err(bad("max_bundle_entries", "must be at least 1"));
        }
        if self.limits.max_count == 0 || self.limits.default_count == 0 {
            return Err(bad(
                "max_count",
                "max_count and default_count must be at least 1",
            ));
        }
        if self.limits.default_count > self.limits.max_count {
            return Err(bad("default_count", "must not exceed max_count"));
        }
        if self.max_connections == 0 {
            return Err(bad("max_connections", "must be at least 1"));
        }
        if let Some(url) = &self.database_url {
            let ok = ["postgres://", "postgresql://", "sqlite:"]
                .iter()
                .any(|p| url.starts_with(p));
            if !ok {
                return Err(bad(
                    "database_url",
                    "must start with postgres://, postgresql:// or sqlite:",
                ));
            }
        }
        if !(60..=86_400).contains(&self.access_token_ttl_s) {
            return Err(bad("access_token_ttl_s", "must be between 60 and 86400"));
        }
        if !(3600..=365 * 86_400).contains(&self.refresh_token_ttl_s) {
            return Err(bad(
                "refresh_token_ttl_s",
                "must be between 3600 and 31536000",
            ));
        }
        if let Some(base) = &self.public_base_url {
            url::Url::parse(base).map_err(|_| bad("public_base_url", "must be an absolute URL"))?;
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => return Err(bad("tls_key", "tls_cert is set but tls_key is not")),
            (None, Some(_)) => return Err(bad("tls_cert", "tls_key is set but tls_cert is not")),
            _ => {}
        }
        crate::guard::cors::check_origins(&self.cors_origins)
            .map_err(|m| bad("cors_origins", m))?;
        crate::mcp::check_allowed_hosts(&self.mcp_allowed_hosts)
            .map_err(|m| bad("mcp_allowed_hosts", m))?;
        if !(1..=crate::mcp::sessions::MAX_MCP_SESSIONS).contains(&self.mcp_max_sessions) {
            return Err(bad(
                "mcp_max_sessions",
                format!(
                    "must be between 1 and {}",
                    crate::mcp::sessions::MAX_MCP_SESSIONS
                ),
            ));
        }
        if !(1..=crate::mcp::sessions::MAX_MCP_SESSION_IDLE_S).contains(&self.mcp_session_idle_s) {
            return Err(bad(
                "mcp_session_idle_s",
                format!(
                    "must be between 1 and {}",
                    crate::mcp::sessions::MAX_MCP_SESSION_IDLE_S
                ),
            ));
        }
        if !matches!(self.consent_default.as_str(), "permit" | "deny") {
            return Err(bad(
                "consent_default",
                "must be permit (opt-out) or deny (opt-in)",
            ));
        }
        crate::auth::jwks_fetch::check_allow_hosts(&self.jwks_uri_allow_hosts)
            .map_err(|m| bad("jwks_uri_allow_hosts", m))?;
        self.rate_limits
            .check()
            .map_err(|(key, message)| bad(&key, message))?;
        Ok(())
    }

    /// The authorization server's settings.
    pub fn auth_settings(&self) -> crate::auth::AuthSettings {
        crate::auth::AuthSettings {
            config_dir: self.smart_config_dir.clone(),
            key_dir: self.data_dir.clone(),
            access_token_ttl_s: self.access_token_ttl_s,
            refresh_token_ttl_s: self.refresh_token_ttl_s,
            insecure_open: self.insecure_open,
            jwks_uri_allow_hosts: self.jwks_uri_allow_hosts.clone(),
        }
    }

    /// The options for opening the store.
    pub fn store_options(&self) -> crate::store::StoreOptions {
        crate::store::StoreOptions {
            database_url: self.database_url.clone(),
            data_dir: self.data_dir.clone(),
            max_connections: self.max_connections,
            acquire_timeout_ms: self.acquire_timeout_ms,
            sqlite_sync_full: self.sqlite_sync_full,
            sqlite_audit_sync_full: self.sqlite_audit_sync_full,
            sqlite_writer_cache_kib: crate::store::SERVER_WRITER_CACHE_KIB,
            sqlite_background_checkpoint: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::{
        DEFAULT_COUNT, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_BUNDLE_ENTRIES, DEFAULT_MAX_COUNT,
    };

    #[test]
    fn defaults_are_valid() {
        let s = Settings::default();
        assert!(s.validate().is_ok());
        assert_eq!(s.addr.to_string(), DEFAULT_ADDR);
        assert_eq!(s.limits.max_count, DEFAULT_MAX_COUNT);
        assert_eq!(s.limits.default_count, DEFAULT_COUNT);
        assert_eq!(s.limits.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert_eq!(s.limits.max_bundle_entries, DEFAULT_MAX_BUNDLE_ENTRIES);
    }

    #[test]
    fn bad_values_name_the_key() {
        let file: FileSettings = toml::from_str("addr = \"nowhere\"").unwrap();
        let err = file.apply(&mut Settings::default()).unwrap_err();
        assert_eq!(err.key, "addr");
        assert!(toml::from_str::<FileSettings>("nope = 1").is_err());
        let s = Settings {
            database_url: Some("mysql://x".into()),
            ..Settings::default()
        };
        assert_eq!(s.validate().unwrap_err().key, "database_url");
    }

    #[test]
    fn guard_keys_are_read_and_checked() {
        let file: FileSettings = toml::from_str(
            "cors_origins = [\"https://app.example.org\"]\n\
             rate_limit_backend_per_minute = 5\n\
             rate_limit_role_per_minute = { patient = 7, intern = 9 }\n\
             tls_cert = \"c.pem\"\ntls_key = \"k.pem\"",
        )
        .unwrap();
        let mut s = Settings::default();
        file.apply(&mut s).unwrap();
        assert!(s.validate().is_ok());
        assert_eq!(s.rate_limits.backend_per_minute, 5);
        assert_eq!(s.rate_limits.role_per_minute["patient"], 7);
        assert_eq!(s.rate_limits.role_per_minute["intern"], 9);
        assert_eq!(s.rate_limits.role_per_minute["clinician"], 200);
        let key = |s: Settings| s.validate().unwrap_err().key;
        let only_cert = Settings {
            tls_cert: Some("c.pem".into()),
            ..Settings::default()
        };
        assert_eq!(key(only_cert), "tls_key");
        let bad_origin = Settings {
            cors_origins: vec!["https://a.org/path".into()],
            ..Settings::default()
        };
        assert_eq!(key(bad_origin), "cors_origins");
        let mut zero = Settings::default();
        zero.rate_limits.user_per_minute = 0;
        assert_eq!(key(zero), "rate_limit_user_per_minute");
    }

    #[test]
    fn mcp_allowed_hosts_are_read_and_checked() {
        let file: FileSettings =
            toml::from_str("mcp_allowed_hosts = [\"fhir.example.org\", \"10.0.0.5:8080\"]")
                .unwrap();
        let mut s = Settings::default();
        file.apply(&mut s).unwrap();
        assert!(s.validate().is_ok());
        assert_eq!(s.mcp_allowed_hosts.len(), 2);
        let with_scheme = Settings {
            mcp_allowed_hosts: vec!["https://fhir.example.org".into()],
            ..Settings::default()
        };
        assert_eq!(with_scheme.validate().unwrap_err().key, "mcp_allowed_hosts");
    }

    #[test]
    fn jwks_uri_allow_hosts_are_read_and_checked() {
        let file: FileSettings =
            toml::from_str("jwks_uri_allow_hosts = [\"keys.internal\", \"10.0.0.5\"]").unwrap();
        let mut s = Settings::default();
        file.apply(&mut s).unwrap();
        assert!(s.validate().is_ok());
        assert_eq!(s.jwks_uri_allow_hosts, ["keys.internal", "10.0.0.5"]);
        assert_eq!(s.auth_settings().jwks_uri_allow_hosts.len(), 2);
        let with_scheme = Settings {
            jwks_uri_allow_hosts: vec!["https://keys.internal".into()],
            ..Settings::default()
        };
        assert_eq!(
            with_scheme.validate().unwrap_err().key,
            "jwks_uri_allow_hosts"
        );
    }

    #[test]
    fn mcp_session_limits_are_read_and_checked() {
        let file: FileSettings =
            toml::from_str("mcp_max_sessions = 10\nmcp_session_idle_s = 30").unwrap();
        let mut s = Settings::default();
        file.apply(&mut s).unwrap();
        assert!(s.validate().is_ok());
        assert_eq!((s.mcp_max_sessions, s.mcp_session_idle_s), (10, 30));
        let key = |s: Settings| s.validate().unwrap_err().key;
        let none = Settings {
            mcp_max_sessions: 0,
            ..Settings::default()
        };
        assert_eq!(key(none), "mcp_max_sessions");
        let forever = Settings {
            mcp_session_idle_s: crate::mcp::sessions::MAX_MCP_SESSION_IDLE_S + 1,
            ..Settings::default()
        };
        assert_eq!(key(forever), "mcp_session_idle_s");
    }
}
