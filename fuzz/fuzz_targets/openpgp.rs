//! Keys as fetched by discovery or given to `skiff trust` (armored or
//! binary OpenPGP, cosign PEM).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = skiff_trust::keystore::parse_any(data);
    let _ = skiff_trust::keystore::parse_keys(data);
});
