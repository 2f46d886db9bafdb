//! One blob from several peers at once: its pieces are fetched in
//! parallel (byte ranges), each checked against the piece list as it
//! arrives and written at its place. A peer that sends a piece that does
//! not match is dropped at once and named; one that fails three times
//! (unreachable, refusing, too slow) is dropped too. A piece that failed
//! is fetched again from another peer.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::{Condvar, Mutex};

use skiff_share::protocol::{BlobRef, PieceList};

use super::client::{PeerClient, PeerError, PeerUrl};

/// Failures (other than a bad piece) before a peer is dropped.
const MAX_FAILURES: u32 = 3;
/// Pieces fetched at once, at most.
const MAX_WORKERS: usize = 16;

/// What a download did, per peer.
#[derive(Debug, Default)]
pub struct Report {
    /// Pieces and bytes each peer sent that were kept.
    pub served: BTreeMap<PeerUrl, (usize, u64)>,
    /// Peers dropped, and why.
    pub dropped: Vec<(PeerUrl, String)>,
}

/// The download failed: no peer is left that can send the missing pieces
/// (or a piece could not be written here).
#[derive(Debug, thiserror::Error)]
#[error("{missing} of {total} pieces could not be fetched from any peer{}", local.as_ref().map_or(String::new(), |e| format!(": cannot write here: {e}")))]
pub struct Incomplete {
    pub missing: usize,
    pub total: usize,
    pub local: Option<String>,
    pub report: Report,
}

struct PeerState {
    url: PeerUrl,
    alive: bool,
    failures: u32,
    busy: usize,
}

struct State {
    peers: Vec<PeerState>,
    queue: VecDeque<usize>,
    in_flight: usize,
    /// Set when a piece cannot be written here: everyone stops.
    local: Option<String>,
    done: usize,
    report: Report,
}

impl State {
    /// The live peer with the fewest pieces in flight (ties spread by
    /// piece).
    fn pick(&self, piece: usize) -> Option<usize> {
        let n = self.peers.len();
        (0..n)
            .map(|i| (i + piece) % n)
            .filter(|i| self.peers[*i].alive)
            .min_by_key(|i| self.peers[*i].busy)
    }

    fn drop_peer(&mut self, peer: usize, why: String) {
        let p = &mut self.peers[peer];
        if p.alive {
            p.alive = false;
            tracing::warn!("peer {} dropped: {why}", p.url);
            self.report.dropped.push((p.url.clone(), why));
        }
    }
}

/// Fetches `blob` as `list` describes it from `peers` into `out` (at each
/// piece's offset).
pub fn download(
    client: &PeerClient,
    blob: &BlobRef,
    list: &PieceList,
    peers: &[PeerUrl],
    out: &File,
) -> Result<Report, Incomplete> {
    let total = list.sha256.len();
    let state = Mutex::new(State {
        peers: peers
            .iter()
            .map(|url| PeerState {
                url: url.clone(),
                alive: true,
                failures: 0,
                busy: 0,
            })
            .collect(),
        queue: (0..total).collect(),
        in_flight: 0,
        local: None,
        done: 0,
        report: Report::default(),
    });
    let wake = Condvar::new();
    let workers = total.min((peers.len() * 4).max(4)).min(MAX_WORKERS);
    let path = blob.path();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| worker(client, &path, list, out, &state, &wake));
        }
    });
    let state = state.into_inner().unwrap_or_else(|e| e.into_inner());
    if state.done == total {
        Ok(state.report)
    } else {
        Err(Incomplete {
            missing: total - state.done,
            total,
            local: state.local,
            report: state.report,
        })
    }
}

fn worker(
    client: &PeerClient,
    path: &str,
    list: &PieceList,
    out: &File,
    state: &Mutex<State>,
    wake: &Condvar,
) {
    let lock = || state.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        // Take a piece and a peer for it, or wait for one in flight.
        let (piece, peer, url) = {
            let mut s = lock();
            loop {
                let next = match s.local {
                    Some(_) => None,
                    None => s
                        .queue
                        .front()
                        .and_then(|p| s.pick(*p).map(|peer| (*p, peer))),
                };
                if let Some((piece, peer)) = next {
                    s.queue.pop_front();
                    s.peers[peer].busy += 1;
                    s.in_flight += 1;
                    break (piece, peer, s.peers[peer].url.clone());
                }
                // Nothing to do now: finished (or no live peer) unless a
                // piece in flight may fail back into the queue.
                if s.in_flight == 0 {
                    wake.notify_all();
                    return;
                }
                s = wake.wait(s).unwrap_or_else(|e| e.into_inner());
            }
        };
        let range = list.range(piece);
        let got = client.get(&url, path, Some(range.clone()), range.end - range.start);
        let outcome = match got {
            Ok(bytes) if list.matches(piece, &bytes) => out
                .write_all_at(&bytes, range.start)
                .map(|()| bytes.len() as u64)
                .map_err(|e| Failure::Local(e.to_string())),
            Ok(_) => Err(Failure::BadPiece),
            Err(PeerError::Status(404)) => Err(Failure::Missing),
            Err(e) => Err(Failure::Peer(e.to_string())),
        };
        let mut s = lock();
        s.in_flight -= 1;
        s.peers[peer].busy -= 1;
        match outcome {
            Ok(bytes) => {
                s.done += 1;
                let entry = s.report.served.entry(url).or_default();
                entry.0 += 1;
                entry.1 += bytes;
            }
            Err(Failure::Local(e)) => {
                // Our disk, not the peer: no peer can fix it.
                s.local = Some(e);
                s.queue.push_back(piece);
            }
            Err(Failure::BadPiece) => {
                s.drop_peer(
                    peer,
                    format!("it sent piece {piece}, which does not match its digest"),
                );
                s.queue.push_back(piece);
            }
            Err(Failure::Missing) => {
                s.drop_peer(peer, "it does not have the image (404)".into());
                s.queue.push_back(piece);
            }
            Err(Failure::Peer(e)) => {
                s.peers[peer].failures += 1;
                if s.peers[peer].failures >= MAX_FAILURES {
                    s.drop_peer(
                        peer,
                        format!("{MAX_FAILURES} requests failed, the last: {e}"),
                    );
                }
                s.queue.push_back(piece);
            }
        }
        wake.notify_all();
    }
}

enum Failure {
    Local(String),
    BadPiece,
    Missing,
    Peer(String),
}
