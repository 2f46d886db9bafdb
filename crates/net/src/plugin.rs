//! One CNI plugin invocation: the plugin binary found in the plugin path,
//! `CNI_*` in a cleared environment, the configuration on stdin, the result
//! (or the CNI error object) on stdout, within a time limit.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::NetError;

/// Longest a plugin may run before it is killed.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Largest plugin output read.
const MAX_OUTPUT: u64 = 1 << 20;

/// A CNI command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Add,
    Check,
    Del,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Add => "ADD",
            Verb::Check => "CHECK",
            Verb::Del => "DEL",
        }
    }
}

/// What a plugin is run on.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    pub container_id: &'a str,
    pub netns: &'a Path,
    pub ifname: &'a str,
    /// `CNI_ARGS` pairs.
    pub args: &'a [(String, String)],
}

/// Finds the plugin `kind` in `path`.
pub fn find(path: &[PathBuf], network: &str, kind: &str) -> Result<PathBuf, NetError> {
    path.iter()
        .map(|dir| dir.join(kind))
        .find(|p| p.is_file())
        .ok_or_else(|| NetError::PluginNotFound {
            network: network.to_string(),
            plugin: kind.to_string(),
            path: path
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(":"),
        })
}

/// Runs one plugin; returns its parsed stdout (`Null` when it printed
/// nothing, as DEL and CHECK do).
pub fn invoke(
    path: &[PathBuf],
    network: &str,
    kind: &str,
    verb: Verb,
    target: &Target<'_>,
    config: &Value,
) -> Result<Value, NetError> {
    let binary = find(path, network, kind)?;
    let failed = |message: String| NetError::Plugin {
        network: network.to_string(),
        plugin: kind.to_string(),
        command: verb.as_str().to_string(),
        message,
    };
    let cni_args = target
        .args
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(";");
    let cni_path = std::env::join_paths(path).map_err(|e| failed(e.to_string()))?;
    // Its own process group: a Ctrl-C on `skiff run` is for the pod, not
    // for a plugin halfway through setting up or tearing down its network.
    let mut child = Command::new(&binary)
        .process_group(0)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_COMMAND", verb.as_str())
        .env("CNI_CONTAINERID", target.container_id)
        .env("CNI_NETNS", target.netns)
        .env("CNI_IFNAME", target.ifname)
        .env("CNI_ARGS", cni_args)
        .env("CNI_PATH", cni_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(format!("cannot start {}: {e}", binary.display())))?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let out = std::thread::spawn(move || read_limited(stdout));
    let err = std::thread::spawn(move || read_limited(stderr));
    let input = serde_json::to_vec(config).map_err(|e| failed(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A plugin that exits without reading gives EPIPE: its status says why.
        let _ = stdin.write_all(&input);
    }
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(failed(format!("no answer within {} s", TIMEOUT.as_secs())));
            }
            Err(e) => return Err(failed(e.to_string())),
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    let parsed: Option<Value> = serde_json::from_slice(&stdout).ok();
    if !status.success() {
        return Err(failed(error_message(parsed.as_ref(), &stderr, status)));
    }
    if stdout.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    match parsed {
        Some(v @ Value::Object(_)) => Ok(v),
        _ => Err(failed(format!(
            "its output is not a JSON object: {}",
            String::from_utf8_lossy(&stdout[..stdout.len().min(200)])
        ))),
    }
}

fn read_limited<R: Read>(stream: Option<R>) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Some(s) = stream {
        let _ = s.take(MAX_OUTPUT).read_to_end(&mut buf);
    }
    buf
}

/// The CNI error object's `msg` (and `details`), else stderr, else the status.
fn error_message(
    parsed: Option<&Value>,
    stderr: &[u8],
    status: std::process::ExitStatus,
) -> String {
    if let Some(msg) = parsed.and_then(|v| v.get("msg")).and_then(Value::as_str) {
        let details = parsed
            .and_then(|v| v.get("details"))
            .and_then(Value::as_str)
            .filter(|d| !d.is_empty());
        return match details {
            Some(d) => format!("{msg} ({d})"),
            None => msg.to_string(),
        };
    }
    let text = String::from_utf8_lossy(stderr);
    match text.lines().rev().find(|l| !l.trim().is_empty()) {
        Some(line) => line.trim().to_string(),
        None => format!("it exited with {status}"),
    }
}
