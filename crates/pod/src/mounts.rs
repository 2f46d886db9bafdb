//! Mounts left under a pod's directory: found in `/proc/self/mountinfo`
//! and detached, deepest first (stage1's fly flavor after its apps, and
//! `skiff gc`/`rm` before removing a pod).

use std::path::{Path, PathBuf};

/// The mount points at or below `dir` in `mountinfo` (the text of
/// `/proc/<pid>/mountinfo`), deepest first. Mountinfo escapes space, tab,
/// newline and backslash in paths as `\ooo`; they are unescaped here.
pub fn mount_points_under(mountinfo: &str, dir: &Path) -> Vec<PathBuf> {
    let mut points: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape(field)))
        .filter(|point| point.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    points
}

/// `\040` and the like back to the bytes they stand for.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            let s = std::str::from_utf8(d).ok()?;
            u8::from_str_radix(s, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Detaches every mount at or below `dir` in this process's mount
/// namespace, deepest first; the first failure, with its mount point.
pub fn unmount_under(dir: &Path) -> Result<(), (PathBuf, std::io::Error)> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for point in mount_points_under(&mountinfo, dir) {
        rustix::mount::unmount(&point, rustix::mount::UnmountFlags::DETACH)
            .map_err(|e| (point.clone(), e.into()))?;
    }
    Ok(())
}

/// Processes whose root directory is at or below `dir` (the apps of a
/// `fly` pod, which are chrooted into their trees and have no pod init
/// whose death would take them along).
pub fn processes_rooted_under(dir: &Path) -> Vec<rustix::process::Pid> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_string_lossy().parse::<i32>().ok()?;
            let root = std::fs::read_link(e.path().join("root")).ok()?;
            (root.starts_with(dir)).then_some(())?;
            rustix::process::Pid::from_raw(pid)
        })
        .collect()
}

/// Kills (SIGKILL) the processes rooted at or below `dir`, a pod's
/// directory whose stage1 is gone, and waits briefly for them to go; how
/// many there were.
pub fn kill_processes_rooted_under(dir: &Path) -> usize {
    kill_until_gone(|| processes_rooted_under(dir))
}

/// Sends SIGKILL to every process `find` returns, and again to what it
/// returns then (a process may fork while the signals go out), until it
/// returns none or a second has passed; how many it found first.
pub fn kill_until_gone(mut find: impl FnMut() -> Vec<rustix::process::Pid>) -> usize {
    let first = find();
    let mut left = first.clone();
    for _ in 0..100 {
        if left.is_empty() {
            break;
        }
        for pid in &left {
            let _ = rustix::process::kill_process(*pid, rustix::process::Signal::KILL);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        left = find();
    }
    first.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_mounts_below_a_directory_deepest_first() {
        let info = "\
22 1 8:1 / / rw - ext4 /dev/sda1 rw
40 22 0:50 / /data/pods/run/ab rw - tmpfs tmpfs rw
41 40 0:51 / /data/pods/run/ab/stage1/apps/a\\040b rw - overlay overlay rw
42 22 0:52 / /data/pods/run/abc rw - tmpfs tmpfs rw
43 22 0:53 / /data/pods/run/ab-other/x rw - tmpfs tmpfs rw
";
        let points = mount_points_under(info, Path::new("/data/pods/run/ab"));
        assert_eq!(
            points,
            vec![
                PathBuf::from("/data/pods/run/ab/stage1/apps/a b"),
                PathBuf::from("/data/pods/run/ab"),
            ]
        );
        assert_eq!(unescape(r"a\134b\011c"), "a\\b\tc");
        assert_eq!(unescape(r"trailing\04"), r"trailing\04");
    }
}
