//! The operations library runs a pod without the command line: what any
//! program that embeds skiff does.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use skiff_fetch::{KeyCandidate, KeyReview};
use skiff_ops::run::{AppSpec, RunOptions, Start};

use crate::common::*;

/// Trusts no discovered key.
struct NoReview;

impl KeyReview for NoReview {
    fn approve(&self, _: &KeyCandidate) -> bool {
        false
    }
}

/// A library context on the store under `root` that runs unsigned images,
/// and the options of a pod of a busybox image (made there) running `sh
/// -c script` without a network.
fn library(root: &Path, script: &str) -> (skiff_ops::Context, RunOptions) {
    let aci = root.join("app.aci");
    busybox_aci(root, "example.com/ops", &aci);
    let mut settings = skiff_ops::Settings::new(root.join("data"));
    settings.local_config = root.join("etc");
    settings.system_config = root.join("usr");
    settings.insecure.image = true;
    settings.stage1_path = Some(PathBuf::from(env!("CARGO_BIN_EXE_skiff-stage1")));
    let mut app = AppSpec {
        image: aci.display().to_string(),
        ..AppSpec::default()
    };
    app.request.exec = Some("/bin/busybox".into());
    app.request.args = Some(vec!["sh".into(), "-c".into(), script.into()]);
    let mut opts = RunOptions::new(vec![app]);
    opts.net.net = vec!["none".into()];
    (skiff_ops::Context::new(settings), opts)
}

#[test]
fn a_pod_runs_through_the_library() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let _guard = PodsGuard { root };
    let (ctx, opts) = library(root, "exit 7");
    let mut said = Vec::new();
    let pod = skiff_ops::run::run(&ctx, &opts, NoReview, Start::Detached, |line| {
        said.push(line.to_string())
    })
    .unwrap();
    assert!(said.is_empty(), "busybox asks for nothing: {said:?}");

    let info = skiff_ops::pods::status(&ctx, &pod.uuid, skiff_ops::pods::Wait::Exited).unwrap();
    assert_eq!(info.state, "exited");
    assert_eq!(info.apps.len(), 1);
    assert_eq!(info.apps[0].exit_code, Some(7));
    assert_eq!(info.flavor, Some(skiff_pod::Flavor::Ns));

    // The same pod as the command line sees it.
    let out = output(skiff_in(root).args(["status", &pod.uuid]));
    assert!(stdout(&out).contains("=7"), "{}", stdout(&out));

    // A command holding the ended pod's lock for a moment (a probe, its
    // stage1 finishing) delays `rm`; one holding it for long has it
    // refused, and named.
    let dir = pods_dir(root, "exited-garbage", &pod.uuid);
    let holder = LockHolder::new(&dir);
    let refused = skiff_ops::pods::rm(&ctx, &pod.uuid).unwrap_err();
    assert!(refused.to_string().contains("in use"), "{refused}");
    drop(holder);
    let holder = LockHolder::new(&dir);
    let removed = std::thread::scope(|s| {
        let rm = s.spawn(|| skiff_ops::pods::rm(&ctx, &pod.uuid).map_err(|e| e.to_string()));
        // rm is waiting (or about to): the holder lets go.
        std::thread::sleep(std::time::Duration::from_millis(100));
        holder.release();
        rm.join().unwrap()
    });
    assert_eq!(removed.unwrap(), pod.uuid);
    assert!(skiff_ops::pods::list(&ctx).unwrap().is_empty());
    // Bad input is refused before anything is made.
    let bad = RunOptions::new(Vec::new());
    let err = skiff_ops::run::run(&ctx, &bad, NoReview, Start::Detached, |_| {}).unwrap_err();
    assert_eq!(err.to_string(), "no image to run");
    assert!(skiff_ops::pods::list(&ctx).unwrap().is_empty());
}

/// A program starting pods through the library while its other threads
/// start programs of their own: none of those gets the pod's lock (which
/// would have the pod "in use" for as long as it runs, so that it could
/// not be removed once exited).
#[test]
fn programs_other_threads_start_meanwhile_do_not_hold_a_pods_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let _guard = PodsGuard { root };
    let (ctx, opts) = library(root, "exit 0");
    for round in 0..5 {
        let others = Others::default();
        let starting = AtomicBool::new(true);
        let pod = std::thread::scope(|s| {
            // Up to 300 programs, for as long as the pod is being started.
            s.spawn(|| {
                while starting.load(Ordering::Relaxed) && others.count() < 300 {
                    let child = Command::new("sleep")
                        .arg("600")
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn();
                    others.0.lock().unwrap().extend(child.ok());
                }
            });
            // However `run` ends, the spawner stops (the scope waits for it).
            let _stop = Stop(&starting);
            skiff_ops::run::run(&ctx, &opts, NoReview, Start::Detached, |_| {}).unwrap()
        });
        let started = others.count();
        assert!(started > 0, "round {round}: nothing started meanwhile");
        let info = skiff_ops::pods::status(&ctx, &pod.uuid, skiff_ops::pods::Wait::Exited).unwrap();
        assert_eq!(info.apps[0].exit_code, Some(0));
        // The programs started meanwhile still run.
        let removed = skiff_ops::pods::rm(&ctx, &pod.uuid);
        assert_eq!(
            removed.as_ref().ok(),
            Some(&pod.uuid),
            "round {round}, with {started} programs started meanwhile: {removed:?}"
        );
    }
}

/// Clears its flag when dropped.
struct Stop<'a>(&'a AtomicBool);

impl Drop for Stop<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

/// Programs killed and reaped when the test ends, passed or not.
#[derive(Default)]
struct Others(Mutex<Vec<Child>>);

impl Others {
    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

impl Drop for Others {
    fn drop(&mut self) {
        let children = self.0.get_mut().unwrap_or_else(|e| e.into_inner());
        for child in children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The directory of pod `uuid` in state directory `state`.
fn pods_dir(root: &Path, state: &str, uuid: &str) -> PathBuf {
    root.join("data/pods").join(state).join(uuid)
}

/// `run_stored` starts a pod from what the store holds and nothing else:
/// an image by name or ID, fetched before. An image only a fetch could give
/// (a file, a name not stored, a docker reference, a name with
/// `--pull-policy=update`), or a run policy to enforce, is `NeedsFetch`,
/// said before any pod is made.
#[test]
fn the_store_alone_starts_what_it_holds_and_says_when_a_fetch_is_needed() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let _guard = PodsGuard { root };
    let (ctx, opts) = library(root, "exit 3");
    let needs_fetch = |opts: &RunOptions| {
        let err = skiff_ops::run::run_stored(&ctx, opts, Start::Detached, |_| {}).unwrap_err();
        assert!(
            matches!(err, skiff_ops::OpsError::NeedsFetch { .. }),
            "{err}"
        );
        assert!(
            skiff_ops::pods::list(&ctx).unwrap().is_empty(),
            "a pod was made: {err}"
        );
    };
    // The ACI file: a fetch imports it.
    needs_fetch(&opts);
    // Fetched, it is stored under its name and ID.
    let fetched = skiff_ops::run::prepare(&ctx, &opts, NoReview, |_| {}).unwrap();
    skiff_ops::pods::rm(&ctx, &fetched.uuid).unwrap();
    let id = skiff_ops::image::list(&ctx)
        .unwrap()
        .remove(0)
        .record
        .id
        .to_string();
    for name in ["example.com/ops", id.as_str()] {
        let mut stored = opts.clone();
        stored.apps[0].image = name.to_string();
        let pod = skiff_ops::run::run_stored(&ctx, &stored, Start::Detached, |_| {}).unwrap();
        let info = skiff_ops::pods::status(&ctx, &pod.uuid, skiff_ops::pods::Wait::Exited).unwrap();
        assert_eq!(info.apps[0].exit_code, Some(3), "{name}");
        skiff_ops::pods::rm(&ctx, &pod.uuid).unwrap();
    }
    // Asked to look for a newer one of the name: only a fetch can say (an
    // ID names one image: a fetch too takes it from the store).
    let mut update = opts.clone();
    update.apps[0].image = "example.com/ops".into();
    update.pull_policy = "update".parse().unwrap();
    needs_fetch(&update);
    // A name the store does not hold, a docker reference.
    for name in ["example.com/elsewhere", "docker://example.com/ops:1"] {
        let mut other = opts.clone();
        other.apps[0].image = name.to_string();
        needs_fetch(&other);
    }
    // A run policy (even one allowing everything) is enforced by a fetching run.
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/policy.toml"), "").unwrap();
    let mut stored = opts.clone();
    stored.apps[0].image = "example.com/ops".into();
    needs_fetch(&stored);
}
