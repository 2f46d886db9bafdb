//! Where the stage1 program is. skiff hands every pod to `skiff-stage1`;
//! a skiff that cannot find it cannot run pods, so the search is fixed and
//! the refusal says how to get one for each way skiff is installed.
//!
//! Search order (the first that exists wins):
//! 1. the path the user gave (`--stage1-path`, `SKIFF_STAGE1_PATH`): only it;
//! 2. beside the running `skiff` (a workspace build, `cargo install`);
//! 3. `<prefix>/lib/skiff/stage1/skiff-stage1` for `skiff` in `<prefix>/bin`
//!    (a package or `make install`-style layout);
//! 4. the directory compiled in with `SKIFF_STAGE1_DIR` at build time,
//!    by default [`DEFAULT_DIR`].

use std::path::{Path, PathBuf};

/// The stage1 program's file name.
pub const BINARY: &str = "skiff-stage1";

/// Where a distribution package puts stage1 unless the build says otherwise.
pub const DEFAULT_DIR: &str = "/usr/lib/skiff/stage1";

#[derive(Debug, thiserror::Error)]
pub enum Stage1NotFound {
    #[error(
        "the stage1 given with --stage1-path (or SKIFF_STAGE1_PATH) is not a file: {}",
        .0.display()
    )]
    Explicit(PathBuf),
    #[error(
        "{BINARY} not found (looked at {}); skiff cannot run pods without it: built from \
         source, `cargo build --release --workspace` puts it beside skiff; \
         `cargo install --path crates/cli` installs both; from a package, reinstall the \
         package (it ships {DEFAULT_DIR}/{BINARY}); or name one with --stage1-path",
        list(.0)
    )]
    Missing(Vec<PathBuf>),
}

fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Finds stage1 for the running program (see the module docs).
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf, Stage1NotFound> {
    let exe = std::env::current_exe().ok();
    let compiled = option_env!("SKIFF_STAGE1_DIR").unwrap_or(DEFAULT_DIR);
    locate_from(explicit, exe.as_deref(), Path::new(compiled))
}

/// [`locate`] with the running program and the compiled-in directory given.
pub fn locate_from(
    explicit: Option<&Path>,
    exe: Option<&Path>,
    compiled_dir: &Path,
) -> Result<PathBuf, Stage1NotFound> {
    if let Some(path) = explicit {
        // Absolute, so that the file checked is the file run (a bare name
        // would be looked up in PATH when run).
        return match std::fs::canonicalize(path) {
            Ok(found) if found.is_file() => Ok(found),
            _ => Err(Stage1NotFound::Explicit(path.to_path_buf())),
        };
    }
    let mut candidates = Vec::new();
    if let Some(dir) = exe.and_then(Path::parent) {
        candidates.push(dir.join(BINARY));
        if let Some(prefix) = dir.parent() {
            candidates.push(prefix.join("lib/skiff/stage1").join(BINARY));
        }
    }
    candidates.push(compiled_dir.join(BINARY));
    candidates.dedup();
    match candidates.iter().find(|p| p.is_file()) {
        Some(found) => Ok(found.clone()),
        None => Err(Stage1NotFound::Missing(candidates)),
    }
}

/// Whether `stage1` was installed with the program `exe`: a file (not a
/// symlink to another build's) beside it, or in the package layout of its
/// prefix (not the compiled-in directory, which another installation may
/// fill). The same installation, by its paths: not a check of the build.
pub fn installed_with(stage1: &Path, exe: &Path) -> bool {
    let Some(dir) = exe.parent() else {
        return false;
    };
    let placed = stage1 == dir.join(BINARY)
        || dir
            .parent()
            .is_some_and(|prefix| stage1 == prefix.join("lib/skiff/stage1").join(BINARY));
    placed && std::fs::symlink_metadata(stage1).is_ok_and(|m| m.file_type().is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
        std::fs::write(path, "").expect("write");
    }

    #[test]
    fn installed_with_is_a_file_beside_or_in_the_prefix_layout() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let x = tmp.path().join("x");
        let exe = x.join("bin/skiff");
        let beside = x.join("bin/skiff-stage1");
        let packaged = x.join("lib/skiff/stage1/skiff-stage1");
        let elsewhere = tmp.path().join("usr/lib/skiff/stage1/skiff-stage1");
        for file in [&beside, &packaged, &elsewhere] {
            touch(file);
        }
        assert!(installed_with(&beside, &exe));
        assert!(installed_with(&packaged, &exe));
        assert!(!installed_with(&elsewhere, &exe));
        assert!(!installed_with(&x.join("bin/other"), &exe));
        // Missing, or a symlink to another build's: not installed with it.
        std::fs::remove_file(&beside).expect("rm");
        assert!(!installed_with(&beside, &exe));
        std::os::unix::fs::symlink(&elsewhere, &beside).expect("symlink");
        assert!(!installed_with(&beside, &exe));
    }

    #[test]
    fn beside_the_binary_then_the_prefix_then_the_compiled_dir() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let exe = tmp.path().join("usr/bin/skiff");
        let compiled = tmp.path().join("opt/stage1");
        let found = |tmp: &Path| locate_from(None, Some(&tmp.join("usr/bin/skiff")), &compiled);
        assert!(matches!(found(tmp.path()), Err(Stage1NotFound::Missing(l)) if l.len() == 3));
        touch(&compiled.join(BINARY));
        assert_eq!(found(tmp.path()).ok(), Some(compiled.join(BINARY)));
        let packaged = tmp.path().join("usr/lib/skiff/stage1").join(BINARY);
        touch(&packaged);
        assert_eq!(found(tmp.path()).ok(), Some(packaged));
        let beside = exe.with_file_name(BINARY);
        touch(&beside);
        assert_eq!(found(tmp.path()).ok(), Some(beside.clone()));
        // An explicit path is the only one tried.
        let other = tmp.path().join("nowhere");
        assert!(matches!(
            locate_from(Some(&other), Some(&exe), &compiled),
            Err(Stage1NotFound::Explicit(_))
        ));
        assert_eq!(
            locate_from(Some(&beside), Some(&exe), &compiled).ok(),
            std::fs::canonicalize(&beside).ok()
        );
    }

    #[test]
    fn the_refusal_names_every_place_and_every_way_to_get_one() {
        let err = locate_from(None, Some(Path::new("/x/bin/skiff")), Path::new("/y"))
            .expect_err("nothing there");
        let text = err.to_string();
        for part in [
            "/x/bin/skiff-stage1",
            "/x/lib/skiff/stage1/skiff-stage1",
            "/y/skiff-stage1",
            "cargo install",
            "--stage1-path",
            "package",
        ] {
            assert!(text.contains(part), "{part} missing from: {text}");
        }
    }
}
