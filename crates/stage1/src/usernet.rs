//! An ordinary user's default network: `pasta` (Debian's `passt`), started
//! by the pod's supervisor for the pod's network namespace and killed when
//! the pod ends (and by the kernel, if the supervisor dies first).
//!
//! pasta runs where the supervisor runs: in the host's network namespace,
//! as root of the user's namespace, which owns the pod's network namespace.
//! It gives the pod an `eth0` with the host's address and routes, carries
//! the pod's outbound traffic through ordinary sockets of the user's, and
//! forwards the host ports of `--port` to the pod. Nothing else reaches in:
//! no port is forwarded on its own (pasta's default would follow every port
//! a pod binds, and every port the host binds into the pod), and the host's
//! loopback stays out of reach through the gateway address unless the user
//! asked for it (`--net=default:host-loopback=true`). The one exception is
//! the metadata service of the user, whose port on the host's loopback is
//! forwarded to the same port on the pod's own loopback.
//! docs/rootless.md, docs/decisions.md ("User-mode networking").

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use skiff_net::PortMapping;
use skiff_pod::{NetMode, Pod, Runtime};

use crate::{Stage1Error, setup_err};

/// The program, found in PATH.
const PROGRAM: &str = "pasta";
/// How long pasta may take to set the namespace up.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running pasta, the supervisor's child until [`UserNet::stop`].
#[derive(Debug)]
pub struct UserNet {
    pid: i32,
}

impl UserNet {
    /// Ends pasta (it keeps no state worth a graceful end) and reaps it.
    pub fn stop(self) {
        crate::sys::process::kill(self.pid, libc::SIGKILL);
        let _ = crate::sys::process::wait(self.pid);
    }
}

/// Sets up an ordinary user's pod network: a new network namespace, the
/// pod's `/etc` files and pasta for it. `metadata_port`: the user's
/// metadata service, forwarded into the pod. On failure nothing is left
/// running.
pub fn set_up(
    pod: &Pod,
    runtime: &Runtime,
    metadata_port: Option<u16>,
) -> Result<(File, UserNet), Stage1Error> {
    if !runtime.rootless || runtime.net.mode != NetMode::User {
        return Err(Stage1Error::Config(
            "the user-mode network is for an ordinary user's pods".into(),
        ));
    }
    let dir = skiff_net::record::dir(&pod.path);
    std::fs::create_dir_all(&dir).map_err(setup_err(format!("create {}", dir.display())))?;
    crate::net::write_etc_files(pod, runtime, &[])?;
    let netns = skiff_net::netns::create_unbound()?;
    if !runtime.net.host_loopback {
        close_loopback(netns.as_fd())?;
    }
    // pasta opens the namespace as its own inherited fd: it keeps fewer
    // capabilities than the supervisor, so the kernel would not let it
    // open anything of the supervisor's through /proc/<pid>.
    let args = Args {
        netns: PathBuf::from(format!("/proc/self/fd/{}", netns.as_raw_fd())),
        pid_file: dir.join("pasta.pid"),
        ports: &runtime.net.ports,
        host_loopback: runtime.net.host_loopback,
        metadata_port,
    };
    let user_net = start(&args, netns.as_fd(), &dir.join("pasta.log"))?;
    Ok((netns, user_net))
}

/// The filter rules that keep the pod's packets for the loopback on its
/// own `lo`. pasta forwards whatever reaches it through the pod's `eth0`,
/// and a packet addressed to 127.0.0.1 or ::1 does, without any capability,
/// when a socket is bound to the device (SO_BINDTODEVICE) or names it
/// (IP_PKTINFO): pasta would carry it to the host's loopback. The pod cannot
/// take the rules away (it has no CAP_NET_ADMIN, crate::plan).
const LOOPBACK_RULES: [(&str, &str); 2] = [("iptables", "127.0.0.0/8"), ("ip6tables", "::1/128")];

fn close_loopback(netns: BorrowedFd<'_>) -> Result<(), Stage1Error> {
    for (program, loopback) in LOOPBACK_RULES {
        // An ordinary user's PATH often lacks the sbin directories.
        let path = crate::find_in_path(program)
            .or_else(|| {
                ["/usr/sbin", "/sbin"]
                    .map(|d| Path::new(d).join(program))
                    .into_iter()
                    .find(|p| p.is_file())
            })
            .ok_or_else(|| {
            Stage1Error::Config(format!(
                "the user-mode network needs {program} to keep the host's loopback out of the pod's reach: install the iptables package, or run with --net=none"
            ))
        })?;
        let mut cmd = std::process::Command::new(&path);
        cmd.args([
            "-I", "OUTPUT", "!", "-o", "lo", "-d", loopback, "-j", "DROP",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
        crate::sys::process::in_network_namespace(&mut cmd, netns)
            .map_err(setup_err("hold the pod's network namespace"))?;
        let out = cmd
            .output()
            .map_err(setup_err(format!("run {}", path.display())))?;
        if !out.status.success() {
            let said = String::from_utf8_lossy(&out.stderr);
            return Err(Stage1Error::Config(format!(
                "{program} could not keep the host's loopback out of the pod's network: {}",
                shown(said.lines().next())
            )));
        }
    }
    Ok(())
}

/// What pasta is told.
struct Args<'a> {
    netns: PathBuf,
    pid_file: PathBuf,
    ports: &'a [PortMapping],
    host_loopback: bool,
    metadata_port: Option<u16>,
}

impl Args<'_> {
    fn to_vec(&self) -> Vec<String> {
        let mut v: Vec<String> = [
            "--quiet",
            "--foreground",
            "--config-net",
            "--no-netns-quit",
            "--netns",
        ]
        .map(String::from)
        .to_vec();
        v.push(self.netns.display().to_string());
        v.push("--pid".into());
        v.push(self.pid_file.display().to_string());
        if !self.host_loopback {
            v.push("--no-map-gw".into());
        }
        for (flag, protocol) in [("-t", "tcp"), ("-u", "udp")] {
            let specs: Vec<String> = self
                .ports
                .iter()
                .filter(|p| p.protocol.eq_ignore_ascii_case(protocol))
                .map(port_spec)
                .collect();
            if specs.is_empty() {
                v.extend([flag.to_string(), "none".into()]);
            }
            for s in specs {
                v.extend([flag.to_string(), s]);
            }
        }
        v.push("-T".into());
        v.push(match self.metadata_port {
            Some(p) => p.to_string(),
            None => "none".into(),
        });
        v.extend(["-U".into(), "none".into()]);
        v
    }
}

/// pasta's `[ADDRESS/]HOSTPORT:PODPORT`.
fn port_spec(p: &PortMapping) -> String {
    let address = match &p.host_ip {
        Some(ip) => format!("{ip}/"),
        None => String::new(),
    };
    format!("{address}{}:{}", p.host_port, p.container_port)
}

/// Starts pasta in the foreground (the supervisor's child, killed by the
/// kernel if the supervisor dies) and waits until it wrote its pid file,
/// which it does once the namespace is configured.
fn start(args: &Args, netns: BorrowedFd<'_>, log: &Path) -> Result<UserNet, Stage1Error> {
    let program = crate::find_in_path(PROGRAM).ok_or_else(|| {
        Stage1Error::Config(
            "the user-mode network needs pasta: install the passt package (apt-get install passt), or run with --net=none".into(),
        )
    })?;
    let _ = std::fs::remove_file(&args.pid_file);
    let stderr = File::create(log).map_err(setup_err(format!("create {}", log.display())))?;
    let mut cmd = std::process::Command::new(&program);
    // Its own process group: a Ctrl-C on `skiff run` is for the apps, and
    // the network stays until the supervisor ends it.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    cmd.args(args.to_vec())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(stderr);
    crate::sys::process::die_with_parent(&mut cmd);
    crate::sys::process::inherit_only_fd(&mut cmd, netns);
    let child = cmd
        .spawn()
        .map_err(setup_err(format!("start {}", program.display())))?;
    let pid = i32::try_from(child.id())
        .map_err(|_| Stage1Error::Config("pasta's process id is out of range".into()))?;
    let running = UserNet { pid };
    let started = Instant::now();
    let mut pause = Duration::from_micros(200);
    loop {
        if let Some(status) = crate::sys::process::try_wait(pid) {
            return Err(Stage1Error::Config(format!(
                "pasta could not set up the pod's network ({}): {}",
                describe(status),
                last_error(log)
            )));
        }
        if std::fs::read_to_string(&args.pid_file).is_ok_and(|t| t.ends_with('\n')) {
            return Ok(running);
        }
        if started.elapsed() > READY_TIMEOUT {
            running.stop();
            return Err(Stage1Error::Config(format!(
                "pasta did not set up the pod's network within {} s: {}",
                READY_TIMEOUT.as_secs(),
                last_error(log)
            )));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(1));
    }
}

fn describe(status: i32) -> String {
    if libc::WIFEXITED(status) {
        format!("exit status {}", libc::WEXITSTATUS(status))
    } else {
        format!("signal {}", libc::WTERMSIG(status))
    }
}

/// The last line pasta logged that says something (it also complains on
/// standard error that it has no syslog).
fn last_error(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    shown(
        text.lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty() && !l.starts_with("Failed to send")),
    )
}

/// A helper's line as an error shows it: printable, at most 300
/// characters.
fn shown(line: Option<&str>) -> String {
    match line {
        Some(l) => crate::report::printable(l).chars().take(300).collect(),
        None => "it said nothing".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(host: u16, pod: u16, protocol: &str, ip: Option<&str>) -> PortMapping {
        PortMapping {
            host_port: host,
            container_port: pod,
            protocol: protocol.into(),
            host_ip: ip.map(String::from),
        }
    }

    #[test]
    fn forwards_only_what_was_asked() {
        let ports = [
            mapping(8080, 80, "tcp", None),
            mapping(5353, 53, "udp", Some("127.0.0.1")),
        ];
        let args = Args {
            netns: "/proc/self/fd/3".into(),
            pid_file: "/p/pasta.pid".into(),
            ports: &ports,
            host_loopback: false,
            metadata_port: Some(18_080),
        };
        let v = args.to_vec().join(" ");
        assert!(v.contains("--no-map-gw"), "{v}");
        assert!(
            v.contains("-t 8080:80 -u 127.0.0.1/5353:53 -T 18080 -U none"),
            "{v}"
        );
        let none = Args {
            ports: &[],
            host_loopback: true,
            metadata_port: None,
            ..args
        };
        let v = none.to_vec().join(" ");
        assert!(!v.contains("--no-map-gw"), "{v}");
        assert!(v.ends_with("-t none -u none -T none -U none"), "{v}");
    }

    #[test]
    fn last_error_skips_syslog_complaints() {
        let dir = std::env::temp_dir().join(format!("skiff-usernet-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("log");
        std::fs::write(&log, "Failed to send 12 bytes to syslog\nBad port\x1b[1m\nFailed to send 3 bytes to syslog\n").unwrap();
        assert_eq!(last_error(&log), "Bad port[1m");
        std::fs::write(&log, "").unwrap();
        assert_eq!(last_error(&log), "it said nothing");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
