//! `skiff-runtime`, the OCI runtime: its lifecycle on real bundles, and the
//! attacks a hostile bundle or container would try.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::{assert_refused, eventually, output, stderr, stdout};

fn runtime(root: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_skiff-runtime"));
    cmd.arg("--root").arg(root);
    cmd
}

const APPLETS: [&str; 14] = [
    "sh", "sleep", "echo", "cat", "ls", "chmod", "unshare", "true", "id", "hostname", "mkdir",
    "readlink", "touch", "grep",
];

/// A bundle with a busybox rootfs and `skiff-runtime spec`'s config,
/// changed by `edit`.
struct Bundle {
    dir: tempfile::TempDir,
}

impl Bundle {
    fn new(root: &Path, args: &[&str], edit: impl FnOnce(&mut serde_json::Value)) -> Bundle {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("rootfs/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::copy(
            std::fs::canonicalize("/bin/busybox").unwrap(),
            bin.join("busybox"),
        )
        .unwrap();
        for applet in APPLETS {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
        }
        for d in ["proc", "sys", "dev", "etc", "tmp"] {
            std::fs::create_dir_all(dir.path().join("rootfs").join(d)).unwrap();
        }
        let out = output(runtime(root).args(["spec", "--bundle"]).arg(dir.path()));
        assert!(out.status.success(), "spec: {}", stderr(&out));
        let path = dir.path().join("config.json");
        let mut config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        config["process"]["terminal"] = false.into();
        config["process"]["args"] = serde_json::json!(args);
        edit(&mut config);
        std::fs::write(&path, config.to_string()).unwrap();
        Bundle { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// A state root that deletes whatever containers a failed test left.
struct Root {
    dir: tempfile::TempDir,
}

impl Root {
    fn new() -> Root {
        Root {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let out = output(runtime(self.path()).args(["list", "-q"]));
        for id in stdout(&out).lines() {
            let _ = output(runtime(self.path()).args(["delete", "--force", id]));
        }
    }
}

fn state(root: &Path, id: &str) -> serde_json::Value {
    let out = output(runtime(root).args(["state", id]));
    assert!(out.status.success(), "state: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `create` with the container's stdout in `log` (its stdio is the
/// caller's, as with runc: a pipe would stay open until the container
/// ends).
fn create(root: &Path, bundle: &Bundle, id: &str, log: &Path) {
    let errors = bundle.path().join("create.err");
    let status = runtime(root)
        .args(["create", "--bundle"])
        .arg(bundle.path())
        .arg(id)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(log).unwrap())
        .stderr(std::fs::File::create(&errors).unwrap())
        .status()
        .unwrap();
    assert!(
        status.success(),
        "create: {}",
        std::fs::read_to_string(&errors).unwrap_or_default()
    );
}

fn cgroup_exists(name: &str) -> bool {
    [
        "/sys/fs/cgroup/memory",
        "/sys/fs/cgroup/pids",
        "/sys/fs/cgroup",
    ]
    .iter()
    .any(|h| Path::new(h).join("skiff-runtime").join(name).exists())
}

#[test]
fn a_container_lives_through_create_start_exec_pause_kill_and_delete() {
    let root = Root::new();
    let bundle = Bundle::new(
        root.path(),
        &["sh", "-c", "echo started; exec sleep 1000"],
        |_| {},
    );
    let log = bundle.path().join("out");
    create(root.path(), &bundle, "life", &log);
    let s = state(root.path(), "life");
    assert_eq!(s["status"], "created", "{s}");
    let pid = s["pid"].as_i64().unwrap();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    assert!(cgroup_exists("life"));
    // Created, not started: the process has not run yet.
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "");

    let out = output(runtime(root.path()).args(["start", "life"]));
    assert!(out.status.success(), "start: {}", stderr(&out));
    eventually("the container's output", || {
        (std::fs::read_to_string(&log).unwrap() == "started\n").then_some(())
    });
    assert_eq!(state(root.path(), "life")["status"], "running");

    // exec: a new process in the container's namespaces and root, with the
    // container's hostname; its exit status comes back.
    let out = output(runtime(root.path()).args(["exec", "life", "hostname"]));
    assert!(out.status.success(), "exec: {}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "skiff");
    let out = output(runtime(root.path()).args(["exec", "life", "sh", "-c", "exit 3"]));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let out = output(runtime(root.path()).args(["ps", "--format", "json", "life"]));
    let pids: Vec<i64> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(pids.contains(&pid), "{pids:?}");

    let out = output(runtime(root.path()).args(["pause", "life"]));
    assert!(out.status.success(), "pause: {}", stderr(&out));
    assert_eq!(state(root.path(), "life")["status"], "paused");
    let out = output(runtime(root.path()).args(["resume", "life"]));
    assert!(out.status.success(), "resume: {}", stderr(&out));
    assert_eq!(state(root.path(), "life")["status"], "running");

    // A running container is not deleted without --force.
    let out = output(runtime(root.path()).args(["delete", "life"]));
    assert_refused(&out, "delete of a running container");
    let out = output(runtime(root.path()).args(["kill", "life", "KILL"]));
    assert!(out.status.success(), "kill: {}", stderr(&out));
    eventually("the container to stop", || {
        (state(root.path(), "life")["status"] == "stopped").then_some(())
    });
    let out = output(runtime(root.path()).args(["kill", "life", "TERM"]));
    assert_refused(&out, "kill of a stopped container");
    let out = output(runtime(root.path()).args(["delete", "life"]));
    assert!(out.status.success(), "delete: {}", stderr(&out));
    let out = output(runtime(root.path()).args(["state", "life"]));
    assert_refused(&out, "state of a deleted container");
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    assert!(!cgroup_exists("life"));
}

#[test]
fn run_returns_the_exit_status_and_leaves_nothing() {
    let root = Root::new();
    let bundle = Bundle::new(root.path(), &["sh", "-c", "exit 7"], |_| {});
    let out = output(
        runtime(root.path())
            .args(["run", "--bundle"])
            .arg(bundle.path())
            .arg("seven"),
    );
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert!(!root.path().join("seven").exists());
    assert!(!cgroup_exists("seven"));
}

/// Bad input is refused with one line, before a state directory or a
/// cgroup exists.
#[test]
fn hostile_configs_and_ids_are_refused_before_anything_is_made() {
    let root = Root::new();
    type Edit = Box<dyn FnOnce(&mut serde_json::Value)>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "rlimit",
            Box::new(|c| {
                c["process"]["rlimits"] =
                    serde_json::json!([{"type": "RLIMIT_NOPE", "soft": 1, "hard": 1}])
            }),
            "RLIMIT_NOPE",
        ),
        (
            "cgpath",
            Box::new(|c| c["linux"]["cgroupsPath"] = "/a/../../../etc".into()),
            "'..'",
        ),
        (
            "sysctl",
            Box::new(|c| c["linux"]["sysctl"] = serde_json::json!({"../../x": "1"})),
            "sysctl",
        ),
        (
            "notify",
            Box::new(|c| {
                c["linux"]["seccomp"] = serde_json::json!({"defaultAction": "SCMP_ACT_NOTIFY"})
            }),
            "NOTIFY",
        ),
        (
            "relhook",
            Box::new(|c| c["hooks"] = serde_json::json!({"prestart": [{"path": "rel/hook"}]})),
            "not absolute",
        ),
    ];
    for (id, edit, why) in cases {
        let bundle = Bundle::new(root.path(), &["true"], edit);
        let out = output(
            runtime(root.path())
                .args(["create", "--bundle"])
                .arg(bundle.path())
                .arg(id),
        );
        assert_refused(&out, id);
        assert!(stderr(&out).contains(why), "{id}: {}", stderr(&out));
        assert_eq!(stderr(&out).lines().count(), 1, "{id}: {}", stderr(&out));
        assert!(!root.path().join(id).exists(), "{id}: state left behind");
        assert!(!cgroup_exists(id), "{id}: cgroup left behind");
    }
    let bundle = Bundle::new(root.path(), &["true"], |_| {});
    for id in ["../escape", "a/b", ".."] {
        let out = output(
            runtime(root.path())
                .args(["create", "--bundle"])
                .arg(bundle.path())
                .arg(id),
        );
        assert_refused(&out, id);
        assert!(
            stderr(&out).contains("bad container ID"),
            "{}",
            stderr(&out)
        );
    }
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
}

/// A mount whose destination is a symlink out of the rootfs lands inside
/// the rootfs, never on the host.
#[test]
fn mount_destinations_cannot_leave_the_rootfs() {
    let root = Root::new();
    let outside = tempfile::tempdir().unwrap();
    let target: PathBuf = outside.path().join("victim");
    std::fs::create_dir(&target).unwrap();
    let t = target.display().to_string();
    let bundle = Bundle::new(
        root.path(),
        &["sh", "-c", "touch /escape/written; ls /escape"],
        |c| {
            c["mounts"].as_array_mut().unwrap().push(
                serde_json::json!({"destination": "/escape", "type": "tmpfs", "source": "tmpfs"}),
            );
        },
    );
    std::os::unix::fs::symlink(
        format!("../../../../../../../../..{t}"),
        bundle.path().join("rootfs/escape"),
    )
    .unwrap();
    let out = output(
        runtime(root.path())
            .args(["run", "--bundle"])
            .arg(bundle.path())
            .arg("escape"),
    );
    assert!(out.status.success(), "run: {}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "written");
    assert_eq!(
        std::fs::read_dir(&target).unwrap().count(),
        0,
        "the host's directory was written"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&t), "a mount landed on the host: {t}");
}

/// What the caller had open does not reach the container (CVE-2024-21626:
/// a leaked directory fd is a way out of the rootfs).
#[test]
fn the_callers_open_files_do_not_reach_the_container() {
    let root = Root::new();
    let bundle = Bundle::new(root.path(), &["ls", "/proc/self/fd"], |_| {});
    let opened = std::fs::File::open("/").unwrap();
    let leaked = rustix::io::fcntl_dupfd_cloexec(&opened, 50).unwrap();
    let fd = leaked.as_raw_fd();
    rustix::io::fcntl_setfd(&leaked, rustix::io::FdFlags::empty()).unwrap();
    let out = output(
        runtime(root.path())
            .args(["run", "--bundle"])
            .arg(bundle.path())
            .arg("fds"),
    );
    drop(leaked);
    assert!(out.status.success(), "run: {}", stderr(&out));
    let text = stdout(&out);
    let fds: Vec<&str> = text.split_whitespace().collect();
    assert!(
        !fds.contains(&fd.to_string().as_str()),
        "fd {fd} leaked: {fds:?}"
    );
    assert!(fds.len() <= 4, "unexpected fds: {fds:?}");
}

/// The OCI seccomp profile is enforced, argument conditions included: a
/// denied call fails with its errno, `clone` with namespace flags is
/// refused while plain `clone` (fork) works.
#[test]
fn seccomp_profiles_are_enforced_with_their_argument_conditions() {
    let root = Root::new();
    let profile = serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["chmod", "fchmodat", "fchmodat2"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
            {"names": ["unshare"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
            {"names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
             "args": [{"index": 0, "value": 0x10000000u64, "valueTwo": 0x10000000u64, "op": "SCMP_CMP_MASKED_EQ"}]}
        ]
    });
    let bundle = Bundle::new(
        root.path(),
        &[
            "sh",
            "-c",
            "chmod 600 /tmp 2>&1; unshare -U true 2>&1; (echo forked); echo done",
        ],
        |c| {
            c["linux"]["seccomp"] = profile;
            c["process"]["capabilities"]["bounding"] =
                serde_json::json!(["CAP_SYS_ADMIN", "CAP_FOWNER"]);
            c["process"]["capabilities"]["effective"] =
                serde_json::json!(["CAP_SYS_ADMIN", "CAP_FOWNER"]);
            c["process"]["capabilities"]["permitted"] =
                serde_json::json!(["CAP_SYS_ADMIN", "CAP_FOWNER"]);
        },
    );
    let out = output(
        runtime(root.path())
            .args(["run", "--bundle"])
            .arg(bundle.path())
            .arg("seccomp"),
    );
    let text = stdout(&out);
    assert!(out.status.success(), "run: {} {text}", stderr(&out));
    assert!(
        text.contains("chmod") && text.contains("Operation not permitted"),
        "{text}"
    );
    assert!(text.contains("unshare"), "{text}");
    assert!(text.contains("forked") && text.contains("done"), "{text}");
    assert_eq!(text.matches("Operation not permitted").count(), 2, "{text}");
}

/// `exec` enters a pid namespace where container processes run: it runs
/// from a sealed copy of the binary, so /proc/<pid>/exe of its processes
/// is not the host's skiff-runtime (CVE-2019-5736).
#[test]
fn exec_runs_from_a_sealed_copy_of_the_binary() {
    let root = Root::new();
    let bundle = Bundle::new(root.path(), &["sleep", "1000"], |_| {});
    create(root.path(), &bundle, "sealed", &bundle.path().join("out"));
    let out = output(runtime(root.path()).args(["start", "sealed"]));
    assert!(out.status.success(), "start: {}", stderr(&out));
    let mut exec = runtime(root.path())
        .args(["exec", "sealed", "sleep", "1000"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = exec.id();
    let exe = eventually("exec's process to settle", || {
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
        exe.to_string_lossy().starts_with("/memfd:").then_some(exe)
    });
    // The copy cannot be written.
    let written = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/{pid}/exe"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"x"));
    assert!(written.is_err(), "the sealed copy {exe:?} is writable");
    let _ = exec.kill();
    let _ = exec.wait();
    let out = output(runtime(root.path()).args(["delete", "--force", "sealed"]));
    assert!(out.status.success(), "delete: {}", stderr(&out));
}

fn run_in(root: &Path, bundle: &Bundle, id: &str) -> std::process::Output {
    output(
        runtime(root)
            .args(["run", "--bundle"])
            .arg(bundle.path())
            .arg(id)
            .stdin(Stdio::null()),
    )
}

/// A volume whose destination is a symlink into /proc (here
/// `/data -> /proc/self/fd`) would cover the runtime's own fds, which it
/// uses after pivot_root; such a destination is refused.
#[test]
fn mounts_into_proc_through_symlinks_are_refused() {
    let root = Root::new();
    let volume = tempfile::tempdir().unwrap();
    let v = volume.path().display().to_string();
    let bundle = Bundle::new(root.path(), &["true"], |c| {
        c["mounts"].as_array_mut().unwrap().push(serde_json::json!({
            "destination": "/data", "type": "bind", "source": v, "options": ["rbind"]
        }));
    });
    std::os::unix::fs::symlink("/proc/self/fd", bundle.path().join("rootfs/data")).unwrap();
    let out = run_in(root.path(), &bundle, "procfd");
    assert_refused(&out, "a volume into /proc");
    assert!(stderr(&out).contains("inside /proc"), "{}", stderr(&out));
    assert!(!root.path().join("procfd").exists());
}

/// An x86-64 ELF that calls i386 `mkdir("/tmp/pwn32", 0755)` through
/// `int 0x80`, then exits 0.
fn int80_mkdir_elf() -> Vec<u8> {
    const BASE: u64 = 0x40_0000;
    let code_off = 64 + 56;
    let mut code: Vec<u8> = Vec::new();
    let path_addr = (BASE as usize + code_off + 26) as u32;
    code.extend([0xb8, 39, 0, 0, 0]); // mov eax, 39 (i386 mkdir)
    code.push(0xbb); // mov ebx, path
    code.extend(path_addr.to_le_bytes());
    code.extend([0xb9, 0xed, 0x01, 0, 0]); // mov ecx, 0755
    code.extend([0xcd, 0x80]); // int 0x80
    code.extend([0xb8, 60, 0, 0, 0]); // mov eax, 60 (exit)
    code.extend([0x31, 0xff]); // xor edi, edi
    code.extend([0x0f, 0x05]); // syscall
    assert_eq!(code.len(), 26);
    code.extend(b"/tmp/pwn32\0");
    let total = (code_off + code.len()) as u64;
    let mut elf = Vec::new();
    elf.extend(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
    elf.extend(2u16.to_le_bytes()); // ET_EXEC
    elf.extend(62u16.to_le_bytes()); // x86-64
    elf.extend(1u32.to_le_bytes());
    elf.extend((BASE + code_off as u64).to_le_bytes()); // entry
    elf.extend(64u64.to_le_bytes()); // phoff
    elf.extend(0u64.to_le_bytes()); // shoff
    elf.extend(0u32.to_le_bytes());
    elf.extend(64u16.to_le_bytes());
    elf.extend(56u16.to_le_bytes());
    elf.extend(1u16.to_le_bytes());
    elf.extend([0, 0, 0, 0, 0, 0]);
    elf.extend(1u32.to_le_bytes()); // PT_LOAD
    elf.extend(5u32.to_le_bytes()); // R+X
    elf.extend(0u64.to_le_bytes());
    elf.extend(BASE.to_le_bytes());
    elf.extend(BASE.to_le_bytes());
    elf.extend(total.to_le_bytes());
    elf.extend(total.to_le_bytes());
    elf.extend(0x1000u64.to_le_bytes());
    elf.extend(code);
    elf
}

/// A default-allow profile that denies mkdir cannot be bypassed through
/// the i386 ABI (`int 0x80`): calls of other ABIs kill the process.
#[test]
fn seccomp_cannot_be_bypassed_through_the_i386_abi() {
    let root = Root::new();
    let profile = serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]
    });
    let bundle = Bundle::new(
        root.path(),
        &["sh", "-c", "/int80; ls -d /tmp/pwn32 2>&1; echo end"],
        |c| c["linux"]["seccomp"] = profile,
    );
    let elf = bundle.path().join("rootfs/int80");
    std::fs::write(&elf, int80_mkdir_elf()).unwrap();
    std::fs::set_permissions(&elf, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = run_in(root.path(), &bundle, "int80");
    let text = stdout(&out);
    assert!(text.contains("end"), "{text} {}", stderr(&out));
    assert!(text.contains("No such file"), "the i386 mkdir ran: {text}");
    assert!(!bundle.path().join("rootfs/tmp/pwn32").exists());
}

/// `exec` into a created container is refused: its init still runs the
/// runtime's binary in the container's pid namespace (CVE-2019-5736).
#[test]
fn exec_into_a_created_container_is_refused() {
    let root = Root::new();
    let bundle = Bundle::new(root.path(), &["true"], |_| {});
    create(root.path(), &bundle, "early", &bundle.path().join("out"));
    let out = output(runtime(root.path()).args(["exec", "early", "true"]));
    assert_refused(&out, "exec into a created container");
    assert!(stderr(&out).contains("start it first"), "{}", stderr(&out));
    let out = output(runtime(root.path()).args(["delete", "early"]));
    assert!(out.status.success(), "delete: {}", stderr(&out));
}

/// Sysctls outside the container's namespaces, a cgroup that already holds
/// processes and a `cwd` through a magic link are refused; /dev bound from
/// a host directory gets no device nodes; state is root's only.
#[test]
fn host_sysctls_shared_cgroups_magic_cwd_and_bound_dev_are_refused() {
    let root = Root::new();
    let bundle = Bundle::new(root.path(), &["true"], |c| {
        c["linux"]["sysctl"] = serde_json::json!({"kernel.core_pattern": "|/evil"});
    });
    let out = run_in(root.path(), &bundle, "sysctl");
    assert_refused(&out, "kernel.core_pattern");
    assert!(stderr(&out).contains("not namespaced"), "{}", stderr(&out));

    // A cgroup with a process in it.
    let shared = Path::new("/sys/fs/cgroup/pids/skiff-e2e-shared");
    std::fs::create_dir_all(shared).unwrap();
    let mut victim = Command::new("sleep").arg("1000").spawn().unwrap();
    std::fs::write(shared.join("cgroup.procs"), victim.id().to_string()).unwrap();
    let bundle = Bundle::new(root.path(), &["true"], |c| {
        c["linux"]["cgroupsPath"] = "/skiff-e2e-shared".into();
    });
    let out = run_in(root.path(), &bundle, "shared");
    let alive = victim.try_wait().unwrap().is_none();
    let _ = victim.kill();
    let _ = victim.wait();
    let _ = std::fs::remove_dir(shared);
    assert_refused(&out, "a cgroup holding processes");
    assert!(
        stderr(&out).contains("already holds processes"),
        "{}",
        stderr(&out)
    );
    assert!(alive, "the runtime killed a process it does not own");

    // cwd through /proc/self/fd of an fd the caller leaked.
    let opened = std::fs::File::open("/").unwrap();
    let leaked = rustix::io::fcntl_dupfd_cloexec(&opened, 60).unwrap();
    rustix::io::fcntl_setfd(&leaked, rustix::io::FdFlags::empty()).unwrap();
    let bundle = Bundle::new(root.path(), &["ls", "."], |c| {
        c["process"]["cwd"] = "/proc/self/fd/60".into();
    });
    let out = run_in(root.path(), &bundle, "cwd");
    drop(leaked);
    assert!(
        !out.status.success(),
        "cwd through a magic link worked: {}",
        stdout(&out)
    );
    assert!(!stdout(&out).contains("etc"), "{}", stdout(&out));

    // /dev as a bind of a host directory: nothing is made in it.
    let hostdev = tempfile::tempdir().unwrap();
    std::fs::write(hostdev.path().join("sda"), "host file").unwrap();
    let h = hostdev.path().display().to_string();
    let bundle = Bundle::new(root.path(), &["true"], |c| {
        let mounts = c["mounts"].as_array_mut().unwrap();
        mounts.retain(|m| !m["destination"].as_str().unwrap().starts_with("/dev"));
        mounts.insert(
            1,
            serde_json::json!({"destination": "/dev", "type": "bind", "source": h}),
        );
        c["linux"]["devices"] = serde_json::json!([
            {"path": "/dev/sda", "type": "b", "major": 8, "minor": 0, "fileMode": 438}
        ]);
    });
    let _ = run_in(root.path(), &bundle, "bounddev");
    let names: Vec<_> = std::fs::read_dir(hostdev.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("sda")]);
    assert_eq!(
        std::fs::read_to_string(hostdev.path().join("sda")).unwrap(),
        "host file"
    );

    // The state is root's only.
    use std::os::unix::fs::PermissionsExt;
    let bundle = Bundle::new(root.path(), &["true"], |_| {});
    create(root.path(), &bundle, "perm", &bundle.path().join("out"));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&root.path().join("perm")), 0o700);
    assert_eq!(mode(&root.path().join("perm/state.json")), 0o600);
    let out = output(runtime(root.path()).args(["delete", "perm"]));
    assert!(out.status.success(), "delete: {}", stderr(&out));
}

/// A container without a pid namespace of its own: what its init left
/// running is killed by `delete`, with the cgroup.
#[test]
fn delete_kills_what_a_stopped_container_left_running() {
    let root = Root::new();
    let bundle = Bundle::new(
        root.path(),
        &["sh", "-c", "sleep 987654 >/dev/null 2>&1 & echo $!"],
        |c| {
            c["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .retain(|n| n["type"] != "pid");
        },
    );
    let out = run_in(root.path(), &bundle, "orphans");
    assert!(out.status.success(), "run: {}", stderr(&out));
    let pid: i32 = stdout(&out).trim().parse().unwrap();
    let gone = !Path::new(&format!("/proc/{pid}")).exists()
        || std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
            .map_or(true, |c| !c.contains("987654"));
    if !gone {
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(pid).unwrap(),
            rustix::process::Signal::KILL,
        )
        .ok();
    }
    assert!(gone, "the container's background process outlived delete");
    assert!(!cgroup_exists("orphans"));
}

/// Second review: a bind reaching /dev through a symlink gets no device
/// nodes; a sysctl of a "joined" namespace that is the host's is refused;
/// a pid namespace whose init has not started cannot be joined; the host's
/// own mount namespace cannot be joined.
#[test]
fn dev_through_symlinks_host_namespaces_and_unstarted_pid_namespaces_are_refused() {
    let root = Root::new();
    // /data -> /dev and a host directory bound on /data.
    let hostdir = tempfile::tempdir().unwrap();
    std::fs::write(hostdir.path().join("null"), "host file").unwrap();
    let h = hostdir.path().display().to_string();
    let bundle = Bundle::new(root.path(), &["true"], |c| {
        let mounts = c["mounts"].as_array_mut().unwrap();
        mounts.push(serde_json::json!({"destination": "/data", "type": "bind", "source": h, "options": ["rbind"]}));
        c["linux"]["devices"] = serde_json::json!([
            {"path": "/dev/sda", "type": "b", "major": 8, "minor": 0, "fileMode": 438}
        ]);
    });
    std::fs::remove_dir_all(bundle.path().join("rootfs/dev")).ok();
    std::os::unix::fs::symlink("/dev", bundle.path().join("rootfs/data")).unwrap();
    let out = run_in(root.path(), &bundle, "devlink");
    assert!(
        !out.status.success(),
        "devices were made through /data -> /dev"
    );
    assert_eq!(
        std::fs::read_to_string(hostdir.path().join("null")).unwrap(),
        "host file"
    );
    assert!(!hostdir.path().join("sda").exists());

    // The host's network namespace "joined" by path, with a net sysctl.
    let bundle = Bundle::new(root.path(), &["true"], |c| {
        let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
        ns.retain(|n| n["type"] != "network");
        ns.push(serde_json::json!({"type": "network", "path": "/proc/self/ns/net"}));
        c["linux"]["sysctl"] = serde_json::json!({"net.core.somaxconn": "4097"});
    });
    let before = std::fs::read_to_string("/proc/sys/net/core/somaxconn").unwrap();
    let out = run_in(root.path(), &bundle, "hostnet");
    assert_refused(&out, "a sysctl of the host's network namespace");
    assert!(stderr(&out).contains("is the host's"), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/core/somaxconn").unwrap(),
        before
    );

    // Joining the pid namespace of a created, not started container.
    let first = Bundle::new(root.path(), &["sleep", "1000"], |_| {});
    create(root.path(), &first, "first", &first.path().join("out"));
    let pid = state(root.path(), "first")["pid"].as_i64().unwrap();
    let joiner = Bundle::new(root.path(), &["true"], |c| {
        let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
        ns.retain(|n| n["type"] != "pid");
        ns.push(serde_json::json!({"type": "pid", "path": format!("/proc/{pid}/ns/pid")}));
    });
    let out = run_in(root.path(), &joiner, "joiner");
    assert_refused(&out, "joining an unstarted container's pid namespace");
    assert!(stderr(&out).contains("start it first"), "{}", stderr(&out));
    let out = output(runtime(root.path()).args(["delete", "first"]));
    assert!(out.status.success(), "delete: {}", stderr(&out));

    // Joining the host's own mount namespace (pivot_root there would
    // re-root the host's processes) is refused.
    let bundle = Bundle::new(root.path(), &["true"], |c| {
        let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
        ns.retain(|n| n["type"] != "mount");
        ns.push(serde_json::json!({"type": "mount", "path": "/proc/self/ns/mnt"}));
    });
    let out = run_in(root.path(), &bundle, "hostmnt");
    assert_refused(&out, "joining the host's mount namespace");
    assert!(stderr(&out).contains("is the host's"), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_link("/proc/self/root").unwrap(),
        PathBuf::from("/")
    );
}

/// The capability lines of a /proc/<pid>/status text, as masks.
fn capability_masks(status: &str) -> Vec<(String, u64)> {
    status
        .lines()
        .filter_map(|l| {
            let (key, value) = l.split_once(':')?;
            let key = key.strip_prefix("Cap")?;
            Some((key.to_string(), u64::from_str_radix(value.trim(), 16).ok()?))
        })
        .collect()
}

/// What this host can grant of `wanted` (bits): its bounding set's part.
fn grantable(wanted: u64) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let bounding = capability_masks(&status)
        .into_iter()
        .find(|(k, _)| k == "Bnd")
        .map(|(_, v)| v)
        .unwrap();
    wanted & bounding
}

const CAP_KILL: u64 = 1 << 5;
const CAP_SYS_RESOURCE: u64 = 1 << 24;

/// Capabilities a config asks for but that cannot be granted — names this
/// runtime does not know or spells differently from capabilities(7), and
/// (on hosts that withhold one, as this machine kind does CAP_SYS_RESOURCE)
/// ones outside the host's bounding set — are not granted, with a warning,
/// and the container runs (runtime-spec: MUST warn, SHOULD NOT fail). The
/// process, an ordinary uid with ambient capabilities, must hold exactly
/// what it asked for that the host has, in all five sets: never more.
#[test]
fn capabilities_that_cannot_be_granted_are_dropped_with_a_warning() {
    let asked = [
        "CAP_TEST",
        "CAP_KILL",
        "CAP_SYS_RESOURCE",
        "CAP_NOT_A_CAP",
        "sys_admin",
        "CAP_CAP_SYS_ADMIN",
    ];
    let root = Root::new();
    let bundle = Bundle::new(root.path(), &["grep", "^Cap", "/proc/self/status"], |c| {
        c["process"]["user"] = serde_json::json!({"uid": 1000, "gid": 1000});
        for set in [
            "bounding",
            "effective",
            "permitted",
            "inheritable",
            "ambient",
        ] {
            c["process"]["capabilities"][set] = serde_json::json!(asked);
        }
    });
    let out = run_in(root.path(), &bundle, "ungrantable");
    assert!(out.status.success(), "run: {}", stderr(&out));
    let expected = CAP_KILL | grantable(CAP_SYS_RESOURCE);
    let masks = capability_masks(&stdout(&out));
    assert_eq!(masks.len(), 5, "{}", stdout(&out));
    for (set, mask) in masks {
        assert_eq!(mask, expected, "Cap{set}:\n{}", stdout(&out));
    }
    let warnings = stderr(&out);
    for name in [
        "CAP_TEST",
        "CAP_NOT_A_CAP",
        "sys_admin",
        "CAP_CAP_SYS_ADMIN",
    ] {
        assert!(warnings.contains(name), "{name}: {warnings}");
    }
    assert_eq!(
        warnings.contains("CAP_SYS_RESOURCE"),
        grantable(CAP_SYS_RESOURCE) == 0,
        "{warnings}"
    );
}

/// The capabilities `runc spec` and `crun spec` write: three in ambient,
/// permitted and effective, none inheritable. The kernel raises an ambient
/// capability only if it is also permitted and inheritable, so those are
/// not granted (with a warning) and the container runs with the rest, as
/// under runc and crun.
#[test]
fn a_runc_spec_config_runs_without_the_ambient_capabilities_it_cannot_have() {
    const CAP_NET_BIND_SERVICE: u64 = 1 << 10;
    const CAP_AUDIT_WRITE: u64 = 1 << 29;
    let defaults = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
    let root = Root::new();
    let bundle = Bundle::new(root.path(), &["grep", "^Cap", "/proc/self/status"], |c| {
        let caps = &mut c["process"]["capabilities"];
        *caps = serde_json::json!({});
        for set in ["bounding", "effective", "permitted", "ambient"] {
            caps[set] = serde_json::json!(defaults);
        }
    });
    let out = run_in(root.path(), &bundle, "runc-spec");
    assert!(out.status.success(), "run: {}", stderr(&out));
    let masks: std::collections::BTreeMap<String, u64> =
        capability_masks(&stdout(&out)).into_iter().collect();
    // What this host can grant of the three (a host may withhold one).
    let three = grantable(CAP_AUDIT_WRITE | CAP_KILL | CAP_NET_BIND_SERVICE);
    for set in ["Bnd", "Eff", "Prm"] {
        assert_eq!(masks.get(set), Some(&three), "Cap{set}:\n{}", stdout(&out));
    }
    assert_eq!(masks.get("Amb"), Some(&0), "{}", stdout(&out));
    assert_eq!(masks.get("Inh"), Some(&0), "{}", stdout(&out));
    // Each named, as not raisable or not in the host's bounding set.
    let warnings = stderr(&out);
    assert!(
        warnings.contains("ambient") == (three != 0)
            && defaults.iter().all(|name| warnings.contains(name)),
        "{warnings}"
    );
}

/// A config whose container runs hooks in its namespaces has the runtime
/// re-execute itself from a sealed copy, which reads the config again: what
/// the config is warned about is said once all the same.
#[test]
fn config_warnings_are_said_once_when_the_runtime_reexecutes_itself() {
    let root = Root::new();
    let bundle = Bundle::new(root.path(), &["true"], |c| {
        c["process"]["capabilities"]["bounding"] = serde_json::json!(["CAP_KILL", "CAP_TEST"]);
        c["hooks"] = serde_json::json!({"startContainer": [{"path": "/bin/busybox", "args": ["busybox", "true"]}]});
    });
    let out = run_in(root.path(), &bundle, "warned-once");
    assert!(out.status.success(), "run: {}", stderr(&out));
    let warnings = stderr(&out);
    assert_eq!(warnings.matches("CAP_TEST").count(), 1, "{warnings}");
}

/// A process without `capabilities` gets none (oci-spec's default would
/// give three, ambient included); `exec --cap` of names that cannot be
/// granted runs with the rest.
#[test]
fn no_capabilities_means_none_and_exec_drops_ungrantable_ones() {
    let root = Root::new();
    let bundle = Bundle::new(
        root.path(),
        &["sh", "-c", "grep ^Cap /proc/self/status; exec sleep 1000"],
        |c| {
            c["process"]["user"] = serde_json::json!({"uid": 1000, "gid": 1000});
            c["process"].as_object_mut().unwrap().remove("capabilities");
        },
    );
    let log = bundle.path().join("out");
    create(root.path(), &bundle, "nocaps", &log);
    let out = output(runtime(root.path()).args(["start", "nocaps"]));
    assert!(out.status.success(), "start: {}", stderr(&out));
    let masks = eventually("the container's output", || {
        let masks = capability_masks(&std::fs::read_to_string(&log).unwrap());
        (masks.len() == 5).then_some(masks)
    });
    for (set, mask) in masks {
        assert_eq!(mask, 0, "Cap{set} of a process without capabilities");
    }
    let out = output(runtime(root.path()).args([
        "exec",
        "--user",
        "0:0",
        "--cap",
        "CAP_TEST",
        "--cap",
        "CAP_KILL",
        "--cap",
        "CAP_SYS_RESOURCE",
        "nocaps",
        "grep",
        "^Cap",
        "/proc/self/status",
    ]));
    assert!(out.status.success(), "exec: {}", stderr(&out));
    assert!(stderr(&out).contains("CAP_TEST"), "{}", stderr(&out));
    let expected = CAP_KILL | grantable(CAP_SYS_RESOURCE);
    for (set, mask) in capability_masks(&stdout(&out)) {
        let want = if set == "Inh" || set == "Amb" {
            0
        } else {
            expected
        };
        assert_eq!(mask, want, "exec's Cap{set}:\n{}", stdout(&out));
    }
    let out = output(runtime(root.path()).args(["delete", "--force", "nocaps"]));
    assert!(out.status.success(), "delete: {}", stderr(&out));
}

/// The project's build links `skiff-runtime` statically, as `skiff-stage1`:
/// containerd's shim starts it several times for every container, and
/// dynamic loading cost ~0.17 ms of each (docs/performance.md).
#[test]
fn the_runtime_is_a_static_executable() {
    crate::common::assert_static_executable(env!("CARGO_BIN_EXE_skiff-runtime"));
}
