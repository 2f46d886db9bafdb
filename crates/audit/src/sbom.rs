//! CycloneDX 1.5 JSON with package URLs (purl).

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};

use crate::{Ecosystem, Inventory, Package};

/// Everything but RFC 3986's unreserved characters.
const RESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes a purl component (unreserved characters stay).
fn pct(s: &str) -> String {
    utf8_percent_encode(s, RESERVED).to_string()
}

/// The package URL: `pkg:deb/debian/bash@5.2.15-2%2Bb2?arch=amd64&distro=debian-12`.
pub fn purl(p: &Package, distro: Option<&(String, String)>) -> String {
    let (kind, namespace) = match p.ecosystem {
        Ecosystem::Deb => ("deb", distro.map_or("debian", |d| d.0.as_str())),
        Ecosystem::Apk => ("apk", distro.map_or("alpine", |d| d.0.as_str())),
        Ecosystem::Rpm => ("rpm", distro.map_or("redhat", |d| d.0.as_str())),
        Ecosystem::Crates => return format!("pkg:cargo/{}@{}", pct(&p.name), pct(&p.version)),
        // pkg:golang/github.com/x/y@v1.2.3: the path's slashes stay.
        Ecosystem::Go => {
            let path: Vec<String> = p.name.split('/').map(pct).collect();
            return format!("pkg:golang/{}@{}", path.join("/"), pct(&p.version));
        }
    };
    let mut qualifiers = Vec::new();
    // rpm's epoch is a qualifier in package URLs, not part of the version.
    let mut version = p.version.as_str();
    if p.ecosystem == Ecosystem::Rpm
        && let Some((epoch, rest)) = p.version.split_once(':')
    {
        qualifiers.push(format!("epoch={}", pct(epoch)));
        version = rest;
    }
    if let Some(a) = &p.arch {
        qualifiers.push(format!("arch={}", pct(a)));
    }
    if let Some((id, version)) = distro.filter(|d| !d.1.is_empty()) {
        qualifiers.push(format!("distro={}", pct(&format!("{id}-{version}"))));
    }
    if let Some(src) = &p.source {
        qualifiers.push(format!("upstream={}", pct(src)));
    }
    let mut s = format!(
        "pkg:{kind}/{}/{}@{}",
        pct(namespace),
        pct(&p.name),
        pct(version)
    );
    if !qualifiers.is_empty() {
        s.push('?');
        s.push_str(&qualifiers.join("&"));
    }
    s
}

/// `secs` since the epoch as RFC 3339 UTC (`2026-11-26T08:40:00Z`).
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A severity as CycloneDX names them.
fn cdx_severity(s: &str) -> &'static str {
    match s {
        "critical" => "critical",
        "high" => "high",
        "medium" | "moderate" => "medium",
        "low" | "unimportant" => "low",
        "none" => "none",
        _ => "unknown",
    }
}

/// The `vulnerabilities` of an SBOM: each finding, rated, affecting its
/// package's component.
pub fn vulnerabilities(inventory: &Inventory, findings: &[crate::osv::Finding]) -> Value {
    let list: Vec<Value> = findings
        .iter()
        .map(|f| {
            let affects: Vec<Value> = inventory
                .packages
                .iter()
                .filter(|p| p.name == f.package && p.version == f.version)
                .map(|p| json!({"ref": purl(p, inventory.distro.as_ref())}))
                .collect();
            let mut rating = json!({"severity": cdx_severity(&f.severity)});
            if let Some(score) = f.score {
                rating["score"] = json!(score);
                rating["method"] = json!("CVSSv31");
            }
            let mut v = json!({
                "bom-ref": format!("{}:{}", f.id, f.package),
                "id": f.id,
                "source": {"name": "OSV", "url": format!("https://osv.dev/vulnerability/{}", f.id)},
                "ratings": [rating],
                "affects": affects,
            });
            if !f.summary.is_empty() {
                v["description"] = json!(f.summary);
            }
            if let Some(fixed) = &f.fixed {
                v["recommendation"] = json!(format!("upgrade {} to {fixed} or later", f.package));
            }
            if !f.aliases.is_empty() {
                v["references"] = json!(
                    f.aliases
                        .iter()
                        .map(|a| json!({"id": a, "source": {"name": "NVD"}}))
                        .collect::<Vec<_>>()
                );
            }
            v
        })
        .collect();
    Value::Array(list)
}

/// The SBOM of `inventory` for the image called `name` (`version`).
pub fn cyclonedx(
    inventory: &Inventory,
    name: &str,
    version: Option<&str>,
    serial: &str,
    timestamp: &str,
) -> Value {
    let components: Vec<Value> = inventory
        .packages
        .iter()
        .map(|p| {
            let purl = purl(p, inventory.distro.as_ref());
            json!({"type": "library", "bom-ref": purl, "name": p.name, "version": p.version, "purl": purl})
        })
        .collect();
    let mut image = json!({"type": "container", "bom-ref": format!("image:{name}"), "name": name});
    if let Some(v) = version {
        image["version"] = json!(v);
    }
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": format!("urn:uuid:{serial}"),
        "version": 1,
        "metadata": {
            "timestamp": timestamp,
            "tools": {"components": [{"type": "application", "name": "skiff", "version": env!("CARGO_PKG_VERSION")}]},
            "component": image,
        },
        "components": components,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_681_060), "2026-11-26T08:17:40Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn purls_encode_versions_and_qualifiers() {
        let p = Package {
            ecosystem: Ecosystem::Deb,
            name: "libc6".into(),
            version: "2.36-9+deb12u4".into(),
            arch: Some("amd64".into()),
            source: Some("glibc".into()),
        };
        assert_eq!(
            purl(&p, Some(&("debian".into(), "12".into()))),
            "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12&upstream=glibc"
        );
        let epoch = Package {
            version: "1:2.38.1-5".into(),
            arch: None,
            source: None,
            ..p
        };
        assert_eq!(purl(&epoch, None), "pkg:deb/debian/libc6@1%3A2.38.1-5");
    }
}
