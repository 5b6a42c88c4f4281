//! The FHIR R4 type model FHIRPath needs: element types (choice elements,
//! backbone elements, content references), type kinds and the base-type
//! chain, loaded once from `fhir-profiles/r4-element-types.json`.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

/// The vendored element-type table (see `fhir-profiles/README.md`).
const ELEMENT_TYPES_JSON: &str = include_str!("../../fhir-profiles/r4-element-types.json");

/// Longest base-type chain walked (R4's deepest is 4: e.g. Age → Quantity →
/// Element); a guard against a malformed table.
const MAX_BASE_CHAIN: usize = 16;

/// The model, parsed on first use.
pub(crate) static MODEL: LazyLock<Model> = LazyLock::new(Model::load);

/// The type of an element found in a resource: `code` is the FHIR type name
/// (`HumanName`, `date`, `BackboneElement`, `Patient`; empty when unknown)
/// and `path` names the definition whose children it has (the type name
/// itself, or an element path such as `Patient.contact` for backbone
/// elements).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FhirType {
    pub(crate) code: &'static str,
    pub(crate) path: &'static str,
}

impl FhirType {
    pub(crate) const UNKNOWN: FhirType = FhirType { code: "", path: "" };

    pub(crate) fn is_known(&self) -> bool {
        !self.code.is_empty()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TypeKind {
    Resource,
    Complex,
    Primitive,
}

#[derive(Debug)]
struct TypeDef {
    kind: TypeKind,
    base: Option<&'static str>,
}

/// One way an element can appear in JSON: the key (`valueQuantity` for a
/// choice), the key of its primitive extension part (`_valueQuantity`) and
/// the type it has there.
#[derive(Debug)]
pub(crate) struct Alt {
    pub(crate) key: &'static str,
    pub(crate) underscore_key: &'static str,
    pub(crate) ty: FhirType,
}

/// An element of a type or backbone element.
#[derive(Debug)]
pub(crate) struct ChildDef {
    /// One entry per type; a choice element (`value[x]`) has several.
    pub(crate) alts: Vec<Alt>,
}

#[derive(Debug, Default)]
struct Container {
    children: HashMap<&'static str, ChildDef>,
    /// JSON key (`valueQuantity`, `name`) → (element name, index into alts).
    by_json_key: HashMap<&'static str, (&'static str, usize)>,
}

/// Element types and type hierarchy of FHIR R4.
#[derive(Debug)]
pub(crate) struct Model {
    types: HashMap<&'static str, TypeDef>,
    containers: HashMap<&'static str, Container>,
}

#[derive(Default)]
struct Interner(HashSet<&'static str>);

impl Interner {
    fn get(&mut self, s: &str) -> &'static str {
        if let Some(v) = self.0.get(s) {
            return v;
        }
        // Leaked once for the life of the process (the model is static).
        let v: &'static str = Box::leak(s.to_owned().into_boxed_str());
        self.0.insert(v);
        v
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

impl Model {
    fn load() -> Model {
        let raw: serde_json::Value = serde_json::from_str(ELEMENT_TYPES_JSON).unwrap_or_else(|e| {
            panic!("fhir-profiles/r4-element-types.json is not valid JSON: {e}")
        });
        Model::from_json(&raw)
    }

    /// Builds the model from the table's JSON. The table is vendored and
    /// checked by the tests, so a malformed entry is skipped, not fatal.
    fn from_json(raw: &serde_json::Value) -> Model {
        let mut interner = Interner::default();
        let mut types = HashMap::new();
        if let Some(map) = raw.get("types").and_then(|t| t.as_object()) {
            for (name, def) in map {
                let kind = match def.get(0).and_then(|k| k.as_str()) {
                    Some("resource") => TypeKind::Resource,
                    Some("primitive-type") => TypeKind::Primitive,
                    _ => TypeKind::Complex,
                };
                let base = def
                    .get(1)
                    .and_then(|b| b.as_str())
                    .filter(|b| !b.is_empty());
                let name = interner.get(name);
                types.insert(
                    name,
                    TypeDef {
                        kind,
                        base: base.map(|b| interner.get(b)),
                    },
                );
            }
        }
        let elements: Vec<(&String, Vec<&str>)> = raw
            .get("elements")
            .and_then(|e| e.as_object())
            .map(|m| {
                m.iter()
                    .map(|(k, v)| {
                        let parts = v
                            .as_array()
                            .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
                            .unwrap_or_default();
                        (k, parts)
                    })
                    .collect()
            })
            .unwrap_or_default();
        // Paths that have children of their own (backbone elements).
        let mut parents: HashSet<&str> = HashSet::new();
        for (path, _) in &elements {
            if let Some((parent, _)) = path.rsplit_once('.') {
                parents.insert(parent.trim_end_matches("[x]"));
            }
        }
        // Type code of each element path, to resolve content references.
        let mut element_code: HashMap<&str, &str> = HashMap::new();
        for (path, parts) in &elements {
            if let Some(code) = parts.get(1) {
                element_code.insert(path.as_str(), code);
            }
        }
        let mut containers: HashMap<&'static str, Container> = HashMap::new();
        for (path, parts) in &elements {
            let Some((parent, raw_name)) = path.rsplit_once('.') else {
                continue;
            };
            let choice = raw_name.ends_with("[x]");
            let name = interner.get(raw_name.trim_end_matches("[x]"));
            let codes = parts.get(1..).unwrap_or_default();
            let mut alts = Vec::new();
            for code in codes {
                let ty = if let Some(target) = code.strip_prefix('#') {
                    let target_code = element_code
                        .get(target)
                        .copied()
                        .unwrap_or("BackboneElement");
                    FhirType {
                        code: interner.get(target_code),
                        path: interner.get(target),
                    }
                } else if parents.contains(path.as_str()) {
                    FhirType {
                        code: interner.get(code),
                        path: interner.get(path),
                    }
                } else {
                    let code = interner.get(code);
                    FhirType { code, path: code }
                };
                let key = if choice {
                    interner.get(&format!("{name}{}", capitalize(code)))
                } else {
                    name
                };
                let underscore_key = interner.get(&format!("_{key}"));
                alts.push(Alt {
                    key,
                    underscore_key,
                    ty,
                });
            }
            let container = containers.entry(interner.get(parent)).or_default();
            for (i, alt) in alts.iter().enumerate() {
                container.by_json_key.insert(alt.key, (name, i));
            }
            container.children.insert(name, ChildDef { alts });
        }
        Model { types, containers }
    }

    fn base_of(&self, code: &str) -> Option<&'static str> {
        self.types.get(code).and_then(|t| t.base)
    }

    /// Containers to search for children of `ty`: its own definition, then
    /// its base types.
    fn lookup<'m, T>(
        &'m self,
        ty: FhirType,
        mut f: impl FnMut(&'m Container) -> Option<T>,
    ) -> Option<T> {
        self.lookup_keyed(ty, |_, c| f(c))
    }

    /// [`Model::lookup`], telling `f` the path of the container it is given.
    fn lookup_keyed<'m, T>(
        &'m self,
        ty: FhirType,
        mut f: impl FnMut(&'static str, &'m Container) -> Option<T>,
    ) -> Option<T> {
        let mut at = |key: &str| {
            let (k, c) = self.containers.get_key_value(key)?;
            f(k, c)
        };
        if let Some(found) = at(ty.path) {
            return Some(found);
        }
        let mut next = if ty.path == ty.code {
            self.base_of(ty.code)
        } else {
            Some(ty.code)
        };
        for _ in 0..MAX_BASE_CHAIN {
            let code = next?;
            if let Some(found) = at(code) {
                return Some(found);
            }
            next = self.base_of(code);
        }
        None
    }

    /// The element `name` (without `[x]`) of a value of type `ty`.
    pub(crate) fn child(&self, ty: FhirType, name: &str) -> Option<&ChildDef> {
        if !ty.is_known() {
            return None;
        }
        self.lookup(ty, |c| c.children.get(name))
    }

    /// The element and alternative that a JSON key of a value of type `ty`
    /// holds (`valueQuantity` → `value`, Quantity).
    pub(crate) fn child_by_json_key(&self, ty: FhirType, key: &str) -> Option<(&ChildDef, &Alt)> {
        if !ty.is_known() {
            return None;
        }
        self.lookup(ty, |c| {
            let (name, i) = c.by_json_key.get(key)?;
            let def = c.children.get(name)?;
            Some((def, def.alts.get(*i)?))
        })
    }

    /// Like [`Model::child_by_json_key`], with the path that defines the
    /// element (`Patient`, `Bundle.entry.request`, `Quantity` for an `Age`)
    /// and its name without `[x]`: the key of its binding.
    pub(crate) fn element_by_json_key(
        &self,
        ty: FhirType,
        key: &str,
    ) -> Option<(&'static str, &'static str, &Alt)> {
        if !ty.is_known() {
            return None;
        }
        self.lookup_keyed(ty, |at, c| {
            let (name, i) = c.by_json_key.get(key)?;
            let def = c.children.get(name)?;
            Some((at, *name, def.alts.get(*i)?))
        })
    }

    /// The type named `name` (`Patient`, `HumanName`, `date`).
    pub(crate) fn type_named(&self, name: &str) -> Option<FhirType> {
        let (code, _) = self.types.get_key_value(name)?;
        Some(FhirType { code, path: code })
    }

    pub(crate) fn kind(&self, code: &str) -> Option<TypeKind> {
        self.types.get(code).map(|t| t.kind)
    }

    pub(crate) fn is_resource(&self, code: &str) -> bool {
        self.kind(code) == Some(TypeKind::Resource)
    }

    pub(crate) fn is_primitive(&self, code: &str) -> bool {
        self.kind(code) == Some(TypeKind::Primitive)
    }

    /// Whether `code` is `target` or derives from it (`Age` is a `Quantity`,
    /// `Patient` a `Resource`).
    pub(crate) fn is_subtype(&self, code: &str, target: &str) -> bool {
        let mut next = Some(code);
        for _ in 0..MAX_BASE_CHAIN {
            match next {
                Some(c) if c == target => return true,
                Some(c) => next = self.base_of(c),
                None => return false,
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_choice_backbone_and_inherited_elements() {
        let m = &*MODEL;
        let obs = m.type_named("Observation").expect("Observation");
        let value = m.child(obs, "value").expect("Observation.value[x]");
        assert!(value
            .alts
            .iter()
            .any(|a| a.key == "valueQuantity" && a.ty.code == "Quantity"));
        let (def, alt) = m
            .child_by_json_key(obs, "valueString")
            .expect("valueString");
        assert_eq!((def.alts.len(), alt.ty.code), (11, "string"));
        let meta = m.child(obs, "meta").expect("inherited from Resource");
        assert_eq!(meta.alts[0].ty.code, "Meta");

        let q = m.type_named("Questionnaire").expect("Questionnaire");
        let item = m.child(q, "item").expect("item").alts[0].ty;
        assert_eq!(
            (item.code, item.path),
            ("BackboneElement", "Questionnaire.item")
        );
        let nested = m.child(item, "item").expect("item.item").alts[0].ty;
        assert_eq!(nested.path, "Questionnaire.item");
        assert!(
            m.child(item, "extension").is_some(),
            "Element.extension via BackboneElement"
        );

        let date = m.type_named("date").expect("date");
        assert!(m.child(date, "extension").is_some());
        assert!(m.is_subtype("Age", "Quantity"));
        assert!(m.is_subtype("Patient", "Resource"));
        assert!(m.is_primitive("dateTime"));
    }
}
