//! Reading a request body within the size limit and decoding it by Content-Type.

use axum::body::Body;
use serde_json::Value;

use crate::fhir::format::xml_to_json;
use crate::fhir::media::Format;
use crate::fhir::outcome::Issue;
use crate::service::ServiceError;

/// Reads at most `limit` bytes; a larger body is refused with 413.
pub async fn read_limited(body: Body, limit: usize) -> Result<bytes::Bytes, ServiceError> {
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ServiceError::too_large(format!("request body is larger than {limit} bytes")))
}

/// Decodes a body for `method` given its Content-Type. Empty bodies give `None`.
pub fn decode(
    bytes: &[u8],
    content_type: Option<&str>,
    method: &str,
    is_search: bool,
) -> Result<Option<Value>, ServiceError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let mime = content_type
        .map(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    if mime == "application/x-www-form-urlencoded" && is_search {
        let form = std::str::from_utf8(bytes)
            .map_err(|_| ServiceError::invalid("form body is not UTF-8", None))?;
        return Ok(Some(Value::String(form.to_string())));
    }
    if method == "PATCH" {
        if mime != "application/json-patch+json" {
            return Err(ServiceError::unsupported_media_type(
                "PATCH needs Content-Type application/json-patch+json",
            ));
        }
        return parse_json(bytes).map(Some);
    }
    match if mime.is_empty() {
        Some(Format::Json)
    } else {
        Format::from_mime(&mime)
    } {
        Some(Format::Json) => parse_json(bytes).map(Some),
        Some(Format::Xml) => xml_to_json(bytes).map(Some).map_err(|e| match e.code {
            "invalid" => ServiceError::invalid(
                format!("XML body could not be parsed: {}", e.message),
                Some(&e.path),
            ),
            code => ServiceError::new(400, Issue::error(code, e.message)),
        }),
        None => Err(ServiceError::unsupported_media_type(
            "Content-Type must be application/fhir+json or application/fhir+xml",
        )),
    }
}

/// Parses a JSON body: nesting depth checked before parsing, duplicate keys
/// refused after ([`crate::fhir::limits::parse_json`]).
fn parse_json(bytes: &[u8]) -> Result<Value, ServiceError> {
    crate::fhir::limits::parse_json(bytes).map_err(|e| match e {
        Ok(refusal) => ServiceError::new(
            400,
            Issue::error(refusal.code(), refusal.message("the body")),
        ),
        Err(e) => ServiceError::invalid(
            format!(
                "body is not valid JSON (line {}, column {})",
                e.line(),
                e.column()
            ),
            Some("$"),
        ),
    })
}
