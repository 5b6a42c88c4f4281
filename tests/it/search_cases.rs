//! Data-driven search cases (`tests/data/search/`): one fixture transaction,
//! then every case file's requests with their expected matches, on each backend.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::both_backends;
use crate::helpers::{data_dir, spawn, Backend, TestApp};

fn ids(bundle: &Value, mode: &str) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["search"]["mode"] == mode)
        .map(|e| {
            format!(
                "{}/{}",
                e["resource"]["resourceType"].as_str().unwrap_or(""),
                e["resource"]["id"].as_str().unwrap_or("")
            )
        })
        .collect()
}

fn next_link(bundle: &Value) -> Option<String> {
    bundle["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == "next")?["url"]
        .as_str()
        .map(str::to_string)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

/// Runs one case; returns a description of what went wrong, if anything.
async fn check(app: &TestApp, case: &Value) -> Option<String> {
    let request = case["request"].as_str()?;
    let (method, url) = request.split_once(' ')?;
    let mut req = match method {
        "GET" => app.client.get(app.url(url)),
        "POST" => app
            .client
            .post(app.url(url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(case["form"].as_str().unwrap_or("").to_string()),
        _ => return Some(format!("unsupported method {method}")),
    };
    if let Some(h) = case["headers"].as_object() {
        for (k, v) in h {
            req = req.header(k.as_str(), v.as_str().unwrap_or(""));
        }
    }
    let reply = app.send(req).await;
    let want_status = case["expect_status"].as_u64().unwrap_or(200) as u16;
    if reply.status != want_status {
        return Some(format!(
            "status {} (want {want_status}): {}",
            reply.status,
            reply.text.chars().take(400).collect::<String>()
        ));
    }
    let body: Value = serde_json::from_str(&reply.text).ok()?;
    if want_status != 200 {
        if let Some(path) = case["expect_issue_path"].as_str() {
            let got = body["issue"][0]["expression"][0].as_str().unwrap_or("");
            if !got.contains(path) {
                return Some(format!("issue path '{got}' does not contain '{path}'"));
            }
        }
        return None;
    }
    let mut matches = ids(&body, "match");
    if let Some(pages) = case["count_pages"].as_u64() {
        let mut seen = 1;
        let mut page = body.clone();
        while let Some(next) = next_link(&page) {
            page = app.send(app.client.get(next)).await.json();
            matches.extend(ids(&page, "match"));
            seen += 1;
            if seen > 50 {
                break;
            }
        }
        if seen != pages {
            return Some(format!("{seen} pages (want {pages})"));
        }
    }
    if let Some(total) = case["expect_total"].as_i64() {
        if body["total"].as_i64() != Some(total) {
            return Some(format!("total {:?} (want {total})", body["total"]));
        }
    }
    if case.get("expect_ids").is_some() {
        let want = strings(&case["expect_ids"]);
        let ok = if case["ordered"].as_bool().unwrap_or(false) {
            matches == want
        } else {
            matches.iter().collect::<BTreeSet<_>>() == want.iter().collect::<BTreeSet<_>>()
                && matches.len() == want.len()
        };
        if !ok {
            return Some(format!("matches {matches:?} (want {want:?})"));
        }
    }
    if case.get("expect_include_ids").is_some() {
        let want: BTreeSet<String> = strings(&case["expect_include_ids"]).into_iter().collect();
        let got: BTreeSet<String> = ids(&body, "include").into_iter().collect();
        if got != want {
            return Some(format!("includes {got:?} (want {want:?})"));
        }
    }
    None
}

async fn search_cases(backend: Backend) {
    let app = spawn(backend).await;
    let dir = data_dir().join("search");
    let fixture: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("fixture.json")).expect("fixture"))
            .expect("fixture JSON");
    let loaded = app.post("", &fixture).await;
    assert_eq!(
        loaded.status, 200,
        "fixture transaction failed: {}",
        loaded.text
    );
    let mut files: Vec<_> = std::fs::read_dir(dir.join("cases"))
        .expect("cases folder")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    files.sort();
    let (mut total, mut failures) = (0, Vec::new());
    for file in files {
        let cases: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for case in cases.as_array().into_iter().flatten() {
            total += 1;
            if let Some(problem) = check(&app, case).await {
                let name = file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
                failures.push(format!(
                    "[{name}] {} — {} — {problem}",
                    case["name"].as_str().unwrap_or("?"),
                    case["request"].as_str().unwrap_or("?")
                ));
            }
        }
    }
    println!("search cases: {}/{total} passed", total - failures.len());
    assert!(total >= 150, "only {total} search cases");
    assert!(
        failures.is_empty(),
        "{} of {total} search cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
both_backends!(search_cases);

/// Every page of `query`, following `next` links, as `Type/id`.
async fn all_pages(app: &TestApp, query: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut page = app.get(query).await.json();
    for _ in 0..100 {
        out.extend(ids(&page, "match"));
        match next_link(&page) {
            Some(next) => page = app.send(app.client.get(next)).await.json(),
            None => break,
        }
    }
    out
}

/// A date sort walked through the date index (when a clause filters on the
/// same parameter) orders and pages exactly like the general sort.
async fn date_sort_walk_matches_general_sort(backend: Backend) {
    let app = spawn(backend).await;
    let dir = data_dir().join("search");
    let fixture: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("fixture.json")).unwrap()).unwrap();
    assert_eq!(app.post("", &fixture).await.status, 200);
    for (t, sort) in [
        ("Encounter", "-date"),
        ("Encounter", "date"),
        ("Observation", "-date"),
        ("Observation", "date"),
    ] {
        let general = all_pages(&app, &format!("{t}?_sort={sort}&_count=100")).await;
        // Only resources with a date take part in the walked form.
        let dated: Vec<String> =
            all_pages(&app, &format!("{t}?date:missing=false&_count=100")).await;
        let expected: Vec<String> = general
            .into_iter()
            .filter(|id| dated.contains(id))
            .collect();
        let walked = all_pages(
            &app,
            &format!("{t}?date=ge1900-01-01&_sort={sort}&_count=2"),
        )
        .await;
        assert_eq!(walked, expected, "{t} _sort={sort}");
        assert!(!walked.is_empty());
    }
}
both_backends!(date_sort_walk_matches_general_sort);

/// Posts a transaction Bundle of `entry` and expects 200.
async fn transaction(app: &TestApp, entry: Vec<Value>) {
    let r = app
        .post(
            "",
            &serde_json::json!({"resourceType": "Bundle", "type": "transaction", "entry": entry}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

/// `vesta explain` of a type search against the app's database: its SQL
/// and the database's plan.
fn explain(app: &TestApp, query: &str) -> String {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_vesta"));
    cmd.arg("explain")
        .arg("--data-dir")
        .arg(&app.settings.data_dir);
    if let Some(url) = &app.settings.database_url {
        cmd.arg("--database-url").arg(url);
    }
    let out = cmd.arg(query).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Without a driving clause, a selective clause is collected and a broad one
/// (matching at least SCAN_PROBE_ROWS rows) is probed per candidate row; when
/// every clause is broad, rows are walked in order. Pages and counts match
/// what the data says either way.
async fn broad_and_selective_clauses(backend: Backend) {
    let app = spawn(backend).await;
    // 2,040 after the window, 30 in it (January 2020), 30 before it.
    let dates = [
        ("2021-03-01", 2_040),
        ("2020-01-15", 30),
        ("2019-06-01", 30),
    ];
    let mut entry = Vec::new();
    for (date, n) in dates {
        for i in 0..n {
            let id = format!("o-{}-{i}", &date[..7]);
            entry.push(serde_json::json!({
                "resource": {"resourceType": "Observation", "id": id, "status": "final",
                             "code": {"text": "hr"}, "effectiveDateTime": date},
                "request": {"method": "PUT", "url": format!("Observation/{id}")}}));
        }
    }
    transaction(&app, entry).await;
    // Mixed: `ge2020-01-01` matches 2,070 (broad), `lt2020-02-01` 60.
    let mixed = "Observation?date=ge2020-01-01&date=lt2020-02-01";
    let found = all_pages(&app, &format!("{mixed}&_count=7")).await;
    let unique: BTreeSet<&String> = found.iter().collect();
    assert_eq!(found.len(), 30, "{found:?}");
    assert_eq!(unique.len(), 30);
    assert!(found
        .iter()
        .all(|id| id.starts_with("Observation/o-2020-01-")));
    let total = app.get(&format!("{mixed}&_summary=count")).await.json();
    assert_eq!(total["total"], 30);
    // All broad: both clauses match 2,070 or more, so rows are walked.
    let broad = "Observation?date=ge2020-01-01&date=lt2022-01-01";
    let first = app.get(&format!("{broad}&_count=50")).await.json();
    assert_eq!(ids(&first, "match").len(), 50);
    let total = app.get(&format!("{broad}&_summary=count")).await.json();
    assert_eq!(total["total"], 2_070);
    // The plans: the mixed search collects one clause and probes the other.
    let text = explain(&app, mixed);
    assert!(
        text.contains("EXISTS (SELECT 1 FROM idx_date x WHERE x.rid = r.rid"),
        "{text}"
    );
    assert!(
        text.contains("r.rid IN (SELECT x.rid FROM idx_date x"),
        "{text}"
    );
}
both_backends!(broad_and_selective_clauses);

/// A `_has` with many referrers is probed per candidate within a window of
/// rows, and collected when the window does not fill the page; either way
/// every page, the count and the order are those of the collected search.
async fn has_probed_within_a_window(backend: Backend) {
    let app = spawn(backend).await;
    // 2,100 patients (more than the 2,000-row window). Dense: the first 100
    // have six "hr" Observations each (600 referrers). Sparse: the last 50
    // have twelve "late" Observations each (600 referrers, all beyond the
    // window).
    let mut entry = Vec::new();
    let put = |entry: &mut Vec<Value>, r: Value| {
        let url = format!(
            "{}/{}",
            r["resourceType"].as_str().unwrap(),
            r["id"].as_str().unwrap()
        );
        entry.push(serde_json::json!({"resource": r, "request": {"method": "PUT", "url": url}}));
    };
    for i in 0..2_100 {
        put(
            &mut entry,
            serde_json::json!({"resourceType": "Patient", "id": format!("p{i:04}")}),
        );
    }
    for (code, patients, each) in [("hr", 0..100, 6), ("late", 2_050..2_100, 12)] {
        for p in patients {
            for n in 0..each {
                put(
                    &mut entry,
                    serde_json::json!({"resourceType": "Observation",
                    "id": format!("{code}-{p}-{n}"), "status": "final",
                    "code": {"coding": [{"system": "http://example.org/c", "code": code}]},
                    "subject": {"reference": format!("Patient/p{p:04}")}}),
                );
            }
        }
    }
    transaction(&app, entry).await;
    for (code, range) in [("hr", 0..100), ("late", 2_050..2_100)] {
        let q = format!("Patient?_has:Observation:subject:code=http://example.org/c|{code}");
        let found = all_pages(&app, &format!("{q}&_count=7")).await;
        let want: Vec<String> = range.map(|p| format!("Patient/p{p:04}")).collect();
        assert_eq!(found, want, "{code}: every match once, in order");
        let total = app.get(&format!("{q}&_summary=count")).await.json();
        assert_eq!(total["total"], 50 + 50 * i64::from(code == "hr"), "{code}");
    }
    // The plan probes the `_has` per candidate, within the window.
    let text = explain(
        &app,
        "Patient?_has:Observation:subject:code=http://example.org/c|hr",
    );
    // On SQLite the plan probes the `_has` per candidate, within the
    // window; PostgreSQL's planner does better with it collected.
    let probed = text.contains("EXISTS (SELECT 1 FROM idx_reference x WHERE")
        && text.contains("ORDER BY w.rid LIMIT 2000");
    let collected = text.contains("r.res_id IN (SELECT x.target_id FROM idx_reference x");
    match backend {
        Backend::Sqlite => assert!(probed && !collected, "{text}"),
        Backend::Postgres => assert!(collected && !probed, "{text}"),
    }
}
both_backends!(has_probed_within_a_window);
