//! `peers.d/*.json`: the peers every fetch may use, one or more files in
//! the local and system configuration directories:
//!
//! ```json
//! { "peers": ["http://10.0.0.2:7440", "http://10.0.0.3:7440"] }
//! ```
//!
//! or, to find the site's servers on the local segment (those started with
//! `skiff serve --mdns`), with or without a list:
//!
//! ```json
//! { "mdns": true }
//! ```

use std::path::Path;

use serde::Deserialize;

use super::PeerUrl;
use crate::FetchError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PeersFile {
    #[serde(default)]
    peers: Vec<String>,
    #[serde(default)]
    mdns: bool,
}

/// What `peers.d` says.
#[derive(Debug, Default)]
pub struct Configured {
    /// The peers named, in order.
    pub peers: Vec<PeerUrl>,
    /// Whether to ask the local segment too.
    pub mdns: bool,
}

/// What the files of `dir` say (nothing if it does not exist), files in
/// name order.
pub fn load(dir: &Path) -> Result<Configured, FetchError> {
    let mut out = Configured::default();
    let expected = r#"{"peers": ["http://HOST:PORT", …], "mdns": true|false}"#;
    for (file, parsed) in crate::confdir::load::<PeersFile>(dir, expected)? {
        for peer in parsed.peers {
            out.peers
                .push(PeerUrl::parse(&peer).map_err(|reason| FetchError::Config {
                    file: file.clone(),
                    reason,
                })?);
        }
        out.mdns |= parsed.mdns;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_peer_files_and_names_a_bad_one() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(&dir.path().join("missing")).unwrap().peers.is_empty());
        std::fs::write(
            dir.path().join("a.json"),
            r#"{"peers": ["http://10.0.0.2:7440", "https://p.example"]}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let got = load(dir.path()).unwrap();
        assert_eq!(got.peers.len(), 2);
        assert!(!got.mdns);
        std::fs::write(dir.path().join("m.json"), r#"{"mdns": true}"#).unwrap();
        let got = load(dir.path()).unwrap();
        assert_eq!((got.peers.len(), got.mdns), (2, true));
        std::fs::write(dir.path().join("m.json"), r#"{"mdns": "yes"}"#).unwrap();
        assert!(load(dir.path()).is_err());
        std::fs::remove_file(dir.path().join("m.json")).unwrap();
        std::fs::write(dir.path().join("b.json"), r#"{"peers": ["10.0.0.3"]}"#).unwrap();
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("b.json") && err.contains("http://"), "{err}");
        std::fs::write(dir.path().join("b.json"), r#"{"peer": []}"#).unwrap();
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("b.json") && err.contains("expected"), "{err}");
    }
}
