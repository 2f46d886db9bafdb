//! Package databases: dpkg (`var/lib/dpkg/status`, and the one-file-per-
//! package `status.d/` of distroless images) and apk (`lib/apk/db/installed`).

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Ecosystem {
    Deb,
    Apk,
    /// Go modules (and the Go toolchain as `stdlib`) compiled into binaries.
    Go,
    /// Rust crates recorded by `cargo auditable` in binaries.
    Crates,
    /// rpm packages (rpmdb.sqlite).
    Rpm,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Package {
    pub ecosystem: Ecosystem,
    pub name: String,
    pub version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    /// The source package, when it differs from the name (dpkg `Source:`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// Paragraphs of a deb822 file: `Field: value` lines, continuation lines
/// starting with a space, paragraphs separated by blank lines.
fn paragraphs(text: &str) -> Vec<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut current: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
        } else if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = current.last_mut() {
                v.push('\n');
                v.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            current.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Installed packages of a dpkg status file (or a `status.d/` entry).
pub fn parse_dpkg(text: &str) -> Vec<Package> {
    paragraphs(text)
        .into_iter()
        .filter_map(|p| {
            let get = |k: &str| {
                p.iter()
                    .find(|(key, _)| key.eq_ignore_ascii_case(k))
                    .map(|(_, v)| v.clone())
            };
            // status.d entries have no Status field; a status file's
            // removed or half-installed packages are not there.
            if let Some(status) = get("Status")
                && !status.ends_with(" installed")
            {
                return None;
            }
            let name = get("Package")?;
            let version = get("Version")?;
            // `Source: name (version)`: the name only.
            let source = get("Source")
                .and_then(|s| s.split_whitespace().next().map(str::to_string))
                .filter(|s| *s != name);
            Some(Package {
                ecosystem: Ecosystem::Deb,
                name,
                version,
                arch: get("Architecture"),
                source,
            })
        })
        .collect()
}

/// Installed packages of apk's `installed` database (`P:`, `V:`, `A:`
/// lines, records separated by blank lines).
pub fn parse_apk(text: &str) -> Vec<Package> {
    let mut out = Vec::new();
    let (mut name, mut version, mut arch, mut origin) = (None, None, None, None);
    let mut flush = |name: &mut Option<String>,
                     version: &mut Option<String>,
                     arch: &mut Option<String>,
                     origin: &mut Option<String>| {
        if let (Some(n), Some(v)) = (name.take(), version.take()) {
            let source = origin.take().filter(|o| *o != n);
            out.push(Package {
                ecosystem: Ecosystem::Apk,
                name: n,
                version: v,
                arch: arch.take(),
                source,
            });
        }
        *arch = None;
        *origin = None;
    };
    for line in text.lines() {
        if line.trim().is_empty() {
            flush(&mut name, &mut version, &mut arch, &mut origin);
            continue;
        }
        match line.split_once(':') {
            Some(("P", v)) => name = Some(v.to_string()),
            Some(("V", v)) => version = Some(v.to_string()),
            Some(("A", v)) => arch = Some(v.to_string()),
            Some(("o", v)) => origin = Some(v.to_string()),
            _ => {}
        }
    }
    flush(&mut name, &mut version, &mut arch, &mut origin);
    out
}

/// `ID` and `VERSION_ID` of an os-release file.
pub fn parse_os_release(text: &str) -> Option<(String, String)> {
    let get = |key: &str| {
        text.lines().find_map(|l| {
            l.strip_prefix(key)?
                .strip_prefix('=')
                .map(|v| v.trim().trim_matches('"').to_string())
        })
    };
    Some((get("ID")?, get("VERSION_ID").unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpkg_status_keeps_installed_packages_only() {
        let status = "Package: bash\nStatus: install ok installed\nArchitecture: amd64\nVersion: 5.2.15-2+b2\nDescription: GNU shell\n more text\n\n\
                      Package: gone\nStatus: deinstall ok config-files\nVersion: 1.0\n\n\
                      Package: libc6\nStatus: install ok installed\nSource: glibc (2.36-9+deb12u4)\nVersion: 2.36-9+deb12u4\nArchitecture: amd64\n";
        let p = parse_dpkg(status);
        assert_eq!(p.len(), 2);
        assert_eq!(
            (p[0].name.as_str(), p[0].version.as_str()),
            ("bash", "5.2.15-2+b2")
        );
        assert_eq!(p[1].source.as_deref(), Some("glibc"));
        // status.d entries have no Status field.
        assert_eq!(
            parse_dpkg("Package: base-files\nVersion: 12.4+deb12u5\n").len(),
            1
        );
    }

    #[test]
    fn apk_database_and_os_release() {
        let db =
            "C:Q1abc=\nP:musl\nV:1.2.4-r2\nA:x86_64\no:musl\n\nP:busybox\nV:1.36.1-r5\nA:x86_64\n";
        let p = parse_apk(db);
        assert_eq!(p.len(), 2);
        assert_eq!(
            (p[1].name.as_str(), p[1].version.as_str()),
            ("busybox", "1.36.1-r5")
        );
        assert_eq!(
            parse_os_release("PRETTY_NAME=\"Debian GNU/Linux 12\"\nID=debian\nVERSION_ID=\"12\"\n"),
            Some(("debian".into(), "12".into()))
        );
    }
}
