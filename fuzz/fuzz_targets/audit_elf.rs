//! Build information in an image's ELF files: Go module info and
//! cargo-auditable's crate list.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = skiff_audit::gobuild::modules(data);
    let _ = skiff_audit::gobuild::crates(data);
});
