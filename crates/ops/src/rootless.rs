//! An ordinary user's skiff runs in a user namespace of its own, as podman
//! does: the user is root there (uid 0 inside is the user's uid outside)
//! and ids 1–65535 inside are the user's subordinate ids from /etc/subuid
//! and /etc/subgid, mapped by the standard setuid helpers `newuidmap` and
//! `newgidmap` (Debian's `uidmap`). So images are rendered with their
//! in-image owners (shifted into the subordinate range on disk) and the
//! user can remove what was rendered, without any root process or helper
//! of skiff's own.
//!
//! How: the command the user typed (the parent) starts itself again (the
//! child) with a socket; the child unshares a user namespace and says so;
//! the parent writes the child's id maps with newuidmap/newgidmap (or,
//! without subordinate ranges or the helpers, a single-id map of the user,
//! with a warning); the child becomes root in the namespace and runs the
//! command; the parent passes signals on, waits and exits as the child did.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use crate::OpsError;

/// Names the child's end of the socket (a file descriptor number).
const SYNC_FD: &str = "SKIFF_USERNS_SYNC_FD";

/// How many subordinate ids are mapped (in-pod 1–65535).
pub const SUBORDINATE_IDS: u32 = 65535;

/// The user this process runs for when it is root of the user's namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostIds {
    pub uid: u32,
    pub gid: u32,
}

static ENTERED: OnceLock<HostIds> = OnceLock::new();

/// The user outside, when this process has entered the user's namespace
/// (it is root inside, but acts for that user: its directories, its keys).
pub fn entered() -> Option<HostIds> {
    ENTERED.get().copied()
}

/// Whether this process is root of the host: uid 0 in the initial user
/// namespace (not an ordinary user, nor root of a user's namespace, ours
/// or another tool's such as `unshare -r`).
pub fn is_host_root() -> bool {
    static HOST_ROOT: OnceLock<bool> = OnceLock::new();
    entered().is_none() && *HOST_ROOT.get_or_init(skiff_stage1::userns::is_host_root)
}

/// Whether this process is in a user namespace that maps a single id (an
/// ordinary user without subordinate ranges).
pub fn single_id() -> bool {
    use skiff_pod::idmap;
    idmap::total(&idmap::of_this_process(idmap::Ids::Uid)) <= 1
}

/// One range of subordinate ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub start: u32,
    pub count: u32,
}

/// The first range of `user` (name or uid) in /etc/subuid-format `text`.
pub fn subordinate_range(text: &str, name: Option<&str>, id: u32) -> Option<Range> {
    text.lines().find_map(|line| {
        let mut fields = line.trim().split(':');
        let (who, start, count) = (fields.next()?, fields.next()?, fields.next()?);
        if Some(who) != name && who != id.to_string() {
            return None;
        }
        let range = Range {
            start: start.parse().ok()?,
            count: count.parse().ok()?,
        };
        (range.count > 0).then_some(range)
    })
}

/// The name of `uid` in /etc/passwd-format `text`.
pub fn user_name(text: &str, uid: u32) -> Option<String> {
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id: u32 = fields.nth(1)?.parse().ok()?;
        (id == uid).then(|| name.to_string())
    })
}

/// What the parent maps for the child.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Maps {
    /// The user's id to 0, subordinate ids to 1….
    Subordinate { uids: Range, gids: Range },
    /// Only the user's id, to 0; why, for the warning.
    Single(String),
}

fn plan(ids: HostIds) -> Maps {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let name = user_name(&read("/etc/passwd"), ids.uid);
    let uids = subordinate_range(&read("/etc/subuid"), name.as_deref(), ids.uid);
    let gids = subordinate_range(&read("/etc/subgid"), name.as_deref(), ids.uid);
    let who = name.unwrap_or_else(|| ids.uid.to_string());
    let helpers = ["newuidmap", "newgidmap"]
        .iter()
        .all(|h| find_program(h).is_some());
    match (uids, gids) {
        (Some(uids), Some(gids)) if helpers => Maps::Subordinate { uids, gids },
        (Some(_), Some(_)) => {
            Maps::Single("newuidmap and newgidmap are not installed (Debian package uidmap)".into())
        }
        _ => Maps::Single(format!(
            "{who} has no subordinate ids in /etc/subuid and /etc/subgid (add a range: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {who})"
        )),
    }
}

fn find_program(name: &str) -> Option<std::path::PathBuf> {
    ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// Runs this command in the user's namespace when an ordinary user runs
/// it: returns the exit status to exit with (this process was the
/// parent), or `None` to go on (root, or this process is the child and is
/// now root in the namespace). `warn` hears what is lost without
/// subordinate ids. Call before any thread is started.
pub fn enter(warn: impl FnOnce(&str)) -> Result<Option<i32>, OpsError> {
    if let Some(fd) = std::env::var(SYNC_FD).ok().and_then(|v| v.parse::<i32>().ok())
        // Only a socket is taken (taking an fd closes it when dropped).
        && std::fs::read_link(format!("/proc/self/fd/{fd}"))
            .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
        && let Some(sync) = skiff_stage1::sys::process::take_inherited_fd(fd)
    {
        if is_parents_socket(&sync) {
            return become_root(sync).map(|()| None);
        }
        // Not ours: left open (close-on-exec now; take_inherited_fd set it).
        let _ = std::os::fd::IntoRawFd::into_raw_fd(sync);
    }
    let uid = rustix::process::geteuid().as_raw();
    if uid == 0 {
        return Ok(None);
    }
    let ids = HostIds {
        uid,
        gid: rustix::process::getegid().as_raw(),
    };
    run_child(ids, warn).map(Some)
}

fn setup_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> OpsError {
    let what = what.into();
    move |e| OpsError::Refused(format!("cannot enter this user's namespace: {what}: {e}"))
}

/// The inherited fd is a socket whose other end is this process's
/// parent (not a stray variable in the environment of another program).
fn is_parents_socket(sync: &OwnedFd) -> bool {
    rustix::net::sockopt::socket_peercred(sync)
        .is_ok_and(|cred| Some(cred.pid) == rustix::process::getppid())
}

fn become_root(sync: OwnedFd) -> Result<(), OpsError> {
    // The socket goes no further than this process (not to stage1, CNI
    // plugins or pods).
    rustix::io::fcntl_setfd(&sync, rustix::io::FdFlags::CLOEXEC)
        .map_err(|e| setup_err("keep the socket")(e.into()))?;
    let parent = rustix::process::getppid();
    // If the command the user typed dies, so does this one (not an orphan
    // holding locks and the terminal); it may have died already.
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .map_err(|e| setup_err("follow the parent")(e.into()))?;
    if rustix::process::getppid() != parent {
        std::process::exit(125);
    }
    let mut sync = UnixStream::from(sync);
    let host = HostIds {
        uid: rustix::process::geteuid().as_raw(),
        gid: rustix::process::getegid().as_raw(),
    };
    skiff_stage1::sys::process::unshare(rustix::thread::UnshareFlags::NEWUSER)
        .map_err(|e| setup_err("unshare a user namespace")(e.into()))?;
    sync.write_all(b"u").map_err(setup_err("tell the parent"))?;
    let mut answer = [0u8; 1];
    sync.read_exact(&mut answer)
        .map_err(setup_err("wait for the id maps"))?;
    if answer != *b"m" {
        // The parent said why; it exits with the failure.
        std::process::exit(125);
    }
    skiff_stage1::sys::ids::set_ids(0, 0).map_err(setup_err("become root in it"))?;
    let _ = ENTERED.set(host);
    Ok(())
}

fn run_child(ids: HostIds, warn: impl FnOnce(&str)) -> Result<i32, OpsError> {
    let (mut ours, theirs) = UnixStream::pair().map_err(setup_err("make a socket pair"))?;
    // This very program (its inode, not a path that could be swapped),
    // with the name it was called by; the child's end crosses exec.
    let mut args = std::env::args_os();
    let mut cmd = Command::new("/proc/self/exe");
    cmd.env(SYNC_FD, theirs.as_raw_fd().to_string());
    skiff_stage1::sys::process::pass_fd(&mut cmd, theirs.into());
    if let Some(name) = args.next() {
        std::os::unix::process::CommandExt::arg0(&mut cmd, name);
    }
    let mut child = cmd
        .args(args)
        .spawn()
        .map_err(setup_err("start this program again"))?;
    drop(cmd); // with its copy of the child's end
    // SIGTERM and SIGHUP sent to this process go on to the child; Ctrl-C
    // and Ctrl-\ from the terminal reach it directly (same process group).
    skiff_stage1::supervise::forward_to(child.id() as i32);
    skiff_stage1::sys::signal::ignore(&[
        rustix::process::Signal::INT.as_raw(),
        rustix::process::Signal::QUIT.as_raw(),
    ]);
    let mut ready = [0u8; 1];
    if ours.read_exact(&mut ready).is_ok() && ready == *b"u" {
        let pid = child.id();
        match write_maps(pid, ids, &plan(ids), warn) {
            Ok(()) => ours.write_all(b"m").map_err(setup_err("tell the child"))?,
            Err(e) => {
                let _ = ours.write_all(b"x");
                let _ = child.wait();
                return Err(e);
            }
        }
    }
    drop(ours);
    let status = child.wait().map_err(setup_err("wait for the command"))?;
    Ok(std::os::unix::process::ExitStatusExt::signal(&status)
        .map_or(status.code().unwrap_or(1), |s| 128 + s))
}

fn write_maps(
    pid: u32,
    ids: HostIds,
    maps: &Maps,
    warn: impl FnOnce(&str),
) -> Result<(), OpsError> {
    match maps {
        Maps::Subordinate { uids, gids } => {
            for (helper, own, range) in [("newuidmap", ids.uid, uids), ("newgidmap", ids.gid, gids)]
            {
                let count = range.count.min(SUBORDINATE_IDS);
                let out = Command::new(find_program(helper).unwrap_or_else(|| helper.into()))
                    .arg(pid.to_string())
                    .args(["0", &own.to_string(), "1"])
                    .args(["1", &range.start.to_string(), &count.to_string()])
                    .output()
                    .map_err(setup_err(format!("run {helper}")))?;
                if !out.status.success() {
                    return Err(OpsError::Refused(format!(
                        "cannot enter this user's namespace: {helper} failed: {} (check /etc/subuid and /etc/subgid)",
                        String::from_utf8_lossy(&out.stderr).trim()
                    )));
                }
            }
        }
        Maps::Single(why) => {
            warn(&format!(
                "{why}; running with a single id: every file in an image is owned by root in the pod, and apps that switch to another user fail"
            ));
            let proc = Path::new("/proc").join(pid.to_string());
            for (file, text) in [
                ("uid_map", format!("0 {} 1\n", ids.uid)),
                ("setgroups", "deny".to_string()),
                ("gid_map", format!("0 {} 1\n", ids.gid)),
            ] {
                std::fs::write(proc.join(file), text)
                    .map_err(setup_err(format!("write {file}")))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subordinate_ranges_by_name_or_uid() {
        let text = "alice:100000:65536\n1001:200000:65536\nbob:0:0\nbad line\n";
        assert_eq!(
            subordinate_range(text, Some("alice"), 1000),
            Some(Range {
                start: 100000,
                count: 65536
            })
        );
        assert_eq!(
            subordinate_range(text, Some("carol"), 1001).map(|r| r.start),
            Some(200000)
        );
        // An empty range is no range.
        assert_eq!(subordinate_range(text, Some("bob"), 1002), None);
        assert_eq!(subordinate_range(text, None, 4242), None);
    }

    #[test]
    fn names_from_passwd() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n";
        assert_eq!(user_name(passwd, 1000).as_deref(), Some("alice"));
        assert_eq!(user_name(passwd, 7), None);
    }
}
