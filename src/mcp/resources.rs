//! MCP resources (`fhir://{type}/{id}`, `fhir://Patient/{id}/$everything`,
//! `fhir://metadata`; listing paged over the caller's Patients) and prompts
//! (patient briefing, medication reconciliation, pre-visit summary).

use base64::Engine;
use rmcp::model::{
    ErrorData, GetPromptResult, JsonObject, ListResourcesResult, Prompt, PromptArgument,
    PromptMessage, ReadResourceResult, Resource, ResourceContents, ResourceTemplate, Role,
};
use serde_json::{json, Value};

use super::render::{body_json, human_name};
use crate::service::interaction::{parse, RawRequest};
use crate::service::{Ctx, FhirService, ServiceError};

/// Patients per page of `resources/list`.
pub const RESOURCE_PAGE: usize = 50;
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

/// The capability statement, then the caller's Patients, a page at a time.
pub async fn list(
    service: &FhirService,
    ctx: &Ctx,
    cursor: Option<String>,
) -> Result<ListResourcesResult, ErrorData> {
    let mut items = Vec::new();
    let query = match cursor {
        None => {
            items.push(
                Resource::new(METADATA_URI, "CapabilityStatement")
                    .with_description("What this FHIR server supports")
                    .with_mime_type(MIME),
            );
            format!("_count={RESOURCE_PAGE}")
        }
        Some(c) => {
            let bad = || ErrorData::invalid_params("the cursor is not one this server gave", None);
            if c.len() > super::registry::MAX_CURSOR_CHARS {
                return Err(bad());
            }
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(&c)
                .map_err(|_| bad())?;
            String::from_utf8(bytes).map_err(|_| bad())?
        }
    };
    let bundle = run(service, ctx, "Patient", &query).await?;
    for e in bundle["entry"].as_array().into_iter().flatten() {
        let r = &e["resource"];
        if let Some(id) = r["id"].as_str() {
            let mut res = Resource::new(format!("fhir://Patient/{id}"), format!("Patient/{id}"))
                .with_mime_type(MIME);
            if let Some(n) = human_name(&r["name"]) {
                res = res.with_title(n);
            }
            items.push(res);
        }
    }
    let base = service.base_url();
    let next = bundle["link"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| l["relation"] == "next")
        .and_then(|l| l["url"].as_str())
        .and_then(|u| u.strip_prefix(base))
        .and_then(|u| u.trim_start_matches('/').strip_prefix("Patient?"))
        .map(|q| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(q));
    let mut result = ListResourcesResult::with_all_items(items);
    result.next_cursor = next;
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
