//! String functions: searching, slicing, case, replace, regex, split/join,
//! encode/decode and escape/unescape.

use base64::Engine as _;

use super::{input_string, Ctx};
use crate::fhirpath::ast::Func;
use crate::fhirpath::error::{FhirPathError, Result};
use crate::fhirpath::eval::{check_size, Coll};
use crate::fhirpath::value::{Item, Prim};

/// Longest string a function may build (`replace`, `join`, `&`…).
pub(crate) const MAX_STRING_BYTES: usize = 1 << 20;
/// Largest compiled regular expression, in bytes of the regex engine.
const MAX_REGEX_SIZE: usize = 1 << 20;

fn bounded(s: String) -> Result<String> {
    if s.len() > MAX_STRING_BYTES {
        return Err(FhirPathError::Limit("string length"));
    }
    Ok(s)
}

fn regex(pattern: &str) -> Result<regex::Regex> {
    regex::RegexBuilder::new(pattern)
        .size_limit(MAX_REGEX_SIZE)
        .dot_matches_new_line(true)
        .build()
        .map_err(|_| FhirPathError::InvalidArgument("invalid regular expression".into()))
}

fn char_slice(s: &str, start: usize, len: usize) -> String {
    s.chars().skip(start).take(len).collect()
}

/// The string argument `i`, or `None` when it is empty.
fn required(ctx: &Ctx<'_, '_>, i: usize) -> Result<Option<String>> {
    ctx.arg_string(i)
}

pub(crate) fn call<'a>(ctx: &Ctx<'_, 'a>, func: Func, input: &[Item<'a>]) -> Result<Coll<'a>> {
    use Func as F;
    if func == F::Join {
        let sep = if ctx.args.is_empty() {
            String::new()
        } else {
            required(ctx, 0)?.unwrap_or_default()
        };
        let mut parts = Vec::with_capacity(input.len());
        for item in input {
            match item.prim() {
                Some(Prim::Str(s)) => parts.push(s.to_string()),
                _ => return Err(FhirPathError::Type("join() needs strings".into())),
            }
        }
        return Ok(vec![Item::str(bounded(parts.join(&sep))?)]);
    }
    let Some(s) = input_string(input)? else {
        return Ok(Vec::new());
    };
    let s = s.as_ref();
    let str_item = |v: String| -> Result<Coll<'a>> { Ok(vec![Item::str(bounded(v)?)]) };
    let bool_item = |b: bool| -> Result<Coll<'a>> { Ok(vec![Item::Bool(b)]) };
    match func {
        F::IndexOf => {
            let Some(sub) = required(ctx, 0)? else {
                return Ok(Vec::new());
            };
            let idx = s.find(&sub).map_or(-1, |b| s[..b].chars().count() as i64);
            Ok(vec![Item::Int(idx)])
        }
        F::Substring => {
            let Some(start) = ctx.arg_int(0)? else {
                return Ok(Vec::new());
            };
            let count = s.chars().count() as i64;
            if start < 0 || start >= count {
                return Ok(Vec::new());
            }
            let len = if ctx.args.len() > 1 {
                ctx.arg_int(1)?.unwrap_or(count)
            } else {
                count
            };
            let len = len.clamp(0, count - start);
            str_item(char_slice(s, start as usize, len as usize))
        }
        F::StartsWith => match required(ctx, 0)? {
            Some(p) => bool_item(s.starts_with(&p)),
            None => Ok(Vec::new()),
        },
        F::EndsWith => match required(ctx, 0)? {
            Some(p) => bool_item(s.ends_with(&p)),
            None => Ok(Vec::new()),
        },
        F::ContainsStr => match required(ctx, 0)? {
            Some(p) => bool_item(s.contains(&p)),
            None => Ok(Vec::new()),
        },
        F::Upper => str_item(s.to_uppercase()),
        F::Lower => str_item(s.to_lowercase()),
        F::Replace => {
            let (Some(pattern), Some(with)) = (required(ctx, 0)?, required(ctx, 1)?) else {
                return Ok(Vec::new());
            };
            if pattern.is_empty() {
                // Inserts the substitution between every character.
                let mut out = with.clone();
                for c in s.chars() {
                    out.push(c);
                    out.push_str(&with);
                    if out.len() > MAX_STRING_BYTES {
                        return Err(FhirPathError::Limit("string length"));
                    }
                }
                return str_item(out);
            }
            let n = s.matches(pattern.as_str()).count();
            if s.len().saturating_add(n.saturating_mul(with.len())) > MAX_STRING_BYTES {
                return Err(FhirPathError::Limit("string length"));
            }
            str_item(s.replace(&pattern, &with))
        }
        F::Matches => match required(ctx, 0)? {
            Some(p) => bool_item(regex(&p)?.is_match(s)),
            None => Ok(Vec::new()),
        },
        F::ReplaceMatches => {
            let (Some(pattern), Some(with)) = (required(ctx, 0)?, required(ctx, 1)?) else {
                return Ok(Vec::new());
            };
            let re = regex(&pattern)?;
            str_item(re.replace_all(s, with.as_str()).into_owned())
        }
        F::Length => Ok(vec![Item::Int(s.chars().count() as i64)]),
        F::ToChars => {
            check_size(s.chars().count())?;
            Ok(s.chars().map(|c| Item::str(c.to_string())).collect())
        }
        F::Trim => str_item(s.trim().to_string()),
        F::Split => {
            let Some(sep) = required(ctx, 0)? else {
                return Ok(Vec::new());
            };
            let parts: Vec<&str> = if sep.is_empty() {
                vec![s]
            } else {
                s.split(sep.as_str()).collect()
            };
            check_size(parts.len())?;
            Ok(parts.into_iter().map(Item::str).collect())
        }
        F::Encode => {
            let Some(enc) = required(ctx, 0)? else {
                return Ok(Vec::new());
            };
            str_item(match enc.as_str() {
                "base64" => base64::engine::general_purpose::STANDARD.encode(s),
                "urlbase64" => base64::engine::general_purpose::URL_SAFE.encode(s),
                "hex" => s.bytes().map(|b| format!("{b:02x}")).collect(),
                _ => return Err(FhirPathError::InvalidArgument("unknown encoding".into())),
            })
        }
        F::Decode => {
            let Some(enc) = required(ctx, 0)? else {
                return Ok(Vec::new());
            };
            let bytes = match enc.as_str() {
                "base64" => base64::engine::general_purpose::STANDARD.decode(s).ok(),
                "urlbase64" => base64::engine::general_purpose::URL_SAFE.decode(s).ok(),
                "hex" => decode_hex(s),
                _ => return Err(FhirPathError::InvalidArgument("unknown encoding".into())),
            };
            match bytes.and_then(|b| String::from_utf8(b).ok()) {
                Some(text) => str_item(text),
                None => Ok(Vec::new()),
            }
        }
        F::Escape => {
            let Some(target) = required(ctx, 0)? else {
                return Ok(Vec::new());
            };
            str_item(match target.as_str() {
                "html" => escape_html(s),
                "json" => escape_json(s),
                _ => {
                    return Err(FhirPathError::InvalidArgument(
                        "unknown escape target".into(),
                    ))
                }
            })
        }
        F::Unescape => {
            let Some(target) = required(ctx, 0)? else {
                return Ok(Vec::new());
            };
            str_item(match target.as_str() {
                "html" => unescape_html(s),
                "json" => unescape_json(s),
                _ => {
                    return Err(FhirPathError::InvalidArgument(
                        "unknown escape target".into(),
                    ))
                }
            })
        }
        _ => Err(FhirPathError::UnknownFunction(func.name().into())),
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

fn unescape_html(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn escape_json(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

fn unescape_json(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                if let Some(c) = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    out.push(c);
                }
            }
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}
