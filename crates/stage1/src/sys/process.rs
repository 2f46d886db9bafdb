//! Processes: fork, wait, kill, immediate exit, inherited fds.

use std::sync::atomic::Ordering;

/// Which side of a [`fork`] this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    Child,
    /// The parent, with the child's pid.
    Parent(i32),
}

/// Forks this process. Refused while a thread started by
/// [`super::thread::spawn`] runs (stage1 starts threads no other way), so
/// the child never inherits a lock another thread held.
pub fn fork() -> std::io::Result<Forked> {
    if super::thread::RUNNING.load(Ordering::SeqCst) > 0 {
        return Err(std::io::Error::other("cannot fork while a thread runs"));
    }
    // SAFETY: no other thread runs in this process (checked above), so the
    // child's copy of memory holds no lock taken by another thread.
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid)),
    }
}

/// Forks this process into a new pid namespace (the child is its pid 1);
/// this process stays where it is, and so do its later threads and
/// children (unshare(CLONE_NEWPID) would send those into the new namespace,
/// and returning needs privilege over the host's, which root of a user's
/// namespace lacks). Refused while a thread runs, as [`fork`].
pub fn fork_in_new_pid_namespace() -> std::io::Result<Forked> {
    if super::thread::RUNNING.load(Ordering::SeqCst) > 0 {
        return Err(std::io::Error::other("cannot fork while a thread runs"));
    }
    let flags = (libc::CLONE_NEWPID | libc::SIGCHLD) as libc::c_ulong;
    // SAFETY: clone with only CLONE_NEWPID and the exit signal, and no new
    // stack (0), is fork into a new pid namespace: the child continues on
    // a copy-on-write copy of this stack. No other thread runs (checked
    // above), so the child's memory holds no lock another thread took.
    match unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) } {
        -1 => Err(std::io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid as i32)),
    }
}

/// Waits for child `pid` (through interruptions); its raw wait status, or
/// `None` if it is not a child of this process.
pub fn wait(pid: i32) -> Option<i32> {
    let mut status = 0;
    loop {
        // SAFETY: waitpid with a valid pointer to a local status.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            return Some(status);
        }
        if r < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        return None;
    }
}

/// The raw wait status of child `pid` if it has ended, without waiting.
pub fn try_wait(pid: i32) -> Option<i32> {
    let mut status = 0;
    // SAFETY: waitpid with a valid pointer to a local status.
    let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    (r == pid).then_some(status)
}

/// Waits for any child to end, without reaping it (`waitid` with
/// `WNOWAIT`): its pid; `None` when there is none left (or on another
/// error). Reap it with [`wait`].
pub fn next_ended() -> Option<i32> {
    loop {
        let mut info = std::mem::MaybeUninit::<libc::siginfo_t>::zeroed();
        // SAFETY: waitid writes the child's state into `info`, which is ours
        // and large enough; WNOWAIT leaves the child unreaped.
        let rc = unsafe {
            libc::waitid(
                libc::P_ALL,
                0,
                info.as_mut_ptr(),
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if rc == 0 {
            // SAFETY: waitid succeeded (without WNOHANG), so `info` holds
            // the child that ended.
            return Some(unsafe { info.assume_init().si_pid() });
        }
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return None;
        }
    }
}

/// Sends `sig` to `pid` (`-1`: every process this one may signal);
/// async-signal-safe, for handlers. False if it failed.
pub fn kill(pid: i32, sig: i32) -> bool {
    // SAFETY: kill(2) takes plain integers and touches no memory.
    unsafe { libc::kill(pid, sig) == 0 }
}

/// Ends this process at once with `code`: no destructors, no flushing
/// (a forked child must not run its parent's).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit(2) ends the process; nothing after it runs.
    unsafe { libc::_exit(code) }
}

/// Replaces this process's environment with `kept` (names and values):
/// everything else goes, without being read. For a process with one
/// thread only (field 20 of /proc/self/stat).
pub fn replace_environment(kept: &[(std::ffi::OsString, std::ffi::OsString)]) {
    // SAFETY: the caller checked that this process has one thread, so no
    // other reads or changes the environment meanwhile; clearenv(3) only
    // empties libc's table (the strings stay where they were).
    unsafe { libc::clearenv() };
    for (name, value) in kept {
        // SAFETY: as above, one thread.
        unsafe { std::env::set_var(name, value) };
    }
}

/// Closes fds `first..=last`.
pub fn close_range(first: u32, last: u32) -> std::io::Result<()> {
    // SAFETY: close_range(2) takes plain integers; callers close only fds
    // nothing in this process owns (inherited ones, before any is opened).
    if unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Marks fds `first..=last` close-on-exec (nothing else changes).
pub fn close_range_on_exec(first: u32, last: u32) -> std::io::Result<()> {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets fd flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            last,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The fd `fd` that stage0 left open across exec for this process (the
/// pod lock), owned from now on; `None` the second time (a number can be
/// taken once per process).
pub fn take_inherited_fd(fd: i32) -> Option<std::os::fd::OwnedFd> {
    use std::sync::atomic::AtomicBool;
    static TAKEN: AtomicBool = AtomicBool::new(false);
    if fd < 3 || TAKEN.swap(true, Ordering::SeqCst) {
        return None;
    }
    // SAFETY: F_SETFD only sets fd flags; no memory is involved (a closed
    // fd gives EBADF, and then nothing is taken).
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
        return None;
    }
    // SAFETY: stage0 passes an fd it opened and left open across exec;
    // nothing in this process owns it, and it is taken at most once.
    // Close-on-exec from now on: no helper stage1 runs holds the pod lock.
    Some(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
}

/// The type of fd `fd` of this process if it is open (without taking it).
pub fn open_fd_type(fd: i32) -> Option<rustix::fs::FileType> {
    if fd < 0 {
        return None;
    }
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes `fd`'s metadata into `stat`, which is ours and
    // large enough; a closed fd gives EBADF.
    if unsafe { libc::fstat(fd, stat.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: fstat succeeded, so it filled `stat`.
    let stat = unsafe { stat.assume_init() };
    Some(rustix::fs::FileType::from_raw_mode(stat.st_mode))
}

/// Takes fds `first..first + count`, which systemd's socket activation
/// passed and stage0 left open across exec (at most once per process);
/// `None` if one of them is not open.
pub fn take_listen_fds(first: i32, count: i32) -> Option<Vec<std::os::fd::OwnedFd>> {
    use std::sync::atomic::AtomicBool;
    static TAKEN: AtomicBool = AtomicBool::new(false);
    if first < 3 || count < 0 || TAKEN.swap(true, Ordering::SeqCst) {
        return None;
    }
    let last = first.checked_add(count)?;
    let mut fds = Vec::new();
    for fd in first..last {
        // SAFETY: F_GETFD only asks whether `fd` is open; no memory is
        // involved and nothing is changed.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return None;
        }
        // SAFETY: `fd` is open, was left open across exec for this process
        // by stage0, and nothing in this process owns it (stage1 opens
        // nothing before taking it, and takes it once).
        fds.push(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) });
    }
    Some(fds)
}

/// unshare(2) of namespaces (never the fd table: `FILES` is refused, which
/// is what makes this sound with other threads holding fds).
pub fn unshare(flags: rustix::thread::UnshareFlags) -> rustix::io::Result<()> {
    if flags.contains(rustix::thread::UnshareFlags::FILES) {
        return Err(rustix::io::Errno::INVAL);
    }
    // SAFETY: without CLONE_FILES no fd of this process changes meaning.
    unsafe { rustix::thread::unshare_unsafe(flags) }
}

/// Makes the process `cmd` starts get SIGKILL when the calling thread ends
/// (a helper that must not outlive the supervisor which started it).
pub fn die_with_parent(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    let parent = rustix::process::getpid();
    // SAFETY: between fork and exec the closure only makes two
    // async-signal-safe system calls (prctl, getppid) and allocates nothing.
    unsafe {
        cmd.pre_exec(move || die_with(parent));
    }
}

/// Has this process killed (SIGKILL) when its parent `parent` ends, or
/// fails with ESRCH if it already has (it ended before the signal was
/// armed: this process then has another parent). Allocates nothing (it
/// runs between fork and exec).
pub fn die_with(parent: rustix::process::Pid) -> std::io::Result<()> {
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
    match rustix::process::getppid() {
        Some(p) if p == parent => Ok(()),
        _ => Err(std::io::Error::from_raw_os_error(libc::ESRCH)),
    }
}

/// As [`die_with`], for a child in a new pid namespace, where `getppid`
/// says 0 whoever its parent is: whether the parent lives on is read from
/// `to_parent`, the write end of a pipe whose read end only the parent
/// holds. Fails with ESRCH if the parent ended before the signal was armed.
pub fn die_with_reader(to_parent: std::os::fd::BorrowedFd<'_>) -> std::io::Result<()> {
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
    match no_reader(to_parent)? {
        true => Err(std::io::Error::from_raw_os_error(libc::ESRCH)),
        false => Ok(()),
    }
}

/// Whether the pipe whose write end is `fd` has no reader left.
fn no_reader(fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<bool> {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let mut fds = [PollFd::new(&fd, PollFlags::OUT)];
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    rustix::event::poll(&mut fds, Some(&now))?;
    Ok(fds[0].revents().contains(PollFlags::ERR))
}

/// Leaves `fd` open, under the same number, in the program `cmd` starts
/// (as `/proc/self/fd/N` there), and no other fd of this process beyond
/// stdio (such as the pod lock stage0 passed); this process's copies stay
/// as they are. The caller keeps `fd` open until the program has started.
pub fn inherit_only_fd(cmd: &mut std::process::Command, fd: std::os::fd::BorrowedFd<'_>) {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let raw = fd.as_raw_fd();
    // SAFETY: between fork and exec the closure only changes fd flags of
    // the child's own fd table (close_range with CLOSE_RANGE_CLOEXEC, then
    // fcntl on an fd the caller keeps open), both async-signal-safe, and
    // allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            let rc = libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
            if rc != 0 {
                return Err(std::io::Error::last_os_error());
            }
            keep_across_exec(raw)
        });
    }
}

/// Leaves `fd` open, under the same number, in the program `cmd` starts;
/// `cmd` keeps it open until it is dropped. Started with `spawn`, the
/// flag is cleared only in the child, between fork and exec: a program
/// another thread starts meanwhile does not get `fd` (as it would if the
/// flag were cleared here, holding a lock passed this way for as long as
/// it runs). `CommandExt::exec` has no fork: there the flag is cleared in
/// this process just before it execs, so a thread forking in that instant
/// keeps a copy; a program whose other threads start programs passes fds
/// with `spawn`.
pub fn pass_fd(cmd: &mut std::process::Command, fd: std::os::fd::OwnedFd) {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec the closure makes one async-signal-safe
    // system call (fcntl on the child's copy of `fd`, which the closure
    // owns, so it is open) and allocates nothing.
    unsafe {
        cmd.pre_exec(move || keep_across_exec(fd.as_raw_fd()));
    }
}

/// Clears the close-on-exec flag of `raw` (between fork and exec: one
/// fcntl, nothing allocated).
fn keep_across_exec(raw: std::os::fd::RawFd) -> std::io::Result<()> {
    // SAFETY: fcntl F_SETFD only changes a flag of the fd table entry
    // `raw`; an fd that is not open fails with EBADF.
    match unsafe { libc::fcntl(raw, libc::F_SETFD, 0) } {
        -1 => Err(std::io::Error::last_os_error()),
        _ => Ok(()),
    }
}

/// Runs the program `cmd` starts in the network namespace `netns` (`cmd`
/// holds a copy of it until it is dropped).
pub fn in_network_namespace(
    cmd: &mut std::process::Command,
    netns: std::os::fd::BorrowedFd<'_>,
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let netns = netns.try_clone_to_owned()?;
    // SAFETY: between fork and exec the closure makes one async-signal-safe
    // system call (setns on the fd it owns, so open) and allocates nothing.
    unsafe {
        cmd.pre_exec(
            move || match libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            },
        );
    }
    Ok(())
}

/// Executes the program open at `fd` (execveat with `AT_EMPTY_PATH`) with
/// `argv` and this process's environment; returns only on failure.
pub fn exec_fd(fd: std::os::fd::BorrowedFd<'_>, argv: &[String]) -> std::io::Error {
    use std::ffi::CString;
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStringExt;
    let Ok(args) = argv
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<Vec<_>, _>>()
    else {
        return std::io::ErrorKind::InvalidInput.into();
    };
    let env: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k.into_vec();
            kv.push(b'=');
            kv.extend(v.into_vec());
            CString::new(kv).ok()
        })
        .collect();
    let mut arg_ptrs: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    arg_ptrs.push(std::ptr::null());
    let mut env_ptrs: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
    env_ptrs.push(std::ptr::null());
    // SAFETY: both arrays are null-terminated and point to NUL-terminated
    // strings that outlive the call; "" with AT_EMPTY_PATH names `fd`
    // itself. On success nothing after it runs.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            fd.as_raw_fd(),
            c"".as_ptr(),
            arg_ptrs.as_ptr(),
            env_ptrs.as_ptr(),
            libc::AT_EMPTY_PATH,
        );
    }
    std::io::Error::last_os_error()
}

/// Takes fds `fds`, which this program left open across its own exec
/// while it rested (crate::rest), owned from now on and close-on-exec
/// again; `None` if one is not open or the fds were taken already.
pub fn take_resumed_fds(fds: &[i32]) -> Option<Vec<std::os::fd::OwnedFd>> {
    use std::sync::atomic::AtomicBool;
    static TAKEN: AtomicBool = AtomicBool::new(false);
    let mut unique = fds.to_vec();
    unique.sort_unstable();
    unique.dedup();
    if unique.len() != fds.len()
        || fds.iter().any(|&fd| fd < 3)
        || TAKEN.swap(true, Ordering::SeqCst)
    {
        return None;
    }
    let mut owned = Vec::new();
    for &fd in fds {
        // SAFETY: F_GETFD/F_SETFD only read and set fd flags; no memory is
        // involved (a closed fd gives EBADF).
        if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
            return None;
        }
        // SAFETY: `fd` is open, was left open across exec by this program
        // for itself, each number is listed once, and nothing in this
        // process owns it yet (taken once, before anything is opened).
        owned.push(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) });
    }
    Some(owned)
}

/// Whether child `pid` has ended, without reaping it (`waitid` with
/// `WNOWAIT`): `None` if it is no child of this process. With `block`, waits
/// for it to end first.
pub fn has_ended(pid: i32, block: bool) -> Option<bool> {
    if pid <= 0 {
        return None;
    }
    let flags = libc::WEXITED | libc::WNOWAIT | if block { 0 } else { libc::WNOHANG };
    loop {
        let mut info = std::mem::MaybeUninit::<libc::siginfo_t>::zeroed();
        // SAFETY: waitid writes the child's state into `info`, which is ours,
        // zeroed (so si_pid reads 0 when WNOHANG finds nothing) and large
        // enough; WNOWAIT leaves the child unreaped.
        let rc = unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, info.as_mut_ptr(), flags) };
        if rc == 0 {
            // SAFETY: waitid succeeded, so `info` is initialized.
            let pid = unsafe { info.assume_init().si_pid() };
            return Some(pid != 0);
        }
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return None;
        }
    }
}

/// The system's monotonic clock (`CLOCK_MONOTONIC`, the same in every
/// process: it outlasts an exec, unlike an `Instant`), in milliseconds.
pub fn monotonic_ms() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the time into `now`, which is ours.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) } != 0 {
        return 0;
    }
    u64::try_from(now.tv_sec).unwrap_or(0) * 1000
        + u64::try_from(now.tv_nsec).unwrap_or(0) / 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipe_without_its_reader_says_so() {
        use std::os::fd::AsFd;
        let (read, write) = rustix::pipe::pipe().unwrap();
        assert!(!no_reader(write.as_fd()).unwrap());
        drop(read);
        assert!(no_reader(write.as_fd()).unwrap());
    }
}
