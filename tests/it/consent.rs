//! Consent enforcement, adversarially: a resource a patient's Consent
//! denies is never returned or counted through read, vread, history,
//! search, chain, `_has`, `_include`, `_revinclude`, `_summary=count`,
//! `$everything`, batch GET or compartment search; a nested permit lets its
//! actor through; break-glass overrides a deny for allowed roles only and is
//! flagged in the audit trail; opt-in withholds patients without a Consent.

use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::smart::SmartApp;
use crate::helpers::{client_with_token, eventually, Backend};

/// Patient p2's Consent: share everything, except the lab Observation,
/// which only Dr Rita may see.
fn consent_p2() -> Value {
    json!({"resourceType": "Consent", "id": "c-p2", "status": "active",
    "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
    "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
    "patient": {"reference": "Patient/p2"},
    "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
    "provision": {"type": "permit", "provision": [{
        "type": "deny",
        "data": [{"meaning": "instance", "reference": {"reference": "Observation/p2-laboratory"}}],
        "provision": [{"type": "permit",
            "actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "PRCP"}]},
                       "reference": {"reference": "Practitioner/dr-rita"}}]}]
    }]}})
}

struct Who {
    client: reqwest::Client,
    base: String,
}

impl Who {
    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .client
            .get(format!("{}/{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn get_with(&self, path: &str, purpose: &str) -> (u16, Value) {
        let r = self
            .client
            .get(format!("{}/{path}", self.base))
            .header("x-purpose-of-use", purpose)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// The `Type/id` of every resource in a Bundle.
    async fn ids(&self, path: &str) -> Vec<String> {
        let (status, b) = self.get(path).await;
        assert_eq!(status, 200, "{path}: {b}");
        ids_of(&b)
    }
}

fn ids_of(b: &Value) -> Vec<String> {
    b["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let r = &e["resource"];
            Some(format!(
                "{}/{}",
                r["resourceType"].as_str()?,
                r["id"].as_str()?
            ))
        })
        .filter(|s| !s.starts_with("OperationOutcome/"))
        .collect()
}

const LAB: &str = "Observation/p2-laboratory";

async fn denied_resources_never_leak(backend: Backend) {
    let s = SmartApp::start(backend).await;
    let app = &s.app;
    let r = app.put("Consent/c-p2", &consent_p2()).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let dr = json!({"resourceType": "DiagnosticReport", "id": "dr2", "status": "final",
        "code": {"text": "panel"}, "subject": {"reference": "Patient/p2"},
        "result": [{"reference": LAB}]});
    assert_eq!(app.put("DiagnosticReport/dr2", &dr).await.status, 201);
    let user = |name: &str| Who {
        client: client_with_token(&app.user_token(name)),
        base: app.base.clone(),
    };
    let alice = user("alice"); // denied by the Consent
    let rita = user("rita"); // the nested permit's actor

    // Direct reads answer as if the resource did not exist.
    assert_eq!(alice.get(LAB).await.0, 404);
    assert_eq!(alice.get(&format!("{LAB}/_history/1")).await.0, 404);
    assert_eq!(rita.get(LAB).await.0, 200);
    assert_eq!(alice.get("Observation/p2-vital-signs").await.0, 200);
    // History (instance, type, system).
    // Instance history of a hidden resource answers like an absent id.
    assert_eq!(alice.get(&format!("{LAB}/_history")).await.0, 404);
    assert!(!alice
        .ids("Observation/_history")
        .await
        .contains(&LAB.to_string()));
    assert!(rita
        .ids("Observation/_history")
        .await
        .contains(&LAB.to_string()));
    // Search, compartment search, counts.
    let searches = [
        "Observation?subject=Patient/p2",
        "Patient/p2/Observation",
        "Patient/p2/*",
        "Patient/p2/$everything",
        "Observation?_id=p2-laboratory",
        "DiagnosticReport?_include=DiagnosticReport:result",
        "Patient?_id=p2&_revinclude=Observation:subject",
        "?_type=Observation,Patient",
    ];
    for q in searches {
        let a = alice.ids(q).await;
        assert!(
            !a.contains(&LAB.to_string()),
            "alice saw the lab via {q}: {a:?}"
        );
        let r = rita.ids(q).await;
        assert!(
            r.contains(&LAB.to_string()),
            "rita did not see the lab via {q}: {r:?}"
        );
    }
    for (q, alice_n, rita_n) in [
        ("Observation?subject=Patient/p2&_summary=count", 1, 2),
        ("Observation?_total=accurate&subject=Patient/p2", 1, 2),
        // Chain and _has through the denied Observation are no oracle.
        (
            "DiagnosticReport?result:Observation.category=laboratory&_summary=count",
            0,
            1,
        ),
        (
            "Patient?_has:Observation:subject:category=laboratory&_id=p2&_summary=count",
            0,
            1,
        ),
    ] {
        let (st, b) = alice.get(q).await;
        assert_eq!(
            (st, b["total"].as_i64()),
            (200, Some(alice_n)),
            "alice {q}: {b}"
        );
        let (st, b) = rita.get(q).await;
        assert_eq!(
            (st, b["total"].as_i64()),
            (200, Some(rita_n)),
            "rita {q}: {b}"
        );
    }
    // Pages stay full: the denied resource does not leave a hole.
    let page = alice.ids("Observation?_count=3&_sort=_id").await;
    assert_eq!(page.len(), 3, "{page:?}");
    // Batch GET entries.
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": LAB}},
        {"request": {"method": "GET", "url": "Observation?subject=Patient/p2"}}]});
    let r = alice
        .client
        .post(&app.base)
        .header("content-type", "application/fhir+json")
        .body(batch.to_string())
        .send()
        .await
        .unwrap();
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["entry"][0]["response"]["status"], "404", "{b}");
    assert!(!ids_of(&b["entry"][1]["resource"]).contains(&LAB.to_string()));

    // Break-glass: a clinician may assert it and sees the lab, flagged in
    // the audit trail; a read-only role may not.
    let (st, _) = alice.get_with(LAB, "ETREAT").await;
    assert_eq!(st, 200);
    let (st, b) = rita.get_with("Observation/p2-vital-signs", "BTG").await;
    assert_eq!(st, 403, "{b}");
    let audits = app
        .get("AuditEvent?entity=Observation/p2-laboratory&subtype=read")
        .await;
    let audit_bundle = audits.json();
    let flagged: Vec<&Value> = audit_bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["resource"]["purposeOfEvent"][0]["coding"][0]["code"] == "BTG")
        .collect();
    assert_eq!(flagged.len(), 1, "{}", audits.text);
    assert_eq!(flagged[0]["resource"]["outcome"], "0");
}
both_backends!(denied_resources_never_leak);

async fn opt_in_withholds_patients_without_consent(backend: Backend) {
    let s = SmartApp::start_with(backend, |st| st.consent_default = "deny".into()).await;
    let app = &s.app;
    let alice = Who {
        client: client_with_token(&app.user_token("alice")),
        base: app.base.clone(),
    };
    assert_eq!(alice.get("Patient/p1").await.0, 404);
    assert!(alice.ids("Observation").await.is_empty());
    assert_eq!(alice.get("Practitioner/dr-alice").await.0, 200);
    // p1 opts in.
    let mut c = consent_p2();
    c["id"] = json!("c-p1");
    c["patient"] = json!({"reference": "Patient/p1"});
    c["provision"] = json!({"type": "permit"});
    assert_eq!(app.put("Consent/c-p1", &c).await.status, 201);
    assert_eq!(alice.get("Patient/p1").await.0, 200);
    let seen = alice.ids("Observation").await;
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(
        seen.iter().all(|i| i.starts_with("Observation/p1-")),
        "{seen:?}"
    );
}
both_backends!(opt_in_withholds_patients_without_consent);

/// Consents are cached between requests under a change counter: a Consent
/// written on one instance hides the resource there at once, and on a second
/// instance of the same database once it reads the counter (every 250 ms);
/// deleting the Consent shows the resource again on both.
async fn consent_changes_reach_every_instance(backend: Backend) {
    let s = SmartApp::start(backend).await;
    let app = &s.app;
    let twin = app.twin().await;
    let token = app.user_token("alice");
    let here = Who {
        client: client_with_token(&token),
        base: app.base.clone(),
    };
    let there = Who {
        client: client_with_token(&token),
        base: twin.base.clone(),
    };
    // Both instances have read (and cached) "no Consent for p2".
    for _ in 0..3 {
        assert_eq!(here.get(LAB).await.0, 200);
        assert_eq!(there.get(LAB).await.0, 200);
    }
    let within = std::time::Duration::from_secs(5);
    assert_eq!(app.put("Consent/c-p2", &consent_p2()).await.status, 201);
    assert_eq!(here.get(LAB).await.0, 404, "the writing instance at once");
    let (status, took) = eventually(within, 404, || async { there.get(LAB).await.0 }).await;
    assert_eq!(status, 404, "the other instance never saw the Consent");
    assert!(took < within, "{took:?}");
    // Searches there leave it out too.
    assert!(!there
        .ids("Observation?subject=Patient/p2")
        .await
        .contains(&LAB.to_string()));
    assert_eq!(app.delete("Consent/c-p2").await.status, 204);
    assert_eq!(here.get(LAB).await.0, 200);
    let (status, _) = eventually(within, 200, || async { there.get(LAB).await.0 }).await;
    assert_eq!(status, 200, "the other instance never saw the delete");
}
both_backends!(consent_changes_reach_every_instance);
