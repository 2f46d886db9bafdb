//! Fetching an appc image from peers (`skiff serve` on other hosts)
//! instead of, or besides, its origin. Verify, don't trust:
//!
//! 1. What to fetch. With the origin up, discovery finds the image's URL
//!    and its signature is fetched from the origin (small); peers holding
//!    an image with exactly that signature are asked for it. With the
//!    origin down, the peers' offers of the name and labels are taken, and
//!    the signature comes from a peer.
//! 2. The pieces ([`swarm`]) come from every peer that offers the image,
//!    checked against a piece list as they arrive. The list itself comes
//!    from one peer; if what it describes does not verify, that peer is
//!    dropped and named, and another peer's list is used.
//! 3. The image is checked exactly as a download from the origin: the
//!    signature with the keys trusted for its name, then the archive at
//!    import (its hash becomes its ID). Nothing a peer says can make a host
//!    accept an image its own trust would refuse.
//!
//! * [`client`]: the HTTP client for peers (plain HTTP allowed, no
//!   credentials, no redirects, short timeouts) and [`PeerUrl`].
//! * [`swarm`]: one blob from several peers in parallel.
//! * [`config`]: `peers.d` files.
//! * [`layers`]: docker layers from peers.

pub mod client;
pub mod config;
mod layers;
pub mod swarm;

use skiff_share::protocol::{self, BlobRef, Kind, Offer, Offers, PieceList};
use skiff_spec::ImageId;
use skiff_spec::discovery::AppName;
use skiff_store::RemoteRecord;
use skiff_store::serving::Partial;

pub use client::{PeerClient, PeerError, PeerUrl};

use crate::{FetchError, Fetched, Fetcher};

/// Peers asked for their offers at once.
const ASKED_AT_ONCE: usize = 32;
/// Candidates (image IDs) tried from peers, at most.
const MAX_CANDIDATES: usize = 3;
/// Largest signature read from a peer.
const MAX_SIGNATURE: u64 = 1 << 20;

/// What the origin said about the image: its signature, URL and size.
pub(crate) struct Origin<'a> {
    pub signature: &'a [u8],
    pub url: &'a str,
    pub size: u64,
}

/// One image several peers offer.
struct Candidate {
    id: ImageId,
    size: u64,
    /// Who offers it, in the order the peers were given.
    peers: Vec<PeerUrl>,
    /// Fingerprints its offers name.
    fingerprints: Vec<String>,
}

/// What one fetch learns of its peers.
#[derive(Default)]
pub struct PeerState {
    /// The peers, once listed (and found on the segment, with mDNS).
    found: std::sync::OnceLock<Vec<PeerUrl>>,
    /// Peers that failed this fetch (not asked again for its other layers).
    failed: std::sync::Mutex<Vec<PeerUrl>>,
}

impl PeerState {
    fn failed(&self) -> std::sync::MutexGuard<'_, Vec<PeerUrl>> {
        self.failed.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Fetcher<'_> {
    /// The configuration of this fetch's peers: `--peer` ones first, then
    /// those of the `peers.d` files.
    fn configured(&self) -> Result<config::Configured, FetchError> {
        let mut all = config::Configured {
            peers: self.options.peers.clone(),
            mdns: false,
        };
        for dir in &self.options.peers_dirs {
            let more = config::load(dir)?;
            all.peers.extend(more.peers);
            all.mdns |= more.mdns;
        }
        Ok(all)
    }

    /// Whether this fetch may have peers at all, without asking the
    /// segment.
    pub(crate) fn may_have_peers(&self) -> Result<bool, FetchError> {
        if self.peer_state.found.get().is_some_and(|p| !p.is_empty()) {
            return Ok(true);
        }
        let configured = self.configured()?;
        Ok(configured.mdns || !configured.peers.is_empty())
    }

    /// The peers of this fetch: the configured ones, then those that
    /// answer on the local segment if `peers.d` asks for mDNS (listened
    /// for once per fetch, [`skiff_share::mdns::BROWSE`]).
    pub(crate) fn peers(&self) -> Result<Vec<PeerUrl>, FetchError> {
        if let Some(found) = self.peer_state.found.get() {
            return Ok(found.clone());
        }
        let configured = self.configured()?;
        let mut all = configured.peers;
        if configured.mdns {
            match skiff_share::mdns::browse(skiff_share::mdns::BROWSE) {
                Ok(found) => {
                    tracing::info!(
                        "{} peer(s) answered on the local segment (mDNS)",
                        found.len()
                    );
                    all.extend(found.into_iter().map(PeerUrl::from_addr));
                }
                Err(e) => tracing::warn!("no peers from the local segment: {e}"),
            }
        }
        Ok(self.peer_state.found.get_or_init(|| merge(all)).clone())
    }

    /// Asks every peer which images called `app` it has, all at once.
    fn offers(
        &self,
        client: &PeerClient,
        peers: &[PeerUrl],
        app: &AppName,
    ) -> Vec<(PeerUrl, Offer)> {
        let query = protocol::images_query(app.name.as_str(), &app.labels);
        let answers = ask_all(peers, |peer| client.get_json::<Offers>(peer, &query));
        let mut found = Vec::new();
        for (peer, answer) in answers {
            match answer {
                Ok(offers) => {
                    tracing::debug!(%peer, images = offers.images.len(), "offers");
                    found.extend(offers.images.into_iter().map(|o| (peer.clone(), o)));
                }
                Err(e) => tracing::warn!("peer {peer} not used: {e}"),
            }
        }
        found
    }

    /// The images peers offer for `app` (with exactly the signature whose
    /// SHA-256 is `wanted`, if given), each with the peers that have it.
    fn candidates(
        &self,
        client: &PeerClient,
        peers: &[PeerUrl],
        app: &AppName,
        wanted: Option<&str>,
    ) -> Vec<Candidate> {
        let mut candidates: Vec<Candidate> = Vec::new();
        for (peer, offer) in self.offers(client, peers, app) {
            // An offer is a claim: it only narrows the search.
            let Ok(id) = ImageId::parse(&offer.id) else {
                tracing::warn!("peer {peer} offered a bad image ID: ignored");
                continue;
            };
            let matches_labels = app
                .labels
                .iter()
                .all(|(k, v)| offer.labels.get(k) == Some(v));
            if offer.name != app.name.as_str() || !matches_labels {
                tracing::warn!("peer {peer} offered {} for {app}: ignored", offer.name);
                continue;
            }
            if let Some(wanted) = wanted
                && !offer.signatures.iter().any(|s| s.sha256 == wanted)
            {
                continue;
            }
            match candidates.iter_mut().find(|c| c.id == id) {
                Some(c) => c.peers.push(peer),
                None => candidates.push(Candidate {
                    id,
                    size: offer.size,
                    peers: vec![peer],
                    fingerprints: offer
                        .signatures
                        .iter()
                        .map(|s| s.fingerprint.to_ascii_lowercase())
                        .collect(),
                }),
            }
        }
        candidates
    }

    /// Fetches the image at `urls` (the origin's first, where `signature`
    /// and the piece list `list` came from; then its mirrors) as a member
    /// of the swarm: from peers that have it, peers fetching it and the
    /// servers at `urls`. `Ok(None)` if that failed: the origin it is.
    pub(crate) fn fetch_swarm(
        &self,
        app: &AppName,
        list: &PieceList,
        signature: &[u8],
        urls: &[&str],
    ) -> Result<Option<Fetched>, FetchError> {
        let Some(&url) = urls.first() else {
            return Ok(None);
        };
        let peers = self.peers()?;
        let client = self.http.peer_client()?;
        let wanted = protocol::sha256_hex(signature);
        let holders = self.candidates(&client, &peers, app, Some(&wanted));
        let mut sources = Vec::new();
        for candidate in &holders {
            if candidate.size == list.size {
                sources.extend(candidate.peers.iter().map(|peer| {
                    swarm::Source::Whole {
                        peer: peer.clone(),
                        path: BlobRef {
                            kind: Kind::Aci,
                            hex: candidate.id.hex().to_string(),
                        }
                        .path(),
                    }
                }));
            }
        }
        sources.extend(self.members(list)?);
        sources.extend(urls.iter().map(|url| swarm::Source::Origin {
            url: url.to_string(),
        }));
        let signature = Some((signature.to_vec(), url.to_string()));
        match self.fetch_pieces(&client, app, list, sources, signature, Some(url))? {
            Attempt::Fetched(fetched) => Ok(Some(*fetched)),
            Attempt::Incomplete(_, e) | Attempt::NotVerified(e) => {
                tracing::warn!(
                    "the swarm could not fetch {app} ({e}): fetching it whole from the origin"
                );
                Ok(None)
            }
        }
    }

    /// Fetches `app` from peers: `Ok(None)` if none has it (or none could
    /// send it), so the origin is the way left.
    ///
    /// With `origin`, only peers holding exactly the image the origin
    /// signed (and of its size) are used.
    pub(crate) fn fetch_from_peers(
        &self,
        app: &AppName,
        origin: Option<Origin<'_>>,
    ) -> Result<Option<Fetched>, FetchError> {
        let origin_signature = origin.as_ref().map(|o| o.signature);
        let url = origin.as_ref().map(|o| o.url);
        let peers = self.peers()?;
        if peers.is_empty() {
            return Ok(None);
        }
        let client = self.http.peer_client()?;
        let trusted: Vec<String> = self
            .keystore
            .keys_for(app.name.as_str())?
            .into_iter()
            .map(|k| k.fingerprint.to_ascii_lowercase())
            .collect();
        let wanted = origin_signature.map(protocol::sha256_hex);
        let mut candidates = self.candidates(&client, &peers, app, wanted.as_deref());
        if let Some(o) = &origin {
            candidates.retain(|c| c.size == o.size);
        }
        // The most widely held first.
        candidates.sort_by_key(|c| std::cmp::Reverse(c.peers.len()));
        if candidates.is_empty() {
            tracing::info!("no peer has {app}");
            return Ok(None);
        }
        let mut last_error = None;
        for candidate in candidates.iter().take(MAX_CANDIDATES) {
            // Stored already: only if it is what was asked for (an offer
            // names an ID; it proves nothing about it).
            if origin.is_none()
                && let Some(hit) = self.cached(&candidate.id)?
                && crate::check_manifest(app, &hit.manifest).is_ok()
            {
                return Ok(Some(hit));
            }
            let signature = match origin_signature {
                Some(sig) => Some((sig.to_vec(), url.unwrap_or("the origin").to_string())),
                None if self.options.insecure.image => None,
                None => match self.peer_signature(&client, candidate, &trusted) {
                    Some(found) => Some(found),
                    None => {
                        tracing::warn!(
                            image = %candidate.id.short(),
                            "offered by peers, but not signed by a key trusted for {}",
                            app.name
                        );
                        last_error = Some(FetchError::UntrustedOffers {
                            image: app.name.to_string(),
                        });
                        continue;
                    }
                },
            };
            match self.fetch_candidate(&client, app, candidate, signature, url) {
                Ok(Some(fetched)) => return Ok(Some(fetched)),
                Ok(None) => {}
                Err(e) => last_error = Some(e),
            }
        }
        match (origin_signature, last_error) {
            // The origin can still serve.
            (Some(_), Some(e)) => {
                tracing::warn!("peers could not serve {app} ({e}): fetching from the origin");
                Ok(None)
            }
            (None, Some(e)) => Err(e),
            (_, None) => Ok(None),
        }
    }

    /// A signature of `candidate` by a trusted key, from a peer that
    /// offers it, and where it came from.
    fn peer_signature(
        &self,
        client: &PeerClient,
        candidate: &Candidate,
        trusted: &[String],
    ) -> Option<(Vec<u8>, String)> {
        let fingerprint = candidate
            .fingerprints
            .iter()
            .find(|f| trusted.contains(f) && protocol::check_fingerprint(f).is_some())?;
        let path = protocol::signature_path(candidate.id.hex(), fingerprint);
        candidate
            .peers
            .iter()
            .find_map(|peer| match client.get(peer, &path, None, MAX_SIGNATURE) {
                Ok(sig) => Some((sig, peer.join(&path))),
                Err(e) => {
                    tracing::warn!("no signature from peer {peer}: {e}");
                    None
                }
            })
    }

    /// Downloads one candidate from its peers, trying each peer's piece
    /// list until what it describes verifies.
    fn fetch_candidate(
        &self,
        client: &PeerClient,
        app: &AppName,
        candidate: &Candidate,
        signature: Option<(Vec<u8>, String)>,
        url: Option<&str>,
    ) -> Result<Option<Fetched>, FetchError> {
        let blob = BlobRef {
            kind: Kind::Aci,
            hex: candidate.id.hex().to_string(),
        };
        let mut holders = candidate.peers.clone();
        let mut last_error = None;
        while let Some(list_peer) = holders.first().cloned() {
            let list: PieceList = match client.get_json(&list_peer, &blob.pieces_path()) {
                Ok(list) => list,
                Err(e) => {
                    tracing::warn!("peer {list_peer} dropped: no piece list: {e}");
                    holders.remove(0);
                    continue;
                }
            };
            if let Err(e) = list.check(candidate.size) {
                tracing::warn!("peer {list_peer} dropped: its piece list is wrong: {e}");
                holders.remove(0);
                continue;
            }
            let mut sources: Vec<swarm::Source> = holders
                .iter()
                .map(|peer| swarm::Source::Whole {
                    peer: peer.clone(),
                    path: blob.path(),
                })
                .collect();
            sources.extend(self.members(&list)?);
            match self.fetch_pieces(client, app, &list, sources, signature.clone(), url)? {
                Attempt::Fetched(fetched) => return Ok(Some(*fetched)),
                Attempt::Incomplete(report, e) => {
                    for (source, _) in &report.dropped {
                        holders.retain(
                            |p| !matches!(source, swarm::Source::Whole { peer, .. } if peer == p),
                        );
                    }
                    last_error = Some(e);
                }
                // The pieces matched this peer's list, yet the whole is not
                // the signed image: the list lied.
                // A signed image, but not the one asked for: every holder
                // offered it under a false name or label.
                Attempt::NotVerified(e @ FetchError::WrongImage { .. }) => {
                    let named: Vec<String> = holders.iter().map(ToString::to_string).collect();
                    tracing::warn!(
                        "peers {} offered {} falsely: {e}",
                        named.join(", "),
                        candidate.id.short()
                    );
                    return Err(e);
                }
                Attempt::NotVerified(e) => {
                    tracing::warn!(
                        "peer {list_peer} dropped: the image its piece list describes does not verify ({e})"
                    );
                    holders.retain(|p| *p != list_peer);
                    last_error = Some(e);
                }
            }
        }
        match last_error {
            Some(e) => Err(e),
            None => Ok(None),
        }
    }

    /// Every peer as a possible member of the swarm fetching what `list`
    /// describes (only lists cut the standard way are shared).
    fn members(&self, list: &PieceList) -> Result<Vec<swarm::Source>, FetchError> {
        if !list.standard() {
            return Ok(Vec::new());
        }
        let key = protocol::swarm_key(list);
        Ok(self
            .peers()?
            .into_iter()
            .map(|peer| swarm::Source::Member {
                peer,
                key: key.clone(),
            })
            .collect())
    }

    /// Fetches what `list` describes from `sources` into a staging file
    /// (shared with the swarm as it arrives), verifies it with `signature`
    /// and imports it.
    pub(crate) fn fetch_pieces(
        &self,
        client: &PeerClient,
        app: &AppName,
        list: &PieceList,
        sources: Vec<swarm::Source>,
        signature: Option<(Vec<u8>, String)>,
        url: Option<&str>,
    ) -> Result<Attempt, FetchError> {
        let limit = self.options.archive_policy.max_bytes;
        crate::http::within_limit(url.unwrap_or("the peers' image"), list.size, limit)?;
        let staged = self.store.stage()?;
        staged
            .file()
            .set_len(list.size)
            .map_err(skiff_io::io_err_at("write", staged.path()))?;
        let partial = if list.standard() {
            skiff_store::serving::share_file(staged.file(), staged.path())?;
            Partial::publish(
                self.store.layout().root(),
                &protocol::swarm_key(list),
                staged.path(),
                list.sha256.len(),
            )?
        } else {
            None
        };
        tracing::info!(
            sources = sources.len(),
            pieces = list.sha256.len(),
            "fetching {app} in pieces"
        );
        let clients = swarm::Clients {
            peers: client,
            origin: self.http,
        };
        let report = match swarm::download(&clients, list, sources, staged.file(), partial.as_ref())
        {
            Ok(report) => report,
            Err(incomplete) => {
                if let Some(e) = &incomplete.local {
                    return Err(FetchError::Http {
                        url: staged.path().display().to_string(),
                        reason: format!("cannot write the download: {e}"),
                    });
                }
                let e = FetchError::Http {
                    url: app.to_string(),
                    reason: incomplete.to_string(),
                };
                return Ok(Attempt::Incomplete(incomplete.report, e));
            }
        };
        let (sig, looked_at) = match signature {
            Some((sig, at)) => (Some(sig), at),
            None => (None, "the peers".to_string()),
        };
        let verified = match self.verify(staged.path(), sig.clone(), &looked_at, Some(app)) {
            Ok(v) => v,
            Err(e @ (FetchError::Signature { .. } | FetchError::Store(_))) => {
                return Ok(Attempt::NotVerified(e));
            }
            Err(e) => return Err(e),
        };
        // Not another image its signer also signed (an older version, or
        // another name under a wider key): refused before it is stored.
        let manifest = crate::manifest_of_staged(staged.path())?;
        if let Err(e) = crate::check_manifest(app, &manifest) {
            return Ok(Attempt::NotVerified(e));
        }
        let imported = self.store.commit(staged, &self.options.archive_policy)?;
        if let Some(p) = partial {
            p.keep();
        }
        self.record_signature(&imported.id, &verified, sig.as_deref())?;
        if let Some(url) = url {
            self.store.set_remote(&RemoteRecord {
                url: url.to_string(),
                image_id: imported.id.clone(),
                etag: None,
                max_age: 0,
                download_time: skiff_store::db::now(),
            })?;
        }
        let served: Vec<String> = report
            .served
            .iter()
            .map(|(from, (pieces, bytes))| format!("{from}: {pieces} pieces, {bytes} bytes"))
            .collect();
        tracing::info!(image = %imported.id.short(), "fetched in pieces ({})", served.join("; "));
        Ok(Attempt::Fetched(Box::new(Fetched {
            id: imported.id,
            manifest: imported.manifest,
            verified,
            cached: false,
            new_blobs: Vec::new(),
        })))
    }
}

/// How one try at a blob ended, short of an error no other source can fix.
pub(crate) enum Attempt {
    Fetched(Box<Fetched>),
    /// No source could send every piece.
    Incomplete(swarm::Report, FetchError),
    /// Every piece matched the list, and the whole did not verify.
    NotVerified(FetchError),
}

/// `ask(peer)` for every peer, [`ASKED_AT_ONCE`] at a time (a peer that
/// does not answer costs its timeout once, not once per peer after it),
/// in the order of `peers`.
pub(crate) fn ask_all<T: Send>(
    peers: &[PeerUrl],
    ask: impl Fn(&PeerUrl) -> T + Sync,
) -> Vec<(&PeerUrl, T)> {
    let mut answers = Vec::new();
    for some in peers.chunks(ASKED_AT_ONCE) {
        std::thread::scope(|scope| {
            let asking: Vec<_> = some
                .iter()
                .map(|peer| {
                    let ask = &ask;
                    scope.spawn(move || (peer, ask(peer)))
                })
                .collect();
            answers.extend(asking.into_iter().filter_map(|t| t.join().ok()));
        });
    }
    answers
}

/// The peers of `--peer` flags and `peers.d` files, without repeats, in
/// the order given.
pub fn merge(lists: impl IntoIterator<Item = PeerUrl>) -> Vec<PeerUrl> {
    let mut out: Vec<PeerUrl> = Vec::new();
    for peer in lists {
        if !out.contains(&peer) {
            out.push(peer);
        }
    }
    out
}
