//! The MCP door: the official MCP Python SDK (`tests/python/mcp_client.py`)
//! over streamable HTTP and over stdio (`vesta mcp`), and raw JSON-RPC for
//! the refusals (no token, wrong audience, Origin), the RFC 9728 metadata,
//! the dry run of destructive tools and the tool name in the audit trail.

use std::path::Path;

use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::python::python;
use crate::helpers::smart::SmartApp;
use crate::helpers::{client_with_token, Backend};

/// Mints a token whose audience includes the MCP resource `{root}/mcp`.
fn mcp_token(
    s: &SmartApp,
    client: &str,
    scopes: &str,
    patient: Option<&str>,
    user: Option<&str>,
) -> String {
    let settings = &s.app.settings;
    let config = vesta::auth::smart_config::SmartConfig::load(&settings.smart_config_dir)
        .expect("smart-config");
    vesta::auth::mint::mint(
        &settings.data_dir,
        &config,
        &s.app.base,
        &vesta::auth::mint::MintRequest {
            client_id: client.into(),
            scopes: scopes.into(),
            patient: patient.map(str::to_string),
            user: user.map(str::to_string),
            resources: vec![format!("{}/mcp", s.root)],
            ttl_s: 3600,
        },
    )
    .expect("mint")
}

async fn run_script(args: &[&str], envs: &[(&str, String)]) {
    let py = python().await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/mcp_client.py");
    let mut cmd = tokio::process::Command::new(py);
    cmd.arg(script).args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().await.expect("run mcp_client.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "mcp_client.py failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let passed = stdout.lines().filter(|l| l.starts_with("ok")).count();
    assert!(passed >= 8, "only {passed} checks ran:\n{stdout}");
}

async fn python_client_over_http(backend: Backend) {
    let s = SmartApp::start(backend).await;
    let admin = mcp_token(&s, "vesta-test-admin", "system/*.cruds", None, None);
    let pat = mcp_token(
        &s,
        "mcp-patient-app",
        "patient/*.rs",
        Some("p1"),
        Some("pat"),
    );
    let url = format!("{}/mcp", s.root);
    run_script(
        &["--url", &url, "--token", &admin, "--patient-token", &pat],
        &[],
    )
    .await;
}
both_backends!(python_client_over_http);

async fn python_client_over_stdio(backend: Backend) {
    let s = SmartApp::start(backend).await;
    let admin = mcp_token(&s, "vesta-test-admin", "system/*.cruds", None, None);
    let pat = mcp_token(
        &s,
        "mcp-patient-app",
        "patient/*.rs",
        Some("p1"),
        Some("pat"),
    );
    let settings = &s.app.settings;
    // `vesta mcp` opens the running test server's store (its data folder or
    // database) and verifies tokens with its keys, for its base URL.
    let mut envs = vec![
        ("VESTA_DATA_DIR", settings.data_dir.display().to_string()),
        ("VESTA_PUBLIC_BASE_URL", s.app.base.clone()),
        (
            "VESTA_SMART_CONFIG_DIR",
            settings.smart_config_dir.display().to_string(),
        ),
        ("RUST_LOG", "warn".to_string()),
    ];
    if let Some(url) = &settings.database_url {
        envs.push(("VESTA_DATABASE_URL", url.clone()));
    }
    run_script(
        &[
            "--stdio-command",
            env!("CARGO_BIN_EXE_vesta"),
            "--token",
            &admin,
            "--patient-token",
            &pat,
        ],
        &envs,
    )
    .await;
}
both_backends!(python_client_over_stdio);

/// One JSON-RPC request to `/mcp` (stateless: no session needed).
async fn rpc(
    client: &reqwest::Client,
    url: &str,
    method: &str,
    params: Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let r = client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .body(json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string())
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.expect("body");
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(json!({"raw": text})),
    )
}

async fn tool(client: &reqwest::Client, url: &str, name: &str, args: Value) -> Value {
    let (status, _, v) = rpc(
        client,
        url,
        "tools/call",
        json!({"name": name, "arguments": args}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    v["result"].clone()
}

async fn refuses_without_an_mcp_token(backend: Backend) {
    let s = SmartApp::start(backend).await;
    let url = format!("{}/mcp", s.root);
    let metadata_url = format!("{}/.well-known/oauth-protected-resource/mcp", s.root);
    let challenge = format!("resource_metadata=\"{metadata_url}\"");

    // No token: 401 pointing at the metadata.
    let (status, headers, body) = rpc(&s.app.anon, &url, "tools/list", json!({})).await;
    assert_eq!(status, 401, "{body}");
    let www = headers["www-authenticate"].to_str().unwrap();
    assert!(
        www.starts_with("Bearer ") && www.contains(&challenge),
        "{www}"
    );
    assert!(!www.contains("invalid_token"), "{www}");
    assert_eq!(body["resourceType"], "OperationOutcome");

    // A token for the FHIR base only (the suite's admin token): 401 too.
    let (status, headers, _) = rpc(&s.app.client, &url, "tools/list", json!({})).await;
    assert_eq!(status, 401);
    let www = headers["www-authenticate"].to_str().unwrap();
    assert!(
        www.contains(&challenge) && www.contains("error=\"invalid_token\""),
        "{www}"
    );

    // A token signed by someone else: 401.
    let forged = client_with_token("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln");
    let (status, _, _) = rpc(&forged, &url, "tools/list", json!({})).await;
    assert_eq!(status, 401);

    // RFC 9728 metadata, path-suffixed and at the root.
    for u in [
        metadata_url.clone(),
        format!("{}/.well-known/oauth-protected-resource", s.root),
    ] {
        let m: Value = s
            .app
            .anon
            .get(&u)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(m["resource"], url.as_str(), "{m}");
        assert_eq!(m["authorization_servers"], json!([s.root]), "{m}");
        assert_eq!(m["bearer_methods_supported"], json!(["header"]));
    }

    // The right audience passes; a foreign Origin does not.
    let good = client_with_token(&mcp_token(
        &s,
        "vesta-test-admin",
        "system/*.cruds",
        None,
        None,
    ));
    let (status, _, body) = rpc(&good, &url, "tools/list", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["result"]["tools"]
            .as_array()
            .is_some_and(|t| t.len() >= 13),
        "{body}"
    );
    let r = good
        .post(&url)
        .header("origin", "https://evil.example")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let r = good
        .post(&url)
        .header("origin", &s.root)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .body(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        200,
        "the server's own origin is allowed"
    );
}
both_backends!(refuses_without_an_mcp_token);

async fn destructive_tools_dry_run_without_confirm(backend: Backend) {
    let s = SmartApp::start(backend).await;
    let url = format!("{}/mcp", s.root);
    let c = client_with_token(&mcp_token(
        &s,
        "vesta-test-admin",
        "system/*.cruds",
        None,
        None,
    ));
    let version = |r: &crate::helpers::Reply| r.json()["meta"]["versionId"].clone();

    let r = tool(
        &c,
        &url,
        "fhir_delete",
        json!({"type": "Patient", "id": "p2"}),
    )
    .await;
    assert_eq!(r["structuredContent"]["dryRun"], true, "{r}");
    assert_eq!(r["isError"], false, "{r}");
    let r = tool(
        &c,
        &url,
        "fhir_update",
        json!({"type": "Patient", "id": "p2",
        "resource": {"resourceType": "Patient", "id": "p2", "name": [{"family": "Changed"}]}}),
    )
    .await;
    assert_eq!(r["structuredContent"]["dryRun"], true, "{r}");
    let ops = r["structuredContent"]["changes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        ops.iter()
            .any(|o| o["path"].as_str().is_some_and(|p| p.starts_with("/name"))),
        "{r}"
    );
    let r = tool(
        &c,
        &url,
        "fhir_patch",
        json!({"type": "Patient", "id": "p2",
        "patch": [{"op": "add", "path": "/active", "value": false}]}),
    )
    .await;
    assert_eq!(r["structuredContent"]["dryRun"], true, "{r}");
    assert_eq!(
        r["structuredContent"]["changes"][0]["path"], "/active",
        "{r}"
    );
    let r = tool(
        &c,
        &url,
        "fhir_transaction",
        json!({"bundle": {"resourceType": "Bundle", "type": "transaction",
        "entry": [{"resource": {"resourceType": "Patient", "name": [{"family": "Tx"}]},
                   "request": {"method": "POST", "url": "Patient"}}]}}),
    )
    .await;
    assert_eq!(r["structuredContent"]["dryRun"], true, "{r}");

    // Nothing changed.
    let p2 = s.app.get("Patient/p2").await;
    assert_eq!(p2.status, 200);
    assert_eq!(version(&p2), "1");
    assert_eq!(p2.json()["name"][0]["family"], "Smith");
    let tx = s.app.get("Patient?family=Tx").await;
    assert_eq!(
        tx.json()["entry"].as_array().map_or(0, Vec::len),
        0,
        "{}",
        tx.text
    );

    // confirm: true changes it, and the AuditEvent names the tool.
    let r = tool(
        &c,
        &url,
        "fhir_patch",
        json!({"type": "Patient", "id": "p2", "confirm": true,
        "patch": [{"op": "add", "path": "/active", "value": false}]}),
    )
    .await;
    assert_eq!(r["isError"], false, "{r}");
    let p2 = s.app.get("Patient/p2").await;
    assert_eq!(version(&p2), "2");
    assert_eq!(p2.json()["active"], false);
    let r = tool(
        &c,
        &url,
        "fhir_delete",
        json!({"type": "Patient", "id": "p2", "confirm": true}),
    )
    .await;
    assert_eq!(r["isError"], false, "{r}");
    assert_eq!(s.app.get("Patient/p2").await.status, 410);

    let audit = s.app.get("AuditEvent?_count=100").await;
    assert_eq!(audit.status, 200, "{}", audit.text);
    let descs: Vec<String> = audit.json()["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["resource"]["outcomeDesc"].as_str().map(str::to_string))
        .collect();
    assert!(
        descs.iter().any(|d| d.contains("via mcp tool fhir_delete")),
        "{descs:?}"
    );
    assert!(
        descs.iter().any(|d| d.contains("via mcp tool fhir_patch")),
        "{descs:?}"
    );
}
both_backends!(destructive_tools_dry_run_without_confirm);

async fn patient_token_stays_in_its_compartment(backend: Backend) {
    let s = SmartApp::start(backend).await;
    let url = format!("{}/mcp", s.root);
    let c = client_with_token(&mcp_token(
        &s,
        "mcp-patient-app",
        "patient/*.rs",
        Some("p1"),
        Some("pat"),
    ));
    let r = tool(
        &c,
        &url,
        "fhir_read",
        json!({"type": "Patient", "id": "p2"}),
    )
    .await;
    assert_eq!(r["isError"], true, "{r}");
    assert_eq!(
        r["structuredContent"]["resourceType"], "OperationOutcome",
        "{r}"
    );
    let r = tool(
        &c,
        &url,
        "fhir_search",
        json!({"type": "Observation", "params": {"subject": "Patient/p2"}}),
    )
    .await;
    assert_eq!(r["structuredContent"]["entries"], json!([]), "{r}");
    let r = tool(&c, &url, "patient_summary", json!({"patient_id": "p2"})).await;
    assert_eq!(r["isError"], true, "{r}");
    let r = tool(&c, &url, "patient_summary", json!({"patient_id": "p1"})).await;
    assert_eq!(r["isError"], false, "{r}");
    assert_eq!(
        r["structuredContent"]["patient"]["reference"], "Patient/p1",
        "{r}"
    );
    let (status, _, v) = rpc(
        &c,
        &url,
        "resources/read",
        json!({"uri": "fhir://Patient/p2"}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(v["error"].is_object(), "{v}");
    // A write with a read-only token is refused by the service (403), not done.
    let r = tool(
        &c,
        &url,
        "fhir_create",
        json!({"resource": {"resourceType": "Patient"}}),
    )
    .await;
    assert_eq!(r["isError"], true, "{r}");
}
both_backends!(patient_token_stays_in_its_compartment);

async fn clinical_and_catalog_tools(backend: Backend) {
    let s = SmartApp::start(backend).await;
    let url = format!("{}/mcp", s.root);
    let c = client_with_token(&mcp_token(
        &s,
        "vesta-test-admin",
        "system/*.cruds",
        None,
        None,
    ));
    for (id, given, family, born) in [
        ("jd1", "John", "Doe", "1970-01-02"),
        ("jd2", "John", "Doe", "1970-07-08"),
        ("jr", "Jane", "Roe", "1980-03-04"),
    ] {
        let r = s
            .app
            .put(
                &format!("Patient/{id}"),
                &json!({"resourceType": "Patient", "id": id, "birthDate": born,
                        "name": [{"family": family, "given": [given]}]}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }

    // resolve never picks one of several.
    let r = tool(&c, &url, "resolve", json!({"query": "John Doe born 1970"})).await;
    let out = &r["structuredContent"];
    assert_eq!(out["match"], "ambiguous", "{r}");
    assert!(out.get("id").is_none(), "{r}");
    assert_eq!(out["fullMatches"], 2, "{r}");
    assert!(
        out["candidates"][0]["why"]
            .as_array()
            .is_some_and(|w| !w.is_empty()),
        "{r}"
    );
    let r = tool(&c, &url, "resolve", json!({"query": "John Doe 1970-07-08"})).await;
    assert_eq!(r["structuredContent"]["match"], "unique", "{r}");
    assert_eq!(r["structuredContent"]["id"], "jd2", "{r}");
    let r = tool(&c, &url, "resolve", json!({"query": "Zed Nobody"})).await;
    assert_eq!(r["structuredContent"]["match"], "none", "{r}");

    // find_tools by synonyms.
    let r = tool(&c, &url, "find_tools", json!({"query": "remove a record"})).await;
    assert_eq!(
        r["structuredContent"]["tools"][0]["name"], "fhir_delete",
        "{r}"
    );

    // patient_summary: the patient and their labs and vitals.
    let r = tool(
        &c,
        &url,
        "patient_summary",
        json!({"patient_id": "p1", "max_items": 5}),
    )
    .await;
    let out = &r["structuredContent"];
    assert_eq!(r["isError"], false, "{r}");
    assert_eq!(out["patient"]["name"], "Chalmers", "{r}");
    assert_eq!(
        out["labs"][0]["reference"], "Observation/p1-laboratory",
        "{r}"
    );
    assert_eq!(
        out["vitals"][0]["reference"], "Observation/p1-vital-signs",
        "{r}"
    );

    // validate, capabilities, history.
    let r = tool(
        &c,
        &url,
        "fhir_validate",
        json!({"resource": {"resourceType": "Patient", "birthDate": 5}}),
    )
    .await;
    assert_eq!(
        r["structuredContent"]["issue"][0]["severity"], "error",
        "{r}"
    );
    let r = tool(
        &c,
        &url,
        "fhir_validate",
        json!({"resource": {"resourceType": "Patient", "active": true}}),
    )
    .await;
    assert_eq!(
        r["structuredContent"]["issue"][0]["severity"], "information",
        "{r}"
    );
    let r = tool(
        &c,
        &url,
        "fhir_capabilities",
        json!({"type": "Observation"}),
    )
    .await;
    let res = &r["structuredContent"]["rest"][0]["resource"];
    assert_eq!(res.as_array().map(Vec::len), Some(1), "{r}");
    assert!(
        res[0]["searchParam"]
            .as_array()
            .is_some_and(|p| !p.is_empty()),
        "{r}"
    );
    let r = tool(
        &c,
        &url,
        "fhir_history",
        json!({"type": "Patient", "id": "p1"}),
    )
    .await;
    assert_eq!(r["structuredContent"]["count"], 1, "{r}");

    // Unknown arguments and out-of-range values are refused before anything runs.
    let r = tool(
        &c,
        &url,
        "fhir_read",
        json!({"type": "Patient", "id": "p1", "sneaky": 1}),
    )
    .await;
    assert_eq!(r["isError"], true, "{r}");
    let r = tool(
        &c,
        &url,
        "fhir_search",
        json!({"type": "Patient", "count": 100000}),
    )
    .await;
    assert_eq!(r["isError"], true, "{r}");

    // Resources and prompts.
    let (_, _, v) = rpc(&c, &url, "resources/list", json!({})).await;
    let uris: Vec<&str> = v["result"]["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["uri"].as_str())
        .collect();
    assert!(
        uris.contains(&"fhir://metadata") && uris.contains(&"fhir://Patient/p1"),
        "{v}"
    );
    let (_, _, v) = rpc(
        &c,
        &url,
        "resources/read",
        json!({"uri": "fhir://Patient/p1/$everything"}),
    )
    .await;
    let text = v["result"]["contents"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(text.contains("p1-laboratory"), "{v}");
    let (_, _, v) = rpc(
        &c,
        &url,
        "prompts/get",
        json!({"name": "patient_briefing", "arguments": {"patient_id": "p1"}}),
    )
    .await;
    let text = v["result"]["messages"][0]["content"]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(
        text.contains("patient_summary") && text.contains("p1"),
        "{v}"
    );
    // Tool calls are counted by tool name (never by argument).
    let metrics = s
        .app
        .anon
        .get(format!("{}/metrics", s.root))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("vesta_mcp_tool_calls_total{result=\"ok\",tool=\"resolve\"}"),
        "{metrics}"
    );
    assert!(!metrics.contains("jd2"), "an argument leaked into /metrics");
}
both_backends!(clinical_and_catalog_tools);

async fn allowed_hosts_are_configurable(backend: Backend) {
    let s = SmartApp::start_with(backend, |s| {
        s.mcp_allowed_hosts = vec!["mcp.example.org".into()];
    })
    .await;
    let url = format!("{}/mcp", s.root);
    let c = client_with_token(&mcp_token(
        &s,
        "vesta-test-admin",
        "system/*.cruds",
        None,
        None,
    ));
    let send = |host: &'static str| {
        c.post(&url)
            .header("host", host)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18")
            .body(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).to_string())
            .send()
    };
    // DNS rebinding: an unknown Host is refused; a configured one is served.
    assert_eq!(send("evil.example").await.unwrap().status().as_u16(), 403);
    assert_eq!(
        send("mcp.example.org").await.unwrap().status().as_u16(),
        200
    );
}
both_backends!(allowed_hosts_are_configurable);
