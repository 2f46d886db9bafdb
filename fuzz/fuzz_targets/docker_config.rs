//! An OCI/Docker image config (from a registry) turned into an appc image
//! manifest, which must then be one.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(config) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let manifest = skiff_fetch::docker::convert::image_manifest(
        "example.com/app",
        Some("1.0"),
        &config,
        "docker://example.com/app:1.0",
        "sha256:0000000000000000000000000000000000000000000000000000000000000000",
    );
    let _ = skiff_spec::parse_image_manifest(manifest.to_string().as_bytes());
});
