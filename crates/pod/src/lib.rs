//! skiff-pod: pods as directories.
//!
//! A pod is a directory `pods/<state>/<uuid>/` under the data directory; it
//! moves between states by atomic `rename(2)`, and the stage1 that runs it
//! holds an exclusive `flock` on the directory for as long as it lives, so
//! any process can tell a running pod from an exited one without a daemon.
//!
//! ```text
//! pods/embryo/<uuid>          being created
//! pods/prepare/<uuid>         stage0 is writing it
//! pods/prepared/<uuid>        ready to run (skiff prepare)
//! pods/run/<uuid>             handed to stage1 (running while locked)
//! pods/exited-garbage/<uuid>  exited; kept for `skiff status` until gc
//! pods/garbage/<uuid>         being removed by gc
//!
//! <pod>/pod                   the pod manifest (appc PodManifest)
//! <pod>/runtime.json          what stage1 needs beyond the manifest (see [`Runtime`])
//! <pod>/images                the image IDs of every rendered tree used (for image gc)
//! <pod>/created, started, ready, exited   Unix times, written when they happen
//! <pod>/pid                   pid (host namespace) of the pod's init, written by stage1
//! <pod>/apps/<app>/exit       the app's exit status (or 128+signal), written by stage1
//! <pod>/apps/<app>/runs       earlier runs of a restarted app (see [`restart`]), by stage1
//! <pod>/apps/<app>/oom        OOM kills in the app's cgroup, by stage1 as the pod ends
//! <pod>/logs/<app>.log[.N]   the app's output (see [`logs`]), written by stage1
//! <pod>/apps/<app>/rootfs     the app's root (an overlay mount inside the pod only)
//! <pod>/overlay/<app>/{upper,work}   the app's writable layer
//! ```
//!
//! The stage1 contract built on this layout is in docs/stage1.md.

use std::fs::{self, File};
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

pub mod devices;
pub mod idmap;
pub mod logs;
pub mod mounts;
pub mod prepare;
pub mod privileges;
pub mod restart;
pub mod stage1;

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum PodError {
    #[error(transparent)]
    Io(#[from] skiff_io::IoError),
    #[error("no pod matches '{0}' (see `skiff list`)")]
    NotFound(String),
    #[error("'{query}' matches several pods: {}", matches.join(", "))]
    Ambiguous { query: String, matches: Vec<String> },
    #[error("pod {uuid} is {state}, not {wanted}")]
    WrongState {
        uuid: String,
        state: String,
        wanted: String,
    },
    #[error("bad runtime description in {}: {reason}", path.display())]
    BadRuntime { path: PathBuf, reason: String },
    #[error("{0}")]
    Invalid(String),
}

pub(crate) use skiff_io::io_err_at as io_err;

/// The states a pod directory moves through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    Embryo,
    Prepare,
    Prepared,
    Run,
    ExitedGarbage,
    Garbage,
}

impl State {
    pub const ALL: [State; 6] = [
        State::Embryo,
        State::Prepare,
        State::Prepared,
        State::Run,
        State::ExitedGarbage,
        State::Garbage,
    ];

    pub fn dir_name(self) -> &'static str {
        match self {
            State::Embryo => "embryo",
            State::Prepare => "prepare",
            State::Prepared => "prepared",
            State::Run => "run",
            State::ExitedGarbage => "exited-garbage",
            State::Garbage => "garbage",
        }
    }
}

/// Notes stage1 keeps in a pod's directory for `skiff status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodNote {
    /// kvm: the accelerator the VM uses and why (`kvm/accel`).
    Accel,
}

impl PodNote {
    fn file(self) -> &'static str {
        match self {
            PodNote::Accel => "kvm/accel",
        }
    }
}

/// How stage1 isolates a pod (`--stage1=FLAVOR`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    /// Namespaces, overlay roots, the pod's own init (the default).
    #[default]
    Ns,
    /// chroot only, host namespaces, full privileges: for trusted tools.
    Fly,
    /// An OCI runtime bundle run by crun or runc; one app per pod.
    Oci,
    /// A virtual machine per pod with its own kernel.
    Kvm,
}

impl Flavor {
    pub const ALL: [Flavor; 4] = [Flavor::Ns, Flavor::Fly, Flavor::Oci, Flavor::Kvm];

    pub fn as_str(self) -> &'static str {
        match self {
            Flavor::Ns => "ns",
            Flavor::Fly => "fly",
            Flavor::Oci => "oci",
            Flavor::Kvm => "kvm",
        }
    }
}

impl std::fmt::Display for Flavor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Flavor {
    type Err = String;

    fn from_str(s: &str) -> Result<Flavor, String> {
        Flavor::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| format!("no flavor '{s}': the flavors are ns, fly, oci and kvm"))
    }
}

/// What stage1 needs beyond the pod manifest (written by stage0).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Runtime {
    /// Isolation flavor (an unknown one makes the file invalid).
    pub flavor: Flavor,
    pub hostname: String,
    /// Per app (in pod manifest order): the rendered tree's `rootfs`.
    pub apps: Vec<RuntimeApp>,
    /// Print stage1 diagnostics.
    #[serde(default)]
    pub debug: bool,
    /// Give the (single) app a pseudo-terminal relayed to the user's terminal.
    #[serde(default)]
    pub interactive: bool,
    /// Most processes the pod may have (cgroup pids.max); none if unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<u64>,
    /// First host uid/gid of the pod's user namespace (`--private-users`):
    /// container ids 0..65536 map to `base..base+65536`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_users: Option<u32>,
    /// Apps' roots are copies of their trees instead of overlays.
    #[serde(default)]
    pub no_overlay: bool,
    /// The OCI runtime of the `oci` flavor (a name in PATH or a path;
    /// default crun).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oci_runtime: Option<String>,
    /// Networking (pods written before it existed used the host's).
    #[serde(default)]
    pub net: PodNet,
    /// Flavor options (`--stage1-opt=KEY=VALUE`), checked by stage0.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub stage1_options: std::collections::BTreeMap<String, String>,
    /// Host devices the user passed (`--device`), beyond the minimal /dev.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<devices::PodDevice>,
    /// An ordinary user's pod: stage1 runs as root of the user's own user
    /// namespace and makes no cgroups and no persistent network namespace
    /// (docs/rootless.md).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rootless: bool,
    /// How much of each app's output its log keeps (`--log-max-size`,
    /// `--log-max-files`).
    #[serde(default)]
    pub logs: logs::Limits,
    /// When an app that ended is started again (`--restart`).
    #[serde(default, skip_serializing_if = "restart::Restart::is_no")]
    pub restart: restart::Restart,
    /// `--rm`: stage1 removes the pod once it has ended.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub remove: bool,
}

/// The pod's networking: resolved by stage0, set up and torn down by stage1.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodNet {
    pub mode: NetMode,
    /// With `private`: the CNI networks, in interface order (eth0, eth1, ...).
    #[serde(default)]
    pub networks: Vec<skiff_net::Attachment>,
    /// Ports forwarded from the host (by the first network with portmap).
    #[serde(default)]
    pub ports: Vec<skiff_net::PortMapping>,
    /// Where the CNI plugins are.
    #[serde(default)]
    pub cni_path: Vec<PathBuf>,
    #[serde(default)]
    pub dns: Dns,
    /// `--hosts-entry=IP=NAME` lines.
    #[serde(default)]
    pub hosts_entries: Vec<(String, String)>,
    /// `--hosts-entry=host`: start from the host's /etc/hosts.
    #[serde(default)]
    pub hosts_from_host: bool,
    /// With `user`: the pod reaches the host's loopback through its
    /// gateway address (`--net=default:host-loopback=true`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub host_loopback: bool,
}

/// Which network namespace a pod gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetMode {
    /// The host's own namespace (`--net=host`, and the `fly` flavor).
    #[default]
    Host,
    /// A private namespace with only `lo` (`--net=none`).
    None,
    /// A private namespace attached to CNI networks.
    Private,
    /// A private namespace with a user-mode network: an ordinary user's
    /// default network (pasta, started and stopped by stage1).
    User,
}

/// The pod's /etc/resolv.conf.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dns {
    pub mode: DnsMode,
    #[serde(default)]
    pub servers: Vec<String>,
    #[serde(default)]
    pub search: Vec<String>,
    #[serde(default)]
    pub options: Vec<String>,
    /// `--dns-domain`: resolv.conf's `domain` line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DnsMode {
    /// Name servers from the CNI result, else the host's (without loopback
    /// ones on a private network).
    #[default]
    Default,
    /// A copy of the host's resolv.conf (`--dns=host`).
    Host,
    /// The image's own file (`--dns=none`).
    None,
    /// Generated from `--dns=IP`, `--dns-search`, `--dns-opt`.
    Explicit,
}

/// Ids mapped into a pod's user namespace.
pub const USERNS_SIZE: u32 = 65536;

/// The first host id of the user namespace of pod `uuid`: a 65536-aligned
/// block chosen from the UUID, between 2^20 and 2^31 (above the ids of
/// ordinary host users and subuid ranges).
pub fn private_users_base(uuid: &str) -> u32 {
    let n = u32::from_str_radix(uuid.get(..4).unwrap_or("0"), 16).unwrap_or(0);
    USERNS_SIZE * (16 + n % PRIVATE_USERS_BLOCKS)
}

/// How many id blocks `--private-users` pods are given from.
const PRIVATE_USERS_BLOCKS: u32 = 32000;

/// The first free id block for pod `uuid`: its own
/// ([`private_users_base`]) unless a pod that may still run (prepared,
/// running) holds it, then the next free one. `in_use` are the bases of
/// those pods. Two pods never share host ids.
pub fn free_private_users_base(uuid: &str, in_use: &[u32]) -> Option<u32> {
    let first = private_users_base(uuid) / USERNS_SIZE - 16;
    (0..PRIVATE_USERS_BLOCKS)
        .map(|i| USERNS_SIZE * (16 + (first + i) % PRIVATE_USERS_BLOCKS))
        .find(|base| !in_use.contains(base))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeApp {
    pub name: String,
    pub image_id: String,
    pub image_name: String,
    /// Absolute path of the rendered root filesystem (read-only lower layer).
    pub tree: PathBuf,
    /// What the user granted beyond what the image can take (none in pods
    /// written before grants existed).
    #[serde(default)]
    pub grants: privileges::Grants,
}

/// Unix time now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Unix time `secs` as RFC 3339 in UTC (`2026-12-02T14:39:17Z`).
pub fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}

/// The prefix of a pod directory being made (`embryo/.new-<uuid>`),
/// before it is locked: no listing shows it (see [`Pods::create`]).
const NEW: &str = ".new-";

/// A random version-4 UUID.
pub fn new_uuid() -> io::Result<String> {
    let mut b = [0u8; 16];
    let mut filled = 0;
    while filled < b.len() {
        filled += rustix::rand::getrandom(&mut b[filled..], rustix::rand::GetRandomFlags::empty())?;
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    ))
}

/// All pods under one data directory.
#[derive(Debug, Clone)]
pub struct Pods {
    root: PathBuf,
}

/// One pod directory.
#[derive(Debug, Clone)]
pub struct Pod {
    pub uuid: String,
    pub state: State,
    pub path: PathBuf,
}

/// An exclusive lock on a pod directory, released on drop or process exit.
#[derive(Debug)]
pub struct PodLock {
    file: File,
}

impl PodLock {
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Gives up ownership of the locked directory fd (to pass it to stage1).
    pub fn into_file(self) -> File {
        self.file
    }

    /// True if the locked directory is the one at `path` (it was not
    /// removed, or replaced, before the lock was taken).
    fn is_at(&self, path: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (self.file.metadata(), fs::symlink_metadata(path)) {
            (Ok(locked), Ok(there)) => locked.dev() == there.dev() && locked.ino() == there.ino(),
            _ => false,
        }
    }
}

impl Pods {
    /// Image IDs used by pods (their manifests' apps and every image of
    /// their rendered trees, `<pod>/images`): every pod's, or with
    /// `live_only` those that may still run (being prepared, prepared,
    /// running). For the store's gc and `image rm`.
    pub fn images_in_use(
        &self,
        live_only: bool,
    ) -> std::io::Result<std::collections::HashSet<String>> {
        let mut used = std::collections::HashSet::new();
        for state in State::ALL {
            let live = matches!(
                state,
                State::Embryo | State::Prepare | State::Prepared | State::Run
            );
            if live_only && !live {
                continue;
            }
            let dir = self.root.join(state.dir_name());
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for pod in entries.filter_map(Result::ok).map(|e| e.path()) {
                if let Ok(bytes) = fs::read(pod.join("pod"))
                    && let Ok(manifest) = skiff_spec::parse_pod_manifest(&bytes)
                {
                    used.extend(manifest.apps.iter().map(|a| a.image.id.to_string()));
                }
                if let Ok(list) = fs::read_to_string(pod.join("images")) {
                    used.extend(list.lines().map(str::to_string));
                }
            }
        }
        Ok(used)
    }

    pub fn new(data_dir: &Path) -> Self {
        Pods {
            root: data_dir.join("pods"),
        }
    }

    pub fn state_dir(&self, state: State) -> PathBuf {
        self.root.join(state.dir_name())
    }

    /// Runs `f` holding the lock that orders id-range choices, with the
    /// `--private-users` bases of every pod that may still run.
    pub fn with_private_users<T>(
        &self,
        f: impl FnOnce(&[u32]) -> Result<T, PodError>,
    ) -> Result<T, PodError> {
        fs::create_dir_all(&self.root).map_err(io_err("create", &self.root))?;
        let path = self.root.join("private-users.lock");
        let file = File::create(&path).map_err(io_err("create", &path))?;
        rustix::fs::flock(file.as_fd(), rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| io_err("lock", &path)(e.into()))?;
        let in_use: Vec<u32> = self
            .all()?
            .iter()
            .filter(|p| matches!(p.state, State::Prepare | State::Prepared | State::Run))
            .filter_map(|p| p.runtime().ok()?.private_users)
            .collect();
        f(&in_use)
    }

    /// Creates a new pod in `prepare`, locked by the caller until it is
    /// prepared: an unlocked pod in `embryo` or `prepare` is one its
    /// preparer left (see [`Pod::is_preparing`]).
    ///
    /// The directory is made as `embryo/.new-<uuid>`, a name no listing
    /// shows, then locked, stamped and renamed to `prepare/<uuid>`: no pod
    /// is ever seen unlocked while its preparer lives. Between `mkdir` and
    /// `flock` a gc may take the unlocked new directory for one a killed
    /// preparer left and remove it ([`Pods::remove_unlocked_new`]): the
    /// lock is then on a directory that is gone, and creation starts again
    /// with a new uuid.
    pub fn create(&self) -> Result<(Pod, PodLock), PodError> {
        for state in State::ALL {
            let dir = self.state_dir(state);
            fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        }
        const ATTEMPTS: usize = 8;
        for _ in 0..ATTEMPTS {
            let uuid = new_uuid().map_err(io_err("generate a uuid for", &self.root))?;
            let mut pod = Pod {
                path: self.state_dir(State::Embryo).join(format!("{NEW}{uuid}")),
                uuid,
                state: State::Embryo,
            };
            fs::create_dir(&pod.path).map_err(io_err("create", &pod.path))?;
            let lock = match pod.try_lock() {
                Ok(Some(lock)) => lock,
                // Taken, or taken and removed, by a gc in the instant
                // between: this directory is no longer ours.
                Ok(None) => continue,
                Err(PodError::Io(e)) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let created = pod.path.join("created");
            let made = fs::write(&created, now().to_string())
                .map_err(|e| io_err("write", &created)(e).into())
                .and_then(|()| pod.move_to(self, State::Prepare));
            if let Err(e) = made {
                let _ = fs::remove_dir_all(&pod.path);
                return Err(e);
            }
            return Ok((pod, lock));
        }
        Err(PodError::Invalid(format!(
            "a new pod's directory was removed {ATTEMPTS} times before it could be locked \
             (a gc running in a loop?): try again"
        )))
    }

    /// Removes the new pod directories (`embryo/.new-<uuid>`) nobody
    /// holds: left by a preparer killed between its `mkdir` and its
    /// `flock` (or about to take the lock: it then starts again). They
    /// hold nothing but a creation time. Returns how many went.
    pub fn remove_unlocked_new(&self) -> usize {
        let dir = self.state_dir(State::Embryo);
        let Ok(entries) = fs::read_dir(&dir) else {
            return 0;
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(uuid) = name.strip_prefix(NEW) else {
                continue;
            };
            let pod = Pod {
                uuid: uuid.to_string(),
                state: State::Embryo,
                path: entry.path(),
            };
            if let Ok(Some(_lock)) = pod.try_lock()
                && fs::remove_dir_all(&pod.path).is_ok()
            {
                removed += 1;
            }
        }
        removed
    }

    /// Every pod, in any state.
    pub fn all(&self) -> Result<Vec<Pod>, PodError> {
        let mut pods = Vec::new();
        for state in State::ALL {
            let dir = self.state_dir(state);
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("list", &dir)(e).into()),
            };
            for entry in entries.flatten() {
                let uuid = entry.file_name().to_string_lossy().into_owned();
                if uuid.len() == 36 {
                    pods.push(Pod {
                        uuid,
                        state,
                        path: entry.path(),
                    });
                }
            }
        }
        once_each(&mut pods);
        pods.sort_by_key(|p| p.created());
        Ok(pods)
    }

    /// The pod whose UUID is or starts with `query`.
    pub fn find(&self, query: &str) -> Result<Pod, PodError> {
        let query = query.trim().to_ascii_lowercase();
        // Only what a UUID is made of: nothing that names a path.
        if !query.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            return Err(PodError::NotFound(query));
        }
        // A full UUID: look in each state directory, no listing needed.
        if query.len() == 36 {
            for state in State::ALL {
                let path = self.state_dir(state).join(&query);
                if path.is_dir() {
                    return Ok(Pod {
                        uuid: query,
                        state,
                        path,
                    });
                }
            }
            return Err(PodError::NotFound(query));
        }
        let mut matches = Vec::new();
        for state in State::ALL {
            let Ok(entries) = fs::read_dir(self.state_dir(state)) else {
                continue;
            };
            for entry in entries.flatten() {
                let uuid = entry.file_name().to_string_lossy().into_owned();
                if uuid.len() == 36 && !query.is_empty() && uuid.starts_with(&query) {
                    matches.push(Pod {
                        uuid,
                        state,
                        path: entry.path(),
                    });
                }
            }
        }
        once_each(&mut matches);
        match matches.len() {
            0 => Err(PodError::NotFound(query)),
            1 => Ok(matches.into_iter().next().expect("one match")),
            _ => Err(PodError::Ambiguous {
                query,
                matches: matches.iter().map(|p| p.uuid.clone()).collect(),
            }),
        }
    }
}

/// Pods listed state by state, each kept once: a pod that moved on while
/// the states were listed is seen in both, and is where it went (the
/// states are listed in the order pods move through them). The order is
/// kept.
fn once_each(pods: &mut Vec<Pod>) {
    let mut seen = std::collections::HashSet::new();
    pods.reverse();
    pods.retain(|p| seen.insert(p.uuid.clone()));
    pods.reverse();
}

fn read_i64(path: &Path) -> Option<i64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

impl Pod {
    /// Moves the pod directory to `state` (atomic rename).
    pub fn move_to(&mut self, pods: &Pods, state: State) -> Result<(), PodError> {
        let target = pods.state_dir(state).join(&self.uuid);
        fs::rename(&self.path, &target).map_err(io_err("move", &self.path))?;
        self.path = target;
        self.state = state;
        Ok(())
    }

    fn open_dir(&self) -> Result<File, PodError> {
        Ok(File::open(&self.path).map_err(io_err("open", &self.path))?)
    }

    /// The lock just taken on `file`, opened at the pod's path: not found
    /// if the directory moved on (or went) since it was opened.
    fn locked(&self, file: File) -> Result<PodLock, PodError> {
        let lock = PodLock { file };
        if lock.is_at(&self.path) {
            Ok(lock)
        } else {
            Err(io_err("lock", &self.path)(io::ErrorKind::NotFound.into()).into())
        }
    }

    /// Waits for the exclusive lock. A directory that moved on (or went)
    /// while this waited is not found, as for [`Pod::try_lock`].
    pub fn lock(&self) -> Result<PodLock, PodError> {
        let file = self.open_dir()?;
        rustix::fs::flock(file.as_fd(), rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| io_err("lock", &self.path)(e.into()))?;
        self.locked(file)
    }

    /// Takes the lock if nobody holds it. A directory that moved on (or
    /// went) between its opening and its locking, by the holder of the
    /// lock then, is not found: what is done next goes by its path.
    pub fn try_lock(&self) -> Result<Option<PodLock>, PodError> {
        let file = self.open_dir()?;
        match rustix::fs::flock(
            file.as_fd(),
            rustix::fs::FlockOperation::NonBlockingLockExclusive,
        ) {
            Ok(()) => self.locked(file).map(Some),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(io_err("lock", &self.path)(e.into()).into()),
        }
    }

    /// [`Pod::try_lock`], where a pod whose directory is gone (it moved
    /// on since it was listed: its stage1 ended it, another gc removed
    /// it) is not an error but nothing to lock.
    pub fn try_lock_present(&self) -> Result<Option<PodLock>, PodError> {
        match self.try_lock() {
            Err(PodError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            other => other,
        }
    }

    /// True if the pod is in `run` and its stage1 holds the lock.
    pub fn is_running(&self) -> bool {
        self.state == State::Run && matches!(self.try_lock(), Ok(None))
    }

    /// Removes the pod's directory, with what is mounted under it, moving
    /// it to `garbage` first (so that an interrupted removal is finished by
    /// gc). The caller has released its networks and cgroups.
    pub fn remove(&mut self, pods: &Pods) -> Result<(), PodError> {
        if self.state != State::Garbage {
            self.move_to(pods, State::Garbage)?;
        }
        // Mount points and process roots are named by the kernel without
        // symlinks: so must the pod's directory be, to be compared.
        let real = fs::canonicalize(&self.path).map_err(io_err("resolve", &self.path))?;
        // Nothing may still run in what is unmounted (the apps of a fly
        // pod whose stage1 was killed).
        mounts::kill_processes_rooted_under(&real);
        mounts::unmount_under(&real).map_err(|(point, e)| io_err("unmount", &point)(e))?;
        // Never delete through a mount (a host /dev bound into a fly app).
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        if let Some(point) = mounts::mount_points_under(&mountinfo, &real).first() {
            return Err(PodError::Invalid(format!(
                "pod {} not removed: {} is still mounted",
                self.uuid,
                point.display()
            )));
        }
        Ok(fs::remove_dir_all(&self.path).map_err(io_err("remove", &self.path))?)
    }

    /// True if the pod is being prepared: in `embryo` or `prepare` with
    /// its preparer holding the lock. A pod a killed `prepare` left behind
    /// is not, however young: a pod is listed only once its preparer holds
    /// its lock (see [`Pods::create`]). (Pods in `embryo` are left by
    /// older versions, which made them there before locking them.)
    pub fn is_preparing(&self) -> bool {
        matches!(self.state, State::Embryo | State::Prepare) && matches!(self.try_lock(), Ok(None))
    }

    pub fn manifest_path(&self) -> PathBuf {
        self.path.join("pod")
    }

    pub fn runtime(&self) -> Result<Runtime, PodError> {
        let path = self.path.join("runtime.json");
        let bytes = fs::read(&path).map_err(io_err("read", &path))?;
        serde_json::from_slice(&bytes).map_err(|e| PodError::BadRuntime {
            path,
            reason: e.to_string(),
        })
    }

    pub fn write_runtime(&self, runtime: &Runtime) -> Result<(), PodError> {
        let path = self.path.join("runtime.json");
        let json = serde_json::to_vec_pretty(runtime).map_err(|e| PodError::BadRuntime {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        Ok(fs::write(&path, json).map_err(io_err("write", &path))?)
    }

    pub fn created(&self) -> i64 {
        read_i64(&self.path.join("created")).unwrap_or(0)
    }

    pub fn started(&self) -> Option<i64> {
        read_i64(&self.path.join("started"))
    }

    pub fn exited(&self) -> Option<i64> {
        read_i64(&self.path.join("exited"))
    }

    pub fn pid(&self) -> Option<i32> {
        read_i64(&self.path.join("pid")).map(|p| p as i32)
    }

    /// Records the pod's pid (host namespace; written by stage1 once the
    /// pod runs: its init, or the process `skiff stop` signals).
    pub fn set_pid(&self, pid: i32) {
        let _ = fs::write(self.path.join("pid"), pid.to_string());
    }

    /// What the pod's stage1 notes for `skiff status` (one line; the kvm
    /// flavor's accelerator and why), and reads back.
    pub fn set_note(&self, note: PodNote, text: &str) {
        let path = self.path.join(note.file());
        if let Some(dir) = path.parent() {
            let _ = fs::create_dir_all(dir);
        }
        let _ = fs::write(path, format!("{}\n", text.trim()));
    }

    pub fn note(&self, note: PodNote) -> Option<String> {
        fs::read_to_string(self.path.join(note.file()))
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
    }

    /// Exit status of an app, once stage1 recorded it.
    pub fn app_exit(&self, app: &str) -> Option<i32> {
        read_i64(&self.app_dir(app)?.join("exit")).map(|c| c as i32)
    }

    /// Records an app's exit status (what [`Pod::app_exit`] reads);
    /// best effort, as stage1 records it while the pod ends. A name that is
    /// no app name (`..`, a path) records nothing.
    pub fn set_app_exit(&self, app: &str, code: i32) {
        self.write_app_file(app, "exit", &code.to_string());
    }

    /// The runs of an app that were followed by a restart (`--restart`).
    pub fn app_runs(&self, app: &str) -> restart::Runs {
        self.app_dir(app)
            .map(|dir| restart::Runs::read(&dir.join("runs")))
            .unwrap_or_default()
    }

    /// Records a run of an app that is being restarted (best effort, as
    /// [`Pod::set_app_exit`]).
    pub fn add_app_run(&self, app: &str, status: i32) {
        let Some(dir) = self.made_app_dir(app) else {
            return;
        };
        let path = dir.join("runs");
        let mut runs = restart::Runs::read(&path);
        runs.add(restart::Run {
            status,
            ended: now(),
        });
        let _ = runs.write(&path);
    }

    /// Records how many OOM kills an app's cgroup counted (best effort).
    pub fn set_app_oom_kills(&self, app: &str, kills: u64) {
        self.write_app_file(app, "oom", &kills.to_string());
    }

    /// OOM kills counted in an app's cgroup while the pod ran (recorded by
    /// stage1 as the pod ended; none if there were none).
    pub fn app_oom_kills(&self, app: &str) -> Option<u64> {
        read_i64(&self.app_dir(app)?.join("oom")).and_then(|n| u64::try_from(n).ok())
    }

    /// Records the pid of an app's process in the pod's pid namespace, as
    /// the pod's init reported it (best effort, as [`Pod::set_app_exit`]).
    pub fn set_app_pid(&self, app: &str, pid: i32) {
        self.write_app_file(app, "pid", &pid.to_string());
    }

    /// An app's pid in the pod's pid namespace (what
    /// [`Pod::set_app_pid`] recorded).
    pub fn app_pid(&self, app: &str) -> Option<i32> {
        read_i64(&self.app_dir(app)?.join("pid")).and_then(|p| i32::try_from(p).ok())
    }

    /// [`Pod::app_dir`], made if missing (best effort).
    fn made_app_dir(&self, app: &str) -> Option<PathBuf> {
        let dir = self.app_dir(app)?;
        let _ = fs::create_dir_all(&dir);
        Some(dir)
    }

    /// Writes `text` to `apps/<app>/<file>` (best effort: stage1 records
    /// these while the pod ends).
    fn write_app_file(&self, app: &str, file: &str, text: &str) {
        if let Some(dir) = self.made_app_dir(app) {
            let _ = fs::write(dir.join(file), text);
        }
    }

    /// `apps/<app>` of the pod, for a valid app name only: the name may come
    /// from inside the pod (init's reports).
    fn app_dir(&self, app: &str) -> Option<PathBuf> {
        skiff_spec::AcName::new(app).ok()?;
        Some(self.path.join("apps").join(app))
    }

    /// When every app of the pod had started (Unix time; stage1 records it
    /// as it tells systemd READY=1).
    pub fn ready(&self) -> Option<i64> {
        read_i64(&self.path.join("ready"))
    }

    /// Records a timestamp file (`started`, `ready`, `exited`).
    pub fn stamp(&self, what: &str) -> Result<(), PodError> {
        let path = self.path.join(what);
        Ok(fs::write(&path, now().to_string()).map_err(io_err("write", &path))?)
    }

    /// The state to show: `running`, `exited` (also for a `run` pod whose
    /// stage1 died), or the directory state.
    pub fn display_state(&self) -> &'static str {
        match self.state {
            State::Run if self.is_running() => "running",
            State::Run | State::ExitedGarbage => "exited",
            State::Prepared => "prepared",
            State::Embryo | State::Prepare => "preparing",
            State::Garbage => "deleting",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flavors_parse_print_and_refuse_unknown_ones() {
        for f in Flavor::ALL {
            assert_eq!(f.as_str().parse::<Flavor>(), Ok(f));
            assert_eq!(serde_json::to_string(&f).unwrap(), format!("\"{f}\""));
        }
        assert!(
            "nspawn"
                .parse::<Flavor>()
                .unwrap_err()
                .contains("ns, fly, oci and kvm")
        );
        // A pod whose runtime.json names an unknown flavor is invalid,
        // never run as another flavor.
        let bad = r#"{"flavor": "bogus", "hostname": "h", "apps": []}"#;
        assert!(serde_json::from_str::<Runtime>(bad).is_err());
        let good = r#"{"flavor": "oci", "hostname": "h", "apps": []}"#;
        assert_eq!(
            serde_json::from_str::<Runtime>(good).unwrap().flavor,
            Flavor::Oci
        );
    }

    #[test]
    fn pods_move_and_lock() {
        let dir = tempfile::tempdir().unwrap();
        let pods = Pods::new(dir.path());
        let (mut pod, preparing) = pods.create().unwrap();
        assert_eq!(pod.state, State::Prepare);
        assert!(pod.is_preparing(), "locked by its preparer");
        drop(preparing);
        assert!(!pod.is_preparing(), "left by its preparer, however young");
        assert!(pod.created() > 0);
        pod.move_to(&pods, State::Prepared).unwrap();
        pod.move_to(&pods, State::Run).unwrap();
        assert_eq!(pods.find(&pod.uuid[..8]).unwrap().state, State::Run);
        assert_eq!(
            pod.display_state(),
            "exited",
            "run without a lock holder is exited"
        );
        let lock = pod.lock().unwrap();
        assert!(pod.is_running());
        assert_eq!(pod.display_state(), "running");
        drop(lock);
        assert!(!pod.is_running());
        assert!(matches!(pods.find("ffffffff"), Err(PodError::NotFound(_))));
        // Listed, then moved on (its stage1 ended it): nothing to lock,
        // not an error; a plain try_lock says what failed.
        let listed = pods.find(&pod.uuid).unwrap();
        pod.move_to(&pods, State::ExitedGarbage).unwrap();
        assert!(listed.try_lock_present().unwrap().is_none());
        assert!(listed.try_lock().is_err());
    }

    #[test]
    fn a_lock_on_a_directory_that_went_is_not_at_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let pods = Pods::new(dir.path());
        let (pod, lock) = pods.create().unwrap();
        assert!(lock.is_at(&pod.path));
        // Removed and made again under the same name (the instant between
        // a preparer's mkdir and its flock, seen by gc): not the same one.
        fs::remove_dir_all(&pod.path).unwrap();
        assert!(!lock.is_at(&pod.path));
        fs::create_dir(&pod.path).unwrap();
        assert!(!lock.is_at(&pod.path));
        drop(lock);
        // Opened, then moved on by the lock's holder before it was locked.
        let (mut moving, holder) = pods.create().unwrap();
        let listed = moving.clone();
        let file = listed.open_dir().unwrap();
        moving.move_to(&pods, State::Prepared).unwrap();
        drop(holder);
        rustix::fs::flock(
            file.as_fd(),
            rustix::fs::FlockOperation::NonBlockingLockExclusive,
        )
        .unwrap();
        assert!(!PodLock { file }.is_at(&listed.path));
        assert!(listed.try_lock_present().unwrap().is_none());
        assert!(!listed.is_preparing() && !listed.is_running());
    }

    #[test]
    fn a_new_pod_directory_is_listed_only_once_locked_and_gc_takes_what_a_killed_preparer_left() {
        let dir = tempfile::tempdir().unwrap();
        let pods = Pods::new(dir.path());
        let (pod, lock) = pods.create().unwrap();
        // Left by a preparer killed between mkdir and flock, and one whose
        // preparer is about to take the lock (it then starts again).
        let left = pods
            .state_dir(State::Embryo)
            .join(format!("{NEW}{}", new_uuid().unwrap()));
        fs::create_dir(&left).unwrap();
        let held = pods
            .state_dir(State::Embryo)
            .join(format!("{NEW}{}", new_uuid().unwrap()));
        fs::create_dir(&held).unwrap();
        let holder = File::open(&held).unwrap();
        rustix::fs::flock(&holder, rustix::fs::FlockOperation::LockExclusive).unwrap();
        let all = pods.all().unwrap();
        assert_eq!(all.len(), 1, "{all:?}");
        assert_eq!(all[0].uuid, pod.uuid);
        assert!(all[0].is_preparing());
        assert_eq!(pods.remove_unlocked_new(), 1);
        assert!(!left.exists());
        assert!(held.exists(), "a locked new directory is its preparer's");
        drop(lock);
        assert!(!pods.all().unwrap()[0].is_preparing());
    }

    #[test]
    fn app_exits_are_kept_only_under_valid_app_names() {
        let dir = tempfile::tempdir().unwrap();
        let pods = Pods::new(dir.path());
        let (pod, _preparing) = pods.create().unwrap();
        pod.set_app_exit("web", 3);
        assert_eq!(pod.app_exit("web"), Some(3));
        for bad in ["../../escaped", "/abs", "..", "a/b", ""] {
            pod.set_app_exit(bad, 1);
            assert_eq!(pod.app_exit(bad), None, "{bad}");
        }
        assert!(!dir.path().join("escaped").exists());
        assert!(!pod.path.join("apps").join("a").exists());
    }

    #[test]
    fn uuids_are_v4() {
        let u = new_uuid().unwrap();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_ne!(u, new_uuid().unwrap());
    }
}
