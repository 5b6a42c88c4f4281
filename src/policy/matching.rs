//! Does one resource meet a constraint? Compartment membership and v2 scope
//! filters, decided on the resource's content with the search index extractor,
//! so that the answer agrees with what a search would find.

use serde_json::Value;

use crate::search::compartment;
use crate::search::definitions::Registry;
use crate::search::index::extract_params;

/// True when `resource` is `Patient/{patient}` or belongs to its compartment.
pub fn in_patient_compartment(
    reg: &Registry,
    res_type: &str,
    resource: &Value,
    patient: &str,
) -> bool {
    if res_type == "Patient" && resource.get("id").and_then(Value::as_str) == Some(patient) {
        return true;
    }
    let Some(params) = compartment::patient_params(res_type) else {
        return false;
    };
    let rows = extract_params(reg, resource, params);
    rows.references.iter().any(|r| {
        r.target_type.as_deref() == Some("Patient") && r.target_id.as_deref() == Some(patient)
    })
}

/// The ids of the patients whose compartment holds `resource` (itself, for
/// a Patient), for the audit trail.
pub fn patients_of(reg: &Registry, res_type: &str, resource: &Value) -> Vec<String> {
    if res_type == "Patient" {
        return resource
            .get("id")
            .and_then(Value::as_str)
            .map(|id| vec![id.to_string()])
            .unwrap_or_default();
    }
    let Some(params) = compartment::patient_params(res_type) else {
        return Vec::new();
    };
    let rows = extract_params(reg, resource, params);
    let mut out: Vec<String> = Vec::new();
    for r in &rows.references {
        if let (Some("Patient"), Some(id)) = (r.target_type.as_deref(), r.target_id.as_deref()) {
            if !out.iter().any(|o| o == id) {
                out.push(id.to_string());
            }
        }
    }
    out
}

/// True when `resource` matches every `(parameter, value)` pair; values are
/// token searches (`system|code`, `code`, `|code`, `system|`, comma for or).
/// Parameters of other types never match (such scopes are not granted).
pub fn matches_filter(reg: &Registry, resource: &Value, filter: &[(String, String)]) -> bool {
    filter.iter().all(|(name, values)| {
        let rows = extract_params(reg, resource, std::slice::from_ref(name));
        values.split(',').any(|wanted| {
            let (system, code) = match wanted.split_once('|') {
                Some((s, c)) => (Some(s), c),
                None => (None, wanted),
            };
            rows.tokens.iter().any(|t| {
                let system_ok = match system {
                    None => true,
                    Some("") => t.system.is_none(),
                    Some(s) => t.system.as_deref() == Some(s),
                };
                let code_ok = code.is_empty() || t.code.as_deref() == Some(code);
                system_ok && code_ok
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn compartment_and_filter_follow_the_index() {
        let reg = crate::search::definitions::core();
        let obs = json!({"resourceType":"Observation","id":"o1","status":"final",
            "category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}],
            "code":{"text":"x"},"subject":{"reference":"Patient/p1"}});
        assert!(in_patient_compartment(&reg, "Observation", &obs, "p1"));
        assert!(!in_patient_compartment(&reg, "Observation", &obs, "p2"));
        let lab = vec![("category".to_string(), "laboratory".to_string())];
        assert!(matches_filter(&reg, &obs, &lab));
        let vs = vec![(
            "category".to_string(),
            "http://terminology.hl7.org/CodeSystem/observation-category|vital-signs".to_string(),
        )];
        assert!(!matches_filter(&reg, &obs, &vs));
        let p = json!({"resourceType":"Patient","id":"p1"});
        assert!(in_patient_compartment(&reg, "Patient", &p, "p1"));
        assert!(!in_patient_compartment(&reg, "Patient", &p, "p2"));
    }
}
