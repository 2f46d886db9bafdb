//! Images the store alone answers for: what a fetch would find stored and
//! take without going further. Shared by [`crate::Fetcher`] (which looks
//! here first) and by callers that must not fetch, such as a start path
//! that links no network code (docs/performance.md).

use skiff_spec::discovery::AppName;
use skiff_spec::image::Dependency;
use skiff_spec::{ImageId, ImageManifest, parse_image_manifest};
use skiff_store::{Store, StoreError};

use crate::options::PullPolicy;
use crate::{FetchError, Fetched, Source, classify, default_os_arch};

/// `input` as the store has it, when a fetch with `pull_policy` would take
/// it from there and fetch nothing: a name (policy `new` or `never`) or an
/// image ID, with every dependency stored. `None` when only a fetch can
/// answer: a file, URL, `docker://`, `oci:` or `oci-archive:` reference, a
/// name with policy `update`, an image or a dependency not in the store
/// (the fetch then says what is wrong). What it returns is pinned, as a
/// fetch's result is.
pub fn stored(
    store: &Store,
    input: &str,
    pull_policy: PullPolicy,
) -> Result<Option<Fetched>, FetchError> {
    let found = match classify(input)? {
        Source::Name(app) if pull_policy != PullPolicy::Update => named(store, &with_os_arch(app))?,
        Source::Id(id) => match store.resolve(&id) {
            Ok(rec) => cached(store, &rec.id)?,
            Err(StoreError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        },
        _ => None,
    };
    match found {
        Some(fetched) if dependencies_stored(store, &fetched.manifest)? => Ok(Some(fetched)),
        _ => Ok(None),
    }
}

/// `app` with this machine's `os` and `arch` labels where it names none.
pub(crate) fn with_os_arch(mut app: AppName) -> AppName {
    for (k, v) in default_os_arch() {
        app.labels
            .entry(k.to_string())
            .or_insert_with(|| v.to_string());
    }
    app
}

/// The stored image `app` (name and labels) selects, pinned.
pub(crate) fn named(store: &Store, app: &AppName) -> Result<Option<Fetched>, FetchError> {
    match store.find(app.name.as_str(), &app.labels)? {
        Some(rec) => cached(store, &rec.id),
        None => Ok(None),
    }
}

/// The stored image `id`, pinned: a concurrent image gc keeps it from here
/// on. `None` if it is no longer stored.
pub(crate) fn cached(store: &Store, id: &ImageId) -> Result<Option<Fetched>, FetchError> {
    if !store.pin(id)? {
        return Ok(None);
    }
    let Some(rec) = store.index().image(id)? else {
        return Ok(None);
    };
    let manifest = parse_image_manifest(&rec.manifest).map_err(|e| {
        FetchError::Store(StoreError::InvalidImage(
            skiff_spec::aci::AciError::Manifest(e),
        ))
    })?;
    Ok(Some(Fetched {
        id: rec.id,
        manifest,
        verified: None,
        cached: true,
        new_blobs: Vec::new(),
    }))
}

/// Whether the store holds `dep` (by its ID, or by name and labels).
pub(crate) fn dependency_stored(store: &Store, dep: &Dependency) -> Result<bool, FetchError> {
    Ok(match &dep.image_id {
        Some(id) => !store.index().images_with_id_prefix(id.as_str())?.is_empty(),
        None => store
            .find(dep.image_name.as_str(), &dependency_labels(dep))?
            .is_some(),
    })
}

/// A dependency's labels as the store's lookup takes them.
pub(crate) fn dependency_labels(dep: &Dependency) -> std::collections::BTreeMap<String, String> {
    dep.labels
        .iter()
        .map(|l| (l.name.to_string(), l.value.clone()))
        .collect()
}

/// Whether every dependency of `manifest` is stored: what a fetch checks
/// before it fetches the missing ones (the render then needs theirs).
fn dependencies_stored(store: &Store, manifest: &ImageManifest) -> Result<bool, FetchError> {
    for dep in &manifest.dependencies {
        if !dependency_stored(store, dep)? {
            return Ok(false);
        }
    }
    Ok(true)
}
