//! The `fly` flavor: apps in a chroot with the host's namespaces, for
//! privileged system tools (as rkt's stage1-fly).
//!
//! Each app gets an overlay root (like `ns`, so the shared tree is never
//! written) with the host's `/proc`, `/sys` and `/dev` bound in, plus its
//! volumes; it runs with its user and groups but no seccomp filter,
//! capability limit or `no_new_privs`. There is no pod init: the
//! supervisor forks the apps, waits for them, and on exit unmounts
//! everything it mounted (these mounts are in the host's namespace; `skiff
//! gc` unmounts what a crashed supervisor left).

use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};

use skiff_pod::{Pod, Pods, State};

use crate::approot::finish_app_root;
use crate::approot::mount_app_root;
use crate::confine::Confinement;
use crate::mounts;
use crate::plan::AppPlan;
use crate::setup_err;
use crate::{EXIT_SETUP_FAILED, Stage1Error};

const MAX_APPS: usize = 64;
/// App pids, for the signal handler.
static APP_PIDS: [AtomicI32; MAX_APPS] = [const { AtomicI32::new(0) }; MAX_APPS];

extern "C" fn forward(sig: libc::c_int) {
    crate::supervise::note_stop(sig);
    for slot in &APP_PIDS {
        let pid = slot.load(Ordering::Relaxed);
        if pid > 0 {
            crate::sys::process::kill(pid, sig);
        }
    }
}

fn install_forwarding() {
    crate::supervise::on_termination(forward);
}

/// Unmounts every mount under `dir`, deepest first (best effort).
pub fn unmount_all_under(dir: &Path) {
    let _ = skiff_pod::mounts::unmount_under(dir);
}

fn bind_host(root: &mounts::Root, path: &str) -> Result<(), Stage1Error> {
    let target = root.resolve(Path::new(path), true, false)?;
    mounts::bind(path, &target, true, path)
}

fn setup(pod: &Pod, plans: &[AppPlan]) -> Result<(), Stage1Error> {
    let stage1_root = pod.path.join("stage1");
    std::fs::create_dir_all(&stage1_root)
        .map_err(setup_err(format!("create {}", stage1_root.display())))?;
    for p in plans {
        let root = mount_app_root(pod, &stage1_root, p, None)?;
        for path in ["/proc", "/sys", "/dev"] {
            bind_host(&root, path)?;
        }
        finish_app_root(pod, &root, p)?;
    }
    Ok(())
}

/// Runs the pod; returns the first app's exit status.
// The supervisor's stderr is the pod's console.
#[allow(clippy::print_stderr)]
pub fn run(
    pods: &Pods,
    mut pod: Pod,
    mut launch: crate::supervise::Launch,
) -> Result<i32, Stage1Error> {
    let lock = launch.lock.take();
    let (_manifest, runtime, mut plans) = crate::plan::plan(&pod)?;
    let activation = launch
        .listen
        .take()
        .map(|fds| crate::systemd::Activation::new(fds, &mut plans));
    if plans.len() > MAX_APPS {
        return Err(Stage1Error::Config(format!(
            "the fly flavor runs at most {MAX_APPS} apps"
        )));
    }
    let stage1_root = pod.path.join("stage1");
    if let Err(e) = setup(&pod, &plans) {
        unmount_all_under(&stage1_root);
        return Err(e);
    }
    let names: Vec<String> = plans.iter().map(|p| p.name.clone()).collect();
    let (outputs, logger) = match crate::logger::pipes(&pod, runtime.logs, &names, !launch.detached)
    {
        Ok(made) => made,
        Err(e) => {
            unmount_all_under(&stage1_root);
            return Err(e);
        }
    };
    // In place before `skiff stop` can find this process.
    install_forwarding();
    pod.set_pid(std::process::id() as i32);
    let _ = pod.stamp("started");
    let mut children = Vec::new();
    for (i, p) in plans.iter().enumerate() {
        let registered = |pid| {
            if let Some(slot) = APP_PIDS.get(i) {
                slot.store(pid, Ordering::Relaxed);
            }
        };
        let pid = match crate::supervise::fork_stoppable(registered) {
            Ok(crate::sys::process::Forked::Parent(pid)) => pid,
            Ok(crate::sys::process::Forked::Child) => 0,
            Err(e) => {
                eprintln!("skiff: cannot start app '{}': {e}", p.name);
                continue;
            }
        };
        if pid == 0 {
            drop(lock);
            let root = stage1_root.join("apps").join(&p.name).join("rootfs");
            let result = outputs
                .get(i)
                .map_or(Ok(()), crate::logger::AppOutput::attach)
                .and_then(|()| activation.as_ref().map_or(Ok(()), |a| a.attach(i)))
                .and_then(|()| {
                    rustix::process::chroot(&root)
                        .map_err(|e| setup_err(format!("chroot into {}", root.display()))(e.into()))
                })
                .and_then(|()| {
                    rustix::process::chdir("/").map_err(|e| setup_err("chdir /")(e.into()))
                })
                .and_then(|()| {
                    crate::confine::become_with(
                        &p.app,
                        &p.name,
                        &p.app.exec,
                        Confinement::Privileged,
                    )
                });
            let (code, error) = match result {
                Ok(e @ Stage1Error::Exec { .. }) => (127, e),
                Ok(e) | Err(e) => (EXIT_SETUP_FAILED, e),
            };
            eprintln!(
                "skiff: app '{}' of pod {}: {}",
                p.name,
                pod.uuid,
                crate::error_line(&error)
            );
            std::process::exit(code);
        }
        children.push((pid, p.name.clone()));
    }
    // The apps hold their output pipes (and sockets) now: the logger sees
    // their end.
    drop(outputs);
    drop(activation);
    launch.ready(&pod);
    let logging = match logger.start() {
        Ok(logging) => Some(logging),
        Err(e) => {
            eprintln!("skiff: pod {}: {}", pod.uuid, crate::error_line(&e));
            None
        }
    };
    let mut first = None;
    // A stop reaches an app until it has ended, and not once its pid may
    // be another process's: its slot is cleared before it is reaped.
    let forget = |pid: i32| {
        for slot in &APP_PIDS {
            let _ = slot.compare_exchange(pid, 0, Ordering::Relaxed, Ordering::Relaxed);
        }
    };
    crate::reap(&children, forget, |name, code| {
        pod.set_app_exit(name, code);
        if name == plans[0].name {
            first = Some(code);
        }
    });
    launch.stopping();
    if let Some(logging) = logging {
        logging.finish();
    }
    unmount_all_under(&stage1_root);
    let _ = pod.stamp("exited");
    let _ = pod.move_to(pods, State::ExitedGarbage);
    Ok(first.unwrap_or(EXIT_SETUP_FAILED))
}
