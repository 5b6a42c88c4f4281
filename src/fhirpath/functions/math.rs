//! Math functions (`abs`, `round`, `sqrt`, `power`…) and the numeric
//! aggregates `sum`, `min`, `max`, `avg`.

use std::cmp::Ordering;

use super::Ctx;
use crate::fhirpath::ast::Func;
use crate::fhirpath::compare;
use crate::fhirpath::decimal::{Decimal, MAX_SCALE};
use crate::fhirpath::error::{FhirPathError, Result};
use crate::fhirpath::eval::{singleton, Coll};
use crate::fhirpath::quantity::Quantity;
use crate::fhirpath::value::{Item, Prim};

fn number_arg(ctx: &Ctx<'_, '_>, i: usize) -> Result<Option<Decimal>> {
    let v = ctx.arg(i)?;
    match singleton(&v)?.map(Item::prim) {
        None => Ok(None),
        Some(Some(Prim::Int(n))) => Ok(Some(Decimal::from_i64(n))),
        Some(Some(Prim::Dec(d))) => Ok(Some(d)),
        Some(_) => Err(FhirPathError::Type("a number argument is required".into())),
    }
}

fn whole<'a>(d: Option<Decimal>) -> Coll<'a> {
    d.and_then(|d| d.to_i64_exact())
        .map(|i| vec![Item::Int(i)])
        .unwrap_or_default()
}

fn dec<'a>(d: Option<Decimal>) -> Coll<'a> {
    d.map(|d| vec![Item::Dec(d)]).unwrap_or_default()
}

pub(crate) fn call<'a>(ctx: &Ctx<'_, 'a>, func: Func, input: &[Item<'a>]) -> Result<Coll<'a>> {
    use Func as F;
    let Some(item) = singleton(input)? else {
        return Ok(Vec::new());
    };
    let prim = item.prim();
    if let (F::Abs, Some(Prim::Qty(q))) = (func, &prim) {
        return Ok(vec![Item::Qty(Box::new(Quantity::new(
            q.value.abs(),
            q.unit.clone(),
        )))]);
    }
    let (x, is_int) = match prim {
        Some(Prim::Int(i)) => (Decimal::from_i64(i), true),
        Some(Prim::Dec(d)) => (d, false),
        _ => {
            return Err(FhirPathError::Type(format!(
                "{}() needs a number",
                func.name()
            )))
        }
    };
    let float = |f: f64| dec(Decimal::from_f64(f));
    Ok(match func {
        F::Abs if is_int => whole(Some(x.abs())),
        F::Abs => dec(Some(x.abs())),
        F::Ceiling => whole(x.ceil()),
        F::Floor => whole(x.floor()),
        F::Truncate => whole(x.trunc()),
        F::Round => {
            let digits = if ctx.args.is_empty() {
                0
            } else {
                ctx.arg_int(0)?.unwrap_or(0)
            };
            let digits = u32::try_from(digits)
                .map_err(|_| FhirPathError::InvalidArgument("negative precision".into()))?;
            dec(x.round(digits.min(MAX_SCALE)))
        }
        F::Sqrt if x.is_negative() => Vec::new(),
        F::Sqrt => float(x.to_f64().sqrt()),
        F::Exp => float(x.to_f64().exp()),
        F::Ln => float(x.to_f64().ln()),
        F::Log => match number_arg(ctx, 0)? {
            Some(base) => float(x.to_f64().ln() / base.to_f64().ln()),
            None => Vec::new(),
        },
        F::Power => match number_arg(ctx, 0)? {
            None => Vec::new(),
            Some(e) => match (is_int, e.to_i64_exact(), x.to_i64_exact()) {
                (true, Some(n), Some(b)) if n >= 0 => {
                    let n = u32::try_from(n).map_err(|_| FhirPathError::Limit("integer range"))?;
                    b.checked_pow(n)
                        .map(|v| vec![Item::Int(v)])
                        .unwrap_or_default()
                }
                (_, Some(n), _) if (0..=64).contains(&n) => {
                    let mut acc = Decimal::ONE;
                    for _ in 0..n {
                        acc = match acc.checked_mul(&x) {
                            Some(v) => v,
                            None => return Ok(Vec::new()),
                        };
                    }
                    dec(Some(acc))
                }
                _ => {
                    let f = x.to_f64().powf(e.to_f64());
                    if f.is_nan() {
                        Vec::new()
                    } else {
                        float(f)
                    }
                }
            },
        },
        _ => return Err(FhirPathError::UnknownFunction(func.name().into())),
    })
}

/// `sum()`, `min()`, `max()`, `avg()` over numbers (and `min`/`max` over
/// any ordered type).
pub(crate) fn aggregate<'a>(func: Func, input: Coll<'a>) -> Result<Coll<'a>> {
    if input.is_empty() {
        return Ok(Vec::new());
    }
    match func {
        Func::Min | Func::Max => {
            let want = if func == Func::Min {
                Ordering::Less
            } else {
                Ordering::Greater
            };
            let mut best = input[0].clone();
            for item in &input[1..] {
                match compare::compare(item, &best)? {
                    Some(o) if o == want => best = item.clone(),
                    Some(_) => {}
                    None => return Ok(Vec::new()),
                }
            }
            Ok(vec![best.to_system().unwrap_or(best)])
        }
        _ => {
            let mut all_int = true;
            let mut total = Decimal::ZERO;
            for item in &input {
                let d = match item.prim() {
                    Some(Prim::Int(i)) => Decimal::from_i64(i),
                    Some(Prim::Dec(d)) => {
                        all_int = false;
                        d
                    }
                    _ => {
                        return Err(FhirPathError::Type(format!(
                            "{}() needs numbers",
                            func.name()
                        )))
                    }
                };
                total = total
                    .checked_add(&d)
                    .ok_or(FhirPathError::Limit("number range"))?;
            }
            if func == Func::Avg {
                return Ok(dec(
                    total.checked_div(&Decimal::from_i64(input.len() as i64))
                ));
            }
            Ok(if all_int {
                whole(Some(total))
            } else {
                dec(Some(total))
            })
        }
    }
}
