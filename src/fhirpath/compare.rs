//! Equality (`=`), equivalence (`~`) and ordering of items and collections,
//! with FHIRPath's empty-result rules for partial dates and mixed types.

use std::cmp::Ordering;

use super::error::{FhirPathError, Result};
use super::value::{Item, Prim};

fn numeric_pair(
    a: &Prim<'_>,
    b: &Prim<'_>,
) -> Option<(super::decimal::Decimal, super::decimal::Decimal)> {
    use super::decimal::Decimal;
    let num = |p: &Prim<'_>| match p {
        Prim::Int(i) => Some(Decimal::from_i64(*i)),
        Prim::Dec(d) => Some(*d),
        _ => None,
    };
    Some((num(a)?, num(b)?))
}

fn prim_equals(a: &Prim<'_>, b: &Prim<'_>) -> Option<bool> {
    match (a, b) {
        (Prim::Bool(x), Prim::Bool(y)) => Some(x == y),
        (Prim::Int(x), Prim::Int(y)) => Some(x == y),
        (Prim::Str(x), Prim::Str(y)) => Some(x == y),
        (Prim::Temporal(x), Prim::Temporal(y)) => x.equals(y),
        (Prim::Qty(x), Prim::Qty(y)) => x.equals(y),
        _ => match numeric_pair(a, b) {
            Some((x, y)) => Some(x.num_eq(&y)),
            None => Some(false),
        },
    }
}

/// Case-insensitive, with runs of whitespace read as one space.
fn normalize(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

fn prim_equivalent(a: &Prim<'_>, b: &Prim<'_>) -> bool {
    match (a, b) {
        (Prim::Bool(x), Prim::Bool(y)) => x == y,
        (Prim::Int(x), Prim::Int(y)) => x == y,
        (Prim::Str(x), Prim::Str(y)) => x == y || normalize(x) == normalize(y),
        (Prim::Temporal(x), Prim::Temporal(y)) => x.equivalent(y),
        (Prim::Qty(x), Prim::Qty(y)) => x.equivalent(y),
        _ => numeric_pair(a, b).is_some_and(|(x, y)| x.equivalent(&y)),
    }
}

/// `=` on two items: `None` when the answer is unknown (dates of
/// different precision).
pub(crate) fn equals(a: &Item<'_>, b: &Item<'_>) -> Option<bool> {
    if let (Item::Elem(x), Item::Elem(y)) = (a, b) {
        if x.is_complex() || y.is_complex() {
            return Some(x.is_complex() && y.is_complex() && x.value == y.value);
        }
    }
    if let (
        Item::TypeInfo {
            namespace: n1,
            name: a1,
        },
        Item::TypeInfo {
            namespace: n2,
            name: a2,
        },
    ) = (a, b)
    {
        return Some(n1 == n2 && a1 == a2);
    }
    match (a.prim(), b.prim()) {
        (Some(x), Some(y)) => prim_equals(&x, &y),
        _ => Some(false),
    }
}

/// `~` on two items.
pub(crate) fn equivalent(a: &Item<'_>, b: &Item<'_>) -> bool {
    if let (Item::Elem(x), Item::Elem(y)) = (a, b) {
        if x.is_complex() || y.is_complex() {
            return x.is_complex() && y.is_complex() && x.value == y.value;
        }
    }
    match (a.prim(), b.prim()) {
        (Some(x), Some(y)) => prim_equivalent(&x, &y),
        _ => false,
    }
}

/// Ordering for `<`, `>`, `<=`, `>=`: `Ok(None)` when unknown (partial
/// dates, incommensurable units), an error for types that cannot be ordered.
pub(crate) fn compare(a: &Item<'_>, b: &Item<'_>) -> Result<Option<Ordering>> {
    let (Some(x), Some(y)) = (a.prim(), b.prim()) else {
        return Err(FhirPathError::Type(
            "only primitive values can be ordered".into(),
        ));
    };
    match (&x, &y) {
        (Prim::Str(s), Prim::Str(t)) => Ok(Some(s.cmp(t))),
        (Prim::Temporal(s), Prim::Temporal(t)) if s.comparable(t) => Ok(s.compare(t)),
        (Prim::Qty(s), Prim::Qty(t)) => Ok(s.compare(t)),
        _ => match numeric_pair(&x, &y) {
            Some((s, t)) => Ok(s.compare(&t)),
            None => Err(FhirPathError::Type(format!(
                "cannot compare {} with {}",
                a.type_name().unwrap_or("unknown"),
                b.type_name().unwrap_or("unknown")
            ))),
        },
    }
}

/// `=` on collections: empty if either is empty, false if sizes differ,
/// otherwise item by item in order.
pub(crate) fn collection_equals(a: &[Item<'_>], b: &[Item<'_>]) -> Option<bool> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    if a.len() != b.len() {
        return Some(false);
    }
    let mut unknown = false;
    for (x, y) in a.iter().zip(b) {
        match equals(x, y) {
            Some(false) => return Some(false),
            None => unknown = true,
            Some(true) => {}
        }
    }
    if unknown {
        None
    } else {
        Some(true)
    }
}

/// `~` on collections: order does not matter; two empties are equivalent.
pub(crate) fn collection_equivalent(a: &[Item<'_>], b: &[Item<'_>]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut used = vec![false; b.len()];
    'outer: for x in a {
        for (j, y) in b.iter().enumerate() {
            if !used[j] && equivalent(x, y) {
                used[j] = true;
                continue 'outer;
            }
        }
        return false;
    }
    true
}

/// Whether `coll` has an item equal to `item`.
pub(crate) fn contains(coll: &[Item<'_>], item: &Item<'_>) -> bool {
    coll.iter().any(|x| equals(x, item) == Some(true))
}
