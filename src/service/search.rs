//! Type-level search. This first cut supports `_id`, `_count`, `_total` and
//! cursor paging; other parameters are ignored and reported (or refused under
//! `Prefer: handling=strict`). The search issue replaces it with full search.

use serde_json::{json, Value};

use super::history::{cursor, page_size};
use super::search_params::SUPPORTED_PARAMS;
use super::{FhirService, Outcome, ServiceError, ServiceResult};
use crate::fhir::bundle::{finish, new_bundle};
use crate::fhir::outcome::{operation_outcome, Issue, Severity};
use crate::fhir::ResourceType;

/// Parameters that shape the response format and are handled by the door.
const FORMAT_PARAMS: &[&str] = &["_format", "_pretty"];

/// Most ids accepted in one `_id` parameter.
pub const MAX_IDS_PER_SEARCH: usize = 1_000;

impl FhirService {
    pub(super) async fn search(
        &self,
        res_type: ResourceType,
        params: &[(String, String)],
        strict: bool,
    ) -> ServiceResult<Outcome> {
        let count = page_size(self, params)?;
        let after = cursor(params)?;
        let mut ignored = Vec::new();
        let mut ids: Option<Vec<String>> = None;
        let mut with_total = false;
        for (name, value) in params {
            match name.as_str() {
                "_id" => {
                    let list: Vec<String> = value.split(',').map(str::to_string).collect();
                    if list.len() > MAX_IDS_PER_SEARCH {
                        return Err(ServiceError::invalid(
                            format!("_id may list at most {MAX_IDS_PER_SEARCH} ids"),
                            Some("_id"),
                        ));
                    }
                    // Several _id parameters must all match: intersect.
                    ids = Some(match ids {
                        None => list,
                        Some(prev) => prev.into_iter().filter(|i| list.contains(i)).collect(),
                    });
                }
                "_total" => match value.as_str() {
                    "none" => with_total = false,
                    "accurate" | "estimate" => with_total = true,
                    _ => {
                        return Err(ServiceError::invalid(
                            "_total must be none, estimate or accurate",
                            Some("_total"),
                        ))
                    }
                },
                n if SUPPORTED_PARAMS.contains(&n) || FORMAT_PARAMS.contains(&n) => {}
                other => ignored.push(other.to_string()),
            }
        }
        if strict && !ignored.is_empty() {
            return Err(ServiceError::invalid(
                format!("unsupported search parameter(s): {}", ignored.join(", ")),
                None,
            ));
        }
        let listing = self
            .store
            .list(
                res_type.as_str(),
                ids.as_deref(),
                after,
                count as i64 + 1,
                with_total,
            )
            .await?;
        let has_more = listing.rows.len() > count;
        let mut query = vec![format!("_count={count}")];
        if let Some(ids) = &ids {
            query.push(format!("_id={}", super::history::urlencode(&ids.join(","))));
        }
        if with_total {
            query.push("_total=accurate".into());
        }
        let base_link = format!("{}/{res_type}?{}", self.base_url, query.join("&"));
        let mut links = vec![(
            "self",
            match after {
                Some(a) => format!("{base_link}&_cursor={a}"),
                None => base_link.clone(),
            },
        )];
        let mut entries = Vec::new();
        let mut last = None;
        for (rid, text) in listing.rows.into_iter().take(count) {
            last = Some(rid);
            let resource: Value =
                serde_json::from_str(&text).map_err(|_| ServiceError::internal())?;
            let id = resource
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            entries.push(json!({
                "fullUrl": format!("{}/{res_type}/{id}", self.base_url),
                "resource": resource,
                "search": {"mode": "match"},
            }));
        }
        if let (true, Some(rid)) = (has_more, last) {
            links.push(("next", format!("{base_link}&_cursor={rid}")));
        }
        if after.is_some() || has_more {
            links.push(("first", base_link));
        }
        if !ignored.is_empty() {
            let issues: Vec<Issue> = ignored
                .iter()
                .map(|p| {
                    Issue::error(
                        "not-supported",
                        format!("search parameter '{p}' is not supported and was ignored"),
                    )
                    .with_severity(Severity::Warning)
                })
                .collect();
            entries.push(json!({
                "resource": operation_outcome(&issues),
                "search": {"mode": "outcome"},
            }));
        }
        let bundle = new_bundle("searchset", &links);
        Ok(Outcome::generated(
            200,
            finish(bundle, entries, listing.total),
        ))
    }
}
