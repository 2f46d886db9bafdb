//! The `ns` flavor: a pod in new mount, pid, UTS and IPC namespaces.
//!
//! Processes (see docs/stage1.md):
//!
//! ```text
//! stage1 supervisor (the `skiff run` process after exec; host namespaces)
//!   └─ pod init (pid 1 of the pod; its own mount/UTS/IPC namespaces;
//!        │        root = a tmpfs holding only the apps' roots)
//!        ├─ app "a" (own mount namespace, root = a's overlay)
//!        └─ app "b"
//! ```
//!
//! The supervisor writes the pod's pid, waits for init, records every
//! app's exit status (reported by init over a pipe, with setup errors)
//! and moves the pod to `exited-garbage`. Mounts live only in the pod's
//! namespaces and disappear with its last process.

use crate::sys::{self, process::Forked};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use rustix::mount::MountFlags;
use rustix::thread::UnshareFlags;
use skiff_pod::privileges::Grants;
use skiff_pod::{Pod, Pods, Runtime, State};
use skiff_spec::{App, PodManifest};

use crate::mounts::{self, Root};
use crate::report::{self, Report, send};
use crate::{EXIT_SETUP_FAILED, Stage1Error, app, cgroups, seccomp};

/// One app as the pod runs it: the pod manifest's app with the image's
/// app as default.
pub struct AppPlan {
    pub name: String,
    pub app: App,
    pub tree: PathBuf,
    pub read_only: bool,
    pub mounts: Vec<PlannedMount>,
    /// `--no-overlay`: the root is a copy of the tree, not an overlay.
    pub copy: bool,
    /// What the user granted beyond what the image can take.
    pub grants: Grants,
}

/// A volume mounted into an app.
pub struct PlannedMount {
    pub volume: skiff_spec::pod::Volume,
    pub target: String,
    pub read_only: bool,
}

pub fn plan(pod: &Pod) -> Result<(PodManifest, Runtime, Vec<AppPlan>), Stage1Error> {
    let bytes = std::fs::read(pod.manifest_path())
        .map_err(|e| Stage1Error::Config(format!("cannot read the pod manifest: {e}")))?;
    let manifest = skiff_spec::parse_pod_manifest(&bytes)
        .map_err(|e| Stage1Error::Config(format!("invalid pod manifest: {e}")))?;
    let runtime = pod
        .runtime()
        .map_err(|e| Stage1Error::Config(e.to_string()))?;
    let mut plans = Vec::new();
    for ra in &manifest.apps {
        let rt = runtime
            .apps
            .iter()
            .find(|a| a.name == ra.name.as_str())
            .ok_or_else(|| Stage1Error::Config(format!("runtime.json has no app '{}'", ra.name)))?;
        let app = ra.app.clone().ok_or_else(|| {
            Stage1Error::Config(format!(
                "app '{}' has no exec (stage0 writes the effective app)",
                ra.name
            ))
        })?;
        let mut mounts = Vec::new();
        for m in &ra.mounts {
            let volume = manifest
                .volumes
                .iter()
                .find(|v| v.name == m.volume)
                .ok_or_else(|| {
                    Stage1Error::Config(format!(
                        "app '{}' mounts volume '{}', which the pod does not define",
                        ra.name, m.volume
                    ))
                })?
                .clone();
            let point_ro = app
                .mount_points
                .iter()
                .any(|mp| mp.path == m.path && mp.read_only);
            let read_only = volume.read_only.unwrap_or(false) || point_ro;
            mounts.push(PlannedMount {
                volume,
                target: m.path.clone(),
                read_only,
            });
        }
        plans.push(AppPlan {
            name: ra.name.to_string(),
            app,
            tree: rt.tree.clone(),
            grants: rt.grants,
            read_only: ra.read_only_root_fs,
            mounts,
            copy: runtime.no_overlay,
        });
    }
    if plans.is_empty() {
        return Err(Stage1Error::Config("the pod has no apps".to_string()));
    }
    Ok((manifest, runtime, plans))
}

/// Runs the pod; returns the exit status for `skiff run` (the first app's).
// The supervisor's stderr is the pod's console: app start failures are
// reported there, as they happen.
#[allow(clippy::print_stderr)]
pub fn run(pods: &Pods, mut pod: Pod, lock: Option<OwnedFd>) -> Result<i32, Stage1Error> {
    let (_manifest, runtime, mut plans) = plan(&pod)?;
    let limits: Vec<(String, cgroups::Limits)> = plans
        .iter()
        .map(|p| (p.name.clone(), cgroups::limits(&p.app)))
        .collect();
    let pod_cgroups = cgroups::PodCgroups::create(
        Path::new(cgroups::ROOT),
        &pod.uuid,
        &limits,
        runtime.pids_limit,
        &crate::devices::allowed(&runtime.devices),
    )?;
    let (init_cgroup, app_cgroups) = pod_cgroups.open_joins()?;
    // With --interactive init makes the pty in the app's devpts and passes
    // the master back over this channel.
    // Otherwise the caller's terminal and files reach the pod only through
    // pipes (crate::stdio).
    let (pty_channel, pipes) = if runtime.interactive {
        (Some(crate::tty::channel()?), None)
    } else {
        (None, crate::stdio::Pipes::for_caller()?)
    };
    let (read_end, write_end) =
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| {
            Stage1Error::Setup {
                what: "create the status pipe".into(),
                source: e.into(),
            }
        })?;
    // Made here, in the host pid namespace, where /proc shows its holder.
    let userns = match runtime.private_users {
        Some(base) => Some(crate::userns::create(base, skiff_pod::USERNS_SIZE)?),
        None => None,
    };
    // Networking before the pid namespace: CNI plugins must not become
    // processes of the pod.
    let undo = |e: Stage1Error| {
        let _ = crate::net::tear_down(&pod.path, &pod.uuid);
        pod_cgroups.remove();
        e
    };
    let netns = crate::net::set_up(&pod, &runtime).map_err(undo)?;
    let registered = crate::mds::register(&pod, &runtime, &mut plans);
    // The supervisor's own children after the pod's (CNI DEL at the end)
    // must not land in the pod's pid namespace, which is gone by then.
    let host_pidns = std::fs::File::open("/proc/self/ns/pid")
        .map_err(setup_err("open the host's pid namespace"))
        .map_err(undo)?;
    crate::sys::process::unshare(UnshareFlags::NEWPID)
        .map_err(|e| Stage1Error::Setup {
            what: "create the pid namespace".into(),
            source: e.into(),
        })
        .map_err(undo)?;
    let forked = sys::process::fork().map_err(|source| {
        undo(Stage1Error::Setup {
            what: "fork the pod init".into(),
            source,
        })
    })?;
    let child = match forked {
        Forked::Parent(child) => child,
        Forked::Child => {
            // Init lives on next to the apps: it keeps no handle on the host
            // beyond what starting them needs (a pod process allowed to trace
            // it, `--cap-retain=CAP_SYS_PTRACE`, could reopen any through
            // /proc/1/fd), and drops those once they are started.
            drop(read_end);
            drop(lock);
            drop(init_cgroup);
            drop(host_pidns);
            let pty_channel = pty_channel.map(|(_, init_end)| init_end);
            // Its own session: init's `kill(0, …)` (code a tracing pod
            // process runs in it could call it) would otherwise reach the
            // caller's process group outside the pod.
            let _ = rustix::process::setsid();
            let attached = match pipes {
                Some(pipes) => pipes.attach(),
                // With --interactive the app gets a pty of the pod's own;
                // init keeps nothing of the caller's terminal.
                None if runtime.interactive => crate::stdio::null_stdio(),
                None => Ok(()),
            };
            let joined = attached.and_then(|()| join_netns(netns.as_ref()));
            drop(netns);
            let code = match joined.and_then(|()| {
                init(
                    &pod,
                    &runtime,
                    &plans,
                    app_cgroups,
                    pty_channel,
                    userns,
                    &write_end,
                )
            }) {
                Ok(()) => 0,
                Err(e) => {
                    send(&write_end, &Report::Error(crate::error_line(&e)));
                    EXIT_SETUP_FAILED
                }
            };
            std::process::exit(code);
        }
    };
    drop(write_end);
    if let Err(e) = rustix::thread::move_into_link_name_space(
        std::os::fd::AsFd::as_fd(&host_pidns),
        Some(rustix::thread::LinkNameSpaceType::ProcessID),
    ) {
        eprintln!("skiff: cannot return to the host's pid namespace: {e}");
    }
    drop(host_pidns);
    // Init is moved into the pod's cgroup from here, while it sets up its
    // mounts: the first cgroup migration after an idle spell waits for an
    // RCU grace period (docs/performance.md), which this overlaps with
    // init's work instead of adding to it. The apps join their own cgroups
    // themselves, before exec, so no app runs outside its limits.
    let mut setup_error = cgroups::move_into(&init_cgroup, child).err().map(|e| {
        sys::process::kill(child, libc::SIGKILL);
        crate::error_line(&e)
    });
    drop(init_cgroup);
    forward_to(child);
    let copying = match pipes.map(|pipes| pipes.start(child)).transpose() {
        Ok(copying) => copying,
        Err(e) => {
            sys::process::kill(child, libc::SIGKILL);
            setup_error.get_or_insert(crate::error_line(&e));
            None
        }
    };
    pod.set_pid(child);
    let _ = pod.stamp("started");

    let mut recorder = report::Recorder::new(&pod, plans.iter().map(|p| p.name.as_str()).collect());
    let mut on_line = |line: &str| recorder.line(line);
    let master = pty_channel.and_then(|(supervisor_end, init_end)| {
        drop(init_end);
        crate::tty::receive_master(&supervisor_end)
    });
    match &master {
        Some(master) => {
            let raw = crate::tty::RawMode::enter();
            crate::tty::relay(master, &read_end, Some(&mut on_line));
            drop(raw);
        }
        None => {
            report::read_lines(std::fs::File::from(read_end), u64::MAX, &mut on_line);
        }
    }
    let mut first_status = recorder.first_status;
    if let Some(e) = recorder.setup_error {
        setup_error.get_or_insert(e);
    }
    let wstatus = sys::process::wait(child).unwrap_or(0);
    if let Some(copying) = copying {
        copying.finish();
    }
    // Init killed (`skiff stop --force`) takes its apps with it before it
    // can report them: they ended by the same signal.
    if libc::WIFSIGNALED(wstatus) {
        let code = crate::exit_code(wstatus);
        for p in &plans {
            if pod.app_exit(&p.name).is_none() {
                pod.set_app_exit(&p.name, code);
                if p.name == plans[0].name {
                    first_status = Some(code);
                }
            }
        }
    }
    for p in &plans {
        let kills = pod_cgroups.oom_kills(&p.name);
        if kills > 0 {
            let dir = pod.path.join("apps").join(&p.name);
            let _ = std::fs::create_dir_all(&dir);
            let _ = std::fs::write(dir.join("oom"), kills.to_string());
            eprintln!(
                "skiff: app '{}' of pod {} was killed for exceeding its memory limit",
                p.name, pod.uuid
            );
        }
    }
    drop(netns);
    pod_cgroups.remove();
    end_pod(pods, &mut pod, registered);
    if let Some(e) = setup_error {
        return Err(Stage1Error::Pod(e));
    }
    Ok(first_status.unwrap_or(EXIT_SETUP_FAILED))
}

/// The end of every flavor's supervisor: unregister from the metadata
/// service, delete the pod's networks (gc retries a failure), stamp the
/// exit and move the pod to exited-garbage.
#[allow(clippy::print_stderr)]
pub(crate) fn end_pod(pods: &Pods, pod: &mut Pod, registered: Option<crate::mds::Registered>) {
    if let Some(r) = registered {
        r.unregister();
    }
    if let Err(e) = crate::net::tear_down(&pod.path, &pod.uuid) {
        eprintln!(
            "skiff: pod {}: removing its networks failed (skiff gc retries): {}",
            pod.uuid,
            crate::error_line(&e)
        );
    }
    let _ = pod.stamp("exited");
    let _ = pod.move_to(pods, State::ExitedGarbage);
}

/// Moves init into the pod's network namespace (before it makes its other
/// namespaces, while it still holds the host's capabilities).
pub(crate) fn join_netns(netns: Option<&std::fs::File>) -> Result<(), Stage1Error> {
    match netns {
        Some(ns) => rustix::thread::move_into_link_name_space(
            std::os::fd::AsFd::as_fd(ns),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .map_err(|e| setup_err("join the pod's network namespace")(e.into())),
        None => Ok(()),
    }
}

pub(crate) fn setup_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Stage1Error {
    let what = what.into();
    move |source| Stage1Error::Setup { what, source }
}

/// Mounts an app's overlay root at `<stage1_root>/apps/<app>/rootfs`
/// (lower: the rendered tree; upper/work: `overlay/<app>` in the pod dir),
/// `nodev`: device nodes in the root (made by the app or brought by the
/// image) cannot be opened.
pub(crate) fn mount_app_root(
    pod: &Pod,
    stage1_root: &Path,
    p: &AppPlan,
    userns: Option<&OwnedFd>,
) -> Result<Root, Stage1Error> {
    let root = mount_app_root_dev(pod, stage1_root, p, userns)?;
    mounts::set_attrs(
        &root.fd,
        mounts::ATTR_NODEV,
        false,
        &format!("the root of app '{}'", p.name),
    )?;
    Ok(root)
}

fn mount_app_root_dev(
    pod: &Pod,
    stage1_root: &Path,
    p: &AppPlan,
    userns: Option<&OwnedFd>,
) -> Result<Root, Stage1Error> {
    let target = format!("/apps/{}/rootfs", p.name);
    let fd = Root::open(stage1_root)?.resolve(Path::new(&target), true, false)?;
    if p.copy {
        return mount_copied_root(pod, stage1_root, p, &target, &fd, userns);
    }
    let overlay = pod.path.join("overlay").join(&p.name);
    for sub in ["upper", "work"] {
        let dir = overlay.join(sub);
        std::fs::create_dir_all(&dir).map_err(setup_err(format!("create {}", dir.display())))?;
    }
    // With a user namespace the tree (shared, on disk with the image's
    // ids) is an idmapped mount, so in-pod ids read as on-disk ids; the
    // upper layer is the pod's alone and stores what the pod writes under
    // the shifted host ids (a setuid-root file made in the pod is owned
    // by the pod's unprivileged root on disk, not by host root).
    let idmapped = match userns {
        Some(userns) => {
            let tree = stage1_root.join(".idmap").join(&p.name).join("lower");
            std::fs::create_dir_all(&tree)
                .map_err(setup_err(format!("create {}", tree.display())))?;
            crate::userns::bind_idmapped(&p.tree, &tree, userns)?;
            if let Some(base) = mounts::pod_root_id() {
                for sub in ["upper", "work"] {
                    let dir = overlay.join(sub);
                    std::os::unix::fs::chown(&dir, Some(base), Some(base)).map_err(setup_err(
                        format!("give {} to the pod's root", dir.display()),
                    ))?;
                }
            }
            Some(tree)
        }
        None => None,
    };
    let tree = idmapped.as_deref().unwrap_or(p.tree.as_path());
    let overlay = overlay.as_path();
    let lower = tree.display().to_string();
    let upper = overlay.join("upper").display().to_string();
    let work = overlay.join("work").display().to_string();
    if [&lower, &upper, &work]
        .iter()
        .any(|s| s.contains([',', ':', '\n']))
    {
        return Err(Stage1Error::Config(format!(
            "paths with ',' or ':' cannot be used with overlayfs: {lower}"
        )));
    }
    let data = std::ffi::CString::new(format!("lowerdir={lower},upperdir={upper},workdir={work}"))
        .map_err(|_| Stage1Error::Config("NUL in an overlay path".into()))?;
    let mount_overlay = || {
        mounts::mount(
            "overlay",
            &fd,
            "overlay",
            MountFlags::empty(),
            Some(&data),
            &format!("the overlay root of app '{}'", p.name),
        )
    };
    match userns.and(mounts::pod_root_id()) {
        // The overlay works with its mounter's credentials: in-pod root's
        // ids, which the idmapped layers map.
        Some(id) => mounts::as_pod_root(id, mount_overlay),
        None => mount_overlay(),
    }
    .map_err(|e| {
        Stage1Error::Config(format!(
            "{} (without overlayfs support here, run with --no-overlay)",
            crate::error_line(&e)
        ))
    })?;
    // The overlay holds its own reference to the layer.
    if let Some(layer) = &idmapped {
        rustix::mount::unmount(layer, rustix::mount::UnmountFlags::DETACH)
            .map_err(|e| setup_err(format!("unmount {}", layer.display()))(e.into()))?;
    }
    Root::open(&stage1_root.join(target.trim_start_matches('/')))
}

/// `--no-overlay`: copies the tree to `copy/<app>` in the pod dir (once)
/// and binds it as the app's root. With `--private-users` the copy's
/// owners are shifted into the pod's range (what the pod writes there is
/// on disk under its own unprivileged ids, as in an overlay's upper).
fn mount_copied_root(
    pod: &Pod,
    stage1_root: &Path,
    p: &AppPlan,
    target: &str,
    fd: &OwnedFd,
    userns: Option<&OwnedFd>,
) -> Result<Root, Stage1Error> {
    let copies = pod.path.join("copy");
    let copy = copies.join(&p.name);
    if !copy.exists() {
        std::fs::create_dir_all(&copies)
            .map_err(setup_err(format!("create {}", copies.display())))?;
        // Copied under a temporary name so that an interrupted copy is
        // never taken for a complete one.
        let partial = copies.join(format!(".partial-{}", p.name));
        let _ = std::fs::remove_dir_all(&partial);
        let owners = match (userns, mounts::pod_root_id()) {
            (Some(_), Some(base)) => crate::copy::Owners::Shifted { base },
            _ => crate::copy::Owners::Kept,
        };
        crate::copy::copy_tree(&p.tree, &partial, owners)
            .and_then(|()| std::fs::rename(&partial, &copy))
            .map_err(setup_err(format!(
                "copy the root of app '{}' (--no-overlay)",
                p.name
            )))?;
    }
    let mounted = stage1_root.join(target.trim_start_matches('/'));
    mounts::bind(
        &copy.display().to_string(),
        fd,
        false,
        &format!("the copied root of app '{}'", p.name),
    )?;
    Root::open(&mounted)
}

/// Volumes, then read-only if asked (after every mount point exists).
pub(crate) fn finish_app_root(pod: &Pod, app_root: &Root, p: &AppPlan) -> Result<(), Stage1Error> {
    finish_app_root_with(pod, app_root, p, &|_| false)
}

/// [`finish_app_root`], except that the volumes `elsewhere` picks only get
/// their mount point: another party mounts them (the kvm guest).
pub(crate) fn finish_app_root_with(
    pod: &Pod,
    app_root: &Root,
    p: &AppPlan,
    elsewhere: &dyn Fn(&PlannedMount) -> bool,
) -> Result<(), Stage1Error> {
    for m in &p.mounts {
        if elsewhere(m) {
            app_root.resolve(Path::new(&m.target), true, false)?;
        } else {
            mount_volume(pod, app_root, m)?;
        }
    }
    for (source, target) in crate::net::etc_files(&pod.path) {
        let what = format!("the pod's {target}");
        // The pod's root owns its /etc/hosts and resolv.conf, in a user
        // namespace too.
        if let Some(base) = mounts::pod_root_id() {
            std::os::unix::fs::chown(&source, Some(base), Some(base))
                .map_err(setup_err(format!("give {what} to the pod's root")))?;
        }
        let fd = app_root.resolve(Path::new(target), true, true)?;
        mounts::bind(&source.display().to_string(), &fd, false, &what)?;
        if p.read_only {
            let mounted = app_root.resolve(Path::new(target), false, true)?;
            mounts::remount_bind(&mounted, MountFlags::RDONLY, &what)?;
        }
    }
    if p.read_only {
        // Read-only, and still nodev (a plain remount would reset it).
        mounts::set_attrs(
            &app_root.fd,
            mounts::ATTR_RDONLY | mounts::ATTR_NODEV,
            false,
            &format!("the root of app '{}'", p.name),
        )?;
    }
    Ok(())
}

/// The host directory behind a volume (an empty volume lives in the pod
/// directory, made on first use with its mode and owner).
pub(crate) fn volume_source(
    pod: &Pod,
    v: &skiff_spec::pod::Volume,
) -> Result<PathBuf, Stage1Error> {
    if v.kind == "host" {
        return Ok(PathBuf::from(&v.source));
    }
    let dir = pod.path.join("volumes").join(v.name.as_str());
    if !dir.exists() {
        std::fs::create_dir_all(&dir)
            .map_err(setup_err(format!("create the volume {}", dir.display())))?;
        let mode = v
            .mode
            .as_deref()
            .and_then(|m| u32::from_str_radix(m, 8).ok())
            .unwrap_or(0o755);
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(mode))
            .map_err(setup_err(format!("set the mode of volume '{}'", v.name)))?;
        let (mut uid, mut gid) = (
            v.uid.and_then(|u| u32::try_from(u).ok()),
            v.gid.and_then(|g| u32::try_from(g).ok()),
        );
        // In a user namespace the pod's ids are host ids shifted by its base.
        if let Some(base) = mounts::pod_root_id() {
            let shift = |id: Option<u32>| {
                Some(id.unwrap_or(0))
                    .filter(|id| *id < skiff_pod::USERNS_SIZE)
                    .map(|id| base + id)
                    .ok_or_else(|| {
                        Stage1Error::Config(format!(
                            "volume '{}': uid/gid must be below {} with --private-users",
                            v.name,
                            skiff_pod::USERNS_SIZE
                        ))
                    })
            };
            (uid, gid) = (Some(shift(uid)?), Some(shift(gid)?));
        }
        std::os::unix::fs::chown(&dir, uid, gid)
            .map_err(setup_err(format!("set the owner of volume '{}'", v.name)))?;
    }
    Ok(dir)
}

/// Bind-mounts a volume at its target, resolved inside the app's root.
fn mount_volume(pod: &Pod, root: &Root, m: &PlannedMount) -> Result<(), Stage1Error> {
    let source = volume_source(pod, &m.volume)?;
    let is_file = std::fs::metadata(&source)
        .map_err(setup_err(format!(
            "use volume '{}' ({})",
            m.volume.name,
            source.display()
        )))?
        .is_file();
    let what = format!("volume '{}' at {}", m.volume.name, m.target);
    let target = root.resolve(Path::new(&m.target), true, is_file)?;
    let recursive = m.volume.recursive.unwrap_or(false);
    mounts::bind(&source.display().to_string(), &target, recursive, &what)?;
    // nodev, and read-only when asked, on the volume and every submount.
    let mounted = root.resolve(Path::new(&m.target), false, is_file)?;
    let ro = if m.read_only { mounts::ATTR_RDONLY } else { 0 };
    mounts::set_attrs(&mounted, mounts::ATTR_NODEV | ro, recursive, &what)?;
    Ok(())
}

/// The pod init's pid, for the supervisor's signal handler.
static INIT_PID: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn forward_to_init(sig: libc::c_int) {
    let pid = INIT_PID.load(std::sync::atomic::Ordering::Relaxed);
    if pid > 0 {
        sys::process::kill(pid, sig);
    }
}

/// In the supervisor: Ctrl-C, `kill` and hang-ups go to the pod's init
/// (which passes them to the apps) instead of killing the supervisor, so
/// the pod is always stopped cleanly and its status recorded.
pub(crate) fn forward_to(init: i32) {
    INIT_PID.store(init, std::sync::atomic::Ordering::Relaxed);
    on_termination(forward_to_init);
    unblock_termination();
}

/// Installs `handler` for the [`TERMINATION_SIGNALS`].
pub(crate) fn on_termination(handler: sys::signal::Handler) {
    sys::signal::on(&TERMINATION_SIGNALS, handler, true);
}

/// The signals that stop a pod.
pub const TERMINATION_SIGNALS: [libc::c_int; 4] =
    [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT];

/// Stage0 blocks these before exec-ing stage1 (the mask survives exec), so
/// that a Ctrl-C before the handlers are in place waits for them.
fn unblock_termination() {
    sys::signal::set_blocked(&TERMINATION_SIGNALS, false);
}

/// Forwards termination signals from pid 1 to every process of the pod
/// (-1: every process this pid-1 init may signal, the pod's).
extern "C" fn forward_signal(sig: libc::c_int) {
    sys::process::kill(-1, sig);
}

fn install_forwarding() {
    on_termination(forward_signal);
}

/// The pod's pid 1: namespaces, filesystems, apps, reaping.
/// Overwrites this process's argument area (what `/proc/<pid>/cmdline`
/// shows) with "skiff-init": the pod's processes see that as their pid 1,
/// not stage1's command line, which names host paths. Best effort.
fn hide_host_cmdline() {
    use std::io::{Seek, SeekFrom, Write};
    // arg_start and arg_end are fields 48 and 49 of /proc/self/stat.
    let Some(fields) = crate::proc_stat("self") else {
        return;
    };
    let (Some(&start), Some(&end)) = (fields.get(48), fields.get(49)) else {
        return;
    };
    let Some(len) = end.checked_sub(start).and_then(|l| usize::try_from(l).ok()) else {
        return;
    };
    let mut area = vec![0u8; len];
    let name = b"skiff-init";
    let n = name.len().min(len.saturating_sub(1));
    area[..n].copy_from_slice(&name[..n]);
    let _ = rustix::thread::set_name(c"skiff-init");
    // Our own memory, through the kernel (no pointer into it is held).
    if let Ok(mut mem) = std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/self/mem")
    {
        let _ = mem
            .seek(SeekFrom::Start(start))
            .and_then(|_| mem.write_all(&area));
    }
}

fn init(
    pod: &Pod,
    runtime: &Runtime,
    plans: &[AppPlan],
    app_cgroups: Vec<Vec<std::fs::File>>,
    pty_channel: Option<OwnedFd>,
    userns: Option<OwnedFd>,
    report: &OwnedFd,
) -> Result<(), Stage1Error> {
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .map_err(|e| setup_err("make init non-dumpable")(e.into()))?;
    hide_host_cmdline();
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .map_err(|e| setup_err("set the parent-death signal")(e.into()))?;
    crate::sys::process::unshare(UnshareFlags::NEWNS | UnshareFlags::NEWUTS | UnshareFlags::NEWIPC)
        .map_err(|e| setup_err("create the mount, UTS and IPC namespaces")(e.into()))?;
    mounts::make_private_rec()?;

    if let Some(base) = runtime.private_users {
        mounts::create_as(base);
    }
    // What the apps will see of their cgroups, read while the host's
    // /sys/fs/cgroup is still in view.
    let cgroup_view = cgroups::PodView::detect(Path::new(cgroups::ROOT));
    let stage1_root = pod.path.join("stage1");
    std::fs::create_dir_all(&stage1_root)
        .map_err(setup_err(format!("create {}", stage1_root.display())))?;
    let root = Root::open(&stage1_root)?;
    // Close-on-exec like every fd init holds: no app may inherit a
    // handle on the host's file system.
    let stage1_fd =
        rustix::io::fcntl_dupfd_cloexec(&root.fd, 0).map_err(|e| setup_err("dup")(e.into()))?;
    mounts::mount(
        "tmpfs",
        &stage1_fd,
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV,
        Some(c"mode=755"),
        "the pod root",
    )?;
    let mut tty = None;
    for p in plans {
        let app_root = mount_app_root(pod, &stage1_root, p, userns.as_ref())?;
        mounts::setup_kernel_filesystems(
            &app_root,
            "/dev/null",
            mounts::KernelPaths::of(p.grants),
            &runtime.devices,
        )?;
        finish_app_root(pod, &app_root, p)?;
        if let (Some(channel), None) = (&pty_channel, &tty) {
            let pty = crate::tty::open_in(&app_root)?;
            crate::tty::send_master(channel, &pty.master)?;
            tty = Some(pty.slave);
        }
    }
    rustix::system::sethostname(runtime.hostname.as_bytes())
        .map_err(|e| setup_err(format!("set the hostname '{}'", runtime.hostname))(e.into()))?;
    mounts::pivot_into(&stage1_root)?;
    // The pod root's handles name the host's directory of it: `..` of
    // either leads out of the pod.
    drop(stage1_fd);
    drop(root);
    drop(pty_channel);
    run_apps(
        plans,
        app_cgroups,
        Some(&cgroup_view),
        tty.map(crate::tty::AppTerminal::OwnSession),
        userns,
        report,
        AfterStart::KeepOnlyKill,
    );
    Ok(())
}

/// In the pod's init, its root in place (`/apps/<app>/rootfs` each): starts
/// every app in its cgroups (`tty` as its terminal if given) and reaps every
/// process of the pod until the apps are done, reporting each app's start
/// error and exit status on `report`. The cgroup, terminal and user
/// namespace handles are closed once every app has started: while the
/// apps run, init holds only `report` and its stdio.
pub(crate) fn run_apps(
    plans: &[AppPlan],
    app_cgroups: Vec<Vec<std::fs::File>>,
    cgroup_view: Option<&cgroups::PodView>,
    tty: Option<crate::tty::AppTerminal>,
    userns: Option<OwnedFd>,
    report: &OwnedFd,
    after_start: AfterStart,
) {
    install_forwarding();
    unblock_termination();

    // The apps wait at this gate until init has given up its privileges:
    // none runs while init could still be made to use them.
    let (gate_in, gate_out) = match rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC) {
        Ok(gate) => gate,
        Err(e) => {
            send(
                report,
                &Report::Error(format!("cannot create the apps' start gate: {e}")),
            );
            return;
        }
    };
    let mut gate_out = Some(gate_out);
    let mut children = Vec::new();
    for (p, cgroup) in plans.iter().zip(&app_cgroups) {
        let pid = match sys::process::fork() {
            Ok(Forked::Parent(pid)) => pid,
            Ok(Forked::Child) => {
                // A stop while it waits is for the app it becomes (its
                // signals are reset, and unblocked, before exec).
                sys::signal::set_blocked(&TERMINATION_SIGNALS, true);
                drop(gate_out.take());
                wait_for_gate(&gate_in);
                let attached = match &tty {
                    Some(terminal) => terminal.attach(),
                    None => crate::tty::new_session(),
                };
                let error = match cgroups::join(cgroup).and(attached) {
                    Ok(()) => exec_app(p, cgroup_view, userns.as_ref()),
                    Err(e) => e,
                };
                send(
                    report,
                    &Report::AppError {
                        app: p.name.clone(),
                        error: crate::error_line(&error),
                    },
                );
                std::process::exit(match error {
                    Stage1Error::Exec { .. } => 127,
                    _ => EXIT_SETUP_FAILED,
                });
            }
            Err(e) => {
                send(
                    report,
                    &Report::AppError {
                        app: p.name.clone(),
                        error: e.to_string(),
                    },
                );
                continue;
            }
        };
        children.push((pid, p.name.clone()));
    }
    drop(app_cgroups);
    drop(tty);
    drop(userns);
    if after_start == AfterStart::KeepOnlyKill {
        keep_only_kill();
        if let Err(e) = confine_init() {
            // Init must not go on holding more than it needs while pod
            // processes may trace it: end the pod instead.
            send(
                report,
                &Report::Error(format!(
                    "init could not confine itself once the apps started ({}): the pod was stopped",
                    crate::error_line(&e)
                )),
            );
            let _ = sys::process::kill(-1, libc::SIGKILL);
        }
    }
    drop(gate_in);
    drop(gate_out);
    // Reap every process of the pod until the apps are done.
    crate::reap(&children, |name, code| {
        send(
            report,
            &Report::Exit {
                app: name.to_string(),
                status: code,
            },
        );
    });
}

/// Blocks until the write end of `gate` is closed everywhere.
fn wait_for_gate(gate: &OwnedFd) {
    let mut byte = [0u8; 1];
    loop {
        match rustix::io::read(gate, &mut byte) {
            Err(rustix::io::Errno::INTR) => continue,
            Ok(n) if n > 0 => continue,
            _ => return,
        }
    }
}

/// What init keeps of its capabilities once the apps have started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterStart {
    /// All (the kvm guest's init still powers the VM off).
    KeepAll,
    /// Only CAP_KILL, to pass signals on: a pod process allowed to trace
    /// init (`--cap-retain=CAP_SYS_PTRACE`) could run code in it, which
    /// must then have no privilege over the host.
    KeepOnlyKill,
}

/// Drops every capability of this process but CAP_KILL, bounding set
/// included (best effort: init goes on reaping whatever happens).
fn keep_only_kill() {
    let kill: caps::CapsHashSet = [caps::Capability::CAP_KILL].into_iter().collect();
    for cap in caps::all() {
        if cap != caps::Capability::CAP_KILL {
            let _ = caps::drop(None, caps::CapSet::Bounding, cap);
        }
    }
    let _ = caps::set(None, caps::CapSet::Inheritable, &caps::CapsHashSet::new());
    let _ = caps::set(None, caps::CapSet::Effective, &kill);
    let _ = caps::set(None, caps::CapSet::Permitted, &kill);
}

/// Limits init to the calls it makes while the apps run
/// ([`seccomp::INIT_AFTER_START`]; no new privileges).
fn confine_init() -> Result<(), Stage1Error> {
    rustix::thread::set_no_new_privs(true)
        .map_err(|e| setup_err("set no_new_privs on init")(e.into()))?;
    seccomp::install(&seccomp::program(&seccomp::init_after_start()))
}

/// In the forked app process: enter its root, drop privileges, exec.
/// Returns only on failure.
fn exec_app(
    p: &AppPlan,
    cgroup_view: Option<&cgroups::PodView>,
    userns: Option<&OwnedFd>,
) -> Stage1Error {
    match prepare_app(p, cgroup_view, userns) {
        Ok(cmd) => cmd,
        Err(e) => e,
    }
}

fn prepare_app(
    p: &AppPlan,
    cgroup_view: Option<&cgroups::PodView>,
    userns: Option<&OwnedFd>,
) -> Result<Stage1Error, Stage1Error> {
    crate::sys::process::unshare(UnshareFlags::NEWNS)
        .map_err(|e| setup_err("create the app's mount namespace")(e.into()))?;
    mounts::make_private_rec()?;
    mounts::pivot_into(Path::new(&format!("/apps/{}/rootfs", p.name)))?;
    if let Some(view) = cgroup_view {
        view.mount(&Root::open(Path::new("/"))?)?;
    }
    if let Some(userns) = userns {
        crate::userns::join(userns)?;
    }
    let handler = |name: &str| {
        p.app
            .event_handlers
            .iter()
            .find(|h| h.name == name)
            .map(|h| h.exec.clone())
    };
    let (pre_start, post_stop) = (handler("pre-start"), handler("post-stop"));
    if pre_start.is_none() && post_stop.is_none() {
        return become_app(p, &p.app.exec);
    }
    // With event handlers this process stays as the app's keeper: it runs
    // pre-start, the app, then post-stop, all in the app's root and with
    // its restrictions, and exits with the app's status. The keeper takes
    // the app's confinement itself first (credentials, capabilities,
    // seccomp filter): a pod process that can trace it gains nothing.
    let mut became = confine_as(&p.app, &p.name, Confinement::Confined(p.grants))?;
    became.seal()?;
    if let Some(exec) = pre_start {
        let status = became.run(&exec)?;
        if status != 0 {
            return Err(Stage1Error::Config(format!(
                "the pre-start handler of app '{}' failed with status {status}",
                p.name
            )));
        }
    }
    ignore_termination();
    let status = became.run(&p.app.exec)?;
    if let Some(exec) = post_stop {
        let _ = became.run(&exec);
    }
    std::process::exit(status);
}

/// The open-files limit of apps: 65536 (or the host's hard limit if lower;
/// a process cannot raise its hard limits without CAP_SYS_RESOURCE, which
/// some hosts withhold), keeping the hard limit. Other limits are inherited.
pub const NOFILE_SOFT: u64 = 65536;

fn set_default_rlimits() {
    let current = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let hard = current.maximum;
    let soft = Some(hard.map_or(NOFILE_SOFT, |h| h.min(NOFILE_SOFT)));
    let _ = rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: soft,
            maximum: hard,
        },
    );
}

/// Apps start with every signal at its default action and none blocked,
/// whatever `skiff` inherited (a shell's background job ignores SIGINT).
fn reset_signals() {
    sys::signal::reset_all();
}

/// Does nothing: lets the keeper outlive a SIGTERM sent to every process
/// (its child resets the handler on exec).
extern "C" fn ignore_signal(_: libc::c_int) {}

fn ignore_termination() {
    sys::signal::on(
        &[libc::SIGTERM, libc::SIGINT, libc::SIGHUP],
        ignore_signal,
        false,
    );
}

/// In a process already inside the app's root and namespaces: apply the
/// app's seccomp filter, capabilities, user and groups, no_new_privs and
/// working directory, then execute `argv` with the app's environment.
/// Returns only on failure. Used to start apps and by `skiff enter`.
pub fn become_app(p: &AppPlan, argv: &[String]) -> Result<Stage1Error, Stage1Error> {
    become_with(&p.app, &p.name, argv, Confinement::Confined(p.grants))
}

/// How much of the app's confinement `become` applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confinement {
    /// Seccomp filter, capability bounding set, no_new_privs (`ns`), with
    /// what the user granted beyond what the image can take.
    Confined(Grants),
    /// Only user, groups, directory and environment (`fly`: privileged tools).
    Privileged,
}

/// [`become_app`] with the choice of [`Confinement`].
pub fn become_with(
    app: &App,
    name: &str,
    argv: &[String],
    confinement: Confinement,
) -> Result<Stage1Error, Stage1Error> {
    let mut became = confine_as(app, name, confinement)?;
    became.seal()?;
    became.exec(argv)
}

/// A process confined as an app (all but a seccomp filter that must come
/// last: [`Became::seal`]), ready to execute its programs.
pub struct Became {
    name: String,
    env: Vec<(String, String)>,
    late_filter: Option<Vec<seccomp::Insn>>,
}

/// Applies the app's capabilities, user and groups, no_new_privs,
/// working directory, signals and limits to this process.
pub fn confine_as(app: &App, name: &str, confinement: Confinement) -> Result<Became, Stage1Error> {
    let creds = app::credentials(app, Path::new("/"))?;
    let grants = match confinement {
        Confinement::Confined(grants) => Some(grants),
        Confinement::Privileged => None,
    };
    let keep = match grants {
        Some(grants) => app::capabilities(app, grants)?,
        None => Default::default(),
    };
    // Nothing but stdio may reach the app (CVE-2024-21626): every other fd
    // is marked close-on-exec first, before any filter of the app's could
    // refuse the call, and a failure stops the app.
    sys::process::close_range_on_exec(3, u32::MAX)
        .map_err(setup_err("mark inherited fds close-on-exec"))?;
    // The filter is built first, so that a bad isolator fails before
    // anything changes. It is installed last, just before exec, so that
    // no set-up call can be filtered; only without no_new_privs (granted
    // by the user) must it be installed while CAP_SYS_ADMIN is held.
    let no_new_privs = grants.is_some_and(|grants| app::no_new_privileges(app, grants));
    let filter = match grants {
        Some(grants) => Some(seccomp::program(&seccomp::policy(app, grants)?)),
        None => None,
    };
    let late_filter = match (filter, no_new_privs) {
        (Some(filter), false) => {
            seccomp::install(&filter)?;
            None
        }
        (filter, _) => filter,
    };
    if grants.is_some() {
        for cap in caps::all() {
            if !keep.contains(&cap) {
                caps::drop(None, caps::CapSet::Bounding, cap).map_err(|e| {
                    Stage1Error::Config(format!("cannot drop {cap} from the bounding set: {e}"))
                })?;
            }
        }
    }
    sys::ids::set_credentials(&creds.groups, creds.gid, creds.uid).map_err(setup_err(format!(
        "switch to uid {} gid {}",
        creds.uid, creds.gid
    )))?;
    if grants.is_some() {
        let set: caps::CapsHashSet = if creds.uid == 0 {
            keep.clone()
        } else {
            Default::default()
        };
        // Order matters: inheritable is raised while CAP_SETPCAP is effective;
        // effective must shrink before permitted does.
        for which in [
            caps::CapSet::Inheritable,
            caps::CapSet::Effective,
            caps::CapSet::Permitted,
        ] {
            caps::set(None, which, &set)
                .map_err(|e| Stage1Error::Config(format!("cannot set capabilities: {e}")))?;
        }
    }
    let _ = caps::clear(None, caps::CapSet::Ambient);
    if no_new_privs {
        rustix::thread::set_no_new_privs(true)
            .map_err(|e| setup_err("set no_new_privs")(e.into()))?;
    }
    let cwd = if app.working_directory.is_empty() {
        "/"
    } else {
        app.working_directory.as_str()
    };
    std::env::set_current_dir(cwd)
        .map_err(setup_err(format!("enter the working directory {cwd}")))?;

    reset_signals();
    set_default_rlimits();
    let mut env = app::environment(app, name);
    if !env.iter().any(|(k, _)| k == "HOME") {
        env.push(("HOME".to_string(), creds.home.clone()));
    }
    Ok(Became {
        name: name.to_string(),
        env,
        late_filter,
    })
}

impl Became {
    /// Installs the seccomp filter left for last: from here on this
    /// process can make only the calls the app can.
    pub fn seal(&mut self) -> Result<(), Stage1Error> {
        match self.late_filter.take() {
            Some(filter) => seccomp::install(&filter),
            None => Ok(()),
        }
    }

    /// Executes `argv` with the app's environment; returns only on failure.
    pub fn exec(&self, argv: &[String]) -> Result<Stage1Error, Stage1Error> {
        let Some((program, args)) = argv.split_first() else {
            return Err(Stage1Error::Config(format!(
                "app '{}' has no exec",
                self.name
            )));
        };
        let error = std::process::Command::new(program)
            .args(args)
            .env_clear()
            .envs(self.env.iter().cloned())
            .exec();
        Ok(Stage1Error::Exec {
            program: program.clone(),
            source: error,
        })
    }

    /// Forks, executes `argv` in the child, waits: returns its status.
    fn run(&self, argv: &[String]) -> Result<i32, Stage1Error> {
        match sys::process::fork().map_err(setup_err("fork"))? {
            Forked::Child => {
                let code = match self.exec(argv) {
                    Ok(Stage1Error::Exec { .. }) => 127,
                    _ => EXIT_SETUP_FAILED,
                };
                std::process::exit(code);
            }
            Forked::Parent(pid) => Ok(crate::exit_code(sys::process::wait(pid).unwrap_or(0))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pod directory with `manifest` as its pod manifest and a
    /// runtime.json for apps `apps` (name, tree).
    fn pod_dir(dir: &Path, manifest: &str, runtime_apps: &[(&str, &str)], extra: &str) -> Pod {
        std::fs::write(dir.join("pod"), manifest).unwrap();
        let apps: Vec<String> = runtime_apps
            .iter()
            .map(|(name, tree)| {
                format!(r#"{{"name":"{name}","imageId":"sha512-aa","imageName":"example.com/{name}","tree":"{tree}"}}"#)
            })
            .collect();
        std::fs::write(
            dir.join("runtime.json"),
            format!(
                r#"{{"flavor":"ns","hostname":"h","apps":[{}]{extra}}}"#,
                apps.join(",")
            ),
        )
        .unwrap();
        Pod {
            uuid: "u".into(),
            state: skiff_pod::State::Run,
            path: dir.to_path_buf(),
        }
    }

    const TWO_APPS: &str = r#"{"acKind":"PodManifest","acVersion":"0.8.11",
        "apps":[
          {"name":"web","image":{"id":"sha512-aa"},
           "app":{"exec":["/web"],"user":"0","group":"0",
                  "mountPoints":[{"name":"data","path":"/data","readOnly":true}]},
           "mounts":[{"volume":"data","path":"/data"}],"readOnlyRootFS":true},
          {"name":"db","image":{"id":"sha512-bb"},
           "app":{"exec":["/db"],"user":"0","group":"0"},
           "mounts":[{"volume":"data","path":"/var/db"}]}],
        "volumes":[{"name":"data","kind":"empty"}]}"#;

    #[test]
    fn plans_follow_the_manifest_and_runtime() {
        let tmp = tempfile::tempdir().unwrap();
        let pod = pod_dir(
            tmp.path(),
            TWO_APPS,
            &[("web", "/trees/web"), ("db", "/trees/db")],
            r#","noOverlay":true"#,
        );
        let (_, runtime, plans) = plan(&pod).unwrap();
        assert_eq!(runtime.flavor, skiff_pod::Flavor::Ns);
        let names: Vec<&str> = plans.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["web", "db"]);
        assert_eq!(plans[0].tree, Path::new("/trees/web"));
        assert!(plans[0].read_only && !plans[1].read_only);
        assert!(plans.iter().all(|p| p.copy));
        // The image's read-only mount point makes web's volume read-only;
        // db mounts the same volume writable.
        assert_eq!(plans[0].mounts[0].target, "/data");
        assert!(plans[0].mounts[0].read_only);
        assert_eq!(plans[1].mounts[0].target, "/var/db");
        assert!(!plans[1].mounts[0].read_only);
    }

    #[test]
    fn inconsistent_pods_are_refused_with_the_reason() {
        let tmp = tempfile::tempdir().unwrap();
        // runtime.json lacks an app of the manifest.
        let pod = pod_dir(tmp.path(), TWO_APPS, &[("web", "/t")], "");
        let err = plan(&pod).err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(err, "runtime.json has no app 'db'");
        // An app mounting a volume the pod does not define.
        let undefined = TWO_APPS.replace(
            r#""volumes":[{"name":"data","kind":"empty"}]"#,
            r#""volumes":[]"#,
        );
        let pod = pod_dir(tmp.path(), &undefined, &[("web", "/t"), ("db", "/t")], "");
        let err = plan(&pod).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            err.contains("mounts volume 'data', which the pod does not define"),
            "{err}"
        );
        // An unknown flavor: an invalid runtime.json, never another flavor.
        std::fs::write(
            tmp.path().join("runtime.json"),
            r#"{"flavor":"nspawn","hostname":"h","apps":[]}"#,
        )
        .unwrap();
        let err = plan(&pod).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("nspawn"), "{err}");
        // No manifest at all.
        std::fs::remove_file(tmp.path().join("pod")).unwrap();
        let err = plan(&pod).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.starts_with("cannot read the pod manifest"), "{err}");
    }

    #[test]
    fn report_lines_record_exits_and_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let pod = pod_dir(tmp.path(), TWO_APPS, &[("web", "/t"), ("db", "/t")], "");
        let mut recorder = report::Recorder::new(&pod, vec!["web", "db"]);
        let exit = |app: &str, status| {
            serde_json::to_string(&Report::Exit {
                app: app.into(),
                status,
            })
            .unwrap()
        };
        recorder.line(&exit("web", 3));
        recorder.line(&exit("db", 0));
        // A second report for an app, and one for an app the pod does not
        // have, count for nothing.
        recorder.line(&exit("web", 9));
        recorder.line(&exit("../../x", 1));
        assert_eq!(recorder.first_status, Some(3));
        assert_eq!(
            (pod.app_exit("web"), pod.app_exit("db")),
            (Some(3), Some(0))
        );
        let error = serde_json::to_string(&Report::Error("failed to mount x".into())).unwrap();
        recorder.line(&error);
        recorder.line(&serde_json::to_string(&Report::Error("later".into())).unwrap());
        assert_eq!(recorder.setup_error.as_deref(), Some("failed to mount x"));
    }
}
