//! One typed walk over a resource's JSON that checks what the structural
//! check lets through: each primitive's format ([`super::primitives`]) and
//! each code against its required binding ([`super::bindings`]), inside
//! datatypes, choice elements, extensions, primitive extensions (`_birthDate`)
//! and contained or entry resources. Element types come from the FHIRPath
//! engine's table (`fhir-profiles/r4-element-types.json`).

use std::fmt::Write as _;

use serde_json::{Map, Value};

use super::bindings::{Binding, BoundType, ValueSet, BINDINGS};
use super::primitives::{check_number, check_str, Kind, StringKind};
use super::validate::Problem;
use crate::fhirpath::model::{FhirType, MODEL};

/// Deepest object nesting walked; deeper content is reported, not walked.
pub const MAX_DEPTH: usize = 64;

/// Most problems reported for one resource (the rest are counted in one more).
pub const MAX_PROBLEMS: usize = 100;

/// Appends the problems of `resource` (of resource type `rtype`, already
/// known to be a JSON object) to `out`.
pub fn check(resource: &Value, rtype: &str, out: &mut Vec<Problem>) {
    let (Some(ty), Value::Object(map)) = (MODEL.type_named(rtype), resource) else {
        return;
    };
    let mut walk = Walk {
        out,
        dropped: 0,
        element: MODEL.type_named("Element").unwrap_or(FhirType::UNKNOWN),
    };
    let mut path = String::with_capacity(64);
    path.push_str(rtype);
    walk.object(map, ty, true, &mut path, 0);
    if walk.dropped > 0 {
        let n = walk.dropped;
        walk.out.push(Problem::new(
            rtype,
            "invalid",
            format!("{n} more problem(s) not listed"),
        ));
    }
}

struct Walk<'a> {
    out: &'a mut Vec<Problem>,
    dropped: usize,
    element: FhirType,
}

impl Walk<'_> {
    fn report(&mut self, path: &str, code: &'static str, message: impl Into<String>) {
        if self.out.len() >= MAX_PROBLEMS {
            self.dropped += 1;
        } else {
            self.out.push(Problem::new(path, code, message));
        }
    }

    fn object(
        &mut self,
        map: &Map<String, Value>,
        ty: FhirType,
        is_resource: bool,
        path: &mut String,
        depth: usize,
    ) {
        if depth > MAX_DEPTH {
            self.report(
                path,
                "too-costly",
                format!("nested deeper than {MAX_DEPTH} levels"),
            );
            return;
        }
        for (key, v) in map {
            let len = path.len();
            path.push('.');
            path.push_str(key);
            if key.starts_with('_') {
                // The id and extensions of a primitive (`_birthDate`, `_given: [null, {…}]`).
                let element = self.element;
                self.each(v, path, |w, item, path| {
                    if let Value::Object(m) = item {
                        w.object(m, element, false, path, depth + 1);
                    }
                });
            } else if is_resource && key == "id" {
                if let Value::String(s) = v {
                    self.primitive(StringKind::Id, s, path);
                }
            } else if let Some((parent, name, alt)) = MODEL.element_by_json_key(ty, key) {
                let ty = alt.ty;
                let binding = BINDINGS.get(parent, name);
                self.each(v, path, |w, item, path| {
                    w.value(item, ty, binding, path, depth)
                });
            }
            path.truncate(len);
        }
    }

    /// Calls `f` on a value, or on each item of an array (with `[i]` in the path).
    fn each(
        &mut self,
        v: &Value,
        path: &mut String,
        mut f: impl FnMut(&mut Self, &Value, &mut String),
    ) {
        match v {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let len = path.len();
                    // Writing to a String cannot fail.
                    let _ = write!(path, "[{i}]");
                    f(self, item, path);
                    path.truncate(len);
                }
            }
            _ => f(self, v, path),
        }
    }

    fn primitive(&mut self, kind: StringKind, s: &str, path: &str) -> bool {
        match check_str(kind, s) {
            Ok(()) => true,
            Err(message) => {
                self.report(path, "value", message);
                false
            }
        }
    }

    fn value(
        &mut self,
        v: &Value,
        ty: FhirType,
        binding: Option<(&Binding, &ValueSet)>,
        path: &mut String,
        depth: usize,
    ) {
        match (Kind::of(ty.code), v) {
            (Kind::Str(kind), Value::String(s)) => {
                let well_formed = self.primitive(kind, s, path);
                if let Some((b, vs)) = binding.filter(|_| well_formed) {
                    if b.ty == BoundType::Code && !vs.has_code(s) {
                        self.report(path, "code-invalid", not_in(vs));
                    }
                }
            }
            (Kind::Num(kind), Value::Number(n)) => {
                if let Err(message) = check_number(kind, n) {
                    self.report(path, "value", message);
                }
            }
            (Kind::Other, Value::Object(map)) if !MODEL.is_primitive(ty.code) => {
                if ty.code == "Resource" || MODEL.is_resource(ty.code) {
                    // contained, Bundle.entry.resource, Parameters.parameter.resource
                    let actual = map
                        .get("resourceType")
                        .and_then(Value::as_str)
                        .and_then(|t| MODEL.type_named(t))
                        .filter(|t| MODEL.is_resource(t.code));
                    if let Some(actual) = actual {
                        self.object(map, actual, true, path, depth + 1);
                    }
                    return;
                }
                self.object(map, ty, false, path, depth + 1);
                if let Some((b, vs)) = binding {
                    self.coded(map, b.ty, vs, path);
                }
            }
            // Wrong JSON kinds, booleans, xhtml: the structural check's.
            _ => {}
        }
    }

    /// A Coding or CodeableConcept under a required binding.
    fn coded(&mut self, map: &Map<String, Value>, ty: BoundType, vs: &ValueSet, path: &str) {
        let in_set = |c: &Map<String, Value>| {
            matches!(
                (c.get("system").and_then(Value::as_str), c.get("code").and_then(Value::as_str)),
                (Some(system), Some(code)) if vs.has_coding(system, code)
            )
        };
        let (ok, what) = match ty {
            BoundType::Code => return,
            BoundType::Coding => (in_set(map), "the coding (system and code) is not"),
            BoundType::CodeableConcept => (
                match map.get("coding") {
                    Some(Value::Array(codings)) => {
                        codings.iter().any(|c| c.as_object().is_some_and(in_set))
                    }
                    _ => false,
                },
                "no coding (system and code) is",
            ),
        };
        if !ok {
            let message = format!(
                "{what} in the required value set {}; allowed: {}",
                vs.url,
                vs.listing()
            );
            self.report(path, "code-invalid", message);
        }
    }
}

fn not_in(vs: &ValueSet) -> String {
    format!(
        "the code is not in the required value set {}; allowed: {}",
        vs.url,
        vs.listing()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn problems(v: Value) -> Vec<String> {
        let mut out = Vec::new();
        let rtype = v["resourceType"].as_str().unwrap_or_default().to_string();
        check(&v, &rtype, &mut out);
        let mut paths: Vec<String> = out.into_iter().map(|p| p.path).collect();
        paths.sort();
        paths
    }

    #[test]
    fn finds_every_bad_value_with_its_path() {
        let v = json!({
            "resourceType": "Patient",
            "id": "p1",
            "gender": "robot",
            "birthDate": "1990-13-45",
            "_birthDate": {"extension": [{"url": "http://x", "valueDateTime": "yesterday"}]},
            "name": [{"use": "official", "given": ["A", "B\u{1}"]}, {"use": "nickname!"}],
            "telecom": [{"system": "phone", "value": "1", "period": {"start": "2020-01-01T10:00:00"}}],
            "contact": [{"gender": "female"}],
            "multipleBirthInteger": -1,
            "contained": [{"resourceType": "Observation", "id": "bad id", "status": "bogus",
                           "code": {"text": "x"}, "valueQuantity": {"value": 1, "comparator": "=="}}],
        });
        let mut expected = vec![
            "Patient.gender",
            "Patient.birthDate",
            "Patient._birthDate.extension[0].valueDateTime",
            "Patient.name[0].given[1]",
            "Patient.name[1].use",
            "Patient.telecom[0].period.start",
            "Patient.contained[0].id",
            "Patient.contained[0].status",
            "Patient.contained[0].valueQuantity.comparator",
        ];
        expected.sort_unstable();
        assert_eq!(problems(v), expected);
    }

    #[test]
    fn codeable_concepts_under_required_bindings() {
        let cs = "http://terminology.hl7.org/CodeSystem/condition-clinical";
        let good = json!({"resourceType": "Condition", "subject": {"reference": "Patient/1"},
            "clinicalStatus": {"coding": [{"system": "http://other", "code": "x"}, {"system": cs, "code": "active"}]}});
        assert!(problems(good).is_empty());
        let bad = json!({"resourceType": "Condition", "subject": {"reference": "Patient/1"},
            "clinicalStatus": {"coding": [{"system": cs, "code": "bogus"}]},
            "verificationStatus": {"text": "confirmed"}});
        assert_eq!(
            problems(bad),
            vec!["Condition.clinicalStatus", "Condition.verificationStatus"]
        );
    }

    #[test]
    fn bundles_and_depth() {
        let v = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Patient", "birthDate": "1990-02-30"},
             "request": {"method": "POST", "url": "Patient"}},
            {"request": {"method": "FETCH", "url": "Patient"}},
        ]});
        assert_eq!(
            problems(v),
            vec![
                "Bundle.entry[0].resource.birthDate",
                "Bundle.entry[1].request.method"
            ]
        );
        let mut item = json!({"linkId": "x"});
        for _ in 0..(MAX_DEPTH + 5) {
            item = json!({"linkId": "x", "item": [item]});
        }
        let q = json!({"resourceType": "Questionnaire", "status": "active", "item": [item]});
        let found = problems(q);
        assert_eq!(found.len(), 1, "{found:?}");
    }

    #[test]
    fn valid_resources_have_no_problems() {
        let v = json!({
            "resourceType": "Observation", "id": "o.1", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "effectiveDateTime": "2020-01-01T10:00:00+01:00",
            "issued": "2020-01-01T10:00:00.123Z",
            "valueQuantity": {"value": 72.5, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
            "component": [{"code": {"text": "t"}, "valueTime": "10:00:00"},
                          {"code": {"text": "p"}, "valueSampledData": {"origin": {"value": 0}, "period": 1, "dimensions": 1, "data": "1 2"}}],
            "meta": {"lastUpdated": "2020-01-01T10:00:00Z", "profile": ["http://x/y|1"]},
            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"},
        });
        assert_eq!(problems(v), Vec::<String>::new());
    }
}
