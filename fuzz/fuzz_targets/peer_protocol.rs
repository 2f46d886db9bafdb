//! What peers send and users type for peers: a `Range` header (as `skiff
//! serve` reads it), `--allow` ranges, peer URLs, and the JSON a fetch reads
//! from peers (offers, piece lists, checked as a fetch checks them).
#![no_main]
use skiff_share::protocol::{Offers, PieceList};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let size = data.len() as u64 * 7919;
        if let skiff_share::server::range::Wanted::Part(r) =
            skiff_share::server::range::wanted(Some(text), size)
        {
            assert!(r.start < r.end && r.end <= size, "{r:?} of {size}");
        }
        if let Ok(cidr) = text.parse::<skiff_share::server::Cidr>() {
            let _ = cidr.contains("10.0.0.1".parse().unwrap_or(std::net::Ipv4Addr::LOCALHOST.into()));
        }
        if let Ok(peer) = skiff_fetch::peers::PeerUrl::parse(text) {
            assert!(!peer.join("/x").contains(['?', '#', '@', ' ']), "{peer}");
        }
    }
    if let Ok(list) = serde_json::from_slice::<PieceList>(data)
        && list.check(list.size).is_ok()
    {
        for i in 0..list.sha256.len().min(1024) {
            let r = list.range(i);
            assert!(r.start < r.end && r.end <= list.size);
            let pieces = PieceList::pieces_of(list.piece_size, &r);
            assert_eq!(pieces, i..i + 1);
        }
        let _ = skiff_share::protocol::swarm_key(&list);
    }
    let _ = serde_json::from_slice::<Offers>(data);
});
