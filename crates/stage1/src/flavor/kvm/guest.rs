//! The guest init: this binary as pid 1 of the pod's virtual machine. It
//! loads the initramfs' modules, mounts the pod share (`skiff`, with
//! `guest.json`) and each app's root (`app<N>`, the overlay root the host
//! prepared, volumes included) over 9p, then starts the apps exactly as the
//! `ns` flavor's init does (same code: environment, user, groups, working
//! directory, capabilities, seccomp, no_new_privs, event handlers), writes
//! their exit statuses to the share's `status` and powers the VM off.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use rustix::fs::{Mode, OFlags};
use rustix::mount::MountFlags;

use super::{GuestConfig, PROBE_MARKER, SHARE_TAG, STATUS_FILE};
use crate::Stage1Error;
use crate::mounts::Root;
use crate::plan::AppPlan;
use crate::report::{self, Report};
use crate::setup_err;

/// Whether this process is the guest init: pid 1 started as `/init`.
pub fn is_guest_init() -> bool {
    std::process::id() == 1 && std::env::args().next().as_deref() == Some("/init")
}

/// Runs the guest and powers it off; never returns.
#[allow(clippy::print_stderr)]
pub fn main() -> ! {
    let mut report = None;
    if let Err(e) = run(&mut report) {
        let line = crate::error_line(&e);
        eprintln!("skiff guest: {line}");
        if let Some(fd) = &report {
            report::send(fd, &Report::Error(line));
        }
    }
    drop(report);
    // What the apps wrote last is still in the console's queues (the
    // emulated UART sends a byte at a time): powering off now would drop
    // it. Wait until it is sent.
    let _ = rustix::termios::tcdrain(std::io::stdout());
    let _ = rustix::termios::tcdrain(std::io::stderr());
    rustix::fs::sync();
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    if cmdline.split_whitespace().any(|w| w == "quiet") {
        // The kernel's "reboot: Power down" (an emergency-level message)
        // is not the apps' output.
        let _ = std::fs::write("/proc/sys/kernel/printk", "0");
    }
    let _ = rustix::system::reboot(rustix::system::RebootCommand::PowerOff);
    // Unreachable unless reboot failed; pid 1 must not exit.
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

fn mount(
    source: &str,
    target: &str,
    fstype: &str,
    flags: MountFlags,
    data: &str,
) -> Result<(), Stage1Error> {
    let data = std::ffi::CString::new(data)
        .map_err(|_| Stage1Error::Config("NUL in mount data".into()))?;
    rustix::mount::mount(source, target, fstype, flags, Some(data.as_c_str()))
        .map_err(|e| setup_err(format!("mount {fstype} on {target}"))(e.into()))
}

fn run(report: &mut Option<OwnedFd>) -> Result<(), Stage1Error> {
    mount(
        "devtmpfs",
        "/dev",
        "devtmpfs",
        MountFlags::NOSUID,
        "mode=0755",
    )?;
    console_on_stdio()?;
    mount(
        "proc",
        "/proc",
        "proc",
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        "",
    )?;
    mount(
        "sysfs",
        "/sys",
        "sysfs",
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        "",
    )?;
    load_modules()?;
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    if cmdline.split_whitespace().any(|w| w == "skiff.probe") {
        let _ = std::io::Write::write_all(
            &mut std::io::stdout(),
            format!("{PROBE_MARKER}\n").as_bytes(),
        );
        return Ok(());
    }
    mount(
        SHARE_TAG,
        "/skiff",
        "9p",
        MountFlags::empty(),
        "trans=virtio,version=9p2000.L,cache=none",
    )?;
    *report = Some(
        rustix::fs::open(
            Path::new("/skiff").join(STATUS_FILE),
            OFlags::WRONLY | OFlags::CREATE | OFlags::APPEND | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| setup_err("open the pod share's status file")(e.into()))?,
    );
    let config: GuestConfig = serde_json::from_slice(
        &std::fs::read("/skiff/guest.json")
            .map_err(setup_err("read the pod share's guest.json"))?,
    )
    .map_err(|e| Stage1Error::Config(format!("guest.json: {e}")))?;
    super::net::configure_guest(&config.network)?;
    if let Some(gw) = config.network.gateway {
        // Resolve the gateway's address now: apps' first packets do not
        // wait for ARP (the ACE allows its metadata requests 100 ms).
        // An address, not text: text could need a name lookup, which a
        // static stage1 must not link (docs/decisions.md).
        if let Ok(sock) = std::net::UdpSocket::bind(std::net::SocketAddr::from(([0, 0, 0, 0], 0))) {
            let _ = sock.send_to(&[0], (gw, 9));
        }
    }
    switch_root()?;
    let mut plans = Vec::new();
    for (i, app) in config.apps.iter().enumerate() {
        let manifest = skiff_spec::parse_image_manifest(app.manifest.to_string().as_bytes())
            .map_err(|e| Stage1Error::Config(format!("guest.json: app '{}': {e}", app.name)))?;
        let target = format!("/apps/{}/rootfs", app.name);
        std::fs::create_dir_all(&target).map_err(setup_err(format!("create {target}")))?;
        // cache=loose: the root is the guest's alone while the pod runs, so
        // its pages may stay cached (executables are paged in once, with
        // readahead, instead of a 9p round trip per page fault).
        mount(
            &format!("app{i}"),
            &target,
            "9p",
            MountFlags::empty(),
            "trans=virtio,version=9p2000.L,cache=loose,msize=524288",
        )?;
        let root = Root::open(Path::new(&target))?;
        for v in &app.volumes {
            let point = root.resolve(Path::new(&v.target), false, false)?;
            let flags = if v.read_only {
                MountFlags::RDONLY
            } else {
                MountFlags::empty()
            };
            crate::mounts::mount(
                &v.tag,
                &point,
                "9p",
                flags,
                Some(c"trans=virtio,version=9p2000.L,cache=mmap,msize=524288"),
                &format!("volume {} of app '{}'", v.target, app.name),
            )?;
        }
        crate::mounts::setup_kernel_filesystems(
            &root,
            "/dev/console",
            crate::mounts::KernelPaths::of(app.grants),
            &[],
            crate::mounts::Sys::Mount,
            None,
        )?;
        plans.push(AppPlan {
            name: app.name.clone(),
            app: manifest.app.unwrap_or_default(),
            tree: target.into(),
            read_only: false,
            mounts: Vec::new(),
            copy: false,
            grants: app.grants,
        });
    }
    rustix::system::sethostname(config.hostname.as_bytes())
        .map_err(|e| setup_err(format!("set the hostname '{}'", config.hostname))(e.into()))?;
    // QEMU keeps output processing on in the user's terminal: the guest
    // side adds no `\r` of its own.
    raw_output(std::io::stdout().as_fd(), config.interactive)?;
    let console = if config.interactive {
        Some(
            rustix::io::dup(std::io::stdout().as_fd())
                .map_err(|e| setup_err("dup the console")(e.into()))?,
        )
    } else {
        stderr_on_virtio_console()?;
        None
    };
    if config.enter {
        super::enter::spawn_server(&plans)?;
    }
    let no_cgroups: Vec<Vec<std::fs::File>> = plans.iter().map(|_| Vec::new()).collect();
    if let Some(report) = report.as_ref() {
        if let Some(console) = &console {
            crate::tty::control(console)?;
        }
        let terminal = console.map(crate::tty::AppTerminal::ConsoleForeground);
        let handles = crate::apps::ForApps {
            cgroups: no_cgroups,
            tty: terminal,
            ..Default::default()
        };
        crate::apps::run_apps(
            &plans,
            handles,
            None,
            report,
            crate::apps::AfterStart::KeepAll,
        );
    }
    Ok(())
}

/// The kernel may start init without stdio: the console on 0, 1 and 2.
fn console_on_stdio() -> Result<(), Stage1Error> {
    let console = rustix::fs::open("/dev/console", OFlags::RDWR | OFlags::NOCTTY, Mode::empty())
        .map_err(|e| setup_err("open /dev/console")(e.into()))?;
    // If the console itself was opened as 0, 1 or 2, dup2 onto it is a
    // no-op and dropping `console` below would close that stdio again.
    let on_stdio = console.as_raw_fd() < 3;
    rustix::stdio::dup2_stdin(&console)
        .and_then(|()| rustix::stdio::dup2_stdout(&console))
        .and_then(|()| rustix::stdio::dup2_stderr(&console))
        .map_err(|e| setup_err("attach the console")(e.into()))?;
    if on_stdio {
        std::mem::forget(console);
    }
    Ok(())
}

/// Waits until `ready` holds: virtio-serial ports (the stderr console,
/// the enter channel) are added after their driver loaded, asynchronously.
pub(crate) fn wait_for(what: &str, ready: impl Fn() -> bool) -> Result<(), Stage1Error> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !ready() {
        if std::time::Instant::now() > deadline {
            return Err(Stage1Error::Config(format!(
                "{what} did not appear in the VM"
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    Ok(())
}

/// The virtio console (QEMU passes it to the host's stderr) as fd 2.
fn stderr_on_virtio_console() -> Result<(), Stage1Error> {
    wait_for("/dev/hvc0", || Path::new("/dev/hvc0").exists())?;
    let line = rustix::fs::open("/dev/hvc0", OFlags::WRONLY | OFlags::NOCTTY, Mode::empty())
        .map_err(|e| setup_err("open /dev/hvc0 for the apps' stderr")(e.into()))?;
    raw_output(line.as_fd(), false)?;
    rustix::stdio::dup2_stderr(&line).map_err(|e| setup_err("attach stderr")(e.into()))?;
    Ok(())
}

/// Apps' output reaches the host byte for byte (no `\n` → `\r\n`);
/// input is echoed only on a terminal the user types on.
fn raw_output(out: std::os::fd::BorrowedFd, echo: bool) -> Result<(), Stage1Error> {
    let mut t = rustix::termios::tcgetattr(out)
        .map_err(|e| setup_err("read the console's modes")(e.into()))?;
    t.output_modes.remove(rustix::termios::OutputModes::OPOST);
    if !echo {
        t.local_modes.remove(rustix::termios::LocalModes::ECHO);
    }
    rustix::termios::tcsetattr(out, rustix::termios::OptionalActions::Now, &t)
        .map_err(|e| setup_err("set the console's modes")(e.into()))
}

/// Loads `/modules/*` in name order (the host numbered them so that each
/// comes after its dependencies).
fn load_modules() -> Result<(), Stage1Error> {
    let mut names: Vec<_> = std::fs::read_dir("/modules")
        .map_err(setup_err("read /modules"))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    names.sort();
    for path in names {
        let file =
            std::fs::File::open(&path).map_err(setup_err(format!("open {}", path.display())))?;
        match rustix::system::finit_module(&file, c"", 0) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => {
                return Err(setup_err(format!(
                    "load the kernel module {}",
                    path.display()
                ))(e.into()));
            }
        }
    }
    Ok(())
}

/// Makes a tmpfs the root (the initramfs cannot be pivoted away from, and
/// apps pivot into their roots): /dev, /proc, /sys and /skiff move along.
fn switch_root() -> Result<(), Stage1Error> {
    mount(
        "tmpfs",
        "/newroot",
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV,
        "mode=0755",
    )?;
    for dir in ["dev", "proc", "sys", "skiff"] {
        let target = format!("/newroot/{dir}");
        std::fs::create_dir_all(&target).map_err(setup_err(format!("create {target}")))?;
        rustix::mount::mount_move(format!("/{dir}"), &target)
            .map_err(|e| setup_err(format!("move /{dir}"))(e.into()))?;
    }
    rustix::process::chdir("/newroot").map_err(|e| setup_err("enter the new root")(e.into()))?;
    rustix::mount::mount_move(".", "/")
        .map_err(|e| setup_err("move the new root onto /")(e.into()))?;
    rustix::process::chroot(".").map_err(|e| setup_err("chroot into the new root")(e.into()))?;
    rustix::process::chdir("/").map_err(|e| setup_err("chdir /")(e.into()))
}
