//! The evaluator: walks the AST over a focus collection, navigating JSON
//! elements by the type model, with empty propagation, three-valued logic
//! and bounded depth and collection sizes.

use std::sync::Arc;

use serde_json::Value;

use super::ast::{BinOp, Expr, Func, Literal, TypeSpec};
use super::compare;
use super::decimal::Decimal;
use super::error::{FhirPathError, Result};
use super::functions;
use super::model::{FhirType, MODEL};
use super::temporal::CalendarUnit;
use super::value::{Elem, Item, Prim};

/// Deepest recursion of the evaluator (nested sub-expressions and calls).
pub(crate) const MAX_EVAL_DEPTH: usize = 256;
/// Most items one collection may hold.
pub(crate) const MAX_COLLECTION_ITEMS: usize = 100_000;

pub(crate) type Coll<'a> = Vec<Item<'a>>;

/// `$index` and `$total` for the current iteration.
#[derive(Clone, Copy, Default)]
pub(crate) struct Frame<'f, 'a> {
    pub(crate) index: Option<usize>,
    pub(crate) total: Option<&'f [Item<'a>]>,
}

/// One evaluation over one resource.
pub(crate) struct Engine<'a> {
    /// `%resource`, `%context`, `%rootResource`.
    pub(crate) root: Item<'a>,
    /// Reject element names the type model does not know (HL7 `strict` mode).
    pub(crate) strict: bool,
}

pub(crate) fn check_size(len: usize) -> Result<()> {
    if len > MAX_COLLECTION_ITEMS {
        return Err(FhirPathError::Limit("collection size"));
    }
    Ok(())
}

/// At most one item, or an error.
pub(crate) fn singleton<'c, 'a>(coll: &'c [Item<'a>]) -> Result<Option<&'c Item<'a>>> {
    match coll {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        more => Err(FhirPathError::NotSingleton(more.len())),
    }
}

/// The Boolean reading of an item as `toBoolean()` converts it.
pub(crate) fn item_to_bool(item: &Item<'_>) -> Option<bool> {
    match item.prim()? {
        Prim::Bool(b) => Some(b),
        Prim::Int(1) => Some(true),
        Prim::Int(0) => Some(false),
        Prim::Dec(d) if d.num_eq(&Decimal::ONE) => Some(true),
        Prim::Dec(d) if d.num_eq(&Decimal::ZERO) => Some(false),
        Prim::Str(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "t" | "yes" | "y" | "1" | "1.0" => Some(true),
            "false" | "f" | "no" | "n" | "0" | "0.0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// Singleton evaluation as a Boolean: empty → `None`, more than one → error.
pub(crate) fn to_bool(coll: &[Item<'_>]) -> Result<Option<bool>> {
    Ok(singleton(coll)?.and_then(item_to_bool))
}

fn bool_coll<'a>(b: Option<bool>) -> Coll<'a> {
    b.map(|b| vec![Item::Bool(b)]).unwrap_or_default()
}

pub(crate) fn literal_item<'a>(lit: &Literal) -> Item<'a> {
    match lit {
        Literal::Bool(b) => Item::Bool(*b),
        Literal::Str(s) => Item::Str(Arc::clone(s)),
        Literal::Int(i) => Item::Int(*i),
        Literal::Dec(d) => Item::Dec(*d),
        Literal::Temporal(t) => Item::Temporal(*t),
        Literal::Qty(q) => Item::Qty(Box::new(q.clone())),
    }
}

/// The type of a JSON value found under an element of type `ty`: resources
/// carry their own type in `resourceType`.
fn refine_type(ty: FhirType, value: Option<&Value>) -> FhirType {
    if let Some(Value::Object(obj)) = value {
        if !ty.is_known() || ty.code == "Resource" || ty.code == "DomainResource" {
            if let Some(t) = obj
                .get("resourceType")
                .and_then(Value::as_str)
                .and_then(|t| MODEL.type_named(t))
            {
                return t;
            }
        }
    }
    ty
}

/// Pushes the items of one JSON member (and its `_member` companion).
pub(crate) fn push_json<'a>(
    out: &mut Coll<'a>,
    value: Option<&'a Value>,
    ext: Option<&'a Value>,
    ty: FhirType,
) -> Result<()> {
    let value = value.filter(|v| !v.is_null());
    let ext = ext.filter(|v| !v.is_null());
    match (value, ext) {
        (Some(Value::Array(values)), ext) => {
            check_size(out.len() + values.len())?;
            let exts = ext.and_then(Value::as_array);
            for (i, v) in values.iter().enumerate() {
                let x = exts.and_then(|e| e.get(i)).filter(|x| !x.is_null());
                if v.is_null() && x.is_none() {
                    continue;
                }
                let v = Some(v).filter(|v| !v.is_null());
                out.push(Item::Elem(Elem::new(v, x, refine_type(ty, v))));
            }
        }
        (None, Some(Value::Array(exts))) => {
            check_size(out.len() + exts.len())?;
            for x in exts.iter().filter(|x| !x.is_null()) {
                out.push(Item::Elem(Elem::new(None, Some(x), ty)));
            }
        }
        (None, None) => {}
        (v, x) => {
            check_size(out.len() + 1)?;
            out.push(Item::Elem(Elem::new(v, x, refine_type(ty, v))));
        }
    }
    Ok(())
}

/// A choice element (`value[x]`): one pass over the object's keys rather
/// than a lookup per possible type.
fn push_choice<'a>(
    out: &mut Coll<'a>,
    obj: &'a serde_json::Map<String, Value>,
    name: &str,
    alts: &[super::model::Alt],
) -> Result<()> {
    for (key, v) in obj {
        let (bare, is_ext) = match key.strip_prefix('_') {
            Some(bare) => (bare, true),
            None => (key.as_str(), false),
        };
        if !bare.starts_with(name) {
            continue;
        }
        let Some(alt) = alts.iter().find(|a| a.key == bare) else {
            continue;
        };
        if is_ext {
            if !obj.contains_key(bare) {
                push_json(out, None, Some(v), alt.ty)?;
            }
        } else {
            let x = if MODEL.is_primitive(alt.ty.code) {
                obj.get(alt.underscore_key)
            } else {
                None
            };
            push_json(out, Some(v), x, alt.ty)?;
        }
    }
    Ok(())
}

/// Whether `item` is of the type `spec` names (or a subtype of it).
pub(crate) fn type_matches(item: &Item<'_>, spec: &TypeSpec) -> bool {
    let ns = spec.namespace.as_deref();
    match item {
        Item::Elem(_) => {
            if ns == Some("System") {
                return false;
            }
            match item.type_name() {
                Some(code) => code == spec.name || MODEL.is_subtype(code, &spec.name),
                None => false,
            }
        }
        Item::TypeInfo { .. } => false,
        _ => {
            if ns == Some("FHIR") {
                return false;
            }
            item.type_info().is_some_and(|(_, name)| name == spec.name)
        }
    }
}

impl<'a> Engine<'a> {
    pub(crate) fn eval(
        &self,
        e: &Expr,
        focus: &[Item<'a>],
        frame: &Frame<'_, 'a>,
        depth: usize,
    ) -> Result<Coll<'a>> {
        if depth > MAX_EVAL_DEPTH {
            return Err(FhirPathError::Limit("evaluation depth"));
        }
        let d = depth + 1;
        match e {
            Expr::Literal(lit) => Ok(vec![literal_item(lit)]),
            Expr::Empty => Ok(Vec::new()),
            Expr::This => Ok(focus.to_vec()),
            Expr::Index => Ok(frame
                .index
                .map(|i| vec![Item::Int(i as i64)])
                .unwrap_or_default()),
            Expr::Total => Ok(frame.total.map(<[Item<'a>]>::to_vec).unwrap_or_default()),
            Expr::Variable(name) => self.variable(name),
            Expr::Member { base: None, name } => {
                let mut out = Vec::new();
                for item in focus {
                    self.term_identifier(item, name, &mut out)?;
                }
                Ok(out)
            }
            Expr::Member {
                base: Some(base),
                name,
            } => {
                if self.strict {
                    check_cast_member(base, name)?;
                }
                let input = self.eval(base, focus, frame, d)?;
                let mut out = Vec::with_capacity(input.len());
                for item in &input {
                    self.navigate(item, name, &mut out)?;
                }
                Ok(out)
            }
            Expr::Call {
                base,
                func,
                args,
                type_arg,
            } => {
                let input = match base {
                    Some(b) => self.eval(b, focus, frame, d)?,
                    None => focus.to_vec(),
                };
                let ctx = functions::Ctx {
                    eng: self,
                    args,
                    focus,
                    frame: *frame,
                    depth: d,
                };
                functions::call(&ctx, *func, input, type_arg.as_ref())
            }
            Expr::Indexer(base, index) => {
                let input = self.eval(base, focus, frame, d)?;
                let idx = self.eval(index, focus, frame, d)?;
                match singleton(&idx)?.map(Item::prim) {
                    None => Ok(Vec::new()),
                    Some(Some(Prim::Int(i))) => Ok(usize::try_from(i)
                        .ok()
                        .and_then(|i| input.into_iter().nth(i))
                        .into_iter()
                        .collect()),
                    Some(_) => Err(FhirPathError::Type("an index must be an integer".into())),
                }
            }
            Expr::Negate(x) => {
                let v = self.eval(x, focus, frame, d)?;
                let Some(item) = singleton(&v)? else {
                    return Ok(Vec::new());
                };
                Ok(vec![match item.prim() {
                    Some(Prim::Int(i)) => Item::Int(
                        i.checked_neg()
                            .ok_or(FhirPathError::Limit("integer range"))?,
                    ),
                    Some(Prim::Dec(dv)) => Item::Dec(dv.neg()),
                    Some(Prim::Qty(q)) => {
                        let mut q = q.into_owned();
                        q.value = q.value.neg();
                        Item::Qty(Box::new(q))
                    }
                    _ => {
                        return Err(FhirPathError::Type(
                            "unary minus needs a number or quantity".into(),
                        ))
                    }
                }])
            }
            Expr::Plus(x) => {
                let v = self.eval(x, focus, frame, d)?;
                if let Some(item) = singleton(&v)? {
                    if !matches!(
                        item.prim(),
                        Some(Prim::Int(_) | Prim::Dec(_) | Prim::Qty(_))
                    ) {
                        return Err(FhirPathError::Type(
                            "unary plus needs a number or quantity".into(),
                        ));
                    }
                }
                Ok(v)
            }
            Expr::Binary(op, l, r) => self.binary(*op, l, r, focus, frame, d),
            Expr::Is(x, spec) => {
                let v = self.eval(x, focus, frame, d)?;
                Ok(singleton(&v)?
                    .map(|item| vec![Item::Bool(type_matches(item, spec))])
                    .unwrap_or_default())
            }
            Expr::As(x, spec) => {
                let v = self.eval(x, focus, frame, d)?;
                if self.strict && v.len() > 1 {
                    return Err(FhirPathError::NotSingleton(v.len()));
                }
                Ok(v.into_iter().filter(|i| type_matches(i, spec)).collect())
            }
        }
    }

    fn variable(&self, name: &str) -> Result<Coll<'a>> {
        let s = |v: &str| Ok(vec![Item::str(v)]);
        match name {
            "resource" | "context" | "rootResource" => Ok(vec![self.root.clone()]),
            "ucum" => s("http://unitsofmeasure.org"),
            "sct" => s("http://snomed.info/sct"),
            "loinc" => s("http://loinc.org"),
            _ => {
                if let Some(rest) = name.strip_prefix("vs-") {
                    s(&format!("http://hl7.org/fhir/ValueSet/{rest}"))
                } else if let Some(rest) = name.strip_prefix("ext-") {
                    s(&format!("http://hl7.org/fhir/StructureDefinition/{rest}"))
                } else {
                    Err(FhirPathError::UnknownVariable(name.to_string()))
                }
            }
        }
    }

    /// A bare identifier: a type name matching the focus (`Patient` on a
    /// Patient) yields the focus itself; otherwise it is a member name.
    fn term_identifier(&self, item: &Item<'a>, name: &str, out: &mut Coll<'a>) -> Result<()> {
        if name.starts_with(|c: char| c.is_ascii_uppercase()) {
            if let Item::Elem(e) = item {
                if e.ty.is_known() && MODEL.is_subtype(e.ty.code, name) {
                    out.push(item.clone());
                    return Ok(());
                }
                if MODEL.is_resource(name) {
                    if self.strict {
                        return Err(FhirPathError::UnknownElement {
                            type_name: e.ty.code.to_string(),
                            name: name.into(),
                        });
                    }
                    return Ok(());
                }
            }
        }
        self.navigate(item, name, out)
    }

    /// `item.name`.
    pub(crate) fn navigate(&self, item: &Item<'a>, name: &str, out: &mut Coll<'a>) -> Result<()> {
        let e = match item {
            Item::Elem(e) => e,
            Item::TypeInfo {
                namespace,
                name: type_name,
            } => {
                match name {
                    "namespace" => out.push(Item::str(*namespace)),
                    "name" => out.push(Item::Str(Arc::clone(type_name))),
                    _ => {}
                }
                return Ok(());
            }
            _ => return Ok(()),
        };
        let obj = match e.value {
            Some(Value::Object(obj)) => obj,
            _ => {
                // A primitive: only its id and extensions, in the `_name` part.
                if let Some(Value::Object(ext)) = e.ext {
                    let ty = MODEL
                        .child(e.ty, name)
                        .and_then(|d| d.alts.first())
                        .map_or(FhirType::UNKNOWN, |a| a.ty);
                    push_json(out, ext.get(name), None, ty)?;
                } else if self.strict && e.ty.is_known() && MODEL.child(e.ty, name).is_none() {
                    return Err(FhirPathError::UnknownElement {
                        type_name: e.ty.code.into(),
                        name: name.into(),
                    });
                }
                return Ok(());
            }
        };
        if e.ty.is_known() {
            if let Some(def) = MODEL.child(e.ty, name) {
                if def.alts.len() > 1 {
                    return push_choice(out, obj, name, &def.alts);
                }
                for alt in &def.alts {
                    let v = obj.get(alt.key);
                    let x = if MODEL.is_primitive(alt.ty.code) {
                        obj.get(alt.underscore_key)
                    } else {
                        None
                    };
                    push_json(out, v, x, alt.ty)?;
                }
                return Ok(());
            }
            if self.strict {
                return Err(FhirPathError::UnknownElement {
                    type_name: e.ty.code.into(),
                    name: name.into(),
                });
            }
            // Lenient: a choice element spelled with its type (`valueQuantity`).
            if let Some((_, alt)) = MODEL.child_by_json_key(e.ty, name) {
                let x = if MODEL.is_primitive(alt.ty.code) {
                    obj.get(alt.underscore_key)
                } else {
                    None
                };
                return push_json(out, obj.get(name), x, alt.ty);
            }
        }
        let v = obj.get(name);
        let x = if v.is_none_or(|v| !v.is_object()) {
            obj.get(&format!("_{name}"))
        } else {
            None
        };
        push_json(out, v, x, FhirType::UNKNOWN)
    }

    fn binary(
        &self,
        op: BinOp,
        l: &Expr,
        r: &Expr,
        focus: &[Item<'a>],
        frame: &Frame<'_, 'a>,
        d: usize,
    ) -> Result<Coll<'a>> {
        match op {
            BinOp::And | BinOp::Or | BinOp::Xor | BinOp::Implies => {
                return self.logic(op, l, r, focus, frame, d)
            }
            _ => {}
        }
        let a = self.eval(l, focus, frame, d)?;
        let b = self.eval(r, focus, frame, d)?;
        match op {
            BinOp::Union => functions::union(a, b),
            BinOp::Eq => Ok(bool_coll(compare::collection_equals(&a, &b))),
            BinOp::Ne => Ok(bool_coll(compare::collection_equals(&a, &b).map(|x| !x))),
            BinOp::Equiv => Ok(vec![Item::Bool(compare::collection_equivalent(&a, &b))]),
            BinOp::NotEquiv => Ok(vec![Item::Bool(!compare::collection_equivalent(&a, &b))]),
            BinOp::In | BinOp::Contains => {
                let (needle, hay) = if op == BinOp::In { (&a, &b) } else { (&b, &a) };
                match singleton(needle)? {
                    None => Ok(Vec::new()),
                    Some(item) => Ok(vec![Item::Bool(compare::contains(hay, item))]),
                }
            }
            BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                let (Some(x), Some(y)) = (singleton(&a)?, singleton(&b)?) else {
                    return Ok(Vec::new());
                };
                let Some(ord) = compare::compare(x, y)? else {
                    return Ok(Vec::new());
                };
                let result = match op {
                    BinOp::Lt => ord.is_lt(),
                    BinOp::Le => ord.is_le(),
                    BinOp::Gt => ord.is_gt(),
                    _ => ord.is_ge(),
                };
                Ok(vec![Item::Bool(result)])
            }
            BinOp::Concat => {
                let text = |c: &[Item<'a>]| -> Result<String> {
                    match singleton(c)? {
                        None => Ok(String::new()),
                        Some(item) => match item.prim() {
                            Some(Prim::Str(s)) => Ok(s.to_string()),
                            _ => Err(FhirPathError::Type("& needs strings".into())),
                        },
                    }
                };
                let s = text(&a)? + &text(&b)?;
                Ok(vec![Item::str(s)])
            }
            _ => {
                let (Some(x), Some(y)) = (singleton(&a)?, singleton(&b)?) else {
                    return Ok(Vec::new());
                };
                arithmetic(op, x, y)
            }
        }
    }

    fn logic(
        &self,
        op: BinOp,
        l: &Expr,
        r: &Expr,
        focus: &[Item<'a>],
        frame: &Frame<'_, 'a>,
        d: usize,
    ) -> Result<Coll<'a>> {
        let a = to_bool(&self.eval(l, focus, frame, d)?)?;
        // Short-circuit where the left side decides.
        let decided = match (op, a) {
            (BinOp::And, Some(false)) => Some(false),
            (BinOp::Or, Some(true)) => Some(true),
            (BinOp::Implies, Some(false)) => Some(true),
            _ => None,
        };
        if decided.is_some() {
            return Ok(bool_coll(decided));
        }
        let b = to_bool(&self.eval(r, focus, frame, d)?)?;
        let result = match op {
            BinOp::And => match (a, b) {
                (Some(true), Some(true)) => Some(true),
                (_, Some(false)) => Some(false),
                _ => None,
            },
            BinOp::Or => match (a, b) {
                (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            },
            BinOp::Xor => match (a, b) {
                (Some(x), Some(y)) => Some(x != y),
                _ => None,
            },
            _ => match (a, b) {
                (_, Some(true)) => Some(true),
                (Some(true), Some(false)) => Some(false),
                _ => None,
            },
        };
        Ok(bool_coll(result))
    }
}

/// Strict mode: `(x as T).name` must name an element of `T`, even when the
/// cast yields nothing.
fn check_cast_member(base: &Expr, name: &str) -> Result<()> {
    let spec = match base {
        Expr::As(_, spec) => spec,
        Expr::Call {
            func: Func::As | Func::OfType,
            type_arg: Some(spec),
            ..
        } => spec,
        _ => return Ok(()),
    };
    match MODEL.type_named(&spec.name) {
        Some(ty) if MODEL.child(ty, name).is_none() => Err(FhirPathError::UnknownElement {
            type_name: spec.name.clone(),
            name: name.into(),
        }),
        _ => Ok(()),
    }
}

fn num(p: &Prim<'_>) -> Option<Decimal> {
    match p {
        Prim::Int(i) => Some(Decimal::from_i64(*i)),
        Prim::Dec(d) => Some(*d),
        _ => None,
    }
}

fn dec_item<'a>(d: Option<Decimal>) -> Coll<'a> {
    d.map(|d| vec![Item::Dec(d)]).unwrap_or_default()
}

fn int_item<'a>(i: Option<i64>) -> Coll<'a> {
    i.map(|i| vec![Item::Int(i)]).unwrap_or_default()
}

/// `+ - * / div mod` on two single items.
fn arithmetic<'a>(op: BinOp, x: &Item<'a>, y: &Item<'a>) -> Result<Coll<'a>> {
    let type_error = || {
        FhirPathError::Type(format!(
            "operator {op:?} cannot combine {} and {}",
            x.type_name().unwrap_or("unknown"),
            y.type_name().unwrap_or("unknown")
        ))
    };
    let (Some(a), Some(b)) = (x.prim(), y.prim()) else {
        return Err(type_error());
    };
    match (&a, &b) {
        (Prim::Int(i), Prim::Int(j)) => {
            return Ok(match op {
                BinOp::Add => int_item(i.checked_add(*j)),
                BinOp::Sub => int_item(i.checked_sub(*j)),
                BinOp::Mul => int_item(i.checked_mul(*j)),
                BinOp::Div => dec_item(Decimal::from_i64(*i).checked_div(&Decimal::from_i64(*j))),
                BinOp::IntDiv => int_item(i.checked_div(*j)),
                BinOp::Mod => int_item(i.checked_rem(*j)),
                _ => return Err(type_error()),
            })
        }
        (Prim::Str(s), Prim::Str(t)) if op == BinOp::Add => {
            return Ok(vec![Item::str(format!("{s}{t}"))])
        }
        (Prim::Temporal(t), Prim::Qty(q)) if matches!(op, BinOp::Add | BinOp::Sub) => {
            let unit = CalendarUnit::parse(&q.unit).ok_or_else(type_error)?;
            let (amount, unit) = match (q.value.to_i64_exact(), unit) {
                (Some(n), u) => (n, u),
                (None, CalendarUnit::Second) => {
                    let ms = q
                        .value
                        .checked_mul(&Decimal::from_i64(1000))
                        .and_then(|m| m.trunc())
                        .and_then(|m| m.to_i64_exact());
                    (ms.ok_or_else(type_error)?, CalendarUnit::Millisecond)
                }
                (None, u) => (
                    q.value
                        .trunc()
                        .and_then(|v| v.to_i64_exact())
                        .ok_or_else(type_error)?,
                    u,
                ),
            };
            let amount = if op == BinOp::Sub {
                amount.checked_neg().ok_or_else(type_error)?
            } else {
                amount
            };
            return Ok(t
                .add(amount, unit)
                .map(|t| vec![Item::Temporal(t)])
                .unwrap_or_default());
        }
        (Prim::Qty(p), Prim::Qty(q)) => {
            let r = match op {
                BinOp::Add => p.add(q, false),
                BinOp::Sub => p.add(q, true),
                BinOp::Mul => p.multiply(q),
                BinOp::Div => p.divide(q),
                _ => return Err(type_error()),
            };
            return Ok(r.map(|q| vec![Item::Qty(Box::new(q))]).unwrap_or_default());
        }
        (Prim::Qty(p), other) | (other, Prim::Qty(p)) if matches!(op, BinOp::Mul | BinOp::Div) => {
            let n = num(other).ok_or_else(type_error)?;
            let quantity_first = matches!(a, Prim::Qty(_));
            let value = match (op, quantity_first) {
                (BinOp::Mul, _) => p.value.checked_mul(&n),
                (BinOp::Div, true) => p.value.checked_div(&n),
                _ => return Err(type_error()),
            };
            return Ok(value
                .map(|v| {
                    vec![Item::Qty(Box::new(super::quantity::Quantity::new(
                        v,
                        p.unit.clone(),
                    )))]
                })
                .unwrap_or_default());
        }
        _ => {}
    }
    let (Some(i), Some(j)) = (num(&a), num(&b)) else {
        return Err(type_error());
    };
    Ok(match op {
        BinOp::Add => dec_item(i.checked_add(&j)),
        BinOp::Sub => dec_item(i.checked_sub(&j)),
        BinOp::Mul => dec_item(i.checked_mul(&j)),
        BinOp::Div => dec_item(i.checked_div(&j)),
        BinOp::IntDiv => int_item(i.checked_div_trunc(&j).and_then(|q| q.to_i64_exact())),
        BinOp::Mod => dec_item(i.checked_rem(&j)),
        _ => return Err(type_error()),
    })
}
