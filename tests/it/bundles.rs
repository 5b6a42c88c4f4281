//! Transaction and batch Bundles.

use serde_json::json;

use crate::both_backends;
use crate::helpers::{spawn, Backend};

async fn transaction_rewrites_urn_uuid_and_orders(backend: Backend) {
    let app = spawn(backend).await;
    app.put(
        "Patient/old",
        &json!({"resourceType": "Patient", "id": "old"}),
    )
    .await;
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a",
             "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "hr"},
                          "subject": {"reference": "urn:uuid:88f151c0-a954-468a-88b9-ad4a4c6f8fbb"}},
             "request": {"method": "POST", "url": "Observation"}},
            {"fullUrl": "urn:uuid:88f151c0-a954-468a-88b9-ad4a4c6f8fbb",
             "resource": {"resourceType": "Patient", "active": true},
             "request": {"method": "POST", "url": "Patient"}},
            {"resource": {"resourceType": "Patient", "id": "put-1"},
             "request": {"method": "PUT", "url": "Patient/put-1"}},
            {"request": {"method": "GET", "url": "Patient/put-1"}},
            {"request": {"method": "DELETE", "url": "Patient/old"}}
        ]
    });
    let r = app.post("", &bundle).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let resp = r.json();
    assert_eq!(resp["type"], "transaction-response");
    let entries = resp["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 5);
    assert_eq!(entries[0]["response"]["status"], "201");
    assert_eq!(entries[1]["response"]["status"], "201");
    assert_eq!(entries[2]["response"]["status"], "201");
    assert_eq!(entries[3]["response"]["status"], "200");
    assert_eq!(
        entries[3]["resource"]["id"], "put-1",
        "GET runs after the writes"
    );
    assert_eq!(entries[4]["response"]["status"], "204");
    let patient_loc = entries[1]["response"]["location"].as_str().unwrap();
    let patient_id = patient_loc.split('/').nth(1).unwrap();
    let obs = &entries[0]["resource"];
    assert_eq!(obs["subject"]["reference"], format!("Patient/{patient_id}"));
    assert_eq!(app.get("Patient/old").await.status, 410);
}
both_backends!(transaction_rewrites_urn_uuid_and_orders);

async fn transaction_is_all_or_nothing(backend: Backend) {
    let app = spawn(backend).await;
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": {"resourceType": "Patient", "id": "a"}, "request": {"method": "PUT", "url": "Patient/a"}},
            {"resource": {"resourceType": "Patient", "id": "b"}, "request": {"method": "PUT", "url": "Patient/b"}},
            // Fails at write time (If-Match on a resource that does not exist).
            {"resource": {"resourceType": "Patient", "id": "c"},
             "request": {"method": "PUT", "url": "Patient/c", "ifMatch": "W/\"4\""}}
        ]
    });
    let r = app.post("", &bundle).await;
    assert_eq!(r.status, 412, "{}", r.text);
    assert_eq!(r.json()["resourceType"], "OperationOutcome");
    assert_eq!(
        r.issue_path().as_deref(),
        Some("Bundle.entry[2]"),
        "the failing entry is named by its position in the request"
    );
    assert_eq!(
        app.get("Patient/a").await.status,
        404,
        "nothing of a failed transaction is stored"
    );
    assert_eq!(app.get("Patient/b").await.status, 404);
    // An invalid resource fails the whole transaction before any write, naming the entry.
    let invalid = json!({
        "resourceType": "Bundle", "type": "transaction",
        "entry": [
            {"resource": {"resourceType": "Patient", "id": "a"}, "request": {"method": "PUT", "url": "Patient/a"}},
            {"resource": {"resourceType": "Patient", "bogus": 1}, "request": {"method": "POST", "url": "Patient"}}
        ]
    });
    let r = app.post("", &invalid).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.issue_path().as_deref(),
        Some("Bundle.entry[1].resource.Patient.bogus")
    );
    assert_eq!(app.get("Patient/a").await.status, 404);
    // Two writes to one resource are refused.
    let twice = json!({
        "resourceType": "Bundle", "type": "transaction",
        "entry": [
            {"resource": {"resourceType": "Patient", "id": "a"}, "request": {"method": "PUT", "url": "Patient/a"}},
            {"request": {"method": "DELETE", "url": "Patient/a"}}
        ]
    });
    assert_eq!(app.post("", &twice).await.status, 400);
}
both_backends!(transaction_is_all_or_nothing);

/// Creates and updates of a transaction are written together: each entry
/// still gets its own status and version, unchanged updates keep their
/// version, and the index rows of every entry are stored.
async fn transaction_writes_many_resources_at_once(backend: Backend) {
    let app = spawn(backend).await;
    let kept = json!({"resourceType": "Patient", "id": "kept", "active": true});
    app.put("Patient/kept", &kept).await;
    app.put(
        "Patient/changed",
        &json!({"resourceType": "Patient", "id": "changed", "active": true}),
    )
    .await;
    let mut entry = vec![
        json!({"resource": kept, "request": {"method": "PUT", "url": "Patient/kept"}}),
        json!({"resource": {"resourceType": "Patient", "id": "changed", "active": false},
               "request": {"method": "PUT", "url": "Patient/changed", "ifMatch": "W/\"1\""}}),
        json!({"resource": {"resourceType": "Patient", "id": "fresh"},
               "request": {"method": "PUT", "url": "Patient/fresh"}}),
    ];
    for i in 0..20 {
        entry.push(json!({
            "resource": {"resourceType": "Observation", "status": "final",
                         "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                         "subject": {"reference": "Patient/changed"},
                         "valueQuantity": {"value": i}},
            "request": {"method": "POST", "url": "Observation"}}));
    }
    let r = app
        .post(
            "",
            &json!({"resourceType": "Bundle", "type": "transaction", "entry": entry}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let resp = r.json();
    let entries = resp["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 23);
    let status = |i: usize| {
        entries[i]["response"]["status"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let etag = |i: usize| entries[i]["response"]["etag"].as_str().unwrap().to_string();
    assert_eq!(
        (status(0), etag(0)),
        ("200".into(), "W/\"1\"".into()),
        "unchanged"
    );
    assert_eq!(
        (status(1), etag(1)),
        ("200".into(), "W/\"2\"".into()),
        "updated"
    );
    assert_eq!(
        (status(2), etag(2)),
        ("201".into(), "W/\"1\"".into()),
        "created by PUT"
    );
    assert!((3..23).all(|i| status(i) == "201"));
    assert_eq!(app.get("Patient/changed").await.json()["active"], false);
    assert_eq!(
        app.get("Patient/kept/_history").await.json()["entry"]
            .as_array()
            .map(Vec::len),
        Some(1),
        "an unchanged update stores no version"
    );
    let found = app
        .get("Observation?subject=Patient/changed&code=http://loinc.org|8867-4&_summary=count")
        .await;
    assert_eq!(found.json()["total"], 20, "{}", found.text);
}
both_backends!(transaction_writes_many_resources_at_once);

async fn batch_reports_each_entry(backend: Backend) {
    let app = spawn(backend).await;
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": {"resourceType": "Patient", "id": "ok"}, "request": {"method": "PUT", "url": "Patient/ok"}},
            {"resource": {"resourceType": "Patient", "bad": true}, "request": {"method": "POST", "url": "Patient"}},
            {"request": {"method": "GET", "url": "Patient/missing"}},
            {"request": {"method": "GET", "url": "Patient/ok"}},
            {"resource": {"resourceType": "Binary", "contentType": "application/json-patch+json",
                          "data": "W3sib3AiOiJhZGQiLCJwYXRoIjoiL2FjdGl2ZSIsInZhbHVlIjp0cnVlfV0="},
             "request": {"method": "PATCH", "url": "Patient/ok"}}
        ]
    });
    let r = app.post("", &bundle).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let resp = r.json();
    assert_eq!(resp["type"], "batch-response");
    let e = resp["entry"].as_array().unwrap();
    assert_eq!(e[0]["response"]["status"], "201");
    assert_eq!(e[1]["response"]["status"], "400");
    assert_eq!(
        e[1]["response"]["outcome"]["resourceType"],
        "OperationOutcome"
    );
    assert_eq!(e[2]["response"]["status"], "404");
    assert_eq!(e[3]["response"]["status"], "200");
    assert_eq!(e[4]["response"]["status"], "200");
    assert_eq!(app.get("Patient/ok").await.json()["active"], true);
}
both_backends!(batch_reports_each_entry);

async fn bundle_limits_and_shape(backend: Backend) {
    let app = crate::helpers::spawn_with(backend, |s| s.limits.max_bundle_entries = 3).await;
    let entry = json!({"request": {"method": "GET", "url": "Patient/x"}});
    let big =
        json!({"resourceType": "Bundle", "type": "batch", "entry": [entry, entry, entry, entry]});
    let r = app.post("", &big).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["resourceType"], "OperationOutcome");
    let collection = json!({"resourceType": "Bundle", "type": "collection"});
    assert_eq!(app.post("", &collection).await.status, 400);
    let not_bundle = json!({"resourceType": "Patient"});
    assert_eq!(app.post("", &not_bundle).await.status, 400);
}
both_backends!(bundle_limits_and_shape);
