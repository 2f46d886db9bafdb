//! Import into a store, then render into a tree: what gets past the
//! import checks meets the renderer's own containment.
#![no_main]
use skiff_store::{ArchivePolicy, Store};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let Ok(store) = Store::open(dir.path()) else {
        return;
    };
    let policy = ArchivePolicy {
        max_bytes: 32 << 20,
        max_entries: 10_000,
        ..ArchivePolicy::default()
    };
    if let Ok(imported) = store.import(data, &policy) {
        if let Ok(tree) = store.render(&imported.id) {
            // Nothing outside the tree: the temporary store holds it all.
            assert!(tree.rootfs().starts_with(dir.path()));
        }
        store.release_pins();
    }
});
