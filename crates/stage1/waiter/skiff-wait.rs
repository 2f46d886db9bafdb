//! `skiff-wait`: what a pod's supervisor becomes while the pod is quiet
//! (docs/stage1.md, "The supervisor at rest").
//!
//! ```text
//! skiff-wait <stage1-fd> <fd>... -- <stage1's arguments>
//! ```
//!
//! It keeps the supervisor's file descriptors open (it inherits them) and
//! waits until one of the `<fd>`s given has something to say: a report of
//! the pod's init, an app's output, a signal (a signalfd), the end of init
//! (a pidfd). Then it executes stage1 again (`<stage1-fd>`, opened by
//! stage1 itself) with the arguments after `--`, which handles the event.
//! It reads nothing, so nothing is lost between the two.
//!
//! Built by crates/stage1/build.rs without the standard library or libc
//! (a few pages of memory per pod instead of stage1's and glibc's), for
//! x86_64 Linux; stage1 carries it and executes it from a sealed memfd.
#![no_std]
#![no_main]

include!("limits.rs");

const SYS_WRITE: usize = 1;
const SYS_POLL: usize = 7;
const SYS_NANOSLEEP: usize = 35;
const SYS_PRCTL: usize = 157;
const SYS_EXIT_GROUP: usize = 231;
const SYS_EXECVEAT: usize = 322;

const POLLIN: i16 = 1;
const PR_SET_NAME: usize = 15;
const AT_EMPTY_PATH: usize = 0x1000;
const EINTR: isize = -4;

#[repr(C)]
#[derive(Clone, Copy)]
struct PollFd {
    fd: i32,
    events: i16,
    revents: i16,
}

/// The one way out to the kernel: system call `n` with up to five
/// arguments; the result or `-errno`.
fn syscall(n: usize, args: [usize; 5]) -> isize {
    let ret: isize;
    // SAFETY: the x86_64 Linux system call convention; every caller passes
    // arguments that are valid for call `n` (pointers into live buffers,
    // NUL-terminated strings, lengths that match). rcx and r11 are
    // clobbered by `syscall`.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") n as isize => ret,
            in("rdi") args[0],
            in("rsi") args[1],
            in("rdx") args[2],
            in("r10") args[3],
            in("r8") args[4],
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

fn say(message: &[u8]) {
    syscall(SYS_WRITE, [2, message.as_ptr() as usize, message.len(), 0, 0]);
}

fn exit(code: usize) -> ! {
    loop {
        syscall(SYS_EXIT_GROUP, [code, 0, 0, 0, 0]);
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    exit(127)
}

// The process's entry: the kernel leaves argc, argv and envp on the stack.
core::arch::global_asm!(
    ".globl _start",
    "_start:",
    "xor ebp, ebp",
    "mov rdi, rsp",
    "and rsp, -16",
    "call {entry}",
    "ud2",
    entry = sym entry,
);

/// Byte `i` of the NUL-terminated string at `p` (a loop over a string's
/// length here would be compiled into a call to libc's `strlen`).
fn byte(p: *const u8, i: usize) -> u8 {
    // SAFETY: `p` is one of the kernel's argument strings, and callers stop
    // at its NUL.
    unsafe { core::ptr::read_volatile(p.add(i)) }
}

/// Whether the argument at `p` is "--".
fn is_separator(p: *const u8) -> bool {
    byte(p, 0) == b'-' && byte(p, 1) == b'-' && byte(p, 2) == 0
}

/// The descriptor number at `p`, in decimal.
fn fd_of(p: *const u8) -> Option<i32> {
    let mut n: i32 = 0;
    let mut i = 0;
    loop {
        match byte(p, i) {
            0 if i > 0 => return Some(n),
            b @ b'0'..=b'9' if i < 9 => n = n * 10 + i32::from(b - b'0'),
            _ => return None,
        }
        i += 1;
    }
}

fn usage() -> ! {
    say(b"usage: skiff-wait <stage1-fd> <fd>... -- <stage1 arguments> (started by skiff-stage1)\n");
    exit(2)
}

extern "C" fn entry(stack: *const usize) -> ! {
    // SAFETY: at _start the stack holds argc, then argc argument pointers
    // and a null, then the environment pointers and a null.
    let (argc, argv) = unsafe { (*stack, stack.add(1) as *const *const u8) };
    // SAFETY: argv has argc entries and a null after them.
    let envp = unsafe { argv.add(argc + 1) };
    // SAFETY: callers ask for i < argc.
    let arg = |i: usize| unsafe { *argv.add(i) };
    syscall(SYS_PRCTL, [PR_SET_NAME, b"skiff-wait\0".as_ptr() as usize, 0, 0, 0]);
    if argc < 4 {
        usage();
    }
    let Some(stage1) = fd_of(arg(1)) else { usage() };
    let mut fds = [PollFd {
        fd: -1,
        events: POLLIN,
        revents: 0,
    }; MAX_FDS];
    let mut n = 0;
    let mut i = 2;
    let mut too_many = false;
    while i < argc && !is_separator(arg(i)) {
        let Some(fd) = fd_of(arg(i)) else { usage() };
        match fds.get_mut(n) {
            Some(slot) => slot.fd = fd,
            None => too_many = true,
        }
        n += 1;
        i += 1;
    }
    // Stage1's arguments: those after "--" (null-terminated, as argv is).
    if i + 1 >= argc || n == 0 {
        usage();
    }
    // SAFETY: i + 1 < argc.
    let rest = unsafe { argv.add(i + 1) };
    while !too_many {
        let ready = syscall(SYS_POLL, [fds.as_mut_ptr() as usize, n, usize::MAX, 0, 0]);
        if ready != EINTR {
            break;
        }
    }
    // Stage1 again; should that fail (the file no longer executable, the
    // host refusing it), again after 1, 2, 4 … up to 64 seconds, said each
    // time, and at last give up.
    let mut pause: i64 = 1;
    for _ in 0..MAX_EXEC_TRIES {
        syscall(
            SYS_EXECVEAT,
            [stage1 as usize, b"\0".as_ptr() as usize, rest as usize, envp as usize, AT_EMPTY_PATH],
        );
        say(b"skiff-wait: cannot execute skiff-stage1 again to supervise the pod; trying again\n");
        let wait: [i64; 2] = [pause, 0];
        syscall(SYS_NANOSLEEP, [wait.as_ptr() as usize, 0, 0, 0, 0]);
        pause = (pause * 2).min(64);
    }
    say(b"skiff-wait: giving up: the pod ends with its supervisor (skiff gc collects it)\n");
    exit(1)
}
