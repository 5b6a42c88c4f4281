//! Tree navigation (`children`, `descendants`), FHIR functions
//! (`extension`, `hasValue`, `getValue`, `resolve`, `conformsTo`,
//! `memberOf`), type reflection (`type`) and the clock (`now`, `today`).

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::Value;

use super::{identity, Ctx, MAX_REPEAT_ROUNDS};
use crate::fhirpath::ast::Func;
use crate::fhirpath::error::{FhirPathError, Result};
use crate::fhirpath::eval::{check_size, push_json, singleton, Coll};
use crate::fhirpath::model::{FhirType, MODEL};
use crate::fhirpath::temporal::{Temporal, TemporalKind};
use crate::fhirpath::value::{Elem, Item};

const CORE_PROFILE_PREFIX: &str = "http://hl7.org/fhir/StructureDefinition/";
/// Most resources searched when resolving a reference inside the resource.
const MAX_RESOLVE_CANDIDATES: usize = 10_000;

/// The child elements of `item`, typed through the model, in JSON order.
pub(crate) fn children_of<'a>(item: &Item<'a>, out: &mut Coll<'a>) -> Result<()> {
    let Item::Elem(e) = item else { return Ok(()) };
    let obj = match (e.value, e.ext) {
        (Some(Value::Object(obj)), _) => obj,
        (_, Some(Value::Object(ext))) => {
            // A primitive's children are its id and extensions.
            for (key, v) in ext {
                let ty = MODEL
                    .child(e.ty, key)
                    .and_then(|d| d.alts.first())
                    .map_or(FhirType::UNKNOWN, |a| a.ty);
                push_json(out, Some(v), None, ty)?;
            }
            return Ok(());
        }
        _ => return Ok(()),
    };
    for (key, v) in obj {
        if key == "resourceType" {
            continue;
        }
        if let Some(base) = key.strip_prefix('_') {
            if !obj.contains_key(base) {
                let ty = MODEL
                    .child_by_json_key(e.ty, base)
                    .map_or(FhirType::UNKNOWN, |(_, a)| a.ty);
                push_json(out, None, Some(v), ty)?;
            }
            continue;
        }
        match MODEL.child_by_json_key(e.ty, key) {
            Some((_, alt)) => {
                let x = if MODEL.is_primitive(alt.ty.code) {
                    obj.get(alt.underscore_key)
                } else {
                    None
                };
                push_json(out, Some(v), x, alt.ty)?;
            }
            None => {
                let x = if v.is_object() {
                    None
                } else {
                    obj.get(&format!("_{key}"))
                };
                push_json(out, Some(v), x, FhirType::UNKNOWN)?;
            }
        }
    }
    Ok(())
}

fn descendants<'a>(input: &[Item<'a>]) -> Result<Coll<'a>> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut frontier: Coll<'a> = input.to_vec();
    for _ in 0..MAX_REPEAT_ROUNDS {
        if frontier.is_empty() {
            return Ok(out);
        }
        let mut next = Vec::new();
        for item in &frontier {
            children_of(item, &mut next)?;
        }
        next.retain(|i| match i {
            Item::Elem(e) => seen.insert(identity(e)),
            _ => true,
        });
        out.extend(next.iter().cloned());
        check_size(out.len())?;
        frontier = next;
    }
    Err(FhirPathError::Limit("descendants depth"))
}

/// The object holding an element's `extension` array (the `_name` part for
/// primitives).
fn extension_holder<'a>(e: &Elem<'a>) -> Option<&'a serde_json::Map<String, Value>> {
    match (e.value, e.ext) {
        (Some(Value::Object(o)), _) => Some(o),
        (_, Some(Value::Object(o))) => Some(o),
        _ => None,
    }
}

fn now_millis() -> i64 {
    let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    i64::try_from(nanos / 1_000_000).unwrap_or(i64::MAX)
}

fn reference_text<'a>(item: &'a Item<'_>) -> Option<&'a str> {
    match item {
        Item::Elem(e) => match e.value? {
            Value::Object(o) => o.get("reference")?.as_str(),
            Value::String(s) => Some(s),
            _ => None,
        },
        Item::Str(s) => Some(s),
        _ => None,
    }
}

/// `Type/id` at the end of a reference (before any `_history`).
fn type_and_id(reference: &str) -> Option<(&str, &str)> {
    let path = reference.split(['?', '#']).next()?;
    let path = match path.find("/_history/") {
        Some(i) => &path[..i],
        None => path,
    };
    let mut parts = path.rsplitn(2, '/');
    let id = parts.next()?;
    let type_name = parts.next()?.rsplit('/').next()?;
    Some((type_name, id))
}

/// `resolve()`: contained resources (`#id`) and Bundle entries are looked
/// up in the root resource; any other `Type/id` reference yields an empty
/// placeholder of that type, so `where(resolve() is Patient)` works without
/// a database; anything else yields nothing.
fn resolve<'a>(ctx: &Ctx<'_, 'a>, input: &[Item<'a>]) -> Result<Coll<'a>> {
    let root = match &ctx.eng.root {
        Item::Elem(Elem { value: Some(v), .. }) => Some(*v),
        _ => None,
    };
    let mut out = Vec::new();
    for item in input {
        let Some(reference) = reference_text(item) else {
            continue;
        };
        if let Some(id) = reference.strip_prefix('#') {
            let contained = root
                .and_then(|r| r.get("contained"))
                .and_then(Value::as_array);
            if let Some(found) = contained
                .into_iter()
                .flatten()
                .take(MAX_RESOLVE_CANDIDATES)
                .find(|c| c.get("id").and_then(Value::as_str) == Some(id))
            {
                out.push(Item::Elem(Elem::resource(found)));
            }
            continue;
        }
        let target = type_and_id(reference);
        let entries = root
            .filter(|r| r.get("resourceType").and_then(Value::as_str) == Some("Bundle"))
            .and_then(|r| r.get("entry"))
            .and_then(Value::as_array);
        let found = entries
            .into_iter()
            .flatten()
            .take(MAX_RESOLVE_CANDIDATES)
            .find_map(|entry| {
                let resource = entry.get("resource")?;
                if entry.get("fullUrl").and_then(Value::as_str) == Some(reference) {
                    return Some(resource);
                }
                let (t, id) = target?;
                let matches = resource.get("resourceType").and_then(Value::as_str) == Some(t)
                    && resource.get("id").and_then(Value::as_str) == Some(id);
                matches.then_some(resource)
            });
        if let Some(resource) = found {
            out.push(Item::Elem(Elem::resource(resource)));
        } else if let Some(ty) = target
            .and_then(|(t, _)| MODEL.type_named(t))
            .filter(|t| MODEL.is_resource(t.code))
        {
            out.push(Item::Elem(Elem::new(None, None, ty)));
        }
    }
    Ok(out)
}

pub(crate) fn call<'a>(ctx: &Ctx<'_, 'a>, func: Func, input: Coll<'a>) -> Result<Coll<'a>> {
    use Func as F;
    match func {
        F::Children => {
            let mut out = Vec::new();
            for item in &input {
                children_of(item, &mut out)?;
            }
            Ok(out)
        }
        F::Descendants => descendants(&input),
        F::Now => Ok(vec![Item::Temporal(Temporal::from_unix_millis(
            now_millis(),
            TemporalKind::DateTime,
        ))]),
        F::Today => Ok(vec![Item::Temporal(Temporal::from_unix_millis(
            now_millis(),
            TemporalKind::Date,
        ))]),
        F::TimeOfDay => Ok(vec![Item::Temporal(Temporal::from_unix_millis(
            now_millis(),
            TemporalKind::Time,
        ))]),
        F::Type => Ok(input
            .iter()
            .filter_map(|i| i.type_info())
            .map(|(namespace, name)| Item::TypeInfo {
                namespace,
                name: Arc::from(name),
            })
            .collect()),
        F::Extension | F::HasExtension => {
            let Some(url) = ctx.arg_string(0)? else {
                return Ok(Vec::new());
            };
            let ty = MODEL.type_named("Extension").unwrap_or(FhirType::UNKNOWN);
            let mut out = Vec::new();
            for item in &input {
                let Item::Elem(e) = item else { continue };
                let exts = extension_holder(e)
                    .and_then(|o| o.get("extension"))
                    .and_then(Value::as_array);
                for x in exts.into_iter().flatten() {
                    if x.get("url").and_then(Value::as_str) == Some(url.as_str()) {
                        out.push(Item::Elem(Elem::new(Some(x), None, ty)));
                    }
                }
            }
            if func == F::HasExtension {
                // Not in the FHIRPath or FHIR specification, but used by R4
                // extension search parameters: `extension(url).exists()`.
                return Ok(vec![Item::Bool(!out.is_empty())]);
            }
            Ok(out)
        }
        F::HasValue => Ok(vec![Item::Bool(match singleton(&input)? {
            Some(Item::Elem(e)) => e.value.is_some_and(|v| !v.is_object() && !v.is_array()),
            Some(Item::TypeInfo { .. }) | None => false,
            Some(_) => true,
        })]),
        F::GetValue => Ok(singleton(&input)?
            .and_then(Item::to_system)
            .into_iter()
            .collect()),
        F::Resolve => resolve(ctx, &input),
        // No terminology service: membership and subsumption are unknown.
        F::MemberOf | F::Subsumes | F::SubsumedBy => Ok(Vec::new()),
        F::HtmlChecks => Ok(vec![Item::Bool(true)]),
        F::ConformsTo => {
            let Some(url) = ctx.arg_string(0)? else {
                return Ok(Vec::new());
            };
            let target = url
                .strip_prefix(CORE_PROFILE_PREFIX)
                .and_then(|t| MODEL.type_named(t))
                .ok_or_else(|| {
                    FhirPathError::InvalidArgument(
                        "only core StructureDefinitions are known".into(),
                    )
                })?;
            Ok(input
                .iter()
                .map(|i| {
                    Item::Bool(
                        i.type_name()
                            .is_some_and(|code| MODEL.is_subtype(code, target.code)),
                    )
                })
                .collect())
        }
        _ => Err(FhirPathError::UnknownFunction(func.name().into())),
    }
}
