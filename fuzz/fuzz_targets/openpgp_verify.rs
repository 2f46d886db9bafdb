//! Signatures as fetched beside an image, checked against trusted keys
//! (fixtures/): after a first byte 0, an OpenPGP detached signature over a
//! fixed file (appc); 1, a simple-signing signature (containers' lookaside);
//! 2, a cosign payload (2-byte big-endian length, then the payload) and its
//! signature.
#![no_main]
use std::sync::OnceLock;

use skiff_trust::cosign::{Expected, Signature};
use skiff_trust::{Scope, TrustedKey};

struct Fixture {
    _dir: tempfile::TempDir,
    data: std::path::PathBuf,
    keys: Vec<TrustedKey>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary dir");
        let data = dir.path().join("data");
        std::fs::write(&data, b"skiff fuzz data\n").expect("the signed file");
        let mut keys = Vec::new();
        for bytes in [
            &include_bytes!("../fixtures/openpgp-signer.asc")[..],
            &include_bytes!("../fixtures/cosign-signer.pub")[..],
        ] {
            for key in skiff_trust::keystore::parse_any(bytes).expect("fixture keys") {
                keys.push(TrustedKey {
                    fingerprint: key.fingerprint(),
                    scope: Scope::Root,
                    path: dir.path().join("key"),
                    vendor: false,
                    user_ids: key.user_ids(),
                    key,
                });
            }
        }
        Fixture {
            _dir: dir,
            data,
            keys,
        }
    })
}

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    let f = fixture();
    let digests = [format!("sha256:{}", "a".repeat(64))];
    let expected = Expected {
        repository: "example.com/app",
        digests: &digests,
        tag: None,
    };
    match input.split_first() {
        Some((0, sig)) => {
            let _ = skiff_trust::verify::verify_detached("example.com/app", &f.keys, sig, &f.data);
        }
        Some((1, sig)) => {
            let _ = skiff_trust::simple_signing::verify(&f.keys, &[sig.to_vec()], &expected);
        }
        Some((2, rest)) if rest.len() >= 2 => {
            let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
            let rest = &rest[2..];
            let (payload, signature) = rest.split_at(len.min(rest.len()));
            let _ = skiff_trust::cosign::verify(
                &f.keys,
                &[Signature { payload, signature }],
                &expected,
            );
        }
        _ => {}
    }
});
