//! `--no-overlay`: an app's root as a private copy of the rendered tree,
//! for hosts whose filesystem cannot be an overlayfs upper layer.
//!
//! The tree comes from the store (validated at import: no device nodes,
//! no paths outside the root); symlinks are copied as symlinks, never
//! followed, and owners and modes are kept — shifted into the pod's id
//! range with `--private-users`, so that what the pod owns is on disk
//! under its unprivileged ids, never host root's.

use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// How on-disk owners of the copy relate to those of the tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owners {
    /// As in the tree.
    Kept,
    /// Shifted by the pod's first host id: in-pod id `n` below
    /// [`skiff_pod::USERNS_SIZE`] is `base + n` on disk; ids the pod's
    /// namespace does not map become its `nobody` (65534).
    Shifted { base: u32 },
    /// The other way (a `--private-users` pod's upper layer read back):
    /// on-disk `base + n` is in-pod `n`; other ids become 65534.
    Unshifted { base: u32 },
}

impl Owners {
    fn id(self, id: u32) -> u32 {
        match self {
            Owners::Kept => id,
            Owners::Shifted { base } if id < skiff_pod::USERNS_SIZE => base + id,
            Owners::Shifted { base } => base + 65534,
            Owners::Unshifted { base } => id
                .checked_sub(base)
                .filter(|n| *n < skiff_pod::USERNS_SIZE)
                .unwrap_or(65534),
        }
    }
}

/// Copies the directory tree `src` to `dst` (which must not exist).
pub fn copy_tree(src: &Path, dst: &Path, owners: Owners) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(src)?;
    // Filled while owner-writable, given its real mode and owner after.
    std::fs::create_dir(dst)?;
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(0o700))?;
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let (from, to) = (entry.path(), dst.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&from, &to, owners)?;
        } else if kind.is_symlink() {
            copy_symlink(&from, &to, &std::fs::symlink_metadata(&from)?, owners)?;
        } else if kind.is_file() {
            copy_file(&from, &to, owners)?;
        }
        // Anything else (fifo, socket, device) is not in a rendered tree;
        // it is skipped rather than recreated.
    }
    finish(dst, &meta, owners)
}

/// What [`apply_upper`] left out: paths (relative to the root) of device
/// nodes, FIFOs and sockets an app made, which an image does not hold.
pub type Skipped = Vec<std::path::PathBuf>;

/// Lays an overlayfs upper layer `upper` (what an app wrote) over `dst`,
/// a copy of the lower tree: whiteouts (0/0 character devices) delete,
/// opaque directories replace, everything else is copied over what is
/// there — never following a symlink of either side. An upper layer with
/// redirected directories or metadata-only copies (overlay features that
/// need the lower layer to read) is refused.
pub fn apply_upper(upper: &Path, dst: &Path, owners: Owners) -> io::Result<Skipped> {
    let mut skipped = Vec::new();
    apply_upper_at(upper, dst, Path::new(""), owners, &mut skipped)?;
    Ok(skipped)
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = [0u8; 256];
    match rustix::fs::lgetxattr(path, name, &mut buf[..]) {
        Ok(n) => Some(buf[..n.min(buf.len())].to_vec()),
        Err(rustix::io::Errno::NODATA) => None,
        // Too long to read here (ERANGE) or unreadable: there all the
        // same, never taken for absent.
        Err(_) => Some(Vec::new()),
    }
}

fn remove_any(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn apply_upper_at(
    upper: &Path,
    dst: &Path,
    rel: &Path,
    owners: Owners,
    skipped: &mut Skipped,
) -> io::Result<()> {
    for entry in std::fs::read_dir(upper)? {
        let entry = entry?;
        let (from, to) = (entry.path(), dst.join(entry.file_name()));
        let meta = std::fs::symlink_metadata(&from)?;
        let kind = meta.file_type();
        for feature in ["trusted.overlay.redirect", "trusted.overlay.metacopy"] {
            if xattr(&from, feature).is_some() {
                return Err(io::Error::other(format!(
                    "{} uses the overlay feature {feature}: cannot be read without its lower layer",
                    rel.join(entry.file_name()).display()
                )));
            }
        }
        use std::os::unix::fs::FileTypeExt;
        if kind.is_char_device() && meta.rdev() == 0 {
            remove_any(&to)?;
        } else if kind.is_dir() {
            let opaque = xattr(&from, "trusted.overlay.opaque").as_deref() == Some(b"y");
            let is_dir = std::fs::symlink_metadata(&to).is_ok_and(|m| m.is_dir());
            if opaque || !is_dir {
                remove_any(&to)?;
                std::fs::create_dir(&to)?;
            }
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o700))?;
            apply_upper_at(&from, &to, &rel.join(entry.file_name()), owners, skipped)?;
            finish(&to, &meta, owners)?;
        } else if kind.is_symlink() {
            remove_any(&to)?;
            copy_symlink(&from, &to, &meta, owners)?;
        } else if kind.is_file() {
            remove_any(&to)?;
            copy_file(&from, &to, owners)?;
        } else {
            remove_any(&to)?;
            skipped.push(rel.join(entry.file_name()));
        }
    }
    Ok(())
}

/// The symlink `from` (with metadata `meta`) as a new symlink `to`, never
/// followed, owned as `owners` says.
fn copy_symlink(
    from: &Path,
    to: &Path,
    meta: &std::fs::Metadata,
    owners: Owners,
) -> io::Result<()> {
    std::os::unix::fs::symlink(std::fs::read_link(from)?, to)?;
    std::os::unix::fs::lchown(to, Some(owners.id(meta.uid())), Some(owners.id(meta.gid())))
}

fn copy_file(from: &Path, to: &Path, owners: Owners) -> io::Result<()> {
    let mut src = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(from)?;
    let meta = src.metadata()?;
    let mut dst = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(to)?;
    io::copy(&mut src, &mut dst)?;
    drop(dst);
    finish(to, &meta, owners)
}

/// Owner first: chown clears setuid/setgid bits, the mode sets them back.
fn finish(path: &Path, meta: &std::fs::Metadata, owners: Owners) -> io::Result<()> {
    std::os::unix::fs::lchown(
        path,
        Some(owners.id(meta.uid())),
        Some(owners.id(meta.gid())),
    )?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_files_dirs_symlinks_and_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir_all(src.join("bin")).unwrap();
        std::fs::write(src.join("bin/tool"), b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(src.join("bin/tool"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        std::os::unix::fs::symlink("/etc/outside", src.join("link")).unwrap();
        std::fs::create_dir(src.join("ro")).unwrap();
        std::fs::write(src.join("ro/file"), b"x").unwrap();
        std::fs::set_permissions(src.join("ro"), std::fs::Permissions::from_mode(0o555)).unwrap();
        let dst = tmp.path().join("dst");
        copy_tree(&src, &dst, Owners::Kept).unwrap();
        assert_eq!(std::fs::read(dst.join("bin/tool")).unwrap(), b"#!/bin/sh\n");
        let mode = |p: &str| std::fs::symlink_metadata(dst.join(p)).unwrap().mode() & 0o7777;
        assert_eq!(mode("bin/tool"), 0o755);
        assert_eq!(mode("ro"), 0o555);
        assert_eq!(
            std::fs::read_link(dst.join("link")).unwrap(),
            Path::new("/etc/outside")
        );
        assert_eq!(std::fs::read(dst.join("ro/file")).unwrap(), b"x");
        // An existing destination is refused, never merged into.
        assert!(copy_tree(&src, &dst, Owners::Kept).is_err());
        // Shifted: root's files belong to the pod's root on disk, setuid
        // bits survive the chown, unmapped ids become the pod's nobody.
        std::fs::set_permissions(
            src.join("bin/tool"),
            std::fs::Permissions::from_mode(0o4755),
        )
        .unwrap();
        std::os::unix::fs::lchown(src.join("ro/file"), Some(70000), Some(1)).unwrap();
        let shifted = tmp.path().join("shifted");
        copy_tree(&src, &shifted, Owners::Shifted { base: 1 << 20 }).unwrap();
        let meta = |p: &str| std::fs::symlink_metadata(shifted.join(p)).unwrap();
        assert_eq!(
            (meta("bin/tool").uid(), meta("bin/tool").gid()),
            (1 << 20, 1 << 20)
        );
        assert_eq!(meta("bin/tool").mode() & 0o7777, 0o4755);
        assert_eq!(meta("link").uid(), 1 << 20);
        assert_eq!(
            (meta("ro/file").uid(), meta("ro/file").gid()),
            ((1 << 20) + 65534, (1 << 20) + 1)
        );
    }
}
