//! Where skiff keeps things for the user running it. Root keeps the
//! system's paths (/var/lib/skiff, /etc/skiff); any other user gets
//! directories of their own, following the XDG base directory
//! specification: `$XDG_DATA_HOME/skiff` (default `~/.local/share/skiff`)
//! and `$XDG_CONFIG_HOME/skiff` (default `~/.config/skiff`). So one user's
//! images, pods and trusted keys are never another's, and nobody needs
//! write access to a system directory (docs/rootless.md).

use std::ffi::OsString;
use std::path::PathBuf;

/// Root's data directory.
pub const ROOT_DATA: &str = "/var/lib/skiff";
/// Root's local configuration.
pub const ROOT_CONFIG: &str = "/etc/skiff";

/// The default data and configuration directories of one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locations {
    /// Image store, rendered trees, pods.
    pub data: PathBuf,
    /// Trusted keys, networks, policy (what `skiff trust` writes).
    pub config: PathBuf,
}

/// Why a user's locations cannot be found.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LocationError {
    #[error(
        "HOME is not set (or not an absolute path), so skiff cannot find this user's directories: set HOME, XDG_DATA_HOME and XDG_CONFIG_HOME, or pass --dir and --local-config"
    )]
    NoHome,
}

impl Locations {
    /// The locations of the user running this process, from its
    /// environment.
    pub fn of_this_user() -> Result<Locations, LocationError> {
        // Root of the user's own namespace (or of any other) acts for the
        // user: only root of the host gets the system's paths.
        Self::resolve(crate::rootless::is_host_root(), |name| {
            std::env::var_os(name)
        })
    }

    /// The locations of root (`is_root`) or of a user whose environment
    /// `var` reads. XDG variables that are empty or relative are ignored,
    /// as the specification says.
    pub fn resolve(
        is_root: bool,
        var: impl Fn(&str) -> Option<OsString>,
    ) -> Result<Locations, LocationError> {
        if is_root {
            return Ok(Locations {
                data: PathBuf::from(ROOT_DATA),
                config: PathBuf::from(ROOT_CONFIG),
            });
        }
        let absolute = |name: &str| var(name).map(PathBuf::from).filter(|p| p.is_absolute());
        let home = absolute("HOME");
        let base = |xdg: &str, fallback: &str| -> Result<PathBuf, LocationError> {
            match absolute(xdg) {
                Some(dir) => Ok(dir),
                None => home
                    .as_deref()
                    .map(|h| h.join(fallback))
                    .ok_or(LocationError::NoHome),
            }
        };
        Ok(Locations {
            data: base("XDG_DATA_HOME", ".local/share")?.join("skiff"),
            config: base("XDG_CONFIG_HOME", ".config")?.join("skiff"),
        })
    }
}

/// Where `skiff metadata-service` listens unless told: root on every
/// address at the well-known port (pods on CNI networks come in through
/// their gateway address); any other user on the host's loopback at a free
/// port (pods on the user-mode network come in through a port pasta
/// forwards from their own loopback; stage1 learns the port when it
/// registers a pod), so two users' services never collide.
pub fn metadata_listen(is_root: bool) -> std::net::SocketAddr {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    match is_root {
        true => SocketAddr::new(
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            skiff_metadata::DEFAULT_PORT,
        ),
        false => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn root_keeps_the_system_paths() {
        let l = Locations::resolve(true, env(&[("XDG_DATA_HOME", "/x")])).unwrap();
        assert_eq!(l.data, Path::new("/var/lib/skiff"));
        assert_eq!(l.config, Path::new("/etc/skiff"));
    }

    #[test]
    fn users_get_xdg_directories() {
        let l = Locations::resolve(false, env(&[("HOME", "/home/u")])).unwrap();
        assert_eq!(l.data, Path::new("/home/u/.local/share/skiff"));
        assert_eq!(l.config, Path::new("/home/u/.config/skiff"));
        let l = Locations::resolve(
            false,
            env(&[
                ("HOME", "/home/u"),
                ("XDG_DATA_HOME", "/data/u"),
                ("XDG_CONFIG_HOME", "/cfg/u"),
            ]),
        )
        .unwrap();
        assert_eq!(l.data, Path::new("/data/u/skiff"));
        assert_eq!(l.config, Path::new("/cfg/u/skiff"));
    }

    #[test]
    fn relative_or_empty_xdg_values_are_ignored() {
        let l = Locations::resolve(
            false,
            env(&[
                ("HOME", "/home/u"),
                ("XDG_DATA_HOME", "rel"),
                ("XDG_CONFIG_HOME", ""),
            ]),
        )
        .unwrap();
        assert_eq!(l.data, Path::new("/home/u/.local/share/skiff"));
        assert_eq!(l.config, Path::new("/home/u/.config/skiff"));
    }

    #[test]
    fn no_home_is_a_clear_error() {
        assert_eq!(
            Locations::resolve(false, env(&[])),
            Err(LocationError::NoHome)
        );
        assert_eq!(
            Locations::resolve(false, env(&[("HOME", "relative")])),
            Err(LocationError::NoHome)
        );
        // With both XDG directories set, HOME is not needed.
        assert!(
            Locations::resolve(
                false,
                env(&[("XDG_DATA_HOME", "/d"), ("XDG_CONFIG_HOME", "/c")])
            )
            .is_ok()
        );
    }
}
