//! `skiff metadata-service`: a separate, optional long-running process (it
//! runs no pods). Registration arrives on a root-only Unix socket under the
//! data dir; pods call the HTTP API on TCP.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UnixListener, UnixStream};

use crate::api::{self, Shared};
use crate::protocol::{self, Reply, Request};
use crate::state::State;

/// Largest request body pods may send (sign/verify forms).
const MAX_BODY: usize = 64 * 1024;

#[derive(Debug)]
pub struct Config {
    /// skiff's data dir: the registration socket and state live under it,
    /// and running pods are found in it.
    pub data_dir: PathBuf,
    /// Where pods reach the API (port 0: any free port).
    pub listen: SocketAddr,
    /// A listening socket from systemd's socket activation, used instead
    /// of `listen`.
    pub activated: Option<std::os::fd::OwnedFd>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Io(#[from] skiff_io::IoError),
    #[error("a metadata service already runs for {0}")]
    AlreadyRunning(String),
    #[error(
        "the socket systemd passed is not a listening TCP socket: give the .socket unit ListenStream=ADDRESS:PORT"
    )]
    Activation,
}

use skiff_io::io_err as io;

/// Whether pod `uuid` of `data_dir` is running: its stage1 holds the lock
/// on `pods/run/<uuid>`.
fn pod_running(data_dir: &std::path::Path, uuid: &str) -> bool {
    let Ok(dir) = std::fs::File::open(data_dir.join("pods/run").join(uuid)) else {
        return false;
    };
    rustix::fs::flock(&dir, rustix::fs::FlockOperation::NonBlockingLockShared).is_err()
}

/// Every connection is a descriptor: the soft limit (often 1024) is raised
/// to the hard one, so the connection limits of [`crate::LIMITS`], not
/// the descriptor limit, decide who is served.
fn raise_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::warn!("cannot raise the open file limit: {e}");
        }
    }
}

/// Runs the service until SIGTERM or SIGINT.
pub fn run(config: Config) -> Result<(), ServerError> {
    raise_file_limit();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io("start the async runtime"))?;
    runtime.block_on(serve(config))
}

async fn serve(mut config: Config) -> Result<(), ServerError> {
    let socket = protocol::socket_path(&config.data_dir);
    if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
        return Err(ServerError::AlreadyRunning(
            config.data_dir.display().to_string(),
        ));
    }
    let tcp = listen(&mut config).await?;
    let listen = tcp.local_addr().map_err(io("read the bound address"))?;
    let port = listen.port();
    let data_dir = config.data_dir.clone();
    let state = State::open(&protocol::state_dir(&config.data_dir), listen, |uuid| {
        pod_running(&data_dir, uuid)
    })
    .map_err(io(format!(
        "open the state in {}",
        protocol::state_dir(&config.data_dir).display()
    )))?;
    if let Err(e) = std::fs::write(port_file(&config.data_dir), format!("{port}\n")) {
        tracing::warn!("cannot record the port ({e}): a restart will pick another");
    }
    let _ = std::fs::remove_file(&socket);
    let unix =
        UnixListener::bind(&socket).map_err(io(format!("listen on {}", socket.display())))?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
        .map_err(io("restrict the registration socket"))?;
    tracing::info!(
        port,
        socket = %socket.display(),
        pods = state.len(),
        "metadata service listening"
    );
    drop_capabilities();
    let shared: Shared = Arc::new(Mutex::new(state));

    let app = router(shared.clone());
    let registrations = tokio::spawn(accept_registrations(unix, shared.clone()));
    let guarded = skiff_io::listener::Guarded::new(tcp, crate::LIMITS);
    let result = axum::serve(
        guarded,
        app.into_make_service_with_connect_info::<skiff_io::listener::Peer>(),
    )
    .with_graceful_shutdown(skiff_io::listener::shutdown_signal())
    .await;
    registrations.abort();
    let _ = std::fs::remove_file(&socket);
    tracing::info!("metadata service stopped");
    Ok(result.map_err(io("serve HTTP"))?)
}

/// The HTTP API (the connection's [`skiff_io::listener::Peer`] is needed by
/// every route).
fn router(shared: Shared) -> Router {
    Router::new()
        .fallback(api::handle)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(shared)
}

/// Where the port of the last run is kept.
fn port_file(data_dir: &std::path::Path) -> std::path::PathBuf {
    protocol::state_dir(data_dir).join("port")
}

/// Binds the service's port. Asked for any free port (0), it takes the one
/// of its last run again if it can: running pods reach the service at the
/// port they were registered with (a user-mode network forwards exactly
/// that one), so a restart must not move it.
async fn listen(config: &mut Config) -> Result<TcpListener, ServerError> {
    if let Some(fd) = config.activated.take() {
        rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC)
            .map_err(|e| io("use the activated socket")(e.into()))?;
        use rustix::net::{AddressFamily, sockopt};
        let tcp = matches!(
            sockopt::socket_domain(&fd),
            Ok(AddressFamily::INET | AddressFamily::INET6)
        ) && sockopt::socket_acceptconn(&fd).unwrap_or(false);
        if !tcp {
            return Err(ServerError::Activation);
        }
        let listener = std::net::TcpListener::from(fd);
        listener
            .set_nonblocking(true)
            .map_err(io("use the activated socket"))?;
        return Ok(TcpListener::from_std(listener).map_err(io("use the activated socket"))?);
    }
    let last = match config.listen.port() {
        0 => std::fs::read_to_string(port_file(&config.data_dir))
            .ok()
            .and_then(|t| t.trim().parse::<u16>().ok())
            .filter(|p| *p != 0),
        _ => None,
    };
    if let Some(port) = last {
        let at = SocketAddr::new(config.listen.ip(), port);
        match TcpListener::bind(at).await {
            Ok(listener) => return Ok(listener),
            Err(e) => tracing::warn!(
                "the port of the last run, {port}, is taken ({e}): listening on another; pods registered before cannot reach this service"
            ),
        }
    }
    Ok(TcpListener::bind(config.listen)
        .await
        .map_err(io(format!("listen on {}", config.listen)))?)
}

/// After binding, the service needs no capability: its files are root's
/// own (owner permissions suffice) and its ports are bound.
fn drop_capabilities() {
    for set in [
        caps::CapSet::Effective,
        caps::CapSet::Permitted,
        caps::CapSet::Inheritable,
        caps::CapSet::Ambient,
    ] {
        if let Err(e) = caps::clear(None, set) {
            tracing::warn!("cannot drop capabilities ({set:?}): {e}");
        }
    }
    let _ = rustix::thread::set_no_new_privs(true);
}

async fn accept_registrations(listener: UnixListener, shared: Shared) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            if let Err(e) = registration(stream, shared).await {
                tracing::warn!("registration connection: {e}");
            }
        });
    }
}

async fn registration(stream: UnixStream, shared: Shared) -> std::io::Result<()> {
    let root = stream.peer_cred().map(|c| c.uid() == 0).unwrap_or(false);
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    BufReader::new(read.take(protocol::MAX_MESSAGE))
        .read_line(&mut line)
        .await?;
    let reply = answer_registration(&line, root, &shared);
    let mut out = serde_json::to_vec(&reply).map_err(std::io::Error::other)?;
    out.push(b'\n');
    write.write_all(&out).await
}

/// The reply to one registration line from a client that is root (stage1)
/// or not.
fn answer_registration(line: &str, root: bool, shared: &Shared) -> Reply {
    if !root {
        return Reply {
            error: Some("only root (stage1) may register pods".into()),
            ..Reply::default()
        };
    }
    match serde_json::from_str::<Request>(line) {
        Err(e) => Reply {
            error: Some(format!("malformed request: {e}")),
            ..Reply::default()
        },
        Ok(request) => handle_request(request, shared),
    }
}

fn handle_request(request: Request, shared: &Shared) -> Reply {
    let Ok(mut state) = shared.lock() else {
        return Reply {
            error: Some("internal error".into()),
            ..Reply::default()
        };
    };
    match request {
        Request::Register(reg) => {
            let uuid = reg.uuid.clone();
            if crate::state::uuid_bytes(&uuid).is_none() {
                return Reply {
                    error: Some(format!("{uuid:?} is not a UUID")),
                    ..Reply::default()
                };
            }
            match state.register(reg) {
                Ok(token) => {
                    tracing::info!(pod = %uuid, "registered");
                    Reply {
                        token: Some(token),
                        port: Some(state.listen.port()),
                        error: None,
                    }
                }
                Err(e) => Reply {
                    error: Some(format!("cannot record the pod: {e}")),
                    ..Reply::default()
                },
            }
        }
        Request::Unregister { uuid } => {
            if state.unregister(&uuid) {
                tracing::info!(pod = %uuid, "unregistered");
            }
            Reply::default()
        }
    }
}

/// Entry points for the fuzz targets of fuzz/ (feature `fuzzing`, never
/// in skiff's own build): the service's own code, fed bytes instead of
/// sockets.
#[cfg(feature = "fuzzing")]
pub mod fuzzing {
    use std::sync::OnceLock;

    use super::{Reply, Request, Shared, State, answer_registration, router};
    use crate::protocol::Registration;
    use skiff_io::listener::Peer;

    /// Most response bytes read back from one exchange.
    const MAX_RESPONSE: u64 = 1 << 20;

    struct Service {
        _dir: tempfile::TempDir,
        shared: Shared,
        token: String,
        runtime: tokio::runtime::Runtime,
    }

    fn open(dir: &tempfile::TempDir) -> Shared {
        let listen: std::net::SocketAddr = ([0, 0, 0, 0], crate::DEFAULT_PORT).into();
        let state = State::open(dir.path(), listen, |_| true).expect("state in a temporary dir");
        std::sync::Arc::new(std::sync::Mutex::new(state))
    }

    /// A service with one pod on the host's network, whose app has an
    /// image with annotations.
    fn service() -> &'static Service {
        static SERVICE: OnceLock<Service> = OnceLock::new();
        SERVICE.get_or_init(|| {
            let dir = tempfile::tempdir().expect("a temporary dir");
            let shared = open(&dir);
            let manifest = r#"{"acKind":"PodManifest","acVersion":"0.8.11","apps":[{"name":"app","annotations":[{"name":"a","value":"pod"}]}],"annotations":[{"name":"p","value":"v"}]}"#;
            let image = r#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/app","annotations":[{"name":"a","value":"image"},{"name":"b","value":"image"}]}"#;
            let token = shared
                .lock()
                .expect("fresh lock")
                .register(Registration {
                    uuid: "6f2c1a4e-0d3b-4c6a-9e8f-112233445566".into(),
                    manifest: manifest.into(),
                    apps: vec![crate::protocol::AppImage {
                        name: "app".into(),
                        image_id: format!("sha512-{}", "0".repeat(32)),
                        manifest: image.into(),
                    }],
                    ip: None,
                    forwarded: false,
                    mapped_peer: false,
                })
                .expect("registration in a temporary dir");
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            Service {
                _dir: dir,
                shared,
                token,
                runtime,
            }
        })
    }

    /// One HTTP/1 connection to the API from 127.0.0.1 that sends
    /// `request` (where `TOKEN` stands for the registered pod's token),
    /// then closes its side; returns what the service answered.
    pub fn http(request: &[u8]) -> Vec<u8> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let service = service();
        let mut bytes = Vec::with_capacity(request.len());
        let mut rest = request;
        while let Some(at) = rest.windows(5).position(|w| w == b"TOKEN") {
            bytes.extend_from_slice(&rest[..at]);
            bytes.extend_from_slice(service.token.as_bytes());
            rest = &rest[at + 5..];
        }
        bytes.extend_from_slice(rest);
        let peer = Peer(([127, 0, 0, 1], 40000).into());
        let app = router(service.shared.clone())
            .layer(axum::extract::connect_info::MockConnectInfo(peer));
        let (mut client, server) = tokio::io::duplex(1 << 16);
        service.runtime.block_on(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .half_close(true)
                .serve_connection(
                    hyper_util::rt::TokioIo::new(server),
                    hyper_util::service::TowerToHyperService::new(app),
                );
            let talk = async move {
                let _ = client.write_all(&bytes).await;
                let _ = client.shutdown().await;
                let mut answer = Vec::new();
                let _ = (&mut client)
                    .take(MAX_RESPONSE)
                    .read_to_end(&mut answer)
                    .await;
                answer
            };
            let (_, answer) = tokio::join!(conn, talk);
            answer
        })
    }

    /// The reply to one registration line from root, on a service of its
    /// own (whatever it registers is removed again).
    pub fn registration(line: &[u8]) -> Reply {
        static STATE: OnceLock<(tempfile::TempDir, Shared)> = OnceLock::new();
        let (_, shared) = STATE.get_or_init(|| {
            let dir = tempfile::tempdir().expect("a temporary dir");
            let shared = open(&dir);
            (dir, shared)
        });
        let line = String::from_utf8_lossy(line);
        let reply = answer_registration(&line, true, shared);
        if reply.token.is_some()
            && let Ok(Request::Register(reg)) = serde_json::from_str::<Request>(&line)
            && let Ok(mut state) = shared.lock()
        {
            state.unregister(&reg.uuid);
        }
        reply
    }
}
