//! The `kvm` flavor: each pod in a virtual machine of its own, with its own
//! kernel (docs/stage1.md, "kvm").
//!
//! The supervisor (this process) prepares each app's root exactly as `ns`
//! does — the overlay of the rendered tree, file volumes, /etc/hosts and
//! resolv.conf — in a private mount namespace, and exports them to the
//! guest over virtio-9p (directory volumes too, each on its own), with a
//! per-pod share (`<pod>/kvm/share`: the guest's `guest.json` in, the apps'
//! exit statuses out). QEMU (`-M microvm`) boots the host's distribution
//! kernel with an initramfs whose init is this binary ([`guest`]): it
//! starts the apps with the `ns` code and powers the VM off when they are
//! done. The console (the VM's serial line) is the apps' stdin and stdout,
//! a virtio console their stderr (with `--interactive`, the serial console
//! is all three). Pod networks reach the guest through taps ([`net`]),
//! `skiff enter` through a virtio-serial port ([`enter`]). KVM runs the
//! guest when it can, QEMU's TCG otherwise ([`accel`]).

pub mod accel;
pub mod enter;
pub mod guest;
pub mod image;
pub mod net;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};

use serde::{Deserialize, Serialize};
use skiff_pod::{NetMode, Pod, Pods};

use crate::report;
use crate::setup_err;
use crate::{EXIT_SETUP_FAILED, Stage1Error, cgroups};
use image::GuestImage;

/// The 9p tag of the pod share.
pub const SHARE_TAG: &str = "skiff";
/// The share's file of report lines (one JSON object per line, as `ns`'s
/// init sends them to its supervisor).
pub const STATUS_FILE: &str = "status";
/// What the probe guest prints before powering off.
pub const PROBE_MARKER: &str = "skiff-probe-ok";

/// The longest path of `<pod>/kvm/enter.sock` QEMU is given (a unix
/// socket's path has at most 107 bytes).
const ENTER_PATH_MAX: usize = 100;

/// VM size without memory isolators.
pub const DEFAULT_MEMORY_MIB: u64 = 256;
/// vCPUs without cpu isolators (at most the host's count). Two, because
/// under TCG a single vCPU is too slow for multi-threaded runtimes: a Go
/// app's first HTTP request takes longer than the 100 ms the ACE
/// validator allows its metadata requests (measured: fails 3 of 3 with one
/// vCPU, passes 3 of 3 with two; boot time unchanged).
pub const DEFAULT_CPUS: u64 = 2;
/// Added to the apps' memory limits for the guest kernel and init.
pub const KERNEL_MEMORY_MIB: u64 = 64;

/// What the guest init needs, in the share's `guest.json`.
#[derive(Debug, Serialize, Deserialize)]
pub struct GuestConfig {
    pub hostname: String,
    /// Give the (single) app the console as its terminal.
    pub interactive: bool,
    /// In pod manifest order; app N's root is the 9p tag `app<N>`.
    pub apps: Vec<GuestApp>,
    /// The pod's networks as the guest's cards (none with `--net=none`).
    #[serde(default)]
    pub network: net::GuestNetwork,
    /// Whether QEMU has the `skiff enter` port.
    #[serde(default)]
    pub enter: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct GuestApp {
    pub name: String,
    /// The effective app as an image manifest (name: the app's name).
    pub manifest: serde_json::Value,
    /// Directory volumes, each its own 9p export, mounted by the guest (so
    /// that they are mount points there, as the ACE requires). File
    /// volumes are bound into the root on the host.
    #[serde(default)]
    pub volumes: Vec<GuestVolume>,
    /// What the user granted beyond what the image can take.
    #[serde(default)]
    pub grants: skiff_pod::privileges::Grants,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GuestVolume {
    pub tag: String,
    pub target: String,
    pub read_only: bool,
    /// The host directory exported (not part of guest.json).
    #[serde(skip)]
    pub source: PathBuf,
}

/// The directory volumes of each app (in plan order), sources made.
fn guest_volumes(
    pod: &Pod,
    plans: &[crate::plan::AppPlan],
) -> Result<Vec<Vec<GuestVolume>>, Stage1Error> {
    let mut all = Vec::new();
    for (i, p) in plans.iter().enumerate() {
        let mut volumes = Vec::new();
        for (j, m) in p.mounts.iter().enumerate() {
            let source = crate::approot::volume_source(pod, &m.volume)?;
            if source.is_dir() {
                volumes.push(GuestVolume {
                    tag: format!("vol{i}.{j}"),
                    target: m.target.clone(),
                    read_only: m.read_only,
                    source,
                });
            }
        }
        all.push(volumes);
    }
    Ok(all)
}

/// The most of the status file the host reads.
const MAX_STATUS: u64 = 1 << 20;

/// The share's status file, if it is a regular file: a symlink is not
/// followed, and a FIFO or a device node (the guest can make those in a
/// passthrough share) is not opened at all (opening a device runs its
/// driver). QEMU has exited: nothing changes the share meanwhile.
fn open_status(path: &Path) -> Option<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    if !std::fs::symlink_metadata(path).ok()?.is_file() {
        return None;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .ok()?;
    file.metadata().ok()?.is_file().then_some(file)
}

/// A QEMU `-fsdev`/`-device` value: commas in it are doubled.
fn qemu_escape(path: &Path) -> String {
    path.display().to_string().replace(',', ",,")
}

/// The host CPU's clock in kHz, for `tsc_early_khz` (microvm's guest
/// kernel hangs calibrating the TSC without it).
fn tsc_khz() -> u64 {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("cpu MHz"))
                .and_then(|l| l.split(':').nth(1))
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
        .map(|mhz| (mhz * 1000.0) as u64)
        .filter(|k| *k > 0)
        .unwrap_or(2_600_000)
}

/// QEMU booting `image`: the serial console on stdio and a virtio console
/// on stderr; the caller adds the pod's devices.
pub fn qemu_command(
    image: &GuestImage,
    accel: &str,
    memory_mib: u64,
    cpus: u64,
    extra_cmdline: &str,
) -> Result<Command, Stage1Error> {
    let qemu = crate::find_in_path("qemu-system-x86_64").ok_or_else(|| {
        Stage1Error::Config(
            "qemu-system-x86_64 not found: install qemu-system-x86 (cargo xtask deps does)".into(),
        )
    })?;
    let khz = tsc_khz();
    let cmdline = format!(
        "console=ttyS0 panic=-1 tsc_early_khz={khz} lpj={} tsc=reliable no_timer_check \
         pci=off nokaslr mitigations=off rdinit=/init {extra_cmdline}",
        khz * 4
    );
    let mut cmd = Command::new(qemu);
    cmd.args(["-M", "microvm,x-option-roms=off", "-accel", accel])
        .args(["-cpu", if accel == "kvm" { "host" } else { "max" }])
        .arg("-m")
        .arg(format!("{memory_mib}M"))
        .arg("-smp")
        .arg(cpus.to_string())
        .args(["-nodefaults", "-no-user-config", "-display", "none"])
        .args(["-no-reboot", "-chardev", "stdio,id=con,signal=off"])
        .args(["-serial", "chardev:con"])
        // A virtio console (hvc0) is the apps' stderr: QEMU's own stderr,
        // reopened (appending, so a log file is not truncated). microvm
        // has a single serial line.
        .args(["-chardev", "file,id=err,path=/proc/self/fd/2,append=on"])
        .args(["-device", "virtio-serial-device,max_ports=2"])
        .args(["-device", "virtconsole,chardev=err"])
        .arg("-kernel")
        .arg(&image.kernel)
        .arg("-initrd")
        .arg(&image.initrd)
        .arg("-append")
        .arg(cmdline.trim());
    Ok(cmd)
}

/// Adds a virtio-9p export of `path` with `tag`.
fn export(cmd: &mut Command, id: &str, path: &Path, tag: &str, read_only: bool) {
    let ro = if read_only { ",readonly=on" } else { "" };
    cmd.arg("-fsdev")
        .arg(format!(
            "local,id={id},path={},security_model=passthrough,multidevs=remap{ro}",
            qemu_escape(path)
        ))
        .arg("-device")
        .arg(format!("virtio-9p-device,fsdev={id},mount_tag={tag}"));
}

/// The VM's memory and vCPUs from the apps' isolators.
fn vm_size(plans: &[crate::plan::AppPlan]) -> (u64, u64) {
    let limits: Vec<cgroups::Limits> = plans.iter().map(|p| cgroups::limits(&p.app)).collect();
    let memory = if limits.iter().any(|l| l.memory_bytes.is_some()) {
        let apps: i128 = limits.iter().filter_map(|l| l.memory_bytes).sum();
        let apps = u64::try_from(apps).unwrap_or(0);
        (apps.div_ceil(1 << 20) + KERNEL_MEMORY_MIB).max(128)
    } else {
        DEFAULT_MEMORY_MIB
    };
    let millis: i128 = limits.iter().filter_map(|l| l.cpu_millis).sum();
    let millis = u64::try_from(millis).unwrap_or(0);
    let host = std::thread::available_parallelism()
        .map(|n| n.get() as u64)
        .unwrap_or(1);
    let cpus = if millis == 0 {
        DEFAULT_CPUS.min(host)
    } else {
        millis.div_ceil(1000).clamp(1, host)
    };
    (memory, cpus)
}

/// The last termination signal the supervisor passed on to QEMU.
static STOPPED_BY: AtomicI32 = AtomicI32::new(0);
static QEMU_PID: AtomicI32 = AtomicI32::new(0);

extern "C" fn stop_vm(sig: libc::c_int) {
    STOPPED_BY.store(sig, Ordering::Relaxed);
    let pid = QEMU_PID.load(Ordering::Relaxed);
    if pid > 0 {
        crate::sys::process::kill(pid, libc::SIGTERM);
    }
}

/// `skiff stop` signals the supervisor (the pod's pid): it powers the VM
/// off (QEMU ends on SIGTERM) and records the signal as the apps' end; a
/// stop noted before does so at once.
fn stop_vm_on_signals(qemu: i32) {
    QEMU_PID.store(qemu, Ordering::Relaxed);
    crate::supervise::on_termination(stop_vm);
}

/// Writes the share: `guest.json`, an empty `status`.
fn write_share(
    share: &Path,
    runtime: &skiff_pod::Runtime,
    plans: &[crate::plan::AppPlan],
    volumes: &[Vec<GuestVolume>],
    network: net::GuestNetwork,
    enter: bool,
) -> Result<(), Stage1Error> {
    std::fs::create_dir_all(share).map_err(setup_err(format!("create {}", share.display())))?;
    let apps = plans
        .iter()
        .zip(volumes)
        .map(|(p, volumes)| {
            let mut manifest = serde_json::json!({
                "acKind": "ImageManifest",
                "acVersion": "0.8.11",
                "name": p.name,
            });
            manifest["app"] = serde_json::to_value(&p.app)
                .map_err(|e| Stage1Error::Config(format!("app '{}': {e}", p.name)))?;
            Ok(GuestApp {
                name: p.name.clone(),
                manifest,
                volumes: volumes.clone(),
                grants: p.grants,
            })
        })
        .collect::<Result<Vec<_>, Stage1Error>>()?;
    let config = GuestConfig {
        hostname: runtime.hostname.clone(),
        interactive: runtime.interactive,
        apps,
        network,
        enter,
    };
    std::fs::write(
        share.join("guest.json"),
        serde_json::to_vec_pretty(&config).unwrap_or_default(),
    )
    .map_err(setup_err("write guest.json"))?;
    std::fs::write(share.join(STATUS_FILE), "").map_err(setup_err("create the status file"))
}

/// In the child: the pod's network namespace with a tap per card, the
/// apps' roots in a private mount namespace, then QEMU. Returns only on
/// failure.
fn exec_vm(
    pod: &Pod,
    plans: &[crate::plan::AppPlan],
    volumes: &[Vec<GuestVolume>],
    mut qemu: Command,
    netns: Option<&std::fs::File>,
    network: &net::GuestNetwork,
    supervisor: rustix::process::Pid,
) -> Stage1Error {
    // QEMU, and the `ip` and `tc` this process runs for it, start with
    // every signal at its default and none blocked: a stop passed on to it
    // while it was blocked (since the fork) ends it here.
    crate::sys::signal::reset_all();
    let result = (|| -> Result<std::io::Error, Stage1Error> {
        // A stage1 that ended before this was armed leaves no QEMU behind.
        crate::sys::process::die_with(supervisor)
            .map_err(setup_err("set the parent-death signal"))?;
        crate::supervise::join_netns(netns)?;
        if !network.interfaces.is_empty() {
            qemu.args(net::connect_taps(network)?);
        }
        crate::sys::process::unshare(rustix::thread::UnshareFlags::NEWNS)
            .map_err(|e| setup_err("create a mount namespace for the VM")(e.into()))?;
        crate::mounts::make_private_rec()?;
        let root = pod.path.join("kvm").join("root");
        std::fs::create_dir_all(&root).map_err(setup_err(format!("create {}", root.display())))?;
        rustix::mount::mount(
            "tmpfs",
            &root,
            "tmpfs",
            rustix::mount::MountFlags::NOSUID | rustix::mount::MountFlags::NODEV,
            Some(c"mode=755"),
        )
        .map_err(|e| setup_err("mount the VM's export root")(e.into()))?;
        for ((i, p), volumes) in plans.iter().enumerate().zip(volumes) {
            let app_root = crate::approot::mount_app_root(pod, &root, p, None)?;
            let in_guest =
                |m: &crate::plan::PlannedMount| volumes.iter().any(|v| v.target == m.target);
            crate::approot::finish_app_root_with(pod, &app_root, p, &in_guest)?;
            let tag = format!("app{i}");
            export(&mut qemu, &tag, &app_root.path, &tag, false);
            for v in volumes {
                export(&mut qemu, &v.tag, &v.source, &v.tag, v.read_only);
            }
        }
        let share = pod.path.join("kvm").join("share");
        export(&mut qemu, "share", &share, SHARE_TAG, false);
        Ok(qemu.exec())
    })();
    match result {
        Ok(e) => Stage1Error::Exec {
            program: "qemu-system-x86_64".into(),
            source: e,
        },
        Err(e) => e,
    }
}

/// Runs the pod; returns the first app's exit status.
#[allow(clippy::print_stderr)]
pub fn run(
    pods: &Pods,
    mut pod: Pod,
    mut launch: crate::supervise::Launch,
) -> Result<i32, Stage1Error> {
    let lock = launch.lock.take();
    launch.refuse_listen_fds("kvm")?;
    let (_manifest, runtime, mut plans) = crate::plan::plan(&pod)?;
    if runtime.net.mode == NetMode::Host {
        return Err(Stage1Error::Config(
            "a VM cannot share the host's network (--net=host): use --net=default, a named network or none".into(),
        ));
    }
    let option = |k: &str| runtime.stage1_options.get(k).map(String::as_str);
    let choice = accel::Choice::parse(option("accel"))?;
    let data = crate::data_dir(&pod.path)
        .ok_or_else(|| Stage1Error::Config("the pod dir is not in a data dir".into()))?
        .to_path_buf();
    let (kernel, release) = image::find_kernel(option("kernel"))?;
    let image = image::ensure(&data, &kernel, &release)?;
    let picked = accel::pick(&data, &image, choice)?;
    if picked.probed || runtime.debug {
        eprintln!("skiff: kvm: using {} ({})", picked.accel, picked.why);
    }
    let netns = crate::net::set_up(&pod, &runtime)?;
    let registered = crate::mds::register(&pod, &runtime, &mut plans);
    let vm = Vm {
        pod: &pod,
        runtime: &runtime,
        plans: &plans,
        image: &image,
        accel: &picked,
    };
    let result = vm.boot(netns.as_ref(), &launch);
    drop(netns);
    // Under the lock, as every flavor: a gc that took the pod's lock for
    // its own would otherwise find it moved away under it.
    crate::supervise::end_pod(pods, &mut pod, registered, runtime.remove);
    drop(lock);
    result
}

/// One pod's VM, ready to boot.
struct Vm<'a> {
    pod: &'a Pod,
    runtime: &'a skiff_pod::Runtime,
    plans: &'a [crate::plan::AppPlan],
    image: &'a GuestImage,
    accel: &'a accel::Picked,
}

impl Vm<'_> {
    /// Boots the VM, waits for it to end and records the apps' statuses.
    #[allow(clippy::print_stderr)]
    fn boot(
        &self,
        netns: Option<&std::fs::File>,
        launch: &crate::supervise::Launch,
    ) -> Result<i32, Stage1Error> {
        let (pod, plans) = (self.pod, self.plans);
        let network = match netns {
            Some(_) => net::guest_network(
                &skiff_net::record::read(&pod.path)
                    .map(|i| i.networks)
                    .unwrap_or_default(),
            )?,
            None => net::GuestNetwork::default(),
        };
        let kvm_dir = pod.path.join("kvm");
        let share = kvm_dir.join("share");
        let volumes = guest_volumes(pod, plans)?;
        // The channel of `skiff enter` (a unix socket path has at most 107
        // bytes; without it the pod runs, and enter says it cannot reach it).
        let enter_socket = enter::socket_path(&pod.path);
        let has_enter = enter_socket.as_os_str().len() < ENTER_PATH_MAX;
        write_share(
            &share,
            self.runtime,
            plans,
            &volumes,
            network.clone(),
            has_enter,
        )?;
        pod.set_note(
            skiff_pod::PodNote::Accel,
            &format!("{}: {}", self.accel.accel, self.accel.why),
        );
        let (memory, cpus) = vm_size(plans);
        let extra = if self.runtime.debug {
            ""
        } else {
            "quiet loglevel=1"
        };
        let mut qemu = qemu_command(self.image, self.accel.accel, memory, cpus, extra)?;
        if has_enter {
            qemu.arg("-chardev")
                .arg(format!(
                    "socket,id=enter,path={},server=on,wait=off",
                    qemu_escape(&enter_socket)
                ))
                .args(["-device", "virtserialport,chardev=enter,name=skiff.enter"]);
        }
        if !self.runtime.interactive {
            qemu.stdin(std::process::Stdio::null());
        }
        // QEMU's process starts with the termination signals blocked, until
        // it resets them before exec: a stop passed on to it meanwhile
        // waits for it instead of running this process's handler.
        let supervisor = rustix::process::getpid();
        let forked = crate::supervise::fork_blocked(crate::sys::process::fork)
            .map_err(setup_err("fork the VM"))?;
        let child = match forked {
            crate::sys::process::Forked::Parent(child) => child,
            // The pod's lock is close-on-exec (take_inherited_fd): QEMU
            // does not hold it.
            crate::sys::process::Forked::Child => {
                let e = exec_vm(pod, plans, &volumes, qemu, netns, &network, supervisor);
                eprintln!("skiff: pod failed to start: {}", crate::error_line(&e));
                std::process::exit(EXIT_SETUP_FAILED);
            }
        };
        stop_vm_on_signals(child);
        pod.set_pid(std::process::id() as i32);
        let _ = pod.stamp("started");
        // The VM is booting its apps: as ready as the host can tell.
        launch.ready(pod);
        // Signals go on to QEMU until it has ended, and not once its pid
        // may be another process's: it is reaped only after.
        crate::sys::process::has_ended(child, true);
        QEMU_PID.store(0, Ordering::Relaxed);
        let wstatus = crate::sys::process::wait(child).unwrap_or(0);
        launch.stopping();
        self.statuses(&share, crate::exit_code(wstatus))
    }

    /// The apps' statuses from the share; those that did not report ended
    /// with the VM: stopped (by the signal), or the VM failed.
    fn statuses(&self, share: &Path, vm_code: i32) -> Result<i32, Stage1Error> {
        let (pod, plans) = (self.pod, self.plans);
        // The guest writes the share: the status file may be anything
        // (a symlink to a host file, a FIFO, a device, endless).
        let mut recorder =
            report::Recorder::new(pod, plans.iter().map(|p| p.name.as_str()).collect());
        if let Some(file) = open_status(&share.join(STATUS_FILE)) {
            report::read_lines(file, MAX_STATUS, &mut |line| recorder.line(line));
        }
        let (mut first_status, setup_error) = (recorder.first_status, recorder.setup_error);
        let stopped = STOPPED_BY.load(Ordering::Relaxed);
        for p in plans {
            if pod.app_exit(&p.name).is_some() {
                continue;
            }
            if stopped == 0 {
                if vm_code == EXIT_SETUP_FAILED {
                    // The child said why on stderr already.
                    return Ok(EXIT_SETUP_FAILED);
                }
                return Err(Stage1Error::Pod(setup_error.unwrap_or_else(|| {
                    format!(
                        "the virtual machine ended before app '{}' did (qemu exit status {vm_code}; \
                         run with --debug to see the guest kernel's messages)",
                        p.name
                    )
                })));
            }
            let code = 128 + stopped;
            pod.set_app_exit(&p.name, code);
            if p.name == plans[0].name {
                first_status = Some(code);
            }
        }
        if let Some(e) = setup_error {
            return Err(Stage1Error::Pod(e));
        }
        Ok(first_status.unwrap_or(EXIT_SETUP_FAILED))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_file_is_read_only_if_regular() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        std::fs::write(dir.join("host-secret"), "x").unwrap();
        std::fs::write(dir.join("status"), "{}\n").unwrap();
        assert!(open_status(&dir.join("status")).is_some());
        std::os::unix::fs::symlink(dir.join("host-secret"), dir.join("link")).unwrap();
        assert!(
            open_status(&dir.join("link")).is_none(),
            "a symlink is followed"
        );
        rustix::fs::mkfifoat(rustix::fs::CWD, dir.join("fifo"), rustix::fs::Mode::RWXU).unwrap();
        assert!(open_status(&dir.join("fifo")).is_none(), "a FIFO is read");
        std::fs::create_dir(dir.join("dir")).unwrap();
        assert!(open_status(&dir.join("dir")).is_none());
    }

    #[test]
    fn commas_in_qemu_paths_are_doubled() {
        assert_eq!(qemu_escape(Path::new("/a,b/c")), "/a,,b/c");
    }

    #[test]
    fn vm_size_follows_the_isolators() {
        let plan = |isolators: &str| crate::plan::AppPlan {
            name: "a".into(),
            app: crate::test_app(isolators),
            tree: PathBuf::new(),
            read_only: false,
            mounts: Vec::new(),
            copy: false,
            grants: Default::default(),
        };
        let host = std::thread::available_parallelism().unwrap().get() as u64;
        assert_eq!(
            vm_size(&[plan("")]),
            (DEFAULT_MEMORY_MIB, DEFAULT_CPUS.min(host))
        );
        let one = plan(r#"{"name":"resource/cpu","value":{"limit":"500m"}}"#);
        assert_eq!(vm_size(&[one]).1, 1);
        let limited = plan(r#"{"name":"resource/memory","value":{"limit":"512Mi"}}"#);
        let bytes = cgroups::limits(&limited.app).memory_bytes.unwrap();
        assert_eq!(bytes, 512 << 20);
        assert_eq!(vm_size(&[limited]).0, 512 + KERNEL_MEMORY_MIB);
    }
}
