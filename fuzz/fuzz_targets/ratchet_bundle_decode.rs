//! Untrusted prekey bundles into `Bundle::decode` (format and signatures,
//! `ratchet/src/bundle.rs`).
//!
//! The genuine bundles (`securemesh_fuzz::ratchet::genuine_bundles`, built
//! once and also the seeds) are Bob's, from a deterministic pool (before and
//! after a signed-prekey rotation, with and without a one-time prekey, one
//! with a KEM prekey) and one of Alice's (a KEM prekey with an empty key).
//!
//! Properties checked:
//! - nothing panics; an empty input is `Malformed`, a first byte other than
//!   `BUNDLE_VERSION` is `UnknownVersion`;
//! - on `Ok`: the input is at most `MAX_BUNDLE_LEN` bytes, `encode`
//!   reproduces it byte for byte (and a buffer one byte short gives
//!   `BufferTooSmall` with its length), decoding again gives the same
//!   bundle;
//! - on `Ok`, everything signed is genuine: the identity (its binding
//!   signature), the signed prekey (id, key, signature) and the KEM prekey
//!   if present (id, algorithm, key, signature) are those of a genuine
//!   bundle of that identity. Forging Ed25519 (strict verification, no
//!   malleability) is infeasible, so mutations only pass when they touch
//!   what is not signed: the one-time prekey (unsigned in X3DH) and the
//!   presence of the one-time and KEM slots.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use securemesh_fuzz::ratchet::genuine_bundles;
use securemesh_ratchet::{BUNDLE_VERSION, Bundle, Error, MAX_BUNDLE_LEN};

/// The genuine bundles, decoded (once).
fn genuine() -> &'static [Bundle<'static>] {
    static BYTES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    static DECODED: OnceLock<Vec<Bundle<'static>>> = OnceLock::new();
    let bytes = BYTES.get_or_init(|| genuine_bundles().into_iter().map(|(_, b)| b).collect());
    DECODED.get_or_init(|| bytes.iter().map(|b| Bundle::decode(b).expect("genuine bundle decodes")).collect())
}

fuzz_target!(|data: &[u8]| {
    let decoded = Bundle::decode(data);
    match data.first() {
        None => assert_eq!(decoded, Err(Error::Malformed)),
        Some(&v) if v != BUNDLE_VERSION => assert_eq!(decoded, Err(Error::UnknownVersion)),
        Some(_) => {}
    }
    let Ok(b) = decoded else { return };

    assert!(data.len() <= MAX_BUNDLE_LEN);
    let mut buf = vec![0u8; MAX_BUNDLE_LEN];
    let n = b.encode(&mut buf).expect("a decoded bundle encodes");
    assert_eq!(&buf[..n], data, "bundle does not re-encode to its input");
    let mut short = vec![0u8; data.len() - 1];
    assert_eq!(b.encode(&mut short), Err(Error::BufferTooSmall { needed: data.len() }));
    assert_eq!(Bundle::decode(&buf[..n]), Ok(b));

    // Everything signed comes from a genuine bundle of the same identity.
    let same: Vec<&Bundle<'_>> = genuine().iter().filter(|g| g.identity() == b.identity()).collect();
    assert!(!same.is_empty(), "a bundle with a forged identity decoded");
    assert!(same.iter().any(|g| g.signed() == b.signed()), "a bundle with a forged signed prekey decoded");
    if let Some(kem) = b.kem() {
        assert!(same.iter().any(|g| g.kem() == Some(kem)), "a bundle with a forged KEM prekey decoded");
    }
});
