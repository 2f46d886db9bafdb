//! docker:// layers from peers. A layer's digest is its content address,
//! so any peer may send it: the peers that have it are asked for its piece
//! list (all at once), and the pieces come from all of them in parallel,
//! each checked against the list as it arrives; the whole is then checked
//! against the digest. A list whose pieces all match but whose whole does
//! not is a lie: its peer is dropped and the next holder's list is used.

use sha2::Digest;
use skiff_share::protocol::{BlobRef, Kind, PieceList};
use std::io::Seek;

use super::client::PeerError;
use super::{PeerUrl, ask_all, swarm};
use crate::{FetchError, Fetcher};

/// Piece lists of one layer tried, at most.
const MAX_LISTS: usize = 2;

impl Fetcher<'_> {
    /// Writes layer `digest` (`sha256:<hex>`, `size` bytes as the manifest
    /// declares, 0 if it does not) into `out` from the peers that have it;
    /// false if none could send it (`out` is then empty again). Peers
    /// that fail are not asked for the image's other layers.
    pub(crate) fn layer_from_peers(
        &self,
        digest: &str,
        size: u64,
        out: &mut std::fs::File,
        limit: u64,
    ) -> Result<bool, FetchError> {
        let Some(hex) = digest
            .strip_prefix("sha256:")
            .and_then(|h| Kind::Layer.check_hex(h))
        else {
            return Ok(false);
        };
        if size > limit {
            // The registry's path refuses it with the reason.
            return Ok(false);
        }
        let peers: Vec<PeerUrl> = self
            .peers()?
            .into_iter()
            .filter(|p| !self.peer_state.failed().contains(p))
            .collect();
        if peers.is_empty() {
            return Ok(false);
        }
        let client = self.http.peer_client()?;
        let blob = BlobRef {
            kind: Kind::Layer,
            hex: hex.to_string(),
        };
        let failed = |peer: &PeerUrl, why: String| {
            tracing::warn!("peer {peer} dropped: layer {digest}: {why}");
            self.peer_state.failed().push(peer.clone());
        };
        // Who has it, with which list.
        let mut holders: Vec<(PeerUrl, PieceList)> = Vec::new();
        let answers = ask_all(&peers, |peer| {
            client.get_json::<PieceList>(peer, &blob.pieces_path())
        });
        for (peer, answer) in answers {
            match answer {
                Ok(list) => {
                    let expected = if size == 0 { list.size } else { size };
                    match list.check(expected) {
                        Ok(()) if list.size <= limit => holders.push((peer.clone(), list)),
                        Ok(()) => failed(peer, format!("more than {limit} bytes")),
                        Err(e) => failed(peer, format!("its piece list is wrong: {e}")),
                    }
                }
                Err(PeerError::Status(404)) => {}
                Err(e) => failed(peer, e.to_string()),
            }
        }
        let io = |e: std::io::Error| FetchError::from(skiff_io::IoError::new("write a layer", e));
        let clients = swarm::Clients {
            peers: &client,
            origin: self.http,
        };
        // Each list that lies costs a whole download: two, then the
        // registry.
        let mut lists_tried = 0;
        while let Some((list_peer, list)) = holders.first().cloned() {
            if lists_tried == MAX_LISTS {
                tracing::warn!(
                    "layer {digest}: {MAX_LISTS} peers' piece lists failed: from the registry"
                );
                break;
            }
            lists_tried += 1;
            let sources = holders
                .iter()
                .filter(|(_, l)| l.size == list.size)
                .map(|(peer, _)| swarm::Source::Whole {
                    peer: peer.clone(),
                    path: blob.path(),
                })
                .collect();
            out.set_len(0).map_err(io)?;
            out.set_len(list.size).map_err(io)?;
            match swarm::download(&clients, &list, sources, out, None) {
                Ok(report) => {
                    out.rewind().map_err(io)?;
                    let mut hasher = sha2::Sha256::new();
                    std::io::copy(out, &mut hasher).map_err(io)?;
                    if format!("{:x}", hasher.finalize()) == hex {
                        // The list was true: who sent pieces that did not
                        // match it lied.
                        for (source, _) in &report.dropped {
                            if let swarm::Source::Whole { peer, .. } = source {
                                self.peer_state.failed().push(peer.clone());
                            }
                        }
                        let from: Vec<&str> = report.served.keys().map(String::as_str).collect();
                        tracing::info!(
                            "layer {} ({} bytes) in pieces from {}",
                            &hex[..12],
                            list.size,
                            from.join(", ")
                        );
                        return Ok(true);
                    }
                    // Every piece matched the list, and the whole is not
                    // the layer: the list lied.
                    failed(&list_peer, "its piece list describes another blob".into());
                }
                Err(incomplete) => {
                    if let Some(e) = incomplete.local {
                        return Err(FetchError::Http {
                            url: digest.to_string(),
                            reason: format!("cannot write the layer: {e}"),
                        });
                    }
                    // Pieces that did not match a list that may lie do not
                    // condemn their senders: only the list's peer goes.
                    tracing::warn!(
                        "layer {digest} from peer {list_peer}'s piece list: {incomplete}"
                    );
                }
            }
            holders.retain(|(p, _)| *p != list_peer);
        }
        out.set_len(0).map_err(io)?;
        out.rewind().map_err(io)?;
        Ok(false)
    }
}
