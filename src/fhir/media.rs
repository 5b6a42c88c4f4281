//! Content negotiation: FHIR JSON or XML, from `_format`, `Accept` and `Content-Type`.

/// A FHIR wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Json,
    Xml,
}

pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";
pub const FHIR_XML: &str = "application/fhir+xml; charset=utf-8";
pub const JSON_PATCH: &str = "application/json-patch+json";

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => FHIR_JSON,
            Format::Xml => FHIR_XML,
        }
    }

    /// The format a `_format` value or a MIME type names, if any.
    pub fn from_mime(value: &str) -> Option<Format> {
        let mime = value
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match mime.as_str() {
            "json" | "application/json" | "application/fhir+json" | "application/json+fhir" => {
                Some(Format::Json)
            }
            "xml"
            | "application/xml"
            | "text/xml"
            | "application/fhir+xml"
            | "application/xml+fhir" => Some(Format::Xml),
            _ => None,
        }
    }

    /// True when the client can take what Vesta answers in: `_format`, when
    /// given, names FHIR JSON or XML, and `Accept`, when given, has an entry
    /// that is one of them or a wildcard (`*/*`, `application/*`, `text/*`).
    /// Otherwise the answer is 406.
    pub fn acceptable(format_param: Option<&str>, accept: Option<&str>) -> bool {
        if let Some(f) = format_param {
            return Format::from_mime(f).is_some();
        }
        let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
            return true;
        };
        accept.split(',').any(|entry| {
            let mime = entry.split(';').next().unwrap_or("").trim();
            mime.is_empty()
                || matches!(mime, "*/*" | "application/*" | "text/*")
                || Format::from_mime(mime).is_some()
        })
    }

    /// The response format: `_format` wins, then the first `Accept` entry we
    /// can produce, then JSON.
    pub fn negotiate(format_param: Option<&str>, accept: Option<&str>) -> Format {
        if let Some(f) = format_param.and_then(Format::from_mime) {
            return f;
        }
        accept
            .into_iter()
            .flat_map(|a| a.split(','))
            .find_map(Format::from_mime)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        assert_eq!(
            Format::negotiate(Some("xml"), Some("application/fhir+json")),
            Format::Xml
        );
        assert_eq!(
            Format::negotiate(None, Some("text/html, application/fhir+xml;q=0.9")),
            Format::Xml
        );
        assert_eq!(Format::negotiate(None, Some("*/*")), Format::Json);
        assert_eq!(Format::negotiate(None, None), Format::Json);
    }

    #[test]
    fn acceptability() {
        assert!(Format::acceptable(None, None));
        assert!(Format::acceptable(Some("json"), Some("text/turtle")));
        assert!(!Format::acceptable(Some("text/turtle"), None));
        assert!(!Format::acceptable(None, Some("text/turtle")));
        assert!(!Format::acceptable(
            None,
            Some("text/turtle, image/png;q=0.5")
        ));
        assert!(Format::acceptable(None, Some("text/turtle, */*;q=0.1")));
        assert!(Format::acceptable(
            None,
            Some("text/html,application/xhtml+xml,application/xml;q=0.9")
        ));
        assert!(Format::acceptable(None, Some("application/json")));
    }
}
