//! Validation of a resource before it is stored: shape, type, id, the R4 JSON
//! rules, structural R4 validity (via [`format::validate_resource`]), and
//! primitive formats and required bindings (via [`elements::check`]).

use serde_json::Value;

use crate::fhir::elements;
use crate::fhir::format::{self, StructuralError};
use crate::fhir::limits;
use crate::fhir::resource_types::{is_valid_id, ResourceType, MAX_ID_LEN};

/// One thing wrong with a resource: where (a FHIRPath-like path over the
/// JSON names, `Patient.name[0].given[1]`), the OperationOutcome issue code
/// (`invalid`, `structure`, `value`, `code-invalid`, `too-costly`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub code: &'static str,
    pub message: String,
}

impl Problem {
    pub fn new(path: impl Into<String>, code: &'static str, message: impl Into<String>) -> Self {
        Problem {
            path: path.into(),
            code,
            message: message.into(),
        }
    }
}

impl From<StructuralError> for Problem {
    fn from(e: StructuralError) -> Self {
        Problem::new(e.path, e.code, e.message)
    }
}

/// Why a resource was refused: every problem found (never empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub problems: Vec<Problem>,
}

impl From<StructuralError> for Invalid {
    fn from(e: StructuralError) -> Self {
        Invalid {
            problems: vec![e.into()],
        }
    }
}

impl Invalid {
    /// The first problem (tests and one-line messages).
    pub fn first(&self) -> Option<&Problem> {
        self.problems.first()
    }
}

/// What the body's `id` must be.
#[derive(Debug, Clone, Copy)]
pub enum IdRule<'a> {
    /// Create: any client id is ignored (the server assigns one).
    Ignore,
    /// Update: the body's id must be present and equal the URL's.
    MustEqual(&'a str),
}

fn err(path: impl Into<String>, message: impl Into<String>) -> StructuralError {
    StructuralError::new(path, message)
}

/// Validates `value` as a resource of `expected` type (when given). Returns
/// its type, or every problem found: a wrong shape, type or id stops at the
/// first; the R4 JSON rules, the element walk (formats, required bindings)
/// and the structural check are all reported (the structural check only
/// when the JSON rules hold, and unless it names a path already reported).
pub fn check_resource(
    value: &Value,
    expected: Option<ResourceType>,
    id_rule: IdRule<'_>,
) -> Result<ResourceType, Invalid> {
    let rtype = shape(value, expected, id_rule)?;
    let mut problems = Vec::new();
    // fhirbolt is only given what the JSON rules accept (it panics on some
    // empty arrays and objects).
    let json_ok = match json_rules(value, rtype.as_str(), false) {
        Ok(()) => true,
        Err(e) => {
            problems.push(Problem::from(e));
            false
        }
    };
    elements::check(value, rtype.as_str(), &mut problems);
    if json_ok {
        if let Err(e) = format::validate_resource(value) {
            if !problems.iter().any(|p| p.path == e.path) {
                problems.push(e.into());
            }
        }
    }
    if problems.is_empty() {
        Ok(rtype)
    } else {
        Err(Invalid { problems })
    }
}

/// The checks that stop at the first problem: a JSON object of a known
/// type (the expected one), with an acceptable id.
fn shape(
    value: &Value,
    expected: Option<ResourceType>,
    id_rule: IdRule<'_>,
) -> Result<ResourceType, StructuralError> {
    // Before anything here recurses over it (a value from MCP arguments or a
    // patched resource was never scanned as text).
    limits::check_value(value).map_err(|r| StructuralError::refused(&r, "the resource"))?;
    let obj = value
        .as_object()
        .ok_or_else(|| err("$", "a resource must be a JSON object"))?;
    let type_name = match obj.get("resourceType") {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(err("resourceType", "resourceType must be a string")),
        None => return Err(err("resourceType", "resourceType is missing")),
    };
    let rtype = ResourceType::parse(type_name)
        .ok_or_else(|| err(type_name, format!("unknown resource type '{type_name}'")))?;
    if let Some(expected) = expected {
        if expected != rtype {
            return Err(err(
                format!("{rtype}.resourceType"),
                format!("resource type {rtype} does not match the URL's {expected}"),
            ));
        }
    }
    match obj.get("id") {
        None => {
            if let IdRule::MustEqual(_) = id_rule {
                return Err(err(
                    format!("{rtype}.id"),
                    "an update must carry the resource id",
                ));
            }
        }
        Some(Value::String(id)) => {
            if !is_valid_id(id) {
                return Err(err(
                    format!("{rtype}.id"),
                    format!("id must be 1-{MAX_ID_LEN} characters of A-Z a-z 0-9 - ."),
                ));
            }
            if let IdRule::MustEqual(url_id) = id_rule {
                if id != url_id {
                    return Err(err(
                        format!("{rtype}.id"),
                        "the resource id does not match the id in the URL",
                    ));
                }
            }
        }
        Some(_) => return Err(err(format!("{rtype}.id"), "id must be a string")),
    }
    Ok(rtype)
}

/// The R4 JSON rules serde cannot see: no empty strings, objects or arrays,
/// and `null` only inside the arrays of primitive extensions (`_given`).
fn json_rules(value: &Value, path: &str, nulls_allowed: bool) -> Result<(), StructuralError> {
    match value {
        Value::Null if !nulls_allowed => Err(err(path, "null is not allowed here")),
        Value::String(s) if s.is_empty() => Err(err(path, "empty strings are not allowed")),
        Value::Object(map) => {
            if map.is_empty() {
                return Err(err(path, "empty objects are not allowed"));
            }
            for (k, v) in map {
                let child = format!("{path}.{k}");
                // `_given: [null, {...}]` and `given: ["a", null]` pair up by index.
                let nulls = matches!(v, Value::Array(_));
                if k == "div" {
                    continue;
                }
                json_rules(v, &child, nulls)?;
            }
            Ok(())
        }
        Value::Array(items) => {
            if items.is_empty() {
                return Err(err(path, "empty arrays are not allowed"));
            }
            if items.iter().all(Value::is_null) {
                return Err(err(path, "an array cannot hold only nulls"));
            }
            for (i, v) in items.iter().enumerate() {
                json_rules(v, &format!("{path}[{i}]"), nulls_allowed)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn path(v: Value) -> String {
        check_resource(&v, None, IdRule::Ignore)
            .err()
            .and_then(|e| e.first().map(|p| p.path.clone()))
            .unwrap_or_default()
    }

    #[test]
    fn json_rule_paths() {
        assert_eq!(
            path(json!({"resourceType": "Patient", "gender": ""})),
            "Patient.gender"
        );
        assert_eq!(
            path(json!({"resourceType": "Patient", "name": []})),
            "Patient.name"
        );
        assert_eq!(path(json!({"resourceType": "Pateint"})), "Pateint");
        assert_eq!(path(json!({"active": true})), "resourceType");
        assert_eq!(path(json!([1])), "$");
        assert_eq!(
            path(json!({"resourceType": "Patient", "id": "bad id!"})),
            "Patient.id"
        );
    }

    #[test]
    fn update_id_must_match() {
        let v = json!({"resourceType": "Patient", "id": "a"});
        assert!(check_resource(&v, None, IdRule::MustEqual("a")).is_ok());
        assert_eq!(
            check_resource(&v, None, IdRule::MustEqual("b"))
                .err()
                .and_then(|e| e.first().map(|p| p.path.clone()))
                .unwrap_or_default(),
            "Patient.id"
        );
    }
}
