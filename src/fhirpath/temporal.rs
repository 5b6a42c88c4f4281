//! Partial dates, dateTimes and times with precision: parsing (FHIR values
//! and `@` literals), formatting, comparison with precision rules, and
//! calendar arithmetic.

use std::cmp::Ordering;

/// How much of a temporal value is known. Seconds and milliseconds compare as
/// one precision, as the specification asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Precision {
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    Millisecond,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TemporalKind {
    Date,
    DateTime,
    Time,
}

/// A date, dateTime or time known to `precision`. Fields below the precision
/// are zero (month and day are one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Temporal {
    pub(crate) kind: TemporalKind,
    pub(crate) year: i32,
    pub(crate) month: u8,
    pub(crate) day: u8,
    pub(crate) hour: u8,
    pub(crate) minute: u8,
    pub(crate) second: u8,
    pub(crate) millis: u16,
    pub(crate) precision: Precision,
    /// Offset from UTC in minutes, when the value has a timezone.
    pub(crate) tz_minutes: Option<i16>,
}

/// Calendar units that temporal arithmetic understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CalendarUnit {
    Year,
    Month,
    Week,
    Day,
    Hour,
    Minute,
    Second,
    Millisecond,
}

impl CalendarUnit {
    /// Calendar keywords (`year`, `days`…) and the UCUM codes for definite
    /// durations (`a`, `mo`, `wk`, `d`, `h`, `min`, `s`, `ms`).
    pub(crate) fn parse(unit: &str) -> Option<CalendarUnit> {
        Some(match unit {
            "year" | "years" | "a" => CalendarUnit::Year,
            "month" | "months" | "mo" => CalendarUnit::Month,
            "week" | "weeks" | "wk" => CalendarUnit::Week,
            "day" | "days" | "d" => CalendarUnit::Day,
            "hour" | "hours" | "h" => CalendarUnit::Hour,
            "minute" | "minutes" | "min" => CalendarUnit::Minute,
            "second" | "seconds" | "s" => CalendarUnit::Second,
            "millisecond" | "milliseconds" | "ms" => CalendarUnit::Millisecond,
            _ => return None,
        })
    }
}

struct Cursor<'s> {
    bytes: &'s [u8],
    pos: usize,
}

impl<'s> Cursor<'s> {
    fn digits(&mut self, n: usize) -> Option<u32> {
        let end = self.pos.checked_add(n)?;
        let slice = self.bytes.get(self.pos..end)?;
        if !slice.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.pos = end;
        Some(
            slice
                .iter()
                .fold(0u32, |acc, b| acc * 10 + u32::from(b - b'0')),
        )
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.bytes.get(self.pos) == Some(&c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }
    fn done(&self) -> bool {
        self.pos == self.bytes.len()
    }
}

pub(crate) fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

pub(crate) fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ => {
            if is_leap(year) {
                29
            } else {
                28
            }
        }
    }
}

/// Days since 1970-01-01 (proleptic Gregorian).
fn days_from_civil(y: i32, m: u8, d: u8) -> i64 {
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i32, u8, u8) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let y = if m <= 2 { y + 1 } else { y };
    (i32::try_from(y).unwrap_or(i32::MAX), m, d)
}

impl Temporal {
    fn empty(kind: TemporalKind, precision: Precision) -> Temporal {
        Temporal {
            kind,
            year: 0,
            month: 1,
            day: 1,
            hour: 0,
            minute: 0,
            second: 0,
            millis: 0,
            precision,
            tz_minutes: None,
        }
    }

    /// `YYYY[-MM[-DD]]`.
    pub(crate) fn parse_date(text: &str) -> Option<Temporal> {
        let mut c = Cursor {
            bytes: text.as_bytes(),
            pos: 0,
        };
        let t = parse_date_part(&mut c, TemporalKind::Date)?;
        c.done().then_some(t)
    }

    /// `YYYY[-MM[-DD]][T[hh[:mm[:ss[.fff]]]]][Z|±hh:mm]`.
    pub(crate) fn parse_datetime(text: &str) -> Option<Temporal> {
        let mut c = Cursor {
            bytes: text.as_bytes(),
            pos: 0,
        };
        let mut t = parse_date_part(&mut c, TemporalKind::DateTime)?;
        if c.eat(b'T') {
            if t.precision != Precision::Day && !c.done() {
                return None;
            }
            if c.peek().is_some_and(|b| b.is_ascii_digit()) {
                parse_time_part(&mut c, &mut t)?;
                parse_timezone(&mut c, &mut t)?;
            }
        }
        c.done().then_some(t)
    }

    /// `hh[:mm[:ss[.fff]]]` (no timezone).
    pub(crate) fn parse_time(text: &str) -> Option<Temporal> {
        let mut c = Cursor {
            bytes: text.as_bytes(),
            pos: 0,
        };
        let mut t = Temporal::empty(TemporalKind::Time, Precision::Hour);
        parse_time_part(&mut c, &mut t)?;
        c.done().then_some(t)
    }

    /// Comparison granularity: seconds and milliseconds are one level.
    fn level(&self) -> u8 {
        match self.precision {
            Precision::Year => 0,
            Precision::Month => 1,
            Precision::Day => 2,
            Precision::Hour => 3,
            Precision::Minute => 4,
            Precision::Second | Precision::Millisecond => 5,
        }
    }

    fn has_time(&self) -> bool {
        self.kind != TemporalKind::Date && self.precision >= Precision::Hour
    }

    /// The same instant expressed in UTC (no-op without a timezone or time).
    fn to_utc(self) -> Temporal {
        let Some(tz) = self.tz_minutes else {
            return self;
        };
        if !self.has_time() || self.kind == TemporalKind::Time {
            return self;
        }
        let minutes = days_from_civil(self.year, self.month, self.day) * 1440
            + i64::from(self.hour) * 60
            + i64::from(self.minute)
            - i64::from(tz);
        let (y, m, d) = civil_from_days(minutes.div_euclid(1440));
        let rem = minutes.rem_euclid(1440);
        Temporal {
            year: y,
            month: m,
            day: d,
            hour: (rem / 60) as u8,
            minute: (rem % 60) as u8,
            tz_minutes: Some(0),
            ..self
        }
    }

    fn compatible(&self, other: &Temporal) -> bool {
        (self.kind == TemporalKind::Time) == (other.kind == TemporalKind::Time)
    }

    /// Ordering under the precision rules: `None` when the values agree up
    /// to the coarser precision but that precision differs (or only one has a
    /// timezone), so the answer is unknown. Both must be dates/dateTimes or
    /// both times (see [`Temporal::comparable`]).
    pub(crate) fn compare(&self, other: &Temporal) -> Option<Ordering> {
        let (a, b) = (*self, *other);
        let a_tz = a.has_time() && a.tz_minutes.is_some();
        let b_tz = b.has_time() && b.tz_minutes.is_some();
        let (a, b) = if a_tz && b_tz {
            (a.to_utc(), b.to_utc())
        } else {
            (a, b)
        };
        let top = a.level().min(b.level());
        let start = if a.kind == TemporalKind::Time { 3 } else { 0 };
        for level in start..=top {
            let ord = match level {
                0 => a.year.cmp(&b.year),
                1 => a.month.cmp(&b.month),
                2 => a.day.cmp(&b.day),
                3 => a.hour.cmp(&b.hour),
                4 => a.minute.cmp(&b.minute),
                _ => (a.second, a.millis).cmp(&(b.second, b.millis)),
            };
            if ord != Ordering::Equal {
                if a_tz != b_tz && top >= 3 {
                    return None;
                }
                return Some(ord);
            }
        }
        if a.level() != b.level() || (a_tz != b_tz && top >= 3) {
            None
        } else {
            Some(Ordering::Equal)
        }
    }

    /// Whether `<`/`>` may be applied to the pair.
    pub(crate) fn comparable(&self, other: &Temporal) -> bool {
        self.compatible(other)
    }

    /// `=`: `None` when unknown. A date against a dateTime that carries a
    /// timezone is unequal (as the HL7 suite expects); the same precision
    /// with and without timezone is unknown.
    pub(crate) fn equals(&self, other: &Temporal) -> Option<bool> {
        if !self.compatible(other) {
            return Some(false);
        }
        let a_tz = self.has_time() && self.tz_minutes.is_some();
        let b_tz = other.has_time() && other.tz_minutes.is_some();
        if a_tz != b_tz {
            return if self.level() == other.level() {
                None
            } else {
                Some(false)
            };
        }
        self.compare(other).map(|o| o == Ordering::Equal)
    }

    /// `~`: different precision is simply not equivalent.
    pub(crate) fn equivalent(&self, other: &Temporal) -> bool {
        self.compatible(other)
            && self.level() == other.level()
            && self.compare(other) == Some(Ordering::Equal)
    }

    /// Adds `amount` of `unit` (negative to subtract). Units finer than the
    /// value's precision are converted to whole units of that precision
    /// (truncating); `None` on overflow or a meaningless combination.
    pub(crate) fn add(&self, amount: i64, unit: CalendarUnit) -> Option<Temporal> {
        let mut t = *self;
        match unit {
            CalendarUnit::Year | CalendarUnit::Month => {
                if t.kind == TemporalKind::Time {
                    return None;
                }
                let months = if unit == CalendarUnit::Year {
                    amount.checked_mul(12)?
                } else {
                    amount
                };
                if t.precision == Precision::Year {
                    let years = months / 12;
                    t.year = i32::try_from(i64::from(t.year).checked_add(years)?).ok()?;
                    return Some(t);
                }
                let total = i64::from(t.year) * 12 + i64::from(t.month) - 1 + months;
                t.year = i32::try_from(total.div_euclid(12)).ok()?;
                t.month = (total.rem_euclid(12) + 1) as u8;
                t.day = t.day.min(days_in_month(t.year, t.month));
                Some(t)
            }
            _ => {
                let ms: i64 = match unit {
                    CalendarUnit::Week => amount.checked_mul(604_800_000)?,
                    CalendarUnit::Day => amount.checked_mul(86_400_000)?,
                    CalendarUnit::Hour => amount.checked_mul(3_600_000)?,
                    CalendarUnit::Minute => amount.checked_mul(60_000)?,
                    CalendarUnit::Second => amount.checked_mul(1000)?,
                    _ => amount,
                };
                if t.kind == TemporalKind::Time {
                    let day_ms: i64 = 86_400_000;
                    let now = i64::from(t.hour) * 3_600_000
                        + i64::from(t.minute) * 60_000
                        + i64::from(t.second) * 1000
                        + i64::from(t.millis);
                    let v = (now + ms.rem_euclid(day_ms)).rem_euclid(day_ms);
                    t.hour = (v / 3_600_000) as u8;
                    t.minute = (v / 60_000 % 60) as u8;
                    t.second = (v / 1000 % 60) as u8;
                    t.millis = (v % 1000) as u16;
                    return Some(t);
                }
                if t.precision < Precision::Day {
                    // Whole days at month/year precision do not move the value
                    // meaningfully; convert to months is not defined: keep as is.
                    let days = ms / 86_400_000;
                    let months = days / 30;
                    return t.add(months, CalendarUnit::Month);
                }
                let step_ms: i64 = match t.precision {
                    Precision::Day => 86_400_000,
                    Precision::Hour => 3_600_000,
                    Precision::Minute => 60_000,
                    Precision::Second => 1000,
                    _ => 1,
                };
                let ms = ms / step_ms * step_ms;
                let base = days_from_civil(t.year, t.month, t.day)
                    .checked_mul(86_400_000)?
                    .checked_add(
                        i64::from(t.hour) * 3_600_000
                            + i64::from(t.minute) * 60_000
                            + i64::from(t.second) * 1000
                            + i64::from(t.millis),
                    )?;
                let v = base.checked_add(ms)?;
                let (y, m, d) = civil_from_days(v.div_euclid(86_400_000));
                let rem = v.rem_euclid(86_400_000);
                t.year = y;
                t.month = m;
                t.day = d;
                t.hour = (rem / 3_600_000) as u8;
                t.minute = (rem / 60_000 % 60) as u8;
                t.second = (rem / 1000 % 60) as u8;
                t.millis = (rem % 1000) as u16;
                Some(t)
            }
        }
    }

    /// Builds a dateTime from a UTC instant in milliseconds since the epoch.
    pub(crate) fn from_unix_millis(ms: i64, kind: TemporalKind) -> Temporal {
        let (y, m, d) = civil_from_days(ms.div_euclid(86_400_000));
        let rem = ms.rem_euclid(86_400_000);
        let mut t = Temporal::empty(kind, Precision::Millisecond);
        t.year = y;
        t.month = m;
        t.day = d;
        t.hour = (rem / 3_600_000) as u8;
        t.minute = (rem / 60_000 % 60) as u8;
        t.second = (rem / 1000 % 60) as u8;
        t.millis = (rem % 1000) as u16;
        match kind {
            TemporalKind::Date => t.precision = Precision::Day,
            TemporalKind::DateTime => t.tz_minutes = Some(0),
            TemporalKind::Time => {}
        }
        t
    }

    /// Converts between date, dateTime and time (`toDate()` etc.).
    pub(crate) fn with_kind(&self, kind: TemporalKind) -> Temporal {
        let mut t = *self;
        t.kind = kind;
        if kind == TemporalKind::Date {
            t.precision = t.precision.min(Precision::Day);
            t.hour = 0;
            t.minute = 0;
            t.second = 0;
            t.millis = 0;
            t.tz_minutes = None;
        }
        t
    }
}

fn parse_date_part(c: &mut Cursor<'_>, kind: TemporalKind) -> Option<Temporal> {
    let mut t = Temporal::empty(kind, Precision::Year);
    t.year = i32::try_from(c.digits(4)?).ok()?;
    if c.peek() == Some(b'-') && c.bytes.get(c.pos + 1).is_some_and(u8::is_ascii_digit) {
        c.pos += 1;
        let m = c.digits(2)?;
        if !(1..=12).contains(&m) {
            return None;
        }
        t.month = m as u8;
        t.precision = Precision::Month;
        if c.peek() == Some(b'-') && c.bytes.get(c.pos + 1).is_some_and(u8::is_ascii_digit) {
            c.pos += 1;
            let d = c.digits(2)?;
            if d < 1 || d > u32::from(days_in_month(t.year, t.month)) {
                return None;
            }
            t.day = d as u8;
            t.precision = Precision::Day;
        }
    }
    Some(t)
}

fn parse_time_part(c: &mut Cursor<'_>, t: &mut Temporal) -> Option<()> {
    let h = c.digits(2)?;
    if h > 23 {
        return None;
    }
    t.hour = h as u8;
    t.precision = Precision::Hour;
    if c.eat(b':') {
        let m = c.digits(2)?;
        if m > 59 {
            return None;
        }
        t.minute = m as u8;
        t.precision = Precision::Minute;
        if c.eat(b':') {
            let s = c.digits(2)?;
            if s > 60 {
                return None;
            }
            t.second = s.min(59) as u8;
            t.precision = Precision::Second;
            if c.peek() == Some(b'.') && c.bytes.get(c.pos + 1).is_some_and(u8::is_ascii_digit) {
                c.pos += 1;
                let mut millis = 0u32;
                let mut n = 0;
                while let Some(b) = c.peek().filter(u8::is_ascii_digit) {
                    if n < 3 {
                        millis = millis * 10 + u32::from(b - b'0');
                    }
                    n += 1;
                    c.pos += 1;
                }
                for _ in n..3 {
                    millis *= 10;
                }
                t.millis = millis as u16;
                t.precision = Precision::Millisecond;
            }
        }
    }
    Some(())
}

fn parse_timezone(c: &mut Cursor<'_>, t: &mut Temporal) -> Option<()> {
    match c.peek() {
        Some(b'Z') => {
            c.pos += 1;
            t.tz_minutes = Some(0);
        }
        Some(sign @ (b'+' | b'-')) => {
            c.pos += 1;
            let h = c.digits(2)?;
            if !c.eat(b':') {
                return None;
            }
            let m = c.digits(2)?;
            if h > 14 || m > 59 {
                return None;
            }
            let total = i16::try_from(h * 60 + m).ok()?;
            t.tz_minutes = Some(if sign == b'-' { -total } else { total });
        }
        _ => {}
    }
    Some(())
}

impl std::fmt::Display for Temporal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.kind != TemporalKind::Time {
            write!(f, "{:04}", self.year)?;
            if self.precision >= Precision::Month {
                write!(f, "-{:02}", self.month)?;
            }
            if self.precision >= Precision::Day {
                write!(f, "-{:02}", self.day)?;
            }
            if self.kind == TemporalKind::Date || self.precision < Precision::Hour {
                return Ok(());
            }
            f.write_str("T")?;
        }
        write!(f, "{:02}", self.hour)?;
        if self.precision >= Precision::Minute {
            write!(f, ":{:02}", self.minute)?;
        }
        if self.precision >= Precision::Second {
            write!(f, ":{:02}", self.second)?;
        }
        if self.precision >= Precision::Millisecond {
            write!(f, ".{:03}", self.millis)?;
        }
        if self.kind == TemporalKind::DateTime {
            match self.tz_minutes {
                Some(0) => f.write_str("Z")?,
                Some(tz) => {
                    let sign = if tz < 0 { '-' } else { '+' };
                    let tz = tz.unsigned_abs();
                    write!(f, "{sign}{:02}:{:02}", tz / 60, tz % 60)?;
                }
                None => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dt(s: &str) -> Temporal {
        Temporal::parse_datetime(s).expect("valid dateTime")
    }

    #[test]
    fn parses_partial_values() {
        assert_eq!(dt("2015").precision, Precision::Year);
        assert_eq!(dt("2015-02-04T14:34:28.123+10:00").tz_minutes, Some(600));
        assert_eq!(
            dt("2015-02-04T14:34:28.123+10:00").to_string(),
            "2015-02-04T14:34:28.123+10:00"
        );
        assert!(Temporal::parse_date("2015-02-30").is_none());
        assert!(Temporal::parse_time("14:34:28Z").is_none());
        assert_eq!(
            Temporal::parse_time("14:34").map(|t| t.to_string()),
            Some("14:34".into())
        );
    }

    #[test]
    fn compares_with_precision_and_timezones() {
        assert_eq!(dt("2018-03").compare(&dt("2018-03-01")), None);
        assert_eq!(
            dt("2018-02").compare(&dt("2018-03-01")),
            Some(Ordering::Less)
        );
        assert_eq!(
            dt("2012-04-15T15:30:31").equals(&dt("2012-04-15T15:30:31.0")),
            Some(true)
        );
        assert_eq!(
            dt("2017-11-05T01:30:00.0-04:00").compare(&dt("2017-11-05T01:15:00.0-05:00")),
            Some(Ordering::Less)
        );
        assert_eq!(
            dt("2012-04-15T15:00:00Z").equals(&dt("2012-04-15T10:00:00")),
            None
        );
    }

    #[test]
    fn calendar_arithmetic() {
        let t = Temporal::parse_date("2020-01-31").expect("date");
        assert_eq!(
            t.add(1, CalendarUnit::Month).map(|t| t.to_string()),
            Some("2020-02-29".into())
        );
        assert_eq!(
            t.add(-31, CalendarUnit::Day).map(|t| t.to_string()),
            Some("2019-12-31".into())
        );
        let t = dt("2020-01-01T23:30:00Z");
        assert_eq!(
            t.add(45, CalendarUnit::Minute).map(|t| t.to_string()),
            Some("2020-01-02T00:15:00Z".into())
        );
    }
}
