//! Zero heap allocations: X3DH from a bundle, and messages in both header
//! modes with symmetric steps, DH steps and a skipped key, PQXDH (feature
//! `pq`: ML-KEM prekeys, sessions, a pool's state), hybrid bundles (feature
//! `ml-dsa`: signed, decoded, pinned), counted by an
//! instrumented global allocator. The allocator counts every thread, so
//! this binary runs without the test harness (`harness = false`): one
//! thread, and nothing else allocates meanwhile (under libtest, its main
//! thread once allocated 900 bytes during the measurement on a loaded
//! machine).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use securemesh_core::testing::TestRng;
use securemesh_core::{Instant, UnixTime};
use securemesh_ratchet::{
    Bundle, Identity, MAX_BUNDLE_LEN, PrekeyConfig, PrekeyPool, Session, SessionConfig,
};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use std::alloc::System;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn run(he: bool) {
    let mut rng = TestRng::new(11);
    let now = Instant(0);
    let cfg = SessionConfig { header_encryption: he, ..SessionConfig::default() };
    let (mut wire, mut out, mut late) = ([0u8; 1024], [0u8; 1024], [0u8; 1024]);
    let payload = [0x42u8; 256];

    let region = Region::new(GLOBAL);
    let alice = Identity::generate(&mut rng);
    let bob = Identity::generate(&mut rng);
    let mut pool: PrekeyPool<8> =
        PrekeyPool::new(&bob, &mut rng, UnixTime(1_700_000_000), PrekeyConfig::default());
    let mut published = [0u8; MAX_BUNDLE_LEN];
    let n = pool.bundle(pool.one_time_ids().next()).encode(&mut published).unwrap();
    let bundle = Bundle::decode(&published[..n]).unwrap();
    let mut a: Session = Session::initiate(&alice, &bundle, cfg, &mut rng, now).unwrap();
    let m = a.encrypt(&payload, &mut wire, &mut rng, now).unwrap();
    let (mut b, _): (Session, usize) =
        Session::respond(&bob, &mut pool, &wire[..m], &mut out, cfg, now).unwrap();
    for round in 0..4 {
        // Bob answers (DH step), Alice sends a burst with one late message.
        for _ in 0..3 {
            let m = b.encrypt(&payload, &mut wire, &mut rng, now).unwrap();
            a.decrypt(&wire[..m], &mut out, now).unwrap();
        }
        let held = a.encrypt(&payload, &mut late, &mut rng, now).unwrap();
        for _ in 0..3 {
            let m = a.encrypt(&payload, &mut wire, &mut rng, now).unwrap();
            b.decrypt(&wire[..m], &mut out, now).unwrap();
        }
        assert_eq!(b.decrypt(&late[..held], &mut out, now).unwrap(), payload.len(), "round {round}");
    }
    let stats = region.change();
    assert_eq!(stats.allocations, 0, "{stats:?}");
    assert_eq!(stats.reallocations, 0, "{stats:?}");
}

/// PQXDH: a pool with ML-KEM prekeys, its bundle, Alice's PQXDH session,
/// Bob's answer, a repeated initial message and a restored pool.
#[cfg(feature = "pq")]
fn run_pq(alg: securemesh_ratchet::KemAlgorithm) {
    use securemesh_core::envelope::Persist;
    use securemesh_ratchet::{MAX_KEM_PUBLIC_LEN, PqxdhSession};
    let mut rng = TestRng::new(12);
    let now = Instant(0);
    let cfg = SessionConfig::default();
    let (mut wire, mut out) = ([0u8; 2048], [0u8; 2048]);
    let mut kem = [0u8; MAX_KEM_PUBLIC_LEN];
    let mut published = [0u8; MAX_BUNDLE_LEN];
    let mut state = [0u8; PrekeyPool::<4, 2>::MAX_ENCODED_LEN];

    let region = Region::new(GLOBAL);
    let alice = Identity::generate(&mut rng);
    let bob = Identity::generate(&mut rng);
    let mut pool: PrekeyPool<4, 2> =
        PrekeyPool::new_pq(&bob, &mut rng, UnixTime(1_700_000_000), PrekeyConfig::default(), alg).unwrap();
    let n = pool
        .bundle_pq(pool.one_time_ids().next(), pool.kem_one_time_ids().next(), &mut kem)
        .unwrap()
        .encode(&mut published)
        .unwrap();
    let bundle = Bundle::decode(&published[..n]).unwrap();
    let mut a = PqxdhSession::initiate_pq(&alice, &bundle, cfg, &mut rng, now).unwrap();
    let m = a.encrypt(b"first", &mut wire, &mut rng, now).unwrap();
    let (mut b, _): (Session, usize) =
        Session::respond(&bob, &mut pool, &wire[..m], &mut out, cfg, now).unwrap();
    let m = a.encrypt(b"second", &mut wire, &mut rng, now).unwrap();
    b.decrypt(&wire[..m], &mut out, now).unwrap();
    let m = b.encrypt(b"answer", &mut wire, &mut rng, now).unwrap();
    a.decrypt(&wire[..m], &mut out, now).unwrap();
    let k = pool.encode_state(&mut state).unwrap();
    let _restored = PrekeyPool::<4, 2>::decode_state(&state[..k]).unwrap();
    let stats = region.change();
    assert_eq!(stats.allocations, 0, "{stats:?}");
    assert_eq!(stats.reallocations, 0, "{stats:?}");
}

/// Hybrid identities (feature `ml-dsa`): an ML-DSA-65 key, a hybrid
/// bundle signed (hedged ML-DSA), encoded, decoded (both halves of both
/// hybrid signatures verified) and checked against the pinned key.
#[cfg(feature = "ml-dsa")]
fn run_hybrid() {
    use securemesh_ratchet::{BundlePqStorage, KemPrekey, MAX_HYBRID_BUNDLE_LEN, PqIdentity};
    let mut rng = TestRng::new(0x6879_6272_6101);
    let kem_pub = [0x42u8; 1184];
    let mut published = [0u8; MAX_HYBRID_BUNDLE_LEN];
    let mut storage = BundlePqStorage::new();

    let region = Region::new(GLOBAL);
    let bob = Identity::generate(&mut rng);
    let bob_pq = PqIdentity::generate(&bob, &mut rng);
    let pool: PrekeyPool<4> =
        PrekeyPool::new(&bob, &mut rng, UnixTime(1_700_000_000), PrekeyConfig::default());
    let kem = KemPrekey::sign(&bob, 9, 1, &kem_pub).unwrap();
    let hybrid = pool.bundle(pool.one_time_ids().next()).with_kem(kem).unwrap();
    let n = hybrid.sign_pq(&bob_pq, &mut rng, &mut storage).unwrap().encode(&mut published).unwrap();
    let decoded = Bundle::decode(&published[..n]).unwrap();
    decoded.require_pq(bob_pq.public()).unwrap();
    let stats = region.change();
    assert_eq!(stats.allocations, 0, "{stats:?}");
    assert_eq!(stats.reallocations, 0, "{stats:?}");
}

fn main() {
    run(false);
    run(true);
    #[cfg(feature = "pq")]
    for alg in [securemesh_ratchet::KemAlgorithm::MlKem768, securemesh_ratchet::KemAlgorithm::MlKem1024] {
        run_pq(alg);
    }
    #[cfg(feature = "ml-dsa")]
    run_hybrid();
    println!(
        "no_alloc: sessions allocate nothing (clear and encrypted headers, PQXDH with the feature pq, hybrid bundles with the feature ml-dsa)"
    );
}
