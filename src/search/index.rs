//! Extraction of search-index rows from a resource at write time.
//!
//! This covers the parameters every resource type shares, read straight from
//! the JSON: `_tag`, `_security` and `identifier` (token), `_profile` and
//! `_source` (uri), and the `subject` / `patient` references that place a
//! resource in a patient's compartment. FHIRPath-driven extraction for every
//! SearchParameter replaces this with the search issue.

use serde_json::Value;

use super::normalize::fold;
use crate::fhir::is_valid_id;
use crate::store::{IndexRows, ReferenceRow, TokenRow, UriRow};

/// The index rows for `resource`.
pub fn extract(resource: &Value) -> IndexRows {
    let mut rows = IndexRows::default();
    if let Some(meta) = resource.get("meta") {
        for coding in array(meta.get("tag")) {
            rows.tokens.push(coding_row("_tag", coding));
        }
        for coding in array(meta.get("security")) {
            rows.tokens.push(coding_row("_security", coding));
        }
        for profile in array(meta.get("profile")).filter_map(Value::as_str) {
            rows.uris.push(UriRow {
                param: "_profile".into(),
                value: profile.into(),
            });
        }
        if let Some(source) = meta.get("source").and_then(Value::as_str) {
            rows.uris.push(UriRow {
                param: "_source".into(),
                value: source.into(),
            });
        }
    }
    for ident in array(resource.get("identifier")) {
        rows.tokens.push(TokenRow {
            param: "identifier".into(),
            system: text(ident.get("system")),
            code: text(ident.get("value")),
            text_norm: ident
                .get("type")
                .and_then(|t| t.get("text"))
                .and_then(Value::as_str)
                .map(fold),
        });
    }
    for param in ["subject", "patient"] {
        if let Some(reference) = resource
            .get(param)
            .and_then(|r| r.get("reference"))
            .and_then(Value::as_str)
        {
            rows.references.push(reference_row(param, reference));
        }
    }
    rows
}

fn array(v: Option<&Value>) -> impl Iterator<Item = &Value> {
    v.and_then(Value::as_array).into_iter().flatten()
}

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(str::to_string)
}

fn coding_row(param: &str, coding: &Value) -> TokenRow {
    TokenRow {
        param: param.into(),
        system: text(coding.get("system")),
        code: text(coding.get("code")),
        text_norm: coding.get("display").and_then(Value::as_str).map(fold),
    }
}

/// Splits `Type/id` (optionally with `/_history/n`) into type and id; anything
/// else (absolute URLs, fragments, urn:) is kept as a URL.
fn reference_row(param: &str, reference: &str) -> ReferenceRow {
    let parts: Vec<&str> = reference.split('/').collect();
    let local = match parts.as_slice() {
        [t, id] | [t, id, "_history", _] => {
            crate::fhir::ResourceType::parse(t).is_some() && is_valid_id(id)
        }
        _ => false,
    };
    if local {
        ReferenceRow {
            param: param.into(),
            target_type: Some(parts[0].to_string()),
            target_id: Some(parts[1].to_string()),
            target_url: None,
        }
    } else {
        ReferenceRow {
            param: param.into(),
            target_type: None,
            target_id: None,
            target_url: Some(reference.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn extracts_shared_parameters() {
        let rows = extract(&json!({
            "resourceType": "Observation",
            "meta": {"tag": [{"system": "s", "code": "c"}], "profile": ["http://p"]},
            "identifier": [{"system": "urn:x", "value": "42"}],
            "subject": {"reference": "Patient/p1"}
        }));
        assert_eq!(rows.tokens.len(), 2);
        assert_eq!(rows.uris[0].value, "http://p");
        assert_eq!(rows.references[0].target_id.as_deref(), Some("p1"));
        assert_eq!(rows.references[0].target_type.as_deref(), Some("Patient"));
    }

    #[test]
    fn absolute_references_stay_urls() {
        let r = reference_row("subject", "http://other/fhir/Patient/1");
        assert_eq!(r.target_url.as_deref(), Some("http://other/fhir/Patient/1"));
        assert!(r.target_id.is_none());
    }
}
