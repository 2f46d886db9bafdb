//! What a pod's supervisor does for systemd (docs/systemd.md):
//! - readiness: under a `Type=notify` unit, `READY=1` with `MAINPID` (the
//!   supervisor) once every app has started, `STOPPING=1` when the pod
//!   ends (the sd_notify protocol: a datagram to `NOTIFY_SOCKET`);
//! - socket activation: the listening sockets systemd passed to
//!   `skiff run` (`LISTEN_FDS`, from fd 3) go on to the apps, at the same
//!   fd numbers, with `LISTEN_FDS`, `LISTEN_FDNAMES` and `LISTEN_PID` set
//!   for the app's own process.
//!
//! stage0 reads the variables (they are for it) and hands them to stage1
//! as arguments; neither the variables nor the sockets reach any other
//! process (CNI plugins, pasta, other apps): the sockets stay
//! close-on-exec except in the apps that get them.

use std::os::fd::{AsFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::Stage1Error;

/// Where to send notifications (`NOTIFY_SOCKET`).
pub struct Notifier {
    address: SocketAddr,
}

impl Notifier {
    /// `socket` as systemd sets it: an absolute path, or `@name` for an
    /// abstract socket. `None` for anything else.
    pub fn new(socket: &str) -> Option<Notifier> {
        let address = match socket.strip_prefix('@') {
            Some(name) => SocketAddr::from_abstract_name(name.as_bytes()).ok()?,
            None if socket.starts_with('/') => SocketAddr::from_pathname(socket).ok()?,
            None => return None,
        };
        Some(Notifier { address })
    }

    /// Every app has started: ready, and this process (the supervisor) is
    /// the service's main process.
    pub fn ready(&self) {
        self.send(&format!("READY=1\nMAINPID={}\n", std::process::id()));
    }

    /// The pod is ending.
    pub fn stopping(&self) {
        self.send("STOPPING=1\n");
    }

    /// Best effort, as sd_notify: a service manager that is gone changes
    /// nothing for the pod.
    fn send(&self, text: &str) {
        if let Ok(socket) = UnixDatagram::unbound() {
            let _ = socket.send_to_addr(text.as_bytes(), &self.address);
        }
    }
}

/// The first fd of socket activation.
pub const FIRST_FD: i32 = 3;

/// How many fds from [`FIRST_FD`] this process passes on across exec: set
/// only in an app's own process, by [`ListenFds::attach`].
static PASSED: AtomicU32 = AtomicU32::new(0);

/// The fds from [`FIRST_FD`] this process passes on to the program it
/// executes (socket activation); none in any process but an activated app's.
pub fn passed_fds() -> u32 {
    PASSED.load(Ordering::Relaxed)
}

/// The sockets of socket activation, taken over by stage1.
pub struct ListenFds {
    fds: Vec<OwnedFd>,
    names: Option<String>,
}

impl ListenFds {
    /// Takes fds 3..3+`count` (left open by stage0 across exec), making
    /// them close-on-exec: they go only where [`ListenFds::attach`] puts
    /// them.
    pub fn take(count: u32, names: Option<String>) -> Result<ListenFds, Stage1Error> {
        let fds = i32::try_from(count)
            .ok()
            .and_then(|n| crate::sys::process::take_listen_fds(FIRST_FD, n))
            .ok_or_else(|| {
                Stage1Error::Config(format!(
                    "socket activation passed {count} fds, but not all of fds {FIRST_FD}.. are open"
                ))
            })?;
        for fd in &fds {
            let kind =
                rustix::fs::fstat(fd).map(|s| rustix::fs::FileType::from_raw_mode(s.st_mode));
            if !matches!(
                kind,
                Ok(rustix::fs::FileType::Socket | rustix::fs::FileType::Fifo)
            ) {
                return Err(Stage1Error::Config(
                    "socket activation passed an fd that is not a socket or FIFO: refused (it would reach the apps)".into(),
                ));
            }
            rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC).map_err(|e| {
                Stage1Error::Setup {
                    what: "take the activated sockets".into(),
                    source: e.into(),
                }
            })?;
        }
        Ok(ListenFds { fds, names })
    }

    pub fn count(&self) -> usize {
        self.fds.len()
    }

    /// The variables an app that gets the sockets runs with;
    /// `LISTEN_PID` is set to the app's own pid as it is executed
    /// (`confine::Became::exec`).
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("LISTEN_FDS".to_string(), self.fds.len().to_string()),
            ("LISTEN_PID".to_string(), String::new()),
        ];
        if let Some(names) = &self.names {
            env.push(("LISTEN_FDNAMES".to_string(), names.clone()));
        }
        env
    }

    /// In the process of an app that gets the sockets, before exec: they
    /// stay open across it, at the fd numbers systemd gave them (the app's
    /// confinement marks every other fd from 3 on close-on-exec).
    pub fn attach(&self) -> Result<(), Stage1Error> {
        for fd in &self.fds {
            rustix::io::fcntl_setfd(fd.as_fd(), rustix::io::FdFlags::empty()).map_err(|e| {
                Stage1Error::Setup {
                    what: "pass the activated sockets on".into(),
                    source: e.into(),
                }
            })?;
        }
        PASSED.store(self.fds.len() as u32, Ordering::Relaxed);
        Ok(())
    }
}

/// Socket activation for a pod: the sockets and which apps get them.
pub struct Activation {
    pub fds: ListenFds,
    /// Per app, in plan order.
    pub apps: Vec<bool>,
}

/// The apps that get the sockets: those with a port the image marks
/// `socketActivated` (appc), or the first app if none has one.
pub fn activated_apps(plans: &[crate::plan::AppPlan]) -> Vec<bool> {
    let marked: Vec<bool> = plans
        .iter()
        .map(|p| p.app.ports.iter().any(|port| port.socket_activated))
        .collect();
    if marked.iter().any(|m| *m) {
        return marked;
    }
    (0..plans.len()).map(|i| i == 0).collect()
}

impl Activation {
    /// Socket activation for `plans`: the chosen apps' environment gets
    /// the variables.
    pub fn new(fds: ListenFds, plans: &mut [crate::plan::AppPlan]) -> Activation {
        let apps = activated_apps(plans);
        for (plan, chosen) in plans.iter_mut().zip(&apps) {
            if *chosen {
                let env = &mut plan.app.environment;
                env.retain(|v| {
                    !["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"].contains(&v.name.as_str())
                });
                for (name, value) in fds.env() {
                    env.push(skiff_spec::image::EnvVar { name, value });
                }
            }
        }
        Activation { fds, apps }
    }

    /// In app `index`'s process, before exec.
    pub fn attach(&self, index: usize) -> Result<(), Stage1Error> {
        match self.apps.get(index) {
            Some(true) => self.fds.attach(),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_reach_path_and_abstract_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier::new(path.to_str().unwrap()).unwrap();
        notifier.ready();
        let mut buf = [0u8; 256];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(
            std::str::from_utf8(&buf[..n]).unwrap(),
            format!("READY=1\nMAINPID={}\n", std::process::id())
        );
        let name = format!("skiff-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        Notifier::new(&format!("@{name}")).unwrap().stopping();
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1\n");
        assert!(Notifier::new("relative/path").is_none());
    }
}
