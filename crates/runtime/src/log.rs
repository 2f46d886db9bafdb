//! `--log FILE` and `--log-format text|json`: containerd's shim passes
//! `--log <bundle>/log.json --log-format json` and reads the last error
//! line from there when a command fails. Errors and warnings also go to
//! stderr (without `--log`, only there).

use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug)]
struct Target {
    path: PathBuf,
    format: Format,
}

static TARGET: OnceLock<Target> = OnceLock::new();

/// Sets where messages go (once, at start).
pub fn init(path: Option<PathBuf>, format: Format) {
    if let Some(path) = path {
        let _ = TARGET.set(Target { path, format });
    }
}

fn write(level: &str, msg: &str) {
    let Some(t) = TARGET.get() else {
        return;
    };
    let line = match t.format {
        Format::Json => serde_json::json!({
            "level": level,
            "msg": msg,
            "time": crate::state::now_rfc3339(),
        })
        .to_string(),
        Format::Text => format!(
            "time=\"{}\" level={level} msg={:?}",
            crate::state::now_rfc3339(),
            msg
        ),
    };
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&t.path)
    {
        let _ = writeln!(f, "{line}");
    }
}

/// An error: to the log, and to stderr.
#[allow(clippy::print_stderr)]
pub fn error(msg: &str) {
    write("error", msg);
    eprintln!("skiff-runtime: {msg}");
}

/// Warnings held back while [`holding_warnings`] runs.
static HELD: std::sync::Mutex<Option<Vec<String>>> = std::sync::Mutex::new(None);

fn held() -> std::sync::MutexGuard<'static, Option<Vec<String>>> {
    HELD.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `f` with the warnings it gives held back, and returns them: a
/// caller that may re-execute itself (and so give them again) says them
/// only if it goes on.
pub fn holding_warnings<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    *held() = Some(Vec::new());
    let out = f();
    let warnings = held().take().unwrap_or_default();
    (out, warnings)
}

/// A warning: to the log, and to stderr.
#[allow(clippy::print_stderr)]
pub fn warn(msg: &str) {
    if let Some(held) = held().as_mut() {
        held.push(msg.to_string());
        return;
    }
    write("warning", msg);
    eprintln!("skiff-runtime: warning: {msg}");
}
