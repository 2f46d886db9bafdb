//! What a registry says about cosign signatures: the signature annotation
//! and image references.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = skiff_trust::cosign::decode_signature(&text);
    let _ = skiff_trust::cosign::repository(&text);
    let _ = skiff_trust::cosign::is_pem_public_key(data);
});
