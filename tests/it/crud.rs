//! read, vread, create, update, patch, delete, version headers and Prefer.

use serde_json::json;

use crate::both_backends;
use crate::helpers::{spawn, Backend};

async fn create_read_update_delete(backend: Backend) {
    let app = spawn(backend).await;
    let created = app
        .post(
            "Patient",
            &json!({"resourceType": "Patient", "id": "ignored", "active": true}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let body = created.json();
    let id = body["id"].as_str().unwrap().to_string();
    assert_ne!(id, "ignored", "server assigns ids on create");
    assert_eq!(body["meta"]["versionId"], "1");
    assert_eq!(created.header("etag").as_deref(), Some("W/\"1\""));
    assert!(created.header("last-modified").is_some());
    let location = created.header("location").unwrap();
    assert!(
        location.ends_with(&format!("/Patient/{id}/_history/1")),
        "{location}"
    );

    let read = app.get(&format!("Patient/{id}")).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.json()["active"], true);
    assert_eq!(read.header("etag").as_deref(), Some("W/\"1\""));

    // Update with the right If-Match.
    let upd = app
        .send(
            app.client
                .put(app.url(&format!("Patient/{id}")))
                .header("content-type", "application/fhir+json")
                .header("if-match", "W/\"1\"")
                .body(json!({"resourceType": "Patient", "id": id, "active": false}).to_string()),
        )
        .await;
    assert_eq!(upd.status, 200, "{}", upd.text);
    assert_eq!(upd.json()["meta"]["versionId"], "2");
    // A stale If-Match is refused.
    let stale = app
        .send(
            app.client
                .put(app.url(&format!("Patient/{id}")))
                .header("content-type", "application/fhir+json")
                .header("if-match", "W/\"1\"")
                .body(json!({"resourceType": "Patient", "id": id, "active": true}).to_string()),
        )
        .await;
    assert_eq!(stale.status, 412);
    assert_eq!(stale.json()["resourceType"], "OperationOutcome");

    // vread both versions.
    assert_eq!(
        app.get(&format!("Patient/{id}/_history/1")).await.json()["active"],
        true
    );
    assert_eq!(
        app.get(&format!("Patient/{id}/_history/2")).await.json()["active"],
        false
    );
    assert_eq!(
        app.get(&format!("Patient/{id}/_history/3")).await.status,
        404
    );
    assert_eq!(
        app.get(&format!("Patient/{id}/_history/x")).await.status,
        404
    );

    // An update that changes nothing keeps the version.
    let same = app
        .put(
            &format!("Patient/{id}"),
            &json!({"resourceType": "Patient", "id": id, "active": false}),
        )
        .await;
    assert_eq!(same.status, 200);
    assert_eq!(same.header("etag").as_deref(), Some("W/\"2\""));

    // Delete: a versioned tombstone, then 410.
    let del = app.delete(&format!("Patient/{id}")).await;
    assert_eq!(del.status, 204);
    assert_eq!(del.header("etag").as_deref(), Some("W/\"3\""));
    let gone = app.get(&format!("Patient/{id}")).await;
    assert_eq!(gone.status, 410);
    assert_eq!(gone.json()["issue"][0]["code"], "deleted");
    assert_eq!(
        app.get(&format!("Patient/{id}/_history/3")).await.status,
        410
    );
    assert_eq!(
        app.get(&format!("Patient/{id}/_history/2")).await.status,
        200
    );
    // Deleting again is idempotent; deleting the unknown is 404.
    assert_eq!(app.delete(&format!("Patient/{id}")).await.status, 204);
    assert_eq!(app.delete("Patient/never-was").await.status, 404);
    // Re-creating by PUT after delete makes version 4.
    let again = app
        .put(
            &format!("Patient/{id}"),
            &json!({"resourceType": "Patient", "id": id}),
        )
        .await;
    assert_eq!(again.status, 201);
    assert_eq!(again.header("etag").as_deref(), Some("W/\"4\""));
}
both_backends!(create_read_update_delete);

async fn update_creates_with_client_id(backend: Backend) {
    let app = spawn(backend).await;
    let r = app
        .put(
            "Observation/bp-1",
            &json!({"resourceType": "Observation", "id": "bp-1",
        "status": "final", "code": {"text": "bp"}}),
        )
        .await;
    assert_eq!(r.status, 201);
    assert!(r
        .header("location")
        .unwrap()
        .ends_with("/Observation/bp-1/_history/1"));
    // Body id must match the URL.
    let bad = app
        .put(
            "Observation/bp-2",
            &json!({"resourceType": "Observation", "id": "bp-1",
        "status": "final", "code": {"text": "bp"}}),
        )
        .await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.issue_path().as_deref(), Some("Observation.id"));
    // Type must match the URL.
    let wrong = app
        .put(
            "Patient/bp-1",
            &json!({"resourceType": "Observation", "id": "bp-1",
        "status": "final", "code": {"text": "bp"}}),
        )
        .await;
    assert_eq!(wrong.status, 400);
    // If-Match on a missing resource.
    let missing = app
        .send(
            app.client
                .put(app.url("Patient/none"))
                .header("if-match", "W/\"1\"")
                .header("content-type", "application/fhir+json")
                .body(json!({"resourceType": "Patient", "id": "none"}).to_string()),
        )
        .await;
    assert_eq!(missing.status, 412);
}
both_backends!(update_creates_with_client_id);

async fn json_patch(backend: Backend) {
    let app = spawn(backend).await;
    app.put(
        "Patient/p1",
        &json!({"resourceType": "Patient", "id": "p1", "active": true,
        "name": [{"family": "Old"}]}),
    )
    .await;
    let patch = json!([
        {"op": "replace", "path": "/name/0/family", "value": "New"},
        {"op": "add", "path": "/gender", "value": "female"}
    ]);
    let r = app
        .send(
            app.client
                .patch(app.url("Patient/p1"))
                .header("content-type", "application/json-patch+json")
                .header("if-match", "W/\"1\"")
                .body(patch.to_string()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(v["name"][0]["family"], "New");
    assert_eq!(v["gender"], "female");
    assert_eq!(v["meta"]["versionId"], "2");
    // A patch that makes the resource invalid is refused and changes nothing.
    let bad = app
        .send(
            app.client
                .patch(app.url("Patient/p1"))
                .header("content-type", "application/json-patch+json")
                .body(json!([{"op": "add", "path": "/nonsense", "value": 1}]).to_string()),
        )
        .await;
    assert_eq!(bad.status, 422, "{}", bad.text);
    assert_eq!(bad.issue_path().as_deref(), Some("Patient.nonsense"));
    // Changing the id is refused; a failing test op is refused.
    let id = app
        .send(
            app.client
                .patch(app.url("Patient/p1"))
                .header("content-type", "application/json-patch+json")
                .body(json!([{"op": "replace", "path": "/id", "value": "p2"}]).to_string()),
        )
        .await;
    assert_eq!(id.status, 422);
    let test_op = app
        .send(
            app.client
                .patch(app.url("Patient/p1"))
                .header("content-type", "application/json-patch+json")
                .body(json!([{"op": "test", "path": "/gender", "value": "male"}]).to_string()),
        )
        .await;
    assert_eq!(test_op.status, 422);
    // Wrong content type.
    let ct = app
        .send(
            app.client
                .patch(app.url("Patient/p1"))
                .header("content-type", "application/fhir+json")
                .body("[]"),
        )
        .await;
    assert_eq!(ct.status, 415);
    assert_eq!(app.get("Patient/p1").await.json()["meta"]["versionId"], "2");
}
both_backends!(json_patch);

async fn prefer_return(backend: Backend) {
    let app = spawn(backend).await;
    let body = json!({"resourceType": "Patient", "active": true}).to_string();
    let minimal = app
        .send(
            app.client
                .post(app.url("Patient"))
                .header("content-type", "application/fhir+json")
                .header("prefer", "return=minimal")
                .body(body.clone()),
        )
        .await;
    assert_eq!(minimal.status, 201);
    assert!(minimal.text.is_empty());
    assert!(minimal.header("location").is_some());
    let oo = app
        .send(
            app.client
                .post(app.url("Patient"))
                .header("content-type", "application/fhir+json")
                .header("prefer", "return=OperationOutcome")
                .body(body.clone()),
        )
        .await;
    assert_eq!(oo.status, 201);
    assert_eq!(oo.json()["resourceType"], "OperationOutcome");
    let rep = app
        .send(
            app.client
                .post(app.url("Patient"))
                .header("content-type", "application/fhir+json")
                .header("prefer", "return=representation")
                .body(body),
        )
        .await;
    assert_eq!(rep.json()["resourceType"], "Patient");
}
both_backends!(prefer_return);

async fn xml_in_and_out(backend: Backend) {
    let app = spawn(backend).await;
    let xml = r#"<Patient xmlns="http://hl7.org/fhir"><id value="x1"/><active value="true"/><name><family value="Durand"/></name></Patient>"#;
    let r = app
        .send(
            app.client
                .put(app.url("Patient/x1"))
                .header("content-type", "application/fhir+xml")
                .body(xml),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let json = app.get("Patient/x1").await.json();
    assert_eq!(json["name"][0]["family"], "Durand");
    let as_xml = app.get("Patient/x1?_format=xml").await;
    assert!(
        as_xml.text.contains("<family value=\"Durand\"/>"),
        "{}",
        as_xml.text
    );
    let pretty = app.get("Patient/x1?_pretty=true").await;
    assert!(
        pretty.text.contains("\n  \"resourceType\""),
        "{}",
        pretty.text
    );
    // Malformed XML gives a 400 OperationOutcome.
    let bad = app
        .send(
            app.client
                .post(app.url("Patient"))
                .header("content-type", "application/fhir+xml")
                .body("<Patient"),
        )
        .await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["resourceType"], "OperationOutcome");
    // Errors follow the requested format too.
    let err_xml = app.get("Patient/nope?_format=xml").await;
    assert_eq!(err_xml.status, 404);
    assert!(
        err_xml.text.contains("<OperationOutcome"),
        "{}",
        err_xml.text
    );
}
both_backends!(xml_in_and_out);
