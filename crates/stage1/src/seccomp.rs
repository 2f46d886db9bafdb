//! The seccomp filter of an app, built into the binary as classic BPF.
//!
//! * By default a deny-list like Docker's default profile: kernel module,
//!   kexec, reboot, mount and namespace syscalls, keyrings, ptrace,
//!   `process_vm_*`, BPF, perf, clock setting, … fail with `EPERM`; `clone`
//!   with namespace flags fails with `EPERM`; `clone3` fails with `ENOSYS`
//!   so C libraries fall back to `clone`, whose flags can be checked.
//!   `personality` takes only the personas Docker's profile allows.
//! * An app's `os/linux/seccomp-remove-set` adds its `set` to the
//!   deny-list; `os/linux/seccomp-retain-set` allows only its `set`, after
//!   the deny-list. Only when the user granted it (`--seccomp`,
//!   `--insecure-options=seccomp`: [`Grants::seccomp`]) does an isolator
//!   replace the default filter. Their `errno` (e.g. `ENOSYS`) is returned
//!   for a filtered call; without one the process is killed
//!   (`SECCOMP_RET_KILL_PROCESS`), as appc specifies.
//! * Only the native x86_64 ABI is allowed: i386 and x32 system calls are
//!   refused, since the same numbers mean other calls there.
//!
//! Each rule is `jeq nr; ret ACTION`, so lists of any length work (BPF
//! jumps are limited to 255 instructions).

use skiff_pod::privileges::Grants;
use skiff_spec::App;
use skiff_spec::isolator::{IsolatorValue, SECCOMP_REMOVE_SET, SECCOMP_RETAIN_SET};

use crate::Stage1Error;
use crate::syscalls;

const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

pub const RET_KILL_PROCESS: u32 = 0x8000_0000;
pub const RET_ERRNO: u32 = 0x0005_0000;
const RET_ALLOW: u32 = 0x7fff_0000;

// BPF opcodes.
const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
const JSET_K: u16 = 0x45; // BPF_JMP | BPF_JSET | BPF_K
const RET_K: u16 = 0x06; // BPF_RET | BPF_K

const OFFSET_NR: u32 = 0;
const OFFSET_ARCH: u32 = 4;
const OFFSET_ARG0_LOW: u32 = 16;

/// The default deny-list (Docker's default profile, as far as names go).
pub const DEFAULT_DENY: &[&str] = &[
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "get_mempolicy",
    "init_module",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mbind",
    "mount",
    "mount_setattr",
    "move_mount",
    "move_pages",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pidfd_getfd",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "query_module",
    "quotactl",
    "quotactl_fd",
    "reboot",
    "request_key",
    "set_mempolicy",
    "setns",
    "settimeofday",
    "swapoff",
    "swapon",
    "sysfs",
    "syslog",
    "_sysctl",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
    "vhangup",
];

/// Newer calls the default filter refuses with `ENOSYS` (as if the kernel
/// had none; programs fall back), like every number past
/// [`syscalls::LAST`]: the mount API's `open_tree_attr`, and `statmount`
/// and `listmount`, which can look into other mount namespaces. Not in the
/// OCI profile: the runtime's libseccomp (2.5 on Debian 12) cannot name them.
pub const NEWER_REFUSED: [&str; 3] = ["listmount", "open_tree_attr", "statmount"];

/// Namespace flags `clone` may not use under the default filter.
pub const CLONE_NAMESPACE_FLAGS: u32 = 0x7E02_0000; // NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET

/// The `personality(2)` arguments the default filter allows (Docker's
/// profile): PER_LINUX, PER_LINUX32, UNAME26 with each, and the query.
pub const PERSONALITIES: [u32; 5] = [0x0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff];

pub use crate::sys::seccomp::Insn;

fn stmt(code: u16, k: u32) -> Insn {
    Insn {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> Insn {
    Insn { code, jt, jf, k }
}

/// errno names accepted in seccomp isolators.
fn errno_number(name: &str) -> Option<u32> {
    let n = match name {
        "EPERM" => libc::EPERM,
        "ENOENT" => libc::ENOENT,
        "ESRCH" => libc::ESRCH,
        "EINTR" => libc::EINTR,
        "EIO" => libc::EIO,
        "ENXIO" => libc::ENXIO,
        "E2BIG" => libc::E2BIG,
        "ENOEXEC" => libc::ENOEXEC,
        "EBADF" => libc::EBADF,
        "ECHILD" => libc::ECHILD,
        "EAGAIN" => libc::EAGAIN,
        "ENOMEM" => libc::ENOMEM,
        "EACCES" => libc::EACCES,
        "EFAULT" => libc::EFAULT,
        "EBUSY" => libc::EBUSY,
        "EEXIST" => libc::EEXIST,
        "ENODEV" => libc::ENODEV,
        "ENOTDIR" => libc::ENOTDIR,
        "EISDIR" => libc::EISDIR,
        "EINVAL" => libc::EINVAL,
        "ENFILE" => libc::ENFILE,
        "EMFILE" => libc::EMFILE,
        "ENOSPC" => libc::ENOSPC,
        "EROFS" => libc::EROFS,
        "ENOSYS" => libc::ENOSYS,
        "ENOTSUP" => libc::ENOTSUP,
        "EOPNOTSUPP" => libc::EOPNOTSUPP,
        _ => return None,
    };
    u32::try_from(n).ok()
}

/// What the filter does, in order: the argument guards, the deny-list
/// (first match wins), then the allow-list if there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The default filter's argument checks: `clone` without namespace
    /// flags, `clone3` refused with `ENOSYS` (C libraries fall back to
    /// `clone`), `personality` only with [`PERSONALITIES`].
    pub guard_args: bool,
    /// Calls refused, each with its action (`RET_ERRNO | errno` or
    /// [`RET_KILL_PROCESS`]).
    pub deny: Vec<(String, u32)>,
    /// Only these calls allowed after the deny-list; the rest get the action.
    pub allow_only: Option<(Vec<String>, u32)>,
}

fn numbers(names: &[String]) -> Result<Vec<u32>, Stage1Error> {
    names
        .iter()
        .map(|n| {
            syscalls::number(n).ok_or_else(|| {
                Stage1Error::Config(format!("unknown system call '{n}' in a seccomp isolator"))
            })
        })
        .collect()
}

fn action(errno: &str) -> Result<u32, Stage1Error> {
    if errno.is_empty() {
        return Ok(RET_KILL_PROCESS);
    }
    errno_number(errno).map(|e| RET_ERRNO | e).ok_or_else(|| {
        Stage1Error::Config(format!("unknown errno '{errno}' in a seccomp isolator"))
    })
}

/// The policy for an app (see the module docs): the default filter with
/// the app's isolator on top, or the isolator alone if the user granted it.
pub fn policy(app: &App, grants: Grants) -> Result<Policy, Stage1Error> {
    let isolator = app.isolators.iter().find_map(|iso| match &iso.value {
        IsolatorValue::Seccomp(s)
            if [SECCOMP_RETAIN_SET, SECCOMP_REMOVE_SET].contains(&iso.name.as_str()) =>
        {
            Some((iso.name.as_str() == SECCOMP_RETAIN_SET, s))
        }
        _ => None,
    });
    let checked = |names: &[String]| -> Result<Vec<String>, Stage1Error> {
        numbers(names)?;
        Ok(names.to_vec())
    };
    let mut policy = if isolator.is_some() && grants.seccomp {
        Policy {
            guard_args: false,
            deny: Vec::new(),
            allow_only: None,
        }
    } else {
        let eperm = RET_ERRNO | libc::EPERM as u32;
        Policy {
            guard_args: true,
            deny: DEFAULT_DENY
                .iter()
                .filter(|n| syscalls::number(n).is_some())
                .map(|n| (n.to_string(), eperm))
                .collect(),
            allow_only: None,
        }
    };
    match isolator {
        Some((true, s)) => policy.allow_only = Some((checked(&s.set)?, action(&s.errno)?)),
        Some((false, s)) => {
            let action = action(&s.errno)?;
            policy
                .deny
                .extend(checked(&s.set)?.into_iter().map(|n| (n, action)));
        }
        None => {}
    }
    Ok(policy)
}

/// The only calls the pod's init may make once its apps have started
/// (waiting, passing signals on, writing reports, memory, exiting): code
/// that a pod process granted `CAP_SYS_PTRACE` runs in init (through
/// `/proc/1/mem`) can then open, create or mount nothing.
pub const INIT_AFTER_START: &[&str] = &[
    "brk",
    "clock_gettime",
    "clock_nanosleep",
    "close",
    "exit",
    "exit_group",
    "futex",
    "getpid",
    "getrandom",
    "gettid",
    "kill",
    "madvise",
    "mmap",
    "mprotect",
    "mremap",
    "munmap",
    "nanosleep",
    "read",
    "restart_syscall",
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "sched_yield",
    "sigaltstack",
    "tgkill",
    "wait4",
    "waitid",
    "write",
    "writev",
];

/// The policy of init once its apps have started: [`INIT_AFTER_START`],
/// every other call refused with `EPERM`.
pub fn init_after_start() -> Policy {
    Policy {
        guard_args: false,
        deny: Vec::new(),
        allow_only: Some((
            INIT_AFTER_START.iter().map(|n| n.to_string()).collect(),
            RET_ERRNO | libc::EPERM as u32,
        )),
    }
}

/// What an app's keeper (the process that runs its event handlers and the
/// app, confined like the app) calls between starting them: fork, wait,
/// signals (and waiting for one before a restart), the time, the app's own
/// filter for each child, exit. An image's
/// `seccomp-retain-set` or `-remove-set` that leaves these out still gets
/// them in its keeper; each child runs under the image's exact filter.
pub const KEEPER_CALLS: &[&str] = &[
    "brk",
    "clock_gettime",
    "clone",
    "close",
    "execve",
    "exit",
    "exit_group",
    "fork",
    "futex",
    "getpid",
    "gettid",
    "madvise",
    "mmap",
    "mprotect",
    "munmap",
    "read",
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "rt_sigtimedwait",
    "seccomp",
    "set_robust_list",
    "vfork",
    "wait4",
    "waitid",
    "write",
];

/// The policy of an app's keeper: the app's, with [`KEEPER_CALLS`] allowed
/// (its argument guards, where it has them, stay: a policy the user
/// replaced with `--seccomp` has none).
pub fn for_keeper(app: &Policy) -> Policy {
    let mut keeper = app.clone();
    keeper
        .deny
        .retain(|(name, _)| !KEEPER_CALLS.contains(&name.as_str()));
    if let Some((names, _)) = &mut keeper.allow_only {
        for call in KEEPER_CALLS {
            if !names.iter().any(|n| n == call) {
                names.push(call.to_string());
            }
        }
    }
    keeper
}

/// The BPF program for a policy.
pub fn program(policy: &Policy) -> Vec<Insn> {
    let refuse = RET_ERRNO | libc::EPERM as u32;
    let nr = |name: &str| syscalls::number(name).unwrap_or(u32::MAX);
    let mut p = vec![
        stmt(LD_W_ABS, OFFSET_ARCH),
        jump(JEQ_K, AUDIT_ARCH_X86_64, 1, 0),
        stmt(RET_K, refuse),
        stmt(LD_W_ABS, OFFSET_NR),
        jump(JGE_K, X32_SYSCALL_BIT, 0, 1),
        stmt(RET_K, refuse),
    ];
    let rule = |p: &mut Vec<Insn>, nr: u32, ret: u32| {
        p.push(jump(JEQ_K, nr, 0, 1));
        p.push(stmt(RET_K, ret));
    };
    if policy.guard_args {
        let enosys = RET_ERRNO | libc::ENOSYS as u32;
        p.push(jump(JGE_K, syscalls::LAST + 1, 0, 1));
        p.push(stmt(RET_K, enosys));
        for name in NEWER_REFUSED {
            rule(&mut p, nr(name), enosys);
        }
        rule(&mut p, nr("clone3"), enosys);
        // clone: refuse namespace flags in arg 0, then reload the number.
        p.push(jump(JEQ_K, nr("clone"), 0, 4));
        p.push(stmt(LD_W_ABS, OFFSET_ARG0_LOW));
        p.push(jump(JSET_K, CLONE_NAMESPACE_FLAGS, 0, 1));
        p.push(stmt(RET_K, refuse));
        p.push(stmt(LD_W_ABS, OFFSET_NR));
        // personality: only the allowed personas, then reload the number.
        let n = PERSONALITIES.len() as u8;
        p.push(jump(JEQ_K, nr("personality"), 0, n + 3));
        p.push(stmt(LD_W_ABS, OFFSET_ARG0_LOW));
        for (i, persona) in PERSONALITIES.iter().enumerate() {
            p.push(jump(JEQ_K, *persona, n - i as u8, 0));
        }
        p.push(stmt(RET_K, refuse));
        p.push(stmt(LD_W_ABS, OFFSET_NR));
    }
    for (name, action) in &policy.deny {
        rule(&mut p, nr(name), *action);
    }
    match &policy.allow_only {
        Some((names, action)) => {
            for name in names {
                rule(&mut p, nr(name), RET_ALLOW);
            }
            p.push(stmt(RET_K, *action));
        }
        None => p.push(stmt(RET_K, RET_ALLOW)),
    }
    p
}

/// Installs the filter on the calling thread (inherited across exec).
pub fn install(program: &[Insn]) -> Result<(), Stage1Error> {
    crate::sys::seccomp::install(program).map_err(|source| Stage1Error::Setup {
        what: "install the seccomp filter".to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_app as app;

    /// Runs the BPF program on a syscall, as the kernel would.
    fn eval(p: &[Insn], arch: u32, nr: u32, arg0: u32) -> u32 {
        let mut acc = 0u32;
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            match i.code {
                LD_W_ABS => {
                    acc = match i.k {
                        OFFSET_NR => nr,
                        OFFSET_ARCH => arch,
                        OFFSET_ARG0_LOW => arg0,
                        _ => 0,
                    };
                    pc += 1;
                }
                RET_K => return i.k,
                JEQ_K | JGE_K | JSET_K => {
                    let taken = match i.code {
                        JEQ_K => acc == i.k,
                        JGE_K => acc >= i.k,
                        _ => acc & i.k != 0,
                    };
                    pc += 1 + usize::from(if taken { i.jt } else { i.jf });
                }
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    #[test]
    fn a_keeper_may_fork_and_wait_whatever_its_image_retains() {
        let eperm = RET_ERRNO | libc::EPERM as u32;
        let nr = |n| syscalls::number(n).unwrap();
        let app_policy = Policy {
            guard_args: true,
            deny: vec![("wait4".into(), eperm), ("mount".into(), eperm)],
            allow_only: Some((vec!["write".into(), "execve".into()], eperm)),
        };
        let app_prog = program(&app_policy);
        let keeper = program(&for_keeper(&app_policy));
        for call in ["clone", "wait4", "seccomp", "exit_group"] {
            assert_eq!(
                eval(&app_prog, AUDIT_ARCH_X86_64, nr(call), 0),
                eperm,
                "{call}"
            );
            assert_eq!(
                eval(&keeper, AUDIT_ARCH_X86_64, nr(call), 0),
                RET_ALLOW,
                "{call}"
            );
        }
        // Nothing else is added, and the argument guards stay.
        for call in ["mount", "openat", "ptrace"] {
            assert_eq!(
                eval(&keeper, AUDIT_ARCH_X86_64, nr(call), 0),
                eperm,
                "{call}"
            );
        }
        assert_eq!(
            eval(
                &keeper,
                AUDIT_ARCH_X86_64,
                nr("clone"),
                CLONE_NAMESPACE_FLAGS
            ),
            eperm
        );
    }

    #[test]
    fn init_after_start_may_only_wait_signal_and_report() {
        let p = program(&init_after_start());
        let nr = |n| syscalls::number(n).unwrap();
        let eperm = RET_ERRNO | libc::EPERM as u32;
        for allowed in INIT_AFTER_START {
            assert_eq!(
                eval(&p, AUDIT_ARCH_X86_64, nr(allowed), 0),
                RET_ALLOW,
                "{allowed}"
            );
        }
        for denied in [
            "openat",
            "open",
            "mkdirat",
            "execve",
            "mount",
            "ptrace",
            "clone",
            "clone3",
            "socket",
            "setns",
            "unshare",
            "ioctl",
            "process_vm_writev",
            "fork",
        ] {
            assert_eq!(
                eval(&p, AUDIT_ARCH_X86_64, nr(denied), 0),
                eperm,
                "{denied}"
            );
        }
        assert_eq!(eval(&p, 0x4000_0003, nr("wait4"), 0), eperm, "i386");
        assert_eq!(
            eval(&p, AUDIT_ARCH_X86_64, nr("write") | X32_SYSCALL_BIT, 0),
            eperm,
            "x32"
        );
    }

    #[test]
    fn default_filter_refuses_dangerous_calls() {
        let p = program(&policy(&app(""), Grants::default()).unwrap());
        let nr = |n| syscalls::number(n).unwrap();
        let eperm = RET_ERRNO | libc::EPERM as u32;
        for denied in [
            "reboot",
            "kexec_load",
            "mount",
            "unshare",
            "init_module",
            "ptrace",
            "bpf",
            "setns",
        ] {
            assert_eq!(
                eval(&p, AUDIT_ARCH_X86_64, nr(denied), 0),
                eperm,
                "{denied}"
            );
        }
        for allowed in ["read", "write", "openat", "execve", "exit_group", "mmap"] {
            assert_eq!(
                eval(&p, AUDIT_ARCH_X86_64, nr(allowed), 0),
                RET_ALLOW,
                "{allowed}"
            );
        }
        assert_eq!(
            eval(&p, AUDIT_ARCH_X86_64, nr("clone"), 0x11),
            RET_ALLOW,
            "plain fork"
        );
        assert_eq!(
            eval(&p, AUDIT_ARCH_X86_64, nr("clone"), 0x1000_0000),
            eperm,
            "CLONE_NEWUSER"
        );
        assert_eq!(
            eval(&p, AUDIT_ARCH_X86_64, nr("clone3"), 0),
            RET_ERRNO | libc::ENOSYS as u32
        );
        assert_eq!(eval(&p, 0x4000_0003, 1, 0), eperm, "i386");
        assert_eq!(
            eval(&p, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT | 1, 0),
            eperm,
            "x32"
        );
    }

    #[test]
    fn calls_newer_than_the_table_are_refused_as_unknown() {
        let p = program(&policy(&app(""), Grants::default()).unwrap());
        let enosys = RET_ERRNO | libc::ENOSYS as u32;
        for nr in [syscalls::LAST + 1, 500, 1023] {
            assert_eq!(eval(&p, AUDIT_ARCH_X86_64, nr, 0), enosys, "{nr}");
        }
        for name in NEWER_REFUSED {
            let nr = syscalls::number(name).unwrap();
            assert_eq!(eval(&p, AUDIT_ARCH_X86_64, nr, 0), enosys, "{name}");
        }
        for name in ["fchmodat2", "futex_wake", "mseal", "cachestat", "read"] {
            let nr = syscalls::number(name).unwrap();
            assert_eq!(eval(&p, AUDIT_ARCH_X86_64, nr, 0), RET_ALLOW, "{name}");
        }
        // The table stays sorted (looked up by binary search) and LAST is its end.
        assert!(syscalls::SYSCALLS.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(
            syscalls::SYSCALLS.iter().map(|e| e.1).max(),
            Some(syscalls::LAST)
        );
    }

    #[test]
    fn personality_takes_only_the_allowed_personas() {
        let p = program(&policy(&app(""), Grants::default()).unwrap());
        let personality = syscalls::number("personality").unwrap();
        let eperm = RET_ERRNO | libc::EPERM as u32;
        for allowed in PERSONALITIES {
            assert_eq!(eval(&p, AUDIT_ARCH_X86_64, personality, allowed), RET_ALLOW);
        }
        // ADDR_NO_RANDOMIZE (turns off ASLR), READ_IMPLIES_EXEC.
        for refused in [0x0004_0000, 0x0040_0000] {
            assert_eq!(eval(&p, AUDIT_ARCH_X86_64, personality, refused), eperm);
        }
        for new in ["pidfd_getfd", "syslog"] {
            let nr = syscalls::number(new).unwrap();
            assert_eq!(eval(&p, AUDIT_ARCH_X86_64, nr, 0), eperm, "{new}");
        }
    }

    #[test]
    fn an_image_can_only_add_to_the_default_filter() {
        let none = Grants::default();
        let mount = syscalls::number("mount").unwrap();
        let eperm = RET_ERRNO | libc::EPERM as u32;
        // A remove-set naming a harmless call does not open `mount`.
        let p = program(
            &policy(
                &app(r#"{"name":"os/linux/seccomp-remove-set","value":{"set":["getpid"]}}"#),
                none,
            )
            .unwrap(),
        );
        assert_eq!(eval(&p, AUDIT_ARCH_X86_64, mount, 0), eperm);
        let getpid = syscalls::number("getpid").unwrap();
        assert_eq!(eval(&p, AUDIT_ARCH_X86_64, getpid, 0), RET_KILL_PROCESS);
        assert_eq!(
            eval(
                &p,
                AUDIT_ARCH_X86_64,
                syscalls::number("clone").unwrap(),
                0x1000_0000
            ),
            eperm,
            "CLONE_NEWUSER stays refused"
        );
        // A retain-set naming `mount` does not open it either.
        let p = program(
            &policy(
                &app(r#"{"name":"os/linux/seccomp-retain-set","value":{"set":["mount","read"],"errno":"ENOSYS"}}"#),
                none,
            )
            .unwrap(),
        );
        assert_eq!(eval(&p, AUDIT_ARCH_X86_64, mount, 0), eperm);
        assert_eq!(eval(&p, AUDIT_ARCH_X86_64, 0, 0), RET_ALLOW);
        assert_eq!(
            eval(&p, AUDIT_ARCH_X86_64, 1, 0),
            RET_ERRNO | libc::ENOSYS as u32
        );
    }

    #[test]
    fn granted_isolators_choose_the_policy() {
        let granted = Grants {
            seccomp: true,
            ..Grants::default()
        };
        let p = program(&policy(&app(r#"{"name":"os/linux/seccomp-retain-set","value":{"set":["read","exit_group"],"errno":"ENOSYS"}}"#), granted).unwrap());
        assert_eq!(eval(&p, AUDIT_ARCH_X86_64, 0, 0), RET_ALLOW);
        assert_eq!(
            eval(&p, AUDIT_ARCH_X86_64, 1, 0),
            RET_ERRNO | libc::ENOSYS as u32
        );
        let p = program(
            &policy(
                &app(r#"{"name":"os/linux/seccomp-remove-set","value":{"set":["write"]}}"#),
                granted,
            )
            .unwrap(),
        );
        assert_eq!(eval(&p, AUDIT_ARCH_X86_64, 1, 0), RET_KILL_PROCESS);
        assert_eq!(eval(&p, AUDIT_ARCH_X86_64, 0, 0), RET_ALLOW);
        assert!(
            policy(
                &app(r#"{"name":"os/linux/seccomp-remove-set","value":{"set":["nosuchcall"]}}"#),
                Grants::default()
            )
            .is_err()
        );
    }
}
