//! Shared helpers: where the binaries are, running them, sample layouts.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `skiff` binary under test.
pub fn skiff() -> Command {
    Command::new(env!("CARGO_BIN_EXE_skiff"))
}

/// The reference tools built by shared/tools/build-appc-tools.sh.
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
