//! Precedence-climbing parser from tokens to [`Expr`].
//!
//! Precedence, loosest first: `implies`; `or xor`; `and`; `in contains`;
//! `= ~ != !~`; `is`; `< > <= >=`; `|`; `as`; `+ - &`; `* / div mod`; unary
//! `+ -`; then `.` and `[]`. The specification ranks `is`/`as` above `|`, but
//! the HL7 test suite (and the Java reference engine) read `1 | 1 is Integer`
//! and `1 > 2 is Boolean` with `is` looser; `as` keeps its place, so
//! `a as X | b as Y` stays a union of two casts.

use std::sync::Arc;

use super::ast::{BinOp, Expr, Func, Literal, TypeSpec};
use super::decimal::Decimal;
use super::error::{FhirPathError, Result};
use super::lexer::{tokenize, Tok, Token};
use super::quantity::Quantity;
use super::temporal::{CalendarUnit, Temporal};

/// Longest expression text accepted.
pub(crate) const MAX_EXPRESSION_BYTES: usize = 16 * 1024;
/// Deepest nesting of sub-expressions accepted.
pub(crate) const MAX_PARSE_DEPTH: usize = 128;

const PREC_IMPLIES: u8 = 1;
const PREC_IS: u8 = 6;
const PREC_AS: u8 = 9;

fn binary_op(tok: &Tok) -> Option<(BinOp, u8)> {
    Some(match tok {
        Tok::Ident(s) => match s.as_str() {
            "implies" => (BinOp::Implies, PREC_IMPLIES),
            "or" => (BinOp::Or, 2),
            "xor" => (BinOp::Xor, 2),
            "and" => (BinOp::And, 3),
            "in" => (BinOp::In, 4),
            "contains" => (BinOp::Contains, 4),
            "div" => (BinOp::IntDiv, 11),
            "mod" => (BinOp::Mod, 11),
            _ => return None,
        },
        Tok::Sym(s) => match *s {
            "=" => (BinOp::Eq, 5),
            "~" => (BinOp::Equiv, 5),
            "!=" => (BinOp::Ne, 5),
            "!~" => (BinOp::NotEquiv, 5),
            "<" => (BinOp::Lt, 7),
            ">" => (BinOp::Gt, 7),
            "<=" => (BinOp::Le, 7),
            ">=" => (BinOp::Ge, 7),
            "|" => (BinOp::Union, 8),
            "+" => (BinOp::Add, 10),
            "-" => (BinOp::Sub, 10),
            "&" => (BinOp::Concat, 10),
            "*" => (BinOp::Mul, 11),
            "/" => (BinOp::Div, 11),
            _ => return None,
        },
        _ => return None,
    })
}

struct Parser {
    toks: Vec<Token>,
    pos: usize,
    depth: usize,
}

/// Parses a whole expression.
pub(crate) fn parse(text: &str) -> Result<Expr> {
    if text.len() > MAX_EXPRESSION_BYTES {
        return Err(FhirPathError::Limit("expression length"));
    }
    let mut p = Parser {
        toks: tokenize(text)?,
        pos: 0,
        depth: 0,
    };
    let e = p.expr(0)?;
    match p.peek() {
        Tok::Eof => Ok(e),
        _ => Err(p.error("unexpected token")),
    }
}

impl Parser {
    fn peek(&self) -> &Tok {
        self.toks.get(self.pos).map_or(&Tok::Eof, |t| &t.tok)
    }

    fn peek_at(&self, n: usize) -> &Tok {
        self.toks.get(self.pos + n).map_or(&Tok::Eof, |t| &t.tok)
    }

    fn offset(&self) -> usize {
        self.toks.get(self.pos).map_or(0, |t| t.offset)
    }

    fn error(&self, message: &str) -> FhirPathError {
        FhirPathError::Syntax {
            offset: self.offset(),
            message: message.to_string(),
        }
    }

    fn next(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.pos < self.toks.len() {
            self.pos += 1;
        }
        t
    }

    fn expect_sym(&mut self, sym: &str) -> Result<()> {
        match self.peek() {
            Tok::Sym(s) if *s == sym => {
                self.pos += 1;
                Ok(())
            }
            _ => Err(self.error(&format!("expected `{sym}`"))),
        }
    }

    fn enter(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_PARSE_DEPTH {
            return Err(FhirPathError::Limit("expression nesting depth"));
        }
        Ok(())
    }

    fn expr(&mut self, min_prec: u8) -> Result<Expr> {
        self.enter()?;
        let entered = self.depth;
        let mut lhs = self.unary()?;
        loop {
            let tok = self.peek().clone();
            if let Tok::Ident(word) = &tok {
                let (is_is, prec) = match word.as_str() {
                    "is" => (true, PREC_IS),
                    "as" => (false, PREC_AS),
                    _ => (false, 0),
                };
                if prec > 0 {
                    if prec < min_prec {
                        break;
                    }
                    self.pos += 1;
                    self.enter()?;
                    let spec = self.type_spec()?;
                    lhs = if is_is {
                        Expr::Is(Box::new(lhs), spec)
                    } else {
                        Expr::As(Box::new(lhs), spec)
                    };
                    continue;
                }
            }
            let Some((op, prec)) = binary_op(&tok) else {
                break;
            };
            if prec < min_prec {
                break;
            }
            self.pos += 1;
            // Each fold nests the tree one level deeper on the left.
            self.enter()?;
            let next_min = if op == BinOp::Implies { prec } else { prec + 1 };
            let rhs = self.expr(next_min)?;
            lhs = Expr::Binary(op, Box::new(lhs), Box::new(rhs));
        }
        self.depth = entered - 1;
        Ok(lhs)
    }

    fn unary(&mut self) -> Result<Expr> {
        match self.peek() {
            Tok::Sym("-") => {
                self.pos += 1;
                self.enter()?;
                let operand = self.unary()?;
                self.depth -= 1;
                Ok(match operand {
                    Expr::Literal(Literal::Int(i)) => Expr::Literal(Literal::Int(-i)),
                    Expr::Literal(Literal::Dec(d)) => Expr::Literal(Literal::Dec(d.neg())),
                    Expr::Literal(Literal::Qty(q)) => {
                        Expr::Literal(Literal::Qty(Quantity::new(q.value.neg(), q.unit)))
                    }
                    other => Expr::Negate(Box::new(other)),
                })
            }
            Tok::Sym("+") => {
                self.pos += 1;
                self.enter()?;
                let operand = self.unary()?;
                self.depth -= 1;
                Ok(Expr::Plus(Box::new(operand)))
            }
            _ => self.postfix(),
        }
    }

    /// A term and its `.member`, `.call()` and `[index]` steps; each step
    /// nests the tree one level deeper, so it counts towards the depth.
    fn postfix(&mut self) -> Result<Expr> {
        let entered = self.depth;
        let mut e = self.term()?;
        loop {
            match self.peek() {
                Tok::Sym(".") => {
                    self.pos += 1;
                    self.enter()?;
                    e = self.invocation(Some(Box::new(e)))?;
                }
                Tok::Sym("[") => {
                    self.pos += 1;
                    self.enter()?;
                    let index = self.expr(0)?;
                    self.expect_sym("]")?;
                    e = Expr::Indexer(Box::new(e), Box::new(index));
                }
                _ => {
                    self.depth = entered;
                    return Ok(e);
                }
            }
        }
    }

    fn identifier(&mut self) -> Result<String> {
        match self.next() {
            Tok::Ident(s) | Tok::Delimited(s) => Ok(s),
            _ => {
                self.pos = self.pos.saturating_sub(1);
                Err(self.error("expected an identifier"))
            }
        }
    }

    fn type_spec(&mut self) -> Result<TypeSpec> {
        let first = self.identifier()?;
        if matches!(self.peek(), Tok::Sym("."))
            && matches!(self.peek_at(1), Tok::Ident(_) | Tok::Delimited(_))
        {
            self.pos += 1;
            let name = self.identifier()?;
            return Ok(TypeSpec {
                namespace: Some(first),
                name,
            });
        }
        Ok(TypeSpec {
            namespace: None,
            name: first,
        })
    }

    /// A member name or function call, after `.` or at the start of a term.
    fn invocation(&mut self, base: Option<Box<Expr>>) -> Result<Expr> {
        let delimited = matches!(self.peek(), Tok::Delimited(_));
        let name = self.identifier()?;
        if delimited || !matches!(self.peek(), Tok::Sym("(")) {
            return Ok(Expr::Member { base, name });
        }
        self.pos += 1;
        let (func, min, max) =
            Func::lookup(&name).ok_or_else(|| FhirPathError::UnknownFunction(name.clone()))?;
        let mut args = Vec::new();
        let mut type_arg = None;
        if !matches!(self.peek(), Tok::Sym(")")) {
            if func.takes_type() {
                type_arg = Some(self.type_spec()?);
            } else {
                loop {
                    args.push(self.expr(0)?);
                    if matches!(self.peek(), Tok::Sym(",")) {
                        self.pos += 1;
                    } else {
                        break;
                    }
                }
            }
        }
        self.expect_sym(")")?;
        let got = args.len() + usize::from(type_arg.is_some());
        if got < min || got > max {
            let expected = match (min, max) {
                (0, 0) => "0",
                (1, 1) => "1",
                (0, 1) => "0 or 1",
                (1, 2) => "1 or 2",
                (2, 2) => "2",
                (2, 3) => "2 or 3",
                _ => "a different number of",
            };
            return Err(FhirPathError::Arity {
                name: func.name(),
                expected,
                got,
            });
        }
        Ok(Expr::Call {
            base,
            func,
            args,
            type_arg,
        })
    }

    fn term(&mut self) -> Result<Expr> {
        let offset = self.offset();
        let bad = |m: &str| FhirPathError::Syntax {
            offset,
            message: m.to_string(),
        };
        match self.peek().clone() {
            Tok::Number(text) => {
                self.pos += 1;
                let (lit, value) = match text.parse::<i64>() {
                    Ok(i) if !text.contains('.') => (Literal::Int(i), Decimal::from_i64(i)),
                    _ => {
                        let d = Decimal::parse(&text).ok_or_else(|| bad("bad number"))?;
                        (Literal::Dec(d), d)
                    }
                };
                // A quantity: number then a unit string or calendar keyword.
                match self.peek().clone() {
                    Tok::Str(unit) => {
                        self.pos += 1;
                        Ok(Expr::Literal(Literal::Qty(Quantity::new(value, unit))))
                    }
                    Tok::Ident(word) if CalendarUnit::parse(&word).is_some() && word.len() > 2 => {
                        self.pos += 1;
                        Ok(Expr::Literal(Literal::Qty(Quantity::new(value, word))))
                    }
                    _ => Ok(Expr::Literal(lit)),
                }
            }
            Tok::Str(s) => {
                self.pos += 1;
                Ok(Expr::Literal(Literal::Str(Arc::from(s))))
            }
            Tok::Date(s) => {
                self.pos += 1;
                Temporal::parse_date(&s)
                    .map(|t| Expr::Literal(Literal::Temporal(t)))
                    .ok_or_else(|| bad("bad date literal"))
            }
            Tok::DateTime(s) => {
                self.pos += 1;
                Temporal::parse_datetime(&s)
                    .map(|t| Expr::Literal(Literal::Temporal(t)))
                    .ok_or_else(|| bad("bad dateTime literal"))
            }
            Tok::Time(s) => {
                self.pos += 1;
                Temporal::parse_time(&s)
                    .map(|t| Expr::Literal(Literal::Temporal(t)))
                    .ok_or_else(|| bad("bad time literal"))
            }
            Tok::Variable(name) => {
                self.pos += 1;
                Ok(Expr::Variable(name))
            }
            Tok::Dollar(name) => {
                self.pos += 1;
                match name.as_str() {
                    "this" => Ok(Expr::This),
                    "index" => Ok(Expr::Index),
                    "total" => Ok(Expr::Total),
                    _ => Err(bad("unknown $ variable")),
                }
            }
            Tok::Sym("(") => {
                self.pos += 1;
                let e = self.expr(0)?;
                self.expect_sym(")")?;
                Ok(e)
            }
            Tok::Sym("{") => {
                self.pos += 1;
                self.expect_sym("}")?;
                Ok(Expr::Empty)
            }
            Tok::Ident(word) if word == "true" || word == "false" => {
                self.pos += 1;
                Ok(Expr::Literal(Literal::Bool(word == "true")))
            }
            Tok::Ident(_) | Tok::Delimited(_) => self.invocation(None),
            _ => Err(bad("expected an expression")),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn shape(text: &str) -> String {
        format!("{:?}", parse(text).expect("parses"))
    }

    #[test]
    fn precedence() {
        let e = shape("1+2*3");
        assert!(e.starts_with("Binary(Add"), "{e}");
        assert!(shape("1 | 1 is Integer").starts_with("Is(Binary(Union"));
        assert!(shape("1 > 2 is Boolean").starts_with("Is(Binary(Gt"));
        assert!(shape("a as X | b as Y").starts_with("Binary(Union, As("));
        assert!(shape("-a.b").starts_with("Negate(Member"));
        assert!(shape("a implies b implies c").starts_with("Binary(Implies, Member"));
    }

    #[test]
    fn literals_and_calls() {
        assert!(shape("4 days").contains("unit: \"days\""));
        assert!(shape("10 'mg'").contains("unit: \"mg\""));
        assert!(shape("Observation.value.as(Quantity)")
            .contains("type_arg: Some(TypeSpec { namespace: None, name: \"Quantity\" })"));
        assert!(shape("-1").contains("Int(-1)"));
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(
            parse("name.where("),
            Err(FhirPathError::Syntax { .. })
        ));
        assert!(matches!(
            parse("nosuch()"),
            Err(FhirPathError::UnknownFunction(_))
        ));
        assert!(matches!(
            parse("first(1)"),
            Err(FhirPathError::Arity { .. })
        ));
        assert!(parse("@T14:34:28Z").is_err());
        assert!(parse(&"(".repeat(500)).is_err());
        assert!(parse("a.b)").is_err());
    }

    /// The deepest expressions of each shape: nested parentheses, unary
    /// signs, `.member` chains, `[index]` chains and left folds of binary
    /// operators. `ok` parses; one more level is refused.
    pub(crate) fn deepest(shape: &str, levels: usize) -> String {
        match shape {
            "parens" => format!("{}1{}", "(".repeat(levels), ")".repeat(levels)),
            "unary" => format!("{}1", "-".repeat(levels)),
            "members" => format!("a{}", ".a".repeat(levels)),
            "indexers" => format!("a{}", "[0]".repeat(levels)),
            "folds" => format!("1{}", " + 1".repeat(levels)),
            "calls" => format!("{}1{}", "a.where(".repeat(levels), ")".repeat(levels)),
            _ => String::new(),
        }
    }

    pub(crate) const SHAPES: [&str; 6] =
        ["parens", "unary", "members", "indexers", "folds", "calls"];

    /// The most levels of `shape` that parse: the next level is refused by
    /// the depth limit, and every shape reaches at least a third of it.
    pub(crate) fn boundary(shape: &str) -> usize {
        let ok = (1..=MAX_PARSE_DEPTH + 1)
            .take_while(|n| parse(&deepest(shape, *n)).is_ok())
            .last()
            .unwrap_or(0);
        assert!(ok >= MAX_PARSE_DEPTH / 3 - 1, "{shape}: only {ok} levels");
        assert!(
            matches!(parse(&deepest(shape, ok + 1)), Err(FhirPathError::Limit(_))),
            "{shape} at {}",
            ok + 1
        );
        ok
    }

    #[test]
    fn depth_limit_holds_for_every_shape() {
        assert_eq!(boundary("parens"), MAX_PARSE_DEPTH - 1);
        assert_eq!(boundary("members"), MAX_PARSE_DEPTH - 1);
        for shape in SHAPES {
            boundary(shape);
        }
        // Long but shallow is fine; longer than the length limit is not.
        let long = "a".repeat(MAX_EXPRESSION_BYTES + 1);
        assert!(matches!(parse(&long), Err(FhirPathError::Limit(_))));
        assert!(parse(&"a".repeat(MAX_EXPRESSION_BYTES)).is_ok());
        // A 16 KiB chain used to parse into a tree thousands deep.
        let chain = format!("a{}", ".a".repeat(MAX_EXPRESSION_BYTES / 2 - 1));
        assert!(matches!(parse(&chain), Err(FhirPathError::Limit(_))));
    }
}
