//! The appc JSON reader (duplicate keys, depth, numbers, escapes).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = skiff_spec::json::parse(data);
});
