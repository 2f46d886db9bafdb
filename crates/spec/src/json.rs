//! A JSON reader with the semantics of Go's `encoding/json`, which the reference
//! `actool` uses.
//!
//! Why not serde_json alone: the appc schema is defined by what `actool` accepts,
//! and Go's decoder differs from serde in ways that change verdicts. It matches
//! object keys to fields case-insensitively, decodes `null` into a plain field as
//! "leave it unset", replaces invalid UTF-8 in strings instead of failing, and
//! hands some types (resource quantities) the raw bytes of a value. This module
//! keeps every value's source span and its number literals verbatim so the typed
//! decoders in [`crate::decode`] can reproduce those rules exactly.

use std::fmt;

/// Nesting limit. Go's `encoding/json` allows 10 000 levels; skiff stops at
/// 1 000 so a hostile document cannot exhaust a thread's stack (the one
/// documented verdict difference, see docs/appc-conformance.md).
pub const MAX_DEPTH: usize = 1_000;

/// A parsed JSON value. Objects keep every key in document order, duplicates
/// included, because Go decodes them one after another.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    /// The number exactly as written, e.g. `"80"`, `"-0"`, `"1e3"`.
    Number(String),
    String(String),
    Array(Vec<Node>),
    Object(Vec<(String, Node)>),
}

/// A value with the byte range it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub start: usize,
    pub end: usize,
}

impl Value {
    /// The JSON type name used in error messages ("string", "number", …).
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        }
    }

    /// Converts to a serde_json value (for storing raw, unvalidated parts such
    /// as the value of an isolator skiff does not know).
    pub fn to_serde(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Number(n) => n
                .parse::<serde_json::Number>()
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::String(s) => serde_json::Value::String(s.clone()),
            Value::Array(items) => {
                serde_json::Value::Array(items.iter().map(|n| n.value.to_serde()).collect())
            }
            Value::Object(fields) => serde_json::Value::Object(
                fields
                    .iter()
                    .map(|(k, n)| (k.clone(), n.value.to_serde()))
                    .collect(),
            ),
        }
    }
}

/// A syntax error, located by line and column (1-based) like Go's
/// `errorutil.HighlightBytePosition` does for actool.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed JSON at line {line}, column {column}: {message}")]
pub struct SyntaxError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Parses one JSON document (surrounding whitespace allowed, nothing else).
pub fn parse(input: &[u8]) -> Result<Node, SyntaxError> {
    let mut parser = Parser { src: input, pos: 0 };
    parser.skip_whitespace();
    let node = parser.value(0)?;
    parser.skip_whitespace();
    if parser.pos < input.len() {
        return Err(parser.error(format!(
            "unexpected {} after the top-level value",
            parser.describe_current()
        )));
    }
    Ok(node)
}

struct Parser<'a> {
    src: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn error(&self, message: String) -> SyntaxError {
        let upto = &self.src[..self.pos.min(self.src.len())];
        let line = upto.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = upto.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        SyntaxError {
            line,
            column: self.pos.saturating_sub(line_start) + 1,
            message,
        }
    }

    fn describe_current(&self) -> String {
        match self.src.get(self.pos) {
            None => "end of input".to_string(),
            Some(b) if b.is_ascii_graphic() => format!("character '{}'", *b as char),
            Some(b) => format!("byte 0x{b:02x}"),
        }
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.src.get(self.pos) {
            self.pos += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Result<Node, SyntaxError> {
        if depth >= MAX_DEPTH {
            return Err(self.error("exceeded max nesting depth".to_string()));
        }
        let start = self.pos;
        let value = match self.src.get(self.pos) {
            Some(b'{') => self.object(depth)?,
            Some(b'[') => self.array(depth)?,
            Some(b'"') => Value::String(self.string()?),
            Some(b'-' | b'0'..=b'9') => Value::Number(self.number()?),
            Some(b't') => self.literal("true", Value::Bool(true))?,
            Some(b'f') => self.literal("false", Value::Bool(false))?,
            Some(b'n') => self.literal("null", Value::Null)?,
            _ => {
                return Err(self.error(format!(
                    "expected a value, found {}",
                    self.describe_current()
                )));
            }
        };
        Ok(Node {
            value,
            start,
            end: self.pos,
        })
    }

    fn literal(&mut self, word: &str, value: Value) -> Result<Value, SyntaxError> {
        if self.src[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(value)
        } else {
            Err(self.error(format!("invalid literal (expected '{word}')")))
        }
    }

    fn expect(&mut self, byte: u8, what: &str) -> Result<(), SyntaxError> {
        if self.src.get(self.pos) == Some(&byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(format!(
                "expected {what}, found {}",
                self.describe_current()
            )))
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, SyntaxError> {
        self.pos += 1; // '{'
        let mut fields = Vec::new();
        self.skip_whitespace();
        if self.src.get(self.pos) == Some(&b'}') {
            self.pos += 1;
            return Ok(Value::Object(fields));
        }
        loop {
            self.skip_whitespace();
            if self.src.get(self.pos) != Some(&b'"') {
                return Err(self.error(format!(
                    "expected a string object key, found {}",
                    self.describe_current()
                )));
            }
            let key = self.string()?;
            self.skip_whitespace();
            self.expect(b':', "':' after object key")?;
            self.skip_whitespace();
            let node = self.value(depth + 1)?;
            fields.push((key, node));
            self.skip_whitespace();
            match self.src.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Value::Object(fields));
                }
                _ => {
                    return Err(self.error(format!(
                        "expected ',' or '}}' in object, found {}",
                        self.describe_current()
                    )));
                }
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, SyntaxError> {
        self.pos += 1; // '['
        let mut items = Vec::new();
        self.skip_whitespace();
        if self.src.get(self.pos) == Some(&b']') {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        loop {
            self.skip_whitespace();
            items.push(self.value(depth + 1)?);
            self.skip_whitespace();
            match self.src.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::Array(items));
                }
                _ => {
                    return Err(self.error(format!(
                        "expected ',' or ']' in array, found {}",
                        self.describe_current()
                    )));
                }
            }
        }
    }

    fn number(&mut self) -> Result<String, SyntaxError> {
        let start = self.pos;
        let digits = |p: &mut Self| {
            let s = p.pos;
            while p.src.get(p.pos).is_some_and(u8::is_ascii_digit) {
                p.pos += 1;
            }
            p.pos - s
        };
        if self.src.get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        match self.src.get(self.pos) {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => return Err(self.error("invalid number: no digits after '-'".to_string())),
        }
        if self.src.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            if digits(self) == 0 {
                return Err(self.error("invalid number: no digits after '.'".to_string()));
            }
        }
        if let Some(b'e' | b'E') = self.src.get(self.pos) {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.src.get(self.pos) {
                self.pos += 1;
            }
            if digits(self) == 0 {
                return Err(self.error("invalid number: no digits in exponent".to_string()));
            }
        }
        // The slice is ASCII by construction.
        Ok(String::from_utf8_lossy(&self.src[start..self.pos]).into_owned())
    }

    fn hex4(&mut self) -> Result<u32, SyntaxError> {
        let Some(chunk) = self.src.get(self.pos..self.pos + 4) else {
            return Err(self.error("truncated \\u escape".to_string()));
        };
        let text = std::str::from_utf8(chunk).unwrap_or("");
        let code = u32::from_str_radix(text, 16)
            .ok()
            .filter(|_| text.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| self.error("invalid \\u escape".to_string()))?;
        self.pos += 4;
        Ok(code)
    }

    fn string(&mut self) -> Result<String, SyntaxError> {
        self.pos += 1; // opening quote
        let mut out = String::new();
        loop {
            let Some(&b) = self.src.get(self.pos) else {
                return Err(self.error("unterminated string".to_string()));
            };
            match b {
                b'"' => {
                    self.pos += 1;
                    return Ok(out);
                }
                b'\\' => {
                    self.pos += 1;
                    let Some(&esc) = self.src.get(self.pos) else {
                        return Err(self.error("unterminated escape".to_string()));
                    };
                    self.pos += 1;
                    match esc {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let code = self.hex4()?;
                            out.push(self.surrogate_pair(code)?);
                        }
                        _ => {
                            self.pos -= 1;
                            return Err(self.error(format!(
                                "invalid escape {} in string",
                                self.describe_current()
                            )));
                        }
                    }
                }
                0x00..=0x1f => {
                    return Err(self.error(format!("control byte 0x{b:02x} in string")));
                }
                _ => {
                    // Go replaces each invalid UTF-8 byte with U+FFFD.
                    let rest = &self.src[self.pos..];
                    let width = utf8_width(rest);
                    match std::str::from_utf8(&rest[..width.min(rest.len())]) {
                        Ok(s) if width > 0 => {
                            out.push_str(s);
                            self.pos += width;
                        }
                        _ => {
                            out.push('\u{FFFD}');
                            self.pos += 1;
                        }
                    }
                }
            }
        }
    }

    /// Combines a `\uD8xx\uDCxx` pair; a lone surrogate becomes U+FFFD as in Go.
    fn surrogate_pair(&mut self, first: u32) -> Result<char, SyntaxError> {
        if (0xD800..0xDC00).contains(&first) && self.src[self.pos..].starts_with(b"\\u") {
            let save = self.pos;
            self.pos += 2;
            let second = self.hex4()?;
            if (0xDC00..0xE000).contains(&second) {
                let code = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00);
                return Ok(char::from_u32(code).unwrap_or('\u{FFFD}'));
            }
            self.pos = save;
        }
        Ok(char::from_u32(first).unwrap_or('\u{FFFD}'))
    }
}

/// Length of the UTF-8 sequence announced by the first byte (0 if invalid lead).
fn utf8_width(bytes: &[u8]) -> usize {
    match bytes.first() {
        Some(0x00..=0x7f) => 1,
        Some(0xc2..=0xdf) => 2,
        Some(0xe0..=0xef) => 3,
        Some(0xf0..=0xf4) => 4,
        _ => 0,
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.value.to_serde())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_number_literals_and_duplicate_keys() {
        let node = parse(br#" {"a": 1.50, "a": -0, "b": [1e3, "x"]} "#).unwrap();
        let Value::Object(fields) = node.value else {
            panic!("not an object")
        };
        assert_eq!(fields.len(), 3);
        assert_eq!(fields[0].1.value, Value::Number("1.50".into()));
        assert_eq!(fields[1].1.value, Value::Number("-0".into()));
    }

    #[test]
    fn rejects_what_go_rejects() {
        for bad in [
            &b"{"[..],
            b"[1,]",
            b"{\"a\" 1}",
            b"01",
            b"1.",
            b"-",
            b"\"\\x\"",
            b"\"a\nb\"",
            b"{} x",
            b"",
            b"nul",
            b"\xef\xbb\xbf{}",
        ] {
            assert!(
                parse(bad).is_err(),
                "accepted {:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn replaces_invalid_utf8_and_lone_surrogates() {
        let node = parse(b"\"a\xffb\\ud800c\\ud83d\\ude00\"").unwrap();
        assert_eq!(
            node.value,
            Value::String("a\u{FFFD}b\u{FFFD}c\u{1F600}".into())
        );
    }

    #[test]
    fn reports_line_and_column() {
        let err = parse(b"{\n  \"a\": tru\n}").unwrap_err();
        assert_eq!((err.line, err.column), (2, 8));
    }

    #[test]
    fn refuses_deep_nesting_without_overflowing_the_stack() {
        let deep = "[".repeat(MAX_DEPTH + 1);
        assert!(parse(deep.as_bytes()).is_err());
    }
}
