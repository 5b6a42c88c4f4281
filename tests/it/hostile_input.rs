//! Hostile input through every door: deep (10 to 100,000 levels), wide and
//! malformed (truncated, seeded random bytes, invalid UTF-8) documents in
//! JSON and XML bodies, transaction Bundles, JSON Patch, FHIRPath (a stored
//! SearchParameter), search chains and `_has`, and MCP tool arguments, with
//! no token and with an administrator's. Every answer must be an HTTP answer
//! below 500 (a closed connection means the server died), and the server
//! must still answer `GET /fhir/metadata` after each door.
//!
//! Documents are built as text, never as `serde_json::Value` (dropping a
//! 100,000-deep value would overflow this test's own stack).

use serde_json::json;

use crate::both_backends;
use crate::helpers::smart::SmartApp;
use crate::helpers::{client_with_token, Backend};

const DEPTHS: [usize; 4] = [10, 100, 1_000, 100_000];

/// xorshift64*: repeatable pseudo-random bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| (self.next() >> 32) as u8).collect()
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn json_patient(levels: usize) -> String {
    format!(
        r#"{{"resourceType":"Patient","extension":[{}{{"url":"x","valueString":"v"}}{}]}}"#,
        r#"{"url":"x","extension":["#.repeat(levels.saturating_sub(1)),
        "]}".repeat(levels.saturating_sub(1))
    )
}

fn xml_patient(levels: usize) -> String {
    format!(
        "<Patient xmlns=\"http://hl7.org/fhir\">{}<valueString value=\"v\"/>{}</Patient>",
        "<extension url=\"x\">".repeat(levels),
        "</extension>".repeat(levels)
    )
}

fn json_bundle(resource: &str) -> String {
    format!(
        r#"{{"resourceType":"Bundle","type":"transaction","entry":[{{"request":{{"method":"POST","url":"Patient"}},"resource":{resource}}}]}}"#
    )
}

fn xml_bundle(resource: &str) -> String {
    format!(
        "<Bundle xmlns=\"http://hl7.org/fhir\"><type value=\"transaction\"/><entry><resource>{}</resource><request><method value=\"POST\"/><url value=\"Patient\"/></request></entry></Bundle>",
        resource.replace(" xmlns=\"http://hl7.org/fhir\"", "")
    )
}

/// Wide, duplicate-keyed and malformed variants of a valid `doc`, each
/// with whether it must be refused (a few random splices may stay valid).
fn variants(doc: &str, xml: bool, rng: &mut Rng) -> Vec<(Vec<u8>, bool)> {
    let mut out = Vec::new();
    // Wide: many siblings.
    if xml {
        out.push(xml_patient(1).replace("<valueString", &"<nickname value=\"w\"/>".repeat(20_000)));
        out.push(format!(
            "<Patient xmlns=\"http://hl7.org/fhir\" {}/>",
            (0..5_000)
                .map(|i| format!("a{i}=\"1\""))
                .collect::<Vec<_>>()
                .join(" ")
        ));
        out.push("<!--".repeat(50_000) + &"<a>".repeat(50_000));
    } else {
        let keys: Vec<String> = (0..5_000).map(|i| format!("\"k{i}\":{i}")).collect();
        out.push(format!(
            r#"{{"resourceType":"Patient",{}}}"#,
            keys.join(",")
        ));
        out.push(r#"{"resourceType":"Patient","active":true,"active":false}"#.to_string());
        out.push(
            r#"{"resourceType":"Patient","name":[{"family":"a","fam\u0069ly":"b"}]}"#.to_string(),
        );
        out.push(format!("[{}]", "1,".repeat(200_000) + "1"));
    }
    // fhirbolt ignores unknown XML attributes, so 5,000 of them pass.
    let mut out: Vec<(Vec<u8>, bool)> = out
        .into_iter()
        .enumerate()
        .map(|(i, d)| (d.into_bytes(), !(xml && i == 1)))
        .collect();
    // Truncated at seeded places.
    for _ in 0..4 {
        let cut = rng.below(doc.len());
        out.push((doc.as_bytes()[..cut].to_vec(), true));
    }
    // Random bytes, and the document with random bytes spliced in.
    for n in [1, 64, 4096] {
        out.push((rng.bytes(n), true));
    }
    let mut spliced = doc.as_bytes().to_vec();
    for _ in 0..8 {
        let at = rng.below(spliced.len());
        spliced[at] = (rng.next() >> 40) as u8;
    }
    out.push((spliced, false));
    // Invalid UTF-8 inside a string value.
    let mut bad = doc.as_bytes().to_vec();
    if let Some(at) = bad.iter().position(|b| *b == b'v') {
        bad.splice(at..at + 1, [0xff, 0xfe, 0xc0, 0x80]);
    }
    out.push((bad, true));
    out
}

struct Door<'a> {
    app: &'a SmartApp,
    clients: [(&'static str, reqwest::Client); 2],
}

impl Door<'_> {
    /// Sends `body` with every client and checks the answers: below 500
    /// always, 4xx when `refused` says the input must be refused.
    async fn send(
        &self,
        what: &str,
        method: reqwest::Method,
        path: &str,
        content_type: &str,
        body: &[u8],
        refused: bool,
    ) {
        for (who, client) in &self.clients {
            let url = format!("{}/fhir/{path}", self.app.root);
            let r = client
                .request(method.clone(), &url)
                .header("content-type", content_type)
                .body(body.to_vec())
                .send()
                .await
                .unwrap_or_else(|e| panic!("{what} ({who}): no answer, server died? {e}"));
            let status = r.status().as_u16();
            let text = r.text().await.unwrap_or_default();
            assert!(status < 500, "{what} ({who}): {status} {text:.300}");
            if refused {
                assert!(
                    (400..500).contains(&status),
                    "{what} ({who}): {status} {text:.300}"
                );
            }
        }
    }

    async fn alive(&self, after: &str) {
        let r = self
            .app
            .app
            .anon
            .get(format!("{}/fhir/metadata", self.app.root))
            .send()
            .await
            .unwrap_or_else(|e| panic!("metadata after {after}: {e}"));
        assert_eq!(r.status().as_u16(), 200, "metadata after {after}");
    }
}

async fn hostile_input(backend: Backend) {
    let s = SmartApp::start(backend).await;
    let door = Door {
        app: &s,
        clients: [
            ("no token", s.app.anon.clone()),
            ("admin", s.app.client.clone()),
        ],
    };
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let post = reqwest::Method::POST;
    const JSON: &str = "application/fhir+json";
    const XML: &str = "application/fhir+xml";

    // REST bodies and transaction Bundles, JSON and XML.
    for depth in DEPTHS {
        let deep = depth >= 100;
        let j = json_patient(depth);
        let x = xml_patient(depth);
        door.send(
            &format!("JSON body {depth}"),
            post.clone(),
            "Patient",
            JSON,
            j.as_bytes(),
            deep,
        )
        .await;
        door.send(
            &format!("XML body {depth}"),
            post.clone(),
            "Patient",
            XML,
            x.as_bytes(),
            deep,
        )
        .await;
        door.send(
            &format!("JSON transaction {depth}"),
            post.clone(),
            "",
            JSON,
            json_bundle(&j).as_bytes(),
            deep,
        )
        .await;
        door.send(
            &format!("XML transaction {depth}"),
            post.clone(),
            "",
            XML,
            xml_bundle(&x).as_bytes(),
            deep,
        )
        .await;
        let arrays = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        door.send(
            &format!("JSON arrays {depth}"),
            post.clone(),
            "Patient",
            JSON,
            arrays.as_bytes(),
            true,
        )
        .await;
        door.alive(&format!("bodies of depth {depth}")).await;
    }
    for (doc, ct, path) in [
        (json_patient(3), JSON, "Patient"),
        (xml_patient(3), XML, "Patient"),
        (json_bundle(&json_patient(3)), JSON, ""),
        (xml_bundle(&xml_patient(3)), XML, ""),
    ] {
        for (i, (v, refused)) in variants(&doc, ct == XML, &mut rng).iter().enumerate() {
            door.send(
                &format!("{ct} {path} variant {i}"),
                post.clone(),
                path,
                ct,
                v,
                *refused,
            )
            .await;
        }
        door.alive(&format!("{ct} {path} variants")).await;
    }

    // JSON Patch: deep values and paths, many operations, growth by copy.
    let created = s
        .app
        .client
        .post(format!("{}/fhir/Patient", s.root))
        .json(&json!({"resourceType": "Patient", "active": true}))
        .send()
        .await
        .expect("create");
    assert_eq!(created.status().as_u16(), 201);
    let id = created.json::<serde_json::Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string();
    let patch_path = format!("Patient/{id}");
    const PATCH: &str = "application/json-patch+json";
    for depth in DEPTHS {
        let value = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        let body = format!(r#"[{{"op":"add","path":"/extension","value":{value}}}]"#);
        door.send(
            &format!("patch value {depth}"),
            reqwest::Method::PATCH,
            &patch_path,
            PATCH,
            body.as_bytes(),
            true,
        )
        .await;
        let body = format!(
            r#"[{{"op":"add","path":"{}","value":1}}]"#,
            "/a".repeat(depth)
        );
        door.send(
            &format!("patch path {depth}"),
            reqwest::Method::PATCH,
            &patch_path,
            PATCH,
            body.as_bytes(),
            true,
        )
        .await;
    }
    let many = format!(
        "[{}]",
        vec![r#"{"op":"test","path":"/active","value":true}"#; 5_000].join(",")
    );
    door.send(
        "patch 5000 ops",
        reqwest::Method::PATCH,
        &patch_path,
        PATCH,
        many.as_bytes(),
        true,
    )
    .await;
    let copy = format!(
        r#"[{{"op":"add","path":"/contact","value":[{{"name":{{"text":"x"}}}}]}},{}]"#,
        vec![r#"{"op":"copy","from":"/contact","path":"/contact/0/a"}"#; 300].join(",")
    );
    door.send(
        "patch copy growth",
        reqwest::Method::PATCH,
        &patch_path,
        PATCH,
        copy.as_bytes(),
        true,
    )
    .await;
    for (i, (v, _)) in variants(
        r#"[{"op":"replace","path":"/active","value":false}]"#,
        false,
        &mut rng,
    )
    .iter()
    .enumerate()
    {
        door.send(
            &format!("patch variant {i}"),
            reqwest::Method::PATCH,
            &patch_path,
            PATCH,
            v,
            false,
        )
        .await;
    }
    door.alive("JSON Patch").await;

    // FHIRPath: a SearchParameter whose expression is deep, put in force.
    for depth in DEPTHS {
        for expr in [
            format!("{}Patient.id{}", "(".repeat(depth), ")".repeat(depth)),
            format!("Patient{}", ".id".repeat(depth)),
            format!("Patient.id{}", " | Patient.id".repeat(depth)),
            format!("{}1", "-".repeat(depth)),
        ] {
            let body = json!({"resourceType": "SearchParameter", "url": "http://example.org/sp",
                "name": "deep", "status": "active", "description": "d", "code": "deep",
                "base": ["Patient"], "type": "token", "expression": expr})
            .to_string();
            door.send(
                &format!("SearchParameter expression {depth}"),
                post.clone(),
                "SearchParameter",
                JSON,
                body.as_bytes(),
                false,
            )
            .await;
        }
    }
    door.send("$reindex", post.clone(), "$reindex", JSON, b"", false)
        .await;
    door.send(
        "write after reindex",
        post.clone(),
        "Patient",
        JSON,
        json_patient(30).as_bytes(),
        false,
    )
    .await;
    door.alive("FHIRPath").await;

    // Search: deep chains and _has, wide parameter lists, control characters.
    let get = reqwest::Method::GET;
    for depth in DEPTHS {
        let depth = depth.min(1_000);
        let chain = format!(
            "Patient?{}name=x",
            "general-practitioner:Organization.partof.".repeat(depth)
        );
        door.send(
            &format!("chain {depth}"),
            get.clone(),
            &chain,
            JSON,
            b"",
            true,
        )
        .await;
        let has = format!("Patient?{}name=x", "_has:Patient:link:".repeat(depth));
        door.send(&format!("_has {depth}"), get.clone(), &has, JSON, b"", true)
            .await;
        let include = format!(
            "Patient?{}",
            "_include:iterate=Patient:general-practitioner&".repeat(depth)
        );
        door.send(
            &format!("_include {depth}"),
            get.clone(),
            &include,
            JSON,
            b"",
            false,
        )
        .await;
    }
    for value in ["%00", "a%00", "%01x", "%7F", "%0A"] {
        door.send(
            &format!("control {value}"),
            get.clone(),
            &format!("Patient?name={value}"),
            JSON,
            b"",
            true,
        )
        .await;
    }
    let wide = format!("Patient?name={}", vec!["a"; 10_000].join(","));
    door.send("wide search", get.clone(), &wide, JSON, b"", true)
        .await;
    door.alive("search").await;

    // MCP tool arguments, deep and malformed, with and without a token.
    let mcp_url = format!("{}/mcp", s.root);
    let mcp = {
        let settings = &s.app.settings;
        let config = vesta::auth::smart_config::SmartConfig::load(&settings.smart_config_dir)
            .expect("smart-config");
        let token = vesta::auth::mint::mint(
            &settings.data_dir,
            &config,
            &s.app.base,
            &vesta::auth::mint::MintRequest {
                client_id: "vesta-test-admin".into(),
                scopes: "system/*.cruds".into(),
                patient: None,
                user: None,
                resources: vec![mcp_url.clone()],
                ttl_s: 3600,
            },
        )
        .expect("mint");
        client_with_token(&token)
    };
    let call = |args: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"fhir_create","arguments":{args},"_meta":{{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{{}},"io.modelcontextprotocol/clientInfo":{{"name":"vesta-it","version":"0"}}}}}}}}"#
        )
    };
    let mut bodies: Vec<(String, Vec<u8>)> = Vec::new();
    for depth in DEPTHS {
        let args = format!(
            r#"{{"type":"Patient","confirm":true,"resource":{}}}"#,
            json_patient(depth)
        );
        bodies.push((format!("MCP resource {depth}"), call(&args).into_bytes()));
        let args = format!(
            r#"{{"type":"Patient","x":{}1{}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        );
        bodies.push((format!("MCP argument {depth}"), call(&args).into_bytes()));
    }
    for (i, (v, _)) in variants(
        &call(r#"{"type":"Patient","resource":{"resourceType":"Patient"}}"#),
        false,
        &mut rng,
    )
    .into_iter()
    .enumerate()
    {
        bodies.push((format!("MCP variant {i}"), v));
    }
    for (what, body) in &bodies {
        for (who, client) in [("no token", &s.app.anon), ("mcp admin", &mcp)] {
            let r = client
                .post(&mcp_url)
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .header("mcp-protocol-version", "2026-07-28")
                .header("mcp-method", "tools/call")
                .header("mcp-name", "fhir_create")
                .body(body.clone())
                .send()
                .await
                .unwrap_or_else(|e| panic!("{what} ({who}): no answer, server died? {e}"));
            let status = r.status().as_u16();
            let text = r.text().await.unwrap_or_default();
            assert!(status < 500, "{what} ({who}): {status} {text:.300}");
            // A deep resource is refused: by HTTP status or as a tool error.
            if what.ends_with(" 1000") || what.ends_with(" 100000") || what.ends_with(" 100") {
                assert!(
                    status >= 400 || text.contains("\"isError\":true"),
                    "{what} ({who}): {status} {text:.300}"
                );
            }
        }
    }
    door.alive("MCP").await;
}
both_backends!(hostile_input);
