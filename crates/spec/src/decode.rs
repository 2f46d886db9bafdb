//! Typed decoding of [`crate::json`] trees with Go's `encoding/json` rules,
//! collecting every problem (with the JSON path of the field) instead of
//! stopping at the first.
//!
//! The Go rules that matter here:
//! * object keys match field names case-insensitively (plus the Kelvin sign
//!   and long s, which Go folds to `k` and `s`); unknown keys are ignored;
//! * `null` leaves a plain field unset, but types with their own
//!   `UnmarshalJSON` (names, versions, hashes) see it as `""` and reject it;
//! * integers must be written as integers (`80`, not `80.0` or `8e1`).

use std::fmt;

use crate::json::{Node, Value};

/// One reason a document is invalid, located by its JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Path of the offending field, e.g. `app.isolators[0].value.set`.
    pub field: String,
    /// The rule it breaks.
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "{}: {}", self.field, self.reason)
        }
    }
}

/// The decoding context: the source text (some types read raw bytes) and the
/// problems found so far.
pub(crate) struct Ctx<'a> {
    pub src: &'a [u8],
    pub problems: Vec<Problem>,
}

impl<'a> Ctx<'a> {
    pub fn new(src: &'a [u8]) -> Self {
        Ctx {
            src,
            problems: Vec::new(),
        }
    }

    pub fn fail(&mut self, field: &str, reason: impl Into<String>) {
        self.problems.push(Problem {
            field: field.to_string(),
            reason: reason.into(),
        });
    }

    /// Records `problem` if there is one; returns whether the value was fine.
    pub fn check(&mut self, field: &str, problem: Option<String>) -> bool {
        match problem {
            Some(reason) => {
                self.fail(field, reason);
                false
            }
            None => true,
        }
    }

    fn wrong_type(&mut self, field: &str, want: &str, node: &Node) {
        self.fail(
            field,
            format!("must be {want}, not {}", article(node.value.kind())),
        );
    }

    /// The raw source bytes of a value.
    pub fn raw(&self, node: &Node) -> &'a [u8] {
        self.src.get(node.start..node.end).unwrap_or_default()
    }

    /// A plain Go string field: `null` leaves it unset (`None`).
    pub fn string(&mut self, node: &Node, field: &str) -> Option<String> {
        match &node.value {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            _ => {
                self.wrong_type(field, "a string", node);
                None
            }
        }
    }

    /// A string read by a type with its own `UnmarshalJSON`: `null` is `""`.
    pub fn custom_string(&mut self, node: &Node, field: &str) -> Option<String> {
        match &node.value {
            Value::Null => Some(String::new()),
            _ => self.string(node, field),
        }
    }

    pub fn boolean(&mut self, node: &Node, field: &str) -> Option<bool> {
        match &node.value {
            Value::Bool(b) => Some(*b),
            Value::Null => None,
            _ => {
                self.wrong_type(field, "true or false", node);
                None
            }
        }
    }

    /// Go `uint` (64-bit): only a plain non-negative integer literal fits.
    pub fn uint(&mut self, node: &Node, field: &str) -> Option<u64> {
        match &node.value {
            Value::Number(n) => {
                let parsed = n
                    .bytes()
                    .all(|b| b.is_ascii_digit())
                    .then(|| n.parse::<u64>().ok())
                    .flatten();
                if parsed.is_none() {
                    self.fail(field, format!("{n} is not a non-negative whole number"));
                }
                parsed
            }
            Value::Null => None,
            _ => {
                self.wrong_type(field, "a number", node);
                None
            }
        }
    }

    /// Go `int` (64-bit): an integer literal, optionally negative.
    pub fn int(&mut self, node: &Node, field: &str) -> Option<i64> {
        match &node.value {
            Value::Number(n) => {
                let parsed = crate::semver::parse_go_int(n);
                if parsed.is_none() {
                    self.fail(field, format!("{n} is not a whole number"));
                }
                parsed
            }
            Value::Null => None,
            _ => {
                self.wrong_type(field, "a number", node);
                None
            }
        }
    }

    /// Reports every name that repeats an earlier one in a list, at
    /// `field[i].name`, as "duplicate {what} 'name'".
    pub fn check_unique<'n>(
        &mut self,
        field: &str,
        what: &str,
        names: impl IntoIterator<Item = &'n str>,
    ) {
        let mut seen = std::collections::HashSet::new();
        for (i, name) in names.into_iter().enumerate() {
            if !seen.insert(name) {
                self.fail(
                    &format!("{field}[{i}].name"),
                    format!("duplicate {what} '{name}'"),
                );
            }
        }
    }

    /// A JSON array decoded element by element; `null` is an empty list.
    pub fn array<T>(
        &mut self,
        node: &Node,
        field: &str,
        mut element: impl FnMut(&mut Self, &Node, &str) -> T,
    ) -> Option<Vec<T>> {
        match &node.value {
            Value::Array(items) => Some(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| element(self, item, &format!("{field}[{i}]")))
                    .collect(),
            ),
            Value::Null => Some(Vec::new()),
            _ => {
                self.wrong_type(field, "an array", node);
                None
            }
        }
    }

    /// The fields of an object, each matched against `names` the way Go
    /// matches keys to struct fields. `None` for `null` or a wrong type.
    pub fn object<'n>(
        &mut self,
        node: &'n Node,
        field: &str,
        names: &[&'static str],
    ) -> Option<Vec<(&'static str, &'n Node)>> {
        match &node.value {
            Value::Object(fields) => Some(
                fields
                    .iter()
                    .filter_map(|(key, value)| {
                        names
                            .iter()
                            .find(|name| go_key_matches(key, name))
                            .map(|name| (*name, value))
                    })
                    .collect(),
            ),
            Value::Null => None,
            _ => {
                self.wrong_type(field, "an object", node);
                None
            }
        }
    }

    /// A JSON object of strings (Go `map[string]string`).
    pub fn string_map(
        &mut self,
        node: &Node,
        field: &str,
    ) -> Option<std::collections::BTreeMap<String, String>> {
        match &node.value {
            Value::Object(fields) => Some(
                fields
                    .iter()
                    .map(|(k, v)| {
                        let value = self.string(v, &join(field, k)).unwrap_or_default();
                        (k.clone(), value)
                    })
                    .collect(),
            ),
            Value::Null => Some(Default::default()),
            _ => {
                self.wrong_type(field, "an object", node);
                None
            }
        }
    }
}

fn article(kind: &str) -> String {
    match kind {
        "array" | "object" => format!("an {kind}"),
        "null" => "null".to_string(),
        _ => format!("a {kind}"),
    }
}

/// `parent.key`, or `key` at the top level.
pub(crate) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// Go's case folding for struct field names (`bytes.EqualFold` plus the
/// Kelvin sign for `k` and the long s for `s`).
fn go_key_matches(key: &str, name: &str) -> bool {
    let mut key_chars = key.chars();
    for n in name.chars() {
        let Some(k) = key_chars.next() else {
            return false;
        };
        let same = k.eq_ignore_ascii_case(&n)
            || (n.eq_ignore_ascii_case(&'k') && k == '\u{212A}')
            || (n.eq_ignore_ascii_case(&'s') && k == '\u{17F}');
        if !same {
            return false;
        }
    }
    key_chars.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_fold_like_go() {
        assert!(go_key_matches("ACKIND", "acKind"));
        assert!(go_key_matches("ac\u{212A}ind", "acKind"));
        assert!(go_key_matches("la\u{17F}t", "last"));
        assert!(!go_key_matches("acKin", "acKind"));
        assert!(!go_key_matches("acKinds", "acKind"));
    }

    #[test]
    fn integers_must_be_written_as_integers() {
        let src = b"[80, 80.0, 8e1, -1, 18446744073709551616]";
        let node = crate::json::parse(src).unwrap();
        let mut ctx = Ctx::new(src);
        let got = ctx.array(&node, "ports", |c, n, f| c.uint(n, f)).unwrap();
        assert_eq!(got, vec![Some(80), None, None, None, None]);
        assert_eq!(ctx.problems.len(), 4);
    }
}
