//! An image's rpm database (SQLite, as rpm 4.16+ writes it).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let db = dir.path().join("rpmdb.sqlite");
    if std::fs::write(&db, data).is_ok() {
        let _ = skiff_audit::rpm::parse_rpmdb(&db);
    }
});
