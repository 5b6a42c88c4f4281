//! The guards: rate limits (429 + Retry-After + OperationOutcome), CORS
//! preflights for allowed and refused origins, security headers, and HTTPS
//! with a self-signed certificate (graceful shutdown included).

use std::time::Duration;

use crate::both_backends;
use crate::helpers::{client_with_token, mint, settings_for, spawn, spawn_with, Backend};

const APP_ORIGIN: &str = "https://app.example.org";

/// The budget used by the rate-limit tests (requests per minute).
const TINY_BUDGET: u32 = 3;

async fn backend_clients_are_throttled_per_client(backend: Backend) {
    let app = spawn_with(backend, |s| {
        s.rate_limits.backend_per_minute = TINY_BUDGET;
    })
    .await;
    let a = client_with_token(&mint(
        &app.settings,
        &app.base,
        "svc-a",
        "system/*.rs",
        None,
        None,
    ));
    let b = client_with_token(&mint(
        &app.settings,
        &app.base,
        "svc-b",
        "system/*.rs",
        None,
        None,
    ));
    for i in 0..TINY_BUDGET {
        let r = app.send(a.get(app.url("Patient"))).await;
        assert_eq!(r.status, 200, "request {i}: {}", r.text);
    }
    let r = app.send(a.get(app.url("Patient"))).await;
    assert_eq!(r.status, 429, "{}", r.text);
    let wait: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("Retry-After in seconds");
    assert!((1..=60).contains(&wait), "{wait}");
    let outcome = r.json();
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert_eq!(outcome["issue"][0]["code"], "throttled");
    // Another client has its own budget.
    let r = app.send(b.get(app.url("Patient"))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // Counted by class, never by id.
    let root = app.base.trim_end_matches("/fhir");
    let metrics = app
        .anon
        .get(format!("{root}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("vesta_rate_limited_total{role=\"backend\"}"),
        "{metrics}"
    );
    assert!(!metrics.contains("svc-a"));
}
both_backends!(backend_clients_are_throttled_per_client);

/// A smart-config/ with the repository's roles and users `pat` (patient)
/// and `alice` (clinician).
fn users_config() -> tempfile::TempDir {
    let cfg = tempfile::tempdir().unwrap();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("smart-config");
    for f in ["roles.toml", "clients.toml"] {
        std::fs::copy(repo.join(f), cfg.path().join(f)).unwrap();
    }
    let hash = vesta::auth::smart_config::hash_password("a long enough password").unwrap();
    for (u, role, fu) in [
        ("pat", "patient", "Patient/p1"),
        ("alice", "clinician", "Practitioner/dr-alice"),
    ] {
        vesta::auth::smart_config::add_user(
            cfg.path(),
            vesta::auth::smart_config::User {
                username: u.into(),
                password_hash: hash.clone(),
                role: role.into(),
                fhir_user: Some(fu.into()),
            },
        )
        .unwrap();
    }
    cfg
}

async fn users_are_throttled_by_role(backend: Backend) {
    let cfg = users_config();
    let dir = cfg.path().to_path_buf();
    let app = spawn_with(backend, move |s| {
        s.smart_config_dir = dir;
        s.rate_limits
            .role_per_minute
            .insert("patient".into(), TINY_BUDGET);
    })
    .await;
    let token = |user: &str| client_with_token(&app.user_token(user));
    let (pat, alice) = (token("pat"), token("alice"));
    for _ in 0..TINY_BUDGET {
        let r = app.send(pat.get(app.url("metadata"))).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let r = app.send(pat.get(app.url("metadata"))).await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert!(r.header("retry-after").is_some());
    // The same user through another app shares the budget.
    let other_app = client_with_token(&mint(
        &app.settings,
        &app.base,
        "another-app",
        "user/*.rs",
        None,
        Some("pat"),
    ));
    let r = app.send(other_app.get(app.url("metadata"))).await;
    assert_eq!(r.status, 429, "{}", r.text);
    // A clinician's budget is the default 200 a minute.
    for _ in 0..TINY_BUDGET + 2 {
        let r = app.send(alice.get(app.url("metadata"))).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    // Anonymous reads of the CapabilityStatement are not limited.
    for _ in 0..TINY_BUDGET + 2 {
        let r = app.send(app.anon.get(app.url("metadata"))).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
}
both_backends!(users_are_throttled_by_role);

async fn preflight(
    client: &reqwest::Client,
    url: &str,
    origin: &str,
) -> reqwest::header::HeaderMap {
    let r = client
        .request(reqwest::Method::OPTIONS, url)
        .header("origin", origin)
        .header("access-control-request-method", "PUT")
        .header(
            "access-control-request-headers",
            "authorization, content-type, if-match, prefer",
        )
        .send()
        .await
        .expect("preflight");
    r.headers().clone()
}

fn header<'a>(h: &'a reqwest::header::HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

async fn cors_allows_listed_origins_only(backend: Backend) {
    let app = spawn_with(backend, |s| s.cors_origins = vec![APP_ORIGIN.into()]).await;
    let root = app.base.trim_end_matches("/fhir").to_string();
    let anon = &app.anon;

    // Allowed origin, API path: the preflight is answered.
    let h = preflight(anon, &app.url("Patient/p1"), APP_ORIGIN).await;
    assert_eq!(header(&h, "access-control-allow-origin"), Some(APP_ORIGIN));
    assert!(h.get("access-control-allow-credentials").is_none());
    let allowed = header(&h, "access-control-allow-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    for name in [
        "authorization",
        "content-type",
        "prefer",
        "if-match",
        "if-none-exist",
    ] {
        assert!(allowed.contains(name), "{name} in {allowed}");
    }
    assert!(header(&h, "access-control-allow-methods")
        .unwrap_or_default()
        .contains("PUT"));
    for path in [
        "/auth/token",
        "/auth/introspect",
        "/.well-known/smart-configuration",
    ] {
        let h = preflight(anon, &format!("{root}{path}"), APP_ORIGIN).await;
        assert_eq!(
            header(&h, "access-control-allow-origin"),
            Some(APP_ORIGIN),
            "{path}"
        );
    }

    // An actual request exposes the FHIR headers.
    let r = anon
        .get(app.url("metadata"))
        .header("origin", APP_ORIGIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let headers = r.headers().clone();
    let capabilities: serde_json::Value = r.json().await.unwrap();
    assert_eq!(capabilities["rest"][0]["security"]["cors"], true);
    assert_eq!(
        header(&headers, "access-control-allow-origin"),
        Some(APP_ORIGIN)
    );
    let exposed = header(&headers, "access-control-expose-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    for name in ["location", "etag", "content-location", "last-modified"] {
        assert!(exposed.contains(name), "{name} in {exposed}");
    }

    // Another origin, or a page that is not an API: no CORS grant.
    let h = preflight(anon, &app.url("Patient/p1"), "https://evil.example.net").await;
    assert!(h.get("access-control-allow-origin").is_none());
    let h = preflight(anon, &format!("{root}/auth/authorize"), APP_ORIGIN).await;
    assert!(h.get("access-control-allow-origin").is_none());
    let r = anon
        .get(app.url("metadata"))
        .header("origin", "https://evil.example.net")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());

    // By default no origin is allowed.
    let closed = spawn(backend).await;
    let h = preflight(&closed.anon, &closed.url("Patient/p1"), APP_ORIGIN).await;
    assert!(h.get("access-control-allow-origin").is_none());
    let capabilities = closed.send(closed.anon.get(closed.url("metadata"))).await;
    assert_eq!(capabilities.json()["rest"][0]["security"]["cors"], false);
}
both_backends!(cors_allows_listed_origins_only);

async fn security_headers_on_every_response(backend: Backend) {
    let app = spawn(backend).await;
    let root = app.base.trim_end_matches("/fhir").to_string();
    let common = |h: &reqwest::header::HeaderMap, what: &str| {
        assert_eq!(
            header(h, "x-content-type-options"),
            Some("nosniff"),
            "{what}"
        );
        assert_eq!(header(h, "x-frame-options"), Some("DENY"), "{what}");
        assert_eq!(header(h, "referrer-policy"), Some("no-referrer"), "{what}");
        assert!(
            header(h, "content-security-policy")
                .unwrap_or_default()
                .contains("frame-ancestors 'none'"),
            "{what}"
        );
        assert!(h.get("strict-transport-security").is_none(), "{what}");
    };
    // FHIR answers, successes and errors: no-store.
    for (client, path, status) in [
        (&app.anon, "metadata", 200),
        (&app.client, "Patient/nope", 404),
        (&app.anon, "Patient", 401),
    ] {
        let r = app.send(client.get(app.url(path))).await;
        assert_eq!(r.status, status, "{path}: {}", r.text);
        common(&r.headers, path);
        assert_eq!(
            r.header("cache-control").as_deref(),
            Some("no-store"),
            "{path}"
        );
        assert!(r
            .header("content-security-policy")
            .unwrap_or_default()
            .starts_with("default-src 'none'"));
    }
    // Authorization endpoints keep their own (stricter or page-specific) values.
    let r = app
        .anon
        .get(format!("{root}/.well-known/smart-configuration"))
        .send()
        .await
        .unwrap();
    common(r.headers(), "smart-configuration");
    assert_eq!(header(r.headers(), "cache-control"), Some("no-store"));
    let r = app
        .anon
        .get(format!("{root}/auth/authorize"))
        .send()
        .await
        .unwrap();
    common(r.headers(), "authorize page");
    assert!(header(r.headers(), "content-security-policy")
        .unwrap_or_default()
        .contains("form-action 'self'"));
    // Elsewhere: the common headers, cache left alone.
    let r = app
        .anon
        .get(format!("{root}/health/live"))
        .send()
        .await
        .unwrap();
    common(r.headers(), "health");
    assert!(r.headers().get("cache-control").is_none());
    let r = app
        .anon
        .get(format!("{root}/no/such/route"))
        .send()
        .await
        .unwrap();
    common(r.headers(), "fallback");

    // The Swagger UI page: its own CSP, and nothing it serves needs inline script.
    let r = app.anon.get(format!("{root}/docs/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    common(r.headers(), "docs");
    let csp = header(r.headers(), "content-security-policy")
        .unwrap_or_default()
        .to_string();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let script_src = csp
        .split(';')
        .find(|d| d.trim_start().starts_with("script-src"))
        .unwrap_or_default();
    assert!(!script_src.contains("unsafe"), "{csp}");
    let html = r.text().await.unwrap();
    let scripts = html.matches("<script").count();
    assert!(scripts >= 1, "{html}");
    assert_eq!(
        html.matches("<script src=").count(),
        scripts,
        "an inline script would be blocked: {html}"
    );
    for asset in [
        "swagger-initializer.js",
        "swagger-ui-bundle.js",
        "swagger-ui.css",
    ] {
        let r = app
            .anon
            .get(format!("{root}/docs/{asset}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{asset}");
    }
}
both_backends!(security_headers_on_every_response);

/// A self-signed certificate for localhost and 127.0.0.1, written as PEM
/// files: `(cert path, key path, cert PEM)`.
fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, String) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("certificate");
    let cert_pem = ck.cert.pem();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, &cert_pem).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    (cert, key, cert_pem)
}

async fn tls_round_trip_and_graceful_shutdown(backend: Backend) {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key, cert_pem) = self_signed(certs.path());
    let data = tempfile::tempdir().unwrap();
    let mut settings = settings_for(backend, data.path()).await;
    settings.tls_cert = Some(cert.clone());
    settings.tls_key = Some(key.clone());
    settings.shutdown_grace_ms = 2_000;
    let app = vesta::startup::Application::build(&settings)
        .await
        .expect("build with TLS");
    let base = app.base_url().to_string();
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));

    let token = mint(&settings, &base, "svc-tls", "system/*.rs", None, None);
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap())
        .default_headers(headers)
        .build()
        .unwrap();
    let r = https.get(format!("{base}/Patient")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(header(r.headers(), "strict-transport-security")
        .unwrap_or_default()
        .starts_with("max-age="));
    let bundle: serde_json::Value = r.json().await.unwrap();
    assert_eq!(bundle["resourceType"], "Bundle");
    // A client that does not trust the certificate is refused.
    let untrusting = reqwest::Client::new();
    assert!(untrusting
        .get(format!("{base}/metadata"))
        .send()
        .await
        .is_err());
    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = base.replacen("https://", "http://", 1);
    let r = reqwest::Client::new()
        .get(format!("{plain}/metadata"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(r.map(|r| r.status() != 200).unwrap_or(true));

    // Shutdown completes within the grace period.
    stop.send(()).unwrap();
    let done = tokio::time::timeout(Duration::from_secs(15), server)
        .await
        .expect("stops within the grace period")
        .expect("task");
    assert!(done.is_ok(), "{done:?}");
    assert!(https.get(format!("{base}/metadata")).send().await.is_err());

    // Bad files stop start-up and name the key.
    let mut wrong = settings_for(backend, data.path()).await;
    wrong.tls_cert = Some(key.clone());
    wrong.tls_key = Some(key.clone());
    let err = vesta::startup::Application::build(&wrong)
        .await
        .err()
        .expect("a key is not a certificate")
        .to_string();
    assert!(err.contains("'tls_cert'"), "{err}");
    wrong.tls_cert = Some(cert.clone());
    wrong.tls_key = Some(cert);
    let err = vesta::startup::Application::build(&wrong)
        .await
        .err()
        .expect("a certificate is not a key")
        .to_string();
    assert!(err.contains("'tls_key'"), "{err}");
}
both_backends!(tls_round_trip_and_graceful_shutdown);
