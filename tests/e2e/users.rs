//! Ordinary users for rootless tests: made with `useradd`, with a home of
//! their own under /tmp and copies of skiff's binaries there (the checkout
//! may be where they cannot reach it), removed with everything they ran
//! and made when dropped, even after a failure.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{output, stderr};

pub struct TestUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    home: tempfile::TempDir,
}

/// The processes of uid `uid` (from /proc: no procps needed): pid and
/// command line.
pub fn processes_of(uid: u32) -> Vec<(i32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
        let real = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u32>().ok());
        if real == Some(uid) {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            found.push((pid, String::from_utf8_lossy(&cmdline).replace('\0', " ")));
        }
    }
    found
}

fn remove_user(name: &str) {
    // Nothing of the user may outlive it.
    let uid = output(Command::new("id").arg("-u").arg(name));
    if let Ok(uid) = String::from_utf8_lossy(&uid.stdout).trim().parse::<u32>() {
        for (pid, _) in processes_of(uid) {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    }
    let _ = output(Command::new("userdel").arg(name));
}

impl TestUser {
    /// A new user `skiff-e2e-<tag>` (a leftover of that name from an
    /// interrupted run is removed first).
    pub fn new(tag: &str) -> TestUser {
        let name = format!("skiff-e2e-{tag}");
        remove_user(&name);
        let home = tempfile::Builder::new()
            .prefix("skiff-e2e-home-")
            .tempdir()
            .unwrap();
        let out = output(
            Command::new("useradd")
                .args(["--no-create-home", "--user-group", "--shell", "/bin/sh"])
                .arg("--home-dir")
                .arg(home.path())
                .arg(&name),
        );
        assert!(out.status.success(), "useradd: {}", stderr(&out));
        let id = |flag: &str| -> u32 {
            let out = output(Command::new("id").arg(flag).arg(&name));
            String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
        };
        let (uid, gid) = (id("-u"), id("-g"));
        std::os::unix::fs::chown(home.path(), Some(uid), Some(gid)).unwrap();
        std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let user = TestUser {
            name,
            uid,
            gid,
            home,
        };
        let bin = user.home().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::fs::copy(env!("CARGO_BIN_EXE_skiff"), bin.join("skiff")).unwrap();
        std::fs::copy(env!("CARGO_BIN_EXE_skiff-full"), bin.join("skiff-full")).unwrap();
        std::fs::copy(env!("CARGO_BIN_EXE_skiff-stage1"), bin.join("skiff-stage1")).unwrap();
        user.give(&bin);
        user
    }

    /// The user's first subordinate uid range (start, count): useradd
    /// gives one (login.defs' SUB_UID_COUNT); added if it did not.
    pub fn subordinate_uids(&self) -> (u32, u32) {
        if let Some(range) = self.range("/etc/subuid") {
            return range;
        }
        let start = 1_000_000_000 + (self.uid % 1000) * 65536;
        let ids = format!("{start}-{}", start + 65535);
        let out = output(
            Command::new("usermod")
                .args(["--add-subuids", &ids, "--add-subgids", &ids])
                .arg(&self.name),
        );
        assert!(out.status.success(), "usermod: {}", stderr(&out));
        self.range("/etc/subuid").unwrap()
    }

    /// Takes the user's subordinate ranges away.
    pub fn without_subordinate_ids(&self) {
        for (file, flag) in [
            ("/etc/subuid", "--del-subuids"),
            ("/etc/subgid", "--del-subgids"),
        ] {
            while let Some((start, count)) = self.range(file) {
                let ids = format!("{start}-{}", start + count - 1);
                let out = output(Command::new("usermod").args([flag, &ids]).arg(&self.name));
                assert!(out.status.success(), "usermod: {}", stderr(&out));
            }
        }
    }

    fn range(&self, file: &str) -> Option<(u32, u32)> {
        std::fs::read_to_string(file).ok()?.lines().find_map(|l| {
            let mut f = l.split(':');
            (f.next()? == self.name).then_some(())?;
            Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
        })
    }

    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// Makes `path` (and what is under it) the user's.
    pub fn give(&self, path: &Path) {
        let out = output(
            Command::new("chown")
                .arg("-R")
                .arg(format!("{}:{}", self.uid, self.gid))
                .arg(path),
        );
        assert!(out.status.success(), "chown: {}", stderr(&out));
    }

    /// Copies `file` into the user's home, readable by the user only.
    pub fn copy_in(&self, file: &Path) -> PathBuf {
        let to = self.home().join(file.file_name().unwrap());
        std::fs::copy(file, &to).unwrap();
        self.give(&to);
        to
    }

    /// `program` run as the user, with a login-like environment: HOME,
    /// USER, PATH and nothing else (no XDG variables: the defaults apply).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("setpriv");
        cmd.env_clear()
            .env("HOME", self.home())
            .env("USER", &self.name)
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .current_dir(self.home())
            .arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .arg("--init-groups")
            .arg("--")
            .arg(program);
        cmd
    }

    /// The user's copy of `skiff`.
    pub fn skiff(&self) -> Command {
        self.command(self.home().join("bin/skiff"))
    }

    /// Paths under the home that are not the user's (there must be none
    /// outside its subordinate range).
    /// Files outside the home in the places a process leaves files behind
    /// (/tmp, /var/tmp, /dev/shm, /run) that belong to the user or to its
    /// subordinate range: there must be none.
    pub fn files_outside_home(&self) -> Vec<PathBuf> {
        let (start, count) = self.range("/etc/subuid").unwrap_or((u32::MAX - 1, 0));
        let out = output(
            Command::new("find")
                .args(["/tmp", "/var/tmp", "/dev/shm", "/run", "-xdev"])
                .arg("-path")
                .arg(self.home())
                .args(["-prune", "-o", "(", "-uid"])
                .arg(self.uid.to_string())
                .args(["-o", "(", "-uid"])
                .arg(format!("+{}", start.saturating_sub(1)))
                .arg("-uid")
                .arg(format!("-{}", start.saturating_add(count)))
                .args([")", ")", "-print"]),
        );
        crate::common::stdout(&out)
            .lines()
            .map(PathBuf::from)
            .collect()
    }

    pub fn foreign_files(&self) -> Vec<PathBuf> {
        let mut foreign = Vec::new();
        let mut stack = vec![self.home().to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let meta = entry.path().symlink_metadata().unwrap();
                if meta.uid() != self.uid {
                    foreign.push(entry.path());
                }
                if meta.is_dir() {
                    stack.push(entry.path());
                }
            }
        }
        foreign
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        remove_user(&self.name);
    }
}
