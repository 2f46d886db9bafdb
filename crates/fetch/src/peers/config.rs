//! `peers.d/*.json`: the peers every fetch may use, one or more files in
//! the local and system configuration directories:
//!
//! ```json
//! { "peers": ["http://10.0.0.2:7440", "http://10.0.0.3:7440"] }
//! ```

use std::path::Path;

use serde::Deserialize;

use super::PeerUrl;
use crate::FetchError;

/// Largest peers.d file read.
const MAX_FILE: u64 = 1 << 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PeersFile {
    peers: Vec<String>,
}

/// The peers named in `dir` (none if it does not exist), files in name
/// order.
pub fn load(dir: &Path) -> Result<Vec<PeerUrl>, FetchError> {
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
    let mut peers = Vec::new();
    for file in files {
        let bad = |reason: String| FetchError::Config {
            file: file.clone(),
            reason,
        };
        let mut text = Vec::new();
        use std::io::Read;
        skiff_io::open_regular(&file)
            .and_then(|f| f.take(MAX_FILE + 1).read_to_end(&mut text))
            .map_err(|e| {
                bad(format!(
                    "cannot read it ({e}); a peers.d file must be a regular file"
                ))
            })?;
        if text.len() as u64 > MAX_FILE {
            return Err(bad(format!("larger than {MAX_FILE} bytes")));
        }
        let parsed: PeersFile = serde_json::from_slice(&text).map_err(|e| {
            bad(format!(
                "{e} (expected {{\"peers\": [\"http://HOST:PORT\", …]}})"
            ))
        })?;
        for peer in parsed.peers {
            peers.push(PeerUrl::parse(&peer).map_err(bad)?);
        }
    }
    Ok(peers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_peer_files_and_names_a_bad_one() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(&dir.path().join("missing")).unwrap().is_empty());
        std::fs::write(
            dir.path().join("a.json"),
            r#"{"peers": ["http://10.0.0.2:7440", "https://p.example"]}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let peers = load(dir.path()).unwrap();
        assert_eq!(peers.len(), 2);
        std::fs::write(dir.path().join("b.json"), r#"{"peers": ["10.0.0.3"]}"#).unwrap();
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("b.json") && err.contains("http://"), "{err}");
        std::fs::write(dir.path().join("b.json"), r#"{"peer": []}"#).unwrap();
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("b.json") && err.contains("expected"), "{err}");
    }
}
