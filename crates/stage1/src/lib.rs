//! skiff-stage1: the program that turns a prepared pod directory into a
//! running pod and supervises it until it ends. The contract between
//! stage0 (`skiff`) and stage1 is documented in docs/stage1.md.
//!
//! Map of the crate, from the top down (a module uses only those below it):
//! * [`flavor`]: [`ns`] (namespaces, overlay roots, pivot_root, the pod's
//!   init), [`fly`] (chroot, host namespaces, privileged), [`oci`] (a
//!   bundle run by crun or runc), [`kvm`] (a VM per pod and its guest
//!   init); no flavor imports another. [`entry`] dispatches on the flavor;
//!   [`enter`] runs a command in a running pod.
//! * [`plan`]: what a pod runs ([`plan::AppPlan`]); [`supervise`]: signals,
//!   network namespace and the end of a pod, for every flavor; `report`:
//!   init's report lines (hostile input to the supervisor).
//! * [`apps`]: the pod init's app loop (start gate, keepers, reaping, init's
//!   own confinement); [`approot`]: app roots and volumes; [`confine`]:
//!   becoming an app (credentials, capabilities, seccomp, exec).
//! * Kernel concerns: [`mounts`] (targets resolved inside the app's root,
//!   /proc, /sys, /dev, masked paths), [`cgroups`] (v1/v2, limits),
//!   [`devices`]/[`devbpf`] (the device policy), [`userns`], [`net`],
//!   [`mds`] (metadata registration), [`seccomp`] (the BPF filter;
//!   [`syscalls`]: x86_64 numbers), [`app`] (environment, users, groups,
//!   capabilities), [`stdio`] (pipes for the caller's terminal) and
//!   [`tty`] (the pod's own pty), [`copy`] (shifted copies).
//! * [`sys`]: the system-call seam, the only module with `unsafe` (fork,
//!   waits, signals, unshare, set*id, mount_setattr, seccomp, bpf); each
//!   block says why it is sound, and clippy.toml disallows the raw calls
//!   elsewhere.

pub mod app;
pub mod approot;
pub mod apps;
pub mod cgroups;
pub mod cmdline;
pub mod confine;
pub mod copy;
pub mod devbpf;
pub mod devices;
pub mod enter;
pub mod entry;
pub mod filter;
pub mod flavor;
pub mod forward;
pub mod journal;
pub mod logger;
pub mod mds;
pub mod mounts;
pub mod net;
pub mod plan;
pub(crate) mod report;
pub mod rest;
pub mod seccomp;
pub mod stdio;
pub mod supervise;
pub mod sys;
pub mod syscalls;
pub mod systemd;
pub mod tty;
pub mod usernet;
pub mod userns;

pub use flavor::{fly, kvm, ns, oci};

/// Exit status of stage1 (and so of `skiff run`) when the pod could not be
/// set up; the reason is printed on stderr.
pub const EXIT_SETUP_FAILED: i32 = 125;

#[derive(Debug, thiserror::Error)]
pub enum Stage1Error {
    #[error("failed to {what}")]
    Setup {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
    #[error("cannot execute {program}")]
    Exec {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Pod(String),
    #[error(transparent)]
    Net(#[from] skiff_net::NetError),
}

/// The data dir of the pod dir `<data>/pods/<state>/<uuid>`.
pub fn data_dir(pod_dir: &std::path::Path) -> Option<&std::path::Path> {
    pod_dir.parent()?.parent()?.parent()
}

/// An error and its causes on one line.
/// The pids of every process /proc shows (entries that are numbers).
pub fn proc_pids() -> std::io::Result<impl Iterator<Item = i32>> {
    Ok(std::fs::read_dir("/proc")?.flatten().filter_map(|entry| {
        entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
    }))
}

/// The numeric fields of `/proc/<pid>/stat` (`pid`: a number or "self"),
/// by the kernel's numbering: `fields[n]` is field `n`, from 4 on (the
/// command before them may hold spaces and parentheses).
pub fn proc_stat(pid: &str) -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    // Fields 0–3 as 0 (field 3 is the state letter, not a number).
    let mut fields = vec![0; 4];
    fields.extend(
        rest.split_whitespace()
            .skip(1)
            .map(|f| f.parse().unwrap_or(0)),
    );
    Some(fields)
}

/// Closes every fd from 3 up that this process inherited but `keep`: what
/// the caller had open (files, directories, sockets) reaches neither the
/// pod nor its init, which a pod process allowed to trace it could read.
pub fn close_inherited_fds(keep: &[u32]) -> Result<(), Stage1Error> {
    let mut keep: Vec<u32> = keep.iter().copied().filter(|&k| k >= 3).collect();
    keep.sort_unstable();
    keep.dedup();
    // The ranges between the fds kept, from 3 on.
    let mut first = 3u32;
    for k in keep.into_iter().map(Some).chain([None]) {
        let last = match k {
            Some(k) => k - 1,
            None => u32::MAX,
        };
        if first <= last {
            sys::process::close_range(first, last).map_err(|source| Stage1Error::Setup {
                what: "close the caller's file descriptors".to_string(),
                source,
            })?;
        }
        match k {
            Some(k) => first = k.saturating_add(1),
            None => break,
        }
    }
    Ok(())
}

/// An error and its causes on one line (`skiff` prints its own the same way).
pub fn error_line(err: &dyn std::error::Error) -> String {
    let mut line = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    // Causes quote paths, names and programs of images and pods: one line,
    // nothing a terminal acts on.
    String::from_utf8_lossy(&skiff_pod::logs::visible(line.as_bytes())).into_owned()
}

/// An app with these isolators (a JSON list body), for unit tests.
#[cfg(test)]
pub(crate) fn test_app(isolators: &str) -> skiff_spec::App {
    skiff_spec::parse_image_manifest(
        format!(r#"{{"acKind":"ImageManifest","acVersion":"0.8.11","name":"a","app":{{"exec":["/x"],"user":"0","group":"0","isolators":[{isolators}]}}}}"#).as_bytes(),
    )
    .unwrap()
    .app
    .unwrap()
}

/// The exit status a shell would show for a `waitpid` status: the code,
/// or 128 + the signal that killed the process.
pub fn exit_code(status: i32) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    }
}

/// Waits for any child until every process in `children` (pid, app name)
/// has ended, calling `ending(pid)` for each child that ended before it is
/// reaped (while its pid is still its own: a signal handler that may signal
/// it forgets it there) and `on_exit(app, code)` for each app; other
/// children that end meanwhile (orphans adopted by a pod's init) are reaped
/// silently.
pub fn reap(
    children: &[(i32, String)],
    mut ending: impl FnMut(i32),
    mut on_exit: impl FnMut(&str, i32),
) {
    let mut remaining = children.len();
    while remaining > 0 {
        let Some(pid) = sys::process::next_ended() else {
            break;
        };
        ending(pid);
        let Some(status) = sys::process::wait(pid) else {
            continue;
        };
        if let Some((_, name)) = children.iter().find(|(p, _)| *p == pid) {
            on_exit(name, exit_code(status));
            remaining -= 1;
        }
    }
}

/// Maps an I/O error of the step `what` ("create /x") to
/// [`Stage1Error::Setup`].
pub(crate) fn setup_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Stage1Error {
    let what = what.into();
    move |source| Stage1Error::Setup { what, source }
}

/// `name` in PATH (or the usual system directories without one).
pub fn find_in_path(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_else(|| {
            vec![
                "/usr/sbin".into(),
                "/usr/bin".into(),
                "/sbin".into(),
                "/bin".into(),
            ]
        })
        .into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}
