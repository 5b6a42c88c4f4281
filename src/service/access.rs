//! The service layer's use of the policy: every interaction asks here, so no
//! door (REST, Bundle entry, MCP tool) can skip the decision.
//!
//! Status rule: a permission the token lacks for a whole type is 403; a
//! resource the token may not see (another patient's, outside a scope
//! filter) is answered as if it did not exist (404), so that no answer
//! reveals that it does.

use serde_json::Value;

use super::{Ctx, ServiceError, ServiceResult};
use crate::policy::scope::Perms;
use crate::policy::{visible, Constraint, Decision, Principal};
use crate::search::compartment;
use crate::search::definitions::Registry;
use crate::search::plan::Compartment;

/// Human name of a permission, for error messages.
fn perm_name(perm: Perms) -> &'static str {
    match perm {
        Perms::C => "create",
        Perms::R => "read",
        Perms::U => "update",
        Perms::D => "delete",
        _ => "search",
    }
}

/// The decision for `perm` on `res_type`, or 403 when the token has no such scope.
pub(super) fn require(
    principal: &Principal,
    perm: Perms,
    res_type: &str,
) -> ServiceResult<Decision> {
    let d = principal.decide(perm, res_type);
    if d.is_denied() {
        return Err(ServiceError::forbidden(format!(
            "the access token does not allow {} on {res_type}",
            perm_name(perm)
        )));
    }
    Ok(d)
}

/// 404 for a resource that exists but that this principal may not see.
pub(super) fn hidden(res_type: &str, id: &str) -> ServiceError {
    ServiceError::not_found(format!("{res_type}/{id} is not known"))
}

/// Checks writes inside the write transaction, against the content there.
pub(super) struct WriteGuard<'a> {
    reg: &'a Registry,
    principal: &'a Principal,
}

impl<'a> WriteGuard<'a> {
    pub(super) fn new(reg: &'a Registry, ctx: &'a Ctx) -> Self {
        WriteGuard {
            reg,
            principal: &ctx.principal,
        }
    }

    /// For local commands (import): no restriction.
    pub(super) fn open(reg: &'a Registry) -> Self {
        static OPEN: std::sync::LazyLock<Principal> = std::sync::LazyLock::new(Principal::open);
        WriteGuard {
            reg,
            principal: &OPEN,
        }
    }

    /// The type-level permission alone (before any content is known).
    pub(super) fn require(&self, perm: Perms, res_type: &str) -> ServiceResult<()> {
        require(self.principal, perm, res_type).map(|_| ())
    }

    /// The stored resource about to be changed must be reachable.
    pub(super) fn existing(
        &self,
        perm: Perms,
        res_type: &str,
        id: &str,
        existing: &Value,
    ) -> ServiceResult<()> {
        if self.principal.is_open() {
            return Ok(());
        }
        let d = require(self.principal, perm, res_type)?;
        if visible(self.reg, &d, res_type, existing) {
            Ok(())
        } else {
            Err(hidden(res_type, id))
        }
    }

    /// The content about to be stored must stay within the token's reach.
    pub(super) fn new_content(
        &self,
        perm: Perms,
        res_type: &str,
        resource: &Value,
    ) -> ServiceResult<()> {
        if self.principal.is_open() {
            return Ok(());
        }
        let d = require(self.principal, perm, res_type)?;
        if visible(self.reg, &d, res_type, resource) {
            Ok(())
        } else {
            Err(ServiceError::forbidden(format!(
                "the access token does not allow this {res_type} to be written (outside its patient or scope filter)"
            )))
        }
    }
}

/// What a one-type search must add to stay within a decision: a
/// compartment and extra parameters. `None` when unrestricted.
pub(super) fn search_restriction(
    decision: &Decision,
    res_type: &str,
) -> ServiceResult<Option<Constraint>> {
    let cs = match decision {
        Decision::Denied => {
            return Err(ServiceError::forbidden(format!(
                "the access token does not allow search on {res_type}"
            )))
        }
        Decision::Unrestricted => return Ok(None),
        Decision::Restricted(cs) => cs,
    };
    let first = &cs[0];
    if cs.len() == 1 {
        return Ok(Some(first.clone()));
    }
    let same_patient = cs.iter().all(|c| c.patient == first.patient);
    if same_patient && cs.iter().any(|c| c.filter.is_empty()) {
        return Ok(Some(Constraint {
            patient: first.patient.clone(),
            filter: Vec::new(),
        }));
    }
    // Several filtered scopes on one parameter: their values are alternatives.
    let one_param = |c: &Constraint| match c.filter.as_slice() {
        [(k, _)] => Some(k.clone()),
        _ => None,
    };
    if same_patient {
        if let Some(name) = one_param(first) {
            if cs
                .iter()
                .all(|c| one_param(c).as_deref() == Some(name.as_str()))
            {
                let values: Vec<&str> = cs.iter().map(|c| c.filter[0].1.as_str()).collect();
                return Ok(Some(Constraint {
                    patient: first.patient.clone(),
                    filter: vec![(name, values.join(","))],
                }));
            }
        }
    }
    Err(ServiceError::forbidden(format!(
        "the access token's scopes on {res_type} carry conditions that cannot be combined in one search"
    )))
}

/// The compartment that confines a one-type search to `patient`.
pub(super) fn patient_compartment(patient: &str, res_type: &str) -> Option<Compartment> {
    let params = compartment::patient_params(res_type)?;
    Some(Compartment {
        owner_type: "Patient".into(),
        owner_id: patient.to_string(),
        include_owner: res_type == "Patient",
        members: vec![(res_type.to_string(), params.to_vec())],
    })
}

/// Refuses reverse chaining for principals confined to one patient: `_has`
/// on a shared type would reveal other patients' data by its answer.
pub(super) fn check_reverse_chains(
    principal: &Principal,
    params: &[(String, String)],
) -> ServiceResult<()> {
    if principal.is_confined() && params.iter().any(|(k, _)| k.starts_with("_has:")) {
        return Err(ServiceError::forbidden(
            "_has is not available to a token confined to one patient",
        ));
    }
    Ok(())
}
