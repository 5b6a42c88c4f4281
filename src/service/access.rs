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
///
/// The current version a write reads (to replace, patch or delete it) passes
/// the same decision as a read: scopes, role, compartment and the patients'
/// Consents ([`WriteGuard::reachable`]); one it may not read answers exactly
/// like an id that does not exist.
pub(super) struct WriteGuard<'a> {
    reg: &'a Registry,
    principal: &'a Principal,
    /// The request, for the Consent decision; `None` for local commands.
    ctx: Option<&'a Ctx>,
    /// The in-force Consents of the request, read before the write
    /// transaction opens (so a write never waits for a second connection
    /// while it holds row locks); `None` when no Consent can hide anything.
    consents: Option<super::consent::ConsentBook>,
    /// Roles that may change any patient's Consent.
    consent_managers: &'a [String],
}

impl<'a> WriteGuard<'a> {
    /// The guard of one request's writes; call it before the transaction.
    pub(super) async fn new(
        svc: &'a super::FhirService,
        reg: &'a Registry,
        ctx: &'a Ctx,
    ) -> ServiceResult<WriteGuard<'a>> {
        let consents = if svc.consent_may_hide(ctx).await? {
            Some(svc.consent_book(ctx, None).await?)
        } else {
            None
        };
        Ok(WriteGuard {
            reg,
            principal: &ctx.principal,
            ctx: Some(ctx),
            consents,
            consent_managers: &svc.consent.manager_roles,
        })
    }

    /// The guard of a POST, which reads no stored version: the same
    /// checks on what is written, without reading the request's Consents.
    pub(super) fn for_post(
        svc: &'a super::FhirService,
        reg: &'a Registry,
        ctx: &'a Ctx,
    ) -> WriteGuard<'a> {
        WriteGuard {
            reg,
            principal: &ctx.principal,
            ctx: Some(ctx),
            consents: None,
            consent_managers: &svc.consent.manager_roles,
        }
    }

    /// For local commands (import): no restriction.
    pub(super) fn open(reg: &'a Registry) -> Self {
        static OPEN: std::sync::LazyLock<Principal> = std::sync::LazyLock::new(Principal::open);
        WriteGuard {
            reg,
            principal: &OPEN,
            ctx: None,
            consents: None,
            consent_managers: &[],
        }
    }

    /// The type-level permission alone (before any content is known).
    pub(super) fn require(&self, perm: Perms, res_type: &str) -> ServiceResult<()> {
        require(self.principal, perm, res_type).map(|_| ())
    }

    /// True when this principal may see every resource of `res_type` its
    /// `perm` reaches, deleted ones included: no compartment, no scope
    /// filter, and no Consent that could hide one.
    pub(super) fn sees_everything(&self, perm: Perms, res_type: &str) -> bool {
        self.principal.is_open()
            || (self.principal.decide(perm, res_type) == Decision::Unrestricted
                && self.consents.as_ref().is_none_or(|b| b.hides_nothing()))
    }

    /// May this principal create `res_type` at an id of its choosing (an
    /// update that creates)? Only one that sees every resource of the type,
    /// or a backend client (no user) whose scope on it is unrestricted.
    pub(super) fn may_create_at_id(&self, res_type: &str) -> bool {
        let p = self.principal;
        (p.username.is_none()
            && p.self_patient.is_none()
            && p.decide(Perms::C, res_type) == Decision::Unrestricted)
            || self.sees_everything(Perms::C, res_type)
    }

    /// The decision on the current version a write is about to read
    /// (`None`: the id does not exist): what a read with `perm` would
    /// decide. A live version the principal may not see, by scope,
    /// compartment or Consent, answers like an absent id; so does a deleted
    /// one, unless the principal sees everything of the type (a restricted
    /// token cannot tell whose a tombstone was).
    pub(super) fn reachable(
        &self,
        perm: Perms,
        res_type: &str,
        id: &str,
        current: Option<&crate::store::Current>,
    ) -> ServiceResult<()> {
        if self.principal.is_open() {
            return Ok(());
        }
        let d = require(self.principal, perm, res_type)?;
        let Some(current) = current else {
            return Ok(());
        };
        let text = match (&current.content, current.deleted) {
            (Some(text), false) => text,
            _ => {
                return if self.sees_everything(perm, res_type) {
                    Ok(())
                } else {
                    Err(hidden(res_type, id))
                };
            }
        };
        let existing: Value = serde_json::from_str(text).map_err(|_| ServiceError::internal())?;
        if !visible(self.reg, &d, res_type, &existing) {
            return Err(hidden(res_type, id));
        }
        if let (Some(book), Some(ctx)) = (&self.consents, self.ctx) {
            if !book.allows(self.reg, ctx, res_type, &existing) {
                return Err(hidden(res_type, id));
            }
        }
        Ok(())
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
        if !visible(self.reg, &d, res_type, existing) {
            return Err(hidden(res_type, id));
        }
        self.consent_authority(res_type, existing)
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
        if !visible(self.reg, &d, res_type, resource) {
            return Err(ServiceError::forbidden(format!(
                "the access token does not allow this {res_type} to be written (outside its patient or scope filter)"
            )));
        }
        self.consent_authority(res_type, resource)
    }

    /// Who may create, change or revoke a Consent: the patient it is about
    /// (a `self_only` user whose own record it is), a user whose role is
    /// one of `consent_manager_roles`, or a backend client (no user) whose
    /// scopes allow the write. Anyone else, including a user the Consent
    /// restricts, gets 403.
    fn consent_authority(&self, res_type: &str, consent: &Value) -> ServiceResult<()> {
        if res_type != "Consent" || self.principal.is_open() {
            return Ok(());
        }
        let p = self.principal;
        if p.username.is_none() && p.role.is_none() && p.self_patient.is_none() {
            return Ok(());
        }
        if p.role
            .as_ref()
            .is_some_and(|r| self.consent_managers.contains(r))
        {
            return Ok(());
        }
        let about = consent["patient"]["reference"]
            .as_str()
            .and_then(|r| r.strip_prefix("Patient/"));
        if let (Some(own), Some(about)) = (p.self_patient.as_deref(), about) {
            if !own.is_empty() && own == about {
                return Ok(());
            }
        }
        Err(ServiceError::forbidden(
            "only the patient a Consent is about, a privacy officer or an administrator may create, change or revoke it",
        ))
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

/// Chains and `_has` read the resources they pass through, so the token
/// must be allowed to search those types too: a `_has` over a type it may
/// not read would otherwise answer, by its matches and counts, what that
/// type holds. Refused with 403, like a search of that type itself.
pub(super) fn check_inner_types(
    principal: &Principal,
    clauses: &[(String, crate::search::query::Clause)],
) -> ServiceResult<()> {
    use crate::search::query::Clause;
    fn walk(principal: &Principal, c: &Clause) -> ServiceResult<()> {
        match c {
            Clause::Param { .. } => Ok(()),
            Clause::Chain { target, inner, .. } => {
                require(principal, Perms::S, target)?;
                walk(principal, inner)
            }
            Clause::Has { source, inner, .. } => {
                require(principal, Perms::S, source)?;
                walk(principal, inner)
            }
        }
    }
    if principal.is_open() {
        return Ok(());
    }
    clauses.iter().try_for_each(|(_, c)| walk(principal, c))
}
