//! FHIR R4 primitive formats (the `regex` of each primitive type's
//! StructureDefinition, plus the calendar and range checks a regex cannot
//! make), hand-written so that checking a value allocates nothing.

/// Largest string the spec allows (1 MiB of characters).
const MAX_STRING_CHARS: usize = 1024 * 1024;

/// The R4 primitive types whose value is a JSON string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringKind {
    Date,
    DateTime,
    Instant,
    Time,
    Id,
    /// `uri`, `url`, `canonical`: no whitespace.
    Uri,
    Oid,
    Uuid,
    Code,
    Base64Binary,
    /// `string`, `markdown`.
    Text,
}

/// The R4 primitive types whose value is a JSON number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberKind {
    Integer,
    PositiveInt,
    UnsignedInt,
    Decimal,
}

/// The format a primitive type code (`date`, `positiveInt`) has in JSON, when checked here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Str(StringKind),
    Num(NumberKind),
    /// `boolean`, `xhtml`: left to the structural check.
    Other,
}

impl Kind {
    pub fn of(type_code: &str) -> Kind {
        use StringKind as S;
        match type_code {
            "date" => Kind::Str(S::Date),
            "dateTime" => Kind::Str(S::DateTime),
            "instant" => Kind::Str(S::Instant),
            "time" => Kind::Str(S::Time),
            "id" => Kind::Str(S::Id),
            "uri" | "url" | "canonical" => Kind::Str(S::Uri),
            "oid" => Kind::Str(S::Oid),
            "uuid" => Kind::Str(S::Uuid),
            "code" => Kind::Str(S::Code),
            "base64Binary" => Kind::Str(S::Base64Binary),
            "string" | "markdown" => Kind::Str(S::Text),
            "integer" => Kind::Num(NumberKind::Integer),
            "positiveInt" => Kind::Num(NumberKind::PositiveInt),
            "unsignedInt" => Kind::Num(NumberKind::UnsignedInt),
            "decimal" => Kind::Num(NumberKind::Decimal),
            _ => Kind::Other,
        }
    }
}

/// Checks a string value; the error says what is wrong (no value quoted).
pub fn check_str(kind: StringKind, s: &str) -> Result<(), &'static str> {
    match kind {
        StringKind::Date => date(s),
        StringKind::DateTime => date_time(s),
        StringKind::Instant => instant(s),
        StringKind::Time => time(s),
        StringKind::Id => id(s),
        StringKind::Uri => uri(s),
        StringKind::Oid => oid(s),
        StringKind::Uuid => uuid(s),
        StringKind::Code => code(s),
        StringKind::Base64Binary => base64(s),
        StringKind::Text => text(s),
    }
}

/// Checks a JSON number against an integer kind's range (decimal: any number).
pub fn check_number(kind: NumberKind, n: &serde_json::Number) -> Result<(), &'static str> {
    let (min, msg) = match kind {
        NumberKind::Decimal => return Ok(()),
        NumberKind::Integer => (
            i64::from(i32::MIN),
            "integer must be a whole number in the 32-bit range",
        ),
        NumberKind::PositiveInt => (1, "positiveInt must be a whole number from 1 to 2147483647"),
        NumberKind::UnsignedInt => (0, "unsignedInt must be a whole number from 0 to 2147483647"),
    };
    match n.as_i64() {
        Some(v) if v >= min && v <= i64::from(i32::MAX) => Ok(()),
        _ => Err(msg),
    }
}

const DATE_MSG: &str = "date must be YYYY, YYYY-MM or YYYY-MM-DD with a real month and day";
const DATE_TIME_MSG: &str = "dateTime must be YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss(.sss) with a time zone (Z or +hh:mm), with real calendar values";
const INSTANT_MSG: &str =
    "instant must be YYYY-MM-DDThh:mm:ss(.sss) with a time zone (Z or +hh:mm), with real calendar values";
const TIME_MSG: &str = "time must be hh:mm:ss(.sss) with hours 00-23";

/// `n` ASCII digits at the start of `b` as a number.
fn digits(b: &[u8], n: usize) -> Option<u32> {
    let part = b.get(..n)?;
    let mut v = 0u32;
    for &c in part {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(c - b'0');
    }
    Some(v)
}

fn is_leap(year: u32) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Parses a (partial) date at the start of `b`; returns its length, or `None`.
/// `full` demands the day.
fn date_prefix(b: &[u8], full: bool) -> Option<usize> {
    let year = digits(b, 4)?;
    if year == 0 {
        return None;
    }
    if b.get(4) != Some(&b'-') {
        return (!full).then_some(4);
    }
    let month = digits(b.get(5..)?, 2)?;
    if !(1..=12).contains(&month) {
        return None;
    }
    if b.get(7) != Some(&b'-') {
        return (!full).then_some(7);
    }
    let day = digits(b.get(8..)?, 2)?;
    if day == 0 || day > days_in_month(year, month) {
        return None;
    }
    Some(10)
}

/// `hh:mm:ss(.fff)` at the start of `b`; returns its length.
fn time_prefix(b: &[u8]) -> Option<usize> {
    let h = digits(b, 2)?;
    let m = digits(b.get(3..)?, 2)?;
    let s = digits(b.get(6..)?, 2)?;
    if b.get(2) != Some(&b':') || b.get(5) != Some(&b':') || h > 23 || m > 59 || s > 60 {
        return None;
    }
    let mut len = 8;
    if b.get(8) == Some(&b'.') {
        let frac = b[9..].iter().take_while(|c| c.is_ascii_digit()).count();
        if frac == 0 {
            return None;
        }
        len = 9 + frac;
    }
    Some(len)
}

/// `Z` or `+hh:mm` / `-hh:mm` (up to 14:00), exactly.
fn zone(b: &[u8]) -> bool {
    match b {
        [b'Z'] => true,
        [b'+' | b'-', rest @ ..] if rest.len() == 5 && rest[2] == b':' => {
            match (digits(rest, 2), digits(&rest[3..], 2)) {
                (Some(h), Some(m)) => (h <= 13 && m <= 59) || (h == 14 && m == 0),
                _ => false,
            }
        }
        _ => false,
    }
}

fn date(s: &str) -> Result<(), &'static str> {
    match date_prefix(s.as_bytes(), false) {
        Some(n) if n == s.len() => Ok(()),
        _ => Err(DATE_MSG),
    }
}

fn date_time(s: &str) -> Result<(), &'static str> {
    let b = s.as_bytes();
    let ok = match date_prefix(b, false) {
        Some(n) if n == b.len() => true,
        Some(10) if b.get(10) == Some(&b'T') => {
            matches!(time_prefix(&b[11..]), Some(t) if zone(&b[11 + t..]))
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(DATE_TIME_MSG)
    }
}

fn instant(s: &str) -> Result<(), &'static str> {
    let b = s.as_bytes();
    let ok = date_prefix(b, true) == Some(10)
        && b.get(10) == Some(&b'T')
        && matches!(time_prefix(&b[11..]), Some(t) if zone(&b[11 + t..]));
    if ok {
        Ok(())
    } else {
        Err(INSTANT_MSG)
    }
}

fn time(s: &str) -> Result<(), &'static str> {
    match time_prefix(s.as_bytes()) {
        Some(n) if n == s.len() => Ok(()),
        _ => Err(TIME_MSG),
    }
}

fn id(s: &str) -> Result<(), &'static str> {
    if (1..=64).contains(&s.len())
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.')
    {
        Ok(())
    } else {
        Err("id must be 1-64 characters of A-Z a-z 0-9 - .")
    }
}

fn uri(s: &str) -> Result<(), &'static str> {
    if s.chars().any(char::is_whitespace) {
        Err("a uri/url/canonical cannot contain whitespace")
    } else {
        Ok(())
    }
}

fn oid(s: &str) -> Result<(), &'static str> {
    const MSG: &str = "oid must be urn:oid: followed by a dotted number starting 0, 1 or 2";
    let rest = s.strip_prefix("urn:oid:").ok_or(MSG)?;
    let mut arcs = rest.split('.');
    if !matches!(arcs.next(), Some("0" | "1" | "2")) {
        return Err(MSG);
    }
    let mut count = 0;
    for arc in arcs {
        count += 1;
        let b = arc.as_bytes();
        if b.is_empty() || !b.iter().all(u8::is_ascii_digit) || (b.len() > 1 && b[0] == b'0') {
            return Err(MSG);
        }
    }
    if count == 0 {
        return Err(MSG);
    }
    Ok(())
}

fn uuid(s: &str) -> Result<(), &'static str> {
    const MSG: &str = "uuid must be urn:uuid: followed by a lower-case 8-4-4-4-12 hex UUID";
    let rest = s.strip_prefix("urn:uuid:").ok_or(MSG)?.as_bytes();
    let ok = rest.len() == 36
        && rest.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(&c),
        });
    if ok {
        Ok(())
    } else {
        Err(MSG)
    }
}

/// `[^\s]+(\s[^\s]+)*`: no leading, trailing or doubled whitespace.
fn code(s: &str) -> Result<(), &'static str> {
    let mut prev_space = true;
    for c in s.chars() {
        let space = c.is_whitespace();
        if space && prev_space {
            return Err("a code cannot start with whitespace or hold two in a row");
        }
        prev_space = space;
    }
    if prev_space {
        return Err("a code cannot be empty or end with whitespace");
    }
    Ok(())
}

/// Base64 characters in groups of four (whitespace between them is allowed
/// in R4), `=` padding only at the end.
fn base64(s: &str) -> Result<(), &'static str> {
    const MSG: &str = "base64Binary must be base64 (A-Z a-z 0-9 + / and = padding)";
    let mut n = 0usize;
    let mut pad = 0usize;
    for c in s.bytes() {
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => continue,
            b'=' => pad += 1,
            c if pad == 0 && (c.is_ascii_alphanumeric() || c == b'+' || c == b'/') => {}
            _ => return Err(MSG),
        }
        n += 1;
    }
    if !n.is_multiple_of(4) || pad > 2 {
        return Err(MSG);
    }
    Ok(())
}

/// `string`/`markdown`: no control characters but tab, CR and LF, at most 1 MiB.
fn text(s: &str) -> Result<(), &'static str> {
    if s.len() > MAX_STRING_CHARS && s.chars().count() > MAX_STRING_CHARS {
        return Err("a string cannot be longer than 1,048,576 characters");
    }
    if s.bytes()
        .any(|c| c < 0x20 && c != b'\t' && c != b'\r' && c != b'\n')
    {
        return Err("a string cannot contain control characters other than tab, CR and LF");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(kind: StringKind, values: &[&str]) {
        for v in values {
            assert!(check_str(kind, v).is_ok(), "{kind:?} should accept {v:?}");
        }
    }
    fn bad(kind: StringKind, values: &[&str]) {
        for v in values {
            assert!(check_str(kind, v).is_err(), "{kind:?} should refuse {v:?}");
        }
    }

    #[test]
    fn dates() {
        ok(
            StringKind::Date,
            &["2018", "1973-06", "1905-08-23", "2000-02-29", "0001-01-01"],
        );
        bad(
            StringKind::Date,
            &[
                "1990-13-45",
                "not-a-date",
                "0000",
                "1990-00",
                "1990-02-30",
                "1900-02-29",
                "2019-04-31",
                "18",
                "1990-1-1",
                "1990-01-01T10:00:00Z",
                "1990-01-01 ",
                "１９９０",
            ],
        );
    }

    #[test]
    fn date_times() {
        ok(
            StringKind::DateTime,
            &[
                "2018",
                "1973-06",
                "1905-08-23",
                "2015-02-07T13:28:17-05:00",
                "2017-01-01T00:00:00.000Z",
                "2017-01-01T00:00:00Z",
                "2016-12-31T23:59:60Z",
                "2017-01-01T00:00:00+14:00",
                "2024-02-29T12:00:00.123456+05:30",
            ],
        );
        bad(
            StringKind::DateTime,
            &[
                "yesterday",
                "2015-02-07T13:28:17",
                "2015-02-07T13:28Z",
                "2015-02-07T24:00:00Z",
                "2015-02-07T13:60:00Z",
                "2015-02-07T13:28:17+15:00",
                "2015-02-07T13:28:17+14:30",
                "2015-02-07T13:28:17.Z",
                "2015-02-30T13:28:17Z",
                "2015-02-07T",
                "2015-02-07T13:28:17+0500",
                "2015-02-07t13:28:17Z",
                "2015-02-07T13:28:17z",
            ],
        );
    }

    #[test]
    fn instants() {
        ok(
            StringKind::Instant,
            &["2015-02-07T13:28:17.239+02:00", "2017-01-01T00:00:00Z"],
        );
        bad(
            StringKind::Instant,
            &[
                "2015-02-07T13:28:17.239",
                "2015-02-07",
                "2015",
                "2015-02-07T13:28:17.239+2:00",
            ],
        );
    }

    #[test]
    fn times() {
        ok(StringKind::Time, &["00:00:00", "23:59:59", "12:30:00.5"]);
        bad(
            StringKind::Time,
            &["24:00:00", "12:30", "12:60:00", "12:30:00Z", "1:30:00"],
        );
    }

    #[test]
    fn ids_uris_codes() {
        ok(StringKind::Id, &["a", "A-1.b", &"x".repeat(64)]);
        bad(StringKind::Id, &["", "a b", "a_b", &"x".repeat(65), "é"]);
        ok(
            StringKind::Uri,
            &["http://hl7.org/fhir", "urn:oid:1.2", "#p1", "a"],
        );
        bad(StringKind::Uri, &["http://x y", " http://x", "http://x\n"]);
        ok(StringKind::Code, &["male", "in progress", "a b c"]);
        bad(
            StringKind::Code,
            &[" male", "male ", "in  progress", "", "a\t b"],
        );
    }

    #[test]
    fn oids_uuids() {
        ok(
            StringKind::Oid,
            &["urn:oid:1.2.3.4.5", "urn:oid:2.16.840.1.113883"],
        );
        bad(
            StringKind::Oid,
            &[
                "1.2.3",
                "urn:oid:3.1",
                "urn:oid:1",
                "urn:oid:1.02",
                "urn:oid:1..2",
            ],
        );
        ok(
            StringKind::Uuid,
            &["urn:uuid:c757873d-ec9a-4326-a141-556f43239520"],
        );
        bad(
            StringKind::Uuid,
            &[
                "c757873d-ec9a-4326-a141-556f43239520",
                "urn:uuid:C757873D-EC9A-4326-A141-556F43239520",
                "urn:uuid:c757873d-ec9a-4326-a141-556f4323952",
            ],
        );
    }

    #[test]
    fn base64_and_text() {
        ok(
            StringKind::Base64Binary,
            &["aGVsbG8=", "aGVsbG8h", "aGVs bG8h", "aGk="],
        );
        bad(
            StringKind::Base64Binary,
            &["aGVsbG8", "aGV=bG8h", "a===", "aGVsbG8*", "aGk=aGk="],
        );
        ok(
            StringKind::Text,
            &["hello", "tab\there", "line\r\nbreak", "ünïcödé"],
        );
        bad(StringKind::Text, &["bell\u{7}", "nul\u{0}"]);
    }

    #[test]
    fn integers() {
        let n = |v: serde_json::Value| match v {
            serde_json::Value::Number(n) => n,
            _ => unreachable!(),
        };
        use serde_json::json;
        assert!(check_number(NumberKind::Integer, &n(json!(-2147483648i64))).is_ok());
        assert!(check_number(NumberKind::Integer, &n(json!(2147483648i64))).is_err());
        assert!(check_number(NumberKind::Integer, &n(json!(1.5))).is_err());
        assert!(check_number(NumberKind::PositiveInt, &n(json!(0))).is_err());
        assert!(check_number(NumberKind::PositiveInt, &n(json!(1))).is_ok());
        assert!(check_number(NumberKind::UnsignedInt, &n(json!(0))).is_ok());
        assert!(check_number(NumberKind::UnsignedInt, &n(json!(-1))).is_err());
        assert!(check_number(NumberKind::Decimal, &n(json!(1.5e300))).is_ok());
    }
}
