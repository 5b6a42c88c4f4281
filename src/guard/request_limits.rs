//! Limits on the request line and headers, below hyper's own: a request
//! over them is answered here (414, 431) with an OperationOutcome, inside
//! the audit fence (`audit::fence`), so that its refusal is audited.
//!
//! hyper refuses before any of our code runs a URI over 65,534 bytes (414),
//! more than 100 headers or a head over about 417 KiB (431): those answers
//! cannot be audited, which is why these limits sit well below them.

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::fhir::outcome::Issue;
use crate::service::ServiceError;

/// Longest request target (path and query), in bytes (hyper: 65,534).
pub const MAX_URI_BYTES: usize = 32 * 1024;
/// Most header fields in one request (hyper: 100).
pub const MAX_HEADER_COUNT: usize = 64;
/// Largest total of header names and values, in bytes (hyper: ~417 KiB
/// for the whole head).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

fn refuse(status: StatusCode, code: &'static str, message: String) -> Response {
    let e = ServiceError::new(status.as_u16(), Issue::error(code, message));
    let mut r = (status, axum::Json(e.outcome())).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::fhir::media::FHIR_JSON),
    );
    r
}

/// The middleware: 414 for a long URI, 431 for too many or too large headers.
pub async fn request_limits(req: Request, next: Next) -> Response {
    let uri_len = req
        .uri()
        .path_and_query()
        .map_or(req.uri().path().len(), |pq| pq.as_str().len());
    if uri_len > MAX_URI_BYTES {
        return refuse(
            StatusCode::URI_TOO_LONG,
            "too-long",
            format!("the request URI is longer than {MAX_URI_BYTES} bytes (use POST _search)"),
        );
    }
    let headers = req.headers();
    let bytes: usize = headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len())
        .sum();
    if headers.len() > MAX_HEADER_COUNT || bytes > MAX_HEADER_BYTES {
        return refuse(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "too-long",
            format!("at most {MAX_HEADER_COUNT} header fields of {MAX_HEADER_BYTES} bytes in all"),
        );
    }
    next.run(req).await
}
