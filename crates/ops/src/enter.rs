//! `skiff enter`: a command in a running pod's app, through stage1's
//! `enter` (which joins the app's namespaces and takes its confinement).

use std::os::unix::process::CommandExt;
use std::process::Command;

use crate::error::io;
use crate::{Context, OpsError, refuse};

/// How the command runs: in which app, with what of the app changed, and
/// how it is connected to the caller.
#[derive(Debug, Clone, Default)]
pub struct EnterOptions {
    /// The app to enter (default: the pod's first).
    pub app: Option<String>,
    /// A pseudo-terminal of the pod's own devpts (`-t`).
    pub tty: bool,
    /// The caller's stdin reaches the command (`-i`); otherwise it reads
    /// /dev/null.
    pub interactive: bool,
    /// USER[:GROUP], names or numbers in the app's /etc/passwd and
    /// /etc/group, instead of the app's.
    pub user: Option<String>,
    /// Environment variables over the app's.
    pub env: Vec<(String, String)>,
    /// The working directory (absolute, in the app's root).
    pub workdir: Option<String>,
}

impl EnterOptions {
    /// Refuses what stage1 could not use, before anything is joined.
    pub fn check(&self) -> Result<(), OpsError> {
        if let Some(user) = &self.user {
            let (name, group) = match user.split_once(':') {
                Some((name, group)) => (name, Some(group)),
                None => (user.as_str(), None),
            };
            let bad = |part: &str| part.is_empty() || part.contains([':', '/', '\0', '\n']);
            if bad(name) || group.is_some_and(bad) {
                return Err(refuse!(
                    "--user={user}: use USER or USER:GROUP (names or numbers)"
                ));
            }
        }
        for (name, _) in &self.env {
            if name.is_empty() || name.contains(['=', '\0']) {
                return Err(refuse!("--env {name}: use NAME=VALUE"));
            }
        }
        if let Some(dir) = &self.workdir
            && (!dir.starts_with('/') || dir.contains('\0'))
        {
            return Err(refuse!(
                "--workdir={dir}: use an absolute path in the app's root"
            ));
        }
        Ok(())
    }

    /// Stage1's `enter` arguments for these options (before the pod).
    fn stage1_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(app) = &self.app {
            args.push(format!("--app={app}"));
        }
        if self.tty {
            args.push("--tty".to_string());
        }
        if self.interactive {
            args.push("--interactive".to_string());
        }
        if let Some(user) = &self.user {
            args.push(format!("--user={user}"));
        }
        for (name, value) in &self.env {
            args.push(format!("--env={name}={value}"));
        }
        if let Some(dir) = &self.workdir {
            args.push(format!("--workdir={dir}"));
        }
        args
    }
}

/// Runs `cmd` in the running pod `uuid` (through stage1's `enter`, which
/// replaces this process): returns only on failure.
pub fn enter(ctx: &Context, uuid: &str, options: &EnterOptions, cmd: &[String]) -> OpsError {
    if let Err(e) = options.check() {
        return e;
    }
    let pod = match ctx.pods().find(uuid) {
        Ok(pod) => pod,
        Err(e) => return e.into(),
    };
    if !pod.is_running() {
        return refuse!("pod {} is {}, not running", pod.uuid, pod.display_state());
    }
    if crate::rootless::entered().is_some() {
        // The pod's user namespace is a sibling of this one: only the user
        // itself, outside any, may join it.
        return refuse!(
            "skiff enter runs as the user itself, outside a user namespace of skiff's (an internal error: report it)"
        );
    }
    let stage1 = match ctx.stage1() {
        Ok(path) => path,
        Err(e) => return e,
    };
    let mut command = Command::new(stage1);
    command
        .arg("enter")
        .args(options.stage1_args())
        .arg(&pod.path)
        .arg("--")
        .args(cmd);
    // The caller's environment (its secrets) never reaches the process
    // that joins the pod; the command gets the app's.
    command.env_clear();
    io("start stage1")(command.exec()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_options_are_refused_and_good_ones_reach_stage1() {
        let ok = EnterOptions {
            app: Some("web".into()),
            interactive: true,
            user: Some("daemon:1".into()),
            env: vec![("A".into(), "b=c".into())],
            workdir: Some("/tmp".into()),
            ..EnterOptions::default()
        };
        assert!(ok.check().is_ok());
        assert_eq!(
            ok.stage1_args(),
            [
                "--app=web",
                "--interactive",
                "--user=daemon:1",
                "--env=A=b=c",
                "--workdir=/tmp"
            ]
        );
        for bad in [
            EnterOptions {
                user: Some("".into()),
                ..EnterOptions::default()
            },
            EnterOptions {
                user: Some("a:".into()),
                ..EnterOptions::default()
            },
            EnterOptions {
                user: Some("a:b:c".into()),
                ..EnterOptions::default()
            },
            EnterOptions {
                env: vec![("".into(), "x".into())],
                ..EnterOptions::default()
            },
            EnterOptions {
                workdir: Some("relative".into()),
                ..EnterOptions::default()
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }
}
