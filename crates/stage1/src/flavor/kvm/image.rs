//! The guest's boot files: the kernel as an uncompressed ELF `vmlinux`
//! (booted through its PVH entry: no decompression under TCG) and an
//! uncompressed initramfs holding the guest init (this very binary and the
//! shared libraries it runs with, none when it is static, as the project's
//! build links it) and the kernel modules the guest needs.
//! Built once per (kernel, stage1 binary) and cached in
//! `<data>/kvm/guest-<key>/`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::Stage1Error;
use crate::setup_err;

/// Bump when the initramfs layout changes, so old caches are not used.
const LAYOUT_VERSION: u32 = 2;

/// Modules the guest loads (with their dependencies, from modules.dep):
/// virtio over MMIO (microvm's transport), 9p over virtio (the app roots
/// and the pod share), virtio-net (pod networks), the virtio console (the
/// apps' stderr).
pub const MODULES: [&str; 5] = [
    "virtio_mmio",
    "9pnet_virtio",
    "9p",
    "virtio_net",
    "virtio_console",
];

/// A guest kernel and initramfs ready to boot.
#[derive(Debug, Clone)]
pub struct GuestImage {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// The kernel's release (`uname -r` inside the guest).
    pub release: String,
    /// `guest-<key>`: names this image in caches (e.g. the accel probe's).
    pub key: String,
}

/// The kernel to boot: `path` if given, else the newest /boot/vmlinuz-*.
pub fn find_kernel(path: Option<&str>) -> Result<(PathBuf, String), Stage1Error> {
    let kernel = match path {
        Some(p) => PathBuf::from(p),
        None => {
            let mut found: Vec<PathBuf> = std::fs::read_dir("/boot")
                .map(|d| {
                    d.filter_map(|e| e.ok())
                        .map(|e| e.path())
                        .filter(|p| {
                            p.file_name()
                                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
                        })
                        .collect()
                })
                .unwrap_or_default();
            found.sort_by(|a, b| version_order(a, b));
            found.pop().ok_or_else(|| {
                Stage1Error::Config(
                    "no guest kernel in /boot: install linux-image-amd64 (cargo xtask deps does) \
                     or give --stage1-opt=kernel=PATH"
                        .into(),
                )
            })?
        }
    };
    let release = kernel
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("vmlinuz-"))
        .map(str::to_string)
        .ok_or_else(|| {
            Stage1Error::Config(format!(
                "{}: a guest kernel must be named vmlinuz-<release> (its modules are in /lib/modules/<release>)",
                kernel.display()
            ))
        })?;
    Ok((kernel, release))
}

/// Orders vmlinuz-6.1.0-9 before vmlinuz-6.1.0-10.
fn version_order(a: &Path, b: &Path) -> std::cmp::Ordering {
    let key = |p: &Path| -> Vec<u64> {
        p.to_string_lossy()
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|s| s.parse().ok())
            .collect()
    };
    key(a).cmp(&key(b))
}

/// The cached image for `kernel`, built first if needed.
pub fn ensure(data_dir: &Path, kernel: &Path, release: &str) -> Result<GuestImage, Stage1Error> {
    let init = std::env::current_exe().map_err(setup_err("find the stage1 binary"))?;
    let key = cache_key(kernel, &init)?;
    let cache = data_dir.join("kvm");
    let dir = cache.join(format!("guest-{key}"));
    let image = GuestImage {
        kernel: dir.join("vmlinux"),
        initrd: dir.join("initrd.cpio"),
        release: release.to_string(),
        key: format!("guest-{key}"),
    };
    if dir.join("done").exists() {
        return Ok(image);
    }
    std::fs::create_dir_all(&cache).map_err(setup_err(format!("create {}", cache.display())))?;
    // Built aside and renamed into place: concurrent starts each build
    // their own and the first rename wins.
    let tmp = cache.join(format!(".tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(setup_err(format!("create {}", tmp.display())))?;
    let built = (|| {
        extract_vmlinux(kernel, &tmp.join("vmlinux"))?;
        write_initramfs(&init, release, &tmp.join("initrd.cpio"))?;
        std::fs::write(tmp.join("done"), "").map_err(setup_err("mark the guest image built"))
    })();
    if let Err(e) = built {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if std::fs::rename(&tmp, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
        if !dir.join("done").exists() {
            return Err(Stage1Error::Config(format!(
                "cannot put the guest image in place at {}",
                dir.display()
            )));
        }
    }
    remove_others(&cache, &image.key);
    Ok(image)
}

/// Removes the images (and accel verdicts) of other kernels or stage1
/// builds: a new one replaces them. VMs running from them are unaffected
/// (QEMU loaded the files at start).
fn remove_others(cache: &Path, key: &str) {
    let Ok(entries) = std::fs::read_dir(cache) else {
        return;
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("guest-") && name != key {
            let _ = std::fs::remove_dir_all(entry.path());
        } else if name.starts_with("accel-guest-") && name != format!("accel-{key}.json") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Names what the image is made of: the kernel and the init binary (by
/// path, size and modification time) and the layout version.
fn cache_key(kernel: &Path, init: &Path) -> Result<String, Stage1Error> {
    let mut hash = Sha256::new();
    hash.update(LAYOUT_VERSION.to_le_bytes());
    for file in [kernel, init] {
        let meta =
            std::fs::metadata(file).map_err(setup_err(format!("read {}", file.display())))?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        hash.update(file.as_os_str().as_encoded_bytes());
        hash.update(meta.len().to_le_bytes());
        hash.update(mtime.to_le_bytes());
    }
    let digest = hash.finalize();
    Ok(digest[..8].iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes the ELF kernel inside a bzImage: the payload named by the setup
/// header (boot protocol ≥ 2.08), decompressed.
fn extract_vmlinux(bzimage: &Path, out: &Path) -> Result<(), Stage1Error> {
    let bad = |why: &str| {
        Stage1Error::Config(format!(
            "{}: not a usable kernel image ({why})",
            bzimage.display()
        ))
    };
    let data = std::fs::read(bzimage).map_err(setup_err(format!("read {}", bzimage.display())))?;
    if data.get(0x202..0x206) != Some(b"HdrS") {
        return Err(bad("no bzImage setup header"));
    }
    let u32_at = |off: usize| -> Option<usize> {
        data.get(off..off + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let setup_sects = match data.get(0x1f1).copied() {
        Some(0) => 4,
        Some(n) => n as usize,
        None => return Err(bad("truncated")),
    };
    let start = (setup_sects + 1) * 512;
    let (offset, length) = u32_at(0x248)
        .zip(u32_at(0x24c))
        .ok_or_else(|| bad("truncated"))?;
    let payload = data
        .get(start + offset..start + offset + length)
        .ok_or_else(|| bad("payload outside the file"))?;
    let mut file =
        std::fs::File::create(out).map_err(setup_err(format!("create {}", out.display())))?;
    let copied = if payload.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        std::io::copy(&mut liblzma::read::XzDecoder::new(payload), &mut file)
    } else if payload.starts_with(&[0x1f, 0x8b]) {
        std::io::copy(&mut flate2::read::GzDecoder::new(payload), &mut file)
    } else {
        return Err(bad(
            "its payload is neither xz nor gzip; give an uncompressed vmlinux instead",
        ));
    };
    copied.map_err(setup_err(format!(
        "decompress the kernel of {}",
        bzimage.display()
    )))?;
    let mut head = [0u8; 4];
    std::fs::File::open(out)
        .and_then(|mut f| f.read_exact(&mut head))
        .map_err(setup_err(format!("read {}", out.display())))?;
    if &head != b"\x7fELF" {
        return Err(bad("the decompressed payload is not an ELF kernel"));
    }
    Ok(())
}

/// `names` and their dependencies, dependencies first, as paths relative
/// to the modules directory (from its modules.dep).
pub fn module_closure(modules_dep: &str, names: &[&str]) -> Result<Vec<String>, Stage1Error> {
    let deps: std::collections::HashMap<&str, Vec<&str>> = modules_dep
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(m, d)| (m.trim(), d.split_whitespace().collect()))
        .collect();
    let by_name = |name: &str| -> Option<&str> {
        let file = format!("/{}.ko", name.replace('-', "_"));
        deps.keys()
            .find(|m| format!("/{}", m.replace('-', "_")).ends_with(&file))
            .copied()
    };
    let mut order: Vec<String> = Vec::new();
    fn visit<'a>(
        m: &'a str,
        deps: &std::collections::HashMap<&'a str, Vec<&'a str>>,
        order: &mut Vec<String>,
    ) {
        if order.iter().any(|o| o == m) {
            return;
        }
        // modules.dep lists all dependencies already; load them first, in
        // their own dependency order.
        for d in deps.get(m).into_iter().flatten().rev() {
            visit(d, deps, order);
        }
        if !order.iter().any(|o| o == m) {
            order.push(m.to_string());
        }
    }
    for name in names {
        let m = by_name(name).ok_or_else(|| {
            Stage1Error::Config(format!(
                "the guest kernel has no module '{name}' (is it built in? then it is not needed)"
            ))
        })?;
        visit(m, &deps, &mut order);
    }
    Ok(order)
}

/// The newc cpio archive the kernel unpacks as the guest's first root.
struct Cpio<W: Write> {
    out: W,
    ino: u32,
}

impl<W: Write> Cpio<W> {
    fn entry(&mut self, name: &str, mode: u32, data: &[u8]) -> std::io::Result<()> {
        self.ino += 1;
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            0,
            0,
            name.len() + 1,
            0
        );
        self.out.write_all(header.as_bytes())?;
        self.out.write_all(name.as_bytes())?;
        self.out.write_all(&[0])?;
        self.pad(110 + name.len() + 1)?;
        self.out.write_all(data)?;
        self.pad(data.len())
    }

    fn pad(&mut self, len: usize) -> std::io::Result<()> {
        self.out.write_all(&[0u8; 3][..(4 - len % 4) % 4])
    }

    fn dir(&mut self, name: &str) -> std::io::Result<()> {
        self.entry(name, 0o040755, &[])
    }

    fn file(&mut self, name: &str, mode: u32, data: &[u8]) -> std::io::Result<()> {
        self.entry(name, 0o100000 | mode, data)
    }

    fn symlink(&mut self, name: &str, target: &str) -> std::io::Result<()> {
        self.entry(name, 0o120777, target.as_bytes())
    }

    fn finish(mut self) -> std::io::Result<W> {
        self.entry("TRAILER!!!", 0, &[])?;
        Ok(self.out)
    }
}

/// The shared libraries this process runs with (from its memory map):
/// the guest init needs the same ones (none for a static stage1).
fn loaded_libraries() -> Result<Vec<PathBuf>, Stage1Error> {
    let maps =
        std::fs::read_to_string("/proc/self/maps").map_err(setup_err("read /proc/self/maps"))?;
    let mut libs: Vec<PathBuf> = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|p| p.starts_with('/') && p.contains(".so"))
        .map(PathBuf::from)
        .collect();
    libs.sort();
    libs.dedup();
    Ok(libs)
}

/// The guest init binary without debug information (much smaller to load
/// under TCG) when `objcopy` is there, else as is.
fn init_binary(init: &Path, scratch: &Path) -> Result<Vec<u8>, Stage1Error> {
    let stripped = scratch.with_extension("init");
    let ok = std::process::Command::new("objcopy")
        .arg("--strip-debug")
        .arg(init)
        .arg(&stripped)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let source = if ok { stripped.as_path() } else { init };
    let data = std::fs::read(source).map_err(setup_err(format!("read {}", source.display())));
    let _ = std::fs::remove_file(&stripped);
    data
}

/// Writes the initramfs: /init, its libraries, the modules (numbered in
/// load order under /modules) and the mount points the init uses.
fn write_initramfs(init: &Path, release: &str, out: &Path) -> Result<(), Stage1Error> {
    let modules_dir = Path::new("/lib/modules").join(release);
    let dep_file = modules_dir.join("modules.dep");
    let modules_dep = std::fs::read_to_string(&dep_file).map_err(|e| {
        Stage1Error::Config(format!(
            "cannot read {}: {e} (the guest kernel's modules must be installed)",
            dep_file.display()
        ))
    })?;
    let modules = module_closure(&modules_dep, &MODULES)?;
    let file =
        std::fs::File::create(out).map_err(setup_err(format!("create {}", out.display())))?;
    let mut cpio = Cpio {
        out: std::io::BufWriter::new(file),
        ino: 0,
    };
    let io = |what: &str| setup_err(format!("write the initramfs ({what})"));
    for d in ["dev", "proc", "sys", "skiff", "newroot", "modules"] {
        cpio.dir(d).map_err(io(d))?;
    }
    cpio.file("init", 0o755, &init_binary(init, out)?)
        .map_err(io("init"))?;
    let mut made_dirs: Vec<String> = Vec::new();
    for lib in loaded_libraries()? {
        let name = lib.to_string_lossy().trim_start_matches('/').to_string();
        let mut parent = String::new();
        for part in name.split('/').take(name.split('/').count() - 1) {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(part);
            if !made_dirs.contains(&parent) {
                cpio.dir(&parent).map_err(io(&parent))?;
                made_dirs.push(parent.clone());
            }
        }
        let data = std::fs::read(&lib).map_err(setup_err(format!("read {}", lib.display())))?;
        cpio.file(&name, 0o755, &data).map_err(io(&name))?;
        // The program interpreter is found by its fixed path.
        if name.ends_with("/ld-linux-x86-64.so.2") && name != "lib64/ld-linux-x86-64.so.2" {
            if !made_dirs.iter().any(|d| d == "lib64") {
                cpio.dir("lib64").map_err(io("lib64"))?;
                made_dirs.push("lib64".into());
            }
            cpio.symlink("lib64/ld-linux-x86-64.so.2", &format!("/{name}"))
                .map_err(io("lib64"))?;
        }
    }
    for (i, m) in modules.iter().enumerate() {
        let path = modules_dir.join(m);
        let data = std::fs::read(&path).map_err(setup_err(format!("read {}", path.display())))?;
        let base = Path::new(m)
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        cpio.file(&format!("modules/{i:03}-{base}"), 0o644, &data)
            .map_err(io(m))?;
    }
    cpio.finish()
        .and_then(|mut w| w.flush())
        .map_err(io("trailer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/fscache/fscache.ko kernel/fs/netfs/netfs.ko
kernel/net/9p/9pnet.ko:
kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko
kernel/fs/netfs/netfs.ko:
kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko:
";

    #[test]
    fn modules_come_after_their_dependencies_once_each() {
        let order = module_closure(DEP, &["9pnet_virtio", "9p"]).unwrap();
        let pos = |m: &str| order.iter().position(|o| o.ends_with(m)).unwrap();
        assert!(pos("/9pnet.ko") < pos("/9pnet_virtio.ko"));
        assert!(pos("/virtio_ring.ko") < pos("/9pnet_virtio.ko"));
        assert!(pos("/netfs.ko") < pos("/fscache.ko"));
        assert!(pos("/fscache.ko") < pos("/9p.ko"));
        assert_eq!(order.len(), 7);
        let err = module_closure(DEP, &["nope"]).unwrap_err().to_string();
        assert!(err.contains("no module 'nope'"), "{err}");
    }

    #[test]
    fn cpio_entries_are_aligned_and_end_with_a_trailer() {
        let mut c = Cpio {
            out: Vec::new(),
            ino: 0,
        };
        c.dir("dev").unwrap();
        c.file("init", 0o755, b"abcde").unwrap();
        c.symlink("lib64/x", "/y").unwrap();
        let out = c.finish().unwrap();
        assert_eq!(out.len() % 4, 0);
        assert!(out.starts_with(b"070701"));
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("init\0"));
        assert!(text.contains("abcde"));
        assert!(text.contains("TRAILER!!!\0"));
        // The file's mode and size fields.
        assert!(text.contains(&format!("{:08x}", 0o100755)));
    }

    #[test]
    fn kernels_sort_by_version_numbers() {
        let mut v = [
            PathBuf::from("/boot/vmlinuz-6.1.0-10-amd64"),
            PathBuf::from("/boot/vmlinuz-6.1.0-9-amd64"),
        ];
        v.sort_by(|a, b| version_order(a, b));
        assert!(v[1].ends_with("vmlinuz-6.1.0-10-amd64"));
    }

    #[test]
    fn a_file_that_is_not_a_bzimage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let k = dir.path().join("vmlinuz-1");
        std::fs::write(&k, vec![0u8; 4096]).unwrap();
        let err = extract_vmlinux(&k, &dir.path().join("out"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no bzImage setup header"), "{err}");
    }
}
