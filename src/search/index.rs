//! Extraction of search-index rows at write time: every SearchParameter of
//! the resource's type is evaluated (FHIRPath) and its values turned into rows.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use super::definitions::{ParamDef, ParamKind, Registry};
use super::normalize::fold;
use super::to_rows::{self, MAX_INDEXED_STRING};
use crate::fhirpath::{self, Expression, Node, NodeValue};
use crate::store::{CompositeRow, FulltextRow, IndexRows};

/// Longest text kept for `_text` / `_content`.
pub const MAX_FULLTEXT_CHARS: usize = 4 * MAX_INDEXED_STRING;

/// The extractors of every resource type for one registry.
pub(crate) type Extractors = HashMap<String, Vec<Extractor>>;

/// A parameter ready to extract: its definition and parsed expression.
pub(crate) struct Extractor {
    def: Arc<ParamDef>,
    expr: Arc<Expression>,
    /// Composite parameters: each component's definition and expression text.
    components: Vec<(Arc<ParamDef>, String)>,
}

/// Most focus elements of one composite parameter indexed per resource.
pub const MAX_COMPOSITE_FOCUS: usize = 64;

/// Parses the extractors of every type for `reg` (once per registry).
fn build_extractors(reg: &Registry) -> Extractors {
    let mut map = HashMap::new();
    for t in crate::fhir::resource_types::RESOURCE_TYPES {
        let mut list = Vec::new();
        for def in reg.for_type(t) {
            // _id and _lastUpdated live in the resources table.
            if def.kind == ParamKind::Special || def.code == "_id" || def.code == "_lastUpdated" {
                continue;
            }
            let Some(text) = def.expression.as_deref() else {
                continue;
            };
            let Ok(expr) = fhirpath::cached(text) else {
                tracing::warn!(param = %def.code, resource_type = %t, "search parameter expression does not parse; not indexed");
                continue;
            };
            let mut components = Vec::new();
            if def.kind == ParamKind::Composite {
                for c in &def.components {
                    match reg.by_url(&c.definition) {
                        Some(cd) => components.push((cd.clone(), c.expression.clone())),
                        None => {
                            components.clear();
                            break;
                        }
                    }
                }
                if components.is_empty() {
                    continue;
                }
            }
            list.push(Extractor {
                def: def.clone(),
                expr,
                components,
            });
        }
        map.insert(t.to_string(), list);
    }
    map
}

/// The JSON value and FHIR type of a node, owned when it was computed.
fn node_json<'a>(n: &Node<'a>) -> Option<(std::borrow::Cow<'a, Value>, Option<&'static str>)> {
    use std::borrow::Cow;
    let ty = n.type_name();
    Some(match n.value() {
        NodeValue::Element { value: Some(v), .. } => (Cow::Borrowed(v), ty),
        NodeValue::Element { value: None, .. } => return None,
        NodeValue::Boolean(b) => (Cow::Owned(Value::Bool(b)), ty),
        NodeValue::Integer(i) => (Cow::Owned(Value::from(i)), ty),
        NodeValue::Decimal(d) | NodeValue::String(d) | NodeValue::Temporal(d) => {
            (Cow::Owned(Value::String(d)), ty)
        }
        NodeValue::Quantity { value, unit } => (
            Cow::Owned(
                serde_json::json!({"value": value.parse::<f64>().ok()?, "code": unit, "system": "http://unitsofmeasure.org"}),
            ),
            Some("Quantity"),
        ),
        NodeValue::TypeInfo { .. } => return None,
    })
}

/// The index rows for `resource` under the parameters of `reg`.
pub fn extract(reg: &Registry, resource: &Value) -> IndexRows {
    let mut rows = extract_where(reg, resource, |_| true);
    fulltext(resource, &mut rows);
    rows
}

/// The index rows of only the named parameters (access checks use this).
pub fn extract_params(reg: &Registry, resource: &Value, codes: &[String]) -> IndexRows {
    extract_where(reg, resource, |code| codes.iter().any(|c| c == code))
}

fn extract_where(reg: &Registry, resource: &Value, wanted: impl Fn(&str) -> bool) -> IndexRows {
    let mut rows = IndexRows::default();
    let Some(rtype) = resource.get("resourceType").and_then(Value::as_str) else {
        return rows;
    };
    let extractors = reg.extractors.get_or_init(|| build_extractors(reg));
    for ex in extractors.get(rtype).into_iter().flatten() {
        if !wanted(&ex.def.code) {
            continue;
        }
        let Ok(nodes) = fhirpath::evaluate(&ex.expr, resource) else {
            continue;
        };
        if ex.def.kind == ParamKind::Composite {
            for i in 0..nodes.len().min(MAX_COMPOSITE_FOCUS) {
                composite_rows(ex, resource, i, &mut rows);
            }
            continue;
        }
        for n in &nodes {
            if let Some((v, ty)) = node_json(n) {
                to_rows::add(&ex.def, &v, ty, &mut rows);
            }
        }
    }
    rows
}

/// A composite value: every value of the first component paired with every
/// value or range of the second, for the `i`-th focus element, one row per
/// pair. (Components are evaluated as `(focus)[i].select(component)` so
/// that the focus keeps its type, which choice elements such as `value[x]`
/// need.)
fn composite_rows(ex: &Extractor, resource: &Value, i: usize, rows: &mut IndexRows) {
    let mut subs = Vec::with_capacity(2);
    for (cdef, ctext) in &ex.components {
        let mut sub = IndexRows::default();
        let text = format!("({})[{i}].select({ctext})", ex.expr.text());
        let Ok(cexpr) = fhirpath::cached(&text) else {
            return;
        };
        if let Ok(nodes) = fhirpath::evaluate(&cexpr, resource) {
            for n in &nodes {
                if let Some((v, ty)) = node_json(n) {
                    to_rows::add(cdef, &v, ty, &mut sub);
                }
            }
        }
        subs.push(sub);
    }
    let [first, second] = subs.as_slice() else {
        return;
    };
    let firsts = text_keys(first);
    let mut seconds: Vec<SecondValue> = text_keys(second)
        .into_iter()
        .map(|k| SecondValue {
            key: Some(k.key),
            code: Some(k.code),
            low: None,
            high: None,
        })
        .collect();
    for q in &second.quantities {
        let unit = q
            .code
            .as_deref()
            .map(|c| ComponentKey::coded(q.system.as_deref(), c));
        seconds.push(SecondValue {
            key: unit.as_ref().map(|u| u.key.clone()),
            code: unit.map(|u| u.code),
            low: Some(q.low),
            high: Some(q.high),
        });
    }
    for d in &second.dates {
        seconds.push(SecondValue {
            key: None,
            code: None,
            low: Some(d.low_ms as f64),
            high: Some(d.high_ms as f64),
        });
    }
    for f in &firsts {
        for s in &seconds {
            rows.composites.push(CompositeRow {
                param: ex.def.code.clone(),
                first_key: f.key.clone(),
                first_code: f.code.clone(),
                second_key: s.key.clone(),
                second_code: s.code.clone(),
                second_low: s.low,
                second_high: s.high,
            });
        }
    }
}

/// The second component of a composite row.
struct SecondValue {
    key: Option<String>,
    code: Option<String>,
    low: Option<f64>,
    high: Option<f64>,
}

/// How a component value is matched: by its most specific key
/// (`system|code`, or the value itself) or, without a system, by its code.
struct ComponentKey {
    key: String,
    code: String,
}

impl ComponentKey {
    /// `system|code` as the key when there is a system, else the code alone.
    fn coded(system: Option<&str>, code: &str) -> ComponentKey {
        ComponentKey {
            key: match system {
                Some(s) => format!("{s}|{code}"),
                None => code.to_string(),
            },
            code: code.to_string(),
        }
    }

    /// A value matched whole (a string or a reference).
    fn whole(value: String) -> ComponentKey {
        ComponentKey {
            key: value.clone(),
            code: value,
        }
    }
}

/// The values of a token, string or reference component.
fn text_keys(sub: &IndexRows) -> Vec<ComponentKey> {
    let mut keys = Vec::new();
    for t in &sub.tokens {
        if let Some(code) = &t.code {
            keys.push(ComponentKey::coded(t.system.as_deref(), code));
        }
    }
    for s in &sub.strings {
        keys.push(ComponentKey::whole(s.value_norm.clone()));
    }
    for r in &sub.references {
        if let (Some(t), Some(id)) = (&r.target_type, &r.target_id) {
            keys.push(ComponentKey::whole(format!("{t}/{id}")));
        }
    }
    keys
}

/// `_text` (the narrative, without markup) and `_content` (every string in the resource).
fn fulltext(resource: &Value, rows: &mut IndexRows) {
    if let Some(div) = resource.pointer("/text/div").and_then(Value::as_str) {
        let text = strip_tags(div);
        push_text("_text", &text, rows);
    }
    let mut all = String::new();
    collect_strings(resource, &mut all);
    push_text("_content", &all, rows);
}

fn push_text(param: &str, text: &str, rows: &mut IndexRows) {
    let folded: String = fold(text).chars().take(MAX_FULLTEXT_CHARS).collect();
    if folded.trim().is_empty() {
        return;
    }
    rows.fulltext.push(FulltextRow {
        param: param.into(),
        text: folded,
    });
}

fn collect_strings(v: &Value, out: &mut String) {
    if out.len() > MAX_FULLTEXT_CHARS * 4 {
        return;
    }
    match v {
        Value::String(s) => {
            out.push(' ');
            out.push_str(s);
        }
        Value::Array(a) => a.iter().for_each(|x| collect_strings(x, out)),
        Value::Object(o) => {
            for (k, x) in o {
                if k != "div" && k != "data" && k != "resourceType" {
                    collect_strings(x, out);
                }
            }
        }
        _ => {}
    }
}

fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn patient_parameters_are_indexed() {
        let rows = extract(
            &crate::search::definitions::core(),
            &json!({
                "resourceType": "Patient", "id": "p1",
                "meta": {"tag": [{"system": "s", "code": "c"}]},
                "identifier": [{"system": "urn:mrn", "value": "42"}],
                "name": [{"family": "Åström", "given": ["Zoë"]}],
                "gender": "female", "birthDate": "1980-05-01", "active": true,
                "generalPractitioner": [{"reference": "Practitioner/pr1"}]
            }),
        );
        let has_string = |p: &str, v: &str| {
            rows.strings
                .iter()
                .any(|r| r.param == p && r.value_norm == v)
        };
        assert!(has_string("family", "astrom"));
        assert!(has_string("name", "zoe"));
        assert!(rows
            .tokens
            .iter()
            .any(|t| t.param == "gender" && t.code.as_deref() == Some("female")));
        assert!(rows
            .tokens
            .iter()
            .any(|t| t.param == "identifier" && t.code.as_deref() == Some("42")));
        assert!(rows
            .tokens
            .iter()
            .any(|t| t.param == "_tag" && t.code.as_deref() == Some("c")));
        assert!(rows
            .tokens
            .iter()
            .any(|t| t.param == "active" && t.code.as_deref() == Some("true")));
        assert!(rows.dates.iter().any(|d| d.param == "birthdate"));
        assert!(rows
            .references
            .iter()
            .any(|r| r.param == "general-practitioner" && r.target_id.as_deref() == Some("pr1")));
    }

    #[test]
    fn observation_patient_needs_a_patient_reference() {
        let rows = extract(
            &crate::search::definitions::core(),
            &json!({"resourceType": "Observation", "status": "final", "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
            "subject": {"reference": "Patient/p1"}, "valueQuantity": {"value": 120, "system": "http://unitsofmeasure.org", "code": "mm[Hg]"},
            "effectiveDateTime": "2023-03-05T10:00:00Z"}),
        );
        assert!(rows.references.iter().any(|r| r.param == "patient"));
        assert!(rows.references.iter().any(|r| r.param == "subject"));
        assert!(rows
            .quantities
            .iter()
            .any(|q| q.param == "value-quantity" && q.code.as_deref() == Some("mm[Hg]")));
        assert!(rows.dates.iter().any(|d| d.param == "date"));
        assert!(rows
            .composites
            .iter()
            .any(|c| c.param == "code-value-quantity"));
        let group = extract(
            &crate::search::definitions::core(),
            &json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": "Group/g1"}}),
        );
        assert!(!group.references.iter().any(|r| r.param == "patient"));
    }
}
