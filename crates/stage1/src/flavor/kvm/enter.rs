//! `skiff enter` for kvm pods: a virtio-serial port (`skiff.enter`) between
//! the host, where QEMU serves it as `<pod>/kvm/enter.sock`, and a server
//! process the guest init forks before starting the apps.
//!
//! The host sends one JSON line, [`Request`]; the guest runs the command as
//! the app would run (its root, user, capabilities, seccomp filter,
//! environment) with stdin from /dev/null and answers with frames: a kind
//! byte, a big-endian u32 length, the bytes — stdout data, stderr data,
//! then the exit status (an i32). One `enter` at a time per pod.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::plan::AppPlan;
use crate::setup_err;
use crate::{EXIT_SETUP_FAILED, Stage1Error};

/// The port's name in the guest (/sys/class/virtio-ports/*/name).
pub const PORT_NAME: &str = "skiff.enter";

const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const EXIT: u8 = 3;

#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    /// The app to enter (default: the first).
    pub app: Option<String>,
    pub argv: Vec<String>,
}

/// The host end of the channel.
pub fn socket_path(pod_dir: &Path) -> PathBuf {
    pod_dir.join("kvm").join("enter.sock")
}

fn frame(out: &mut impl Write, kind: u8, data: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
    let mut head = [kind, 0, 0, 0, 0];
    head[1..].copy_from_slice(&len.to_be_bytes());
    out.write_all(&head)?;
    out.write_all(data)?;
    out.flush()
}

/// Host side: runs `cmd` (default /bin/sh) in the VM, relays its output;
/// returns its exit status.
pub fn enter(pod_dir: &Path, app: Option<&str>, cmd: &[String]) -> Result<i32, Stage1Error> {
    let path = socket_path(pod_dir);
    let mut stream = UnixStream::connect(&path).map_err(|e| {
        Stage1Error::Config(format!(
            "cannot reach the pod's VM at {}: {e} (is the pod running?)",
            path.display()
        ))
    })?;
    let argv = if cmd.is_empty() {
        vec!["/bin/sh".to_string()]
    } else {
        cmd.to_vec()
    };
    let mut line = serde_json::to_vec(&Request {
        app: app.map(str::to_string),
        argv,
    })
    .map_err(|e| Stage1Error::Config(e.to_string()))?;
    line.push(b'\n');
    stream
        .write_all(&line)
        .map_err(setup_err("send the command to the VM"))?;
    let io = setup_err("read the command's output from the VM");
    loop {
        let mut head = [0u8; 5];
        if let Err(e) = stream.read_exact(&mut head) {
            return Err(io(e));
        }
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut data = vec![0u8; len.min(1 << 20)];
        stream
            .read_exact(&mut data)
            .map_err(setup_err("read the command's output from the VM"))?;
        match head[0] {
            STDOUT => {
                let _ = std::io::stdout().write_all(&data);
                let _ = std::io::stdout().flush();
            }
            STDERR => {
                let _ = std::io::stderr().write_all(&data);
            }
            EXIT if data.len() == 4 => {
                return Ok(i32::from_be_bytes([data[0], data[1], data[2], data[3]]));
            }
            _ => {
                return Err(Stage1Error::Config(
                    "the VM sent a malformed answer to enter".into(),
                ));
            }
        }
    }
}

/// The guest's device of the port, if QEMU gave it one.
fn guest_port() -> Option<PathBuf> {
    std::fs::read_dir("/sys/class/virtio-ports")
        .ok()?
        .filter_map(|e| e.ok())
        .find(|e| {
            std::fs::read_to_string(e.path().join("name")).is_ok_and(|n| n.trim() == PORT_NAME)
        })
        .map(|e| Path::new("/dev").join(e.file_name()))
}

/// Guest side: forks the server (it lives until the VM powers off).
pub fn spawn_server(plans: &[AppPlan]) -> Result<(), Stage1Error> {
    super::guest::wait_for("the enter port", || guest_port().is_some())?;
    let Some(port) = guest_port() else {
        return Ok(());
    };
    if crate::sys::process::fork().map_err(setup_err("fork the enter server"))?
        == crate::sys::process::Forked::Child
    {
        serve(&port, plans);
        std::process::exit(0);
    }
    Ok(())
}

fn serve(port: &Path, plans: &[AppPlan]) {
    let Ok(file) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(port)
    else {
        return;
    };
    let Ok(mut writer) = file.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(file);
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) => {
                // No host connected: wait for one.
                std::thread::sleep(std::time::Duration::from_millis(100));
                continue;
            }
            Ok(_) => {}
            Err(_) => return,
        }
        let code = match serde_json::from_str::<Request>(line.trim()) {
            Ok(req) => run(&req, plans, &mut writer).unwrap_or_else(|e| {
                let _ = frame(
                    &mut writer,
                    STDERR,
                    format!("skiff: cannot enter the pod: {}\n", crate::error_line(&e)).as_bytes(),
                );
                EXIT_SETUP_FAILED
            }),
            Err(e) => {
                let _ = frame(
                    &mut writer,
                    STDERR,
                    format!("bad request: {e}\n").as_bytes(),
                );
                EXIT_SETUP_FAILED
            }
        };
        let _ = frame(&mut writer, EXIT, &code.to_be_bytes());
    }
}

/// Runs one request: a child in the app's root (a mount namespace of its
/// own, as the app's), its output framed onto the port.
fn run(req: &Request, plans: &[AppPlan], port: &mut std::fs::File) -> Result<i32, Stage1Error> {
    let p = match &req.app {
        Some(name) => plans
            .iter()
            .find(|p| &p.name == name)
            .ok_or_else(|| Stage1Error::Config(format!("the pod has no app '{name}'")))?,
        None => &plans[0],
    };
    let pipe = || {
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| setup_err("create a pipe")(e.into()))
    };
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let forked = crate::sys::process::fork().map_err(setup_err("fork"))?;
    let pid = match forked {
        crate::sys::process::Forked::Parent(pid) => pid,
        crate::sys::process::Forked::Child => {
            let e = child(p, &req.argv, &out_w, &err_w);
            let _ = rustix::io::write(
                &err_w,
                format!("skiff: {}\n", crate::error_line(&e)).as_bytes(),
            );
            let code = match e {
                Stage1Error::Exec { .. } => 127,
                _ => EXIT_SETUP_FAILED,
            };
            std::process::exit(code);
        }
    };
    drop(out_w);
    drop(err_w);
    relay(&[(out_r, STDOUT), (err_r, STDERR)], port);
    let status = crate::sys::process::wait(pid).unwrap_or(0);
    Ok(crate::exit_code(status))
}

/// In the forked child: stdio, the app's root, the app's confinement.
fn child(p: &AppPlan, argv: &[String], out: &OwnedFd, err: &OwnedFd) -> Stage1Error {
    let result = (|| -> Result<Stage1Error, Stage1Error> {
        let null = std::fs::File::open("/dev/null").map_err(setup_err("open /dev/null"))?;
        rustix::stdio::dup2_stdin(&null)
            .and_then(|()| rustix::stdio::dup2_stdout(out))
            .and_then(|()| rustix::stdio::dup2_stderr(err))
            .map_err(|e| setup_err("attach stdio")(e.into()))?;
        crate::sys::process::unshare(rustix::thread::UnshareFlags::NEWNS)
            .map_err(|e| setup_err("create a mount namespace")(e.into()))?;
        crate::mounts::make_private_rec()?;
        crate::mounts::pivot_into(Path::new(&format!("/apps/{}/rootfs", p.name)))?;
        crate::confine::become_app(p, argv)
    })();
    match result {
        Ok(e) | Err(e) => e,
    }
}

/// Copies each pipe's data to the port as frames of its kind until all
/// pipes are closed.
fn relay(pipes: &[(OwnedFd, u8)], port: &mut std::fs::File) {
    let mut open: Vec<bool> = pipes.iter().map(|_| true).collect();
    let mut buf = vec![0u8; 16 * 1024];
    while open.iter().any(|o| *o) {
        let mut fds: Vec<rustix::event::PollFd> = pipes
            .iter()
            .zip(&open)
            .filter(|(_, o)| **o)
            .map(|((fd, _), _)| rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN))
            .collect();
        if rustix::event::poll(&mut fds, None).is_err() {
            return;
        }
        let ready: Vec<bool> = fds.iter().map(|f| !f.revents().is_empty()).collect();
        drop(fds);
        let mut k = 0;
        for (i, (fd, kind)) in pipes.iter().enumerate() {
            if !open[i] {
                continue;
            }
            let is_ready = ready.get(k).copied().unwrap_or(false);
            k += 1;
            if !is_ready {
                continue;
            }
            match rustix::io::read(fd, &mut buf) {
                Ok(0) | Err(_) => open[i] = false,
                Ok(n) => {
                    if frame(port, *kind, &buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_kind_length_and_bytes() {
        let mut out = Vec::new();
        frame(&mut out, STDOUT, b"hi").unwrap();
        frame(&mut out, EXIT, &7i32.to_be_bytes()).unwrap();
        assert_eq!(out, [1, 0, 0, 0, 2, b'h', b'i', 3, 0, 0, 0, 4, 0, 0, 0, 7]);
    }
}
