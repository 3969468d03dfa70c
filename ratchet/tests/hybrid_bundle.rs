//! Hybrid bundles (feature `ml-dsa`, spec §3.1): an ML-DSA-65 public key
//! and Ed25519 + ML-DSA-65 hybrid signatures of the signed prekey and the
//! KEM prekey. Both halves must verify; the section is bounded and typed;
//! a stripped section is a classical bundle that a caller who pinned the
//! ML-DSA key refuses; sessions start from a hybrid bundle as from any.
#![cfg(feature = "ml-dsa")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use proptest::prelude::*;
use securemesh_core::crypto::{HybridEd25519MlDsa65, HybridPublicKey, HybridSignature};
use securemesh_core::testing::TestRng;
use securemesh_core::{Instant, UnixTime};
use securemesh_ratchet::{
    BUNDLE_VERSION, BUNDLE_VERSION_HYBRID, Bundle, BundlePqStorage, Error, HYBRID_BUNDLE_CONTEXT,
    HYBRID_SIG_LEN, Identity, KemPrekey, MAX_BUNDLE_LEN, MAX_HYBRID_BUNDLE_LEN, PQ_PUBLIC_LEN, PqIdentity,
    PrekeyConfig, PrekeyPool, Session, SessionConfig,
};

const T0: UnixTime = UnixTime(1_700_000_000);

struct Bob {
    id: Identity,
    pq: PqIdentity,
    pool: PrekeyPool<4>,
}

fn bob(seed: u64) -> Bob {
    let mut rng = TestRng::new(seed);
    let id = Identity::generate(&mut rng);
    let pq = PqIdentity::generate(&id, &mut rng);
    let pool = PrekeyPool::new(&id, &mut rng, T0, PrekeyConfig::default());
    Bob { id, pq, pool }
}

/// A KEM prekey key of 1184 bytes (the KEM slot carries any key; the
/// signatures are what is tested here).
const KEM_PUB: [u8; 1184] = [0x42; 1184];

fn encode(b: &Bundle<'_>) -> Vec<u8> {
    let mut wire = vec![0u8; MAX_HYBRID_BUNDLE_LEN];
    let n = b.encode(&mut wire).unwrap();
    wire.truncate(n);
    wire
}

/// Bob's hybrid bundle, with or without a one-time prekey and a KEM prekey.
fn hybrid(b: &Bob, opk: bool, kem: bool, rng_seed: u64) -> Vec<u8> {
    let mut bundle = b.pool.bundle(if opk { b.pool.one_time_ids().next() } else { None });
    if kem {
        bundle = bundle.with_kem(KemPrekey::sign(&b.id, 77, 1, &KEM_PUB).unwrap()).unwrap();
    }
    let mut storage = BundlePqStorage::new();
    encode(&bundle.sign_pq(&b.pq, &mut TestRng::new(rng_seed), &mut storage).unwrap())
}

fn classical_len(opk: bool, kem: bool) -> usize {
    231 + if opk { 36 } else { 0 } + if kem { 4 + 2 + 2 + KEM_PUB.len() + 64 } else { 0 }
}

#[test]
fn sizes_and_round_trip() {
    let b = bob(0x6879_6201_0001);
    for (opk, kem) in [(false, false), (true, false), (true, true)] {
        let wire = hybrid(&b, opk, kem, 0x6879_6201_0002);
        let sigs = if kem { 2 } else { 1 };
        assert_eq!(wire.len(), classical_len(opk, kem) + PQ_PUBLIC_LEN + sigs * HYBRID_SIG_LEN);
        assert_eq!(wire[0], BUNDLE_VERSION_HYBRID);
        let decoded = Bundle::decode(&wire).unwrap();
        assert_eq!(decoded.pq().unwrap().public(), b.pq.public());
        assert_eq!(decoded.pq().unwrap().kem_sig().is_some(), kem);
        assert_eq!(encode(&decoded), wire);
        decoded.require_pq(b.pq.public()).unwrap();
        // A buffer one byte short: BufferTooSmall with the length, nothing else.
        let mut short = vec![0u8; wire.len() - 1];
        assert_eq!(decoded.encode(&mut short), Err(Error::BufferTooSmall { needed: wire.len() }));
    }
    // The largest hybrid bundle fits MAX_HYBRID_BUNDLE_LEN.
    assert!(classical_len(true, true) + PQ_PUBLIC_LEN + 2 * HYBRID_SIG_LEN <= MAX_HYBRID_BUNDLE_LEN);
    assert_eq!(MAX_HYBRID_BUNDLE_LEN, MAX_BUNDLE_LEN + 1952 + 2 * 3373);
}

#[test]
fn both_halves_of_each_hybrid_signature_must_verify() {
    let b = bob(0x6879_6202_0001);
    let wire = hybrid(&b, true, true, 0x6879_6202_0002);
    let pq_at = classical_len(true, true);
    let spk_sig = pq_at + PQ_PUBLIC_LEN;
    let kem_sig = spk_sig + HYBRID_SIG_LEN;
    for (what, at) in [
        ("ML-DSA public key", pq_at + 5),
        ("spk Ed25519 half", spk_sig + 3),
        ("spk ML-DSA half", spk_sig + 64 + 100),
        ("spk ML-DSA half, last byte", kem_sig - 1),
        ("kem Ed25519 half", kem_sig + 10),
        ("kem ML-DSA half", kem_sig + 64 + 2000),
    ] {
        let mut bad = wire.clone();
        bad[at] ^= 0x01;
        assert_eq!(Bundle::decode(&bad), Err(Error::BadSignature), "{what}");
    }
    // Another identity's ML-DSA key with its own valid ML-DSA halves: the
    // Ed25519 halves commit to the hybrid key, so the swap is refused.
    let mut rng = TestRng::new(0x6879_6202_0003);
    let mallory_pq = PqIdentity::from_seed(&b.id, &securemesh_core::crypto::MlDsa65::generate(&mut rng));
    let mut storage = BundlePqStorage::new();
    let honest = Bundle::decode(&wire).unwrap();
    let mallory = encode(
        &b.pool
            .bundle(b.pool.one_time_ids().next())
            .with_kem(*honest.kem().unwrap())
            .unwrap()
            .sign_pq(&mallory_pq, &mut rng, &mut storage)
            .unwrap(),
    );
    let mut swapped = wire.clone();
    swapped[pq_at..pq_at + PQ_PUBLIC_LEN].copy_from_slice(&mallory[pq_at..pq_at + PQ_PUBLIC_LEN]);
    for at in [spk_sig + 64, kem_sig + 64] {
        swapped[at..at + 3309].copy_from_slice(&mallory[at..at + 3309]);
    }
    assert_eq!(Bundle::decode(&swapped), Err(Error::BadSignature));
    assert_eq!(Bundle::decode(&mallory).unwrap().require_pq(b.pq.public()), Err(Error::WrongIdentity));
}

#[test]
fn the_section_is_bounded_and_typed() {
    let b = bob(0x6879_6203_0001);
    let wire = hybrid(&b, false, true, 0x6879_6203_0002);
    // Truncated anywhere in the section (or the whole section missing) is Malformed.
    for len in [
        classical_len(false, true),
        classical_len(false, true) + 1,
        wire.len() - HYBRID_SIG_LEN,
        wire.len() - 1,
    ] {
        assert_eq!(Bundle::decode(&wire[..len]), Err(Error::Malformed), "length {len}");
    }
    let mut long = wire.clone();
    long.push(0);
    assert_eq!(Bundle::decode(&long), Err(Error::Malformed));
    // A version-3 bundle without a KEM prekey must not carry a KEM signature.
    let no_kem = hybrid(&b, false, false, 0x6879_6203_0003);
    let mut extra = no_kem.clone();
    extra.extend_from_slice(&wire[wire.len() - HYBRID_SIG_LEN..]);
    assert_eq!(Bundle::decode(&extra), Err(Error::Malformed));
    // Versions other than 1 and 3 are unknown (2 included: the published
    // vectors refuse it).
    for v in [0, 2, 4, 0xff] {
        let mut other = wire.clone();
        other[0] = v;
        assert_eq!(Bundle::decode(&other), Err(Error::UnknownVersion), "version {v}");
    }
}

#[test]
fn a_stripped_section_is_a_classical_bundle_the_pinned_check_refuses() {
    let b = bob(0x6879_6204_0001);
    let wire = hybrid(&b, true, true, 0x6879_6204_0002);
    let mut stripped = wire[..classical_len(true, true)].to_vec();
    stripped[0] = BUNDLE_VERSION;
    let classical = Bundle::decode(&stripped).unwrap();
    assert!(classical.pq().is_none());
    assert_eq!(classical.require_pq(b.pq.public()), Err(Error::Downgrade));
    // The hybrid halves are not the classical signatures (non-separable):
    // the Ed25519 half of spk_pq_sig is no valid spk_sig.
    let at = classical_len(true, true) + PQ_PUBLIC_LEN;
    let mut forged = stripped.clone();
    forged[165..229].copy_from_slice(&wire[at..at + 64]);
    assert_eq!(Bundle::decode(&forged), Err(Error::BadSignature));
}

#[test]
fn sign_pq_takes_only_the_bundle_identitys_key_and_then_no_new_kem() {
    let b = bob(0x6879_6205_0001);
    let carol = bob(0x6879_6205_0002);
    let mut rng = TestRng::new(0x6879_6205_0003);
    let mut storage = BundlePqStorage::new();
    assert_eq!(
        b.pool.bundle(None).sign_pq(&carol.pq, &mut rng, &mut storage).err(),
        Some(Error::WrongIdentity)
    );
    let hybrid = b.pool.bundle(None).sign_pq(&b.pq, &mut rng, &mut storage).unwrap();
    let kem = KemPrekey::sign(&b.id, 5, 1, &KEM_PUB).unwrap();
    assert_eq!(hybrid.with_kem(kem).err(), Some(Error::Malformed));
}

#[test]
fn a_session_starts_from_a_hybrid_bundle() {
    let mut b = bob(0x6879_6206_0001);
    let mut rng = TestRng::new(0x6879_6206_0002);
    let alice = Identity::generate(&mut rng);
    let wire = hybrid(&b, true, false, 0x6879_6206_0003);
    let bundle = Bundle::decode(&wire).unwrap();
    bundle.require_pq(b.pq.public()).unwrap();
    let mut a: Session =
        Session::initiate(&alice, &bundle, SessionConfig::default(), &mut rng, Instant(0)).unwrap();
    let mut msg = vec![0u8; 1024];
    let n = a.encrypt(b"hello", &mut msg, &mut rng, Instant(0)).unwrap();
    let mut out = vec![0u8; 1024];
    let (_s, len) = Session::<128, 128>::respond(
        &b.id,
        &mut b.pool,
        &msg[..n],
        &mut out,
        SessionConfig::default(),
        Instant(0),
    )
    .unwrap();
    assert_eq!(&out[..len], b"hello");
}

#[test]
fn the_hybrid_signature_is_the_core_one_over_the_documented_bytes() {
    let b = bob(0x6879_6207_0001);
    let wire = hybrid(&b, false, false, 0x6879_6207_0002);
    let bundle = Bundle::decode(&wire).unwrap();
    let id = bundle.identity();
    let spk = bundle.signed();
    let mut msg = Vec::new();
    msg.extend_from_slice(id.dh_public());
    msg.extend_from_slice(b"securemesh-spk-v1");
    msg.extend_from_slice(&spk.id.to_be_bytes());
    msg.extend_from_slice(&spk.public);
    let key = HybridPublicKey { ed25519: *id.sign_public(), ml_dsa: *b.pq.public() };
    let sig = HybridSignature::from_slice(bundle.pq().unwrap().spk_sig()).unwrap();
    assert_eq!(HybridEd25519MlDsa65::verify(&key, HYBRID_BUNDLE_CONTEXT, &msg, &sig), Ok(()));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Any single flipped bit of a hybrid bundle: either it is refused, or
    /// it touched only what is not signed (the one-time prekey), and
    /// everything signed and the ML-DSA section are the genuine ones.
    #[test]
    fn flipped_hybrid_bundles_are_refused_or_only_unsigned_changed(pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        static WIRE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        let wire = WIRE.get_or_init(|| hybrid(&bob(0x6879_6208_0001), true, true, 0x6879_6208_0002));
        let genuine = Bundle::decode(wire).unwrap();
        let mut bad = wire.clone();
        let at = pos.index(bad.len());
        bad[at] ^= 1 << bit;
        match Bundle::decode(&bad) {
            Err(e) => prop_assert!(matches!(e, Error::BadSignature | Error::Malformed | Error::UnknownVersion), "{e:?}"),
            Ok(d) => {
                prop_assert!((230..266).contains(&at), "byte {at} changed and still decoded");
                prop_assert_eq!(d.signed(), genuine.signed());
                prop_assert_eq!(d.kem(), genuine.kem());
                prop_assert_eq!(d.pq(), genuine.pq());
            }
        }
    }

    /// Every truncation of a hybrid bundle is refused.
    #[test]
    fn truncated_hybrid_bundles_are_refused(pos in any::<prop::sample::Index>()) {
        static WIRE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        let wire = WIRE.get_or_init(|| hybrid(&bob(0x6879_6209_0001), true, true, 0x6879_6209_0002));
        let len = pos.index(wire.len());
        prop_assert!(Bundle::decode(&wire[..len]).is_err());
    }
}
