//! Turning the values a parameter's expression finds into index rows, by
//! parameter kind and FHIR type (HumanName, Coding, Period, Quantity, ...).

use serde_json::Value;

use super::dates;
use super::definitions::{ParamDef, ParamKind};
use super::normalize::fold;
use super::values::parse_decimal;
use crate::fhir::{is_valid_id, ResourceType};
use crate::store::{
    DateRow, IndexRows, NumberRow, QuantityRow, ReferenceRow, StringRow, TokenRow, UriRow,
};

/// Longest string value indexed; longer values are cut (on a char boundary).
pub const MAX_INDEXED_STRING: usize = 512;

fn cut(s: &str) -> &str {
    if s.len() <= MAX_INDEXED_STRING {
        return s;
    }
    let mut end = MAX_INDEXED_STRING;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(|s| cut(s).to_string())
}

fn strings_of(v: Option<&Value>) -> Vec<&str> {
    match v {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    }
}

fn push_string(param: &str, s: &str, out: &mut IndexRows) {
    let s = cut(s);
    out.strings.push(StringRow {
        param: param.to_string(),
        value_norm: fold(s),
        value: s.to_string(),
    });
}

/// Adds the rows for one value `v` of parameter `def` (FHIR type `ty` when known).
pub fn add(def: &ParamDef, v: &Value, ty: Option<&str>, out: &mut IndexRows) {
    let p = def.code.as_str();
    match def.kind {
        ParamKind::String => match v {
            Value::String(s) => push_string(p, s, out),
            Value::Object(o) => {
                // HumanName and Address: every part is searchable.
                for key in [
                    "family",
                    "given",
                    "prefix",
                    "suffix",
                    "text",
                    "line",
                    "city",
                    "district",
                    "state",
                    "postalCode",
                    "country",
                ] {
                    for s in strings_of(o.get(key)) {
                        push_string(p, s, out);
                    }
                }
            }
            _ => {}
        },
        ParamKind::Token => token_rows(p, v, ty, out),
        ParamKind::Reference => reference_rows(def, v, out),
        ParamKind::Date => {
            if let Some((low_ms, high_ms)) = date_range(v) {
                out.dates.push(DateRow {
                    param: p.to_string(),
                    low_ms,
                    high_ms,
                });
            }
        }
        ParamKind::Number => {
            if let Some((low, high)) = number_range(v) {
                out.numbers.push(NumberRow {
                    param: p.to_string(),
                    low,
                    high,
                });
            }
        }
        ParamKind::Quantity => quantity_rows(p, v, out),
        ParamKind::Uri => {
            if let Value::String(s) = v {
                out.uris.push(UriRow {
                    param: p.to_string(),
                    value: cut(s).to_string(),
                });
            }
        }
        ParamKind::Composite | ParamKind::Special => {}
    }
}

fn token(
    param: &str,
    system: Option<String>,
    code: Option<String>,
    display: Option<&str>,
    out: &mut IndexRows,
) {
    out.tokens.push(TokenRow {
        param: param.to_string(),
        system,
        code,
        text_norm: display.map(|d| fold(cut(d))),
    });
}

fn token_rows(p: &str, v: &Value, ty: Option<&str>, out: &mut IndexRows) {
    match v {
        Value::String(s) => token(p, None, Some(cut(s).to_string()), None, out),
        Value::Bool(b) => token(p, None, Some(b.to_string()), None, out),
        Value::Number(n) => token(p, None, Some(n.to_string()), None, out),
        Value::Object(o) => {
            // The FHIR type decides; JSON shape is the fallback for untyped values.
            let kind = match ty {
                Some("CodeableConcept") => "cc",
                Some("Identifier") => "identifier",
                Some("ContactPoint") => "contact",
                Some(_) if o.contains_key("coding") => "cc",
                Some(_) => "coding",
                None if o.contains_key("coding") => "cc",
                None if o.contains_key("value")
                    && (o.contains_key("use") || o.contains_key("rank")) =>
                {
                    "contact"
                }
                None if o.contains_key("value") => "identifier",
                None => "coding",
            };
            match kind {
                "cc" => {
                    let cc_text = o.get("text").and_then(Value::as_str);
                    let codings = o
                        .get("coding")
                        .and_then(Value::as_array)
                        .map(Vec::as_slice)
                        .unwrap_or_default();
                    for c in codings {
                        let display = c.get("display").and_then(Value::as_str).or(cc_text);
                        token(p, text(c.get("system")), text(c.get("code")), display, out);
                    }
                    if codings.is_empty() && cc_text.is_some() {
                        token(p, None, None, cc_text, out);
                    }
                }
                "identifier" => {
                    let type_text = o
                        .get("type")
                        .and_then(|t| t.get("text"))
                        .and_then(Value::as_str);
                    token(
                        p,
                        text(o.get("system")),
                        text(o.get("value")),
                        type_text,
                        out,
                    );
                    // `:of-type`: the identifier's type coding with its value.
                    let type_codings = o
                        .get("type")
                        .and_then(|t| t.get("coding"))
                        .and_then(Value::as_array);
                    for c in type_codings.into_iter().flatten() {
                        let (Some(tc), Some(val)) = (
                            c.get("code").and_then(Value::as_str),
                            o.get("value").and_then(Value::as_str),
                        ) else {
                            continue;
                        };
                        token(
                            &format!("{p}:of-type"),
                            text(c.get("system")),
                            Some(format!("{tc}|{}", cut(val))),
                            None,
                            out,
                        );
                    }
                }
                "contact" => token(p, None, text(o.get("value")), None, out),
                _ => token(
                    p,
                    text(o.get("system")),
                    text(o.get("code")),
                    o.get("display").and_then(Value::as_str),
                    out,
                ),
            }
        }
        _ => {}
    }
}

fn reference_rows(def: &ParamDef, v: &Value, out: &mut IndexRows) {
    let p = def.code.as_str();
    let reference = match v {
        Value::Object(o) => match o.get("reference").and_then(Value::as_str) {
            Some(r) => r,
            None => return,
        },
        // canonical / uri values of reference parameters
        Value::String(s) => s.as_str(),
        _ => return,
    };
    let row = parse_reference(p, reference);
    if let (Some(want), Some(got)) = (def.resolve_filter.as_deref(), row.target_type.as_deref()) {
        if want != got {
            return;
        }
    }
    if def.resolve_filter.is_some() && row.target_type.is_none() {
        return;
    }
    out.references.push(row);
}

/// Splits `Type/id` (optionally `/_history/n`, or an absolute URL ending in
/// `Type/id`) into type and id; other references are kept as URLs.
pub fn parse_reference(param: &str, reference: &str) -> ReferenceRow {
    let trimmed = reference.split('/').collect::<Vec<_>>();
    let n = trimmed.len();
    let local = |t: &str, id: &str| ResourceType::parse(t).is_some() && is_valid_id(id);
    let found = if n >= 4 && trimmed[n - 2] == "_history" && local(trimmed[n - 4], trimmed[n - 3]) {
        Some((trimmed[n - 4], trimmed[n - 3]))
    } else if n >= 2 && local(trimmed[n - 2], trimmed[n - 1]) {
        Some((trimmed[n - 2], trimmed[n - 1]))
    } else {
        None
    };
    let relative =
        !reference.contains("://") && !reference.starts_with("urn:") && !reference.starts_with('#');
    match found {
        Some((t, id)) => ReferenceRow {
            param: param.to_string(),
            target_type: Some(t.to_string()),
            target_id: Some(id.to_string()),
            target_url: if relative {
                None
            } else {
                Some(cut(reference).to_string())
            },
        },
        None => ReferenceRow {
            param: param.to_string(),
            target_type: None,
            target_id: None,
            target_url: Some(cut(reference).to_string()),
        },
    }
}

/// The date range of a date/dateTime/instant string, a Period, or a Timing's events.
pub fn date_range(v: &Value) -> Option<(i64, i64)> {
    match v {
        Value::String(s) => dates::range(s),
        Value::Object(o) if o.contains_key("start") || o.contains_key("end") => {
            let low = o
                .get("start")
                .and_then(Value::as_str)
                .and_then(dates::range)
                .map_or(dates::MIN_MS, |r| r.0);
            let high = o
                .get("end")
                .and_then(Value::as_str)
                .and_then(dates::range)
                .map_or(dates::MAX_MS, |r| r.1);
            Some((low, high))
        }
        Value::Object(o) => {
            let events: Vec<(i64, i64)> = strings_of(o.get("event"))
                .into_iter()
                .filter_map(dates::range)
                .collect();
            let low = events.iter().map(|r| r.0).min()?;
            let high = events.iter().map(|r| r.1).max()?;
            Some((low, high))
        }
        _ => None,
    }
}

fn number_range(v: &Value) -> Option<(f64, f64)> {
    let n = match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => return None,
    };
    let d = parse_decimal(&n)?;
    Some((d.value - d.half_width, d.value + d.half_width))
}

fn quantity_rows(p: &str, v: &Value, out: &mut IndexRows) {
    let Value::Object(o) = v else {
        if let Some((low, high)) = number_range(v) {
            out.quantities.push(QuantityRow {
                param: p.to_string(),
                system: None,
                code: None,
                low,
                high,
            });
        }
        return;
    };
    if o.contains_key("low") || o.contains_key("high") {
        // Range: the span from low to high, in low's unit.
        let unit = o.get("low").or_else(|| o.get("high"));
        let lo = o
            .get("low")
            .and_then(|q| q.get("value"))
            .and_then(number_range)
            .map_or(f64::MIN, |r| r.0);
        let hi = o
            .get("high")
            .and_then(|q| q.get("value"))
            .and_then(number_range)
            .map_or(f64::MAX, |r| r.1);
        out.quantities.push(QuantityRow {
            param: p.to_string(),
            system: unit.and_then(|u| text(u.get("system"))),
            code: unit.and_then(|u| text(u.get("code")).or_else(|| text(u.get("unit")))),
            low: lo,
            high: hi,
        });
        return;
    }
    let Some((low, high)) = o.get("value").and_then(number_range) else {
        return;
    };
    let (system, code) = if let Some(cur) = o.get("currency").and_then(Value::as_str) {
        (
            Some("urn:iso:std:iso:4217".to_string()),
            Some(cur.to_string()),
        )
    } else {
        (text(o.get("system")), text(o.get("code")))
    };
    out.quantities.push(QuantityRow {
        param: p.to_string(),
        system: system.clone(),
        code: code.clone(),
        low,
        high,
    });
    // The human unit is searchable as a code too (`5.4||mg`).
    if let Some(unit) = text(o.get("unit")).filter(|u| Some(u) != code.as_ref()) {
        out.quantities.push(QuantityRow {
            param: p.to_string(),
            system: None,
            code: Some(unit),
            low,
            high,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split() {
        let r = parse_reference("subject", "Patient/p1/_history/2");
        assert_eq!(
            (r.target_type.as_deref(), r.target_id.as_deref()),
            (Some("Patient"), Some("p1"))
        );
        let r = parse_reference("subject", "http://other.org/fhir/Patient/9");
        assert_eq!(r.target_id.as_deref(), Some("9"));
        assert_eq!(
            r.target_url.as_deref(),
            Some("http://other.org/fhir/Patient/9")
        );
        let r = parse_reference("subject", "urn:uuid:1234");
        assert!(r.target_id.is_none());
    }

    #[test]
    fn periods_are_open_ended() {
        let v: Value = serde_json::json!({"start": "2020-01-01"});
        let (lo, hi) = date_range(&v).unwrap();
        assert!(lo > 0 && hi == dates::MAX_MS);
    }
}
