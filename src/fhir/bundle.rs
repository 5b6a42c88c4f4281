//! Bundle construction: searchset, history and batch/transaction responses.

use serde_json::{json, Map, Value};

use crate::fhir::instant::{format_instant, Millis};

/// Builds an empty Bundle of `kind` with the given links (`(relation, url)`).
pub fn new_bundle(kind: &str, links: &[(&str, String)]) -> Map<String, Value> {
    let mut b = Map::new();
    b.insert("resourceType".into(), json!("Bundle"));
    b.insert("type".into(), json!(kind));
    if !links.is_empty() {
        b.insert(
            "link".into(),
            Value::Array(
                links
                    .iter()
                    .map(|(rel, url)| json!({"relation": rel, "url": url}))
                    .collect(),
            ),
        );
    }
    b
}

/// The weak ETag of a version: `W/"3"`.
pub fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

/// `entry.response` for an interaction that produced `version`.
pub fn entry_response(
    status: u16,
    location: Option<String>,
    version: Option<(i64, Millis)>,
) -> Value {
    let mut r = Map::new();
    r.insert("status".into(), json!(status.to_string()));
    if let Some(loc) = location {
        r.insert("location".into(), json!(loc));
    }
    if let Some((v, lu)) = version {
        r.insert("etag".into(), json!(etag(v)));
        r.insert("lastModified".into(), json!(format_instant(lu)));
    }
    Value::Object(r)
}

/// Sets `entry` (and `total`, when known) on a bundle.
pub fn finish(mut bundle: Map<String, Value>, entries: Vec<Value>, total: Option<i64>) -> Value {
    if let Some(t) = total {
        bundle.insert("total".into(), json!(t));
    }
    if !entries.is_empty() {
        bundle.insert("entry".into(), Value::Array(entries));
    }
    Value::Object(bundle)
}
