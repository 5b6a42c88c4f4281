//! Renders service outcomes as MCP tool results: FHIR JSON as
//! `structuredContent`, a short text line for the model, and errors as
//! `isError` results carrying the OperationOutcome.

use rmcp::model::CallToolResult;
use serde_json::{json, Value};

use crate::service::{Body, Outcome, ServiceError};

/// Longest text rendering of one tool result, in characters.
pub const MAX_TEXT_CHARS: usize = 4_000;
/// Longest one-line summary of one resource, in characters.
pub const MAX_LINE_CHARS: usize = 160;

/// What a tool answers.
#[derive(Debug, Clone)]
pub struct ToolOutput {
    /// FHIR JSON (a resource, an OperationOutcome) or a tool's own object.
    pub structured: Value,
    /// A short rendering for the model.
    pub text: String,
    pub is_error: bool,
    /// The HTTP status the result stands for (200, or the error's).
    pub status: u16,
}

impl ToolOutput {
    pub fn ok(structured: Value, text: impl Into<String>) -> ToolOutput {
        ToolOutput {
            structured,
            text: text.into(),
            is_error: false,
            status: 200,
        }
    }

    /// A failed call: the OperationOutcome and its first diagnostics.
    pub fn error(e: &ServiceError) -> ToolOutput {
        let diag = e
            .issues
            .first()
            .map(|i| i.diagnostics.clone())
            .unwrap_or_default();
        ToolOutput {
            structured: e.outcome(),
            text: format!("error {}: {diag}", e.status),
            is_error: true,
            status: e.status,
        }
    }

    /// A bad argument (400, `invalid`), before anything ran.
    pub fn invalid(message: impl Into<String>) -> ToolOutput {
        ToolOutput::error(&ServiceError::invalid(message, None))
    }

    pub fn into_result(self) -> CallToolResult {
        super::tool_result(
            self.structured,
            clip(&self.text, MAX_TEXT_CHARS),
            self.is_error,
        )
    }
}

/// Cuts `s` to at most `max` characters (on a character boundary).
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The JSON of an outcome's body.
pub fn body_json(o: &Outcome) -> Value {
    match &o.body {
        Body::Stored(r) => serde_json::from_str(&r.json).unwrap_or(Value::Null),
        Body::Generated(v) => v.clone(),
        Body::None => json!({}),
    }
}

/// The display text of a CodeableConcept (text, else first display, else code).
pub fn concept(v: &Value) -> Option<String> {
    if let Some(t) = v["text"].as_str() {
        return Some(t.to_string());
    }
    let codings = v["coding"].as_array()?;
    codings
        .iter()
        .find_map(|c| c["display"].as_str())
        .or_else(|| codings.iter().find_map(|c| c["code"].as_str()))
        .map(str::to_string)
}

/// "Family, Given Given" of a HumanName list.
pub fn human_name(names: &Value) -> Option<String> {
    let n = names.as_array()?.first()?;
    if let Some(t) = n["text"].as_str() {
        return Some(t.to_string());
    }
    let given: Vec<&str> = n["given"]
        .as_array()
        .map(|g| g.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    match n["family"].as_str() {
        Some(f) if given.is_empty() => Some(f.to_string()),
        Some(f) => Some(format!("{f}, {}", given.join(" "))),
        None if !given.is_empty() => Some(given.join(" ")),
        None => None,
    }
}

/// A quantity or other `value[x]` as text.
pub fn value_text(r: &Value) -> Option<String> {
    if let Some(q) = r.get("valueQuantity") {
        let v = q["value"].to_string();
        let unit = q["unit"].as_str().or(q["code"].as_str()).unwrap_or("");
        return Some(format!("{v} {unit}").trim().to_string());
    }
    if let Some(c) = r.get("valueCodeableConcept") {
        return concept(c);
    }
    for k in [
        "valueString",
        "valueBoolean",
        "valueInteger",
        "valueDateTime",
    ] {
        if let Some(v) = r.get(k) {
            return Some(match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
        }
    }
    let comps: Vec<String> = r["component"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let name = concept(&c["code"])?;
            Some(format!("{name} {}", value_text(c)?))
        })
        .collect();
    (!comps.is_empty()).then(|| comps.join("; "))
}

/// One line about a resource: `Type/id` and what it is about.
pub fn summarize(r: &Value) -> String {
    let t = r["resourceType"].as_str().unwrap_or("?");
    let id = r["id"].as_str().unwrap_or("?");
    let mut parts: Vec<String> = Vec::new();
    if let Some(n) = human_name(&r["name"]) {
        parts.push(n);
    } else if let Some(n) = r["name"].as_str() {
        parts.push(n.to_string());
    }
    if let Some(b) = r["birthDate"].as_str() {
        parts.push(format!("born {b}"));
    }
    for k in ["code", "medicationCodeableConcept", "type", "vaccineCode"] {
        if let Some(c) = r.get(k).and_then(concept) {
            parts.push(c);
            break;
        }
    }
    if let Some(v) = value_text(r) {
        parts.push(v);
    }
    if let Some(s) = r["status"].as_str() {
        parts.push(s.to_string());
    }
    for k in [
        "effectiveDateTime",
        "onsetDateTime",
        "authoredOn",
        "recordedDate",
        "date",
    ] {
        if let Some(d) = r[k].as_str() {
            parts.push(d.to_string());
            break;
        }
    }
    if let Some(v) = r["meta"]["versionId"].as_str() {
        parts.push(format!("version {v}"));
    }
    let line = if parts.is_empty() {
        format!("{t}/{id}")
    } else {
        format!("{t}/{id}: {}", parts.join("; "))
    };
    clip(&line, MAX_LINE_CHARS)
}

/// `Type/id` entries of a Bundle and their resources.
pub fn bundle_entries(bundle: &Value) -> Vec<Value> {
    bundle["entry"]
        .as_array()
        .map(|es| {
            es.iter()
                .filter(|e| e["resource"]["resourceType"] != "OperationOutcome")
                .map(|e| {
                    let r = &e["resource"];
                    let reference = format!(
                        "{}/{}",
                        r["resourceType"].as_str().unwrap_or("?"),
                        r["id"].as_str().unwrap_or("?")
                    );
                    let mut entry = json!({"reference": reference, "resource": r});
                    if let Some(m) = e["search"]["mode"].as_str() {
                        entry["mode"] = json!(m);
                    }
                    entry
                })
                .collect()
        })
        .unwrap_or_default()
}
