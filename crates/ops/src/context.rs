//! The settings every operation shares (where things are, what checks are
//! skipped) and the one place the store, the pods, the keystore and a
//! fetch session are built from them.

use std::path::{Path, PathBuf};

use skiff_fetch::{FetchOptions, FetchSession, Http, HttpOptions, KeyReview, PullPolicy};
use skiff_pod::Pods;
use skiff_store::{ArchivePolicy, Store};
use skiff_trust::Keystore;

use crate::OpsError;

/// Where skiff keeps things and what the user relaxed, as typed values
/// (the command line's global options, converted).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Data directory: image store, rendered trees, pods.
    pub dir: PathBuf,
    /// Local configuration (trusted keys, networks, policy).
    pub local_config: PathBuf,
    /// Vendor configuration, overridden by the local one.
    pub system_config: PathBuf,
    /// Checks the user chose to skip.
    pub insecure: skiff_fetch::InsecureOptions,
    /// Trust keys announced by discovery over HTTPS (after review).
    pub trust_keys_from_https: bool,
    /// Registry credentials (user, password).
    pub creds: Option<(String, String)>,
    /// Architecture to take from multi-platform images.
    pub arch: Option<String>,
    /// The stage1 program (default: found beside skiff, …).
    pub stage1_path: Option<PathBuf>,
    /// A run policy file (default: `policy.toml` in the local config).
    pub policy: Option<PathBuf>,
    /// A CA bundle instead of the system one.
    pub ca_file: Option<PathBuf>,
    /// Show download progress.
    pub progress: bool,
    /// Debug diagnostics (passed on to stage1).
    pub debug: bool,
    /// A start in the foreground runs the built-in stage1 in this process
    /// instead of executing `skiff-stage1` (unless `stage1_path` names
    /// one): for a program that holds nothing a pod must not see, as the
    /// pod's init is a fork of it (`skiff`'s small front; docs/stage1.md).
    pub stage1_in_process: bool,
}

impl Settings {
    /// The defaults of a root user: /var/lib/skiff, /etc/skiff,
    /// /usr/lib/skiff, nothing skipped.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            local_config: PathBuf::from("/etc/skiff"),
            system_config: PathBuf::from("/usr/lib/skiff"),
            insecure: skiff_fetch::InsecureOptions::default(),
            trust_keys_from_https: false,
            creds: None,
            arch: None,
            stage1_path: None,
            policy: None,
            ca_file: None,
            progress: false,
            debug: false,
            stage1_in_process: false,
        }
    }
}

/// What operations run against: [`Settings`] and what is built from them.
#[derive(Debug, Clone)]
pub struct Context {
    pub settings: Settings,
}

/// `dir` absolute and without symlinks (those of its existing part): the
/// kernel names mount points and process roots so, and a pod's mounts and
/// processes are found by comparing with them.
fn resolved(dir: &Path) -> PathBuf {
    let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(existing) {
            return rest.iter().rev().fold(real, |p, part| p.join(part));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return absolute,
        }
    }
}

impl Context {
    pub fn new(mut settings: Settings) -> Self {
        settings.dir = resolved(&settings.dir);
        Self { settings }
    }

    /// A context for a command: refused if the data directory exists and
    /// is another user's (its pods and records would be trusted).
    pub fn checked(mut settings: Settings) -> Result<Self, OpsError> {
        settings.dir = resolved(&settings.dir);
        skiff_store::own_dir(&settings.dir).map_err(|source| OpsError::OpenStore {
            dir: settings.dir.clone(),
            source,
        })?;
        Ok(Self { settings })
    }

    pub fn dir(&self) -> &Path {
        &self.settings.dir
    }

    /// The image store (created if missing).
    pub fn store(&self) -> Result<Store, OpsError> {
        Store::open(&self.settings.dir)
            .map(|store| store.show_progress(self.settings.progress))
            .map_err(|source| OpsError::OpenStore {
                dir: self.settings.dir.clone(),
                source,
            })
    }

    pub fn pods(&self) -> Pods {
        Pods::new(&self.settings.dir)
    }

    pub fn keystore(&self) -> Keystore {
        Keystore::new(&self.settings.local_config, &self.settings.system_config)
    }

    /// The stage1 program pods run with.
    pub fn stage1(&self) -> Result<PathBuf, OpsError> {
        Ok(skiff_pod::stage1::locate(
            self.settings.stage1_path.as_deref(),
        )?)
    }

    /// Where named networks are configured (local first).
    pub fn net_dirs(&self) -> [PathBuf; 2] {
        [
            self.settings.local_config.join("net.d"),
            self.settings.system_config.join("net.d"),
        ]
    }

    /// The HTTP client of the settings (it reads its CA bundle at its
    /// first request).
    pub fn http(&self) -> Http {
        Http::new(HttpOptions {
            ca_file: self.settings.ca_file.clone(),
            insecure_tls: self.settings.insecure.tls,
            allow_http: self.settings.insecure.http,
            progress: self.settings.progress,
            auth: skiff_fetch::auth::load(&self.auth_dirs()),
        })
    }

    /// Where credentials are configured (local first).
    pub fn auth_dirs(&self) -> Vec<PathBuf> {
        vec![
            self.settings.local_config.join("auth.d"),
            self.settings.system_config.join("auth.d"),
        ]
    }

    /// The fetch options of the settings, for `pull_policy`; operations
    /// change the fields they have options for.
    pub fn fetch_options(&self, pull_policy: PullPolicy) -> FetchOptions {
        FetchOptions {
            insecure: self.settings.insecure,
            pull_policy,
            archive_policy: ArchivePolicy::default(),
            trust_keys_from_https: self.settings.trust_keys_from_https,
            signature: None,
            creds: self.settings.creds.clone(),
            auth_dirs: self.auth_dirs(),
            registries_dirs: vec![
                self.settings.local_config.join("registries.d"),
                self.settings.system_config.join("registries.d"),
            ],
            arch: self.settings.arch.clone(),
            peers: Vec::new(),
            peers_dirs: vec![
                self.settings.local_config.join("peers.d"),
                self.settings.system_config.join("peers.d"),
            ],
            mirrors_dirs: vec![
                self.settings.local_config.join("mirrors.d"),
                self.settings.system_config.join("mirrors.d"),
            ],
        }
    }

    /// Store, keystore and HTTP client with `options` and `review`: the
    /// one place a fetch is set up.
    pub fn fetch_session<R: KeyReview>(
        &self,
        options: FetchOptions,
        review: R,
    ) -> Result<FetchSession<R>, OpsError> {
        Ok(FetchSession {
            store: self.store()?,
            keystore: self.keystore(),
            http: self.http(),
            options,
            review,
        })
    }
}
