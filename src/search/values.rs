//! Parsing search values: prefixes, numbers with their precision, tokens,
//! quantities and references, with `\` escapes, as the R4 search spec gives them.

/// A comparison prefix (`ge2020`, `lt5.4`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    Sa,
    Eb,
    Ap,
}

impl Prefix {
    /// Splits a leading two-letter prefix from `value` (default `eq`).
    pub fn split(value: &str) -> (Prefix, &str) {
        let p = match value.get(..2) {
            Some("eq") => Prefix::Eq,
            Some("ne") => Prefix::Ne,
            Some("gt") => Prefix::Gt,
            Some("lt") => Prefix::Lt,
            Some("ge") => Prefix::Ge,
            Some("le") => Prefix::Le,
            Some("sa") => Prefix::Sa,
            Some("eb") => Prefix::Eb,
            Some("ap") => Prefix::Ap,
            _ => return (Prefix::Eq, value),
        };
        (p, &value[2..])
    }
}

/// Splits `value` on unescaped `sep`, unescaping `\,`, `\|`, `\$` and `\\`.
pub fn split_escaped(value: &str, sep: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(n) => parts.last_mut().map(|p| p.push(n)),
                None => parts.last_mut().map(|p| p.push('\\')),
            };
        } else if c == sep {
            parts.push(String::new());
        } else if let Some(p) = parts.last_mut() {
            p.push(c);
        }
    }
    parts
}

/// Splits `value` on unescaped `sep`, keeping the escapes inside each part
/// (for values whose parts are split again later, e.g. tokens on `|`).
pub fn split_escaped_keep(value: &str, sep: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut escaped = false;
    for c in value.chars() {
        let last = parts.last_mut();
        match (escaped, c, last) {
            (true, _, Some(p)) => {
                p.push(c);
                escaped = false;
            }
            (false, '\\', Some(p)) => {
                p.push(c);
                escaped = true;
            }
            (false, c, _) if c == sep => parts.push(String::new()),
            (false, _, Some(p)) => p.push(c),
            _ => {}
        }
    }
    parts
}

/// Splits on the first unescaped `sep` only, keeping escapes in the rest.
fn split_once_unescaped(value: &str, sep: char) -> Option<(String, String)> {
    let mut escaped = false;
    for (i, c) in value.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            return Some((unescape(&value[..i]), value[i + 1..].to_string()));
        }
    }
    None
}

/// Removes `\` escapes.
pub fn unescape(value: &str) -> String {
    split_escaped(value, '\u{0}').concat()
}

/// A token value: `[system]|[code]`, `|code`, `system|`, or `code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// `None`: any system; `Some("")`: no system (`|code`).
    pub system: Option<String>,
    /// `None`: any code (`system|`).
    pub code: Option<String>,
}

pub fn parse_token(value: &str) -> Token {
    match split_once_unescaped(value, '|') {
        Some((system, code)) => Token {
            system: Some(system),
            code: if code.is_empty() {
                None
            } else {
                Some(unescape(&code))
            },
        },
        None => Token {
            system: None,
            code: Some(unescape(value)),
        },
    }
}

/// A decimal with the half-width of its precision (`100` → ±0.5, `1.50` → ±0.005).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decimal {
    pub value: f64,
    pub half_width: f64,
}

pub fn parse_decimal(text: &str) -> Option<Decimal> {
    let t = text.trim();
    if t.is_empty() || t.contains(['e', 'E']) && !t.bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: f64 = t.parse().ok()?;
    if !value.is_finite() {
        return None;
    }
    let (mantissa, exp) = match t.find(['e', 'E']) {
        Some(i) => (&t[..i], t[i + 1..].parse::<i32>().ok()?),
        None => (t, 0),
    };
    let decimals = mantissa.split_once('.').map_or(0, |(_, f)| f.len()) as i32;
    let half_width = 0.5 * 10f64.powi(exp - decimals);
    Some(Decimal { value, half_width })
}

/// A quantity value: `[prefix]number|system|code` (system and code optional).
#[derive(Debug, Clone, PartialEq)]
pub struct QuantityValue {
    pub prefix: Prefix,
    pub number: Decimal,
    pub system: Option<String>,
    pub code: Option<String>,
}

pub fn parse_quantity(value: &str) -> Option<QuantityValue> {
    let parts = split_escaped(value, '|');
    let (prefix, number) = Prefix::split(parts.first()?);
    let number = parse_decimal(number)?;
    let nonempty = |i: usize| parts.get(i).filter(|s| !s.is_empty()).cloned();
    Some(QuantityValue {
        prefix,
        number,
        system: nonempty(1),
        code: nonempty(2),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        assert_eq!(
            parse_token("http://loinc.org|8480-6"),
            Token {
                system: Some("http://loinc.org".into()),
                code: Some("8480-6".into())
            }
        );
        assert_eq!(
            parse_token("|x"),
            Token {
                system: Some(String::new()),
                code: Some("x".into())
            }
        );
        assert_eq!(
            parse_token("sys|"),
            Token {
                system: Some("sys".into()),
                code: None
            }
        );
        assert_eq!(
            parse_token("a\\|b"),
            Token {
                system: None,
                code: Some("a|b".into())
            }
        );
    }

    #[test]
    fn decimals_carry_precision() {
        assert_eq!(parse_decimal("100").unwrap().half_width, 0.5);
        assert!((parse_decimal("1.50").unwrap().half_width - 0.005).abs() < 1e-12);
        assert!((parse_decimal("1e2").unwrap().half_width - 50.0).abs() < 1e-9);
        assert!(parse_decimal("abc").is_none());
    }

    #[test]
    fn prefixes_and_escapes() {
        assert_eq!(Prefix::split("ge2020"), (Prefix::Ge, "2020"));
        assert_eq!(Prefix::split("2020"), (Prefix::Eq, "2020"));
        assert_eq!(split_escaped("a,b\\,c", ','), vec!["a", "b,c"]);
        let q = parse_quantity("lt5.4|http://unitsofmeasure.org|mg").unwrap();
        assert_eq!(q.prefix, Prefix::Lt);
        assert_eq!(q.code.as_deref(), Some("mg"));
    }
}
