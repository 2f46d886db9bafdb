//! rpm's package database: `rpmdb.sqlite` (rpm 4.16 and later; Fedora,
//! RHEL 9, Rocky, Alma), one RPM header blob per installed package.

use std::path::Path;

use crate::{Ecosystem, Package};

/// Header tags read.
const NAME: u32 = 1000;
const VERSION: u32 = 1001;
const RELEASE: u32 = 1002;
const EPOCH: u32 = 1003;
const ARCH: u32 = 1022;
const SOURCERPM: u32 = 1044;

/// The value of `tag` in an RPM header blob: a string, or an INT32 as text.
fn tag(blob: &[u8], want: u32) -> Option<String> {
    let be32 = |at: usize| -> Option<u32> {
        Some(u32::from_be_bytes(blob.get(at..at + 4)?.try_into().ok()?))
    };
    let count = usize::try_from(be32(0)?).ok()?;
    let data_len = usize::try_from(be32(4)?).ok()?;
    let data_start = 8usize.checked_add(count.checked_mul(16)?)?;
    let data = blob.get(data_start..data_start.checked_add(data_len)?)?;
    for i in 0..count.min(100_000) {
        let e = 8 + i * 16;
        if be32(e)? != want {
            continue;
        }
        let kind = be32(e + 4)?;
        let offset = usize::try_from(be32(e + 8)?).ok()?;
        return match kind {
            // STRING, I18NSTRING: NUL-terminated.
            6 | 9 => {
                let rest = data.get(offset..)?;
                let end = rest.iter().position(|&b| b == 0)?;
                Some(String::from_utf8_lossy(&rest[..end]).into_owned())
            }
            // INT32
            4 => {
                Some(u32::from_be_bytes(data.get(offset..offset + 4)?.try_into().ok()?).to_string())
            }
            _ => None,
        };
    }
    None
}

/// One package from its header blob: version `[epoch:]version-release`.
fn package(blob: &[u8]) -> Option<Package> {
    let name = tag(blob, NAME)?;
    let version = format!("{}-{}", tag(blob, VERSION)?, tag(blob, RELEASE)?);
    let version = match tag(blob, EPOCH) {
        Some(e) if e != "0" => format!("{e}:{version}"),
        _ => version,
    };
    // The source package's name: SOURCERPM minus "-version-release.src.rpm".
    let source = tag(blob, SOURCERPM).and_then(|s| {
        let s = s.strip_suffix(".src.rpm")?;
        let (rest, _release) = s.rsplit_once('-')?;
        let (name, _version) = rest.rsplit_once('-')?;
        Some(name.to_string())
    });
    Some(Package {
        ecosystem: Ecosystem::Rpm,
        source: source.filter(|s| *s != name),
        name,
        version,
        arch: tag(blob, ARCH),
    })
}

/// The packages of the rpmdb.sqlite at `path` (opened read-only and
/// immutable: nothing is written beside it).
pub fn parse_rpmdb(path: &Path) -> Vec<Package> {
    let uri = format!("file:{}?immutable=1", path.display());
    let Ok(conn) = rusqlite::Connection::open_with_flags(
        uri,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI,
    ) else {
        return Vec::new();
    };
    let Ok(mut stmt) = conn.prepare("SELECT blob FROM Packages") else {
        return Vec::new();
    };
    let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0));
    rows.map(|rows| rows.flatten().filter_map(|b| package(&b)).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_blobs_give_nothing() {
        assert!(package(&[]).is_none());
        assert!(package(&[0, 0, 0, 9, 0, 0, 0, 0]).is_none());
        assert!(package(&[0xff; 64]).is_none());
    }
}
