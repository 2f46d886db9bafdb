//! Reading an image's package databases: from a rendered tree (each file
//! opened inside the tree with `RESOLVE_IN_ROOT`, so an image's symlink
//! cannot make skiff read a host file) or straight from an ACI's tar.

use std::io::Read;
use std::path::Path;

use crate::packages::{parse_apk, parse_dpkg, parse_os_release};
use crate::{AuditError, Inventory};

/// Largest package database file read.
const MAX_FILE: u64 = 64 << 20;

/// Largest executable searched for Go build information.
const MAX_BINARY: u64 = 512 << 20;

/// Go modules of the executable ELF files under `dir` (symlinks are not
/// followed; the tree is the store's own).
fn go_modules_in(dir: &Path, out: &mut Vec<crate::Package>) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let Ok(meta) = e.path().symlink_metadata() else {
            continue;
        };
        if meta.is_dir() {
            go_modules_in(&e.path(), out);
        } else if meta.is_file()
            && meta.permissions().mode() & 0o111 != 0
            && meta.len() <= MAX_BINARY
        {
            let mut head = [0u8; 4];
            let Ok(mut f) = std::fs::File::open(e.path()) else {
                continue;
            };
            if f.read_exact(&mut head).is_ok() && &head == b"\x7fELF" {
                let mut bytes = head.to_vec();
                if f.read_to_end(&mut bytes).is_ok() {
                    out.extend(crate::gobuild::modules(&bytes));
                    out.extend(crate::gobuild::crates(&bytes));
                }
            }
        }
    }
}

const OS_RELEASE: &[&str] = &["etc/os-release", "usr/lib/os-release"];
const DPKG_STATUS: &str = "var/lib/dpkg/status";
const DPKG_STATUS_D: &str = "var/lib/dpkg/status.d/";
const APK_INSTALLED: &str = "lib/apk/db/installed";
const RPMDB: &[&str] = &[
    "var/lib/rpm/rpmdb.sqlite",
    "usr/lib/sysimage/rpm/rpmdb.sqlite",
];

fn finish(mut inv: Inventory) -> Inventory {
    inv.packages.sort();
    inv.packages.dedup();
    inv
}

/// Reads `rel` inside `root` without ever leaving it.
fn read_in_root(root: &std::fs::File, rel: &str) -> Option<String> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let fd = rustix::fs::openat2(
        root,
        rel,
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV,
    )
    .ok()?;
    let mut text = String::new();
    std::fs::File::from(fd)
        .take(MAX_FILE)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

/// The inventory of a rendered tree (a root filesystem directory).
pub fn from_tree(root: &Path) -> Result<Inventory, AuditError> {
    let dir = std::fs::File::open(root).map_err(skiff_io::io_err_at("open", root))?;
    let mut inv = Inventory {
        distro: OS_RELEASE
            .iter()
            .find_map(|p| read_in_root(&dir, p).and_then(|t| parse_os_release(&t))),
        packages: Vec::new(),
    };
    if let Some(t) = read_in_root(&dir, DPKG_STATUS) {
        inv.packages.extend(parse_dpkg(&t));
    }
    if let Ok(entries) = std::fs::read_dir(root.join(DPKG_STATUS_D)) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(t) = read_in_root(&dir, &format!("{DPKG_STATUS_D}{name}")) {
                inv.packages.extend(parse_dpkg(&t));
            }
        }
    }
    if let Some(t) = read_in_root(&dir, APK_INSTALLED) {
        inv.packages.extend(parse_apk(&t));
    }
    for db in RPMDB {
        // Opened inside the root; SQLite reads it through the fd.
        use rustix::fs::{Mode, OFlags, ResolveFlags};
        if let Ok(fd) = rustix::fs::openat2(
            &dir,
            *db,
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV,
        ) {
            let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
            inv.packages
                .extend(crate::rpm::parse_rpmdb(Path::new(&path)));
        }
    }
    go_modules_in(root, &mut inv.packages);
    Ok(finish(inv))
}

/// The inventory of an ACI file (the image alone, without dependencies).
pub fn from_aci(path: &Path) -> Result<Inventory, AuditError> {
    let io = |action: &str| skiff_io::io_err_at(action, path);
    let mut file = std::fs::File::open(path).map_err(io("open"))?;
    let mut magic = [0u8; 6];
    let n = file.read(&mut magic).map_err(io("read"))?;
    let file = std::fs::File::open(path).map_err(io("open"))?;
    let reader = std::io::BufReader::new(file);
    let input: Box<dyn Read> = match &magic[..n] {
        [0x1f, 0x8b, ..] => Box::new(flate2::read::GzDecoder::new(reader)),
        [0xfd, b'7', b'z', b'X', b'Z', 0x00] => Box::new(liblzma::read::XzDecoder::new(reader)),
        [b'B', b'Z', b'h', ..] => Box::new(bzip2::read::BzDecoder::new(reader)),
        _ => Box::new(reader),
    };
    // Untrusted: the tar reader is kept from holding a huge extended record.
    let mut archive = tar::Archive::new(skiff_spec::aci::inflation::ExtensionWatch::new(input));
    let bad = |e: std::io::Error| {
        AuditError::Image(format!("{}: not a readable ACI: {e}", path.display()))
    };
    let mut inv = Inventory::default();
    let mut os_release: Vec<(usize, String)> = Vec::new();
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let Some(rel) = raw.trim_start_matches("./").strip_prefix("rootfs/") else {
            continue;
        };
        let executable = entry.header().mode().is_ok_and(|m| m & 0o111 != 0);
        if executable && entry.size() > 4 && entry.size() <= MAX_BINARY {
            let mut head = [0u8; 4];
            if entry.read_exact(&mut head).is_ok() && &head == b"\x7fELF" {
                let mut bytes = head.to_vec();
                entry.read_to_end(&mut bytes).map_err(bad)?;
                inv.packages.extend(crate::gobuild::modules(&bytes));
                inv.packages.extend(crate::gobuild::crates(&bytes));
            }
            continue;
        }
        let rel = rel.to_string();
        if RPMDB.contains(&rel.as_str()) {
            // SQLite needs a file: copy it out (size-limited).
            let mut tmp = tempfile::NamedTempFile::new().map_err(bad)?;
            std::io::copy(&mut (&mut entry).take(MAX_BINARY), tmp.as_file_mut()).map_err(bad)?;
            inv.packages.extend(crate::rpm::parse_rpmdb(tmp.path()));
            continue;
        }
        let wanted = rel == DPKG_STATUS
            || rel == APK_INSTALLED
            || OS_RELEASE.contains(&rel.as_str())
            || (rel.starts_with(DPKG_STATUS_D) && !rel[DPKG_STATUS_D.len()..].contains('/'));
        if !wanted {
            continue;
        }
        let mut text = String::new();
        (&mut entry)
            .take(MAX_FILE)
            .read_to_string(&mut text)
            .map_err(bad)?;
        if rel == APK_INSTALLED {
            inv.packages.extend(parse_apk(&text));
        } else if let Some(rank) = OS_RELEASE.iter().position(|p| *p == rel) {
            os_release.push((rank, text));
        } else {
            inv.packages.extend(parse_dpkg(&text));
        }
    }
    os_release.sort();
    inv.distro = os_release.iter().find_map(|(_, t)| parse_os_release(t));
    Ok(finish(inv))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_symlink_in_the_image_cannot_reach_host_files() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(
            outside.path().join("status"),
            "Package: host-secret\nVersion: 1\n",
        )
        .unwrap();
        std::fs::create_dir_all(root.path().join("var/lib/dpkg")).unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("status"),
            root.path().join("var/lib/dpkg/status"),
        )
        .unwrap();
        std::fs::create_dir_all(root.path().join("etc")).unwrap();
        std::fs::write(
            root.path().join("etc/os-release"),
            "ID=debian\nVERSION_ID=\"12\"\n",
        )
        .unwrap();
        let inv = from_tree(root.path()).unwrap();
        assert!(inv.packages.is_empty(), "{:?}", inv.packages);
        assert_eq!(inv.distro, Some(("debian".into(), "12".into())));
    }
}
