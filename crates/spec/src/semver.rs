//! `acVersion` and the `version` label: semantic versions as parsed by
//! `github.com/coreos/go-semver`, which `actool` uses (leading zeros are
//! accepted, `0.0.0` is not).

use std::fmt;

use serde::{Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SemVer {
    pub major: i64,
    pub minor: i64,
    pub patch: i64,
    pub pre_release: String,
    pub metadata: String,
}

/// The appc spec version this implementation follows.
pub const APPC_SPEC_VERSION: &str = "0.8.11";

impl SemVer {
    pub fn parse(input: &str) -> Result<Self, String> {
        let bad = |why: String| format!("'{input}' is not a valid semantic version: {why}");
        let (rest, metadata) = input.split_once('+').unwrap_or((input, ""));
        let (core, pre_release) = rest.split_once('-').unwrap_or((rest, ""));
        let parts: Vec<&str> = core.splitn(3, '.').collect();
        if parts.len() != 3 {
            return Err(bad("must be MAJOR.MINOR.PATCH".to_string()));
        }
        for (what, id) in [("pre-release", pre_release), ("build metadata", metadata)] {
            if !id.is_empty() && !id.split('.').all(is_identifier) {
                return Err(bad(format!(
                    "{what} '{id}' must be dot-separated [0-9A-Za-z-] identifiers"
                )));
            }
        }
        let mut numbers = [0i64; 3];
        for (slot, part) in numbers.iter_mut().zip(&parts) {
            *slot = parse_go_int(part).ok_or_else(|| {
                bad(format!(
                    "'{part}' is not a number (or does not fit 64 bits)"
                ))
            })?;
        }
        let version = SemVer {
            major: numbers[0],
            minor: numbers[1],
            patch: numbers[2],
            pre_release: pre_release.to_string(),
            metadata: metadata.to_string(),
        };
        if version.is_zero() {
            return Err(format!(
                "'{input}' is not a valid version: 0.0.0 is not allowed"
            ));
        }
        Ok(version)
    }

    fn is_zero(&self) -> bool {
        self.major == 0
            && self.minor == 0
            && self.patch == 0
            && self.pre_release.is_empty()
            && self.metadata.is_empty()
    }

    /// The spec version skiff implements.
    pub fn appc() -> Self {
        SemVer {
            major: 0,
            minor: 8,
            patch: 11,
            pre_release: String::new(),
            metadata: String::new(),
        }
    }
}

fn is_identifier(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Go's `strconv.ParseInt(s, 10, 64)`: optional sign, decimal digits, no overflow.
pub(crate) fn parse_go_int(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<i64>().ok()
}

impl fmt::Display for SemVer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        if !self.pre_release.is_empty() {
            write!(f, "-{}", self.pre_release)?;
        }
        if !self.metadata.is_empty() {
            write!(f, "+{}", self.metadata)?;
        }
        Ok(())
    }
}

impl Serialize for SemVer {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_go_semver_accepts() {
        for ok in [
            "0.8.11",
            "1.0.0-rc.1+build.5",
            "01.2.3",
            "0.0.1",
            "0.0.0-alpha",
            "1.2.3+x-y",
            "1.2.3-",
        ] {
            assert!(SemVer::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_what_go_semver_rejects() {
        for bad in [
            "",
            "1",
            "1.2",
            "1.2.3.4",
            "0.0.0",
            "v1.2.3",
            "1.2.x",
            "1.2.+3",
            "1.2.3-a..b",
            "1.2.3+é",
        ] {
            assert!(SemVer::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn displays_canonically() {
        assert_eq!(
            SemVer::parse("01.2.3-rc.1").unwrap().to_string(),
            "1.2.3-rc.1"
        );
    }
}
