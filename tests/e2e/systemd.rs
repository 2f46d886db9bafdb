//! systemd integration with systemd's own tools: readiness over
//! `NOTIFY_SOCKET`, socket activation through `systemd-socket-activate`,
//! and units from `skiff generate systemd` that `systemd-analyze verify`
//! accepts.

use std::io::{Read, Write};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;

/// A process killed when the test ends, passed or not (unless waited for).
struct Killed(Option<std::process::Child>);

impl Killed {
    fn wait(mut self) -> std::process::Output {
        let child = self.0.take().unwrap();
        child.wait_with_output().unwrap()
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A test's own notification socket receives `READY=1` with the
/// supervisor's pid as `MAINPID` once the app runs, then `STOPPING=1`;
/// the variable does not reach the app.
#[test]
fn a_notify_socket_gets_ready_with_the_supervisors_pid_then_stopping() {
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let aci = tmp.path().join("busybox.aci");
    busybox_aci(tmp.path(), "example.com/busybox", &aci);
    let socket_path = tmp.path().join("notify");
    let listener = UnixDatagram::bind(&socket_path).unwrap();
    listener
        .set_read_timeout(Some(Duration::from_secs(300)))
        .unwrap();
    let child = skiff_in(tmp.path())
        .args(["run", "--insecure-options=image", "--net=none"])
        .arg(&aci)
        .args(["--exec=/bin/sh", "--", "-c", "env; sleep 1"])
        .env("NOTIFY_SOCKET", &socket_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut buf = [0u8; 512];
    let n = uninterrupted(|| listener.recv(&mut buf)).unwrap();
    let ready = String::from_utf8_lossy(&buf[..n]).into_owned();
    // `skiff run` becomes the supervisor (exec): the pid systemd started.
    assert_eq!(ready, format!("READY=1\nMAINPID={pid}\n"));
    let n = uninterrupted(|| listener.recv(&mut buf)).unwrap();
    assert_eq!(&buf[..n], b"STOPPING=1\n");
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).contains("NOTIFY_SOCKET"), "{}", stdout(&out));
}

/// A free TCP port on the loopback.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An image with busybox, whose /usr (and /lib through it) comes from a
/// host volume: the host's python3 serves HTTP on the activated socket.
fn python_image(dir: &Path) -> std::path::PathBuf {
    let layout = dir.join("py-layout");
    busybox_layout(&layout);
    for (link, to) in [("lib", "usr/lib"), ("lib64", "usr/lib64")] {
        std::os::unix::fs::symlink(to, layout.join("rootfs").join(link)).unwrap();
    }
    std::fs::create_dir_all(layout.join("rootfs/usr")).unwrap();
    std::fs::create_dir_all(layout.join("rootfs/app")).unwrap();
    let aci = dir.join("py.aci");
    let built = output(
        skiff()
            .args(["image", "build", "--overwrite"])
            .arg(&layout)
            .arg(&aci),
    );
    assert!(built.status.success(), "{}", stderr(&built));
    aci
}

/// An HTTP server on fd 3 (socket activation): answers one request with
/// what it was given.
const SERVE: &str = r#"
import socket, http.server, os
s = socket.socket(fileno=3)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = "pid=%d listen_pid=%s listen_fds=%s names=%s listening=%s" % (
            os.getpid(), os.environ.get("LISTEN_PID"), os.environ.get("LISTEN_FDS"),
            os.environ.get("LISTEN_FDNAMES"), s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
        extra = []
        for f in sorted(int(x) for x in os.listdir("/proc/self/fd")):
            if f in (0, 1, 2, 3, self.connection.fileno()):
                continue
            try:
                extra.append("%d:%s" % (f, os.readlink("/proc/self/fd/%d" % f)))
            except OSError:
                pass  # the directory listdir had open
        body += " extra=" + (",".join(extra) or "none")
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body.encode())
srv = http.server.HTTPServer(("", 0), H, bind_and_activate=False)
srv.socket = s
srv.handle_request()
"#;

/// `systemd-socket-activate` listens, and hands its listening socket to
/// `skiff run` on the first connection; the pod's httpd (in a network
/// namespace of its own) answers on it, with LISTEN_PID its own pid and
/// nothing but stdio and the socket open.
#[test]
fn systemd_socket_activate_hands_a_listening_socket_to_the_pods_httpd() {
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let aci = python_image(tmp.path());
    let app = tmp.path().join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(app.join("serve.py"), SERVE).unwrap();
    let port = free_port();
    let mut run = skiff_in(tmp.path());
    run.args(["run", "--insecure-options=image", "--net=none"])
        .arg("--volume=usr,kind=host,source=/usr,readOnly=true")
        .arg(format!(
            "--volume=app,kind=host,source={},readOnly=true",
            app.display()
        ))
        .arg(&aci)
        .args([
            "--mount=volume=usr,target=/usr",
            "--mount=volume=app,target=/app",
            "--exec=/usr/bin/python3",
            "--",
            "/app/serve.py",
        ]);
    let mut activate = Command::new("systemd-socket-activate");
    activate
        .args(["-l", &format!("127.0.0.1:{port}"), "--fdname=web"])
        .arg(run.get_program())
        .args(run.get_args())
        .envs(run.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let activator = Killed(Some(activate.spawn().unwrap()));
    let mut stream = eventually("systemd-socket-activate to listen", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let out = activator.wait();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
    let body = answer.rsplit("\r\n\r\n").next().unwrap();
    let field = |name: &str| {
        body.split(' ')
            .find_map(|f| f.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} in {body}"))
            .to_string()
    };
    assert_eq!(field("listen_pid"), field("pid"), "{body}");
    assert_eq!(field("listen_fds"), "1");
    assert_eq!(field("names"), "web");
    assert_eq!(field("listening"), "1", "fd 3 is a listening socket");
    // Beyond stdio, the socket and the connection it accepted: nothing of
    // skiff's (report pipes, cgroup files, the pod lock) reached the app.
    assert_eq!(field("extra"), "none", "{body}");
}

/// `skiff generate systemd` for an image (with a socket unit):
/// `systemd-analyze verify` accepts the units, the image is pinned by its
/// full ID, and the service is Type=notify. A pod, and a socket address
/// that would inject lines into the unit, are refused.
#[test]
fn generated_units_pass_systemd_analyze_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let aci = tmp.path().join("busybox.aci");
    busybox_aci(tmp.path(), "example.com/busybox", &aci);
    let fetched = output(
        skiff_in(tmp.path())
            .args(["fetch", "--insecure-options=image"])
            .arg(&aci),
    );
    assert!(fetched.status.success(), "{}", stderr(&fetched));
    let id = stdout(&fetched).trim().to_string();
    assert!(id.starts_with("sha512-") && id.len() == 135, "{id}");

    let units = tmp.path().join("units");
    std::fs::create_dir_all(&units).unwrap();
    let out = output(
        skiff_in(tmp.path())
            .current_dir(&units)
            .args(["generate", "systemd", "--files", "--socket=127.0.0.1:8080"])
            .arg("example.com/busybox"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let service = std::fs::read_to_string(units.join("skiff-busybox.service")).unwrap();
    assert!(service.contains("Type=notify\n"), "{service}");
    assert!(service.contains(&format!(" run {id}\n")), "{service}");
    assert!(units.join("skiff-busybox.socket").exists());

    // A pod: refused (its manifest's values cannot safely become flags).
    let out = output(
        skiff_in(tmp.path())
            .args(["prepare", "--insecure-options=image", "--net=none"])
            .arg(&id),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let uuid = stdout(&out).trim().to_string();
    let out = output(skiff_in(tmp.path()).args(["generate", "systemd", &uuid]));
    assert_refused(&out, "generate from a pod");
    assert!(stderr(&out).contains("not implemented"), "{}", stderr(&out));
    let out = output(skiff_in(tmp.path()).args([
        "generate",
        "systemd",
        "--socket=8080\nExecStartPre=/bin/evil",
        "example.com/busybox",
    ]));
    assert_refused(&out, "a socket address with a newline");
    assert_units_verify(&units, &["skiff-busybox.service", "skiff-busybox.socket"]);
}

/// What LISTEN_FDS names must be systemd's sockets, open, below the pod's
/// lock: a directory (whose `..` leads out of any pod), a file, or a
/// closed fd is refused before anything is made.
#[test]
fn listen_fds_that_are_not_open_sockets_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let aci = tmp.path().join("busybox.aci");
    busybox_aci(tmp.path(), "example.com/busybox", &aci);
    let secret = tmp.path().join("secret");
    std::fs::write(&secret, "host file").unwrap();
    let mut run = skiff_in(tmp.path());
    run.args(["run", "--insecure-options=image", "--net=none"])
        .arg(&aci)
        .args([
            "--exec=/bin/sh",
            "--",
            "-c",
            "cat /proc/self/fd/3/etc/hostname",
        ]);
    let line = shell_line(&run);
    for (fds, says) in [
        ("exec 3</", "fd 3 is a Directory"),
        (
            &format!("exec 3<>'{}'", secret.display()) as &str,
            "fd 3 is a RegularFile",
        ),
        (":", "fd 3 is not open"),
    ] {
        let out = output(
            Command::new("bash")
                .arg("-c")
                .arg(format!("{fds}; exec env LISTEN_FDS=1 LISTEN_PID=$$ {line}")),
        );
        assert_refused(&out, says);
        assert!(stderr(&out).contains(says), "{says}: {}", stderr(&out));
        let list = output(skiff_in(tmp.path()).args(["list", "--format=json"]));
        assert_eq!(stdout(&list).trim(), "[]", "{says}: a pod was made");
    }
}
