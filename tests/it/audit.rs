//! The audit trail: every request leaves an AuditEvent (failures included),
//! AuditEvents are searchable by their standard parameters and never
//! writable, each role sees what it may, and direct tampering with the
//! stored chain (change, delete, swap) is found by `$verify-audit` and
//! `vesta audit verify`.

use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::smart::SmartApp;
use crate::helpers::{client_with_token, spawn, spawn_with, Backend, TestApp};

/// Every AuditEvent, oldest first (admin token).
async fn all_events(app: &TestApp) -> Vec<Value> {
    let r = app.get("AuditEvent?_sort=date&_count=1000").await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|e| e["resource"].clone())
        .collect()
}

fn request_id_of(event: &Value) -> Option<String> {
    event["entity"].as_array()?.iter().find_map(|e| {
        (e["type"]["code"] == "XrequestId")
            .then(|| {
                e["what"]["identifier"]["value"]
                    .as_str()
                    .map(str::to_string)
            })
            .flatten()
    })
}

fn subtype(event: &Value) -> String {
    event["subtype"][0]["code"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// (request id, method, path, body, token?, expected status, subtype, outcome)
type Case = (
    &'static str,
    &'static str,
    &'static str,
    Option<Value>,
    bool,
    u16,
    &'static str,
    &'static str,
);

async fn every_request_leaves_an_audit_event(backend: Backend) {
    let app = spawn(backend).await;
    let patient = json!({"resourceType": "Patient", "id": "pa", "name": [{"family": "Audited"}]});
    let obs = json!({"resourceType": "Observation", "id": "oa", "status": "final",
        "code": {"text": "x"}, "subject": {"reference": "Patient/pa"}});
    let cases: Vec<Case> = vec![
        (
            "r-put-p",
            "PUT",
            "Patient/pa",
            Some(patient),
            true,
            201,
            "update",
            "0",
        ),
        (
            "r-put-o",
            "PUT",
            "Observation/oa",
            Some(obs),
            true,
            201,
            "update",
            "0",
        ),
        ("r-read", "GET", "Patient/pa", None, true, 200, "read", "0"),
        (
            "r-search",
            "GET",
            "Observation?subject=Patient/pa",
            None,
            true,
            200,
            "search-type",
            "0",
        ),
        (
            "r-missing",
            "GET",
            "Patient/nobody",
            None,
            true,
            404,
            "read",
            "4",
        ),
        ("r-anon", "GET", "Patient/pa", None, false, 401, "read", "4"),
        (
            "r-bad-url",
            "GET",
            "NoSuchType/1",
            None,
            true,
            404,
            "unparsed-request",
            "4",
        ),
        (
            "r-del",
            "DELETE",
            "Observation/oa",
            None,
            true,
            204,
            "delete",
            "0",
        ),
    ];
    for (rid, method, path, body, token, status, _, _) in &cases {
        let client = if *token { &app.client } else { &app.anon };
        let mut req = client
            .request(method.parse().unwrap(), app.url(path))
            .header("x-request-id", *rid);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/fhir+json")
                .body(b.to_string());
        }
        let r = req.send().await.unwrap();
        assert_eq!(
            r.status().as_u16(),
            *status,
            "{rid}: {}",
            r.text().await.unwrap()
        );
    }
    let events = all_events(&app).await;
    for (rid, _, path, _, _, status, sub, outcome) in &cases {
        let e = events
            .iter()
            .find(|e| request_id_of(e).as_deref() == Some(rid))
            .unwrap_or_else(|| panic!("no AuditEvent for {rid} ({path})"));
        assert_eq!(subtype(e), *sub, "{rid}: {e:#}");
        assert_eq!(e["outcome"], *outcome, "{rid}: {e:#}");
        assert!(
            e["outcomeDesc"]
                .as_str()
                .unwrap()
                .starts_with(&status.to_string()),
            "{rid}: {e:#}"
        );
    }
    // The patient concerned is an entity of the reads and writes about them.
    for rid in ["r-put-p", "r-put-o", "r-read", "r-search", "r-del"] {
        let e = events
            .iter()
            .find(|e| request_id_of(e).as_deref() == Some(rid))
            .unwrap();
        let patients: Vec<&str> = e["entity"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| x["role"]["code"] == "1")
            .filter_map(|x| x["what"]["reference"].as_str())
            .collect();
        if rid != "r-del" {
            assert_eq!(patients, vec!["Patient/pa"], "{rid}: {e:#}");
        }
    }
    // The search records its query (base64) and the client app.
    let s = events
        .iter()
        .find(|e| request_id_of(e).as_deref() == Some("r-search"))
        .unwrap();
    let q = s["entity"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["role"]["code"] == "24")
        .unwrap();
    use base64::Engine;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(q["query"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        String::from_utf8(decoded).unwrap(),
        "Observation?subject=Patient%2Fpa"
    );
    assert!(s["agent"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["who"]["identifier"]["value"] == "vesta-test-admin"));
    // The searches of the audit trail itself are audited too.
    let before = events.len();
    assert!(all_events(&app).await.len() > before);
}
both_backends!(every_request_leaves_an_audit_event);

async fn audit_events_are_searchable_and_never_writable(backend: Backend) {
    let app = spawn(backend).await;
    let r = app
        .put(
            "Patient/ps",
            &json!({"resourceType": "Patient", "id": "ps"}),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(app.get("Patient/ps").await.status, 200);
    assert_eq!(app.get("Patient/none").await.status, 404);
    let count = |q: &'static str| {
        let app = &app;
        async move {
            let r = app.get(&format!("AuditEvent?{q}&_summary=count")).await;
            assert_eq!(r.status, 200, "{q}: {}", r.text);
            r.json()["total"].as_i64().unwrap()
        }
    };
    assert_eq!(count("patient=Patient/ps&subtype=read").await, 1);
    assert_eq!(count("patient=ps&subtype=update").await, 1);
    assert_eq!(
        count("subtype=http://hl7.org/fhir/restful-interaction|read&outcome=4").await,
        1
    );
    assert_eq!(count("entity=Patient/none").await, 1);
    assert_eq!(
        count("agent=vesta-test-admin&action=C,U&patient=ps").await,
        1
    );
    assert_eq!(
        count("type=rest&date=ge2020-01-01&date=lt2999-01-01&patient=ps").await,
        2
    );
    assert_eq!(count("date=lt2001-01-01").await, 0);
    assert_eq!(count("agent=someone-else").await, 0);
    // Unknown parameters are refused rather than ignored.
    assert_eq!(app.get("AuditEvent?family=x").await.status, 400);
    // Paging: one per page, following next links, newest first.
    let mut url = app.url("AuditEvent?patient=ps&_count=1");
    let mut seen = Vec::new();
    loop {
        let b: Value = app
            .client
            .get(&url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for e in b["entry"].as_array().into_iter().flatten() {
            seen.push(e["resource"]["recorded"].as_str().unwrap().to_string());
        }
        match b["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
        {
            Some(l) => url = l["url"].as_str().unwrap().to_string(),
            None => break,
        }
    }
    assert!(seen.len() >= 2, "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0] >= w[1]), "{seen:?}");
    // Read by id; never updated, patched, deleted or created through a door.
    let one =
        app.get("AuditEvent?patient=ps&_count=1").await.json()["entry"][0]["resource"].clone();
    let id = one["id"].as_str().unwrap();
    let r = app.get(&format!("AuditEvent/{id}")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), one);
    assert_eq!(app.put(&format!("AuditEvent/{id}"), &one).await.status, 405);
    assert_eq!(app.delete(&format!("AuditEvent/{id}")).await.status, 405);
    assert_eq!(app.post("AuditEvent", &one).await.status, 405);
    assert_eq!(app.delete("AuditEvent?patient=ps").await.status, 405);
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "DELETE", "url": format!("AuditEvent/{id}")}}]});
    assert_eq!(app.post("", &tx).await.status, 405);
    assert_eq!(app.get(&format!("AuditEvent/{id}")).await.status, 200);
}
both_backends!(audit_events_are_searchable_and_never_writable);

async fn who_may_read_the_audit_trail(backend: Backend) {
    let s = SmartApp::start(backend).await;
    let token = |user: &str| client_with_token(&s.app.user_token(user));
    // Clinicians work with records, not with the trail of who read them.
    let alice = token("alice");
    let r = alice.get(s.app.url("AuditEvent")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    // Auditors (readonly role, audit = true) see everything.
    let rita = token("rita");
    let r = rita
        .get(s.app.url("AuditEvent?_summary=count"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let all = r.json::<Value>().await.unwrap()["total"].as_i64().unwrap();
    // A patient sees the events about their own record, and only those.
    let pat = token("pat");
    let b: Value = pat
        .get(s.app.url("AuditEvent?_count=1000"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mine = b["entry"].as_array().cloned().unwrap_or_default();
    assert!(
        !mine.is_empty() && (mine.len() as i64) < all,
        "{} of {all}",
        mine.len()
    );
    for e in &mine {
        let text = e["resource"]["entity"].to_string();
        assert!(
            text.contains("Patient/p1") && !text.contains("Patient/p2"),
            "{text}"
        );
    }
    // Other patients are not even a question a patient may ask.
    for q in ["patient=p2", "entity=Observation/p2-laboratory"] {
        let r = pat
            .get(s.app.url(&format!("AuditEvent?{q}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{q}");
    }
    // Sign-in and token events are recorded: a refused code exchange.
    let r = s
        .app
        .anon
        .post(format!("{}/auth/token", s.root))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", "bogus"),
            ("client_id", "vesta-demo-app"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let b: Value = rita
        .get(s.app.url("AuditEvent?subtype=token-issued&outcome=4"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let e = &b["entry"][0]["resource"];
    assert_eq!(e["type"]["code"], "110114", "{b:#}");
    assert!(e["agent"].to_string().contains("vesta-demo-app"), "{e:#}");
}
both_backends!(who_may_read_the_audit_trail);

/// Runs one SQL statement on the test server's database.
async fn tamper(app: &TestApp, sql: &str) {
    match &app.settings.database_url {
        Some(url) => {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
                .execute(&mut c)
                .await
                .unwrap();
        }
        None => {
            use sqlx::Connection;
            let path = app.settings.data_dir.join("vesta.db");
            let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                .await
                .unwrap();
            sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
                .execute(&mut c)
                .await
                .unwrap();
        }
    }
}

/// `$verify-audit`: `(intact, brokenAt)`.
async fn verify(app: &TestApp) -> (bool, Option<i64>) {
    let r = app.get("AuditEvent/$verify-audit").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let p = r.json();
    let get = |name: &str| {
        p["parameter"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == name)
            .cloned()
    };
    (
        get("intact").unwrap()["valueBoolean"].as_bool().unwrap(),
        get("brokenAt").and_then(|v| v["valueDecimal"].as_i64()),
    )
}

/// `vesta audit verify` on the same store: exit status and output.
fn verify_cli(app: &TestApp) -> (bool, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_vesta"));
    cmd.args(["audit", "verify", "--data-dir"])
        .arg(&app.settings.data_dir);
    if let Some(url) = &app.settings.database_url {
        cmd.args(["--database-url", url]);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
    )
}

async fn tampering_breaks_the_chain(backend: Backend) {
    for (what, sql) in [
        (
            "change",
            "UPDATE audit_log SET content = replace(content, 'Patient', 'Pxtient') WHERE seq = 3",
        ),
        ("delete", "DELETE FROM audit_log WHERE seq = 3"),
        ("swap", ""),
        ("truncate", "DELETE FROM audit_log WHERE seq >= 3"),
    ] {
        let app = spawn(backend).await;
        for i in 0..4 {
            let r = app
                .put(
                    &format!("Patient/t{i}"),
                    &json!({"resourceType": "Patient", "id": format!("t{i}")}),
                )
                .await;
            assert_eq!(r.status, 201);
        }
        assert_eq!(verify(&app).await, (true, None), "{what}: intact before");
        let (ok, text) = verify_cli(&app);
        assert!(ok, "{what}: {text}");
        // A swap moves one row out of the unique key's way first.
        if what == "swap" {
            tamper(&app, "UPDATE audit_log SET seq = -3 WHERE seq = 3").await;
            tamper(&app, "UPDATE audit_log SET seq = 3 WHERE seq = 4").await;
            tamper(&app, "UPDATE audit_log SET seq = 4 WHERE seq = -3").await;
        } else {
            tamper(&app, sql).await;
        }
        let (intact, at) = verify(&app).await;
        assert!(!intact, "{what} was not detected");
        assert_eq!(at, Some(3), "{what}: first broken link");
        let (ok, text) = verify_cli(&app);
        assert!(!ok && text.contains("BROKEN at link 3"), "{what}: {text}");
    }
}
both_backends!(tampering_breaks_the_chain);

async fn audit_export_writes_ndjson(backend: Backend) {
    let app = spawn(backend).await;
    assert_eq!(app.get("Patient/x").await.status, 404);
    // A running SQLite server journals reads' records and stores them in
    // the background; reading the trail through it stores them first.
    assert!(verify(&app).await.0);
    let out = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_vesta"));
    cmd.args(["audit", "export", "--out"])
        .arg(out.path())
        .arg("--data-dir")
        .arg(&app.settings.data_dir);
    if let Some(url) = &app.settings.database_url {
        cmd.args(["--database-url", url]);
    }
    let status = cmd.output().unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let text = std::fs::read_to_string(out.path()).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!lines.is_empty());
    assert!(lines.iter().all(|l| l["resourceType"] == "AuditEvent"));
    assert!(lines.iter().any(|l| l["outcome"] == "4"));
}
both_backends!(audit_export_writes_ndjson);

/// With `sqlite_sync_full` on (the server default; the suite turns it off
/// for speed), audit-only commits run at `synchronous=NORMAL` inside writer
/// sessions that put `FULL` back for resource writes. Reads and writes
/// interleaved through those sessions all succeed, every one is audited,
/// and the chain stays intact.
async fn audit_sessions_interleave_with_durable_writes(backend: Backend) {
    let app = spawn_with(backend, |s| s.sqlite_sync_full = true).await;
    for p in 0..4 {
        let body = json!({"resourceType": "Patient", "id": format!("fs-{p}")});
        assert_eq!(app.put(&format!("Patient/fs-{p}"), &body).await.status, 201);
    }
    let rounds = (0..10).map(|round| {
        let app = &app;
        async move {
            let mut statuses = Vec::new();
            for p in 0..4 {
                statuses.push(app.get(&format!("Patient/fs-{p}")).await.status);
            }
            let body = json!({"resourceType": "Patient", "id": "fs-0",
                "name": [{"family": format!("Round{round}")}]});
            statuses.push(app.put("Patient/fs-0", &body).await.status);
            statuses
        }
    });
    let statuses: Vec<u16> = futures::future::join_all(rounds)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert!(
        statuses.iter().all(|s| *s == 200),
        "every read and update succeeds: {statuses:?}"
    );
    // 1 create + 10 reads + 10 updates of fs-0, each with its AuditEvent.
    let r = app.get("AuditEvent?patient=Patient/fs-0&_count=100").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let found = r.json()["entry"].as_array().map_or(0, Vec::len);
    assert!(found >= 21, "{found} AuditEvents for Patient/fs-0");
    assert_eq!(verify(&app).await, (true, None));
    let (ok, out) = verify_cli(&app);
    assert!(ok, "{out}");
}
both_backends!(audit_sessions_interleave_with_durable_writes);
