//! What systemd hands `skiff run` when a unit starts it (docs/systemd.md):
//! the notification socket of a `Type=notify` unit and the sockets of
//! socket activation. stage0 reads them and passes them to stage1 as
//! arguments (stage1's environment stays clean).

/// systemd's variables, as far as they are for this process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceEnv {
    /// `NOTIFY_SOCKET`.
    pub notify_socket: Option<String>,
    /// `LISTEN_FDS`, when `LISTEN_PID` names this process: sockets at fds
    /// 3, 4, ….
    pub listen_fds: u32,
    /// `LISTEN_FDNAMES`.
    pub listen_fdnames: Option<String>,
}

impl ServiceEnv {
    /// From this process's environment. Sockets are this process's when
    /// `LISTEN_PID` is its pid, or its parent's when this is an ordinary
    /// user's command re-run in the user's namespace (crate::rootless),
    /// which inherits them.
    pub fn from_env() -> ServiceEnv {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let for_us = var("LISTEN_PID")
            .and_then(|p| p.parse::<u32>().ok())
            .is_some_and(|pid| {
                pid == std::process::id()
                    || (crate::rootless::entered().is_some()
                        && rustix::process::getppid()
                            .is_some_and(|ppid| ppid.as_raw_nonzero().get() as u32 == pid))
            });
        let listen_fds = match for_us {
            true => var("LISTEN_FDS")
                .and_then(|n| n.parse::<u32>().ok())
                .unwrap_or(0),
            false => 0,
        };
        ServiceEnv {
            notify_socket: var("NOTIFY_SOCKET"),
            listen_fds,
            listen_fdnames: var("LISTEN_FDNAMES").filter(|_| listen_fds > 0),
        }
    }

    /// Checks the sockets before anything is made: fds 3.. are open and
    /// each is a socket or a FIFO (what systemd's ListenStream=,
    /// ListenDatagram=, ListenFIFO= pass). Anything else — a directory, a
    /// file opened by whoever set LISTEN_FDS — would reach the apps.
    pub fn check(&self) -> Result<(), crate::OpsError> {
        use rustix::fs::FileType;
        for fd in 3..3 + self.listen_fds {
            let kind = skiff_stage1::sys::process::open_fd_type(fd as i32);
            match kind {
                Some(FileType::Socket | FileType::Fifo) => {}
                Some(other) => {
                    return Err(crate::refuse!(
                        "LISTEN_FDS={}: fd {fd} is a {other:?}, not a socket or FIFO: only sockets from systemd's socket activation are passed to pods",
                        self.listen_fds
                    ));
                }
                None => {
                    return Err(crate::refuse!(
                        "LISTEN_FDS={}: fd {fd} is not open",
                        self.listen_fds
                    ));
                }
            }
        }
        Ok(())
    }

    /// The arguments that hand these to stage1's `run`.
    pub fn stage1_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(socket) = &self.notify_socket {
            args.push(format!("--notify-socket={socket}"));
        }
        if self.listen_fds > 0 {
            args.push(format!("--listen-fds={}", self.listen_fds));
            if let Some(names) = &self.listen_fdnames {
                args.push(format!("--listen-fdnames={names}"));
            }
        }
        args
    }
}
