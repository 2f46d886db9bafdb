//! One blob from several sources at once: peers that have all of it,
//! peers fetching it too (a swarm: each shares the pieces it has checked),
//! and the origin. Pieces are fetched in parallel (byte ranges), each
//! checked against the piece list as it arrives and written at its place.
//!
//! * A piece comes from a peer that has it if one does (the least busy),
//!   else from the origin, at most [`ORIGIN_AT_ONCE`] at a time, and first
//!   pieces no peer has or is fetching, in an order of this host's own: the
//!   members of a swarm each take different pieces from the origin and
//!   trade the rest, so the origin sends about one copy.
//! * Swarm peers are asked which pieces they have every [`POLL`].
//! * A source that sends a piece that does not match its digest is dropped
//!   at once and named; one that fails three times (unreachable, refusing,
//!   too slow) is dropped too. A failed piece is fetched again elsewhere.
//! * What this host has is published as it arrives ([`Partial`]) when it
//!   serves: other members take it from here at once.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use skiff_share::protocol::{self, PieceList};
use skiff_store::serving::Partial;

use super::client::{PeerClient, PeerError, PeerUrl};
use crate::Http;

/// Failures (other than a bad piece) before a source is dropped.
const MAX_FAILURES: u32 = 3;
/// Pieces fetched at once, at most.
const MAX_WORKERS: usize = 16;
/// Pieces fetched from one peer at once.
const PEER_AT_ONCE: usize = 4;
/// Pieces fetched from the origin at once.
pub const ORIGIN_AT_ONCE: usize = 2;
/// How often swarm peers are asked what they have.
pub const POLL: Duration = Duration::from_millis(200);
/// How long pieces another member is fetching are waited for before the
/// origin is asked for them too.
const WAIT_FOR_MEMBERS: Duration = Duration::from_secs(5);
/// Without an origin: how long without progress before giving up.
const STALL: Duration = Duration::from_secs(30);

/// Where pieces can come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A peer with the whole blob at `path`.
    Whole { peer: PeerUrl, path: String },
    /// A peer that may have some pieces of swarm blob `key`.
    Member { peer: PeerUrl, key: String },
    /// The origin's URL of the blob.
    Origin { url: String },
}

impl Source {
    /// How logs name it.
    pub fn name(&self) -> String {
        match self {
            Source::Whole { peer, .. } | Source::Member { peer, .. } => format!("peer {peer}"),
            Source::Origin { url } => format!("the origin ({url})"),
        }
    }

    fn is_origin(&self) -> bool {
        matches!(self, Source::Origin { .. })
    }
}

/// What a download did, per source.
#[derive(Debug, Default)]
pub struct Report {
    /// Pieces and bytes each source sent that were kept.
    pub served: BTreeMap<String, (usize, u64)>,
    /// Sources dropped, and why.
    pub dropped: Vec<(Source, String)>,
}

/// The download failed: no source is left that can send the missing
/// pieces (or a piece could not be written here).
#[derive(Debug, thiserror::Error)]
#[error("{missing} of {total} pieces could not be fetched from any source{}", local.as_ref().map_or(String::new(), |e| format!(": cannot write here: {e}")))]
pub struct Incomplete {
    pub missing: usize,
    pub total: usize,
    pub local: Option<String>,
    pub report: Report,
}

struct SourceState {
    source: Source,
    alive: bool,
    failures: u32,
    busy: usize,
    /// What a member has (protocol bytes); None: everything.
    have: Option<Vec<u8>>,
    /// Since when a member has said it is fetching each piece: a claim
    /// older than [`WAIT_FOR_MEMBERS`] is not waited for.
    fetching_since: Vec<Option<Instant>>,
}

impl SourceState {
    fn has(&self, piece: usize) -> bool {
        match (&self.source, &self.have) {
            (Source::Origin { .. }, _) => false,
            (_, None) => true,
            (_, Some(have)) => have.get(piece) == Some(&protocol::HAS),
        }
    }

    /// Whether it says it is fetching `piece`, and said so recently.
    fn fetching(&self, piece: usize) -> bool {
        self.have
            .as_ref()
            .is_some_and(|h| h.get(piece) == Some(&protocol::FETCHING))
            && self
                .fetching_since
                .get(piece)
                .copied()
                .flatten()
                .is_none_or(|since| since.elapsed() < WAIT_FOR_MEMBERS)
    }

    /// Takes a member's new map, keeping when each claim was first seen.
    fn update(&mut self, have: Vec<u8>) {
        self.fetching_since.resize(have.len(), None);
        let now = Instant::now();
        for (since, byte) in self.fetching_since.iter_mut().zip(&have) {
            *since = match (*byte == protocol::FETCHING, *since) {
                (true, Some(t)) => Some(t),
                (true, None) => Some(now),
                (false, _) => None,
            };
        }
        self.have = Some(have);
    }
}

struct State {
    sources: Vec<SourceState>,
    /// Pieces still wanted, in this host's order.
    pending: Vec<usize>,
    in_flight: usize,
    done: usize,
    total: usize,
    progress: Instant,
    /// Set when a piece cannot be written here: everyone stops.
    local: Option<String>,
    report: Report,
}

impl State {
    fn finished(&self) -> bool {
        self.done == self.total || self.local.is_some()
    }

    /// The next piece and where from, if any source can send one now.
    fn next(&self) -> Option<(usize, usize)> {
        // From a peer that has it.
        for (at, &piece) in self.pending.iter().enumerate() {
            let best = (0..self.sources.len())
                .filter(|&s| {
                    let src = &self.sources[s];
                    src.alive && src.busy < PEER_AT_ONCE && src.has(piece)
                })
                .min_by_key(|&s| self.sources[s].busy);
            if let Some(s) = best {
                return Some((at, s));
            }
        }
        // From the origin: what no member has or has lately said it is
        // fetching; after a wait without progress, anything.
        let origin = self
            .sources
            .iter()
            .position(|s| s.source.is_origin() && s.alive && s.busy < ORIGIN_AT_ONCE)?;
        let waited = self.progress.elapsed() > WAIT_FOR_MEMBERS;
        self.pending
            .iter()
            .position(|&piece| {
                !self
                    .sources
                    .iter()
                    .any(|s| s.alive && (s.has(piece) || (!waited && s.fetching(piece))))
            })
            .map(|at| (at, origin))
    }

    fn drop_source(&mut self, s: usize, why: String) {
        let src = &mut self.sources[s];
        if src.alive {
            src.alive = false;
            tracing::warn!("{} dropped: {why}", src.source.name());
            self.report.dropped.push((src.source.clone(), why));
        }
    }

    /// Whether waiting can still help.
    fn hopeless(&self) -> bool {
        let origin = self.sources.iter().any(|s| s.alive && s.source.is_origin());
        let anyone = self.sources.iter().any(|s| s.alive);
        self.in_flight == 0 && (!anyone || (!origin && self.progress.elapsed() > STALL))
    }
}

/// The clients a download uses.
pub struct Clients<'a> {
    pub peers: &'a PeerClient,
    pub origin: &'a Http,
}

/// Fetches the blob `list` describes from `sources` into `out` (at each
/// piece's offset), publishing progress to `partial`.
pub fn download(
    clients: &Clients<'_>,
    list: &PieceList,
    sources: Vec<Source>,
    out: &File,
    partial: Option<&Partial>,
) -> Result<Report, Incomplete> {
    let total = list.sha256.len();
    let mut pending: Vec<usize> = (0..total).collect();
    shuffle(&mut pending);
    let state = Mutex::new(State {
        sources: sources
            .into_iter()
            .map(|source| SourceState {
                have: match source {
                    Source::Member { .. } => Some(Vec::new()),
                    _ => None,
                },
                fetching_since: Vec::new(),
                source,
                alive: true,
                failures: 0,
                busy: 0,
            })
            .collect(),
        pending,
        in_flight: 0,
        done: 0,
        total,
        progress: Instant::now(),
        local: None,
        report: Report::default(),
    });
    let wake = Condvar::new();
    let workers = total.clamp(1, MAX_WORKERS);
    std::thread::scope(|scope| {
        scope.spawn(|| poll(clients.peers, total, &state, &wake));
        for _ in 0..workers {
            scope.spawn(|| worker(clients, list, out, partial, &state, &wake));
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

/// Asks the swarm members what they have, until the download ends.
fn poll(client: &PeerClient, total: usize, state: &Mutex<State>, wake: &Condvar) {
    let lock = || state.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let members: Vec<(usize, PeerUrl, String)> = {
            let s = lock();
            if s.finished() || s.hopeless() {
                return;
            }
            s.sources
                .iter()
                .enumerate()
                .filter(|(_, src)| src.alive)
                .filter_map(|(i, src)| match &src.source {
                    Source::Member { peer, key } => Some((i, peer.clone(), key.clone())),
                    _ => None,
                })
                .collect()
        };
        for (i, peer, key) in members {
            let answer = client.get(&peer, &protocol::have_path(&key), None, total as u64);
            let mut s = lock();
            match answer {
                Ok(have)
                    if have.len() == total
                        && have.iter().all(|b| {
                            matches!(*b, protocol::HAS | protocol::FETCHING | protocol::MISSING)
                        }) =>
                {
                    s.sources[i].update(have);
                }
                Ok(_) => s.drop_source(i, "its piece map does not fit the piece list".into()),
                // Not fetching it (yet): nothing to take from it now.
                Err(PeerError::Status(404)) => s.sources[i].have = Some(Vec::new()),
                Err(e) => {
                    s.sources[i].failures += 1;
                    if s.sources[i].failures >= MAX_FAILURES {
                        s.drop_source(i, format!("{MAX_FAILURES} requests failed, the last: {e}"));
                    }
                }
            }
        }
        wake.notify_all();
        std::thread::sleep(POLL);
    }
}

fn worker(
    clients: &Clients<'_>,
    list: &PieceList,
    out: &File,
    partial: Option<&Partial>,
    state: &Mutex<State>,
    wake: &Condvar,
) {
    let lock = || state.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        // Take a piece and a source for it, or wait.
        let (piece, s, source) = {
            let mut st = lock();
            loop {
                if st.finished() || st.hopeless() {
                    wake.notify_all();
                    return;
                }
                if let Some((at, s)) = st.next() {
                    let piece = st.pending.remove(at);
                    st.sources[s].busy += 1;
                    st.in_flight += 1;
                    break (piece, s, st.sources[s].source.clone());
                }
                st = wake
                    .wait_timeout(st, POLL / 2)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
        };
        if let Some(p) = partial {
            p.mark(piece, protocol::FETCHING);
        }
        let range = list.range(piece);
        let len = range.end - range.start;
        let got = match &source {
            Source::Whole { peer, path } => clients.peers.get(peer, path, Some(range.clone()), len),
            Source::Member { peer, key } => {
                clients
                    .peers
                    .get(peer, &protocol::swarm_path(key), Some(range.clone()), len)
            }
            Source::Origin { url } => {
                clients
                    .origin
                    .get_range(url, range.clone(), len)
                    .map_err(|e| match e {
                        crate::FetchError::Status { status, .. } => PeerError::Status(status),
                        e => PeerError::Transport(e.to_string()),
                    })
            }
        };
        let outcome = match got {
            Ok(bytes) if list.matches(piece, &bytes) => out
                .write_all_at(&bytes, range.start)
                .map(|()| bytes.len() as u64)
                .map_err(|e| Failure::Local(e.to_string())),
            Ok(_) => Err(Failure::BadPiece),
            Err(PeerError::Status(404)) => Err(Failure::Missing),
            Err(PeerError::Status(200)) => Err(Failure::NoRanges),
            Err(e) => Err(Failure::Source(e.to_string())),
        };
        if let Some(p) = partial {
            let state = if outcome.is_ok() {
                protocol::HAS
            } else {
                protocol::MISSING
            };
            p.mark(piece, state);
        }
        let mut st = lock();
        st.in_flight -= 1;
        st.sources[s].busy -= 1;
        match outcome {
            Ok(bytes) => {
                st.done += 1;
                st.progress = Instant::now();
                let entry = st.report.served.entry(source.name()).or_default();
                entry.0 += 1;
                entry.1 += bytes;
            }
            Err(Failure::Local(e)) => {
                // Our disk, not the source: no source can fix it.
                st.local = Some(e);
                st.pending.push(piece);
            }
            Err(Failure::BadPiece) => {
                st.drop_source(
                    s,
                    format!("it sent piece {piece}, which does not match its digest"),
                );
                st.pending.insert(0, piece);
            }
            // A member that said it has the piece and has not: its map may
            // have been old, but three times is a lie or a dead fetch.
            Err(Failure::Missing) if matches!(source, Source::Member { .. }) => {
                if let Some(have) = st.sources[s].have.as_mut()
                    && let Some(b) = have.get_mut(piece)
                {
                    *b = protocol::MISSING;
                }
                st.sources[s].failures += 1;
                if st.sources[s].failures >= MAX_FAILURES {
                    st.drop_source(
                        s,
                        format!("{MAX_FAILURES} pieces it said it had were not there"),
                    );
                }
                st.pending.insert(0, piece);
            }
            Err(Failure::NoRanges) => {
                st.drop_source(s, "it does not answer byte ranges".into());
                st.pending.insert(0, piece);
            }
            Err(Failure::Missing) => {
                st.drop_source(s, "it does not have the image (404)".into());
                st.pending.insert(0, piece);
            }
            Err(Failure::Source(e)) => {
                st.sources[s].failures += 1;
                if st.sources[s].failures >= MAX_FAILURES {
                    st.drop_source(s, format!("{MAX_FAILURES} requests failed, the last: {e}"));
                }
                st.pending.insert(0, piece);
            }
        }
        wake.notify_all();
    }
}

enum Failure {
    Local(String),
    BadPiece,
    Missing,
    /// A whole answer to a range request: no ranges from this source.
    NoRanges,
    Source(String),
}

/// Shuffles `pieces` (an order of this host's own, so the members of a
/// swarm take different pieces from the origin).
fn shuffle(pieces: &mut [usize]) {
    let mut seed = [0u8; 8];
    let _ = rustix::rand::getrandom(&mut seed, rustix::rand::GetRandomFlags::empty());
    let mut x = u64::from_le_bytes(seed) | 1;
    for i in (1..pieces.len()).rev() {
        // xorshift64
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let j = (x % (i as u64 + 1)) as usize;
        pieces.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(have: &[u8]) -> SourceState {
        SourceState {
            source: Source::Member {
                peer: PeerUrl::parse("http://10.0.0.2:1").unwrap(),
                key: "k".into(),
            },
            alive: true,
            failures: 0,
            busy: 0,
            have: Some(have.to_vec()),
            fetching_since: vec![None; have.len()],
        }
    }

    fn origin() -> SourceState {
        SourceState {
            source: Source::Origin {
                url: "https://o/x.aci".into(),
            },
            alive: true,
            failures: 0,
            busy: 0,
            have: None,
            fetching_since: Vec::new(),
        }
    }

    fn state(sources: Vec<SourceState>, pending: Vec<usize>) -> State {
        State {
            total: 3,
            sources,
            pending,
            in_flight: 0,
            done: 0,
            progress: Instant::now(),
            local: None,
            report: Report::default(),
        }
    }

    #[test]
    fn members_first_then_the_origin_for_what_nobody_has() {
        // Piece 0 at the member, 1 being fetched by it, 2 nowhere.
        let st = state(vec![origin(), member(b"120")], vec![1, 2, 0]);
        assert_eq!(st.next(), Some((2, 1)), "piece 0 from the member");
        let st = state(vec![origin(), member(b"120")], vec![1, 2]);
        assert_eq!(st.next(), Some((1, 0)), "piece 2 from the origin, not 1");
        let mut st = state(vec![origin(), member(b"120")], vec![1]);
        assert_eq!(st.next(), None, "piece 1 is waited for");
        st.progress = Instant::now() - WAIT_FOR_MEMBERS * 2;
        assert_eq!(st.next(), Some((0, 0)), "until the wait is over");
        st.sources[0].busy = ORIGIN_AT_ONCE;
        assert_eq!(st.next(), None, "the origin is busy");
        // A claim to be fetching is waited for only so long, progress or not.
        let mut st = state(vec![origin(), member(b"120")], vec![1]);
        st.sources[1].fetching_since[1] = Some(Instant::now() - WAIT_FOR_MEMBERS * 2);
        assert_eq!(st.next(), Some((0, 0)), "an old claim is not waited for");
        st.sources[1].update(b"120".to_vec());
        assert!(st.sources[1].fetching_since[1].is_some_and(|t| t.elapsed() > WAIT_FOR_MEMBERS));
    }

    #[test]
    fn a_shuffle_keeps_every_piece() {
        let mut pieces: Vec<usize> = (0..100).collect();
        shuffle(&mut pieces);
        let mut sorted = pieces.clone();
        sorted.sort();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
    }
}
