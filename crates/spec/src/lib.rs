//! skiff-spec: the App Container (appc 0.8.11) schema, exactly as the
//! reference `actool` validates it, and ACI archives.
//!
//! Map of the crate:
//! * [`names`]: `ACIdentifier`, `ACName`, `ACKind`.
//! * [`semver`]: `acVersion` / version labels.
//! * [`labels`]: labels (os/arch table), annotations, image hashes.
//! * [`quantity`]: resource quantities (`500m`, `1Gi`).
//! * [`isolator`]: the standard isolators and their value rules.
//! * [`image`] / [`pod`]: image and pod manifests.
//! * [`manifest`]: parse-and-validate entry points and their errors.
//! * [`edit`]: typed changes to an image manifest (`skiff image build`).
//! * [`id`]: strict `sha512-<128 hex>` image IDs.
//! * [`discovery`]: image names with labels, discovery meta tags, templates.
//! * [`aci`]: ACI detection, decompression, validation, image IDs, building.
//! * `json`, `decode`, `gocompat` (private): Go `encoding/json`, `time` and
//!   `net/url` semantics, which decide what `actool` accepts.
//!
//! Pure: no global state, no network, no `unsafe`. Where the spec's prose and
//! `actool` disagree, this crate follows `actool` (docs/appc-conformance.md).

pub mod aci;
mod decode;
pub mod discovery;
pub mod edit;
mod gocompat;
pub mod id;
pub mod image;
pub mod isolator;
mod json;
pub mod labels;
pub mod manifest;
pub mod names;
pub mod pod;
pub mod quantity;
pub mod semver;

#[cfg(test)]
mod robustness;

pub use decode::Problem;
pub use id::ImageId;
pub use image::{App, ImageManifest};
pub use json::{MAX_DEPTH, SyntaxError};
pub use manifest::{
    Manifest, ManifestError, parse_image_manifest, parse_manifest, parse_pod_manifest,
    to_pretty_json,
};
pub use names::{AcIdentifier, AcKind, AcName};
pub use pod::PodManifest;
pub use semver::{APPC_SPEC_VERSION, SemVer};
