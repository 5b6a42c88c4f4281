//! Operations on a resource's JSON: meta stamping, change detection and reference rewriting.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::fhir::instant::{format_instant, Millis};
use crate::fhir::ResourceType;

/// Sets `id`, `meta.versionId` and `meta.lastUpdated`, keeping other meta.
pub fn stamp(resource: &mut Map<String, Value>, id: &str, version: i64, last_updated: Millis) {
    resource.insert("id".into(), Value::String(id.to_string()));
    let meta = resource
        .entry("meta")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    if let Value::Object(meta) = meta {
        meta.insert("versionId".into(), Value::String(version.to_string()));
        meta.insert(
            "lastUpdated".into(),
            Value::String(format_instant(last_updated)),
        );
    }
}

/// True when `a` and `b` differ only in `meta.versionId` / `meta.lastUpdated`
/// (an update that would change nothing).
pub fn same_content(a: &Value, b: &Value) -> bool {
    strip_version_meta(a) == strip_version_meta(b)
}

fn strip_version_meta(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(obj) = v.as_object_mut() {
        let mut drop_meta = false;
        if let Some(Value::Object(meta)) = obj.get_mut("meta") {
            meta.remove("versionId");
            meta.remove("lastUpdated");
            drop_meta = meta.is_empty();
        }
        if drop_meta {
            obj.remove("meta");
        }
    }
    v
}

/// Replaces every `reference` whose value is a key of `map` (for example a
/// transaction's `urn:uuid:` fullUrls) with the mapped `Type/id`.
pub fn rewrite_references(value: &mut Value, map: &HashMap<String, String>) {
    match value {
        Value::Object(obj) => {
            for (key, child) in obj.iter_mut() {
                if key == "reference" {
                    if let Value::String(r) = child {
                        if let Some(new) = map.get(r.as_str()) {
                            *r = new.clone();
                        }
                        continue;
                    }
                }
                rewrite_references(child, map);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| rewrite_references(i, map)),
        _ => {}
    }
}

/// The conditional references (`Type?search`) inside a resource.
pub fn conditional_references(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    match (k.as_str(), child) {
                        ("reference", Value::String(r)) => {
                            if let Some((t, _)) = r.split_once('?') {
                                if ResourceType::parse(t).is_some() {
                                    out.push(r.clone());
                                }
                            }
                        }
                        _ => walk(child, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    walk(v, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stamping_keeps_other_meta() {
        let mut v = json!({"resourceType": "Patient", "meta": {"tag": [{"code": "x"}]}});
        stamp(v.as_object_mut().unwrap(), "p1", 3, 0);
        assert_eq!(v["meta"]["versionId"], "3");
        assert_eq!(v["meta"]["lastUpdated"], "1970-01-01T00:00:00.000Z");
        assert_eq!(v["meta"]["tag"][0]["code"], "x");
        assert_eq!(v["id"], "p1");
    }

    #[test]
    fn same_content_ignores_version_meta_only() {
        let a = json!({"resourceType": "Patient", "id": "p", "meta": {"versionId": "1", "lastUpdated": "x"}, "active": true});
        let b = json!({"resourceType": "Patient", "active": true, "id": "p"});
        let c = json!({"resourceType": "Patient", "active": false, "id": "p"});
        assert!(same_content(&a, &b));
        assert!(!same_content(&a, &c));
    }

    #[test]
    fn rewrites_nested_references() {
        let mut v = json!({"subject": {"reference": "urn:uuid:1"}, "x": [{"reference": "urn:uuid:2"}], "reference": "keep"});
        let map = HashMap::from([("urn:uuid:1".to_string(), "Patient/a".to_string())]);
        rewrite_references(&mut v, &map);
        assert_eq!(v["subject"]["reference"], "Patient/a");
        assert_eq!(v["x"][0]["reference"], "urn:uuid:2");
    }
}
