//! Passing the apps' output on to the caller of a foreground `skiff run`
//! (its stdout or stderr), for the logger (crate::logger).
//!
//! The caller gets everything, at its pace, as from any pipe: a slow
//! reader holds the apps back. But it must not hold the pod's end back:
//! once the pod has ended (or is being killed), a reader that takes
//! nothing more for half a second is given up on, so the supervisor
//! finishes. So the writes wait in `poll`, beside the logger's stop pipe,
//! never in `write`: pipes and terminals are reopened non-blocking through
//! `/proc/self/fd` (a file description of our own: the caller's keeps its
//! flags), sockets are sent to with MSG_DONTWAIT; regular files and
//! devices such as /dev/null do not block.
//!
//! A reader that went away (EPIPE: `skiff run … | head -1`) closes the
//! stream for the apps too, so they get SIGPIPE as when they held the
//! caller's pipe themselves.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Instant;

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::{FileType, OFlags};
use rustix::io::Errno;

/// How writes to the caller's fd are made.
enum Way {
    /// Our own non-blocking file description of it.
    Reopened(OwnedFd),
    /// A socket: `send` with MSG_DONTWAIT.
    Socket,
    /// A file or device that does not block.
    Plain,
}

/// The caller's stdout or stderr, as the logger writes to it.
pub struct Sink {
    /// 1 or 2.
    fd: BorrowedFd<'static>,
    way: Way,
}

/// What became of a write.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    /// All of it.
    Done,
    /// The reader went away (EPIPE and the like).
    Gone,
    /// The pod ended and the reader took nothing for too long.
    GaveUp,
}

/// Our own non-blocking file description of this process's fd `n`.
fn reopen(n: i32) -> Way {
    match rustix::fs::open(
        format!("/proc/self/fd/{n}"),
        OFlags::WRONLY | OFlags::NOCTTY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    ) {
        Ok(own) => Way::Reopened(own),
        // Not reopenable (a terminal of another user's namespace, a pipe
        // of another process's): written as it is.
        Err(_) => Way::Plain,
    }
}

impl Sink {
    /// This process's fd `n` (1 or 2).
    pub fn of(n: i32) -> Sink {
        let fd = match n {
            1 => rustix::stdio::stdout(),
            _ => rustix::stdio::stderr(),
        };
        let kind = rustix::fs::fstat(fd).map(|s| FileType::from_raw_mode(s.st_mode));
        let way = match kind {
            Ok(FileType::Socket) => Way::Socket,
            Ok(FileType::Fifo) => reopen(n),
            Ok(FileType::CharacterDevice) if rustix::termios::isatty(fd) => reopen(n),
            _ => Way::Plain,
        };
        Sink { fd, way }
    }

    fn target(&self) -> BorrowedFd<'_> {
        match &self.way {
            Way::Reopened(own) => own.as_fd(),
            _ => self.fd,
        }
    }

    fn write_once(&self, bytes: &[u8]) -> rustix::io::Result<usize> {
        match self.way {
            Way::Socket => rustix::net::send(self.fd, bytes, rustix::net::SendFlags::DONTWAIT),
            _ => rustix::io::write(self.target(), bytes),
        }
    }

    /// Writes all of `bytes`, waiting for the reader as long as it takes
    /// while the pod runs. `stop` becomes readable when the pod has ended:
    /// from then on (`deadline` set, or set here), the reader has until
    /// the deadline.
    pub fn write(
        &self,
        mut bytes: &[u8],
        stop: &OwnedFd,
        deadline: &mut Option<Instant>,
        grace: std::time::Duration,
    ) -> Written {
        while !bytes.is_empty() {
            match self.write_once(bytes) {
                Ok(0) => return Written::Gone,
                Ok(n) => bytes = &bytes[n..],
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => {
                    let timeout = match deadline {
                        Some(d) => {
                            let left = d.saturating_duration_since(Instant::now());
                            if left.is_zero() {
                                return Written::GaveUp;
                            }
                            Some(Timespec {
                                tv_sec: left.as_secs() as i64,
                                tv_nsec: i64::from(left.subsec_nanos()),
                            })
                        }
                        None => None,
                    };
                    let mut fds = vec![PollFd::from_borrowed_fd(self.target(), PollFlags::OUT)];
                    if deadline.is_none() {
                        fds.push(PollFd::new(stop, PollFlags::IN));
                    }
                    match rustix::event::poll(&mut fds, timeout.as_ref()) {
                        Ok(_) | Err(Errno::INTR) => {}
                        Err(_) => return Written::Gone,
                    }
                    if fds.get(1).is_some_and(|f| !f.revents().is_empty()) {
                        *deadline = Some(Instant::now() + grace);
                    }
                }
                Err(_) => return Written::Gone,
            }
        }
        Written::Done
    }
}
