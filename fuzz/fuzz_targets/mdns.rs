//! Multicast DNS as skiff hears it: an answer a fetch's browse takes
//! servers from (only on-link, private, bounded), and a question a
//! server's responder decides whether to answer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = skiff_share::mdns::fuzzing::answer(data);
    let _ = skiff_share::mdns::fuzzing::query(data);
});
