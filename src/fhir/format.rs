//! The one place that touches fhirbolt: structural R4 validation and JSON⇄XML conversion.
//!
//! fhirbolt's serde code is generic and slow to compile, so it is instantiated
//! here only, behind a few non-generic functions; replacing fhirbolt means
//! rewriting this file and nothing else.

use fhirbolt::model::r4::Resource;
use fhirbolt::serde::{DeserializationConfig, DeserializationMode};
use serde_json::Value;

/// A structural problem found in a resource, with the FHIRPath-style path of
/// the element at fault (`Patient.name[0].given`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StructuralError {
    pub path: String,
    pub message: String,
}

fn strict() -> Option<DeserializationConfig> {
    Some(DeserializationConfig {
        mode: DeserializationMode::Strict,
    })
}

/// Checks that `value` (a JSON object with a known `resourceType`) is a
/// structurally valid R4 resource: known elements only, right JSON types,
/// required elements present.
pub fn validate_resource(value: &Value) -> Result<(), StructuralError> {
    // The pretty form puts every element on its own line, so the line of a
    // parse error tells which element is at fault.
    let pretty = serde_json::to_string_pretty(value).map_err(|e| StructuralError {
        path: "$".into(),
        message: e.to_string(),
    })?;
    match fhirbolt::json::from_str::<Resource>(&pretty, strict()) {
        Ok(_) => Ok(()),
        Err(e) => Err(locate(value, &e)),
    }
}

/// Renders a stored JSON resource as FHIR XML.
pub fn json_to_xml(json: &str) -> Result<String, StructuralError> {
    let resource: Resource = fhirbolt::json::from_str(json, strict()).map_err(|e| StructuralError {
        path: "$".into(),
        message: strip_position(&e.to_string()),
    })?;
    fhirbolt::xml::to_string(&resource, None).map_err(|e| StructuralError {
        path: "$".into(),
        message: e.to_string(),
    })
}

/// Parses a FHIR XML resource into its JSON form.
pub fn xml_to_json(xml: &[u8]) -> Result<Value, StructuralError> {
    let text = std::str::from_utf8(xml).map_err(|_| StructuralError {
        path: "$".into(),
        message: "XML body is not valid UTF-8".into(),
    })?;
    let resource: Resource = fhirbolt::xml::from_str(text, strict()).map_err(|e| StructuralError {
        path: "$".into(),
        message: e.to_string(),
    })?;
    fhirbolt::json::to_json_value(resource, None).map_err(|e| StructuralError {
        path: "$".into(),
        message: e.to_string(),
    })
}

/// serde_json appends " at line L column C", which refers to our pretty form,
/// not to anything the client sent.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

fn locate(value: &Value, error: &fhirbolt::json::Error) -> StructuralError {
    let root = value
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or("$")
        .to_string();
    let mut lines = vec![root.clone()];
    line_paths(value, &root, &mut lines);
    let line = error.line().max(1);
    let mut path = lines
        .get(line - 1)
        .cloned()
        .unwrap_or_else(|| root.clone());
    let message = strip_position(&error.to_string());
    if let Some(field) = backticked_after(&message, "missing field `") {
        path = format!("{path}.{field}");
    }
    StructuralError { path, message }
}

fn backticked_after<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    let start = message.find(prefix)? + prefix.len();
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
}

/// Pushes, for every line of `serde_json::to_string_pretty(value)` after the
/// one that opens `value`, the path of the element that line belongs to.
fn line_paths(value: &Value, path: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                let child_path = format!("{path}.{key}");
                out.push(child_path.clone());
                line_paths(child, &child_path, out);
            }
            out.push(path.to_string());
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, child) in items.iter().enumerate() {
                let child_path = format!("{path}[{i}]");
                out.push(child_path.clone());
                line_paths(child, &child_path, out);
            }
            out.push(path.to_string());
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn path_of(v: Value) -> String {
        validate_resource(&v).expect_err("should be invalid").path
    }

    #[test]
    fn valid_patient_passes() {
        let v = json!({"resourceType": "Patient", "id": "p1", "active": true,
            "name": [{"family": "Chalmers", "given": ["Peter", "James"]}]});
        assert_eq!(validate_resource(&v), Ok(()));
    }

    #[test]
    fn unknown_nested_element_is_located() {
        let v = json!({"resourceType": "Patient", "name": [{"family": "X", "nickname": "Y"}]});
        assert_eq!(path_of(v), "Patient.name[0].nickname");
    }

    #[test]
    fn wrong_primitive_type_is_located() {
        let v = json!({"resourceType": "Patient", "gender": "male", "active": "yes"});
        assert_eq!(path_of(v), "Patient.active");
    }

    #[test]
    fn missing_required_element_is_named() {
        let v = json!({"resourceType": "Observation", "code": {"text": "x"}});
        assert_eq!(path_of(v), "Observation.status");
    }

    #[test]
    fn xml_round_trip_keeps_decimals() {
        let v = json!({"resourceType": "Observation", "status": "final", "code": {"text": "t"},
            "valueQuantity": {"value": 98.60, "unit": "F"}});
        let text = r#"{"resourceType":"Observation","status":"final","code":{"text":"t"},"valueQuantity":{"value":98.60,"unit":"F"}}"#;
        let xml = json_to_xml(text).unwrap();
        assert!(xml.contains("98.60"), "{xml}");
        let back = xml_to_json(xml.as_bytes()).unwrap();
        let original: Value = serde_json::from_str(text).unwrap();
        assert_eq!(back, original);
        let _ = v;
    }
}
