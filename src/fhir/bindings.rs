//! The FHIR R4 required bindings that can be checked offline (generated into
//! `fhir-profiles/r4-required-bindings.json` by `gen_required_bindings.py`),
//! loaded once.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

const BINDINGS_JSON: &str = include_str!("../../fhir-profiles/r4-required-bindings.json");

/// The table, parsed on first use.
pub static BINDINGS: LazyLock<Bindings> = LazyLock::new(Bindings::load);

/// The codes of one ValueSet, by system.
#[derive(Debug, Default)]
pub struct ValueSet {
    pub url: String,
    systems: HashMap<String, HashSet<String>>,
}

impl ValueSet {
    /// Whether `code` is in the set under any system (for `code` elements,
    /// whose system is implied by the binding).
    pub fn has_code(&self, code: &str) -> bool {
        self.systems.values().any(|codes| codes.contains(code))
    }

    /// Whether `system|code` is in the set.
    pub fn has_coding(&self, system: &str, code: &str) -> bool {
        self.systems
            .get(system)
            .is_some_and(|codes| codes.contains(code))
    }

    /// A short list of the allowed codes for messages.
    pub fn listing(&self) -> String {
        let mut codes: Vec<&str> = self
            .systems
            .values()
            .flat_map(|c| c.iter().map(String::as_str))
            .collect();
        codes.sort_unstable();
        let total = codes.len();
        let mut out = codes
            .iter()
            .take(12)
            .copied()
            .collect::<Vec<_>>()
            .join(", ");
        if total > 12 {
            out.push_str(&format!(", … ({total} codes)"));
        }
        out
    }
}

/// The element type a binding is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoundType {
    Code,
    Coding,
    CodeableConcept,
}

#[derive(Debug)]
pub struct Binding {
    pub ty: BoundType,
    valueset: usize,
}

/// Required bindings by defining path (`Patient` + `gender`,
/// `Bundle.entry.request` + `method`), looked up without allocating.
#[derive(Debug, Default)]
pub struct Bindings {
    by_parent: HashMap<String, HashMap<String, Binding>>,
    valuesets: Vec<ValueSet>,
}

impl Bindings {
    fn load() -> Bindings {
        let raw: serde_json::Value = serde_json::from_str(BINDINGS_JSON).unwrap_or_else(|e| {
            panic!("fhir-profiles/r4-required-bindings.json is not valid JSON: {e}")
        });
        Bindings::from_json(&raw)
    }

    /// Builds the table; a malformed entry (the file is generated and
    /// checked by the tests) is skipped.
    fn from_json(raw: &serde_json::Value) -> Bindings {
        let mut out = Bindings::default();
        let mut index: HashMap<&str, usize> = HashMap::new();
        if let Some(sets) = raw.get("valueSets").and_then(|v| v.as_object()) {
            for (url, systems) in sets {
                let mut vs = ValueSet {
                    url: url.clone(),
                    ..ValueSet::default()
                };
                for (system, codes) in systems.as_object().into_iter().flatten() {
                    let codes = codes
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|c| c.as_str().map(str::to_owned))
                        .collect();
                    vs.systems.insert(system.clone(), codes);
                }
                index.insert(url.as_str(), out.valuesets.len());
                out.valuesets.push(vs);
            }
        }
        if let Some(bindings) = raw.get("bindings").and_then(|v| v.as_object()) {
            for (path, def) in bindings {
                let url = def.get(0).and_then(|v| v.as_str()).unwrap_or_default();
                let ty = match def.get(1).and_then(|v| v.as_str()) {
                    Some("code") => BoundType::Code,
                    Some("Coding") => BoundType::Coding,
                    Some("CodeableConcept") => BoundType::CodeableConcept,
                    _ => continue,
                };
                let (Some(&valueset), Some((parent, name))) =
                    (index.get(url), path.rsplit_once('.'))
                else {
                    continue;
                };
                out.by_parent.entry(parent.to_owned()).or_default().insert(
                    name.trim_end_matches("[x]").to_owned(),
                    Binding { ty, valueset },
                );
            }
        }
        out
    }

    /// The required binding of element `name` defined at `parent`.
    pub fn get(&self, parent: &str, name: &str) -> Option<(&Binding, &ValueSet)> {
        let b = self.by_parent.get(parent)?.get(name)?;
        Some((b, self.valuesets.get(b.valueset)?))
    }

    pub fn len(&self) -> usize {
        self.by_parent.values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_required_bindings_are_there() {
        for (parent, name) in [
            ("Patient", "gender"),
            ("Observation", "status"),
            ("Condition", "clinicalStatus"),
            ("Condition", "verificationStatus"),
            ("Encounter", "status"),
            ("MedicationRequest", "status"),
            ("MedicationRequest", "intent"),
            ("AllergyIntolerance", "clinicalStatus"),
            ("AllergyIntolerance", "verificationStatus"),
            ("Procedure", "status"),
            ("DiagnosticReport", "status"),
            ("Immunization", "status"),
            ("Consent", "status"),
            ("Bundle", "type"),
            ("Appointment", "status"),
            ("Slot", "status"),
            ("Task", "status"),
            ("Task", "intent"),
            ("Bundle.entry.request", "method"),
            ("HumanName", "use"),
            ("Quantity", "comparator"),
        ] {
            assert!(
                BINDINGS.get(parent, name).is_some(),
                "{parent}.{name} has no required binding"
            );
        }
        assert!(BINDINGS.len() > 300);
        let (b, vs) = BINDINGS.get("Patient", "gender").expect("gender");
        assert_eq!(b.ty, BoundType::Code);
        assert!(vs.has_code("female") && !vs.has_code("robot"));
        let (b, vs) = BINDINGS
            .get("Condition", "clinicalStatus")
            .expect("clinical");
        assert_eq!(b.ty, BoundType::CodeableConcept);
        assert!(vs.has_coding(
            "http://terminology.hl7.org/CodeSystem/condition-clinical",
            "active"
        ));
        assert!(!vs.has_coding("http://example.org", "active"));
    }
}
