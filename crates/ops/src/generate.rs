//! `skiff generate systemd`: a unit that runs an image under systemd,
//! pinned by ID (docs/systemd.md).
//!
//! The service is `Type=notify` (stage1 sends `READY=1` once every app has
//! started), `KillMode=mixed` (`systemctl stop` sends SIGTERM to the
//! supervisor, which stops the pod cleanly; SIGKILL to what is left after
//! the timeout). With a socket address, a `.socket` unit passes its
//! listening socket to the pod (socket activation).

use std::path::Path;

use crate::{Context, OpsError, refuse};

/// What to generate.
#[derive(Debug, Clone, Default)]
pub struct UnitOptions {
    /// `ListenStream=` of a `.socket` unit (`8080`, `127.0.0.1:8080`,
    /// `/run/web.sock`).
    pub socket: Option<String>,
    /// The units' name (default `skiff-<the image's last name segment>`).
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
            // systemd ends a line at any of \n, \r, NUL: every control
            // character is written as an escape it decodes.
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", u32::from(c) & 0xff)),
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

/// A socket unit's `ListenStream=` as `flag` gave it: one address, with
/// nothing systemd would read as another line or value (`examples` in the
/// refusal).
fn check_address(flag: &str, address: &str, examples: &str) -> Result<(), OpsError> {
    if address.is_empty() || address.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(refuse!(
            "{flag}={address:?}: give one address ({examples}) without spaces or control characters"
        ));
    }
    Ok(())
}

/// `ExecStart=`: this skiff with the context's data dir and `args`, each
/// quoted as systemd reads it.
fn exec_start(ctx: &Context, args: &[String]) -> Result<String, OpsError> {
    let skiff = this_skiff()?;
    let line: Vec<String> = [
        skiff.display().to_string(),
        format!("--dir={}", ctx.dir().display()),
    ]
    .iter()
    .chain(args)
    .map(|a| quote(a))
    .collect();
    Ok(line.join(" "))
}

/// This skiff's path, for units to run: `skiff` itself also when this
/// command runs in `skiff-full` beside it (the small `skiff` executes that
/// for everything but pod starts, and a unit's run is one).
fn this_skiff() -> Result<std::path::PathBuf, OpsError> {
    let exe = std::env::current_exe().map_err(crate::error::io("find this program's path"))?;
    if exe.file_name().is_some_and(|name| name == "skiff-full") {
        let front = exe.with_file_name("skiff");
        if front.is_file() {
            return Ok(front);
        }
    }
    Ok(exe)
}

/// The units for `target`: a pod (UUID or prefix) or a stored image (ID,
/// name[:version]).
pub fn systemd(ctx: &Context, target: &str, opts: &UnitOptions) -> Result<Units, OpsError> {
    if let Some(address) = &opts.socket {
        check_address("--socket", address, "8080, 127.0.0.1:8080, /run/app.sock")?;
    }
    if let Ok(pod) = ctx.pods().find(target) {
        // Turning a pod's manifest back into `skiff run` flags would let an
        // image's own values (arguments, mount paths) become flags, and
        // would drop restrictions that have no flag: refused until units
        // can run a pinned pod manifest.
        return Err(refuse!(
            "generating a unit from pod {} is not implemented: generate it from the pod's image (skiff generate systemd IMAGE) and add the pod's options to ExecStart=",
            pod.uuid
        ));
    }
    let store = ctx.store()?;
    let image = skiff_fetch::resolve_stored(&store, target)
        .map_err(|e| refuse!("'{target}' is neither a pod nor an image in the store ({e})"))?;
    let base = image
        .name
        .rsplit('/')
        .next()
        .unwrap_or(&image.name)
        .to_string();
    let what = format!("image {} ({})", image.name, image.id.short());
    let name = match &opts.name {
        Some(name) => unit_name(name.strip_prefix("skiff-").unwrap_or(name)),
        None => unit_name(&base),
    };
    let exec = exec_start(ctx, &["run".to_string(), image.id.to_string()])?;
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
         ExecStart={exec}\n\
         KillMode=mixed\n\
         TimeoutStopSec=30\n\
         Restart=on-failure\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n"
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

/// Units for the metadata service (docs/metadata.md) of this data dir:
/// a `.socket` listening on `listen` (default: port 18112 on every
/// address, the service's own default) and the service it starts.
pub fn metadata_service(ctx: &Context, listen: Option<&str>) -> Result<Units, OpsError> {
    let listen = listen.unwrap_or("18112");
    check_address("--listen", listen, "18112, 10.0.0.1:18112")?;
    let exec = exec_start(ctx, &["metadata-service".to_string()])?;
    let name = "skiff-metadata".to_string();
    let service = format!(
        "# {name}.service: generated by `skiff generate metadata-service`.\n\
         # Pods register over a Unix socket in the data dir when they start:\n\
         # order pods that need it After={name}.socket.\n\
         [Unit]\n\
         Description=skiff metadata service (appc)\n\
         Requires={name}.socket\n\
         After={name}.socket\n\
         \n\
         [Service]\n\
         ExecStart={exec}\n\
         NoNewPrivileges=yes\n\
         PrivateTmp=yes\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n"
    );
    let socket = format!(
        "# {name}.socket: generated by `skiff generate metadata-service`.\n\
         [Unit]\n\
         Description=socket of the skiff metadata service\n\
         \n\
         [Socket]\n\
         ListenStream={listen}\n\
         \n\
         [Install]\n\
         WantedBy=sockets.target\n"
    );
    Ok(Units {
        name,
        service,
        socket: Some(socket),
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
        assert_eq!(quote("a\r\nb"), "\"a\\x0d\\x0ab\"");
    }

    #[test]
    fn unit_names_keep_what_systemd_allows() {
        assert_eq!(unit_name("web"), "skiff-web");
        assert_eq!(unit_name("my app/v1"), "skiff-my-app-v1");
    }
}
