//! Pod manifests given by the user (`run --pod-manifest`) or read back.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = skiff_spec::parse_pod_manifest(data);
    let _ = skiff_spec::parse_manifest(data);
});
