//! The hostile-archive policy: what an image archive may contain. Checked on
//! every entry while an import hashes the archive, before anything enters
//! the store, so a refused image leaves the store unchanged. The renderer
//! enforces the same containment again with the kernel (`openat2`).

use std::collections::HashMap;

use skiff_spec::aci::EntryInfo;
use skiff_spec::aci::paths::{DirCounter, PathSet};
use tar::EntryType;

/// Limits and permissions for image archives. The defaults refuse device
/// nodes and setuid/setgid files and stop archives that expand beyond 64 GiB,
/// 2 million entries, or 250 times their compressed size.
#[derive(Debug, Clone)]
pub struct ArchivePolicy {
    /// Largest total of uncompressed entry sizes.
    pub max_bytes: u64,
    pub max_entries: u64,
    /// Largest uncompressed/compressed ratio: what the decompressor really
    /// produced against the compressed bytes it really consumed, measured
    /// as it inflates once more than [`RATIO_GRACE`] bytes have come out
    /// (a large file of incompressible data is no bomb).
    pub max_ratio: u64,
    /// Allow character and block device nodes.
    pub allow_devices: bool,
    /// Allow setuid/setgid files.
    pub allow_setuid: bool,
}

/// Below this many uncompressed bytes the ratio is not checked (small files
/// of zeros compress extremely well and are harmless).
pub const RATIO_GRACE: u64 = 64 << 20;

pub use skiff_spec::aci::paths::MAX_PATH_BYTES;

/// Directories without entries of their own an archive may make beyond
/// twice its entries.
pub const MAX_IMPLICIT_DIRS: u64 = 10_000;

impl ArchivePolicy {
    /// What the archive's stream may inflate to: the entries' bytes plus
    /// their headers and padding (at most 1 KiB each, with extended
    /// records) and 1 MiB more, within the ratio.
    pub fn inflation(&self) -> skiff_spec::aci::inflation::Limits {
        skiff_spec::aci::inflation::Limits {
            max_bytes: self
                .max_bytes
                .saturating_add(self.max_entries.saturating_mul(1024))
                .saturating_add(1 << 20),
            max_ratio: self.max_ratio,
            grace: RATIO_GRACE,
        }
    }
}

impl Default for ArchivePolicy {
    fn default() -> Self {
        ArchivePolicy {
            max_bytes: 64 << 30,
            max_entries: 2_000_000,
            max_ratio: 250,
            allow_devices: false,
            allow_setuid: false,
        }
    }
}

/// What the checker remembers of the entries it has seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Dir,
    File,
    Symlink,
    Other,
}

/// Checks the entries of one archive in order.
pub struct EntryChecker<'p> {
    policy: &'p ArchivePolicy,
    entries: u64,
    bytes: u64,
    seen: HashMap<String, Seen>,
    /// The symlinks and the other entries that are not directories, for
    /// the ancestor check (one pass over each path).
    symlinks: PathSet,
    not_dirs: PathSet,
    /// Every directory the entries make, named or not (`a/b/c` makes `a`
    /// and `a/b`): each counts as an entry.
    dirs: DirCounter,
    /// Directories made without an entry of their own.
    implicit: u64,
    path_bytes: u64,
}

/// Splits a raw entry path into its components, refusing absolute paths and
/// `..` anywhere.
fn components(raw: &str) -> Result<Vec<&str>, String> {
    if raw.starts_with('/') {
        return Err("absolute path".to_string());
    }
    let parts: Vec<&str> = raw
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.contains(&"..") {
        return Err("path contains '..'".to_string());
    }
    Ok(parts)
}

impl<'p> EntryChecker<'p> {
    pub fn new(policy: &'p ArchivePolicy) -> Self {
        EntryChecker {
            policy,
            entries: 0,
            bytes: 0,
            seen: HashMap::new(),
            symlinks: PathSet::new(),
            not_dirs: PathSet::new(),
            dirs: DirCounter::new(),
            implicit: 0,
            path_bytes: 0,
        }
    }

    /// Checks one entry (the ratio and the bytes really inflated are
    /// measured by the reader: [`ArchivePolicy::inflation`]).
    pub fn check(&mut self, entry: &EntryInfo) -> Result<(), String> {
        let p = self.policy;
        self.entries += 1;
        if self.entries > p.max_entries {
            return Err(format!(
                "more than {} entries in the archive",
                p.max_entries
            ));
        }
        self.bytes = self.bytes.saturating_add(entry.size);
        if self.bytes > p.max_bytes {
            return Err(format!(
                "the archive expands to more than {} bytes (limit)",
                p.max_bytes
            ));
        }
        self.path_bytes = self.path_bytes.saturating_add(
            (entry.raw_path.len() + entry.link_target.as_ref().map_or(0, String::len)) as u64,
        );
        if self.path_bytes > MAX_PATH_BYTES {
            return Err(format!(
                "the archive's paths add up to more than {MAX_PATH_BYTES} bytes (no real image's)"
            ));
        }
        let parts = components(&entry.raw_path)?;
        let path = parts.join("/");
        if path.is_empty() {
            return Ok(());
        }
        // The directories it makes count as entries (a few bytes of path
        // can make thousands of them), and may not outnumber the entries
        // by much: real archives without directory entries have fewer
        // directories than files.
        let made = self.dirs.add(&path, false);
        self.implicit += made;
        self.entries += made;
        if self.entries > p.max_entries {
            return Err(format!(
                "more than {} entries in the archive (directories its paths make included)",
                p.max_entries
            ));
        }
        let explicit = self.entries - self.implicit;
        if self.implicit > 2 * explicit + MAX_IMPLICIT_DIRS {
            return Err(format!(
                "its paths make {} directories that have no entry, more than twice the entries plus {MAX_IMPLICIT_DIRS} (a directory bomb)",
                self.implicit
            ));
        }
        // Every proper ancestor must be a directory, never a symlink or
        // file (the shortest offender is named).
        let symlink = self.symlinks.ancestor_of(&path);
        let not_dir = self.not_dirs.ancestor_of(&path);
        match (symlink, not_dir) {
            (Some(link), other) if other.is_none_or(|o| link.len() < o.len()) => {
                return Err(format!(
                    "would be written through the symlink '{link}' (symlink-then-write escape)"
                ));
            }
            (_, Some(ancestor)) => {
                return Err(format!("its parent '{ancestor}' is not a directory"));
            }
            _ => {}
        }
        let kind = match entry.kind {
            EntryType::Directory => Seen::Dir,
            EntryType::Regular | EntryType::Continuous => Seen::File,
            EntryType::Symlink => Seen::Symlink,
            EntryType::Link => {
                let target = entry.link_target.as_deref().unwrap_or("");
                let target_parts = components(target)
                    .map_err(|why| format!("hard link to '{target}' outside the image ({why})"))?;
                let target_path = target_parts.join("/");
                match self.seen.get(&target_path) {
                    Some(Seen::File) => {}
                    Some(_) => {
                        return Err(format!(
                            "hard link to '{target}', which is not a regular file"
                        ));
                    }
                    None => {
                        return Err(format!(
                            "hard link to '{target}', which is not an earlier file of the archive"
                        ));
                    }
                }
                Seen::File
            }
            EntryType::Char | EntryType::Block => {
                if !p.allow_devices {
                    return Err(
                        "device node (images may not carry device nodes; the runtime provides /dev)"
                            .to_string(),
                    );
                }
                Seen::Other
            }
            EntryType::Fifo => Seen::Other,
            EntryType::XGlobalHeader => return Ok(()),
            other => return Err(format!("unsupported entry type {other:?}")),
        };
        for name in &entry.xattrs {
            let allowed = name.starts_with("user.")
                || name == "system.posix_acl_access"
                || name == "system.posix_acl_default";
            // File capabilities raise privileges on exec, like setuid.
            if name == "security.capability" {
                if !p.allow_setuid {
                    return Err(
                        "file capabilities (security.capability); allow with --allow-setuid"
                            .to_string(),
                    );
                }
            } else if !allowed {
                return Err(format!(
                    "extended attribute '{name}' (images may carry user.*, POSIX ACLs and, \
                     with --allow-setuid, security.capability)"
                ));
            }
        }
        if kind != Seen::Dir && kind != Seen::Symlink && entry.mode & 0o6000 != 0 && !p.allow_setuid
        {
            return Err(format!(
                "setuid/setgid file (mode {:o}); allow with --allow-setuid",
                entry.mode
            ));
        }
        match self.seen.get(&path) {
            Some(Seen::Dir) if kind == Seen::Dir => {}
            Some(_) => return Err("duplicate entry".to_string()),
            None if self.dirs.contains(&path) => {
                if kind != Seen::Dir {
                    return Err("replaces the directory that earlier entries are in".to_string());
                }
                // The entry of a directory its files made: counted once.
                self.implicit = self.implicit.saturating_sub(1);
                self.entries = self.entries.saturating_sub(1);
            }
            None => {}
        }
        match kind {
            Seen::Dir => {
                self.dirs.add(&path, true);
            }
            Seen::Symlink => {
                self.symlinks.insert(&path);
            }
            Seen::File | Seen::Other => {
                self.not_dirs.insert(&path);
            }
        }
        self.seen.insert(path, kind);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, kind: EntryType, mode: u32, link: Option<&str>) -> EntryInfo {
        EntryInfo {
            raw_path: path.to_string(),
            path: path.to_string(),
            kind,
            mode,
            size: 0,
            uid: 0,
            gid: 0,
            link_target: link.map(str::to_string),
            xattrs: Vec::new(),
        }
    }

    fn run(entries: &[EntryInfo]) -> Result<(), String> {
        let policy = ArchivePolicy::default();
        let mut c = EntryChecker::new(&policy);
        for e in entries {
            c.check(e)?;
        }
        Ok(())
    }

    #[test]
    fn extended_attributes_from_an_allow_list() {
        let with = |name: &str| EntryInfo {
            xattrs: vec![name.to_string()],
            ..entry("rootfs/f", EntryType::Regular, 0o644, None)
        };
        assert!(run(&[with("user.mime_type")]).is_ok());
        assert!(run(&[with("system.posix_acl_access")]).is_ok());
        for refused in [
            "trusted.overlay.redirect",
            "security.selinux",
            "security.ima",
        ] {
            assert!(run(&[with(refused)]).is_err(), "{refused}");
        }
        // File capabilities count as setuid.
        assert!(run(&[with("security.capability")]).is_err());
        let policy = ArchivePolicy {
            allow_setuid: true,
            ..ArchivePolicy::default()
        };
        let mut c = EntryChecker::new(&policy);
        assert!(c.check(&with("security.capability")).is_ok());
    }

    #[test]
    fn refuses_escapes() {
        use EntryType::*;
        let dir = |p| entry(p, Directory, 0o755, None);
        let file = |p| entry(p, Regular, 0o644, None);
        assert!(run(&[dir("rootfs"), file("rootfs/a")]).is_ok());
        assert!(run(&[file("rootfs/../x")]).is_err());
        assert!(run(&[file("/rootfs/x")]).is_err());
        assert!(
            run(&[
                entry("rootfs/l", Symlink, 0o777, Some("/etc")),
                file("rootfs/l/passwd")
            ])
            .is_err()
        );
        assert!(run(&[entry("rootfs/h", Link, 0o644, Some("/etc/passwd"))]).is_err());
        assert!(run(&[entry("rootfs/h", Link, 0o644, Some("rootfs/missing"))]).is_err());
        assert!(run(&[entry("rootfs/d", Char, 0o644, None)]).is_err());
        assert!(run(&[entry("rootfs/s", Regular, 0o4755, None)]).is_err());
        assert!(run(&[file("rootfs/a"), file("rootfs/a")]).is_err());
        assert!(run(&[file("rootfs/a"), file("rootfs/a/b")]).is_err());
        assert!(run(&[dir("rootfs/d"), dir("rootfs/d")]).is_ok());
        assert!(
            run(&[
                file("rootfs/a"),
                entry("rootfs/h", Link, 0o644, Some("rootfs/a"))
            ])
            .is_ok()
        );
    }

    #[test]
    fn refuses_more_entries_or_bytes_than_allowed() {
        let policy = ArchivePolicy {
            max_entries: 3,
            ..ArchivePolicy::default()
        };
        let mut c = EntryChecker::new(&policy);
        c.check(&entry("rootfs", EntryType::Directory, 0o755, None))
            .unwrap();
        for i in 0..2 {
            c.check(&entry(
                &format!("rootfs/{i}"),
                EntryType::Regular,
                0o644,
                None,
            ))
            .unwrap();
        }
        assert!(
            c.check(&entry("rootfs/x", EntryType::Regular, 0o644, None))
                .is_err()
        );
        // Directories a path makes count: one entry, 2,000 of them.
        let policy = ArchivePolicy {
            max_entries: 1000,
            ..ArchivePolicy::default()
        };
        let mut c = EntryChecker::new(&policy);
        let deep = format!("rootfs/{}f", "a/".repeat(2000));
        let err = c
            .check(&entry(&deep, EntryType::Regular, 0o644, None))
            .unwrap_err();
        assert!(err.contains("directories its paths make"), "{err}");
        // Directories named after their files count once, in any order.
        let policy = ArchivePolicy {
            max_entries: 4,
            ..ArchivePolicy::default()
        };
        for order in [
            ["rootfs", "rootfs/a", "rootfs/a/f"],
            ["rootfs/a/f", "rootfs/a", "rootfs"],
        ] {
            let mut c = EntryChecker::new(&policy);
            for path in order {
                let kind = if path.ends_with('f') {
                    EntryType::Regular
                } else {
                    EntryType::Directory
                };
                c.check(&entry(path, kind, 0o755, None)).unwrap();
            }
            assert_eq!(c.entries, 3, "{order:?}");
        }
        // A file or symlink where earlier entries made a directory.
        let defaults = ArchivePolicy::default();
        let mut c = EntryChecker::new(&defaults);
        c.check(&entry("rootfs/d/x", EntryType::Regular, 0o644, None))
            .unwrap();
        for kind in [EntryType::Symlink, EntryType::Regular] {
            let err = c
                .check(&entry("rootfs/d", kind, 0o777, Some("/etc")))
                .unwrap_err();
            assert!(err.contains("replaces the directory"), "{err}");
        }
        let policy = ArchivePolicy {
            max_bytes: 1000,
            ..ArchivePolicy::default()
        };
        let mut c = EntryChecker::new(&policy);
        let mut big = entry("rootfs/big", EntryType::Regular, 0o644, None);
        big.size = 1001;
        assert!(c.check(&big).is_err());
        // The stream may carry headers and padding beyond the entries.
        let limits = policy.inflation();
        assert!(limits.max_bytes > policy.max_bytes);
        assert_eq!(limits.max_ratio, policy.max_ratio);
    }
}
