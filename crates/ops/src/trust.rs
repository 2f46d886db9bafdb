//! Trusted keys: list, remove, add from files or URLs, or discover them
//! for a prefix (each shown to a [`KeyReview`] first).

use skiff_fetch::{KeyCandidate, KeyReview};
use skiff_spec::discovery::AppName;
use skiff_trust::Scope;
use skiff_trust::keystore::{TrustedKey, parse_any};

use crate::error::io;
use crate::{Context, OpsError, refuse};

/// Every trusted key (local and vendor).
pub fn list(ctx: &Context) -> Result<Vec<TrustedKey>, OpsError> {
    Ok(ctx.keystore().list()?)
}

/// Stops trusting the key `fingerprint` (a unique prefix of at least 8
/// hex digits will do); returns what is no longer trusted.
pub fn remove(ctx: &Context, fingerprint: &str) -> Result<Vec<TrustedKey>, OpsError> {
    Ok(ctx.keystore().remove(fingerprint)?)
}

/// Discovers the keys of `prefix` (`ac-discovery-pubkeys`) and trusts
/// those `review` approves; returns how many.
pub fn discover<R: KeyReview>(ctx: &Context, prefix: &str, review: R) -> Result<usize, OpsError> {
    let options = skiff_fetch::FetchOptions {
        trust_keys_from_https: true,
        ..ctx.fetch_options(skiff_fetch::PullPolicy::Update)
    };
    let session = ctx.fetch_session(options, review)?;
    let app = AppName::parse(prefix).map_err(|e| refuse!("bad prefix '{prefix}': {e}"))?;
    let added = session
        .fetcher()
        .trust_discovered_keys(&app)
        .map_err(|source| OpsError::Discover {
            prefix: prefix.to_string(),
            source,
        })?;
    if added == 0 {
        return Err(refuse!("no key was trusted for {prefix}"));
    }
    Ok(added)
}

/// Trusts for `scope` the keys in each of `locations` (files, or https
/// URLs) that `review` approves, calling `on_added` for each key added. A
/// key refused in review stops the operation.
pub fn add<R: KeyReview>(
    ctx: &Context,
    scope: &Scope,
    locations: &[String],
    review: &R,
    mut on_added: impl FnMut(&TrustedKey),
) -> Result<(), OpsError> {
    // Every location checked before any key is trusted.
    if let Some(plain) = locations
        .iter()
        .find(|l| l.starts_with("http://") && !ctx.settings.insecure.pubkey)
    {
        return Err(refuse!(
            "{plain}: keys over plain HTTP need --insecure-options=pubkey"
        ));
    }
    let http = ctx.http();
    let keystore = ctx.keystore();
    for location in locations {
        let bytes = if location.starts_with("https://") || location.starts_with("http://") {
            http.get_small(location, 1 << 20)
                .map_err(OpsError::FetchSetup)?
        } else {
            std::fs::read(location).map_err(io(format!("read key file {location}")))?
        };
        let keys = parse_any(&bytes).map_err(|source| OpsError::Key {
            location: location.clone(),
            source,
        })?;
        for key in keys {
            let candidate = KeyCandidate {
                prefix: match scope {
                    Scope::Root => "(all images)".into(),
                    Scope::Prefix(p) => p.clone(),
                },
                location: location.clone(),
                fingerprint: key.fingerprint(),
                user_ids: key.user_ids(),
            };
            if !review.approve(&candidate) {
                return Err(refuse!("key {} not trusted", candidate.fingerprint));
            }
            for added in keystore.add(std::slice::from_ref(&key), scope)? {
                on_added(&added);
            }
        }
    }
    Ok(())
}

/// A new signing key pair, written as `<out>.sec.asc` (mode 0600) and
/// `<out>.pub.asc`.
#[derive(Debug)]
pub struct Generated {
    pub fingerprint: String,
    pub secret: std::path::PathBuf,
    pub public: std::path::PathBuf,
}

/// Writes `text` to the new file `path` (it must not exist) with `mode`.
fn write_new(path: &std::path::Path, text: &[u8], mode: u32) -> Result<(), OpsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io(format!(
            "create {} (it must not exist yet)",
            path.display()
        )))?;
    f.write_all(text)
        .map_err(io(format!("write {}", path.display())))?;
    Ok(())
}

/// `out` with `ext` appended.
fn with_ext(out: &std::path::Path, ext: &str) -> std::path::PathBuf {
    let mut name = out.as_os_str().to_owned();
    name.push(ext);
    std::path::PathBuf::from(name)
}

/// Generates an Ed25519 OpenPGP key pair for signing images; neither file
/// may exist yet.
pub fn generate_key(out: &std::path::Path, uid: &str) -> Result<Generated, OpsError> {
    let key = skiff_trust::sign::generate_key(uid)?;
    let (secret, public) = (with_ext(out, ".sec.asc"), with_ext(out, ".pub.asc"));
    // The public file first: a failure leaves no secret key behind.
    write_new(&public, key.public.as_bytes(), 0o644)?;
    write_new(&secret, key.secret.as_bytes(), 0o600)?;
    Ok(Generated {
        fingerprint: key.fingerprint,
        secret,
        public,
    })
}

/// Generates a cosign key pair: `<out>.key` (mode 0600; encrypted as
/// cosign does with `password`, else unencrypted PKCS#8) and `<out>.pub`
/// (PEM); neither may exist yet.
pub fn generate_cosign_key(
    out: &std::path::Path,
    algorithm: skiff_trust::cosign_key::Algorithm,
    password: Option<&[u8]>,
) -> Result<Generated, OpsError> {
    use skiff_trust::cosign_key::CosignSigner;
    let key = CosignSigner::generate(algorithm);
    let secret_text = match password {
        Some(p) => key.to_encrypted_pem(p)?,
        None => key.to_pkcs8_pem()?,
    };
    let (secret, public) = (with_ext(out, ".key"), with_ext(out, ".pub"));
    write_new(&public, key.public().to_pem().as_bytes(), 0o644)?;
    write_new(&secret, secret_text.as_bytes(), 0o600)?;
    Ok(Generated {
        fingerprint: key.public().fingerprint(),
        secret,
        public,
    })
}
