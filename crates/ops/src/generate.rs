//! `skiff generate systemd`: a unit that runs a pod like an existing one
//! (or an image) under systemd, images pinned by ID (docs/systemd.md).
//!
//! The service is `Type=notify` (stage1 sends `READY=1` once every app has
//! started), `KillMode=mixed` (`systemctl stop` sends SIGTERM to the
//! supervisor, which stops the pod cleanly; SIGKILL to what is left after
//! the timeout). With a socket address, a `.socket` unit passes its
//! listening socket to the pod (socket activation).

use std::path::Path;

use skiff_pod::{Flavor, NetMode, Pod};
use skiff_spec::pod::PodManifest;

use crate::{Context, OpsError, refuse};

/// What to generate.
#[derive(Debug, Clone, Default)]
pub struct UnitOptions {
    /// `ListenStream=` of a `.socket` unit (`8080`, `127.0.0.1:8080`,
    /// `/run/web.sock`).
    pub socket: Option<String>,
    /// The units' name (default `skiff-<first app>`).
    pub name: Option<String>,
}

/// The generated units.
#[derive(Debug, Clone)]
pub struct Units {
    /// The units' name, without `.service`/`.socket`.
    pub name: String,
    pub service: String,
    pub socket: Option<String>,
}

/// One argument of `ExecStart=` as systemd reads it: quoted when it holds
/// anything systemd would split or expand, `%` and `$` doubled.
fn quote(arg: &str) -> String {
    let escaped = arg.replace('%', "%%").replace('$', "$$");
    let plain = !escaped.is_empty()
        && escaped
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\'' | '\\' | ';'));
    if plain {
        return escaped;
    }
    let mut out = String::from("\"");
    for c in escaped.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A unit name from `text`: the characters systemd allows in one.
fn unit_name(text: &str) -> String {
    let name: String = text
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | ':' | '_' | '.' | '-' => c,
            _ => '-',
        })
        .collect();
    format!("skiff-{}", name.trim_matches('-'))
}

/// `skiff run`'s arguments for a pod like `pod`.
fn pod_args(pod: &Pod) -> Result<(Vec<String>, String), OpsError> {
    let runtime = pod.runtime()?;
    let bytes = std::fs::read(pod.manifest_path()).map_err(crate::error::io(format!(
        "read {}",
        pod.manifest_path().display()
    )))?;
    let manifest: PodManifest = skiff_spec::parse_pod_manifest(&bytes)
        .map_err(|e| refuse!("pod {}: bad pod manifest: {e}", pod.uuid))?;
    let mut args = Vec::new();
    if runtime.flavor != Flavor::Ns {
        args.push(format!("--stage1={}", runtime.flavor));
    }
    match runtime.net.mode {
        NetMode::Host if runtime.flavor != Flavor::Fly => args.push("--net=host".into()),
        NetMode::None => args.push("--net=none".into()),
        NetMode::Private => {
            let names: Vec<&str> = runtime
                .net
                .networks
                .iter()
                .map(|n| n.name.as_str())
                .collect();
            if names != ["default"] {
                args.push(format!("--net={}", names.join(",")));
            }
        }
        _ => {}
    }
    for port in &manifest.ports {
        let ip = port.host_ip.map(|ip| format!("{ip}:")).unwrap_or_default();
        args.push(format!(
            "--port={}:{ip}{}",
            port.name.as_str(),
            port.host_port
        ));
    }
    for v in &manifest.volumes {
        let mut flag = format!("--volume={},kind={}", v.name.as_str(), v.kind);
        if !v.source.is_empty() {
            flag.push_str(&format!(",source={}", v.source));
        }
        for (key, value) in [
            ("readOnly", v.read_only.map(|b| b.to_string())),
            ("recursive", v.recursive.map(|b| b.to_string())),
            ("mode", v.mode.clone()),
            ("uid", v.uid.map(|n| n.to_string())),
            ("gid", v.gid.map(|n| n.to_string())),
        ] {
            if let Some(value) = value {
                flag.push_str(&format!(",{key}={value}"));
            }
        }
        args.push(flag);
    }
    if runtime.logs != skiff_pod::logs::Limits::default() {
        args.push(format!("--log-max-size={}", runtime.logs.max_size));
        args.push(format!("--log-max-files={}", runtime.logs.max_files));
    }
    for (i, app) in manifest.apps.iter().enumerate() {
        if i > 0 {
            args.push("---".into());
        }
        args.push(app.image.id.as_str().to_string());
        args.push(format!("--name={}", app.name.as_str()));
        for m in &app.mounts {
            args.push(format!(
                "--mount=volume={},target={}",
                m.volume.as_str(),
                m.path
            ));
        }
        if let Some(effective) = &app.app {
            for (flag, value) in [
                ("--user", &effective.user),
                ("--group", &effective.group),
                ("--working-dir", &effective.working_directory),
            ] {
                if !value.is_empty() {
                    args.push(format!("{flag}={value}"));
                }
            }
            if let Some((exec, rest)) = effective.exec.split_first() {
                args.push(format!("--exec={exec}"));
                args.push("--".into());
                args.extend(rest.iter().cloned());
            }
        }
    }
    let first = manifest
        .apps
        .first()
        .map(|a| a.name.as_str().to_string())
        .unwrap_or_else(|| pod.uuid[..8].to_string());
    Ok((args, first))
}

/// The units for `target`: a pod (UUID or prefix) or a stored image (ID,
/// name[:version]).
pub fn systemd(ctx: &Context, target: &str, opts: &UnitOptions) -> Result<Units, OpsError> {
    let (args, base, what) = match ctx.pods().find(target) {
        Ok(pod) => {
            let (args, first) = pod_args(&pod)?;
            (args, first, format!("pod {}", pod.uuid))
        }
        Err(_) => {
            let store = ctx.store()?;
            let image = skiff_fetch::resolve_stored(&store, target).map_err(|e| {
                refuse!("'{target}' is neither a pod nor an image in the store ({e})")
            })?;
            let base = image
                .name
                .rsplit('/')
                .next()
                .unwrap_or(&image.name)
                .to_string();
            (
                vec![image.id.to_string()],
                base,
                format!("image {} ({})", image.name, image.id.short()),
            )
        }
    };
    let name = match &opts.name {
        Some(name) => unit_name(name.strip_prefix("skiff-").unwrap_or(name)),
        None => unit_name(&base),
    };
    let skiff = std::env::current_exe().map_err(crate::error::io("find this program's path"))?;
    let mut exec = vec![
        skiff.display().to_string(),
        format!("--dir={}", ctx.dir().display()),
        "run".to_string(),
    ];
    exec.extend(args);
    let exec_line: Vec<String> = exec.iter().map(|a| quote(a)).collect();
    let socket_lines = match &opts.socket {
        Some(_) => format!("Requires={name}.socket\nAfter={name}.socket\n"),
        None => String::new(),
    };
    let service = format!(
        "# {name}.service: generated by `skiff generate systemd` from {what}.\n\
         # Images are pinned by ID: update by fetching and generating again.\n\
         [Unit]\n\
         Description=skiff pod {base}\n\
         Wants=network-online.target\n\
         After=network-online.target\n\
         {socket_lines}\n\
         [Service]\n\
         Type=notify\n\
         NotifyAccess=all\n\
         ExecStart={}\n\
         KillMode=mixed\n\
         TimeoutStopSec=30\n\
         Restart=on-failure\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        exec_line.join(" ")
    );
    let socket = opts.socket.as_ref().map(|address| {
        format!(
            "# {name}.socket: generated by `skiff generate systemd --socket`.\n\
             [Unit]\n\
             Description=socket of skiff pod {base}\n\
             \n\
             [Socket]\n\
             ListenStream={address}\n\
             FileDescriptorName={base}\n\
             \n\
             [Install]\n\
             WantedBy=sockets.target\n"
        )
    });
    Ok(Units {
        name,
        service,
        socket,
    })
}

/// Writes the units into `dir` as `<name>.service` (and `.socket`);
/// returns the paths written.
pub fn write(units: &Units, dir: &Path) -> Result<Vec<std::path::PathBuf>, OpsError> {
    let mut written = Vec::new();
    let files = [
        (format!("{}.service", units.name), Some(&units.service)),
        (format!("{}.socket", units.name), units.socket.as_ref()),
    ];
    for (file, text) in files {
        if let Some(text) = text {
            let path = dir.join(file);
            std::fs::write(&path, text)
                .map_err(crate::error::io(format!("write {}", path.display())))?;
            written.push(path);
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_arguments_are_quoted_as_systemd_reads_them() {
        assert_eq!(quote("--net=none"), "--net=none");
        assert_eq!(quote("echo hi"), "\"echo hi\"");
        assert_eq!(quote("100%"), "100%%");
        assert_eq!(quote("$HOME"), "$$HOME");
        assert_eq!(quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(quote(""), "\"\"");
    }

    #[test]
    fn unit_names_keep_what_systemd_allows() {
        assert_eq!(unit_name("web"), "skiff-web");
        assert_eq!(unit_name("my app/v1"), "skiff-my-app-v1");
    }
}
