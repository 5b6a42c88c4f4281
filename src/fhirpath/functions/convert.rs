//! Conversion functions: `toX()` and `convertsToX()` for Boolean, Integer,
//! Decimal, String, Date, DateTime, Time and Quantity.

use super::{to_boolean, Ctx};
use crate::fhirpath::ast::Func;
use crate::fhirpath::decimal::Decimal;
use crate::fhirpath::error::Result;
use crate::fhirpath::eval::{singleton, Coll};
use crate::fhirpath::quantity::Quantity;
use crate::fhirpath::temporal::{Temporal, TemporalKind};
use crate::fhirpath::value::{Item, Prim};

fn is_integer_text(s: &str) -> bool {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

fn is_decimal_text(s: &str) -> bool {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (int, frac) = match body.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (body, None),
    };
    !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
}

fn to_integer<'a>(item: &Item<'a>) -> Option<Item<'a>> {
    Some(Item::Int(match item.prim()? {
        Prim::Int(i) => i,
        Prim::Bool(b) => i64::from(b),
        Prim::Str(s) if is_integer_text(s) => s.parse().ok()?,
        _ => return None,
    }))
}

fn to_decimal<'a>(item: &Item<'a>) -> Option<Item<'a>> {
    Some(Item::Dec(match item.prim()? {
        Prim::Int(i) => Decimal::from_i64(i),
        Prim::Dec(d) => d,
        Prim::Bool(b) => Decimal::new(i128::from(b) * 10, 1),
        Prim::Str(s) if is_decimal_text(s) => Decimal::parse(s)?,
        _ => return None,
    }))
}

fn to_string<'a>(item: &Item<'a>) -> Option<Item<'a>> {
    match item {
        Item::Str(_) => Some(item.clone()),
        _ => Some(Item::str(item.display()?.as_ref())),
    }
}

fn to_temporal<'a>(item: &Item<'a>, kind: TemporalKind) -> Option<Item<'a>> {
    let t = match item.prim()? {
        Prim::Temporal(t) => match (t.kind, kind) {
            (TemporalKind::Time, TemporalKind::Time) => t,
            (TemporalKind::Time, _) | (_, TemporalKind::Time) => return None,
            _ => t.with_kind(kind),
        },
        Prim::Str(s) => match kind {
            TemporalKind::Date => Temporal::parse_date(s)
                .or_else(|| Temporal::parse_datetime(s).map(|t| t.with_kind(kind)))?,
            TemporalKind::DateTime => Temporal::parse_datetime(s)?,
            TemporalKind::Time => Temporal::parse_time(s)?,
        },
        _ => return None,
    };
    Some(Item::Temporal(t))
}

fn to_quantity<'a>(item: &Item<'a>, unit: Option<&str>) -> Option<Item<'a>> {
    let q = match item.prim()? {
        Prim::Int(i) => Quantity::new(Decimal::from_i64(i), "1"),
        Prim::Dec(d) => Quantity::new(d, "1"),
        Prim::Bool(b) => Quantity::new(Decimal::new(i128::from(b) * 10, 1), "1"),
        Prim::Qty(q) => q.into_owned(),
        Prim::Str(s) => Quantity::parse(s)?,
        Prim::Temporal(_) => return None,
    };
    match unit {
        Some(u) if u != q.unit => {
            // Only identical (or commensurable, same value) units convert.
            let target = Quantity::new(Decimal::ONE, u);
            let one = Quantity::new(Decimal::ONE, q.unit.clone());
            (one.equals(&target) == Some(true))
                .then(|| Item::Qty(Box::new(Quantity::new(q.value, u))))
        }
        _ => Some(Item::Qty(Box::new(q))),
    }
}

pub(crate) fn call<'a>(ctx: &Ctx<'_, 'a>, func: Func, input: &[Item<'a>]) -> Result<Coll<'a>> {
    use Func as F;
    let Some(item) = singleton(input)? else {
        return Ok(Vec::new());
    };
    let unit = if ctx.args.is_empty() {
        None
    } else {
        ctx.arg_string(0)?
    };
    let converted = match func {
        F::ToBoolean | F::ConvertsToBoolean => to_boolean(item).map(Item::Bool),
        F::ToInteger | F::ConvertsToInteger => to_integer(item),
        F::ToDecimal | F::ConvertsToDecimal => to_decimal(item),
        F::ToStringFn | F::ConvertsToString => to_string(item),
        F::ToDate | F::ConvertsToDate => to_temporal(item, TemporalKind::Date),
        F::ToDateTime | F::ConvertsToDateTime => to_temporal(item, TemporalKind::DateTime),
        F::ToTime | F::ConvertsToTime => to_temporal(item, TemporalKind::Time),
        _ => to_quantity(item, unit.as_deref()),
    };
    let converts = matches!(
        func,
        F::ConvertsToBoolean
            | F::ConvertsToInteger
            | F::ConvertsToDecimal
            | F::ConvertsToString
            | F::ConvertsToDate
            | F::ConvertsToDateTime
            | F::ConvertsToTime
            | F::ConvertsToQuantity
    );
    Ok(if converts {
        vec![Item::Bool(converted.is_some())]
    } else {
        converted.into_iter().collect()
    })
}
