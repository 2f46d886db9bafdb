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

/// Why `path` (an entry's path or link target) is refused, if it is: longer
/// than [`MAX_PATH`]. The message quotes only its start.
pub fn too_long(path: &[u8]) -> Option<String> {
    (path.len() > MAX_PATH).then(|| {
        let start = String::from_utf8_lossy(&path[..64]);
        format!(
            "a path of {} bytes ({:?}…): more than {MAX_PATH}, the most a path has on Linux",
            path.len(),
            start
        )
    })
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

    /// Calls `found(end, hash)` for each proper ancestor of `path` (its
    /// bytes up to `end`, a `/`), shortest first, then for `path` itself
    /// (`end` = its length); stops when `found` returns true.
    fn prefixes(&self, path: &str, mut found: impl FnMut(usize, u64) -> bool) {
        let mut hasher = self.keys.build_hasher();
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

    fn hash(&self, path: &str) -> u64 {
        let mut whole = 0;
        self.prefixes(path, |end, hash| {
            whole = hash;
            end == path.len()
        });
        whole
    }

    fn holds(&self, hash: u64, path: &str) -> bool {
        self.by_hash
            .get(&hash)
            .is_some_and(|paths| paths.iter().any(|p| &**p == path))
    }

    /// Adds `path`; false if it was there.
    pub fn insert(&mut self, path: &str) -> bool {
        let hash = self.hash(path);
        if self.holds(hash, path) {
            return false;
        }
        self.by_hash.entry(hash).or_default().push(path.into());
        true
    }

    pub fn contains(&self, path: &str) -> bool {
        self.holds(self.hash(path), path)
    }

    /// The shortest proper ancestor of `path` in the set.
    pub fn ancestor_of<'a>(&self, path: &'a str) -> Option<&'a str> {
        let mut hit = None;
        self.prefixes(path, |end, hash| {
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
    fn long_paths_are_refused_quoting_their_start() {
        assert_eq!(too_long(&[b'a'; MAX_PATH]), None);
        let why = too_long(&[b'a'; MAX_PATH + 1]).unwrap();
        assert!(why.contains("4097 bytes") && why.len() < 200, "{why}");
    }
}
