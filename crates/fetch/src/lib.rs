//! skiff-fetch: from an image reference to a verified image in the store.
//!
//! Map of the crate:
//! * [`options`]: `--insecure-options` and `--pull-policy`.
//! * [`http`]: HTTPS downloads (CA roots, ETags, retries with resume, progress).
//! * this file: [`Fetcher`], which classifies a reference (local file,
//!   `file://`, `https://`, appc name with labels), discovers, downloads the
//!   image and its `.asc`, verifies the signature with the keys trusted for
//!   the image's name, commits to the store, fetches missing dependencies
//!   and renders the tree.
//!
//! Nothing reaches the store unverified: downloads go to a store staging
//! file, the signature is checked against that file, and only then is it
//! committed (which hashes and checks the archive).

pub mod auth;
mod confdir;
pub mod docker;
pub mod http;
pub mod mirrors;
pub mod options;
pub mod peers;
pub mod stored;

use std::path::{Path, PathBuf};

use skiff_spec::discovery::{AppName, Discovered, discover, meta_tags};
use skiff_spec::{ImageId, ImageManifest, parse_image_manifest};
use skiff_store::{ArchivePolicy, RemoteRecord, Store, StoreError};
use skiff_trust::{Keystore, Scope, TrustError, Verified};

pub use http::{Download, Http, HttpOptions};
pub use options::{InsecureOptions, PullPolicy};

/// Largest discovery page or key read.
const SMALL_LIMIT: u64 = 1 << 20;
/// Deepest dependency chain fetched.
const MAX_DEPENDENCY_DEPTH: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0}")]
    Unsupported(String),
    #[error("bad image reference '{input}': {reason}")]
    BadReference { input: String, reason: String },
    /// An I/O step that failed (with the cause as its source).
    #[error(transparent)]
    IoStep(#[from] skiff_io::IoError),
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("cannot fetch {url}: {reason}")]
    Http { url: String, reason: String },
    /// No connection, or no answer, after retries: the server is away
    /// (as opposed to answering wrongly).
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("cannot push to {url}: {reason}")]
    Push { url: String, reason: String },
    #[error("cannot fetch {url}: HTTP status {status}")]
    Status { url: String, status: u16 },
    #[error("{what}: not allowed without --insecure-options={option}")]
    Insecure { what: String, option: &'static str },
    #[error("no image found at {0}")]
    NotFound(String),
    #[error("discovery of {name} failed: {}", attempts.join("; "))]
    Discovery {
        name: String,
        attempts: Vec<String>,
        /// Whether no server answered at all (each was away, as
        /// [`is_away`] says): only then may peers stand in.
        away: bool,
    },
    #[error(
        "no signature for {image} (looked for {looked_at}); sign it with `gpg --armor --detach-sign`, \
         or fetch without checking with --insecure-options=image"
    )]
    MissingSignature { image: String, looked_at: String },
    #[error(
        "no signature for {image} (looked for {looked_at}); sign it with `skiff image sign \
         --format=cosign` or `cosign sign`, or fetch it without checking with \
         --insecure-options=image"
    )]
    MissingImageSignature { image: String, looked_at: String },
    #[error(
        "no key is trusted for {image}: trust its signer's cosign key with `skiff trust --prefix \
         {image} cosign.pub` (or an OpenPGP key, with a lookaside for its simple-signing \
         signatures in registries.d), or fetch it unverified with --insecure-options=image"
    )]
    NoTrustedImageKeys { image: String },
    #[error(
        "OpenPGP keys are trusted for {image}, but no lookaside for its simple-signing \
         signatures is configured: name one in registries.d (see docs/trust.md), or trust its \
         cosign key"
    )]
    NoLookaside { image: String },
    #[error("no signature of {image} verifies: {}", reasons.join("; "))]
    NotVerified { image: String, reasons: Vec<String> },
    #[error(
        "no key is trusted for {image}: trust its signer with `skiff trust --prefix {image} KEY`"
    )]
    NoTrustedKeys { image: String },
    #[error(
        "peers offer {image}, but none signed by a key trusted for it (see `skiff trust list`); \
         fetch it from its origin, or trust its signer with `skiff trust --prefix {image} KEY`"
    )]
    UntrustedOffers { image: String },
    #[error("signature check failed for {image}")]
    Signature {
        image: String,
        #[source]
        source: TrustError,
    },
    #[error(transparent)]
    Trust(#[from] TrustError),
    #[error("{0} is not in the store and --pull-policy=never forbids downloading it")]
    NotInStore(String),
    #[error(
        "no image with ID {0} is in the store (an ID names a stored image: fetch the image by name or file first, see `skiff image list`)"
    )]
    IdNotInStore(String),
    #[error("{asked} resolved to an image called {got}{labels}")]
    WrongImage {
        asked: String,
        got: String,
        labels: String,
    },
    #[error("dependency chain deeper than {MAX_DEPENDENCY_DEPTH} images at {0}")]
    TooDeep(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{file}: {reason}")]
    Config { file: PathBuf, reason: String },
}

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    Url(String),
    Name(AppName),
    Docker(docker::DockerRef),
    /// `oci:DIR[:REF]`.
    OciLayout(String),
    /// `oci-archive:FILE[:REF]`.
    OciArchive(String),
    /// `sha512-HEX`: an image already in the store, by its ID (a unique
    /// prefix of 8 or more hex digits).
    Id(String),
}

/// Classifies an image reference as `skiff fetch` sees it.
pub fn classify(input: &str) -> Result<Source, FetchError> {
    if input.starts_with("docker://") {
        return docker::DockerRef::parse(input).map(Source::Docker);
    }
    if let Some(spec) = input.strip_prefix("oci:") {
        return Ok(Source::OciLayout(spec.to_string()));
    }
    if let Some(spec) = input.strip_prefix("oci-archive:") {
        return Ok(Source::OciArchive(spec.to_string()));
    }
    if let Some(path) = input.strip_prefix("file://") {
        return Ok(Source::File(PathBuf::from(path)));
    }
    if input.starts_with("https://") || input.starts_with("http://") {
        return Ok(Source::Url(input.to_string()));
    }
    let path = Path::new(input);
    if input.starts_with('/')
        || input.starts_with("./")
        || input.starts_with("../")
        || path.is_file()
    {
        return Ok(Source::File(path.to_path_buf()));
    }
    if input.starts_with("sha512-") {
        return Ok(Source::Id(input.to_string()));
    }
    AppName::parse(input)
        .map(Source::Name)
        .map_err(|reason| FetchError::BadReference {
            input: input.to_string(),
            reason,
        })
}

/// A stored image by ID (prefix), name[:version], or the `docker://`,
/// `oci:` or `oci-archive:` reference it was fetched from.
pub fn resolve_stored(store: &Store, query: &str) -> Result<skiff_store::ImageRecord, FetchError> {
    let origin = match classify(query) {
        Ok(Source::Docker(r)) => Some(r.display()),
        Ok(Source::OciLayout(spec)) | Ok(Source::OciArchive(spec)) => {
            let scheme = if query.starts_with("oci:") {
                "oci"
            } else {
                "oci-archive"
            };
            let (path, reference) = docker::layout::split_ref(&spec);
            let path = std::fs::canonicalize(&path).unwrap_or(path);
            Some(format!(
                "{scheme}:{}{}",
                path.display(),
                reference.map_or(String::new(), |r| format!(":{r}"))
            ))
        }
        _ => None,
    };
    match origin {
        Some(url) => {
            let remote = store
                .index()
                .remote(&url)?
                .ok_or_else(|| FetchError::NotInStore(url.clone()))?;
            Ok(store.resolve(remote.image_id.as_str())?)
        }
        None => Ok(store.resolve(query)?),
    }
}

/// A key found by discovery, shown to the user before it is trusted.
#[derive(Debug, Clone)]
pub struct KeyCandidate {
    pub prefix: String,
    pub location: String,
    pub fingerprint: String,
    pub user_ids: Vec<String>,
}

/// Asks whether discovered keys may be trusted (`skiff` prompts on a
/// terminal, or accepts with `--skip-fingerprint-review`).
pub trait KeyReview {
    fn approve(&self, key: &KeyCandidate) -> bool;
}

/// Everything a fetch needs to know.
pub struct FetchOptions {
    pub insecure: InsecureOptions,
    pub pull_policy: PullPolicy,
    pub archive_policy: ArchivePolicy,
    /// Fetch and (after review) trust keys announced by discovery.
    pub trust_keys_from_https: bool,
    /// A signature file for the first image, instead of looking beside it.
    pub signature: Option<PathBuf>,
    /// Registry credentials (`--creds`; else `auth.d`, else
    /// ~/.docker/config.json).
    pub creds: Option<(String, String)>,
    /// `auth.d` directories with registry credentials (local config first).
    pub auth_dirs: Vec<PathBuf>,
    /// `registries.d` directories: where simple-signing signatures of
    /// docker images are (local config first).
    pub registries_dirs: Vec<PathBuf>,
    /// The architecture to pick from a multi-platform image (OCI names:
    /// amd64, arm64, ...); default: this machine's.
    pub arch: Option<String>,
    /// Peers (`skiff serve` on other hosts) to fetch appc images from
    /// (`--peer`); see [`peers`].
    pub peers: Vec<peers::PeerUrl>,
    /// `peers.d` directories naming more peers (local config first).
    pub peers_dirs: Vec<PathBuf>,
    /// `mirrors.d` directories naming more servers of a prefix's images
    /// (local config first); see [`mirrors`].
    pub mirrors_dirs: Vec<PathBuf>,
}

/// The result of fetching one reference.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub id: ImageId,
    pub manifest: ImageManifest,
    /// Who signed it (None with --insecure-options=image or from cache).
    pub verified: Option<Verified>,
    /// True if nothing was downloaded (store or cache was current).
    pub cached: bool,
    /// Files this fetch added to the layer cache (layers, a manifest and
    /// config): what a refusal after the fetch (the run policy) removes.
    pub new_blobs: Vec<PathBuf>,
}

pub struct Fetcher<'a> {
    pub store: &'a Store,
    pub keystore: &'a Keystore,
    pub http: &'a Http,
    pub options: &'a FetchOptions,
    pub review: &'a dyn KeyReview,
    /// The peers found for this fetch, and those that failed it.
    pub peer_state: peers::PeerState,
}

/// What fetching works with, owned in one place; [`FetchSession::fetcher`]
/// lends it out.
pub struct FetchSession<R: KeyReview> {
    pub store: Store,
    pub keystore: Keystore,
    pub http: Http,
    pub options: FetchOptions,
    pub review: R,
}

impl<R: KeyReview> FetchSession<R> {
    pub fn fetcher(&self) -> Fetcher<'_> {
        Fetcher {
            store: &self.store,
            keystore: &self.keystore,
            http: &self.http,
            options: &self.options,
            review: &self.review,
            peer_state: peers::PeerState::default(),
        }
    }
}

/// Default os/arch labels for discovery, from the machine we run on.
pub fn default_os_arch() -> [(&'static str, &'static str); 2] {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "i386",
        "aarch64" => "aarch64",
        "powerpc64" => "ppc64",
        "s390x" => "s390x",
        other => other,
    };
    [("os", std::env::consts::OS), ("arch", arch)]
}

fn read_file(path: &Path) -> Result<Vec<u8>, FetchError> {
    Ok(std::fs::read(path).map_err(skiff_io::io_err_at("read", path))?)
}

pub(crate) fn manifest_of_staged(path: &Path) -> Result<ImageManifest, FetchError> {
    let file = std::fs::File::open(path).map_err(skiff_io::io_err_at("read", path))?;
    let bytes = skiff_spec::aci::read_manifest_bytes(std::io::BufReader::new(file))
        .map_err(|e| FetchError::Store(StoreError::InvalidImage(e)))?;
    parse_image_manifest(&bytes).map_err(|e| {
        FetchError::Store(StoreError::InvalidImage(
            skiff_spec::aci::AciError::Manifest(e),
        ))
    })
}

impl Fetcher<'_> {
    /// Fetches one reference, its dependencies, and renders it.
    pub fn fetch(&self, input: &str) -> Result<Fetched, FetchError> {
        let fetched = match classify(input)? {
            Source::File(path) => self.fetch_file(&path, self.options.signature.as_deref())?,
            Source::Url(url) => {
                self.fetch_url(&url, None, self.options.signature.as_deref(), None)?
            }
            Source::Name(app) => self.fetch_name(&app)?,
            Source::Docker(r) => self.fetch_docker(&r)?,
            Source::OciLayout(spec) => self.fetch_layout(&spec, false)?,
            Source::OciArchive(spec) => self.fetch_layout(&spec, true)?,
            Source::Id(id) => self.fetch_id(&id)?,
        };
        self.fetch_dependencies(&fetched.manifest, 0)?;
        self.store.render(&fetched.id)?;
        Ok(fetched)
    }

    fn fetch_dependencies(&self, manifest: &ImageManifest, depth: usize) -> Result<(), FetchError> {
        if depth >= MAX_DEPENDENCY_DEPTH {
            return Err(FetchError::TooDeep(manifest.name.to_string()));
        }
        for dep in &manifest.dependencies {
            if stored::dependency_stored(self.store, dep)? {
                continue;
            }
            let labels = stored::dependency_labels(dep);
            tracing::info!(dependency = %dep.image_name, "fetching dependency");
            let app = AppName {
                name: dep.image_name.clone(),
                labels,
            };
            let fetched = self.fetch_name(&app)?;
            self.fetch_dependencies(&fetched.manifest, depth + 1)?;
        }
        Ok(())
    }

    /// Checks the staged image's signature; `None` when skipped by
    /// `--insecure-options=image`.
    fn verify(
        &self,
        staged: &Path,
        signature: Option<Vec<u8>>,
        looked_at: &str,
        discovery: Option<&AppName>,
    ) -> Result<Option<Verified>, FetchError> {
        let _step = tracing::debug_span!("verify", signature = looked_at).entered();
        let manifest = manifest_of_staged(staged)?;
        let name = manifest.name.to_string();
        if self.options.insecure.image {
            tracing::warn!("not checking the signature of {name} (--insecure-options=image)");
            return Ok(None);
        }
        let Some(signature) = signature else {
            return Err(FetchError::MissingSignature {
                image: name,
                looked_at: looked_at.to_string(),
            });
        };
        let mut keys = self.keystore.keys_for(&name)?;
        if keys.is_empty()
            && let Some(app) = discovery
            && self.options.trust_keys_from_https
        {
            self.trust_discovered_keys(app)?;
            keys = self.keystore.keys_for(&name)?;
        }
        if keys.is_empty() {
            return Err(FetchError::NoTrustedKeys { image: name });
        }
        skiff_trust::verify::verify_detached(&name, &keys, &signature, staged)
            .map(Some)
            .map_err(|source| FetchError::Signature {
                image: name,
                source,
            })
    }

    fn record_signature(
        &self,
        id: &ImageId,
        verified: &Option<Verified>,
        signature: Option<&[u8]>,
    ) -> Result<(), FetchError> {
        if let (Some(v), Some(sig)) = (verified, signature) {
            self.store.add_signature(id, &v.fingerprint, sig)?;
        }
        Ok(())
    }

    fn fetch_file(&self, path: &Path, signature: Option<&Path>) -> Result<Fetched, FetchError> {
        let staged = self.store.stage()?;
        {
            let mut src = std::fs::File::open(path).map_err(skiff_io::io_err_at("read", path))?;
            let mut dst = staged
                .file()
                .try_clone()
                .map_err(skiff_io::io_err_at("read", staged.path()))?;
            // Which side failed is the error: a full disk is not a bad file.
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = std::io::Read::read(&mut src, &mut buf)
                    .map_err(skiff_io::io_err_at("read", path))?;
                if n == 0 {
                    break;
                }
                std::io::Write::write_all(&mut dst, &buf[..n])
                    .map_err(skiff_io::io_err_at("write", staged.path()))?;
            }
        }
        let sig_path = signature.map_or_else(
            || PathBuf::from(format!("{}.asc", path.display())),
            Path::to_path_buf,
        );
        let sig = if sig_path.exists() {
            Some(read_file(&sig_path)?)
        } else {
            None
        };
        let verified = self.verify(
            staged.path(),
            sig.clone(),
            &sig_path.display().to_string(),
            None,
        )?;
        let imported = self.store.commit(staged, &self.options.archive_policy)?;
        self.record_signature(&imported.id, &verified, sig.as_deref())?;
        Ok(Fetched {
            id: imported.id,
            manifest: imported.manifest,
            verified,
            cached: false,
            new_blobs: Vec::new(),
        })
    }

    /// An image in the store by its ID: it was verified (or admitted
    /// with --insecure-options=image) when it was fetched, as the images a
    /// name finds in the store.
    fn fetch_id(&self, query: &str) -> Result<Fetched, FetchError> {
        let rec = match self.store.resolve(query) {
            Err(StoreError::NotFound(_)) => return Err(FetchError::IdNotInStore(query.into())),
            other => other?,
        };
        self.cached(&rec.id)?
            .ok_or_else(|| FetchError::IdNotInStore(query.into()))
    }

    fn cached(&self, id: &ImageId) -> Result<Option<Fetched>, FetchError> {
        stored::cached(self.store, id)
    }

    /// Fetches an image URL (with its signature at `asc_url` or beside it).
    fn fetch_url(
        &self,
        url: &str,
        asc_url: Option<&str>,
        signature_file: Option<&Path>,
        discovery: Option<&AppName>,
    ) -> Result<Fetched, FetchError> {
        self.http.check_scheme(url)?;
        let remote = self.store.index().remote(url)?;
        let cached = match &remote {
            Some(r) => self.cached(&r.image_id)?,
            None => None,
        };
        let policy = self.options.pull_policy;
        if let Some(hit) = &cached {
            let fresh = remote
                .as_ref()
                .is_some_and(|r| skiff_store::db::now() - r.download_time < r.max_age);
            if policy != PullPolicy::Update || fresh {
                tracing::info!(url, "using the stored image (pull policy {policy})");
                return Ok(hit.clone());
            }
        } else if policy == PullPolicy::Never {
            return Err(FetchError::NotInStore(url.to_string()));
        }
        let etag = cached
            .as_ref()
            .and(remote.as_ref())
            .and_then(|r| r.etag.clone());
        let staged = self.store.stage()?;
        let what = url.rsplit('/').next().unwrap_or(url).to_string();
        match self.http.download(
            url,
            staged.file(),
            etag.as_deref(),
            &what,
            self.options.archive_policy.max_bytes,
        )? {
            None => Err(FetchError::NotFound(url.to_string())),
            Some(Download::NotModified { max_age }) => {
                let (Some(hit), Some(mut r)) = (cached, remote) else {
                    return Err(FetchError::Http {
                        url: url.to_string(),
                        reason: "304 Not Modified for an image skiff does not have".into(),
                    });
                };
                tracing::info!(url, "not modified since the last fetch; nothing downloaded");
                r.download_time = skiff_store::db::now();
                r.max_age = max_age;
                self.store.set_remote(&r)?;
                Ok(hit)
            }
            Some(Download::Downloaded { etag, max_age, .. }) => {
                let (signature, looked_at) = match signature_file {
                    Some(path) => (Some(read_file(path)?), path.display().to_string()),
                    None => {
                        let asc = asc_url.map_or_else(|| format!("{url}.asc"), str::to_string);
                        let sig = if self.options.insecure.image {
                            None
                        } else {
                            match self.http.get_small(&asc, SMALL_LIMIT) {
                                Ok(bytes) => Some(bytes),
                                Err(FetchError::Status { status: 404, .. }) => None,
                                Err(e) => return Err(e),
                            }
                        };
                        (sig, asc)
                    }
                };
                let verified =
                    self.verify(staged.path(), signature.clone(), &looked_at, discovery)?;
                // Not another image its signer also signed (a mirror's
                // older version, another name under a wider key): refused
                // before it is stored.
                if let Some(app) = discovery {
                    check_manifest(app, &manifest_of_staged(staged.path())?)?;
                }
                let imported = self.store.commit(staged, &self.options.archive_policy)?;
                self.record_signature(&imported.id, &verified, signature.as_deref())?;
                self.store.set_remote(&RemoteRecord {
                    url: url.to_string(),
                    image_id: imported.id.clone(),
                    etag,
                    max_age,
                    download_time: skiff_store::db::now(),
                })?;
                Ok(Fetched {
                    id: imported.id,
                    manifest: imported.manifest,
                    verified,
                    cached: false,
                    new_blobs: Vec::new(),
                })
            }
        }
    }

    /// Discovery: the `ac-discovery` answers for `app`, walking up its prefixes.
    pub fn discover(&self, app: &AppName, want_keys: bool) -> Result<Discovered, FetchError> {
        let mut attempts = Vec::new();
        let mut away = true;
        for prefix in app.prefixes() {
            let mut page = None;
            for scheme in ["https", "http"] {
                if scheme == "http" && !self.options.insecure.http {
                    continue;
                }
                let url = format!("{scheme}://{prefix}?ac-discovery=1");
                match self.http.get_small(&url, SMALL_LIMIT) {
                    Ok(body) => {
                        page = Some(body);
                        break;
                    }
                    Err(e) => {
                        away &= is_away(&e);
                        attempts.push(e.to_string());
                    }
                }
            }
            let Some(page) = page else { continue };
            away = false;
            let found = discover(app, &meta_tags(&String::from_utf8_lossy(&page)));
            let enough = if want_keys {
                !found.public_keys.is_empty()
            } else {
                !found.endpoints.is_empty()
            };
            if enough {
                return Ok(found);
            }
            attempts.push(format!(
                "{prefix}: no matching {} meta tag",
                if want_keys {
                    "ac-discovery-pubkeys"
                } else {
                    "ac-discovery"
                }
            ));
        }
        Err(FetchError::Discovery {
            name: app.to_string(),
            away: away && !attempts.is_empty(),
            attempts,
        })
    }

    fn fetch_name(&self, app: &AppName) -> Result<Fetched, FetchError> {
        let app = stored::with_os_arch(app.clone());
        let policy = self.options.pull_policy;
        if policy != PullPolicy::Update {
            if let Some(hit) = stored::named(self.store, &app)? {
                return Ok(hit);
            }
            if policy == PullPolicy::Never {
                return Err(FetchError::NotInStore(app.to_string()));
            }
        }
        // Refuse before downloading anything when no key could accept it.
        if !self.options.insecure.image
            && !self.options.trust_keys_from_https
            && self.keystore.keys_for(app.name.as_str())?.is_empty()
        {
            return Err(FetchError::NoTrustedKeys {
                image: app.name.to_string(),
            });
        }
        let mirrored = mirrors::endpoints(&mirrors::load(&self.options.mirrors_dirs)?, &app);
        let found = match self.discover(&app, false) {
            Ok(mut found) => {
                for endpoint in mirrored {
                    if !found.endpoints.contains(&endpoint) {
                        found.endpoints.push(endpoint);
                    }
                }
                found
            }
            // The origin is away: peers may still have it. (Not when it
            // answered, "no such name" or wrongly: a fetch does not get
            // from peers what the origin would refuse.)
            Err(e) if mirrored.is_empty() => {
                if matches!(e, FetchError::Discovery { away: true, .. })
                    && let Some(fetched) = self.fetch_from_peers(&app, None)?
                {
                    return check_labels(&app, fetched);
                }
                return Err(e);
            }
            Err(e) => {
                tracing::warn!("{e}: trying the mirrors of mirrors.d");
                Discovered {
                    endpoints: mirrored,
                    public_keys: Vec::new(),
                }
            }
        };
        let mut found = found;
        if found.endpoints.len() > MAX_ENDPOINTS {
            tracing::warn!(
                "{} places serve {app}: only the first {MAX_ENDPOINTS} are used",
                found.endpoints.len()
            );
            found.endpoints.truncate(MAX_ENDPOINTS);
        }
        if self.may_have_peers()?
            && let Some(fetched) = self.fetch_named_from_peers(&app, &found)?
        {
            return check_labels(&app, fetched);
        }
        let mut last = None;
        // Whether every server was away (no connection, no answer, 5xx),
        // as opposed to answering "no such image" or wrongly.
        let mut away = true;
        for endpoint in &found.endpoints {
            match self.fetch_url(&endpoint.aci, Some(&endpoint.asc), None, Some(&app)) {
                Ok(fetched) => return check_labels(&app, fetched),
                Err(
                    e @ (FetchError::NotFound(_)
                    | FetchError::Status { .. }
                    | FetchError::Http { .. }
                    | FetchError::Unreachable { .. }),
                ) => {
                    away &= is_away(&e);
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        if away
            && last.is_some()
            && let Some(fetched) = self.fetch_from_peers(&app, None)?
        {
            return check_labels(&app, fetched);
        }
        Err(last.unwrap_or_else(|| FetchError::NotFound(app.to_string())))
    }

    /// With the origin up: the signature of the first endpoint that gives
    /// one (the origin's, else a mirror's), then the peers holding exactly
    /// that image. `None`: the origin it is.
    fn fetch_named_from_peers(
        &self,
        app: &AppName,
        found: &Discovered,
    ) -> Result<Option<Fetched>, FetchError> {
        if self.options.insecure.image {
            tracing::info!(
                "peers are not asked without a signature to match (--insecure-options=image)"
            );
            return Ok(None);
        }
        // The signature of the first server that gives one; the next
        // server is asked only if one is away (a server that answers "no
        // such signature" is not passed over for a mirror's).
        let mut signed = None;
        for endpoint in &found.endpoints {
            match self.http.get_small(&endpoint.asc, SMALL_LIMIT) {
                Ok(sig) => {
                    signed = Some((endpoint, sig));
                    break;
                }
                Err(e) if is_away(&e) => {
                    tracing::warn!(
                        "no signature from {} ({e}): trying the next server",
                        endpoint.asc
                    );
                }
                Err(e) => {
                    tracing::warn!("no signature from {} ({e}): peers not asked", endpoint.asc);
                    return Ok(None);
                }
            }
        }
        let Some((endpoint, signature)) = signed else {
            return Ok(None);
        };
        // Already here: an image stored with exactly that signature.
        for id in self.store.index().signed_with(&signature)? {
            if let Some(hit) = self.cached(&id)? {
                tracing::info!("the origin's image is in the store: nothing fetched");
                return Ok(Some(hit));
            }
        }
        // The origin's piece list, if it publishes one beside the image
        // (`skiff image pieces`): then this host joins the swarm.
        let pieces_url = format!("{}.pieces", endpoint.aci);
        let list = match self
            .http
            .get_small(&pieces_url, skiff_share::protocol::MAX_DOCUMENT)
        {
            Ok(body) => match serde_json::from_slice::<skiff_share::protocol::PieceList>(&body) {
                Ok(list) if list.check(list.size).is_ok() => Some(list),
                _ => {
                    tracing::warn!("{pieces_url} is not a piece list: ignored");
                    None
                }
            },
            Err(_) => None,
        };
        match list {
            Some(list) => {
                // Every server of the image sends pieces; the one that
                // signed first is recorded as where it came from.
                let mut urls = vec![endpoint.aci.as_str()];
                urls.extend(
                    found
                        .endpoints
                        .iter()
                        .map(|e| e.aci.as_str())
                        .filter(|u| *u != endpoint.aci),
                );
                self.fetch_swarm(app, &list, &signature, &urls)
            }
            None => {
                // The origin's size bounds what a peer may send.
                let Some(size) = self.http.size_of(&endpoint.aci) else {
                    tracing::info!("the origin does not say the image's size: peers not asked");
                    return Ok(None);
                };
                let origin = peers::Origin {
                    signature: &signature,
                    url: &endpoint.aci,
                    size,
                };
                self.fetch_from_peers(app, Some(origin))
            }
        }
    }

    /// Fetches a key from a file path or URL.
    pub fn fetch_key(&self, location: &str) -> Result<Vec<u8>, FetchError> {
        if location.starts_with("http://") && !self.options.insecure.pubkey {
            return Err(FetchError::Insecure {
                what: format!("key {location} over plain HTTP"),
                option: "pubkey",
            });
        }
        if location.starts_with("https://") || location.starts_with("http://") {
            return self.http.get_small(location, SMALL_LIMIT);
        }
        read_file(Path::new(
            location.strip_prefix("file://").unwrap_or(location),
        ))
    }

    /// Discovers the keys announced for `app`'s name, asks the reviewer, and
    /// trusts the approved ones for that name. Returns how many were added.
    pub fn trust_discovered_keys(&self, app: &AppName) -> Result<usize, FetchError> {
        let found = self.discover(app, true)?;
        let scope = Scope::prefix(app.name.as_str())?;
        let mut added = 0;
        for location in &found.public_keys {
            let bytes = self.fetch_key(location)?;
            let keys = skiff_trust::keystore::parse_keys(&bytes)?;
            for key in keys {
                let candidate = KeyCandidate {
                    prefix: app.name.to_string(),
                    location: location.clone(),
                    fingerprint: skiff_trust::keystore::fingerprint(&key),
                    user_ids: skiff_trust::keystore::user_ids(&key),
                };
                if self.review.approve(&candidate) {
                    self.keystore
                        .add(&[skiff_trust::PublicKey::OpenPgp(Box::new(key))], &scope)?;
                    added += 1;
                }
            }
        }
        Ok(added)
    }
}

/// `fetched` if it is the image `app` names (name and every label).
/// Endpoints (discovery templates and mirrors) one fetch uses, at most: a
/// page with thousands cannot make it ask thousands of servers.
const MAX_ENDPOINTS: usize = 8;

/// Whether `e` says a server is away (no connection, no answer, a server
/// error, or one shedding load: 408, 429), as opposed to an answer: then another server, or the
/// peers, may be asked instead.
fn is_away(e: &FetchError) -> bool {
    matches!(e, FetchError::Unreachable { .. })
        || matches!(e, FetchError::Status { status, .. } if *status >= 500 || http::transient(*status))
}

fn check_labels(app: &AppName, fetched: Fetched) -> Result<Fetched, FetchError> {
    check_manifest(app, &fetched.manifest)?;
    Ok(fetched)
}

/// Whether `m` is the image `app` names (name and every label).
pub(crate) fn check_manifest(app: &AppName, m: &ImageManifest) -> Result<(), FetchError> {
    let mismatched: Vec<String> = app
        .labels
        .iter()
        .filter(|(k, v)| m.label(k) != Some(v.as_str()))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if m.name != app.name || !mismatched.is_empty() {
        return Err(FetchError::WrongImage {
            asked: app.to_string(),
            got: m.name.to_string(),
            labels: if mismatched.is_empty() {
                String::new()
            } else {
                format!(" without labels {}", mismatched.join(","))
            },
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_cause_is_printed_once() {
        // skiff prints an error and then each of its sources: a wrapper
        // that shows its cause must not also return it as its source.
        let trust = FetchError::from(TrustError::BadKey("no packet".into()));
        assert!(trust.to_string().contains("no packet"), "{trust}");
        let source = std::error::Error::source(&trust).map(ToString::to_string);
        assert!(!source.is_some_and(|s| s.contains("no packet")), "{trust}");
    }
    use super::*;

    #[test]
    fn classifies_references() {
        assert!(matches!(
            classify("https://x.org/a.aci"),
            Ok(Source::Url(_))
        ));
        assert!(matches!(classify("file:///tmp/a.aci"), Ok(Source::File(_))));
        assert!(matches!(classify("./a.aci"), Ok(Source::File(_))));
        assert!(matches!(
            classify("example.com/app:1.0"),
            Ok(Source::Name(_))
        ));
        assert!(matches!(
            classify("docker://busybox"),
            Ok(Source::Docker(_))
        ));
        assert!(matches!(
            classify("docker://Bad/Name"),
            Err(FetchError::BadReference { .. })
        ));
        assert!(matches!(
            classify("Bad Name"),
            Err(FetchError::BadReference { .. })
        ));
    }
}
