//! The function library: dispatch, plus existence, filtering, subsetting and
//! combining functions. Strings, conversions, math and FHIR-specific
//! functions live in the submodules.

mod convert;
mod fhir;
mod math;
mod strings;

use std::borrow::Cow;
use std::collections::HashSet;

use serde_json::Value;

use super::ast::{Expr, Func, TypeSpec};
use super::compare;
use super::error::{FhirPathError, Result};
use super::eval::{
    check_size, item_to_bool, singleton, to_bool, type_matches, Coll, Engine, Frame,
    MAX_COLLECTION_ITEMS,
};
use super::value::{Elem, Item, Prim};

/// Most items the set functions (`distinct`, `union`, `intersect`…) compare
/// pairwise; beyond it they fail rather than take quadratic time.
pub(crate) const MAX_SET_ITEMS: usize = 10_000;
/// Most rounds `repeat()` and `descendants()` take.
pub(crate) const MAX_REPEAT_ROUNDS: usize = 1_000;

/// Everything a function needs besides its input.
pub(crate) struct Ctx<'c, 'a> {
    pub(crate) eng: &'c Engine<'a>,
    pub(crate) args: &'c [Expr],
    /// The focus the call's arguments are evaluated on (not the input).
    pub(crate) focus: &'c [Item<'a>],
    pub(crate) frame: Frame<'c, 'a>,
    pub(crate) depth: usize,
}

impl<'c, 'a> Ctx<'c, 'a> {
    fn arg_expr(&self, i: usize) -> Result<&'c Expr> {
        self.args
            .get(i)
            .ok_or(FhirPathError::InvalidArgument("missing argument".into()))
    }

    /// Argument `i` evaluated on the call's focus.
    pub(crate) fn arg(&self, i: usize) -> Result<Coll<'a>> {
        self.eng
            .eval(self.arg_expr(i)?, self.focus, &self.frame, self.depth)
    }

    /// Argument `i` evaluated with `$this` = `item` and `$index` = `index`.
    pub(crate) fn lambda(&self, i: usize, item: &Item<'a>, index: usize) -> Result<Coll<'a>> {
        let frame = Frame {
            index: Some(index),
            total: self.frame.total,
        };
        self.eng.eval(
            self.arg_expr(i)?,
            std::slice::from_ref(item),
            &frame,
            self.depth,
        )
    }

    pub(crate) fn arg_string(&self, i: usize) -> Result<Option<String>> {
        let v = self.arg(i)?;
        Ok(input_string(&v)?.map(Cow::into_owned))
    }

    pub(crate) fn arg_int(&self, i: usize) -> Result<Option<i64>> {
        let v = self.arg(i)?;
        match singleton(&v)?.map(Item::prim) {
            None => Ok(None),
            Some(Some(Prim::Int(n))) => Ok(Some(n)),
            Some(_) => Err(FhirPathError::Type(
                "an integer argument is required".into(),
            )),
        }
    }
}

/// The single string of a collection: `None` when empty, an error for more
/// than one item or a non-string item.
pub(crate) fn input_string<'x>(input: &'x [Item<'_>]) -> Result<Option<Cow<'x, str>>> {
    let Some(item) = singleton(input)? else {
        return Ok(None);
    };
    if let Item::Elem(e) = item {
        return match e.value {
            Some(Value::String(s)) => Ok(Some(Cow::Borrowed(s.as_str()))),
            None => Ok(None),
            Some(_) => Err(FhirPathError::Type("a string is required".into())),
        };
    }
    match item {
        Item::Str(s) => Ok(Some(Cow::Borrowed(s))),
        _ => Err(FhirPathError::Type("a string is required".into())),
    }
}

fn one<'a>(item: Item<'a>) -> Result<Coll<'a>> {
    Ok(vec![item])
}

fn boolean<'a>(b: bool) -> Result<Coll<'a>> {
    Ok(vec![Item::Bool(b)])
}

/// Items of `items` without repeats (by `=`), first occurrence kept.
fn distinct<'a>(items: Coll<'a>) -> Result<Coll<'a>> {
    if items.len() > MAX_SET_ITEMS {
        return Err(FhirPathError::Limit("set operation size"));
    }
    let mut out: Coll<'a> = Vec::with_capacity(items.len());
    for item in items {
        if !compare::contains(&out, &item) {
            out.push(item);
        }
    }
    Ok(out)
}

/// `a | b`: both collections merged without repeats.
pub(crate) fn union<'a>(mut a: Coll<'a>, b: Coll<'a>) -> Result<Coll<'a>> {
    check_size(a.len() + b.len())?;
    a.extend(b);
    distinct(a)
}

/// Calls `func` on `input`.
pub(crate) fn call<'a>(
    ctx: &Ctx<'_, 'a>,
    func: Func,
    input: Coll<'a>,
    type_arg: Option<&TypeSpec>,
) -> Result<Coll<'a>> {
    use Func as F;
    match func {
        F::Empty => boolean(input.is_empty()),
        F::Exists => {
            if ctx.args.is_empty() {
                return boolean(!input.is_empty());
            }
            for (i, item) in input.iter().enumerate() {
                if to_bool(&ctx.lambda(0, item, i)?)? == Some(true) {
                    return boolean(true);
                }
            }
            boolean(false)
        }
        F::All => {
            for (i, item) in input.iter().enumerate() {
                if to_bool(&ctx.lambda(0, item, i)?)? != Some(true) {
                    return boolean(false);
                }
            }
            boolean(true)
        }
        F::AllTrue => boolean(input.iter().all(|i| bool_value(i) == Some(true))),
        F::AnyTrue => boolean(input.iter().any(|i| bool_value(i) == Some(true))),
        F::AllFalse => boolean(input.iter().all(|i| bool_value(i) == Some(false))),
        F::AnyFalse => boolean(input.iter().any(|i| bool_value(i) == Some(false))),
        F::SubsetOf | F::SupersetOf => {
            let other = ctx.arg(0)?;
            if input.len().max(other.len()) > MAX_SET_ITEMS {
                return Err(FhirPathError::Limit("set operation size"));
            }
            let (small, big) = if func == F::SubsetOf {
                (&input, &other)
            } else {
                (&other, &input)
            };
            boolean(small.iter().all(|i| compare::contains(big, i)))
        }
        F::Count => one(Item::Int(input.len() as i64)),
        F::Distinct => distinct(input),
        F::IsDistinct => {
            let n = input.len();
            boolean(distinct(input)?.len() == n)
        }
        F::Where => {
            let mut out = Vec::new();
            for (i, item) in input.iter().enumerate() {
                if to_bool(&ctx.lambda(0, item, i)?)? == Some(true) {
                    out.push(item.clone());
                }
            }
            Ok(out)
        }
        F::Select => {
            let mut out = Vec::new();
            for (i, item) in input.iter().enumerate() {
                out.extend(ctx.lambda(0, item, i)?);
                check_size(out.len())?;
            }
            Ok(out)
        }
        F::Repeat => repeat(ctx, input),
        F::OfType | F::As => {
            let spec = type_arg.ok_or(FhirPathError::InvalidArgument("type expected".into()))?;
            if func == F::As && ctx.eng.strict && input.len() > 1 {
                return Err(FhirPathError::NotSingleton(input.len()));
            }
            Ok(input
                .into_iter()
                .filter(|i| type_matches(i, spec))
                .collect())
        }
        F::Is => {
            let spec = type_arg.ok_or(FhirPathError::InvalidArgument("type expected".into()))?;
            Ok(singleton(&input)?
                .map(|i| vec![Item::Bool(type_matches(i, spec))])
                .unwrap_or_default())
        }
        F::Single => Ok(singleton(&input)?.cloned().into_iter().collect()),
        F::First => Ok(input.into_iter().take(1).collect()),
        F::Last => Ok(input.into_iter().last().into_iter().collect()),
        F::Tail => Ok(input.into_iter().skip(1).collect()),
        F::Skip => {
            let n = ctx.arg_int(0)?.unwrap_or(0);
            Ok(input
                .into_iter()
                .skip(usize::try_from(n).unwrap_or(0))
                .collect())
        }
        F::Take => {
            let n = ctx.arg_int(0)?.unwrap_or(0);
            Ok(input
                .into_iter()
                .take(usize::try_from(n).unwrap_or(0))
                .collect())
        }
        F::Intersect => {
            let other = ctx.arg(0)?;
            if other.len() > MAX_SET_ITEMS {
                return Err(FhirPathError::Limit("set operation size"));
            }
            let kept = input
                .into_iter()
                .filter(|i| compare::contains(&other, i))
                .collect();
            distinct(kept)
        }
        F::Exclude => {
            let other = ctx.arg(0)?;
            if input.len().max(other.len()) > MAX_SET_ITEMS {
                return Err(FhirPathError::Limit("set operation size"));
            }
            Ok(input
                .into_iter()
                .filter(|i| !compare::contains(&other, i))
                .collect())
        }
        F::Union => union(input, ctx.arg(0)?),
        F::Combine => {
            let mut out = input;
            out.extend(ctx.arg(0)?);
            check_size(out.len())?;
            Ok(out)
        }
        F::Iif => {
            let cond = to_bool(&ctx.arg(0)?)?;
            if cond == Some(true) {
                ctx.arg(1)
            } else if ctx.args.len() > 2 {
                ctx.arg(2)
            } else {
                Ok(Vec::new())
            }
        }
        F::Not => Ok(to_bool(&input)?
            .map(|b| vec![Item::Bool(!b)])
            .unwrap_or_default()),
        F::Trace => Ok(input),
        F::Aggregate => {
            let mut total = if ctx.args.len() > 1 {
                ctx.arg(1)?
            } else {
                Vec::new()
            };
            for (i, item) in input.iter().enumerate() {
                let frame = Frame {
                    index: Some(i),
                    total: Some(&total),
                };
                let next = ctx.eng.eval(
                    ctx.arg_expr(0)?,
                    std::slice::from_ref(item),
                    &frame,
                    ctx.depth,
                )?;
                total = next;
            }
            Ok(total)
        }
        F::Sum | F::Min | F::Max | F::Avg => math::aggregate(func, input),
        F::ToBoolean
        | F::ConvertsToBoolean
        | F::ToInteger
        | F::ConvertsToInteger
        | F::ToDecimal
        | F::ConvertsToDecimal
        | F::ToStringFn
        | F::ConvertsToString
        | F::ToDate
        | F::ConvertsToDate
        | F::ToDateTime
        | F::ConvertsToDateTime
        | F::ToTime
        | F::ConvertsToTime
        | F::ToQuantity
        | F::ConvertsToQuantity => convert::call(ctx, func, &input),
        F::IndexOf
        | F::Substring
        | F::StartsWith
        | F::EndsWith
        | F::ContainsStr
        | F::Upper
        | F::Lower
        | F::Replace
        | F::Matches
        | F::ReplaceMatches
        | F::Length
        | F::ToChars
        | F::Trim
        | F::Split
        | F::Join
        | F::Encode
        | F::Decode
        | F::Escape
        | F::Unescape => strings::call(ctx, func, &input),
        F::Abs
        | F::Ceiling
        | F::Exp
        | F::Floor
        | F::Ln
        | F::Log
        | F::Power
        | F::Round
        | F::Sqrt
        | F::Truncate => math::call(ctx, func, &input),
        F::Children
        | F::Descendants
        | F::Now
        | F::Today
        | F::TimeOfDay
        | F::Type
        | F::Extension
        | F::HasExtension
        | F::HasValue
        | F::GetValue
        | F::Resolve
        | F::MemberOf
        | F::Subsumes
        | F::SubsumedBy
        | F::ConformsTo
        | F::HtmlChecks => fhir::call(ctx, func, input),
    }
}

/// A Boolean item's value (`allTrue` and friends look at Booleans only,
/// reading FHIR `boolean` elements too).
fn bool_value(item: &Item<'_>) -> Option<bool> {
    match item.prim()? {
        Prim::Bool(b) => Some(b),
        _ => None,
    }
}

/// `repeat(projection)`: the projection applied to the input, then to its
/// results, until nothing new appears. Elements are told apart by identity.
fn repeat<'a>(ctx: &Ctx<'_, 'a>, input: Coll<'a>) -> Result<Coll<'a>> {
    let mut out: Coll<'a> = Vec::new();
    let mut seen_elements: HashSet<(usize, usize)> = HashSet::new();
    let mut frontier = input;
    for _ in 0..MAX_REPEAT_ROUNDS {
        if frontier.is_empty() {
            return Ok(out);
        }
        let mut next = Vec::new();
        for (i, item) in frontier.iter().enumerate() {
            for found in ctx.lambda(0, item, i)? {
                let new = match &found {
                    Item::Elem(e) => seen_elements.insert(identity(e)),
                    other => !out
                        .iter()
                        .any(|seen| compare::equals(seen, other) == Some(true)),
                };
                if new {
                    out.push(found.clone());
                    next.push(found);
                }
            }
            if out.len() > MAX_COLLECTION_ITEMS {
                return Err(FhirPathError::Limit("collection size"));
            }
        }
        frontier = next;
    }
    Err(FhirPathError::Limit("repeat rounds"))
}

/// Elements are told apart by identity (which JSON node they are).
pub(crate) fn identity(e: &Elem<'_>) -> (usize, usize) {
    let addr = |v: Option<&Value>| v.map_or(0, |v| v as *const Value as usize);
    (addr(e.value), addr(e.ext))
}

/// `toBoolean()` reading, shared with `convert`.
pub(crate) fn to_boolean(item: &Item<'_>) -> Option<bool> {
    item_to_bool(item)
}
