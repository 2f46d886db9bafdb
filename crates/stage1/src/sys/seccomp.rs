//! Installing a classic-BPF seccomp filter.

/// One classic BPF instruction (`struct sock_filter`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// Installs `program` as this thread's seccomp filter (mode filter, no
/// flags).
pub fn install(program: &[Insn]) -> std::io::Result<()> {
    install_with_flags(program, 0)
}

/// [`install`] with `SECCOMP_FILTER_FLAG_*` flags (log, spec_allow, …).
pub fn install_with_flags(program: &[Insn], flags: u32) -> std::io::Result<()> {
    #[repr(C)]
    struct SockFprog {
        len: u16,
        filter: *const Insn,
    }
    let len = u16::try_from(program.len()).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    let prog = SockFprog {
        len,
        filter: program.as_ptr(),
    };
    // SAFETY: `prog` points at `program`, which outlives the call; the
    // kernel copies the filter. SECCOMP_SET_MODE_FILTER = 1; flags are
    // plain bits the kernel checks.
    let rc = unsafe { libc::syscall(libc::SYS_seccomp, 1, flags, &prog as *const SockFprog) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
