//! Every error is an OperationOutcome with the right status; limits; health; request ids.

use serde_json::json;

use crate::both_backends;
use crate::helpers::{spawn, spawn_with, Backend};

async fn errors_are_operation_outcomes(backend: Backend) {
    let app = spawn(backend).await;
    let cases: Vec<(reqwest::RequestBuilder, u16)> = vec![
        (app.client.get(format!("{}/../nowhere", app.base)), 404),
        (app.client.get(app.url("Unknown/1")), 404),
        (app.client.get(app.url("Patient/1/2/3/4/5")), 404),
        (app.client.delete(app.url("metadata")), 405),
        (app.client.post(app.url("Patient/1")), 405),
        (app.client.get(app.url("Patient/bad%20id")), 400),
        (
            app.client
                .post(app.url("Patient"))
                .header("content-type", "text/plain")
                .body("x"),
            415,
        ),
        (
            app.client
                .post(app.url("Patient"))
                .header("content-type", "application/fhir+json")
                .body("{oops"),
            400,
        ),
        (
            app.client
                .post(app.url("Patient"))
                .header("content-type", "application/fhir+json"),
            400,
        ),
        (app.client.get(app.url("Patient?_count=abc")), 400),
        (app.client.get(app.url("Patient?_count=5000")), 400),
        (
            app.client
                .put(app.url("Patient?identifier=x"))
                .header("content-type", "application/fhir+json")
                .body("{}"),
            400,
        ),
    ];
    for (req, status) in cases {
        let r = app.send(req).await;
        assert_eq!(r.status, status, "{}", r.text);
        let v = r.json();
        assert_eq!(v["resourceType"], "OperationOutcome", "{}", r.text);
        assert!(
            !r.text.contains("sqlx") && !r.text.contains("SELECT") && !r.text.contains("/src/"),
            "{}",
            r.text
        );
    }
    let r = app
        .send(app.client.post(app.base.replace("/fhir", "/health/live")))
        .await;
    assert_eq!(r.status, 405);
    assert_eq!(r.json()["resourceType"], "OperationOutcome");
    // The outside-/fhir fallback is an OperationOutcome too.
    let r = app
        .send(app.client.get(app.base.replace("/fhir", "/nope")))
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["resourceType"], "OperationOutcome");
}
both_backends!(errors_are_operation_outcomes);

async fn body_limit_is_413(backend: Backend) {
    let app = spawn_with(backend, |s| s.limits.max_body_bytes = 4096).await;
    let big = json!({"resourceType": "Patient", "name": [{"text": "x".repeat(5000)}]});
    let r = app.post("Patient", &big).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["resourceType"], "OperationOutcome");
    assert_eq!(app.get("Patient?_total=accurate").await.json()["total"], 0);
}
both_backends!(body_limit_is_413);

async fn health_metadata_and_request_ids(backend: Backend) {
    let app = spawn(backend).await;
    let root = app.base.trim_end_matches("/fhir").to_string();
    assert_eq!(
        app.send(app.client.get(format!("{root}/health/live")))
            .await
            .status,
        200
    );
    let ready = app
        .send(app.client.get(format!("{root}/health/ready")))
        .await;
    assert_eq!(ready.status, 200, "{}", ready.text);
    let r = app
        .send(
            app.client
                .get(app.url("metadata"))
                .header("x-request-id", "req-123"),
        )
        .await;
    assert_eq!(r.header("x-request-id").as_deref(), Some("req-123"));
    let cs = r.json();
    assert_eq!(cs["resourceType"], "CapabilityStatement");
    assert_eq!(cs["fhirVersion"], "4.0.1");
    let rest = &cs["rest"][0];
    let patient = rest["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Patient")
        .unwrap();
    let interactions: Vec<&str> = patient["interaction"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["code"].as_str().unwrap())
        .collect();
    for i in [
        "read",
        "vread",
        "update",
        "patch",
        "delete",
        "history-instance",
        "history-type",
        "create",
        "search-type",
    ] {
        assert!(interactions.contains(&i), "{i}");
    }
    assert_eq!(patient["conditionalCreate"], true);
    let params: Vec<&str> = patient["searchParam"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for p in [
        "_id",
        "_lastUpdated",
        "name",
        "birthdate",
        "identifier",
        "gender",
    ] {
        assert!(params.contains(&p), "{p}");
    }
    // A generated id when none is sent.
    let r = app.get("metadata").await;
    assert!(r.header("x-request-id").is_some_and(|v| v.len() >= 32));
}
both_backends!(health_metadata_and_request_ids);

async fn basic_search_and_paging(backend: Backend) {
    let app = spawn(backend).await;
    for i in 0..5 {
        app.put(
            &format!("Patient/s{i}"),
            &json!({"resourceType": "Patient", "id": format!("s{i}")}),
        )
        .await;
    }
    let all = app.get("Patient?_total=accurate&_count=2").await.json();
    assert_eq!(all["type"], "searchset");
    assert_eq!(all["total"], 5);
    assert_eq!(all["entry"].as_array().unwrap().len(), 2);
    let next = all["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "next")
        .unwrap()["url"]
        .as_str()
        .unwrap()
        .to_string();
    // A resource inserted while paging does not disturb the pages already served.
    app.put(
        "Patient/s9",
        &json!({"resourceType": "Patient", "id": "s9"}),
    )
    .await;
    let page2 = app.send(app.client.get(next)).await.json();
    assert_eq!(page2["entry"][0]["resource"]["id"], "s2");
    let by_id = app.get("Patient?_id=s1,s3").await.json();
    assert_eq!(by_id["entry"].as_array().unwrap().len(), 2);
    // Unknown parameters are reported, or refused under handling=strict.
    let lenient = app.get("Patient?nonsense=x").await.json();
    let last = lenient["entry"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["search"]["mode"], "outcome");
    let strict = app
        .send(
            app.client
                .get(app.url("Patient?nonsense=x"))
                .header("prefer", "handling=strict"),
        )
        .await;
    assert_eq!(strict.status, 400);
}
both_backends!(basic_search_and_paging);

async fn metrics_count_requests(backend: Backend) {
    let app = spawn(backend).await;
    let root = app.base.trim_end_matches("/fhir").to_string();
    // A request with a resource type nobody else in the suite reads.
    app.get("ImmunizationRecommendation/metrics-probe").await;
    let text = app
        .send(app.client.get(format!("{root}/metrics")))
        .await
        .text;
    // Prometheus text: HELP/TYPE lines and `name{labels} value` samples.
    assert!(
        text.contains("# TYPE vesta_fhir_requests_total counter"),
        "{text}"
    );
    let sample = text
        .lines()
        .find(|l| {
            l.starts_with("vesta_fhir_requests_total{")
                && l.contains("resource_type=\"ImmunizationRecommendation\"")
        })
        .unwrap_or_else(|| panic!("no sample for the request: {text}"));
    assert!(
        sample.contains("interaction=\"read\"") && sample.contains("status=\"404\""),
        "{sample}"
    );
    let value: f64 = sample.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(value >= 1.0);
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (_, v) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("malformed sample line: {line}"));
        assert!(v.parse::<f64>().is_ok(), "malformed value in: {line}");
        assert!(
            !line.contains("metrics-probe"),
            "ids never appear in labels: {line}"
        );
    }
    assert!(text.contains("vesta_db_pool_connections"), "{text}");
}
both_backends!(metrics_count_requests);

/// A `_format` or `Accept` naming nothing Vesta can produce is 406 (a body
/// of an unknown media type stays 415), answered as an OperationOutcome.
async fn unknown_formats_are_406(backend: Backend) {
    let app = spawn(backend).await;
    let get = |q: &str, accept: Option<&str>| {
        let mut b = app.client.get(app.url(q));
        if let Some(a) = accept {
            b = b.header("accept", a);
        }
        b
    };
    for (q, accept, status) in [
        ("metadata", Some("text/turtle"), 406),
        ("Patient?_format=text/turtle", None, 406),
        ("Patient", Some("text/turtle, image/png"), 406),
        ("Patient?_format=json", Some("text/turtle"), 200),
        ("Patient", Some("text/turtle, */*;q=0.1"), 200),
        ("Patient", Some("application/fhir+xml"), 200),
        ("Patient", None, 200),
    ] {
        let r = app.send(get(q, accept)).await;
        assert_eq!(r.status, status, "{q} {accept:?}: {}", r.text);
        if status == 406 {
            assert_eq!(r.json()["resourceType"], "OperationOutcome", "{}", r.text);
        }
    }
    let r = app
        .send(
            app.client
                .post(app.url("Patient"))
                .header("content-type", "text/turtle")
                .body("<a> <b> <c> ."),
        )
        .await;
    assert_eq!(r.status, 415, "{}", r.text);
}
both_backends!(unknown_formats_are_406);
