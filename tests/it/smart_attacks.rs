//! Findings of the outside attack suite, each kept as a regression test:
//! a self-only (patient) user confined to their own record through an EHR
//! launch, `vesta token` and forged patient claims.

use std::process::Command;

use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::smart::{
    hidden, location_params, param, pkce, SmartApp, PASSWORD, PUBLIC_CLIENT, REDIRECT,
};
use crate::helpers::Backend;

/// An EHR launch context for `patient`, made with the suite's system token.
async fn launch_for(s: &SmartApp, patient: &str) -> String {
    let r = s
        .app
        .client
        .post(format!("{}/auth/launch", s.root))
        .json(&json!({"patient": patient, "encounter": "e-other"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json::<Value>().await.unwrap()["launch"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Opens `url`, signs in as `user`; the raw answer to the sign-in form.
async fn sign_in(s: &SmartApp, url: &str, user: &str) -> (String, reqwest::Response) {
    let page = s.browser.get(url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let pending = hidden(&page.text().await.unwrap(), "pending");
    let r = s
        .browser
        .post(format!("{}/auth/login", s.root))
        .form(&[
            ("pending", pending.as_str()),
            ("username", user),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    (pending, r)
}

/// A patient user (pat, Patient/p1) opened by an EHR launch for another
/// patient (p2) is sent back with `access_denied` and no code, whatever
/// scopes the app asks; the pending request is spent. A launch for their
/// own record still works and reaches only that record.
async fn self_only_user_refuses_a_launch_for_another_patient(backend: Backend) {
    let s = SmartApp::start(backend).await;
    for scope in [
        "launch openid fhirUser patient/*.rs",
        "launch user/*.rs",
        "launch launch/patient patient/*.rs offline_access",
    ] {
        let launch = launch_for(&s, "p2").await;
        let (_, challenge) = pkce();
        let url = s.authorize_url(scope, &challenge, &[("launch", &launch)]);
        let (pending, r) = sign_in(&s, &url, "pat").await;
        assert_eq!(r.status(), 303, "{scope}");
        let params = location_params(&r);
        assert_eq!(
            param(&params, "error").as_deref(),
            Some("access_denied"),
            "{scope}: {params:?}"
        );
        assert_eq!(param(&params, "state").as_deref(), Some("st-123"));
        assert!(param(&params, "code").is_none());
        // The pending request is spent: consent cannot be forced after it.
        let r = s
            .browser
            .post(format!("{}/auth/consent", s.root))
            .form(&[("pending", pending.as_str()), ("decision", "approve")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{scope}");
    }
    // A clinician takes the same kind of launch as before.
    let launch = launch_for(&s, "p2").await;
    let (_, challenge) = pkce();
    let url = s.authorize_url("launch patient/*.rs", &challenge, &[("launch", &launch)]);
    let (_, r) = sign_in(&s, &url, "alice").await;
    assert_eq!(r.status(), 200);
    // Their own record: granted, and confined to it.
    let launch = launch_for(&s, "p1").await;
    let (verifier, challenge) = pkce();
    let url = s.authorize_url(
        "launch openid fhirUser patient/*.rs",
        &challenge,
        &[("launch", &launch)],
    );
    let (pending, html) = s.login(&url, "pat").await;
    let params = s.approve(&pending, &html, &[]).await;
    let code = param(&params, "code").unwrap_or_else(|| panic!("{params:?}"));
    let (st, t) = s
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
            ("client_id", PUBLIC_CLIENT),
        ])
        .await;
    assert_eq!(st, 200, "{t}");
    assert_eq!(t["patient"], "p1");
    let at = t["access_token"].as_str().unwrap();
    assert_eq!(s.fhir(at, "Patient/p1").await.0, 200);
    assert_eq!(s.fhir(at, "Patient/p2").await.0, 404);
}
both_backends!(self_only_user_refuses_a_launch_for_another_patient);

/// Signs an access token with the server's own key, bypassing every check
/// of the issuing paths (as a bug there, or an old token, would).
fn signed(s: &SmartApp, claims: Value) -> String {
    let ring = vesta::auth::keys::KeyRing::load_or_create(&s.app.settings.data_dir).unwrap();
    let now = vesta::auth::now_s();
    let mut c = json!({"iss": s.root, "sub": "pat", "aud": [s.app.base], "exp": now + 600,
        "iat": now, "jti": uuid::Uuid::new_v4().to_string(), "client_id": PUBLIC_CLIENT});
    for (k, v) in claims.as_object().unwrap() {
        c[k] = v.clone();
    }
    let claims: vesta::auth::jwt::AccessClaims = serde_json::from_value(c).unwrap();
    vesta::auth::jwt::sign_access(&ring, &claims).unwrap()
}

/// Defence in depth: a validly signed token of a self-only role whose
/// `patient` claim names another patient still reaches only the user's own
/// record, through reads, searches, compartments and introspection; and a
/// self-only role whose fhirUser is not a Patient reaches no patient.
async fn self_only_token_with_a_foreign_patient_claim_stays_home(backend: Backend) {
    let s = SmartApp::start(backend).await;
    let at = signed(
        &s,
        json!({"scope": "patient/*.rs user/*.rs", "patient": "p2", "role": "patient", "fhirUser": "Patient/p1"}),
    );
    assert_eq!(s.fhir(&at, "Patient/p1").await.0, 200);
    for path in [
        "Patient/p2",
        "Observation/p2-laboratory",
        "Patient/p2/$everything",
        "Patient/p2/Observation",
    ] {
        assert_eq!(s.fhir(&at, path).await.0, 404, "{path}");
    }
    let (st, b) = s.fhir(&at, "Observation").await;
    assert_eq!(st, 200);
    let found = crate::helpers::smart::ids(&b);
    assert_eq!(found.len(), 2, "{b}");
    assert!(
        found.iter().all(|i| i.starts_with("Observation/p1-")),
        "{b}"
    );
    let r = s
        .browser
        .post(format!("{}/auth/introspect", s.root))
        .form(&[("token", at.as_str()), ("client_id", PUBLIC_CLIENT)])
        .send()
        .await
        .unwrap();
    let i: Value = r.json().await.unwrap();
    assert_eq!(
        (i["active"].as_bool(), i["patient"].as_str()),
        (Some(true), Some("p1"))
    );
    // A self-only role without a Patient fhirUser: nobody's record.
    let at = signed(
        &s,
        json!({"scope": "user/*.rs", "role": "patient", "fhirUser": "Practitioner/dr-alice"}),
    );
    assert_eq!(s.fhir(&at, "Patient/p1").await.0, 404);
    let (st, b) = s.fhir(&at, "Observation").await;
    assert_eq!(st, 200);
    assert!(crate::helpers::smart::ids(&b).is_empty(), "{b}");
}
both_backends!(self_only_token_with_a_foreign_patient_claim_stays_home);

/// `vesta token --user <patient user> --patient <other>` fails with a clear
/// message and no token; the user's own patient (or none) still mints.
#[test]
fn vesta_token_refuses_another_patient_for_a_self_only_user() {
    let cfg = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("smart-config");
    std::fs::copy(repo.join("roles.toml"), cfg.path().join("roles.toml")).unwrap();
    vesta::auth::smart_config::add_user(
        cfg.path(),
        vesta::auth::smart_config::User {
            username: "pat".into(),
            password_hash: "$argon2id$unused".into(),
            role: "patient".into(),
            fhir_user: Some("Patient/p1".into()),
        },
    )
    .unwrap();
    let run = |patient: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vesta"));
        cmd.args(["token", "--client", "cli", "--scopes", "patient/*.rs"])
            .args(["--user", "pat", "--addr", "127.0.0.1:8080"])
            .arg("--smart-config")
            .arg(cfg.path())
            .arg("--data-dir")
            .arg(data.path());
        if let Some(p) = patient {
            cmd.args(["--patient", p]);
        }
        cmd.output().expect("run vesta token")
    };
    let out = run(Some("p2"));
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "no token is printed");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("self-only"), "{err}");
    for ok in [Some("p1"), None] {
        let out = run(ok);
        assert!(
            out.status.success(),
            "{ok:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
