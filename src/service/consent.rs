//! Consent enforcement in the service: for one resource (read, vread,
//! history, includes) the Consents of its patients decide; for searches the
//! resources every in-force Consent denies to this request become a set
//! excluded in SQL, so pages stay full and counts never include them.
//!
//! A denied resource answers as absent (404), like any resource the token
//! may not see: a 403 would confirm that it exists.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value;

use super::search::SearchTarget;
use super::{Ctx, FhirService, ServiceError, ServiceResult};
use crate::fhir::instant::now_ms;
use crate::policy::consent::{decide_all, in_force, Access, ConsentVerdict};
use crate::policy::matching::patients_of;
use crate::search::plan::{ConsentFilter, SearchPlan};
use crate::store::Topic;

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
    /// Roles that may create, change or revoke any patient's Consent. A
    /// patient (a `self_only` user) may manage their own Consents, and a
    /// backend client (no user) its scopes allow; nobody else may, so a
    /// user a Consent restricts cannot lift the restriction.
    pub manager_roles: Vec<String>,
}

impl Default for ConsentSettings {
    fn default() -> Self {
        ConsentSettings {
            default: ConsentVerdict::Permit,
            break_glass_roles: vec!["clinician".into(), "admin".into()],
            manager_roles: vec!["admin".into(), "privacy".into()],
        }
    }
}

/// Consents by patient, each list behind an `Arc` (as the cache holds them).
fn shared(by_patient: HashMap<String, Vec<Value>>) -> HashMap<String, Arc<Vec<Value>>> {
    by_patient
        .into_iter()
        .map(|(p, cs)| (p, Arc::new(cs)))
        .collect()
}

/// True when the request asserts break-glass.
pub(super) fn asserts_break_glass(ctx: &Ctx) -> bool {
    ctx.purposes
        .iter()
        .any(|p| BREAK_GLASS_PURPOSES.contains(&p.as_str()))
}

/// Most versions of one resource read to find the security labels that its
/// later versions put on an earlier one; a resource with more is hidden
/// whole from a request that labels could restrict (fail closed).
pub const MAX_LABEL_VERSIONS: i64 = 1_000;

/// The security labels (`meta.security` codings) of a resource.
fn labels_of(resource: &Value) -> Vec<Value> {
    resource["meta"]["security"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// `version` carrying `extra` labels as well as its own (each coding once):
/// what a Consent judges an earlier version by.
pub(super) fn with_labels(version: &Value, extra: &[Value]) -> Value {
    let mut out = version.clone();
    if extra.is_empty() {
        return out;
    }
    let mut all = labels_of(version);
    for l in extra {
        if !all.contains(l) {
            all.push(l.clone());
        }
    }
    if let Some(obj) = out.as_object_mut() {
        let meta = obj
            .entry("meta")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(m) = meta.as_object_mut() {
            m.insert("security".into(), Value::Array(all));
        }
    }
    out
}

/// Every version's labels of one resource, newest first, so that the labels
/// a version is judged by (its own and every later version's) can be read off.
pub(super) struct VersionLabels(Vec<(i64, Vec<Value>)>);

impl VersionLabels {
    /// The labels of `version` and of every version after it.
    pub(super) fn since_version(&self, version: i64) -> Vec<Value> {
        let mut out: Vec<Value> = Vec::new();
        for (_, ls) in self.0.iter().filter(|(v, _)| *v >= version) {
            for l in ls {
                if !out.contains(l) {
                    out.push(l.clone());
                }
            }
        }
        out
    }
}

/// The Consents in force for one request, ready to decide resources.
pub(super) struct ConsentBook {
    by_patient: HashMap<String, Vec<Value>>,
    default: ConsentVerdict,
    /// Local command or break-glass: nothing is hidden.
    bypass: bool,
    /// Some in-force Consent decides by security label, so an earlier
    /// version must be judged with its later versions' labels too.
    uses_labels: bool,
}

impl ConsentBook {
    /// True when an earlier version must be judged with the labels of the
    /// versions after it (see [`FhirService::version_labels`]).
    pub(super) fn uses_labels(&self) -> bool {
        !self.hides_nothing() && self.uses_labels
    }

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

    /// Rows of active privacy Consents (of `patients` when given): at most
    /// `max` + 1, so that a caller can tell there were more than `max`.
    async fn consent_rows(
        &self,
        patients: Option<&[String]>,
        max: usize,
    ) -> ServiceResult<Vec<crate::store::SearchRow>> {
        let mut params = vec![
            ("status".to_string(), "active".to_string()),
            ("scope".to_string(), "patient-privacy".to_string()),
        ];
        if let Some(ps) = patients {
            if ps.is_empty() {
                return Ok(Vec::new());
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
        plan.count = max;
        let (sql, binds, keys) = plan.page_sql(&reg)?;
        Ok(self.store.search_rows(sql, &binds, keys).await?)
    }

    /// Active privacy Consents (in force or not), by patient id; only those
    /// of `patients` when given.
    async fn load_consents(
        &self,
        patients: Option<&[String]>,
    ) -> ServiceResult<HashMap<String, Vec<Value>>> {
        let rows = self.consent_rows(patients, MAX_CONSENTS).await?;
        if rows.len() > MAX_CONSENTS {
            return Err(ServiceError::too_large(format!(
                "more than {MAX_CONSENTS} Consents are in force for this request"
            )));
        }
        let mut by_patient: HashMap<String, Vec<Value>> = HashMap::new();
        for r in rows {
            let v: Value =
                serde_json::from_str(&r.content).map_err(|_| ServiceError::internal())?;
            if let Some(p) = v["patient"]["reference"]
                .as_str()
                .and_then(|s| s.strip_prefix("Patient/"))
            {
                by_patient.entry(p.to_string()).or_default().push(v);
            }
        }
        Ok(by_patient)
    }

    /// Active privacy Consents of `patients`, from the cache where they were
    /// read under the current Consent counter, else from the database.
    async fn patients_consents(
        &self,
        patients: &[String],
    ) -> ServiceResult<HashMap<String, Arc<Vec<Value>>>> {
        let Some(counter) = self.store.change_counter(Topic::Consent) else {
            return Ok(shared(self.load_consents(Some(patients)).await?));
        };
        let mut found = HashMap::with_capacity(patients.len());
        let mut missing = Vec::new();
        for p in patients {
            match self.consent_cache.patient(p, counter) {
                Some(cs) => {
                    found.insert(p.clone(), cs);
                }
                None => missing.push(p.clone()),
            }
        }
        if !missing.is_empty() {
            let mut loaded = self.load_consents(Some(&missing)).await?;
            for p in missing {
                let cs = Arc::new(loaded.remove(&p).unwrap_or_default());
                self.consent_cache.remember_patient(&p, counter, cs.clone());
                found.insert(p, cs);
            }
        }
        Ok(found)
    }

    /// In-force privacy Consents, by patient id; only those of `patients`
    /// when given.
    async fn consents(
        &self,
        patients: Option<&[String]>,
    ) -> ServiceResult<HashMap<String, Vec<Value>>> {
        let now = now_ms();
        let in_force_only = |cs: &[Value]| -> Vec<Value> {
            cs.iter().filter(|c| in_force(c, now)).cloned().collect()
        };
        let all = match patients {
            Some(ps) => self.patients_consents(ps).await?,
            None => shared(self.load_consents(None).await?),
        };
        Ok(all
            .into_iter()
            .map(|(p, cs)| (p, in_force_only(&cs)))
            .filter(|(_, cs)| !cs.is_empty())
            .collect())
    }

    /// True when Consent cannot hide anything from anyone now: the default
    /// is to permit and no active privacy Consent exists (known from the
    /// cache under the current Consent counter, else asked once and
    /// remembered). `false` whenever that is not known for sure.
    async fn no_consents_apply(&self) -> ServiceResult<bool> {
        if self.consent.default != ConsentVerdict::Permit {
            return Ok(false);
        }
        let Some(counter) = self.store.change_counter(Topic::Consent) else {
            return Ok(false);
        };
        if let Some(any) = self.consent_cache.any(counter) {
            return Ok(!any);
        }
        let any = !self.consent_rows(None, 1).await?.is_empty();
        self.consent_cache.remember_any(counter, any);
        Ok(!any)
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
        let by_patient = if bypass || self.no_consents_apply().await? {
            HashMap::new()
        } else {
            self.consents(patients).await?
        };
        let uses_labels = by_patient
            .values()
            .flatten()
            .any(|c| c.to_string().contains("\"securityLabel\""));
        Ok(ConsentBook {
            by_patient,
            default: self.consent.default,
            bypass,
            uses_labels,
        })
    }

    /// The security labels of every version of `res_type/id`, newest first;
    /// `None` when it has more than [`MAX_LABEL_VERSIONS`] versions.
    pub(super) async fn version_labels(
        &self,
        res_type: &str,
        id: &str,
    ) -> ServiceResult<Option<VersionLabels>> {
        let rows = self
            .store
            .history(
                crate::store::HistoryScope::Instance(res_type, id),
                None,
                None,
                MAX_LABEL_VERSIONS + 1,
            )
            .await?;
        if rows.len() as i64 > MAX_LABEL_VERSIONS {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let labels = match &r.content {
                Some(text) => {
                    let v: Value =
                        serde_json::from_str(text).map_err(|_| ServiceError::internal())?;
                    labels_of(&v)
                }
                None => Vec::new(),
            };
            out.push((r.version, labels));
        }
        Ok(Some(VersionLabels(out)))
    }

    /// May this request see version `version` of `res_type/id` (`resource`,
    /// not necessarily the current one)? Judged as [`consent_allows`] with
    /// the security labels of this version and of every later one: a label
    /// put on a resource covers its earlier versions too.
    ///
    /// [`consent_allows`]: FhirService::consent_allows
    pub(super) async fn consent_allows_version(
        &self,
        ctx: &Ctx,
        res_type: &str,
        id: &str,
        version: i64,
        resource: &Value,
    ) -> ServiceResult<bool> {
        let Some(book) = self.patients_book(ctx, res_type, resource).await? else {
            return Ok(true);
        };
        let reg = self.registry.get();
        if !book.uses_labels() {
            return Ok(book.allows(&reg, ctx, res_type, resource));
        }
        let Some(labels) = self.version_labels(res_type, id).await? else {
            return Ok(false);
        };
        let judged = with_labels(resource, &labels.since_version(version));
        Ok(book.allows(&reg, ctx, res_type, &judged))
    }

    /// The Consents that bear on `resource` for this request; `None` when
    /// none can (a local command, or a resource of no patient).
    async fn patients_book(
        &self,
        ctx: &Ctx,
        res_type: &str,
        resource: &Value,
    ) -> ServiceResult<Option<ConsentBook>> {
        if ctx.principal.is_open() {
            return Ok(None);
        }
        let patients = patients_of(&self.registry.get(), res_type, resource);
        if patients.is_empty() {
            return Ok(None);
        }
        Ok(Some(self.consent_book(ctx, Some(&patients)).await?))
    }

    /// May this request see `resource`, as its patients' Consents say?
    pub(super) async fn consent_allows(
        &self,
        ctx: &Ctx,
        res_type: &str,
        resource: &Value,
    ) -> ServiceResult<bool> {
        Ok(match self.patients_book(ctx, res_type, resource).await? {
            None => true,
            Some(book) => book.allows(&self.registry.get(), ctx, res_type, resource),
        })
    }

    /// False when Consent cannot hide anything from this request (a local
    /// command, break-glass, or no Consent that could apply), so callers
    /// need not even parse what they read; refuses a break-glass assertion
    /// the role may not make.
    pub(super) async fn consent_may_hide(&self, ctx: &Ctx) -> ServiceResult<bool> {
        Ok(
            !(ctx.principal.is_open()
                || self.break_glass(ctx)?
                || self.no_consents_apply().await?),
        )
    }

    /// What a search must leave out for this request.
    pub(super) async fn consent_filter(&self, ctx: &Ctx) -> ServiceResult<Option<ConsentFilter>> {
        if !self.consent_may_hide(ctx).await? {
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
            // The compartment's owner (the Patient resource itself) is
            // decided like everything else in it.
            plan.compartment = compartment.map(|mut c| {
                c.include_owner = true;
                c
            });
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
