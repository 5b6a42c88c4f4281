//! Security headers on every response (set only where the handler has not
//! set its own): no MIME sniffing, no framing, no referrer, a strict
//! Content-Security-Policy (a looser one for the Swagger UI at `/docs`),
//! `Cache-Control: no-store` on FHIR and authorization responses, and HSTS
//! when Vesta itself serves TLS.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

/// HSTS lifetime: one year, the usual preload minimum.
pub const HSTS_MAX_AGE_S: u64 = 31_536_000;

/// CSP for API answers (JSON, XML, errors): nothing may load, nothing may frame.
pub const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'";

/// CSP for the Swagger UI page: its HTML loads scripts and styles from
/// `/docs/` only (no inline `<script>`), React sets inline `style`
/// attributes, the CSS embeds `data:` SVG icons, and it fetches
/// `/openapi.json` and the API ("Try it out") from this origin.
pub const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// What the header middleware adds.
#[derive(Debug, Clone, Copy)]
pub struct HeaderPolicy {
    /// Vesta terminates TLS itself: send `Strict-Transport-Security`.
    pub hsts: bool,
}

fn set_default(h: &mut HeaderMap, name: HeaderName, value: HeaderValue) {
    h.entry(name).or_insert(value);
}

/// True for the Swagger UI page and its assets.
fn is_docs(path: &str) -> bool {
    path == "/docs" || path.starts_with("/docs/")
}

/// True for FHIR and authorization answers, which may carry PHI or secrets.
fn is_no_store(path: &str) -> bool {
    ["/fhir", "/auth", "/.well-known"]
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")))
}

/// The middleware (`axum::middleware::from_fn_with_state`).
pub async fn security_headers(
    State(policy): State<HeaderPolicy>,
    req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path().to_string();
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    set_default(
        h,
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    set_default(h, header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    set_default(
        h,
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    let csp = if is_docs(&path) { DOCS_CSP } else { API_CSP };
    set_default(
        h,
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    if is_no_store(&path) {
        set_default(
            h,
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        );
    }
    if policy.hsts {
        if let Ok(v) = HeaderValue::from_str(&format!("max-age={HSTS_MAX_AGE_S}")) {
            set_default(h, header::STRICT_TRANSPORT_SECURITY, v);
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_classes() {
        assert!(is_docs("/docs/"));
        assert!(is_docs("/docs/swagger-ui.css"));
        assert!(!is_docs("/docsx"));
        assert!(is_no_store("/fhir/Patient/1"));
        assert!(is_no_store("/fhir"));
        assert!(is_no_store("/auth/token"));
        assert!(is_no_store("/.well-known/smart-configuration"));
        assert!(!is_no_store("/docs/"));
        assert!(!is_no_store("/fhirx"));
        assert!(!is_no_store("/health/live"));
    }
}
