//! Typed interactions, and the parser that turns a method + relative URL
//! (from REST or from a Bundle entry) into one.

use serde_json::Value;

use super::search::SearchTarget;
use super::{ServiceError, ServiceResult};
use crate::fhir::{is_valid_id, ResourceType};

/// Which resources a history interaction covers.
#[derive(Debug, Clone, PartialEq)]
pub enum HistoryTarget {
    System,
    Type(ResourceType),
    Instance(ResourceType, String),
}

/// `Prefer: return=…`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Preference {
    Minimal,
    #[default]
    Representation,
    OperationOutcome,
}

impl Preference {
    /// Reads the `return=` token of a `Prefer` header; unknown values fall back to the default.
    pub fn from_header(prefer: Option<&str>) -> Preference {
        let Some(prefer) = prefer else {
            return Preference::default();
        };
        for part in prefer.split([',', ';']) {
            match part.trim().replace(' ', "").as_str() {
                "return=minimal" => return Preference::Minimal,
                "return=representation" => return Preference::Representation,
                "return=OperationOutcome" => return Preference::OperationOutcome,
                _ => {}
            }
        }
        Preference::default()
    }

    /// True for `Prefer: handling=strict`.
    pub fn strict_handling(prefer: Option<&str>) -> bool {
        prefer.is_some_and(|p| {
            p.split([',', ';'])
                .any(|t| t.trim().replace(' ', "") == "handling=strict")
        })
    }
}

/// One FHIR interaction, parsed and ready to run.
#[derive(Debug, Clone)]
pub enum Interaction {
    Capabilities,
    Read {
        res_type: ResourceType,
        id: String,
    },
    VRead {
        res_type: ResourceType,
        id: String,
        version: String,
    },
    Create {
        res_type: ResourceType,
        resource: Value,
        /// `If-None-Exist`: a search that must match nothing for the create to happen.
        if_none_exist: Option<String>,
    },
    Update {
        res_type: ResourceType,
        id: String,
        resource: Value,
        if_match: Option<i64>,
    },
    Patch {
        res_type: ResourceType,
        id: String,
        patch: Value,
        if_match: Option<i64>,
    },
    Delete {
        res_type: ResourceType,
        id: String,
    },
    /// `PUT Type?search`: update the one match, or create when none.
    ConditionalUpdate {
        res_type: ResourceType,
        query: String,
        resource: Value,
    },
    /// `PATCH Type?search`: patch the one match.
    ConditionalPatch {
        res_type: ResourceType,
        query: String,
        patch: Value,
    },
    /// `DELETE Type?search`: delete the one match.
    ConditionalDelete {
        res_type: ResourceType,
        query: String,
    },
    History {
        scope: HistoryTarget,
        params: Vec<(String, String)>,
    },
    Search {
        target: SearchTarget,
        params: Vec<(String, String)>,
        strict: bool,
    },
    Bundle {
        bundle: Value,
        preference: Preference,
    },
    /// `POST /$reindex`: put stored SearchParameters in force and rebuild the index.
    Reindex,
    /// `GET|POST /AuditEvent/$verify-audit`: check the audit trail's hash chain.
    VerifyAudit,
}

impl Interaction {
    /// A short label for logs and metrics: interaction and resource type, never ids or values.
    pub fn label(&self) -> String {
        match self {
            Interaction::Capabilities => "capabilities".into(),
            Interaction::Read { res_type, .. } => format!("read {res_type}"),
            Interaction::VRead { res_type, .. } => format!("vread {res_type}"),
            Interaction::Create { res_type, .. } => format!("create {res_type}"),
            Interaction::Update { res_type, .. } => format!("update {res_type}"),
            Interaction::Patch { res_type, .. } => format!("patch {res_type}"),
            Interaction::Delete { res_type, .. } => format!("delete {res_type}"),
            Interaction::ConditionalUpdate { res_type, .. } => {
                format!("conditional-update {res_type}")
            }
            Interaction::ConditionalPatch { res_type, .. } => {
                format!("conditional-patch {res_type}")
            }
            Interaction::ConditionalDelete { res_type, .. } => {
                format!("conditional-delete {res_type}")
            }
            Interaction::History { scope, .. } => match scope {
                HistoryTarget::System => "history-system".into(),
                HistoryTarget::Type(t) => format!("history-type {t}"),
                HistoryTarget::Instance(t, _) => format!("history-instance {t}"),
            },
            Interaction::Search { target, .. } => match target {
                SearchTarget::Type(t) => format!("search-type {t}"),
                SearchTarget::System => "search-system".into(),
                SearchTarget::Compartment { res_type, .. } => {
                    format!("search-compartment {res_type}")
                }
                SearchTarget::Everything { .. } => "everything Patient".into(),
            },
            Interaction::Bundle { .. } => "batch/transaction".into(),
            Interaction::Reindex => "operation reindex".into(),
            Interaction::VerifyAudit => "operation verify-audit".into(),
        }
    }
}

/// A request in door-neutral form.
#[derive(Debug, Clone, Default)]
pub struct RawRequest<'a> {
    pub method: &'a str,
    /// The path relative to the FHIR base, without leading or trailing `/`.
    pub path: &'a str,
    /// The raw query string, without `?`.
    pub query: &'a str,
    pub body: Option<Value>,
    pub if_match: Option<&'a str>,
    pub if_none_exist: Option<&'a str>,
    pub prefer: Option<&'a str>,
}

/// Adds the parameters of a form-encoded `_search` body.
fn with_form(mut params: Vec<(String, String)>, body: &Option<Value>) -> Vec<(String, String)> {
    if let Some(Value::String(form)) = body {
        params.extend(query_pairs(form));
    }
    params
}

/// Parses `W/"3"` or `"3"` (an ETag naming a version) into the version number.
pub fn parse_etag(value: &str) -> ServiceResult<i64> {
    let v = value.trim();
    let v = v.strip_prefix("W/").unwrap_or(v);
    let v = v.trim_matches('"');
    v.parse::<i64>()
        .map_err(|_| ServiceError::invalid("If-Match must be an ETag such as W/\"1\"", None))
}

fn resource_type(name: &str) -> ServiceResult<ResourceType> {
    ResourceType::parse(name)
        .ok_or_else(|| ServiceError::not_found(format!("unknown resource type '{name}'")))
}

fn id_segment(id: &str) -> ServiceResult<String> {
    if is_valid_id(id) {
        Ok(id.to_string())
    } else {
        Err(ServiceError::invalid(
            "invalid resource id in the URL",
            None,
        ))
    }
}

/// Percent-encodes a query value for a link (the inverse of [`query_pairs`]).
pub fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Decodes a query string into name/value pairs (`+` and `%xx` decoded).
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

fn body(body: Option<Value>) -> ServiceResult<Value> {
    body.ok_or_else(|| ServiceError::invalid("this interaction needs a request body", None))
}

fn not_allowed(method: &str) -> ServiceError {
    ServiceError::method_not_allowed(format!("{method} is not supported on this URL"))
}

/// Turns a door-neutral request into an interaction, or the right error
/// (404 for unknown URLs, 405 for a method the URL does not support).
pub fn parse(req: RawRequest<'_>) -> ServiceResult<Interaction> {
    let segments: Vec<&str> = if req.path.is_empty() {
        vec![]
    } else {
        req.path.split('/').collect()
    };
    let params = || query_pairs(req.query);
    let if_match = || req.if_match.map(parse_etag).transpose();
    let method = req.method;
    match (method, segments.as_slice()) {
        ("GET", ["metadata"]) => Ok(Interaction::Capabilities),
        (_, ["metadata"]) => Err(not_allowed(method)),
        ("POST", []) => Ok(Interaction::Bundle {
            bundle: body(req.body)?,
            preference: Preference::from_header(req.prefer),
        }),
        ("GET", []) => Ok(Interaction::Search {
            target: SearchTarget::System,
            params: params(),
            strict: Preference::strict_handling(req.prefer),
        }),
        (_, []) => Err(not_allowed(method)),
        ("POST", ["$reindex"]) => Ok(Interaction::Reindex),
        (_, ["$reindex"]) => Err(not_allowed(method)),
        ("GET" | "POST", ["AuditEvent", "$verify-audit"]) => Ok(Interaction::VerifyAudit),
        (_, ["AuditEvent", "$verify-audit"]) => Err(not_allowed(method)),
        ("GET", ["_history"]) => Ok(Interaction::History {
            scope: HistoryTarget::System,
            params: params(),
        }),
        (_, ["_history"]) => Err(not_allowed(method)),
        ("POST", ["_search"]) => Ok(Interaction::Search {
            target: SearchTarget::System,
            params: with_form(params(), &req.body),
            strict: Preference::strict_handling(req.prefer),
        }),
        ("GET", [t]) => Ok(Interaction::Search {
            target: SearchTarget::Type(resource_type(t)?.to_string()),
            params: params(),
            strict: Preference::strict_handling(req.prefer),
        }),
        ("POST", [t]) => {
            let res_type = resource_type(t)?;
            if !req.query.is_empty() {
                return Err(ServiceError::invalid(
                    "a create takes no query; use If-None-Exist for a conditional create",
                    None,
                ));
            }
            Ok(Interaction::Create {
                res_type,
                resource: body(req.body)?,
                if_none_exist: req.if_none_exist.map(str::to_string),
            })
        }
        ("POST", [t, "_search"]) => Ok(Interaction::Search {
            target: SearchTarget::Type(resource_type(t)?.to_string()),
            params: with_form(params(), &req.body),
            strict: Preference::strict_handling(req.prefer),
        }),
        ("GET", [t, "$everything"]) if *t == "Patient" => Ok(Interaction::Search {
            target: SearchTarget::Everything { patient: None },
            params: params(),
            strict: false,
        }),
        ("GET", [t, id, "$everything"]) if *t == "Patient" => Ok(Interaction::Search {
            target: SearchTarget::Everything {
                patient: Some(id_segment(id)?),
            },
            params: params(),
            strict: false,
        }),
        ("GET", [t, id, c]) if ResourceType::parse(c).is_some() || *c == "*" => {
            Ok(Interaction::Search {
                target: SearchTarget::Compartment {
                    owner_type: resource_type(t)?.to_string(),
                    owner_id: id_segment(id)?,
                    res_type: c.to_string(),
                },
                params: params(),
                strict: Preference::strict_handling(req.prefer),
            })
        }
        ("PUT", [t]) if !req.query.is_empty() => Ok(Interaction::ConditionalUpdate {
            res_type: resource_type(t)?,
            query: req.query.to_string(),
            resource: body(req.body)?,
        }),
        ("PATCH", [t]) if !req.query.is_empty() => Ok(Interaction::ConditionalPatch {
            res_type: resource_type(t)?,
            query: req.query.to_string(),
            patch: body(req.body)?,
        }),
        ("DELETE", [t]) if !req.query.is_empty() => Ok(Interaction::ConditionalDelete {
            res_type: resource_type(t)?,
            query: req.query.to_string(),
        }),
        ("PUT" | "PATCH" | "DELETE", [t]) => {
            resource_type(t)?;
            Err(ServiceError::invalid(
                "a conditional interaction needs search parameters in the URL",
                None,
            ))
        }
        (_, [t]) => {
            resource_type(t)?;
            Err(not_allowed(method))
        }
        ("GET", [t, "_history"]) => Ok(Interaction::History {
            scope: HistoryTarget::Type(resource_type(t)?),
            params: params(),
        }),
        ("GET", [t, id]) => Ok(Interaction::Read {
            res_type: resource_type(t)?,
            id: id_segment(id)?,
        }),
        ("PUT", [t, id]) => Ok(Interaction::Update {
            res_type: resource_type(t)?,
            id: id_segment(id)?,
            if_match: if_match()?,
            resource: body(req.body)?,
        }),
        ("PATCH", [t, id]) => Ok(Interaction::Patch {
            res_type: resource_type(t)?,
            id: id_segment(id)?,
            if_match: if_match()?,
            patch: body(req.body)?,
        }),
        ("DELETE", [t, id]) => Ok(Interaction::Delete {
            res_type: resource_type(t)?,
            id: id_segment(id)?,
        }),
        (_, [t, _]) => {
            resource_type(t)?;
            Err(not_allowed(method))
        }
        ("GET", [t, id, "_history"]) => Ok(Interaction::History {
            scope: HistoryTarget::Instance(resource_type(t)?, id_segment(id)?),
            params: params(),
        }),
        ("GET", [t, id, "_history", v]) => Ok(Interaction::VRead {
            res_type: resource_type(t)?,
            id: id_segment(id)?,
            version: v.to_string(),
        }),
        (_, [t, _, "_history"] | [t, _, "_history", _]) => {
            resource_type(t)?;
            Err(not_allowed(method))
        }
        _ => Err(ServiceError::not_found("no such FHIR endpoint")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(method: &str, path: &str) -> ServiceResult<Interaction> {
        parse(RawRequest {
            method,
            path,
            body: Some(serde_json::json!({})),
            ..Default::default()
        })
    }

    #[test]
    fn shapes() {
        assert!(matches!(
            p("GET", "metadata"),
            Ok(Interaction::Capabilities)
        ));
        assert!(matches!(
            p("GET", "Patient/1"),
            Ok(Interaction::Read { .. })
        ));
        assert!(matches!(
            p("GET", "Patient/1/_history/2"),
            Ok(Interaction::VRead { .. })
        ));
        assert!(matches!(
            p("GET", "Patient/_history"),
            Ok(Interaction::History { .. })
        ));
        assert!(matches!(
            p("PUT", "Patient/1"),
            Ok(Interaction::Update { .. })
        ));
        assert_eq!(p("GET", "Nope/1").unwrap_err().status, 404);
        assert_eq!(p("POST", "Patient/1").unwrap_err().status, 405);
        assert_eq!(p("DELETE", "metadata").unwrap_err().status, 405);
        assert_eq!(p("GET", "Patient/1/x/y/z").unwrap_err().status, 404);
    }

    #[test]
    fn etags_and_prefer() {
        assert_eq!(parse_etag("W/\"3\"").unwrap(), 3);
        assert_eq!(parse_etag("\"12\"").unwrap(), 12);
        assert!(parse_etag("W/\"x\"").is_err());
        assert_eq!(
            Preference::from_header(Some("return=minimal")),
            Preference::Minimal
        );
        assert!(Preference::strict_handling(Some(
            "handling=strict, return=minimal"
        )));
    }
}
