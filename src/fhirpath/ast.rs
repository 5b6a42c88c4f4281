//! The parsed form of an expression: literals, paths, calls with their
//! function resolved at parse time, and operators.

use std::sync::Arc;

use super::decimal::Decimal;
use super::quantity::Quantity;
use super::temporal::Temporal;

#[derive(Clone, Debug)]
pub(crate) enum Literal {
    Bool(bool),
    Str(Arc<str>),
    Int(i64),
    Dec(Decimal),
    Temporal(Temporal),
    Qty(Quantity),
}

/// `Namespace.Name` in `is`, `as` and `ofType`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TypeSpec {
    pub(crate) namespace: Option<String>,
    pub(crate) name: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BinOp {
    Mul,
    Div,
    IntDiv,
    Mod,
    Add,
    Sub,
    Concat,
    Union,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    Equiv,
    NotEquiv,
    In,
    Contains,
    And,
    Or,
    Xor,
    Implies,
}

#[derive(Clone, Debug)]
pub(crate) enum Expr {
    Literal(Literal),
    /// `{}`
    Empty,
    This,
    Index,
    Total,
    Variable(String),
    /// `base.name`, or a bare `name` on the focus when `base` is `None`.
    Member {
        base: Option<Box<Expr>>,
        name: String,
    },
    Call {
        base: Option<Box<Expr>>,
        func: Func,
        args: Vec<Expr>,
        type_arg: Option<TypeSpec>,
    },
    Indexer(Box<Expr>, Box<Expr>),
    Negate(Box<Expr>),
    /// Unary `+`: checks the operand is numeric.
    Plus(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    Is(Box<Expr>, TypeSpec),
    As(Box<Expr>, TypeSpec),
}

macro_rules! functions {
    ($($variant:ident = $name:literal, $min:literal, $max:literal;)*) => {
        /// Every function the engine implements.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub(crate) enum Func { $($variant),* }

        impl Func {
            /// The function called `name`, with its argument count range.
            pub(crate) fn lookup(name: &str) -> Option<(Func, usize, usize)> {
                match name {
                    $($name => Some((Func::$variant, $min, $max)),)*
                    _ => None,
                }
            }

            pub(crate) fn name(self) -> &'static str {
                match self { $(Func::$variant => $name),* }
            }
        }
    };
}

functions! {
    Empty = "empty", 0, 0;
    Exists = "exists", 0, 1;
    All = "all", 1, 1;
    AllTrue = "allTrue", 0, 0;
    AnyTrue = "anyTrue", 0, 0;
    AllFalse = "allFalse", 0, 0;
    AnyFalse = "anyFalse", 0, 0;
    SubsetOf = "subsetOf", 1, 1;
    SupersetOf = "supersetOf", 1, 1;
    Count = "count", 0, 0;
    Distinct = "distinct", 0, 0;
    IsDistinct = "isDistinct", 0, 0;
    Where = "where", 1, 1;
    Select = "select", 1, 1;
    Repeat = "repeat", 1, 1;
    OfType = "ofType", 1, 1;
    Single = "single", 0, 0;
    First = "first", 0, 0;
    Last = "last", 0, 0;
    Tail = "tail", 0, 0;
    Skip = "skip", 1, 1;
    Take = "take", 1, 1;
    Intersect = "intersect", 1, 1;
    Exclude = "exclude", 1, 1;
    Union = "union", 1, 1;
    Combine = "combine", 1, 1;
    Iif = "iif", 2, 3;
    ToBoolean = "toBoolean", 0, 0;
    ConvertsToBoolean = "convertsToBoolean", 0, 0;
    ToInteger = "toInteger", 0, 0;
    ConvertsToInteger = "convertsToInteger", 0, 0;
    ToDecimal = "toDecimal", 0, 0;
    ConvertsToDecimal = "convertsToDecimal", 0, 0;
    ToStringFn = "toString", 0, 0;
    ConvertsToString = "convertsToString", 0, 0;
    ToDate = "toDate", 0, 0;
    ConvertsToDate = "convertsToDate", 0, 0;
    ToDateTime = "toDateTime", 0, 0;
    ConvertsToDateTime = "convertsToDateTime", 0, 0;
    ToTime = "toTime", 0, 0;
    ConvertsToTime = "convertsToTime", 0, 0;
    ToQuantity = "toQuantity", 0, 1;
    ConvertsToQuantity = "convertsToQuantity", 0, 1;
    IndexOf = "indexOf", 1, 1;
    Substring = "substring", 1, 2;
    StartsWith = "startsWith", 1, 1;
    EndsWith = "endsWith", 1, 1;
    ContainsStr = "contains", 1, 1;
    Upper = "upper", 0, 0;
    Lower = "lower", 0, 0;
    Replace = "replace", 2, 2;
    Matches = "matches", 1, 1;
    ReplaceMatches = "replaceMatches", 2, 2;
    Length = "length", 0, 0;
    ToChars = "toChars", 0, 0;
    Trim = "trim", 0, 0;
    Split = "split", 1, 1;
    Join = "join", 0, 1;
    Encode = "encode", 1, 1;
    Decode = "decode", 1, 1;
    Escape = "escape", 1, 1;
    Unescape = "unescape", 1, 1;
    Abs = "abs", 0, 0;
    Ceiling = "ceiling", 0, 0;
    Exp = "exp", 0, 0;
    Floor = "floor", 0, 0;
    Ln = "ln", 0, 0;
    Log = "log", 1, 1;
    Power = "power", 1, 1;
    Round = "round", 0, 1;
    Sqrt = "sqrt", 0, 0;
    Truncate = "truncate", 0, 0;
    Children = "children", 0, 0;
    Descendants = "descendants", 0, 0;
    Trace = "trace", 1, 2;
    Now = "now", 0, 0;
    Today = "today", 0, 0;
    TimeOfDay = "timeOfDay", 0, 0;
    Not = "not", 0, 0;
    Is = "is", 1, 1;
    As = "as", 1, 1;
    Type = "type", 0, 0;
    Extension = "extension", 1, 1;
    HasExtension = "hasExtension", 1, 1;
    HasValue = "hasValue", 0, 0;
    GetValue = "getValue", 0, 0;
    Resolve = "resolve", 0, 0;
    MemberOf = "memberOf", 1, 1;
    Subsumes = "subsumes", 1, 1;
    SubsumedBy = "subsumedBy", 1, 1;
    ConformsTo = "conformsTo", 1, 1;
    HtmlChecks = "htmlChecks", 0, 0;
    Aggregate = "aggregate", 1, 2;
    Sum = "sum", 0, 0;
    Min = "min", 0, 0;
    Max = "max", 0, 0;
    Avg = "avg", 0, 0;
}

impl Func {
    /// Functions whose argument is a type specifier, not an expression.
    pub(crate) fn takes_type(self) -> bool {
        matches!(self, Func::Is | Func::As | Func::OfType)
    }
}
