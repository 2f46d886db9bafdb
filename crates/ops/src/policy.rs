//! The run policy: `<local-config>/policy.toml` (default
//! /etc/skiff/policy.toml) or `--policy FILE`, checked by `skiff fetch`,
//! `run` and `prepare` for every image before it is used.
//!
//! ```toml
//! # refuse images with a known vulnerability of this severity or worse
//! # (low, medium, high, critical); needs `skiff vuln-db import`
//! max-severity = "high"
//! # refuse images no trusted key signed
//! require-signature = true
//! # refuse images whose names are not under one of these (whole path
//! # segments), as vouched for by a trusted key whose scope covers the name
//! trusted-prefixes = ["example.com/", "registry.example.org/team/"]
//! ```
//!
//! The policy holds for every image of a pod's tree: the image run and
//! each of its dependencies.

use std::path::PathBuf;

use serde::Deserialize;
use skiff_store::{ImageRecord, Store};

use crate::error::{io, refused};
use crate::{Context, OpsError};

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Policy {
    pub max_severity: Option<String>,
    #[serde(default)]
    pub require_signature: bool,
    pub trusted_prefixes: Option<Vec<String>>,
    #[serde(skip)]
    pub path: PathBuf,
}

const SEVERITIES: &[&str] = &["low", "medium", "high", "critical"];

fn rank(severity: &str) -> Option<usize> {
    SEVERITIES.iter().position(|s| *s == severity)
}

/// Whether a run policy applies (`--policy`, or `policy.toml` in the
/// local configuration), without reading it.
pub fn configured(ctx: &Context) -> bool {
    ctx.settings.policy.is_some() || ctx.settings.local_config.join("policy.toml").exists()
}

/// The policy in force: `--policy`, else `<local-config>/policy.toml` if
/// it exists, else none.
pub fn load(ctx: &Context) -> Result<Option<Policy>, OpsError> {
    let path = match &ctx.settings.policy {
        Some(p) => p.clone(),
        None => {
            let p = ctx.settings.local_config.join("policy.toml");
            if !p.exists() {
                return Ok(None);
            }
            p
        }
    };
    let text = std::fs::read_to_string(&path)
        .map_err(io(format!("read the policy {}", path.display())))?;
    let mut policy: Policy = toml::from_str(&text)
        .map_err(|e| refused(format!("{}: {}", path.display(), e.message())))?;
    if let Some(s) = &policy.max_severity
        && rank(s).is_none()
    {
        return Err(refused(format!(
            "{}: max-severity must be one of {}",
            path.display(),
            SEVERITIES.join(", ")
        )));
    }
    policy.path = path;
    Ok(Some(policy))
}

impl Policy {
    /// Why the policy refuses the stored image `rec` (empty: allowed).
    pub fn reasons(
        &self,
        ctx: &Context,
        store: &Store,
        rec: &ImageRecord,
    ) -> Result<Vec<String>, OpsError> {
        let mut reasons = Vec::new();
        if let Some(prefixes) = &self.trusted_prefixes {
            let names = names(store, rec)?;
            let shown = names.join(", ");
            let under: Vec<&String> = names
                .iter()
                .filter(|n| prefixes.iter().any(|p| under_prefix(n, p)))
                .collect();
            if under.is_empty() {
                reasons.push(format!(
                    "{shown} is not under a trusted prefix ({})",
                    prefixes.join(", ")
                ));
            } else if !skiff_fetch::docker::pull::vouched(
                store,
                &ctx.keystore(),
                &rec.id,
                &under.iter().map(|n| n.as_str()).collect::<Vec<_>>(),
            )
            .map_err(OpsError::FetchSetup)?
            {
                reasons.push(format!(
                    "its name {shown} is only claimed: no key trusted for that name signed it \
                     (trusted-prefixes admits names that a signature vouches for)"
                ));
            }
        }
        if self.require_signature && store.index().signers(&rec.id)?.is_empty() {
            let note = if ctx.settings.insecure.image {
                " (--insecure-options=image does not override a policy)"
            } else {
                ""
            };
            reasons.push(format!("no trusted key signed it{note}"));
        }
        if let Some(max) = &self.max_severity {
            let db = crate::vulndb::path(ctx);
            if !db.exists() {
                reasons.push(
                    "max-severity needs a vulnerability database: import OSV advisories with `skiff vuln-db import`"
                        .to_string(),
                );
            } else {
                let tree = store.render(&rec.id)?;
                let inventory = skiff_audit::source::from_tree(&tree.rootfs())?;
                let conn = skiff_audit::osv::open(&db)?;
                let limit = rank(max).unwrap_or(0);
                let bad: Vec<String> = skiff_audit::osv::findings(&conn, &inventory)?
                    .into_iter()
                    .filter(|f| rank(&f.severity).is_some_and(|r| r >= limit))
                    .map(|f| format!("{} ({} {}, {})", f.id, f.package, f.version, f.severity))
                    .collect();
                if !bad.is_empty() {
                    reasons.push(format!(
                        "{} vulnerabilit(ies) of severity {max} or worse: {}",
                        bad.len(),
                        bad.join("; ")
                    ));
                }
            }
        }
        Ok(reasons)
    }

    /// Enforces the policy on every image of the tree that `top` renders
    /// to (the very layers a pod gets: the rendered tree lists them, so a
    /// tree rendered before the policy existed is judged by what is in it).
    /// When the policy refuses, the images of that tree the store did not
    /// hold `before` (what the refused fetch added), their tree and the
    /// fetch's `new_blobs` are removed again.
    pub fn admit(
        &self,
        ctx: &Context,
        store: &Store,
        top: &skiff_spec::ImageId,
        before: &Snapshot,
        new_blobs: &[std::path::PathBuf],
    ) -> Result<(), OpsError> {
        let ids = store.render(top)?.images()?;
        let verdict = ids
            .iter()
            .try_for_each(|id| self.enforce(ctx, store, &store.resolve(id)?));
        if verdict.is_err() {
            let pods = ctx.pods();
            for id in ids.iter().filter(|id| !before.images.contains(id.as_str())) {
                if let Ok(rec) = store.resolve(id) {
                    let _ = store.remove(&rec.id, || pods.images_in_use(true));
                }
            }
            // The tree rendered for it, unless a pod (even an exited one)
            // uses it; `image gc` would take it later.
            let used = pods.images_in_use(false).unwrap_or_default();
            if !before.images.contains(top.as_str()) && !used.contains(top.as_str()) {
                let _ = std::fs::remove_dir_all(store.layout().tree(top));
            }
            // And the files (layers, manifest, config) the fetch itself
            // added to the layer cache.
            for path in new_blobs {
                let _ = std::fs::remove_file(path);
            }
        }
        verdict
    }

    /// Fails with every reason if the policy refuses `rec`.
    pub fn enforce(&self, ctx: &Context, store: &Store, rec: &ImageRecord) -> Result<(), OpsError> {
        let reasons = self.reasons(ctx, store, rec)?;
        if !reasons.is_empty() {
            return Err(refused(format!(
                "the policy {} refuses {}: {}",
                self.path.display(),
                rec.name,
                reasons.join("; ")
            )));
        }
        Ok(())
    }
}

/// What the store held before a fetch: a refusal removes the images of
/// the refused tree that were not there.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Image IDs.
    pub images: std::collections::BTreeSet<String>,
}

/// The images in the store now.
pub fn snapshot(store: &Store) -> Result<Snapshot, OpsError> {
    Ok(Snapshot {
        images: store
            .images()?
            .into_iter()
            .map(|r| r.id.as_str().to_string())
            .collect(),
    })
}

/// The names the policy judges `rec` by: for an image fetched from a
/// registry, the repositories it came from (`registry[:port]/path`, Docker
/// Hub as `docker.io/…`: what its signature was checked for; its appc name
/// has lost the difference between `:`, `_` and `-`); else its appc name.
fn names(store: &Store, rec: &ImageRecord) -> Result<Vec<String>, OpsError> {
    let mut names: Vec<String> = store
        .index()
        .remotes_of(&rec.id)?
        .iter()
        .filter(|r| r.url.starts_with("docker://"))
        .filter_map(|r| skiff_trust::cosign::repository(&r.url))
        .collect();
    names.sort();
    names.dedup();
    if names.is_empty() {
        names.push(rec.name.to_string());
    }
    Ok(names)
}

/// Whether `name` is `prefix` or below it, by whole path segments
/// (`example.com/pri` does not admit `example.com/priv`), as a trust scope.
fn under_prefix(name: &str, prefix: &str) -> bool {
    skiff_trust::Scope::Prefix(prefix.trim_end_matches('/').to_string()).covers(name)
}

#[cfg(test)]
mod tests {
    use super::under_prefix;

    #[test]
    fn prefixes_match_whole_path_segments() {
        assert!(under_prefix("example.com/priv/app", "example.com/priv"));
        assert!(under_prefix("example.com/priv/app", "example.com/priv/"));
        assert!(under_prefix("example.com/priv", "example.com/priv"));
        assert!(!under_prefix("example.com/private", "example.com/priv"));
        assert!(!under_prefix("example.com/priv", "example.com/pri"));
        assert!(!under_prefix("example.comx/a", "example.com/"));
        assert!(under_prefix(
            "127.0.0.1:5000/team/app",
            "127.0.0.1:5000/team/"
        ));
        assert!(!under_prefix(
            "127.0.0.1-5000/team/app",
            "127.0.0.1:5000/team/"
        ));
    }
}
