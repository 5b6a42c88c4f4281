//! `/openapi.json`: an OpenAPI 3.1 document in which every path and method is
//! a live route (none falls through to the "no such endpoint" fallback), and
//! the vendored documentation page.

use serde_json::Value;

use crate::both_backends;
use crate::helpers::{spawn, Backend};

async fn every_documented_route_answers(backend: Backend) {
    let app = spawn(backend).await;
    let root = app.base.trim_end_matches("/fhir").to_string();
    let doc: Value = app
        .anon
        .get(format!("{root}/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 30, "{}", paths.len());
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut checked = 0;
    for (path, item) in paths {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            let url = format!(
                "{root}{}",
                path.replace("{type}", "Patient")
                    .replace("{id}", "p1")
                    .replace("{vid}", "1")
                    .replace("{compartmentType}", "Observation")
            );
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let client = if path.starts_with("/auth/authorize") {
                &no_redirect
            } else {
                &app.client
            };
            let r = client.request(m, &url).body("").send().await.unwrap();
            let status = r.status().as_u16();
            let text = r.text().await.unwrap();
            assert!(
                !(status == 404 && text.contains("no such endpoint")) && status != 405,
                "{method} {path} is documented but not routed: {status} {text}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 40, "{checked}");
    // The browsable page is served from the binary.
    let r = app.anon.get(format!("{root}/docs/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("swagger"));
    // Undocumented paths fall through.
    let r = app
        .anon
        .get(format!("{root}/nowhere"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}
both_backends!(every_documented_route_answers);
