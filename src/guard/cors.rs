//! Cross-origin access for SMART browser apps: an allowlist of origins, on the
//! FHIR API, the token/introspection/revocation endpoints and the well-known
//! documents only, never with credentials (tower-http's `CorsLayer`).

use std::time::Duration;

use axum::http::{header, HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Most origins the allowlist may hold.
pub const MAX_CORS_ORIGINS: usize = 64;
/// How long a browser may cache a preflight answer, in seconds.
pub const CORS_MAX_AGE_S: u64 = 600;
/// The allowlist entry that admits every origin (still without credentials).
pub const ANY_ORIGIN: &str = "*";

/// Paths (prefixes) on which an allowed origin gets CORS headers: what a
/// browser app calls with `fetch`. The sign-in and consent pages, dynamic
/// registration and launch creation are not among them.
const CORS_PATH_PREFIXES: &[&str] = &[
    "/fhir",
    "/.well-known/",
    "/auth/token",
    "/auth/introspect",
    "/auth/revoke",
];

/// True when `path` is one a browser app may call cross-origin.
pub fn cors_path(path: &str) -> bool {
    CORS_PATH_PREFIXES.iter().any(|p| {
        path.strip_prefix(p)
            .is_some_and(|rest| p.ends_with('/') || rest.is_empty() || rest.starts_with('/'))
    })
}

/// Checks one allowlist entry and returns it normalised (`scheme://host[:port]`),
/// or says what is wrong.
pub fn normalise_origin(entry: &str) -> Result<String, String> {
    if entry == ANY_ORIGIN {
        return Ok(entry.to_string());
    }
    let url = url::Url::parse(entry)
        .map_err(|_| format!("'{entry}' is not an origin such as https://app.example.org"))?;
    let plain = matches!(url.scheme(), "http" | "https")
        && url.username().is_empty()
        && url.password().is_none()
        && url.query().is_none()
        && url.fragment().is_none()
        && url.path() == "/";
    if !plain || url.host().is_none() {
        return Err(format!(
            "'{entry}' must be scheme://host[:port] (http or https, no path)"
        ));
    }
    Ok(url.origin().ascii_serialization())
}

/// Checks the whole allowlist: size, entries, and `*` only alone.
pub fn check_origins(origins: &[String]) -> Result<Vec<String>, String> {
    if origins.len() > MAX_CORS_ORIGINS {
        return Err(format!("at most {MAX_CORS_ORIGINS} origins"));
    }
    if origins.len() > 1 && origins.iter().any(|o| o == ANY_ORIGIN) {
        return Err("'*' must be the only entry".into());
    }
    origins.iter().map(|o| normalise_origin(o)).collect()
}

/// The CORS layer for an allowlist already checked by [`check_origins`]; an
/// empty list allows no cross-origin access at all.
pub fn layer(origins: &[String]) -> CorsLayer {
    let any = origins.iter().any(|o| o == ANY_ORIGIN);
    let allowed: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    let allow = AllowOrigin::predicate(move |origin, parts| {
        cors_path(parts.uri.path()) && (any || allowed.iter().any(|a| a == origin))
    });
    CorsLayer::new()
        .allow_origin(allow)
        .allow_credentials(false)
        .allow_methods([
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            HeaderName::from_static("prefer"),
            header::IF_MATCH,
            HeaderName::from_static("if-none-exist"),
            HeaderName::from_static("x-purpose-of-use"),
        ])
        .expose_headers([
            header::LOCATION,
            header::ETAG,
            header::CONTENT_LOCATION,
            header::LAST_MODIFIED,
            header::RETRY_AFTER,
            HeaderName::from_static("x-request-id"),
        ])
        .max_age(Duration::from_secs(CORS_MAX_AGE_S))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        for p in [
            "/fhir",
            "/fhir/Patient/1",
            "/.well-known/smart-configuration",
            "/auth/token",
            "/auth/introspect",
            "/auth/revoke",
        ] {
            assert!(cors_path(p), "{p}");
        }
        for p in [
            "/fhirx",
            "/auth/authorize",
            "/auth/login",
            "/auth/register",
            "/auth/tokens",
            "/metrics",
            "/docs/",
        ] {
            assert!(!cors_path(p), "{p}");
        }
    }

    #[test]
    fn origins() {
        assert_eq!(
            normalise_origin("https://App.example.org/").unwrap(),
            "https://app.example.org"
        );
        assert_eq!(
            normalise_origin("http://localhost:4000").unwrap(),
            "http://localhost:4000"
        );
        assert_eq!(normalise_origin("*").unwrap(), "*");
        for bad in [
            "app.example.org",
            "https://app.example.org/path",
            "ftp://x.org",
            "https://u:p@x.org",
            "null",
        ] {
            assert!(normalise_origin(bad).is_err(), "{bad}");
        }
        assert!(check_origins(&["*".into(), "https://a.org".into()]).is_err());
        let many: Vec<String> = (0..=MAX_CORS_ORIGINS)
            .map(|i| format!("https://a{i}.org"))
            .collect();
        assert!(check_origins(&many).is_err());
    }
}
