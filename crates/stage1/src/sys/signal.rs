//! Signals: handlers for groups of signals, the blocked mask, defaults.

/// A signal handler: it may only do async-signal-safe work (read or store
/// atomics, [`super::process::kill`]).
pub type Handler = extern "C" fn(libc::c_int);

/// Installs `handler` for each of `signals`, restarting interrupted calls
/// when `restart`.
pub fn on(signals: &[libc::c_int], handler: Handler, restart: bool) {
    for &sig in signals {
        // SAFETY: a zeroed sigaction is valid; it gets a handler of the
        // right type, an empty mask and flags; sigaction only reads it.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = handler as *const () as usize;
            action.sa_flags = if restart { libc::SA_RESTART } else { 0 };
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
    }
}

/// The signal set of `signals`.
fn set_of(signals: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: a zeroed sigset_t is valid storage; sigemptyset initializes
    // it and sigaddset adds each number (an invalid one fails with EINVAL
    // and changes nothing).
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &sig in signals {
            libc::sigaddset(&mut set, sig);
        }
        set
    }
}

/// Blocks (or unblocks) `signals` for this thread.
pub fn set_blocked(signals: &[libc::c_int], blocked: bool) {
    let set = set_of(signals);
    let how = if blocked {
        libc::SIG_BLOCK
    } else {
        libc::SIG_UNBLOCK
    };
    // SAFETY: a valid signal set and a null old-set pointer (allowed);
    // sigprocmask only reads the set.
    unsafe {
        libc::sigprocmask(how, &set, std::ptr::null_mut());
    }
}

/// `signals` ignored.
pub fn ignore(signals: &[libc::c_int]) {
    for &sig in signals {
        // SAFETY: ignoring a signal number has no memory-safety
        // preconditions (an invalid number fails with EINVAL).
        unsafe {
            libc::signal(sig, libc::SIG_IGN);
        }
    }
}

/// Waits up to `timeout` for one of `signals`, which the caller has
/// blocked: the signal taken, or None once the time is up.
pub fn timed_wait(signals: &[libc::c_int], timeout: std::time::Duration) -> Option<libc::c_int> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let wait = libc::timespec {
            tv_sec: libc::time_t::try_from(left.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_nsec: libc::c_long::from(left.subsec_nanos()),
        };
        let set = set_of(signals);
        // SAFETY: a valid signal set, a null info pointer (allowed) and a
        // valid timespec; sigtimedwait only reads them.
        let taken = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &wait) };
        if taken > 0 {
            return Some(taken);
        }
        let interrupted = std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR);
        if !interrupted || left.is_zero() {
            return None;
        }
    }
}

/// `signals` back to their default actions.
pub fn set_default(signals: &[libc::c_int]) {
    for &sig in signals {
        // SAFETY: setting the default disposition of a signal number has no
        // memory-safety preconditions (an invalid number fails with EINVAL).
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
}

/// Every signal at its default action and none blocked (what an app
/// starts with, whatever stage1 inherited).
pub fn reset_all() {
    // Real-time signals included: a caller may have ignored those too.
    let all: Vec<libc::c_int> = (1..=libc::SIGRTMAX())
        .filter(|&sig| sig != libc::SIGKILL && sig != libc::SIGSTOP)
        .filter(|&sig| !(32..libc::SIGRTMIN()).contains(&sig))
        .collect();
    set_default(&all);
    reset_internal();
    let none = set_of(&[]);
    // SAFETY: an empty, initialized set unblocks everything.
    unsafe {
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
    }
}

/// A signalfd for `signals` (which the caller blocks), close-on-exec: it
/// becomes readable while one of them is pending. Reading it would take
/// the signal; the resting supervisor only polls it.
pub fn signalfd(signals: &[libc::c_int]) -> std::io::Result<std::os::fd::OwnedFd> {
    let set = set_of(signals);
    // SAFETY: a valid signal set; signalfd(-1, …) makes a new fd and only
    // reads the set.
    let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: signalfd returned a new fd that nothing else owns.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
}

/// glibc's own signals (32 up to SIGRTMIN), which its `signal` and
/// `sigaction` refuse to touch, back to their default action. glibc's
/// `posix_spawn` (how std starts a detached pod's stage1) sets them to be
/// ignored in the child, and an ignored signal stays ignored across every
/// fork and exec down to the apps.
fn reset_internal() {
    /// The kernel's `struct sigaction` (not glibc's) on these machines.
    /// (Elsewhere, riscv64 and loongarch64 have no restorer field: their
    /// signals 32 and 33 are left as they were.)
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    #[repr(C)]
    struct KernelSigaction {
        handler: libc::c_ulong,
        flags: libc::c_ulong,
        restorer: libc::c_ulong,
        mask: u64,
    }
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    for sig in 32..libc::SIGRTMIN() {
        let default = KernelSigaction {
            handler: libc::SIG_DFL as libc::c_ulong,
            flags: 0,
            restorer: 0,
            mask: 0,
        };
        // SAFETY: rt_sigaction reads a kernel sigaction of the layout above
        // (handler, flags, restorer, 64-bit mask on x86_64 and aarch64) and
        // the mask's size, 8; a null old-action pointer is allowed. Setting a
        // signal's default action involves no memory of this process.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &default,
                std::ptr::null_mut::<KernelSigaction>(),
                std::mem::size_of::<u64>(),
            );
        }
    }
}
