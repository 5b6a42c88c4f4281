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
        let (pending, r) = s.sign_in(&url, "pat").await;
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
    let (_, r) = s.sign_in(&url, "alice").await;
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

/// A client assertion that is well formed but signed by nobody: the server
/// fetches the client's keys before it can check the signature.
fn unsigned_assertion(client: &str, token_url: &str) -> String {
    let b64 = |v: Value| crate::helpers::smart::b64(v.to_string().as_bytes());
    let now = vesta::auth::now_s();
    format!(
        "{}.{}.{}",
        b64(json!({"alg": "ES384", "kid": "k-1"})),
        b64(
            json!({"iss": client, "sub": client, "aud": token_url, "exp": now + 60,
            "jti": uuid::Uuid::new_v4().to_string()})
        ),
        crate::helpers::smart::b64(b"not a signature")
    )
}

/// `client_credentials` with `client`'s assertion: status and body.
async fn assert_as(s: &SmartApp, client: &str) -> (u16, Value) {
    let token_url = format!("{}/auth/token", s.root);
    s.token(&[
        ("grant_type", "client_credentials"),
        ("scope", "system/*.rs"),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", &unsigned_assertion(client, &token_url)),
    ])
    .await
}

/// Registers a backend client with `jwks_uri` as the administrator.
async fn register_jwks_uri(s: &SmartApp, uri: &str) -> (u16, Value) {
    let reg = json!({"token_endpoint_auth_method": "private_key_jwt",
        "grant_types": ["client_credentials"], "jwks_uri": uri, "scope": "system/*.rs"});
    let r = s
        .app
        .client
        .post(format!("{}/auth/register", s.root))
        .json(&reg)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// A local HTTP server of misbehaving JWKS endpoints; its address.
async fn jwks_endpoints() -> std::net::SocketAddr {
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let big = format!("{{\"keys\": [], \"pad\": \"{}\"}}", "x".repeat(100 * 1024));
    let router = axum::Router::new()
        .route("/empty", get(|| async { axum::Json(json!({"keys": []})) }))
        .route("/missing", get(|| async { StatusCode::NOT_FOUND }))
        .route("/html", get(|| async { "<html>admin console</html>" }))
        .route(
            "/not-jwks",
            get(|| async { axum::Json(json!({"ok": true})) }),
        )
        .route("/big", get(move || async move { big.clone() }))
        .route(
            "/redirect",
            get(|| async { (StatusCode::FOUND, [(header::LOCATION, "/empty")]).into_response() }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                "late"
            }),
        );
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

/// SSRF without a token: an anonymous registration may not name a
/// `jwks_uri` over http or on loopback, private, link-local, CGNAT,
/// unique-local or IPv4-mapped addresses (one answer for all of them); a
/// static client naming one anyway is refused when its keys are fetched
/// (the check runs at connect time, not only at registration).
async fn jwks_uri_must_be_https_and_public(backend: Backend) {
    let endpoints = jwks_endpoints().await;
    let s = SmartApp::start_with(backend, move |settings| {
        let path = settings.smart_config_dir.join("clients.toml");
        let mut clients = std::fs::read_to_string(&path).unwrap();
        for (id, uri) in [
            ("static-loopback-name", format!("https://localhost:{}/empty", endpoints.port())),
            ("static-loopback-http", format!("http://{endpoints}/empty")),
        ] {
            clients.push_str(&format!(
                "\n[[client]]\nclient_id = \"{id}\"\ntoken_endpoint_auth_method = \"private_key_jwt\"\n\
                 grant_types = [\"client_credentials\"]\nscope = \"system/*.rs\"\njwks_uri = \"{uri}\"\n"
            ));
        }
        std::fs::write(&path, clients).unwrap();
    })
    .await;
    let mut answers = Vec::new();
    for uri in [
        format!("http://{endpoints}/empty"),
        format!("https://{endpoints}/empty"),
        "https://localhost/jwks".to_string(),
        "https://169.254.169.254/latest/meta-data".to_string(),
        "https://10.0.0.1/jwks".to_string(),
        "https://192.168.1.1/jwks".to_string(),
        "https://172.16.0.1/jwks".to_string(),
        "https://100.64.0.1/jwks".to_string(),
        "https://0.0.0.0/jwks".to_string(),
        "https://[::1]/jwks".to_string(),
        "https://[fd00::1]/jwks".to_string(),
        "https://[fe80::1]/jwks".to_string(),
        "https://[::ffff:127.0.0.1]/jwks".to_string(),
        "https://2130706433/jwks".to_string(),
        "https://224.0.0.1/jwks".to_string(),
    ] {
        let reg = json!({"token_endpoint_auth_method": "private_key_jwt",
            "redirect_uris": [REDIRECT], "jwks_uri": uri, "scope": "patient/*.rs"});
        let r = s
            .app
            .anon
            .post(format!("{}/auth/register", s.root))
            .json(&reg)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        assert_eq!(status, 400, "{uri}: {body}");
        assert_eq!(body["error"], "invalid_client_metadata", "{uri}");
        answers.push(body);
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
    // Clients configured with such a URI are refused at fetch time, with
    // the same answer as any other failure.
    for id in ["static-loopback-name", "static-loopback-http"] {
        let (st, e) = assert_as(&s, id).await;
        assert_eq!(st, 401, "{id}: {e}");
        assert_eq!(e["error"], "invalid_client", "{id}");
        assert_eq!(
            e["error_description"],
            vesta::auth::jwks_fetch::FETCH_FAILED,
            "{id}"
        );
    }
}
both_backends!(jwks_uri_must_be_https_and_public);

/// Port scanning through the token endpoint: with the loopback host
/// allowed, a closed port, an error status, HTML, JSON without keys, an
/// oversized body, a redirect and a stalled server all give one identical
/// `invalid_client` answer; the stalled one gives up within the bound.
async fn jwks_fetch_failures_are_indistinguishable(backend: Backend) {
    let endpoints = jwks_endpoints().await;
    let s = SmartApp::start_with(backend, |settings| {
        settings.jwks_uri_allow_hosts = vec!["127.0.0.1".into()];
    })
    .await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut answers = Vec::new();
    for uri in [
        format!("http://{closed}/jwks"),
        format!("http://{endpoints}/missing"),
        format!("http://{endpoints}/html"),
        format!("http://{endpoints}/not-jwks"),
        format!("http://{endpoints}/big"),
        format!("http://{endpoints}/redirect"),
        format!("http://{endpoints}/slow"),
    ] {
        let (st, reg) = register_jwks_uri(&s, &uri).await;
        assert_eq!(st, 201, "{uri}: {reg}");
        let client = reg["client_id"].as_str().unwrap().to_string();
        let started = std::time::Instant::now();
        let (st, e) = assert_as(&s, &client).await;
        assert!(
            started.elapsed()
                < std::time::Duration::from_secs(vesta::auth::jwks_fetch::JWKS_FETCH_TIMEOUT_S + 3),
            "{uri}"
        );
        assert_eq!(st, 401, "{uri}: {e}");
        answers.push(e);
    }
    assert_eq!(answers[0]["error"], "invalid_client");
    assert_eq!(
        answers[0]["error_description"],
        vesta::auth::jwks_fetch::FETCH_FAILED
    );
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
    // A reachable JWKS is fetched (and then the unsigned assertion fails
    // on its kid, a different and later check).
    let (st, reg) = register_jwks_uri(&s, &format!("http://{endpoints}/empty")).await;
    assert_eq!(st, 201);
    let (st, e) = assert_as(&s, reg["client_id"].as_str().unwrap()).await;
    assert_eq!(st, 401);
    assert_ne!(
        e["error_description"],
        vesta::auth::jwks_fetch::FETCH_FAILED
    );
}
both_backends!(jwks_fetch_failures_are_indistinguishable);

/// A replayed authorization code revokes what its first use issued: the
/// access token stops working at once (as the refresh token did already).
async fn replayed_code_revokes_its_access_tokens(backend: Backend) {
    let s = SmartApp::start(backend).await;
    let (verifier, challenge) = pkce();
    let url = s.authorize_url(
        "launch/patient offline_access patient/*.rs",
        &challenge,
        &[],
    );
    let (pending, html) = s.login(&url, "alice").await;
    let params = s.approve(&pending, &html, &[("patient_id", "p1")]).await;
    let code = param(&params, "code").unwrap();
    let exchange = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier.as_str()),
        ("client_id", PUBLIC_CLIENT),
    ];
    let (st, t) = s.token(&exchange).await;
    assert_eq!(st, 200, "{t}");
    let at = t["access_token"].as_str().unwrap().to_string();
    let rt = t["refresh_token"].as_str().unwrap().to_string();
    // A token refreshed before the replay belongs to the same family.
    let (st, t2) = s
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &rt),
            ("client_id", PUBLIC_CLIENT),
        ])
        .await;
    assert_eq!(st, 200, "{t2}");
    let at2 = t2["access_token"].as_str().unwrap().to_string();
    assert_eq!(s.fhir(&at, "Patient/p1").await.0, 200);
    assert_eq!(s.fhir(&at2, "Patient/p1").await.0, 200);
    let (st, e) = s.token(&exchange).await;
    assert_eq!((st, e["error"].as_str()), (400, Some("invalid_grant")));
    assert_eq!(s.fhir(&at, "Patient/p1").await.0, 401);
    assert_eq!(s.fhir(&at2, "Patient/p1").await.0, 401);
    let rt2 = t2["refresh_token"].as_str().unwrap();
    let (st, _) = s
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt2),
            ("client_id", PUBLIC_CLIENT),
        ])
        .await;
    assert_eq!(st, 400);
}
both_backends!(replayed_code_revokes_its_access_tokens);

/// Password guessing at `/auth/login`: after five wrong passwords the user
/// is locked, and even the right password then gets the wrong-password
/// page; an unknown username answers exactly the same, and other users
/// are not affected.
async fn sign_in_locks_after_repeated_failures(backend: Backend) {
    let s = SmartApp::start(backend).await;
    let (_, challenge) = pkce();
    let url = s.authorize_url("patient/*.rs", &challenge, &[]);
    let page = s.browser.get(&url).send().await.unwrap();
    let pending = hidden(&page.text().await.unwrap(), "pending");
    let attempt = |user: &'static str, password: &'static str| {
        let (s, pending) = (&s, pending.clone());
        async move {
            let r = s
                .browser
                .post(format!("{}/auth/login", s.root))
                .form(&[
                    ("pending", pending.as_str()),
                    ("username", user),
                    ("password", password),
                ])
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let wrong = attempt("alice", "guess").await;
    assert_eq!(wrong.0, 401);
    assert!(wrong.1.contains("wrong password"), "{}", wrong.1);
    for _ in 1..vesta::auth::lockout::MAX_FAILURES {
        assert_eq!(attempt("alice", "guess").await, wrong);
        assert_eq!(attempt("nobody", "guess").await, wrong);
    }
    // Locked: the right password answers as a wrong one, as for nobody.
    assert_eq!(attempt("alice", PASSWORD).await, wrong);
    assert_eq!(attempt("nobody", PASSWORD).await, wrong);
    // Another user signs in.
    let (st, html) = attempt("rita", PASSWORD).await;
    assert_eq!(st, 200);
    assert!(!html.contains("wrong password"), "{html}");
}
both_backends!(sign_in_locks_after_repeated_failures);

/// Secret guessing at the token endpoint: after five wrong secrets the
/// client is locked and its right secret gets the same `invalid_client`.
async fn client_secret_locks_after_repeated_failures(backend: Backend) {
    let s = SmartApp::start(backend).await;
    let r = s
        .app
        .anon
        .post(format!("{}/auth/register", s.root))
        .json(&json!({"token_endpoint_auth_method": "client_secret_basic",
            "redirect_uris": [REDIRECT], "scope": "patient/*.rs"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let reg: Value = r.json().await.unwrap();
    let id = reg["client_id"].as_str().unwrap().to_string();
    let secret = reg["client_secret"].as_str().unwrap().to_string();
    let attempt = |secret: String| {
        let (s, id) = (&s, id.clone());
        async move {
            let r = s
                .browser
                .post(format!("{}/auth/token", s.root))
                .basic_auth(id, Some(secret))
                .form(&[
                    ("grant_type", "authorization_code"),
                    ("code", "no-such-code"),
                    ("redirect_uri", REDIRECT),
                    ("code_verifier", &"v".repeat(43)),
                ])
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    // The right secret authenticates (the code is what fails).
    let (st, e) = attempt(secret.clone()).await;
    assert_eq!((st, e["error"].as_str()), (400, Some("invalid_grant")));
    let wrong = attempt("guess".into()).await;
    assert_eq!(
        (wrong.0, wrong.1["error"].as_str()),
        (401, Some("invalid_client"))
    );
    for _ in 1..vesta::auth::lockout::MAX_FAILURES {
        assert_eq!(attempt("guess".into()).await, wrong);
    }
    assert_eq!(attempt(secret).await, wrong);
}
both_backends!(client_secret_locks_after_repeated_failures);
