//! AC names: `ACIdentifier` (image names, label and annotation names),
//! `ACName` (app, volume, port and mount point names) and `ACKind`.
//!
//! The rules are `actool`'s: only the character set and the first and last
//! characters are checked, so `a--b` and `a//b` are valid identifiers.

use std::fmt;

use serde::{Serialize, Serializer};

/// Why a string is not a valid AC name; rendered after "'x' is not a valid …: ".
fn name_problem(s: &str, extra: &[char], kind: &str) -> Option<String> {
    let is_core = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    if s.is_empty() {
        return Some(format!("{kind} cannot be empty"));
    }
    if let Some(c) = s.chars().find(|c| !is_core(*c) && !extra.contains(c)) {
        let allowed: String = extra.iter().collect();
        let why = if c.is_ascii_uppercase() {
            "uppercase not allowed".to_string()
        } else {
            format!("character {c:?} not allowed (only a-z, 0-9 and \"{allowed}\")")
        };
        return Some(format!("'{s}' is not a valid {kind}: {why}"));
    }
    let first = s.chars().next().is_some_and(is_core);
    let last = s.chars().next_back().is_some_and(is_core);
    if !first || !last {
        return Some(format!(
            "'{s}' is not a valid {kind}: must start and end with a lower case letter or digit"
        ));
    }
    None
}

macro_rules! ac_string_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $extra:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Validates `s` and wraps it.
            pub fn new(s: &str) -> Result<Self, String> {
                match Self::problem(s) {
                    Some(why) => Err(why),
                    None => Ok(Self(s.to_string())),
                }
            }

            /// The reason `s` is not valid, if it is not.
            pub fn problem(s: &str) -> Option<String> {
                name_problem(s, $extra, $kind)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// True for the zero value, which `actool` accepts where the
            /// field is simply absent from the JSON.
            pub fn is_empty(&self) -> bool {
                self.0.is_empty()
            }

            /// Wraps a string the decoder has already validated (or the empty
            /// zero value).
            pub(crate) fn from_validated(s: String) -> Self {
                Self(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                Self::new(s)
            }
        }
    };
}

ac_string_type!(
    /// An image name or a label/annotation name: lower case letters, digits
    /// and `-._~/`, starting and ending with a letter or digit
    /// (`example.com/app`).
    AcIdentifier,
    "ACIdentifier",
    &['-', '.', '_', '~', '/']
);

ac_string_type!(
    /// A short name (apps, volumes, ports, mount points): lower case letters,
    /// digits and `-`, starting and ending with a letter or digit.
    AcName,
    "ACName",
    &['-']
);

/// The `acKind` of a manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AcKind {
    ImageManifest,
    PodManifest,
}

impl AcKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AcKind::ImageManifest => "ImageManifest",
            AcKind::PodManifest => "PodManifest",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "ImageManifest" => Ok(AcKind::ImageManifest),
            "PodManifest" => Ok(AcKind::PodManifest),
            "" => Err("acKind must be set (\"ImageManifest\" or \"PodManifest\")".to_string()),
            other => Err(format!(
                "bad acKind '{other}' (must be \"ImageManifest\" or \"PodManifest\")"
            )),
        }
    }
}

impl fmt::Display for AcKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for AcKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_follow_actool() {
        for ok in [
            "a",
            "example.com/app",
            "a--b",
            "a//b",
            "0",
            "coreos.com/etcd~x_y",
        ] {
            assert!(AcIdentifier::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Foo", "-a", "a-", "/a", "a b", "a:b", "é"] {
            assert!(AcIdentifier::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_follow_actool() {
        for ok in ["a", "web-1", "a--b"] {
            assert!(AcName::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a.b", "a/b", "-a", "a_", "UP"] {
            assert!(AcName::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn error_names_the_rule() {
        let err = AcIdentifier::new("Foo").unwrap_err();
        assert_eq!(
            err,
            "'Foo' is not a valid ACIdentifier: uppercase not allowed"
        );
    }
}
