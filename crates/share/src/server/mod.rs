//! `skiff serve`: the store's images, read-only, over HTTP, to peers.
//!
//! * [`catalog`]: the shared directories as the protocol names them.
//! * [`confine`]: the mount namespace and user the server runs in.
//! * [`range`]: `Range` headers.
//! * [`rate`]: requests per second per address.
//! * this file: the HTTP answers.

mod catalog;
pub mod confine;
pub mod range;
mod rate;

use std::collections::BTreeMap;
use std::io::{Seek, SeekFrom};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use skiff_io::listener::{Guarded, Limits, Peer};
use skiff_io::{IoError, io_err};
use skiff_store::serving::ServedDirs;
use tokio::io::AsyncReadExt;

pub use crate::cidr::Cidr;
use crate::protocol::{BlobRef, Kind, PREFIX, check_fingerprint};
use catalog::Catalog;
pub use confine::ServeUser;

/// The server's connection limits: a site's peers fetch many pieces at
/// once, but no address needs more than 64 connections.
pub const LIMITS: Limits = Limits {
    total: 1024,
    per_peer: 64,
    idle: Duration::from_secs(30),
    // One host can hold a whole /64.
    v6_prefix: 64,
};
/// Requests per second per address, and the burst allowed.
pub const RATE: (u32, u32) = (200, 400);
/// Piece lists computed at once (each reads a whole blob).
const HASHING_AT_ONCE: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Io(#[from] IoError),
    #[error("cannot confine the server")]
    Confine(#[from] confine::ConfineError),
    #[error("cannot announce the server (--mdns)")]
    Announce(#[from] crate::mdns::MdnsError),
}

/// What `skiff serve` was asked.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub dirs: ServedDirs,
    pub user: ServeUser,
    pub allow: Vec<Cidr>,
    /// Announce the server on the local segment (mDNS).
    pub mdns: bool,
}

struct App {
    catalog: Catalog,
    allow: Vec<Cidr>,
    rate: rate::RateLimit,
    hashing: tokio::sync::Semaphore,
}

/// Binds, confines itself, prints the address it serves (`ready` is called
/// with it) and serves until SIGTERM or SIGINT.
pub fn run(config: ServeConfig, ready: impl FnOnce(SocketAddr)) -> Result<(), ServeError> {
    let listener = std::net::TcpListener::bind(config.listen)
        .map_err(io_err(format!("listen on {}", config.listen)))?;
    let bound = listener
        .local_addr()
        .map_err(io_err("read the bound address"))?;
    listener
        .set_nonblocking(true)
        .map_err(io_err("set the listener non-blocking"))?;
    confine::close_inherited()?;
    let dirs = confine::confine(&config.dirs, config.user)?;
    // After confinement: the announcer is a thread, and runs confined too.
    let announcement = if config.mdns {
        Some(crate::mdns::Announcement::start(
            bound,
            config.allow.clone(),
        )?)
    } else {
        None
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io_err("start the async runtime"))?;
    let allow = config.allow.clone();
    let withdraw = announcement
        .as_ref()
        .map(crate::mdns::Announcement::withdraw);
    let app = Arc::new(App {
        catalog: Catalog::new(dirs),
        allow: config.allow,
        rate: rate::RateLimit::new(RATE.0, RATE.1),
        hashing: tokio::sync::Semaphore::new(HASHING_AT_ONCE),
    });
    let served = runtime.block_on(async move {
        let listener =
            tokio::net::TcpListener::from_std(listener).map_err(io_err("use the listener"))?;
        ready(bound);
        let router = axum::Router::new().fallback(handle).with_state(app);
        let allowed = allow.clone();
        axum::serve(
            Guarded::allowing(listener, LIMITS, move |ip| {
                allowed.iter().any(|c| c.contains(ip))
            }),
            router.into_make_service_with_connect_info::<Peer>(),
        )
        .with_graceful_shutdown(async move {
            skiff_io::listener::shutdown_signal().await;
            // Goodbye at once: peers stop asking while transfers finish.
            if let Some(withdraw) = withdraw {
                withdraw.now();
            }
        })
        .await
        .map_err(io_err("serve HTTP"))?;
        tracing::info!("stopped serving");
        Ok(())
    });
    if let Some(announcement) = announcement {
        announcement.stop();
    }
    served
}

fn status(code: StatusCode) -> Response {
    (code, code.canonical_reason().unwrap_or("")).into_response()
}

async fn handle(
    State(app): State<Arc<App>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let ip = peer.ip().to_canonical();
    if !app.allow.iter().any(|c| c.contains(ip)) {
        tracing::debug!(%peer, "not in --allow: refused");
        return status(StatusCode::FORBIDDEN);
    }
    if !app.rate.admit(
        skiff_io::listener::client_key(ip, LIMITS.v6_prefix),
        Instant::now(),
    ) {
        return status(StatusCode::TOO_MANY_REQUESTS);
    }
    if method != Method::GET && method != Method::HEAD {
        return status(StatusCode::METHOD_NOT_ALLOWED);
    }
    let Some(rest) = uri
        .path()
        .strip_prefix(PREFIX)
        .and_then(|r| r.strip_prefix('/'))
    else {
        return status(StatusCode::NOT_FOUND);
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let answer = match parts.as_slice() {
        ["images"] => offers(&app, uri.query().unwrap_or("")).await,
        ["swarm", key] => send_swarm(&app, key, &headers).await,
        ["swarm", key, "have"] => match app.catalog.have(key) {
            Ok(have) => {
                ([(header::CONTENT_TYPE, "application/octet-stream")], have).into_response()
            }
            Err(_) => status(StatusCode::NOT_FOUND),
        },
        [kind, hex] => match blob_ref(kind, hex) {
            Some(blob) => send_blob(&app, &blob, &headers).await,
            None => status(StatusCode::NOT_FOUND),
        },
        [kind, hex, "pieces"] => match blob_ref(kind, hex) {
            Some(blob) => pieces(&app, blob).await,
            None => status(StatusCode::NOT_FOUND),
        },
        ["aci", hex, "signatures", fingerprint] => {
            match (Kind::Aci.check_hex(hex), check_fingerprint(fingerprint)) {
                (Some(hex), Some(fingerprint)) => match app.catalog.signature(hex, fingerprint) {
                    Ok(bytes) => ([(header::CONTENT_TYPE, "application/pgp-signature")], bytes)
                        .into_response(),
                    Err(_) => status(StatusCode::NOT_FOUND),
                },
                _ => status(StatusCode::NOT_FOUND),
            }
        }
        _ => status(StatusCode::NOT_FOUND),
    };
    tracing::debug!(%peer, path = uri.path(), status = answer.status().as_u16(), "answered");
    answer
}

fn blob_ref(kind: &str, hex: &str) -> Option<BlobRef> {
    let kind = match kind {
        "aci" => Kind::Aci,
        "layers" => Kind::Layer,
        _ => return None,
    };
    kind.check_hex(hex).map(|hex| BlobRef {
        kind,
        hex: hex.to_string(),
    })
}

async fn offers(app: &Arc<App>, query: &str) -> Response {
    let mut name = None;
    let mut labels = BTreeMap::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if k == "name" {
            name = Some(v.into_owned());
        } else {
            labels.insert(k.into_owned(), v.into_owned());
        }
    }
    let Some(name) = name else {
        return (StatusCode::BAD_REQUEST, "name is required").into_response();
    };
    let app = app.clone();
    match tokio::task::spawn_blocking(move || app.catalog.offers(&name, &labels)).await {
        Ok(Ok(offers)) => axum::Json(offers).into_response(),
        Ok(Err(e)) => {
            tracing::warn!("cannot list the shared images: {e}");
            status(StatusCode::INTERNAL_SERVER_ERROR)
        }
        Err(_) => status(StatusCode::INTERNAL_SERVER_ERROR),
    }
}

async fn pieces(app: &Arc<App>, blob: BlobRef) -> Response {
    let Ok(_permit) = app.hashing.acquire().await else {
        return status(StatusCode::SERVICE_UNAVAILABLE);
    };
    let app = app.clone();
    match tokio::task::spawn_blocking(move || app.catalog.pieces(&blob)).await {
        Ok(Ok(list)) => axum::Json(list.as_ref().clone()).into_response(),
        _ => status(StatusCode::NOT_FOUND),
    }
}

async fn send_blob(app: &Arc<App>, blob: &BlobRef, headers: &HeaderMap) -> Response {
    let Ok((file, size)) = app.catalog.open(blob) else {
        return status(StatusCode::NOT_FOUND);
    };
    let asked = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    match range::wanted(asked, size) {
        range::Wanted::Whole => send_part(file, size, StatusCode::OK, 0..size),
        range::Wanted::Part(part) => send_part(file, size, StatusCode::PARTIAL_CONTENT, part),
        range::Wanted::Unsatisfiable => unsatisfiable(size),
    }
}

/// A range of a blob a swarm is fetching: only pieces this host has.
async fn send_swarm(app: &Arc<App>, key: &str, headers: &HeaderMap) -> Response {
    let Ok((file, size)) = app.catalog.open_partial_file(key) else {
        return status(StatusCode::NOT_FOUND);
    };
    let asked = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    // A range is required: a whole partial download is no answer.
    let range::Wanted::Part(part) = range::wanted(asked, size) else {
        return unsatisfiable(size);
    };
    match app.catalog.swarm_has(key, size, &part) {
        Ok(true) => send_part(file, size, StatusCode::PARTIAL_CONTENT, part),
        _ => status(StatusCode::NOT_FOUND),
    }
}

fn unsatisfiable(size: u64) -> Response {
    let mut refused = status(StatusCode::RANGE_NOT_SATISFIABLE);
    if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
        refused.headers_mut().insert(header::CONTENT_RANGE, v);
    }
    refused
}

/// Sends bytes `part` of `file` (`size` bytes in all).
fn send_part(
    mut file: std::fs::File,
    size: u64,
    code: StatusCode,
    part: std::ops::Range<u64>,
) -> Response {
    if file.seek(SeekFrom::Start(part.start)).is_err() {
        return status(StatusCode::INTERNAL_SERVER_ERROR);
    }
    let len = part.end - part.start;
    let reader = tokio::fs::File::from_std(file).take(len);
    let mut response = Response::new(Body::from_stream(
        tokio_util::io::ReaderStream::with_capacity(reader, 1 << 16),
    ));
    *response.status_mut() = code;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if code == StatusCode::PARTIAL_CONTENT
        && let Ok(v) =
            HeaderValue::from_str(&format!("bytes {}-{}/{size}", part.start, part.end - 1))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    response
}
