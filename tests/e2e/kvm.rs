//! The kvm flavor: pods in QEMU virtual machines with the host's
//! distribution kernel (TCG where KVM cannot run it, as on hosts whose
//! /dev/kvm is kvm_pvm). The same pod manifest runs under `ns` and `kvm`
//! and must see the same environment, user and directory, with its own
//! kernel under kvm.

use std::path::Path;

use crate::common::*;

/// The app: reports what it sees, uses its volumes, exits 7.
const SCRIPT: &str = r#"#!/bin/sh
echo "kernel=$(uname -r)"
echo "id=$(id)"
echo "pwd=$(pwd)"
env | sort
cat /data/from-host
echo "written by $(id -u)" > /data/from-pod-$FLAVOR && echo wrote
echo x > /ro/nope 2>/dev/null || echo ro-refused
exit 7
"#;

/// The network check: its addresses, the gateway answers.
const NET_SCRIPT: &str = r#"#!/bin/sh
ip -4 -o addr show
gw=$(ip route | awk '/default/ {print $3}')
ping -c 1 -W 10 "$gw" >/dev/null && echo "gateway $gw answers"
"#;

fn layout(dir: &Path) {
    busybox_layout(dir);
    let bin = dir.join("rootfs/bin");
    std::fs::write(bin.join("netcheck"), NET_SCRIPT).unwrap();
    for tool in [
        "uname", "id", "pwd", "env", "sort", "cat", "echo", "sleep", "ip", "awk", "ping", "httpd",
    ] {
        std::os::unix::fs::symlink("busybox", bin.join(tool)).unwrap();
    }
    std::fs::write(bin.join("report"), SCRIPT).unwrap();
    std::fs::write(bin.join("idle"), "#!/bin/sh\necho idle\nexec sleep 600\n").unwrap();
    let status = std::process::Command::new("chmod")
        .arg("755")
        .arg(bin.join("report"))
        .arg(bin.join("idle"))
        .arg(bin.join("netcheck"))
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::create_dir_all(dir.join("rootfs/work")).unwrap();
    std::fs::create_dir_all(dir.join("rootfs/www")).unwrap();
    std::fs::write(dir.join("rootfs/www/index.html"), "served from the VM\n").unwrap();
}

fn build(root: &Path, dir: &Path) {
    let aci = root.join("kvm.aci");
    let built = output(
        skiff()
            .args([
                "image",
                "build",
                "--name=example.com/kvm-test",
                "--label=version=1",
                "--exec=/bin/report",
                "--port=http:tcp:80",
            ])
            .arg(dir)
            .arg(&aci),
    );
    assert!(built.status.success(), "{}", stderr(&built));
    let fetched = output(
        skiff_in(root)
            .args(["--insecure-options=image", "fetch"])
            .arg(&aci),
    );
    assert!(fetched.status.success(), "{}", stderr(&fetched));
}

/// A data dir with the test image fetched.
fn fixture() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    layout(&tmp.path().join("layout"));
    build(tmp.path(), &tmp.path().join("layout"));
    tmp
}

/// Starts the idle app in a detached kvm pod; returns its uuid.
fn run_detached(root: &Path, app_options: &[&str]) -> String {
    let out = output(
        skiff_in(root)
            .args(["run", "--detach", "--stage1=kvm", "example.com/kvm-test:1"])
            .arg("--exec=/bin/idle")
            .args(app_options),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).trim().to_string()
}

fn run_flavor(root: &Path, flavor: &str, extra: &[&str]) -> std::process::Output {
    let data = root.join("vol");
    let ro = root.join("ro");
    output(
        skiff_in(root)
            .args(["run", "--net=none"])
            .arg(format!("--stage1={flavor}"))
            .arg(format!("--volume=data,kind=host,source={}", data.display()))
            .arg(format!(
                "--volume=ro,kind=host,source={},readOnly=true",
                ro.display()
            ))
            .args(extra)
            // Pod-level environment (rkt's); the image's own value wins.
            .args(["--set-env=POD_LEVEL=yes", "--set-env=FLAVOR=overridden"])
            .args([
                "example.com/kvm-test:1",
                "--user=65534",
                "--working-dir=/work",
                "--mount=volume=data,target=/data",
                "--mount=volume=ro,target=/ro",
            ])
            .arg(format!("--set-env=FLAVOR={flavor}")),
    )
}

/// How many QEMU processes run the pod `uuid` (its paths are in their
/// command lines).
fn vms_of(uuid: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .map(|c| {
                    let c = String::from_utf8_lossy(&c);
                    c.starts_with("/usr/bin/qemu-system") && c.contains(uuid)
                })
                .unwrap_or(false)
        })
        .count()
}

fn host_release() -> String {
    rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn kvm_pods_run_in_their_own_kernel_and_see_what_ns_pods_see() {
    let tmp = fixture();
    let root = tmp.path();
    let _guard = PodsGuard { root };
    std::fs::create_dir_all(root.join("vol")).unwrap();
    std::fs::create_dir_all(root.join("ro")).unwrap();
    std::fs::set_permissions(
        root.join("vol"),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    std::fs::write(root.join("vol/from-host"), "hello from the host\n").unwrap();

    let kvm = run_flavor(root, "kvm", &[]);
    let ns = run_flavor(root, "ns", &[]);
    eprintln!("kvm stderr: {}", stderr(&kvm));
    assert_eq!(kvm.status.code(), Some(7), "{}", stderr(&kvm));
    assert_eq!(ns.status.code(), Some(7), "{}", stderr(&ns));
    let (kvm_out, ns_out) = (stdout(&kvm), stdout(&ns));
    // Its own kernel: not the host's.
    let kernel = kvm_out
        .lines()
        .find_map(|l| l.strip_prefix("kernel="))
        .unwrap_or_default();
    assert!(!kernel.is_empty(), "{kvm_out}");
    assert_ne!(kernel, host_release(), "{kvm_out}");
    assert!(
        Path::new("/boot")
            .join(format!("vmlinuz-{kernel}"))
            .exists(),
        "guest kernel {kernel} is not one of /boot's"
    );
    // Everything else as under ns (the flavor's name aside).
    let same = |out: &str| -> Vec<String> {
        out.lines()
            .filter(|l| !l.starts_with("kernel="))
            .map(|l| {
                l.replace("FLAVOR=kvm", "FLAVOR=")
                    .replace("FLAVOR=ns", "FLAVOR=")
            })
            .collect()
    };
    assert_eq!(same(&kvm_out), same(&ns_out));
    assert!(kvm_out.contains("id=uid=65534"), "{kvm_out}");
    assert!(kvm_out.contains("pwd=/work"), "{kvm_out}");
    assert!(kvm_out.contains("hello from the host"), "{kvm_out}");
    assert!(kvm_out.contains("AC_APP_NAME=kvm-test"), "{kvm_out}");
    assert!(kvm_out.contains("POD_LEVEL=yes"), "{kvm_out}");
    assert!(kvm_out.contains("FLAVOR=kvm"), "{kvm_out}");
    assert!(kvm_out.contains("ro-refused"), "{kvm_out}");
    assert!(!kvm_out.contains('\r'), "the console adds carriage returns");
    // The writable volume got the guest's file, owned by the app's user.
    let written = root.join("vol/from-pod-kvm");
    assert_eq!(
        std::fs::read_to_string(&written).unwrap(),
        "written by 65534\n"
    );
    let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&written).unwrap());
    assert_eq!(owner, 65534);
    assert_eq!(std::fs::read_dir(root.join("ro")).unwrap().count(), 0);

    // KVM itself: used where a probe guest boots under it; otherwise an
    // explicit accel=kvm is refused with the reason (and the case skipped).
    let forced = run_flavor(root, "kvm", &["--stage1-opt=accel=kvm"]);
    if forced.status.code() == Some(7) {
        assert!(stdout(&forced).contains("id=uid=65534"));
    } else {
        let err = stderr(&forced);
        assert_eq!(forced.status.code(), Some(125), "{err}");
        assert!(
            err.contains("accel=kvm: KVM cannot run the guest on this host:"),
            "{err}"
        );
        eprintln!("KVM case skipped: {}", err.trim());
    }
}

#[test]
fn skiff_stop_powers_a_kvm_pod_off_and_bad_options_are_refused() {
    let tmp = fixture();
    let root = tmp.path();
    let _guard = PodsGuard { root };

    let uuid = run_detached(root, &[]);
    let pod_dir = root.join("data/pods/run").join(&uuid);
    let qemu_of_pod = || vms_of(&uuid);
    // Wait for the app to be up in the guest (the pod's apps/<app> exit
    // file would appear if it had ended).
    eventually("the pod's VM runs", || (qemu_of_pod() > 0).then_some(()));
    assert_eq!(qemu_of_pod(), 1, "not one VM for pod {uuid}");
    assert!(pod_dir.join("kvm/accel").exists());
    // The app runs once it has said so on the console (the pod's log).
    let log = pod_dir.join("stage1.log");
    eventually("the app says it runs", || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.contains("idle").then_some(())
    });
    let stopped = output(skiff_in(root).args(["stop", &uuid]));
    assert!(stopped.status.success(), "{}", stderr(&stopped));
    assert_eq!(qemu_of_pod(), 0);
    let status = stdout(&output(skiff_in(root).args(["status", &uuid])));
    assert!(status.contains("state=exited"), "{status}");
    assert!(status.contains("app-kvm-test=143"), "{status}");
    // Which accelerator ran the VM, and why.
    assert!(status.contains("flavor=kvm"), "{status}");
    assert!(
        status.contains("accel=tcg: ") || status.contains("accel=kvm: "),
        "{status}"
    );

    // --force kills the supervisor, and QEMU with it; gc removes the
    // pod's network (namespace, CNI rules, lease).
    let forced = run_detached(root, &[]);
    let netns = Path::new("/run/skiff/netns").join(&forced);
    assert!(netns.exists(), "no network namespace for {forced}");
    let killed = output(skiff_in(root).args(["stop", "--force", &forced]));
    assert!(killed.status.success(), "{}", stderr(&killed));
    // QEMU ends with its supervisor (it is killed with it).
    eventually("QEMU ends with its killed supervisor", || {
        (vms_of(&forced) == 0).then_some(())
    });
    let gc = output(skiff_in(root).args(["gc", "--grace-period=0s"]));
    assert!(gc.status.success(), "{}", stderr(&gc));
    assert!(!netns.exists(), "gc left {}", netns.display());

    for (flag, message) in [
        (
            "--stage1-opt=accel=hvf",
            "--stage1-opt=accel=hvf: use auto, kvm or tcg",
        ),
        (
            "--stage1-opt=memory=1G",
            "the kvm flavor takes accel= and kernel=",
        ),
        (
            "--stage1-opt=kernel=/nonexistent",
            "--stage1-opt=kernel=/nonexistent: no such file",
        ),
    ] {
        let out =
            output(skiff_in(root).args(["run", "--stage1=kvm", flag, "example.com/kvm-test:1"]));
        assert_refused(&out, message);
    }
    let out = output(skiff_in(root).args([
        "run",
        "--stage1=kvm",
        "--net=host",
        "example.com/kvm-test:1",
    ]));
    assert_refused(&out, "a VM cannot share the host's network");
    let out = output(skiff_in(root).args([
        "run",
        "--stage1=ns",
        "--stage1-opt=accel=tcg",
        "example.com/kvm-test:1",
    ]));
    assert_refused(&out, "the ns flavor takes no options");
}

#[test]
fn kvm_pods_are_on_the_pod_network_through_their_tap() {
    let tmp = fixture();
    let root = tmp.path();
    let _guard = PodsGuard { root };
    let out = output(skiff_in(root).args([
        "run",
        "--stage1=kvm",
        "example.com/kvm-test:1",
        "--exec=/bin/netcheck",
    ]));
    let text = stdout(&out);
    assert!(out.status.success(), "{}\n{text}", stderr(&out));
    // The default network's address on the guest's own card, which has
    // the CNI interface's name, and the gateway (the host) answers.
    let eth0 = text
        .lines()
        .find(|l| l.contains(" eth0 ") && l.contains("inet "))
        .unwrap_or_else(|| panic!("no eth0 address: {text}"));
    assert!(
        ["inet 172.16.", "inet 10.88.", "inet 192.168.228."]
            .iter()
            .any(|p| eth0.contains(p)),
        "{eth0}"
    );
    assert!(text.contains("answers"), "{text}");

    // A forwarded port reaches a server in the guest.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = output(
        skiff_in(root)
            .args(["run", "--detach", "--stage1=kvm"])
            .arg(format!("--port=http:{port}"))
            .args(["example.com/kvm-test:1", "--exec=/bin/httpd", "--"])
            .args(["-f", "-p", "80", "-h", "/www"]),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let uuid = stdout(&out).trim().to_string();
    let url = format!("http://127.0.0.1:{port}/");
    let served = eventually("httpd in the VM answers", || {
        let got = output(std::process::Command::new("curl").args(["-s", "-m", "5", &url]));
        Some(stdout(&got)).filter(|text| text.contains("served from the VM"))
    });
    assert!(served.contains("served from the VM"), "{url}: {served:?}");
    let stopped = output(skiff_in(root).args(["stop", &uuid]));
    assert!(stopped.status.success(), "{}", stderr(&stopped));
}

#[test]
fn kvm_interactive_pods_use_the_console_as_their_terminal() {
    let tmp = fixture();
    let root = tmp.path();
    let _guard = PodsGuard { root };
    // A terminal for skiff; the input is typed once the guest's app says
    // it reads (a shell's `read`, not its line editor, which queries the
    // terminal in ways a test's terminal does not answer), however long
    // the boot takes.
    let mut term = Terminal::start(&format!(
        "SKIFF_DIR={}/data {} run --stage1=kvm --net=none --interactive example.com/kvm-test:1 --exec=/bin/sh -- -c 'echo ready-for-input:; read line; eval \"$line\"; exit 3' 2>/dev/null",
        root.display(),
        env!("CARGO_BIN_EXE_skiff"),
    ));
    term.wait_for("ready-for-input:");
    term.send("echo answer-$((6*7)); [ -t 0 ] && echo stdin-is-a-tty\n");
    let (text, code) = term.finish();
    assert!(text.contains("answer-42"), "{text}");
    assert!(text.contains("stdin-is-a-tty"), "{text}");
    // One line ending per line: the guest adds no carriage return of its own.
    assert!(!text.contains("\r\r\n"), "{text:?}");
    assert_eq!(code, Some(3), "{text}");
}

#[test]
fn skiff_enter_runs_commands_in_a_kvm_pods_app() {
    let tmp = fixture();
    let root = tmp.path();
    let _guard = PodsGuard { root };
    let uuid = run_detached(root, &["--user=65534"]);
    // The guest answers once it is up.
    let entered = eventually("skiff enter reaches the guest", || {
        let out = output(skiff_in(root).args([
            "enter",
            &uuid,
            "--",
            "/bin/sh",
            "-c",
            "echo kernel=$(uname -r) app=$AC_APP_NAME id=$(id -u); echo to-stderr >&2; exit 4",
        ]));
        Some(out).filter(|out| out.status.code() == Some(4))
    });
    let text = stdout(&entered);
    assert_eq!(entered.status.code(), Some(4), "{text}{}", stderr(&entered));
    assert!(!text.contains(&host_release()), "{text}");
    assert!(text.contains("app=kvm-test id=65534"), "{text}");
    assert!(
        stderr(&entered).contains("to-stderr"),
        "{}",
        stderr(&entered)
    );
    let missing = output(skiff_in(root).args(["enter", &uuid, "--", "/bin/nonexistent"]));
    assert_eq!(missing.status.code(), Some(127));
    assert!(
        stderr(&missing).contains("/bin/nonexistent"),
        "{}",
        stderr(&missing)
    );
    let stopped = output(skiff_in(root).args(["stop", &uuid]));
    assert!(stopped.status.success(), "{}", stderr(&stopped));
}
