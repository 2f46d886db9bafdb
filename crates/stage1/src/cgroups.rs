//! Control groups for a pod: `skiff/<uuid>` with one child per app, on
//! cgroup v2 (unified) or v1 (one hierarchy per controller; hybrid hosts,
//! whose v2 mount carries no controllers, count as v1). Detected, not
//! assumed; the root (`/sys/fs/cgroup`) is a parameter for tests.
//!
//! On v1 a pod of one app has no app level in the memory hierarchy
//! ([`Layout::Flat`], unless the pod has a memory limit of its own): the
//! app's memory cgroup is `skiff/<uuid>` itself, with the app's limit, and
//! init stays out of it, in `skiff` (so the OOM killer never picks init,
//! and with it the pod). Each memory cgroup costs the kernel a slot per
//! file system of the host (its shrinker map, ~16 bytes per superblock per
//! memory cgroup), so the per-app level made the memory of many pods grow
//! with the square of their number (docs/performance.md, density). The other
//! hierarchies keep the app level: the pod's process limit and device
//! policy stay above the app's cgroup namespace, out of reach of an app
//! that could remount its view writable. On v2, one tree for all
//! controllers, the layout stays nested.
//!
//! Limits come from the app's isolators: `resource/memory` (limit),
//! `resource/cpu` (limit, as a CFS quota), `os/linux/cpu-shares`.
//! Processes join by writing `0` to files opened before the pod's init
//! left the host's mount namespace: init and each app move themselves,
//! right after their fork, while they have one thread. On v1 the file is
//! `tasks`: a thread that moves itself that way takes no lock that all
//! cgroup moves of the host share, where a write to `cgroup.procs` takes
//! that lock, whose first taking after an idle spell waits for an RCU
//! grace period (~7 ms here; docs/performance.md). v2, and the unified
//! hierarchy of a hybrid host, have only `cgroup.procs`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use skiff_spec::App;
use skiff_spec::isolator::{CPU_SHARES, IsolatorValue, RESOURCE_CPU, RESOURCE_MEMORY};

use crate::Stage1Error;

/// The cgroup layout of this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    /// cgroup2 at the root with these controllers available.
    V2(PathBuf),
    /// One directory per controller (memory, cpu, pids).
    V1(PathBuf),
    /// No usable cgroups: limits cannot be applied.
    None,
}

const V1_CONTROLLERS: [&str; 3] = ["memory", "cpu", "pids"];

/// The v1 device controller, used where the host mounts it.
const V1_DEVICES: &str = "devices";

/// The unified hierarchy of a hybrid host (no controllers, but device
/// programs work there too: pods join it for a second device policy).
const V1_UNIFIED: &str = "unified";

/// The hierarchy a v1 pod joins beyond [`V1_CONTROLLERS`] for its device
/// policy: the `devices` controller where mounted, else the unified
/// hierarchy of a hybrid host (with a device program), else none.
fn v1_optional(root: &Path) -> Vec<&'static str> {
    [V1_DEVICES, V1_UNIFIED]
        .into_iter()
        .find(|h| root.join(h).join("cgroup.procs").exists())
        .into_iter()
        .collect()
}

/// Where the host mounts its cgroups.
pub const ROOT: &str = "/sys/fs/cgroup";

pub fn detect(root: &Path) -> Hierarchy {
    if root.join("cgroup.controllers").exists() {
        Hierarchy::V2(root.to_path_buf())
    } else if root.join("memory/cgroup.procs").exists() {
        Hierarchy::V1(root.to_path_buf())
    } else {
        Hierarchy::None
    }
}

/// Limits of one app.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: Option<i128>,
    pub cpu_millis: Option<i128>,
    pub cpu_shares: Option<i64>,
}

pub fn limits(app: &App) -> Limits {
    limits_of(&app.isolators)
}

/// The limits `isolators` set (an app's, or a pod manifest's pod-level
/// ones, which limit the whole pod).
pub fn limits_of(isolators: &[skiff_spec::isolator::Isolator]) -> Limits {
    let mut l = Limits::default();
    for iso in isolators {
        match (&iso.value, iso.name.as_str()) {
            (IsolatorValue::Resource(r), RESOURCE_MEMORY) => {
                l.memory_bytes = r.limit.as_ref().and_then(|q| q.to_scaled(0));
            }
            (IsolatorValue::Resource(r), RESOURCE_CPU) => {
                l.cpu_millis = r.limit.as_ref().and_then(|q| q.to_scaled(3));
            }
            (IsolatorValue::CpuShares(s), CPU_SHARES) => l.cpu_shares = Some(*s),
            _ => {}
        }
    }
    l
}

/// Whether a pod's apps have memory cgroups of their own below the pod's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// `skiff/<uuid>/<app>` per app (and `.init` on v2).
    Nested,
    /// v1: the one app's memory cgroup is `skiff/<uuid>` (init's is
    /// `skiff`); its other cgroups are `skiff/<uuid>/<app>` as in a nested
    /// pod.
    Flat,
}

impl Layout {
    /// The layout of a pod of `apps` apps: flat for one (taken as nested
    /// on v2) unless the pod has a memory limit of its own, which must
    /// stay above the app's cgroup namespace (an app allowed to mount can
    /// make its view writable and rewrite its own cgroup's limit).
    fn for_pod(apps: usize, pod_memory_limit: bool) -> Layout {
        if apps == 1 && !pod_memory_limit {
            Layout::Flat
        } else {
            Layout::Nested
        }
    }
}

/// The cgroup directories of a pod (pod level and per app).
#[derive(Debug)]
pub struct PodCgroups {
    hierarchy: Hierarchy,
    layout: Layout,
    /// v1: the device-policy hierarchy joined beyond [`V1_CONTROLLERS`]
    /// ([`v1_optional`], looked up once).
    v1_extra: Vec<&'static str>,
    uuid: String,
    apps: Vec<String>,
}

fn write(path: &Path, value: &str) -> Result<(), Stage1Error> {
    std::fs::write(path, value).map_err(|e| Stage1Error::Setup {
        what: format!("write {value} to {}", path.display()),
        source: e,
    })
}

fn mkdir(path: &Path) -> Result<(), Stage1Error> {
    std::fs::create_dir_all(path).map_err(|e| Stage1Error::Setup {
        what: format!("create the cgroup {}", path.display()),
        source: e,
    })
}

impl PodCgroups {
    /// The cgroups of pod `uuid` with `apps` under the host's `root`.
    fn new(root: &Path, uuid: &str, apps: Vec<String>, layout: Layout) -> PodCgroups {
        let mut cg = PodCgroups::found(root, uuid, layout);
        cg.apps = apps;
        cg
    }

    /// The cgroups of running pod `uuid` as far as its app `app` goes: nested
    /// where the app has a v1 memory cgroup of its own, else flat.
    fn of_app(root: &Path, uuid: &str, app: &str) -> PodCgroups {
        let nested = root.join("memory/skiff").join(uuid).join(app).is_dir();
        let layout = match nested {
            true => Layout::Nested,
            false => Layout::Flat,
        };
        PodCgroups::found(root, uuid, layout)
    }

    /// The cgroups of pod `uuid` laid out as `layout` (to find an app's).
    fn found(root: &Path, uuid: &str, layout: Layout) -> PodCgroups {
        let hierarchy = detect(root);
        let v1_extra = match &hierarchy {
            Hierarchy::V1(root) => v1_optional(root),
            _ => Vec::new(),
        };
        let layout = match hierarchy {
            Hierarchy::V1(_) => layout,
            _ => Layout::Nested,
        };
        PodCgroups {
            hierarchy,
            layout,
            v1_extra,
            uuid: uuid.to_string(),
            apps: Vec::new(),
        }
    }

    /// App `app`'s directory in the v1 memory hierarchy, below the pod's
    /// `base` there: `base` itself in a flat pod.
    fn memory_of(&self, base: PathBuf, app: &str) -> PathBuf {
        match self.layout {
            Layout::Nested => base.join(app),
            Layout::Flat => base,
        }
    }

    /// Whether `dir` is in the v1 memory hierarchy.
    fn is_memory(&self, dir: &Path) -> bool {
        match &self.hierarchy {
            Hierarchy::V1(root) => dir.starts_with(root.join("memory")),
            _ => false,
        }
    }

    /// The pod's directories for `controller` (v1) or the unified tree (v2).
    fn pod_dirs(&self) -> Vec<PathBuf> {
        match &self.hierarchy {
            Hierarchy::V2(root) => vec![root.join("skiff").join(&self.uuid)],
            Hierarchy::V1(root) => V1_CONTROLLERS
                .iter()
                .chain(&self.v1_extra)
                .map(|c| root.join(c).join("skiff").join(&self.uuid))
                .collect(),
            Hierarchy::None => Vec::new(),
        }
    }

    fn app_dirs(&self, app: &str) -> Vec<PathBuf> {
        self.pod_dirs()
            .into_iter()
            .map(|d| match self.is_memory(&d) {
                true => self.memory_of(d, app),
                false => d.join(app),
            })
            .collect()
    }

    /// Where the pod's init lives: the pod level on v1 (but for a flat
    /// pod's memory cgroup, which is the app's alone: there init is in
    /// `skiff`, with every flat pod's init, and not the app's concern); a
    /// leaf of its own on v2, whose inner nodes may not hold processes.
    fn init_dirs(&self) -> Vec<PathBuf> {
        match (&self.hierarchy, self.layout) {
            (Hierarchy::V2(_), _) => self.app_dirs(".init"),
            (_, Layout::Flat) => self
                .pod_dirs()
                .into_iter()
                .map(|d| match (self.is_memory(&d), d.parent()) {
                    (true, Some(skiff)) => skiff.to_path_buf(),
                    _ => d,
                })
                .collect(),
            _ => self.pod_dirs(),
        }
    }

    /// The cgroups of running pod `uuid`, made by [`PodCgroups::create`]
    /// with one memory cgroup for the pod (`flat`) or one per app: for a
    /// supervisor that rests ([`crate::rest`]) between making them and
    /// removing them.
    pub fn resumed(root: &Path, uuid: &str, apps: Vec<String>, flat: bool) -> PodCgroups {
        let layout = match flat {
            true => Layout::Flat,
            false => Layout::Nested,
        };
        PodCgroups::new(root, uuid, apps, layout)
    }

    /// Whether the pod has one memory cgroup (for [`PodCgroups::resumed`]).
    pub fn is_flat(&self) -> bool {
        self.layout == Layout::Flat
    }

    /// Whether these are no cgroups (an ordinary user's pod).
    pub fn is_none(&self) -> bool {
        matches!(self.hierarchy, Hierarchy::None)
    }

    /// No cgroups: an ordinary user's pod, which can write none here (its
    /// limits are refused by stage0; image isolators are announced as not
    /// applied).
    pub fn none(uuid: &str, apps: Vec<String>) -> PodCgroups {
        PodCgroups {
            hierarchy: Hierarchy::None,
            layout: Layout::Nested,
            v1_extra: Vec::new(),
            uuid: uuid.to_string(),
            apps,
        }
    }

    /// Creates the pod's cgroups with each app's limits, the pod's
    /// process limit and its device allow-list.
    pub fn create(
        root: &Path,
        uuid: &str,
        pod: &Limits,
        apps: &[(String, Limits)],
        pids_limit: Option<u64>,
        devices: &[crate::devices::Rule],
    ) -> Result<PodCgroups, Stage1Error> {
        let layout = Layout::for_pod(apps.len(), pod.memory_bytes.is_some());
        let names = apps.iter().map(|(n, _)| n.clone()).collect();
        let cg = PodCgroups::new(root, uuid, names, layout);
        if let Hierarchy::V2(root) = &cg.hierarchy {
            // Controllers must be enabled on the way down.
            mkdir(&root.join("skiff").join(uuid))?;
            for dir in [
                root.clone(),
                root.join("skiff"),
                root.join("skiff").join(uuid),
            ] {
                let _ = std::fs::write(dir.join("cgroup.subtree_control"), "+memory +cpu +pids");
            }
        }
        // Each directory once: a flat pod's init and app share cgroups
        // with the pod level, and a made one's parents exist (~5 µs of
        // cgroupfs lookups each, docs/performance.md).
        let mut made: Vec<PathBuf> = Vec::new();
        let mut make = |dir: PathBuf| -> Result<(), Stage1Error> {
            if !made.iter().any(|m| m.starts_with(&dir)) {
                mkdir(&dir)?;
                made.push(dir);
            }
            Ok(())
        };
        for dir in cg.pod_dirs().into_iter().chain(cg.init_dirs()) {
            make(dir)?;
        }
        // The device policy, at the pod level before any app cgroup
        // exists (v1 children start with their parent's rules; device
        // programs apply to every descendant).
        match &cg.hierarchy {
            Hierarchy::V2(root) => crate::devbpf::attach(&root.join("skiff").join(uuid), devices)?,
            Hierarchy::V1(root) => match cg.v1_extra.first() {
                Some(&V1_DEVICES) => {
                    let dir = root.join(V1_DEVICES).join("skiff").join(uuid);
                    write(&dir.join("devices.deny"), "a")?;
                    // One rule per write (the kernel's grammar), through
                    // one open file: ~6 µs of cgroupfs each open saved.
                    let allow = dir.join("devices.allow");
                    let failed = |what: &str| {
                        let what = format!("write {what} to {}", allow.display());
                        |source| Stage1Error::Setup { what, source }
                    };
                    let mut file = OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .open(&allow)
                        .map_err(failed("the device rules"))?;
                    for rule in devices {
                        let line = rule.v1_line();
                        file.write_all(line.as_bytes()).map_err(failed(&line))?;
                    }
                }
                Some(&V1_UNIFIED) => {
                    crate::devbpf::attach(
                        &root.join(V1_UNIFIED).join("skiff").join(uuid),
                        devices,
                    )?;
                }
                _ => {}
            },
            Hierarchy::None => {}
        }
        // A flat pod has no memory limit of its own: the app's goes to
        // the pod's memory cgroup, which is the app's (`memory_of`).
        cg.apply(None, pod)?;
        for (name, limits) in apps {
            for dir in cg.app_dirs(name) {
                make(dir)?;
            }
            cg.apply(Some(name), limits)?;
        }
        if let Some(max) = pids_limit {
            let dir = match &cg.hierarchy {
                Hierarchy::V2(root) => root.join("skiff").join(uuid),
                Hierarchy::V1(root) => root.join("pids/skiff").join(uuid),
                Hierarchy::None => {
                    return Err(Stage1Error::Config(
                        "--pids-limit needs cgroups, and none are mounted".to_string(),
                    ));
                }
            };
            write(&dir.join("pids.max"), &max.to_string())?;
        }
        Ok(cg)
    }

    /// Writes `l` into an app's cgroups, or the pod's (`None`).
    fn apply(&self, app: Option<&str>, l: &Limits) -> Result<(), Stage1Error> {
        let app = app.unwrap_or("");
        match &self.hierarchy {
            Hierarchy::V2(root) => {
                let dir = root.join("skiff").join(&self.uuid).join(app);
                if let Some(m) = l.memory_bytes {
                    write(&dir.join("memory.max"), &m.to_string())?;
                    let _ = std::fs::write(dir.join("memory.swap.max"), "0");
                }
                if let Some(c) = l.cpu_millis {
                    write(
                        &dir.join("cpu.max"),
                        &format!("{} 100000", (c * 100).max(1000)),
                    )?;
                }
                if let Some(s) = l.cpu_shares {
                    // cgroup v2 weight from v1 shares (the runc/crun mapping).
                    let weight = 1 + ((s.clamp(2, 262_144) - 2) * 9999) / 262_142;
                    write(&dir.join("cpu.weight"), &weight.to_string())?;
                }
            }
            Hierarchy::V1(root) => {
                if let Some(m) = l.memory_bytes {
                    let dir = self.memory_of(root.join("memory/skiff").join(&self.uuid), app);
                    write(&dir.join("memory.limit_in_bytes"), &m.to_string())?;
                    let _ = std::fs::write(dir.join("memory.memsw.limit_in_bytes"), m.to_string());
                }
                let cpu = root.join("cpu/skiff").join(&self.uuid).join(app);
                if let Some(c) = l.cpu_millis {
                    write(&cpu.join("cpu.cfs_period_us"), "100000")?;
                    write(
                        &cpu.join("cpu.cfs_quota_us"),
                        &(c * 100).max(1000).to_string(),
                    )?;
                }
                if let Some(s) = l.cpu_shares {
                    write(&cpu.join("cpu.shares"), &s.to_string())?;
                }
            }
            Hierarchy::None => {
                if *l != Limits::default() {
                    return Err(Stage1Error::Config(
                        "resource limits need cgroups, and none are mounted at /sys/fs/cgroup"
                            .to_string(),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The file through which a process joins the cgroup `dir`: v1's
    /// `tasks`, where `moving_self` (the caller writes `0` and has one
    /// thread: the thread is the process), else `cgroup.procs`.
    fn join_file(&self, dir: &Path, moving_self: bool) -> PathBuf {
        let tasks = match &self.hierarchy {
            Hierarchy::V1(root) => moving_self && !dir.starts_with(root.join(V1_UNIFIED)),
            _ => false,
        };
        dir.join(if tasks { "tasks" } else { "cgroup.procs" })
    }

    fn open_join_files(
        &self,
        dirs: Vec<PathBuf>,
        moving_self: bool,
    ) -> Result<Vec<File>, Stage1Error> {
        dirs.into_iter()
            .map(|d| {
                let path = self.join_file(&d, moving_self);
                OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| Stage1Error::Setup {
                        what: format!("open {}", path.display()),
                        source: e,
                    })
            })
            .collect()
    }

    /// The files through which init (the pod level) and each app join
    /// their cgroups, opened now so that they can join after leaving the
    /// host's mounts. For a single-threaded process that moves itself
    /// ([`join`]) right after its fork.
    pub fn open_joins(&self) -> Result<(Vec<File>, Vec<Vec<File>>), Stage1Error> {
        let pod = self.open_join_files(self.init_dirs(), true)?;
        let apps = self
            .apps
            .iter()
            .map(|a| self.open_join_files(self.app_dirs(a), true))
            .collect::<Result<_, _>>()?;
        Ok((pod, apps))
    }

    /// The OOM kills counted in an app's cgroup.
    pub fn oom_kills(&self, app: &str) -> u64 {
        let file = match &self.hierarchy {
            Hierarchy::V2(root) => root
                .join("skiff")
                .join(&self.uuid)
                .join(app)
                .join("memory.events"),
            Hierarchy::V1(root) => self
                .memory_of(root.join("memory/skiff").join(&self.uuid), app)
                .join("memory.oom_control"),
            Hierarchy::None => return 0,
        };
        std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .find_map(|l| {
                l.strip_prefix("oom_kill ")
                    .and_then(|n| n.trim().parse().ok())
            })
            .unwrap_or(0)
    }

    /// Removes the pod's cgroups (children first); waits briefly for the
    /// last processes to be gone.
    pub fn remove(&self) {
        for dir in self.dirs_to_remove() {
            remove_dir(&dir);
        }
    }

    /// The pod's cgroup directories, each once, children first: the
    /// apps', init's (a leaf of its own on v2 only), the pod level.
    fn dirs_to_remove(&self) -> Vec<PathBuf> {
        let init = matches!(self.hierarchy, Hierarchy::V2(_)).then_some(".init");
        let mut dirs: Vec<PathBuf> = Vec::new();
        let apps = self.apps.iter().map(String::as_str).chain(init);
        for dir in apps
            .flat_map(|app| self.app_dirs(app))
            .chain(self.pod_dirs())
        {
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
        dirs
    }
}

/// The cgroup directories pod `uuid` has under `root`, as found there:
/// the unified tree's, or one in each v1 hierarchy (those a pod was given
/// by name included).
pub fn pod_dirs_found(root: &Path, uuid: &str) -> Vec<PathBuf> {
    let mut dirs = vec![root.join("skiff").join(uuid)];
    for e in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let dir = e.path().join("skiff").join(uuid);
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    dirs.into_iter().filter(|d| d.is_dir()).collect()
}

/// Removes whatever is left of pod `uuid`'s cgroups (after a crashed
/// stage1): kills the processes still in them (the fly flavor's apps have
/// no pod init whose death takes them along), then removes its app
/// cgroups and the pod level. Only for a pod whose stage1 is gone.
pub fn remove_leftovers(root: &Path, uuid: &str) {
    for dir in pod_dirs_found(root, uuid) {
        let apps: Vec<PathBuf> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect();
        for app in &apps {
            kill_left(app);
            remove_dir(app);
        }
        kill_left(&dir);
        remove_dir(&dir);
    }
}

/// Kills every process left in the cgroup `dir` and waits (briefly) until
/// it is empty.
fn kill_left(dir: &Path) {
    let kill = dir.join("cgroup.kill");
    if kill.exists() && std::fs::write(&kill, "1").is_ok() {
        return;
    }
    skiff_pod::mounts::kill_until_gone(|| {
        std::fs::read_to_string(dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse::<i32>().ok())
            .filter_map(rustix::process::Pid::from_raw)
            .collect()
    });
}

/// Removes cgroup `dir` with every cgroup below it (an app allowed to
/// mount can make its view writable and create some), deepest first.
fn remove_dir(dir: &Path) {
    // Most have nothing below them, or are gone: one rmdir is enough.
    match std::fs::remove_dir(dir) {
        Ok(()) => return,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(_) => {}
    }
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        todo.extend(
            std::fs::read_dir(&d)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path()),
        );
        found.push(d);
    }
    // Each directory comes before those below it: reversed, after them.
    for d in found.iter().rev() {
        remove_one(d);
    }
}

fn remove_one(dir: &Path) {
    for _ in 0..100 {
        match std::fs::remove_dir(dir) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            _ => return,
        }
    }
}

/// The hierarchies a pod's apps see at `/sys/fs/cgroup`: those skiff put
/// them in (others would show the host's whole tree), as (mount point
/// under /sys/fs/cgroup, file system type, mount options). Read from the
/// host before the pod's init leaves the host's mounts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodView {
    /// The unified hierarchy alone at /sys/fs/cgroup (cgroup v2).
    unified: bool,
    /// v1: one entry per hierarchy, mounted on a base init bound at
    /// /sys/fs/cgroup from the app's scratch directory
    /// ([`PodView::prepare`]).
    v1: Vec<(String, &'static str, String)>,
}

impl PodView {
    pub fn detect(root: &Path) -> PodView {
        match detect(root) {
            Hierarchy::V2(_) => PodView {
                unified: true,
                v1: Vec::new(),
            },
            Hierarchy::V1(root) => PodView {
                unified: false,
                v1: V1_CONTROLLERS
                    .into_iter()
                    .chain(v1_optional(&root))
                    .map(|h| {
                        if h == V1_UNIFIED {
                            return (h.to_string(), "cgroup2", String::new());
                        }
                        // `cpu` is often a link to `cpu,cpuacct`: mount the
                        // hierarchy by its whole set of controllers.
                        let name = std::fs::canonicalize(root.join(h))
                            .ok()
                            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                            .unwrap_or_else(|| h.to_string());
                        (name.clone(), "cgroup", name)
                    })
                    .collect(),
            },
            Hierarchy::None => PodView::default(),
        }
    }

    /// In init, for each app (after its /sys is mounted): the base of the
    /// v1 view, with a mount point per hierarchy, bound at the app's
    /// `/sys/fs/cgroup` from its scratch directory on the pod's tmpfs.
    pub fn prepare(
        &self,
        app_root: &crate::mounts::Root,
        scratch: &crate::mounts::Scratch,
    ) -> Result<(), Stage1Error> {
        if self.unified || self.v1.is_empty() {
            return Ok(());
        }
        for (dir, _, _) in &self.v1 {
            match rustix::fs::mkdirat(&scratch.cgroup, dir.as_str(), 0o755.into()) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => {
                    return Err(Stage1Error::Setup {
                        what: format!("create the mount point of cgroup hierarchy {dir}"),
                        source: e.into(),
                    });
                }
            }
        }
        let target = app_root.resolve(Path::new("/sys/fs/cgroup"), false, false)?;
        crate::mounts::bind(
            &crate::mounts::fd_path(&scratch.cgroup),
            &target,
            false,
            "/sys/fs/cgroup",
        )
    }

    /// In an app process that joined its cgroups and has a mount namespace
    /// of its own: a cgroup namespace rooted at the app's cgroups, and the
    /// pod's hierarchies mounted read-only at `<root>/sys/fs/cgroup` (v1: on
    /// the base [`PodView::prepare`] bound there), so the app sees its own
    /// tree and limits there, not the host's paths.
    pub fn mount(&self, app_root: &crate::mounts::Root) -> Result<(), Stage1Error> {
        use rustix::mount::MountFlags;
        crate::sys::process::unshare(rustix::thread::UnshareFlags::NEWCGROUP).map_err(|e| {
            Stage1Error::Setup {
                what: "create the app's cgroup namespace".to_string(),
                source: e.into(),
            }
        })?;
        let base = Path::new("/sys/fs/cgroup");
        let hidden = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
        if self.unified {
            let target = app_root.resolve(base, false, false)?;
            return crate::mounts::mount(
                "cgroup2",
                &target,
                "cgroup2",
                MountFlags::RDONLY | hidden,
                None,
                "the app's cgroup tree",
            );
        }
        if self.v1.is_empty() {
            return Ok(());
        }
        for (dir, fstype, options) in &self.v1 {
            let point = app_root.resolve(&base.join(dir), true, false)?;
            let options = std::ffi::CString::new(options.as_str())
                .map_err(|_| Stage1Error::Config(format!("bad cgroup hierarchy {dir}")))?;
            let data = (!options.is_empty()).then_some(options.as_c_str());
            crate::mounts::mount(
                "cgroup",
                &point,
                fstype,
                MountFlags::RDONLY | hidden,
                data,
                &format!("the app's cgroup hierarchy {dir}"),
            )?;
        }
        // The base holds only the mount points: read-only too.
        let mounted = app_root.resolve(base, false, false)?;
        use crate::mounts::{ATTR_NODEV, ATTR_NOEXEC, ATTR_NOSUID, ATTR_RDONLY};
        crate::mounts::set_attrs(
            &mounted,
            ATTR_RDONLY | ATTR_NOSUID | ATTR_NODEV | ATTR_NOEXEC,
            false,
            "/sys/fs/cgroup",
        )
    }
}

/// The processes (host pids) in app `app`'s cgroup of pod `uuid`: which
/// processes are the app's, as stage1 placed them (an app cannot move
/// itself, nor forge this as it can its environment).
pub fn app_pids(root: &Path, uuid: &str, app: &str) -> Result<Vec<i32>, Stage1Error> {
    let cg = PodCgroups::of_app(root, uuid, app);
    let Some(dir) = cg.app_dirs(app).into_iter().next() else {
        return Err(Stage1Error::Config(
            "this host has no cgroups: skiff cannot tell the pod's apps apart".to_string(),
        ));
    };
    let path = dir.join("cgroup.procs");
    let text = std::fs::read_to_string(&path).map_err(|e| Stage1Error::Setup {
        what: format!("read {}", path.display()),
        source: e,
    })?;
    Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
}

/// What a pod's cgroup (or one app's) counts, where the host's
/// hierarchy has it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// Memory in use, bytes, without inactive file cache (as docker and
    /// podman count it).
    pub memory: Option<u64>,
    pub memory_limit: Option<u64>,
    pub pids: Option<u64>,
    pub pids_limit: Option<u64>,
    /// CPU time, microseconds (cgroup v2's cpu.stat; v1's cpu controller
    /// does not count it).
    pub cpu_usec: Option<u64>,
}

/// The usage of pod `uuid`'s cgroup, or of its app `app`'s, under the
/// host's `root` (in a flat pod, the app's is the pod's).
pub fn usage(root: &Path, uuid: &str, app: Option<&str>) -> Usage {
    let cg = match app {
        Some(app) => PodCgroups::of_app(root, uuid, app),
        None => PodCgroups::found(root, uuid, Layout::Nested),
    };
    let read = |dir: &Path, file: &str| std::fs::read_to_string(dir.join(file)).ok();
    let number = |text: Option<String>| text.and_then(|t| t.trim().parse::<u64>().ok());
    let keyed = |text: Option<String>, key: &str| {
        text.and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix(key)
                    .and_then(|v| v.strip_prefix(' '))
                    .and_then(|v| v.trim().parse::<u64>().ok())
            })
        })
    };
    let at = |base: PathBuf| match app {
        Some(app) => base.join(app),
        None => base,
    };
    let memory_at = |base: PathBuf| match app {
        Some(app) => cg.memory_of(base, app),
        None => base,
    };
    match &cg.hierarchy {
        Hierarchy::V2(root) => {
            let dir = at(root.join("skiff").join(uuid));
            let memory = number(read(&dir, "memory.current"));
            let inactive = keyed(read(&dir, "memory.stat"), "inactive_file").unwrap_or(0);
            Usage {
                memory: memory.map(|m| m.saturating_sub(inactive)),
                memory_limit: number(read(&dir, "memory.max")),
                pids: number(read(&dir, "pids.current")),
                pids_limit: number(read(&dir, "pids.max")),
                cpu_usec: keyed(read(&dir, "cpu.stat"), "usage_usec"),
            }
        }
        Hierarchy::V1(root) => {
            let memory = memory_at(root.join("memory/skiff").join(uuid));
            let pids = at(root.join("pids/skiff").join(uuid));
            let inactive = keyed(read(&memory, "memory.stat"), "total_inactive_file").unwrap_or(0);
            Usage {
                memory: number(read(&memory, "memory.usage_in_bytes"))
                    .map(|m| m.saturating_sub(inactive)),
                // v1 writes "no limit" as the largest page-aligned value.
                memory_limit: number(read(&memory, "memory.limit_in_bytes"))
                    .filter(|l| *l < 1 << 62),
                pids: number(read(&pids, "pids.current")),
                pids_limit: number(read(&pids, "pids.max")),
                cpu_usec: None,
            }
        }
        Hierarchy::None => Usage::default(),
    }
}

/// Moves the calling process into the cgroups of app `app` of pod `uuid`
/// (for `skiff enter`: what it runs has the app's limits and device
/// policy).
pub fn join_app(root: &Path, uuid: &str, app: &str) -> Result<(), Stage1Error> {
    let cg = PodCgroups::of_app(root, uuid, app);
    // `enter` may have threads of its own: the whole process moves.
    let files = cg.open_join_files(cg.app_dirs(app), false)?;
    join(&files)
}

/// Joins the calling process to the cgroups behind `files` (from
/// [`PodCgroups::open_joins`]: a caller with one thread).
pub(crate) fn join(files: &[File]) -> Result<(), Stage1Error> {
    for mut f in files {
        f.write_all(b"0").map_err(|e| Stage1Error::Setup {
            what: "join the pod's cgroup".to_string(),
            source: e,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_app as app;

    #[test]
    fn limits_from_isolators() {
        let l = limits(&app(
            r#"{"name":"resource/memory","value":{"limit":"32M"}},{"name":"resource/cpu","value":{"limit":"500m"}},{"name":"os/linux/cpu-shares","value":512}"#,
        ));
        assert_eq!(
            l,
            Limits {
                memory_bytes: Some(32_000_000),
                cpu_millis: Some(500),
                cpu_shares: Some(512)
            }
        );
    }

    /// A directory laid out like a v1 host's /sys/fs/cgroup.
    fn fake_v1_root() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        for c in V1_CONTROLLERS.iter().chain([&V1_DEVICES]) {
            std::fs::create_dir_all(root.path().join(c)).unwrap();
            std::fs::write(root.path().join(c).join("cgroup.procs"), "").unwrap();
        }
        root
    }

    #[test]
    fn v1_layout_in_a_fake_root() {
        let root = fake_v1_root();
        assert_eq!(
            detect(root.path()),
            Hierarchy::V1(root.path().to_path_buf())
        );
        let l = Limits {
            memory_bytes: Some(1 << 25),
            cpu_millis: Some(250),
            cpu_shares: None,
        };
        let pod = Limits {
            memory_bytes: Some(1 << 26),
            ..Limits::default()
        };
        let cg = PodCgroups::create(
            root.path(),
            "u",
            &pod,
            &[("web".into(), l), ("db".into(), Limits::default())],
            Some(64),
            &crate::devices::ALLOWED,
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(root.path().join("pids/skiff/u/pids.max")).unwrap(),
            "64"
        );
        let mem =
            std::fs::read_to_string(root.path().join("memory/skiff/u/web/memory.limit_in_bytes"))
                .unwrap();
        assert_eq!(mem, (1 << 25).to_string());
        let pod_mem =
            std::fs::read_to_string(root.path().join("memory/skiff/u/memory.limit_in_bytes"))
                .unwrap();
        assert_eq!(pod_mem, (1 << 26).to_string());
        let quota =
            std::fs::read_to_string(root.path().join("cpu/skiff/u/web/cpu.cfs_quota_us")).unwrap();
        assert_eq!(quota, "25000");
        assert_eq!(cg.oom_kills("web"), 0);
        // Usage as stats reads it: the app's limit, the pod's pids.
        let web = root.path().join("memory/skiff/u/web");
        std::fs::write(web.join("memory.usage_in_bytes"), "5000\n").unwrap();
        std::fs::write(
            web.join("memory.stat"),
            "cache 10\ntotal_inactive_file 1000\n",
        )
        .unwrap();
        std::fs::write(root.path().join("pids/skiff/u/pids.current"), "3\n").unwrap();
        let app = usage(root.path(), "u", Some("web"));
        assert_eq!(
            (app.memory, app.memory_limit, app.cpu_usec),
            (Some(4000), Some(1 << 25), None)
        );
        let pod = usage(root.path(), "u", None);
        assert_eq!((pod.pids, pod.pids_limit), (Some(3), Some(64)));
        // The device policy is set at the pod level (each rule is its own
        // write, which the kernel takes one by one; a plain file has them
        // one after the other).
        let devices = root.path().join("devices/skiff/u");
        assert_eq!(
            std::fs::read_to_string(devices.join("devices.deny")).unwrap(),
            "a"
        );
        let allowed: String = crate::devices::ALLOWED
            .iter()
            .map(|r| r.v1_line())
            .collect();
        assert_eq!(
            std::fs::read_to_string(devices.join("devices.allow")).unwrap(),
            allowed
        );
        assert!(allowed.ends_with("c 136:* rwm"));
        assert!(devices.join("web").is_dir());
    }

    #[test]
    fn a_pod_of_one_app_has_one_memory_cgroup_unless_the_pod_is_limited() {
        let root = fake_v1_root();
        let app = Limits {
            memory_bytes: Some(1 << 26),
            cpu_millis: Some(250),
            cpu_shares: None,
        };
        let pod = Limits {
            memory_bytes: None,
            cpu_millis: None,
            cpu_shares: Some(512),
        };
        let cg = PodCgroups::create(
            root.path(),
            "u",
            &pod,
            &[("web".into(), app.clone())],
            None,
            &crate::devices::ALLOWED,
        )
        .unwrap();
        let read = |p: &str| std::fs::read_to_string(root.path().join(p)).unwrap();
        // One memory cgroup, the pod's, with the app's limit.
        assert_eq!(
            read("memory/skiff/u/memory.limit_in_bytes"),
            (1 << 26).to_string()
        );
        let below = |dir: &str| -> Vec<PathBuf> {
            std::fs::read_dir(root.path().join(dir))
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        };
        assert!(below("memory/skiff/u").is_empty());
        // The others keep the app level: the pod's process limit and
        // device policy stay above what the app's namespace shows.
        for c in ["cpu", "pids", "devices"] {
            assert_eq!(below(&format!("{c}/skiff/u")).len(), 1, "{c}");
        }
        assert_eq!(read("cpu/skiff/u/web/cpu.cfs_quota_us"), "25000");
        assert_eq!(read("cpu/skiff/u/cpu.shares"), "512");
        let init_dirs = cg.init_dirs();
        for dir in cg
            .pod_dirs()
            .iter()
            .chain(&cg.app_dirs("web"))
            .chain(&init_dirs)
        {
            std::fs::write(dir.join("tasks"), "").unwrap();
        }
        let (init, apps) = cg.open_joins().unwrap();
        assert_eq!((init.len(), apps.len(), apps[0].len()), (4, 1, 4));
        // Removed each once, the app's before the pod's; init has none of
        // its own on v1.
        let r = |p: &str| root.path().join(p);
        assert_eq!(
            cg.dirs_to_remove(),
            [
                "memory/skiff/u",
                "cpu/skiff/u/web",
                "pids/skiff/u/web",
                "devices/skiff/u/web",
                "cpu/skiff/u",
                "pids/skiff/u",
                "devices/skiff/u"
            ]
            .map(r)
        );
        // A thread that moves itself joins through v1's `tasks`, which
        // takes no host-wide lock; `enter` moves its whole process.
        assert!(
            [cg.init_dirs(), cg.app_dirs("web")]
                .concat()
                .iter()
                .all(|d| cg.join_file(d, true) == d.join("tasks"))
        );
        let memory = root.path().join("memory/skiff/u");
        assert_eq!(cg.join_file(&memory, false), memory.join("cgroup.procs"));
        let unified = root.path().join("unified/skiff/u");
        assert_eq!(cg.join_file(&unified, true), unified.join("cgroup.procs"));
        // Init stays out of the app's memory cgroup: never the OOM
        // killer's choice there.
        assert!(cg.init_dirs().contains(&root.path().join("memory/skiff")));
        std::fs::write(
            root.path().join("memory/skiff/u/memory.oom_control"),
            "oom_kill_disable 0\noom_kill 2\n",
        )
        .unwrap();
        assert_eq!(cg.oom_kills("web"), 2);
        let usage = usage(root.path(), "u", Some("web"));
        assert_eq!(usage.memory_limit, Some(1 << 26));
        // A pod limit of its own stays above the app's cgroup namespace.
        let limited = Limits {
            memory_bytes: Some(1 << 25),
            ..Limits::default()
        };
        PodCgroups::create(
            root.path(),
            "v",
            &limited,
            &[("web".into(), app)],
            None,
            &crate::devices::ALLOWED,
        )
        .unwrap();
        assert_eq!(
            read("memory/skiff/v/memory.limit_in_bytes"),
            (1 << 25).to_string()
        );
        assert_eq!(
            read("memory/skiff/v/web/memory.limit_in_bytes"),
            (1 << 26).to_string()
        );
    }
}
