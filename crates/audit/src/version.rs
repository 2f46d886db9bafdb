//! Version ordering per ecosystem, as the package managers define it:
//! dpkg (epoch, `~`, letters before other characters), apk (dotted numbers,
//! letter, `_alpha…_p` suffixes, `-rN`), and semantic versions.

use std::cmp::Ordering;

/// dpkg's order of one character in a non-digit run: `~` first (even before
/// the end of the string), then the end, letters, then everything else.
fn dpkg_char_order(c: Option<u8>) -> i32 {
    match c {
        Some(b'~') => -1,
        None => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(c) => i32::from(c) + 256,
    }
}

/// dpkg's `verrevcmp` on an upstream version or a revision.
fn verrevcmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        // Non-digit runs, character by character.
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let ca = dpkg_char_order(a.get(i).copied().filter(|c| !c.is_ascii_digit()));
            let cb = dpkg_char_order(b.get(j).copied().filter(|c| !c.is_ascii_digit()));
            if ca != cb {
                return ca.cmp(&cb);
            }
            if i < a.len() && !a[i].is_ascii_digit() {
                i += 1;
            }
            if j < b.len() && !b[j].is_ascii_digit() {
                j += 1;
            }
        }
        // Digit runs, numerically (leading zeros ignored).
        while i < a.len() && a[i] == b'0' {
            i += 1;
        }
        while j < b.len() && b[j] == b'0' {
            j += 1;
        }
        let (si, sj) = (i, j);
        while i < a.len() && a[i].is_ascii_digit() {
            i += 1;
        }
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        let (da, db) = (&a[si..i], &b[sj..j]);
        let by_len = da.len().cmp(&db.len());
        if by_len != Ordering::Equal {
            return by_len;
        }
        let by_digits = da.cmp(db);
        if by_digits != Ordering::Equal {
            return by_digits;
        }
    }
    Ordering::Equal
}

/// Splits `[epoch:]upstream[-revision]`.
fn dpkg_parts(v: &str) -> (u64, &str, &str) {
    let (epoch, rest) = match v.split_once(':') {
        Some((e, r)) if e.bytes().all(|b| b.is_ascii_digit()) => (e.parse().unwrap_or(0), r),
        _ => (0, v),
    };
    match rest.rsplit_once('-') {
        Some((u, r)) => (epoch, u, r),
        None => (epoch, rest, ""),
    }
}

/// Compares two Debian package versions.
pub fn dpkg_cmp(a: &str, b: &str) -> Ordering {
    let (ea, ua, ra) = dpkg_parts(a);
    let (eb, ub, rb) = dpkg_parts(b);
    ea.cmp(&eb)
        .then_with(|| verrevcmp(ua, ub))
        .then_with(|| verrevcmp(ra, rb))
}

/// apk's suffix order: `_alpha` < `_beta` < `_pre` < `_rc` < (none) <
/// `_cvs` < `_svn` < `_git` < `_hg` < `_p`.
fn apk_suffix_rank(s: &str) -> i32 {
    match s {
        "alpha" => -4,
        "beta" => -3,
        "pre" => -2,
        "rc" => -1,
        "" => 0,
        "cvs" => 1,
        "svn" => 2,
        "git" => 3,
        "hg" => 4,
        "p" => 5,
        _ => 0,
    }
}

/// The parts of an apk version: numbers, a letter, suffixes (rank and
/// number), the `-rN` release.
type ApkParts = (Vec<u64>, Option<u8>, Vec<(i32, u64)>, u64);

fn apk_parts(v: &str) -> ApkParts {
    let (main, release) = match v.rsplit_once("-r") {
        Some((m, r)) if r.bytes().all(|b| b.is_ascii_digit()) && !r.is_empty() => {
            (m, r.parse().unwrap_or(0))
        }
        _ => (v, 0),
    };
    let mut pieces = main.split('_');
    let head = pieces.next().unwrap_or("");
    let (numbers, letter) = match head.bytes().last() {
        Some(c) if c.is_ascii_lowercase() => (&head[..head.len() - 1], Some(c)),
        _ => (head, None),
    };
    let numbers = numbers.split('.').map(|n| n.parse().unwrap_or(0)).collect();
    let suffixes = pieces
        .map(|s| {
            let name: String = s.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
            let n = s[name.len()..].parse().unwrap_or(0);
            (apk_suffix_rank(&name), n)
        })
        .collect();
    (numbers, letter, suffixes, release)
}

/// Compares two Alpine package versions.
pub fn apk_cmp(a: &str, b: &str) -> Ordering {
    let (na, la, sa, ra) = apk_parts(a);
    let (nb, lb, sb, rb) = apk_parts(b);
    let by_numbers = na
        .iter()
        .zip(&nb)
        .map(|(x, y)| x.cmp(y))
        .find(|o| *o != Ordering::Equal);
    by_numbers
        .unwrap_or_else(|| na.len().cmp(&nb.len()))
        .then_with(|| la.cmp(&lb))
        .then_with(|| {
            let n = sa.len().max(sb.len());
            (0..n)
                .map(|i| {
                    sa.get(i)
                        .copied()
                        .unwrap_or((0, 0))
                        .cmp(&sb.get(i).copied().unwrap_or((0, 0)))
                })
                .find(|o| *o != Ordering::Equal)
                .unwrap_or(Ordering::Equal)
        })
        .then_with(|| ra.cmp(&rb))
}

/// Compares semantic versions (a leading `v` allowed; build metadata
/// ignored; a pre-release sorts before its release).
pub fn semver_cmp(a: &str, b: &str) -> Ordering {
    let split = |v: &str| {
        let v = v.trim_start_matches('v');
        let v = v.split('+').next().unwrap_or(v);
        let (core, pre) = match v.split_once('-') {
            Some((c, p)) => (c.to_string(), Some(p.to_string())),
            None => (v.to_string(), None),
        };
        let nums: Vec<u64> = core.split('.').map(|n| n.parse().unwrap_or(0)).collect();
        (nums, pre)
    };
    let ((na, pa), (nb, pb)) = (split(a), split(b));
    let pad = |mut n: Vec<u64>| {
        n.resize(3.max(n.len()), 0);
        n
    };
    pad(na).cmp(&pad(nb)).then_with(|| match (&pa, &pb) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) => {
            let (xs, ys): (Vec<&str>, Vec<&str>) = (x.split('.').collect(), y.split('.').collect());
            for (p, q) in xs.iter().zip(&ys) {
                let o = match (p.parse::<u64>(), q.parse::<u64>()) {
                    (Ok(m), Ok(n)) => m.cmp(&n),
                    (Ok(_), Err(_)) => Ordering::Less,
                    (Err(_), Ok(_)) => Ordering::Greater,
                    _ => p.cmp(q),
                };
                if o != Ordering::Equal {
                    return o;
                }
            }
            xs.len().cmp(&ys.len())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering::{Equal, Greater, Less};

    #[test]
    fn dpkg_order_matches_dpkg() {
        // Each pair checked against `dpkg --compare-versions` on Debian 12.
        for (a, b, want) in [
            ("1.0", "1.0", Equal),
            ("1.0~rc1", "1.0", Less),
            ("1.0~rc1", "1.0~rc2", Less),
            ("1.0~~", "1.0~", Less),
            ("1:1.0", "2.0", Greater),
            ("2.36-9+deb12u4", "2.36-9+deb12u3", Greater),
            ("2.36-9", "2.36-9+deb12u1", Less),
            ("5.2.15-2+b2", "5.2.15-2", Greater),
            ("1.0a", "1.0", Greater),
            ("1.0a", "1.0+", Less),
            ("1.02", "1.2", Equal),
            ("1.10", "1.9", Greater),
            ("0:1.0", "1.0", Equal),
            ("1.0-1", "1.0-1~bpo1", Greater),
        ] {
            assert_eq!(dpkg_cmp(a, b), want, "{a} vs {b}");
            assert_eq!(dpkg_cmp(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    /// Differential: every pair of these against `dpkg --compare-versions`.
    #[test]
    fn dpkg_order_agrees_with_dpkg_itself() {
        let versions = [
            "1.0",
            "1.0~rc1",
            "1.0~~",
            "1.0-1",
            "1.0-1~bpo1",
            "1:0.9",
            "0:1.0",
            "1.0a",
            "1.0+",
            "1.0.1",
            "2.36-9+deb12u3",
            "2.36-9+deb12u10",
            "2.36-9",
            "2.36-9~deb12u1",
            "1.02",
            "10.0",
            "1.0-0.1",
        ];
        for a in versions {
            for b in versions {
                let dpkg = |op: &str| {
                    std::process::Command::new("dpkg")
                        .args(["--compare-versions", a, op, b])
                        .status()
                        .map(|s| s.success())
                        .unwrap_or_else(|e| panic!("dpkg is needed for this test: {e}"))
                };
                let want = if dpkg("lt") {
                    Less
                } else if dpkg("eq") {
                    Equal
                } else {
                    Greater
                };
                assert_eq!(dpkg_cmp(a, b), want, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn apk_and_semver_orders() {
        for (a, b, want) in [
            ("1.36.1-r5", "1.36.1-r4", Greater),
            ("1.2.4_rc1-r0", "1.2.4-r0", Less),
            ("1.2.4_p1-r0", "1.2.4-r0", Greater),
            ("1.2.4a-r0", "1.2.4-r0", Greater),
            ("1.10.0", "1.9.9", Greater),
            ("3.0.12-r1", "3.0.12-r1", Equal),
        ] {
            assert_eq!(apk_cmp(a, b), want, "{a} vs {b}");
        }
        assert_eq!(semver_cmp("1.2.3", "1.2.10"), Less);
        assert_eq!(semver_cmp("v1.0.0-rc.1", "1.0.0"), Less);
        assert_eq!(semver_cmp("1.0.0-alpha", "1.0.0-alpha.1"), Less);
        assert_eq!(semver_cmp("1.0.0-alpha.beta", "1.0.0-beta"), Less);
        assert_eq!(semver_cmp("0.4.46", "0.4.46+build"), Equal);
    }
}
