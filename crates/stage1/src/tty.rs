//! `--interactive`: the app gets a pseudo-terminal of its own (a new
//! session with the pty as controlling terminal), and the supervisor
//! relays between it and the user's terminal, which it puts in raw mode
//! and restores at the end; window size changes are passed on.
//!
//! The app never holds the user's terminal itself, so it cannot push input
//! into the user's shell (TIOCSTI) or read it after the pod ends.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::Stage1Error;

/// A pty pair; the master stays with the supervisor, the slave goes to the app.
pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
}

fn errno(what: &str) -> impl FnOnce(rustix::io::Errno) -> Stage1Error + '_ {
    move |e| Stage1Error::Setup {
        what: what.to_string(),
        source: e.into(),
    }
}

/// In the pod's init: a pty from the app's own devpts instance (so the app
/// sees `/dev/pts/0`, as `tty` expects). The master goes to the supervisor
/// with [`send_master`]; the slave stays for the app.
pub fn open_in(root: &crate::mounts::Root) -> Result<Pty, Stage1Error> {
    let ptmx = root.resolve(std::path::Path::new("/dev/pts/ptmx"), false, true)?;
    let master = rustix::fs::open(
        crate::mounts::fd_path(&ptmx),
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| Stage1Error::Setup {
        what: "open the pod's /dev/pts/ptmx".into(),
        source: e.into(),
    })?;
    rustix::pty::unlockpt(&master).map_err(errno("unlock the pod's pseudo-terminal"))?;
    use rustix::pty::OpenptFlags;
    let slave = rustix::pty::ioctl_tiocgptpeer(
        &master,
        OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC,
    )
    .map_err(errno("open the pod's pseudo-terminal"))?;
    Ok(Pty { master, slave })
}

/// A connected pair of Unix sockets to pass the pty master over.
pub fn channel() -> Result<(OwnedFd, OwnedFd), Stage1Error> {
    rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| Stage1Error::Setup {
        what: "create the terminal channel".into(),
        source: e.into(),
    })
}

/// Sends `master` over `socket` (SCM_RIGHTS).
pub fn send_master(socket: &OwnedFd, master: &OwnedFd) -> Result<(), Stage1Error> {
    use std::mem::MaybeUninit;
    use std::os::fd::AsFd;
    let fds = [master.as_fd()];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = rustix::net::SendAncillaryBuffer::new(&mut space);
    control.push(rustix::net::SendAncillaryMessage::ScmRights(&fds));
    rustix::net::sendmsg(
        socket,
        &[std::io::IoSlice::new(b"p")],
        &mut control,
        rustix::net::SendFlags::empty(),
    )
    .map(drop)
    .map_err(|e| Stage1Error::Setup {
        what: "pass the terminal to the supervisor".into(),
        source: e.into(),
    })
}

/// Receives the pty master from init; `None` if init ended without one
/// (its setup failed: the status pipe says why).
pub fn receive_master(socket: &OwnedFd) -> Option<OwnedFd> {
    use std::mem::MaybeUninit;
    let mut byte = [0u8; 1];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = rustix::net::RecvAncillaryBuffer::new(&mut space);
    let received = rustix::net::recvmsg(
        socket,
        &mut [std::io::IoSliceMut::new(&mut byte)],
        &mut control,
        rustix::net::RecvFlags::CMSG_CLOEXEC,
    );
    if !matches!(received, Ok(ref m) if m.bytes == 1) {
        return None;
    }
    control.drain().find_map(|msg| match msg {
        rustix::net::RecvAncillaryMessage::ScmRights(mut fds) => fds.next(),
        _ => None,
    })
}

/// In an app process without a pty of its own: a new session with no
/// controlling terminal, so the caller's terminal (still its stdio) cannot
/// be driven as one (TIOCSTI needs the caller's controlling terminal or
/// CAP_SYS_ADMIN; `/dev/tty` does not open).
pub fn new_session() -> Result<(), Stage1Error> {
    rustix::process::setsid()
        .map(drop)
        .map_err(errno("start a session of its own"))
}

/// The terminal an app gets.
pub enum AppTerminal {
    /// A pty of the pod's devpts: the app leads a session of its own with
    /// it as controlling terminal.
    OwnSession(OwnedFd),
    /// The VM's console (kvm guest), whose controlling process stays the
    /// guest's init ([`control`]): the app is its foreground process group
    /// (Ctrl-C reaches it) but not a session leader, so its exit does not
    /// hang the console up — which would drop output the emulated UART has
    /// not sent yet.
    ConsoleForeground(OwnedFd),
}

impl AppTerminal {
    /// In the app process: the terminal as stdio, as described above.
    pub fn attach(&self) -> Result<(), Stage1Error> {
        match self {
            AppTerminal::OwnSession(slave) => attach(slave),
            AppTerminal::ConsoleForeground(console) => attach_foreground(console),
        }
    }
}

/// In the guest's init: the console becomes its controlling terminal.
pub fn control(console: &OwnedFd) -> Result<(), Stage1Error> {
    // Pid 1 starts in no session of its own; EPERM means it leads one.
    match rustix::process::setsid() {
        Ok(_) | Err(rustix::io::Errno::PERM) => {}
        Err(e) => {
            return Err(Stage1Error::Setup {
                what: "start init's session".into(),
                source: e.into(),
            });
        }
    }
    rustix::process::ioctl_tiocsctty(console).map_err(|e| Stage1Error::Setup {
        what: "make the console init's controlling terminal".into(),
        source: e.into(),
    })
}

/// In the app process: a process group of its own, the foreground one of
/// the console (init's controlling terminal), and the console as stdio.
fn attach_foreground(console: &OwnedFd) -> Result<(), Stage1Error> {
    let setup = |what: &str| {
        let what = what.to_string();
        move |e: rustix::io::Errno| Stage1Error::Setup {
            what,
            source: e.into(),
        }
    };
    rustix::process::setpgid(None, None).map_err(setup("start a process group"))?;
    // A background group changing the foreground one gets SIGTTOU; the
    // app's signals are reset to their defaults before it runs.
    crate::sys::signal::ignore(&[libc::SIGTTOU]);
    rustix::termios::tcsetpgrp(console, rustix::process::getpid())
        .map_err(setup("take the console's foreground"))?;
    rustix::stdio::dup2_stdin(console).map_err(setup("attach the console"))?;
    rustix::stdio::dup2_stdout(console).map_err(setup("attach the console"))?;
    rustix::stdio::dup2_stderr(console).map_err(setup("attach the console"))
}

/// In the app process: a new session whose controlling terminal is the pty.
pub fn attach(slave: &OwnedFd) -> Result<(), Stage1Error> {
    rustix::process::setsid().map_err(errno("start a session for the terminal"))?;
    rustix::process::ioctl_tiocsctty(slave)
        .map_err(errno("make the pty the controlling terminal"))?;
    let attach = errno("attach the pty to stdio");
    rustix::stdio::dup2_stdin(slave)
        .and_then(|()| rustix::stdio::dup2_stdout(slave))
        .and_then(|()| rustix::stdio::dup2_stderr(slave))
        .map_err(attach)?;
    Ok(())
}

static RESIZED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_winch(_: libc::c_int) {
    RESIZED.store(true, Ordering::Relaxed);
}

/// The user's terminal in raw mode until dropped.
pub struct RawMode {
    saved: Option<rustix::termios::Termios>,
}

impl RawMode {
    pub fn enter() -> RawMode {
        use rustix::termios::OptionalActions;
        let stdin = rustix::stdio::stdin();
        let Ok(saved) = rustix::termios::tcgetattr(stdin) else {
            return RawMode { saved: None };
        };
        let mut raw = saved.clone();
        raw.make_raw();
        let _ = rustix::termios::tcsetattr(stdin, OptionalActions::Now, &raw);
        RawMode { saved: Some(saved) }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = rustix::termios::tcsetattr(
                rustix::stdio::stdin(),
                rustix::termios::OptionalActions::Now,
                t,
            );
        }
    }
}

fn install_winch() {
    crate::sys::signal::on(&[libc::SIGWINCH], on_winch, true);
}

fn copy_once(from: &OwnedFd, to: impl std::os::fd::AsFd, buf: &mut [u8]) -> bool {
    match rustix::io::read(from, &mut *buf) {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            let mut done = 0;
            while done < n {
                match rustix::io::write(&to, &buf[done..n]) {
                    Ok(0) | Err(_) => return false,
                    Ok(w) => done += w,
                }
            }
            true
        }
    }
}

/// Relays stdin → pty and pty → stdout until `end` says the pod or
/// command ended: with `on_line`, `end` is init's status pipe, whose lines
/// go to `on_line` until it closes; without, a pidfd of the command, which
/// is readable once it exited.
pub fn relay(master: &OwnedFd, end: &OwnedFd, mut on_line: Option<&mut dyn FnMut(&str)>) {
    let status = end;
    install_winch();
    RESIZED.store(true, Ordering::Relaxed); // start with the user's size
    let Ok(stdin) = rustix::io::dup(rustix::stdio::stdin()) else {
        return;
    };
    let mut stdin_open = true;
    let mut master_open = true;
    let mut pending = crate::report::LineBuffer::default();
    let mut buf = vec![0u8; 1 << 14];
    loop {
        if RESIZED.swap(false, Ordering::Relaxed)
            && let Ok(size) = rustix::termios::tcgetwinsize(rustix::stdio::stdin())
        {
            let _ = rustix::termios::tcsetwinsize(master, size);
        }
        let mut fds = Vec::new();
        if stdin_open {
            fds.push(rustix::event::PollFd::new(
                &stdin,
                rustix::event::PollFlags::IN,
            ));
        }
        if master_open {
            fds.push(rustix::event::PollFd::new(
                master,
                rustix::event::PollFlags::IN,
            ));
        }
        fds.push(rustix::event::PollFd::new(
            status,
            rustix::event::PollFlags::IN,
        ));
        if rustix::event::poll(&mut fds, None).is_err() {
            continue; // EINTR (SIGWINCH)
        }
        let ready: Vec<bool> = fds.iter().map(|f| !f.revents().is_empty()).collect();
        drop(fds);
        let mut i = 0;
        if stdin_open {
            if ready[i] && !copy_once(&stdin, master, &mut buf) {
                stdin_open = false;
            }
            i += 1;
        }
        if master_open {
            if ready[i] && !copy_once(master, rustix::stdio::stdout(), &mut buf) {
                master_open = false;
            }
            i += 1;
        }
        if ready[i] {
            let Some(on_line) = on_line.as_mut() else {
                // The command exited: pass on what it still wrote.
                while master_open
                    && poll_readable(master)
                    && copy_once(master, rustix::stdio::stdout(), &mut buf)
                {}
                return;
            };
            match rustix::io::read(status, &mut buf) {
                Ok(0) | Err(_) => {
                    // The pod ended: pass on what the app still wrote.
                    while master_open
                        && poll_readable(master)
                        && copy_once(master, rustix::stdio::stdout(), &mut buf)
                    {
                    }
                    return;
                }
                Ok(n) => {
                    pending.push(&buf[..n], *on_line);
                }
            }
        }
    }
}

/// Whether `fd` has data within 50 ms.
fn poll_readable(fd: &OwnedFd) -> bool {
    let mut fds = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
    let timeout = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 50_000_000,
    };
    matches!(rustix::event::poll(&mut fds, Some(&timeout)), Ok(n) if n > 0)
        && fds[0].revents().contains(rustix::event::PollFlags::IN)
}
