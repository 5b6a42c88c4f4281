//! Tokens of FHIRPath text: identifiers, literals (strings, numbers,
//! `@`dates/times), `%`variables, operators and punctuation; comments skipped.

use super::error::{FhirPathError, Result};

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Tok {
    /// A plain identifier or keyword (`name`, `and`, `true`).
    Ident(String),
    /// A `` `backtick` `` identifier: never a keyword.
    Delimited(String),
    Str(String),
    /// Number text: digits with an optional fraction.
    Number(String),
    Date(String),
    DateTime(String),
    Time(String),
    /// `%name`, ``%`name` `` or `%'name'`.
    Variable(String),
    /// `$this`, `$index`, `$total`.
    Dollar(String),
    Sym(&'static str),
    Eof,
}

#[derive(Clone, Debug)]
pub(crate) struct Token {
    pub(crate) tok: Tok,
    pub(crate) offset: usize,
}

const SYMBOLS: &[&str] = &[
    "!=", "!~", "<=", ">=", "(", ")", "[", "]", "{", "}", ".", ",", "+", "-", "*", "/", "&", "|",
    "=", "~", "<", ">",
];

fn err(offset: usize, message: impl Into<String>) -> FhirPathError {
    FhirPathError::Syntax {
        offset,
        message: message.into(),
    }
}

struct Lexer<'s> {
    src: &'s str,
    bytes: &'s [u8],
    pos: usize,
}

/// Splits `src` into tokens, ending with [`Tok::Eof`].
pub(crate) fn tokenize(src: &str) -> Result<Vec<Token>> {
    let mut lx = Lexer {
        src,
        bytes: src.as_bytes(),
        pos: 0,
    };
    let mut out = Vec::new();
    loop {
        lx.skip_trivia()?;
        let offset = lx.pos;
        let Some(&c) = lx.bytes.get(lx.pos) else {
            out.push(Token {
                tok: Tok::Eof,
                offset,
            });
            return Ok(out);
        };
        let tok = match c {
            b'\'' => Tok::Str(lx.quoted(b'\'')?),
            b'`' => Tok::Delimited(lx.quoted(b'`')?),
            b'0'..=b'9' => lx.number(),
            b'@' => lx.temporal()?,
            b'%' => {
                lx.pos += 1;
                match lx.bytes.get(lx.pos) {
                    Some(b'`') => Tok::Variable(lx.quoted(b'`')?),
                    Some(b'\'') => Tok::Variable(lx.quoted(b'\'')?),
                    _ => Tok::Variable(
                        lx.ident()
                            .ok_or_else(|| err(offset, "expected a name after %"))?,
                    ),
                }
            }
            b'$' => {
                lx.pos += 1;
                Tok::Dollar(
                    lx.ident()
                        .ok_or_else(|| err(offset, "expected a name after $"))?,
                )
            }
            c if c == b'_' || c.is_ascii_alphabetic() => Tok::Ident(lx.ident().unwrap_or_default()),
            _ => {
                let rest = &lx.src[lx.pos..];
                let sym = SYMBOLS
                    .iter()
                    .find(|s| rest.starts_with(**s))
                    .ok_or_else(|| err(offset, "unexpected character"))?;
                lx.pos += sym.len();
                Tok::Sym(sym)
            }
        };
        out.push(Token { tok, offset });
    }
}

impl Lexer<'_> {
    fn skip_trivia(&mut self) -> Result<()> {
        loop {
            match self.bytes.get(self.pos) {
                Some(b) if b.is_ascii_whitespace() => self.pos += 1,
                Some(b'/') if self.bytes.get(self.pos + 1) == Some(&b'/') => {
                    while self.bytes.get(self.pos).is_some_and(|&b| b != b'\n') {
                        self.pos += 1;
                    }
                }
                Some(b'/') if self.bytes.get(self.pos + 1) == Some(&b'*') => {
                    let start = self.pos;
                    let end = self.src[self.pos + 2..]
                        .find("*/")
                        .ok_or_else(|| err(start, "unterminated comment"))?;
                    self.pos += end + 4;
                }
                _ => return Ok(()),
            }
        }
    }

    fn ident(&mut self) -> Option<String> {
        let start = self.pos;
        while self
            .bytes
            .get(self.pos)
            .is_some_and(|&b| b == b'_' || b.is_ascii_alphanumeric())
        {
            self.pos += 1;
        }
        (self.pos > start).then(|| self.src[start..self.pos].to_string())
    }

    fn number(&mut self) -> Tok {
        let start = self.pos;
        while self.bytes.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
        if self.bytes.get(self.pos) == Some(&b'.')
            && self.bytes.get(self.pos + 1).is_some_and(u8::is_ascii_digit)
        {
            self.pos += 1;
            while self.bytes.get(self.pos).is_some_and(u8::is_ascii_digit) {
                self.pos += 1;
            }
        }
        Tok::Number(self.src[start..self.pos].to_string())
    }

    /// A quoted string or identifier with FHIRPath escapes.
    fn quoted(&mut self, quote: u8) -> Result<String> {
        let start = self.pos;
        self.pos += 1;
        let mut out = String::new();
        loop {
            let rest = &self.src[self.pos..];
            let mut chars = rest.chars();
            let c = chars
                .next()
                .ok_or_else(|| err(start, "unterminated string"))?;
            self.pos += c.len_utf8();
            if c as u32 == u32::from(quote) {
                return Ok(out);
            }
            if c != '\\' {
                out.push(c);
                continue;
            }
            let e = chars
                .next()
                .ok_or_else(|| err(start, "unterminated string"))?;
            self.pos += e.len_utf8();
            match e {
                '\'' | '"' | '`' | '\\' | '/' => out.push(e),
                'f' => out.push('\u{c}'),
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                'u' => {
                    let hex = self
                        .src
                        .get(self.pos..self.pos + 4)
                        .ok_or_else(|| err(self.pos, "bad \\u escape"))?;
                    let code = u32::from_str_radix(hex, 16)
                        .map_err(|_| err(self.pos, "bad \\u escape"))?;
                    out.push(char::from_u32(code).ok_or_else(|| err(self.pos, "bad \\u escape"))?);
                    self.pos += 4;
                }
                _ => return Err(err(self.pos, "unknown escape")),
            }
        }
    }

    fn digits(&mut self, n: usize) -> bool {
        let ok = self
            .bytes
            .get(self.pos..self.pos + n)
            .is_some_and(|s| s.iter().all(u8::is_ascii_digit));
        if ok {
            self.pos += n;
        }
        ok
    }

    fn at(&self, c: u8) -> bool {
        self.bytes.get(self.pos) == Some(&c)
    }

    /// `hh[:mm[:ss[.fff]]]` after the `T`.
    fn time_part(&mut self) {
        if !self.digits(2) {
            return;
        }
        if self.at(b':') && self.bytes.get(self.pos + 1).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
            self.digits(2);
            if self.at(b':') && self.bytes.get(self.pos + 1).is_some_and(u8::is_ascii_digit) {
                self.pos += 1;
                self.digits(2);
                if self.at(b'.') && self.bytes.get(self.pos + 1).is_some_and(u8::is_ascii_digit) {
                    self.pos += 1;
                    while self.bytes.get(self.pos).is_some_and(u8::is_ascii_digit) {
                        self.pos += 1;
                    }
                }
            }
        }
    }

    fn temporal(&mut self) -> Result<Tok> {
        let at = self.pos;
        self.pos += 1;
        let start = self.pos;
        if self.at(b'T') {
            self.pos += 1;
            self.time_part();
            if self.pos == start + 1 {
                return Err(err(at, "bad time literal"));
            }
            return Ok(Tok::Time(self.src[start + 1..self.pos].to_string()));
        }
        if !self.digits(4) {
            return Err(err(at, "bad date literal"));
        }
        for _ in 0..2 {
            if self.at(b'-') && self.bytes.get(self.pos + 1).is_some_and(u8::is_ascii_digit) {
                self.pos += 1;
                self.digits(2);
            }
        }
        if !self.at(b'T') {
            return Ok(Tok::Date(self.src[start..self.pos].to_string()));
        }
        self.pos += 1;
        let before_time = self.pos;
        self.time_part();
        if self.pos > before_time {
            if self.at(b'Z') {
                self.pos += 1;
            } else if (self.at(b'+') || self.at(b'-'))
                && self.bytes.get(self.pos + 1..self.pos + 6).is_some_and(|s| {
                    s[0].is_ascii_digit()
                        && s[1].is_ascii_digit()
                        && s[2] == b':'
                        && s[3].is_ascii_digit()
                        && s[4].is_ascii_digit()
                })
            {
                self.pos += 6;
            }
        }
        Ok(Tok::DateTime(self.src[start..self.pos].to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        tokenize(s)
            .expect("lexes")
            .into_iter()
            .map(|t| t.tok)
            .collect()
    }

    #[test]
    fn numbers_stop_before_method_calls() {
        assert_eq!(
            toks("1.convertsToInteger()")[..3],
            [
                Tok::Number("1".into()),
                Tok::Sym("."),
                Tok::Ident("convertsToInteger".into())
            ]
        );
        assert_eq!(toks("1.0.x")[0], Tok::Number("1.0".into()));
    }

    #[test]
    fn temporal_literals() {
        assert_eq!(
            toks("@2015-02-04T14:34:28.123+10:00.is(DateTime)")[0],
            Tok::DateTime("2015-02-04T14:34:28.123+10:00".into())
        );
        assert_eq!(toks("@2015T")[0], Tok::DateTime("2015T".into()));
        assert_eq!(
            toks("@2014-12-14.toString()")[0],
            Tok::Date("2014-12-14".into())
        );
        assert_eq!(
            toks("@T14:34:28Z")[..2],
            [Tok::Time("14:34:28".into()), Tok::Ident("Z".into())]
        );
    }

    #[test]
    fn strings_variables_and_comments() {
        assert_eq!(toks(r"'P\u0065ter'")[0], Tok::Str("Peter".into()));
        assert_eq!(
            toks("%`vs-x` // c\n")[..2],
            [Tok::Variable("vs-x".into()), Tok::Eof]
        );
        assert_eq!(toks("a /* b */ != c")[1], Tok::Sym("!="));
        assert!(tokenize("'open").is_err());
    }
}
