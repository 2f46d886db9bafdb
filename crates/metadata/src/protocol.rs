//! Registration: stage1 sends one JSON line on the service's Unix socket
//! (`<data>/metadata/registration.sock`, root only) and reads one back.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Largest registration message (a pod manifest plus image manifests).
pub const MAX_MESSAGE: u64 = 8 << 20;

/// The directory of the service's state under a data dir.
pub fn state_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("metadata")
}

/// The registration socket of the service for `data_dir`.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    state_dir(data_dir).join("registration.sock")
}

/// One app of a registered pod.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppImage {
    pub name: String,
    pub image_id: String,
    /// The image manifest, JSON text.
    pub manifest: String,
}

/// What stage1 tells the service about a starting pod.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Registration {
    pub uuid: String,
    /// The pod manifest, JSON text, served as is.
    pub manifest: String,
    pub apps: Vec<AppImage>,
    /// The pod's address on its first network: requests with its token must
    /// come from there. None with host networking.
    pub ip: Option<String>,
    /// The pod reaches the service through its user-mode network (pasta
    /// forwards the port from the pod's loopback): requests with its token
    /// must come from a socket of the service's own user.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forwarded: bool,
    /// An ordinary user's pod on the host's network: requests with its
    /// token must come from a socket whose owner the service's user
    /// namespace maps (the user or its subordinate ids), not another
    /// user's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mapped_peer: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Request {
    Register(Registration),
    Unregister { uuid: String },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// The pod's secret token (register).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The TCP port pods reach the service on (register).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no metadata service runs for this data dir ({0}); start `skiff metadata-service`")]
    NotRunning(String),
    #[error("cannot talk to the metadata service")]
    Io(#[from] std::io::Error),
    #[error("metadata service refused: {0}")]
    Refused(String),
}

fn call(data_dir: &Path, request: &Request) -> Result<Reply, ClientError> {
    let path = socket_path(data_dir);
    let mut stream = UnixStream::connect(&path)
        .map_err(|_| ClientError::NotRunning(path.display().to_string()))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut line = serde_json::to_vec(request).map_err(std::io::Error::other)?;
    line.push(b'\n');
    stream.write_all(&line)?;
    let mut answer = String::new();
    BufReader::new(stream.take(MAX_MESSAGE)).read_line(&mut answer)?;
    let reply: Reply = serde_json::from_str(&answer)
        .map_err(|e| ClientError::Refused(format!("unreadable answer: {e}")))?;
    match reply.error {
        Some(e) => Err(ClientError::Refused(e)),
        None => Ok(reply),
    }
}

/// Registers a pod; returns its token and the service's TCP port.
pub fn register(data_dir: &Path, registration: Registration) -> Result<(String, u16), ClientError> {
    let reply = call(data_dir, &Request::Register(registration))?;
    match (reply.token, reply.port) {
        (Some(t), Some(p)) => Ok((t, p)),
        _ => Err(ClientError::Refused("no token in the answer".into())),
    }
}

/// Forgets a pod (its token stops working).
pub fn unregister(data_dir: &Path, uuid: &str) -> Result<(), ClientError> {
    call(
        data_dir,
        &Request::Unregister {
            uuid: uuid.to_string(),
        },
    )
    .map(drop)
}
