//! `bench start`'s rootless rows: a prepared pod started by an ordinary
//! user (made for the run, with subordinate ranges), beside root's, and
//! `podman run --rootfs` as the same user where podman runs rootless here.

use super::*;

/// The user the rows run as; removed again (with its processes) when
/// dropped, also on failure.
pub struct BenchUser {
    pub name: String,
    pub home: PathBuf,
}

impl BenchUser {
    /// Makes the user, with its home in `work` (the benchmark's tmpfs).
    pub fn new(work: &Path) -> Result<BenchUser> {
        let name = format!("skiff-bench-{}", std::process::id());
        let home = work.join("user");
        remove_user(&name);
        let status = Command::new("useradd")
            .args(["--no-create-home", "--user-group", "--shell", "/bin/sh"])
            .arg("--home-dir")
            .arg(&home)
            .arg(&name)
            .stdout(std::process::Stdio::null())
            .status()?;
        if !status.success() {
            bail!("useradd {name} failed");
        }
        let user = BenchUser { name, home };
        // useradd gives subordinate ranges (SUB_UID_COUNT) unless told not to.
        let subuid = std::fs::read_to_string("/etc/subuid").unwrap_or_default();
        if !subuid
            .lines()
            .any(|l| l.starts_with(&format!("{}:", user.name)))
        {
            bail!("useradd gave {} no subordinate ids", user.name);
        }
        std::fs::create_dir_all(&user.home)?;
        user.give(&user.home)?;
        Ok(user)
    }

    /// Hands `path` (recursively) to the user.
    pub fn give(&self, path: &Path) -> Result<()> {
        run_quiet(
            Command::new("chown")
                .arg("-R")
                .arg(format!("{0}:{0}", self.name))
                .arg(path),
        )
    }

    /// `program` as the user, with a login-like environment.
    pub fn command(&self, program: &Path) -> Command {
        let mut c = Command::new("setpriv");
        c.env_clear()
            .env("HOME", &self.home)
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("XDG_RUNTIME_DIR", self.home.join("run"))
            .current_dir(&self.home)
            .arg(format!("--reuid={}", self.name))
            .arg(format!("--regid={}", self.name))
            .arg("--init-groups")
            .arg("--")
            .arg(program);
        c
    }
}

impl Drop for BenchUser {
    fn drop(&mut self) {
        let uid = Command::new("id")
            .arg("-u")
            .arg(&self.name)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
        remove_user(&self.name);
        // podman's rootless lock, which it leaves behind.
        if let Some(uid) = uid.filter(|u| !u.is_empty()) {
            let _ = std::fs::remove_file(format!("/dev/shm/libpod_rootless_lock_{uid}"));
        }
    }
}

/// Kills what runs as `name` and deletes the user (and its subordinate
/// ranges, which userdel removes with it).
fn remove_user(name: &str) {
    let _ = Command::new("pkill")
        .args(["-KILL", "-u", name])
        .stderr(std::process::Stdio::null())
        .status();
    let _ = Command::new("userdel")
        .arg(name)
        .stderr(std::process::Stdio::null())
        .status();
}

/// The rootless rows' set-up: `skiff` (with `skiff-stage1` beside it) and
/// the image `aci` fetched as the user, `n` pods prepared with
/// `--net=none` (a user's pod has no host network yet), and a copy of
/// `rootfs` that is the user's, for podman.
pub struct Rootless {
    pub user: BenchUser,
    pub skiff: PathBuf,
    pub prepared: Vec<String>,
    pub rootfs: PathBuf,
    pub podman: bool,
}

pub fn set_up(work: &Path, skiff: &Path, aci: &Path, rootfs: &Path, n: usize) -> Result<Rootless> {
    let user = BenchUser::new(work)?;
    let bin = user.home.join("bin");
    std::fs::create_dir_all(&bin)?;
    for name in ["skiff", "skiff-full", "skiff-stage1"] {
        std::fs::copy(skiff.with_file_name(name), bin.join(name))?;
    }
    std::fs::copy(aci, user.home.join("true.aci"))?;
    run_quiet(
        Command::new("cp")
            .arg("-a")
            .arg(rootfs)
            .arg(user.home.join("rootfs")),
    )?;
    std::fs::create_dir_all(user.home.join("run"))?;
    user.give(&user.home)?;
    let skiff = bin.join("skiff");
    run_quiet(
        user.command(&skiff)
            .args(["--insecure-options=image", "fetch", "true.aci"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    )?;
    let prepared = prepare_pods(n, "the user's", || {
        let mut c = user.command(&skiff);
        c.args(["prepare", "--net=none", "--pull-policy=never"])
            .arg("example.com/true:1.0");
        c
    })?;
    let podman = installed("podman") && podman_runs(&user, &user.home.join("rootfs"));
    Ok(Rootless {
        rootfs: user.home.join("rootfs"),
        user,
        skiff,
        prepared,
        podman,
    })
}

/// `podman run --rootfs` as the user, rootless: runc (crun 1.8 refuses
/// hybrid cgroup hosts), no network (as the skiff row), its storage in the
/// user's home.
pub fn podman(user: &BenchUser, rootfs: &Path) -> Command {
    let mut c = user.command(Path::new("/usr/bin/podman"));
    c.arg("--root")
        .arg(user.home.join("podman/root"))
        .arg("--runroot")
        .arg(user.home.join("podman/run"))
        .args(["--runtime", "runc", "--cgroup-manager=cgroupfs"])
        .args(["run", "--rm", "--network=none"])
        .args(PODMAN_ULIMITS)
        .arg("--rootfs")
        .arg(rootfs)
        .arg("/bin/true")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    c
}

fn podman_runs(user: &BenchUser, rootfs: &Path) -> bool {
    podman(user, rootfs).status().is_ok_and(|s| s.success())
}

impl Rootless {
    /// Collects the user's pods and unmounts podman's storage.
    pub fn clean_up(&self) -> Result<()> {
        let _ = self
            .user
            .command(&self.skiff)
            .args(["gc", "--grace-period=0s"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        unmount_under(&self.user.home.join("podman"))
    }
}
