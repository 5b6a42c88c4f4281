//! Parsing a search request (`name[:modifier][.chain]=value,value&…`) into
//! typed clauses against the parameter registry. Unknown parameters are
//! collected for the outcome (or refused under `handling=strict`).

use std::sync::Arc;

use super::definitions::{ParamDef, ParamKind, Registry};
use crate::fhir::ResourceType;
use crate::service::ServiceError;

/// Most clauses one search may carry (each becomes a sub-query).
pub const MAX_CLAUSES: usize = 64;
/// Most comma-separated values in one parameter.
pub const MAX_VALUES_PER_PARAM: usize = 100;
/// Deepest chain or `_has` nesting.
pub const MAX_CHAIN_DEPTH: usize = 4;

/// A search modifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Modifier {
    None,
    Missing,
    Exact,
    Contains,
    Text,
    Not,
    Above,
    Below,
    In,
    NotIn,
    OfType,
    Identifier,
    /// `subject:Patient=…`
    Type(String),
    /// `:in` / `:not-in` after the ValueSet was expanded (by the service).
    Members {
        members: Vec<super::valueset::Member>,
        negate: bool,
    },
}

/// One condition; a search ANDs its clauses.
#[derive(Debug, Clone)]
pub enum Clause {
    /// `code:modifier=v1,v2` (values ORed).
    Param {
        def: Arc<ParamDef>,
        modifier: Modifier,
        values: Vec<String>,
    },
    /// `subject:Patient.name=…`: resources whose reference `def` points to a
    /// `target` resource matching `inner`.
    Chain {
        def: Arc<ParamDef>,
        target: String,
        inner: Box<Clause>,
    },
    /// `_has:Observation:patient:code=…`: resources that a `source` resource
    /// matching `inner` references through `def`.
    Has {
        source: String,
        def: Arc<ParamDef>,
        inner: Box<Clause>,
    },
}

/// Parameters that control the result rather than filter it.
pub const RESULT_PARAMS: &[&str] = &[
    "_count",
    "_sort",
    "_include",
    "_revinclude",
    "_total",
    "_summary",
    "_elements",
    "_cursor",
    "_format",
    "_pretty",
    "_type",
    "_since",
];

fn invalid(name: &str, message: impl Into<String>) -> ServiceError {
    ServiceError::invalid(
        format!("search parameter '{name}': {}", message.into()),
        Some(name),
    )
}

fn parse_modifier(def: &ParamDef, m: &str, name: &str) -> Result<Modifier, ServiceError> {
    use ParamKind::*;
    let modifier = match m {
        "missing" => Modifier::Missing,
        "exact" if def.kind == String => Modifier::Exact,
        "contains" if matches!(def.kind, String | Uri) => Modifier::Contains,
        "text" if matches!(def.kind, Token | String | Reference) => Modifier::Text,
        "not" if def.kind == Token => Modifier::Not,
        "above" if matches!(def.kind, Uri | Token) => Modifier::Above,
        "below" if matches!(def.kind, Uri | Token) => Modifier::Below,
        "in" if def.kind == Token => Modifier::In,
        "not-in" if def.kind == Token => Modifier::NotIn,
        "of-type" if def.kind == Token => Modifier::OfType,
        "identifier" if def.kind == Reference => Modifier::Identifier,
        t if def.kind == Reference && ResourceType::parse(t).is_some() => {
            Modifier::Type(t.to_string())
        }
        _ => {
            return Err(invalid(
                name,
                format!(
                    "unknown or unsupported modifier ':{m}' for a {} parameter",
                    def.kind.as_str()
                ),
            ))
        }
    };
    Ok(modifier)
}

/// Parses one `name=value` pair for `res_type`. `Ok(None)`: an unknown
/// parameter (to be reported).
pub fn parse_clause(
    reg: &Registry,
    res_type: &str,
    name: &str,
    value: &str,
    depth: usize,
) -> Result<Option<Clause>, ServiceError> {
    if depth > MAX_CHAIN_DEPTH {
        return Err(invalid(
            name,
            format!("chains and _has may nest at most {MAX_CHAIN_DEPTH} deep"),
        ));
    }
    // A NUL or other control character matches nothing a client means (and
    // a NUL used to match everything): refused, in names and values alike.
    if name.chars().chain(value.chars()).any(char::is_control) {
        return Err(invalid(
            name.escape_default().to_string().as_str(),
            "control characters (such as %00) are not allowed in search parameters",
        ));
    }
    if let Some(rest) = name.strip_prefix("_has:") {
        // _has:Source:refparam:rest
        let mut parts = rest.splitn(3, ':');
        let (Some(source), Some(ref_param), Some(inner_name)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid(
                name,
                "_has needs the form _has:Type:reference:parameter",
            ));
        };
        if ResourceType::parse(source).is_none() {
            return Err(invalid(name, format!("unknown resource type '{source}'")));
        }
        let def = reg
            .get(source, ref_param)
            .filter(|d| d.kind == ParamKind::Reference)
            .ok_or_else(|| {
                invalid(
                    name,
                    format!("'{ref_param}' is not a reference parameter of {source}"),
                )
            })?
            .clone();
        let Some(inner) = parse_clause(reg, source, inner_name, value, depth + 1)? else {
            return Err(invalid(
                name,
                format!("unknown parameter '{inner_name}' on {source}"),
            ));
        };
        return Ok(Some(Clause::Has {
            source: source.to_string(),
            def,
            inner: Box::new(inner),
        }));
    }
    // Chains: split at the first '.' (the head may carry a type modifier).
    if let Some((head, tail)) = name.split_once('.') {
        let (code, type_mod) = match head.split_once(':') {
            Some((c, t)) => (c, Some(t)),
            None => (head, None),
        };
        let Some(def) = reg.get(res_type, code) else {
            return Ok(None);
        };
        if def.kind != ParamKind::Reference {
            return Err(invalid(
                name,
                format!("'{code}' is not a reference parameter, so it cannot be chained"),
            ));
        }
        let targets: Vec<String> = match type_mod {
            Some(t) if ResourceType::parse(t).is_some() => vec![t.to_string()],
            Some(t) => {
                return Err(invalid(
                    name,
                    format!("unknown resource type '{t}' in the chain"),
                ))
            }
            None => def.targets.clone(),
        };
        // Several possible targets: the chained parameter decides which apply.
        let mut candidates = Vec::new();
        for t in &targets {
            if let Some(inner) = parse_clause(reg, t, tail, value, depth + 1)? {
                candidates.push((t.clone(), inner));
            }
        }
        return match candidates.len() {
            0 => Err(invalid(name, format!("'{tail}' is not a parameter of the chained type(s) {}", targets.join(", ")))),
            1 => {
                let (target, inner) = candidates.remove(0);
                Ok(Some(Clause::Chain { def: def.clone(), target, inner: Box::new(inner) }))
            }
            _ => Err(invalid(
                name,
                format!("the chain is ambiguous (it could target {}); add a type, e.g. {code}:{}.{tail}", targets.join(", "), candidates[0].0),
            )),
        };
    }
    let (code, modifier_text) = match name.split_once(':') {
        Some((c, m)) => (c, Some(m)),
        None => (name, None),
    };
    let Some(def) = reg.get(res_type, code) else {
        return Ok(None);
    };
    let modifier = match modifier_text {
        Some(m) => parse_modifier(def, m, name)?,
        None => Modifier::None,
    };
    if modifier == Modifier::Missing && value != "true" && value != "false" {
        return Err(invalid(name, ":missing takes true or false"));
    }
    let values = super::values::split_escaped_keep(value, ',');
    if values.len() > MAX_VALUES_PER_PARAM {
        return Err(invalid(
            name,
            format!("at most {MAX_VALUES_PER_PARAM} values may be ORed"),
        ));
    }
    if values.iter().any(|v| v.is_empty()) {
        return Err(invalid(name, "empty value"));
    }
    if def.kind == ParamKind::Special {
        return Err(ServiceError::not_supported(format!(
            "search parameter '{name}' (special) is not supported"
        )));
    }
    Ok(Some(Clause::Param {
        def: def.clone(),
        modifier,
        values,
    }))
}
