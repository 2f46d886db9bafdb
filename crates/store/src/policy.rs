//! The hostile-archive policy: what an image archive may contain. Checked on
//! every entry while an import hashes the archive, before anything enters
//! the store, so a refused image leaves the store unchanged. The renderer
//! enforces the same containment again with the kernel (`openat2`).

use std::collections::HashMap;

use skiff_spec::aci::EntryInfo;
use tar::EntryType;

/// Limits and permissions for image archives. The defaults refuse device
/// nodes and setuid/setgid files and stop archives that expand beyond 64 GiB,
/// 2 million entries, or 250 times their compressed size.
#[derive(Debug, Clone)]
pub struct ArchivePolicy {
    /// Largest total of uncompressed entry sizes.
    pub max_bytes: u64,
    pub max_entries: u64,
    /// Largest uncompressed/compressed ratio: what the entries read whole
    /// inflated to against the compressed bytes read for them, checked at
    /// each entry and at the end once more than [`RATIO_GRACE`] bytes have
    /// come out (a large entry of incompressible data is not a bomb because
    /// its header comes before its bytes).
    pub max_ratio: u64,
    /// Allow character and block device nodes.
    pub allow_devices: bool,
    /// Allow setuid/setgid files.
    pub allow_setuid: bool,
}

/// Below this many uncompressed bytes the ratio is not checked (small files
/// of zeros compress extremely well and are harmless).
pub const RATIO_GRACE: u64 = 64 << 20;

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
    /// Once the whole archive was read (`compressed` bytes): the ratio of
    /// everything it inflated to.
    pub fn finish(&self, compressed: u64) -> Result<(), String> {
        self.check_ratio(compressed)
    }

    fn check_ratio(&self, compressed: u64) -> Result<(), String> {
        let p = self.policy;
        if self.bytes > RATIO_GRACE && self.bytes / compressed.max(1) > p.max_ratio {
            return Err(format!(
                "decompression bomb: {} bytes inflated from {compressed} compressed bytes, more than {} times (skiff fetch --max-decompression-ratio=N takes a larger ratio)",
                self.bytes, p.max_ratio
            ));
        }
        Ok(())
    }

    pub fn new(policy: &'p ArchivePolicy) -> Self {
        EntryChecker {
            policy,
            entries: 0,
            bytes: 0,
            seen: HashMap::new(),
        }
    }

    /// Checks one entry; `compressed_read` is how many compressed bytes of
    /// the archive have been read so far (for the ratio limit).
    pub fn check(&mut self, entry: &EntryInfo, compressed_read: u64) -> Result<(), String> {
        let p = self.policy;
        // Every entry before this one has been read whole.
        self.check_ratio(compressed_read)?;
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
        let parts = components(&entry.raw_path)?;
        let path = parts.join("/");
        if path.is_empty() {
            return Ok(());
        }
        // Every proper ancestor must be a directory, never a symlink or file.
        for i in 1..parts.len() {
            let ancestor = parts[..i].join("/");
            match self.seen.get(&ancestor) {
                Some(Seen::Symlink) => {
                    return Err(format!(
                        "would be written through the symlink '{ancestor}' (symlink-then-write escape)"
                    ));
                }
                Some(Seen::File | Seen::Other) => {
                    return Err(format!("its parent '{ancestor}' is not a directory"));
                }
                _ => {}
            }
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
            None => {}
        }
        self.seen.insert(path.clone(), kind);
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
            c.check(e, 1 << 20)?;
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
        assert!(c.check(&with("security.capability"), 1 << 20).is_ok());
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
    fn refuses_bombs() {
        let policy = ArchivePolicy {
            max_entries: 3,
            ..ArchivePolicy::default()
        };
        let mut c = EntryChecker::new(&policy);
        for i in 0..3 {
            c.check(
                &entry(&format!("rootfs/{i}"), EntryType::Regular, 0o644, None),
                1,
            )
            .unwrap();
        }
        assert!(
            c.check(&entry("rootfs/x", EntryType::Regular, 0o644, None), 1)
                .is_err()
        );
        let policy = ArchivePolicy::default();
        let mut c = EntryChecker::new(&policy);
        let mut big = entry("rootfs/big", EntryType::Regular, 0o644, None);
        big.size = 1 << 30;
        // Its header comes before its bytes: no verdict yet.
        c.check(&big, 1 << 20).unwrap();
        // Read whole from 1 MiB: a bomb, at the next entry or the end.
        let next = entry("rootfs/next", EntryType::Regular, 0o644, None);
        let refused = c.check(&next, 1 << 20).unwrap_err();
        assert!(refused.contains("decompression bomb"), "{refused}");
        assert!(refused.contains("--max-decompression-ratio"), "{refused}");
        assert!(c.finish(1 << 20).is_err());
        // The same gigabyte from 900 MiB (random data) is no bomb.
        let mut c = EntryChecker::new(&policy);
        c.check(&big, 1 << 20).unwrap();
        c.check(&next, 900 << 20).unwrap();
        assert!(c.finish(900 << 20).is_ok());
    }
}
