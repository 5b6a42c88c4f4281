//! Exact decimal numbers for FHIRPath: an `i128` mantissa and a base-10 scale,
//! so `98.60` keeps its text and `1.2 * 1.8` is exactly `2.16`.

use std::cmp::Ordering;
use std::fmt;

/// Largest scale (digits after the point) a value may carry.
pub(crate) const MAX_SCALE: u32 = 28;
/// Digits kept after the point by division (the spec asks for at least 8).
pub(crate) const DIVISION_SCALE: u32 = 8;

/// `mantissa / 10^scale`. Arithmetic is checked: `None` means the result did
/// not fit, never a wrong answer. `==` is structural (`1.0 != 1.00`); use
/// [`Decimal::num_eq`] for numeric equality.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Decimal {
    mantissa: i128,
    scale: u32,
}

fn pow10(exp: u32) -> Option<i128> {
    10i128.checked_pow(exp)
}

impl Decimal {
    pub(crate) const ZERO: Decimal = Decimal {
        mantissa: 0,
        scale: 0,
    };
    pub(crate) const ONE: Decimal = Decimal {
        mantissa: 1,
        scale: 0,
    };

    pub(crate) fn new(mantissa: i128, scale: u32) -> Decimal {
        Decimal { mantissa, scale }
    }

    pub(crate) fn from_i64(v: i64) -> Decimal {
        Decimal {
            mantissa: i128::from(v),
            scale: 0,
        }
    }

    /// Parses `[+-]digits[.digits][e[+-]digits]` (JSON number text or a
    /// FHIRPath literal).
    pub(crate) fn parse(text: &str) -> Option<Decimal> {
        let bytes = text.as_bytes();
        let mut i = 0;
        let negative = match bytes.first() {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let mut mantissa: i128 = 0;
        let mut scale: i64 = 0;
        let mut digits = 0usize;
        let mut seen_point = false;
        while i < bytes.len() {
            let c = bytes[i];
            if c.is_ascii_digit() {
                mantissa = mantissa
                    .checked_mul(10)?
                    .checked_add(i128::from(c - b'0'))?;
                digits += 1;
                if seen_point {
                    scale += 1;
                }
            } else if c == b'.' && !seen_point {
                seen_point = true;
                if i + 1 >= bytes.len() || !bytes[i + 1].is_ascii_digit() {
                    return None;
                }
            } else {
                break;
            }
            i += 1;
        }
        if digits == 0 {
            return None;
        }
        if i < bytes.len() {
            if bytes[i] != b'e' && bytes[i] != b'E' {
                return None;
            }
            let exp: i64 = text[i + 1..].parse().ok()?;
            scale = scale.checked_sub(exp)?;
        }
        if scale < 0 {
            mantissa = mantissa.checked_mul(pow10(u32::try_from(-scale).ok()?)?)?;
            scale = 0;
        }
        let scale = u32::try_from(scale).ok()?;
        let d = Decimal {
            mantissa: if negative { -mantissa } else { mantissa },
            scale,
        };
        if scale > MAX_SCALE {
            d.round(MAX_SCALE)
        } else {
            Some(d)
        }
    }

    /// The value as `i64` when it is a whole number that fits.
    pub(crate) fn to_i64_exact(self) -> Option<i64> {
        let p = pow10(self.scale)?;
        if self.mantissa % p != 0 {
            return None;
        }
        i64::try_from(self.mantissa / p).ok()
    }

    pub(crate) fn to_f64(self) -> f64 {
        // Text round-trip is exact to the nearest f64.
        self.to_string().parse().unwrap_or(f64::NAN)
    }

    /// The nearest decimal with at most 15 significant digits (`None` for
    /// NaN and infinities), trailing zeros removed.
    pub(crate) fn from_f64(v: f64) -> Option<Decimal> {
        if !v.is_finite() {
            return None;
        }
        let text = format!("{v:.14e}");
        let d = Decimal::parse(&text)?;
        Some(d.trim())
    }

    fn rescale_up(&self, scale: u32) -> Option<i128> {
        debug_assert!(scale >= self.scale);
        self.mantissa.checked_mul(pow10(scale - self.scale)?)
    }

    /// Rounds half away from zero to `scale` digits (no-op when already finer).
    pub(crate) fn round(&self, scale: u32) -> Option<Decimal> {
        if scale >= self.scale {
            return Some(*self);
        }
        let p = pow10(self.scale - scale)?;
        let q = self.mantissa / p;
        let r = self.mantissa % p;
        let q = if r.unsigned_abs() * 2 >= p.unsigned_abs() {
            q + self.mantissa.signum()
        } else {
            q
        };
        Some(Decimal { mantissa: q, scale })
    }

    /// Removes trailing zeros after the point.
    pub(crate) fn trim(&self) -> Decimal {
        let mut d = *self;
        while d.scale > 0 && d.mantissa % 10 == 0 {
            d.mantissa /= 10;
            d.scale -= 1;
        }
        d
    }

    fn align(a: &Decimal, b: &Decimal) -> Option<(i128, i128, u32)> {
        let scale = a.scale.max(b.scale);
        Some((a.rescale_up(scale)?, b.rescale_up(scale)?, scale))
    }

    pub(crate) fn checked_add(&self, other: &Decimal) -> Option<Decimal> {
        let (a, b, scale) = Decimal::align(self, other)?;
        Some(Decimal {
            mantissa: a.checked_add(b)?,
            scale,
        })
    }

    pub(crate) fn checked_sub(&self, other: &Decimal) -> Option<Decimal> {
        let (a, b, scale) = Decimal::align(self, other)?;
        Some(Decimal {
            mantissa: a.checked_sub(b)?,
            scale,
        })
    }

    pub(crate) fn checked_mul(&self, other: &Decimal) -> Option<Decimal> {
        let d = Decimal {
            mantissa: self.mantissa.checked_mul(other.mantissa)?,
            scale: self.scale + other.scale,
        };
        if d.scale > MAX_SCALE {
            d.round(MAX_SCALE)
        } else {
            Some(d)
        }
    }

    /// Division rounded to [`DIVISION_SCALE`] digits, trailing zeros trimmed
    /// (keeping one). `None` when dividing by zero or on overflow.
    pub(crate) fn checked_div(&self, other: &Decimal) -> Option<Decimal> {
        if other.mantissa == 0 {
            return None;
        }
        // result = (a / 10^sa) / (b / 10^sb) = a * 10^(sb - sa) / b
        // scaled by 10^(DIVISION_SCALE + 1) for rounding.
        let shift = i64::from(DIVISION_SCALE + 1) + i64::from(other.scale) - i64::from(self.scale);
        let (num, den) = if shift >= 0 {
            (
                self.mantissa
                    .checked_mul(pow10(u32::try_from(shift).ok()?)?)?,
                other.mantissa,
            )
        } else {
            (
                self.mantissa,
                other
                    .mantissa
                    .checked_mul(pow10(u32::try_from(-shift).ok()?)?)?,
            )
        };
        let q = Decimal {
            mantissa: num.checked_div(den)?,
            scale: DIVISION_SCALE + 1,
        };
        let rounded = q.round(DIVISION_SCALE)?.trim();
        Some(if rounded.scale == 0 {
            Decimal {
                mantissa: rounded.mantissa.checked_mul(10)?,
                scale: 1,
            }
        } else {
            rounded
        })
    }

    /// Truncated division (`div`): a whole number.
    pub(crate) fn checked_div_trunc(&self, other: &Decimal) -> Option<Decimal> {
        if other.mantissa == 0 {
            return None;
        }
        let (a, b, _) = Decimal::align(self, other)?;
        Some(Decimal {
            mantissa: a.checked_div(b)?,
            scale: 0,
        })
    }

    /// Remainder of truncated division (`mod`).
    pub(crate) fn checked_rem(&self, other: &Decimal) -> Option<Decimal> {
        if other.mantissa == 0 {
            return None;
        }
        let (a, b, scale) = Decimal::align(self, other)?;
        Some(Decimal {
            mantissa: a.checked_rem(b)?,
            scale,
        })
    }

    pub(crate) fn neg(&self) -> Decimal {
        Decimal {
            mantissa: self.mantissa.saturating_neg(),
            scale: self.scale,
        }
    }

    pub(crate) fn abs(&self) -> Decimal {
        Decimal {
            mantissa: self.mantissa.saturating_abs(),
            scale: self.scale,
        }
    }

    pub(crate) fn is_negative(&self) -> bool {
        self.mantissa < 0
    }

    /// Whole part toward zero.
    pub(crate) fn trunc(&self) -> Option<Decimal> {
        let p = pow10(self.scale)?;
        Some(Decimal {
            mantissa: self.mantissa / p,
            scale: 0,
        })
    }

    pub(crate) fn floor(&self) -> Option<Decimal> {
        let p = pow10(self.scale)?;
        let q = self.mantissa.div_euclid(p);
        Some(Decimal {
            mantissa: q,
            scale: 0,
        })
    }

    pub(crate) fn ceil(&self) -> Option<Decimal> {
        let p = pow10(self.scale)?;
        let q = self.mantissa.div_euclid(p);
        let q = if self.mantissa.rem_euclid(p) != 0 {
            q + 1
        } else {
            q
        };
        Some(Decimal {
            mantissa: q,
            scale: 0,
        })
    }

    /// Numeric comparison; `None` only when aligning scales overflows.
    pub(crate) fn compare(&self, other: &Decimal) -> Option<Ordering> {
        match Decimal::align(self, other) {
            Some((a, b, _)) => Some(a.cmp(&b)),
            None => self.to_f64().partial_cmp(&other.to_f64()),
        }
    }

    pub(crate) fn num_eq(&self, other: &Decimal) -> bool {
        self.compare(other) == Some(Ordering::Equal)
    }

    /// Equivalence: equal after rounding both to the coarser scale.
    pub(crate) fn equivalent(&self, other: &Decimal) -> bool {
        let scale = self.scale.min(other.scale);
        match (self.round(scale), other.round(scale)) {
            (Some(a), Some(b)) => a.num_eq(&b),
            _ => false,
        }
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.mantissa.unsigned_abs().to_string();
        let sign = if self.mantissa < 0 { "-" } else { "" };
        let scale = self.scale as usize;
        if scale == 0 {
            return write!(f, "{sign}{digits}");
        }
        if digits.len() > scale {
            let (int, frac) = digits.split_at(digits.len() - scale);
            write!(f, "{sign}{int}.{frac}")
        } else {
            write!(f, "{sign}0.{}{digits}", "0".repeat(scale - digits.len()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::parse(s).expect("valid decimal")
    }

    #[test]
    fn keeps_text_and_scale() {
        assert_eq!(d("98.60").to_string(), "98.60");
        assert_eq!(d("-0.05").to_string(), "-0.05");
        assert_eq!(d("1e2").to_string(), "100");
        assert_eq!(d("1.5E-3").to_string(), "0.0015");
        assert!(Decimal::parse("1.").is_none());
        assert!(Decimal::parse("abc").is_none());
    }

    #[test]
    fn arithmetic_is_exact() {
        assert_eq!(
            d("1.2").checked_mul(&d("1.8")).map(|x| x.to_string()),
            Some("2.16".into())
        );
        assert_eq!(
            d("1.8").checked_sub(&d("1.2")).map(|x| x.to_string()),
            Some("0.6".into())
        );
        assert_eq!(
            d("1.2").checked_div(&d("1.8")).map(|x| x.to_string()),
            Some("0.66666667".into())
        );
        assert_eq!(
            d("4").checked_div(&d("2")).map(|x| x.to_string()),
            Some("2.0".into())
        );
        assert_eq!(
            d("2.2").checked_rem(&d("1.8")).map(|x| x.to_string()),
            Some("0.4".into())
        );
        assert!(d("1").checked_div(&d("0")).is_none());
    }

    #[test]
    fn rounding_and_equivalence() {
        assert_eq!(d("-1.1").ceil().map(|x| x.to_string()), Some("-1".into()));
        assert_eq!(d("-2.1").floor().map(|x| x.to_string()), Some("-3".into()));
        assert_eq!(d("2.5").round(0).map(|x| x.to_string()), Some("3".into()));
        assert!(d("1.10").num_eq(&d("1.1")));
        assert!(d("0.66666667").equivalent(&d("0.67")));
        assert!(!d("0.66666667").equivalent(&d("0.6")));
    }
}
