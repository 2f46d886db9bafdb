//! Build facts for `skiff version`: the commit (where the source is a git
//! checkout), the build date and the compiler.

use std::process::Command;

fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

fn main() {
    let commit =
        output("git", &["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc = output(&rustc, &["--version"]).unwrap_or_else(|| "unknown".into());
    // Reproducible builds set SOURCE_DATE_EPOCH; otherwise the commit's date.
    let date: i64 = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .or_else(|| output("git", &["log", "-1", "--format=%ct"]))
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0);
    println!("cargo:rustc-env=SKIFF_COMMIT={commit}");
    println!("cargo:rustc-env=SKIFF_RUSTC={rustc}");
    println!("cargo:rustc-env=SKIFF_BUILD_EPOCH={date}");
    // A new commit (or checkout) changes what is printed.
    // (Only paths that exist: a missing one would rerun this every build.)
    println!("cargo:rerun-if-changed=build.rs");
    // The wrapper that links skiff-stage1 and skiff-runtime statically
    // (.cargo/config.toml): an edit relinks them.
    for path in [
        "../../.cargo/rustc-workspace-wrapper",
        "../../.git/HEAD",
        "../../.git/refs/heads",
        "../../.git/packed-refs",
    ] {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
}
