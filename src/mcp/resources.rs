//! MCP resources (`fhir://{type}/{id}`, `fhir://Patient/{id}/$everything`,
//! `fhir://metadata`; listing paged over the Patient-compartment resources
//! the caller may read) and prompts
//! (patient briefing, medication reconciliation, pre-visit summary).

use base64::Engine;
use rmcp::model::{
    ErrorData, GetPromptResult, JsonObject, ListResourcesResult, Prompt, PromptArgument,
    PromptMessage, ReadResourceResult, Resource, ResourceContents, ResourceTemplate, Role,
};
use serde_json::{json, Value};

use super::render::{body_json, human_name};
use crate::policy::scope::Perms;
use crate::service::interaction::{parse, RawRequest};
use crate::service::{Ctx, FhirService, ServiceError};

/// Most resources on one page of `resources/list` (the CapabilityStatement
/// included); also at most the server's `max_count`.
pub const RESOURCE_PAGE: usize = 50;
/// Longest title given to a listed resource.
pub const MAX_TITLE_CHARS: usize = 120;
/// Entries of `fhir://Patient/{id}/$everything` read at once.
pub const EVERYTHING_COUNT: usize = 200;
/// Longest resource URI accepted.
pub const MAX_URI_CHARS: usize = 256;
/// Longest prompt argument.
pub const MAX_PROMPT_ARG_CHARS: usize = 200;
const MIME: &str = "application/fhir+json";
const METADATA_URI: &str = "fhir://metadata";

pub fn templates() -> Vec<ResourceTemplate> {
    vec![
        ResourceTemplate::new("fhir://{type}/{id}", "FHIR resource")
            .with_description("One FHIR resource by type and id")
            .with_mime_type(MIME),
        ResourceTemplate::new("fhir://Patient/{id}/$everything", "Patient everything")
            .with_description("A patient's record ($everything, first page)")
            .with_mime_type(MIME),
    ]
}

fn to_mcp_error(e: &ServiceError) -> ErrorData {
    let diag = e
        .issues
        .first()
        .map(|i| i.diagnostics.clone())
        .unwrap_or_default();
    match e.status {
        404 | 410 => ErrorData::resource_not_found(diag, Some(e.outcome())),
        400 | 403 | 405 | 413 => ErrorData::invalid_params(diag, Some(e.outcome())),
        _ => ErrorData::internal_error(diag, Some(e.outcome())),
    }
}

async fn run(
    service: &FhirService,
    ctx: &Ctx,
    path: &str,
    query: &str,
) -> Result<Value, ErrorData> {
    let i = match parse(RawRequest {
        method: "GET",
        path,
        query,
        ..RawRequest::default()
    }) {
        Ok(i) => i,
        Err(e) => {
            service
                .audit_refusal(ctx, None, &e)
                .await
                .map_err(|e| to_mcp_error(&e))?;
            return Err(to_mcp_error(&e));
        }
    };
    service
        .execute(ctx, i)
        .await
        .map(|o| body_json(&o))
        .map_err(|e| to_mcp_error(&e))
}

/// The types `resources/list` may show, in this order in each search's
/// `_type`: Patient, then every other type of the Patient compartment
/// (AuditEvent aside: the audit trail is not a record's content).
fn listed_types() -> Vec<&'static str> {
    std::iter::once("Patient")
        .chain(
            crate::search::compartment::PATIENT
                .iter()
                .map(|(t, _)| t.as_str())
                .filter(|t| *t != "Patient" && *t != "AuditEvent"),
        )
        .collect()
}

fn bad_cursor() -> ErrorData {
    ErrorData::invalid_params("the cursor is not one this server gave", None)
}

/// Base64url text of bounded length (what both cursors are made of).
fn is_cursor_text(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= super::registry::MAX_CURSOR_CHARS
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The `resources/list` cursor for the search `_cursor` of the next page
/// (`None`: the first page of resources, after the CapabilityStatement).
fn encode_cursor(after: Option<&str>) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json!({"a": after}).to_string())
}

/// The search `_cursor` a `resources/list` cursor stands for; anything this
/// server did not give is refused (it never becomes search parameters).
fn decode_cursor(cursor: &str) -> Result<Option<String>, ErrorData> {
    if !is_cursor_text(cursor) {
        return Err(bad_cursor());
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| bad_cursor())?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| bad_cursor())?;
    match v.get("a") {
        Some(Value::Null) => Ok(None),
        Some(Value::String(a)) if is_cursor_text(a) => Ok(Some(a.clone())),
        _ => Err(bad_cursor()),
    }
}

/// The `_cursor` of a search Bundle's `next` link.
fn next_search_cursor(bundle: &Value) -> Option<String> {
    let next = bundle["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == "next")?["url"]
        .as_str()?;
    url::Url::parse(next)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == "_cursor")
        .map(|(_, v)| v.into_owned())
        .filter(|c| is_cursor_text(c))
}

/// A listed resource's title: a Patient's name, else its code's text.
fn title_of(res_type: &str, r: &Value) -> Option<String> {
    if res_type == "Patient" {
        return human_name(&r["name"]);
    }
    let code = &r["code"];
    code["text"]
        .as_str()
        .or_else(|| code["coding"][0]["display"].as_str())
        .map(|t| t.chars().take(MAX_TITLE_CHARS).collect())
}

/// `resources/list`: the CapabilityStatement, then the resources the caller
/// may read, [`RESOURCE_PAGE`] (at most the server's `max_count`) a page,
/// one search a page: of the [`listed_types`] its scopes allow to search,
/// over its patient's compartment (`Patient/{id}/$everything`) when the
/// token is confined to one patient, else the whole server (`_type=…`).
/// The service runs the search, so scopes, the launch patient and Consent
/// decide what appears; pages follow the search's keyset cursor.
pub async fn list(
    service: &FhirService,
    ctx: &Ctx,
    cursor: Option<String>,
) -> Result<ListResourcesResult, ErrorData> {
    let page = RESOURCE_PAGE.min(service.limits().max_count).max(1);
    let mut items = Vec::new();
    let after = match cursor {
        None => {
            items.push(
                Resource::new(METADATA_URI, "CapabilityStatement")
                    .with_description("What this FHIR server supports")
                    .with_mime_type(MIME),
            );
            None
        }
        Some(c) => decode_cursor(&c)?,
    };
    let p = &ctx.principal;
    // Types the token may not search would make the search answer 403;
    // the service decides everything else.
    let types: Vec<&str> = listed_types()
        .into_iter()
        .filter(|t| !p.decide(Perms::S, t).is_denied())
        .collect();
    let want = page.saturating_sub(items.len());
    if types.is_empty() || want == 0 {
        // Nothing the token may list, or no room left on this page.
        let mut result = ListResourcesResult::with_all_items(items);
        if !types.is_empty() {
            result.next_cursor = Some(encode_cursor(after.as_deref()));
        }
        return Ok(result);
    }
    let confined = p
        .patient
        .as_ref()
        .or(p.self_patient.as_ref())
        .filter(|_| p.is_confined());
    let path = match confined {
        Some(id) => format!("Patient/{id}/$everything"),
        None => String::new(),
    };
    let mut query = format!("_type={}&_count={want}&_summary=true", types.join(","));
    if let Some(a) = &after {
        query.push_str("&_cursor=");
        query.push_str(a);
    }
    let bundle = run(service, ctx, &path, &query).await?;
    for e in bundle["entry"].as_array().into_iter().flatten() {
        let r = &e["resource"];
        let (Some(t), Some(id)) = (r["resourceType"].as_str(), r["id"].as_str()) else {
            continue;
        };
        let mut res =
            Resource::new(format!("fhir://{t}/{id}"), format!("{t}/{id}")).with_mime_type(MIME);
        if let Some(title) = title_of(t, r) {
            res = res.with_title(title);
        }
        items.push(res);
    }
    let mut result = ListResourcesResult::with_all_items(items);
    result.next_cursor = next_search_cursor(&bundle).map(|a| encode_cursor(Some(&a)));
    Ok(result)
}

pub async fn read(
    service: &FhirService,
    ctx: &Ctx,
    uri: &str,
) -> Result<ReadResourceResult, ErrorData> {
    if uri.len() > MAX_URI_CHARS {
        return Err(ErrorData::invalid_params("the URI is too long", None));
    }
    let value = if uri == METADATA_URI {
        run(service, ctx, "metadata", "").await?
    } else {
        let rest = uri.strip_prefix("fhir://").ok_or_else(|| {
            ErrorData::resource_not_found("resource URIs start with fhir://", None)
        })?;
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            ["Patient", id, "$everything"] => {
                run(
                    service,
                    ctx,
                    &format!("Patient/{id}/$everything"),
                    &format!("_count={EVERYTHING_COUNT}"),
                )
                .await?
            }
            [t, id] => run(service, ctx, &format!("{t}/{id}"), "").await?,
            _ => {
                return Err(ErrorData::resource_not_found(
                    "expected fhir://{type}/{id} or fhir://Patient/{id}/$everything",
                    None,
                ))
            }
        }
    };
    Ok(ReadResourceResult::new(vec![ResourceContents::text(
        value.to_string(),
        uri,
    )
    .with_mime_type(MIME)]))
}

fn patient_arg() -> PromptArgument {
    PromptArgument::new("patient_id")
        .with_description("the Patient's id (use the resolve tool to find it)")
        .with_required(true)
}

pub fn prompts() -> Vec<Prompt> {
    vec![
        Prompt::new(
            "patient_briefing",
            Some("A short clinical briefing on one patient"),
            Some(vec![patient_arg()]),
        ),
        Prompt::new(
            "medication_reconciliation",
            Some("Reconcile a patient's medication list: duplicates, interactions, allergies"),
            Some(vec![patient_arg()]),
        ),
        Prompt::new(
            "pre_visit_summary",
            Some("What to know before seeing a patient"),
            Some(vec![
                patient_arg(),
                PromptArgument::new("reason")
                    .with_description("reason for the visit")
                    .with_required(false),
            ]),
        ),
    ]
}

fn arg(args: Option<&JsonObject>, name: &str) -> Result<Option<String>, ErrorData> {
    match args.and_then(|a| a.get(name)) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= MAX_PROMPT_ARG_CHARS => Ok(Some(s.clone())),
        Some(_) => Err(ErrorData::invalid_params(
            format!("'{name}' must be a string of at most {MAX_PROMPT_ARG_CHARS} characters"),
            None,
        )),
    }
}

pub fn prompt(name: &str, args: Option<&JsonObject>) -> Result<GetPromptResult, ErrorData> {
    let id = arg(args, "patient_id")?
        .filter(|i| crate::fhir::is_valid_id(i))
        .ok_or_else(|| ErrorData::invalid_params("'patient_id' (a FHIR id) is required", None))?;
    let text = match name {
        "patient_briefing" => format!(
            "Call the patient_summary tool with patient_id \"{id}\". From its result write a \
             briefing of at most 10 lines: who the patient is, active problems, current \
             medications, allergies (with criticality), notable recent vitals and labs, and the \
             last encounter. Cite resource references (Type/id) for each fact. Say what is \
             missing rather than guessing."
        ),
        "medication_reconciliation" => format!(
            "Call patient_summary with patient_id \"{id}\", then fhir_search for MedicationRequest \
             and MedicationStatement with patient={id} for the full lists. Reconcile them: \
             duplicates, conflicting doses, drugs that conflict with the recorded allergies, \
             and medications without an active problem to justify them. Propose changes only \
             as suggestions for the clinician; do not call any tool that changes data."
        ),
        "pre_visit_summary" => {
            let reason = arg(args, "reason")?.unwrap_or_else(|| "a routine visit".into());
            format!(
                "Prepare for a visit of patient \"{id}\" for {reason}. Call patient_summary, then \
                 fhir_search Encounter with patient={id} (count 5) for recent visits. Summarise \
                 what is relevant to the reason, open problems, results since the last \
                 encounter and questions to ask. Keep it under one screen."
            )
        }
        _ => {
            return Err(ErrorData::invalid_params(
                format!("unknown prompt '{name}'"),
                None,
            ))
        }
    };
    let mut r = GetPromptResult::new(vec![PromptMessage::new_text(Role::User, text)]);
    r.description = Some(json!(name).as_str().unwrap_or_default().replace('_', " "));
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_cursor_round_trip_and_refusals() {
        let inner = "eyJiIjpmYWxzZSwiayI6W10sInIiOjd9";
        assert_eq!(
            decode_cursor(&encode_cursor(Some(inner))).ok(),
            Some(Some(inner.to_string()))
        );
        assert_eq!(decode_cursor(&encode_cursor(None)).ok(), Some(None));
        let enc = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        for bad in [
            String::new(),
            "not base64!".into(),
            "A".repeat(crate::mcp::registry::MAX_CURSOR_CHARS + 1),
            enc(json!({"a": "x&_id=1"})),
            enc(json!({"a": ""})),
            enc(json!({"a": 5})),
            enc(json!({"b": null})),
            enc(json!(["a"])),
            // The old form (a search query) is no longer accepted.
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("_count=50&_cursor=abc"),
        ] {
            assert!(decode_cursor(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn patient_first_and_no_audit_events() {
        let t = listed_types();
        assert_eq!(t[0], "Patient");
        assert!(t.contains(&"Observation") && t.contains(&"Encounter"));
        assert!(!t.contains(&"AuditEvent"));
        assert_eq!(t.iter().filter(|x| **x == "Patient").count(), 1);
    }
}
