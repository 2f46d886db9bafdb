//! Rendering: an image and its dependencies unpacked into one tree,
//! `trees/<hex>/rootfs`, shared read-only by every pod that uses the image.
//!
//! The order and the rules are appc's reference renderer (`acirenderer`):
//! the image first, then its dependencies breadth-first; a path taken by an
//! upper image is never replaced by a lower one, nor written beneath an upper
//! non-directory; an image's `pathWhitelist` filters its own files and those
//! of everything below it.
//!
//! Every file is created relative to a directory fd opened with `openat2`
//! (`RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
//! RESOLVE_NO_XDEV`) and with `O_EXCL | O_NOFOLLOW`, so even an archive that
//! slipped past the import policy cannot write outside the tree. A tree is
//! built in a temporary directory and renamed into place when complete.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags, Timespec, Timestamps, UTIME_OMIT};
use skiff_spec::aci::{clean_path, decompress};
use skiff_spec::{ImageId, ImageManifest, parse_image_manifest};
use tar::EntryType;

use crate::lock::FileLock;
use crate::{Store, StoreError, io_err};

/// Most images a dependency graph may have (a cycle would otherwise loop).
const MAX_IMAGES: usize = 64;

/// One image of a render, in order.
#[derive(Debug, Clone)]
pub struct RenderLayer {
    pub id: ImageId,
    pub manifest: ImageManifest,
    level: u16,
}

/// What a dependency refers to and could not be found in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingDependency {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub image_id: Option<String>,
}

impl Store {
    fn manifest_of(&self, id: &ImageId) -> Result<ImageManifest, StoreError> {
        let rec = self
            .index()
            .image(id)?
            .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
        parse_image_manifest(&rec.manifest).map_err(|e| StoreError::Render {
            image: id.to_string(),
            reason: format!("stored manifest is invalid: {e}"),
        })
    }

    fn resolve_dependency(
        &self,
        dep: &skiff_spec::image::Dependency,
    ) -> Result<Result<ImageId, MissingDependency>, StoreError> {
        let labels: BTreeMap<String, String> = dep
            .labels
            .iter()
            .map(|l| (l.name.to_string(), l.value.clone()))
            .collect();
        let missing = || MissingDependency {
            name: dep.image_name.to_string(),
            labels: labels.clone(),
            image_id: dep.image_id.as_ref().map(ToString::to_string),
        };
        if let Some(hash) = &dep.image_id {
            let found = self.index().images_with_id_prefix(hash.as_str())?;
            return Ok(match found.into_iter().next() {
                Some(rec) => Ok(rec.id),
                None => Err(missing()),
            });
        }
        Ok(match self.find(dep.image_name.as_str(), &labels)? {
            Some(rec) => Ok(rec.id),
            None => Err(missing()),
        })
    }

    /// The images a render of `id` consists of, top first (appc's
    /// `createDepList`), or the dependencies missing from the store.
    pub fn dependency_layers(
        &self,
        id: &ImageId,
    ) -> Result<Result<Vec<RenderLayer>, Vec<MissingDependency>>, StoreError> {
        let mut layers = vec![RenderLayer {
            id: id.clone(),
            manifest: self.manifest_of(id)?,
            level: 0,
        }];
        let mut missing = Vec::new();
        let mut i = 0;
        while i < layers.len() {
            let (deps, level) = (layers[i].manifest.dependencies.clone(), layers[i].level);
            for dep in &deps {
                match self.resolve_dependency(dep)? {
                    Ok(dep_id) => {
                        if layers.len() >= MAX_IMAGES {
                            return Err(StoreError::Render {
                                image: id.to_string(),
                                reason: format!(
                                    "more than {MAX_IMAGES} images in the dependency graph (a cycle?)"
                                ),
                            });
                        }
                        let manifest = self.manifest_of(&dep_id)?;
                        // Each dependency goes right after its dependent, so
                        // the last listed ends up first (as acirenderer does).
                        layers.insert(
                            i + 1,
                            RenderLayer {
                                id: dep_id,
                                manifest,
                                level: level + 1,
                            },
                        );
                    }
                    Err(m) => missing.push(m),
                }
            }
            i += 1;
        }
        Ok(if missing.is_empty() {
            Ok(layers)
        } else {
            Err(missing)
        })
    }

    /// Renders `id` (and its dependencies, which must be in the store) into
    /// `trees/<hex>`, unless already rendered.
    pub fn render(&self, id: &ImageId) -> Result<RenderedTree, StoreError> {
        let _step = tracing::debug_span!("render", image = %id.short()).entered();
        let layout = self.layout();
        let tree = layout.tree(id);
        let ready = tree.join("ready");
        if ready.exists() {
            self.index().touch(id)?;
            return Ok(RenderedTree { dir: tree });
        }
        let lock_path = layout.tree_lock(id);
        let _lock = FileLock::exclusive(&lock_path).map_err(io_err("lock", &lock_path))?;
        if ready.exists() {
            return Ok(RenderedTree { dir: tree });
        }
        let layers = match self.dependency_layers(id)? {
            Ok(layers) => {
                // Kept from gc while their blobs are read.
                if let Some(gone) = self.pin_all(layers.iter().map(|l| &l.id))? {
                    return Err(StoreError::NotFound(gone.to_string()));
                }
                layers
            }
            Err(missing) => {
                let names: Vec<String> = missing
                    .iter()
                    .map(|m| m.image_id.clone().unwrap_or_else(|| m.name.clone()))
                    .collect();
                return Err(StoreError::Render {
                    image: id.to_string(),
                    reason: format!(
                        "dependencies not in the store: {} (fetch them first)",
                        names.join(", ")
                    ),
                });
            }
        };
        let work = layout
            .trees()
            .join(format!(".render-{}-{}", id.hex(), std::process::id()));
        let _ = std::fs::remove_dir_all(&work);
        let result = (|| -> Result<(), StoreError> {
            std::fs::create_dir_all(work.join("rootfs")).map_err(io_err("create", &work))?;
            let rootfs = work.join("rootfs");
            let root = rustix::fs::open(
                &rootfs,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| io_err("open", &rootfs)(e.into()))?;
            extract_layers(self, &layers, root, Privileges::Kept)?;
            let deps: Vec<&str> = layers.iter().map(|l| l.id.as_str()).collect();
            std::fs::write(work.join("images"), deps.join("\n") + "\n")
                .map_err(io_err("write", &work))?;
            std::fs::write(work.join("ready"), b"").map_err(io_err("write", &work))?;
            // On disk before it is in place: after a power loss a tree is
            // whole or still `.render-*` (gc removes it), never a `ready`
            // tree of empty files.
            let dir = File::open(&work).map_err(io_err("open", &work))?;
            rustix::fs::syncfs(&dir).map_err(|e| io_err("sync", &work)(e.into()))?;
            if tree.exists() {
                std::fs::remove_dir_all(&tree)
                    .map_err(io_err("remove the unfinished tree", &tree))?;
            }
            std::fs::rename(&work, &tree).map_err(io_err("move into place", &tree))?;
            crate::records::sync_dir(&layout.trees())
        })();
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&work);
        }
        result?;
        self.index().touch(id)?;
        Ok(RenderedTree { dir: tree })
    }
}

/// A rendered image: `trees/<hex>`, complete (its `ready` marker is
/// written last): the root filesystem of the image over its dependencies,
/// and the list of the images whose layers make it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedTree {
    dir: PathBuf,
}

impl RenderedTree {
    /// The tree's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The image's root filesystem.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    /// The IDs of the images whose layers make the tree (dependencies
    /// first, the image last).
    pub fn images(&self) -> Result<Vec<String>, StoreError> {
        let path = self.dir.join("images");
        let text = std::fs::read_to_string(&path).map_err(io_err("read", &path))?;
        Ok(text.lines().map(str::to_string).collect())
    }
}

fn whitelist(manifest: &ImageManifest) -> Option<HashSet<String>> {
    if manifest.path_whitelist.is_empty() {
        return None;
    }
    Some(
        manifest
            .path_whitelist
            .iter()
            .map(|p| clean_path(&format!("rootfs/{p}")))
            .collect(),
    )
}

/// The whitelist of the nearest upper image that has one (acirenderer's
/// `getUpperPWLM`).
fn upper_whitelist(layers: &[RenderLayer], pos: usize) -> Option<HashSet<String>> {
    let mut result = None;
    let mut level = layers[pos].level;
    for layer in layers[..=pos].iter().rev() {
        if layer.level < level && !layer.manifest.path_whitelist.is_empty() {
            result = whitelist(&layer.manifest);
        }
        level = layer.level;
    }
    result
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    NonDir,
}

struct DirMeta {
    path: String,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
}

/// Whose the files of a rendered tree are.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owners {
    /// As in the image: root, or root of a user namespace that maps these
    /// ranges of ids (first id inside, count), as an ordinary user's
    /// namespace maps its subordinate ids (docs/rootless.md).
    Kept {
        uids: Vec<(u32, u32)>,
        gids: Vec<(u32, u32)>,
    },
    /// This process's, all of them: an ordinary user, or a namespace of a
    /// single id, cannot give files away.
    Own,
}

impl Owners {
    fn of_this_process() -> Owners {
        if !rustix::process::geteuid().is_root() {
            return Owners::Own;
        }
        let read = |file: &str| std::fs::read_to_string(file).unwrap_or_default();
        let (uids, gids) = (
            id_ranges(&read("/proc/self/uid_map")),
            id_ranges(&read("/proc/self/gid_map")),
        );
        let ids = |r: &[(u32, u32)]| r.iter().map(|(_, n)| u64::from(*n)).sum::<u64>();
        if ids(&uids) <= 1 || ids(&gids) <= 1 {
            return Owners::Own;
        }
        Owners::Kept { uids, gids }
    }

    /// Whether to give a file to `uid`:`gid`; an id the namespace does not
    /// map is an error that says how to get it mapped.
    fn give(&self, path: &str, uid: u64, gid: u64) -> io::Result<bool> {
        let Owners::Kept { uids, gids } = self else {
            return Ok(false);
        };
        let mapped = |ranges: &[(u32, u32)], id: u64| {
            ranges
                .iter()
                .any(|(first, n)| id >= u64::from(*first) && id < u64::from(*first) + u64::from(*n))
        };
        if mapped(uids, uid) && mapped(gids, gid) {
            return Ok(true);
        }
        Err(io::Error::other(format!(
            "{path} is owned by {uid}:{gid}, an id this user's namespace does not map (it has this user's id and subordinate ids 1-65535; an image whose files have higher ids needs a larger range in /etc/subuid and /etc/subgid)"
        )))
    }
}

/// The ranges (first id inside, count) of a /proc/<pid>/uid_map text.
fn id_ranges(map: &str) -> Vec<(u32, u32)> {
    map.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace().map(|v| v.parse::<u32>().ok());
            let (inside, _outside, count) = (f.next()??, f.next()??, f.next()??);
            Some((inside, count))
        })
        .collect()
}

/// Whether files keep the privileges an image gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Privileges {
    /// setuid/setgid bits and file capabilities as in the image: trees in
    /// the store (a 0700 data directory; pods decide with --allow-setuid).
    Kept,
    /// Dropped: a tree extracted to a path of the user's, which other
    /// local users may reach (a setuid shell there would be theirs to run).
    Dropped,
}

struct Extractor {
    root: OwnedFd,
    owners: Owners,
    privileges: Privileges,
    all: HashMap<String, Kind>,
    /// The entries of `all` that are not directories, for the ancestor
    /// check (one pass over each path).
    non_dirs: skiff_spec::aci::paths::PathSet,
    /// Every directory made: named by an entry or a parent of one.
    made_dirs: skiff_spec::aci::paths::DirCounter,
    dirs: Vec<DirMeta>,
}

/// Unpacks `layers` into the directory `root` (an fd: everything below it
/// is made with `openat`-family calls that never follow a symlink).
fn extract_layers(
    store: &Store,
    layers: &[RenderLayer],
    root: std::os::fd::OwnedFd,
    privileges: Privileges,
) -> Result<(), StoreError> {
    let mut ex = Extractor {
        root,
        owners: Owners::of_this_process(),
        privileges,
        all: HashMap::new(),
        non_dirs: skiff_spec::aci::paths::PathSet::new(),
        made_dirs: skiff_spec::aci::paths::DirCounter::new(),
        dirs: Vec::new(),
    };
    let total = layers
        .iter()
        .filter_map(|l| std::fs::metadata(store.blob_path(&l.id)).ok())
        .map(|m| m.len())
        .sum();
    let what = layers
        .first()
        .map_or_else(String::new, |l| format!("rendering {}", l.manifest.name));
    let bar = skiff_io::progress::bar(store.progress, &what, Some(total));
    for (pos, layer) in layers.iter().enumerate() {
        let upper = upper_whitelist(layers, pos);
        let own = whitelist(&layer.manifest);
        let blob = store.blob_path(&layer.id);
        let file = File::open(&blob).map_err(io_err("read", &blob))?;
        let render_err = |reason: String| StoreError::Render {
            image: layer.id.to_string(),
            reason,
        };
        let stream = decompress(BufReader::with_capacity(1 << 16, bar.wrap_read(file)))
            .map_err(|e| render_err(e.to_string()))?;
        let mut archive = tar::Archive::new(stream);
        let entries = archive.entries().map_err(|e| render_err(e.to_string()))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| render_err(format!("corrupt archive: {e}")))?;
            let name = clean_path(&String::from_utf8_lossy(&entry.path_bytes()));
            let Some(rel) = name.strip_prefix("rootfs/") else {
                continue;
            };
            let kind = entry.header().entry_type();
            // A PAX global header is no file (the tar reader reads local
            // ones itself).
            if kind.is_pax_global_extensions() || kind.is_pax_local_extensions() {
                continue;
            }
            // Where an upper image made a directory (a parent of its
            // entries, with or without an entry of its own), a lower
            // image's file or symlink does not go.
            if !kind.is_dir() && ex.made_dirs.contains(rel) {
                continue;
            }
            if !kind.is_dir()
                && let Some(own) = &own
                && !own.contains(&name)
            {
                continue;
            }
            if let Some(upper) = &upper
                && !upper.contains(&name)
            {
                continue;
            }
            if ex.all.contains_key(rel) || ex.under_non_dir(rel) {
                continue;
            }
            ex.add(&mut entry, rel)
                .map_err(|source| StoreError::RenderIo {
                    image: layer.id.to_string(),
                    what: format!("cannot create '{name}'"),
                    source,
                })?;
            ex.made_dirs.add(rel, kind.is_dir());
        }
    }
    ex.finish_dirs().map_err(|e| StoreError::Render {
        image: layers.first().map_or(String::new(), |l| l.id.to_string()),
        reason: format!("cannot set directory metadata: {e}"),
    })
}

fn split_parent(rel: &str) -> (&str, &str) {
    match rel.rfind('/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => ("", rel),
    }
}

fn beneath() -> ResolveFlags {
    ResolveFlags::BENEATH
        | ResolveFlags::NO_SYMLINKS
        | ResolveFlags::NO_MAGICLINKS
        | ResolveFlags::NO_XDEV
}

fn mtime_stamp(secs: u64) -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: 0,
            tv_nsec: UTIME_OMIT,
        },
        last_modification: Timespec {
            tv_sec: secs as i64,
            tv_nsec: 0,
        },
    }
}

impl Extractor {
    fn under_non_dir(&self, rel: &str) -> bool {
        self.non_dirs.ancestor_of(rel).is_some()
    }

    /// Opens (creating missing directories) the directory `rel` beneath
    /// the root: one lookup when it exists, else one step per component
    /// (a missing chain of N directories costs N steps, not N²).
    fn dir(&self, rel: &str) -> io::Result<OwnedFd> {
        if rel.is_empty() {
            return Ok(rustix::io::fcntl_dupfd_cloexec(&self.root, 0)?);
        }
        let how = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        match rustix::fs::openat2(&self.root, rel, how, Mode::empty(), beneath()) {
            Ok(fd) => Ok(fd),
            Err(rustix::io::Errno::NOENT) => {
                // The deepest ancestor made so far (known without a
                // system call), then the missing tail one component at a
                // time; if that ancestor cannot be opened, the deepest that
                // exists.
                let mut base = self
                    .made_dirs
                    .deepest_known_ancestor(&format!("{rel}/"))
                    .and_then(|end| {
                        rustix::fs::openat2(&self.root, &rel[..end], how, Mode::empty(), beneath())
                            .ok()
                            .map(|fd| (fd, end + 1))
                    });
                for (end, _) in rel.rmatch_indices('/') {
                    if base.is_some() {
                        break;
                    }
                    match rustix::fs::openat2(
                        &self.root,
                        &rel[..end],
                        how,
                        Mode::empty(),
                        beneath(),
                    ) {
                        Ok(fd) => {
                            base = Some((fd, end + 1));
                            break;
                        }
                        Err(rustix::io::Errno::NOENT) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                let (mut fd, start) = match base {
                    Some(found) => found,
                    None => (rustix::io::fcntl_dupfd_cloexec(&self.root, 0)?, 0),
                };
                for name in rel[start..].split('/') {
                    match rustix::fs::mkdirat(&fd, name, Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    fd = rustix::fs::openat2(&fd, name, how, Mode::empty(), beneath())?;
                }
                Ok(fd)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn add<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>, rel: &str) -> io::Result<()> {
        let header = entry.header().clone();
        let kind = header.entry_type();
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        let (uid, gid) = (header.uid().unwrap_or(0), header.gid().unwrap_or(0));
        let mtime = header.mtime().unwrap_or(0);
        let (parent, name) = split_parent(rel);
        let dir = self.dir(parent)?;
        let owner = |fd: &OwnedFd, name: &str, follow: AtFlags| -> io::Result<()> {
            if self.owners.give(rel, uid, gid)? {
                rustix::fs::chownat(
                    fd,
                    name,
                    Some(rustix::fs::Uid::from_raw(uid as u32)),
                    Some(rustix::fs::Gid::from_raw(gid as u32)),
                    follow,
                )?;
            }
            Ok(())
        };
        match kind {
            EntryType::Directory => {
                match rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(e.into()),
                }
                // Fails if `name` exists as a non-directory or a symlink.
                drop(rustix::fs::openat2(
                    &dir,
                    name,
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                    beneath(),
                )?);
                self.dirs.push(DirMeta {
                    path: rel.to_string(),
                    mode,
                    uid,
                    gid,
                    mtime,
                });
                self.all.insert(rel.to_string(), Kind::Dir);
                return Ok(());
            }
            EntryType::Regular | EntryType::Continuous => {
                let fd = rustix::fs::openat(
                    &dir,
                    name,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )?;
                let mut file = File::from(fd);
                io::copy(entry, &mut file)?;
                let mut attributes = xattrs(entry)?;
                let mut mode = mode;
                if self.privileges == Privileges::Dropped {
                    mode &= !0o6000;
                    attributes.retain(|(key, _)| key != "security.capability");
                }
                if self.owners.give(rel, uid, gid)? {
                    rustix::fs::fchown(
                        &file,
                        Some(rustix::fs::Uid::from_raw(uid as u32)),
                        Some(rustix::fs::Gid::from_raw(gid as u32)),
                    )?;
                }
                // After chown, which clears setuid bits and file
                // capabilities (security.capability).
                rustix::fs::fchmod(&file, Mode::from_raw_mode(mode))?;
                for (key, value) in attributes {
                    rustix::fs::fsetxattr(
                        file.as_fd(),
                        key.as_str(),
                        &value,
                        rustix::fs::XattrFlags::empty(),
                    )?;
                }
                rustix::fs::futimens(&file, &mtime_stamp(mtime))?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|b| b.into_owned())
                    .unwrap_or_default();
                rustix::fs::symlinkat(
                    std::os::unix::ffi::OsStrExt::from_bytes(&target) as &OsStr,
                    &dir,
                    name,
                )?;
                owner(&dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
                rustix::fs::utimensat(&dir, name, &mtime_stamp(mtime), AtFlags::SYMLINK_NOFOLLOW)?;
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                let target = clean_path(&target);
                let Some(target_rel) = target.strip_prefix("rootfs/") else {
                    return Err(io::Error::other(format!(
                        "hard link to '{target}' outside the rootfs"
                    )));
                };
                if self.all.get(target_rel) != Some(&Kind::NonDir) {
                    // Its target was left out (an upper image's directory
                    // or whitelist won): so is the link, as the converter
                    // does. (Import made sure it was a file of its image.)
                    return Ok(());
                }
                let (tparent, tname) = split_parent(target_rel);
                let tdir = self.dir(tparent)?;
                rustix::fs::linkat(&tdir, tname, &dir, name, AtFlags::empty())?;
            }
            EntryType::Fifo | EntryType::Char | EntryType::Block => {
                let (file_type, dev) = match kind {
                    EntryType::Fifo => (rustix::fs::FileType::Fifo, 0),
                    EntryType::Char => (rustix::fs::FileType::CharacterDevice, device(&header)),
                    _ => (rustix::fs::FileType::BlockDevice, device(&header)),
                };
                rustix::fs::mknodat(&dir, name, file_type, Mode::from_raw_mode(mode), dev)?;
                owner(&dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
            }
            other => {
                return Err(io::Error::other(format!(
                    "unsupported entry type {other:?}"
                )));
            }
        }
        self.all.insert(rel.to_string(), Kind::NonDir);
        self.non_dirs.insert(rel);
        Ok(())
    }

    /// Directory modes, owners and times last, deepest first, so that
    /// restrictive modes do not block their children.
    fn finish_dirs(&mut self) -> io::Result<()> {
        self.dirs.sort_by(|a, b| b.path.cmp(&a.path));
        for d in &self.dirs {
            let (parent, name) = split_parent(&d.path);
            let dir = self.dir(parent)?;
            if self.owners.give(&d.path, d.uid, d.gid)? {
                rustix::fs::chownat(
                    &dir,
                    name,
                    Some(rustix::fs::Uid::from_raw(d.uid as u32)),
                    Some(rustix::fs::Gid::from_raw(d.gid as u32)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )?;
            }
            rustix::fs::chmodat(&dir, name, Mode::from_raw_mode(d.mode), AtFlags::empty())?;
            rustix::fs::utimensat(&dir, name, &mtime_stamp(d.mtime), AtFlags::SYMLINK_NOFOLLOW)?;
        }
        Ok(())
    }
}

fn device(header: &tar::Header) -> rustix::fs::Dev {
    let major = header.device_major().ok().flatten().unwrap_or(0);
    let minor = header.device_minor().ok().flatten().unwrap_or(0);
    rustix::fs::makedev(major, minor)
}

/// `SCHILY.xattr.*` PAX records of an entry.
fn xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Vec<(String, Vec<u8>)>> {
    let Some(pax) = entry.pax_extensions()? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for ext in pax {
        let ext = ext?;
        if let Ok(key) = ext.key()
            && let Some(name) = key.strip_prefix("SCHILY.xattr.")
        {
            out.push((name.to_string(), ext.value_bytes().to_vec()));
        }
    }
    Ok(out)
}

impl Store {
    /// Unpacks `id` (alone, or rendered with its dependencies) into `dest`,
    /// which must not exist or be empty: `dest/manifest` and `dest/rootfs`,
    /// or only the root filesystem with `rootfs_only`.
    pub fn extract_to(
        &self,
        id: &ImageId,
        dest: &Path,
        with_dependencies: bool,
        rootfs_only: bool,
    ) -> Result<(), StoreError> {
        // The destination is the user's path, as given; everything in it is
        // made relative to it without following symlinks (another user who
        // can write there cannot redirect the extraction).
        std::fs::create_dir_all(dest).map_err(io_err("create", dest))?;
        let dir = rustix::fs::open(
            dest,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_err("open", dest)(e.into()))?;
        let listing =
            rustix::fs::Dir::read_from(&dir).map_err(|e| io_err("list", dest)(e.into()))?;
        let not_empty = listing.filter_map(Result::ok).any(|entry| {
            let name = entry.file_name().to_bytes();
            name != b"." && name != b".."
        });
        if not_empty {
            return Err(StoreError::Render {
                image: id.to_string(),
                reason: format!("{} exists and is not empty", dest.display()),
            });
        }
        let layers = if with_dependencies {
            match self.dependency_layers(id)? {
                Ok(layers) => layers,
                Err(missing) => {
                    return Err(StoreError::Render {
                        image: id.to_string(),
                        reason: format!(
                            "{} dependencies are not in the store (fetch them first)",
                            missing.len()
                        ),
                    });
                }
            }
        } else {
            vec![RenderLayer {
                id: id.clone(),
                manifest: self.manifest_of(id)?,
                level: 0,
            }]
        };
        let nofollow = OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let root = if rootfs_only {
            rustix::fs::openat(
                &dir,
                ".",
                OFlags::PATH | OFlags::DIRECTORY | nofollow,
                Mode::empty(),
            )
        } else {
            let rec = self
                .index()
                .image(id)?
                .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
            let path = dest.join("manifest");
            let manifest = rustix::fs::openat(
                &dir,
                "manifest",
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | nofollow,
                Mode::from_raw_mode(0o644),
            )
            .map_err(|e| io_err("create", &path)(e.into()))?;
            std::io::Write::write_all(&mut File::from(manifest), &rec.manifest)
                .map_err(io_err("write", &path))?;
            rustix::fs::mkdirat(&dir, "rootfs", Mode::from_raw_mode(0o755)).and_then(|()| {
                rustix::fs::openat(
                    &dir,
                    "rootfs",
                    OFlags::PATH | OFlags::DIRECTORY | nofollow,
                    Mode::empty(),
                )
            })
        }
        .map_err(|e| io_err("create", &dest.join("rootfs"))(e.into()))?;
        extract_layers(self, &layers, root, Privileges::Dropped)
    }
}

#[cfg(test)]
mod owner_tests {
    use super::*;

    #[test]
    fn owners_are_kept_only_where_the_namespace_maps_them() {
        assert_eq!(
            id_ranges("         0          0 4294967295\n"),
            [(0, u32::MAX)]
        );
        let rootless = id_ranges("0 1000 1\n1 100000 65535\n");
        assert_eq!(rootless, [(0, 1), (1, 65535)]);
        let owners = Owners::Kept {
            uids: rootless.clone(),
            gids: rootless,
        };
        assert!(owners.give("etc/passwd", 0, 0).unwrap());
        assert!(owners.give("home/app", 1000, 65535).unwrap());
        let err = owners.give("opt/x", 70000, 0).unwrap_err().to_string();
        assert!(err.contains("opt/x is owned by 70000:0"), "{err}");
        assert!(!Owners::Own.give("a", 5, 5).unwrap());
    }
}
