//! Who may do what: the principal behind a request, and the one decision
//! (token scopes ∩ role, Consent joining later) that every door goes through.
//!
//! The service layer asks [`Principal::decide`] before an interaction and
//! [`visible`] for each resource it is about to return or change.

pub mod consent;
pub mod matching;
pub mod scope;

use scope::{Context, Perms, ResourceScope};

use crate::search::compartment;
use crate::search::definitions::Registry;

/// How a principal came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    /// A verified access token.
    Token,
    /// No authorization: `--insecure-open`, or a local command (import, reindex).
    Open,
    /// No token (only public endpoints such as `/metadata` accept it).
    Anonymous,
}

/// The subject of a request, as its access token describes it.
#[derive(Debug, Clone)]
pub struct Principal {
    pub kind: PrincipalKind,
    pub client_id: Option<String>,
    pub username: Option<String>,
    /// `Practitioner/123`, `Patient/456`, …
    pub fhir_user: Option<String>,
    pub role: Option<String>,
    /// Launch patient: `patient/` scopes reach this patient's compartment only.
    pub patient: Option<String>,
    pub encounter: Option<String>,
    pub scopes: Vec<ResourceScope>,
    /// Users whose role confines them to their own record: every scope,
    /// `user/` included, reaches this patient's compartment only.
    pub self_patient: Option<String>,
    /// The access token's `jti`, for audit.
    pub token_id: Option<String>,
    /// May search the whole audit trail (roles marked `audit = true`,
    /// backend clients by their scopes alone, local commands).
    pub audit_reader: bool,
}

/// A condition a resource must meet to be reached under one scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    /// Must be in this patient's compartment.
    pub patient: Option<String>,
    /// Must match these search parameters (v2 query-parameter scopes).
    pub filter: Vec<(String, String)>,
}

impl Constraint {
    fn is_trivial(&self) -> bool {
        self.patient.is_none() && self.filter.is_empty()
    }
}

/// What a principal may do with one permission on one resource type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Denied,
    Unrestricted,
    /// Allowed for resources meeting any one of these constraints.
    Restricted(Vec<Constraint>),
}

impl Decision {
    pub fn is_denied(&self) -> bool {
        matches!(self, Decision::Denied)
    }
}

/// True when resources of `res_type` can be placed in a patient's compartment.
pub fn patient_scoped_type(res_type: &str) -> bool {
    res_type == "Patient" || compartment::patient_params(res_type).is_some()
}

impl Principal {
    /// Everything allowed: `--insecure-open` and local commands.
    pub fn open() -> Principal {
        Principal {
            kind: PrincipalKind::Open,
            client_id: None,
            username: None,
            fhir_user: None,
            role: None,
            patient: None,
            encounter: None,
            scopes: Vec::new(),
            self_patient: None,
            token_id: None,
            audit_reader: true,
        }
    }

    /// No token: nothing but public endpoints.
    pub fn anonymous() -> Principal {
        Principal {
            kind: PrincipalKind::Anonymous,
            audit_reader: false,
            ..Principal::open()
        }
    }

    pub fn is_open(&self) -> bool {
        self.kind == PrincipalKind::Open
    }

    /// True when some scope confines this principal to one patient's data.
    pub fn is_confined(&self) -> bool {
        !self.is_open()
            && (self.self_patient.is_some()
                || self.scopes.iter().any(|s| s.context == Context::Patient))
    }

    /// May this principal use `perm` on resources of `res_type`, and on which?
    pub fn decide(&self, perm: Perms, res_type: &str) -> Decision {
        match self.kind {
            PrincipalKind::Open => return Decision::Unrestricted,
            PrincipalKind::Anonymous => return Decision::Denied,
            PrincipalKind::Token => {}
        }
        let compartment_type = patient_scoped_type(res_type);
        let mut constraints: Vec<Constraint> = Vec::new();
        for s in &self.scopes {
            if !s.perms.contains(perm) || !s.covers_type(res_type) {
                continue;
            }
            let patient = match s.context {
                Context::Patient => match &self.patient {
                    Some(p) => Some(p.clone()),
                    // A patient scope without a launch patient reaches nothing.
                    None => continue,
                },
                Context::User => self.self_patient.clone(),
                Context::System => None,
            };
            let c = Constraint {
                // Types outside the Patient compartment (Practitioner,
                // Medication, …) are shared reference data, not one
                // patient's record.
                patient: patient.filter(|_| compartment_type),
                filter: s.filter.clone(),
            };
            if c.is_trivial() {
                return Decision::Unrestricted;
            }
            if !constraints.contains(&c) {
                constraints.push(c);
            }
        }
        if constraints.is_empty() {
            Decision::Denied
        } else {
            Decision::Restricted(constraints)
        }
    }

    /// May this principal run administrative operations (`$reindex`)?
    pub fn is_admin(&self) -> bool {
        self.is_open()
            || (self.kind == PrincipalKind::Token
                && !self.is_confined()
                && matches!(
                    (
                        self.decide(Perms::ALL, "SearchParameter"),
                        self.role.as_deref()
                    ),
                    (Decision::Unrestricted, Some("admin") | None)
                ))
    }
}

/// True when `resource` (of `res_type`) meets the decision.
pub fn visible(
    reg: &Registry,
    decision: &Decision,
    res_type: &str,
    resource: &serde_json::Value,
) -> bool {
    match decision {
        Decision::Denied => false,
        Decision::Unrestricted => true,
        Decision::Restricted(cs) => cs.iter().any(|c| {
            c.patient
                .as_deref()
                .is_none_or(|p| matching::in_patient_compartment(reg, res_type, resource, p))
                && (c.filter.is_empty() || matching::matches_filter(reg, resource, &c.filter))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(scopes: &str, patient: Option<&str>) -> Principal {
        Principal {
            kind: PrincipalKind::Token,
            patient: patient.map(str::to_string),
            scopes: scope::resource_scopes(&scope::parse_list(scopes)),
            ..Principal::open()
        }
    }

    #[test]
    fn patient_scopes_confine_compartment_types_only() {
        let p = token("patient/*.rs", Some("p1"));
        assert_eq!(
            p.decide(Perms::R, "Observation"),
            Decision::Restricted(vec![Constraint {
                patient: Some("p1".into()),
                filter: vec![]
            }])
        );
        assert_eq!(p.decide(Perms::R, "Practitioner"), Decision::Unrestricted);
        assert!(p.decide(Perms::C, "Observation").is_denied());
        assert!(p.is_confined());
        // Without a launch patient, patient scopes reach nothing.
        assert!(token("patient/*.rs", None)
            .decide(Perms::R, "Observation")
            .is_denied());
    }

    #[test]
    fn a_user_scope_lifts_the_confinement() {
        let p = token("patient/*.rs user/Observation.rs", Some("p1"));
        assert_eq!(p.decide(Perms::S, "Observation"), Decision::Unrestricted);
        assert!(matches!(
            p.decide(Perms::S, "Condition"),
            Decision::Restricted(_)
        ));
    }

    #[test]
    fn anonymous_is_denied_and_open_is_not() {
        assert!(Principal::anonymous()
            .decide(Perms::R, "Patient")
            .is_denied());
        assert_eq!(
            Principal::open().decide(Perms::D, "Patient"),
            Decision::Unrestricted
        );
    }
}
