//! FHIRPath (N1, as FHIR R4 uses it) over resources held as
//! `serde_json::Value`.
//!
//! Used at write time to extract search-index values: each SearchParameter
//! `expression` is parsed once ([`cached`]) and evaluated over every stored
//! resource ([`evaluate`]). Results borrow from the resource JSON where they
//! can, so navigation does not copy subtrees.
//!
//! ```
//! let patient = serde_json::json!({
//!     "resourceType": "Patient",
//!     "name": [{"family": "Chalmers", "given": ["Peter", "James"]}],
//!     "birthDate": "1974-12-25"
//! });
//! let expr = vesta::fhirpath::cached("Patient.name.given").unwrap();
//! let given = vesta::fhirpath::evaluate(&expr, &patient).unwrap();
//! assert_eq!(given.len(), 2);
//! assert_eq!(given[0].type_name(), Some("string"));
//! assert_eq!(given[0].json(), Some(&serde_json::json!("Peter")));
//! ```
//!
//! Element types (choice elements such as `Observation.value[x]`, backbone
//! elements, primitive types) come from the R4 StructureDefinitions, reduced
//! to `fhir-profiles/r4-element-types.json` and loaded once.
//!
//! Modules: `lexer` → `parser` (→ `ast`) → `eval` with `functions`;
//! `model` (type table), `value` (items and [`Node`]), `compare`
//! (equality, ordering), `decimal`, `temporal`, `quantity`.
//!
//! Every input is bounded by a named constant: expression length and
//! nesting (`parser::MAX_EXPRESSION_BYTES`, `parser::MAX_PARSE_DEPTH`),
//! evaluation depth and collection size (`eval::MAX_EVAL_DEPTH`,
//! `eval::MAX_COLLECTION_ITEMS`), set operations, repeat rounds, string
//! lengths and the parse cache ([`MAX_CACHED_EXPRESSIONS`]). Errors never
//! quote resource data, so they are safe to log.

mod ast;
mod compare;
mod decimal;
mod error;
mod eval;
mod functions;
mod lexer;
pub(crate) mod model;
mod parser;
mod quantity;
mod temporal;
mod value;

#[cfg(test)]
mod conformance;

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, RwLock};

pub use error::FhirPathError;
pub use value::{Node, NodeValue};

/// Most distinct expressions [`cached`] keeps; when full it starts over.
pub const MAX_CACHED_EXPRESSIONS: usize = 4096;

/// A parsed FHIRPath expression, ready to evaluate any number of times.
pub struct Expression {
    text: String,
    root: ast::Expr,
}

impl Expression {
    /// Parses `text`. Unknown functions and wrong argument counts are
    /// reported here, not at evaluation.
    pub fn parse(text: &str) -> Result<Expression, FhirPathError> {
        Ok(Expression {
            text: text.to_string(),
            root: parser::parse(text)?,
        })
    }

    /// The expression text as given.
    pub fn text(&self) -> &str {
        &self.text
    }
}

impl std::fmt::Debug for Expression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Expression").field(&self.text).finish()
    }
}

/// Evaluates `expr` with `resource` as the focus and as `%resource` /
/// `%context`. Element names the model does not know yield nothing.
///
/// `resolve()` finds contained resources (`#id`) and, in a Bundle, entries by
/// `fullUrl` or `Type/id`; any other `Type/id` reference resolves to an empty
/// placeholder of that type, so `where(resolve() is Patient)` works without
/// a database. `memberOf()` and `subsumes()` yield empty (no terminology
/// service).
pub fn evaluate<'a>(
    expr: &Expression,
    resource: &'a serde_json::Value,
) -> Result<Vec<Node<'a>>, FhirPathError> {
    Ok(evaluate_items(expr, resource, false)?
        .into_iter()
        .map(Node::new)
        .collect())
}

/// Evaluation returning the internal items; `strict` rejects element names
/// the type model does not know (the HL7 suite's `mode="strict"`).
pub(crate) fn evaluate_items<'a>(
    expr: &Expression,
    resource: &'a serde_json::Value,
    strict: bool,
) -> Result<Vec<value::Item<'a>>, FhirPathError> {
    let root = value::Item::Elem(value::Elem::resource(resource));
    let engine = eval::Engine {
        root: root.clone(),
        strict,
    };
    engine.eval(
        &expr.root,
        std::slice::from_ref(&root),
        &eval::Frame::default(),
        0,
    )
}

static CACHE: LazyLock<RwLock<HashMap<String, Arc<Expression>>>> =
    LazyLock::new(|| RwLock::new(HashMap::new()));

/// [`Expression::parse`] once per distinct text; later calls share the
/// parsed expression. Parse errors are not cached.
pub fn cached(text: &str) -> Result<Arc<Expression>, FhirPathError> {
    if let Some(found) = CACHE.read().unwrap_or_else(|e| e.into_inner()).get(text) {
        return Ok(Arc::clone(found));
    }
    let parsed = Arc::new(Expression::parse(text)?);
    let mut cache = CACHE.write().unwrap_or_else(|e| e.into_inner());
    if cache.len() >= MAX_CACHED_EXPRESSIONS {
        cache.clear();
    }
    Ok(Arc::clone(cache.entry(text.to_string()).or_insert(parsed)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval_texts(expr: &str, resource: &serde_json::Value) -> Vec<String> {
        let e = Expression::parse(expr).expect("parses");
        evaluate(&e, resource)
            .expect("evaluates")
            .iter()
            .map(|n| {
                n.as_text().map_or_else(
                    || format!("<{}>", n.type_name().unwrap_or("?")),
                    |t| t.into_owned(),
                )
            })
            .collect()
    }

    fn observation() -> serde_json::Value {
        serde_json::from_str(
            r#"{"resourceType":"Observation","status":"final",
                "code":{"coding":[{"system":"http://loinc.org","code":"29463-7"}]},
                "subject":{"reference":"Patient/123"},
                "effectiveDateTime":"2016-03-28T09:30:00+01:00",
                "valueQuantity":{"value":98.60,"unit":"F","system":"http://unitsofmeasure.org","code":"[degF]"},
                "_status":{"extension":[{"url":"http://x/e","valueString":"s"}]}}"#,
        )
        .expect("valid JSON")
    }

    #[test]
    fn search_parameter_shapes() {
        let obs = observation();
        assert_eq!(
            eval_texts("Observation.value.as(Quantity)", &obs),
            ["98.60 '[degF]'"]
        );
        assert_eq!(
            eval_texts("(Observation.effective as dateTime)", &obs),
            ["2016-03-28T09:30:00+01:00"]
        );
        assert_eq!(
            eval_texts("Observation.value.as(Quantity).value", &obs),
            ["98.60"]
        );
        assert_eq!(
            eval_texts("Observation.subject.where(resolve() is Patient)", &obs),
            ["<Reference>"]
        );
        assert_eq!(
            eval_texts("Observation.subject.where(resolve() is Group)", &obs),
            Vec::<String>::new()
        );
        assert_eq!(
            eval_texts("Observation.status.extension('http://x/e').value", &obs),
            ["s"]
        );
        assert_eq!(eval_texts("Resource.meta.tag", &obs), Vec::<String>::new());
        assert_eq!(eval_texts("Observation.valueQuantity.unit", &obs), ["F"]);
        let qr = json!({"resourceType": "QuestionnaireResponse", "status": "completed", "item": [
            {"linkId": "1", "extension": [{"url": "http://x/subject", "valueBoolean": true}],
             "answer": [{"valueReference": {"reference": "Patient/1"}}, {"valueString": "no"}]},
            {"linkId": "2", "answer": [{"valueReference": {"reference": "Patient/2"}}]}
        ]});
        assert_eq!(
            eval_texts(
                "QuestionnaireResponse.item.where(hasExtension('http://x/subject')).answer.value.ofType(Reference).reference",
                &qr
            ),
            ["Patient/1"]
        );
        assert_eq!(
            eval_texts(
                "Observation.value.as(Quantity) | Observation.value.as(Range)",
                &obs
            ),
            ["98.60 '[degF]'"]
        );
    }

    #[test]
    fn nodes_borrow_from_the_resource() {
        let obs = observation();
        let e = Expression::parse("Observation.value").expect("parses");
        let nodes = evaluate(&e, &obs).expect("evaluates");
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].type_name(), Some("Quantity"));
        let inner = obs.get("valueQuantity").expect("present");
        assert!(std::ptr::eq(nodes[0].json().expect("element"), inner));
    }

    #[test]
    fn bundle_entries_and_contained_resources() {
        let bundle = json!({"resourceType": "Bundle", "type": "collection", "entry": [
            {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Patient", "id": "p", "active": true}}
        ]});
        assert_eq!(
            eval_texts("Bundle.entry[0].resource.active", &bundle),
            ["true"]
        );
        assert_eq!(
            eval_texts("Bundle.entry.resource.is(Patient)", &bundle),
            ["true"]
        );
        let with_contained = json!({"resourceType": "Observation", "status": "final", "code": {},
            "contained": [{"resourceType": "Patient", "id": "c1", "gender": "male"}],
            "subject": {"reference": "#c1"}});
        assert_eq!(
            eval_texts("Observation.subject.resolve().gender", &with_contained),
            ["male"]
        );
    }

    #[test]
    fn deceased_and_boolean_logic() {
        let p = json!({"resourceType": "Patient", "deceasedBoolean": false});
        assert_eq!(
            eval_texts(
                "Patient.deceased.exists() and Patient.deceased != false",
                &p
            ),
            ["false"]
        );
        let p = json!({"resourceType": "Patient", "deceasedDateTime": "2020-01-01"});
        assert_eq!(
            eval_texts(
                "Patient.deceased.exists() and Patient.deceased != false",
                &p
            ),
            ["true"]
        );
        let p = json!({"resourceType": "Patient"});
        assert_eq!(
            eval_texts(
                "Patient.deceased.exists() and Patient.deceased != false",
                &p
            ),
            ["false"]
        );
    }

    #[test]
    fn errors_and_limits() {
        let p = json!({"resourceType": "Patient", "name": [{"given": ["a", "b"]}]});
        let e = Expression::parse("Patient.name.given.single()").expect("parses");
        assert!(matches!(
            evaluate(&e, &p),
            Err(FhirPathError::NotSingleton(2))
        ));
        let e = Expression::parse("%nope").expect("parses");
        assert!(matches!(
            evaluate(&e, &p),
            Err(FhirPathError::UnknownVariable(_))
        ));
        let deep = format!("{}1{}", "(".repeat(200), ")".repeat(200));
        assert!(matches!(
            Expression::parse(&deep),
            Err(FhirPathError::Limit(_))
        ));
    }

    /// The deepest expression of every shape the parser accepts parses,
    /// evaluates and drops within a tokio worker's 2 MiB of stack.
    #[test]
    fn deepest_expressions_fit_a_worker_stack() {
        use super::parser::tests::{boundary, deepest, SHAPES};
        let worker = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(|| {
                let p = json!({"resourceType": "Patient", "a": [{"a": 1}]});
                for shape in SHAPES {
                    let text = deepest(shape, boundary(shape));
                    let e = Expression::parse(&text).expect("parses");
                    let _ = evaluate(&e, &p);
                }
            })
            .expect("thread");
        assert!(worker.join().is_ok());
    }

    #[test]
    fn shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Expression>();
        assert_send_sync::<Node<'static>>();
        assert_send_sync::<FhirPathError>();
    }

    #[test]
    fn cache_returns_the_same_expression() {
        let a = cached("Patient.name.family").expect("parses");
        let b = cached("Patient.name.family").expect("parses");
        assert!(Arc::ptr_eq(&a, &b));
        assert!(cached("Patient.(").is_err());
    }
}
