//! Becoming the configured process, in a process already inside the
//! container's namespaces and root: rlimits, OOM score, user and groups,
//! the five capability sets, no_new_privs, AppArmor/SELinux, the seccomp
//! profile (last, or while privileged when no_new_privs is off), the
//! working directory, then exec with the process's environment. Used by
//! the container's init and by `exec`.

use std::os::unix::process::CommandExt;
use std::path::Path;

use oci_spec::runtime::{Capabilities, LinuxSeccomp, PosixRlimitType, Process};
use rustix::process::{Resource, Rlimit};

use crate::{Result, RuntimeError, errno, io_err};

/// What is checked and compiled before the process changes anything.
pub struct Prepared {
    process: Process,
    /// Whether the host runs SELinux, read on the host (the container's
    /// /sys may show an empty /sys/fs/selinux).
    selinux: bool,
    seccomp: Option<crate::seccomp::Compiled>,
    preserve_fds: u32,
}

fn resource(t: PosixRlimitType) -> Resource {
    match t {
        PosixRlimitType::RlimitCpu => Resource::Cpu,
        PosixRlimitType::RlimitFsize => Resource::Fsize,
        PosixRlimitType::RlimitData => Resource::Data,
        PosixRlimitType::RlimitStack => Resource::Stack,
        PosixRlimitType::RlimitCore => Resource::Core,
        PosixRlimitType::RlimitRss => Resource::Rss,
        PosixRlimitType::RlimitNproc => Resource::Nproc,
        PosixRlimitType::RlimitNofile => Resource::Nofile,
        PosixRlimitType::RlimitMemlock => Resource::Memlock,
        PosixRlimitType::RlimitAs => Resource::As,
        PosixRlimitType::RlimitLocks => Resource::Locks,
        PosixRlimitType::RlimitSigpending => Resource::Sigpending,
        PosixRlimitType::RlimitMsgqueue => Resource::Msgqueue,
        PosixRlimitType::RlimitNice => Resource::Nice,
        PosixRlimitType::RlimitRtprio => Resource::Rtprio,
        PosixRlimitType::RlimitRttime => Resource::Rttime,
    }
}

fn to_caps(set: &Option<Capabilities>) -> Result<caps::CapsHashSet> {
    set.iter()
        .flatten()
        .map(|c| {
            format!("CAP_{c}").parse::<caps::Capability>().map_err(|_| {
                RuntimeError::Unsupported(format!("capability CAP_{c} is not known to this build"))
            })
        })
        .collect()
}

/// Whether the host runs AppArmor.
pub fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y")
}

/// Whether the host runs SELinux.
pub fn selinux_enabled() -> bool {
    Path::new("/sys/fs/selinux/enforce").exists()
}

impl Prepared {
    /// Checks what can be checked before anything changes: the seccomp
    /// profile compiles, the LSMs asked for exist. (Capabilities that
    /// cannot be granted were dropped when the config was read.)
    pub fn new(
        process: &Process,
        seccomp: Option<&LinuxSeccomp>,
        preserve_fds: u32,
    ) -> Result<Prepared> {
        let seccomp = seccomp.map(crate::seccomp::compile).transpose()?;
        if let Some(profile) = process
            .apparmor_profile()
            .as_ref()
            .filter(|p| !p.is_empty())
            && !apparmor_enabled()
        {
            return Err(RuntimeError::Unsupported(format!(
                "the AppArmor profile '{profile}' was asked for, but AppArmor is not enabled on this host (remove process.apparmorProfile, or enable AppArmor)"
            )));
        }
        if process.scheduler().is_some() {
            return Err(RuntimeError::Unsupported(
                "process.scheduler is not supported by skiff-runtime".into(),
            ));
        }
        if process.io_priority().is_some() {
            return Err(RuntimeError::Unsupported(
                "process.ioPriority is not supported by skiff-runtime".into(),
            ));
        }
        Ok(Prepared {
            process: process.clone(),
            selinux: selinux_enabled(),
            seccomp,
            preserve_fds,
        })
    }

    pub fn process(&self) -> &Process {
        &self.process
    }

    /// Sets the rlimits (before privileges are dropped: raising a hard
    /// limit needs CAP_SYS_RESOURCE).
    pub fn set_rlimits(&self) -> Result<()> {
        for limit in self.process.rlimits().iter().flatten() {
            let value = |v: u64| if v == u64::MAX { None } else { Some(v) };
            rustix::process::setrlimit(
                resource(limit.typ()),
                Rlimit {
                    current: value(limit.soft()),
                    maximum: value(limit.hard()),
                },
            )
            .map_err(errno(format!("set the rlimit {:?}", limit.typ())))?;
        }
        Ok(())
    }

    /// Everything but the exec; then [`Prepared::exec`].
    pub fn become_process(&self) -> Result<()> {
        let p = &self.process;
        self.set_rlimits()?;
        let lsm = p.apparmor_profile().as_ref().is_some_and(|s| !s.is_empty())
            || (p.selinux_label().as_ref().is_some_and(|s| !s.is_empty()) && self.selinux);
        // /proc as checked procfs (a volume over /proc/<pid>/attr would
        // take the label's write: CVE-2019-16884).
        let proc = if p.oom_score_adj().is_some() || lsm {
            Some(crate::fdmount::Proc::open()?)
        } else {
            None
        };
        let own = crate::fdmount::Proc::own();
        if let (Some(adj), Some(proc)) = (p.oom_score_adj(), &proc) {
            match proc.write(&format!("{own}/oom_score_adj"), &adj.to_string()) {
                Ok(()) => {}
                // Lowering it needs CAP_SYS_RESOURCE, which some hosts
                // withhold from everyone: the process then stays as likely
                // to be OOM-killed as before (never more privileged).
                Err(RuntimeError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::PermissionDenied =>
                {
                    crate::log::warn(&format!(
                        "cannot lower the OOM score adjustment to {adj} (no CAP_SYS_RESOURCE on this host): left as it was"
                    ));
                }
                Err(e) => return Err(e),
            }
        }
        // The working directory, resolved inside the root (no magic link:
        // `cwd: /proc/self/fd/N` must not lead out), entered once the user
        // is switched.
        let cwd = skiff_stage1::mounts::Root::open(std::path::Path::new("/"))?
            .resolve(p.cwd(), false, false)
            .map_err(|e| {
                RuntimeError::Invalid(format!(
                    "process.cwd {}: {}",
                    p.cwd().display(),
                    crate::error_line(&e)
                ))
            })?;
        // Nothing but stdio (and --preserve-fds) reaches the process.
        skiff_stage1::sys::process::close_range_on_exec(3 + self.preserve_fds, u32::MAX)
            .map_err(io_err("mark inherited fds close-on-exec"))?;
        let nnp = p.no_new_privileges().unwrap_or(false);
        if !nnp && let Some(filter) = &self.seccomp {
            crate::seccomp::install(filter)?;
        }
        if let (Some(profile), Some(proc)) = (
            p.apparmor_profile().as_ref().filter(|s| !s.is_empty()),
            &proc,
        ) {
            let value = format!("exec {profile}");
            proc.write(&format!("{own}/attr/apparmor/exec"), &value)
                .or_else(|_| proc.write(&format!("{own}/attr/exec"), &value))?;
        }
        if let Some(label) = p.selinux_label().as_ref().filter(|s| !s.is_empty()) {
            if let Some(proc) = proc.as_ref().filter(|_| self.selinux) {
                proc.write(&format!("{own}/attr/exec"), label)?;
            } else {
                crate::log::warn(&format!(
                    "SELinux is not enabled on this host: the label '{label}' is not applied"
                ));
            }
        }
        let none = crate::capabilities::none();
        let c = p.capabilities().as_ref().unwrap_or(&none);
        let bounding = to_caps(c.bounding())?;
        for cap in caps::all() {
            if !bounding.contains(&cap) {
                match caps::drop(None, caps::CapSet::Bounding, cap) {
                    Ok(()) => {}
                    // Capabilities this kernel does not have.
                    Err(_) if !caps::runtime::thread_all_supported().contains(&cap) => {}
                    Err(e) => {
                        return Err(RuntimeError::Init(format!(
                            "cannot drop {cap} from the bounding set: {e}"
                        )));
                    }
                }
            }
        }
        let user = p.user();
        rustix::thread::set_keep_capabilities(true).map_err(errno("keep capabilities"))?;
        let groups: Vec<u32> = user.additional_gids().clone().unwrap_or_default();
        skiff_stage1::sys::ids::set_credentials(&groups, user.gid(), user.uid()).map_err(
            io_err(format!("switch to uid {} gid {}", user.uid(), user.gid())),
        )?;
        rustix::thread::set_keep_capabilities(false).map_err(errno("keep capabilities"))?;
        let capset = |which, set: &caps::CapsHashSet| {
            caps::set(None, which, set)
                .map_err(|e| RuntimeError::Init(format!("cannot set capabilities: {e}")))
        };
        let permitted = caps::read(None, caps::CapSet::Permitted)
            .map_err(|e| RuntimeError::Init(format!("cannot read capabilities: {e}")))?;
        capset(caps::CapSet::Effective, &permitted)?;
        capset(caps::CapSet::Inheritable, &to_caps(c.inheritable())?)?;
        capset(caps::CapSet::Effective, &to_caps(c.effective())?)?;
        capset(caps::CapSet::Permitted, &to_caps(c.permitted())?)?;
        let _ = caps::clear(None, caps::CapSet::Ambient);
        for cap in to_caps(c.ambient())? {
            caps::raise(None, caps::CapSet::Ambient, cap).map_err(|e| {
                RuntimeError::Init(format!("cannot raise the ambient capability {cap}: {e}"))
            })?;
        }
        if nnp {
            rustix::thread::set_no_new_privs(true).map_err(errno("set no_new_privs"))?;
        }
        if let Some(mask) = user.umask() {
            rustix::process::umask(rustix::fs::Mode::from_raw_mode(mask & 0o777));
        }
        rustix::process::fchdir(&cwd).map_err(errno(format!(
            "enter the working directory {}",
            p.cwd().display()
        )))?;
        skiff_stage1::sys::signal::reset_all();
        if nnp && let Some(filter) = &self.seccomp {
            crate::seccomp::install(filter)?;
        }
        Ok(())
    }

    /// Executes the process; returns only on failure.
    pub fn exec(&self) -> RuntimeError {
        let p = &self.process;
        let args = p.args().clone().unwrap_or_default();
        let Some((program, rest)) = args.split_first() else {
            return RuntimeError::Invalid("process.args is empty".into());
        };
        let mut env: Vec<(String, String)> = p
            .env()
            .iter()
            .flatten()
            .filter_map(|v| {
                v.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect();
        if !env.iter().any(|(k, _)| k == "HOME") {
            env.push(("HOME".into(), home_of(p.user().uid())));
        }
        let err = std::process::Command::new(program)
            .args(rest)
            .env_clear()
            .envs(env)
            .exec();
        RuntimeError::Init(format!("cannot execute {program}: {err}"))
    }
}

/// The home directory of `uid` in the container's /etc/passwd, or `/`.
fn home_of(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 6 && f[2].parse() == Ok(uid)).then(|| f[5].to_string())
        })
        .unwrap_or_else(|| "/".into())
}
