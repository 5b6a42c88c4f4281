//! Serving the audit trail: read and search of AuditEvents (`_id`, `patient`,
//! `agent`, `entity`, `date`, `type`, `subtype`, `action`, `outcome`), paged
//! newest first, and the `$verify-audit` operation. Who may: roles marked
//! `audit` (and backend clients) by their scopes; patients for their own
//! record only.

use serde_json::{json, Value};

use super::access::require;
use super::history::page_size;
use super::interaction::urlencode;
use super::search::SearchTarget;
use super::{Ctx, FhirService, Interaction, Outcome, ServiceError, ServiceResult, StoredResource};
use crate::audit::event::{SUBTYPE_SYSTEMS, TYPE_SYSTEMS};
use crate::fhir::bundle::{finish, new_bundle};
use crate::policy::scope::Perms;
use crate::policy::Decision;
use crate::search::dates;
use crate::search::values::Prefix;
use crate::store::AuditQuery;

/// Most alternatives in one search parameter value (`a,b,c`).
const MAX_AUDIT_ALTERNATIVES: usize = 100;

/// Parameters that change the page, not the matches.
const PAGE_PARAMS: &[&str] = &[
    "_count", "_sort", "_cursor", "_summary", "_total", "_format", "_pretty",
];

fn alternatives(name: &str, value: &str) -> ServiceResult<Vec<String>> {
    let vs: Vec<String> = value
        .split(',')
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .collect();
    if vs.is_empty() || vs.len() > MAX_AUDIT_ALTERNATIVES {
        return Err(ServiceError::invalid(
            format!("{name} takes 1 to {MAX_AUDIT_ALTERNATIVES} comma-separated values"),
            Some(name),
        ));
    }
    Ok(vs)
}

/// Token values as the `system|code` the columns hold: a bare `code`
/// stands for that code in each system the server writes (it writes every
/// AuditEvent, so the list is closed); `system|code` and `|code` stay as
/// they are (no event has a code without a system).
fn codings(values: Vec<String>, systems: &[&str]) -> Vec<String> {
    values
        .into_iter()
        .flat_map(|v| {
            if v.contains('|') {
                vec![v]
            } else {
                systems.iter().map(|s| format!("{s}|{v}")).collect()
            }
        })
        .collect()
}

/// `date=` with a prefix as inclusive bounds on the recorded time.
fn date_bounds(value: &str) -> ServiceResult<(Option<i64>, Option<i64>)> {
    let (prefix, text) = Prefix::split(value);
    let (low, high) = dates::range(text)
        .ok_or_else(|| ServiceError::invalid(format!("'{value}' is not a date"), Some("date")))?;
    Ok(match prefix {
        Prefix::Eq => (Some(low), Some(high)),
        Prefix::Ge => (Some(low), None),
        Prefix::Gt => (Some(high + 1), None),
        Prefix::Le => (None, Some(high)),
        Prefix::Lt => (None, Some(low - 1)),
        _ => {
            return Err(ServiceError::invalid(
                "AuditEvent date takes the prefixes eq, ge, gt, le, lt",
                Some("date"),
            ))
        }
    })
}

/// The search parameters of a request as an [`AuditQuery`].
fn parse_query(params: &[(String, String)]) -> ServiceResult<AuditQuery> {
    let mut q = AuditQuery::default();
    for (k, v) in params {
        match k.as_str() {
            "_id" => q.id.extend(alternatives(k, v)?),
            "patient" => {
                let ids = alternatives(k, v)?
                    .into_iter()
                    .map(|p| {
                        if p.contains('/') {
                            p
                        } else {
                            format!("Patient/{p}")
                        }
                    })
                    .collect();
                q.refs.push(("patient", ids));
            }
            "agent" => q.refs.push(("agent", alternatives(k, v)?)),
            "entity" => q.refs.push(("entity", alternatives(k, v)?)),
            "type" => q.type_code.push(codings(alternatives(k, v)?, TYPE_SYSTEMS)),
            "subtype" => q.subtype.push(codings(alternatives(k, v)?, SUBTYPE_SYSTEMS)),
            "action" => q.action.extend(alternatives(k, v)?),
            "outcome" => q.outcome.extend(alternatives(k, v)?),
            "date" => q.recorded.push(date_bounds(v)?),
            "_sort" => {
                q.ascending = match v.as_str() {
                    "date" | "_lastUpdated" => true,
                    "-date" | "-_lastUpdated" => false,
                    _ => {
                        return Err(ServiceError::invalid(
                            "AuditEvents sort by date or -date",
                            Some("_sort"),
                        ))
                    }
                }
            }
            "_cursor" => {
                q.after_seq = Some(v.parse().map_err(|_| {
                    ServiceError::invalid("_cursor is not one this server gave", Some("_cursor"))
                })?)
            }
            k if PAGE_PARAMS.contains(&k) => {}
            other => {
                return Err(ServiceError::invalid(
                    format!(
                        "AuditEvent search supports _id, patient, agent, entity, date, type, subtype, action and outcome, not '{other}'"
                    ),
                    Some(other),
                ))
            }
        }
    }
    Ok(q)
}

/// What a patient sees of an event about their record: their own patient
/// entity, the request id, and the resources and query only when the event
/// names no other patient (so that no other patient's ids show).
fn redact_for_patient(event: &mut Value, patient: &str) {
    let own = format!("Patient/{patient}");
    let Some(entities) = event.get_mut("entity").and_then(Value::as_array_mut) else {
        return;
    };
    let is_patient = |e: &Value| e["role"]["code"] == "1";
    let others = entities
        .iter()
        .any(|e| is_patient(e) && e["what"]["reference"].as_str() != Some(own.as_str()));
    entities.retain(|e| {
        if is_patient(e) {
            e["what"]["reference"].as_str() == Some(own.as_str())
        } else {
            !others || e["type"]["code"] == "XrequestId"
        }
    });
}

/// Parameters a patient may search their own events by: none that name
/// other patients' data (which would make the answer an oracle).
const PATIENT_AUDIT_PARAMS: &[&str] = &[
    "_id", "patient", "agent", "date", "type", "subtype", "action", "outcome",
];

/// True when the AuditEvent names `Patient/{patient}` among its entities.
fn names_patient(event: &Value, patient: &str) -> bool {
    let wanted = format!("Patient/{patient}");
    event["entity"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| e["what"]["reference"].as_str() == Some(wanted.as_str()))
}

impl FhirService {
    /// May this principal read AuditEvents, and of which patient only?
    /// `Ok(None)`: the whole trail.
    fn audit_reach(&self, ctx: &Ctx, perm: Perms) -> ServiceResult<Option<String>> {
        let p = &ctx.principal;
        let decision = require(p, perm, "AuditEvent")?;
        if !p.audit_reader && p.self_patient.is_none() {
            return Err(ServiceError::forbidden(
                "AuditEvents are open to administrators and auditors, and to patients for their own record",
            ));
        }
        let confined = match decision {
            Decision::Unrestricted => None,
            Decision::Restricted(cs) => {
                let first = cs[0].patient.clone();
                if cs
                    .iter()
                    .any(|c| !c.filter.is_empty() || c.patient != first)
                {
                    return Err(ServiceError::forbidden(
                        "scope filters on AuditEvent are not supported",
                    ));
                }
                first
            }
            Decision::Denied => return Err(ServiceError::forbidden("no access to AuditEvent")),
        };
        Ok(confined.or_else(|| p.self_patient.clone()))
    }

    /// Answers the interactions on AuditEvent that read it; `None` for any other.
    pub(super) async fn audit_interaction(
        &self,
        ctx: &Ctx,
        i: &Interaction,
    ) -> Option<ServiceResult<Outcome>> {
        match i {
            Interaction::Read { res_type, id } if res_type.as_str() == "AuditEvent" => {
                Some(self.read_audit_event(ctx, id).await)
            }
            Interaction::VRead {
                res_type,
                id,
                version,
            } if res_type.as_str() == "AuditEvent" => Some(if version == "1" {
                self.read_audit_event(ctx, id).await
            } else {
                Err(ServiceError::not_found(format!(
                    "AuditEvent/{id} has only version 1"
                )))
            }),
            Interaction::Search {
                target: SearchTarget::Type(t),
                params,
                ..
            } if t == "AuditEvent" => Some(self.search_audit_events(ctx, params).await),
            Interaction::VerifyAudit => Some(self.verify_audit_operation(ctx).await),
            _ => None,
        }
    }

    /// Waits for the audit journal to be stored: records still in it are
    /// part of the trail too.
    async fn trail_settled(&self) -> ServiceResult<()> {
        self.audit
            .settled()
            .await
            .map_err(|_| ServiceError::unavailable())
    }

    async fn read_audit_event(&self, ctx: &Ctx, id: &str) -> ServiceResult<Outcome> {
        let reach = self.audit_reach(ctx, Perms::R)?;
        self.trail_settled().await?;
        let missing = || ServiceError::not_found(format!("AuditEvent/{id} is not known"));
        let (recorded_ms, json) = self.store.audit_read(id).await?.ok_or_else(missing)?;
        let json = match &reach {
            Some(p) => {
                let mut v: Value =
                    serde_json::from_str(&json).map_err(|_| ServiceError::internal())?;
                if !names_patient(&v, p) {
                    return Err(missing());
                }
                redact_for_patient(&mut v, p);
                v.to_string()
            }
            None => json,
        };
        Ok(Outcome::stored(
            200,
            StoredResource {
                res_type: "AuditEvent".into(),
                id: id.to_string(),
                version: 1,
                last_updated: recorded_ms,
                json,
            },
        ))
    }

    async fn search_audit_events(
        &self,
        ctx: &Ctx,
        params: &[(String, String)],
    ) -> ServiceResult<Outcome> {
        let reach = self.audit_reach(ctx, Perms::S)?;
        let mut q = parse_query(params)?;
        if let Some(p) = &reach {
            let own = format!("Patient/{p}");
            let foreign_patient = q
                .refs
                .iter()
                .any(|(k, vs)| *k == "patient" && vs.iter().any(|v| *v != own));
            let foreign_param = params.iter().any(|(k, _)| {
                !PATIENT_AUDIT_PARAMS.contains(&k.as_str()) && !PAGE_PARAMS.contains(&k.as_str())
            });
            if foreign_patient || foreign_param {
                return Err(ServiceError::forbidden(
                    "a patient searches the AuditEvents of their own record only (by _id, patient, agent, date, type, subtype, action, outcome)",
                ));
            }
            q.refs.push(("patient", vec![own]));
        }
        let count_only = params.iter().any(|(k, v)| k == "_summary" && v == "count");
        let want_total = count_only || params.iter().any(|(k, v)| k == "_total" && v == "accurate");
        let size = if count_only {
            0
        } else {
            page_size(self, params)?
        };
        self.trail_settled().await?;
        let (rows, total) = self
            .store
            .audit_search(&q, size as i64 + 1, want_total)
            .await?;
        let more = rows.len() > size;
        let kept: Vec<&(i64, String)> = rows.iter().take(size).collect();
        let base = format!("{}/AuditEvent", self.base_url);
        let keep: Vec<String> = params
            .iter()
            .filter(|(k, _)| k != "_cursor")
            .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
            .collect();
        let self_link = format!("{base}?{}", keep.join("&"));
        let mut links = vec![("self", self_link.clone())];
        if let (true, Some((last, _))) = (more, kept.last()) {
            let sep = if keep.is_empty() { "" } else { "&" };
            links.push(("next", format!("{self_link}{sep}_cursor={last}")));
        }
        let mut entries = Vec::with_capacity(kept.len());
        for (_, json) in kept {
            let mut resource: Value =
                serde_json::from_str(json).map_err(|_| ServiceError::internal())?;
            if let Some(p) = &reach {
                redact_for_patient(&mut resource, p);
            }
            let id = resource["id"].as_str().unwrap_or_default().to_string();
            entries.push(json!({
                "fullUrl": format!("{base}/{id}"),
                "resource": resource,
                "search": {"mode": "match"},
            }));
        }
        let b = new_bundle("searchset", &links);
        Ok(Outcome::generated(200, finish(b, entries, total)))
    }

    async fn verify_audit_operation(&self, ctx: &Ctx) -> ServiceResult<Outcome> {
        if self.audit_reach(ctx, Perms::R)?.is_some() || !ctx.principal.audit_reader {
            return Err(ServiceError::forbidden(
                "$verify-audit needs an administrator's or auditor's token",
            ));
        }
        self.trail_settled().await?;
        let report = crate::audit::chain::verify(&self.store).await?;
        let mut parameter = vec![
            json!({"name": "intact", "valueBoolean": report.is_intact()}),
            json!({"name": "checked", "valueDecimal": report.checked}),
        ];
        if let Some((seq, why)) = &report.broken {
            parameter.push(json!({"name": "brokenAt", "valueDecimal": seq}));
            parameter.push(json!({"name": "reason", "valueString": why}));
        }
        Ok(Outcome::generated(
            200,
            json!({"resourceType": "Parameters", "parameter": parameter}),
        ))
    }
}
