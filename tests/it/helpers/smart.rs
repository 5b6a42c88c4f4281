//! A SMART test harness: a server with users in its own smart-config/, a
//! scripted "browser" for the authorize pages, and PKCE.

use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{spawn_with, Backend, TestApp};

pub const PASSWORD: &str = "correct horse battery";
pub const PUBLIC_CLIENT: &str = "vesta-demo-app";
pub const REDIRECT: &str = "http://localhost:4000/callback";

/// A server with users alice (clinician), rita (readonly), pat (patient p1),
/// and patients p1, p2 each with a lab and a vital-signs Observation.
pub struct SmartApp {
    pub app: TestApp,
    pub root: String,
    pub browser: reqwest::Client,
    _cfg: tempfile::TempDir,
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// `(verifier, S256 challenge)`
pub fn pkce() -> (String, String) {
    let verifier = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let challenge = b64(&Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

fn obs(id: &str, patient: &str, category: &str) -> Value {
    json!({"resourceType": "Observation", "id": id, "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "performer": [{"reference": "Practitioner/dr-alice"}]})
}

/// Pulls `name="…" value="…"` out of a form.
pub fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + marker.len();
    let end = html[start..].find('"').expect("end of value") + start;
    html[start..end].to_string()
}

/// The query parameters of a redirect's `Location`.
pub fn location_params(r: &reqwest::Response) -> Vec<(String, String)> {
    let loc = r
        .headers()
        .get("location")
        .expect("location")
        .to_str()
        .unwrap();
    url::Url::parse(loc)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

pub fn param(p: &[(String, String)], k: &str) -> Option<String> {
    p.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone())
}

impl SmartApp {
    pub async fn start(backend: Backend) -> SmartApp {
        SmartApp::start_with(backend, |_| {}).await
    }

    /// Like [`SmartApp::start`], letting the test adjust settings first.
    pub async fn start_with(
        backend: Backend,
        adjust: impl FnOnce(&mut vesta::config::Settings),
    ) -> SmartApp {
        let cfg = tempfile::tempdir().unwrap();
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("smart-config");
        for f in ["roles.toml", "clients.toml"] {
            std::fs::copy(repo.join(f), cfg.path().join(f)).unwrap();
        }
        let hash = vesta::auth::smart_config::hash_password(PASSWORD).unwrap();
        for (u, role, fu) in [
            ("alice", "clinician", "Practitioner/dr-alice"),
            ("rita", "readonly", "Practitioner/dr-rita"),
            ("pat", "patient", "Patient/p1"),
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
        let dir = cfg.path().to_path_buf();
        let app = spawn_with(backend, move |s| {
            s.smart_config_dir = dir;
            adjust(s);
        })
        .await;
        for (id, family) in [("p1", "Chalmers"), ("p2", "Smith")] {
            let r = app
                .put(
                    &format!("Patient/{id}"),
                    &json!({"resourceType": "Patient", "id": id, "name": [{"family": family}]}),
                )
                .await;
            assert_eq!(r.status, 201, "{}", r.text);
            for cat in ["laboratory", "vital-signs"] {
                let oid = format!("{id}-{cat}");
                let r = app
                    .put(&format!("Observation/{oid}"), &obs(&oid, id, cat))
                    .await;
                assert_eq!(r.status, 201, "{}", r.text);
            }
        }
        let r = app
            .put(
                "Practitioner/dr-alice",
                &json!({"resourceType": "Practitioner", "id": "dr-alice"}),
            )
            .await;
        assert_eq!(r.status, 201);
        let root = app.base.trim_end_matches("/fhir").to_string();
        let browser = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        SmartApp {
            app,
            root,
            browser,
            _cfg: cfg,
        }
    }

    pub fn authorize_url(&self, scope: &str, challenge: &str, extra: &[(&str, &str)]) -> String {
        let mut u = url::Url::parse(&format!("{}/auth/authorize", self.root)).unwrap();
        u.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", PUBLIC_CLIENT)
            .append_pair("redirect_uri", REDIRECT)
            .append_pair("scope", scope)
            .append_pair("state", "st-123")
            .append_pair("aud", &self.app.base)
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", "S256");
        for (k, v) in extra {
            u.query_pairs_mut().append_pair(k, v);
        }
        u.to_string()
    }

    /// Opens `authorize_url` and signs in as `user`: the pending request's
    /// key and the raw answer to the sign-in form.
    pub async fn sign_in(&self, authorize_url: &str, user: &str) -> (String, reqwest::Response) {
        let page = self.browser.get(authorize_url).send().await.unwrap();
        assert_eq!(page.status(), 200);
        let pending = hidden(&page.text().await.unwrap(), "pending");
        let r = self
            .browser
            .post(format!("{}/auth/login", self.root))
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

    /// Signs in on the login page of `authorize_url`; returns the consent page.
    pub async fn login(&self, authorize_url: &str, user: &str) -> (String, String) {
        let (pending, consent) = self.sign_in(authorize_url, user).await;
        assert_eq!(consent.status(), 200);
        (pending, consent.text().await.unwrap())
    }

    /// Approves every offered scope (plus `extra` form fields); returns the redirect's parameters.
    pub async fn approve(
        &self,
        pending: &str,
        consent_html: &str,
        extra: &[(&str, &str)],
    ) -> Vec<(String, String)> {
        let mut form: Vec<(String, String)> = vec![
            ("pending".into(), pending.into()),
            ("decision".into(), "approve".into()),
        ];
        let mut rest = consent_html;
        while let Some(i) = rest.find("name=\"scope\" value=\"") {
            let start = i + "name=\"scope\" value=\"".len();
            let end = rest[start..].find('"').unwrap() + start;
            form.push(("scope".into(), rest[start..end].replace("&amp;", "&")));
            rest = &rest[end..];
        }
        for (k, v) in extra {
            form.push((k.to_string(), v.to_string()));
        }
        let r = self
            .browser
            .post(format!("{}/auth/consent", self.root))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        location_params(&r)
    }

    pub async fn token(&self, form: &[(&str, &str)]) -> (u16, Value) {
        let r = self
            .browser
            .post(format!("{}/auth/token", self.root))
            .form(form)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        assert_eq!(
            r.headers()
                .get("cache-control")
                .map(|v| v.to_str().unwrap()),
            Some("no-store")
        );
        (status, r.json().await.unwrap())
    }

    /// The whole standalone flow: returns the token response.
    pub async fn standalone(&self, user: &str, scope: &str, picker: &[(&str, &str)]) -> Value {
        let (verifier, challenge) = pkce();
        let (pending, html) = self
            .login(&self.authorize_url(scope, &challenge, &[]), user)
            .await;
        let params = self.approve(&pending, &html, picker).await;
        let code = param(&params, "code").unwrap_or_else(|| panic!("no code: {params:?}"));
        let (status, body) = self
            .token(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", &verifier),
                ("client_id", PUBLIC_CLIENT),
            ])
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Revokes `token` at `/auth/revoke` as the public client; the status.
    pub async fn revoke(&self, token: &str) -> u16 {
        self.browser
            .post(format!("{}/auth/revoke", self.root))
            .form(&[("token", token), ("client_id", PUBLIC_CLIENT)])
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// A FHIR GET with `token`.
    pub async fn fhir(&self, token: &str, path: &str) -> (u16, Value) {
        let r = self
            .browser
            .get(self.app.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

/// The `(type/id)` of every entry of a Bundle.
pub fn ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            format!(
                "{}/{}",
                e["resource"]["resourceType"].as_str().unwrap_or(""),
                e["resource"]["id"].as_str().unwrap_or("")
            )
        })
        .collect()
}
