//! A container's cgroup: `linux.cgroupsPath` (absolute: from each
//! hierarchy's root; relative: below the caller's own cgroup; systemd's
//! `slice:prefix:name`: the slice's path, with `--systemd-cgroup`) on
//! cgroup v1 (every mounted hierarchy, as runc joins them) or v2 (one
//! directory, controllers enabled on the way down). The layout is
//! detected by `skiff_stage1::cgroups::detect` (a hybrid host counts as v1);
//! device rules use `skiff_stage1::devices` (v1 lines, v2 programs).

use std::fs::File;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxResources};
use skiff_stage1::cgroups::{self as host, Hierarchy};

use crate::{Result, RuntimeError, io_err};

/// The directories of one container's cgroup.
#[derive(Debug, Clone, Default)]
pub struct Cgroup {
    pub dirs: Vec<PathBuf>,
    v2: bool,
}

/// A v1 hierarchy: where it is mounted and what it carries.
#[derive(Debug, Clone)]
struct V1 {
    mount: PathBuf,
    /// The controllers (or `name=…`) as /proc/self/cgroup names them.
    controllers: String,
}

fn v1_hierarchies() -> Vec<V1> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for line in info.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut r = right.split(' ');
        if r.next() != Some("cgroup") {
            continue;
        }
        let super_opts = r.nth(1).unwrap_or("");
        let controllers: Vec<&str> = super_opts
            .split(',')
            .filter(|o| {
                !matches!(*o, "rw" | "ro" | "xattr" | "clone_children" | "noprefix")
                    && !o.starts_with("release_agent")
            })
            .collect();
        let Some(mount) = left.split(' ').nth(4) else {
            continue;
        };
        if controllers.is_empty() || !mount.starts_with(host::ROOT) {
            continue;
        }
        found.push(V1 {
            mount: PathBuf::from(mount),
            controllers: controllers.join(","),
        });
    }
    found
}

/// The caller's cgroup in the hierarchy named `controllers` ("" for v2).
fn own_cgroup(controllers: &str) -> PathBuf {
    let text = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, c, path) = (parts.next(), parts.next(), parts.next());
        let (Some(c), Some(path)) = (c, path) else {
            continue;
        };
        let same = if controllers.is_empty() {
            c.is_empty()
        } else {
            let mut a: Vec<&str> = c.split(',').collect();
            let mut b: Vec<&str> = controllers.split(',').collect();
            a.sort_unstable();
            b.sort_unstable();
            a == b
        };
        if same {
            return PathBuf::from(path);
        }
    }
    PathBuf::from("/")
}

/// systemd's `slice:prefix:name` as a cgroup path: `a-b.slice:docker:id`
/// is `/a.slice/a-b.slice/docker-id.scope`.
fn systemd_path(spec: &str) -> Result<PathBuf> {
    let parts: Vec<&str> = spec.split(':').collect();
    let [slice, prefix, name] = parts[..] else {
        return Err(RuntimeError::Invalid(format!(
            "cgroupsPath '{spec}' is not systemd's 'slice:prefix:name'"
        )));
    };
    let bad = |s: &str| s.contains('/') || s == "." || s == "..";
    if [slice, prefix, name].iter().any(|s| bad(s)) {
        return Err(RuntimeError::Invalid(format!(
            "cgroupsPath '{spec}': slice, prefix and name cannot hold '/'"
        )));
    }
    let slice = if slice.is_empty() {
        "system.slice"
    } else {
        slice
    };
    let Some(stem) = slice.strip_suffix(".slice") else {
        return Err(RuntimeError::Invalid(format!(
            "cgroupsPath '{spec}': the slice must end in .slice"
        )));
    };
    let mut path = PathBuf::from("/");
    if stem != "-" {
        let mut sofar = String::new();
        for part in stem.split('-') {
            if !sofar.is_empty() {
                sofar.push('-');
            }
            sofar.push_str(part);
            path.push(format!("{sofar}.slice"));
        }
    }
    let unit = if name.ends_with(".slice") {
        name.to_string()
    } else if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    };
    path.push(unit);
    Ok(path)
}

fn root_refused() -> RuntimeError {
    RuntimeError::Invalid(
        "cgroupsPath names the root cgroup: give the container a cgroup of its own".into(),
    )
}

/// `path` below `base`, refusing `..` (a cgroupsPath cannot climb out of
/// the hierarchy).
fn below(base: &Path, path: &Path) -> Result<PathBuf> {
    let mut out = base.to_path_buf();
    for c in path.components() {
        match c {
            std::path::Component::Normal(p) => out.push(p),
            std::path::Component::RootDir | std::path::Component::CurDir => {}
            _ => {
                return Err(RuntimeError::Invalid(format!(
                    "cgroupsPath {} may not contain '..'",
                    path.display()
                )));
            }
        }
    }
    Ok(out)
}

impl Cgroup {
    /// The cgroup of container `id` for `cgroups_path` (none: the
    /// default `/skiff-runtime/<id>`).
    pub fn resolve(cgroups_path: Option<&Path>, id: &str, systemd: bool) -> Result<Cgroup> {
        let path = match cgroups_path {
            Some(p) if systemd => systemd_path(&p.to_string_lossy())?,
            Some(p) if !p.is_absolute() && p.to_string_lossy().matches(':').count() == 2 => {
                return Err(RuntimeError::Invalid(format!(
                    "cgroupsPath '{}' is in systemd's form: pass --systemd-cgroup, or give a path",
                    p.display()
                )));
            }
            Some(p) => p.to_path_buf(),
            None => PathBuf::from("/skiff-runtime").join(id),
        };
        match host::detect(Path::new(host::ROOT)) {
            Hierarchy::V2(root) => {
                let base = if path.is_absolute() {
                    root.clone()
                } else {
                    below(&root, &own_cgroup(""))?
                };
                let dir = below(&base, &path)?;
                if dir == root {
                    return Err(root_refused());
                }
                Ok(Cgroup {
                    dirs: vec![dir],
                    v2: true,
                })
            }
            Hierarchy::V1(_) => {
                let mut dirs = Vec::new();
                for h in v1_hierarchies() {
                    let base = if path.is_absolute() {
                        h.mount.clone()
                    } else {
                        below(&h.mount, &own_cgroup(&h.controllers))?
                    };
                    let dir = below(&base, &path)?;
                    if dir == h.mount {
                        return Err(root_refused());
                    }
                    dirs.push(dir);
                }
                Ok(Cgroup { dirs, v2: false })
            }
            Hierarchy::None => Ok(Cgroup::default()),
        }
    }

    /// A cgroup recorded in a container's state.
    pub fn from_dirs(dirs: &[PathBuf]) -> Cgroup {
        let v2 = dirs.len() == 1 && dirs[0].starts_with(host::ROOT) && {
            matches!(host::detect(Path::new(host::ROOT)), Hierarchy::V2(_))
        };
        Cgroup {
            dirs: dirs.to_vec(),
            v2,
        }
    }

    pub fn is_v2(&self) -> bool {
        self.v2
    }

    fn dir_of(&self, controller: &str) -> Option<&PathBuf> {
        if self.v2 {
            return self.dirs.first();
        }
        self.dirs.iter().find(|d| {
            d.strip_prefix(host::ROOT)
                .ok()
                .and_then(|rel| rel.components().next())
                .is_some_and(|first| {
                    first
                        .as_os_str()
                        .to_string_lossy()
                        .split(',')
                        .any(|c| c == controller)
                })
        })
    }

    /// Makes the directories (v1 cpuset levels get their parent's CPUs and
    /// memory nodes; v2 levels get the controllers enabled). A cgroup that
    /// already holds processes is refused: `kill --all` and `delete` act on
    /// every process of the container's cgroup.
    pub fn create(&self) -> Result<()> {
        for dir in &self.dirs {
            let mut pids = Vec::new();
            collect_pids(dir, &mut pids);
            if !pids.is_empty() {
                return Err(RuntimeError::Invalid(format!(
                    "the cgroup {} already holds processes: give the container an empty or new cgroupsPath",
                    dir.display()
                )));
            }
        }
        for dir in &self.dirs {
            let mut missing = Vec::new();
            let mut d = dir.as_path();
            while !d.exists() {
                missing.push(d.to_path_buf());
                match d.parent() {
                    Some(p) => d = p,
                    None => break,
                }
            }
            for level in missing.iter().rev() {
                if self.v2
                    && let Some(parent) = level.parent()
                {
                    enable_controllers(parent);
                }
                match std::fs::create_dir(level) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => {
                        return Err(io_err(format!("create the cgroup {}", level.display()))(e));
                    }
                }
                if !self.v2 && level.join("cpuset.cpus").exists() {
                    inherit_cpuset(level);
                }
            }
        }
        Ok(())
    }

    /// The file of each directory through which a single-threaded process
    /// joins it by writing `0` (after it left the host's mounts, if it
    /// must): v1's `tasks`, which moves the calling thread without the lock
    /// that every `cgroup.procs` write of the host takes (its first taking
    /// after an idle spell waits for an RCU grace period, ~7 ms here);
    /// `cgroup.procs` where there is no `tasks` (v2, a hybrid host's
    /// unified hierarchy).
    pub fn join_files(&self) -> Result<Vec<File>> {
        self.dirs
            .iter()
            .map(|d| {
                let tasks = d.join("tasks");
                // A v1 tree delegated with only `cgroup.procs` writable
                // takes the whole process.
                if !self.v2
                    && let Ok(file) = std::fs::OpenOptions::new().write(true).open(&tasks)
                {
                    return Ok(file);
                }
                let path = d.join("cgroup.procs");
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io_err(format!("open {}", path.display())))
            })
            .collect()
    }

    /// Every process in the cgroup (and, on v2, below it).
    pub fn pids(&self) -> Vec<i32> {
        let Some(dir) = self.dirs.first() else {
            return Vec::new();
        };
        let mut pids = Vec::new();
        collect_pids(dir, &mut pids);
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    pub fn frozen(&self) -> bool {
        if self.v2 {
            self.dirs.first().is_some_and(|d| {
                std::fs::read_to_string(d.join("cgroup.events"))
                    .unwrap_or_default()
                    .lines()
                    .any(|l| l.trim() == "frozen 1")
            })
        } else {
            self.dir_of("freezer").is_some_and(|d| {
                std::fs::read_to_string(d.join("freezer.state")).is_ok_and(|s| s.trim() == "FROZEN")
            })
        }
    }

    /// Freezes or thaws every process of the container.
    pub fn freeze(&self, on: bool) -> Result<()> {
        let (file, value) = if self.v2 {
            (
                self.dirs.first().map(|d| d.join("cgroup.freeze")),
                if on { "1" } else { "0" },
            )
        } else {
            (
                self.dir_of("freezer").map(|d| d.join("freezer.state")),
                if on { "FROZEN" } else { "THAWED" },
            )
        };
        let Some(file) = file else {
            return Err(RuntimeError::Unsupported(
                "this host has no freezer cgroup: pause and resume cannot work".into(),
            ));
        };
        write(&file, value)?;
        for _ in 0..1000 {
            if self.frozen() == on {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        Err(RuntimeError::Io {
            what: format!("{} the container", if on { "freeze" } else { "thaw" }),
            source: std::io::ErrorKind::TimedOut.into(),
        })
    }

    /// Removes the directories (children first); waits briefly for the
    /// last processes to be gone.
    pub fn remove(&self) {
        for dir in &self.dirs {
            remove_tree(dir);
        }
    }

    /// Applies `res` (create and `update`).
    pub fn apply(&self, res: &LinuxResources) -> Result<()> {
        if self.dirs.is_empty() {
            return Ok(());
        }
        if self.v2 {
            self.apply_v2(res)
        } else {
            self.apply_v1(res)
        }
    }

    fn set(&self, controller: &str, file: &str, value: impl ToString) -> Result<()> {
        let Some(dir) = self.dir_of(controller) else {
            return Err(RuntimeError::Unsupported(format!(
                "the host has no {controller} cgroup controller: {file} cannot be set"
            )));
        };
        write(&dir.join(file), &value.to_string())
    }

    fn apply_v1(&self, res: &LinuxResources) -> Result<()> {
        if let Some(m) = res.memory() {
            if let Some(v) = m.limit() {
                self.set("memory", "memory.limit_in_bytes", v)?;
            }
            if let Some(v) = m.reservation() {
                self.set("memory", "memory.soft_limit_in_bytes", v)?;
            }
            if let Some(v) = m.swap() {
                self.set("memory", "memory.memsw.limit_in_bytes", v)?;
            }
            // Kernel memory limits are gone from Linux 6.x (the files
            // refuse writes): ignored where the kernel ignores them.
            if let Some(v) = m.kernel() {
                let _ = self.set("memory", "memory.kmem.limit_in_bytes", v);
            }
            if let Some(v) = m.kernel_tcp() {
                let _ = self.set("memory", "memory.kmem.tcp.limit_in_bytes", v);
            }
            if let Some(v) = m.swappiness() {
                self.set("memory", "memory.swappiness", v)?;
            }
            if let Some(true) = m.disable_oom_killer() {
                self.set("memory", "memory.oom_control", 1)?;
            }
        }
        if let Some(c) = res.cpu() {
            if let Some(v) = c.shares() {
                self.set("cpu", "cpu.shares", v)?;
            }
            if let Some(v) = c.period() {
                self.set("cpu", "cpu.cfs_period_us", v)?;
            }
            if let Some(v) = c.quota() {
                self.set("cpu", "cpu.cfs_quota_us", v)?;
            }
            if let Some(v) = c.realtime_period() {
                self.set("cpu", "cpu.rt_period_us", v)?;
            }
            if let Some(v) = c.realtime_runtime() {
                self.set("cpu", "cpu.rt_runtime_us", v)?;
            }
            if let Some(v) = c.cpus().as_ref().filter(|v| !v.is_empty()) {
                self.set("cpuset", "cpuset.cpus", v)?;
            }
            if let Some(v) = c.mems().as_ref().filter(|v| !v.is_empty()) {
                self.set("cpuset", "cpuset.mems", v)?;
            }
        }
        if let Some(p) = res.pids() {
            let limit = p.limit();
            self.set(
                "pids",
                "pids.max",
                if limit > 0 {
                    limit.to_string()
                } else {
                    "max".into()
                },
            )?;
        }
        if let Some(b) = res.block_io() {
            if let Some(v) = b.weight() {
                self.set("blkio", "blkio.weight", v)?;
            }
            if let Some(v) = b.leaf_weight() {
                self.set("blkio", "blkio.leaf_weight", v)?;
            }
            for d in b.weight_device().iter().flatten() {
                if let Some(w) = d.weight() {
                    self.set(
                        "blkio",
                        "blkio.weight_device",
                        format!("{}:{} {w}", d.major(), d.minor()),
                    )?;
                }
                if let Some(w) = d.leaf_weight() {
                    self.set(
                        "blkio",
                        "blkio.leaf_weight_device",
                        format!("{}:{} {w}", d.major(), d.minor()),
                    )?;
                }
            }
            let throttles = [
                (
                    b.throttle_read_bps_device(),
                    "blkio.throttle.read_bps_device",
                ),
                (
                    b.throttle_write_bps_device(),
                    "blkio.throttle.write_bps_device",
                ),
                (
                    b.throttle_read_iops_device(),
                    "blkio.throttle.read_iops_device",
                ),
                (
                    b.throttle_write_iops_device(),
                    "blkio.throttle.write_iops_device",
                ),
            ];
            for (list, file) in throttles {
                for d in list.iter().flatten() {
                    self.set(
                        "blkio",
                        file,
                        format!("{}:{} {}", d.major(), d.minor(), d.rate()),
                    )?;
                }
            }
        }
        for h in res.hugepage_limits().iter().flatten() {
            self.set(
                "hugetlb",
                &format!("hugetlb.{}.limit_in_bytes", h.page_size()),
                h.limit(),
            )?;
        }
        if let Some(n) = res.network() {
            if let Some(id) = n.class_id() {
                self.set("net_cls", "net_cls.classid", id)?;
            }
            for p in n.priorities().iter().flatten() {
                self.set(
                    "net_prio",
                    "net_prio.ifpriomap",
                    format!("{} {}", p.name(), p.priority()),
                )?;
            }
        }
        if let Some(rules) = res.devices() {
            self.apply_v1_devices(rules)?;
        }
        Ok(())
    }

    fn apply_v1_devices(&self, rules: &[LinuxDeviceCgroup]) -> Result<()> {
        let Some(dir) = self.dir_of("devices") else {
            return Ok(());
        };
        for rule in rules {
            let file = if rule.allow() {
                "devices.allow"
            } else {
                "devices.deny"
            };
            write(&dir.join(file), &device_line(rule))?;
        }
        // The devices every container has (runtime-spec's default devices).
        for line in DEFAULT_ALLOWED {
            write(&dir.join("devices.allow"), line)?;
        }
        Ok(())
    }

    fn apply_v2(&self, res: &LinuxResources) -> Result<()> {
        let Some(dir) = self.dirs.first() else {
            return Ok(());
        };
        let set = |file: &str, value: String| write(&dir.join(file), &value);
        let max = |v: i64| {
            if v < 0 {
                "max".to_string()
            } else {
                v.to_string()
            }
        };
        if let Some(m) = res.memory() {
            if let Some(v) = m.limit() {
                set("memory.max", max(v))?;
            }
            if let Some(v) = m.reservation() {
                set("memory.low", max(v))?;
            }
            if let Some(swap) = m.swap() {
                // v1's memsw is memory + swap; v2 counts swap alone.
                let v = match m.limit() {
                    Some(limit) if swap > 0 && limit > 0 => swap.saturating_sub(limit),
                    _ => swap,
                };
                set("memory.swap.max", max(v))?;
            }
        }
        if let Some(c) = res.cpu() {
            if let Some(shares) = c.shares().filter(|s| *s > 0) {
                // runc's conversion of shares (2–262144) to weight (1–10000).
                let weight = 1 + ((shares.clamp(2, 262_144) - 2) * 9999) / 262_142;
                set("cpu.weight", weight.to_string())?;
            }
            if c.quota().is_some() || c.period().is_some() {
                let quota = c
                    .quota()
                    .filter(|q| *q > 0)
                    .map_or("max".into(), |q| q.to_string());
                let period = c.period().unwrap_or(100_000);
                set("cpu.max", format!("{quota} {period}"))?;
            }
            if let Some(v) = c.cpus().as_ref().filter(|v| !v.is_empty()) {
                set("cpuset.cpus", v.clone())?;
            }
            if let Some(v) = c.mems().as_ref().filter(|v| !v.is_empty()) {
                set("cpuset.mems", v.clone())?;
            }
        }
        if let Some(p) = res.pids() {
            set("pids.max", max(if p.limit() > 0 { p.limit() } else { -1 }))?;
        }
        if let Some(b) = res.block_io()
            && let Some(w) = b.weight()
        {
            set("io.weight", format!("default {w}"))?;
        }
        for h in res.hugepage_limits().iter().flatten() {
            set(
                &format!("hugetlb.{}.max", h.page_size()),
                h.limit().to_string(),
            )?;
        }
        for (key, value) in res.unified().iter().flatten() {
            if key.contains('/') || key.starts_with('.') || key.starts_with("cgroup.") {
                return Err(RuntimeError::Invalid(format!(
                    "linux.resources.unified key '{key}' is not a cgroup file name"
                )));
            }
            set(key, value.clone())?;
        }
        if let Some(rules) = res.devices() {
            let allowed = v2_allow_list(rules)?;
            skiff_stage1::devbpf::attach(dir, &allowed)?;
        }
        Ok(())
    }
}

/// What every container may use: making nodes (opening them is another
/// matter), null, zero, full, random, urandom, tty, console, ptmx and the
/// ptys.
const DEFAULT_ALLOWED: [&str; 11] = [
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:1 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
];

fn device_line(rule: &LinuxDeviceCgroup) -> String {
    let kind = match rule.typ() {
        Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => "c",
        Some(LinuxDeviceType::B) => "b",
        Some(LinuxDeviceType::P) => "p",
        Some(LinuxDeviceType::A) | None => "a",
    };
    let num = |n: Option<i64>| {
        n.filter(|n| *n >= 0)
            .map_or("*".to_string(), |n| n.to_string())
    };
    let access = rule.access().clone().unwrap_or_else(|| "rwm".into());
    if kind == "a" && rule.major().is_none() && rule.minor().is_none() {
        return if access == "rwm" {
            "a".into()
        } else {
            format!("a *:* {access}")
        };
    }
    format!(
        "{kind} {}:{} {access}",
        num(rule.major()),
        num(rule.minor())
    )
}

/// v2's device program is an allow-list (`skiff_stage1::devbpf`): rules
/// that deny everything first and then allow are that; anything else is
/// refused rather than approximated.
fn v2_allow_list(rules: &[LinuxDeviceCgroup]) -> Result<Vec<skiff_stage1::devices::Rule>> {
    use skiff_stage1::devices::{self, Kind};
    let mut allowed: Vec<devices::Rule> = devices::ALLOWED.to_vec();
    for (i, rule) in rules.iter().enumerate() {
        let all = matches!(rule.typ(), None | Some(LinuxDeviceType::A))
            && rule.major().is_none()
            && rule.minor().is_none();
        if !rule.allow() {
            if all && allowed.len() == devices::ALLOWED.len() && i == 0 {
                continue;
            }
            return Err(RuntimeError::Unsupported(
                "on cgroup v2 skiff-runtime supports device rules that deny all and then allow (deny rules after allows are not supported)".into(),
            ));
        }
        let kind = match rule.typ() {
            Some(LinuxDeviceType::B) => Kind::Block,
            Some(LinuxDeviceType::A) | None => Kind::All,
            _ => Kind::Char,
        };
        let access = rule.access().as_deref().unwrap_or("rwm");
        let mut bits = 0;
        for (c, bit) in [
            ('r', devices::READ),
            ('w', devices::WRITE),
            ('m', devices::MKNOD),
        ] {
            if access.contains(c) {
                bits |= bit;
            }
        }
        let num = |n: Option<i64>| n.and_then(|n| u32::try_from(n).ok());
        allowed.push(devices::Rule {
            kind,
            major: num(rule.major()),
            minor: num(rule.minor()),
            access: bits,
        });
    }
    Ok(allowed)
}

fn write(path: &Path, value: &str) -> Result<()> {
    std::fs::write(path, value).map_err(io_err(format!("write {value} to {}", path.display())))
}

fn enable_controllers(dir: &Path) {
    let available = std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
    let wanted: Vec<String> = available
        .split_whitespace()
        .map(|c| format!("+{c}"))
        .collect();
    if !wanted.is_empty() {
        let _ = std::fs::write(dir.join("cgroup.subtree_control"), wanted.join(" "));
    }
}

fn inherit_cpuset(level: &Path) {
    let Some(parent) = level.parent() else {
        return;
    };
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let mine = std::fs::read_to_string(level.join(file)).unwrap_or_default();
        if mine.trim().is_empty() {
            let theirs = std::fs::read_to_string(parent.join(file)).unwrap_or_default();
            let _ = std::fs::write(level.join(file), theirs.trim());
        }
    }
}

fn collect_pids(dir: &Path, pids: &mut Vec<i32>) {
    let text = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            collect_pids(&entry.path(), pids);
        }
    }
}

fn remove_tree(dir: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&entry.path());
        }
    }
    for _ in 0..200 {
        match std::fs::remove_dir(dir) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_slices_become_paths() {
        assert_eq!(
            systemd_path("system.slice:docker:abc").unwrap(),
            PathBuf::from("/system.slice/docker-abc.scope")
        );
        assert_eq!(
            systemd_path("kubepods-besteffort-pod1.slice:cri-containerd:x").unwrap(),
            PathBuf::from(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/cri-containerd-x.scope"
            )
        );
        assert!(systemd_path("a:b").is_err());
        assert!(systemd_path("x.slice:../..:y").is_err());
    }

    #[test]
    fn paths_cannot_climb_out() {
        assert!(below(Path::new("/sys/fs/cgroup/memory"), Path::new("/a/../../b")).is_err());
        assert_eq!(
            below(Path::new("/sys/fs/cgroup/memory"), Path::new("/a/b")).unwrap(),
            PathBuf::from("/sys/fs/cgroup/memory/a/b")
        );
    }

    #[test]
    fn device_rules_as_v1_lines() {
        let rule: LinuxDeviceCgroup =
            serde_json::from_str(r#"{"allow":false,"access":"rwm"}"#).unwrap();
        assert_eq!(device_line(&rule), "a");
        let rule: LinuxDeviceCgroup = serde_json::from_str(
            r#"{"allow":true,"type":"c","major":10,"minor":229,"access":"rw"}"#,
        )
        .unwrap();
        assert_eq!(device_line(&rule), "c 10:229 rw");
        let rule: LinuxDeviceCgroup =
            serde_json::from_str(r#"{"allow":true,"type":"b","major":8,"access":"m"}"#).unwrap();
        assert_eq!(device_line(&rule), "b 8:* m");
    }
}
