//! Data cases under `tests/data/resources`: valid resources round-trip
//! unchanged (JSON→store→JSON and JSON→XML→JSON), invalid ones are refused
//! with the expected status and element path.

use serde_json::Value;

use crate::both_backends;
use crate::helpers::{data_dir, spawn, without_version_meta, Backend};

fn read_cases(folder: &str, ext: &str) -> Vec<(String, String)> {
    let dir = data_dir().join("resources").join(folder);
    let mut cases: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("corpus folder")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some(ext))
        .map(|p| {
            let name = p
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            (name, std::fs::read_to_string(&p).expect("read case"))
        })
        .collect();
    cases.sort();
    cases
}

async fn valid_resources_round_trip(backend: Backend) {
    let app = spawn(backend).await;
    let cases = read_cases("valid", "json");
    assert!(cases.len() >= 40, "corpus has {} resources", cases.len());
    let types: std::collections::HashSet<String> = cases
        .iter()
        .map(|(_, text)| {
            serde_json::from_str::<Value>(text).unwrap()["resourceType"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(types.len() >= 25, "corpus has {} types", types.len());
    let mut failures = Vec::new();
    for (name, text) in &cases {
        let original: Value = serde_json::from_str(text).expect("case is JSON");
        let path = format!(
            "{}/{}",
            original["resourceType"].as_str().unwrap(),
            original["id"].as_str().unwrap()
        );
        let put = app.put(&path, &original).await;
        if original["resourceType"] == "AuditEvent" {
            // Only the server writes AuditEvents (its own are checked as R4
            // in src/audit/event.rs); a client's PUT is refused.
            if put.status != 405 {
                failures.push(format!("{name}: PUT of an AuditEvent gave {}", put.status));
            }
            continue;
        }
        if put.status != 201 {
            failures.push(format!("{name}: PUT gave {}: {}", put.status, put.text));
            continue;
        }
        // JSON → store → JSON
        let read = app.get(&path).await;
        let stored = without_version_meta(read.json());
        if stored != without_version_meta(original.clone()) {
            failures.push(format!("{name}: JSON read differs: {}", read.text));
        }
        // (Numbers compare by their text, so 98.60 ≠ 98.6: decimal precision is checked too.)
        // JSON → XML → JSON: the XML form, sent back, is the same resource
        // (the server sees no change and keeps version 1).
        let xml = app
            .send(
                app.client
                    .get(app.url(&path))
                    .header("accept", "application/fhir+xml"),
            )
            .await;
        assert_eq!(xml.status, 200, "{name}");
        assert!(xml
            .header("content-type")
            .unwrap_or_default()
            .starts_with("application/fhir+xml"));
        let back = app
            .send(
                app.client
                    .put(app.url(&path))
                    .header("content-type", "application/fhir+xml")
                    .body(xml.text.clone()),
            )
            .await;
        if back.status != 200 || back.header("etag").as_deref() != Some("W/\"1\"") {
            failures.push(format!(
                "{name}: XML round trip changed the resource: {} {}",
                back.status, back.text
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
both_backends!(valid_resources_round_trip);

async fn invalid_resources_are_rejected_with_path(backend: Backend) {
    let app = spawn(backend).await;
    let cases = read_cases("invalid", "json");
    assert!(cases.len() >= 12);
    let mut failures = Vec::new();
    for (name, body) in &cases {
        let expect = std::fs::read_to_string(
            data_dir()
                .join("resources/invalid")
                .join(format!("{name}.expect")),
        )
        .expect("expect file");
        let field = |key: &str| {
            expect
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{key}: ")))
                .map(str::trim)
                .unwrap_or_else(|| panic!("{name}.expect lacks {key}"))
                .to_string()
        };
        let status: u16 = field("status").parse().expect("status");
        let path = field("path");
        // Create at the type named in the body when there is one, else at Patient.
        let target = serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|v| {
                v.get("resourceType")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .filter(|t| vesta::fhir::ResourceType::parse(t).is_some())
            .unwrap_or_else(|| "Patient".into());
        let r = app
            .send(
                app.client
                    .post(app.url(&target))
                    .header("content-type", "application/fhir+json")
                    .body(body.clone()),
            )
            .await;
        let got_path = if r.status >= 400 {
            r.issue_path()
        } else {
            None
        };
        if r.status != status || got_path.as_deref() != Some(path.as_str()) {
            failures.push(format!(
                "{name}: want {status} at {path}, got {} at {:?}: {}",
                r.status, got_path, r.text
            ));
        }
        assert_eq!(r.json()["resourceType"], "OperationOutcome", "{name}");
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Nothing was stored by any of them.
    let all = app.get("Patient?_total=accurate").await.json();
    assert_eq!(all["total"], 0);
}
both_backends!(invalid_resources_are_rejected_with_path);
