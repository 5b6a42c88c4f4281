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

/// Documents larger than this are not searched for the element at fault;
/// their errors name the resource root.
pub const MAX_LOCATE_BYTES: usize = 1024 * 1024;
/// Most re-validations spent finding the element at fault.
pub const MAX_LOCATE_STEPS: usize = 400;

/// Checks that `value` (a JSON object with a known `resourceType`) is a
/// structurally valid R4 resource: known elements only, right JSON types,
/// required elements present, and nothing fhirbolt had to coerce (a decimal
/// sent as a string, say).
pub fn validate_resource(value: &Value) -> Result<(), StructuralError> {
    match check(value) {
        Ok(()) => Ok(()),
        Err(message) => Err(StructuralError {
            path: locate(value, &message),
            message,
        }),
    }
}

/// Parses through fhirbolt and compares its canonical JSON with the input.
fn check(value: &Value) -> Result<(), String> {
    let text = serde_json::to_string(value).map_err(|e| e.to_string())?;
    let resource: Resource =
        fhirbolt::json::from_str(&text, strict()).map_err(|e| strip_position(&e.to_string()))?;
    let canonical = fhirbolt::json::to_json_value(resource, None).map_err(|e| e.to_string())?;
    if &canonical == value {
        Ok(())
    } else {
        Err("element is not in R4 JSON form (wrong JSON type for its FHIR type)".into())
    }
}

/// Finds the element at fault by pruning: the error lies inside a child if
/// removing that child makes the error go away (or turns it into "missing
/// field" for that very child). Children are tried last to first, so that of
/// two conflicting siblings (two `value[x]`), the later one is named.
fn locate(value: &Value, message: &str) -> String {
    let root = value
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or("$")
        .to_string();
    let size = serde_json::to_string(value)
        .map(|t| t.len())
        .unwrap_or(usize::MAX);
    if size > MAX_LOCATE_BYTES {
        return root;
    }
    let doc = value.clone();
    let missing_field = message.contains("missing field `");
    let mut pointer: Vec<PathStep> = Vec::new();
    let mut steps = 0;
    'descend: loop {
        let children = match node(&doc, &pointer) {
            Some(Value::Object(map)) => map.keys().cloned().map(PathStep::Key).collect::<Vec<_>>(),
            Some(Value::Array(items)) => (0..items.len()).map(PathStep::Index).collect(),
            _ => vec![],
        };
        for child in children.into_iter().rev() {
            steps += 1;
            if steps > MAX_LOCATE_STEPS {
                break 'descend;
            }
            let mut trial = doc.clone();
            remove(&mut trial, &pointer, &child);
            // A removal that empties its parent proves less: it may only be
            // removing the parent. For a missing field the parent object is the
            // culprit; a lone scalar in an array says the array is wrong.
            let collapsed = match node(&trial, &pointer) {
                Some(Value::Object(m)) if m.is_empty() => missing_field,
                Some(Value::Array(a)) if a.is_empty() => {
                    let removed = node(&doc, &pointer).and_then(|p| match &child {
                        PathStep::Index(i) => p.get(*i),
                        PathStep::Key(k) => p.get(k),
                    });
                    !matches!(removed, Some(Value::Object(_) | Value::Array(_)))
                }
                _ => false,
            };
            if collapsed {
                continue;
            }
            prune_empty(&mut trial);
            let fixed = match check(&trial) {
                Ok(()) => true,
                Err(m) if m == message => false,
                Err(m) => {
                    matches!(&child, PathStep::Key(k) if m.contains(&format!("missing field `{k}`")))
                }
            };
            if fixed {
                pointer.push(child);
                continue 'descend;
            }
        }
        break;
    }
    let mut path = root;
    for step in &pointer {
        match step {
            PathStep::Key(k) => {
                path.push('.');
                path.push_str(k);
            }
            PathStep::Index(i) => path.push_str(&format!("[{i}]")),
        }
    }
    if let Some(field) = backticked_after(message, "missing field `") {
        path = format!("{path}.{field}");
    }
    path
}

/// Drops arrays and objects left empty by a removal (R4 JSON has none).
fn prune_empty(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.values_mut().for_each(prune_empty);
            map.retain(|_, c| {
                !matches!(c, Value::Array(a) if a.is_empty())
                    && !matches!(c, Value::Object(o) if o.is_empty())
            });
        }
        Value::Array(items) => {
            items.iter_mut().for_each(prune_empty);
            items.retain(|c| !matches!(c, Value::Object(o) if o.is_empty()));
        }
        _ => {}
    }
}

#[derive(Debug, Clone)]
enum PathStep {
    Key(String),
    Index(usize),
}

fn node<'a>(doc: &'a Value, pointer: &[PathStep]) -> Option<&'a Value> {
    pointer.iter().try_fold(doc, |v, step| match step {
        PathStep::Key(k) => v.get(k),
        PathStep::Index(i) => v.get(i),
    })
}

fn remove(doc: &mut Value, pointer: &[PathStep], child: &PathStep) {
    let mut target = doc;
    for step in pointer {
        let next = match step {
            PathStep::Key(k) => target.get_mut(k),
            PathStep::Index(i) => target.get_mut(*i),
        };
        match next {
            Some(n) => target = n,
            None => return,
        }
    }
    match (target, child) {
        (Value::Object(map), PathStep::Key(k)) => {
            map.shift_remove(k);
        }
        (Value::Array(items), PathStep::Index(i)) if *i < items.len() => {
            items.remove(*i);
        }
        _ => {}
    }
}

/// Renders a stored JSON resource as FHIR XML.
pub fn json_to_xml(json: &str) -> Result<String, StructuralError> {
    let resource: Resource =
        fhirbolt::json::from_str(json, strict()).map_err(|e| StructuralError {
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
    let resource: Resource =
        fhirbolt::xml::from_str(text, strict()).map_err(|e| StructuralError {
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

fn backticked_after<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    let start = message.find(prefix)? + prefix.len();
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
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
        let text = r#"{"resourceType":"Observation","status":"final","code":{"text":"t"},"valueQuantity":{"value":98.60,"unit":"F"}}"#;
        let xml = json_to_xml(text).unwrap();
        assert!(xml.contains("98.60"), "{xml}");
        let back = xml_to_json(xml.as_bytes()).unwrap();
        let original: Value = serde_json::from_str(text).unwrap();
        assert_eq!(back, original);
    }
}
