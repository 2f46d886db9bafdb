//! Fetch options: `--insecure-options` and `--pull-policy`, as in rkt.

use std::fmt;
use std::str::FromStr;

/// Security checks a user chose to skip. Each skipped check is announced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InsecureOptions {
    /// Accept images without a valid signature.
    pub image: bool,
    /// Accept any TLS certificate.
    pub tls: bool,
    /// Allow plain HTTP (URLs and discovery fallback).
    pub http: bool,
    /// Allow keys to be fetched over plain HTTP.
    pub pubkey: bool,
    /// Skip on-disk verification before running (skiff verifies hashes at
    /// import and renders at fetch time, so there is nothing to skip).
    pub ondisk: bool,
    /// Grant images' capability isolators as written (more than the
    /// default set; `no-new-privileges: false`).
    pub capabilities: bool,
    /// Let images' seccomp isolators replace the default filter.
    pub seccomp: bool,
    /// Leave the kernel's paths under /proc and /sys unmasked and writable.
    pub paths: bool,
}

pub const INSECURE_OPTION_NAMES: &str =
    "none, image, tls, http, pubkey, ondisk, capabilities, seccomp, paths, all-fetch, all-run, all";

impl FromStr for InsecureOptions {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut o = InsecureOptions::default();
        for word in s.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match word {
                "none" => {}
                "image" => o.image = true,
                "tls" => o.tls = true,
                "http" => o.http = true,
                "pubkey" => o.pubkey = true,
                "ondisk" => o.ondisk = true,
                "capabilities" => o.capabilities = true,
                "seccomp" => o.seccomp = true,
                "paths" => o.paths = true,
                "all-fetch" => {
                    o.image = true;
                    o.tls = true;
                    o.http = true;
                    o.pubkey = true;
                }
                "all-run" => {
                    o.ondisk = true;
                    o.capabilities = true;
                    o.seccomp = true;
                    o.paths = true;
                }
                "all" => {
                    o = InsecureOptions {
                        image: true,
                        tls: true,
                        http: true,
                        pubkey: true,
                        ondisk: true,
                        capabilities: true,
                        seccomp: true,
                        paths: true,
                    }
                }
                other => {
                    return Err(format!(
                        "unknown insecure option '{other}' (choose from: {INSECURE_OPTION_NAMES})"
                    ));
                }
            }
        }
        Ok(o)
    }
}

impl InsecureOptions {
    /// One warning line per skipped check.
    pub fn warnings(&self) -> Vec<&'static str> {
        let mut w = Vec::new();
        if self.image {
            w.push("--insecure-options=image: image signatures will NOT be verified");
        }
        if self.tls {
            w.push("--insecure-options=tls: TLS certificates will NOT be verified");
        }
        if self.http {
            w.push("--insecure-options=http: plain HTTP is allowed; downloads can be read and altered in transit");
        }
        if self.pubkey {
            w.push("--insecure-options=pubkey: keys may be fetched over plain HTTP");
        }
        if self.ondisk {
            w.push("--insecure-options=ondisk: accepted; skiff verifies images once at import, so nothing is skipped on run");
        }
        if self.capabilities {
            w.push("--insecure-options=capabilities: images' capability isolators are granted as written, beyond the default set");
        }
        if self.seccomp {
            w.push(
                "--insecure-options=seccomp: images' seccomp isolators replace the default filter",
            );
        }
        if self.paths {
            w.push("--insecure-options=paths: /proc and /sys paths are neither masked nor read-only; a pod's root can read host kernel data and change host kernel settings");
        }
        w
    }
}

/// When to go to the network (`--pull-policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullPolicy {
    /// Only use what is in the store.
    Never,
    /// Use the store if it has a matching image; download otherwise.
    New,
    /// Ask the remote (conditionally, with the stored ETag) and download if
    /// it changed. The default for `skiff fetch`.
    #[default]
    Update,
}

impl FromStr for PullPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "never" => Ok(PullPolicy::Never),
            "new" => Ok(PullPolicy::New),
            "update" => Ok(PullPolicy::Update),
            other => Err(format!(
                "unknown pull policy '{other}' (choose never, new or update)"
            )),
        }
    }
}

impl fmt::Display for PullPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PullPolicy::Never => "never",
            PullPolicy::New => "new",
            PullPolicy::Update => "update",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rkt_insecure_options() {
        let o: InsecureOptions = "image,tls".parse().unwrap();
        assert!(o.image && o.tls && !o.http);
        let all: InsecureOptions = "all-fetch".parse().unwrap();
        assert!(all.image && all.tls && all.http && all.pubkey && !all.ondisk);
        assert!(!all.capabilities && !all.seccomp);
        let run: InsecureOptions = "all-run".parse().unwrap();
        assert!(run.ondisk && run.capabilities && run.seccomp && run.paths && !run.image);
        assert!(!all.paths && "paths".parse::<InsecureOptions>().unwrap().paths);
        assert!("bogus".parse::<InsecureOptions>().is_err());
        assert_eq!(
            "".parse::<InsecureOptions>().unwrap(),
            InsecureOptions::default()
        );
    }
}
