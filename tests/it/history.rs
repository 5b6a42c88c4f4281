//! History at instance, type and system level, with `_since` and `_count` paging.

use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{spawn, Backend};

fn entries(v: &Value) -> Vec<Value> {
    v["entry"].as_array().cloned().unwrap_or_default()
}

fn link(v: &Value, rel: &str) -> Option<String> {
    v["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == rel)
        .and_then(|l| l["url"].as_str())
        .map(str::to_string)
}

async fn history_levels_and_paging(backend: Backend) {
    let app = spawn(backend).await;
    for i in 0..3 {
        app.put(
            "Patient/h1",
            &json!({"resourceType": "Patient", "id": "h1", "birthDate": format!("200{i}-01-01")}),
        )
        .await;
    }
    app.delete("Patient/h1").await;
    app.put(
        "Observation/o1",
        &json!({"resourceType": "Observation", "id": "o1", "status": "final",
        "code": {"text": "x"}}),
    )
    .await;

    let inst = app.get("Patient/h1/_history").await.json();
    assert_eq!(inst["type"], "history");
    let e = entries(&inst);
    assert_eq!(e.len(), 4);
    assert_eq!(e[0]["request"]["method"], "DELETE");
    assert!(e[0].get("resource").is_none());
    assert_eq!(e[0]["response"]["etag"], "W/\"4\"");
    assert_eq!(e[3]["resource"]["meta"]["versionId"], "1", "oldest last");

    let ty = app.get("Patient/_history").await.json();
    assert_eq!(entries(&ty).len(), 4);
    let sys = app.get("_history").await.json();
    assert_eq!(entries(&sys).len(), 5);
    assert_eq!(entries(&sys)[0]["resource"]["resourceType"], "Observation");

    // Paging with _count follows next links to the end without repeats.
    let mut seen = Vec::new();
    let mut page = app.get("_history?_count=2").await.json();
    loop {
        let e = entries(&page);
        assert!(e.len() <= 2);
        seen.extend(
            e.iter()
                .map(|x| x["response"]["etag"].to_string() + x["fullUrl"].as_str().unwrap()),
        );
        match link(&page, "next") {
            Some(next) => page = app.send(app.client.get(next)).await.json(),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5);
    let unique: std::collections::HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), 5);

    // _since keeps only later versions.
    let last = entries(&sys)[0]["response"]["lastModified"]
        .as_str()
        .unwrap()
        .to_string();
    let since = app
        .get(&format!("_history?_since={}", urlencode(&last)))
        .await
        .json();
    assert_eq!(entries(&since).len(), 1);
    let bad = app.get("_history?_since=yesterday").await;
    assert_eq!(bad.status, 400);
    assert_eq!(app.get("Patient/unknown/_history").await.status, 404);
    assert_eq!(app.get("_history?_count=100000").await.status, 400);
}
both_backends!(history_levels_and_paging);

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}
