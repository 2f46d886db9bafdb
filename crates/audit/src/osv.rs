//! Offline vulnerability matching: OSV advisories (the osv.dev export
//! format) kept in a local SQLite database, matched against an inventory
//! with each ecosystem's own version order.

use std::cmp::Ordering;
use std::path::Path;

use rusqlite::{Connection, params};
use serde::Serialize;
use serde_json::Value;

use crate::version::{apk_cmp, dpkg_cmp, semver_cmp};
use crate::{AuditError, Ecosystem, Inventory, Package};

/// One match of an advisory against a package.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub package: String,
    pub version: String,
    pub id: String,
    pub aliases: Vec<String>,
    pub summary: String,
    /// none, low, medium, high, critical, or unknown.
    pub severity: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fixed: Option<String>,
}

fn db_err(e: rusqlite::Error) -> AuditError {
    AuditError::Image(format!("vulnerability database: {e}"))
}

/// Opens (creating) the database at `path`.
pub fn open(path: &Path) -> Result<Connection, AuditError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(skiff_io::io_err_at("create", dir))?;
    }
    let conn = Connection::open(path).map_err(db_err)?;
    conn.execute_batch(
        "PRAGMA journal_mode=WAL;
         CREATE TABLE IF NOT EXISTS advisories (id TEXT PRIMARY KEY, json TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS affected (ecosystem TEXT NOT NULL, name TEXT NOT NULL, id TEXT NOT NULL);
         CREATE INDEX IF NOT EXISTS affected_name ON affected (name);",
    )
    .map_err(db_err)?;
    Ok(conn)
}

/// Imports every `*.json` OSV advisory under `path` (a file or a
/// directory, recursively); returns how many were loaded. A file that is
/// not an advisory is an error naming it.
pub fn import(conn: &mut Connection, path: &Path) -> Result<usize, AuditError> {
    let mut files = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            let entries = std::fs::read_dir(&p).map_err(skiff_io::io_err_at("list", &p))?;
            stack.extend(entries.flatten().map(|e| e.path()));
        } else if p.extension().is_some_and(|e| e == "json") {
            files.push(p);
        }
    }
    files.sort();
    let tx = conn.transaction().map_err(db_err)?;
    for f in &files {
        let bad = |why: String| AuditError::Image(format!("{}: {why}", f.display()));
        let text = std::fs::read(f).map_err(|e| bad(e.to_string()))?;
        let v: Value =
            serde_json::from_slice(&text).map_err(|e| bad(format!("malformed JSON: {e}")))?;
        let id = v["id"]
            .as_str()
            .ok_or_else(|| bad("no \"id\": not an OSV advisory".into()))?;
        tx.execute("DELETE FROM affected WHERE id = ?1", params![id])
            .map_err(db_err)?;
        tx.execute(
            "INSERT OR REPLACE INTO advisories (id, json) VALUES (?1, ?2)",
            params![id, v.to_string()],
        )
        .map_err(db_err)?;
        for a in v["affected"].as_array().into_iter().flatten() {
            let (Some(eco), Some(name)) = (
                a["package"]["ecosystem"].as_str(),
                a["package"]["name"].as_str(),
            ) else {
                continue;
            };
            tx.execute(
                "INSERT INTO affected (ecosystem, name, id) VALUES (?1, ?2, ?3)",
                params![eco, name, id],
            )
            .map_err(db_err)?;
        }
    }
    tx.commit().map_err(db_err)?;
    Ok(files.len())
}

/// The OSV ecosystem of a package in a distribution, e.g. `Debian:12`.
fn ecosystem_matches(eco: &str, p: &Package, distro: Option<&(String, String)>) -> bool {
    let (base, release) = eco.split_once(':').unwrap_or((eco, ""));
    let ours = match p.ecosystem {
        Ecosystem::Deb => "Debian",
        Ecosystem::Apk => "Alpine",
        Ecosystem::Go => "Go",
        Ecosystem::Crates => "crates.io",
        // rpm version ordering is not implemented: no rpm matching yet.
        Ecosystem::Rpm => return false,
    };
    if !base.eq_ignore_ascii_case(ours) {
        return false;
    }
    match (release, distro) {
        _ if matches!(p.ecosystem, Ecosystem::Go | Ecosystem::Crates) => true,
        ("", _) | (_, None) => true,
        (r, Some((_, v))) => {
            // Alpine releases are named v3.19; os-release says 3.19.1.
            let r = r.trim_start_matches('v');
            v == r || v.starts_with(&format!("{r}."))
        }
    }
}

fn compare(eco: Ecosystem, a: &str, b: &str) -> Ordering {
    match eco {
        Ecosystem::Deb => dpkg_cmp(a, b),
        Ecosystem::Apk => apk_cmp(a, b),
        Ecosystem::Go | Ecosystem::Crates => semver_cmp(a, b),
        Ecosystem::Rpm => a.cmp(b),
    }
}

/// Whether `version` is in an OSV range (events in order; "0" introduces
/// from the start). Returns the fix that ends the range, if any.
fn in_range(range: &Value, version: &str, eco: Ecosystem) -> (bool, Option<String>) {
    let cmp: &dyn Fn(&str, &str) -> Ordering = match range["type"].as_str() {
        Some("SEMVER") => &semver_cmp,
        _ => &|a: &str, b: &str| compare(eco, a, b),
    };
    let mut affected = false;
    let mut fix = None;
    for e in range["events"].as_array().into_iter().flatten() {
        if let Some(i) = e["introduced"].as_str() {
            if i == "0" || cmp(version, i) != Ordering::Less {
                affected = true;
            }
        } else if let Some(f) = e["fixed"].as_str() {
            if cmp(version, f) != Ordering::Less {
                affected = false;
            } else if affected && fix.is_none() {
                fix = Some(f.to_string());
            }
        } else if let Some(l) = e["last_affected"].as_str()
            && cmp(version, l) == Ordering::Greater
        {
            affected = false;
        }
    }
    (affected, fix)
}

/// CVSS v3.x base score from a vector (`CVSS:3.1/AV:N/AC:L/...`).
pub fn cvss3_score(vector: &str) -> Option<f64> {
    let mut m = std::collections::HashMap::new();
    for part in vector.split('/').skip(1) {
        let (k, v) = part.split_once(':')?;
        m.insert(k, v);
    }
    let changed = *m.get("S")? == "C";
    let av = match *m.get("AV")? {
        "N" => 0.85,
        "A" => 0.62,
        "L" => 0.55,
        "P" => 0.2,
        _ => return None,
    };
    let ac = match *m.get("AC")? {
        "L" => 0.77,
        "H" => 0.44,
        _ => return None,
    };
    let pr = match (*m.get("PR")?, changed) {
        ("N", _) => 0.85,
        ("L", false) => 0.62,
        ("L", true) => 0.68,
        ("H", false) => 0.27,
        ("H", true) => 0.5,
        _ => return None,
    };
    let ui = match *m.get("UI")? {
        "N" => 0.85,
        "R" => 0.62,
        _ => return None,
    };
    let cia = |k: &str| match m.get(k).copied() {
        Some("H") => Some(0.56),
        Some("L") => Some(0.22),
        Some("N") => Some(0.0),
        _ => None,
    };
    let iss = 1.0 - (1.0 - cia("C")?) * (1.0 - cia("I")?) * (1.0 - cia("A")?);
    let impact = if changed {
        7.52 * (iss - 0.029) - 3.25 * (iss - 0.02f64).powi(15)
    } else {
        6.42 * iss
    };
    if impact <= 0.0 {
        return Some(0.0);
    }
    let exploitability = 8.22 * av * ac * pr * ui;
    let raw = if changed {
        (1.08 * (impact + exploitability)).min(10.0)
    } else {
        (impact + exploitability).min(10.0)
    };
    // CVSS 3.1 Roundup: the smallest number with one decimal >= raw.
    let int = (raw * 100_000.0).round() as i64;
    Some(if int % 10_000 == 0 {
        int as f64 / 100_000.0
    } else {
        ((int / 10_000) + 1) as f64 / 10.0
    })
}

fn label(score: f64) -> &'static str {
    match score {
        0.0 => "none",
        s if s < 4.0 => "low",
        s if s < 7.0 => "medium",
        s if s < 9.0 => "high",
        _ => "critical",
    }
}

/// The advisory's severity: the highest CVSS v3 score it carries, else a
/// severity word from its database- or ecosystem-specific fields.
fn severity(v: &Value) -> (String, Option<f64>) {
    let score = v["severity"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["type"].as_str().is_some_and(|t| t.starts_with("CVSS_V3")))
        .filter_map(|s| s["score"].as_str().and_then(cvss3_score))
        .fold(None, |best: Option<f64>, s| {
            Some(best.map_or(s, |b| b.max(s)))
        });
    if let Some(s) = score {
        return (label(s).to_string(), Some(s));
    }
    let word = v["database_specific"]["severity"]
        .as_str()
        .or_else(|| v["affected"][0]["ecosystem_specific"]["urgency"].as_str())
        .or_else(|| v["affected"][0]["database_specific"]["severity"].as_str())
        .map(|w| w.to_ascii_lowercase());
    (word.unwrap_or_else(|| "unknown".into()), None)
}

/// The advisories that affect the inventory's packages.
pub fn findings(conn: &Connection, inv: &Inventory) -> Result<Vec<Finding>, AuditError> {
    let mut out = Vec::new();
    let mut stmt = conn
        .prepare("SELECT a.ecosystem, a.id, v.json FROM affected a JOIN advisories v ON v.id = a.id WHERE a.name = ?1")
        .map_err(db_err)?;
    for p in &inv.packages {
        // Debian's advisories name source packages.
        let names: Vec<&str> = std::iter::once(p.name.as_str())
            .chain(p.source.as_deref())
            .collect();
        let mut seen = std::collections::HashSet::new();
        for name in names {
            let rows: Vec<(String, String, String)> = stmt
                .query_map(params![name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .map_err(db_err)?
                .collect::<Result<_, _>>()
                .map_err(db_err)?;
            for (eco, id, json) in rows {
                if !ecosystem_matches(&eco, p, inv.distro.as_ref()) || seen.contains(&id) {
                    continue;
                }
                let Ok(v) = serde_json::from_str::<Value>(&json) else {
                    continue;
                };
                for a in v["affected"].as_array().into_iter().flatten() {
                    if a["package"]["name"].as_str() != Some(name)
                        || !ecosystem_matches(
                            a["package"]["ecosystem"].as_str().unwrap_or(""),
                            p,
                            inv.distro.as_ref(),
                        )
                    {
                        continue;
                    }
                    let listed = a["versions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|x| x.as_str() == Some(p.version.as_str()));
                    let mut hit = listed;
                    let mut fixed = None;
                    for r in a["ranges"].as_array().into_iter().flatten() {
                        let (inside, fix) = in_range(r, &p.version, p.ecosystem);
                        if inside {
                            hit = true;
                            fixed = fixed.or(fix);
                        }
                    }
                    if hit && seen.insert(id.clone()) {
                        let (sev, score) = severity(&v);
                        out.push(Finding {
                            package: p.name.clone(),
                            version: p.version.clone(),
                            id: id.clone(),
                            aliases: v["aliases"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .filter_map(|x| x.as_str().map(str::to_string))
                                .collect(),
                            summary: v["summary"].as_str().unwrap_or("").to_string(),
                            severity: sev,
                            score,
                            fixed,
                        });
                    }
                }
            }
        }
    }
    out.sort_by(|a, b| (&a.package, &a.id).cmp(&(&b.package, &b.id)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cvss_base_scores() {
        // Scores as NVD's calculator gives them.
        assert_eq!(
            cvss3_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"),
            Some(9.8)
        );
        assert_eq!(
            cvss3_score("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H"),
            Some(7.8)
        );
        assert_eq!(
            cvss3_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H"),
            Some(10.0)
        );
        assert_eq!(
            cvss3_score("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:L/I:N/A:N"),
            Some(3.7)
        );
        assert_eq!(
            cvss3_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N"),
            Some(0.0)
        );
        assert_eq!(cvss3_score("garbage"), None);
    }

    #[test]
    fn ranges() {
        let r: Value = serde_json::json!({"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.36-9+deb12u3"}]});
        assert_eq!(
            in_range(&r, "2.36-9+deb12u2", Ecosystem::Deb),
            (true, Some("2.36-9+deb12u3".into()))
        );
        assert!(!in_range(&r, "2.36-9+deb12u3", Ecosystem::Deb).0);
        let last: Value = serde_json::json!({"type": "ECOSYSTEM", "events": [{"introduced": "1.0"}, {"last_affected": "1.2"}]});
        assert!(in_range(&last, "1.2", Ecosystem::Deb).0);
        assert!(!in_range(&last, "1.2.1", Ecosystem::Deb).0);
        assert!(!in_range(&last, "0.9", Ecosystem::Deb).0);
    }
}
