//! FHIR date, dateTime and instant values as the inclusive millisecond range
//! their precision implies (`2024` → all of 2024; `2024-03-05T10:00` → that minute).

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// Lowest and highest representable instants, for open-ended periods.
pub const MIN_MS: i64 = i64::MIN / 2;
pub const MAX_MS: i64 = i64::MAX / 2;

fn ms(dt: OffsetDateTime) -> i64 {
    (dt.unix_timestamp_nanos() / 1_000_000) as i64
}

fn num<T: std::str::FromStr>(s: &str, len: usize) -> Option<T> {
    if s.len() == len && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

/// Parses a zone suffix (`Z`, `+05:30`, `-04:00`).
fn zone(s: &str) -> Option<UtcOffset> {
    if s == "Z" {
        return Some(UtcOffset::UTC);
    }
    let sign = match s.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (h, m) = s[1..].split_once(':')?;
    UtcOffset::from_hms(sign * num::<i8>(h, 2)?, sign * num::<i8>(m, 2)?, 0).ok()
}

/// The inclusive range `[low, high]` in ms covered by a FHIR date/dateTime/instant.
/// Values without a zone are taken as UTC.
pub fn range(text: &str) -> Option<(i64, i64)> {
    let (date_part, time_part) = match text.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (text, None),
    };
    let mut it = date_part.split('-');
    let year: i32 = num(it.next()?, 4)?;
    let month: Option<u8> = it
        .next()
        .map(|m| num(m, 2))
        .map_or(Some(None), |m| m.map(Some))?;
    let day: Option<u8> = it
        .next()
        .map(|d| num(d, 2))
        .map_or(Some(None), |d| d.map(Some))?;
    if it.next().is_some() {
        return None;
    }
    let utc = |d: Date, t: Time| PrimitiveDateTime::new(d, t).assume_utc();
    let Some(time_text) = time_part else {
        let start_month = Month::try_from(month.unwrap_or(1)).ok()?;
        let start = Date::from_calendar_date(year, start_month, day.unwrap_or(1)).ok()?;
        let end = match (month, day) {
            (None, _) => Date::from_calendar_date(year + 1, Month::January, 1).ok()?,
            (Some(_), None) => {
                let (y, m) = if start_month == Month::December {
                    (year + 1, Month::January)
                } else {
                    (year, start_month.next())
                };
                Date::from_calendar_date(y, m, 1).ok()?
            }
            (Some(_), Some(_)) => start.next_day()?,
        };
        return Some((
            ms(utc(start, Time::MIDNIGHT)),
            ms(utc(end, Time::MIDNIGHT)) - 1,
        ));
    };
    let (month, day) = (month?, day?);
    let date = Date::from_calendar_date(year, Month::try_from(month).ok()?, day).ok()?;
    // Split the clock from the zone.
    let zpos = time_text.find(['Z', '+', '-']).unwrap_or(time_text.len());
    let (clock, zone_text) = time_text.split_at(zpos);
    let offset = if zone_text.is_empty() {
        UtcOffset::UTC
    } else {
        zone(zone_text)?
    };
    let (hms, frac) = match clock.split_once('.') {
        Some((a, f)) => (a, Some(f)),
        None => (clock, None),
    };
    let parts: Vec<&str> = hms.split(':').collect();
    let hour: u8 = num(parts.first()?, 2)?;
    let minute: u8 = num(parts.get(1)?, 2)?;
    let second: Option<u8> = match parts.get(2) {
        Some(s) => Some(num(s, 2)?),
        None => None,
    };
    if parts.len() > 3 {
        return None;
    }
    let (milli, span_ms): (u16, i64) = match (second, frac) {
        (None, Some(_)) => return None,
        (None, None) => (0, 60_000),
        (Some(_), None) => (0, 1_000),
        (Some(_), Some(f)) => {
            if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let digits = &f[..f.len().min(3)];
            let padded = format!("{digits:0<3}");
            (
                padded.parse().ok()?,
                10i64.pow(3 - digits.len() as u32).max(1),
            )
        }
    };
    let t = Time::from_hms_milli(hour, minute, second.unwrap_or(0), milli).ok()?;
    let start = PrimitiveDateTime::new(date, t).assume_offset(offset);
    let low = ms(start);
    Some((low, low + span_ms - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_ranges() {
        let (lo, hi) = range("2024").unwrap();
        assert_eq!(hi - lo + 1, 366 * 86_400_000);
        let (lo, hi) = range("2023-02").unwrap();
        assert_eq!(hi - lo + 1, 28 * 86_400_000);
        let (lo, hi) = range("2023-12").unwrap();
        assert_eq!(hi - lo + 1, 31 * 86_400_000);
        let (lo, hi) = range("2023-03-05").unwrap();
        assert_eq!(hi - lo + 1, 86_400_000);
        let (lo, hi) = range("2023-03-05T10:15").unwrap();
        assert_eq!(hi - lo + 1, 60_000);
        let (lo, hi) = range("2023-03-05T10:15:30Z").unwrap();
        assert_eq!(hi - lo + 1, 1_000);
        let (lo2, _) = range("2023-03-05T05:15:30-05:00").unwrap();
        assert_eq!(lo, lo2);
        let (lo, hi) = range("2023-03-05T10:15:30.5Z").unwrap();
        assert_eq!(hi - lo + 1, 100);
        assert_eq!(
            range("2023-03-05T10:15:30.123Z").map(|(l, h)| h - l),
            Some(0)
        );
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "20",
            "2023-13",
            "2023-02-30",
            "2023-1-1",
            "yesterday",
            "2023-03-05T25:00",
            "2023-03-05T10",
        ] {
            assert!(range(bad).is_none(), "{bad}");
        }
    }
}
