//! Where skiff keeps things and what it reads from the environment. Every
//! setting that is not a command-line flag is read here, once.

use std::path::PathBuf;

use clap::Args;

/// Options every command accepts.
#[derive(Args, Debug, Clone)]
pub struct GlobalArgs {
    /// Print debug diagnostics on stderr (same as SKIFF_LOG=debug).
    #[arg(long, global = true)]
    pub debug: bool,

    /// Data directory: image store, rendered trees, pods [default: root's
    /// /var/lib/skiff; another user's $XDG_DATA_HOME/skiff, that is
    /// ~/.local/share/skiff].
    #[arg(long, global = true, env = "SKIFF_DIR", value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// Local configuration (trusted keys, networks, policy); written by
    /// `skiff trust` [default: root's /etc/skiff; another user's
    /// $XDG_CONFIG_HOME/skiff, that is ~/.config/skiff].
    #[arg(long, global = true, value_name = "DIR")]
    pub local_config: Option<PathBuf>,

    /// Vendor configuration, read-only, overridden by the local one.
    #[arg(
        long,
        global = true,
        default_value = "/usr/lib/skiff",
        value_name = "DIR"
    )]
    pub system_config: PathBuf,

    /// Checks to skip, comma-separated: none, image (signatures), tls,
    /// http, pubkey, ondisk, all-fetch, all-run, all. Each skipped check is
    /// announced on stderr.
    #[arg(long, global = true, default_value = "none", value_name = "LIST")]
    pub insecure_options: skiff_fetch::InsecureOptions,

    /// Trust keys announced by image discovery over HTTPS (after showing
    /// their fingerprints for review).
    #[arg(long, global = true)]
    pub trust_keys_from_https: bool,

    /// Credentials for docker:// registries, USER:PASSWORD (default: the
    /// registry's entry in ~/.docker/config.json, if any).
    #[arg(long, global = true, value_name = "USER:PASSWORD")]
    pub creds: Option<String>,

    /// Architecture to take from multi-platform docker:// images (amd64,
    /// arm64, ...; default: this machine's).
    #[arg(long, global = true, value_name = "ARCH")]
    pub arch: Option<String>,

    /// The stage1 program to run pods with (default: skiff-stage1 beside
    /// skiff, then <prefix>/lib/skiff/stage1/, then /usr/lib/skiff/stage1/).
    #[arg(long, global = true, env = "SKIFF_STAGE1_PATH", value_name = "FILE")]
    pub stage1_path: Option<PathBuf>,

    /// A run policy to enforce (default: policy.toml in the local config
    /// dir, if there is one): refuse images with known vulnerabilities of
    /// a severity, unsigned ones, or ones outside trusted name prefixes.
    #[arg(long, global = true, value_name = "FILE")]
    pub policy: Option<PathBuf>,

    /// Not an option: set by the small `skiff` (crate::front) for the
    /// starts it runs itself (see `skiff_ops::Settings`).
    #[arg(skip)]
    pub stage1_in_process: bool,
}

impl GlobalArgs {
    /// The operations' settings of these options.
    pub fn settings(&self) -> anyhow::Result<skiff_ops::Settings> {
        let creds = match &self.creds {
            None => None,
            Some(c) => match c.split_once(':') {
                Some((u, p)) if !u.is_empty() => Some((u.to_string(), p.to_string())),
                _ => anyhow::bail!("--creds: expected USER:PASSWORD"),
            },
        };
        let (dir, local_config) = match (&self.dir, &self.local_config) {
            (Some(dir), Some(config)) => (dir.clone(), config.clone()),
            (dir, config) => {
                let user = skiff_ops::locations::Locations::of_this_user()?;
                (
                    dir.clone().unwrap_or(user.data),
                    config.clone().unwrap_or(user.config),
                )
            }
        };
        Ok(skiff_ops::Settings {
            dir,
            local_config,
            system_config: self.system_config.clone(),
            insecure: self.insecure_options,
            trust_keys_from_https: self.trust_keys_from_https,
            creds,
            arch: self.arch.clone(),
            stage1_path: self.stage1_path.clone(),
            policy: self.policy.clone(),
            ca_file: std::env::var_os("SSL_CERT_FILE").map(PathBuf::from),
            progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            debug: self.debug,
            stage1_in_process: self.stage1_in_process,
        })
    }

    /// What operations run against.
    pub fn context(&self) -> anyhow::Result<skiff_ops::Context> {
        Ok(skiff_ops::Context::checked(self.settings()?)?)
    }

    /// Says on stderr which checks these options skip.
    pub fn warn_insecure(&self) {
        for warning in self.insecure_options.warnings() {
            crate::log::warning(warning);
        }
    }
}

/// Parses durations like `24h`, `30m`, `90s`, `1h30m`, `0`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    if s == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    let mut total = 0u64;
    let mut number = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => {
                return Err(format!(
                    "bad duration '{s}': unknown unit '{c}' (use s, m, h or d)"
                ));
            }
        };
        let n: u64 = number
            .parse()
            .map_err(|_| format!("bad duration '{s}': a number must precede '{c}'"))?;
        total = total.saturating_add(n.saturating_mul(unit));
        number.clear();
    }
    if !number.is_empty() || s.is_empty() {
        return Err(format!(
            "bad duration '{s}': give a unit, e.g. 24h, 30m, 90s"
        ));
    }
    Ok(std::time::Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("24h").unwrap().as_secs(), 86400);
        assert_eq!(parse_duration("1h30m").unwrap().as_secs(), 5400);
        assert_eq!(parse_duration("0s").unwrap().as_secs(), 0);
        assert_eq!(parse_duration("0").unwrap().as_secs(), 0);
        for bad in ["", "5", "h", "5x", "-1h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
