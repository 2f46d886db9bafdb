//! What a pod is ([`PodInfo`]: state, apps, networks), and ending pods:
//! stop, rm, gc.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;
use skiff_pod::{Flavor, Pod, Pods, State};

use crate::error::io;
use crate::{Context, OpsError, refuse};

/// An app of a pod.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppInfo {
    pub name: String,
    pub image: String,
    /// Once it ended.
    pub exit_code: Option<i32>,
    /// How many times it was started again (`--restart`).
    pub restarts: u64,
    /// The last runs that were followed by a restart, oldest first.
    pub runs: Vec<RunInfo>,
    /// OOM kills in its cgroup (recorded as the pod ended).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oom_kills: Option<u64>,
}

impl AppInfo {
    /// Whether the kernel killed a process of the app for lack of memory.
    pub fn oom_killed(&self) -> bool {
        self.oom_kills.is_some_and(|n| n > 0)
    }
}

/// An ended run of an app that was started again.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    pub status: i32,
    #[serde(serialize_with = "as_rfc3339")]
    pub ended: i64,
}

/// Times in JSON as RFC 3339, as in the text output.
pub(crate) fn as_rfc3339<S: serde::Serializer>(secs: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&skiff_pod::rfc3339(*secs))
}

fn as_rfc3339_opt<S: serde::Serializer>(secs: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match secs {
        Some(secs) => as_rfc3339(secs, s),
        None => s.serialize_none(),
    }
}

/// A network a pod is attached to, while it is.
#[derive(Debug, Clone, Serialize)]
pub struct NetInfo {
    pub name: String,
    pub ifname: String,
    pub ips: Vec<String>,
}

/// A host port forwarded to a pod (`--port`), from its pod manifest.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PortInfo {
    /// The port's name (the image's, or `PROTO-PORT` for a number).
    pub name: String,
    #[serde(rename = "hostIP", skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<std::net::IpAddr>,
    pub host_port: u64,
}

impl PortInfo {
    /// `[HOSTIP:]HOSTPORT`, an IPv6 address in brackets.
    pub fn host(&self) -> String {
        crate::network::host_and_port(self.host_ip, self.host_port)
    }
}

/// The ports `pod`'s manifest forwards (none if it cannot be read).
fn ports_of(pod: &Pod) -> Vec<PortInfo> {
    std::fs::read(pod.manifest_path())
        .ok()
        .and_then(|bytes| skiff_spec::parse_pod_manifest(&bytes).ok())
        .map(|m| {
            m.ports
                .iter()
                .map(|p| PortInfo {
                    name: p.name.as_str().to_string(),
                    host_ip: p.host_ip,
                    host_port: p.host_port,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A pod as `skiff list` and `skiff status` show it (also their JSON).
#[derive(Debug, Clone, Serialize)]
pub struct PodInfo {
    pub uuid: String,
    pub state: &'static str,
    /// Unix times (RFC 3339 in JSON).
    #[serde(serialize_with = "as_rfc3339")]
    pub created: i64,
    #[serde(serialize_with = "as_rfc3339_opt")]
    pub started: Option<i64>,
    /// When every app had started.
    #[serde(serialize_with = "as_rfc3339_opt")]
    pub ready: Option<i64>,
    #[serde(serialize_with = "as_rfc3339_opt")]
    pub exited: Option<i64>,
    pub pid: Option<i32>,
    pub flavor: Option<Flavor>,
    /// The accelerator a kvm pod's VM uses, and why.
    pub accel: Option<String>,
    pub apps: Vec<AppInfo>,
    pub networks: Vec<NetInfo>,
    pub ports: Vec<PortInfo>,
}

impl PodInfo {
    pub fn of(pod: &Pod) -> Self {
        let runtime = pod.runtime().ok();
        let apps = runtime
            .as_ref()
            .map(|r| {
                r.apps
                    .iter()
                    .map(|a| {
                        let runs = pod.app_runs(&a.name);
                        AppInfo {
                            name: a.name.clone(),
                            image: a.image_name.clone(),
                            exit_code: pod.app_exit(&a.name),
                            restarts: runs.count,
                            runs: runs
                                .last
                                .iter()
                                .map(|r| RunInfo {
                                    status: r.status,
                                    ended: r.ended,
                                })
                                .collect(),
                            oom_kills: pod.app_oom_kills(&a.name),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let networks = skiff_net::record::read(&pod.path)
            .map(|info| {
                info.networks
                    .iter()
                    .map(|a| NetInfo {
                        name: a.name.clone(),
                        ifname: a.ifname.clone(),
                        ips: a.ips().iter().map(|ip| ip.to_string()).collect(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            uuid: pod.uuid.clone(),
            state: pod.display_state(),
            created: pod.created(),
            started: pod.started(),
            ready: pod.ready(),
            exited: pod.exited(),
            pid: pod.pid(),
            flavor: runtime.map(|r| r.flavor),
            accel: pod.note(skiff_pod::PodNote::Accel),
            apps,
            networks,
            ports: ports_of(pod),
        }
    }
}

/// Every pod.
pub fn list(ctx: &Context) -> Result<Vec<PodInfo>, OpsError> {
    Ok(ctx.pods().all()?.iter().map(PodInfo::of).collect())
}

/// What `status` waits for before it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Nothing: the pod as it is.
    No,
    /// The pod has ended (`--wait`).
    Exited,
    /// Every app has started, or the pod ended first (`--wait-ready`).
    Ready,
}

/// The pod `uuid` (a unique prefix will do), once `wait` holds.
pub fn status(ctx: &Context, uuid: &str, wait: Wait) -> Result<PodInfo, OpsError> {
    let pods = ctx.pods();
    let mut pod = pods.find(uuid)?;
    let pending = |pod: &Pod| {
        let going = pod.is_running() || pod.is_preparing();
        match wait {
            Wait::No => false,
            Wait::Exited => going,
            Wait::Ready => going && pod.ready().is_none(),
        }
    };
    // A pod that moved on since it was found is looked up again: its old
    // path tells nothing (not locked, so not running, not preparing).
    while pending(&pod) || !pod.path.exists() {
        std::thread::sleep(Duration::from_millis(50));
        pod = pods.find(&pod.uuid)?;
    }
    Ok(PodInfo::of(&pod))
}

/// How many times, [`LET_GO_PAUSE`] apart, a command that needs an ended
/// pod's lock tries it before it gives up: about a second. Counted in
/// tries, not time, so that a process stopped and continued meanwhile
/// still gets them all.
const LET_GO_TRIES: u32 = 100;
const LET_GO_PAUSE: Duration = Duration::from_millis(10);

/// The lock of the ended (or prepared) pod `pod`, once a holder of an
/// instant has let go — its stage1, which records the end (moves the pod to
/// exited-garbage) just before it lets go, or another command's probe —
/// so that `status --wait` then `rm` does not find the pod in use. None if
/// it is held longer (an export, a gc: about a second, [`LET_GO_TRIES`]) or
/// the pod moved on.
pub(crate) fn lock_ended(pod: &Pod) -> Result<Option<skiff_pod::PodLock>, OpsError> {
    for _ in 0..LET_GO_TRIES {
        if let Some(lock) = pod.try_lock_present()? {
            return Ok(Some(lock));
        }
        if !pod.path.exists() {
            return Ok(None);
        }
        std::thread::sleep(LET_GO_PAUSE);
    }
    Ok(None)
}

/// The pod manifest of pod `uuid` (rkt's `cat-manifest`), as stage0 wrote
/// it: every app with the image's app and the user's changes.
pub fn manifest(ctx: &Context, uuid: &str) -> Result<String, OpsError> {
    let pod = ctx.pods().find(uuid)?;
    let path = pod.manifest_path();
    Ok(std::fs::read_to_string(&path).map_err(io(format!("read {}", path.display())))?)
}

/// How a stop ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// The pod stopped (its UUID); `killed`: only once SIGKILL followed the
    /// SIGTERM its apps did not end on in time.
    Stopped { uuid: String, killed: bool },
    /// The pod was not running (exited, or prepared and never run): nothing
    /// to do.
    NotRunning(String),
    /// The pod still ran after SIGKILL (its init could not be reaped).
    StillRunning(String),
}

/// How long `stop` waits for a pod killed with SIGKILL to be recorded as
/// exited.
const AFTER_KILL: Duration = Duration::from_secs(10);

/// Stops the pod `uuid`: SIGTERM to its init (which passes it to every
/// app), then, if the pod still runs after `timeout`, SIGKILL (which takes
/// every app with it); a zero timeout kills at once. As podman and rkt.
pub fn stop(ctx: &Context, uuid: &str, timeout: Duration) -> Result<Stopped, OpsError> {
    let pods = ctx.pods();
    let pod = pods.find(uuid)?;
    if !pod.is_running() {
        return Ok(Stopped::NotRunning(pod.uuid));
    }
    let pid = pod
        .pid()
        .ok_or_else(|| refuse!("pod {} has no pid yet", pod.uuid))?;
    let target = rustix::process::Pid::from_raw(pid)
        .ok_or_else(|| refuse!("pod {}: bad pid {pid}", pod.uuid))?;
    let signal = |signal| {
        rustix::process::kill_process(target, signal)
            .map_err(|e| io(format!("signal pod {}", pod.uuid))(e.into()))
    };
    let ended_within = |wait: Duration| -> Result<bool, OpsError> {
        let deadline = Instant::now() + wait;
        loop {
            if !still_running(&pods, &pod.uuid)? {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    if !timeout.is_zero() {
        signal(rustix::process::Signal::TERM)?;
        if ended_within(timeout)? {
            return Ok(Stopped::Stopped {
                uuid: pod.uuid,
                killed: false,
            });
        }
    }
    // Gone in the meantime: nothing left to kill.
    if let Err(e) = signal(rustix::process::Signal::KILL)
        && still_running(&pods, &pod.uuid)?
    {
        return Err(e.into());
    }
    Ok(if ended_within(AFTER_KILL)? {
        Stopped::Stopped {
            uuid: pod.uuid,
            killed: true,
        }
    } else {
        Stopped::StillRunning(pod.uuid)
    })
}

/// Whether the pod `uuid` still runs. A pod that is gone has ended: a
/// concurrent `gc` may collect it the moment its stage1 exits, before a
/// `stop` waiting for that end looks again.
fn still_running(pods: &Pods, uuid: &str) -> Result<bool, OpsError> {
    match pods.find(uuid) {
        Ok(pod) => Ok(pod.is_running()),
        Err(skiff_pod::PodError::NotFound(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Runs stage1's `gc` on an exited pod: it releases what the pod may still
/// hold after a crash (networks, network namespace, cgroups).
pub(crate) fn stage1_gc(ctx: &Context, pod: &Pod) -> Result<(), OpsError> {
    if !pod.path.join("runtime.json").exists() {
        return Ok(());
    }
    let out = Command::new(ctx.stage1()?)
        .arg("gc")
        .arg(&pod.path)
        .stdin(Stdio::null())
        .output()
        .map_err(io("run stage1 gc"))?;
    if !out.status.success() {
        return Err(refuse!(
            "{}",
            String::from_utf8_lossy(&out.stderr)
                .trim()
                .trim_start_matches("skiff: ")
        ));
    }
    Ok(())
}

pub(crate) fn remove_pod(ctx: &Context, pods: &Pods, mut pod: Pod) -> Result<(), OpsError> {
    stage1_gc(ctx, &pod)?;
    Ok(pod.remove(pods)?)
}

/// Removes the pod `uuid`, which must have ended; returns its UUID.
pub fn rm(ctx: &Context, uuid: &str) -> Result<String, OpsError> {
    let pods = ctx.pods();
    let pod = pods.find(uuid)?;
    if pod.is_running() || pod.is_preparing() {
        return Err(refuse!(
            "pod {} is {}: stop it first",
            pod.uuid,
            pod.display_state()
        ));
    }
    // Taken, or moved on since it was found (a concurrent gc or start).
    let Some(_lock) = lock_ended(&pod)? else {
        return Err(refuse!(
            "pod {} is in use or changed state: try again (skiff status {})",
            pod.uuid,
            pod.uuid
        ));
    };
    let id = pod.uuid.clone();
    remove_pod(ctx, &pods, pod)?;
    Ok(id)
}

/// What a pod gc does, as it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Collected {
    /// This pod was removed.
    Removed(String),
    /// A problem that does not stop the collection (one line).
    Problem(String),
}

/// Collects pods: a `run` pod whose stage1 is gone has exited; exited pods
/// older than `grace` and prepared ones older than `expire_prepared` are
/// removed (networks a crashed stage1 left are released at once). Tells
/// `on` each removal and problem as it happens; returns how many pods it
/// removed.
pub fn gc(
    ctx: &Context,
    grace: Duration,
    expire_prepared: Duration,
    mut on: impl FnMut(Collected),
) -> Result<usize, OpsError> {
    let pods = ctx.pods();
    let now = skiff_pod::now();
    let mut removed = 0;
    // Not pods yet: directories a preparer killed before it locked one left.
    pods.remove_unlocked_new();
    for mut pod in pods.all()? {
        if pod.state == State::Run {
            let Some(_lock) = pod.try_lock_present()? else {
                continue;
            };
            if pod.exited().is_none() {
                let _ = pod.stamp("exited");
            }
            pod.move_to(&pods, State::ExitedGarbage)?;
        }
        if pod.state == State::ExitedGarbage
            && pod.path.join("net/info.json").exists()
            && let Some(_lock) = pod.try_lock_present()?
            && let Err(e) = stage1_gc(ctx, &pod)
        {
            on(Collected::Problem(skiff_stage1::error_line(&e)));
        }
        let expired = match pod.state {
            State::ExitedGarbage => older_than(now, pod.exited().unwrap_or(0), grace),
            State::Prepared => older_than(now, pod.created(), expire_prepared),
            State::Garbage => true,
            // Left by a `prepare` or `run` that died before the pod was
            // prepared: nothing will finish it.
            State::Embryo | State::Prepare => !pod.is_preparing(),
            State::Run => false,
        };
        if expired {
            // An ended pod's stage1 may be letting go this instant (a gc
            // right after `stop` or `status --wait`).
            let lock = match pod.state {
                State::ExitedGarbage => lock_ended(&pod)?,
                _ => pod.try_lock_present()?,
            };
            let Some(_lock) = lock else {
                continue;
            };
            let id = pod.uuid.clone();
            if let Err(e) = remove_pod(ctx, &pods, pod) {
                on(Collected::Problem(format!(
                    "pod {id} kept: {}",
                    skiff_stage1::error_line(&e)
                )));
                continue;
            }
            on(Collected::Removed(id));
            removed += 1;
        }
    }
    Ok(removed)
}

/// Whether `since` (seconds) lies at least `age` before `now`; an age past
/// i64's seconds is never reached (`as i64` once made u64::MAX -1, which
/// every pod had reached: `--grace-period=999999999999999d` removed them
/// all).
fn older_than(now: i64, since: i64, age: Duration) -> bool {
    i64::try_from(age.as_secs()).is_ok_and(|age| now.saturating_sub(since) >= age)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_past_what_seconds_hold_are_never_reached() {
        let now = 1_800_000_000;
        assert!(older_than(now, now - 60, Duration::from_secs(60)));
        assert!(!older_than(now, now - 59, Duration::from_secs(60)));
        assert!(older_than(now, now, Duration::ZERO));
        for age in [u64::MAX, i64::MAX as u64 + 1] {
            assert!(!older_than(now, 0, Duration::from_secs(age)), "{age}");
            assert!(
                !older_than(now, i64::MIN, Duration::from_secs(age)),
                "{age}"
            );
        }
    }

    #[test]
    fn a_pod_collected_while_stop_waits_has_ended() {
        let dir = tempfile::tempdir().unwrap();
        let pods = Pods::new(dir.path());
        let (mut pod, _) = pods.create().unwrap();
        pod.move_to(&pods, State::Prepared).unwrap();
        pod.move_to(&pods, State::Run).unwrap();
        let lock = pod.lock().unwrap();
        assert!(still_running(&pods, &pod.uuid).unwrap());
        // Its stage1 exits; a concurrent gc moves it on and removes it.
        drop(lock);
        assert!(!still_running(&pods, &pod.uuid).unwrap());
        pod.move_to(&pods, State::Garbage).unwrap();
        std::fs::remove_dir_all(&pod.path).unwrap();
        assert!(!still_running(&pods, &pod.uuid).unwrap());
    }
}
