//! Recording: every interaction that reaches the service, from any door and
//! every Bundle entry, leaves an AuditEvent. Writes append theirs inside
//! their own database transaction; reads, searches and failures append
//! theirs (group-committed) before the answer leaves. If the record cannot
//! be written the request fails.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use serde_json::Value;

use super::interaction::{urlencode, HistoryTarget};
use super::search::SearchTarget;
use super::{Body, Ctx, FhirService, Interaction, Outcome, ServiceError, ServiceResult};
use super::{StoredResource, VersionFacts};
use crate::audit::event::{build, Action, Actor, AuditFacts, EventKind};
use crate::fhir::instant::now_ms;
use crate::policy::matching::patients_of;
use crate::store::WriteTx;

/// The facts of the interaction a [`Ctx`] is running, and whether its
/// AuditEvent was already committed with its write.
#[derive(Debug, Default)]
pub(super) struct AuditSlot {
    pending: Mutex<Option<AuditFacts>>,
    written: AtomicBool,
}

/// The restful-interaction code, action and query of an interaction.
fn facts_for(i: &Interaction) -> AuditFacts {
    let query = |path: String, params: &[(String, String)]| -> Option<String> {
        let q: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
            .collect();
        Some(format!("{path}?{}", q.join("&")))
    };
    let (kind, action, entity, q) = match i {
        Interaction::Capabilities => (EventKind::Rest("capabilities"), Action::Read, None, None),
        Interaction::Read { res_type, id } => (
            EventKind::Rest("read"),
            Action::Read,
            Some(format!("{res_type}/{id}")),
            None,
        ),
        Interaction::VRead {
            res_type,
            id,
            version,
        } => (
            EventKind::Rest("vread"),
            Action::Read,
            Some(format!("{res_type}/{id}/_history/{version}")),
            None,
        ),
        Interaction::Create { .. } => (EventKind::Rest("create"), Action::Create, None, None),
        Interaction::Update { res_type, id, .. } => (
            EventKind::Rest("update"),
            Action::Update,
            Some(format!("{res_type}/{id}")),
            None,
        ),
        Interaction::Patch { res_type, id, .. } => (
            EventKind::Rest("patch"),
            Action::Update,
            Some(format!("{res_type}/{id}")),
            None,
        ),
        Interaction::Delete { res_type, id } => (
            EventKind::Rest("delete"),
            Action::Delete,
            Some(format!("{res_type}/{id}")),
            None,
        ),
        Interaction::ConditionalUpdate {
            res_type, query: q, ..
        } => (
            EventKind::Rest("update"),
            Action::Update,
            None,
            Some(format!("{res_type}?{q}")),
        ),
        Interaction::ConditionalPatch {
            res_type, query: q, ..
        } => (
            EventKind::Rest("patch"),
            Action::Update,
            None,
            Some(format!("{res_type}?{q}")),
        ),
        Interaction::ConditionalDelete { res_type, query: q } => (
            EventKind::Rest("delete"),
            Action::Delete,
            None,
            Some(format!("{res_type}?{q}")),
        ),
        Interaction::History { scope, params } => {
            let (code, path, entity) = match scope {
                HistoryTarget::System => ("history-system", "_history".to_string(), None),
                HistoryTarget::Type(t) => ("history-type", format!("{t}/_history"), None),
                HistoryTarget::Instance(t, id) => (
                    "history-instance",
                    format!("{t}/{id}/_history"),
                    Some(format!("{t}/{id}")),
                ),
            };
            (
                EventKind::Rest(code),
                Action::Read,
                entity,
                query(path, params),
            )
        }
        Interaction::Search { target, params, .. } => {
            let (kind, path) = match target {
                SearchTarget::Type(t) => (EventKind::Rest("search-type"), t.clone()),
                SearchTarget::System => (EventKind::Rest("search-system"), String::new()),
                SearchTarget::Compartment {
                    owner_type,
                    owner_id,
                    res_type,
                } => (
                    EventKind::Rest("search"),
                    format!("{owner_type}/{owner_id}/{res_type}"),
                ),
                SearchTarget::Everything { patient } => (
                    EventKind::Operation("everything".into()),
                    match patient {
                        Some(p) => format!("Patient/{p}/$everything"),
                        None => "Patient/$everything".into(),
                    },
                ),
            };
            (kind, Action::Execute, None, query(path, params))
        }
        Interaction::Bundle { bundle, .. } => {
            let code = if bundle["type"] == "transaction" {
                "transaction"
            } else {
                "batch"
            };
            (EventKind::Rest(code), Action::Execute, None, None)
        }
        Interaction::Reindex => (
            EventKind::Operation("reindex".into()),
            Action::Execute,
            None,
            None,
        ),
        Interaction::VerifyAudit => (
            EventKind::Operation("verify-audit".into()),
            Action::Execute,
            None,
            None,
        ),
    };
    let mut f = AuditFacts::new(kind, action);
    if let Some(e) = entity {
        f.entity(e);
    }
    f.query = q;
    f
}

/// AuditEvents are written by the server alone: no door creates, changes or
/// deletes one (405), administrators included.
pub(super) fn refuse_audit_writes(i: &Interaction) -> ServiceResult<()> {
    let target = match i {
        Interaction::Create { res_type, .. }
        | Interaction::Update { res_type, .. }
        | Interaction::Patch { res_type, .. }
        | Interaction::Delete { res_type, .. }
        | Interaction::ConditionalUpdate { res_type, .. }
        | Interaction::ConditionalPatch { res_type, .. }
        | Interaction::ConditionalDelete { res_type, .. } => res_type.as_str(),
        Interaction::History {
            scope: HistoryTarget::Type(t) | HistoryTarget::Instance(t, _),
            ..
        } if t.as_str() == "AuditEvent" => {
            return Err(ServiceError::method_not_allowed(
                "AuditEvents have no history: they are never changed",
            ))
        }
        _ => return Ok(()),
    };
    if target == "AuditEvent" {
        return Err(ServiceError::method_not_allowed(
            "AuditEvents are written by the server only and are never changed or deleted",
        ));
    }
    Ok(())
}

impl FhirService {
    pub(super) fn actor<'a>(&'a self, ctx: &'a Ctx) -> Actor<'a> {
        Actor {
            principal: &ctx.principal,
            peer: ctx.peer.as_deref(),
            request_id: &ctx.request_id,
            door: ctx.door,
            tool: ctx.tool.as_deref(),
            server: &self.base_url,
            purposes: &ctx.purposes,
        }
    }

    /// Adds the resource in `json` and its patients to `facts`.
    fn note_resource(&self, facts: &mut AuditFacts, res_type: &str, resource: &Value) {
        let reg = self.registry.get();
        for p in patients_of(&reg, res_type, resource) {
            facts.patient(&p);
        }
    }

    fn note_stored(&self, facts: &mut AuditFacts, r: &StoredResource) {
        facts.entity(format!("{}/{}/_history/{}", r.res_type, r.id, r.version));
        // A Patient is its own patient, and a type outside the Patient
        // compartment has none: neither needs its JSON parsed.
        if r.res_type == "Patient" {
            facts.patient(&r.id);
            return;
        }
        if crate::search::compartment::patient_params(&r.res_type).is_none() {
            return;
        }
        if let Ok(v) = serde_json::from_str::<Value>(&r.json) {
            self.note_resource(facts, &r.res_type, &v);
        }
    }

    /// The resources (and their patients) an outcome returns.
    fn note_outcome(&self, facts: &mut AuditFacts, o: &Outcome) {
        facts.status = o.status;
        match &o.body {
            Body::Stored(r) => self.note_stored(facts, r),
            Body::Generated(v) if v["resourceType"] == "Bundle" => {
                for e in v["entry"].as_array().into_iter().flatten() {
                    let r = &e["resource"];
                    if let (Some(t), Some(id)) = (r["resourceType"].as_str(), r["id"].as_str()) {
                        if t == "OperationOutcome" {
                            continue;
                        }
                        facts.entity(format!("{t}/{id}"));
                        self.note_resource(facts, t, r);
                    }
                }
            }
            _ => {
                if let Some(v) = &o.version {
                    facts.entity(format!("{}/{}/_history/{}", v.res_type, v.id, v.version));
                }
            }
        }
    }

    /// A door's request: the caller's rate budget, then [`FhirService::execute`].
    /// A refusal for too many requests is audited like any other.
    pub async fn handle(&self, ctx: &Ctx, interaction: Interaction) -> ServiceResult<Outcome> {
        self.admit(ctx, Some(&interaction)).await?;
        self.execute(ctx, interaction).await
    }

    /// Spends one unit of the caller's rate budget: 429 (audited, with
    /// `retry_after_s`) when it is exhausted. Doors whose requests carry
    /// several interactions (an MCP tool call) admit the request once.
    pub async fn admit(&self, ctx: &Ctx, interaction: Option<&Interaction>) -> ServiceResult<()> {
        if let Some(limiter) = &self.rate_limiter {
            if let Err(wait) = limiter.check(&ctx.principal) {
                let e = ServiceError::throttled(wait.0);
                self.audit_refusal(ctx, interaction, &e).await?;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Runs one interaction and records its AuditEvent. Every door (through
    /// [`FhirService::handle`]) and every Bundle entry comes through here.
    pub async fn execute(&self, ctx: &Ctx, interaction: Interaction) -> ServiceResult<Outcome> {
        let mut facts = facts_for(&interaction);
        facts.break_glass = super::consent::asserts_break_glass(ctx);
        let ctx = Ctx {
            audit: std::sync::Arc::new(AuditSlot {
                pending: Mutex::new(Some(facts.clone())),
                written: AtomicBool::new(false),
            }),
            ..ctx.clone()
        };
        let result = Box::pin(self.run(&ctx, interaction)).await;
        // Committed with its write (its status included, even a 404 delete).
        if ctx.audit.written.load(Ordering::Acquire) {
            return result;
        }
        match &result {
            Ok(o) => self.note_outcome(&mut facts, o),
            Err(e) => {
                facts.status = e.status;
                facts.detail = e.issues.first().map(|i| i.diagnostics.clone());
            }
        }
        let row = build(&facts, &self.actor(&ctx), now_ms());
        match self.audit.record(row).await {
            Ok(()) => {
                ctx.recorded.note();
                result
            }
            // Fail closed: an answer that cannot be audited is not given.
            Err(_) => Err(ServiceError::unavailable()),
        }
    }

    /// Commits a write transaction with its AuditEvent in it: the answer's
    /// `status`, the resources written (`stored`) or deleted (`deleted`).
    pub(super) async fn commit_audited(
        &self,
        ctx: &Ctx,
        mut tx: WriteTx,
        status: u16,
        stored: &[&StoredResource],
        deleted: &[&VersionFacts],
    ) -> ServiceResult<()> {
        let pending = ctx
            .audit
            .pending
            .lock()
            .map(|g| g.clone())
            .unwrap_or_default();
        let Some(mut facts) = pending else {
            // Not inside `execute` (cannot happen for doors): commit plainly.
            tx.commit().await?;
            return Ok(());
        };
        facts.status = status;
        for r in stored {
            self.note_stored(&mut facts, r);
        }
        for d in deleted {
            facts.entity(format!("{}/{}/_history/{}", d.res_type, d.id, d.version));
        }
        let row = build(&facts, &self.actor(ctx), now_ms());
        tx.append_audit(&[row]).await?;
        tx.commit().await?;
        ctx.audit.written.store(true, Ordering::Release);
        ctx.recorded.note();
        Ok(())
    }

    /// Records a request refused before it reached [`FhirService::execute`]
    /// (unreadable, unauthenticated): `interaction` when it was parsed.
    pub async fn audit_refusal(
        &self,
        ctx: &Ctx,
        interaction: Option<&Interaction>,
        error: &ServiceError,
    ) -> ServiceResult<()> {
        let mut facts = match interaction {
            Some(i) => facts_for(i),
            None => AuditFacts::new(
                EventKind::Operation("unparsed-request".into()),
                Action::Execute,
            ),
        };
        facts.status = error.status;
        facts.detail = error.issues.first().map(|i| i.diagnostics.clone());
        self.record_facts(ctx, &facts).await
    }

    /// Records an MCP tool call that ran no interaction of its own (refused
    /// on its arguments, a dry run, a catalog lookup): subtype the tool's
    /// name, with the status it answered.
    pub async fn audit_tool_call(
        &self,
        ctx: &Ctx,
        tool: &str,
        status: u16,
        detail: Option<String>,
    ) -> ServiceResult<()> {
        let mut facts = AuditFacts::new(EventKind::Operation(tool.to_string()), Action::Execute);
        facts.status = status;
        facts.detail = detail;
        self.record_facts(ctx, &facts).await
    }

    /// Records an authorization event (`login`, `token-issued`,
    /// `token-refreshed`, `token-revoked`, …) with its HTTP status.
    pub async fn audit_auth_event(
        &self,
        ctx: &Ctx,
        code: &'static str,
        status: u16,
        detail: Option<String>,
    ) -> ServiceResult<()> {
        let action = if code == "login" {
            Action::Execute
        } else {
            Action::Create
        };
        let mut facts = AuditFacts::new(EventKind::Auth(code), action);
        facts.status = status;
        facts.detail = detail;
        if let Some(p) = &ctx.principal.patient {
            facts.patient(p);
        }
        self.record_facts(ctx, &facts).await
    }

    /// Stores the AuditEvent of `facts` outside any write transaction
    /// (through the audit log) and notes it on the request; 503 if it cannot.
    async fn record_facts(&self, ctx: &Ctx, facts: &AuditFacts) -> ServiceResult<()> {
        let row = build(facts, &self.actor(ctx), now_ms());
        self.audit
            .record(row)
            .await
            .map_err(|_| ServiceError::unavailable())?;
        ctx.recorded.note();
        Ok(())
    }
}
