//! Every request that reaches the server is exactly one audited event,
//! refusals included, from every door: the authorization server's
//! refusals (launch, authorize, token, registration, introspection,
//! revocation), MCP refusals (foreign Host, malformed JSON-RPC, bad tool
//! arguments) and dry runs, 414/431 from our own limits, unknown routes.
//!
//! Each case is sent with its own `X-Request-Id`; the total number of
//! AuditEvents must grow by exactly one for it (plus the one of the count
//! search itself), and exactly one AuditEvent must carry its request id,
//! with the expected outcome and subtype.

use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::smart::SmartApp;
use crate::helpers::{client_with_token, mint, Backend};
use crate::mcp::{mcp_token, stateless};

/// The number of AuditEvents (admin token). The search is itself audited,
/// after its answer is computed.
async fn total(s: &SmartApp) -> i64 {
    let r = s.app.get("AuditEvent?_summary=count").await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["total"].as_i64().expect("total")
}

/// The AuditEvents carrying request id `rid`.
async fn events_of(s: &SmartApp, rid: &str) -> Vec<Value> {
    let r = s.app.get("AuditEvent?_count=1000").await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|e| e["resource"].clone())
        .filter(|e| {
            e["entity"].as_array().into_iter().flatten().any(|x| {
                x["type"]["code"] == "XrequestId" && x["what"]["identifier"]["value"] == rid
            })
        })
        .collect()
}

/// One case: request id, the request (with that id), the expected HTTP
/// status, AuditEvent subtype and outcome.
struct Case {
    rid: &'static str,
    request: reqwest::RequestBuilder,
    status: u16,
    subtype: &'static str,
    outcome: &'static str,
}

fn case(
    rid: &'static str,
    request: reqwest::RequestBuilder,
    status: u16,
    subtype: &'static str,
    outcome: &'static str,
) -> Case {
    Case {
        rid,
        request: request.header("x-request-id", rid),
        status,
        subtype,
        outcome,
    }
}

/// A `tools/call` of `name` with `args`, stateless.
fn tool_call(c: &reqwest::Client, url: &str, name: &str, args: Value) -> reqwest::RequestBuilder {
    stateless(
        c,
        url,
        "tools/call",
        json!({"name": name, "arguments": args}),
    )
}

async fn every_request_is_exactly_one_audit_event(backend: Backend) {
    let s = SmartApp::start(backend).await;
    let root = s.root.clone();
    let anon = reqwest::Client::new();
    let admin = s.app.client.clone();
    let patient = client_with_token(&mint(
        &s.app.settings,
        &s.app.base,
        "mcp-patient-app",
        "patient/*.rs",
        Some("p1"),
        Some("pat"),
    ));
    let mcp_url = format!("{root}/mcp");
    let mcp = client_with_token(&mcp_token(
        &s,
        "vesta-test-admin",
        "system/*.cruds",
        None,
        None,
    ));
    let form = "application/x-www-form-urlencoded";
    let long_query = format!("{}/Patient?family={}", s.app.base, "x".repeat(40 * 1024));
    let mut many_headers = anon.get(format!("{}/metadata", s.app.base));
    for i in 0..70 {
        many_headers = many_headers.header(format!("x-filler-{i}"), "1");
    }
    let bundle = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": {"resourceType": "Patient", "name": [{"family": "Dry"}]},
         "request": {"method": "POST", "url": "Patient"}}]});

    let cases = vec![
        // The authorization server.
        case(
            "launch-no-token",
            anon.post(format!("{root}/auth/launch")).body("{}"),
            401,
            "launch",
            "4",
        ),
        case(
            "launch-patient-token",
            patient.post(format!("{root}/auth/launch")).body("{}"),
            403,
            "launch",
            "4",
        ),
        case(
            "launch-not-json",
            admin.post(format!("{root}/auth/launch")).body("not json"),
            400,
            "launch",
            "4",
        ),
        case(
            "launch-bad-id",
            admin
                .post(format!("{root}/auth/launch"))
                .body(json!({"patient": "not an id!"}).to_string()),
            400,
            "launch",
            "4",
        ),
        case(
            "authorize-no-client",
            s.browser.get(format!("{root}/auth/authorize?response_type=code")),
            400,
            "authorize",
            "4",
        ),
        case(
            "authorize-error-redirect",
            s.browser.get(format!(
                "{root}/auth/authorize?client_id=vesta-demo-app&redirect_uri=http://localhost:4000/callback&response_type=token&state=s"
            )),
            303,
            "authorize",
            "4",
        ),
        case(
            "token-bad-grant",
            anon.post(format!("{root}/auth/token"))
                .header("content-type", form)
                .body("grant_type=password"),
            400,
            "token-issued",
            "4",
        ),
        case(
            "token-too-long",
            anon.post(format!("{root}/auth/token"))
                .header("content-type", form)
                .body(format!("grant_type=x&pad={}", "y".repeat(40 * 1024))),
            400,
            "token",
            "4",
        ),
        case(
            "register-bad-token",
            anon.post(format!("{root}/auth/register"))
                .bearer_auth("not-a-token")
                .body("{}"),
            401,
            "register",
            "4",
        ),
        case(
            "introspect-no-client",
            anon.post(format!("{root}/auth/introspect"))
                .header("content-type", form)
                .body("token=abc"),
            401,
            "introspect",
            "4",
        ),
        case(
            "revoke-no-client",
            anon.post(format!("{root}/auth/revoke"))
                .header("content-type", form)
                .body("token=abc"),
            401,
            "revoke",
            "4",
        ),
        // The MCP door.
        case(
            "mcp-foreign-host",
            tool_call(&mcp, &mcp_url, "fhir_capabilities", json!({}))
                .header("host", "attacker.example"),
            403,
            "unparsed-request",
            "4",
        ),
        case(
            "mcp-malformed-jsonrpc",
            mcp.post(&mcp_url)
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .header("mcp-protocol-version", crate::mcp::MODERN)
                .body("{\"jsonrpc\": \"2.0\", \"id\": 1, \"method\": "),
            415,
            "unparsed-request",
            "4",
        ),
        case(
            "mcp-bad-id-argument",
            tool_call(
                &mcp,
                &mcp_url,
                "fhir_read",
                json!({"type": "Patient", "id": "no such id!"}),
            ),
            200,
            "fhir_read",
            "4",
        ),
        case(
            "mcp-unknown-argument",
            tool_call(
                &mcp,
                &mcp_url,
                "fhir_read",
                json!({"type": "Patient", "id": "p1", "bogus": 1}),
            ),
            200,
            "fhir_read",
            "4",
        ),
        case(
            "mcp-batch-dry-run",
            tool_call(&mcp, &mcp_url, "fhir_transaction", json!({"bundle": bundle})),
            200,
            "fhir_transaction",
            "0",
        ),
        // Our own limits below hyper's, and a path no route has.
        case("uri-too-long", anon.get(long_query), 414, "unparsed-request", "4"),
        case(
            "too-many-headers",
            many_headers,
            431,
            "unparsed-request",
            "4",
        ),
        case(
            "header-too-large",
            anon.get(format!("{}/metadata", s.app.base))
                .header("x-filler", "z".repeat(70 * 1024)),
            431,
            "unparsed-request",
            "4",
        ),
        case(
            "no-such-route",
            anon.get(format!("{root}/no/such/route")),
            404,
            "unparsed-request",
            "4",
        ),
    ];

    let mut failures = Vec::new();
    for c in cases {
        let before = total(&s).await;
        let r = c.request.send().await.expect("request");
        let status = r.status().as_u16();
        let body = r.text().await.unwrap_or_default();
        if status != c.status {
            failures.push(format!(
                "{}: status {status}, wanted {}: {body}",
                c.rid, c.status
            ));
            continue;
        }
        if c.rid == "mcp-batch-dry-run" {
            assert!(body.contains("\"dryRun\":true"), "{body}");
        }
        // One for the case, one for the count search before it.
        let grown = total(&s).await - before;
        let events = events_of(&s, c.rid).await;
        if grown != 2 || events.len() != 1 {
            failures.push(format!(
                "{}: {} new AuditEvent(s), {} with its request id",
                c.rid,
                grown - 1,
                events.len()
            ));
            continue;
        }
        let e = &events[0];
        if e["subtype"][0]["code"] != c.subtype || e["outcome"] != c.outcome {
            failures.push(format!(
                "{}: subtype {} outcome {}, wanted {} {}",
                c.rid, e["subtype"][0]["code"], e["outcome"], c.subtype, c.outcome
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
both_backends!(every_request_is_exactly_one_audit_event);
