//! Advisory file locks (`flock(2)`), the only way skiff processes coordinate.
//!
//! Every lock in skiff goes through this module. Locks are released when the
//! [`FileLock`] is dropped (or the process dies, which is what makes crash
//! recovery work: a temp file whose lock can be taken has no live owner).

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct FileLock {
    file: File,
    path: PathBuf,
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

impl FileLock {
    /// Waits for an exclusive lock on `path` (created if missing).
    pub fn exclusive(path: &Path) -> io::Result<Self> {
        let file = open(path)?;
        file.lock()?;
        Ok(FileLock {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Waits for a shared lock on `path` (created if missing).
    pub fn shared(path: &Path) -> io::Result<Self> {
        let file = open(path)?;
        file.lock_shared()?;
        Ok(FileLock {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Takes an exclusive lock on an already open file without waiting;
    /// `None` if someone else holds it.
    pub fn try_exclusive_file(file: File, path: &Path) -> io::Result<Option<Self>> {
        match file.try_lock() {
            Ok(()) => Ok(Some(FileLock {
                file,
                path: path.to_path_buf(),
            })),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }

    /// Like [`FileLock::try_exclusive_file`], opening `path` (which must exist).
    pub fn try_exclusive(path: &Path) -> io::Result<Option<Self>> {
        let file = OpenOptions::new().read(true).open(path)?;
        Self::try_exclusive_file(file, path)
    }

    /// Like [`FileLock::try_exclusive`], creating `path` if missing.
    pub fn try_exclusive_creating(path: &Path) -> io::Result<Option<Self>> {
        Self::try_exclusive_file(open(path)?, path)
    }

    /// Locks an open file exclusively, waiting.
    pub fn lock_file(file: File, path: &Path) -> io::Result<Self> {
        file.lock()?;
        Ok(FileLock {
            file,
            path: path.to_path_buf(),
        })
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_excludes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l");
        let held = FileLock::exclusive(&path).unwrap();
        assert!(FileLock::try_exclusive(&path).unwrap().is_none());
        drop(held);
        assert!(FileLock::try_exclusive(&path).unwrap().is_some());
    }
}
