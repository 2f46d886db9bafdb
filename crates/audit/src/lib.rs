//! What is inside an image: its packages, read from the package databases
//! it carries (dpkg's `status` and `status.d/`, apk's `installed`), with
//! the distribution from `/etc/os-release`, written as a CycloneDX 1.5 SBOM
//! with package URLs.
//!
//! * [`packages`]: the database parsers.
//! * [`source`]: reading those files from a tree or straight from an ACI.
//! * [`sbom`]: CycloneDX and purls.

pub mod gobuild;
pub mod osv;
pub mod packages;
pub mod rpm;
pub mod sbom;
pub mod source;
pub mod version;

pub use packages::{Ecosystem, Package};

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Io(#[from] skiff_io::IoError),
    #[error("{0}")]
    Image(String),
}

/// What an audit found: the distribution and the packages.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Inventory {
    /// `ID` and `VERSION_ID` of /etc/os-release (e.g. debian, 12).
    pub distro: Option<(String, String)>,
    pub packages: Vec<Package>,
}
