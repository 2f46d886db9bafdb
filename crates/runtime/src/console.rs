//! `process.terminal` with `--console-socket`: the container's process gets
//! a pty from the container's own devpts; the master goes to whoever
//! listens on the socket (containerd's shim, `recvtty`), passed with
//! SCM_RIGHTS as runc does; the slave becomes the process's controlling
//! terminal and stdio, and is bound on /dev/console.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;

use skiff_stage1::mounts::{Root, fd_path};

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

/// In the container (after pivot_root): makes the pty, binds its slave on
/// /dev/console when `console` is set, passes the master over `socket` and
/// returns the slave.
pub fn open(socket: &OwnedFd, size: Option<(u64, u64)>, console: bool) -> Result<OwnedFd> {
    let root = Root::open(Path::new("/"))?;
    let pty = skiff_stage1::tty::open_in(&root)?;
    if let Some((height, width)) = size {
        let ws = rustix::termios::Winsize {
            ws_row: u16::try_from(height).unwrap_or(u16::MAX),
            ws_col: u16::try_from(width).unwrap_or(u16::MAX),
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        rustix::termios::tcsetwinsize(&pty.slave, ws).map_err(errno("set the terminal's size"))?;
    }
    if console {
        let target = root.resolve(Path::new("/dev/console"), true, true)?;
        rustix::mount::mount(
            fd_path(&pty.slave).as_str(),
            fd_path(&target).as_str(),
            "",
            rustix::mount::MountFlags::BIND,
            None,
        )
        .map_err(errno("bind the terminal on /dev/console"))?;
    }
    skiff_stage1::tty::send_master(socket, &pty.master).map_err(|e| {
        RuntimeError::Init(format!(
            "cannot pass the terminal over the console socket: {}",
            crate::error_line(&e)
        ))
    })?;
    Ok(pty.slave)
}
