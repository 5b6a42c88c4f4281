//! The one place that touches fhirbolt: structural R4 validation and JSON⇄XML conversion.
//!
//! fhirbolt's serde code is generic and slow to compile, so it is instantiated
//! here only, behind a few non-generic functions; replacing fhirbolt means
//! rewriting this file and nothing else.

use fhirbolt::model::r4::Resource;
use fhirbolt::serde::{DeserializationConfig, DeserializationMode};
use serde_json::Value;

use super::limits::{self, Refusal, MAX_JSON_DEPTH, MAX_XML_DEPTH};

/// A structural problem found in a resource, with the FHIRPath-style path of
/// the element at fault (`Patient.name[0].given`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StructuralError {
    pub path: String,
    pub message: String,
    /// The OperationOutcome issue code (`invalid`, or `too-costly` for a
    /// document over a nesting limit).
    pub code: &'static str,
}

impl StructuralError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        StructuralError {
            path: path.into(),
            message: message.into(),
            code: "invalid",
        }
    }

    /// A document refused by a limit of [`super::limits`].
    pub fn refused(refusal: &Refusal, what: &str) -> Self {
        StructuralError {
            path: "$".into(),
            message: refusal.message(what),
            code: refusal.code(),
        }
    }
}

/// Stack given to fhirbolt for a document deeper than [`INLINE_DEPTH`]:
/// its (generic, serde-derived) code takes about 20 KiB of stack per JSON
/// level in a debug build, so [`MAX_JSON_DEPTH`] needs about 2 MiB, all a
/// tokio worker has (measured: a debug server used to abort at 53 nested
/// extensions, JSON depth 107).
pub const DEEP_STACK_BYTES: usize = 32 * 1024 * 1024;
/// Documents up to this JSON depth are handled on the caller's stack; deeper
/// ones (rare: real resources are under 20 levels) on a thread of their own
/// with [`DEEP_STACK_BYTES`].
pub const INLINE_DEPTH: usize = 16;

/// Runs `f` on the caller's stack when `depth` is small, else on a scoped
/// thread with [`DEEP_STACK_BYTES`] of stack (a panic in it is resumed here).
fn on_stack_for<T: Send>(
    depth: usize,
    f: impl FnOnce() -> Result<T, StructuralError> + Send,
) -> Result<T, StructuralError> {
    if depth <= INLINE_DEPTH {
        return f();
    }
    std::thread::scope(|s| {
        let spawned = std::thread::Builder::new()
            .name("vesta-deep-doc".into())
            .stack_size(DEEP_STACK_BYTES)
            .spawn_scoped(s, f);
        match spawned {
            Ok(handle) => handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(_) => Err(StructuralError {
                path: "$".into(),
                message: "the server could not take on a document this deep now".into(),
                code: "transient",
            }),
        }
    })
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
    let depth = limits::value_depth(value, MAX_JSON_DEPTH);
    if depth > MAX_JSON_DEPTH {
        return Err(StructuralError::refused(
            &Refusal::TooDeep(MAX_JSON_DEPTH),
            "the resource",
        ));
    }
    on_stack_for(depth, || match check(value) {
        Ok(()) => Ok(()),
        Err(message) => Err(StructuralError::new(locate(value, &message), message)),
    })
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
    let depth = limits::json_depth(json.as_bytes(), MAX_JSON_DEPTH)
        .map_err(|r| StructuralError::refused(&r, "the resource"))?;
    on_stack_for(depth, || {
        let resource: Resource = fhirbolt::json::from_str(json, strict())
            .map_err(|e| StructuralError::new("$", strip_position(&e.to_string())))?;
        fhirbolt::xml::to_string(&resource, None)
            .map_err(|e| StructuralError::new("$", e.to_string()))
    })
}

/// Parses a FHIR XML resource into its JSON form.
/// The element depth is measured first ([`limits::xml_depth`]): deeper than
/// [`MAX_XML_DEPTH`] is refused before fhirbolt sees the text.
pub fn xml_to_json(xml: &[u8]) -> Result<Value, StructuralError> {
    let depth = limits::xml_depth(xml, MAX_XML_DEPTH)
        .map_err(|r| StructuralError::refused(&r, "the XML document"))?;
    let text = std::str::from_utf8(xml)
        .map_err(|_| StructuralError::new("$", "XML body is not valid UTF-8"))?;
    // An element is at most two JSON levels (object, and array when repeated).
    on_stack_for(depth * 2, || {
        let resource: Resource = fhirbolt::xml::from_str(text, strict())
            .map_err(|e| StructuralError::new("$", e.to_string()))?;
        fhirbolt::json::to_json_value(resource, None)
            .map_err(|e| StructuralError::new("$", e.to_string()))
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

    /// A Patient with `levels` nested extensions, the innermost carrying a
    /// CodeableConcept: JSON depth `2 * levels + 4`, XML depth `levels + 4`.
    fn nested_extensions(levels: usize) -> (Value, String) {
        let mut json = json!({"url": "x", "valueCodeableConcept": {"coding": [{"code": "c"}]}});
        for _ in 1..levels {
            json = json!({"url": "x", "extension": [json]});
        }
        let json = json!({"resourceType": "Patient", "extension": [json]});
        let xml = format!(
            "<Patient xmlns='http://hl7.org/fhir'>{}<valueCodeableConcept><coding><code value='c'/></coding></valueCodeableConcept>{}</Patient>",
            "<extension url='x'>".repeat(levels),
            "</extension>".repeat(levels)
        );
        (json, xml)
    }

    /// At the limits, fhirbolt's work runs on a stack of its own: the caller
    /// may have no more than a tokio worker's 2 MiB (a debug build used to
    /// abort at 53 nested extensions).
    #[test]
    fn deepest_documents_fit_a_worker_stack() {
        let worker = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(|| {
                let levels = (MAX_JSON_DEPTH - 4) / 2;
                let (json, _) = nested_extensions(levels);
                assert_eq!(limits::value_depth(&json, 1000), MAX_JSON_DEPTH);
                assert_eq!(validate_resource(&json), Ok(()));
                let text = serde_json::to_string(&json).expect("json");
                assert!(json_to_xml(&text).is_ok());
                let (over, _) = nested_extensions(levels + 1);
                assert_eq!(
                    validate_resource(&over).map_err(|e| e.code),
                    Err("too-costly")
                );
                // XML: the limit is in elements.
                let (json, at) = nested_extensions(MAX_XML_DEPTH - 4);
                assert_eq!(xml_to_json(at.as_bytes()).expect("parses"), json);
                assert_eq!(validate_resource(&json), Ok(()));
                let (_, over) = nested_extensions(MAX_XML_DEPTH - 3);
                assert_eq!(
                    xml_to_json(over.as_bytes()).map_err(|e| e.code),
                    Err("too-costly")
                );
                let huge = "<extension url='x'>".repeat(100_000);
                assert!(xml_to_json(huge.as_bytes()).is_err());
            })
            .expect("thread");
        assert!(worker.join().is_ok());
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
