//! Hooks (runtime-spec config.md#posix-platform-hooks): each runs with the
//! container's state on stdin, its own args and env, and is killed after
//! its timeout. A failing prestart, createRuntime, createContainer or
//! startContainer hook fails the operation; poststart and poststop
//! failures are warnings.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

use crate::{Result, RuntimeError};

/// Runs `hooks` in order with `state` on stdin; the first failure ends it.
pub fn run(kind: &str, hooks: &[Hook], state: &serde_json::Value) -> Result<()> {
    for hook in hooks {
        run_one(kind, hook, state)?;
    }
    Ok(())
}

/// Runs `hooks`, logging failures as warnings (poststart, poststop).
pub fn run_warn(kind: &str, hooks: &[Hook], state: &serde_json::Value) {
    for hook in hooks {
        if let Err(e) = run_one(kind, hook, state) {
            crate::log::warn(&crate::error_line(&e));
        }
    }
}

fn run_one(kind: &str, hook: &Hook, state: &serde_json::Value) -> Result<()> {
    let path = hook.path();
    let failed = |why: String| RuntimeError::Init(format!("{kind} hook {}: {why}", path.display()));
    let mut cmd = Command::new(path);
    if let Some((arg0, rest)) = hook.args().as_deref().and_then(|a| a.split_first()) {
        cmd.arg0(arg0);
        cmd.args(rest);
    }
    cmd.env_clear();
    for var in hook.env().iter().flatten() {
        if let Some((k, v)) = var.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| failed(format!("cannot run it: {e}")))?;
    // Written by a thread: a hook that does not read a large state must
    // not block the runtime past its timeout (not reading is no failure).
    let writer = child.stdin.take().map(|mut stdin| {
        let text = state.to_string();
        std::thread::spawn(move || {
            let _ = stdin.write_all(text.as_bytes());
        })
    });
    let deadline = hook
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    let result = loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => break Ok(()),
            Ok(Some(status)) => break Err(failed(format!("it failed ({status})"))),
            Ok(None) => {}
            Err(e) => break Err(failed(format!("cannot wait for it: {e}"))),
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            break Err(failed(format!(
                "it did not finish within its timeout of {} s",
                hook.timeout().unwrap_or(0)
            )));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    // Not joined: a child the hook left holding its stdin could keep the
    // writer blocked; it ends with this process.
    drop(writer);
    result
}
