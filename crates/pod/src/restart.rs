//! Supervision without systemd: when an app that ended is started again
//! (`--restart`), how long its keeper waits first, and the record of every
//! run that `skiff status` shows.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// When an app that ended is started again (`--restart=POLICY`, as
/// podman's). A stop (`skiff stop`, SIGTERM to the supervisor) is never
/// followed by a restart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Restart {
    /// Never (the default).
    #[default]
    No,
    /// When it ended with a status other than 0, at most `max` times
    /// (no limit without one).
    OnFailure { max: Option<u32> },
    /// Whatever its status.
    Always,
}

/// The first wait before a restart; each restart in a row doubles it.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait before a restart.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A run at least this long resets the wait to [`FIRST_BACKOFF`].
pub const STABLE_RUN: Duration = Duration::from_secs(10);

impl Restart {
    pub fn is_no(&self) -> bool {
        *self == Restart::No
    }

    /// Whether an app whose run number `restarts` (0 for the first run)
    /// ended with `status` is started again.
    pub fn again(&self, status: i32, restarts: u32) -> bool {
        match *self {
            Restart::No => false,
            Restart::Always => true,
            Restart::OnFailure { max } => status != 0 && max.is_none_or(|max| restarts < max),
        }
    }
}

/// How long to wait before the next restart, given the last wait (None
/// before the first restart) and how long the last run lasted.
pub fn backoff(last: Option<Duration>, ran: Duration) -> Duration {
    match last {
        Some(wait) if ran < STABLE_RUN => (wait * 2).min(MAX_BACKOFF),
        _ => FIRST_BACKOFF,
    }
}

impl std::fmt::Display for Restart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Restart::No => f.write_str("no"),
            Restart::OnFailure { max: None } => f.write_str("on-failure"),
            Restart::OnFailure { max: Some(n) } => write!(f, "on-failure:{n}"),
            Restart::Always => f.write_str("always"),
        }
    }
}

impl std::str::FromStr for Restart {
    type Err = String;

    fn from_str(s: &str) -> Result<Restart, String> {
        match s {
            "no" => Ok(Restart::No),
            "always" => Ok(Restart::Always),
            "on-failure" => Ok(Restart::OnFailure { max: None }),
            "unless-stopped" => Err(
                "unless-stopped needs a daemon to start pods again after a reboot, and skiff has none: use always, with a systemd unit (skiff generate systemd) to start the pod at boot"
                    .to_string(),
            ),
            _ => match s.strip_prefix("on-failure:").map(str::parse::<u32>) {
                Some(Ok(n)) if n > 0 => Ok(Restart::OnFailure { max: Some(n) }),
                Some(_) => Err(format!(
                    "{s}: the most restarts must be a whole number from 1 (on-failure:3; on-failure alone has no limit)"
                )),
                None => Err(format!(
                    "no policy '{s}': the policies are no, on-failure, on-failure:N and always"
                )),
            },
        }
    }
}

impl Serialize for Restart {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Restart {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Restart, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// One ended run of an app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    /// Its exit status (128+signal when killed).
    pub status: i32,
    /// When it ended (Unix time).
    pub ended: i64,
}

/// The runs of an app that were followed by a restart
/// (`<pod>/apps/<app>/runs`): how many, and the last [`Runs::KEPT`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Runs {
    pub count: u64,
    pub last: Vec<Run>,
}

impl Runs {
    /// How many runs are kept in the record.
    pub const KEPT: usize = 16;

    /// Reads the record (empty if there is none or it is unreadable).
    pub fn read(path: &Path) -> Runs {
        std::fs::read(path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// Adds a run, forgetting the oldest beyond [`Runs::KEPT`].
    pub fn add(&mut self, run: Run) {
        self.count += 1;
        self.last.push(run);
        if self.last.len() > Self::KEPT {
            self.last.remove(0);
        }
    }

    /// Writes the record (replacing the file whole).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("new");
        std::fs::write(
            &tmp,
            serde_json::to_vec(self).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(&tmp, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_and_print_as_given() {
        for text in ["no", "on-failure", "on-failure:3", "always"] {
            assert_eq!(text.parse::<Restart>().unwrap().to_string(), text);
        }
        for bad in [
            "",
            "on-failure:0",
            "on-failure:-1",
            "on-failure:x",
            "sometimes",
            "unless-stopped",
        ] {
            assert!(bad.parse::<Restart>().is_err(), "{bad}");
        }
        let json = serde_json::to_string(&Restart::OnFailure { max: Some(2) }).unwrap();
        assert_eq!(json, "\"on-failure:2\"");
        assert!(serde_json::from_str::<Restart>("\"forever\"").is_err());
    }

    #[test]
    fn on_failure_counts_restarts_and_ignores_success() {
        let three = Restart::OnFailure { max: Some(3) };
        assert!(three.again(1, 0) && three.again(1, 2));
        assert!(!three.again(1, 3));
        assert!(!three.again(0, 0));
        assert!(Restart::OnFailure { max: None }.again(137, 1_000_000));
        assert!(Restart::Always.again(0, 5));
        assert!(!Restart::No.again(1, 0));
    }

    #[test]
    fn backoff_doubles_up_to_its_limit_and_resets_after_a_stable_run() {
        let quick = Duration::from_millis(5);
        let mut wait = None;
        let mut waits = Vec::new();
        for _ in 0..12 {
            let next = backoff(wait, quick);
            waits.push(next);
            wait = Some(next);
        }
        assert_eq!(waits[0], FIRST_BACKOFF);
        assert_eq!(waits[1], FIRST_BACKOFF * 2);
        assert_eq!(*waits.last().unwrap(), MAX_BACKOFF);
        assert_eq!(backoff(Some(MAX_BACKOFF), STABLE_RUN), FIRST_BACKOFF);
    }

    #[test]
    fn the_record_keeps_the_count_and_the_last_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs");
        assert_eq!(Runs::read(&path), Runs::default());
        let mut runs = Runs::default();
        for status in 0..20 {
            runs.add(Run { status, ended: 1 });
        }
        runs.write(&path).unwrap();
        let read = Runs::read(&path);
        assert_eq!(read.count, 20);
        assert_eq!(read.last.len(), Runs::KEPT);
        assert_eq!(read.last[0].status, 4);
    }
}
