//! `_summary` and `_elements`: trimming resources in search results.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde_json::{json, Map, Value};

use super::plan::Summary;

static SUMMARY: LazyLock<HashMap<String, Vec<String>>> = LazyLock::new(|| {
    serde_json::from_str(include_str!("../../fhir-profiles/r4-summary-elements.json"))
        .unwrap_or_default()
});

/// Elements kept whatever is asked.
const ALWAYS: &[&str] = &["resourceType", "id", "meta"];

fn keep(name: &str, list: &[String]) -> bool {
    let base = name.trim_start_matches('_');
    list.iter().any(|e| match e.strip_suffix('*') {
        // Choice elements: `value*` keeps valueQuantity, valueString, ...
        Some(prefix) => {
            base.starts_with(prefix)
                && base[prefix.len()..].starts_with(|c: char| c.is_ascii_uppercase())
        }
        None => base == e,
    })
}

/// Marks a trimmed resource as such (`meta.tag` SUBSETTED).
fn subsetted(obj: &mut Map<String, Value>) {
    let meta = obj.entry("meta").or_insert_with(|| json!({}));
    if let Some(m) = meta.as_object_mut() {
        let tags = m.entry("tag").or_insert_with(|| json!([]));
        if let Some(a) = tags.as_array_mut() {
            a.push(json!({"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}));
        }
    }
}

/// Applies `_summary` / `_elements` to one resource.
pub fn apply(resource: &mut Value, summary: Summary, elements: Option<&[String]>) {
    let Some(obj) = resource.as_object_mut() else {
        return;
    };
    let rtype = obj
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let changed = match (summary, elements) {
        (Summary::True, _) => {
            let list = SUMMARY.get(&rtype).cloned().unwrap_or_default();
            obj.retain(|k, _| ALWAYS.contains(&k.as_str()) || keep(k, &list));
            true
        }
        (Summary::Text, _) => {
            let list = SUMMARY.get(&rtype).cloned().unwrap_or_default();
            // text plus the mandatory summary elements (approximated by the summary list's required ones: id, meta)
            obj.retain(|k, _| {
                ALWAYS.contains(&k.as_str())
                    || k == "text"
                    || k == "status" && list.iter().any(|e| e == "status")
            });
            true
        }
        (Summary::Data, _) => obj.remove("text").is_some(),
        (_, Some(list)) => {
            obj.retain(|k, _| ALWAYS.contains(&k.as_str()) || keep(k, list));
            true
        }
        _ => false,
    };
    if changed {
        subsetted(obj);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_keeps_summary_elements_and_choices() {
        let mut v = json!({"resourceType": "Observation", "id": "o", "status": "final", "code": {"text": "x"},
            "valueQuantity": {"value": 1}, "note": [{"text": "n"}], "text": {"status": "generated", "div": "<div/>"}});
        apply(&mut v, Summary::True, None);
        assert!(v.get("valueQuantity").is_some());
        assert!(v.get("note").is_none());
        assert!(v.get("text").is_none());
        assert_eq!(v["meta"]["tag"][0]["code"], "SUBSETTED");
    }

    #[test]
    fn elements_keep_only_listed() {
        let mut v = json!({"resourceType": "Patient", "id": "p", "name": [{"family": "X"}], "gender": "male", "birthDate": "2000-01-01"});
        apply(&mut v, Summary::False, Some(&["name".to_string()]));
        assert!(v.get("name").is_some() && v.get("gender").is_none());
    }
}
