//! The two string formats the schema borrows from Go's standard library:
//! `time.Parse(time.RFC3339, …)` for the `created` annotation and `url.Parse`
//! for `homepage`/`documentation`. Both are ported rule for rule from Go 1.19
//! (what `actool` is built with) because their leniencies decide verdicts:
//! Go accepts a one-digit hour and `,` before fractional seconds, and any
//! `http:` URL whose path escapes are well formed.

/// Why `s` is not an RFC 3339 date as Go parses it, if it is not.
pub fn rfc3339_problem(s: &str) -> Option<String> {
    parse_rfc3339(s.as_bytes())
        .err()
        .map(|why| format!("'{s}' is not an RFC 3339 date ({why})"))
}

fn parse_rfc3339(v: &[u8]) -> Result<(), &'static str> {
    let digit = |v: &[u8], i: usize| v.get(i).is_some_and(u8::is_ascii_digit);
    // getnum: one or two digits; `fixed` demands two.
    let getnum = |v: &[u8], fixed: bool| -> Result<(i64, usize), &'static str> {
        if !digit(v, 0) {
            return Err("expected a digit");
        }
        if !digit(v, 1) {
            if fixed {
                return Err("expected two digits");
            }
            return Ok((i64::from(v[0] - b'0'), 1));
        }
        Ok((i64::from(v[0] - b'0') * 10 + i64::from(v[1] - b'0'), 2))
    };
    let literal = |v: &[u8], c: u8| -> Result<usize, &'static str> {
        if v.first() == Some(&c) {
            Ok(1)
        } else {
            Err("unexpected character")
        }
    };
    let mut v = v;
    // Year: four bytes through Go's atoi (an optional sign, then digits).
    if v.len() < 4 || !digit(v, 0) {
        return Err("bad year");
    }
    let year = go_atoi(&v[..4]).ok_or("bad year")?;
    v = &v[4..];
    v = &v[literal(v, b'-')?..];
    let (month, n) = getnum(v, true)?;
    if !(1..=12).contains(&month) {
        return Err("month out of range");
    }
    v = &v[n..];
    v = &v[literal(v, b'-')?..];
    let (day, n) = getnum(v, true)?;
    v = &v[n..];
    v = &v[literal(v, b'T')?..];
    let (hour, n) = getnum(v, false)?;
    if !(0..24).contains(&hour) {
        return Err("hour out of range");
    }
    v = &v[n..];
    v = &v[literal(v, b':')?..];
    let (minute, n) = getnum(v, true)?;
    if !(0..60).contains(&minute) {
        return Err("minute out of range");
    }
    v = &v[n..];
    v = &v[literal(v, b':')?..];
    let (second, n) = getnum(v, true)?;
    if !(0..60).contains(&second) {
        return Err("second out of range");
    }
    v = &v[n..];
    // Fractional seconds are accepted after the seconds although the layout
    // has none, with '.' or ','.
    if v.len() >= 2 && matches!(v[0], b'.' | b',') && digit(v, 1) {
        let n = 1 + v[1..].iter().take_while(|b| b.is_ascii_digit()).count();
        v = &v[n..];
    }
    // Zone: "Z" or ±hh:mm.
    if v.first() == Some(&b'Z') {
        v = &v[1..];
    } else {
        if v.len() < 6 || v[3] != b':' {
            return Err("bad time zone");
        }
        getnum(&v[1..3], true)?;
        getnum(&v[4..6], true)?;
        if !matches!(v[0], b'+' | b'-') {
            return Err("bad time zone sign");
        }
        v = &v[6..];
    }
    if !v.is_empty() {
        return Err("extra text after the date");
    }
    if day < 1 || day > days_in_month(month, year) {
        return Err("day out of range");
    }
    Ok(())
}

/// Go's internal `atoi`: optional sign, then only digits.
fn go_atoi(b: &[u8]) -> Option<i64> {
    let digits = b
        .strip_prefix(b"-")
        .or_else(|| b.strip_prefix(b"+"))
        .unwrap_or(b);
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut x: i64 = 0;
    for d in digits {
        x = x * 10 + i64::from(d - b'0');
    }
    Some(if b.first() == Some(&b'-') { -x } else { x })
}

fn days_in_month(month: i64, year: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Why `s` is not an `http`/`https` URL as Go's `url.Parse` sees it, if not.
pub fn http_url_problem(s: &str) -> Option<String> {
    match parse_url_scheme(s) {
        Err(why) => Some(format!("'{s}' is not a valid URL ({why})")),
        Ok(scheme) if scheme == "http" || scheme == "https" => None,
        Ok(_) => Some(format!(
            "'{s}' is not a valid URL (scheme must be http or https)"
        )),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Escaping {
    Path,
    Fragment,
    Host,
    Zone,
    UserPassword,
}

/// Ports `net/url.Parse` far enough to tell valid from invalid; returns the
/// lower-cased scheme.
fn parse_url_scheme(raw: &str) -> Result<String, String> {
    let (u, fragment) = raw.split_once('#').unwrap_or((raw, ""));
    if u.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err("invalid control character".to_string());
    }
    if u == "*" {
        return Ok(String::new());
    }
    let (scheme, rest) = split_scheme(u)?;
    let scheme = scheme.to_ascii_lowercase();
    let rest = match rest.strip_suffix('?') {
        Some(r) if rest.matches('?').count() == 1 => r,
        _ => rest.split_once('?').map_or(rest, |(p, _)| p),
    };
    if !rest.starts_with('/') {
        if !scheme.is_empty() {
            // An opaque URL such as "http:foo": Go validates nothing more.
            return finish_fragment(fragment, scheme);
        }
        if rest.split('/').next().is_some_and(|seg| seg.contains(':')) {
            return Err("first path segment cannot contain a colon".to_string());
        }
    }
    let mut path = rest;
    if (!scheme.is_empty() || !rest.starts_with("///")) && rest.starts_with("//") {
        let authority_and_path = &rest[2..];
        let (authority, p) = match authority_and_path.find('/') {
            Some(i) => authority_and_path.split_at(i),
            None => (authority_and_path, ""),
        };
        parse_authority(authority)?;
        path = p;
    }
    unescape(path, Escaping::Path)?;
    finish_fragment(fragment, scheme)
}

fn finish_fragment(fragment: &str, scheme: String) -> Result<String, String> {
    unescape(fragment, Escaping::Fragment)?;
    Ok(scheme)
}

fn split_scheme(raw: &str) -> Result<(&str, &str), String> {
    for (i, c) in raw.bytes().enumerate() {
        match c {
            b'a'..=b'z' | b'A'..=b'Z' => {}
            b'0'..=b'9' | b'+' | b'-' | b'.' if i > 0 => {}
            b':' if i == 0 => return Err("missing protocol scheme".to_string()),
            b':' => return Ok((&raw[..i], &raw[i + 1..])),
            _ => return Ok(("", raw)),
        }
    }
    Ok(("", raw))
}

fn parse_authority(authority: &str) -> Result<(), String> {
    let (userinfo, host) = match authority.rfind('@') {
        Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
        None => (None, authority),
    };
    parse_host(host)?;
    if let Some(userinfo) = userinfo {
        let valid = userinfo
            .chars()
            .all(|r| r.is_ascii_alphanumeric() || "-._:~!$&'()*+,;=%@".contains(r));
        if !valid {
            return Err("invalid userinfo".to_string());
        }
        let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
        unescape(user, Escaping::UserPassword)?;
        unescape(password, Escaping::UserPassword)?;
    }
    Ok(())
}

fn valid_optional_port(port: &str) -> bool {
    port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
}

fn parse_host(host: &str) -> Result<(), String> {
    if host.starts_with('[') {
        let Some(i) = host.rfind(']') else {
            return Err("missing ']' in host".to_string());
        };
        if !valid_optional_port(&host[i + 1..]) {
            return Err(format!("invalid port {:?} after host", &host[i + 1..]));
        }
        if let Some(zone) = host[..i].find("%25") {
            unescape(&host[..zone], Escaping::Host)?;
            unescape(&host[zone..i], Escaping::Zone)?;
            unescape(&host[i..], Escaping::Host)?;
            return Ok(());
        }
    } else if let Some(i) = host.rfind(':')
        && !valid_optional_port(&host[i..])
    {
        return Err(format!("invalid port {:?} after host", &host[i..]));
    }
    unescape(host, Escaping::Host)
}

fn unhex(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => 0,
    }
}

/// Go's `shouldEscape` for the host and zone modes (the only ones where an
/// unescaped byte can be an error).
fn host_byte_must_be_escaped(c: u8) -> bool {
    !(c.is_ascii_alphanumeric() || b"!$&'()*+,;=:[]<>\"-_.~".contains(&c))
}

/// Checks the `%` escapes (and, in a host, the bytes) the way Go's `unescape` does.
fn unescape(s: &str, mode: Escaping) -> Result<(), String> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                if i + 2 >= b.len()
                    || !b[i + 1].is_ascii_hexdigit()
                    || !b[i + 2].is_ascii_hexdigit()
                {
                    let end = (i + 3).min(b.len());
                    return Err(format!(
                        "invalid URL escape {:?}",
                        String::from_utf8_lossy(&b[i..end])
                    ));
                }
                let escape = &b[i..i + 3];
                if mode == Escaping::Host && unhex(b[i + 1]) < 8 && escape != b"%25" {
                    return Err(format!(
                        "invalid URL escape {:?}",
                        String::from_utf8_lossy(escape)
                    ));
                }
                if mode == Escaping::Zone {
                    let v = (unhex(b[i + 1]) << 4) | unhex(b[i + 2]);
                    if escape != b"%25" && v != b' ' && host_byte_must_be_escaped(v) {
                        return Err(format!(
                            "invalid URL escape {:?}",
                            String::from_utf8_lossy(escape)
                        ));
                    }
                }
                i += 3;
            }
            c => {
                if matches!(mode, Escaping::Host | Escaping::Zone)
                    && c < 0x80
                    && host_byte_must_be_escaped(c)
                {
                    return Err(format!("invalid character {:?} in host name", c as char));
                }
                i += 1;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        for ok in [
            "2014-10-27T19:32:27.67021798Z",
            "2014-10-27T19:32:27Z",
            "2014-10-27T9:32:27+01:00",
            "2016-02-29T00:00:00,5Z",
            "2014-10-27T19:32:27-07:00",
        ] {
            assert_eq!(rfc3339_problem(ok), None, "{ok}");
        }
        for bad in [
            "",
            "2014-10-27",
            "2014-10-27 19:32:27Z",
            "2014-13-27T19:32:27Z",
            "2015-02-29T00:00:00Z",
            "2014-10-27T24:00:00Z",
            "2014-10-27T19:32:27",
            "2014-10-27T19:32:27z",
            "2014-10-27T19:32:27Zx",
            "2014-10-27T19:32:60Z",
        ] {
            assert!(rfc3339_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn urls() {
        for ok in [
            "https://github.com/appc/spec",
            "HTTP://example.com",
            "http:opaque%zz",
            "http://[::1]:80/x#frag",
            "http://user:pa%20ss@host/",
            "http://host/a?%zz",
        ] {
            assert_eq!(http_url_problem(ok), None, "{ok}");
        }
        for bad in [
            "",
            "ftp://example.com",
            "example.com",
            "://x",
            "http://host:port/",
            "http://ho st/",
            "http://host/%zz",
            "http://host/#%z",
            "http://[::1/",
            "http://a\u{7f}b",
        ] {
            assert!(http_url_problem(bad).is_some(), "{bad}");
        }
    }
}
