//! Archive paths as a hostile archive writes them: a length limit, and sets
//! of paths asked, for each entry, whether one of the entry's ancestors is
//! in them — in one pass over the entry's path, whatever its depth.
//! (Hashing each ancestor on its own is quadratic in the path's length: a
//! 256 KiB path of `a/a/a/…` in a 429-byte layer took 69 s of CPU.)

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher, RandomState};

/// The longest path (or link target) an entry may have, in bytes: Linux's
/// `PATH_MAX`. No image can hold a longer one (rendering it fails).
pub const MAX_PATH: usize = 4096;

/// The most bytes an archive's paths and link targets may add up to: the
/// checks remember every path (a million files of 120-byte paths are
/// 120 MB; without a limit, two million 4 KiB paths would take 24 GB).
pub const MAX_PATH_BYTES: u64 = 256 << 20;

/// The longest name in a path, in bytes: Linux's `NAME_MAX`.
pub const MAX_NAME: usize = 255;

/// Why `path` (an entry's path or link target) is refused, if it is:
/// longer than [`MAX_PATH`], or with a name longer than [`MAX_NAME`].
/// The message quotes only the start.
pub fn too_long(path: &[u8]) -> Option<String> {
    let quoted = |bytes: &[u8]| {
        let end = bytes.len().min(64);
        let more = if end < bytes.len() { "…" } else { "" };
        format!("{:?}{more}", String::from_utf8_lossy(&bytes[..end]))
    };
    if path.len() > MAX_PATH {
        return Some(format!(
            "a path of {} bytes ({}): more than {MAX_PATH}, the most a path has on Linux",
            path.len(),
            quoted(path)
        ));
    }
    path.split(|b| *b == b'/')
        .find(|name| name.len() > MAX_NAME)
        .map(|name| {
            format!(
                "a name of {} bytes ({}): more than {MAX_NAME}, the most a file name has on Linux",
                name.len(),
                quoted(name)
            )
        })
}

/// Counts directories: each ancestor of each path once, in one pass over
/// the path (keyed hashes, compared by hash alone: a collision, one in
/// 2^64, would count a directory too few).
#[derive(Debug, Default)]
pub struct DirCounter {
    keys: RandomState,
    seen: std::collections::HashSet<u64>,
}

impl DirCounter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Notes the proper ancestors of `path` (normalized) and the path
    /// itself when `dir`; returns how many were new.
    pub fn add(&mut self, path: &str, dir: bool) -> u64 {
        let mut new = 0;
        let seen = &mut self.seen;
        prefix_hashes(&self.keys, path, |end, hash| {
            if end < path.len() || dir {
                new += u64::from(seen.insert(hash));
            }
            false
        });
        new
    }

    /// The longest proper ancestor of `path` that was noted, as the
    /// length of its prefix: found in one pass over the path.
    pub fn deepest_known_ancestor(&self, path: &str) -> Option<usize> {
        let mut deepest = None;
        prefix_hashes(&self.keys, path, |end, hash| {
            if end < path.len() && self.seen.contains(&hash) {
                deepest = Some(end);
            }
            false
        });
        deepest
    }

    /// Whether `path` was noted (as a directory or an ancestor).
    pub fn contains(&self, path: &str) -> bool {
        self.seen.contains(&hash_of(&self.keys, path))
    }
}

/// Calls `found(end, hash)` for each proper ancestor of `path` (its bytes
/// up to `end`, a `/`), shortest first, then for `path` itself (`end` =
/// its length), hashing the path once; stops when `found` returns true.
/// A prefix hashes the same whether alone or as part of a longer path.
fn prefix_hashes(keys: &RandomState, path: &str, mut found: impl FnMut(usize, u64) -> bool) {
    let mut hasher = keys.build_hasher();
    let mut start = 0;
    for (end, _) in path.match_indices('/') {
        hasher.write(&path.as_bytes()[start..end]);
        if found(end, hasher.clone().finish()) {
            return;
        }
        start = end;
    }
    hasher.write(&path.as_bytes()[start..]);
    found(path.len(), hasher.finish());
}

/// The hash of the whole of `path`, as [`prefix_hashes`] gives it.
fn hash_of(keys: &RandomState, path: &str) -> u64 {
    let mut whole = 0;
    prefix_hashes(keys, path, |end, hash| {
        whole = hash;
        end == path.len()
    });
    whole
}

/// A set of normalized paths (`a/b/c`: no leading, trailing or doubled
/// `/`). Hashes are keyed per set (no crafted collisions).
#[derive(Debug, Default)]
pub struct PathSet {
    keys: RandomState,
    by_hash: HashMap<u64, Vec<Box<str>>>,
}

impl PathSet {
    pub fn new() -> Self {
        Self::default()
    }

    fn holds(&self, hash: u64, path: &str) -> bool {
        self.by_hash
            .get(&hash)
            .is_some_and(|paths| paths.iter().any(|p| &**p == path))
    }

    /// Adds `path`; false if it was there.
    pub fn insert(&mut self, path: &str) -> bool {
        let hash = hash_of(&self.keys, path);
        if self.holds(hash, path) {
            return false;
        }
        self.by_hash.entry(hash).or_default().push(path.into());
        true
    }

    pub fn contains(&self, path: &str) -> bool {
        self.holds(hash_of(&self.keys, path), path)
    }

    /// The shortest proper ancestor of `path` in the set.
    pub fn ancestor_of<'a>(&self, path: &'a str) -> Option<&'a str> {
        let mut hit = None;
        prefix_hashes(&self.keys, path, |end, hash| {
            if end < path.len() && self.holds(hash, &path[..end]) {
                hit = Some(&path[..end]);
            }
            hit.is_some()
        });
        hit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ancestors_are_found_and_only_proper_ones() {
        let mut set = PathSet::new();
        assert!(set.insert("usr/lib"));
        assert!(!set.insert("usr/lib"));
        assert!(set.insert("etc"));
        assert!(set.contains("usr/lib") && !set.contains("usr"));
        assert_eq!(set.ancestor_of("usr/lib/x/y"), Some("usr/lib"));
        assert_eq!(set.ancestor_of("etc/passwd"), Some("etc"));
        assert_eq!(set.ancestor_of("usr/lib"), None);
        assert_eq!(set.ancestor_of("usr/libexec/x"), None);
        assert_eq!(set.ancestor_of("etcetera/x"), None);
        set.insert("a");
        set.insert("a/b");
        assert_eq!(set.ancestor_of("a/b/c"), Some("a"));
    }

    #[test]
    fn a_deep_path_is_one_pass() {
        let mut set = PathSet::new();
        let deep = vec!["a"; MAX_PATH / 2].join("/");
        set.insert(&deep);
        // Thousands of entries under it stay cheap (one hash pass each).
        for i in 0..2000 {
            assert!(set.ancestor_of(&format!("{deep}/{i}")).is_some());
        }
    }

    #[test]
    fn long_paths_and_names_are_refused_quoting_their_start() {
        let name = "n".repeat(MAX_NAME);
        let path = vec![name.as_str(); 16].join("/");
        assert_eq!(too_long(path.as_bytes()), None);
        let why = too_long(format!("{path}/x").as_bytes()).unwrap();
        assert!(why.contains("4097 bytes") && why.len() < 200, "{why}");
        let why = too_long(format!("a/{name}n/b").as_bytes()).unwrap();
        assert!(why.contains("a name of 256 bytes"), "{why}");
        assert!(too_long(b"usr/bin/env").is_none());
    }

    #[test]
    fn directories_are_counted_once_each() {
        let mut dirs = DirCounter::new();
        assert_eq!(dirs.add("a/b/c/file", false), 3);
        assert_eq!(dirs.add("a/b/d", true), 1);
        assert_eq!(dirs.add("a/b/d/e", false), 0);
        assert!(dirs.contains("a/b") && dirs.contains("a/b/d"));
        assert!(!dirs.contains("a/b/c/file") && !dirs.contains("a/b/e"));
        assert_eq!(dirs.deepest_known_ancestor("a/b/d/x/y"), Some(5));
        assert_eq!(dirs.deepest_known_ancestor("q/r"), None);
    }
}
