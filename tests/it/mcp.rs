//! The MCP door: the official MCP Python SDK (`tests/python/mcp_client.py`)
//! over streamable HTTP (stateless 2026-07-28 and a 2025-11-25 session) and
//! over stdio (`vesta mcp`), the MCP Inspector CLI, and raw JSON-RPC for the
//! session lifecycle and its bounds, the refusals (no token, wrong audience,
//! Origin, another subject's session), the RFC 9728 metadata, paged
//! resources/list, the dry run of destructive tools and the tool name in the
//! audit trail.

use std::path::Path;

use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::python::python;
use crate::helpers::smart::SmartApp;
use crate::helpers::{client_with_token, Backend};

/// Mints a token whose audience includes the MCP resource `{root}/mcp`.
pub(crate) fn mcp_token(
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

/// The stateless protocol revision (no sessions) and the latest revision
/// with an `initialize` handshake (sessions).
pub(crate) const MODERN: &str = "2026-07-28";
const HANDSHAKE: &str = "2025-11-25";

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
    // Shown with --nocapture (and on failure).
    println!("{stdout}");
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
    // The SDK's default probes server/discover and speaks 2026-07-28
    // statelessly; `legacy` makes it initialize a 2025-11-25 session.
    for (mode, version) in [("auto", MODERN), ("legacy", HANDSHAKE)] {
        run_script(
            &[
                "--url",
                &url,
                "--token",
                &admin,
                "--patient-token",
                &pat,
                "--mode",
                mode,
                "--expect-version",
                version,
            ],
            &[],
        )
        .await;
    }
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

/// A stateless (2026-07-28) JSON-RPC request to `/mcp`: the protocol
/// version in a header and in `_meta`, and the SEP-2243 routing headers.
pub(crate) fn stateless(
    client: &reqwest::Client,
    url: &str,
    method: &str,
    params: Value,
) -> reqwest::RequestBuilder {
    let mut params = params;
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "vesta-it", "version": "0"},
    });
    let name = match method {
        "tools/call" | "prompts/get" => params["name"].as_str(),
        "resources/read" => params["uri"].as_str(),
        _ => None,
    }
    .map(str::to_string);
    let mut b = client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", MODERN)
        .header("mcp-method", method);
    if let Some(n) = name {
        b = b.header("mcp-name", n);
    }
    b.body(json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string())
}

/// One stateless JSON-RPC request to `/mcp` (no session needed).
pub(crate) async fn rpc(
    client: &reqwest::Client,
    url: &str,
    method: &str,
    params: Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let r = stateless(client, url, method, params)
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

/// The JSON-RPC message of a response: the JSON body, or the first
/// JSON-RPC message among the SSE events (session responses are streams).
fn jsonrpc_of(content_type: &str, text: &str) -> Value {
    if content_type.starts_with("text/event-stream") {
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .find(|v| v.get("jsonrpc").is_some())
            .unwrap_or(json!({"raw": text}))
    } else {
        serde_json::from_str(text).unwrap_or(json!({"raw": text}))
    }
}

/// One message in session mode (2025-11-25): `session` is the
/// `Mcp-Session-Id` (none for `initialize`).
async fn in_session(
    client: &reqwest::Client,
    url: &str,
    session: Option<&str>,
    message: Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut b = client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", HANDSHAKE);
    if let Some(id) = session {
        b = b.header("mcp-session-id", id);
    }
    let r = b.body(message.to_string()).send().await.expect("request");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let text = r.text().await.expect("body");
    (status, headers, jsonrpc_of(&ct, &text))
}

fn initialize() -> Value {
    json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": HANDSHAKE, "capabilities": {},
        "clientInfo": {"name": "vesta-it", "version": "0"}}})
}

fn request(id: u64, method: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": {}})
}

/// Opens a session with `initialize` and `notifications/initialized`;
/// returns its id.
async fn open_session(client: &reqwest::Client, url: &str) -> String {
    let (status, headers, v) = in_session(client, url, None, initialize()).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["result"]["protocolVersion"], HANDSHAKE, "{v}");
    let id = headers
        .get("mcp-session-id")
        .and_then(|h| h.to_str().ok())
        .expect("initialize answers with Mcp-Session-Id")
        .to_string();
    let (status, _, _) = in_session(
        client,
        url,
        Some(&id),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    assert_eq!(status, 202);
    id
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
    let r = stateless(&good, &url, "tools/list", json!({}))
        .header("origin", &s.root)
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
        stateless(&c, &url, "tools/list", json!({}))
            .header("host", host)
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

/// The session lifecycle of the handshake revisions over raw HTTP, its
/// bound, and the binding of a session to its opener's subject and client.
async fn sessions_over_raw_http(backend: Backend) {
    let s = SmartApp::start_with(backend, |s| s.mcp_max_sessions = 2).await;
    let url = format!("{}/mcp", s.root);
    let admin = client_with_token(&mcp_token(
        &s,
        "vesta-test-admin",
        "system/*.cruds",
        None,
        None,
    ));
    // A second token of the same client and subject (a refreshed one).
    let admin_again = client_with_token(&mcp_token(
        &s,
        "vesta-test-admin",
        "system/*.rs",
        None,
        None,
    ));
    let patient = client_with_token(&mcp_token(
        &s,
        "mcp-patient-app",
        "patient/*.rs",
        Some("p1"),
        Some("pat"),
    ));

    // initialize opens a session: Mcp-Session-Id, 2025-11-25 negotiated.
    let a = open_session(&admin, &url).await;
    let (status, headers, v) = in_session(&admin, &url, Some(&a), request(1, "tools/list")).await;
    assert_eq!(status, 200, "{v}");
    assert!(
        v["result"]["tools"]
            .as_array()
            .is_some_and(|t| t.len() >= 13),
        "{v}"
    );
    assert!(headers.get("mcp-session-id").is_none() || headers["mcp-session-id"] == a.as_str());
    // Each request still needs its own token; the same subject and client
    // may continue with another token.
    let (status, _, _) = in_session(&s.app.anon, &url, Some(&a), request(2, "tools/list")).await;
    assert_eq!(status, 401);
    let (status, _, v) = in_session(&admin_again, &url, Some(&a), request(3, "tools/list")).await;
    assert_eq!(status, 200, "{v}");
    // Another subject's token may not ride the session, and is audited.
    let (status, _, v) = in_session(&patient, &url, Some(&a), request(4, "tools/list")).await;
    assert_eq!(status, 403, "{v}");
    assert_eq!(v["resourceType"], "OperationOutcome", "{v}");
    let audit = s.app.get("AuditEvent?_count=200").await;
    assert!(
        audit
            .text
            .contains("403 via mcp: this MCP session was opened by another"),
        "{}",
        audit.text
    );
    // A handshake-revision request without the session id: 400; an unknown
    // or overlong id: 404.
    let (status, _, _) = in_session(&admin, &url, None, request(5, "tools/list")).await;
    assert_eq!(status, 400);
    for unknown in ["0f1e2d3c-0000-4000-8000-000000000000", &"a".repeat(200)] {
        let (status, _, v) =
            in_session(&admin, &url, Some(unknown), request(6, "tools/list")).await;
        assert_eq!(status, 404, "{v}");
    }

    // The bound: two live sessions, then 503 with Retry-After for a third
    // initialize, while stateless requests are still served.
    let b = open_session(&patient, &url).await;
    assert_ne!(a, b);
    let (status, headers, v) = in_session(&admin, &url, None, initialize()).await;
    assert_eq!(status, 503, "{v}");
    assert!(headers.contains_key("retry-after"));
    let (status, headers, v) = rpc(&admin, &url, "tools/list", json!({})).await;
    assert_eq!(status, 200, "{v}");
    assert!(v["result"]["tools"].is_array(), "{v}");
    assert!(
        headers.get("mcp-session-id").is_none(),
        "2026-07-28 is stateless"
    );

    // DELETE ends a session (only its opener may); its id is then unknown,
    // and there is room for a new one.
    let delete = |c: &reqwest::Client, id: &str| {
        c.delete(&url)
            .header("mcp-session-id", id)
            .header("mcp-protocol-version", HANDSHAKE)
            .send()
    };
    assert_eq!(delete(&patient, &a).await.unwrap().status().as_u16(), 403);
    let r = delete(&admin, &a).await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let (status, _, _) = in_session(&admin, &url, Some(&a), request(7, "tools/list")).await;
    assert_eq!(status, 404);
    let c = open_session(&admin, &url).await;
    // Tools work in a session like anywhere else (scopes of this token).
    let (status, _, v) = in_session(
        &patient,
        &url,
        Some(&b),
        json!({"jsonrpc": "2.0", "id": 8, "method": "tools/call",
               "params": {"name": "fhir_read", "arguments": {"type": "Patient", "id": "p2"}}}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["result"]["isError"], true, "p2 is outside the token: {v}");
    let (status, _, v) = in_session(
        &admin,
        &url,
        Some(&c),
        json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
               "params": {"name": "fhir_read", "arguments": {"type": "Patient", "id": "p2"}}}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["result"]["structuredContent"]["id"], "p2", "{v}");
}
both_backends!(sessions_over_raw_http);

/// A session with no message for `mcp_session_idle_s` is closed: 404.
async fn idle_sessions_time_out(backend: Backend) {
    let s = SmartApp::start_with(backend, |s| s.mcp_session_idle_s = 1).await;
    let url = format!("{}/mcp", s.root);
    let admin = client_with_token(&mcp_token(
        &s,
        "vesta-test-admin",
        "system/*.cruds",
        None,
        None,
    ));
    let a = open_session(&admin, &url).await;
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    let (status, _, v) = in_session(&admin, &url, Some(&a), request(1, "tools/list")).await;
    assert_eq!(status, 404, "{v}");
}
both_backends!(idle_sessions_time_out);

/// Every page of `resources/list` for a client: (uris per page).
async fn list_pages(c: &reqwest::Client, url: &str) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    while pages.len() < 20 {
        let params = match &cursor {
            Some(c) => json!({"cursor": c}),
            None => json!({}),
        };
        let (status, _, v) = rpc(c, url, "resources/list", params).await;
        assert_eq!(status, 200, "{v}");
        let uris: Vec<String> = v["result"]["resources"]
            .as_array()
            .unwrap_or_else(|| panic!("{v}"))
            .iter()
            .filter_map(|r| r["uri"].as_str().map(str::to_string))
            .collect();
        pages.push(uris);
        cursor = v["result"]["nextCursor"].as_str().map(str::to_string);
        if cursor.is_none() {
            break;
        }
    }
    pages
}

/// `resources/list` pages (opaque cursor, page size at most `max_count`)
/// over what the token may read: the patient's compartment for a patient
/// token, minus what a Consent withholds.
async fn resources_list_is_paged_over_what_the_token_may_read(backend: Backend) {
    let s = SmartApp::start_with(backend, |s| {
        s.limits.max_count = 3;
        s.limits.default_count = 3;
    })
    .await;
    let url = format!("{}/mcp", s.root);
    let enc = |n: &str| {
        json!({"resourceType": "Encounter", "id": n, "status": "finished",
               "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
               "subject": {"reference": "Patient/p1"}})
    };
    assert_eq!(s.app.put("Encounter/e1", &enc("e1")).await.status, 201);
    let patient = client_with_token(&mcp_token(
        &s,
        "mcp-patient-app",
        "patient/*.rs",
        Some("p1"),
        Some("pat"),
    ));
    let pages = list_pages(&patient, &url).await;
    assert!(pages.len() >= 2, "{pages:?}");
    assert!(pages.iter().all(|p| p.len() <= 3), "{pages:?}");
    let mut all: Vec<String> = pages.concat();
    assert_eq!(all[0], "fhir://metadata");
    all.sort();
    let mut want = vec![
        "fhir://Encounter/e1",
        "fhir://Observation/p1-laboratory",
        "fhir://Observation/p1-vital-signs",
        "fhir://Patient/p1",
        "fhir://metadata",
    ];
    want.sort();
    assert_eq!(all, want, "{pages:?}");

    // The cursor round trip: the same cursor gives the same page.
    let (_, _, first) = rpc(&patient, &url, "resources/list", json!({})).await;
    let cursor = first["result"]["nextCursor"].as_str().expect("a cursor");
    let again = |c: &str| rpc(&patient, &url, "resources/list", json!({"cursor": c}));
    let (_, _, one) = again(cursor).await;
    let (_, _, two) = again(cursor).await;
    assert_eq!(one["result"], two["result"]);
    assert!(one["result"]["resources"]
        .as_array()
        .is_some_and(|r| !r.is_empty()));
    // A cursor this server did not give: a JSON-RPC error, nothing run.
    let forged = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        "_count=3&_id=p2",
    );
    for bad in ["not a cursor!", forged.as_str()] {
        let (status, _, v) = again(bad).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["error"]["code"], -32602, "{v}");
    }

    // A user whose access a Consent narrows: p2's lab Observation is withheld.
    let consent = json!({"resourceType": "Consent", "id": "c-p2", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": "Patient/p2"},
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
        "provision": {"type": "permit", "provision": [{"type": "deny",
            "data": [{"meaning": "instance", "reference": {"reference": "Observation/p2-laboratory"}}]}]}});
    assert_eq!(s.app.put("Consent/c-p2", &consent).await.status, 201);
    let alice = client_with_token(&mcp_token(
        &s,
        "vesta-demo-app",
        "user/*.rs",
        None,
        Some("alice"),
    ));
    let all: Vec<String> = list_pages(&alice, &url).await.concat();
    for seen in [
        "fhir://Patient/p2",
        "fhir://Observation/p2-vital-signs",
        "fhir://Observation/p1-laboratory",
    ] {
        assert!(all.iter().any(|u| u == seen), "{seen} missing: {all:?}");
    }
    assert!(
        !all.iter().any(|u| u == "fhir://Observation/p2-laboratory"),
        "{all:?}"
    );
    let mut unique = all.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), all.len(), "listed twice: {all:?}");
}
both_backends!(resources_list_is_paged_over_what_the_token_may_read);

/// The MCP Inspector CLI (`tests/node/package-lock.json`, installed by
/// `tests/node/bootstrap.sh` beside the build cache) lists the tools and
/// calls one with a bearer header. Skipped, saying so, where npx is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_inspector_cli() {
    if std::process::Command::new("npx")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED mcp_inspector_cli: npx is not installed (Node.js/npm needed)");
        return;
    }
    let dir = crate::helpers::node::tools_dir().await;
    let s = SmartApp::start(Backend::Sqlite).await;
    let url = format!("{}/mcp", s.root);
    let token = mcp_token(&s, "vesta-test-admin", "system/*.cruds", None, None);
    let home = tempfile::tempdir().expect("temp HOME");
    let inspector = |args: &[&str]| {
        let mut cmd = tokio::process::Command::new("npx");
        cmd.args(["--no", "--prefix"])
            .arg(&dir)
            .args(["--", "mcp-inspector", "--cli", &url])
            .args(args)
            // The inspector keeps a catalog in ~/.mcp-inspector: not ours.
            .env("HOME", home.path())
            .env("npm_config_cache", dir.join("npm-cache"))
            .env("npm_config_update_notifier", "false")
            .kill_on_drop(true);
        cmd
    };
    let run = |mut cmd: tokio::process::Command| async move {
        let out = tokio::time::timeout(std::time::Duration::from_secs(120), cmd.output())
            .await
            .expect("the inspector took over 120 s")
            .expect("run npx");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let bearer = format!("Authorization: Bearer {token}");
    let (code, out, err) = run(inspector(&["--method", "tools/list", "--header", &bearer])).await;
    assert_eq!(code, Some(0), "{out}\n{err}");
    let listed: Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out}"));
    let names: Vec<&str> = listed["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(
        names.contains(&"fhir_read") && names.contains(&"patient_summary"),
        "{names:?}"
    );
    let (code, out, err) = run(inspector(&[
        "--method",
        "tools/call",
        "--tool-name",
        "fhir_read",
        "--tool-arg",
        "type=Patient",
        "id=p1",
        "--header",
        &bearer,
    ]))
    .await;
    assert_eq!(code, Some(0), "{out}\n{err}");
    let called: Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out}"));
    assert_eq!(called["structuredContent"]["id"], "p1", "{called}");
    assert_eq!(called["isError"], false, "{called}");
    // Without a valid token the inspector is refused (it cannot sign in
    // interactively here).
    let (code, out, err) = run(inspector(&[
        "--method",
        "tools/list",
        "--header",
        "Authorization: Bearer not-a-token",
    ]))
    .await;
    assert_ne!(code, Some(0), "{out}\n{err}");
    assert!(!out.contains("fhir_read"), "{out}");
}
