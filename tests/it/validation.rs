//! Write-time validation beyond the structural check (primitive formats,
//! required bindings): the cases under `tests/data/validation` are refused
//! through POST, PUT, a transaction entry, a batch entry and the MCP
//! `fhir_create` tool, each problem named by its own issue, and nothing is
//! stored.

use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::smart::SmartApp;
use crate::helpers::{client_with_token, data_dir, Backend};
use crate::mcp::{mcp_token, rpc};

struct Case {
    name: String,
    status: u16,
    expressions: Vec<String>,
    resource: Value,
}

fn cases() -> Vec<Case> {
    let dir = data_dir().join("validation");
    let mut out: Vec<Case> = std::fs::read_dir(&dir)
        .expect("validation cases")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("json"))
        .map(|p| {
            let v: Value =
                serde_json::from_str(&std::fs::read_to_string(&p).expect("read")).expect("JSON");
            Case {
                name: p
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or_default()
                    .to_string(),
                status: v["status"].as_u64().expect("status") as u16,
                expressions: v["expressions"]
                    .as_array()
                    .expect("expressions")
                    .iter()
                    .map(|e| e.as_str().expect("expression").to_string())
                    .collect(),
                resource: v["resource"].clone(),
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The sorted expressions of an OperationOutcome's issues.
fn expressions(outcome: &Value) -> Vec<String> {
    let mut out: Vec<String> = outcome["issue"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["expression"][0].as_str().map(str::to_string))
        .collect();
    out.sort();
    out
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

async fn invalid_values_are_refused_everywhere(backend: Backend) {
    let s = SmartApp::start(backend).await;
    let app = &s.app;
    let mcp_url = format!("{}/mcp", s.root);
    let mcp = client_with_token(&mcp_token(
        &s,
        "vesta-test-admin",
        "system/*.cruds",
        None,
        None,
    ));
    const TYPES: [&str; 8] = [
        "Patient",
        "Observation",
        "Condition",
        "Encounter",
        "MedicationRequest",
        "Task",
        "Binary",
        "Basic",
    ];
    let mut before = Vec::new();
    for rtype in TYPES {
        let r = app.get(&format!("{rtype}?_total=accurate")).await;
        before.push(r.json()["total"].clone());
    }
    let cases = cases();
    assert!(cases.len() >= 15, "{} cases", cases.len());
    let mut failures = Vec::new();
    let mut check = |case: &Case, door: &str, status: u16, got: Vec<String>, want: Vec<String>| {
        if status != case.status || got != want {
            failures.push(format!(
                "{} via {door}: want {} at {want:?}, got {status} at {got:?}",
                case.name, case.status
            ));
        }
    };
    for case in &cases {
        let rtype = case.resource["resourceType"].as_str().expect("type");
        let want = sorted(case.expressions.clone());

        let r = app.post(rtype, &case.resource).await;
        check(case, "POST", r.status, expressions(&r.json()), want.clone());

        let mut with_id = case.resource.clone();
        with_id["id"] = json!("val-1");
        let r = app.put(&format!("{rtype}/val-1"), &with_id).await;
        check(case, "PUT", r.status, expressions(&r.json()), want.clone());

        let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Basic", "code": {"text": "ok"}},
             "request": {"method": "POST", "url": "Basic"}},
            {"fullUrl": "urn:uuid:0b6e9d4c-4f0a-4c57-9d1e-2f1b8a0c7d11",
             "resource": case.resource, "request": {"method": "POST", "url": rtype}},
        ]});
        let r = app.post("", &tx).await;
        let prefixed = sorted(
            want.iter()
                .map(|e| format!("Bundle.entry[1].resource.{e}"))
                .collect(),
        );
        check(
            case,
            "transaction",
            r.status,
            expressions(&r.json()),
            prefixed,
        );

        let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
            {"resource": case.resource, "request": {"method": "POST", "url": rtype}},
        ]});
        let r = app.post("", &batch).await;
        let entry = &r.json()["entry"][0]["response"];
        let status = entry["status"]
            .as_str()
            .and_then(|s| s.split(' ').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        check(
            case,
            "batch",
            status,
            expressions(&entry["outcome"]),
            want.clone(),
        );

        let (http, _, v) = rpc(
            &mcp,
            &mcp_url,
            "tools/call",
            json!({"name": "fhir_create", "arguments": {"resource": case.resource}}),
        )
        .await;
        let result = &v["result"];
        let status = if http == 200 && result["isError"] == true {
            case.status
        } else {
            http
        };
        check(
            case,
            "MCP fhir_create",
            status,
            expressions(&result["structuredContent"]),
            want.clone(),
        );
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Nothing was stored: not the cases, not the transaction's valid entry
    // (the app starts with a few seeded resources).
    for (rtype, before) in TYPES.iter().zip(before) {
        let r = app.get(&format!("{rtype}?_total=accurate")).await;
        assert_eq!(r.json()["total"], before, "{rtype}: {}", r.text);
    }
}
both_backends!(invalid_values_are_refused_everywhere);

async fn one_issue_per_problem_with_its_code(backend: Backend) {
    let s = SmartApp::start(backend).await;
    let r = s
        .app
        .post(
            "Patient",
            &json!({"resourceType": "Patient", "gender": "robot", "birthDate": "1990-13-45"}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    let outcome = r.json();
    let issues = outcome["issue"].as_array().expect("issues");
    assert_eq!(issues.len(), 2, "{outcome}");
    let by_path = |p: &str| {
        issues
            .iter()
            .find(|i| i["expression"][0] == p)
            .unwrap_or_else(|| panic!("no issue at {p}: {outcome}"))
    };
    assert_eq!(by_path("Patient.gender")["code"], "code-invalid");
    assert_eq!(by_path("Patient.birthDate")["code"], "value");
    for i in issues {
        assert_eq!(i["severity"], "error");
    }
    // PATCH that would make a resource invalid: 422, with the path.
    let created = s
        .app
        .post(
            "Patient",
            &json!({"resourceType": "Patient", "gender": "male"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.json()["id"].as_str().expect("id").to_string();
    let r = s
        .app
        .send(
            s.app
                .client
                .patch(s.app.url(&format!("Patient/{id}")))
                .header("content-type", "application/json-patch+json")
                .body(r#"[{"op": "replace", "path": "/gender", "value": "robot"}]"#),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(
        r.issue_path().as_deref(),
        Some("Patient.gender"),
        "{}",
        r.text
    );
}
both_backends!(one_issue_per_problem_with_its_code);
