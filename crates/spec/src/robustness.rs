//! Hostile-input tests: random bytes and mutated real inputs fed to the JSON
//! reader, the manifest decoders and the ACI reader must give an error or a
//! value, never a panic, a hang or unbounded memory.

use std::io::Write;

use proptest::prelude::*;

use crate::aci::{read_manifest_bytes, validate_aci};
use crate::manifest::{parse_image_manifest, parse_manifest, parse_pod_manifest};

const MANIFEST: &str = r#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/a",
 "labels":[{"name":"os","value":"linux"},{"name":"arch","value":"amd64"}],
 "app":{"exec":["/bin/sh"],"user":"0","group":"0","ports":[{"name":"p","port":80}],
 "isolators":[{"name":"resource/cpu","value":{"limit":"500m"}}]}}"#;

/// A small valid ACI (manifest, rootfs/, one file), plain tar.
fn sample_tar() -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8], kind: tar::EntryType| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o755);
        builder.append_data(&mut h, name, data).unwrap();
    };
    add("manifest", MANIFEST.as_bytes(), tar::EntryType::Regular);
    add("rootfs", b"", tar::EntryType::Directory);
    add("rootfs/hello", b"hello world", tar::EntryType::Regular);
    builder.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

#[test]
fn the_sample_is_valid() {
    let info = validate_aci(sample_tar().as_slice()).unwrap();
    assert_eq!(info.manifest.name.as_str(), "example.com/a");
    assert!(validate_aci(gzip(&sample_tar()).as_slice()).is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = parse_manifest(&bytes);
        let _ = parse_image_manifest(&bytes);
        let _ = parse_pod_manifest(&bytes);
        let _ = validate_aci(bytes.as_slice());
        let _ = read_manifest_bytes(bytes.as_slice());
    }

    #[test]
    fn mutated_manifests_never_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = MANIFEST.as_bytes().to_vec();
        for (at, byte) in edits {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        let _ = parse_manifest(&bytes);
        let _ = parse_manifest(&bytes[..cut.index(bytes.len() + 1)]);
    }

    #[test]
    fn mutated_archives_never_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
        compress in any::<bool>(),
    ) {
        let tar = sample_tar();
        let mut bytes = if compress { gzip(&tar) } else { tar };
        for (at, byte) in edits {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        let _ = validate_aci(bytes.as_slice());
        let _ = read_manifest_bytes(bytes.as_slice());
        let truncated = &bytes[..cut.index(bytes.len() + 1)];
        let _ = validate_aci(truncated);
    }
}

#[test]
fn truncated_archives_are_refused() {
    let gz = gzip(&sample_tar());
    for len in [0, 1, 10, gz.len() / 2, gz.len() - 1] {
        assert!(validate_aci(&gz[..len]).is_err(), "accepted {len} bytes");
    }
}

#[test]
fn a_decompression_bomb_is_read_as_a_stream() {
    // 64 MiB of zeros compress to ~64 KiB: reading must stream (the tar ends
    // at the first zero block) rather than inflate everything into memory.
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..64 {
        enc.write_all(&zeros).unwrap();
    }
    let bomb = enc.finish().unwrap();
    assert!(bomb.len() < 1 << 20);
    assert!(validate_aci(bomb.as_slice()).is_err());
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    let deep = format!(
        r#"{{"acKind":"ImageManifest","acVersion":"0.8.11","name":"a","x":{}{}}}"#,
        "[".repeat(5000),
        "]".repeat(5000)
    );
    // Runs on a test thread with a 2 MiB stack.
    assert!(parse_manifest(deep.as_bytes()).is_err());
}
