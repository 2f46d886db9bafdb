//! Which accelerator runs the guest: KVM when it can run this guest
//! kernel, QEMU's TCG otherwise. A host can have a /dev/kvm that cannot
//! run a stock kernel (e.g. `kvm_pvm`, paravirtualized KVM without
//! hardware virtualization: the guest kernel dies in KVM's instruction
//! emulator), so "usable" is decided by booting a probe guest — the same
//! kernel and initramfs with `skiff.probe` on its command line, which
//! prints a marker and powers off — and the verdict is cached per guest
//! image and host kernel in `<data>/kvm/accel-<image key>.json`.

use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::image::GuestImage;
use super::{PROBE_MARKER, qemu_command};
use crate::Stage1Error;

/// How long the probe guest may take to boot under KVM (a working KVM
/// boots it in well under a second).
const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

/// `--stage1-opt=accel=…`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    Auto,
    Kvm,
    Tcg,
}

impl Choice {
    pub fn parse(value: Option<&str>) -> Result<Choice, Stage1Error> {
        match value.unwrap_or("auto") {
            "auto" => Ok(Choice::Auto),
            "kvm" => Ok(Choice::Kvm),
            "tcg" => Ok(Choice::Tcg),
            other => Err(Stage1Error::Config(format!(
                "accel={other}: use auto, kvm or tcg"
            ))),
        }
    }
}

/// The accelerator picked and why (kept in `<pod>/kvm/accel`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picked {
    /// `kvm` or `tcg`, as QEMU's `-accel` takes it.
    pub accel: &'static str,
    pub why: String,
    /// Whether a probe ran now (its verdict is news worth printing).
    pub probed: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct Verdict {
    host_kernel: String,
    usable: bool,
    reason: String,
}

fn host_kernel() -> String {
    rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned()
}

/// Picks the accelerator for `choice`; probes KVM at most once per guest
/// image and host kernel.
pub fn pick(data_dir: &Path, image: &GuestImage, choice: Choice) -> Result<Picked, Stage1Error> {
    if choice == Choice::Tcg {
        return Ok(Picked {
            accel: "tcg",
            why: "accel=tcg was asked for".into(),
            probed: false,
        });
    }
    let (usable, reason, probed) = kvm_usable(data_dir, image)?;
    match (usable, choice) {
        (true, _) => Ok(Picked {
            accel: "kvm",
            why: reason,
            probed,
        }),
        (false, Choice::Kvm) => Err(Stage1Error::Config(format!(
            "accel=kvm: KVM cannot run the guest on this host: {reason} (use accel=tcg or accel=auto)"
        ))),
        (false, _) => Ok(Picked {
            accel: "tcg",
            why: format!("KVM is not usable here: {reason}"),
            probed,
        }),
    }
}

fn kvm_usable(data_dir: &Path, image: &GuestImage) -> Result<(bool, String, bool), Stage1Error> {
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        return Ok((false, format!("cannot open /dev/kvm: {e}"), false));
    }
    let cache = data_dir
        .join("kvm")
        .join(format!("accel-{}.json", image.key));
    let host = host_kernel();
    if let Some(v) = std::fs::read(&cache)
        .ok()
        .and_then(|b| serde_json::from_slice::<Verdict>(&b).ok())
        .filter(|v| v.host_kernel == host)
    {
        return Ok((v.usable, v.reason, false));
    }
    let (usable, reason, lasting) = probe(image)?;
    // A probe ended by a signal (killed from outside) says nothing of KVM.
    if !lasting {
        return Ok((usable, reason, false));
    }
    let verdict = Verdict {
        host_kernel: host,
        usable,
        reason: reason.clone(),
    };
    let tmp = cache.with_extension(format!("tmp-{}", std::process::id()));
    if std::fs::write(&tmp, serde_json::to_vec(&verdict).unwrap_or_default()).is_ok() {
        let _ = std::fs::rename(&tmp, &cache);
    }
    Ok((usable, reason, true))
}

/// Boots the probe guest under KVM: usable if it prints the marker and
/// powers off in time; and whether that verdict lasts (not if the probe
/// was ended by a signal from outside).
fn probe(image: &GuestImage) -> Result<(bool, String, bool), Stage1Error> {
    let mut cmd: Command = qemu_command(image, "kvm", 128, 1, "skiff.probe")?;
    // Its own process group: a Ctrl-C on `skiff run` is for the pod, not
    // for the probe (whose verdict is kept).
    let mut child = cmd
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Stage1Error::Exec {
            program: "qemu-system-x86_64".into(),
            source: e,
        })?;
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if start.elapsed() < PROBE_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(20))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut out);
    }
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_string(&mut err);
    }
    let first_error = err.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    // QEMU aborts by itself where KVM fails (SIGABRT): that lasts.
    let lasting = status.is_none_or(|s| {
        s.signal().is_none_or(|sig| {
            sig != libc::SIGKILL && !crate::supervise::TERMINATION_SIGNALS.contains(&sig)
        })
    });
    let (usable, reason) = match status {
        Some(s) if s.success() && out.contains(PROBE_MARKER) => (
            true,
            format!(
                "a probe guest booted under KVM in {} ms",
                start.elapsed().as_millis()
            ),
        ),
        Some(s) => (
            false,
            format!("the probe guest under KVM failed ({s}) {first_error}")
                .trim()
                .to_string(),
        ),
        None => (
            false,
            format!(
                "the probe guest did not boot under KVM within {} s {first_error}",
                PROBE_TIMEOUT.as_secs()
            )
            .trim()
            .to_string(),
        ),
    };
    Ok((usable, reason, lasting))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accel_values_are_checked() {
        assert_eq!(Choice::parse(None).unwrap(), Choice::Auto);
        assert_eq!(Choice::parse(Some("tcg")).unwrap(), Choice::Tcg);
        let err = Choice::parse(Some("hvf")).unwrap_err().to_string();
        assert!(err.contains("accel=hvf: use auto, kvm or tcg"), "{err}");
    }
}
