//! SearchParameter definitions: the R4 core set and US Core's, vendored in
//! `fhir-profiles/`, indexed by resource type and code, with each parameter's
//! FHIRPath expression specialised to the one resource type it is used on.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, OnceLock, RwLock};

use serde_json::Value;

use crate::fhir::resource_types::RESOURCE_TYPES;

/// The kind of a search parameter (`SearchParameter.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParamKind {
    Number,
    Date,
    String,
    Token,
    Reference,
    Composite,
    Quantity,
    Uri,
    Special,
}

impl ParamKind {
    pub fn parse(s: &str) -> Option<ParamKind> {
        Some(match s {
            "number" => ParamKind::Number,
            "date" => ParamKind::Date,
            "string" => ParamKind::String,
            "token" => ParamKind::Token,
            "reference" => ParamKind::Reference,
            "composite" => ParamKind::Composite,
            "quantity" => ParamKind::Quantity,
            "uri" => ParamKind::Uri,
            "special" => ParamKind::Special,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ParamKind::Number => "number",
            ParamKind::Date => "date",
            ParamKind::String => "string",
            ParamKind::Token => "token",
            ParamKind::Reference => "reference",
            ParamKind::Composite => "composite",
            ParamKind::Quantity => "quantity",
            ParamKind::Uri => "uri",
            ParamKind::Special => "special",
        }
    }
}

/// One component of a composite parameter.
#[derive(Debug, Clone)]
pub struct Component {
    /// Canonical URL of the component's own SearchParameter.
    pub definition: String,
    /// FHIRPath relative to the composite's focus.
    pub expression: String,
    /// The component parameter's kind, once the registry has resolved it.
    pub kind: Option<ParamKind>,
}

/// A search parameter as it applies to one resource type.
#[derive(Debug, Clone)]
pub struct ParamDef {
    pub code: String,
    pub url: String,
    pub kind: ParamKind,
    /// The expression restricted to this resource type's branches, with any
    /// `.where(resolve() is X)` filter moved to [`ParamDef::resolve_filter`].
    pub expression: Option<String>,
    /// Reference parameters: the resource types a value may point to.
    pub targets: Vec<String>,
    /// From `.where(resolve() is X)`: keep only references to type X.
    pub resolve_filter: Option<String>,
    pub components: Vec<Component>,
}

/// Every parameter, by resource type and code.
#[derive(Default)]
pub struct Registry {
    by_type: HashMap<String, HashMap<String, Arc<ParamDef>>>,
    by_url: HashMap<String, Arc<ParamDef>>,
    /// SearchParameter resources stored on this server that are in force.
    custom: usize,
    /// The parsed extractors for this registry (built at first use).
    pub(crate) extractors: OnceLock<super::index::Extractors>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("types", &self.by_type.len())
            .field("custom", &self.custom)
            .finish()
    }
}

static CORE: &str = include_str!("../../fhir-profiles/search-parameters.json");
static US_CORE: &str = include_str!("../../fhir-profiles/search-parameters-uscore.json");

/// The vendored SearchParameter resources (R4 core, then US Core).
static VENDORED: LazyLock<Vec<Value>> = LazyLock::new(|| {
    let mut all = Vec::new();
    for text in [CORE, US_CORE] {
        if let Ok(bundle) = serde_json::from_str::<Value>(text) {
            for entry in bundle["entry"].as_array().into_iter().flatten() {
                all.push(entry["resource"].clone());
            }
        }
    }
    all
});

/// The vendored definitions alone, built once and shared.
static CORE_REGISTRY: LazyLock<Arc<Registry>> =
    LazyLock::new(|| Arc::new(Registry::with_custom(&[])));

/// The registry of the vendored definitions (what a server without stored
/// SearchParameters uses).
pub fn core() -> Arc<Registry> {
    CORE_REGISTRY.clone()
}

/// The registry a service has in force; replaced whole by a reindex.
#[derive(Clone)]
pub struct RegistryCell(Arc<RwLock<Arc<Registry>>>);

impl Default for RegistryCell {
    fn default() -> Self {
        RegistryCell(Arc::new(RwLock::new(core())))
    }
}

impl RegistryCell {
    /// The registry in force now.
    pub fn get(&self) -> Arc<Registry> {
        match self.0.read() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Puts the vendored definitions plus `custom` (active SearchParameter
    /// resources stored on this server) in force. Returns how many custom
    /// parameters were accepted.
    pub fn install(&self, custom: &[Value]) -> usize {
        let next = if custom.is_empty() {
            core()
        } else {
            Arc::new(Registry::with_custom(custom))
        };
        let n = next.custom;
        match self.0.write() {
            Ok(mut w) => *w = next,
            Err(poisoned) => *poisoned.into_inner() = next,
        }
        n
    }
}

/// Splits a FHIRPath union `a | b | (c | d)` at its top level.
fn split_union(expr: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start, mut quote) = (0i32, 0usize, false);
    for (i, ch) in expr.char_indices() {
        match ch {
            '\'' => quote = !quote,
            '(' if !quote => depth += 1,
            ')' if !quote => depth -= 1,
            '|' if !quote && depth == 0 => {
                parts.push(expr[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(expr[start..].trim());
    parts
}

/// The resource type a union branch starts from (`Observation.code` →
/// `Observation`, `(Observation.value as Quantity)` → `Observation`).
fn branch_root(branch: &str) -> &str {
    let b = branch.trim_start_matches('(').trim();
    let end = b
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(b.len());
    &b[..end]
}

/// Keeps the branches of `expr` that apply to `res_type`, and pulls a
/// `.where(resolve() is X)` filter out of them.
fn specialise(expr: &str, res_type: &str, generic: bool) -> (Option<String>, Option<String>) {
    let mut filter = None;
    let kept: Vec<String> = split_union(expr)
        .into_iter()
        .filter(|b| {
            let root = branch_root(b);
            generic || root == res_type || root == "Resource" || root == "DomainResource"
        })
        .map(|b| {
            const WHERE: &str = ".where(resolve() is ";
            match b.find(WHERE) {
                Some(pos) => {
                    let rest = &b[pos + WHERE.len()..];
                    let ty_end = rest.find(')').unwrap_or(rest.len());
                    filter = Some(rest[..ty_end].trim().to_string());
                    format!("{}{}", &b[..pos], rest.get(ty_end + 1..).unwrap_or(""))
                }
                None => b.to_string(),
            }
        })
        .collect();
    if kept.is_empty() {
        (None, None)
    } else {
        (Some(kept.join(" | ")), filter)
    }
}

impl Registry {
    /// The vendored definitions plus `custom` (which override same-code ones).
    pub fn with_custom(custom: &[Value]) -> Registry {
        let mut r = Registry::default();
        for sp in VENDORED.iter() {
            r.add(sp);
        }
        for sp in custom {
            if sp["status"].as_str() == Some("active") && r.add(sp) {
                r.custom += 1;
            }
        }
        r.resolve_components();
        r
    }

    /// Fills in each composite component's kind from its definition, once
    /// every parameter is known (a query's value is read by those kinds).
    fn resolve_components(&mut self) {
        let kinds: HashMap<String, ParamKind> = self
            .by_url
            .iter()
            .map(|(url, d)| (url.clone(), d.kind))
            .collect();
        let resolve = |def: &mut Arc<ParamDef>| {
            if def.components.is_empty() {
                return;
            }
            let mut d = (**def).clone();
            for c in &mut d.components {
                c.kind = kinds.get(&c.definition).copied();
            }
            *def = Arc::new(d);
        };
        self.by_type
            .values_mut()
            .flat_map(|m| m.values_mut())
            .for_each(resolve);
        self.by_url.values_mut().for_each(resolve);
    }

    /// How many stored SearchParameters are in force.
    pub fn custom_count(&self) -> usize {
        self.custom
    }

    /// Adds a SearchParameter resource (ignored, `false`, if it lacks code, base or type).
    pub fn add(&mut self, sp: &Value) -> bool {
        let (Some(code), Some(kind)) = (
            sp["code"].as_str(),
            sp["type"].as_str().and_then(ParamKind::parse),
        ) else {
            return false;
        };
        let url = sp["url"].as_str().unwrap_or_default().to_string();
        let bases: Vec<&str> = sp["base"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let mut types: Vec<&str> = Vec::new();
        for base in &bases {
            if *base == "Resource" || *base == "DomainResource" {
                types.extend(RESOURCE_TYPES.iter().copied());
            } else {
                types.push(base);
            }
        }
        let generic = bases
            .iter()
            .any(|b| *b == "Resource" || *b == "DomainResource");
        let targets: Vec<String> = sp["target"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        let components: Vec<Component> = sp["component"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| {
                Some(Component {
                    definition: c["definition"].as_str()?.to_string(),
                    expression: c["expression"].as_str()?.to_string(),
                    kind: None,
                })
            })
            .collect();
        for t in types {
            let (expression, resolve_filter) = match sp["expression"].as_str() {
                Some(e) => specialise(e, t, generic),
                None => (None, None),
            };
            if sp["expression"].is_string() && expression.is_none() {
                continue;
            }
            let def = Arc::new(ParamDef {
                code: code.to_string(),
                url: url.clone(),
                kind,
                expression,
                targets: targets.clone(),
                resolve_filter,
                components: components.clone(),
            });
            self.by_url
                .entry(url.clone())
                .or_insert_with(|| def.clone());
            self.by_type
                .entry(t.to_string())
                .or_default()
                .insert(code.to_string(), def);
        }
        true
    }

    /// The parameter `code` of `res_type`, if defined.
    pub fn get(&self, res_type: &str, code: &str) -> Option<&Arc<ParamDef>> {
        self.by_type.get(res_type)?.get(code)
    }

    /// A parameter by its canonical URL (composite components).
    pub fn by_url(&self, url: &str) -> Option<&Arc<ParamDef>> {
        self.by_url.get(url)
    }

    /// Every parameter of `res_type`, in code order.
    pub fn for_type(&self, res_type: &str) -> Vec<&Arc<ParamDef>> {
        let mut v: Vec<&Arc<ParamDef>> = self
            .by_type
            .get(res_type)
            .map(|m| m.values().collect())
            .unwrap_or_default();
        v.sort_by(|a, b| a.code.cmp(&b.code));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_parameters_load_and_specialise() {
        let reg = core();
        let p = reg
            .get("Observation", "patient")
            .expect("Observation.patient");
        assert_eq!(p.kind, ParamKind::Reference);
        assert_eq!(p.expression.as_deref(), Some("Observation.subject"));
        assert_eq!(p.resolve_filter.as_deref(), Some("Patient"));
        let code = reg.get("Observation", "code").unwrap();
        assert_eq!(code.expression.as_deref(), Some("Observation.code"));
        assert!(reg.get("Patient", "_id").is_some());
        assert!(reg.get("Patient", "birthdate").is_some());
        assert!(reg.get("Patient", "race").is_some(), "US Core loaded");
        let cvq = reg.get("Observation", "code-value-quantity").unwrap();
        assert_eq!(cvq.components.len(), 2);
    }

    #[test]
    fn union_split_respects_parentheses_and_quotes() {
        assert_eq!(
            split_union("a | (b | c) | d.where(x = '|')"),
            vec!["a", "(b | c)", "d.where(x = '|')"]
        );
        assert_eq!(
            branch_root("(Observation.value as Quantity)"),
            "Observation"
        );
    }
}
