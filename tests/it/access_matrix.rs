//! The access matrix: every read path, and every write's pre-read (the
//! paths in `tests/data/access-matrix/paths.json`, over REST, Bundles and
//! MCP) × every denial kind (Consent by actor, by class, by label on a later
//! version, by period, by role alone; a scope without the type; an update-only scope;
//! `self_only`; another patient's compartment) × the token kinds each
//! applies to (user, patient launch, backend).
//!
//! Each scenario builds two worlds on one server: a *hidden* target (a
//! Patient and its two-version Observation that the scenario denies to the
//! subject token) and an *absent* one (the same records, minus what the
//! scenario hides). Every path runs in both worlds with the subject token,
//! and the two answers must be the same once the worlds' names are
//! normalised: status, body and counts. Denied is indistinguishable from
//! absent. The hidden target's content markers must never appear. A
//! control token, which may see the target, must get a different answer
//! from the subject on every read path (so each path does reach the target
//! and the check on it is what hides it); writes leave the target as it was.

use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::smart::SmartApp;
use crate::helpers::{client_with_token, mint, Backend};
use crate::mcp::{mcp_token, rpc};

/// The placeholder → (hidden world's value, absent world's value) table.
const SUBS: &[(&str, &str, &str)] = &[
    ("{OID}", "hidn-obs", "absn-obs"),
    ("{PID}", "hidn", "absn"),
    ("{FAM}", "Hiddenfam", "Absentfam"),
    ("{PIDENT}", "HX-1", "AX-1"),
    ("{BIRTH}", "1901-02-03", "1902-03-04"),
    ("{CODE}", "HXCODE", "AXCODE"),
    ("{OIDENT}", "HXO-1", "AXO-1"),
    ("{PMARK}", "Zebulonhx", "Zebulonax"),
    ("{OMARK}", "Obsnotehx", "Obsnoteax"),
];

/// Content that only the hidden Patient (P) and Observation (O) carry, and
/// that no path sends (so no echo of a query can be mistaken for a leak).
const MARK_P: &str = "Zebulonhx";
const MARK_O: &str = "Obsnotehx";

#[derive(Clone, Copy, PartialEq)]
enum World {
    Hidden,
    Absent,
}

fn fill(template: &str, w: World) -> String {
    let mut s = template.to_string();
    for (k, hidden, absent) in SUBS {
        s = s.replace(k, if w == World::Hidden { hidden } else { absent });
    }
    s
}

fn fill_json(v: &Value, w: World) -> Value {
    serde_json::from_str(&fill(&v.to_string(), w)).expect("filled json")
}

/// An answer with both worlds' names replaced by the placeholders, and
/// what legitimately differs between two requests (times, versions, links,
/// generated ids) taken out.
fn normalise(status: u16, body: &str) -> (u16, Value) {
    let mut text = body.to_string();
    for (k, hidden, absent) in SUBS {
        text = text.replace(hidden, k).replace(absent, k);
    }
    let v = serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text));
    (status, strip(v))
}

fn strip(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let is_bundle = m.get("resourceType") == Some(&json!("Bundle"));
            let mut out = serde_json::Map::new();
            for (k, v) in m {
                let volatile = matches!(
                    k.as_str(),
                    "lastUpdated"
                        | "lastModified"
                        | "versionId"
                        | "timestamp"
                        | "link"
                        | "etag"
                        | "location"
                ) || (is_bundle && k == "id")
                    || (k == "id" && v.as_str().is_some_and(looks_generated));
                if !volatile {
                    out.insert(k, strip(v));
                }
            }
            Value::Object(out)
        }
        Value::Array(a) => {
            let mut items: Vec<Value> = a.into_iter().map(strip).collect();
            // Entry order among equals is not what is compared.
            items.sort_by_key(|x| x.to_string());
            Value::Array(items)
        }
        Value::String(s) if looks_generated(&s) => Value::String("UUID".into()),
        other => other,
    }
}

/// A server-assigned id (uuid v4 text).
fn looks_generated(s: &str) -> bool {
    s.len() == 36 && s.chars().filter(|c| *c == '-').count() == 4
}

struct Token {
    label: &'static str,
    rest: reqwest::Client,
    mcp: reqwest::Client,
}

fn token(
    s: &SmartApp,
    label: &'static str,
    client: &str,
    scopes: &str,
    patient: Option<&str>,
    user: Option<&str>,
) -> Token {
    let rest = mint(&s.app.settings, &s.app.base, client, scopes, patient, user);
    let mcp = mcp_token(s, client, scopes, patient, user);
    Token {
        label,
        rest: client_with_token(&rest),
        mcp: client_with_token(&mcp),
    }
}

/// A token kind: (label, client, scopes, launch patient, user).
type Subject = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
);

/// One denial kind: what it stores, what it hides, who is denied and who
/// may see the target.
struct Scenario {
    name: &'static str,
    /// Which of the target's resources it hides: "P", "O" or "PO".
    hides: &'static str,
    /// A Consent on the target patient (and, in the absent world, the same
    /// Consent on the absent patient): its `provision`.
    consent: Option<Value>,
    subjects: Vec<Subject>,
    control: (
        &'static str,
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
    ),
    /// Paths this kind does not deny (the token may do them by right).
    except: &'static [&'static str],
}

const ALICE: &str = "Practitioner/dr-alice";

fn deny_alice(extra: Value) -> Value {
    let mut deny = json!({"type": "deny", "actor": [{
        "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "PRCP"}]},
        "reference": {"reference": ALICE}}]});
    if let (Some(d), Some(e)) = (deny.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            d.insert(k.clone(), v.clone());
        }
    }
    json!({"type": "permit", "provision": [deny]})
}

fn scenarios() -> Vec<Scenario> {
    let alice_user = (
        "user",
        "vesta-demo-app",
        "user/*.cruds",
        None,
        Some("alice"),
    );
    let alice_launch = (
        "patient launch",
        "vesta-demo-app",
        "patient/*.cruds",
        Some("{PID}"),
        Some("alice"),
    );
    let rita = ("vesta-demo-app", "user/*.rs", None, Some("rita"));
    vec![
        Scenario {
            name: "Consent by actor",
            hides: "PO",
            consent: Some(deny_alice(json!({}))),
            subjects: vec![alice_user, alice_launch],
            control: rita,
            except: &[],
        },
        Scenario {
            // R4 requires `actor.reference`: a role-only actor gives a
            // reference with a display alone, and its role code decides.
            name: "Consent by role",
            hides: "PO",
            consent: Some(
                json!({"type": "permit", "provision": [{"type": "deny", "actor": [{
                "role": {"coding": [{"system": "urn:vesta:role", "code": "clinician"}]},
                "reference": {"display": "every clinician"}}]}]}),
            ),
            subjects: vec![alice_user],
            control: rita,
            except: &[],
        },
        Scenario {
            name: "Consent by class",
            hides: "O",
            consent: Some(deny_alice(json!({"class": [
                {"system": "http://hl7.org/fhir/resource-types", "code": "Observation"}]}))),
            subjects: vec![alice_user],
            control: rita,
            except: &[],
        },
        Scenario {
            name: "Consent by label on a later version",
            hides: "O",
            consent: Some(deny_alice(json!({"securityLabel": [
                {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]}))),
            subjects: vec![alice_user, alice_launch],
            control: rita,
            except: &[],
        },
        Scenario {
            name: "Consent by period",
            hides: "PO",
            consent: Some(deny_alice(
                json!({"period": {"start": "2000-01-01", "end": "2999-12-31"}}),
            )),
            subjects: vec![alice_user],
            control: rita,
            except: &[],
        },
        Scenario {
            name: "scope without the type",
            hides: "O",
            consent: None,
            subjects: vec![
                (
                    "user",
                    "vesta-demo-app",
                    "user/Patient.cruds",
                    None,
                    Some("alice"),
                ),
                (
                    "backend",
                    "vesta-test-admin",
                    "system/Patient.cruds",
                    None,
                    None,
                ),
            ],
            control: ("vesta-demo-app", "user/*.cruds", None, Some("alice")),
            except: &[],
        },
        Scenario {
            name: "update-only scope",
            hides: "O",
            consent: None,
            subjects: vec![(
                "user",
                "vesta-demo-app",
                "user/Observation.u user/Patient.rs",
                None,
                Some("alice"),
            )],
            control: ("vesta-demo-app", "user/*.cruds", None, Some("alice")),
            // Overwriting is what `.u` grants: a PUT is not a read.
            except: &["PUT over it", "transaction PUT entry"],
        },
        Scenario {
            name: "self_only",
            hides: "PO",
            consent: None,
            subjects: vec![("user", "vesta-demo-app", "user/*.cruds", None, Some("pat"))],
            control: rita,
            except: &[],
        },
        Scenario {
            name: "another patient's compartment",
            hides: "PO",
            consent: None,
            subjects: vec![(
                "patient launch",
                "vesta-demo-app",
                "patient/*.cruds",
                Some("p2"),
                Some("alice"),
            )],
            control: (
                "vesta-demo-app",
                "patient/*.rs",
                Some("hidn"),
                Some("alice"),
            ),
            except: &[],
        },
    ]
}

/// Stores one world: the Patient unless it is hidden-and-absent, the
/// Observation (two versions, the second labelled R) likewise, and the
/// scenario's Consent.
async fn store_world(s: &SmartApp, sc: &Scenario, w: World) {
    let app = &s.app;
    let keep = |what: &str| w == World::Hidden || !sc.hides.contains(what);
    if keep("P") {
        let p = fill_json(
            &json!({"resourceType": "Patient", "id": "{PID}",
                "identifier": [{"system": "urn:matrix", "value": "{PIDENT}"}],
                "name": [{"family": "{FAM}", "given": ["{PMARK}"]}], "birthDate": "{BIRTH}"}),
            w,
        );
        let r = app.put(&fill("Patient/{PID}", w), &p).await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    if keep("O") {
        let mut o = fill_json(
            &json!({"resourceType": "Observation", "id": "{OID}", "status": "final",
                "identifier": [{"system": "urn:matrix", "value": "{OIDENT}"}],
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
                "code": {"coding": [{"system": "urn:matrix", "code": "{CODE}"}], "text": "{OMARK}"},
                "subject": {"reference": "Patient/{PID}"}, "valueString": "first"}),
            w,
        );
        let r = app.put(&fill("Observation/{OID}", w), &o).await;
        assert_eq!(r.status, 201, "{}", r.text);
        o["valueString"] = json!("second");
        o["meta"] = json!({"security": [
            {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]});
        let r = app.put(&fill("Observation/{OID}", w), &o).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    if let Some(provision) = &sc.consent {
        let c = fill_json(
            &json!({"resourceType": "Consent", "id": "consent-{PID}", "status": "active",
                "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
                "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
                "patient": {"reference": "Patient/{PID}"},
                "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
                "provision": provision}),
            w,
        );
        let r = app.put(&fill("Consent/consent-{PID}", w), &c).await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
}

/// Sends one path as `who` in world `w`: (status, body text).
async fn send(s: &SmartApp, who: &Token, path: &Value, w: World) -> (u16, String) {
    let base = &s.app.base;
    let mcp_url = format!("{}/mcp", s.root);
    let p = |k: &str| fill(path[k].as_str().unwrap_or_default(), w);
    let url = |rel: String| {
        if rel.starts_with('?') {
            format!("{base}{rel}")
        } else {
            format!("{base}/{rel}")
        }
    };
    let c = &who.rest;
    let fhir_json = "application/fhir+json";
    let req = match path["method"].as_str().unwrap_or_default() {
        "GET" => c.get(url(p("path"))),
        "POST_SEARCH" => c
            .post(url(p("path")))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(p("form")),
        "DELETE" => c.delete(url(p("path"))),
        "PUT" => c
            .put(url(p("path")))
            .header("content-type", fhir_json)
            .body(fill_json(&path["body"], w).to_string()),
        "PATCH" | "PATCH_MINIMAL" => {
            let mut b = c
                .patch(url(p("path")))
                .header("content-type", "application/json-patch+json")
                .body(fill_json(&path["body"], w).to_string());
            if path["method"] == "PATCH_MINIMAL" {
                b = b.header("prefer", "return=minimal");
            }
            b
        }
        "POST_IF_NONE_EXIST" => c
            .post(url(p("path")))
            .header("content-type", fhir_json)
            .header("if-none-exist", p("if_none_exist"))
            .body(fill_json(&path["body"], w).to_string()),
        "BATCH" => {
            let entries: Vec<Value> = path["entries"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(|e| json!({"request": {"method": "GET", "url": fill(e, w)}}))
                .collect();
            c.post(base).header("content-type", fhir_json).body(
                json!({"resourceType": "Bundle", "type": "batch", "entry": entries}).to_string(),
            )
        }
        "TRANSACTION" => c.post(base).header("content-type", fhir_json).body(
            json!({"resourceType": "Bundle", "type": "transaction",
                "entry": fill_json(&path["entries"], w)})
            .to_string(),
        ),
        "MCP_TOOL" => {
            let (status, _, v) = rpc(
                &who.mcp,
                &mcp_url,
                "tools/call",
                json!({"name": path["tool"], "arguments": fill_json(&path["args"], w)}),
            )
            .await;
            return (status, v.to_string());
        }
        "MCP_READ" => {
            let (status, _, v) = rpc(
                &who.mcp,
                &mcp_url,
                "resources/read",
                json!({"uri": p("uri")}),
            )
            .await;
            return (status, v.to_string());
        }
        "MCP_LIST" => {
            let (status, _, v) = rpc(&who.mcp, &mcp_url, "resources/list", json!({})).await;
            return (status, v.to_string());
        }
        other => panic!("unknown method {other}"),
    };
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.text().await.expect("body"))
}

fn markers(hides: &str) -> Vec<&'static str> {
    let mut m = Vec::new();
    if hides.contains('P') {
        m.push(MARK_P);
    }
    if hides.contains('O') {
        m.push(MARK_O);
    }
    m
}

async fn every_path_hides_what_it_must(backend: Backend) {
    let paths: Value = serde_json::from_str(
        &std::fs::read_to_string(crate::helpers::data_dir().join("access-matrix/paths.json"))
            .expect("paths.json"),
    )
    .expect("paths json");
    let paths = paths["paths"].as_array().expect("paths").clone();
    let mut failures: Vec<String> = Vec::new();
    let mut cells = 0;
    for sc in scenarios() {
        let s = SmartApp::start(backend).await;
        store_world(&s, &sc, World::Hidden).await;
        store_world(&s, &sc, World::Absent).await;
        let (cc, cs, cp, cu) = sc.control;
        let control = token(&s, "control", cc, cs, cp, cu);
        // A subject's token in each world (a launch names that world's patient).
        let subjects: Vec<(Token, Token)> = sc
            .subjects
            .iter()
            .map(|(label, client, scopes, patient, user)| {
                let in_world = |w| {
                    let p = patient.map(|p| fill(p, w));
                    token(&s, label, client, scopes, p.as_deref(), *user)
                };
                (in_world(World::Hidden), in_world(World::Absent))
            })
            .collect();
        let relevant = |path: &Value| {
            let target = path["target"].as_str().unwrap_or_default();
            let name = path["name"].as_str().unwrap_or_default();
            target.chars().any(|t| sc.hides.contains(t)) && !sc.except.contains(&name)
        };
        // Reads first, then writes (which must change nothing).
        for writes in [false, true] {
            for path in paths.iter().filter(|p| relevant(p)) {
                if path["write"].as_bool().unwrap_or(false) != writes {
                    continue;
                }
                let name = path["name"].as_str().unwrap_or_default();
                for (who, who_absent) in &subjects {
                    cells += 1;
                    let cell = format!("[{}] {} × {name}", sc.name, who.label);
                    let (hs, hb) = send(&s, who, path, World::Hidden).await;
                    let (as_, ab) = send(&s, who_absent, path, World::Absent).await;
                    if hs >= 500 || as_ >= 500 {
                        failures.push(format!("{cell}: server error {hs}/{as_}: {hb}"));
                        continue;
                    }
                    // Links echo the query; what is checked is the content.
                    let content = strip(
                        serde_json::from_str::<Value>(&hb).unwrap_or(Value::String(hb.clone())),
                    )
                    .to_string();
                    for m in markers(sc.hides) {
                        if content.contains(m) {
                            failures.push(format!("{cell}: the hidden {m} leaked: {hb}"));
                        }
                    }
                    let (hidden, absent) = (normalise(hs, &hb), normalise(as_, &ab));
                    if hidden != absent {
                        failures.push(format!(
                            "{cell}: denied differs from absent:\n  hidden {} {}\n  absent {} {}",
                            hidden.0, hidden.1, absent.0, absent.1
                        ));
                    }
                    if !writes {
                        let (cs, cb) = send(&s, &control, path, World::Hidden).await;
                        let both_refused = cs == 403 && hs == 403;
                        if normalise(cs, &cb) == hidden && !both_refused {
                            failures.push(format!(
                                "{cell}: the control token gets the same answer, so this path does not reach the target: {cs} {cb}"
                            ));
                        }
                    }
                }
            }
        }
        // The writes changed nothing of the hidden target.
        for (what, path, version) in [
            ("O", "Observation/hidn-obs", "2"),
            ("P", "Patient/hidn", "1"),
        ] {
            if !sc.hides.contains(what) {
                continue;
            }
            let r = s.app.get(path).await;
            if r.status != 200 || r.json()["meta"]["versionId"] != version {
                failures.push(format!(
                    "[{}] a write changed the hidden {path}: {} {}",
                    sc.name, r.status, r.text
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {cells} cells failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("access matrix: {cells} cells passed on {backend:?}");
}
both_backends!(every_path_hides_what_it_must);
