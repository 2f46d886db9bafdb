//! `<pod>/net/info.json`: the pod's network namespace and networks (each
//! with the exact configuration), written *before* ADD runs so teardown
//! always knows what to delete; read by `skiff list/status` for the IPs.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Attachment, NetError, io_err};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NetInfo {
    pub netns: PathBuf,
    pub networks: Vec<Attachment>,
}

/// The pod's networking directory (`<pod>/net`).
pub fn dir(pod: &Path) -> PathBuf {
    pod.join("net")
}

/// The record of the pod at `pod`, if it has one.
pub fn read(pod: &Path) -> Option<NetInfo> {
    let text = std::fs::read(dir(pod).join("info.json")).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Replaces the record atomically.
pub fn write(pod: &Path, info: &NetInfo) -> Result<(), NetError> {
    let path = dir(pod).join("info.json");
    let tmp = dir(pod).join(".info.json.tmp");
    let text = serde_json::to_vec_pretty(info)
        .map_err(|e| io_err("encode the network record")(e.into()))?;
    Ok(std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(io_err(format!("write {}", path.display())))?)
}

/// Removes the record (after a complete teardown).
pub fn remove(pod: &Path) {
    let _ = std::fs::remove_file(dir(pod).join("info.json"));
}
