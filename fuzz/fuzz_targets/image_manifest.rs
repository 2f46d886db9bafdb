//! Image manifests as fetched, built or found in an ACI. What parses is
//! written back and parsed again; that this may fail (a list entry without
//! a "name" key passes appc's parser but not once written) is why the
//! store checks the written form at import (a regression test there).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(m) = skiff_spec::parse_image_manifest(data) {
        let again = skiff_spec::to_pretty_json(&m);
        let _ = skiff_spec::parse_image_manifest(again.as_bytes());
    }
});
