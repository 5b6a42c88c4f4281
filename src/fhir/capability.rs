//! The CapabilityStatement, generated from what this server implements.

use serde_json::{json, Value};

use crate::fhir::instant::{format_instant, Millis};
use crate::fhir::resource_types::RESOURCE_TYPES;
use crate::search::definitions::{ParamKind, Registry};

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
pub fn capability_statement(base_url: &str, started_ms: Millis, reg: &Registry) -> Value {
    let resources: Vec<Value> = RESOURCE_TYPES
        .iter()
        .map(|t| {
            let search_params: Vec<Value> = reg
                .for_type(t)
                .into_iter()
                .filter(|d| !matches!(d.kind, ParamKind::Special | ParamKind::Composite))
                .map(|d| json!({"name": d.code, "definition": d.url, "type": d.kind.as_str()}))
                .collect();
            json!({
                "type": t,
                "profile": format!("http://hl7.org/fhir/StructureDefinition/{t}"),
                "interaction": TYPE_INTERACTIONS.iter().map(|i| json!({"code": i})).collect::<Vec<_>>(),
                "versioning": "versioned-update",
                "readHistory": true,
                "updateCreate": true,
                "conditionalCreate": true,
                "conditionalRead": "not-supported",
                "conditionalUpdate": true,
                "conditionalDelete": "single",
                "searchInclude": ["*"],
                "searchRevInclude": ["*"],
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
                {"code": "search-system"},
            ],
        }],
    })
}

/// `rest.security` for a SMART server whose authorization server is at `issuer`.
pub fn smart_security(issuer: &str) -> Value {
    serde_json::json!({
        "cors": true,
        "service": [{
            "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                "code": "SMART-on-FHIR"
            }],
            "text": "OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)"
        }],
        "extension": [{
            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
            "extension": [
                {"url": "authorize", "valueUri": format!("{issuer}/auth/authorize")},
                {"url": "token", "valueUri": format!("{issuer}/auth/token")},
                {"url": "introspect", "valueUri": format!("{issuer}/auth/introspect")},
                {"url": "revoke", "valueUri": format!("{issuer}/auth/revoke")},
                {"url": "register", "valueUri": format!("{issuer}/auth/register")},
                {"url": "manage", "valueUri": format!("{issuer}/auth/launch")}
            ]
        }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SMART clients (fhirclient among them) parse `/metadata` strictly as an
    /// R4 CapabilityStatement, so it must hold no element R4 lacks.
    #[test]
    fn the_capability_statement_is_valid_r4() {
        let reg = crate::search::definitions::core();
        let cs = capability_statement("http://localhost/fhir", 0, &reg);
        if let Err(e) = crate::fhir::format::validate_resource(&cs) {
            panic!("not a valid R4 CapabilityStatement: {e:?}");
        }
    }
}
