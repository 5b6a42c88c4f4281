//! Consent enforcement in the service: for one resource (read, vread,
//! history, includes) the Consents of its patients decide; for searches the
//! resources every in-force Consent denies to this request become a set
//! excluded in SQL, so pages stay full and counts never include them.
//!
//! A denied resource answers as absent (404), like any resource the token
//! may not see: a 403 would confirm that it exists.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::search::SearchTarget;
use super::{Ctx, FhirService, ServiceError, ServiceResult};
use crate::fhir::instant::now_ms;
use crate::policy::consent::{decide_all, in_force, Access, ConsentVerdict};
use crate::policy::matching::patients_of;
use crate::search::plan::{ConsentFilter, SearchPlan};

/// Most in-force Consents read for one request.
pub const MAX_CONSENTS: usize = 1_000;
/// Most resources of one consenting patient evaluated for a search; a
/// record larger than this is hidden whole (fail closed).
pub const MAX_CONSENT_SCAN: usize = 10_000;
/// Purposes of use that assert break-glass (v3-ActReason).
pub const BREAK_GLASS_PURPOSES: &[&str] = &["BTG", "ETREAT"];

/// How Consent is enforced (configuration).
#[derive(Debug, Clone)]
pub struct ConsentSettings {
    /// The verdict for a patient without any in-force Consent: permit
    /// (opt-out, the default) or deny (opt-in).
    pub default: ConsentVerdict,
    /// Roles that may assert break-glass (purpose BTG or ETREAT) and so
    /// override a Consent's deny; every such access is audited and flagged.
    pub break_glass_roles: Vec<String>,
}

impl Default for ConsentSettings {
    fn default() -> Self {
        ConsentSettings {
            default: ConsentVerdict::Permit,
            break_glass_roles: vec!["clinician".into(), "admin".into()],
        }
    }
}

/// True when the request asserts break-glass.
pub(super) fn asserts_break_glass(ctx: &Ctx) -> bool {
    ctx.purposes
        .iter()
        .any(|p| BREAK_GLASS_PURPOSES.contains(&p.as_str()))
}

/// The Consents in force for one request, ready to decide resources.
pub(super) struct ConsentBook {
    by_patient: HashMap<String, Vec<Value>>,
    default: ConsentVerdict,
    /// Local command or break-glass: nothing is hidden.
    bypass: bool,
}

impl ConsentBook {
    /// True when no resource can be hidden (no Consents under opt-out).
    pub(super) fn hides_nothing(&self) -> bool {
        self.bypass || (self.by_patient.is_empty() && self.default == ConsentVerdict::Permit)
    }

    /// May the request see `resource`? Every patient it belongs to must permit.
    pub(super) fn allows(
        &self,
        reg: &crate::search::definitions::Registry,
        ctx: &Ctx,
        res_type: &str,
        resource: &Value,
    ) -> bool {
        if self.hides_nothing() {
            return true;
        }
        let a = FhirService::access(ctx, res_type, resource, "access");
        patients_of(reg, res_type, resource).iter().all(|p| {
            let cs = self.by_patient.get(p).map(Vec::as_slice).unwrap_or(&[]);
            decide_all(reg, cs, &a, self.default) == ConsentVerdict::Permit
        })
    }
}

impl FhirService {
    /// Refuses break-glass from a role that may not assert it; `true` when
    /// the request runs under break-glass (Consent does not hide anything).
    pub(super) fn break_glass(&self, ctx: &Ctx) -> ServiceResult<bool> {
        if !asserts_break_glass(ctx) {
            return Ok(false);
        }
        let p = &ctx.principal;
        if p.is_open() {
            return Ok(true);
        }
        let allowed = p
            .role
            .as_ref()
            .is_some_and(|r| self.consent.break_glass_roles.contains(r));
        if !allowed {
            return Err(ServiceError::forbidden(
                "break-glass (purpose of use BTG or ETREAT) is not allowed for this role",
            ));
        }
        Ok(true)
    }

    /// In-force privacy Consents, by patient id; only those of `patients`
    /// when given.
    async fn consents(
        &self,
        patients: Option<&[String]>,
    ) -> ServiceResult<HashMap<String, Vec<Value>>> {
        let mut params = vec![
            ("status".to_string(), "active".to_string()),
            ("scope".to_string(), "patient-privacy".to_string()),
        ];
        if let Some(ps) = patients {
            if ps.is_empty() {
                return Ok(HashMap::new());
            }
            params.push((
                "patient".to_string(),
                ps.iter()
                    .map(|p| format!("Patient/{p}"))
                    .collect::<Vec<_>>()
                    .join(","),
            ));
        }
        let reg = self.registry.get();
        let mut plan = SearchPlan::parse(&reg, vec!["Consent".into()], &params, 1, 1)?;
        plan.count = MAX_CONSENTS;
        let (sql, binds, keys) = plan.page_sql(&reg)?;
        let rows = self.store.search_rows(sql, &binds, keys).await?;
        if rows.len() > MAX_CONSENTS {
            return Err(ServiceError::too_large(format!(
                "more than {MAX_CONSENTS} Consents are in force for this request"
            )));
        }
        let now = now_ms();
        let mut by_patient: HashMap<String, Vec<Value>> = HashMap::new();
        for r in rows {
            let v: Value =
                serde_json::from_str(&r.content).map_err(|_| ServiceError::internal())?;
            if !in_force(&v, now) {
                continue;
            }
            if let Some(p) = v["patient"]["reference"]
                .as_str()
                .and_then(|s| s.strip_prefix("Patient/"))
            {
                by_patient.entry(p.to_string()).or_default().push(v);
            }
        }
        Ok(by_patient)
    }

    fn access<'a>(
        ctx: &'a Ctx,
        res_type: &'a str,
        resource: &'a Value,
        action: &'a str,
    ) -> Access<'a> {
        Access {
            principal: &ctx.principal,
            purposes: &ctx.purposes,
            action,
            res_type,
            resource,
            now_ms: now_ms(),
        }
    }

    /// The in-force Consents that bear on this request (of `patients` only
    /// when given); empty and bypassed for local commands and break-glass.
    pub(super) async fn consent_book(
        &self,
        ctx: &Ctx,
        patients: Option<&[String]>,
    ) -> ServiceResult<ConsentBook> {
        let bypass = ctx.principal.is_open() || self.break_glass(ctx)?;
        let by_patient = if bypass {
            HashMap::new()
        } else {
            self.consents(patients).await?
        };
        Ok(ConsentBook {
            by_patient,
            default: self.consent.default,
            bypass,
        })
    }

    /// May this request see `resource`, as its patients' Consents say?
    pub(super) async fn consent_allows(
        &self,
        ctx: &Ctx,
        res_type: &str,
        resource: &Value,
    ) -> ServiceResult<bool> {
        if ctx.principal.is_open() {
            return Ok(true);
        }
        let reg = self.registry.get();
        let patients = patients_of(&reg, res_type, resource);
        if patients.is_empty() {
            return Ok(true);
        }
        let book = self.consent_book(ctx, Some(&patients)).await?;
        Ok(book.allows(&reg, ctx, res_type, resource))
    }

    /// What a search must leave out for this request.
    pub(super) async fn consent_filter(&self, ctx: &Ctx) -> ServiceResult<Option<ConsentFilter>> {
        if ctx.principal.is_open() || self.break_glass(ctx)? {
            return Ok(None);
        }
        let consents = self.consents(None).await?;
        let opt_in = self.consent.default == ConsentVerdict::Deny;
        if consents.is_empty() && !opt_in {
            return Ok(None);
        }
        let reg = self.registry.get();
        let mut hidden: HashSet<i64> = HashSet::new();
        for (patient, cs) in &consents {
            let target = SearchTarget::Compartment {
                owner_type: "Patient".into(),
                owner_id: patient.clone(),
                res_type: "*".into(),
            };
            let (types, _, compartment) = self.target_types(&target, &[])?;
            let mut plan = SearchPlan::parse(&reg, types, &[], 1, 1)?;
            plan.compartment = compartment;
            plan.count = MAX_CONSENT_SCAN;
            let (sql, binds, keys) = plan.page_sql(&reg)?;
            let rows = self.store.search_rows(sql, &binds, keys).await?;
            let whole = rows.len() > MAX_CONSENT_SCAN;
            for row in rows {
                let v: Value =
                    serde_json::from_str(&row.content).map_err(|_| ServiceError::internal())?;
                let a = Self::access(ctx, &row.res_type, &v, "access");
                if whole || decide_all(&reg, cs, &a, self.consent.default) == ConsentVerdict::Deny {
                    hidden.insert(row.rid);
                }
            }
        }
        let mut hidden: Vec<i64> = hidden.into_iter().collect();
        hidden.sort_unstable();
        Ok(Some(ConsentFilter {
            hidden,
            permitted_patients: opt_in.then(|| {
                let mut ps: Vec<String> = consents.keys().cloned().collect();
                ps.sort();
                ps
            }),
        }))
    }
}
