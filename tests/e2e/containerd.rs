//! containerd (Debian's, started here with its own root, state and socket)
//! running containers with `skiff-runtime` as the runc shim's binary:
//! `ctr run`, `ctr task exec`, `ctr task kill`, `ctr task delete`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::common::{eventually, output, stderr, stdout};
use crate::oci::sh;

pub fn skiff_runtime() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_skiff-runtime"))
}

/// An OCI image archive of busybox (`sh`, `echo`, `sleep`, …) made with
/// tar and umoci: tag `latest` runs `sh`, tag `pause` sleeps (a pod
/// sandbox's image). The layout is `dir/oci`.
pub fn busybox_archive(dir: &Path) -> PathBuf {
    let rootfs = dir.join("rootfs/bin");
    std::fs::create_dir_all(&rootfs).unwrap();
    std::fs::copy(
        std::fs::canonicalize("/bin/busybox").unwrap(),
        rootfs.join("busybox"),
    )
    .unwrap();
    for applet in [
        "sh", "echo", "cat", "sleep", "true", "hostname", "ls", "id", "readlink", "ip", "unshare",
    ] {
        std::os::unix::fs::symlink("busybox", rootfs.join(applet)).unwrap();
    }
    let d = dir.display();
    sh(&format!(
        "cd {d} && tar -C rootfs -cf layer.tar . && umoci init --layout oci && \
         umoci new --image oci:latest && umoci raw add-layer --image oci:latest layer.tar && \
         umoci config --image oci:latest --config.cmd /bin/sh && \
         umoci new --image oci:pause && umoci raw add-layer --image oci:pause layer.tar && \
         umoci config --image oci:pause --config.entrypoint /bin/sleep --config.cmd 2147483647 && \
         (cd oci && tar -cf ../busybox.tar .)"
    ));
    dir.join("busybox.tar")
}

/// A containerd of the test's own (root, state, socket; the CRI plugin
/// as `cri` configures it), stopped on drop with everything it ran.
pub struct Containerd {
    pub dir: tempfile::TempDir,
    child: Child,
    pub namespace: String,
}

impl Containerd {
    pub fn start(namespace: &str, extra_config: &str) -> Containerd {
        let dir = tempfile::Builder::new().prefix("ctrd").tempdir().unwrap();
        let d = dir.path();
        let cri = if extra_config.is_empty() {
            "disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n".to_string()
        } else {
            String::new()
        };
        let config = format!(
            "version = 2\nroot = \"{}/root\"\nstate = \"{}/state\"\n{cri}\
             [grpc]\n  address = \"{}/containerd.sock\"\n{extra_config}",
            d.display(),
            d.display(),
            d.display()
        );
        std::fs::write(d.join("config.toml"), config).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("containerd.log")).unwrap())
            .spawn()
            .expect("containerd (Debian's containerd package; cargo xtask deps installs it)");
        let ctrd = Containerd {
            dir,
            child,
            namespace: namespace.to_string(),
        };
        eventually("containerd to listen", || {
            ctrd.ctr(&["version"]).status.success().then_some(())
        });
        ctrd
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    pub fn ctr(&self, args: &[&str]) -> std::process::Output {
        output(
            Command::new("ctr")
                .arg("-a")
                .arg(self.socket())
                .args(["-n", &self.namespace])
                .args(args)
                .stdin(Stdio::null()),
        )
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Tasks and containers first (their shims and mounts go with them).
        let tasks = self.ctr(&["task", "ls", "-q"]);
        for id in stdout(&tasks).lines() {
            let _ = self.ctr(&["task", "kill", "-s", "KILL", id]);
            let _ = self.ctr(&["task", "delete", "-f", id]);
        }
        let containers = self.ctr(&["container", "ls", "-q"]);
        for id in stdout(&containers).lines() {
            let _ = self.ctr(&["container", "delete", id]);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Shims of this containerd (their command line names its socket
        // or namespace) and any mount left under its directories.
        let d = self.dir.path().display().to_string();
        let _ = Command::new("pkill")
            .args([
                "-KILL",
                "-f",
                &format!("containerd-shim-runc-v2 -namespace {} ", self.namespace),
            ])
            .status();
        let _ = Command::new("sh")
            .args([
                "-c",
                &format!(
                    "grep -o ' {d}[^ ]*' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l"
                ),
            ])
            .status();
        let _ = std::fs::remove_dir_all(Path::new("/run/containerd/runc").join(&self.namespace));
        // ctr puts containers in the cgroup /<namespace>/<id>: the parent.
        for entry in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = std::fs::remove_dir(entry.path().join(&self.namespace));
        }
    }
}

#[test]
fn containerd_runs_execs_kills_and_deletes_with_skiff_runtime() {
    let ctrd = Containerd::start("skiff-e2e-ctr", "");
    let image = busybox_archive(&ctrd.dir.path().join("image"));
    let out = ctrd.ctr(&[
        "images",
        "import",
        "--base-name",
        "docker.io/library/busybox",
        image.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "import: {}", stderr(&out));
    let runtime = skiff_runtime();
    let rt = runtime.to_str().unwrap();
    let img = "docker.io/library/busybox:latest";

    // ctr run: the output and the exit status come back.
    let out = ctrd.ctr(&[
        "run",
        "--rm",
        "--runc-binary",
        rt,
        img,
        "once",
        "sh",
        "-c",
        "echo hello from skiff; exit 3",
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "run: {} {}",
        stderr(&out),
        ctrd.log()
    );
    assert_eq!(stdout(&out), "hello from skiff\n");

    // A detached task: exec into it, kill it, delete it.
    let out = ctrd.ctr(&[
        "run",
        "-d",
        "--runc-binary",
        rt,
        img,
        "long",
        "sleep",
        "1000",
    ]);
    assert!(
        out.status.success(),
        "run -d: {} {}",
        stderr(&out),
        ctrd.log()
    );
    // The task's process was made by skiff-runtime: its state is there.
    let state_root = Path::new("/run/containerd/runc").join(&ctrd.namespace);
    assert!(
        state_root.join("long/state.json").is_file(),
        "no skiff-runtime state"
    );
    let out = ctrd.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        "long",
        "sh",
        "-c",
        "echo in exec; exit 4",
    ]);
    assert_eq!(out.status.code(), Some(4), "exec: {}", stderr(&out));
    assert_eq!(stdout(&out), "in exec\n");
    let out = ctrd.ctr(&["task", "ps", "long"]);
    assert!(out.status.success(), "ps: {}", stderr(&out));
    let out = ctrd.ctr(&["task", "kill", "-s", "KILL", "long"]);
    assert!(out.status.success(), "kill: {}", stderr(&out));
    eventually("the task to stop", || {
        let out = ctrd.ctr(&["task", "ls"]);
        stdout(&out)
            .lines()
            .any(|l| l.starts_with("long") && l.contains("STOPPED"))
            .then_some(())
    });
    let out = ctrd.ctr(&["task", "delete", "long"]);
    assert!(out.status.success(), "task delete: {}", stderr(&out));
    let out = ctrd.ctr(&["container", "delete", "long"]);
    assert!(out.status.success(), "container delete: {}", stderr(&out));
    // skiff-runtime's state and cgroups are gone.
    assert!(!state_root.join("long").exists());
    assert!(!state_root.join("once").exists());
    let cgroups = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !cgroups.contains(ctrd.dir.path().to_str().unwrap()),
        "a mount is left"
    );
}
