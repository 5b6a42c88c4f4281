//! Rendering service outcomes and errors as HTTP responses in FHIR JSON or XML.

use axum::body::Body as HttpBody;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::fhir::bundle::etag;
use crate::fhir::format::json_to_xml;
use crate::fhir::instant::format_http_date;
use crate::fhir::media::Format;
use crate::fhir::outcome::information;
use crate::service::{Body, Outcome, Preference, ServiceError};

/// How the client asked to see the response.
#[derive(Debug, Clone, Copy)]
pub struct Presentation {
    pub format: Format,
    pub pretty: bool,
    /// `Prefer: return=…`, applied to writes.
    pub preference: Preference,
}

impl Default for Presentation {
    fn default() -> Self {
        Presentation {
            format: Format::Json,
            pretty: false,
            preference: Preference::Representation,
        }
    }
}

fn body_text(json: String, p: Presentation) -> Result<String, ServiceError> {
    match p.format {
        Format::Json if p.pretty => {
            let v: Value = serde_json::from_str(&json).map_err(|_| ServiceError::internal())?;
            serde_json::to_string_pretty(&v).map_err(|_| ServiceError::internal())
        }
        Format::Json => Ok(json),
        Format::Xml => json_to_xml(&json).map_err(|e| {
            tracing::error!(
                kind = "xml_render_failed",
                "stored resource could not be rendered as XML"
            );
            let _ = e;
            ServiceError::internal()
        }),
    }
}

fn value_text(v: &Value, p: Presentation) -> Result<String, ServiceError> {
    let json = if p.pretty && p.format == Format::Json {
        serde_json::to_string_pretty(v)
    } else {
        serde_json::to_string(v)
    }
    .map_err(|_| ServiceError::internal())?;
    if p.format == Format::Xml {
        body_text(json, p)
    } else {
        Ok(json)
    }
}

fn response(status: u16, text: Option<String>, p: Presentation) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = match text {
        Some(t) => (status, t).into_response(),
        None => (status, HttpBody::empty()).into_response(),
    };
    if resp.status() != StatusCode::NO_CONTENT {
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(p.format.content_type()),
        );
    }
    resp
}

/// Renders an error as an OperationOutcome.
pub fn error(e: &ServiceError, p: Presentation) -> Response {
    let text = value_text(&e.outcome(), p).unwrap_or_else(|_| e.outcome().to_string());
    response(e.status, Some(text), p)
}

/// Renders a successful outcome, honouring `Prefer` for writes.
pub fn outcome(o: Outcome, base_url: &str, p: Presentation, is_write: bool) -> Response {
    let text = match (o.body, is_write, p.preference) {
        (_, true, Preference::Minimal) | (Body::None, _, _) => Ok(None),
        (_, true, Preference::OperationOutcome) => {
            value_text(&information("the interaction succeeded"), p).map(Some)
        }
        (Body::Stored(r), _, _) => body_text(r.json, p).map(Some),
        (Body::Generated(v), _, _) => value_text(&v, p).map(Some),
    };
    let text = match text {
        Ok(t) => t,
        Err(e) => return error(&e, p),
    };
    let mut resp = response(o.status, text, p);
    if let Some(v) = &o.version {
        let h = resp.headers_mut();
        if let Ok(val) = HeaderValue::from_str(&etag(v.version)) {
            h.insert(header::ETAG, val);
        }
        if let Ok(val) = HeaderValue::from_str(&format_http_date(v.last_updated)) {
            h.insert(header::LAST_MODIFIED, val);
        }
        if is_write && o.status != 204 {
            let loc = format!("{base_url}/{}/{}/_history/{}", v.res_type, v.id, v.version);
            if let Ok(val) = HeaderValue::from_str(&loc) {
                h.insert(header::LOCATION, val.clone());
                h.insert(header::CONTENT_LOCATION, val);
            }
        }
    }
    resp
}

/// Anything outside the known routes.
pub async fn unknown_route() -> Response {
    error(
        &ServiceError::not_found("no such endpoint"),
        Presentation::default(),
    )
}

/// A known route called with a method it does not serve.
pub async fn method_not_allowed() -> Response {
    error(
        &ServiceError::method_not_allowed("this method is not allowed on this endpoint"),
        Presentation::default(),
    )
}
