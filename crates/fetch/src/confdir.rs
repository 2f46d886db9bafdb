//! `*.d/*.json` configuration directories (`peers.d`, `mirrors.d`): each
//! file one JSON document, read bounded, in name order; a bad file is
//! refused with its name and what a good one looks like.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::FetchError;

/// Largest file read.
const MAX_FILE: u64 = 1 << 20;

/// The documents of the `.json` files in `dir` (none if it does not
/// exist), with their paths, in name order. `expected` shows a good file
/// in the error for a bad one.
pub fn load<T: DeserializeOwned>(
    dir: &Path,
    expected: &str,
) -> Result<Vec<(PathBuf, T)>, FetchError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(skiff_io::io_err_at("read", dir)(e).into()),
    };
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let mut text = Vec::new();
        let read =
            skiff_io::open_regular(&file).and_then(|f| f.take(MAX_FILE + 1).read_to_end(&mut text));
        let reason = match read {
            Err(e) => Some(format!(
                "cannot read it ({e}); a {} file must be a regular file",
                dir.file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
            )),
            Ok(_) if text.len() as u64 > MAX_FILE => Some(format!("larger than {MAX_FILE} bytes")),
            Ok(_) => match serde_json::from_slice(&text) {
                Ok(doc) => {
                    out.push((file, doc));
                    continue;
                }
                Err(e) => Some(format!("{e} (expected {expected})")),
            },
        };
        if let Some(reason) = reason {
            return Err(FetchError::Config { file, reason });
        }
    }
    Ok(out)
}
