//! Untrusted prekey bundles into `Bundle::decode` (format and signatures,
//! `ratchet/src/bundle.rs`).
//!
//! The genuine bundles (`securemesh_fuzz::ratchet::genuine_bundles`, built
//! once and also the seeds) are Bob's, from a deterministic pool (before and
//! after a signed-prekey rotation, with and without a one-time prekey, one
//! with a KEM prekey), one of Alice's (a KEM prekey with an empty key), and
//! Bob's two hybrid bundles (bundle version 3: his ML-DSA-65 key and
//! Ed25519 + ML-DSA-65 hybrid signatures, with and without a KEM prekey).
//!
//! Properties checked:
//! - nothing panics; an empty input is `Malformed`, a first byte other than
//!   `BUNDLE_VERSION` and `BUNDLE_VERSION_HYBRID` is `UnknownVersion`;
//! - on `Ok`: the input is at most `MAX_BUNDLE_LEN` bytes (classical) or
//!   `MAX_HYBRID_BUNDLE_LEN` (hybrid, which then has its ML-DSA section and
//!   a classical one has none), `encode`
//!   reproduces it byte for byte (and a buffer one byte short gives
//!   `BufferTooSmall` with its length), decoding again gives the same
//!   bundle;
//! - on `Ok`, everything signed is genuine: the identity (its binding
//!   signature), the signed prekey (id, key, signature) and the KEM prekey
//!   if present (id, algorithm, key, signature) are those of a genuine
//!   bundle of that identity. Forging Ed25519 (strict verification, no
//!   malleability) is infeasible, so mutations only pass when they touch
//!   what is not signed: the one-time prekey (unsigned in X3DH) and the
//!   presence of the one-time and KEM slots; a hybrid bundle's ML-DSA key
//!   and hybrid signatures are those of a genuine hybrid bundle (forging
//!   either half of a hybrid signature is infeasible);
//! - PQXDH from any decoded bundle with a KEM prekey never panics: it
//!   starts a session only for a PQXDH algorithm (ML-KEM-768/1024) and a
//!   key of its length, else `UnsupportedKem` or `Malformed` (the genuine
//!   PQXDH bundles of Bob's PQXDH pool always start one).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use securemesh_core::testing::TestRng;
use securemesh_fuzz::ratchet::{FuzzPqSession, NOW, alice, genuine_bundles};
use securemesh_ratchet::{
    BUNDLE_VERSION, BUNDLE_VERSION_HYBRID, Bundle, Error, KemAlgorithm, MAX_BUNDLE_LEN, MAX_HYBRID_BUNDLE_LEN,
    SessionConfig,
};

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
        Some(&v) if v != BUNDLE_VERSION && v != BUNDLE_VERSION_HYBRID => {
            assert_eq!(decoded, Err(Error::UnknownVersion))
        }
        Some(_) => {}
    }
    let Ok(b) = decoded else { return };

    let hybrid = data[0] == BUNDLE_VERSION_HYBRID;
    assert_eq!(b.pq().is_some(), hybrid, "the ML-DSA section goes with the version byte");
    assert!(data.len() <= if hybrid { MAX_HYBRID_BUNDLE_LEN } else { MAX_BUNDLE_LEN });
    let mut buf = vec![0u8; MAX_HYBRID_BUNDLE_LEN];
    let n = b.encode(&mut buf).expect("a decoded bundle encodes");
    assert_eq!(&buf[..n], data, "bundle does not re-encode to its input");
    let mut short = vec![0u8; data.len() - 1];
    assert_eq!(b.encode(&mut short), Err(Error::BufferTooSmall { needed: data.len() }));
    assert_eq!(Bundle::decode(&buf[..n]), Ok(b));

    // Everything signed comes from a genuine bundle of the same identity.
    let same: Vec<&Bundle<'_>> = genuine().iter().filter(|g| g.identity() == b.identity()).collect();
    assert!(!same.is_empty(), "a bundle with a forged identity decoded");
    assert!(same.iter().any(|g| g.signed() == b.signed()), "a bundle with a forged signed prekey decoded");
    if let Some(pq) = b.pq() {
        let genuine: Vec<_> = same.iter().filter_map(|g| g.pq()).filter(|g| g.public() == pq.public()).collect();
        assert!(!genuine.is_empty(), "a hybrid bundle with a forged ML-DSA key decoded");
        let any = genuine.iter().any(|g| g.spk_sig() == pq.spk_sig());
        assert!(any, "a forged hybrid signed-prekey signature decoded");
        if let Some(sig) = pq.kem_sig() {
            let any = same.iter().filter_map(|g| g.pq()).any(|g| g.kem_sig() == Some(sig));
            assert!(any, "a forged hybrid KEM-prekey signature decoded");
        }
    }
    if let Some(kem) = b.kem() {
        assert!(same.iter().any(|g| g.kem() == Some(kem)), "a bundle with a forged KEM prekey decoded");
        let started =
            FuzzPqSession::initiate_pq(alice(), &b, SessionConfig::default(), &mut TestRng::new(9), NOW);
        match (KemAlgorithm::from_code(kem.alg), started) {
            (Some(alg), Ok(s)) => {
                assert_eq!(kem.public.len(), alg.public_len());
                assert!(s.awaiting_reply());
            }
            // The one-time prekey is not signed: one of small order is refused.
            (Some(_), Err(Error::NonContributory)) => assert!(b.one_time().is_some()),
            (Some(alg), Err(e)) => {
                assert_ne!(kem.public.len(), alg.public_len(), "a genuine ML-KEM prekey refused: {e:?}");
                assert_eq!(e, Error::Malformed);
            }
            (None, r) => assert_eq!(r.err(), Some(Error::UnsupportedKem)),
        }
    }
});
