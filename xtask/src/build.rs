//! The one build step of every xtask command, and the binaries it made.
//!
//! A command gets a binary's path only from the build it ran itself
//! ([`Binaries::get`]): a file that merely lies in `target/release` from
//! an earlier build (the test suite's, a bench run's) is not found. This is
//! the guard against "works on a machine that ran the tests first": the
//! demo once ran a `skiff` whose stage1 only other commands built.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, Result, bail};

/// Programs `skiff` runs at run time (its stage1; the full command set it
/// executes for all but pod starts), which must come from the same build.
pub const SKIFF_COMPANIONS: &[&str] = &["skiff-stage1", "skiff-full"];

/// The executables one `cargo build --release --workspace --bins` made.
pub struct Binaries {
    paths: BTreeMap<String, PathBuf>,
}

impl Binaries {
    /// Builds every binary of the workspace (release profile, the one
    /// profile of the project) and records what cargo reported it made.
    pub fn build(root: &Path) -> Result<Self> {
        crate::step("cargo build --release --workspace --bins");
        let mut child = crate::cargo(root)
            .args(["build", "--release", "--workspace", "--bins", "--quiet"])
            .arg("--message-format=json-render-diagnostics")
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot start cargo build")?;
        let stdout = child.stdout.take().context("cargo build has no stdout")?;
        let mut paths = BTreeMap::new();
        for line in std::io::BufReader::new(stdout).lines() {
            if let Some((name, path)) = artifact(&line?) {
                paths.insert(name, path);
            }
        }
        let status = child.wait()?;
        if !status.success() {
            bail!("cargo build --release --workspace --bins failed ({status})");
        }
        let binaries = Binaries { paths };
        binaries.skiff()?;
        Ok(binaries)
    }

    /// The path of `name`, if this build made it.
    pub fn get(&self, name: &str) -> Result<&Path> {
        self.paths.get(name).map(PathBuf::as_path).with_context(|| {
            format!(
                "the build step did not make {name} (it made: {})",
                self.paths.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })
    }

    /// `skiff`, checked to have each of [`SKIFF_COMPANIONS`] beside it from
    /// the same build (where skiff looks first).
    pub fn skiff(&self) -> Result<&Path> {
        let skiff = self.get("skiff")?;
        for companion in SKIFF_COMPANIONS {
            let path = self.get(companion)?;
            if path.parent() != skiff.parent() {
                bail!(
                    "{companion} was built at {} but skiff at {}: skiff finds it beside itself",
                    path.display(),
                    skiff.display()
                );
            }
        }
        Ok(skiff)
    }
}

/// `(name, path)` of an executable from one line of cargo's JSON messages.
fn artifact(line: &str) -> Option<(String, PathBuf)> {
    let message: serde_json::Value = serde_json::from_str(line).ok()?;
    if message["reason"] != "compiler-artifact" {
        return None;
    }
    let path = PathBuf::from(message["executable"].as_str()?);
    let name = message["target"]["name"].as_str()?.to_string();
    Some((name, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binaries(list: &[(&str, &str)]) -> Binaries {
        Binaries {
            paths: list
                .iter()
                .map(|(n, p)| ((*n).to_string(), PathBuf::from(p)))
                .collect(),
        }
    }

    #[test]
    fn skiff_without_its_stage1_from_the_same_build_is_refused() {
        let alone = binaries(&[("skiff", "/t/release/skiff")]);
        let err = alone.skiff().expect_err("no stage1");
        assert!(
            err.to_string().contains("did not make skiff-stage1"),
            "{err}"
        );
        let apart = binaries(&[
            ("skiff", "/t/release/skiff"),
            ("skiff-stage1", "/elsewhere/skiff-stage1"),
        ]);
        assert!(apart.skiff().is_err());
        let no_full = binaries(&[
            ("skiff", "/t/release/skiff"),
            ("skiff-stage1", "/t/release/skiff-stage1"),
        ]);
        assert!(no_full.skiff().is_err());
        let all = binaries(&[
            ("skiff", "/t/release/skiff"),
            ("skiff-stage1", "/t/release/skiff-stage1"),
            ("skiff-full", "/t/release/skiff-full"),
        ]);
        assert_eq!(all.skiff().ok(), Some(Path::new("/t/release/skiff")));
    }

    #[test]
    fn executables_are_read_from_cargos_messages() {
        let line = r#"{"reason":"compiler-artifact","target":{"name":"skiff","kind":["bin"]},"executable":"/t/release/skiff","fresh":true}"#;
        assert_eq!(
            artifact(line),
            Some(("skiff".to_string(), PathBuf::from("/t/release/skiff")))
        );
        let library =
            r#"{"reason":"compiler-artifact","target":{"name":"skiff_pod"},"executable":null}"#;
        assert_eq!(artifact(library), None);
        assert_eq!(
            artifact(r#"{"reason":"build-finished","success":true}"#),
            None
        );
        assert_eq!(artifact("not json"), None);
    }
}
