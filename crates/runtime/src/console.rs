//! `process.terminal` with `--console-socket`: the container's process gets
//! a pty from the container's own devpts; the master goes to whoever
//! listens on the socket (containerd's shim, `recvtty`), passed with
//! SCM_RIGHTS as runc does; the slave becomes the process's controlling
//! terminal and stdio, and is bound on /dev/console.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;

use skiff_stage1::mounts::Root;

use crate::{Result, RuntimeError, errno, io_err};

/// Connects to the console socket (in the caller's mount namespace, before
/// the container's process leaves it).
pub fn connect(path: &Path) -> Result<OwnedFd> {
    let stream = UnixStream::connect(path).map_err(io_err(format!(
        "connect to the console socket {}",
        path.display()
    )))?;
    Ok(OwnedFd::from(stream))
}

/// In the container (after pivot_root): makes the pty from the container's
/// devpts (checked to be devpts, reached without symlinks), binds its slave
/// on /dev/console when `console` is set, passes the master over `socket`
/// and returns the slave.
pub fn open(socket: &OwnedFd, size: Option<(u64, u64)>, console: bool) -> Result<OwnedFd> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let master = rustix::fs::openat2(
        rustix::fs::CWD,
        "/dev/pts/ptmx",
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(errno(
        "open /dev/pts/ptmx (mount devpts with newinstance on /dev/pts)",
    ))?;
    if !rustix::fs::fstatfs(&master).is_ok_and(|st| st.f_type == DEVPTS_SUPER_MAGIC) {
        return Err(RuntimeError::Invalid(
            "/dev/pts/ptmx in the container is not on devpts: refused".into(),
        ));
    }
    rustix::pty::unlockpt(&master).map_err(errno("unlock the pseudo-terminal"))?;
    let slave = rustix::pty::ioctl_tiocgptpeer(
        &master,
        rustix::pty::OpenptFlags::RDWR
            | rustix::pty::OpenptFlags::NOCTTY
            | rustix::pty::OpenptFlags::CLOEXEC,
    )
    .map_err(errno("open the pseudo-terminal"))?;
    if let Some((height, width)) = size {
        let ws = rustix::termios::Winsize {
            ws_row: u16::try_from(height).unwrap_or(u16::MAX),
            ws_col: u16::try_from(width).unwrap_or(u16::MAX),
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        rustix::termios::tcsetwinsize(&slave, ws).map_err(errno("set the terminal's size"))?;
    }
    if console {
        let root = Root::open(Path::new("/"))?;
        let target = root.resolve(Path::new("/dev/console"), true, true)?;
        crate::fdmount::bind(&slave, &target, false, "/dev/console")?;
    }
    skiff_stage1::tty::send_master(socket, &master).map_err(|e| {
        RuntimeError::Init(format!(
            "cannot pass the terminal over the console socket: {}",
            crate::error_line(&e)
        ))
    })?;
    Ok(slave)
}

const DEVPTS_SUPER_MAGIC: rustix::fs::FsWord = 0x1cd1;
