//! `skiff-stage1`: see docs/stage1.md for the contract.
//!
//! ```text
//! skiff-stage1 run [--debug] --lock-fd=N <pod-dir>
//! ```
#![allow(clippy::print_stderr)]

use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::ExitCode;

use skiff_pod::{Pod, Pods, State};
use skiff_stage1::{EXIT_SETUP_FAILED, error_line, fly, ns};

fn usage() -> ExitCode {
    eprintln!(
        "usage: skiff-stage1 run [--debug] --lock-fd=N <pod-dir> | enter [--app=NAME] <pod-dir> [-- CMD...] | gc <pod-dir>   (started by skiff; see docs/stage1.md)"
    );
    ExitCode::from(EXIT_SETUP_FAILED as u8)
}

/// `skiff-stage1 enter [--app=NAME] <pod-dir> [-- CMD...]`
fn enter(args: &[String]) -> ExitCode {
    let mut app = None;
    let mut pod_dir = None;
    let mut cmd = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if arg == "--" {
            cmd = it.cloned().collect();
            break;
        } else if let Some(name) = arg.strip_prefix("--app=") {
            app = Some(name.to_string());
        } else if !arg.starts_with("--") {
            pod_dir = Some(PathBuf::from(arg));
        } else {
            return usage();
        }
    }
    let Some(pod_dir) = pod_dir else {
        return usage();
    };
    let uuid = pod_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let pod = Pod {
        uuid,
        state: State::Run,
        path: pod_dir,
    };
    let entered = if pod.runtime().is_ok_and(|r| r.flavor == "kvm") {
        skiff_stage1::kvm::enter::enter(&pod.path, app.as_deref(), &cmd)
    } else {
        skiff_stage1::enter::enter(&pod, app.as_deref(), &cmd)
    };
    match entered {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("skiff: cannot enter the pod: {}", error_line(&e));
            ExitCode::from(EXIT_SETUP_FAILED as u8)
        }
    }
}

/// `skiff-stage1 gc <pod-dir>`: releases what an exited pod may still hold
/// (its networks, namespace and cgroups); idempotent.
fn gc(args: &[String]) -> ExitCode {
    let [pod_dir] = args else {
        return usage();
    };
    let pod_dir = PathBuf::from(pod_dir);
    let uuid = pod_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    skiff_stage1::cgroups::remove_leftovers(
        std::path::Path::new(skiff_stage1::cgroups::ROOT),
        &uuid,
    );
    match skiff_stage1::net::tear_down(&pod_dir, &uuid) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "skiff: pod {uuid}: cannot remove its networks: {}",
                error_line(&e)
            );
            ExitCode::from(EXIT_SETUP_FAILED as u8)
        }
    }
}

fn main() -> ExitCode {
    if skiff_stage1::kvm::guest::is_guest_init() {
        skiff_stage1::kvm::guest::main();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("enter") {
        return enter(&args[1..]);
    }
    if args.first().map(String::as_str) == Some("gc") {
        return gc(&args[1..]);
    }
    if args.first().map(String::as_str) != Some("run") {
        return usage();
    }
    let mut lock_fd = None;
    let mut pod_dir = None;
    for arg in &args[1..] {
        if let Some(n) = arg.strip_prefix("--lock-fd=") {
            lock_fd = n.parse::<i32>().ok();
        } else if arg == "--debug" {
        } else if !arg.starts_with("--") {
            pod_dir = Some(PathBuf::from(arg));
        } else {
            return usage();
        }
    }
    let Some(pod_dir) = pod_dir else {
        return usage();
    };
    let Some(uuid) = pod_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
    else {
        return usage();
    };
    let Some(data_dir) = skiff_stage1::data_dir(&pod_dir) else {
        return usage();
    };
    // SAFETY: stage0 passes the pod-lock fd it opened and left open across
    // exec; we take ownership of it exactly once.
    let lock = lock_fd.map(|fd| unsafe { OwnedFd::from_raw_fd(fd) });
    let pods = Pods::new(data_dir);
    let pod = Pod {
        uuid,
        state: State::Run,
        path: pod_dir.clone(),
    };
    let flavor = pod.runtime().map(|r| r.flavor).unwrap_or_default();
    let result = match flavor.as_str() {
        "fly" => fly::run(&pods, pod, lock),
        "oci" => skiff_stage1::oci::run(&pods, pod, lock),
        "kvm" => skiff_stage1::kvm::run(&pods, pod, lock),
        _ => ns::run(&pods, pod, lock),
    };
    match result {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("skiff: pod failed to start: {}", error_line(&e));
            ExitCode::from(EXIT_SETUP_FAILED as u8)
        }
    }
}
