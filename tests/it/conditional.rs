//! Conditional create, update, patch and delete (0/1/many outcomes), in
//! transactions too, and custom SearchParameters after `$reindex`.

use serde_json::json;

use crate::both_backends;
use crate::helpers::{spawn, Backend};

fn patient(mrn: &str, family: &str) -> serde_json::Value {
    json!({"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": mrn}], "name": [{"family": family}]})
}

async fn conditional_interactions(backend: Backend) {
    let app = spawn(backend).await;
    let create = |mrn: &'static str| {
        app.client
            .post(app.url("Patient"))
            .header("content-type", "application/fhir+json")
            .header("if-none-exist", format!("identifier=urn:mrn|{mrn}"))
            .body(patient(mrn, "First").to_string())
    };
    // 0 matches: created; 1 match: 200 with the existing resource, nothing new.
    let first = app.send(create("m1")).await;
    assert_eq!(first.status, 201, "{}", first.text);
    let id = first.json()["id"].as_str().unwrap().to_string();
    let again = app.send(create("m1")).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["id"], id.as_str());
    assert_eq!(
        app.get("Patient?identifier=urn:mrn|m1&_total=accurate")
            .await
            .json()["total"],
        1
    );
    // Several matches: 412.
    app.post("Patient", &patient("dup", "A")).await;
    app.post("Patient", &patient("dup", "B")).await;
    assert_eq!(app.send(create("dup")).await.status, 412);
    // An unknown parameter in the condition is refused rather than ignored.
    let unknown = app
        .send(
            app.client
                .post(app.url("Patient"))
                .header("content-type", "application/fhir+json")
                .header("if-none-exist", "nonsense=1")
                .body(patient("x", "X").to_string()),
        )
        .await;
    assert_eq!(unknown.status, 400);

    // Conditional update: one match updates it; none creates; many 412.
    let upd = app
        .put("Patient?identifier=urn:mrn|m1", &patient("m1", "Second"))
        .await;
    assert_eq!(upd.status, 200, "{}", upd.text);
    assert_eq!(upd.json()["id"], id.as_str());
    assert_eq!(upd.header("etag").as_deref(), Some("W/\"2\""));
    let new = app
        .put("Patient?identifier=urn:mrn|m2", &patient("m2", "New"))
        .await;
    assert_eq!(new.status, 201);
    assert_eq!(
        app.put("Patient?identifier=urn:mrn|dup", &patient("dup", "C"))
            .await
            .status,
        412
    );
    // The body id must not contradict the match.
    let mut wrong = patient("m1", "Wrong");
    wrong["id"] = json!("someone-else");
    assert_eq!(
        app.put("Patient?identifier=urn:mrn|m1", &wrong)
            .await
            .status,
        400
    );

    // Conditional patch.
    let patched = app
        .send(
            app.client
                .patch(app.url("Patient?identifier=urn:mrn|m1"))
                .header("content-type", "application/json-patch+json")
                .body(json!([{"op": "add", "path": "/gender", "value": "other"}]).to_string()),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert_eq!(patched.json()["gender"], "other");
    let none = app
        .send(
            app.client
                .patch(app.url("Patient?identifier=urn:mrn|nobody"))
                .header("content-type", "application/json-patch+json")
                .body(json!([{"op": "add", "path": "/gender", "value": "other"}]).to_string()),
        )
        .await;
    assert_eq!(none.status, 404);

    // Conditional delete: one match deleted; none is fine; many 412.
    assert_eq!(
        app.delete("Patient?identifier=urn:mrn|m2").await.status,
        204
    );
    assert_eq!(
        app.get("Patient?identifier=urn:mrn|m2&_total=accurate")
            .await
            .json()["total"],
        0
    );
    assert_eq!(
        app.delete("Patient?identifier=urn:mrn|m2").await.status,
        204
    );
    assert_eq!(
        app.delete("Patient?identifier=urn:mrn|dup").await.status,
        412
    );
}
both_backends!(conditional_interactions);

async fn conditional_entries_in_a_transaction(backend: Backend) {
    let app = spawn(backend).await;
    app.put(
        "Patient/known",
        &json!({"resourceType": "Patient", "id": "known",
        "identifier": [{"system": "urn:mrn", "value": "k1"}]}),
    )
    .await;
    let bundle = json!({
        "resourceType": "Bundle", "type": "transaction",
        "entry": [
            // Exists already: no new Patient, and the fullUrl maps to it.
            {"fullUrl": "urn:uuid:5e0e7c1a-1111-4d3c-9a7e-000000000001",
             "resource": {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "k1"}]},
             "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=urn:mrn|k1"}},
            {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "hr"},
                          "subject": {"reference": "urn:uuid:5e0e7c1a-1111-4d3c-9a7e-000000000001"}},
             "request": {"method": "POST", "url": "Observation"}},
            // A conditional reference resolves to the one match.
            {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "rr"},
                          "subject": {"reference": "Patient?identifier=urn:mrn|k1"}},
             "request": {"method": "POST", "url": "Observation"}},
            {"resource": {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "k2"}]},
             "request": {"method": "PUT", "url": "Patient?identifier=urn:mrn|k2"}}
        ]
    });
    let r = app.post("", &bundle).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let e = r.json()["entry"].as_array().unwrap().clone();
    assert_eq!(e[0]["response"]["status"], "200");
    assert_eq!(e[1]["resource"]["subject"]["reference"], "Patient/known");
    assert_eq!(e[2]["resource"]["subject"]["reference"], "Patient/known");
    assert_eq!(e[3]["response"]["status"], "201");
    assert_eq!(
        app.get("Patient?identifier=urn:mrn|k1&_total=accurate")
            .await
            .json()["total"],
        1
    );
    // A conditional reference that matches nothing fails the transaction.
    let bad = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                      "subject": {"reference": "Patient?identifier=urn:mrn|none"}},
         "request": {"method": "POST", "url": "Observation"}}]});
    assert_eq!(app.post("", &bad).await.status, 412);
}
both_backends!(conditional_entries_in_a_transaction);

async fn custom_search_parameter_after_reindex(backend: Backend) {
    let app = spawn(backend).await;
    app.put(
        "Patient/p1",
        &json!({"resourceType": "Patient", "id": "p1",
        "extension": [{"url": "http://example.org/eye-colour", "valueString": "green"}]}),
    )
    .await;
    let sp = json!({
        "resourceType": "SearchParameter", "id": "eye-colour", "url": "http://example.org/SearchParameter/eye-colour",
        "name": "eye-colour", "status": "active", "description": "Eye colour", "code": "eye-colour",
        "base": ["Patient"], "type": "string",
        "expression": "Patient.extension('http://example.org/eye-colour').value"
    });
    assert_eq!(app.put("SearchParameter/eye-colour", &sp).await.status, 201);
    // Before the reindex the parameter is unknown (ignored and reported).
    let before = app.get("Patient?eye-colour=green").await.json();
    assert_eq!(
        before["entry"].as_array().unwrap().last().unwrap()["search"]["mode"],
        "outcome"
    );
    let reindex = app.send(app.client.post(app.url("$reindex"))).await;
    assert_eq!(reindex.status, 200, "{}", reindex.text);
    assert_eq!(reindex.json()["parameter"][0]["valueInteger"], 1);
    let after = app.get("Patient?eye-colour=gre").await.json();
    assert_eq!(after["entry"].as_array().unwrap().len(), 1, "{after}");
    assert_eq!(after["entry"][0]["resource"]["id"], "p1");
    // New writes are indexed with it too.
    app.put(
        "Patient/p2",
        &json!({"resourceType": "Patient", "id": "p2",
        "extension": [{"url": "http://example.org/eye-colour", "valueString": "grey"}]}),
    )
    .await;
    let both = app
        .get("Patient?eye-colour=gr&_total=accurate")
        .await
        .json();
    assert_eq!(both["total"], 2);
}
both_backends!(custom_search_parameter_after_reindex);
