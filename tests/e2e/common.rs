//! Shared helpers: where the binaries are, running them, sample layouts.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `skiff` binary under test.
pub fn skiff() -> Command {
    Command::new(env!("CARGO_BIN_EXE_skiff"))
}

/// The reference tools built by `cargo xtask appc-tools`.
pub fn appc_tools() -> PathBuf {
    let dir = std::env::var_os("SKIFF_APPC_TOOLS").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/appc-tools"),
        PathBuf::from,
    );
    assert!(
        dir.join("bin/actool").is_file(),
        "the reference actool is missing at {}: run `cargo xtask appc-tools` \
         (`cargo xtask test` does it) or set SKIFF_APPC_TOOLS",
        dir.display()
    );
    dir
}

pub fn actool() -> Command {
    Command::new(appc_tools().join("bin/actool"))
}

/// Runs a command and returns its output; never fails the test by itself.
pub fn output(cmd: &mut Command) -> Output {
    cmd.output().expect("failed to start the command")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts a clean refusal: exit status 1, no panic, at least one message.
pub fn assert_refused(out: &Output, what: &str) {
    let err = stderr(out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what}: expected exit 1, got {:?}; stderr: {err}",
        out.status
    );
    assert!(!err.contains("panicked"), "{what}: skiff panicked: {err}");
    assert!(!err.trim().is_empty(), "{what}: no error message");
}

pub const BUSYBOX_MANIFEST: &str = r#"{
  "acKind": "ImageManifest", "acVersion": "0.8.11", "name": "example.com/busybox",
  "labels": [{"name": "version", "value": "1.0"}, {"name": "os", "value": "linux"}, {"name": "arch", "value": "amd64"}],
  "app": {"exec": ["/bin/sh", "-c", "echo hello"], "user": "0", "group": "0"}
}"#;

/// An image layout with busybox, a symlink, a hard link, a FIFO and a
/// setuid file in `dir`.
pub fn busybox_layout(dir: &Path) {
    let bin = dir.join("rootfs/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(
        std::fs::canonicalize("/bin/busybox").unwrap(),
        bin.join("busybox"),
    )
    .unwrap();
    std::os::unix::fs::symlink("busybox", bin.join("sh")).unwrap();
    std::fs::hard_link(bin.join("busybox"), bin.join("busybox-hardlink")).unwrap();
    std::fs::create_dir_all(dir.join("rootfs/etc")).unwrap();
    std::fs::write(dir.join("rootfs/etc/passwd"), "root:x:0:0::/:/bin/sh\n").unwrap();
    let fifo = dir.join("rootfs/etc/fifo");
    let status = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(status.success());
    std::fs::write(dir.join("manifest"), BUSYBOX_MANIFEST).unwrap();
}

/// A throw-away GnuPG home with one signing key; its agent is stopped
/// when dropped.
pub struct Gpg {
    pub home: tempfile::TempDir,
    pub fingerprint: String,
}

impl Gpg {
    /// `algo` is a gpg algorithm name (`ed25519`, `rsa4096`).
    pub fn new(uid: &str, algo: &str) -> Self {
        let mut gpg = Gpg::empty();
        gpg.fingerprint = gpg.key(uid, algo, "now", "never").to_lowercase();
        gpg
    }

    /// A home without keys.
    pub fn empty() -> Self {
        let home = tempfile::tempdir().unwrap();
        std::fs::set_permissions(
            home.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        Gpg {
            home,
            fingerprint: String::new(),
        }
    }

    /// A new signing key made at `created` (gpg's `20200101T000000`, or
    /// "now"), valid for `expires` ("never", "1d"): its fingerprint
    /// (upper-case hex, as gpg prints it).
    pub fn key(&self, uid: &str, algo: &str, created: &str, expires: &str) -> String {
        let mut args = vec![];
        if created != "now" {
            args.extend(["--faked-system-time", created]);
        }
        args.extend(["--quick-gen-key", uid, algo, "sign", expires]);
        self.run(&args);
        let listing = String::from_utf8(self.run(&["--with-colons", "--list-keys", uid])).unwrap();
        listing
            .lines()
            .find_map(|l| {
                l.strip_prefix("fpr:")
                    .map(|r| r.trim_matches(':').to_string())
            })
            .unwrap()
    }

    pub fn run(&self, args: &[&str]) -> Vec<u8> {
        let out = Command::new("gpg")
            .env("GNUPGHOME", self.home.path())
            .args([
                "--batch",
                "--quiet",
                "--yes",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "gpg {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    pub fn public_key(&self) -> Vec<u8> {
        self.run(&["--armor", "--export", &self.fingerprint])
    }

    /// An armored detached signature of `file`.
    pub fn sign(&self, file: &Path) -> Vec<u8> {
        self.run(&[
            "--local-user",
            &self.fingerprint,
            "--armor",
            "--detach-sign",
            "--output",
            "-",
            &file.to_string_lossy(),
        ])
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.home.path())
            .args(["--kill", "all"])
            .status();
    }
}

/// Builds an ACI of busybox named `name` (version 1.0, linux/amd64) at `out`.
pub fn busybox_aci(dir: &Path, name: &str, out: &Path) {
    let layout = dir.join(format!("layout-{}", name.replace('/', "_")));
    if !layout.exists() {
        busybox_layout(&layout);
    }
    std::fs::write(
        layout.join("manifest"),
        BUSYBOX_MANIFEST.replace("example.com/busybox", name),
    )
    .unwrap();
    build_image(&layout, out);
}

/// `skiff run --detach` of `args` (pod options, images and theirs),
/// unsigned images allowed and no network: the pod's UUID.
pub fn run_detached(root: &Path, args: &[&str]) -> String {
    let out = output(
        skiff_in(root)
            .args(["run", "--insecure-options=image", "--net=none", "--detach"])
            .args(args),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).trim().to_string()
}

/// An ACI of busybox named `name` whose app is `app` (the JSON of the
/// manifest's `app`), built in `dir` (its layout is reused by later calls).
pub fn image_with_app(dir: &Path, name: &str, app: &str) -> PathBuf {
    let file = name.replace('/', "_");
    let layout = dir.join(format!("layout-{file}"));
    if !layout.exists() {
        busybox_layout(&layout);
    }
    std::fs::write(
        layout.join("manifest"),
        format!(
            r#"{{"acKind": "ImageManifest", "acVersion": "0.8.11", "name": "{name}",
               "labels": [{{"name": "os", "value": "linux"}}, {{"name": "arch", "value": "amd64"}}],
               "app": {app}}}"#
        ),
    )
    .unwrap();
    let aci = dir.join(format!("{file}.aci"));
    build_image(&layout, &aci);
    aci
}

/// `skiff image build --overwrite LAYOUT OUT`, which must succeed; what
/// it said on stderr.
pub fn build_image(layout: &Path, out: &Path) -> String {
    let built = output(
        skiff()
            .args(["image", "build", "--overwrite"])
            .arg(layout)
            .arg(out),
    );
    assert!(built.status.success(), "{}", stderr(&built));
    stderr(&built)
}

/// `skiff` with its data and config under `root`.
pub fn skiff_in(root: &Path) -> Command {
    let mut cmd = skiff();
    cmd.env("SKIFF_DIR", root.join("data"))
        .arg("--local-config")
        .arg(root.join("etc"))
        .arg("--system-config")
        .arg(root.join("usr"));
    cmd
}

/// Runs the Python program `script` with `arg` (a test's directory, where
/// it makes its fixtures); it must succeed.
pub fn python(script: &str, arg: &Path) {
    let status = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(arg)
        .status()
        .expect("python3 runs");
    assert!(status.success(), "the Python fixture script failed");
}

/// `cmd` as a shell command line, with the environment it sets.
pub fn shell_line(cmd: &Command) -> String {
    let q = |s: &std::ffi::OsStr| format!("'{}'", s.to_string_lossy().replace('\'', "'\\''"));
    let mut line = String::new();
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            line.push_str(&format!("{}={} ", k.to_string_lossy(), q(v)));
        }
    }
    line.push_str(&q(cmd.get_program()));
    for a in cmd.get_args() {
        line.push(' ');
        line.push_str(&q(a));
    }
    line
}

/// The store's image list as JSON text (to compare before/after).
pub fn image_list(root: &Path) -> String {
    let out = output(skiff_in(root).args(["image", "list", "--format", "json"]));
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

/// Stops every pod under a test's data directory and collects them when
/// dropped, so a failing test leaves no pod, mount or cgroup behind.
pub struct PodsGuard<'a> {
    pub root: &'a Path,
}

impl Drop for PodsGuard<'_> {
    fn drop(&mut self) {
        let list = output(skiff_in(self.root).args(["list", "--format=json"]));
        if let Ok(serde_json::Value::Array(pods)) =
            serde_json::from_slice::<serde_json::Value>(&list.stdout)
        {
            for pod in pods.iter().filter(|p| p["state"] == "running") {
                if let Some(uuid) = pod["uuid"].as_str() {
                    let _ = output(skiff_in(self.root).args(["stop", "--force", uuid]));
                }
            }
        }
        let _ = output(skiff_in(self.root).args(["gc", "--grace-period=0s"]));
    }
}

/// What [`Terminal`] prints after its command, to know it saw it all.
const TERMINAL_DONE: &str = "[terminal-command-done]";

/// A command on a terminal of its own (`script` gives it a pty), driven as
/// a user would: wait until it shows something, then type. Nothing is sent
/// on a timer, so a slow machine changes only how long the test takes.
pub struct Terminal {
    child: std::process::Child,
    input: Option<std::process::ChildStdin>,
    seen: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Terminal {
    /// Starts the shell command line `cmd` on a new terminal.
    ///
    /// The terminal is held open after `cmd` until [`Terminal::finish`]
    /// has seen everything it printed: a pty's last output can be lost
    /// when the command exits before it is read (it happened under a
    /// loaded suite), so the line ends with a marker and a `read`.
    pub fn start(cmd: &str) -> Terminal {
        let held = format!("{cmd}\ns=$?; echo; echo {TERMINAL_DONE}; read _; exit $s");
        let mut child = Command::new("script")
            .args(["-qec", &held, "/dev/null"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("cannot start script (util-linux)");
        let input = child.stdin.take();
        let mut out = child.stdout.take().expect("piped stdout");
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = seen.clone();
        let reader = std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Terminal {
            child,
            input,
            seen,
            reader: Some(reader),
        }
    }

    /// What the terminal showed so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned()
    }

    /// Waits until the terminal shows `what`; fails the test if the
    /// command ends first (or shows nothing of it for ten minutes, a
    /// hang, not a slow machine).
    pub fn wait_for(&mut self, what: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
        while !self.text().contains(what) {
            let ended = self.child.try_wait().unwrap().is_some();
            if ended {
                // Its last output may still be on the way to the reader.
                if let Some(reader) = self.reader.take() {
                    reader.join().unwrap();
                }
                if self.text().contains(what) {
                    return;
                }
            }
            assert!(
                !ended && std::time::Instant::now() < deadline,
                "never showed {what:?}: {:?}",
                self.text()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Types `text`.
    pub fn send(&mut self, text: &str) {
        use std::io::Write;
        let input = self.input.as_mut().expect("input still open");
        input.write_all(text.as_bytes()).unwrap();
        input.flush().unwrap();
    }

    /// Waits for the command to end; returns what it showed and its status.
    pub fn finish(mut self) -> (String, Option<i32>) {
        self.wait_for(TERMINAL_DONE);
        // What the command may have pushed into the terminal's input can
        // end the `read` first: then nobody reads this line.
        if let Some(mut input) = self.input.take() {
            use std::io::Write;
            let _ = input.write_all(b"\n").and_then(|()| input.flush());
        }
        let status = self.child.wait().unwrap();
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        let mut shown = self.text();
        if let Some(at) = shown.find(TERMINAL_DONE) {
            shown.truncate(at);
        }
        (shown, status.code())
    }
}

/// The pid of a pod's init in the output of `skiff status`.
pub fn pid_in(status: &str) -> i32 {
    status
        .lines()
        .find_map(|l| l.strip_prefix("pid="))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {status}"))
}

/// The parent pid of process `pid` (None: gone).
pub fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')')
        .next()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// A process whose parent is `parent`, if there is one now.
pub fn child_of(parent: i32) -> Option<i32> {
    std::fs::read_dir("/proc").unwrap().flatten().find_map(|e| {
        let pid = e.file_name().to_string_lossy().parse::<i32>().ok()?;
        (parent_of(pid) == Some(parent)).then_some(pid)
    })
}

/// `wrapper` (a program that ends by running what follows its own
/// arguments) followed by `run`'s program and arguments, with `run`'s
/// environment.
pub fn through(mut wrapper: Command, run: &Command) -> Command {
    wrapper.arg(run.get_program()).args(run.get_args());
    for (name, value) in run.get_envs() {
        match value {
            Some(value) => wrapper.env(name, value),
            None => wrapper.env_remove(name),
        };
    }
    wrapper
}

/// The pid of the supervisor of running pod `uuid` (its init's parent).
pub fn supervisor_of(root: &Path, uuid: &str) -> String {
    let status = stdout(&output(skiff_in(root).args(["status", uuid])));
    let init = pid_in(&status);
    let proc_status = std::fs::read_to_string(format!("/proc/{init}/status")).unwrap();
    proc_status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .unwrap()
        .trim()
        .to_string()
}

/// Polls `probe` until it returns something. The limit (ten minutes) only
/// catches a hang: how long the state takes to arrive is not asserted.
pub fn eventually<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "gave up waiting: {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// `systemd-analyze verify` accepts each of `units` (files in `dir`)
/// without a word.
pub fn assert_units_verify(dir: &Path, units: &[&str]) {
    for unit in units {
        let verify = output(
            Command::new("systemd-analyze")
                .arg("verify")
                .arg(dir.join(unit)),
        );
        assert!(
            verify.status.success() && stderr(&verify).trim().is_empty(),
            "{unit}: {}",
            stderr(&verify)
        );
    }
}

/// `op`, again while it fails with EINTR: a receive on a socket with a
/// timeout ends that way when this process is stopped and continued, even
/// without a signal handler (signal(7)), as whatever runs the tests may do.
pub fn uninterrupted<T>(mut op: impl FnMut() -> std::io::Result<T>) -> std::io::Result<T> {
    loop {
        match op() {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            done => return done,
        }
    }
}

/// Another process holding a pod's lock until it is released or dropped
/// (held by this one, a process another test forks in that instant would
/// keep a copy of it until its exec). If some other process keeps the lock
/// (a leak), SIGALRM ends the holder's wait after 60 s: the test fails
/// instead of hanging.
pub struct LockHolder(Option<std::process::Child>);

impl LockHolder {
    pub fn new(dir: &Path) -> LockHolder {
        let mut child = Command::new("python3")
            .args([
                "-c",
                "import fcntl, os, signal, sys\n\
                 signal.alarm(60)\n\
                 fd = os.open(sys.argv[1], os.O_RDONLY)\n\
                 fcntl.flock(fd, fcntl.LOCK_EX)\n\
                 signal.alarm(0)\n\
                 print('locked', flush=True)\n\
                 sys.stdin.read()",
            ])
            .arg(dir)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let holder = LockHolder(Some(child));
        let mut said = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut said).unwrap();
        assert_eq!(said.trim(), "locked");
        holder
    }

    /// Lets go: SIGKILL ends the holder, and its lock with it.
    pub fn release(&self) {
        if let Some(child) = &self.0 {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_child(child),
                rustix::process::Signal::KILL,
            );
        }
    }
}

impl Drop for LockHolder {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Asserts that `path` is an executable without a program interpreter
/// (`PT_INTERP`): linked statically, as the project's build links `skiff`,
/// `skiff-stage1` and `skiff-runtime` (`.cargo/rustc-workspace-wrapper`).
pub fn assert_static_executable(path: &str) {
    let elf = std::fs::read(path).unwrap();
    assert_eq!(&elf[..4], b"\x7fELF", "{path}: not an ELF file");
    let at = |offset: usize, len: usize| -> u64 {
        let mut bytes = [0u8; 8];
        bytes[..len].copy_from_slice(&elf[offset..offset + len]);
        u64::from_le_bytes(bytes)
    };
    // ELF64: the program header table's offset, entry size and count.
    let (table, entry_size, entries) = (at(0x20, 8), at(0x36, 2), at(0x38, 2));
    let types: Vec<u64> = (0..entries)
        .map(|i| at(usize::try_from(table + i * entry_size).unwrap(), 4))
        .collect();
    const PT_INTERP: u64 = 3;
    assert!(!types.is_empty(), "{path}: no program headers");
    assert!(
        !types.contains(&PT_INTERP),
        "{path} names a program interpreter: it is linked dynamically; is .cargo/config.toml's rustc-workspace-wrapper in use?"
    );
    // Nor does it hold glibc's name service lookups or locale loading: a
    // static glibc serves those by loading the host's modules, built for
    // another glibc, into the process (docs/decisions.md). The linker
    // keeps only what the program can call, so a lookup added on its paths
    // shows here. (The symbol table: SHT_SYMTAB and its string table.)
    const SHT_SYMTAB: u64 = 2;
    let (sections, section_size, count) = (at(0x28, 8), at(0x3a, 2), at(0x3c, 2));
    let section = |i: u64| usize::try_from(sections + i * section_size).unwrap();
    let symtab = (0..count)
        .find(|&i| at(section(i) + 4, 4) == SHT_SYMTAB)
        .unwrap_or_else(|| panic!("{path}: no symbol table to check"));
    let (offset, size, link) = (
        at(section(symtab) + 0x18, 8),
        at(section(symtab) + 0x20, 8),
        at(section(symtab) + 0x28, 4),
    );
    let strings = usize::try_from(at(section(link) + 0x18, 8)).unwrap();
    let name = |start: usize| {
        let end = elf[start..].iter().position(|b| *b == 0).unwrap();
        String::from_utf8_lossy(&elf[start..start + end]).into_owned()
    };
    let forbidden = [
        "getaddrinfo",
        "gethostbyname",
        "gethostbyname2",
        "gethostbyaddr",
        "getnameinfo",
        "getpwnam",
        "getpwnam_r",
        "getpwuid",
        "getpwuid_r",
        "getgrnam",
        "getgrnam_r",
        "getgrgid",
        "getgrgid_r",
        "getgrouplist",
        "initgroups",
        "getspnam",
        "setlocale",
        "newlocale",
        "iconv_open",
    ];
    let mut found = Vec::new();
    for entry in (offset..offset + size).step_by(24).skip(1) {
        let entry = usize::try_from(entry).unwrap();
        let defined = at(entry + 6, 2) != 0;
        let symbol = name(strings + usize::try_from(at(entry, 4)).unwrap());
        if defined && forbidden.contains(&symbol.as_str()) {
            found.push(symbol);
        }
    }
    assert!(found.is_empty(), "{path} holds glibc's {found:?}");
}
