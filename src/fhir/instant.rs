//! FHIR instants as milliseconds since the Unix epoch: the clock, rendering and parsing.

use time::format_description::well_known::{Rfc2822, Rfc3339};
use time::OffsetDateTime;

/// Milliseconds since the Unix epoch, UTC.
pub type Millis = i64;

/// The current time, truncated to milliseconds.
pub fn now_ms() -> Millis {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as Millis
}

fn to_datetime(ms: Millis) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Renders `ms` as a FHIR instant with millisecond precision (`2026-11-22T12:00:00.123Z`).
pub fn format_instant(ms: Millis) -> String {
    let dt = to_datetime(ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        dt.year(),
        u8::from(dt.month()),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        dt.millisecond()
    )
}

/// Renders `ms` as an HTTP date for `Last-Modified`.
pub fn format_http_date(ms: Millis) -> String {
    to_datetime(ms)
        .format(&Rfc2822)
        .map(|s| s.replace("+0000", "GMT"))
        .unwrap_or_default()
}

/// Parses a FHIR instant (full date and time with seconds and a zone), as used
/// by `_since`. Returns `None` for anything else.
pub fn parse_instant(text: &str) -> Option<Millis> {
    let dt = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    Some((dt.unix_timestamp_nanos() / 1_000_000) as Millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let ms = 1_700_000_000_123;
        let text = format_instant(ms);
        assert_eq!(text, "2023-11-14T22:13:20.123Z");
        assert_eq!(parse_instant(&text), Some(ms));
        assert_eq!(parse_instant("2023-11-14T17:13:20.123-05:00"), Some(ms));
        assert_eq!(parse_instant("2023-11-14"), None);
        assert_eq!(format_http_date(ms), "Tue, 14 Nov 2023 22:13:20 GMT");
    }
}
