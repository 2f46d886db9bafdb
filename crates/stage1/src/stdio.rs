//! The caller's terminal and files never reach a pod process. When stdin,
//! stdout or stderr of `skiff run` (or `skiff enter`) is a terminal, and
//! the command has no pty of its own (`--interactive`, `enter --tty`), the
//! pod gets a pipe in its place and the supervisor copies between the two,
//! as podman does without `-t`. A pod process then cannot change the
//! terminal's modes or size, read it after the pod ended, or push input
//! into it (TIOCSTI), whatever the kernel allows on terminals.
//!
//! Regular files and directories (`> out.log`, `< dir`, a detached pod's
//! log) get pipes too: a pod process could reopen its own stdio through
//! `/proc/self/fd/N` with more access than it was given (read a file
//! opened for appending, truncate it) and walk out of a directory fd
//! (`/proc/self/fd/0/..`), and an open device other than null, zero, full,
//! random and urandom (`< /dev/kvm`) would take its ioctls past the device
//! policy. Pipes, sockets and those five devices are passed as they are:
//! reopening them gives nothing more.
//! When stdout and stderr are the same file or terminal, one pipe serves
//! both, so their interleaving is kept.
//!
//! The copy runs on a thread of the supervisor until the process it
//! serves (the pod's init, the entered command) has exited, then passes on
//! what is still buffered, for at most half a second (a process left
//! behind may keep writing). Terminal input is read only while the
//! supervisor is in the terminal's foreground process group, so a pod
//! started with `&` keeps running instead of being stopped by SIGTTIN.

use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::OFlags;

use crate::Stage1Error;

/// A failed call of `what` as a set-up error (for rustix's errors).
pub(crate) fn setup(what: &str) -> impl FnOnce(rustix::io::Errno) -> Stage1Error + '_ {
    move |e| Stage1Error::Setup {
        what: what.to_string(),
        source: e.into(),
    }
}

/// Pipes standing in for those of fds 0, 1, 2 that are terminals or files.
pub struct Pipes {
    /// The ends the pod gets, by fd number.
    pod: [Option<OwnedFd>; 3],
    /// The ends the supervisor keeps: the write end for stdin, the read
    /// ends for stdout and stderr.
    supervisor: [Option<OwnedFd>; 3],
}

/// fd `n` (0, 1 or 2) of this process.
fn own(n: usize) -> BorrowedFd<'static> {
    match n {
        0 => rustix::stdio::stdin(),
        1 => rustix::stdio::stdout(),
        _ => rustix::stdio::stderr(),
    }
}

/// Whether the pod may hold the caller's fd `n` itself (see the module
/// documentation); a closed fd is left closed.
fn passed_as_is(n: usize) -> bool {
    use rustix::fs::FileType;
    if rustix::termios::isatty(own(n)) {
        return false;
    }
    match rustix::fs::fstat(own(n)) {
        Ok(stat) => match FileType::from_raw_mode(stat.st_mode) {
            FileType::Fifo | FileType::Socket => true,
            // null, zero, full, random, urandom: what every pod has. An
            // open fd of another device (`< /dev/kvm`) would take its
            // ioctls past the device policy.
            FileType::CharacterDevice => {
                rustix::fs::major(stat.st_rdev) == 1
                    && [3, 5, 7, 8, 9].contains(&rustix::fs::minor(stat.st_rdev))
            }
            _ => false,
        },
        Err(_) => true,
    }
}

/// Whether stdout and stderr are the same file (or terminal).
fn same_output() -> bool {
    match (rustix::fs::fstat(own(1)), rustix::fs::fstat(own(2))) {
        (Ok(out), Ok(err)) => (out.st_dev, out.st_ino) == (err.st_dev, err.st_ino),
        _ => false,
    }
}

/// Puts /dev/null in place of this process's stdin, stdout and stderr.
pub fn null_stdio() -> Result<(), Stage1Error> {
    null_on(&[0, 1, 2])
}

/// /dev/null, opened for reading and writing.
pub fn open_null() -> Result<OwnedFd, Stage1Error> {
    rustix::fs::open(
        "/dev/null",
        OFlags::RDWR | OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(setup("open /dev/null"))
}

/// Puts /dev/null in place of this process's stdout and stderr (the pod's
/// init, whose apps write to the logger).
pub fn null_output() -> Result<(), Stage1Error> {
    null_on(&[1, 2])
}

/// Puts /dev/null in place of this process's fds `streams` (of 0, 1, 2).
fn null_on(streams: &[usize]) -> Result<(), Stage1Error> {
    let null = open_null()?;
    for &n in streams {
        match n {
            0 => rustix::stdio::dup2_stdin(&null),
            1 => rustix::stdio::dup2_stdout(&null),
            _ => rustix::stdio::dup2_stderr(&null),
        }
        .map_err(setup("put /dev/null in place of the caller's stdio"))?;
    }
    Ok(())
}

impl Pipes {
    /// Pipes for the standard streams a pod must not hold itself; `None`
    /// when there is none.
    pub fn for_caller() -> Result<Option<Pipes>, Stage1Error> {
        Self::for_streams(&[0, 1, 2])
    }

    /// [`Pipes::for_caller`] for stdout and stderr only: a command whose
    /// stdin is /dev/null (`enter` without `--interactive`).
    pub fn for_output() -> Result<Option<Pipes>, Stage1Error> {
        Self::for_streams(&[1, 2])
    }

    /// [`Pipes::for_caller`] for stdin only: a pod's apps write to the
    /// logger's pipes (crate::logger), which passes their output on.
    pub fn for_input() -> Result<Option<Pipes>, Stage1Error> {
        Self::for_streams(&[0])
    }

    fn for_streams(streams: &[usize]) -> Result<Option<Pipes>, Stage1Error> {
        let mut pipes = Pipes {
            pod: [None, None, None],
            supervisor: [None, None, None],
        };
        let mut any = false;
        for &n in streams {
            if passed_as_is(n) {
                continue;
            }
            any = true;
            if n == 2 && pipes.pod[1].is_some() && same_output() {
                let shared = pipes.pod[1].as_ref().map(|out| {
                    rustix::io::fcntl_dupfd_cloexec(out, 3)
                        .map_err(setup("share the output pipe with stderr"))
                });
                pipes.pod[2] = shared.transpose()?;
                continue;
            }
            let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                .map_err(setup("create a pipe for the caller's stdio"))?;
            let (pod, supervisor) = if n == 0 {
                // A full pipe must not stall the copy of the app's output.
                rustix::fs::fcntl_setfl(&write, OFlags::NONBLOCK)
                    .map_err(setup("make the input pipe non-blocking"))?;
                (read, write)
            } else {
                (write, read)
            };
            pipes.pod[n] = Some(pod);
            pipes.supervisor[n] = Some(supervisor);
        }
        Ok(any.then_some(pipes))
    }

    /// In the child that becomes the pod (or the entered command): the
    /// pipes become its stdio; the supervisor's ends are closed.
    pub fn attach(self) -> Result<(), Stage1Error> {
        drop(self.supervisor);
        for (n, end) in self.pod.into_iter().enumerate() {
            let Some(end) = end else { continue };
            // The copy made by dup2 has no CLOEXEC; `end` itself closes.
            match n {
                0 => rustix::stdio::dup2_stdin(&end),
                1 => rustix::stdio::dup2_stdout(&end),
                _ => rustix::stdio::dup2_stderr(&end),
            }
            .map_err(setup("put a pipe in place of the caller's stdio"))?;
        }
        Ok(())
    }

    /// In the supervisor, after the fork: copies between the terminals and
    /// the pipes on this thread until process `child` has exited. The
    /// pod's ends are closed here, so the pipes end with the pod.
    pub fn copy_until_exit(self, child: i32) -> Result<(), Stage1Error> {
        drop(self.pod);
        let exited = watch(child)?;
        let [input, output, errors] = self.supervisor;
        copy(input, [output, errors], &exited);
        Ok(())
    }

    /// [`Pipes::copy_until_exit`] on a thread of its own (which a process
    /// whose children go to another pid namespace cannot start).
    pub fn start(self, child: i32) -> Result<Copying, Stage1Error> {
        drop(self.pod);
        let exited = watch(child)?;
        let [input, output, errors] = self.supervisor;
        let thread =
            crate::sys::thread::spawn("stdio", move || copy(input, [output, errors], &exited))
                .map_err(|e| Stage1Error::Setup {
                    what: "start copying the caller's terminal".into(),
                    source: e,
                })?;
        Ok(Copying(thread))
    }
}

/// A pidfd of `child`: readable once it exited.
pub fn watch(child: i32) -> Result<OwnedFd, Stage1Error> {
    let pid = rustix::process::Pid::from_raw(child)
        .ok_or_else(|| Stage1Error::Config(format!("no process {child} to watch")))?;
    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
        .map_err(setup("watch the pod's process"))
}

/// The copy running; [`Copying::finish`] waits for its end.
pub struct Copying(crate::sys::thread::Joined<()>);

impl Copying {
    /// Waits until what the pod wrote is passed on (after it exited).
    pub fn finish(self) {
        self.0.join();
    }
}

/// Whether this process may read the terminal on stdin without being
/// stopped: it is in the terminal's foreground process group, or the
/// terminal is not its controlling terminal (no job control applies).
fn in_foreground() -> bool {
    match rustix::termios::tcgetpgrp(own(0)) {
        Ok(group) => group == rustix::process::getpgrp(),
        Err(_) => true,
    }
}

/// Writes all of `bytes` to fd `to`; false when it is gone.
fn write_all(to: BorrowedFd<'_>, mut bytes: &[u8]) -> bool {
    while !bytes.is_empty() {
        match rustix::io::write(to, bytes) {
            Ok(0) => return false,
            Ok(n) => bytes = &bytes[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return false,
        }
    }
    true
}

/// Passes one read of `from` on to fd `to`; false at the end of `from` or
/// when `to` is gone.
fn pass_on(from: &OwnedFd, to: BorrowedFd<'_>, buf: &mut [u8]) -> bool {
    match rustix::io::read(from, &mut *buf) {
        Ok(0) => false,
        Ok(n) => write_all(to, &buf[..n]),
        Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => true,
        Err(_) => false,
    }
}

const QUARTER_SECOND: Timespec = Timespec {
    tv_sec: 0,
    tv_nsec: 250_000_000,
};

/// The copy loop (see the module documentation).
fn copy(mut input: Option<OwnedFd>, mut outputs: [Option<OwnedFd>; 2], exited: &OwnedFd) {
    let mut buf = vec![0u8; 1 << 14];
    // Read from the terminal, not yet taken by the pod's pipe.
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let reading = input.is_some() && pending.is_empty();
        let foreground = !reading || in_foreground();
        let mut fds = vec![PollFd::new(exited, PollFlags::IN)];
        let mut slots = Vec::new();
        for (i, out) in outputs.iter().enumerate() {
            if let Some(out) = out {
                fds.push(PollFd::new(out, PollFlags::IN));
                slots.push(Slot::Output(i));
            }
        }
        if reading && foreground {
            fds.push(PollFd::from_borrowed_fd(own(0), PollFlags::IN));
            slots.push(Slot::Terminal);
        }
        if let (Some(pipe), false) = (&input, pending.is_empty()) {
            fds.push(PollFd::new(pipe, PollFlags::OUT));
            slots.push(Slot::InputPipe);
        }
        // In the background, look again now and then whether the user
        // brought the pod to the foreground.
        let timeout = (!foreground).then_some(&QUARTER_SECOND);
        match rustix::event::poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return,
        }
        let done = !fds[0].revents().is_empty();
        let ready: Vec<bool> = fds[1..].iter().map(|f| !f.revents().is_empty()).collect();
        drop(fds);
        for (slot, ready) in slots.into_iter().zip(ready) {
            if !ready {
                continue;
            }
            match slot {
                Slot::Output(i) => {
                    let keep = outputs[i]
                        .as_ref()
                        .is_some_and(|out| pass_on(out, own(i + 1), &mut buf));
                    if !keep {
                        outputs[i] = None;
                    }
                }
                Slot::Terminal => match rustix::io::read(own(0), &mut buf) {
                    Ok(n) if n > 0 => pending.extend_from_slice(&buf[..n]),
                    Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {}
                    // The end of input (Ctrl-D) or a terminal gone: the
                    // pod reads the end of its stdin.
                    _ => input = None,
                },
                Slot::InputPipe => {
                    if let Some(pipe) = &input {
                        match rustix::io::write(pipe, &pending) {
                            Ok(n) => {
                                pending.drain(..n);
                            }
                            Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {}
                            // The pod closed its stdin: nothing more to pass.
                            Err(_) => {
                                input = None;
                                pending.clear();
                            }
                        }
                    }
                }
            }
        }
        if done {
            drain(&outputs, &mut buf);
            return;
        }
    }
}

/// After the process exited: passes on what its pipes still hold, until
/// they end, stay empty for a moment, or half a second has passed (a
/// process it left behind may keep one open and keep writing).
fn drain(outputs: &[Option<OwnedFd>; 2], buf: &mut [u8]) {
    const MOMENT: Timespec = Timespec {
        tv_sec: 0,
        tv_nsec: 50_000_000,
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(500);
    for (i, out) in outputs.iter().enumerate() {
        let Some(out) = out else { continue };
        while std::time::Instant::now() < deadline {
            let mut fds = [PollFd::new(out, PollFlags::IN)];
            let ready = matches!(rustix::event::poll(&mut fds, Some(&MOMENT)), Ok(n) if n > 0);
            if !ready || !pass_on(out, own(i + 1), buf) {
                break;
            }
        }
    }
}

enum Slot {
    Output(usize),
    Terminal,
    InputPipe,
}
