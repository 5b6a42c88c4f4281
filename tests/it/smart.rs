//! SMART App Launch: discovery, standalone and EHR launch, refresh rotation,
//! introspection, revocation, backend services, and the negative cases,
//! each with its exact status; and patient-scoped tokens confined to their
//! patient through read, search, chain, _include and transaction.

use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::smart::{ids, param, pkce, SmartApp, PUBLIC_CLIENT, REDIRECT};
use crate::helpers::{eventually, Backend};

async fn discovery_and_401(backend: Backend) {
    let s = SmartApp::start(backend).await;
    for path in [
        "/.well-known/smart-configuration",
        "/fhir/.well-known/smart-configuration",
    ] {
        let doc: Value = s
            .browser
            .get(format!("{}{path}", s.root))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(
            doc["authorization_endpoint"],
            json!(format!("{}/auth/authorize", s.root))
        );
        for cap in [
            "launch-ehr",
            "launch-standalone",
            "client-confidential-asymmetric",
            "permission-v2",
            "sso-openid-connect",
        ] {
            assert!(
                doc["capabilities"]
                    .as_array()
                    .unwrap()
                    .contains(&json!(cap)),
                "{cap}"
            );
        }
    }
    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
        "/auth/jwks",
    ] {
        let r = s
            .browser
            .get(format!("{}{path}", s.root))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    // The CapabilityStatement needs no token and names the SMART endpoints.
    let r = s.browser.get(s.app.url("metadata")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let cs: Value = r.json().await.unwrap();
    let sec = &cs["rest"][0]["security"];
    assert_eq!(sec["service"][0]["coding"][0]["code"], "SMART-on-FHIR");
    assert!(sec["extension"][0]["extension"]
        .to_string()
        .contains("/auth/token"));
    // Everything else needs one.
    let r = s
        .app
        .anon
        .get(s.app.url("Patient/p1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"vesta\"");
    let r = s
        .app
        .anon
        .get(s.app.url("Patient/p1"))
        .bearer_auth("not.a.jwt")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("invalid_token"));
    let oo: Value = r.json().await.unwrap();
    assert_eq!(oo["resourceType"], "OperationOutcome");
}
both_backends!(discovery_and_401);

async fn standalone_launch_confines_to_the_patient(backend: Backend) {
    let s = SmartApp::start(backend).await;
    let t = s
        .standalone(
            "alice",
            "launch/patient openid fhirUser offline_access patient/*.rs",
            &[("patient_id", "p1")],
        )
        .await;
    assert_eq!(t["patient"], "p1");
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["need_patient_banner"], true);
    assert!(
        t["smart_style_url"].is_string()
            && t["refresh_token"].is_string()
            && t["id_token"].is_string()
    );
    assert_eq!(
        t["scope"],
        "launch/patient openid fhirUser offline_access patient/*.rs"
    );
    let at = t["access_token"].as_str().unwrap();
    // read
    assert_eq!(s.fhir(at, "Patient/p1").await.0, 200);
    assert_eq!(s.fhir(at, "Patient/p2").await.0, 404);
    assert_eq!(s.fhir(at, "Observation/p2-laboratory").await.0, 404);
    assert_eq!(
        s.fhir(at, "Observation/p2-laboratory/_history/1").await.0,
        404
    );
    assert_eq!(
        s.fhir(at, "Observation/p2-laboratory/_history").await.0,
        404
    );
    // search, chain, _include, _revinclude, compartment, $everything, history
    let (st, b) = s.fhir(at, "Observation").await;
    assert_eq!(st, 200);
    assert_eq!(ids(&b).len(), 2, "{b}");
    assert!(ids(&b).iter().all(|i| i.starts_with("Observation/p1-")));
    assert!(ids(&s.fhir(at, "Observation?subject=Patient/p2").await.1).is_empty());
    assert!(ids(&s
        .fhir(at, "Observation?subject:Patient.family=Smith")
        .await
        .1)
    .is_empty());
    assert_eq!(
        ids(&s.fhir(at, "Patient?family=Smith").await.1),
        Vec::<String>::new()
    );
    let (_, inc) = s.fhir(at, "Patient?_revinclude=Observation:subject").await;
    assert!(
        ids(&inc)
            .iter()
            .all(|i| i == "Patient/p1" || i.starts_with("Observation/p1-")),
        "{inc}"
    );
    assert_eq!(ids(&inc).len(), 3);
    let (_, inc) = s.fhir(at, "Observation?_include=Observation:subject").await;
    assert!(!ids(&inc).contains(&"Patient/p2".to_string()));
    assert_eq!(s.fhir(at, "Patient/p2/Observation").await.0, 404);
    assert_eq!(s.fhir(at, "Patient/p2/$everything").await.0, 404);
    let (_, every) = s.fhir(at, "Patient/p1/$everything").await;
    assert!(ids(&every).iter().all(|i| !i.contains("p2")), "{every}");
    let (_, hist) = s.fhir(at, "Observation/_history").await;
    assert!(
        ids(&hist).iter().all(|i| i.starts_with("Observation/p1-")),
        "{hist}"
    );
    assert_eq!(
        s.fhir(at, "Patient?_has:Observation:subject:category=laboratory")
            .await
            .0,
        403
    );
    assert_eq!(s.fhir(at, "?_type=Patient,Observation").await.0, 403);
    // Read-only scopes: no writes at all.
    let r = s
        .browser
        .put(s.app.url("Patient/p1"))
        .bearer_auth(at)
        .header("content-type", "application/fhir+json")
        .body(json!({"resourceType": "Patient", "id": "p1"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("insufficient_scope"));
}
both_backends!(standalone_launch_confines_to_the_patient);

async fn patient_write_scope_stays_in_its_compartment(backend: Backend) {
    let s = SmartApp::start(backend).await;
    let t = s
        .standalone(
            "alice",
            "launch/patient patient/*.cruds",
            &[("patient_id", "p1")],
        )
        .await;
    let at = t["access_token"].as_str().unwrap();
    let tx =
        |entries: Value| json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
    let post = |body: Value| {
        s.browser
            .post(s.app.url(""))
            .bearer_auth(at)
            .header("content-type", "application/fhir+json")
            .body(body.to_string())
            .send()
    };
    // Writing into the other patient's compartment: refused, nothing written.
    let evil = tx(json!([
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "ok"}, "subject": {"reference": "Patient/p1"}}, "request": {"method": "POST", "url": "Observation"}},
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": "Patient/p2"}}, "request": {"method": "POST", "url": "Observation"}}
    ]));
    let r = post(evil).await.unwrap();
    assert_eq!(r.status(), 403);
    let all = s.app.get("Observation?code:text=ok").await.json();
    assert!(ids(&all).is_empty(), "partial write: {all}");
    // Updating or deleting the other patient's resource: not found.
    let upd = tx(
        json!([{"resource": {"resourceType": "Observation", "id": "p2-laboratory", "status": "final", "code": {"text": "y"}, "subject": {"reference": "Patient/p1"}}, "request": {"method": "PUT", "url": "Observation/p2-laboratory"}}]),
    );
    assert_eq!(post(upd).await.unwrap().status(), 404);
    let del = s
        .browser
        .delete(s.app.url("Observation/p2-laboratory"))
        .bearer_auth(at)
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 404);
    assert_eq!(s.app.get("Observation/p2-laboratory").await.status, 200);
    // Conditional create cannot see (or return) the other patient's data.
    let r = s
        .browser
        .post(s.app.url("Patient"))
        .bearer_auth(at)
        .header("content-type", "application/fhir+json")
        .header("if-none-exist", "family=Smith")
        .body(json!({"resourceType": "Patient", "name": [{"family": "Smith"}]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a new Patient is outside p1's compartment");
    // Within the compartment, writes work.
    let ok = tx(
        json!([{"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "mine"}, "subject": {"reference": "Patient/p1"}}, "request": {"method": "POST", "url": "Observation"}}]),
    );
    assert_eq!(post(ok).await.unwrap().status(), 200);
}
both_backends!(patient_write_scope_stays_in_its_compartment);

async fn v2_filters_and_role_limits(backend: Backend) {
    let s = SmartApp::start(backend).await;
    let lab = "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory";
    let t = s
        .standalone(
            "alice",
            &format!("launch/patient patient/Patient.rs {lab}"),
            &[("patient_id", "p1")],
        )
        .await;
    let at = t["access_token"].as_str().unwrap();
    assert_eq!(
        ids(&s.fhir(at, "Observation").await.1),
        vec!["Observation/p1-laboratory"]
    );
    assert_eq!(s.fhir(at, "Observation/p1-laboratory").await.0, 200);
    assert_eq!(s.fhir(at, "Observation/p1-vital-signs").await.0, 404);
    let (_, every) = s.fhir(at, "Patient/p1/$everything").await;
    assert!(
        !ids(&every).contains(&"Observation/p1-vital-signs".to_string()),
        "{every}"
    );
    // rita is readonly: asking for write gets read only.
    let t = s.standalone("rita", "user/*.cruds", &[]).await;
    assert_eq!(t["scope"], "user/*.rs");
    let at = t["access_token"].as_str().unwrap();
    assert_eq!(s.fhir(at, "Patient/p2").await.0, 200);
    let r = s
        .browser
        .delete(s.app.url("Patient/p2"))
        .bearer_auth(at)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // pat (role patient, fhirUser Patient/p1) sees only p1 even with user/ scopes.
    let t = s.standalone("pat", "user/*.rs", &[]).await;
    let at = t["access_token"].as_str().unwrap();
    assert_eq!(s.fhir(at, "Patient/p1").await.0, 200);
    assert_eq!(s.fhir(at, "Patient/p2").await.0, 404);
    assert!(ids(&s.fhir(at, "Observation").await.1)
        .iter()
        .all(|i| i.starts_with("Observation/p1-")));
}
both_backends!(v2_filters_and_role_limits);

async fn ehr_launch_binds_its_context(backend: Backend) {
    let s = SmartApp::start(backend).await;
    let r = s.app.client.post(format!("{}/auth/launch", s.root))
        .json(&json!({"patient": "p2", "encounter": "e1", "fhirContext": [{"reference": "Observation/p2-laboratory"}], "app_launch_url": "https://app.example/launch"}))
        .send().await.unwrap();
    assert_eq!(r.status(), 201);
    let l: Value = r.json().await.unwrap();
    let launch = l["launch"].as_str().unwrap();
    assert!(l["launch_url"].as_str().unwrap().contains("iss="));
    // No token: no launch.
    assert_eq!(
        s.app
            .anon
            .post(format!("{}/auth/launch", s.root))
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let (verifier, challenge) = pkce();
    let url = s.authorize_url(
        "launch openid fhirUser patient/*.rs",
        &challenge,
        &[("launch", launch)],
    );
    let (pending, html) = s.login(&url, "alice").await;
    assert!(
        !html.contains("name=\"patient\""),
        "no picker in an EHR launch"
    );
    let params = s.approve(&pending, &html, &[]).await;
    assert_eq!(param(&params, "state").as_deref(), Some("st-123"));
    assert_eq!(param(&params, "iss").as_deref(), Some(s.root.as_str()));
    let code = param(&params, "code").unwrap();
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
    assert_eq!(t["patient"], "p2");
    assert_eq!(t["encounter"], "e1");
    assert_eq!(
        t["fhirContext"][0]["reference"],
        "Observation/p2-laboratory"
    );
    assert_eq!(t["need_patient_banner"], false);
    let at = t["access_token"].as_str().unwrap();
    assert_eq!(s.fhir(at, "Patient/p2").await.0, 200);
    assert_eq!(s.fhir(at, "Patient/p1").await.0, 404);
    // The code is single-use.
    let (st, e) = s
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
            ("client_id", PUBLIC_CLIENT),
        ])
        .await;
    assert_eq!((st, e["error"].as_str()), (400, Some("invalid_grant")));
}
both_backends!(ehr_launch_binds_its_context);

async fn refresh_rotation_introspection_revocation(backend: Backend) {
    let s = SmartApp::start(backend).await;
    let t = s
        .standalone(
            "alice",
            "launch/patient offline_access patient/*.rs",
            &[("patient_id", "p1")],
        )
        .await;
    let r1 = t["refresh_token"].as_str().unwrap().to_string();
    let (st, t2) = s
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &r1),
            ("client_id", PUBLIC_CLIENT),
        ])
        .await;
    assert_eq!(st, 200, "{t2}");
    let r2 = t2["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(r1, r2);
    assert_eq!(t2["patient"], "p1");
    let introspect = |token: String| {
        let s = &s;
        async move {
            let r = s
                .browser
                .post(format!("{}/auth/introspect", s.root))
                .form(&[("token", token.as_str()), ("client_id", PUBLIC_CLIENT)])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    let at2 = t2["access_token"].as_str().unwrap().to_string();
    let i = introspect(at2.clone()).await;
    assert_eq!(i["active"], true);
    assert_eq!(i["patient"], "p1");
    assert_eq!(i["scope"], "launch/patient offline_access patient/*.rs");
    assert_eq!(introspect(r2.clone()).await["active"], true);
    // Reusing the rotated token revokes the family: r2 dies too.
    let (st, e) = s
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &r1),
            ("client_id", PUBLIC_CLIENT),
        ])
        .await;
    assert_eq!((st, e["error"].as_str()), (400, Some("invalid_grant")));
    assert_eq!(introspect(r2.clone()).await["active"], false);
    let (st, _) = s
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &r2),
            ("client_id", PUBLIC_CLIENT),
        ])
        .await;
    assert_eq!(st, 400);
    // Revoking an access token makes it fail at once.
    assert_eq!(s.fhir(&at2, "Patient/p1").await.0, 200);
    assert_eq!(s.revoke(&at2).await, 200);
    assert_eq!(s.fhir(&at2, "Patient/p1").await.0, 401);
    assert_eq!(introspect(at2).await["active"], false);
    // Introspection needs a caller.
    let r = s
        .browser
        .post(format!("{}/auth/introspect", s.root))
        .form(&[("token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}
both_backends!(refresh_rotation_introspection_revocation);

async fn authorize_and_token_refusals(backend: Backend) {
    let s = SmartApp::start(backend).await;
    let (verifier, challenge) = pkce();
    let get = |url: String| {
        let s = &s;
        async move { s.browser.get(url).send().await.unwrap() }
    };
    // Unknown client or unregistered redirect: an error page, no redirect.
    let bad_redirect = s
        .authorize_url("patient/*.rs", &challenge, &[])
        .replace("localhost%3A4000", "evil.example");
    assert_eq!(get(bad_redirect).await.status(), 400);
    // Wrong aud, plain PKCE, missing PKCE, unknown resource: error redirects with state and iss.
    let wrong_aud = s
        .authorize_url("patient/*.rs", &challenge, &[])
        .replace("aud=http", "aud=https");
    for (url, error) in [
        (wrong_aud, "invalid_request"),
        (
            s.authorize_url("patient/*.rs", &challenge, &[])
                .replace("code_challenge_method=S256", "code_challenge_method=plain"),
            "invalid_request",
        ),
        (
            s.authorize_url(
                "patient/*.rs",
                &challenge,
                &[("resource", "https://elsewhere.example/fhir")],
            ),
            "invalid_target",
        ),
    ] {
        let r = get(url).await;
        assert_eq!(r.status(), 303);
        let p = crate::helpers::smart::location_params(&r);
        assert_eq!(param(&p, "error").as_deref(), Some(error));
        assert_eq!(param(&p, "state").as_deref(), Some("st-123"));
        assert!(param(&p, "iss").is_some());
    }
    // A wrong password keeps the user on the sign-in page.
    let page = get(s.authorize_url("patient/*.rs", &challenge, &[]))
        .await
        .text()
        .await
        .unwrap();
    let pending = crate::helpers::smart::hidden(&page, "pending");
    let r = s
        .browser
        .post(format!("{}/auth/login", s.root))
        .form(&[
            ("pending", pending.as_str()),
            ("username", "alice"),
            ("password", "nope"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Deny: access_denied.
    let (pending, _) = s
        .login(&s.authorize_url("patient/*.rs", &challenge, &[]), "alice")
        .await;
    let r = s
        .browser
        .post(format!("{}/auth/consent", s.root))
        .form(&[("pending", pending.as_str()), ("decision", "deny")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        param(&crate::helpers::smart::location_params(&r), "error").as_deref(),
        Some("access_denied")
    );
    // A code with the wrong verifier, then the right one after it failed (single use).
    let (pending, html) = s
        .login(&s.authorize_url("user/*.rs", &challenge, &[]), "alice")
        .await;
    let code = param(&s.approve(&pending, &html, &[]).await, "code").unwrap();
    let wrong = format!("{}x", &verifier[..verifier.len() - 1]);
    let (st, e) = s
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &wrong),
            ("client_id", PUBLIC_CLIENT),
        ])
        .await;
    assert_eq!((st, e["error"].as_str()), (400, Some("invalid_grant")));
    let (st, _) = s
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
            ("client_id", PUBLIC_CLIENT),
        ])
        .await;
    assert_eq!(st, 400);
    let (st, e) = s
        .token(&[("grant_type", "password"), ("client_id", PUBLIC_CLIENT)])
        .await;
    assert_eq!(
        (st, e["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
    let (st, e) = s
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", "x"),
            ("client_id", "nobody"),
        ])
        .await;
    assert_eq!((st, e["error"].as_str()), (401, Some("invalid_client")));
}
both_backends!(authorize_and_token_refusals);

async fn forged_and_expired_tokens_are_refused(backend: Backend) {
    let s = SmartApp::start(backend).await;
    let good = crate::helpers::mint(&s.app.settings, &s.app.base, "c", "system/*.rs", None, None);
    assert_eq!(s.fhir(&good, "Patient/p1").await.0, 200);
    let parts: Vec<&str> = good.split('.').collect();
    let b64 = crate::helpers::smart::b64;
    let payload: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, parts[1])
            .unwrap(),
    )
    .unwrap();
    // Tampered payload.
    let mut p = payload.clone();
    p["scope"] = json!("system/*.cruds");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(p.to_string().as_bytes()),
        parts[2]
    );
    // alg none.
    let none = format!("{}.{}.", b64(br#"{"alg":"none","typ":"JWT"}"#), parts[1]);
    // HS256 keyed with our public key (the JWKS modulus).
    let jwks: Value = s
        .browser
        .get(format!("{}/auth/jwks", s.root))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let n = jwks["keys"][0]["n"].as_str().unwrap();
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    h.kid = jwks["keys"][0]["kid"].as_str().map(str::to_string);
    let hs256 = jsonwebtoken::encode(
        &h,
        &payload,
        &jsonwebtoken::EncodingKey::from_secret(n.as_bytes()),
    )
    .unwrap();
    // Expired (signed with the real key).
    let ring = vesta::auth::keys::KeyRing::load_or_create(&s.app.settings.data_dir).unwrap();
    let mut claims: vesta::auth::jwt::AccessClaims =
        serde_json::from_value(payload.clone()).unwrap();
    claims.exp -= 7200;
    claims.iat -= 7200;
    let expired = vesta::auth::jwt::sign_access(&ring, &claims).unwrap();
    // Another audience.
    let mut claims: vesta::auth::jwt::AccessClaims = serde_json::from_value(payload).unwrap();
    claims.aud = vec!["https://other.example/fhir".into()];
    let other_aud = vesta::auth::jwt::sign_access(&ring, &claims).unwrap();
    for (name, t) in [
        ("tampered", tampered),
        ("none", none),
        ("hs256", hs256),
        ("expired", expired),
        ("aud", other_aud),
    ] {
        assert_eq!(s.fhir(&t, "Patient/p1").await.0, 401, "{name}");
    }
}
both_backends!(forged_and_expired_tokens_are_refused);

/// Signs a client assertion for the token endpoint.
fn assertion(
    alg: jsonwebtoken::Algorithm,
    key: &jsonwebtoken::EncodingKey,
    kid: &str,
    client: &str,
    aud: &str,
    exp_in: i64,
    jti: &str,
) -> String {
    let now = vesta::auth::now_s();
    let mut h = jsonwebtoken::Header::new(alg);
    h.kid = Some(kid.into());
    let claims = json!({"iss": client, "sub": client, "aud": aud, "exp": now + exp_in, "jti": jti});
    jsonwebtoken::encode(&h, &claims, key).unwrap()
}

async fn backend_services(backend: Backend) {
    // The RS384 client's jwks_uri is served over http on loopback below.
    let s = SmartApp::start_with(backend, |settings| {
        settings.jwks_uri_allow_hosts = vec!["127.0.0.1".into()];
    })
    .await;
    let token_url = format!("{}/auth/token", s.root);
    // ES384, key inline in the registration.
    let secret = p384::SecretKey::random(&mut rsa::rand_core::OsRng);
    let pem = {
        use p384::pkcs8::EncodePrivateKey;
        secret
            .to_pkcs8_pem(p384::pkcs8::LineEnding::LF)
            .unwrap()
            .to_string()
    };
    let mut jwk: Value = serde_json::from_str(&secret.public_key().to_jwk_string()).unwrap();
    jwk["kid"] = json!("es-1");
    jwk["alg"] = json!("ES384");
    let reg = json!({"token_endpoint_auth_method": "private_key_jwt", "grant_types": ["client_credentials"],
        "jwks": {"keys": [jwk]}, "scope": "system/Patient.rs system/Observation.rs", "client_name": "nightly export"});
    // Without an administrator, system scopes are refused.
    let r = s
        .app
        .anon
        .post(format!("{}/auth/register", s.root))
        .json(&reg)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = s
        .app
        .client
        .post(format!("{}/auth/register", s.root))
        .json(&reg)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let client_id = r.json::<Value>().await.unwrap()["client_id"]
        .as_str()
        .unwrap()
        .to_string();
    let es = jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes()).unwrap();
    let ask = |a: String, scope: &'static str| {
        let s = &s;
        async move {
            s.token(&[
                ("grant_type", "client_credentials"),
                ("scope", scope),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", &a),
            ])
            .await
        }
    };
    let a1 = assertion(
        jsonwebtoken::Algorithm::ES384,
        &es,
        "es-1",
        &client_id,
        &token_url,
        240,
        "j-1",
    );
    let (st, t) = ask(a1.clone(), "system/*.rs").await;
    assert_eq!(st, 200, "{t}");
    assert_eq!(t["scope"], "system/Patient.rs system/Observation.rs");
    assert!(t.get("refresh_token").is_none() && t.get("id_token").is_none());
    let at = t["access_token"].as_str().unwrap();
    assert_eq!(s.fhir(at, "Patient/p2").await.0, 200);
    assert_eq!(s.fhir(at, "Practitioner/dr-alice").await.0, 403);
    // Replayed jti, lifetime over five minutes, expired, wrong audience, HS256.
    let (st, e) = ask(a1, "system/*.rs").await;
    assert_eq!((st, e["error"].as_str()), (401, Some("invalid_client")));
    for (name, a) in [
        (
            "too long",
            assertion(
                jsonwebtoken::Algorithm::ES384,
                &es,
                "es-1",
                &client_id,
                &token_url,
                900,
                "j-2",
            ),
        ),
        (
            "expired",
            assertion(
                jsonwebtoken::Algorithm::ES384,
                &es,
                "es-1",
                &client_id,
                &token_url,
                -120,
                "j-3",
            ),
        ),
        (
            "aud",
            assertion(
                jsonwebtoken::Algorithm::ES384,
                &es,
                "es-1",
                &client_id,
                &format!("{}/fhir", s.root),
                240,
                "j-4",
            ),
        ),
        (
            "hs256",
            assertion(
                jsonwebtoken::Algorithm::HS256,
                &jsonwebtoken::EncodingKey::from_secret(b"k"),
                "es-1",
                &client_id,
                &token_url,
                240,
                "j-5",
            ),
        ),
    ] {
        let (st, e) = ask(a, "system/*.rs").await;
        assert_eq!(
            (st, e["error"].as_str()),
            (401, Some("invalid_client")),
            "{name}"
        );
    }
    let (st, e) = ask(
        assertion(
            jsonwebtoken::Algorithm::ES384,
            &es,
            "es-1",
            &client_id,
            &token_url,
            240,
            "j-6",
        ),
        "system/Encounter.rs",
    )
    .await;
    assert_eq!((st, e["error"].as_str()), (400, Some("invalid_scope")));
    // RS384, key published at a jwks_uri.
    let rsa_key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
    let rsa_pem = {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        rsa_key
            .to_pkcs1_pem(rsa::pkcs1::LineEnding::LF)
            .unwrap()
            .to_string()
    };
    let (n, e) = {
        use rsa::traits::PublicKeyParts;
        (
            crate::helpers::smart::b64(&rsa_key.n().to_bytes_be()),
            crate::helpers::smart::b64(&rsa_key.e().to_bytes_be()),
        )
    };
    let jwks = json!({"keys": [{"kty": "RSA", "kid": "rs-1", "alg": "RS384", "n": n, "e": e}]});
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks_url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let router = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let j = jwks.clone();
            async move { axum::Json(j) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, router).await });
    let reg = json!({"token_endpoint_auth_method": "private_key_jwt", "grant_types": ["client_credentials"], "jwks_uri": jwks_url, "scope": "system/*.rs"});
    let r = s
        .app
        .client
        .post(format!("{}/auth/register", s.root))
        .json(&reg)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let rs_client = r.json::<Value>().await.unwrap()["client_id"]
        .as_str()
        .unwrap()
        .to_string();
    let rs = jsonwebtoken::EncodingKey::from_rsa_pem(rsa_pem.as_bytes()).unwrap();
    let (st, t) = ask(
        assertion(
            jsonwebtoken::Algorithm::RS384,
            &rs,
            "rs-1",
            &rs_client,
            &token_url,
            240,
            "r-1",
        ),
        "system/*.rs",
    )
    .await;
    assert_eq!(st, 200, "{t}");
    // The ES key does not sign for the RS client.
    let (st, _) = ask(
        assertion(
            jsonwebtoken::Algorithm::ES384,
            &es,
            "rs-1",
            &rs_client,
            &token_url,
            240,
            "r-2",
        ),
        "system/*.rs",
    )
    .await;
    assert_eq!(st, 401);
}
both_backends!(backend_services);

/// `--insecure-open` turns authorization off for FHIR requests only: it must
/// not let anyone register a backend client, which would outlive the mode.
async fn insecure_open_grants_no_registration_rights(backend: Backend) {
    let app = crate::helpers::spawn_with(backend, |s| s.insecure_open = true).await;
    let root = app.base.trim_end_matches("/fhir").to_string();
    let reg = json!({"token_endpoint_auth_method": "client_secret_basic",
        "grant_types": ["client_credentials"], "scope": "system/*.cruds", "client_name": "backdoor"});
    let r = app
        .anon
        .post(format!("{root}/auth/register"))
        .header("authorization", "Bearer anything")
        .json(&reg)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "{}", r.text().await.unwrap());
}
both_backends!(insecure_open_grants_no_registration_rights);

/// A revoked access token is refused by the instance that revoked it at
/// once, and by a second instance of the same database once that one reads
/// the revocation counter (its cache of checked tokens is then stale).
async fn revocation_reaches_every_instance(backend: Backend) {
    let s = SmartApp::start(backend).await;
    let twin = s.app.twin().await;
    let t = s
        .standalone(
            "alice",
            "launch/patient patient/*.rs",
            &[("patient_id", "p1")],
        )
        .await;
    let at = t["access_token"].as_str().unwrap().to_string();
    let there = |at: String| {
        let url = format!("{}/Patient/p1", twin.base);
        let client = s.browser.clone();
        async move {
            client
                .get(url)
                .bearer_auth(at)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    for _ in 0..3 {
        assert_eq!(s.fhir(&at, "Patient/p1").await.0, 200);
        assert_eq!(there(at.clone()).await, 200);
    }
    assert_eq!(s.revoke(&at).await, 200);
    assert_eq!(s.fhir(&at, "Patient/p1").await.0, 401);
    let within = std::time::Duration::from_secs(5);
    let (status, took) = eventually(within, 401, || there(at.clone())).await;
    assert_eq!(status, 401, "the other instance still honours the token");
    assert!(took < within, "{took:?}");
}
both_backends!(revocation_reaches_every_instance);
