//! Reliability: the store checks and repairs itself (`skiff image fsck`),
//! and its index is a cache that can be lost without losing an image.

use std::path::Path;

use crate::common::*;
use crate::fetch::{self, NAME};
use crate::oci::Registry;

fn fsck(root: &Path, repair: bool) -> std::process::Output {
    let mut cmd = skiff_in(root);
    cmd.args(["image", "fsck"]);
    if repair {
        cmd.arg("--repair");
    }
    output(&mut cmd)
}

fn remove_index(root: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(root.join(format!("data/cas/db.sqlite{suffix}")));
    }
}

/// Pushes the stored `image` to `registry` as `path` (`repo:tag`) with
/// skiff, signs it with a new cosign key and trusts that key for the
/// repository: the `docker://` reference.
pub fn push_signed(root: &Path, registry: &Registry, image: &str, path: &str) -> String {
    let dest = format!("docker://127.0.0.1:{}/{path}", registry.port);
    let repo = dest["docker://".len()..]
        .rsplit_once(':')
        .map(|(repo, _)| repo.to_string())
        .unwrap();
    let insecure = "--insecure-options=http";
    let out = output(skiff_in(root).args([insecure, "image", "push", image, &dest]));
    assert!(out.status.success(), "{}", stderr(&out));
    let keys = root.join("cosign");
    let out = output(
        skiff()
            .env("COSIGN_PASSWORD", "pw")
            .args(["key", "generate", "--type=cosign", "--out"])
            .arg(&keys),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = output(
        skiff_in(root)
            .env("COSIGN_PASSWORD", "pw")
            .args([insecure, "image", "sign", "--format=cosign", "--key"])
            .arg(root.join("cosign.key"))
            .arg(&dest),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = output(
        skiff_in(root)
            .args(["trust", "--skip-fingerprint-review", "--prefix", &repo])
            .arg(root.join("cosign.pub")),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    dest
}

#[test]
fn a_lost_index_is_rebuilt_and_every_image_still_fetches_offline_verified_and_runs() {
    let mut site = fetch::site();
    let root = site.root.path().to_path_buf();
    let root = root.as_path();
    let _pods = PodsGuard { root };
    let key = root.join("signer.asc");
    std::fs::write(&key, site.gpg.public_key()).unwrap();
    let out = fetch::run(
        &site,
        &[
            "trust",
            "--prefix",
            NAME,
            "--skip-fingerprint-review",
            &key.to_string_lossy(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // A signed ACI by discovery over HTTPS.
    let out = fetch::run(&site, &["fetch", "127.0.0.2/busybox:1.0"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let aci_id = stdout(&out).trim().to_string();

    // A docker image signed with a cosign key, pushed by skiff.
    let registry = Registry::start(None);
    let dest = push_signed(root, &registry, NAME, "rel/busybox:v1");
    let insecure = "--insecure-options=http";
    let out = output(skiff_in(root).args([insecure, "fetch", &dest]));
    assert!(out.status.success(), "{}", stderr(&out));
    let docker_id = stdout(&out).trim().to_string();
    assert!(
        stderr(&out).contains("signed by cosign key"),
        "{}",
        stderr(&out)
    );

    let clean = fsck(root, false);
    assert!(clean.status.success(), "{}", stderr(&clean));
    assert!(
        stderr(&clean).contains(": 0 problem(s)"),
        "{}",
        stderr(&clean)
    );

    // Both origins go away, and so does the index.
    drop(registry);
    site.go_offline();
    remove_index(root);
    let found = fsck(root, false);
    assert_eq!(found.status.code(), Some(1), "{}", stderr(&found));
    let text = stdout(&found);
    for id in [&aci_id, &docker_id] {
        assert!(text.contains(&format!("blob-without-row: {id}")), "{text}");
    }
    assert!(text.contains("record-without-row"), "{text}");
    let repaired = fsck(root, true);
    assert!(repaired.status.success(), "{}", stderr(&repaired));
    assert!(
        stderr(&repaired).contains("all repaired"),
        "{}",
        stderr(&repaired)
    );
    let again = fsck(root, false);
    assert!(again.status.success(), "{}", stdout(&again));
    assert!(
        stderr(&again).contains(": 0 problem(s)"),
        "{}",
        stderr(&again)
    );

    // Offline: each reference resolves from the store as before, the
    // docker image still counts as verified (its signature record came
    // back), and both run.
    let out = fetch::run(
        &site,
        &["fetch", "--pull-policy=never", "127.0.0.2/busybox:1.0"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), aci_id);
    let out = output(skiff_in(root).args([insecure, "fetch", "--pull-policy=never", &dest]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), docker_id);
    for image in ["127.0.0.2/busybox:1.0", dest.as_str()] {
        let out = output(
            skiff_in(root)
                .env("SSL_CERT_FILE", &site.ca_file)
                .args([insecure, "run", "--net=none", "--pull-policy=never", image])
                .args(["--exec=/bin/busybox", "--", "echo", "ran"]),
        );
        assert!(out.status.success(), "{image}: {}", stderr(&out));
        assert_eq!(stdout(&out).trim(), "ran", "{image}");
    }
}

fn pod_fsck(root: &Path, repair: bool) -> std::process::Output {
    let mut cmd = skiff_in(root);
    cmd.arg("fsck");
    if repair {
        cmd.arg("--repair");
    }
    output(&mut cmd)
}

/// A child process, killed and reaped however the test ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An image whose app sleeps for ten minutes.
fn sleeper(root: &Path) -> std::path::PathBuf {
    image_with_app(
        root,
        "example.com/sleeper",
        r#"{"exec": ["/bin/busybox", "sleep", "600"], "user": "0", "group": "0"}"#,
    )
}

fn kill_9(pid: i32) {
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
}

/// The pid of the stage1 supervising pod `uuid` (the holder of its lock).
fn stage1_of(uuid: &str) -> i32 {
    stage1_pid(uuid).unwrap_or_else(|| panic!("no stage1 runs pod {uuid}"))
}

/// Whether process `pid` runs (neither gone nor a zombie).
fn runs(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|r| !r.trim_start().starts_with('Z'))
    })
}

fn stage1_pid(uuid: &str) -> Option<i32> {
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.first().is_some_and(|a| a.ends_with("skiff-stage1"))
            && args.get(1).is_some_and(|a| a == "run")
            && args.iter().any(|a| a.ends_with(uuid))
        {
            return Some(pid);
        }
    }
    None
}

/// With `--private-users` init builds the apps' roots as the pod's root
/// user (its filesystem ids changed and back), which clears its
/// parent-death signal: it arms it again once they are built. A killed
/// supervisor once left such a pod's init and app running, supervised by
/// nobody.
#[test]
fn a_private_users_pods_init_ends_with_its_supervisor() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let _pods = PodsGuard { root };
    let aci = sleeper(root);
    let out = output(
        skiff_in(root)
            .args([
                "run",
                "--insecure-options=image",
                "--net=host",
                "--private-users",
                "--detach",
            ])
            .arg(&aci),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let uuid = stdout(&out).trim().to_string();
    // Ready: every app started, so init has built the roots and armed
    // the signal again (the check before that is the other test's).
    let status = eventually("the pod to be ready", || {
        let status = stdout(&output(skiff_in(root).args(["status", &uuid])));
        status.contains("ready=").then_some(status)
    });
    let init = pid_in(&status);
    let app = eventually("the app", || child_of(init));
    // Init's parent, whether it still runs stage1 or rests.
    kill_9(parent_of(init).expect("init's parent"));
    eventually("init to end with its supervisor", || {
        (!runs(init) && !runs(app)).then_some(())
    });
    let repaired = pod_fsck(root, true);
    assert!(repaired.status.success(), "{}", stdout(&repaired));
}

/// Init arms its parent-death signal first thing after its fork. A
/// supervisor that died before that leaves it no signal to get, and in
/// the new pid namespace `getppid` says 0 whoever the parent is: init
/// sees it through the reports' pipe, whose reader is gone, and goes no
/// further (it once set the pod up and ran its app, supervised by
/// nobody).
#[test]
fn an_init_whose_supervisor_died_before_it_armed_its_death_signal_goes_no_further() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let _pods = PodsGuard { root };
    let aci = sleeper(root);
    // The host's network: no helper process is forked beside init, so the
    // supervisor's only child is init.
    let out = output(
        skiff_in(root)
            .args(["prepare", "--insecure-options=image", "--net=host"])
            .arg(&aci),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let uuid = stdout(&out).lines().last().unwrap().trim().to_string();
    // strace holds the first `close` of each process it follows for 3 s
    // (counted per process): init's closes its copy of the reports' read
    // end, just before it arms the signal. The supervisor is killed, and
    // gone, while init waits there. (The supervisor's own first close came
    // long before, and its logger thread closes nothing so early.)
    let trace = root.join("strace.out");
    let mut strace = std::process::Command::new("strace");
    strace
        .args([
            "-f",
            "-e",
            "trace=close,prctl,ppoll,unshare,mount,exit_group",
            "-o",
        ])
        .arg(&trace)
        .args(["-e", "inject=close:delay_enter=3000000:when=1"]);
    let mut run = skiff_in(root);
    run.args(["run-prepared", &uuid]);
    let mut traced = through(strace, &run);
    traced
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // Killed however the test ends (its tracees are let go, and
    // PodsGuard's gc ends what is left of the pod).
    let _strace = Killed(
        traced
            .spawn()
            .expect("strace (cargo xtask deps installs it)"),
    );
    let supervisor = eventually("the pod's supervisor", || stage1_pid(&uuid));
    let init = eventually("the pod's init", || child_of(supervisor));
    kill_9(supervisor);
    eventually("the orphaned init to end", || (!runs(init)).then_some(()));
    // It ended through the pipe's check (the setup-failed status), not by
    // a signal armed in time: the window was hit.
    let text = eventually("strace's record of init's end", || {
        let text = std::fs::read_to_string(&trace).ok()?;
        text.lines()
            .any(|l| l.starts_with(&format!("{init} ")) && l.contains("+++"))
            .then_some(text)
    });
    let of_init: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with(&format!("{init} ")))
        .collect();
    assert!(
        of_init
            .iter()
            .any(|l| l.contains("+++ exited with 125 +++")),
        "init did not end through the check: {text}"
    );
    // ... the first one: it made no namespace and no mount.
    assert!(
        !of_init
            .iter()
            .any(|l| l.contains("unshare(") || l.contains("mount(")),
        "init went on past the check: {text}"
    );
}

#[test]
fn a_pod_whose_stage1_was_killed_is_found_and_everything_it_held_released() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let _pods = PodsGuard { root };
    let aci = sleeper(root);
    // On the default network: a namespace, a lease, NAT rules, cgroups.
    let out = output(
        skiff_in(root)
            .args(["run", "--insecure-options=image", "--detach"])
            .arg(&aci),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let uuid = stdout(&out).trim().to_string();
    let clean = pod_fsck(root, false);
    assert!(clean.status.success(), "{}", stdout(&clean));
    assert!(
        stderr(&clean).contains("1 running, left alone"),
        "{}",
        stderr(&clean)
    );

    let netns = Path::new("/run/skiff/netns").join(&uuid);
    assert!(netns.exists());
    kill_9(stage1_of(&uuid));
    let found = eventually("the killed stage1's pod to be found", || {
        let out = pod_fsck(root, false);
        (out.status.code() == Some(1)).then_some(out)
    });
    assert!(
        stdout(&found).contains(&format!("unrecorded-exit: {uuid}")),
        "{}",
        stdout(&found)
    );
    let repaired = pod_fsck(root, true);
    assert!(repaired.status.success(), "{}", stdout(&repaired));
    let text = stdout(&repaired);
    for kind in [
        "unrecorded-exit",
        "network-not-released",
        "leaked-netns",
        "leaked-cgroup",
    ] {
        assert!(text.contains(&format!("{kind}: {uuid}")), "{kind}: {text}");
    }
    assert!(!netns.exists(), "the namespace is still there");
    let again = pod_fsck(root, false);
    assert!(again.status.success(), "{}", stdout(&again));
    let out = output(skiff_in(root).args(["status", &uuid]));
    assert!(stdout(&out).contains("state=exited"), "{}", stdout(&out));

    // A fly pod has no pod init: its app outlives a killed stage1, and
    // the repair kills it before it detaches what the app runs in.
    let out = output(
        skiff_in(root)
            .args([
                "run",
                "--insecure-options=image",
                "--stage1=fly",
                "--net=host",
            ])
            .arg("--detach")
            .arg(&aci),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let uuid = stdout(&out).trim().to_string();
    let stage1 = stage1_of(&uuid);
    let app = eventually("the fly app to start", || child_of(stage1));
    kill_9(stage1);
    let repaired = eventually("the killed fly stage1's pod to be repaired", || {
        let out = pod_fsck(root, true);
        stdout(&out)
            .contains("unsupervised-processes")
            .then_some(out)
    });
    assert!(repaired.status.success(), "{}", stdout(&repaired));
    assert!(!runs(app), "the fly app {app} still runs");
    let again = pod_fsck(root, false);
    assert!(again.status.success(), "{}", stdout(&again));
}

/// A pod in `prepare` is its preparer's while the preparer holds its
/// lock, and abandoned the moment the preparer dies, however young: gc
/// and fsck do not wait for it to age (they once waited 10 s, and a
/// `prepare` killed just before a gc left a pod the next fsck reported).
#[test]
fn a_pod_whose_preparer_was_killed_a_moment_ago_is_collected_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let uuid = "4b1d0e2a-7c3f-4e55-9a61-0c2d8e7f9b10";
    // What `skiff prepare` makes first: every state's directory, the pod
    // in `prepare` with its creation time.
    for state in [
        "embryo",
        "prepare",
        "prepared",
        "run",
        "exited-garbage",
        "garbage",
    ] {
        std::fs::create_dir_all(root.join("data/pods").join(state)).unwrap();
    }
    let pod = root.join("data/pods/prepare").join(uuid);
    std::fs::create_dir(&pod).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    std::fs::write(pod.join("created"), now.to_string()).unwrap();
    // A preparer at work: the pod's lock held by a process of its own.
    let preparer = LockHolder::new(&pod);
    let out = pod_fsck(root, false);
    assert!(
        out.status.success(),
        "a pod being prepared: {}",
        stdout(&out)
    );
    let out = output(skiff_in(root).args(["gc", "--grace-period=0s"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(pod.exists(), "gc removed a pod being prepared");

    // The preparer dies, and its lock with it: its pod, a second old,
    // is abandoned.
    drop(preparer);
    let out = pod_fsck(root, false);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains(&format!("abandoned-pod: {uuid}")),
        "{}",
        stdout(&out)
    );
    let out = output(skiff_in(root).args(["gc", "--grace-period=0s"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!pod.exists(), "gc left the abandoned pod");
    let out = pod_fsck(root, false);
    assert!(out.status.success(), "{}", stdout(&out));

    // An older version's embryo, killed before it wrote its creation time
    // (it was once taken as made just now, for ever), and a new pod's
    // directory a preparer killed before it locked it (no listing shows
    // it; gc removes it).
    let embryo_uuid = "5c2e1f3b-8d40-4f66-ab72-1d3e9f8a0c21";
    let embryo = root.join("data/pods/embryo").join(embryo_uuid);
    std::fs::create_dir(&embryo).unwrap();
    let new = root
        .join("data/pods/embryo")
        .join(format!(".new-{embryo_uuid}"));
    std::fs::create_dir(&new).unwrap();
    let out = pod_fsck(root, false);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains(&format!("abandoned-pod: {embryo_uuid}")),
        "{}",
        stdout(&out)
    );
    let out = output(skiff_in(root).args(["gc", "--grace-period=0s"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!embryo.exists(), "gc left the embryo");
    assert!(!new.exists(), "gc left the new pod's directory");
    // fsck's repair takes it too, and reports nothing (a live preparer's
    // is unlocked for an instant).
    std::fs::create_dir(&new).unwrap();
    let out = pod_fsck(root, false);
    assert!(out.status.success(), "{}", stdout(&out));
    let out = pod_fsck(root, true);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(!new.exists(), "fsck --repair left the new pod's directory");
}

/// A tmpfs of `size` mounted at `dir`, unmounted on drop.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(dir: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(dir).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(status.success());
        SmallDisk(dir.to_path_buf())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_full_disk_during_fetch_and_render_fails_cleanly_and_leaves_a_sound_store() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    // 8 MiB of random bytes: the download itself does not fit in 6 MiB.
    let layout = root.join("big");
    busybox_layout(&layout);
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let random: Vec<u8> = (0..1 << 20)
        .flat_map(|_| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng.to_le_bytes()
        })
        .collect();
    std::fs::write(layout.join("rootfs/random"), &random).unwrap();
    let big = root.join("big.aci");
    build_image(&layout, &big);
    // 24 MiB of zeros: a small download whose tree does not fit.
    let layout = root.join("zeros");
    busybox_layout(&layout);
    std::fs::write(
        layout.join("manifest"),
        std::fs::read_to_string(root.join("big/manifest"))
            .unwrap()
            .replace("example.com/busybox", "example.com/zeros"),
    )
    .unwrap();
    std::fs::write(layout.join("rootfs/zeros"), vec![0u8; 24 << 20]).unwrap();
    let zeros = root.join("zeros.aci");
    build_image(&layout, &zeros);
    assert!(std::fs::metadata(&zeros).unwrap().len() < 2 << 20);

    let _disk = SmallDisk::mount(&root.join("data"), "6m");
    for (aci, step) in [(&big, "the download"), (&zeros, "the render")] {
        let out = output(
            skiff_in(root)
                .args(["fetch", "--insecure-options=image"])
                .arg(aci),
        );
        assert_refused(&out, step);
        let err = stderr(&out);
        assert!(
            err.contains("No space left on device") && err.contains("the file system is full"),
            "{step}: {err}"
        );
        assert!(
            std::fs::read_dir(root.join("data/cas/tmp"))
                .unwrap()
                .next()
                .is_none(),
            "{step} left a staging file"
        );
        let leftovers: Vec<_> = std::fs::read_dir(root.join("data/trees"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(leftovers.is_empty(), "{step} left {leftovers:?}");
        let check = fsck(root, false);
        assert!(check.status.success(), "{step}: {}", stdout(&check));
        assert!(
            stderr(&check).contains(": 0 problem(s)"),
            "{}",
            stderr(&check)
        );
    }
    // The image whose tree did not fit stays stored (its blob fit).
    let out = output(skiff_in(root).args(["image", "list", "--quiet"]));
    assert_eq!(stdout(&out).lines().count(), 1, "{}", stdout(&out));
}

#[test]
fn a_pod_out_of_pids_or_memory_still_has_its_exit_status_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let _pods = PodsGuard { root };
    let aci = image_with_app(
        root,
        "example.com/exhaust",
        r#"{"exec": ["/bin/busybox", "true"], "user": "0", "group": "0"}"#,
    );
    let uuid_file = root.join("uuid");
    let run = |pod_args: &[&str], app: &[&str], script: &str| {
        let out = output(
            skiff_in(root)
                .args(["run", "--insecure-options=image", "--net=none"])
                .arg(format!("--uuid-file-save={}", uuid_file.display()))
                .args(pod_args)
                .arg(&aci)
                .args(app)
                .args(["--exec=/bin/busybox", "--", "sh", "-c", script]),
        );
        let uuid = std::fs::read_to_string(&uuid_file).unwrap();
        let status = output(skiff_in(root).args(["status", uuid.trim()]));
        (out, stdout(&status))
    };
    // Every pid of the pod taken (the pod's pids.max), then exit 7.
    let (out, status) = run(
        &["--pids-limit=16"],
        &[],
        "( while :; do sleep 5 & done ) 2>/dev/null; exit 7",
    );
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert!(status.contains("app-exhaust=7"), "{status}");
    // More memory than the app may have: the kernel kills it; the
    // status (137) and the OOM kill are recorded.
    let (out, status) = run(
        &[],
        &["--memory=32M"],
        "x=$(head -c 200000000 /dev/zero | tr '\\0' a); exit 0",
    );
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
    assert!(status.contains("app-exhaust=137"), "{status}");
    assert!(
        stderr(&out).contains("killed for exceeding its memory limit"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_data_dir_given_through_a_symlink_or_relative_path_is_cleaned_up_like_any_other() {
    let tmp = tempfile::tempdir().unwrap();
    let real = tmp.path().join("real");
    std::fs::create_dir_all(&real).unwrap();
    std::os::unix::fs::symlink(&real, tmp.path().join("link")).unwrap();
    let aci = image_with_app(
        tmp.path(),
        "example.com/linked",
        r#"{"exec": ["/bin/busybox", "true"], "user": "0", "group": "0"}"#,
    );
    let mounts_under_real = || {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter(|l| l.contains(real.to_str().unwrap()))
            .count()
    };
    for dir in [
        tmp.path().join("link/data"),
        std::path::PathBuf::from("data"),
    ] {
        let skiff_here = || {
            let mut cmd = skiff();
            cmd.current_dir(&real).env("SKIFF_DIR", &dir);
            cmd
        };
        for flavor in ["--stage1=fly", "--stage1=ns"] {
            let out = output(
                skiff_here()
                    .args(["run", "--insecure-options=image", "--net=host", flavor])
                    .arg(&aci),
            );
            assert!(out.status.success(), "{dir:?} {flavor}: {}", stderr(&out));
        }
        let out = output(skiff_here().args(["gc", "--grace-period=0s"]));
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(mounts_under_real(), 0, "{dir:?}: mounts left after gc");
        let out = output(skiff_here().arg("fsck"));
        assert!(out.status.success(), "{}", stdout(&out));
    }
}

/// A docker fetch that finds its layers cached reads them while
/// `image gc --grace-period=0s` removes cached layers: it reads the files
/// it opened, not their names. (The torture test once saw such a fetch
/// fail with "cannot read …/cas/blobs/sha256/…: No such file".)
#[test]
fn a_docker_fetch_racing_image_gc_reads_the_layers_it_found() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let name = "example.com/race";
    let app = r#"{"exec": ["/bin/busybox", "true"], "user": "0", "group": "0"}"#;
    image_with_app(root, name, app);
    // Incompressible data, so that converting the layer takes a while.
    let data = root.join("layout-example.com_race/rootfs/data");
    std::fs::create_dir_all(&data).unwrap();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..12 {
        let bytes: Vec<u8> = (0..(1 << 17))
            .flat_map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()
            })
            .collect();
        std::fs::write(data.join(format!("f{i}")), bytes).unwrap();
    }
    let aci = image_with_app(root, name, app);
    let out = output(
        skiff_in(root)
            .args(["fetch", "--insecure-options=image"])
            .arg(&aci),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let registry = Registry::start(None);
    let docker = push_signed(root, &registry, name, "race/img:v1");
    let fetch = || {
        output(
            skiff_in(root)
                .args(["--insecure-options=http", "fetch"])
                .arg(&docker),
        )
    };
    let out = fetch();
    assert!(out.status.success(), "{}", stderr(&out));
    let stop = std::sync::atomic::AtomicBool::new(false);
    let failed: Vec<String> = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = output(skiff_in(root).args(["image", "gc", "--grace-period=0s"]));
            }
        });
        let mut failed = Vec::new();
        for _ in 0..20 {
            let out = fetch();
            if out.status.success() {
                let id = stdout(&out).trim().to_string();
                let _ = output(skiff_in(root).args(["image", "rm", &id]));
            } else {
                failed.push(stderr(&out));
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        failed
    });
    assert!(failed.is_empty(), "{failed:#?}");
}
