//! The `smart-config/` folder: roles (each with the most it may be granted),
//! users (argon2 password hashes, a role and a `fhirUser` each) and static
//! client registrations. Dynamic registrations live in the database.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use serde::{Deserialize, Serialize};

use super::clients::Client;
use crate::policy::scope::{self, Scope};

pub const ROLES_FILE: &str = "roles.toml";
pub const USERS_FILE: &str = "users.toml";
pub const CLIENTS_FILE: &str = "clients.toml";
/// Longest password accepted at login, in bytes.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// One role: the most a user holding it may be granted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Role {
    /// Space-separated resource scopes; their context is ignored (a role
    /// limits `patient/` and `user/` scopes alike).
    pub scopes: String,
    /// Users of this role reach only their own record (`fhirUser` Patient).
    #[serde(default)]
    pub self_only: bool,
    /// Users of this role may search the whole audit trail (their scopes
    /// must still allow AuditEvent).
    #[serde(default)]
    pub audit: bool,
    #[serde(default)]
    pub description: String,
}

/// One user who can sign in.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub username: String,
    /// PHC string (`$argon2id$…`).
    pub password_hash: String,
    pub role: String,
    /// `Practitioner/123`, `Patient/456`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fhir_user: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default)]
    user: Vec<User>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientsFile {
    #[serde(default)]
    client: Vec<Client>,
}

/// Everything read from `smart-config/`.
#[derive(Debug, Clone, Default)]
pub struct SmartConfig {
    pub roles: BTreeMap<String, Role>,
    pub users: Vec<User>,
    pub clients: Vec<Client>,
}

/// A problem in `smart-config/`, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct SmartConfigError {
    pub file: String,
    pub message: String,
}

fn read_optional(path: &Path) -> Result<Option<String>, SmartConfigError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(SmartConfigError {
            file: path.display().to_string(),
            message: e.to_string(),
        }),
    }
}

fn parse<T: for<'de> Deserialize<'de> + Default>(path: &Path) -> Result<T, SmartConfigError> {
    match read_optional(path)? {
        None => Ok(T::default()),
        Some(text) => toml::from_str(&text).map_err(|e| SmartConfigError {
            file: path.display().to_string(),
            message: e.to_string(),
        }),
    }
}

impl SmartConfig {
    /// Reads the folder; missing files mean "none" (no users, no static clients).
    pub fn load(dir: &Path) -> Result<SmartConfig, SmartConfigError> {
        let roles: BTreeMap<String, Role> = parse(&dir.join(ROLES_FILE))?;
        let users: UsersFile = parse(&dir.join(USERS_FILE))?;
        let clients: ClientsFile = parse(&dir.join(CLIENTS_FILE))?;
        let cfg = SmartConfig {
            roles,
            users: users.user,
            clients: clients.client,
        };
        for u in &cfg.users {
            if !cfg.roles.contains_key(&u.role) {
                return Err(SmartConfigError {
                    file: dir.join(USERS_FILE).display().to_string(),
                    message: format!(
                        "user '{}' has role '{}', which roles.toml does not define",
                        u.username, u.role
                    ),
                });
            }
        }
        Ok(cfg)
    }

    /// The role's limit as scopes.
    pub fn role_limit(&self, role: &str) -> Option<Vec<Scope>> {
        self.roles.get(role).map(|r| scope::parse_list(&r.scopes))
    }

    pub fn user(&self, username: &str) -> Option<&User> {
        self.users.iter().find(|u| u.username == username)
    }

    /// For a user whose role is `self_only`: the one patient their tokens
    /// may reach, their `fhirUser` Patient's id (empty when the fhirUser is
    /// not a Patient: such a user reaches no patient at all). `None` for
    /// every other role.
    pub fn self_patient(&self, role: Option<&str>, fhir_user: Option<&str>) -> Option<String> {
        let role = self.roles.get(role?)?;
        role.self_only.then(|| {
            fhir_user
                .and_then(|f| f.strip_prefix("Patient/"))
                .unwrap_or("")
                .to_string()
        })
    }

    /// Checks a password; `None` for an unknown user or a wrong password
    /// (the same work is done for both, so timing does not tell which).
    pub fn authenticate(&self, username: &str, password: &str) -> Option<&User> {
        if password.len() > MAX_PASSWORD_BYTES {
            return None;
        }
        let user = self.user(username);
        let hash = user
            .map(|u| u.password_hash.as_str())
            .unwrap_or(DUMMY_HASH.as_str());
        let ok = PasswordHash::new(hash).ok().is_some_and(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        });
        user.filter(|_| ok)
    }
}

/// A patient context that names someone other than a self-only user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForeignPatient;

/// The patient context a token may carry: `asked` for users of other roles
/// (`self_patient` `None`); for a self-only user nothing or their own
/// patient, never another one (`Err`), whatever the launch or caller asks.
pub fn confine_patient(
    self_patient: Option<&str>,
    asked: Option<&str>,
) -> Result<Option<String>, ForeignPatient> {
    match (self_patient, asked) {
        (None, asked) => Ok(asked.map(str::to_string)),
        (Some(_), None) => Ok(None),
        (Some(own), Some(p)) if !own.is_empty() && own == p => Ok(Some(own.to_string())),
        (Some(_), Some(_)) => Err(ForeignPatient),
    }
}

/// Verified against when the username is unknown, so that an unknown user
/// costs the same hashing work as a wrong password.
static DUMMY_HASH: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| hash_password("not a password").unwrap_or_default());

/// Hashes a password with argon2id and a random salt.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Adds (or replaces) a user in `users.toml` (rewritten with mode 0600).
pub fn add_user(dir: &Path, user: User) -> Result<PathBuf, SmartConfigError> {
    let path = dir.join(USERS_FILE);
    let mut file: UsersFile = parse(&path)?;
    file.user.retain(|u| u.username != user.username);
    file.user.push(user);
    let text = toml::to_string(&file).map_err(|e| SmartConfigError {
        file: path.display().to_string(),
        message: e.to_string(),
    })?;
    // It holds password hashes: private, and never seen half-written.
    crate::private_file::write(&path, text.as_bytes()).map_err(|e| SmartConfigError {
        file: path.display().to_string(),
        message: e.to_string(),
    })?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_and_the_shipped_roles_parse() {
        let h = hash_password("s3cret").unwrap();
        let cfg = SmartConfig {
            roles: toml::from_str(include_str!("../../smart-config/roles.toml")).unwrap(),
            users: vec![User {
                username: "a".into(),
                password_hash: h,
                role: "nurse".into(),
                fhir_user: None,
            }],
            clients: vec![],
        };
        assert!(cfg.authenticate("a", "s3cret").is_some());
        assert!(cfg.authenticate("a", "wrong").is_none());
        assert!(cfg.authenticate("nobody", "x").is_none());
        for role in [
            "admin",
            "clinician",
            "nurse",
            "coordinator",
            "faculty",
            "researcher",
            "patient",
            "readonly",
        ] {
            let limit = cfg.role_limit(role).unwrap();
            assert!(!limit.is_empty(), "{role}");
        }
        assert!(cfg.roles["patient"].self_only);
    }

    #[test]
    fn self_only_users_reach_their_own_patient_only() {
        let cfg = SmartConfig {
            roles: toml::from_str(include_str!("../../smart-config/roles.toml")).unwrap(),
            ..SmartConfig::default()
        };
        let own = cfg.self_patient(Some("patient"), Some("Patient/p1"));
        assert_eq!(own.as_deref(), Some("p1"));
        assert_eq!(
            cfg.self_patient(Some("patient"), Some("Practitioner/x")),
            Some(String::new()),
            "a self-only role without a Patient fhirUser reaches nobody"
        );
        assert_eq!(cfg.self_patient(Some("patient"), None), Some(String::new()));
        assert_eq!(
            cfg.self_patient(Some("clinician"), Some("Patient/p1")),
            None
        );
        assert_eq!(cfg.self_patient(None, Some("Patient/p1")), None);
        assert_eq!(confine_patient(None, Some("p2")), Ok(Some("p2".into())));
        assert_eq!(confine_patient(Some("p1"), None), Ok(None));
        assert_eq!(
            confine_patient(Some("p1"), Some("p1")),
            Ok(Some("p1".into()))
        );
        assert_eq!(confine_patient(Some("p1"), Some("p2")), Err(ForeignPatient));
        assert_eq!(confine_patient(Some(""), Some("")), Err(ForeignPatient));
        assert_eq!(confine_patient(Some(""), Some("p2")), Err(ForeignPatient));
    }

    #[test]
    fn adding_users_rewrites_a_private_file() {
        let dir = tempfile::tempdir().unwrap();
        let user = |name: &str, role: &str| User {
            username: name.into(),
            password_hash: "$argon2id$x".into(),
            role: role.into(),
            fhir_user: None,
        };
        add_user(dir.path(), user("a", "nurse")).unwrap();
        add_user(dir.path(), user("b", "nurse")).unwrap();
        let path = add_user(dir.path(), user("a", "admin")).unwrap();
        let file: UsersFile = parse(&path).unwrap();
        let roles: Vec<(&str, &str)> = file
            .user
            .iter()
            .map(|u| (u.username.as_str(), u.role.as_str()))
            .collect();
        assert_eq!(roles, [("b", "nurse"), ("a", "admin")]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
