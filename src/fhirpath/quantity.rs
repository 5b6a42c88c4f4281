//! Quantities (a decimal and a unit) with a small UCUM subset: prefixes,
//! common base atoms, products, quotients and exponents, so `4 'g' = 4000 'mg'`
//! and `7 days = 1 'wk'`. Units outside the subset compare only by identity.

use std::cmp::Ordering;
use std::fmt;

use super::decimal::Decimal;
use super::temporal::CalendarUnit;

/// Longest unit string that is parsed as UCUM (longer ones compare by text).
const MAX_UNIT_LEN: usize = 64;

/// A FHIRPath quantity. `unit` is a UCUM code or a calendar keyword
/// (`week`, `days`…) as written.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Quantity {
    pub(crate) value: Decimal,
    pub(crate) unit: String,
}

/// Exponents of the base dimensions: m, g, s, mol, K, A, cd.
type Dims = [i8; 7];

/// A unit reduced to a factor times base dimensions.
struct Canonical {
    factor: Decimal,
    dims: Dims,
}

struct Atom {
    code: &'static str,
    /// Factor to base units, as decimal text.
    factor: &'static str,
    dims: Dims,
    metric: bool,
}

const fn dim(i: usize, e: i8) -> Dims {
    let mut d = [0i8; 7];
    d[i] = e;
    d
}

const ATOMS: &[Atom] = &[
    Atom {
        code: "m",
        factor: "1",
        dims: dim(0, 1),
        metric: true,
    },
    Atom {
        code: "g",
        factor: "1",
        dims: dim(1, 1),
        metric: true,
    },
    Atom {
        code: "s",
        factor: "1",
        dims: dim(2, 1),
        metric: true,
    },
    Atom {
        code: "mol",
        factor: "1",
        dims: dim(3, 1),
        metric: true,
    },
    Atom {
        code: "K",
        factor: "1",
        dims: dim(4, 1),
        metric: true,
    },
    Atom {
        code: "A",
        factor: "1",
        dims: dim(5, 1),
        metric: true,
    },
    Atom {
        code: "cd",
        factor: "1",
        dims: dim(6, 1),
        metric: true,
    },
    Atom {
        code: "L",
        factor: "0.001",
        dims: dim(0, 3),
        metric: true,
    },
    Atom {
        code: "l",
        factor: "0.001",
        dims: dim(0, 3),
        metric: true,
    },
    Atom {
        code: "min",
        factor: "60",
        dims: dim(2, 1),
        metric: false,
    },
    Atom {
        code: "h",
        factor: "3600",
        dims: dim(2, 1),
        metric: false,
    },
    Atom {
        code: "d",
        factor: "86400",
        dims: dim(2, 1),
        metric: false,
    },
    Atom {
        code: "wk",
        factor: "604800",
        dims: dim(2, 1),
        metric: false,
    },
    Atom {
        code: "mo",
        factor: "2629800",
        dims: dim(2, 1),
        metric: false,
    },
    Atom {
        code: "a",
        factor: "31557600",
        dims: dim(2, 1),
        metric: false,
    },
    Atom {
        code: "[lb_av]",
        factor: "453.59237",
        dims: dim(1, 1),
        metric: false,
    },
    Atom {
        code: "[oz_av]",
        factor: "28.349523125",
        dims: dim(1, 1),
        metric: false,
    },
    Atom {
        code: "[in_i]",
        factor: "0.0254",
        dims: dim(0, 1),
        metric: false,
    },
    Atom {
        code: "[ft_i]",
        factor: "0.3048",
        dims: dim(0, 1),
        metric: false,
    },
    Atom {
        code: "[mi_i]",
        factor: "1609.344",
        dims: dim(0, 1),
        metric: false,
    },
    Atom {
        code: "%",
        factor: "0.01",
        dims: [0; 7],
        metric: false,
    },
    Atom {
        code: "1",
        factor: "1",
        dims: [0; 7],
        metric: false,
    },
];

const PREFIXES: &[(&str, i32)] = &[
    ("da", 1),
    ("Y", 24),
    ("Z", 21),
    ("E", 18),
    ("P", 15),
    ("T", 12),
    ("G", 9),
    ("M", 6),
    ("k", 3),
    ("h", 2),
    ("d", -1),
    ("c", -2),
    ("m", -3),
    ("u", -6),
    ("n", -9),
    ("p", -12),
    ("f", -15),
];

fn pow10_decimal(exp: i32) -> Decimal {
    if exp >= 0 {
        Decimal::new(10i128.pow(exp.unsigned_abs()), 0)
    } else {
        Decimal::new(1, exp.unsigned_abs())
    }
}

fn lookup_atom(symbol: &str) -> Option<(Decimal, Dims)> {
    if let Some(a) = ATOMS.iter().find(|a| a.code == symbol) {
        return Some((Decimal::parse(a.factor)?, a.dims));
    }
    for (prefix, exp) in PREFIXES {
        if let Some(rest) = symbol.strip_prefix(prefix) {
            if let Some(a) = ATOMS.iter().find(|a| a.code == rest && a.metric) {
                let f = Decimal::parse(a.factor)?.checked_mul(&pow10_decimal(*exp))?;
                return Some((f, a.dims));
            }
        }
    }
    None
}

struct UnitParser<'s> {
    s: &'s [u8],
    pos: usize,
}

impl UnitParser<'_> {
    fn term(&mut self, depth: u8) -> Option<Canonical> {
        if depth > 8 {
            return None;
        }
        let mut acc = Canonical {
            factor: Decimal::ONE,
            dims: [0; 7],
        };
        let mut divide = false;
        if self.s.get(self.pos) == Some(&b'/') {
            self.pos += 1;
            divide = true;
        }
        loop {
            let c = self.component(depth)?;
            acc = combine(acc, c, divide)?;
            match self.s.get(self.pos) {
                Some(b'.') => divide = false,
                Some(b'/') => divide = true,
                _ => return Some(acc),
            }
            self.pos += 1;
        }
    }

    fn component(&mut self, depth: u8) -> Option<Canonical> {
        let start = self.pos;
        let mut base = match self.s.get(self.pos)? {
            b'(' => {
                self.pos += 1;
                let t = self.term(depth + 1)?;
                if self.s.get(self.pos) != Some(&b')') {
                    return None;
                }
                self.pos += 1;
                t
            }
            b'{' => {
                self.skip_annotation()?;
                return Some(Canonical {
                    factor: Decimal::ONE,
                    dims: [0; 7],
                });
            }
            b'0'..=b'9' => {
                while self.s.get(self.pos).is_some_and(u8::is_ascii_digit) {
                    self.pos += 1;
                }
                let n = Decimal::parse(std::str::from_utf8(&self.s[start..self.pos]).ok()?)?;
                if matches!(self.s.get(self.pos), Some(b'*' | b'^')) {
                    self.pos += 1;
                    let e = self.exponent()?;
                    if n.to_i64_exact() != Some(10) {
                        return None;
                    }
                    return Some(Canonical {
                        factor: pow10_decimal(e),
                        dims: [0; 7],
                    });
                }
                Canonical {
                    factor: n,
                    dims: [0; 7],
                }
            }
            _ => {
                if self.s.get(self.pos) == Some(&b'[') {
                    while self.s.get(self.pos).is_some_and(|&b| b != b']') {
                        self.pos += 1;
                    }
                    self.pos += 1;
                }
                while self.s.get(self.pos).is_some_and(|&b| {
                    !matches!(
                        b,
                        b'.' | b'/' | b'(' | b')' | b'{' | b'+' | b'-' | b'0'..=b'9' | b'['
                    )
                }) {
                    self.pos += 1;
                }
                let symbol = std::str::from_utf8(self.s.get(start..self.pos)?).ok()?;
                let (factor, dims) = lookup_atom(symbol)?;
                Canonical { factor, dims }
            }
        };
        if self
            .s
            .get(self.pos)
            .is_some_and(|b| b.is_ascii_digit() || *b == b'-' || *b == b'+')
        {
            let e = self.exponent()?;
            base = power(base, e)?;
        }
        if self.s.get(self.pos) == Some(&b'{') {
            self.skip_annotation()?;
        }
        Some(base)
    }

    fn exponent(&mut self) -> Option<i32> {
        let start = self.pos;
        if matches!(self.s.get(self.pos), Some(b'-' | b'+')) {
            self.pos += 1;
        }
        while self.s.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
        let e: i32 = std::str::from_utf8(&self.s[start..self.pos])
            .ok()?
            .parse()
            .ok()?;
        (e.abs() <= 24).then_some(e)
    }

    fn skip_annotation(&mut self) -> Option<()> {
        while self.s.get(self.pos)? != &b'}' {
            self.pos += 1;
        }
        self.pos += 1;
        Some(())
    }
}

fn combine(a: Canonical, b: Canonical, divide: bool) -> Option<Canonical> {
    let mut dims = a.dims;
    for (d, e) in dims.iter_mut().zip(b.dims) {
        *d = if divide {
            d.checked_sub(e)?
        } else {
            d.checked_add(e)?
        };
    }
    let factor = if divide {
        a.factor.checked_div(&b.factor)?
    } else {
        a.factor.checked_mul(&b.factor)?
    };
    Some(Canonical { factor, dims })
}

fn power(c: Canonical, e: i32) -> Option<Canonical> {
    let mut acc = Canonical {
        factor: Decimal::ONE,
        dims: [0; 7],
    };
    for _ in 0..e.unsigned_abs() {
        acc = combine(
            acc,
            Canonical {
                factor: c.factor,
                dims: c.dims,
            },
            e < 0,
        )?;
    }
    Some(acc)
}

/// The UCUM code a calendar keyword stands for (`week` → `wk`).
fn ucum_code(unit: &str) -> &str {
    match CalendarUnit::parse(unit) {
        Some(CalendarUnit::Year) => "a",
        Some(CalendarUnit::Month) => "mo",
        Some(CalendarUnit::Week) => "wk",
        Some(CalendarUnit::Day) => "d",
        Some(CalendarUnit::Hour) => "h",
        Some(CalendarUnit::Minute) => "min",
        Some(CalendarUnit::Second) => "s",
        Some(CalendarUnit::Millisecond) => "ms",
        None => unit,
    }
}

fn canonical(unit: &str) -> Option<Canonical> {
    let unit = ucum_code(unit);
    if unit.len() > MAX_UNIT_LEN {
        return None;
    }
    let mut p = UnitParser {
        s: unit.as_bytes(),
        pos: 0,
    };
    let c = p.term(0)?;
    (p.pos == unit.len()).then_some(c)
}

/// Both values in one unit, when the units are the same or commensurable.
fn common(a: &Quantity, b: &Quantity) -> Option<(Decimal, Decimal)> {
    if ucum_code(&a.unit) == ucum_code(&b.unit) {
        return Some((a.value, b.value));
    }
    let (ca, cb) = (canonical(&a.unit)?, canonical(&b.unit)?);
    if ca.dims != cb.dims {
        return None;
    }
    Some((
        a.value.checked_mul(&ca.factor)?,
        b.value.checked_mul(&cb.factor)?,
    ))
}

impl Quantity {
    pub(crate) fn new(value: Decimal, unit: impl Into<String>) -> Quantity {
        Quantity {
            value,
            unit: unit.into(),
        }
    }

    /// `=`: unequal when the units are not commensurable.
    pub(crate) fn equals(&self, other: &Quantity) -> Option<bool> {
        match common(self, other) {
            Some((a, b)) => Some(a.num_eq(&b)),
            None => Some(false),
        }
    }

    pub(crate) fn equivalent(&self, other: &Quantity) -> bool {
        match common(self, other) {
            Some((a, b)) => a.equivalent(&b),
            None => false,
        }
    }

    /// Ordering; `None` when the units are not commensurable.
    pub(crate) fn compare(&self, other: &Quantity) -> Option<Ordering> {
        let (a, b) = common(self, other)?;
        a.compare(&b)
    }

    /// Sum or difference in `self`'s unit.
    pub(crate) fn add(&self, other: &Quantity, subtract: bool) -> Option<Quantity> {
        let other_value = if ucum_code(&self.unit) == ucum_code(&other.unit) {
            other.value
        } else {
            let (ca, cb) = (canonical(&self.unit)?, canonical(&other.unit)?);
            if ca.dims != cb.dims {
                return None;
            }
            other
                .value
                .checked_mul(&cb.factor)?
                .checked_div(&ca.factor)?
        };
        let value = if subtract {
            self.value.checked_sub(&other_value)?
        } else {
            self.value.checked_add(&other_value)?
        };
        Some(Quantity::new(value, self.unit.clone()))
    }

    pub(crate) fn multiply(&self, other: &Quantity) -> Option<Quantity> {
        let (a, b) = (ucum_code(&self.unit), ucum_code(&other.unit));
        let unit = match (a, b) {
            ("1", u) | (u, "1") => u.to_string(),
            _ => format!("{}.{}", wrap(a), wrap(b)),
        };
        Some(Quantity::new(self.value.checked_mul(&other.value)?, unit))
    }

    pub(crate) fn divide(&self, other: &Quantity) -> Option<Quantity> {
        let (a, b) = (ucum_code(&self.unit), ucum_code(&other.unit));
        let unit = if a == b {
            "1".to_string()
        } else if b == "1" {
            a.to_string()
        } else {
            format!("{}/{}", wrap(a), wrap(b))
        };
        Some(Quantity::new(self.value.checked_div(&other.value)?, unit))
    }

    /// Parses `'1 day'`, `'1.5 \'mg\''` or a bare number (unit `1`), as
    /// `toQuantity()` does.
    pub(crate) fn parse(text: &str) -> Option<Quantity> {
        let text = text.trim();
        let (number, rest) = match text.find(' ') {
            Some(i) => (&text[..i], text[i..].trim_start()),
            None => (text, ""),
        };
        let value = Decimal::parse(number)?;
        if number.starts_with('+') || number.ends_with('.') {
            return None;
        }
        if rest.is_empty() {
            return Some(Quantity::new(value, "1"));
        }
        if let Some(inner) = rest.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
            return Some(Quantity::new(value, inner));
        }
        CalendarUnit::parse(rest)
            .filter(|_| rest.chars().all(|c| c.is_ascii_lowercase()) && rest.len() > 2)
            .map(|_| Quantity::new(value, rest))
    }
}

fn wrap(unit: &str) -> String {
    if unit.contains(['.', '/']) {
        format!("({unit})")
    } else {
        unit.to_string()
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} '{}'", self.value, self.unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(v: &str, u: &str) -> Quantity {
        Quantity::new(Decimal::parse(v).expect("number"), u)
    }

    #[test]
    fn converts_prefixes_and_calendar_units() {
        assert_eq!(q("4.0000", "g").equals(&q("4000.0", "mg")), Some(true));
        assert_eq!(q("4", "g").equals(&q("4040", "mg")), Some(false));
        assert!(q("4", "g").equivalent(&q("4040", "mg")));
        assert_eq!(q("7", "days").equals(&q("1", "week")), Some(true));
        assert_eq!(q("7", "days").equals(&q("1", "wk")), Some(true));
        assert_eq!(
            q("6", "days").compare(&q("1", "week")),
            Some(Ordering::Less)
        );
        assert_eq!(q("1", "kg").compare(&q("1", "m")), None);
    }

    #[test]
    fn products_and_quotients() {
        let p = q("2.0", "cm").multiply(&q("2.0", "m")).expect("product");
        assert_eq!(p.equals(&q("0.040", "m2")), Some(true));
        let d = q("4.0", "g").divide(&q("2.0", "m")).expect("quotient");
        assert_eq!(d.equals(&q("2", "g/m")), Some(true));
        let one = q("1.0", "m").divide(&q("1.0", "m")).expect("quotient");
        assert_eq!(one.equals(&q("1", "1")), Some(true));
        assert_eq!(q("1", "mg/dL").equals(&q("10", "mg/L")), Some(true));
    }

    #[test]
    fn parses_strings() {
        assert_eq!(Quantity::parse("1 day"), Some(q("1", "day")));
        assert_eq!(Quantity::parse("1 'wk'"), Some(q("1", "wk")));
        assert_eq!(Quantity::parse("1 wk"), None);
        assert_eq!(Quantity::parse("1.0"), Some(q("1.0", "1")));
        assert_eq!(Quantity::parse("1.a"), None);
    }
}
