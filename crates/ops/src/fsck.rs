//! Checking pods and what they hold on the host, and repairing them:
//! `skiff fsck [--repair]` (the store has `skiff image fsck`).
//!
//! A pod's directory says what it holds; a process killed at the wrong
//! instant (a `prepare`, a supervisor, a `gc`) can leave a pod in a state
//! nothing finishes, or host resources a pod that no longer runs still
//! holds. Each is found by the pods of this data directory only (another
//! store's pods share `/run/skiff` and the `skiff` cgroups, and are none of
//! this one's business):
//!
//! - `abandoned-pod`: an `embryo` or `prepare` pod whose preparer died;
//! - `unrecorded-exit`: a pod in `run` whose stage1 is gone (killed) and
//!   that nobody marked exited;
//! - `unfinished-removal`: a pod in `garbage` whose removal was cut short;
//! - `network-not-released`, `leaked-cgroup`, `leaked-netns`: an exited pod
//!   that still has its networks, cgroups or network namespace;
//! - `unsupervised-processes`: processes of a pod whose stage1 is gone
//!   (a `fly` pod's apps have no pod init to take them along);
//! - `leaked-mount`: a mount under a pod directory of a pod that does not
//!   run (or under `pods/` with no pod at all).
//!
//! The repair is what gc does, at once: marks the exit, releases with
//! stage1's `gc`, removes, detaches.

use std::path::Path;

use serde::Serialize;
use skiff_pod::State;

use crate::context::Context;
use crate::error::OpsError;

/// What kind of problem a pod has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PodProblemKind {
    AbandonedPod,
    UnrecordedExit,
    UnfinishedRemoval,
    UnsupervisedProcesses,
    NetworkNotReleased,
    LeakedCgroup,
    LeakedNetns,
    LeakedMount,
}

/// One problem, and whether the repair fixed it (and if not, why).
#[derive(Debug, Clone, Serialize)]
pub struct PodProblem {
    pub kind: PodProblemKind,
    pub subject: String,
    pub detail: String,
    pub repair: String,
    pub repaired: bool,
}

/// What `skiff fsck` looked at and found.
#[derive(Debug, Default, Clone, Serialize)]
pub struct PodsReport {
    pub pods: usize,
    pub running: usize,
    pub problems: Vec<PodProblem>,
}

impl PodsReport {
    pub fn unrepaired(&self) -> usize {
        self.problems.iter().filter(|p| !p.repaired).count()
    }
}

/// How many processes the pod cgroup `dir` and its app cgroups have.
fn processes_in(dir: &Path) -> usize {
    let count = |d: &Path| {
        std::fs::read_to_string(d.join("cgroup.procs"))
            .map(|p| p.lines().count())
            .unwrap_or(0)
    };
    count(dir)
        + std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| count(&e.path()))
            .sum::<usize>()
}

fn mountinfo() -> String {
    std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default()
}

/// Checks the pods of `ctx`'s data directory; with `repair`, repairs them.
pub fn fsck(ctx: &Context, repair: bool) -> Result<PodsReport, OpsError> {
    let pods = ctx.pods();
    let mut report = PodsReport::default();
    let add = |report: &mut PodsReport,
               kind: PodProblemKind,
               subject: &str,
               detail: String,
               repair_text: &str,
               fixed: Option<Result<(), String>>| {
        let (repaired, repair) = match fixed {
            None => (false, repair_text.to_string()),
            Some(Ok(())) => (true, repair_text.to_string()),
            Some(Err(why)) => (false, format!("{repair_text} failed: {why}")),
        };
        report.problems.push(PodProblem {
            kind,
            subject: subject.to_string(),
            detail,
            repair,
            repaired,
        });
    };
    let error = |e: OpsError| skiff_stage1::error_line(&e);
    // Not pods yet, and not reported: a live preparer's is unlocked for
    // an instant (it starts again if this takes it).
    if repair {
        pods.remove_unlocked_new();
    }
    let all = pods.all()?;
    report.pods = all.len();
    let mut known = Vec::new();
    for mut pod in all {
        known.push(pod.path.clone());
        let uuid = pod.uuid.clone();
        if pod.is_running() {
            report.running += 1;
            continue;
        }
        if pod.is_preparing() {
            continue;
        }
        // Nobody holds it from here on (a stage1 starting now would: take
        // the lock for the repair's length). A pod that moved or went
        // since the listing is another command's business.
        let _lock = match pod.try_lock() {
            Ok(Some(lock)) => lock,
            Ok(None) => {
                report.running += 1;
                continue;
            }
            Err(_) if !pod.path.exists() => continue,
            Err(e) => return Err(e.into()),
        };
        match pod.state {
            State::Embryo | State::Prepare => {
                let fixed = repair.then(|| crate::pods::remove_pod(ctx, &pods, pod.clone()));
                add(
                    &mut report,
                    PodProblemKind::AbandonedPod,
                    &uuid,
                    format!("left in {} by a preparer that died", pod.state.dir_name()),
                    "removed",
                    fixed.map(|r| r.map_err(error)),
                );
                continue;
            }
            State::Garbage => {
                let fixed = repair.then(|| crate::pods::remove_pod(ctx, &pods, pod.clone()));
                add(
                    &mut report,
                    PodProblemKind::UnfinishedRemoval,
                    &uuid,
                    "its removal was cut short".into(),
                    "removed",
                    fixed.map(|r| r.map_err(error)),
                );
                continue;
            }
            State::Run => {
                let fixed = repair.then(|| {
                    if pod.exited().is_none() {
                        let _ = pod.stamp("exited");
                    }
                    pod.move_to(&pods, State::ExitedGarbage)
                        .map_err(|e| skiff_stage1::error_line(&e))
                });
                let moved = matches!(fixed, Some(Ok(())));
                add(
                    &mut report,
                    PodProblemKind::UnrecordedExit,
                    &uuid,
                    "its stage1 is gone (killed?) and the pod was never marked exited".into(),
                    "marked exited (app statuses stage1 wrote are kept)",
                    fixed,
                );
                // Without --repair, what the repair would find next is shown too.
                if repair && !moved {
                    continue;
                }
            }
            // Prepared: nothing set up on the host yet.
            State::Prepared => continue,
            State::ExitedGarbage => {}
        }
        // An exited (or prepared) pod holds nothing on the host.
        let mut release = Vec::new();
        if skiff_net::record::read(&pod.path).is_some_and(|info| !info.networks.is_empty()) {
            release.push((
                PodProblemKind::NetworkNotReleased,
                "its networks (CNI) are still set up".to_string(),
            ));
        }
        for dir in
            skiff_stage1::cgroups::pod_dirs_found(Path::new(skiff_stage1::cgroups::ROOT), &uuid)
        {
            let procs = processes_in(&dir);
            release.push((
                PodProblemKind::LeakedCgroup,
                if procs == 0 {
                    format!("cgroup {} remains", dir.display())
                } else {
                    format!(
                        "cgroup {} remains with {procs} process(es) of the pod still running unsupervised",
                        dir.display()
                    )
                },
            ));
        }
        let netns = skiff_net::netns::path_for(&uuid);
        if netns.exists() {
            release.push((
                PodProblemKind::LeakedNetns,
                format!("network namespace {} remains", netns.display()),
            ));
        }
        if !release.is_empty() {
            let fixed = repair.then(|| crate::pods::stage1_gc(ctx, &pod).map_err(error));
            for (kind, detail) in release {
                add(
                    &mut report,
                    kind,
                    &uuid,
                    detail,
                    "released by stage1's gc (processes left in the pod's cgroups are killed)",
                    fixed.clone(),
                );
            }
        }
        let orphans = skiff_pod::mounts::processes_rooted_under(&pod.path);
        if !orphans.is_empty() {
            let fixed = repair.then(|| {
                skiff_pod::mounts::kill_processes_rooted_under(&pod.path);
                Ok(())
            });
            add(
                &mut report,
                PodProblemKind::UnsupervisedProcesses,
                &uuid,
                format!(
                    "{} process(es) of the pod still run without their stage1 (a fly pod's apps)",
                    orphans.len()
                ),
                "killed",
                fixed,
            );
        }
        let mounts = skiff_pod::mounts::mount_points_under(&mountinfo(), &pod.path);
        for point in mounts {
            let fixed = repair.then(|| detach(&point));
            add(
                &mut report,
                PodProblemKind::LeakedMount,
                &uuid,
                format!("{} is still mounted", point.display()),
                "detached",
                fixed,
            );
        }
    }
    // Mounts under pods/ that belong to no pod directory at all, read
    // after the listing. A pod created, started, stopped or collected since
    // has its mounts and is another command's (or the next fsck's): only
    // mounts of no pod at all are detached here.
    let pods_dir = ctx.settings.dir.join("pods");
    for point in skiff_pod::mounts::mount_points_under(&mountinfo(), &pods_dir) {
        if known.iter().any(|p| point.starts_with(p)) {
            continue;
        }
        let uuid = point
            .strip_prefix(&pods_dir)
            .ok()
            .and_then(|rest| rest.iter().nth(1))
            .map(|u| u.to_string_lossy().into_owned());
        if uuid.is_some_and(|u| pods.find(&u).is_ok()) {
            continue;
        }
        let fixed = repair.then(|| detach(&point));
        add(
            &mut report,
            PodProblemKind::LeakedMount,
            &point.display().to_string(),
            "mounted under pods/, where no pod has it".into(),
            "detached",
            fixed,
        );
    }
    Ok(report)
}

fn detach(point: &Path) -> Result<(), String> {
    rustix::mount::unmount(point, rustix::mount::UnmountFlags::DETACH)
        .map_err(|e| std::io::Error::from(e).to_string())
}
