//! `Range: bytes=…` (RFC 9110 §14): one range per request. A header with
//! several ranges, or another unit, is ignored (the whole blob is the
//! answer, which the RFC allows); a single range that cannot be satisfied
//! is refused with 416.

use std::ops::Range;

/// What a `Range` header asks of a blob of some size.
#[derive(Debug, PartialEq, Eq)]
pub enum Wanted {
    /// The whole blob (no header, or one the server ignores).
    Whole,
    /// These bytes.
    Part(Range<u64>),
    /// Nothing the blob has: 416.
    Unsatisfiable,
}

/// Reads `header` (the value of `Range`) for a blob of `size` bytes.
pub fn wanted(header: Option<&str>, size: u64) -> Wanted {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Wanted::Whole;
    };
    if spec.contains(',') {
        return Wanted::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Wanted::Unsatisfiable;
    };
    let number = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (first.trim(), last.trim()) {
        ("", suffix) => match number(suffix) {
            Some(0) | None => Wanted::Unsatisfiable,
            Some(_) if size == 0 => Wanted::Unsatisfiable,
            Some(n) => Wanted::Part(size.saturating_sub(n)..size),
        },
        (start, end) => {
            let Some(start) = number(start) else {
                return Wanted::Unsatisfiable;
            };
            if start >= size {
                return Wanted::Unsatisfiable;
            }
            let end = match end {
                "" => size,
                end => match number(end) {
                    Some(e) if e >= start => e.saturating_add(1).min(size),
                    _ => return Wanted::Unsatisfiable,
                },
            };
            Wanted::Part(start..end)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_as_the_rfc_reads_them() {
        assert_eq!(wanted(None, 10), Wanted::Whole);
        assert_eq!(wanted(Some("bytes=0-3"), 10), Wanted::Part(0..4));
        assert_eq!(wanted(Some("bytes=4-"), 10), Wanted::Part(4..10));
        assert_eq!(wanted(Some("bytes=-3"), 10), Wanted::Part(7..10));
        assert_eq!(wanted(Some("bytes=-30"), 10), Wanted::Part(0..10));
        assert_eq!(wanted(Some("bytes=5-99"), 10), Wanted::Part(5..10));
        assert_eq!(wanted(Some("bytes=0-1,4-5"), 10), Wanted::Whole);
        assert_eq!(wanted(Some("items=0-1"), 10), Wanted::Whole);
        for bad in [
            "bytes=10-",
            "bytes=5-4",
            "bytes=-0",
            "bytes=x-1",
            "bytes=1",
            "bytes=+1-2",
            "bytes=18446744073709551616-",
        ] {
            assert_eq!(wanted(Some(bad), 10), Wanted::Unsatisfiable, "{bad}");
        }
        assert_eq!(wanted(Some("bytes=-1"), 0), Wanted::Unsatisfiable);
        assert_eq!(
            wanted(Some("bytes=0-18446744073709551615"), 10),
            Wanted::Part(0..10)
        );
    }
}
