//! Values FHIRPath works with: elements of the resource (borrowed JSON with
//! their FHIR type), computed System values, and the public [`Node`].

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::Value;

use super::decimal::Decimal;
use super::model::{FhirType, MODEL};
use super::quantity::Quantity;
use super::temporal::{Temporal, TemporalKind};

/// An element of the resource. Primitive elements in FHIR JSON have two
/// halves: the value (`"birthDate": "1974-12-25"`) and the id/extensions
/// (`"_birthDate": {…}`); either may be absent.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Elem<'a> {
    pub(crate) value: Option<&'a Value>,
    pub(crate) ext: Option<&'a Value>,
    pub(crate) ty: FhirType,
}

/// One item of a FHIRPath collection.
#[derive(Clone, Debug)]
pub(crate) enum Item<'a> {
    Elem(Elem<'a>),
    Bool(bool),
    Int(i64),
    Dec(Decimal),
    Str(Arc<str>),
    Temporal(Temporal),
    Qty(Box<Quantity>),
    /// The result of `type()`: `namespace` and `name` are its members.
    TypeInfo {
        namespace: &'static str,
        name: Arc<str>,
    },
}

/// A primitive view of an item, for comparison and arithmetic.
#[derive(Clone, Debug)]
pub(crate) enum Prim<'x> {
    Bool(bool),
    Int(i64),
    Dec(Decimal),
    Str(&'x str),
    Temporal(Temporal),
    Qty(Cow<'x, Quantity>),
}

const QUANTITY_TYPES: &[&str] = &[
    "Quantity",
    "Age",
    "Duration",
    "Distance",
    "Count",
    "SimpleQuantity",
    "MoneyQuantity",
];

/// The System type a FHIR primitive type maps to.
pub(crate) fn system_type_of(code: &str) -> Option<&'static str> {
    Some(match code {
        "boolean" => "Boolean",
        "integer" | "positiveInt" | "unsignedInt" | "integer64" => "Integer",
        "decimal" => "Decimal",
        "date" => "Date",
        "dateTime" | "instant" => "DateTime",
        "time" => "Time",
        "string" | "code" | "id" | "uri" | "url" | "canonical" | "oid" | "uuid" | "markdown"
        | "base64Binary" | "xhtml" => "String",
        _ => return None,
    })
}

pub(crate) fn json_number_text(n: &serde_json::Number) -> &str {
    n.as_str()
}

fn quantity_from_json(obj: &serde_json::Map<String, Value>) -> Option<Quantity> {
    let value = match obj.get("value")? {
        Value::Number(n) => Decimal::parse(json_number_text(n))?,
        _ => return None,
    };
    let unit = obj
        .get("code")
        .and_then(Value::as_str)
        .or_else(|| obj.get("unit").and_then(Value::as_str))
        .unwrap_or("1");
    Some(Quantity::new(value, unit))
}

impl<'a> Elem<'a> {
    pub(crate) fn new(value: Option<&'a Value>, ext: Option<&'a Value>, ty: FhirType) -> Elem<'a> {
        Elem { value, ext, ty }
    }

    /// A resource (or any JSON object) as the root of evaluation.
    pub(crate) fn resource(json: &'a Value) -> Elem<'a> {
        let ty = json
            .get("resourceType")
            .and_then(Value::as_str)
            .and_then(|t| MODEL.type_named(t))
            .unwrap_or(FhirType::UNKNOWN);
        Elem {
            value: Some(json),
            ext: None,
            ty,
        }
    }

    /// Whether this element holds a JSON object (complex type, backbone
    /// element or resource) rather than a primitive.
    pub(crate) fn is_complex(&self) -> bool {
        matches!(self.value, Some(Value::Object(_)))
    }

    /// The primitive value this element holds, typed by its FHIR type (or by
    /// its JSON shape when the type is unknown).
    pub(crate) fn prim(&self) -> Option<Prim<'a>> {
        let value = self.value?;
        let code = self.ty.code;
        if let Value::Object(obj) = value {
            if QUANTITY_TYPES.contains(&code) || MODEL.is_subtype(code, "Quantity") {
                return quantity_from_json(obj).map(|q| Prim::Qty(Cow::Owned(q)));
            }
            return None;
        }
        match (system_type_of(code), value) {
            (Some("Boolean") | None, Value::Bool(b)) => Some(Prim::Bool(*b)),
            (Some("Integer"), Value::Number(n)) => n.as_i64().map(Prim::Int),
            (Some("Decimal"), Value::Number(n)) => {
                Decimal::parse(json_number_text(n)).map(Prim::Dec)
            }
            (None, Value::Number(n)) => {
                let text = json_number_text(n);
                match n.as_i64() {
                    Some(i) if !text.contains(['.', 'e', 'E']) => Some(Prim::Int(i)),
                    _ => Decimal::parse(text).map(Prim::Dec),
                }
            }
            (Some("Date"), Value::String(s)) => {
                Some(Temporal::parse_date(s).map_or(Prim::Str(s.as_str()), Prim::Temporal))
            }
            (Some("DateTime"), Value::String(s)) => {
                Some(Temporal::parse_datetime(s).map_or(Prim::Str(s.as_str()), Prim::Temporal))
            }
            (Some("Time"), Value::String(s)) => {
                Some(Temporal::parse_time(s).map_or(Prim::Str(s.as_str()), Prim::Temporal))
            }
            (_, Value::String(s)) => Some(Prim::Str(s.as_str())),
            _ => None,
        }
    }
}

impl<'a> Item<'a> {
    pub(crate) fn str(s: impl Into<Arc<str>>) -> Item<'a> {
        Item::Str(s.into())
    }

    /// The primitive view: `None` for complex elements and type infos.
    pub(crate) fn prim(&self) -> Option<Prim<'_>> {
        match self {
            Item::Elem(e) => e.prim(),
            Item::Bool(b) => Some(Prim::Bool(*b)),
            Item::Int(i) => Some(Prim::Int(*i)),
            Item::Dec(d) => Some(Prim::Dec(*d)),
            Item::Str(s) => Some(Prim::Str(s)),
            Item::Temporal(t) => Some(Prim::Temporal(*t)),
            Item::Qty(q) => Some(Prim::Qty(Cow::Borrowed(q))),
            Item::TypeInfo { .. } => None,
        }
    }

    /// The item as an owned System value (`getValue()`), `None` when it has
    /// no primitive value.
    pub(crate) fn to_system(&self) -> Option<Item<'a>> {
        match self {
            Item::Elem(e) => Some(match e.prim()? {
                Prim::Bool(b) => Item::Bool(b),
                Prim::Int(i) => Item::Int(i),
                Prim::Dec(d) => Item::Dec(d),
                Prim::Str(s) => Item::str(s),
                Prim::Temporal(t) => Item::Temporal(t),
                Prim::Qty(q) => Item::Qty(Box::new(q.into_owned())),
            }),
            Item::TypeInfo { .. } => None,
            other => Some(other.clone()),
        }
    }

    /// FHIR (or FHIR-style, for System values) type name, if known.
    pub(crate) fn type_name(&self) -> Option<&'static str> {
        Some(match self {
            Item::Elem(e) if e.ty.is_known() => e.ty.code,
            Item::Elem(e) => match e.value? {
                Value::Bool(_) => "boolean",
                Value::Number(n) if n.as_i64().is_some() => "integer",
                Value::Number(_) => "decimal",
                Value::String(_) => "string",
                _ => return None,
            },
            Item::Bool(_) => "boolean",
            Item::Int(_) => "integer",
            Item::Dec(_) => "decimal",
            Item::Str(_) => "string",
            Item::Temporal(t) => match t.kind {
                TemporalKind::Date => "date",
                TemporalKind::DateTime => "dateTime",
                TemporalKind::Time => "time",
            },
            Item::Qty(_) => "Quantity",
            Item::TypeInfo { .. } => return None,
        })
    }

    /// `(namespace, name)` as `type()` reports it.
    pub(crate) fn type_info(&self) -> Option<(&'static str, &'static str)> {
        Some(match self {
            Item::Elem(_) => ("FHIR", self.type_name()?),
            Item::Bool(_) => ("System", "Boolean"),
            Item::Int(_) => ("System", "Integer"),
            Item::Dec(_) => ("System", "Decimal"),
            Item::Str(_) => ("System", "String"),
            Item::Temporal(t) => (
                "System",
                match t.kind {
                    TemporalKind::Date => "Date",
                    TemporalKind::DateTime => "DateTime",
                    TemporalKind::Time => "Time",
                },
            ),
            Item::Qty(_) => ("System", "Quantity"),
            Item::TypeInfo { .. } => ("System", "Object"),
        })
    }

    /// The string form used by `toString()` and for output.
    pub(crate) fn display(&self) -> Option<Cow<'_, str>> {
        Some(match self.prim()? {
            Prim::Bool(b) => Cow::Borrowed(if b { "true" } else { "false" }),
            Prim::Int(i) => Cow::Owned(i.to_string()),
            Prim::Dec(d) => Cow::Owned(d.to_string()),
            Prim::Str(s) => Cow::Borrowed(s),
            Prim::Temporal(t) => Cow::Owned(t.to_string()),
            Prim::Qty(q) => Cow::Owned(q.to_string()),
        })
    }
}

/// A value an expression produced.
///
/// Elements of the resource are borrowed ([`NodeValue::Element`]); values
/// computed by the expression (booleans, numbers, strings, dates,
/// quantities) are owned.
#[derive(Clone, Debug)]
pub struct Node<'a> {
    item: Item<'a>,
}

/// What a [`Node`] holds.
#[derive(Clone, Debug, PartialEq)]
pub enum NodeValue<'a> {
    /// An element of the resource: its JSON value (`None` for a primitive
    /// that has only an id or extensions) and, for primitives, the JSON of
    /// its `_name` companion.
    Element {
        value: Option<&'a Value>,
        extension: Option<&'a Value>,
    },
    Boolean(bool),
    Integer(i64),
    /// Decimal text, keeping its precision (`98.60`).
    Decimal(String),
    String(String),
    /// A date, dateTime or time in FHIR text form; [`Node::type_name`] says which.
    Temporal(String),
    Quantity {
        value: String,
        unit: String,
    },
    /// The result of `type()`.
    TypeInfo {
        namespace: String,
        name: String,
    },
}

impl<'a> Node<'a> {
    pub(crate) fn new(item: Item<'a>) -> Node<'a> {
        Node { item }
    }

    /// The FHIR type name when known: `HumanName`, `date`, `Reference`,
    /// `Patient`; computed values use the matching FHIR primitive name
    /// (`boolean`, `integer`, `decimal`, `string`, `date`, `dateTime`,
    /// `time`) or `Quantity`.
    pub fn type_name(&self) -> Option<&'static str> {
        self.item.type_name()
    }

    /// The JSON of the element in the resource, when this node is one.
    pub fn json(&self) -> Option<&'a Value> {
        match &self.item {
            Item::Elem(e) => e.value,
            _ => None,
        }
    }

    /// What this node holds.
    pub fn value(&self) -> NodeValue<'a> {
        match &self.item {
            Item::Elem(e) => NodeValue::Element {
                value: e.value,
                extension: e.ext,
            },
            Item::Bool(b) => NodeValue::Boolean(*b),
            Item::Int(i) => NodeValue::Integer(*i),
            Item::Dec(d) => NodeValue::Decimal(d.to_string()),
            Item::Str(s) => NodeValue::String(s.to_string()),
            Item::Temporal(t) => NodeValue::Temporal(t.to_string()),
            Item::Qty(q) => NodeValue::Quantity {
                value: q.value.to_string(),
                unit: q.unit.clone(),
            },
            Item::TypeInfo { namespace, name } => NodeValue::TypeInfo {
                namespace: namespace.to_string(),
                name: name.to_string(),
            },
        }
    }

    /// The primitive value as text (`"1974-12-25"`, `"98.60"`, `"true"`,
    /// `"185 '[lb_av]'"`); `None` for complex elements.
    pub fn as_text(&self) -> Option<Cow<'_, str>> {
        self.item.display()
    }
}
