//! Test harness: spawn the app on a backend, an HTTP client, and helpers.

pub mod node;
pub mod postgres;
pub mod python;
pub mod smart;

use std::path::{Path, PathBuf};

use serde_json::Value;
use vesta::config::Settings;
use vesta::startup::Application;

/// Which database a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A running server for one test.
pub struct TestApp {
    pub base: String,
    /// Sends an administrator's system token (`system/*.cruds`) on every request.
    pub client: reqwest::Client,
    /// Sends no token.
    pub anon: reqwest::Client,
    pub settings: Settings,
    _dir: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
    }
}

/// Settings for a test server on `backend`: port 0, a temp data folder.
pub async fn settings_for(backend: Backend, dir: &Path) -> Settings {
    let mut s = Settings {
        addr: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.to_path_buf(),
        sqlite_sync_full: false,
        max_connections: 4,
        ..Settings::default()
    };
    // The suite's tokens drive many requests a minute: give every budget the
    // most it may have (tests/it/guards.rs sets small ones of its own).
    let most = vesta::guard::rate_limit::MAX_PER_MINUTE;
    s.rate_limits.user_per_minute = most;
    s.rate_limits.backend_per_minute = most;
    for n in s.rate_limits.role_per_minute.values_mut() {
        *n = most;
    }
    if backend == Backend::Postgres {
        s.database_url = Some(postgres::fresh_database().await);
    }
    s
}

/// Starts the server on `backend` with default settings.
pub async fn spawn(backend: Backend) -> TestApp {
    spawn_with(backend, |_| {}).await
}

/// Starts the server on `backend`, letting the test adjust settings first.
pub async fn spawn_with(backend: Backend, adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = settings_for(backend, dir.path()).await;
    adjust(&mut settings);
    let app = Application::build(&settings).await.expect("build app");
    let base = app.base_url().to_string();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    let token = mint(
        &settings,
        &base,
        "vesta-test-admin",
        "system/*.cruds",
        None,
        None,
    );
    TestApp {
        base,
        client: client_with_token(&token),
        anon: reqwest::Client::new(),
        settings,
        _dir: dir,
        shutdown: Some(tx),
    }
}

/// A second instance of a running test server: the same settings (database,
/// signing keys, smart-config) on its own port, under the first one's public
/// base URL so that the first one's tokens are valid here.
pub struct Twin {
    /// Where the twin listens (`http://127.0.0.1:port/fhir`).
    pub base: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Twin {
    fn drop(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
    }
}

impl TestApp {
    /// A `user/*.rs` token of the demo app for `user` (a smart-config user).
    pub fn user_token(&self, user: &str) -> String {
        mint(
            &self.settings,
            &self.base,
            "vesta-demo-app",
            "user/*.rs",
            None,
            Some(user),
        )
    }

    /// Starts a [`Twin`] of this server.
    pub async fn twin(&self) -> Twin {
        let mut settings = self.settings.clone();
        settings.addr = "127.0.0.1:0".parse().expect("addr");
        settings.public_base_url = Some(self.base.clone());
        let app = Application::build(&settings).await.expect("build twin");
        let base = format!("http://{}/fhir", app.addr());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(app.run_until(async move {
            let _ = rx.await;
        }));
        Twin {
            base,
            shutdown: Some(tx),
        }
    }
}

/// Polls `probe` every 50 ms until it returns `want` or `within` passes;
/// returns the last answer and how long it took.
pub async fn eventually<F, Fut>(
    within: std::time::Duration,
    want: u16,
    probe: F,
) -> (u16, std::time::Duration)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = u16>,
{
    let start = std::time::Instant::now();
    loop {
        let got = probe().await;
        if got == want || start.elapsed() >= within {
            return (got, start.elapsed());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// An HTTP client that sends `token` as a bearer token.
pub fn client_with_token(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().expect("header"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("client")
}

/// Mints a token with the test server's keys (as `vesta token` does).
pub fn mint(
    settings: &Settings,
    base: &str,
    client_id: &str,
    scopes: &str,
    patient: Option<&str>,
    user: Option<&str>,
) -> String {
    let config = vesta::auth::smart_config::SmartConfig::load(&settings.smart_config_dir)
        .expect("smart-config");
    vesta::auth::mint::mint(
        &settings.data_dir,
        &config,
        base,
        &vesta::auth::mint::MintRequest {
            client_id: client_id.into(),
            scopes: scopes.into(),
            patient: patient.map(str::to_string),
            user: user.map(str::to_string),
            resources: vec![],
            ttl_s: 3600,
        },
    )
    .expect("mint")
}

/// A response, read fully.
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    /// The first OperationOutcome issue's expression, if any.
    pub fn issue_path(&self) -> Option<String> {
        self.json()["issue"][0]["expression"][0]
            .as_str()
            .map(str::to_string)
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base, path.trim_start_matches('/'))
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Reply {
        let resp = req.send().await.expect("request");
        Reply {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            text: resp.text().await.expect("body"),
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(self.client.get(self.url(path))).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send(self.client.delete(self.url(path))).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.send(
            self.client
                .post(self.url(path))
                .header("content-type", "application/fhir+json")
                .body(body.to_string()),
        )
        .await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Reply {
        self.send(
            self.client
                .put(self.url(path))
                .header("content-type", "application/fhir+json")
                .body(body.to_string()),
        )
        .await
    }
}

/// Runs an async test body once per backend, as `sqlite` and `postgres` tests.
#[macro_export]
macro_rules! both_backends {
    ($name:ident) => {
        mod $name {
            use $crate::helpers::Backend;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(Backend::Postgres).await
            }
        }
    };
}

/// The folder of data cases.
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// Removes `meta.versionId` / `meta.lastUpdated` (and an emptied `meta`) for comparisons.
pub fn without_version_meta(mut v: Value) -> Value {
    if let Some(obj) = v.as_object_mut() {
        let mut empty = false;
        if let Some(Value::Object(meta)) = obj.get_mut("meta") {
            meta.remove("versionId");
            meta.remove("lastUpdated");
            empty = meta.is_empty();
        }
        if empty {
            obj.remove("meta");
        }
    }
    v
}
