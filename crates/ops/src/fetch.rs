//! Images into the store: fetched, verified and held to the run policy
//! (what the policy refuses, the image or a dependency, does not stay).

use skiff_fetch::{FetchOptions, FetchSession, Fetched, KeyReview};
use skiff_store::Store;

use crate::policy::Policy;
use crate::{Context, OpsError};

/// A fetch session under the run policy in force.
pub struct Fetching<R: KeyReview> {
    session: FetchSession<R>,
    policy: Option<Policy>,
}

impl<R: KeyReview> Fetching<R> {
    /// Fetches with `options`, asking `review` before trusting a
    /// discovered key.
    pub fn new(ctx: &Context, options: FetchOptions, review: R) -> Result<Self, OpsError> {
        // The policy first: a bad one is refused before the store is made.
        let policy = crate::policy::load(ctx)?;
        Ok(Self {
            session: ctx.fetch_session(options, review)?,
            policy,
        })
    }

    pub fn store(&self) -> &Store {
        &self.session.store
    }

    /// Fetches `image` (and its dependencies) and holds them to the policy.
    pub fn fetch(&self, ctx: &Context, image: &str) -> Result<Fetched, OpsError> {
        let _step = tracing::debug_span!("fetch", image).entered();
        let store = &self.session.store;
        let before = match &self.policy {
            Some(_) => crate::policy::snapshot(store)?,
            None => Default::default(),
        };
        let fetched = self
            .session
            .fetcher()
            .fetch(image)
            .map_err(|source| OpsError::Fetch {
                image: image.to_string(),
                source,
            })?;
        if let Some(policy) = &self.policy {
            policy.admit(ctx, store, &fetched.id, &before, &fetched.new_blobs)?;
        }
        Ok(fetched)
    }
}
