//! Builds the application on a listener and runs it until a shutdown signal,
//! then drains in-flight requests within a bounded time and closes the pool.
//! Serves plain HTTP, or HTTPS itself when `tls_cert`/`tls_key` are set.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{Request, Response};
use axum::Router;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::auth::smart_config::SmartConfig;
use crate::auth::AuthServer;
use crate::config::Settings;
use crate::guard::headers::{security_headers, HeaderPolicy};
use crate::guard::RateLimiter;
use crate::rest::{self, AppState};
use crate::service::FhirService;
use crate::store::Store;

/// A built, bound, not yet running server.
pub struct Application {
    listener: TcpListener,
    router: Router,
    /// Closed (audit journal, then store) when serving ends.
    service: FhirService,
    addr: SocketAddr,
    base_url: String,
    grace: Duration,
    /// HTTPS when set.
    tls: Option<Arc<rustls::ServerConfig>>,
}

/// Longest a client may take over the TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT_S: u64 = 10;

/// Opens the store and builds the FHIR service for `settings`, with `base_url` as its base.
pub async fn open_service(settings: &Settings, base_url: String) -> anyhow::Result<FhirService> {
    open_service_with(settings, settings.store_options(), base_url).await
}

/// [`open_service`] on a store opened with `options`.
pub async fn open_service_with(
    settings: &Settings,
    options: crate::store::StoreOptions,
    base_url: String,
) -> anyhow::Result<FhirService> {
    let store = Store::open(&options).await?;
    let mut service = FhirService::new(store, settings.limits.clone(), base_url);
    service.set_consent(settings.consent_settings());
    // Stored SearchParameters put in force by an earlier reindex stay in force.
    service
        .load_custom_search_parameters()
        .await
        .map_err(|e| anyhow::anyhow!("loading stored SearchParameters: {}", e.outcome()))?;
    Ok(service)
}

/// The server's origin (scheme, host, port) for a FHIR base URL: the issuer.
pub fn origin_of(base_url: &str) -> anyhow::Result<String> {
    let u = url::Url::parse(base_url)?;
    Ok(u.origin().ascii_serialization())
}

/// Builds the authorization server: smart-config/, signing keys (created at
/// first start), and the service for the patient picker.
pub fn open_auth(
    settings: &Settings,
    base_url: &str,
    service: FhirService,
) -> anyhow::Result<AuthServer> {
    let config = SmartConfig::load(&settings.smart_config_dir)?;
    if settings.insecure_open {
        tracing::warn!("AUTHORIZATION IS OFF (--insecure-open): every request is allowed; never use this with real data");
    }
    AuthServer::new(
        origin_of(base_url)?,
        base_url.to_string(),
        settings.auth_settings(),
        config,
        service,
    )
}

fn request_span(req: &Request<axum::body::Body>) -> tracing::Span {
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // The URI is not logged: ids and search values in it can be PHI.
    tracing::info_span!(
        "request",
        method = %req.method(),
        request_id = %request_id,
        interaction = tracing::field::Empty,
    )
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response<axum::body::Body> {
    tracing::error!(kind = "panic", "request handler panicked");
    let body = crate::fhir::outcome::operation_outcome(&[crate::fhir::outcome::Issue::error(
        "exception",
        "internal server error",
    )]);
    let mut resp = Response::new(axum::body::Body::from(body.to_string()));
    *resp.status_mut() = axum::http::StatusCode::INTERNAL_SERVER_ERROR;
    resp.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static(crate::fhir::media::FHIR_JSON),
    );
    resp
}

/// Wraps the router with request ids, request logging, the audit fence
/// (a refusal nothing else audited is audited there: `audit::fence`), the
/// request line and header limits (inside the fence) and panic recovery.
pub fn with_middleware(router: Router, service: FhirService) -> Router {
    router
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(axum::middleware::from_fn(
            crate::guard::request_limits::request_limits,
        ))
        .layer(axum::middleware::from_fn_with_state(
            service,
            crate::audit::fence::fence,
        ))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

/// Wraps the router with the guards that work on HTTP itself: CORS for the
/// allowed origins (preflights answered before routing) and the security
/// headers on every response, preflights and panics included.
pub fn with_guards(router: Router, cors_origins: &[String], tls: bool) -> Router {
    router.layer(crate::guard::cors::layer(cors_origins)).layer(
        axum::middleware::from_fn_with_state(HeaderPolicy { hsts: tls }, security_headers),
    )
}

impl Application {
    /// Opens the store (running migrations) and binds `settings.addr` (port 0 picks a free port).
    pub async fn build(settings: &Settings) -> anyhow::Result<Application> {
        settings.validate()?;
        let tls = match (&settings.tls_cert, &settings.tls_key) {
            (Some(cert), Some(key)) => Some(crate::guard::tls::server_config(cert, key)?),
            _ => None,
        };
        let listener = TcpListener::bind(settings.addr).await?;
        let addr = listener.local_addr()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let base_url = settings
            .public_base_url
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{addr}/fhir"));
        let mut service = open_service(settings, base_url.clone()).await?;
        service.set_rate_limiter(RateLimiter::new(&settings.rate_limits));
        let auth = Arc::new(open_auth(settings, &base_url, service.clone())?);
        let mut security = crate::fhir::capability::smart_security(&auth.issuer);
        // Browser apps on other origins are served only when some are allowed.
        security["cors"] = serde_json::Value::Bool(!settings.cors_origins.is_empty());
        service.set_security(security);
        let closing = service.clone();
        let fenced = service.clone();
        let state = Arc::new(AppState { service, auth });
        let mcp = crate::mcp::http::routes(state.clone(), settings);
        let router = with_guards(
            with_middleware(rest::router(state).merge(mcp), fenced),
            &settings.cors_origins,
            tls.is_some(),
        );
        Ok(Application {
            listener,
            router,
            service: closing,
            addr,
            base_url,
            grace: Duration::from_millis(settings.shutdown_grace_ms),
            tls,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Serves until `shutdown` completes, then stops accepting, gives
    /// in-flight requests up to the grace period, and closes the pool.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let mut server = match self.tls {
            None => {
                let server = axum::serve(
                    self.listener,
                    self.router
                        .into_make_service_with_connect_info::<SocketAddr>(),
                )
                .with_graceful_shutdown(async move {
                    let _ = stop_rx.await;
                });
                tokio::spawn(async move { server.await })
            }
            Some(config) => {
                let handle = axum_server::Handle::new();
                let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(
                    axum_server::tls_rustls::RustlsConfig::from_config(config),
                )
                .handshake_timeout(Duration::from_secs(TLS_HANDSHAKE_TIMEOUT_S));
                let server = axum_server::from_tcp(self.listener.into_std()?)?
                    .acceptor(acceptor)
                    .handle(handle.clone());
                let grace = self.grace;
                tokio::spawn(async move {
                    let _ = stop_rx.await;
                    handle.graceful_shutdown(Some(grace));
                });
                let service = self
                    .router
                    .into_make_service_with_connect_info::<SocketAddr>();
                tokio::spawn(async move { server.serve(service).await })
            }
        };
        let purger = tokio::spawn(purge_auth_state(self.service.store().clone()));
        let watcher = self.service.store().watch_changes();
        tokio::select! {
            res = &mut server => {
                purger.abort();
                watcher.abort();
                self.service.close().await;
                return Ok(res??);
            }
            _ = shutdown => {}
        }
        tracing::info!(
            grace_ms = self.grace.as_millis() as u64,
            "shutdown signal received; draining"
        );
        let _ = stop_tx.send(());
        match tokio::time::timeout(self.grace, &mut server).await {
            Ok(res) => res??,
            Err(_) => {
                tracing::warn!("grace period over; aborting remaining requests");
                server.abort();
            }
        }
        purger.abort();
        watcher.abort();
        self.service.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// How often expired codes, launches and tokens are deleted.
pub const AUTH_PURGE_INTERVAL_S: u64 = 600;

/// Deletes expired authorization state now and then (any instance may; the
/// delete is idempotent).
async fn purge_auth_state(store: Store) {
    let mut tick = tokio::time::interval(Duration::from_secs(AUTH_PURGE_INTERVAL_S));
    loop {
        tick.tick().await;
        match store.auth_purge(crate::fhir::instant::now_ms()).await {
            Ok(n) if n > 0 => tracing::info!(rows = n, "expired authorization state purged"),
            Ok(_) => {}
            Err(e) => tracing::warn!(
                error_kind = e.kind_name(),
                "purging expired authorization state failed"
            ),
        }
    }
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
