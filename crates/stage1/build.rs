//! Builds `skiff-wait` (waiter/skiff-wait.rs), the program a quiet pod's
//! supervisor becomes, with the same rustc as the rest: without the
//! standard library, libc or unwinding (which a workspace crate cannot
//! opt out of), statically linked. stage1 embeds the result.
//!
//! On targets other than x86_64 Linux (64-bit pointers) nothing is built and the supervisor
//! never rests (`cfg(skiff_waiter)` is unset).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=waiter/skiff-wait.rs");
    println!("cargo::rerun-if-changed=waiter/limits.rs");
    println!("cargo::rustc-check-cfg=cfg(skiff_waiter)");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let width = std::env::var("CARGO_CFG_TARGET_POINTER_WIDTH").unwrap_or_default();
    if arch != "x86_64" || os != "linux" || width != "64" {
        return;
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let target = std::env::var("TARGET").expect("cargo sets TARGET");
    let status = Command::new(rustc)
        .args([
            "--edition=2024",
            "--crate-type=bin",
            "--crate-name=skiff_wait",
        ])
        .args(["--target", &target])
        .args(["-C", "panic=abort", "-C", "opt-level=s"])
        .args(["-C", "relocation-model=static", "-C", "strip=symbols"])
        .args(["-C", "link-arg=-nostartfiles", "-C", "link-arg=-nostdlib"])
        .args([
            "-C",
            "link-arg=-static",
            "-C",
            "link-arg=-Wl,--build-id=none",
        ])
        .arg("-o")
        .arg(out.join("skiff-wait"))
        .arg("waiter/skiff-wait.rs")
        .status()
        .expect("run rustc to build skiff-wait");
    assert!(status.success(), "building skiff-wait failed: {status}");
    println!("cargo::rustc-cfg=skiff_waiter");
}
