//! `/openapi.json`: a valid OpenAPI 3.1 document (checked by the maintained
//! validator `openapi-spec-validator` from PyPI) in which every path and
//! method is a live route (none falls through to the "no such endpoint"
//! fallback), and which lists every route the router has with every method
//! it answers; and the vendored documentation page.

use serde_json::Value;

use crate::both_backends;
use crate::helpers::python::python;
use crate::helpers::{spawn, Backend, TestApp};

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

fn root_of(app: &TestApp) -> String {
    app.base.trim_end_matches("/fhir").to_string()
}

async fn served_document(app: &TestApp) -> Value {
    app.anon
        .get(format!("{}/openapi.json", root_of(app)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A documented path with its placeholders filled in.
fn concrete(path: &str) -> String {
    path.replace("{type}", "Patient")
        .replace("{id}", "p1")
        .replace("{vid}", "1")
        .replace("{compartmentType}", "Observation")
        .replace("{file}", "swagger-ui.css")
}

/// Sends `method` to `url`; `None` when no route serves it (405, or the
/// "no such endpoint" / "no such FHIR endpoint" 404), else the status.
async fn answer(app: &TestApp, method: &str, url: &str) -> Option<(u16, String)> {
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // The documentation page redirects; the authorize endpoint redirects to
    // the client: look at the first answer.
    let client = if url.contains("/auth/authorize") || url.ends_with("/docs") {
        &no_redirect
    } else {
        &app.client
    };
    let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
    let r = client.request(m, url).body("").send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let unrouted =
        status == 405 || (status == 404 && text.contains("no such") && text.contains("endpoint"));
    (!unrouted).then_some((status, text))
}

async fn every_documented_route_answers(backend: Backend) {
    let app = spawn(backend).await;
    let root = root_of(&app);
    let doc = served_document(&app).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 30, "{}", paths.len());
    let mut checked = 0;
    for (path, item) in paths {
        for method in METHODS {
            if item.get(method).is_none() {
                continue;
            }
            let url = format!("{root}{}", concrete(path));
            let answered = answer(&app, method, &url).await;
            assert!(
                answered.is_some(),
                "{method} {path} is documented but not routed"
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

/// Does the concrete `path` match the document's template `template`? A
/// FHIR segment starting with `_` or `$` (`_search`, `$everything`) is never
/// a type or an id; when `served` (a 2xx/3xx answer), it must be matched
/// literally: a served `POST /fhir/_search` is not documented by
/// `POST /fhir/{type}`. An error answer (say 400 for `PUT
/// /fhir/Patient/_search`, an invalid id) may match a placeholder.
fn matches_template(template: &str, path: &str, served: bool) -> bool {
    let t: Vec<&str> = template.split('/').collect();
    let p: Vec<&str> = path.split('/').collect();
    t.len() == p.len()
        && t.iter().zip(&p).all(|(t, p)| {
            let placeholder = t.starts_with('{') && t.ends_with('}');
            let special = served && (p.starts_with('_') || p.starts_with('$'));
            t == p || (placeholder && !p.is_empty() && !special)
        })
}

/// Concrete FHIR URLs (below the base) covering every shape the FHIR
/// catch-all route (`/fhir/{*path}`) parses.
const FHIR_SHAPES: &[&str] = &[
    "/fhir/metadata",
    "/fhir/_history",
    "/fhir/_search",
    "/fhir/$reindex",
    "/fhir/AuditEvent/$verify-audit",
    "/fhir/Patient",
    "/fhir/Patient/_search",
    "/fhir/Patient/_history",
    "/fhir/Patient/$everything",
    "/fhir/Patient/p1",
    "/fhir/Patient/p1/_history",
    "/fhir/Patient/p1/_history/1",
    "/fhir/Patient/p1/$everything",
    "/fhir/Patient/p1/Observation",
    "/fhir/Patient/p1/*",
    "/fhir/.well-known/smart-configuration",
];

/// The reverse direction: every route of the router
/// (`vesta::rest::route_paths`, the list the router is built from), and
/// every shape of the FHIR catch-all, answers only methods the document
/// lists for a path that matches it.
async fn every_route_is_documented(backend: Backend) {
    let app = spawn(backend).await;
    let root = root_of(&app);
    let doc = served_document(&app).await;
    let paths = doc["paths"].as_object().unwrap();
    let mut urls: Vec<String> = Vec::new();
    for route in vesta::rest::route_paths() {
        match vesta::rest::openapi::documented_path(&route) {
            Some(p) => {
                assert!(paths.contains_key(&p), "route {route} is not documented");
                urls.push(concrete(&p));
            }
            None => urls.extend(FHIR_SHAPES.iter().map(|s| s.to_string())),
        }
    }
    urls.push("/fhir/".into());
    let mut answered = 0;
    for url in &urls {
        for method in METHODS {
            let Some((status, text)) = answer(&app, method, &format!("{root}{url}")).await else {
                continue;
            };
            answered += 1;
            let url = if url == "/fhir/" { "/fhir" } else { url };
            let documented = paths.iter().any(|(t, item)| {
                matches_template(t, url, status < 400) && item.get(method).is_some()
            });
            assert!(
                documented,
                "{method} {url} is served ({status}: {text:.200}) but not in the OpenAPI document"
            );
        }
    }
    assert!(answered >= 50, "{answered}");
}
both_backends!(every_route_is_documented);

/// The served document is valid OpenAPI 3.1 for `openapi-spec-validator`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_document_is_valid_openapi_3_1() {
    let py = python().await;
    let app = spawn(Backend::Sqlite).await;
    let doc = served_document(&app).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let out = tokio::process::Command::new(&py)
        .args(["-m", "openapi_spec_validator", "--schema", "3.1"])
        .args(["--validation-errors", "all"])
        .arg(&file)
        .output()
        .await
        .expect("run openapi_spec_validator");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(": OK"),
        "the served OpenAPI document is invalid:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The validator is not a rubber stamp: a path parameter without its
    // declaration is refused.
    let mut broken = doc.clone();
    broken["paths"]["/fhir/{type}/{id}"]["get"]["parameters"] = serde_json::json!([]);
    std::fs::write(&file, serde_json::to_vec(&broken).unwrap()).unwrap();
    let out = tokio::process::Command::new(&py)
        .args(["-m", "openapi_spec_validator", "--schema", "3.1"])
        .arg(&file)
        .output()
        .await
        .expect("run openapi_spec_validator");
    assert!(!out.status.success(), "a broken document passed");
}
