//! Package databases read from images: dpkg's status, apk's installed,
//! os-release.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = skiff_audit::packages::parse_dpkg(&text);
    let _ = skiff_audit::packages::parse_apk(&text);
    let _ = skiff_audit::packages::parse_os_release(&text);
});
