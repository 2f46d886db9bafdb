//! Image manifests as fetched, built or found in an ACI.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(m) = skiff_spec::parse_image_manifest(data) {
        // What parses is written back and parses again.
        let again = skiff_spec::to_pretty_json(&m);
        assert!(skiff_spec::parse_image_manifest(again.as_bytes()).is_ok());
    }
});
