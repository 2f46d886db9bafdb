//! The ACI reader with the store's hostile-archive policy: decompression
//! (any format), tar, layout, manifest, every entry checked.
#![no_main]
use skiff_store::policy::{ArchivePolicy, EntryChecker};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let policy = ArchivePolicy {
        max_bytes: 32 << 20,
        max_entries: 10_000,
        ..ArchivePolicy::default()
    };
    let mut checker = EntryChecker::new(&policy);
    let _ = skiff_spec::aci::validate_aci_limited(data, policy.inflation(), &mut |entry| {
        checker.check(entry)
    });
});
