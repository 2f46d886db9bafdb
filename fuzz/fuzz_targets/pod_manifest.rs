//! Pod manifests given by the user (`run --pod-manifest`) or read back,
//! and the appc JSON reader under every manifest (duplicate keys, depth,
//! numbers, escapes), through the kind-generic parser.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = skiff_spec::parse_pod_manifest(data);
    let _ = skiff_spec::parse_manifest(data);
});
