//! Concurrent writers never lose a write: of 50 updates racing with the same
//! If-Match, exactly one wins and the rest get 412.

use serde_json::json;

use crate::both_backends;
use crate::helpers::{spawn, Backend};

/// Concurrent updates per round.
const WRITERS: usize = 50;

async fn concurrent_if_match_updates(backend: Backend) {
    let app = spawn(backend).await;
    app.put(
        "Patient/race",
        &json!({"resourceType": "Patient", "id": "race"}),
    )
    .await;
    for round in 1..=2i64 {
        let mut tasks = Vec::new();
        for i in 0..WRITERS {
            let client = app.client.clone();
            let url = app.url("Patient/race");
            let body = json!({"resourceType": "Patient", "id": "race",
                "name": [{"text": format!("writer {round}-{i}")}]})
            .to_string();
            tasks.push(tokio::spawn(async move {
                client
                    .put(url)
                    .header("content-type", "application/fhir+json")
                    .header("if-match", format!("W/\"{round}\""))
                    .body(body)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            }));
        }
        let mut statuses = Vec::new();
        for t in tasks {
            statuses.push(t.await.unwrap());
        }
        let ok = statuses.iter().filter(|s| **s == 200).count();
        let refused = statuses.iter().filter(|s| **s == 412).count();
        assert_eq!(ok, 1, "round {round}: {statuses:?}");
        assert_eq!(refused, WRITERS - 1, "round {round}: {statuses:?}");
        let current = app.get("Patient/race").await;
        assert_eq!(current.header("etag"), Some(format!("W/\"{}\"", round + 1)));
    }
    // And without If-Match, concurrent updates each make their own version.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let client = app.client.clone();
        let url = app.url("Patient/race");
        let body = json!({"resourceType": "Patient", "id": "race", "name": [{"text": format!("free {i}")}]}).to_string();
        tasks.push(tokio::spawn(async move {
            client
                .put(url)
                .header("content-type", "application/fhir+json")
                .body(body)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let history = app.get("Patient/race/_history?_count=100").await.json();
    assert_eq!(history["entry"].as_array().unwrap().len(), 3 + 20);
}
both_backends!(concurrent_if_match_updates);
