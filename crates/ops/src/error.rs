//! The errors of the operations: each names the step that failed; causes
//! are in `source()` (printed once, by the caller).

use std::path::PathBuf;

use skiff_fetch::FetchError;
use skiff_pod::PodError;
use skiff_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The request cannot be done as asked, or a step failed: the message
    /// says why (and, for bad input, what to do instead; bad input is
    /// refused before anything is made).
    #[error("{0}")]
    Refused(String),
    /// An image or manifest that cannot be read or is invalid.
    #[error("{what}")]
    Image {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A manifest `image build` cannot edit.
    #[error("{}", path.display())]
    Edit {
        path: PathBuf,
        #[source]
        source: skiff_spec::edit::EditError,
    },
    #[error("cannot discover keys for {prefix}")]
    Discover {
        prefix: String,
        #[source]
        source: FetchError,
    },
    #[error(transparent)]
    Io(#[from] skiff_io::IoError),
    #[error("cannot open the store in {}", dir.display())]
    OpenStore {
        dir: PathBuf,
        #[source]
        source: StoreError,
    },
    #[error("cannot fetch {image}")]
    Fetch {
        image: String,
        #[source]
        source: FetchError,
    },
    #[error(transparent)]
    FetchSetup(FetchError),
    /// [`crate::run::run_stored`]: the store alone cannot give `image` (or
    /// a run policy applies): a fetching run must start the pod. Said
    /// before any pod or tree is made.
    #[error("{image}: {why}")]
    NeedsFetch { image: String, why: &'static str },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Serve(#[from] skiff_share::server::ServeError),
    #[error(transparent)]
    Pod(#[from] PodError),
    #[error(transparent)]
    Net(#[from] skiff_net::NetError),
    #[error(transparent)]
    Device(#[from] skiff_pod::devices::DeviceError),
    #[error(transparent)]
    Stage1(#[from] skiff_pod::stage1::Stage1NotFound),
    #[error(transparent)]
    Audit(#[from] skiff_audit::AuditError),
    #[error(transparent)]
    Trust(#[from] skiff_trust::TrustError),
    #[error("{location}")]
    Key {
        location: String,
        #[source]
        source: skiff_trust::TrustError,
    },
    #[error(transparent)]
    Build(#[from] skiff_spec::aci::build::BuildError),
}

/// A refusal with this message.
pub(crate) fn refused(message: impl Into<String>) -> OpsError {
    OpsError::Refused(message.into())
}

pub(crate) use skiff_io::io_err as io;
