//! The metadata service: an HTTP/1 connection from a pod (raw bytes;
//! `TOKEN` stands for a registered pod's token), or, after a first byte
//! 0xff, a registration line on its Unix socket.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((0xff, line)) => {
            let _ = skiff_metadata::server::fuzzing::registration(line);
        }
        _ => {
            let _ = skiff_metadata::server::fuzzing::http(data);
        }
    }
});
