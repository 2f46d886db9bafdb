//! `skiff top` and `skiff stats`: what a running pod's processes are and
//! what the pod uses, per app — memory and processes from its cgroups, CPU
//! time from cgroup v2 or, where the host's cgroups do not count it (v1's
//! cpu controller), from its processes in /proc.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::procs::{self, Process};
use crate::{Context, OpsError};

/// The processes of the running pod `uuid` (a unique prefix will do).
pub fn top(ctx: &Context, uuid: &str) -> Result<Vec<Process>, OpsError> {
    procs::of_pod(&ctx.pods().find(uuid)?)
}

/// What a pod, or one of its apps, uses.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// The app (none: the whole pod).
    pub app: Option<String>,
    /// CPU time used so far.
    pub cpu_seconds: f64,
    /// CPU use over the sampling interval, percent of one CPU.
    pub cpu_percent: f64,
    /// Memory in use, bytes (without inactive file cache).
    pub memory: Option<u64>,
    pub memory_limit: Option<u64>,
    /// Processes.
    pub pids: u64,
    pub pids_limit: Option<u64>,
}

/// A pod's usage: the whole pod, then each app.
#[derive(Debug, Clone, Serialize)]
pub struct PodStats {
    pub uuid: String,
    pub pod: Usage,
    pub apps: Vec<Usage>,
}

/// One reading of the pod (`None`) and each app: their cgroups, and their
/// CPU time in seconds (from cgroup v2, else their processes).
struct Sample {
    at: Instant,
    scopes: Vec<(Option<String>, skiff_stage1::cgroups::Usage, f64)>,
}

fn sample(uuid: &str, apps: &[String], processes: &[Process]) -> Sample {
    let root = Path::new(skiff_stage1::cgroups::ROOT);
    let scopes = std::iter::once(None)
        .chain(apps.iter().map(|a| Some(a.clone())))
        .map(|app| {
            let cgroup = skiff_stage1::cgroups::usage(root, uuid, app.as_deref());
            let cpu = match cgroup.cpu_usec {
                Some(usec) => usec as f64 / 1e6,
                None => of_scope(processes, app.as_deref())
                    .map(|p| p.cpu_seconds)
                    .sum(),
            };
            (app, cgroup, cpu)
        })
        .collect();
    Sample {
        at: Instant::now(),
        scopes,
    }
}

/// The processes of `app` (all of them for the pod).
fn of_scope<'a>(
    processes: &'a [Process],
    app: Option<&'a str>,
) -> impl Iterator<Item = &'a Process> {
    processes
        .iter()
        .filter(move |p| app.is_none() || p.app.as_deref() == app)
}

/// The usage of the running pod `uuid`, CPU use measured over `interval`.
pub fn stats(ctx: &Context, uuid: &str, interval: Duration) -> Result<PodStats, OpsError> {
    let pod = ctx.pods().find(uuid)?;
    let apps: Vec<String> = pod.runtime()?.apps.into_iter().map(|a| a.name).collect();
    let first = sample(&pod.uuid, &apps, &procs::of_pod(&pod)?);
    std::thread::sleep(interval);
    let processes = procs::of_pod(&pod)?;
    let second = sample(&pod.uuid, &apps, &processes);
    let elapsed = second.at.duration_since(first.at).as_secs_f64().max(1e-3);
    let mut usages =
        first
            .scopes
            .iter()
            .zip(second.scopes)
            .map(|((_, _, before), (app, cgroup, after))| {
                let mine: Vec<&Process> = of_scope(&processes, app.as_deref()).collect();
                Usage {
                    cpu_seconds: after,
                    cpu_percent: ((after - before).max(0.0) / elapsed * 1000.0).round() / 10.0,
                    // Without cgroups (an ordinary user's pod, fly): the
                    // processes' resident memory, shared pages counted in each.
                    memory: cgroup
                        .memory
                        .or_else(|| Some(mine.iter().map(|p| p.rss).sum())),
                    memory_limit: cgroup.memory_limit,
                    pids: cgroup.pids.unwrap_or(mine.len() as u64),
                    pids_limit: cgroup.pids_limit,
                    app,
                }
            });
    let Some(whole) = usages.next() else {
        return Err(crate::refuse!("pod {} has no usage to show", pod.uuid));
    };
    Ok(PodStats {
        uuid: pod.uuid.clone(),
        pod: whole,
        apps: usages.collect(),
    })
}
