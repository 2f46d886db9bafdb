//! What a registry or an OCI layout says about an image: its manifest,
//! its index (the platform's manifest picked from it) and a cosign
//! signature manifest.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(m) = skiff_fetch::docker::manifest::Manifest::parse(data, "fuzz") {
        let _ = m.declared_size();
        for l in &m.layers {
            assert!(skiff_fetch::docker::manifest::digest_hex(&l.digest, "fuzz").is_ok());
        }
    }
    if let Ok(d) = skiff_fetch::docker::manifest::pick_platform(data, "amd64", "fuzz") {
        assert!(skiff_fetch::docker::manifest::digest_hex(&d, "fuzz").is_ok());
    }
    if let Ok(layers) = skiff_fetch::docker::signatures::signed_layers(data) {
        for (digest, _) in &layers {
            assert!(skiff_fetch::docker::manifest::digest_hex(digest, "fuzz").is_ok());
        }
    }
});
