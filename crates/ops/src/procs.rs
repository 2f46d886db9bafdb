//! The processes of a running pod, as the host's /proc shows them, for
//! `skiff top` and `skiff stats`: which are the pod's, which app each
//! belongs to, and what they use.
//!
//! Everything read here is about processes of the pod, which choose their
//! own command lines: text is bounded and the command line is kept as
//! bytes made printable by the caller.

use std::io::Read;
use std::os::unix::fs::MetadataExt;

use serde::Serialize;
use skiff_pod::{Flavor, Pod};

use crate::{OpsError, refuse};

/// The most of a command line read.
const MAX_CMDLINE: u64 = 4096;

/// One process of a pod.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Process {
    /// The app it belongs to (none: the pod's init, or a command `skiff
    /// enter` started outside any app's cgroup).
    pub app: Option<String>,
    /// Its pid on the host.
    pub host_pid: i32,
    /// Its pid in the pod's pid namespace (none for a `fly` pod).
    pub pid: Option<i32>,
    /// Its user id in the pod (through the pod's user namespace).
    pub uid: u32,
    /// Resident memory, bytes.
    pub rss: u64,
    /// CPU time used by it and its waited-for children, in clock ticks.
    #[serde(skip)]
    pub cpu_ticks: u64,
    /// CPU time as seconds.
    pub cpu_seconds: f64,
    /// Its command line (arguments joined by spaces) or `[name]`.
    pub command: String,
}

/// How the pod's processes are told from the host's.
enum Membership {
    /// Every process in the pod's pid namespace (ns, oci).
    PidNamespace { dev: u64, ino: u64 },
    /// Descendants of the supervisor (fly, whose apps share the host's).
    Descendants(i32),
}

/// The processes of running pod `pod`, sorted by host pid.
pub fn of_pod(pod: &Pod) -> Result<Vec<Process>, OpsError> {
    if !pod.is_running() {
        return Err(refuse!(
            "pod {} is {}, not running",
            pod.uuid,
            pod.display_state()
        ));
    }
    let runtime = pod.runtime()?;
    if runtime.flavor == Flavor::Kvm {
        return Err(refuse!(
            "the processes of a kvm pod run in its VM, out of the host's sight: use skiff enter {} ps",
            pod.uuid
        ));
    }
    let init = pod
        .pid()
        .ok_or_else(|| refuse!("pod {} has no pid yet", pod.uuid))?;
    let membership = match runtime.flavor {
        Flavor::Fly => Membership::Descendants(init),
        _ => {
            let ns = std::fs::metadata(format!("/proc/{init}/ns/pid")).map_err(
                crate::error::io(format!("read the pid namespace of {init}")),
            )?;
            Membership::PidNamespace {
                dev: ns.dev(),
                ino: ns.ino(),
            }
        }
    };
    let apps: Vec<String> = runtime.apps.iter().map(|a| a.name.clone()).collect();
    let page = rustix::param::page_size() as u64;
    let ticks = rustix::param::clock_ticks_per_second().max(1);
    let mut found = Vec::new();
    let mut parents = Vec::new();
    for pid in skiff_stage1::proc_pids().map_err(crate::error::io("read /proc"))? {
        let Some(stat) = skiff_stage1::proc_stat(&pid.to_string()) else {
            continue;
        };
        parents.push((pid, stat.get(4).copied().unwrap_or(0) as i32));
        let member = match membership {
            Membership::PidNamespace { dev, ino } => {
                std::fs::metadata(format!("/proc/{pid}/ns/pid"))
                    .is_ok_and(|m| (m.dev(), m.ino()) == (dev, ino))
            }
            // Decided below, once every parent is known.
            Membership::Descendants(_) => true,
        };
        if !member {
            continue;
        }
        let field = |n: usize| stat.get(n).copied().unwrap_or(0);
        let cpu_ticks = field(14) + field(15) + field(16) + field(17);
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let host_uid = status_field(&status, "Uid:").unwrap_or(0);
        found.push(Process {
            app: app_of(&pod.uuid, pid, &apps),
            host_pid: pid,
            pid: match membership {
                Membership::PidNamespace { .. } => status_field(&status, "NSpid:"),
                Membership::Descendants(_) => None,
            },
            uid: uid_in_pod(pid, host_uid),
            rss: field(24) * page,
            cpu_ticks,
            cpu_seconds: cpu_ticks as f64 / ticks as f64,
            command: command_line(pid),
        });
    }
    if let Membership::Descendants(root) = membership {
        found.retain(|p| descends_from(p.host_pid, root, &parents));
    }
    found.sort_by_key(|p| p.host_pid);
    Ok(found)
}

/// The last number of a /proc/<pid>/status field (`NSpid:` lists the pid
/// in each namespace from the host inwards; `Uid:` real, effective, …:
/// the first).
fn status_field<T: std::str::FromStr>(status: &str, key: &str) -> Option<T> {
    let mut values = status
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .split_whitespace();
    let value = match key {
        "NSpid:" => values.next_back(),
        _ => values.next(),
    };
    value?.parse().ok()
}

/// The app whose cgroup holds `pid` (`…/skiff/<uuid>/<app>` in
/// /proc/<pid>/cgroup, which the kernel writes): none for init or a
/// process outside the apps' cgroups.
fn app_of(uuid: &str, pid: i32, apps: &[String]) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let marker = format!("/skiff/{uuid}/");
    text.lines().find_map(|line| {
        let rest = &line[line.find(&marker)? + marker.len()..];
        let name = rest.split('/').next()?;
        apps.iter().find(|a| *a == name).cloned()
    })
}

/// `host_uid` as the pod sees it, through the user namespace of `pid`
/// (/proc/<pid>/uid_map: inside, outside, count).
fn uid_in_pod(pid: i32, host_uid: u32) -> u32 {
    let map = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap_or_default();
    map.lines()
        .filter_map(|l| {
            let f: Vec<u64> = l
                .split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect();
            (f.len() == 3).then(|| (f[0], f[1], f[2]))
        })
        .find(|(_, outside, count)| (*outside..outside + count).contains(&u64::from(host_uid)))
        .and_then(|(inside, outside, _)| {
            u32::try_from(inside + (u64::from(host_uid) - outside)).ok()
        })
        .unwrap_or(host_uid)
}

/// The command line of `pid` (at most [`MAX_CMDLINE`] bytes, arguments
/// joined by spaces), or `[name]` for a kernel-side or zombie process.
fn command_line(pid: i32) -> String {
    let mut bytes = Vec::new();
    if let Ok(file) = std::fs::File::open(format!("/proc/{pid}/cmdline")) {
        let _ = file.take(MAX_CMDLINE).read_to_end(&mut bytes);
    }
    while bytes.last() == Some(&0) {
        bytes.pop();
    }
    if bytes.is_empty() {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        return format!("[{}]", comm.trim_end());
    }
    let text: Vec<u8> = bytes
        .into_iter()
        .map(|b| if b == 0 { b' ' } else { b })
        .collect();
    String::from_utf8_lossy(&text).into_owned()
}

/// Whether `pid` is `root` or below it in `parents` (pid, parent pairs).
fn descends_from(pid: i32, root: i32, parents: &[(i32, i32)]) -> bool {
    let mut current = pid;
    // A chain longer than the processes there are is a loop (pids reused
    // while /proc was read).
    for _ in 0..=parents.len() {
        if current == root {
            return true;
        }
        match parents.iter().find(|(p, _)| *p == current) {
            Some((_, parent)) if *parent > 0 => current = *parent,
            _ => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_take_the_innermost_pid_and_the_real_uid() {
        let status = "Name:\tsh\nUid:\t1000\t1001\t1002\t1003\nNSpid:\t4242\t7\n";
        assert_eq!(status_field::<i32>(status, "NSpid:"), Some(7));
        assert_eq!(status_field::<u32>(status, "Uid:"), Some(1000));
        assert_eq!(status_field::<u32>(status, "Gid:"), None);
    }

    #[test]
    fn descendants_are_found_through_their_parents_and_loops_end() {
        let parents = [
            (1, 0),
            (10, 1),
            (11, 10),
            (12, 11),
            (20, 1),
            (30, 31),
            (31, 30),
        ];
        assert!(descends_from(12, 10, &parents));
        assert!(descends_from(10, 10, &parents));
        assert!(!descends_from(20, 10, &parents));
        assert!(!descends_from(30, 10, &parents));
    }

    #[test]
    fn this_process_is_read_back() {
        let me = std::process::id() as i32;
        let line = command_line(me);
        assert!(!line.is_empty() && !line.starts_with('['), "{line}");
        assert_eq!(uid_in_pod(me, 0), 0);
    }
}
