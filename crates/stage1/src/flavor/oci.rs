//! The `oci` flavor: the pod's app as an OCI runtime bundle run by an
//! installed OCI runtime — crun (the default) or runc (`--oci-runtime`).
//!
//! The supervisor (this process) sets up networking and the metadata
//! registration exactly as `ns` does, writes `<pod>/oci/config.json` from
//! the pod manifest (namespaces, mounts, capabilities, seccomp,
//! no_new_privs, rlimits, cgroup limits, env, user, cwd), and runs
//! `<runtime> run` in a child with a private mount namespace in which it
//! mounts the app's overlay root at `<pod>/oci/rootfs`. The pod's `pid` is
//! the app's (the container's init): `skiff stop` signals the app itself
//! — which, as its container's pid 1, ignores SIGTERM unless it handles it,
//! as under Docker — and `--force` kills it. The runtime's exit status is
//! the app's.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use skiff_pod::{NetMode, Pod, Pods};

use crate::plan::AppPlan;
use crate::setup_err;
use crate::{EXIT_SETUP_FAILED, Stage1Error, app, cgroups};

/// The runtime's path: as given, or found in PATH.
fn runtime_path(name: &str) -> Result<PathBuf, Stage1Error> {
    if name.contains('/') {
        return Ok(PathBuf::from(name));
    }
    crate::find_in_path(name).ok_or_else(|| {
        Stage1Error::Config(format!(
            "OCI runtime '{name}' not found (install crun or runc, or give --oci-runtime=PATH)"
        ))
    })
}

/// The personas `personality(2)` refuses under the default filter, as
/// OCI argument conditions: the values the kernel sees (the low 32 bits of
/// the argument) outside [`crate::seccomp::PERSONALITIES`], covered by
/// aligned blocks, each `(mask, value)` for one `SCMP_CMP_MASKED_EQ`
/// condition. A rule may compare an argument once, so "none of these
/// values" becomes one refusing rule per block.
fn refused_personas() -> Vec<(u64, u64)> {
    let mut allowed: Vec<u64> = crate::seccomp::PERSONALITIES
        .iter()
        .map(|p| u64::from(*p))
        .collect();
    allowed.sort_unstable();
    let mut blocks = Vec::new();
    let mut next = 0u64;
    for a in allowed.into_iter().chain([1u64 << 32]) {
        // Cover [next, a) with the largest aligned blocks that fit.
        while next < a {
            let mut size = if next == 0 {
                1u64 << 32
            } else {
                1u64 << next.trailing_zeros()
            };
            while next + size > a {
                size >>= 1;
            }
            blocks.push((0xffff_ffff & !(size - 1), next));
            next += size;
        }
        next = a + 1;
    }
    blocks
}

/// The OCI form of the app's seccomp policy (the same [`crate::seccomp::policy`]
/// as `ns`): the deny-list with the argument guards on `clone`, `clone3`
/// and `personality`, then the allow-list if there is one. libseccomp lets
/// an unconditional rule replace the conditional ones of the same call, so
/// under the default filter the allow-list never names a guarded or denied
/// call outright: `clone` and `personality` are allowed only with the
/// arguments the guards let through (an image's retain-set must not lift
/// them, as it does not under `ns`).
fn seccomp(p: &AppPlan) -> Result<Value, Stage1Error> {
    use crate::seccomp::{CLONE_NAMESPACE_FLAGS, RET_ERRNO, RET_KILL_PROCESS};
    let policy = crate::seccomp::policy(&p.app, p.grants)?;
    let action = |ret: u32| -> Value {
        if ret == RET_KILL_PROCESS {
            json!({"action": "SCMP_ACT_KILL_PROCESS"})
        } else {
            json!({"action": "SCMP_ACT_ERRNO", "errnoRet": ret & !RET_ERRNO})
        }
    };
    let mut rules = Vec::new();
    if policy.guard_args {
        rules.push(
            json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::ENOSYS}),
        );
        for bit in 0..32 {
            let flag = 1u64 << bit;
            if u64::from(CLONE_NAMESPACE_FLAGS) & flag != 0 {
                rules.push(json!({
                    "names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EPERM,
                    "args": [{"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}],
                }));
            }
        }
        for (mask, value) in refused_personas() {
            rules.push(json!({
                "names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EPERM,
                // (argument & value) == valueTwo, as libseccomp's datum_a and datum_b.
                "args": [{"index": 0, "value": mask, "valueTwo": value, "op": "SCMP_CMP_MASKED_EQ"}],
            }));
        }
    }
    for (name, ret) in &policy.deny {
        let mut rule = action(*ret);
        rule["names"] = json!([name]);
        rules.push(rule);
    }
    let mut profile =
        json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"]});
    if let Some((names, ret)) = &policy.allow_only {
        let guarded = |n: &str| {
            policy.guard_args
                && (["clone", "clone3", "personality"].contains(&n)
                    || policy.deny.iter().any(|(d, _)| d == n))
        };
        let plain: Vec<&String> = names.iter().filter(|n| !guarded(n)).collect();
        rules.push(json!({"names": plain, "action": "SCMP_ACT_ALLOW"}));
        if policy.guard_args && names.iter().any(|n| n == "clone") {
            rules.push(json!({
                "names": ["clone"], "action": "SCMP_ACT_ALLOW",
                "args": [{"index": 0, "value": CLONE_NAMESPACE_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
            }));
        }
        if policy.guard_args && names.iter().any(|n| n == "personality") {
            for persona in crate::seccomp::PERSONALITIES {
                rules.push(json!({
                    "names": ["personality"], "action": "SCMP_ACT_ALLOW",
                    "args": [{"index": 0, "value": 0xffff_ffffu32, "valueTwo": persona, "op": "SCMP_CMP_MASKED_EQ"}],
                }));
            }
        }
        let default = action(*ret);
        profile["defaultAction"] = default["action"].clone();
        if let Some(errno) = default.get("errnoRet") {
            profile["defaultErrnoRet"] = errno.clone();
        }
    }
    profile["syscalls"] = Value::Array(rules);
    Ok(profile)
}

/// config.json for the pod's (single) app.
fn config(pod: &Pod, runtime: &skiff_pod::Runtime, p: &AppPlan) -> Result<Value, Stage1Error> {
    let creds = app::credentials(&p.app, &p.tree)?;
    let mut env = app::environment(&p.app, &p.name);
    if !env.iter().any(|(k, _)| k == "HOME") {
        env.push(("HOME".into(), creds.home.clone()));
    }
    let caps: Vec<String> = {
        let mut v: Vec<String> = app::capabilities(&p.app, p.grants)?
            .iter()
            .map(|c| c.to_string())
            .collect();
        v.sort();
        v
    };
    // As `ns` does: root keeps the set in effective, permitted and
    // inheritable; other users start with none (the bounding set limits).
    let (effective, permitted, inheritable) = if creds.uid == 0 {
        (caps.clone(), caps.clone(), caps.clone())
    } else {
        (Vec::new(), Vec::new(), Vec::new())
    };
    let cwd = if p.app.working_directory.is_empty() {
        "/".to_string()
    } else {
        p.app.working_directory.clone()
    };
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}),
        // The app's own cgroup tree (in its cgroup namespace), read-only.
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
    ];
    for m in &p.mounts {
        let source = crate::approot::volume_source(pod, &m.volume)?;
        // nodev, and read-only when asked, on every submount too
        // (runtime-spec's recursive "rro"/"rnodev": mount_setattr).
        let recursive = m.volume.recursive.unwrap_or(false);
        let mut options = if recursive {
            vec!["rbind", "rnodev"]
        } else {
            vec!["bind", "nodev"]
        };
        if m.read_only {
            options.push(if recursive { "rro" } else { "ro" });
        }
        mounts.push(
            json!({"destination": m.target, "type": "bind", "source": source, "options": options}),
        );
    }
    for (source, target) in crate::net::etc_files(&pod.path) {
        let mut options = vec!["bind"];
        if p.read_only {
            options.push("ro");
        }
        mounts.push(
            json!({"destination": target, "type": "bind", "source": source, "options": options}),
        );
    }
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
        json!({"type": "cgroup"}),
    ];
    if runtime.net.mode != NetMode::Host {
        namespaces.push(json!({"type": "network", "path": skiff_net::netns::path_for(&pod.uuid)}));
    }
    let limits = cgroups::limits(&p.app);
    // Default-deny devices with the usual allow-list (docs/security.md).
    let allowed = crate::devices::allowed(&runtime.devices);
    let mut resources = json!({"devices": crate::devices::oci_rules(&allowed)});
    if let Some(m) = limits.memory_bytes {
        resources["memory"] = json!({"limit": m});
    }
    if let Some(c) = limits.cpu_millis {
        resources["cpu"] = json!({"quota": (c * 100).max(1000), "period": 100_000});
    }
    if let Some(s) = limits.cpu_shares {
        resources["cpu"]["shares"] = json!(s);
    }
    if let Some(max) = runtime.pids_limit {
        resources["pids"] = json!({"limit": max});
    }
    let nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .maximum
        .unwrap_or(crate::confine::NOFILE_SOFT);
    let mut config = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": creds.uid, "gid": creds.gid, "additionalGids": creds.groups},
            "args": p.app.exec,
            "env": env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
            "cwd": cwd,
            "capabilities": {"bounding": caps, "effective": effective, "permitted": permitted, "inheritable": inheritable},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile.min(crate::confine::NOFILE_SOFT)}],
            "noNewPrivileges": app::no_new_privileges(&p.app, p.grants),
        },
        "root": {"path": "rootfs", "readonly": p.read_only},
        "hostname": runtime.hostname,
        "mounts": mounts,
        "linux": {
            "namespaces": namespaces,
            "cgroupsPath": format!("/skiff/{}", pod.uuid),
            "resources": resources,
            "seccomp": seccomp(p)?,
        },
    });
    // The devices the user passed, made by the runtime in the pod's /dev.
    if !runtime.devices.is_empty() {
        config["linux"]["devices"] = runtime
            .devices
            .iter()
            .map(|d| {
                json!({
                    "path": d.path,
                    "type": if d.kind == skiff_pod::devices::DeviceKind::Block { "b" } else { "c" },
                    "major": d.major, "minor": d.minor, "fileMode": d.mode, "uid": 0, "gid": 0,
                })
            })
            .collect();
    }
    // The same lists as `ns`, unless the user said --insecure-options=paths.
    if !p.grants.paths {
        config["linux"]["maskedPaths"] = json!(crate::mounts::MASKED);
        config["linux"]["readonlyPaths"] = json!(crate::mounts::READ_ONLY);
    }
    Ok(config)
}

/// Whether this host mixes cgroup v1 controllers with a v2 mount (which
/// crun 1.8 refuses; machine-notes: hide the v2 mount from it).
fn hybrid_cgroups() -> bool {
    Path::new("/sys/fs/cgroup/unified").exists()
        && !Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// In the child: a private mount namespace with the app's overlay root at
/// `<pod>/oci/rootfs`, then exec the runtime. Returns only on failure.
fn exec_runtime(pod: &Pod, p: &AppPlan, runtime: &Path, id: &str) -> Stage1Error {
    let result = (|| -> Result<std::io::Error, Stage1Error> {
        crate::sys::process::unshare(rustix::thread::UnshareFlags::NEWNS)
            .map_err(|e| setup_err("create a mount namespace for the runtime")(e.into()))?;
        crate::mounts::make_private_rec()?;
        if hybrid_cgroups()
            && runtime
                .file_name()
                .is_some_and(|n| n.to_string_lossy().contains("crun"))
        {
            let _ = rustix::mount::unmount(
                "/sys/fs/cgroup/unified",
                rustix::mount::UnmountFlags::DETACH,
            );
        }
        let bundle = pod.path.join("oci");
        let rootfs = bundle.join("rootfs");
        let overlay = pod.path.join("overlay").join(&p.name);
        for d in [rootfs.clone(), overlay.join("upper"), overlay.join("work")] {
            std::fs::create_dir_all(&d).map_err(setup_err(format!("create {}", d.display())))?;
        }
        let options = std::ffi::CString::new(format!(
            "lowerdir={},upperdir={},workdir={}",
            p.tree.display(),
            overlay.join("upper").display(),
            overlay.join("work").display()
        ))
        .map_err(|_| Stage1Error::Config("a path with a NUL byte".into()))?;
        // nodev: nodes made in the root cannot be opened.
        rustix::mount::mount(
            "overlay",
            &rootfs,
            "overlay",
            rustix::mount::MountFlags::NODEV,
            Some(options.as_c_str()),
        )
        .map_err(|e| setup_err(format!("mount the overlay root of app '{}'", p.name))(e.into()))?;
        // The runtime takes the stop the supervisor passes on: stage1
        // blocks the termination signals, and exec keeps the mask.
        crate::sys::signal::reset_all();
        Ok(std::process::Command::new(runtime)
            .arg("--root")
            .arg(bundle.join("state"))
            .args(["run", "--pid-file"])
            .arg(bundle.join("container.pid"))
            .arg("--bundle")
            .arg(&bundle)
            .arg(id)
            .exec())
    })();
    match result {
        Ok(e) => Stage1Error::Exec {
            program: runtime.display().to_string(),
            source: e,
        },
        Err(e) => e,
    }
}

/// Runs the pod; returns the app's exit status.
#[allow(clippy::print_stderr)]
pub fn run(
    pods: &Pods,
    mut pod: Pod,
    mut launch: crate::supervise::Launch,
) -> Result<i32, Stage1Error> {
    let lock = launch.lock.take();
    launch.refuse_listen_fds("oci")?;
    let (_manifest, runtime, mut plans) = crate::plan::plan(&pod)?;
    if plans.len() != 1 {
        return Err(Stage1Error::Config(format!(
            "the oci flavor runs one app per pod (this pod has {}); use --stage1=ns for several",
            plans.len()
        )));
    }
    let oci_runtime = runtime_path(runtime.oci_runtime.as_deref().unwrap_or("crun"))?;
    let netns = crate::net::set_up(&pod, &runtime)?;
    drop(netns);
    let registered = crate::mds::register(&pod, &runtime, &mut plans);
    let p = &plans[0];
    let undo = |e: Stage1Error| {
        let _ = crate::net::tear_down(&pod.path, &pod.uuid);
        e
    };
    let bundle = pod.path.join("oci");
    std::fs::create_dir_all(&bundle)
        .map_err(setup_err(format!("create {}", bundle.display())))
        .map_err(undo)?;
    let config = config(&pod, &runtime, p).map_err(undo)?;
    std::fs::write(
        bundle.join("config.json"),
        serde_json::to_vec_pretty(&config).unwrap_or_default(),
    )
    .map_err(setup_err("write config.json"))
    .map_err(undo)?;
    let id = format!("skiff-{}", pod.uuid);
    // The caller's terminal or file on stdin reaches the container only
    // through a pipe (crate::stdio); the app writes to the logger (the
    // runtime's own messages too).
    let pipes = crate::stdio::Pipes::for_input().map_err(undo)?;
    let (outputs, logger) = crate::logger::pipes(
        &pod,
        runtime.logs,
        std::slice::from_ref(&p.name),
        !launch.detached,
    )
    .map_err(undo)?;
    // The runtime's process starts with the termination signals blocked,
    // until it resets them before exec: a stop passed on to it meanwhile
    // (forward_to) waits for it instead of running this process's handler.
    let forked = crate::supervise::fork_blocked(crate::sys::process::fork)
        .map_err(setup_err("fork the OCI runtime"))
        .map_err(undo)?;
    let child = match forked {
        crate::sys::process::Forked::Parent(child) => child,
        crate::sys::process::Forked::Child => {
            drop(lock);
            drop(logger);
            let attached = pipes
                .map(crate::stdio::Pipes::attach)
                .transpose()
                .and_then(|_| {
                    outputs
                        .first()
                        .map_or(Ok(()), crate::logger::AppOutput::attach)
                });
            let e = match attached {
                Ok(()) => exec_runtime(&pod, p, &oci_runtime, &id),
                Err(e) => e,
            };
            eprintln!("skiff: pod failed to start: {}", crate::error_line(&e));
            std::process::exit(EXIT_SETUP_FAILED);
        }
    };
    drop(outputs);
    crate::supervise::forward_to(child);
    let logging = match logger.start() {
        Ok(logging) => Some(logging),
        Err(e) => {
            eprintln!("skiff: pod {}: {}", pod.uuid, crate::error_line(&e));
            crate::sys::process::kill(child, libc::SIGKILL);
            None
        }
    };
    let copying = match pipes.map(|pipes| pipes.start(child)).transpose() {
        Ok(copying) => copying,
        Err(e) => {
            eprintln!("skiff: {}", crate::error_line(&e));
            crate::sys::process::kill(child, libc::SIGKILL);
            None
        }
    };
    // The pod's pid is the app's (the container's init, from the
    // runtime's --pid-file): `skiff stop` signals the app itself, and
    // `--force` kills it and so its whole pid namespace.
    let pid_file = bundle.join("container.pid");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut wstatus = 0;
    let mut exited = false;
    loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok())
        {
            pod.set_pid(pid);
            break;
        }
        // Forgotten before it is reaped: its pid may be another process's
        // from then on.
        if crate::sys::process::has_ended(child, false) == Some(true) {
            crate::supervise::forget_init();
            wstatus = crate::sys::process::wait(child).unwrap_or(0);
            exited = true;
            break;
        }
        if Instant::now() > deadline {
            pod.set_pid(child);
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = pod.stamp("started");
    if !exited {
        launch.ready(&pod);
        crate::sys::process::has_ended(child, true);
        crate::supervise::forget_init();
        wstatus = crate::sys::process::wait(child).unwrap_or(0);
    }
    crate::supervise::forget_init();
    launch.stopping();
    if let Some(copying) = copying {
        copying.finish();
    }
    if let Some(logging) = logging {
        logging.finish();
    }
    let code = crate::exit_code(wstatus);
    pod.set_app_exit(&p.name, code);
    // What the runtime may have left after a crash of its own.
    let _ = std::process::Command::new(&oci_runtime)
        .arg("--root")
        .arg(bundle.join("state"))
        .args(["delete", "--force", &id])
        .stderr(std::process::Stdio::null())
        .status();
    cgroups::remove_leftovers(Path::new(cgroups::ROOT), &pod.uuid);
    crate::supervise::end_pod(pods, &mut pod, registered, runtime.remove);
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::refused_personas;
    use crate::seccomp::PERSONALITIES;

    #[test]
    fn an_image_retain_set_does_not_lift_the_guards() {
        let manifest = serde_json::json!({
            "acKind": "ImageManifest", "acVersion": "0.8.11", "name": "a",
            "app": {"exec": ["/x"], "user": "0", "group": "0",
                "isolators": [{"name": "os/linux/seccomp-retain-set",
                    "value": {"set": ["read", "clone", "clone3", "personality", "unshare", "mount"], "errno": "ENOSYS"}}]},
        });
        let app = skiff_spec::parse_image_manifest(manifest.to_string().as_bytes())
            .unwrap()
            .app
            .unwrap();
        let plan = crate::plan::AppPlan {
            name: "a".into(),
            app,
            tree: "/".into(),
            grants: Default::default(),
            read_only: false,
            mounts: Vec::new(),
            copy: false,
        };
        let profile = super::seccomp(&plan).unwrap();
        let rules = profile["syscalls"].as_array().unwrap();
        let allowed: Vec<&serde_json::Value> = rules
            .iter()
            .filter(|r| r["action"] == "SCMP_ACT_ALLOW")
            .collect();
        for rule in &allowed {
            let names = rule["names"].as_array().unwrap();
            let guarded = ["clone", "clone3", "personality", "unshare", "mount"];
            if rule.get("args").is_none() {
                assert!(
                    names
                        .iter()
                        .all(|n| !guarded.contains(&n.as_str().unwrap())),
                    "{rule}"
                );
            }
        }
        assert!(allowed.iter().any(|r| r["names"][0] == "read"));
        let conditional = |name: &str| {
            allowed
                .iter()
                .filter(|r| r["names"][0] == name && r.get("args").is_some())
                .count()
        };
        assert_eq!(conditional("clone"), 1);
        assert_eq!(conditional("personality"), PERSONALITIES.len());
        // The user's --seccomp makes the retain-set the whole filter.
        let granted = crate::plan::AppPlan {
            grants: skiff_pod::privileges::Grants {
                seccomp: true,
                ..Default::default()
            },
            ..plan
        };
        let profile = super::seccomp(&granted).unwrap();
        let names = &profile["syscalls"].as_array().unwrap()[0]["names"];
        assert!(
            names.as_array().unwrap().iter().any(|n| n == "unshare"),
            "{profile}"
        );
    }

    fn refused(blocks: &[(u64, u64)], persona: u64) -> bool {
        blocks.iter().any(|(mask, value)| persona & mask == *value)
    }

    #[test]
    fn the_refused_personas_are_exactly_those_not_allowed() {
        let blocks = refused_personas();
        // Disjoint blocks whose sizes add up to every 32-bit value but the
        // allowed ones: together with the checks below, an exact cover.
        let total: u64 = blocks
            .iter()
            .map(|(mask, _)| (!mask & 0xffff_ffff) + 1)
            .sum();
        assert_eq!(total, (1u64 << 32) - PERSONALITIES.len() as u64);
        for (i, (mask, value)) in blocks.iter().enumerate() {
            assert_eq!(value & !mask, 0, "unaligned block {value:#x}");
            for (other_mask, other) in &blocks[i + 1..] {
                let wider = mask & other_mask;
                assert_ne!(
                    value & wider,
                    other & wider,
                    "overlap {value:#x} {other:#x}"
                );
            }
        }
        for allowed in PERSONALITIES {
            assert!(!refused(&blocks, u64::from(allowed)), "{allowed:#x}");
            // The kernel sees the low 32 bits only.
            assert!(!refused(&blocks, u64::from(allowed) | 1 << 40));
        }
        // ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC, PER_BSD, neighbours.
        for persona in [
            0x4_0000,
            0x40_0000,
            0x6,
            1,
            7,
            9,
            0x2_0001,
            0x2_0009,
            0xffff_fffe,
        ] {
            assert!(refused(&blocks, persona), "{persona:#x}");
        }
        assert!(blocks.len() < 100, "{} rules", blocks.len());
    }
}
