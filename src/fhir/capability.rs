//! The CapabilityStatement, generated from what this server implements.

use serde_json::{json, Value};

use crate::fhir::instant::{format_instant, Millis};
use crate::fhir::resource_types::RESOURCE_TYPES;
use crate::service::search_params::SUPPORTED_PARAMS;

/// Interactions every resource type supports.
const TYPE_INTERACTIONS: &[&str] = &[
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
];

/// Builds the CapabilityStatement for a server at `base_url`, started at `started_ms`.
pub fn capability_statement(base_url: &str, started_ms: Millis) -> Value {
    let search_params: Vec<Value> = SUPPORTED_PARAMS
        .iter()
        .filter(|p| **p != "_count" && **p != "_cursor" && **p != "_total")
        .map(|p| {
            json!({
                "name": p,
                "definition": format!("http://hl7.org/fhir/SearchParameter/Resource{}", p.replace('_', "-")),
                "type": "token",
            })
        })
        .collect();
    let resources: Vec<Value> = RESOURCE_TYPES
        .iter()
        .map(|t| {
            json!({
                "type": t,
                "profile": format!("http://hl7.org/fhir/StructureDefinition/{t}"),
                "interaction": TYPE_INTERACTIONS.iter().map(|i| json!({"code": i})).collect::<Vec<_>>(),
                "versioning": "versioned-update",
                "readHistory": true,
                "updateCreate": true,
                "conditionalCreate": false,
                "conditionalRead": "not-supported",
                "conditionalUpdate": false,
                "conditionalDelete": "not-supported",
                "searchParam": search_params,
            })
        })
        .collect();
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": format_instant(started_ms),
        "publisher": "Vesta",
        "kind": "instance",
        "software": {"name": "Vesta", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {"description": "Vesta FHIR R4 server", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "application/fhir+xml"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [{
            "mode": "server",
            "resource": resources,
            "interaction": [
                {"code": "transaction"},
                {"code": "batch"},
                {"code": "history-system"},
            ],
        }],
    })
}
