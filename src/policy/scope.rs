//! SMART scopes, v1 (`patient/Observation.read`) and v2
//! (`patient/Observation.rs?category=…`): parsing, printing and intersection.

use std::fmt;

/// Longest scope string accepted, in bytes.
pub const MAX_SCOPE_BYTES: usize = 512;
/// Most scopes in one request.
pub const MAX_SCOPES: usize = 100;

/// The `c r u d s` permissions of a resource scope, as bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Perms(u8);

impl Perms {
    pub const C: Perms = Perms(1);
    pub const R: Perms = Perms(2);
    pub const U: Perms = Perms(4);
    pub const D: Perms = Perms(8);
    pub const S: Perms = Perms(16);
    pub const ALL: Perms = Perms(31);
    /// v1 `read`: read and search.
    pub const V1_READ: Perms = Perms(2 | 16);
    /// v1 `write`: create, update, delete.
    pub const V1_WRITE: Perms = Perms(1 | 4 | 8);

    pub fn contains(self, other: Perms) -> bool {
        self.0 & other.0 == other.0
    }
    pub fn intersect(self, other: Perms) -> Perms {
        Perms(self.0 & other.0)
    }
    pub fn union(self, other: Perms) -> Perms {
        Perms(self.0 | other.0)
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Parses v2 letters, which must come in the order `cruds`.
    fn parse_v2(s: &str) -> Option<Perms> {
        let mut bits = 0u8;
        let mut last = 0usize;
        for ch in s.chars() {
            let pos = "cruds".find(ch)? + 1;
            if pos <= last {
                return None;
            }
            last = pos;
            bits |= 1 << (pos - 1);
        }
        (bits != 0).then_some(Perms(bits))
    }

    fn v2_letters(self) -> String {
        "cruds"
            .chars()
            .enumerate()
            .filter(|(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, c)| c)
            .collect()
    }
}

/// Whose data a resource scope reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Context {
    /// The launch patient's compartment.
    Patient,
    /// What the signed-in user may see.
    User,
    /// A backend service, no user.
    System,
}

impl Context {
    fn as_str(self) -> &'static str {
        match self {
            Context::Patient => "patient",
            Context::User => "user",
            Context::System => "system",
        }
    }
}

/// `context/Type.perms?filter`
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResourceScope {
    pub context: Context,
    /// `None` for `*`.
    pub res_type: Option<String>,
    pub perms: Perms,
    /// v2 query-parameter restriction, as `(name, value)` pairs (all must match).
    pub filter: Vec<(String, String)>,
    /// Written in v1 syntax (`read`, `write`, `*`); printed back the same way when possible.
    pub v1: bool,
}

/// One scope of a request or token.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    Resource(ResourceScope),
    /// `openid`, `fhirUser`, `launch`, `launch/patient`, `offline_access`, …
    Other(String),
}

/// Scopes that are not resource scopes and that Vesta understands.
pub const KNOWN_OTHER: &[&str] = &[
    "openid",
    "fhirUser",
    "profile",
    "launch",
    "launch/patient",
    "launch/encounter",
    "offline_access",
    "online_access",
];

impl ResourceScope {
    /// Parses one resource scope; `None` when it is not one.
    pub fn parse(s: &str) -> Option<ResourceScope> {
        if s.len() > MAX_SCOPE_BYTES {
            return None;
        }
        let (ctx, rest) = s.split_once('/')?;
        let context = match ctx {
            "patient" => Context::Patient,
            "user" => Context::User,
            "system" => Context::System,
            _ => return None,
        };
        let (head, query) = match rest.split_once('?') {
            Some((h, q)) => (h, Some(q)),
            None => (rest, None),
        };
        let (ty, perm) = head.rsplit_once('.')?;
        let res_type = match ty {
            "*" => None,
            t if crate::fhir::ResourceType::parse(t).is_some() => Some(t.to_string()),
            _ => return None,
        };
        let (perms, v1) = match perm {
            "read" => (Perms::V1_READ, true),
            "write" => (Perms::V1_WRITE, true),
            "*" => (Perms::ALL, true),
            letters => (Perms::parse_v2(letters)?, false),
        };
        let filter = match query {
            None => Vec::new(),
            Some(_) if v1 => return None,
            Some(q) => {
                let pairs = crate::service::interaction::query_pairs(q);
                if pairs.is_empty() || pairs.iter().any(|(k, v)| k.is_empty() || v.is_empty()) {
                    return None;
                }
                pairs
            }
        };
        Some(ResourceScope {
            context,
            res_type,
            perms,
            filter,
            v1,
        })
    }

    /// True when this scope names `res_type` (directly or by `*`).
    pub fn covers_type(&self, res_type: &str) -> bool {
        self.res_type.as_deref().is_none_or(|t| t == res_type)
    }

    /// The part of `self` that `limit` allows, ignoring `limit`'s context
    /// when `same_context` is false (role limits apply to every context).
    pub fn intersect(&self, limit: &ResourceScope, same_context: bool) -> Option<ResourceScope> {
        if same_context && self.context != limit.context {
            return None;
        }
        let res_type = match (&self.res_type, &limit.res_type) {
            (a, None) => a.clone(),
            (None, Some(b)) => Some(b.clone()),
            (Some(a), Some(b)) if a == b => Some(a.clone()),
            _ => return None,
        };
        let perms = self.perms.intersect(limit.perms);
        if perms.is_empty() {
            return None;
        }
        let filter = match (self.filter.is_empty(), limit.filter.is_empty()) {
            (_, true) => self.filter.clone(),
            (true, false) => limit.filter.clone(),
            (false, false) if self.filter == limit.filter => self.filter.clone(),
            _ => return None,
        };
        let v1 = self.v1
            && filter.is_empty()
            && [Perms::V1_READ, Perms::V1_WRITE, Perms::ALL].contains(&perms);
        Some(ResourceScope {
            context: self.context,
            res_type,
            perms,
            filter,
            v1,
        })
    }
}

impl fmt::Display for ResourceScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ty = self.res_type.as_deref().unwrap_or("*");
        let perms = if self.v1 {
            match self.perms {
                Perms::V1_READ => "read".to_string(),
                Perms::V1_WRITE => "write".to_string(),
                _ => "*".to_string(),
            }
        } else {
            self.perms.v2_letters()
        };
        write!(f, "{}/{ty}.{perms}", self.context.as_str())?;
        if !self.filter.is_empty() {
            let q: Vec<String> = self
                .filter
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{}={}",
                        crate::service::interaction::urlencode(k),
                        crate::service::interaction::urlencode(v)
                    )
                })
                .collect();
            write!(f, "?{}", q.join("&"))?;
        }
        Ok(())
    }
}

impl Scope {
    /// Parses a scope; unknown non-resource scopes are `None` (and are not granted).
    pub fn parse(s: &str) -> Option<Scope> {
        if let Some(r) = ResourceScope::parse(s) {
            return Some(Scope::Resource(r));
        }
        KNOWN_OTHER
            .contains(&s)
            .then(|| Scope::Other(s.to_string()))
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Resource(r) => r.fmt(f),
            Scope::Other(s) => f.write_str(s),
        }
    }
}

/// Parses a space-separated scope string, dropping what is not understood
/// (OAuth lets a server grant less than was asked) and capping the count.
pub fn parse_list(s: &str) -> Vec<Scope> {
    let mut out: Vec<Scope> = Vec::new();
    for part in s.split_ascii_whitespace().take(MAX_SCOPES) {
        if let Some(sc) = Scope::parse(part) {
            if !out.contains(&sc) {
                out.push(sc);
            }
        }
    }
    out
}

/// Prints scopes back as a space-separated string.
pub fn to_string(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(Scope::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Granted = requested ∩ client's allowed (same context) ∩ role (any context,
/// resource scopes only). `role` `None` means no role applies (backend services).
pub fn grant(requested: &[Scope], client: &[Scope], role: Option<&[Scope]>) -> Vec<Scope> {
    let mut out: Vec<Scope> = Vec::new();
    let push = |s: Scope, out: &mut Vec<Scope>| {
        if !out.contains(&s) {
            out.push(s);
        }
    };
    for req in requested {
        match req {
            Scope::Other(name) => {
                if client.contains(req) {
                    push(Scope::Other(name.clone()), &mut out);
                }
            }
            Scope::Resource(r) => {
                for c in client {
                    let Scope::Resource(c) = c else { continue };
                    let Some(by_client) = r.intersect(c, true) else {
                        continue;
                    };
                    match role {
                        None => push(Scope::Resource(by_client), &mut out),
                        Some(role) => {
                            for l in role {
                                if let Scope::Resource(l) = l {
                                    if let Some(g) = by_client.intersect(l, false) {
                                        push(Scope::Resource(g), &mut out);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// Keeps the resource scopes of a list.
pub fn resource_scopes(scopes: &[Scope]) -> Vec<ResourceScope> {
    scopes
        .iter()
        .filter_map(|s| match s {
            Scope::Resource(r) => Some(r.clone()),
            Scope::Other(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Vec<Scope> {
        parse_list(s)
    }

    #[test]
    fn v1_and_v2_parse_and_print_back() {
        for s in [
            "patient/Observation.read",
            "user/*.write",
            "system/*.*",
            "patient/Observation.rs",
            "user/Patient.cruds",
            "patient/Observation.rs?category=http%3A%2F%2Fterminology.hl7.org%2FCodeSystem%2Fobservation-category%7Claboratory",
        ] {
            let sc = Scope::parse(s).unwrap();
            assert_eq!(sc.to_string(), s);
        }
        let r = ResourceScope::parse("patient/Observation.rs?category=laboratory").unwrap();
        assert_eq!(r.filter, vec![("category".into(), "laboratory".into())]);
        assert!(r.perms.contains(Perms::S) && !r.perms.contains(Perms::C));
    }

    #[test]
    fn malformed_scopes_are_not_granted() {
        for s in [
            "patient/Observation.sr",
            "patient/Observation.rr",
            "patient/Nonsense.read",
            "doctor/Observation.read",
            "patient/Observation.read?category=x",
            "patient/Observation",
            "launch/everything",
        ] {
            assert!(Scope::parse(s).is_none(), "{s}");
        }
    }

    #[test]
    fn grant_is_the_intersection_of_request_client_and_role() {
        let granted = grant(
            &p("patient/*.cruds user/Observation.write openid launch bogus"),
            &p("patient/*.rs user/*.* openid"),
            Some(&p("user/*.rs user/Observation.cu")),
        );
        assert_eq!(
            to_string(&granted),
            "patient/*.rs user/Observation.cu openid"
        );
        // Backend services: no role.
        let granted = grant(&p("system/*.read"), &p("system/Patient.rs"), None);
        assert_eq!(to_string(&granted), "system/Patient.read");
    }

    #[test]
    fn filters_survive_only_when_compatible() {
        let a = ResourceScope::parse("patient/Observation.rs?category=laboratory").unwrap();
        let b = ResourceScope::parse("patient/*.rs").unwrap();
        assert_eq!(a.intersect(&b, true).unwrap().filter.len(), 1);
        let c = ResourceScope::parse("patient/Observation.rs?category=vital-signs").unwrap();
        assert!(a.intersect(&c, true).is_none());
    }
}
