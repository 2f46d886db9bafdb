//! The vulnerability database: OSV advisories in `<data>/vuln/osv.sqlite`,
//! which `image audit` and the run policy's `max-severity` read.

use std::path::{Path, PathBuf};

use crate::{Context, OpsError};

/// Where the database is.
pub fn path(ctx: &Context) -> PathBuf {
    ctx.dir().join("vuln/osv.sqlite")
}

/// Imports the OSV advisories in each of `paths` (files or directories);
/// returns how many.
pub fn import(ctx: &Context, paths: &[impl AsRef<Path>]) -> Result<usize, OpsError> {
    // Every path first: a typo imports nothing and makes no database.
    for p in paths {
        let p = p.as_ref();
        if !p.exists() {
            return Err(crate::refuse!(
                "{}: no such file or directory (give OSV JSON files or directories of them)",
                p.display()
            ));
        }
    }
    let mut conn = skiff_audit::osv::open(&path(ctx))?;
    let mut total = 0;
    for p in paths {
        total += skiff_audit::osv::import(&mut conn, p.as_ref())?;
    }
    Ok(total)
}
