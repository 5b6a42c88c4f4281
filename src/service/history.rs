//! History at instance, type and system level, paged newest first by a version cursor.

use serde_json::{json, Value};

use std::collections::HashMap;

use super::access::{hidden, require};
use super::interaction::HistoryTarget;
use super::{Ctx, FhirService, Outcome, ServiceError, ServiceResult};
use crate::fhir::bundle::{entry_response, finish, new_bundle};
use crate::fhir::instant::parse_instant;
use crate::policy::scope::Perms;
use crate::policy::{visible, Decision};
use crate::store::HistoryScope;

/// Reads `_count` within the limits, or the default.
pub(super) fn page_size(
    service: &FhirService,
    params: &[(String, String)],
) -> ServiceResult<usize> {
    match params.iter().rev().find(|(k, _)| k == "_count") {
        None => Ok(service.limits.default_count),
        Some((_, v)) => {
            let n: usize = v.parse().map_err(|_| {
                ServiceError::invalid("_count must be a non-negative integer", Some("_count"))
            })?;
            if n > service.limits.max_count {
                return Err(ServiceError::invalid(
                    format!("_count may be at most {}", service.limits.max_count),
                    Some("_count"),
                ));
            }
            Ok(n)
        }
    }
}

/// Reads the opaque paging cursor `_cursor`.
pub(super) fn cursor(params: &[(String, String)]) -> ServiceResult<Option<i64>> {
    params
        .iter()
        .find(|(k, _)| k == "_cursor")
        .map(|(_, v)| {
            v.parse::<i64>().map_err(|_| {
                ServiceError::invalid(
                    "_cursor is not a cursor this server issued",
                    Some("_cursor"),
                )
            })
        })
        .transpose()
}

impl FhirService {
    pub(super) async fn history(
        &self,
        ctx: &Ctx,
        target: HistoryTarget,
        params: &[(String, String)],
    ) -> ServiceResult<Outcome> {
        let principal = &ctx.principal;
        // Instance history is a read; type and system history list like a search.
        match &target {
            HistoryTarget::Instance(t, _) => {
                require(principal, Perms::R, t.as_str())?;
            }
            HistoryTarget::Type(t) => {
                require(principal, Perms::S, t.as_str())?;
            }
            HistoryTarget::System => {}
        }
        let perm = match target {
            HistoryTarget::Instance(..) => Perms::R,
            _ => Perms::S,
        };
        let mut decisions: HashMap<String, Decision> = HashMap::new();
        let count = page_size(self, params)?;
        let since_text = params
            .iter()
            .find(|(k, _)| k == "_since")
            .map(|(_, v)| v.clone());
        let since = since_text
            .as_deref()
            .map(|s| {
                parse_instant(s).ok_or_else(|| {
                    ServiceError::invalid(
                        "_since must be an instant such as 2024-01-01T00:00:00Z",
                        Some("_since"),
                    )
                })
            })
            .transpose()?;
        let before = cursor(params)?;
        let (scope, path) = match &target {
            HistoryTarget::System => (HistoryScope::System, "_history".to_string()),
            HistoryTarget::Type(t) => (HistoryScope::Type(t.as_str()), format!("{t}/_history")),
            HistoryTarget::Instance(t, id) => (
                HistoryScope::Instance(t.as_str(), id),
                format!("{t}/{id}/_history"),
            ),
        };
        if let HistoryTarget::Instance(t, id) = &target {
            let current = self.store.read(t.as_str(), id).await?;
            let Some(current) = current else {
                return Err(ServiceError::not_found(format!("{t}/{id} is not known")));
            };
            let d = principal.decide(Perms::R, t.as_str());
            if d != Decision::Unrestricted {
                let reachable = match &current.content {
                    Some(text) if !current.deleted => {
                        let v: Value =
                            serde_json::from_str(text).map_err(|_| ServiceError::internal())?;
                        visible(&self.registry.get(), &d, t.as_str(), &v)
                    }
                    _ => false,
                };
                if !reachable {
                    return Err(hidden(t.as_str(), id));
                }
            }
            // A resource its patients' Consents hide has no history either
            // (answered like an id that does not exist).
            if let (false, Some(text)) = (current.deleted, &current.content) {
                if self.consent_may_hide(ctx).await? {
                    let v: Value =
                        serde_json::from_str(text).map_err(|_| ServiceError::internal())?;
                    if !self.consent_allows(ctx, t.as_str(), &v).await? {
                        return Err(hidden(t.as_str(), id));
                    }
                }
            }
        }
        let reg = self.registry.get();
        let book = self.consent_book(ctx, None).await?;
        let rows = self
            .store
            .history(scope, since, before, count as i64 + 1)
            .await?;
        let has_more = rows.len() > count;
        let mut query = vec![format!("_count={count}")];
        if let Some(s) = &since_text {
            query.push(format!("_since={}", super::interaction::urlencode(s)));
        }
        let base_link = format!("{}/{path}?{}", self.base_url, query.join("&"));
        let mut links = vec![(
            "self",
            match before {
                Some(b) => format!("{base_link}&_cursor={b}"),
                None => base_link.clone(),
            },
        )];
        let mut entries = Vec::with_capacity(rows.len().min(count));
        let mut later_labels: HashMap<(String, String), Option<super::consent::VersionLabels>> =
            HashMap::new();
        let mut last_vid = None;
        for row in rows.into_iter().take(count) {
            last_vid = Some(row.vid);
            // Versions the principal may not see are left out of the page
            // (the cursor still moves past them); so are deletions, whose
            // owner a restricted token cannot tell.
            let decision = decisions
                .entry(row.res_type.clone())
                .or_insert_with(|| principal.decide(perm, &row.res_type));
            let parsed: Option<Value> = match (&*decision, &row.content) {
                (Decision::Denied, _) => continue,
                (Decision::Unrestricted, _) => None,
                (_, None) => continue,
                (d, Some(text)) => {
                    let v: Value =
                        serde_json::from_str(text).map_err(|_| ServiceError::internal())?;
                    if !visible(&reg, d, &row.res_type, &v) {
                        continue;
                    }
                    Some(v)
                }
            };
            // Versions a patient's Consent denies are left out too.
            let parsed = match (parsed, &row.content) {
                (None, Some(text)) if !book.hides_nothing() => Some(
                    serde_json::from_str::<Value>(text).map_err(|_| ServiceError::internal())?,
                ),
                (p, _) => p,
            };
            if let Some(v) = &parsed {
                if !book.allows(&reg, ctx, &row.res_type, v) {
                    continue;
                }
                // A label on a later version covers this one too.
                if book.uses_labels() {
                    let key = (row.res_type.clone(), row.res_id.clone());
                    if !later_labels.contains_key(&key) {
                        let labels = self.version_labels(&row.res_type, &row.res_id).await?;
                        later_labels.insert(key.clone(), labels);
                    }
                    let judged = match later_labels.get(&key) {
                        Some(Some(labels)) => Some(super::consent::with_labels(
                            v,
                            &labels.since_version(row.version),
                        )),
                        _ => None,
                    };
                    match judged {
                        Some(j) if book.allows(&reg, ctx, &row.res_type, &j) => {}
                        _ => continue,
                    }
                }
            }
            let full_url = format!("{}/{}/{}", self.base_url, row.res_type, row.res_id);
            let (status, request_url) = match row.method.as_str() {
                "POST" => (201, row.res_type.clone()),
                "DELETE" => (204, format!("{}/{}", row.res_type, row.res_id)),
                _ => (
                    if row.version == 1 { 201 } else { 200 },
                    format!("{}/{}", row.res_type, row.res_id),
                ),
            };
            let mut entry = json!({
                "fullUrl": full_url,
                "request": {"method": row.method, "url": request_url},
                "response": entry_response(status, None, Some((row.version, row.last_updated))),
            });
            if let Some(v) = parsed {
                entry["resource"] = v;
            } else if let Some(text) = &row.content {
                let resource: Value =
                    serde_json::from_str(text).map_err(|_| ServiceError::internal())?;
                entry["resource"] = resource;
            }
            entries.push(entry);
        }
        if let (true, Some(vid)) = (has_more, last_vid) {
            links.push(("next", format!("{base_link}&_cursor={vid}")));
        }
        if before.is_some() || has_more {
            links.push(("first", base_link));
        }
        let bundle = new_bundle("history", &links);
        Ok(Outcome::generated(200, finish(bundle, entries, None)))
    }
}
