//! skiff-io: the one I/O error of skiff's crates. Each crate's error type
//! has `#[error(transparent)] Io(#[from] IoError)`, and
//! `.map_err(io_err("read /x"))?` (or `io_err_at("read", path)`) says which
//! step failed; the cause is the error's `source()`, printed once by
//! whoever prints the chain.

use std::path::Path;

#[cfg(feature = "listener")]
pub mod listener;
pub mod progress;

/// An I/O step that failed: "cannot {step}", caused by `source`.
#[derive(Debug, thiserror::Error)]
#[error("cannot {step}")]
pub struct IoError {
    step: String,
    #[source]
    source: std::io::Error,
}

impl IoError {
    pub fn new(step: impl Into<String>, source: std::io::Error) -> Self {
        Self {
            step: step.into(),
            source,
        }
    }

    /// The cause's kind (`NotFound`, …).
    pub fn kind(&self) -> std::io::ErrorKind {
        self.source.kind()
    }
}

/// For `map_err`: the failure of `step` ("create the network namespace");
/// `?` turns it into the crate's error.
pub fn io_err(step: impl Into<String>) -> impl FnOnce(std::io::Error) -> IoError {
    let step = step.into();
    move |source| IoError::new(step, source)
}

/// For `map_err`: the failure of `action` on `path` ("read /x").
pub fn io_err_at(action: &str, path: &Path) -> impl FnOnce(std::io::Error) -> IoError + use<> {
    io_err(format!("{action} {}", path.display()))
}

/// Opens `path` for reading only if it is a regular file: not through a
/// symlink (`O_NOFOLLOW`), and without blocking on a FIFO or a device
/// (`O_NONBLOCK`, then refused) — for files someone else may have placed.
pub fn open_regular(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(path)?;
    if file.metadata()?.is_file() {
        Ok(file)
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error(transparent)]
        Io(#[from] IoError),
    }

    #[test]
    fn the_step_and_the_cause_are_each_said_once() {
        let err = Outer::from(io_err_at("read", Path::new("/x"))(std::io::Error::from(
            std::io::ErrorKind::NotFound,
        )));
        assert_eq!(err.to_string(), "cannot read /x");
        let cause = std::error::Error::source(&err).map(ToString::to_string);
        assert_eq!(cause.as_deref(), Some("entity not found"));
        let Outer::Io(io) = err;
        assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    }
}
