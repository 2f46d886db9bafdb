//! Resource quantities (`"500m"`, `"1G"`, `"64Mi"`, `"1e3"`) for the
//! `resource/*` isolators, as `actool` parses them (its parser is Kubernetes'
//! `resource.ParseQuantity`, ported here rule for rule).

use std::fmt;

use serde::{Serialize, Serializer};

/// A validated quantity, kept as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quantity(String);

impl Quantity {
    pub fn parse(s: &str) -> Result<Self, String> {
        match quantity_problem(s) {
            Some(why) => Err(why),
            None => Ok(Quantity(s.to_string())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The value rounded up to a whole number of `unit`s (1 for bytes, 0.001
    /// for milli-CPUs: `to_units(3)` gives millis). `None` if it does not fit.
    pub fn to_scaled(&self, decimal_places: u32) -> Option<i128> {
        let s = self.0.as_str();
        let (sign, rest) = match s.as_bytes().first() {
            Some(b'-') => (-1, &s[1..]),
            Some(b'+') => (1, &s[1..]),
            _ => (1, s),
        };
        let split = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(split);
        let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
        let (base, exp): (i128, i32) = match suffix {
            "" => (10, 0),
            "n" => (10, -9),
            "u" => (10, -6),
            "m" => (10, -3),
            "k" => (10, 3),
            "M" => (10, 6),
            "G" => (10, 9),
            "T" => (10, 12),
            "P" => (10, 15),
            "E" => (10, 18),
            "Ki" => (2, 10),
            "Mi" => (2, 20),
            "Gi" => (2, 30),
            "Ti" => (2, 40),
            "Pi" => (2, 50),
            "Ei" => (2, 60),
            e => (10, e.get(1..)?.parse().ok()?),
        };
        // mantissa = int_part.frac_part as an integer over 10^len(frac)
        let digits = format!("{int_part}{frac_part}");
        let mut mantissa: i128 = if digits.is_empty() {
            0
        } else {
            digits.parse().ok()?
        };
        let mut ten_exp = i32::try_from(decimal_places).ok()? - frac_part.len() as i32;
        if base == 2 {
            mantissa = mantissa.checked_mul(1i128.checked_shl(exp as u32)?)?;
        } else {
            ten_exp += exp;
        }
        let value = if ten_exp >= 0 {
            mantissa.checked_mul(10i128.checked_pow(ten_exp as u32)?)?
        } else {
            let div = 10i128.checked_pow(ten_exp.unsigned_abs())?;
            (mantissa + div - 1) / div
        };
        Some(sign * value)
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

const SUFFIX_CHARS: &[u8] = b"eEinumkKMGTP";

struct Split<'a> {
    value: &'a [u8],
    num: &'a [u8],
    denom: &'a [u8],
    suffix: &'a [u8],
}

/// `parseQuantityString`: sign, digits, optional fraction, then a suffix.
fn split_quantity(s: &[u8]) -> Option<Split<'_>> {
    let end = s.len();
    let mut pos = 0;
    if let Some(b'-' | b'+') = s.first() {
        pos += 1;
    }
    let zero = &b"0"[..];
    while pos < end && s[pos] == b'0' {
        pos += 1;
    }
    if pos >= end {
        return Some(Split {
            value: zero,
            num: zero,
            denom: &[],
            suffix: &[],
        });
    }
    let num_start = pos;
    while pos < end && s[pos].is_ascii_digit() {
        pos += 1;
    }
    if pos >= end {
        return Some(Split {
            value: s,
            num: &s[num_start..],
            denom: &[],
            suffix: &[],
        });
    }
    let num = if pos == num_start {
        zero
    } else {
        &s[num_start..pos]
    };
    let mut denom: &[u8] = &[];
    if s[pos] == b'.' {
        pos += 1;
        let denom_start = pos;
        while pos < end && s[pos].is_ascii_digit() {
            pos += 1;
        }
        if pos >= end {
            return Some(Split {
                value: s,
                num,
                denom: &s[denom_start..],
                suffix: &[],
            });
        }
        denom = &s[denom_start..pos];
    }
    let value = &s[..pos];
    let suffix_start = pos;
    while pos < end && SUFFIX_CHARS.contains(&s[pos]) {
        pos += 1;
    }
    if pos < end && matches!(s[pos], b'-' | b'+') {
        pos += 1;
    }
    while pos < end && s[pos].is_ascii_digit() {
        pos += 1;
    }
    if pos < end {
        return None;
    }
    Some(Split {
        value,
        num,
        denom,
        suffix: &s[suffix_start..],
    })
}

enum Format {
    Decimal,
    Binary,
}

/// `quantitySuffixer.interpret`: (exponent, format), base implied by format.
fn interpret_suffix(suffix: &[u8]) -> Option<(i64, Format)> {
    let decimal = |e| Some((e, Format::Decimal));
    match suffix {
        b"" => decimal(0),
        b"n" => decimal(-9),
        b"u" => decimal(-6),
        b"m" => decimal(-3),
        b"k" => decimal(3),
        b"M" => decimal(6),
        b"G" => decimal(9),
        b"T" => decimal(12),
        b"P" => decimal(15),
        b"E" => decimal(18),
        b"Ki" => Some((10, Format::Binary)),
        b"Mi" => Some((20, Format::Binary)),
        b"Gi" => Some((30, Format::Binary)),
        b"Ti" => Some((40, Format::Binary)),
        b"Pi" => Some((50, Format::Binary)),
        b"Ei" => Some((60, Format::Binary)),
        [b'e' | b'E', rest @ ..] if !rest.is_empty() => {
            let text = std::str::from_utf8(rest).ok()?;
            // Go truncates the parsed int64 to int32.
            crate::semver::parse_go_int(text).map(|e| (i64::from(e as i32), Format::Decimal))
        }
        _ => None,
    }
}

/// Why `s` is not a quantity `actool` would accept, if it is not.
pub fn quantity_problem(s: &str) -> Option<String> {
    let bad = |why: &str| Some(format!("'{s}' is not a valid resource quantity: {why}"));
    if s.is_empty() {
        return bad("it is empty");
    }
    if s == "0" {
        return None;
    }
    let Some(split) = split_quantity(s.as_bytes()) else {
        return bad("must be a number with an optional suffix (e.g. 500m, 1G, 64Mi, 1e3)");
    };
    let Some((exponent, format)) = interpret_suffix(split.suffix) else {
        return bad("unknown suffix (use n, u, m, k, M, G, T, P, E, Ki … Ei or eN)");
    };
    let digits = (split.num.len() + split.denom.len()) as i64;
    let (precision, mut scale, mantissa_shift) = match format {
        Format::Decimal => (18 - digits, exponent, 0),
        Format::Binary if split.denom.is_empty() => {
            let p =
                15 - split.num.len() as i64 - i64::from((exponent as f32 * 3.0 / 10.0) as i32) - 1;
            (p, 0, exponent)
        }
        Format::Binary => (-1, 0, 0),
    };
    if precision >= 0 {
        scale -= split.denom.len() as i64;
        if scale >= -9 {
            let shifted: Vec<u8> = split.num.iter().chain(split.denom).copied().collect();
            let fits = std::str::from_utf8(&shifted)
                .ok()
                .and_then(|t| t.parse::<i64>().ok())
                .and_then(|v| v.checked_mul(1i64.checked_shl(mantissa_shift as u32)?))
                .is_some();
            if fits {
                return None;
            }
        }
    }
    // The arbitrary-precision path: fails only when no digit was written.
    if split.value.iter().any(u8::is_ascii_digit) {
        None
    } else {
        bad("no digits")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_kubernetes_quantities() {
        for ok in [
            "0",
            "1",
            "500m",
            "1G",
            "64Mi",
            "1.5Gi",
            "1e3",
            "1E-3",
            ".",
            "+",
            "-1",
            "1.",
            "12345678901234567890",
            "1e-10",
            "e5",
        ] {
            assert_eq!(quantity_problem(ok), None, "{ok}");
        }
    }

    #[test]
    fn rejects_what_kubernetes_rejects() {
        for bad in [
            "", "1Q", "1 G", "G1", "1.2.3", "1Gi5", "e", "1ee5", "e-10", "--1", "1e",
        ] {
            assert!(quantity_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn scales_values() {
        let q = |s: &str| Quantity::parse(s).unwrap();
        assert_eq!(q("1G").to_scaled(0), Some(1_000_000_000));
        assert_eq!(q("64Mi").to_scaled(0), Some(64 << 20));
        assert_eq!(q("500m").to_scaled(3), Some(500));
        assert_eq!(q("1.5").to_scaled(3), Some(1500));
        assert_eq!(q("1.5Gi").to_scaled(0), Some(3 << 29));
        assert_eq!(q("1e3").to_scaled(0), Some(1000));
    }
}
