//! OCI and Docker images: `docker://` references pulled from registries
//! (the OCI distribution API) and converted to appc images.

pub mod convert;
pub mod export;
pub mod layout;
pub mod lookaside;
pub mod manifest;
pub mod pull;
pub mod push;
pub mod reference;
pub mod registry;
pub mod sign;
pub mod signatures;
pub mod upload;

pub use reference::DockerRef;
