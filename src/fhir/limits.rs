//! Nesting limits, checked before any recursive parser sees a document.
//!
//! fhirbolt, serde and our own tree walkers recurse once per level of a
//! document; a stack overflow is not a panic, it aborts the process. So
//! every document a client sends is measured first by a scan that does not
//! recurse (and is linear in its length): JSON bytes ([`scan_json`]), XML
//! bytes ([`xml_depth`]) and parsed values ([`value_depth`]). A document
//! over the limit is refused with 400 (`too-costly`).
//!
//! The limits are far above real FHIR (a resource in a Bundle in a Bundle,
//! with nested Questionnaire items and extensions, stays under 30 JSON
//! levels). An XML element with children becomes a JSON object and a
//! repeated one an array too, so XML within [`MAX_XML_DEPTH`] is JSON
//! within [`MAX_JSON_DEPTH`].

use std::collections::HashSet;

use serde_json::Value;

/// Deepest JSON accepted: objects and arrays, the outermost at depth 1.
pub const MAX_JSON_DEPTH: usize = 100;
/// Deepest XML accepted: elements, the root element at depth 1.
pub const MAX_XML_DEPTH: usize = MAX_JSON_DEPTH / 2;

/// Why a document was refused before parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Nested deeper than the limit (which it names).
    TooDeep(usize),
    /// An object names the same key twice (which it names).
    DuplicateKey(String),
}

impl Refusal {
    /// The OperationOutcome issue code.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::TooDeep(_) => "too-costly",
            Refusal::DuplicateKey(_) => "structure",
        }
    }

    pub fn message(&self, what: &str) -> String {
        match self {
            Refusal::TooDeep(limit) => {
                format!("{what} is nested more than {limit} levels deep")
            }
            Refusal::DuplicateKey(k) => format!("{what} has the key '{k}' twice in one object"),
        }
    }
}

/// The nesting depth of JSON text, without parsing it: `Err` as soon as it
/// passes `max`. Brackets inside strings do not count; malformed text is
/// measured as well as it can be (the parser refuses it afterwards).
pub fn json_depth(bytes: &[u8], max: usize) -> Result<usize, Refusal> {
    let mut depth = 0usize;
    let mut deepest = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return Err(Refusal::TooDeep(max));
                }
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(deepest)
}

/// The first key that some object of JSON text names twice, if any. Keys
/// are compared after unescaping (`"a"` and `"\u0061"` are the same key).
/// Linear: each key is hashed once into the set of its own object.
pub fn duplicate_key(bytes: &[u8]) -> Option<String> {
    enum Frame {
        Object {
            keys: HashSet<String>,
            expect_key: bool,
        },
        Array,
    }
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                // Find the closing quote.
                let start = i;
                let mut j = i + 1;
                let mut has_escape = false;
                while j < bytes.len() && bytes[j] != b'"' {
                    if bytes[j] == b'\\' {
                        has_escape = true;
                        j += 1;
                    }
                    j += 1;
                }
                let end = j.min(bytes.len().saturating_sub(1));
                if let Some(Frame::Object { keys, expect_key }) = stack.last_mut() {
                    if *expect_key {
                        *expect_key = false;
                        let raw = bytes.get(start..=end).unwrap_or_default();
                        let key = if has_escape {
                            serde_json::from_slice::<String>(raw).ok()
                        } else {
                            raw.get(1..raw.len().saturating_sub(1))
                                .and_then(|k| std::str::from_utf8(k).ok())
                                .map(str::to_string)
                        };
                        if let Some(key) = key {
                            if !keys.insert(key.clone()) {
                                return Some(key);
                            }
                        }
                    }
                }
                i = j + 1;
                continue;
            }
            b'{' => stack.push(Frame::Object {
                keys: HashSet::new(),
                expect_key: true,
            }),
            b'[' => stack.push(Frame::Array),
            b'}' | b']' => {
                stack.pop();
            }
            b',' => {
                if let Some(Frame::Object { expect_key, .. }) = stack.last_mut() {
                    *expect_key = true;
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Checks JSON text a client sent before it is parsed: depth within
/// [`MAX_JSON_DEPTH`]. (Duplicate keys are looked for once it parsed, by
/// [`duplicate_key`], so that malformed text is reported as such.)
pub fn scan_json(bytes: &[u8]) -> Result<(), Refusal> {
    json_depth(bytes, MAX_JSON_DEPTH).map(|_| ())
}

/// Parses JSON text a client sent: depth checked first, then parsed, then
/// refused if an object repeats a key (serde_json would keep the last).
/// `Err(Ok(refusal))` for a limit, `Err(Err(e))` for malformed JSON.
pub fn parse_json(bytes: &[u8]) -> Result<Value, Result<Refusal, serde_json::Error>> {
    scan_json(bytes).map_err(Ok)?;
    let value: Value = serde_json::from_slice(bytes).map_err(Err)?;
    if let Some(key) = duplicate_key(bytes) {
        return Err(Ok(Refusal::DuplicateKey(key)));
    }
    Ok(value)
}

/// The element depth of XML text, without parsing it: `Err` as soon as it
/// passes `max`. Comments, CDATA sections, processing instructions and
/// declarations do not count, nor do self-closing elements beyond their
/// own level; `>` inside quoted attribute values is skipped.
pub fn xml_depth(bytes: &[u8], max: usize) -> Result<usize, Refusal> {
    fn find(bytes: &[u8], from: usize, needle: &[u8]) -> usize {
        bytes
            .get(from..)
            .and_then(|rest| rest.windows(needle.len()).position(|w| w == needle))
            .map_or(bytes.len(), |p| from + p + needle.len())
    }
    let mut depth = 0usize;
    let mut deepest = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'<' {
            i += 1;
            continue;
        }
        let rest = &bytes[i..];
        if rest.starts_with(b"<!--") {
            i = find(bytes, i + 4, b"-->");
        } else if rest.starts_with(b"<![CDATA[") {
            i = find(bytes, i + 9, b"]]>");
        } else if rest.starts_with(b"<?") {
            i = find(bytes, i + 2, b"?>");
        } else if rest.starts_with(b"<!") {
            // DOCTYPE and friends, with an internal subset in brackets.
            let mut brackets = 0usize;
            let mut j = i + 2;
            while j < bytes.len() {
                match bytes[j] {
                    b'[' => brackets += 1,
                    b']' => brackets = brackets.saturating_sub(1),
                    b'>' if brackets == 0 => break,
                    _ => {}
                }
                j += 1;
            }
            i = j + 1;
        } else {
            let closing = rest.get(1) == Some(&b'/');
            let mut j = i + 1;
            let mut quote: Option<u8> = None;
            while j < bytes.len() {
                let b = bytes[j];
                match quote {
                    Some(q) if b == q => quote = None,
                    Some(_) => {}
                    None if b == b'"' || b == b'\'' => quote = Some(b),
                    None if b == b'>' => break,
                    None => {}
                }
                j += 1;
            }
            let self_closing = j > i + 1 && bytes.get(j - 1) == Some(&b'/');
            if closing {
                depth = depth.saturating_sub(1);
            } else {
                if depth + 1 > max {
                    return Err(Refusal::TooDeep(max));
                }
                deepest = deepest.max(depth + 1);
                if !self_closing {
                    depth += 1;
                }
            }
            i = j + 1;
        }
    }
    Ok(deepest)
}

/// The depth of a parsed value (a scalar is 0, `{}` 1), measured without
/// recursion; stops counting past `max` (and answers `max + 1`).
pub fn value_depth(value: &Value, max: usize) -> usize {
    let mut deepest = 0;
    let mut stack: Vec<(&Value, usize)> = vec![(value, 0)];
    while let Some((v, d)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Object(m) => Box::new(m.values()),
            Value::Array(a) => Box::new(a.iter()),
            _ => continue,
        };
        let d = d + 1;
        if d > max {
            return max + 1;
        }
        deepest = deepest.max(d);
        stack.extend(children.map(|c| (c, d)));
    }
    deepest
}

/// Checks a parsed value against [`MAX_JSON_DEPTH`].
pub fn check_value(value: &Value) -> Result<(), Refusal> {
    if value_depth(value, MAX_JSON_DEPTH) > MAX_JSON_DEPTH {
        Err(Refusal::TooDeep(MAX_JSON_DEPTH))
    } else {
        Ok(())
    }
}

/// Roughly how many bytes `value` takes as JSON, counted without recursion
/// and given up past `cap` (answers `cap + 1`).
pub fn value_weight(value: &Value, cap: usize) -> usize {
    let mut total = 0usize;
    let mut stack: Vec<&Value> = vec![value];
    while let Some(v) = stack.pop() {
        total += match v {
            Value::Object(m) => {
                stack.extend(m.values());
                2 + m.keys().map(|k| k.len() + 4).sum::<usize>()
            }
            Value::Array(a) => {
                stack.extend(a.iter());
                2 + a.len()
            }
            Value::String(s) => s.len() + 2,
            Value::Number(n) => n.to_string().len(),
            Value::Bool(_) | Value::Null => 5,
        };
        if total > cap {
            return cap + 1;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested_json(levels: usize) -> String {
        format!("{}1{}", "[".repeat(levels), "]".repeat(levels))
    }

    fn nested_xml(levels: usize) -> String {
        format!(
            "<?xml version='1.0'?><!-- <a><b> --><r>{}<x a='>' b=\"<y>\"/><![CDATA[<c><d>]]>{}</r>",
            "<e>".repeat(levels - 1),
            "</e>".repeat(levels - 1)
        )
    }

    #[test]
    fn json_depth_at_the_limit_passes_and_one_more_is_refused() {
        assert_eq!(
            json_depth(nested_json(MAX_JSON_DEPTH).as_bytes(), MAX_JSON_DEPTH),
            Ok(MAX_JSON_DEPTH)
        );
        assert_eq!(
            scan_json(nested_json(MAX_JSON_DEPTH + 1).as_bytes()),
            Err(Refusal::TooDeep(MAX_JSON_DEPTH))
        );
        // Brackets in strings (escaped quotes too) do not count.
        let quoted = format!(r#"{{"a":"\"{}"}}"#, "[".repeat(500));
        assert_eq!(json_depth(quoted.as_bytes(), MAX_JSON_DEPTH), Ok(1));
        // A million levels are refused without recursion.
        assert!(scan_json(nested_json(1_000_000).as_bytes()).is_err());
    }

    #[test]
    fn parse_json_refuses_duplicates_and_depth() {
        assert!(parse_json(br#"{"a":1,"b":{"a":2},"c":[{"a":1},{"a":2}]}"#).is_ok());
        assert_eq!(
            parse_json(br#"{"a":1,"b":2,"a":3}"#).err().map(|e| e.ok()),
            Some(Some(Refusal::DuplicateKey("a".into())))
        );
        assert_eq!(
            parse_json(br#"{"x":{"a\u0062":1,"ab":2}}"#)
                .err()
                .map(|e| e.ok()),
            Some(Some(Refusal::DuplicateKey("ab".into())))
        );
        assert!(matches!(
            parse_json(nested_json(MAX_JSON_DEPTH + 1).as_bytes()),
            Err(Ok(Refusal::TooDeep(_)))
        ));
        assert!(parse_json(nested_json(MAX_JSON_DEPTH).as_bytes()).is_ok());
        assert!(matches!(parse_json(b"{\"a\":"), Err(Err(_))));
        // Keys of values in arrays and strings that look like keys.
        assert!(parse_json(br#"[{"a":"a"},{"a":"a"}]"#).is_ok());
        // Truncated text ends the scan without a panic.
        for t in [&b"{\"a\":1,\"a"[..], b"\"\\", b"{\"", b"{\"\\u12", b"}]{,"] {
            let _ = duplicate_key(t);
        }
    }

    #[test]
    fn xml_depth_at_the_limit_passes_and_one_more_is_refused() {
        // The self-closing <x/> sits one level below the deepest <e>.
        let at = nested_xml(MAX_XML_DEPTH - 1);
        assert_eq!(xml_depth(at.as_bytes(), MAX_XML_DEPTH), Ok(MAX_XML_DEPTH));
        let over = nested_xml(MAX_XML_DEPTH);
        assert_eq!(
            xml_depth(over.as_bytes(), MAX_XML_DEPTH),
            Err(Refusal::TooDeep(MAX_XML_DEPTH))
        );
        let deep = "<a>".repeat(100_000);
        assert!(xml_depth(deep.as_bytes(), MAX_XML_DEPTH).is_err());
        // Truncated constructs end the scan instead of looping.
        for t in [
            "<",
            "<!--",
            "<![CDATA[",
            "<?",
            "<!DOCTYPE [",
            "<a b='",
            "</",
        ] {
            assert!(xml_depth(t.as_bytes(), MAX_XML_DEPTH).is_ok(), "{t}");
        }
    }

    #[test]
    fn value_depth_and_weight() {
        let at: Value = serde_json::from_str(&nested_json(MAX_JSON_DEPTH)).expect("json");
        assert_eq!(value_depth(&at, MAX_JSON_DEPTH), MAX_JSON_DEPTH);
        assert!(check_value(&at).is_ok());
        let mut over = at;
        over = Value::Array(vec![over]);
        assert!(check_value(&over).is_err());
        assert_eq!(value_depth(&Value::Null, 5), 0);
        let v = serde_json::json!({"a": "bcd", "e": [1, 2]});
        assert!(value_weight(&v, 1000) < 1000);
        assert_eq!(value_weight(&v, 3), 4);
    }
}
