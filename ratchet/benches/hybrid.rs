//! Hybrid identities (feature `ml-dsa`): Ed25519 alone against the hybrid
//! Ed25519 and ML-DSA-65 signature in the same run, and the bundle
//! signature checks with and without the ML-DSA section.
//! `cargo bench -p securemesh-ratchet --features ml-dsa --bench hybrid`.
//!
//! Groups: `sign/{ed25519,hybrid}` and `verify/{ed25519,hybrid}` (one
//! signature of the 85 bytes a bundle's hybrid signed-prekey signature
//! covers; the hybrid signing key is loaded outside the measurement, as the
//! Ed25519 key is, and the ML-DSA half, hedged, expands its seed inside),
//! `bundle-verify/{classical,hybrid}` and `bundle-verify/{classical,hybrid}-kem`
//! (`Bundle::decode` of Bob's bundle without / with a KEM prekey: identity
//! binding and prekey signatures, plus the hybrid ones). The encoded sizes
//! are printed once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use criterion::{Criterion, criterion_group, criterion_main};
use securemesh_core::crypto::{Ed25519, HybridEd25519MlDsa65, HybridSigningKey, Signature};
use securemesh_core::testing::TestRng;
use securemesh_core::{Secret, UnixTime};
use securemesh_ratchet::{
    Bundle, BundlePqStorage, HYBRID_BUNDLE_CONTEXT, Identity, KemPrekey, MAX_HYBRID_BUNDLE_LEN, PqIdentity,
    PrekeyConfig, PrekeyPool,
};
use std::hint::black_box;

fn signatures(c: &mut Criterion) {
    let msg = [0x5au8; 85];
    let ed = Ed25519::signing_key(&Secret::new([1; 32]));
    let ed_pub = Ed25519::verifying_key(&ed);
    let hybrid = HybridSigningKey::new(&Secret::new([1; 32]), &Secret::new([2; 32]));
    let hybrid_pub = *hybrid.public();
    let mut rng = TestRng::new(0x6265_6e63_6801);
    let ed_sig = Ed25519::sign(&ed, &msg);
    let hybrid_sig = HybridEd25519MlDsa65::sign(&hybrid, HYBRID_BUNDLE_CONTEXT, &msg, &mut rng).unwrap();

    let mut g = c.benchmark_group("sign");
    g.bench_function("ed25519", |b| b.iter(|| Ed25519::sign(&ed, black_box(&msg))));
    g.bench_function("hybrid", |b| {
        b.iter(|| {
            HybridEd25519MlDsa65::sign(&hybrid, HYBRID_BUNDLE_CONTEXT, black_box(&msg), &mut rng).unwrap()
        })
    });
    g.finish();
    let mut g = c.benchmark_group("verify");
    g.bench_function("ed25519", |b| b.iter(|| Ed25519::verify(&ed_pub, black_box(&msg), &ed_sig).unwrap()));
    g.bench_function("hybrid", |b| {
        b.iter(|| {
            HybridEd25519MlDsa65::verify(&hybrid_pub, HYBRID_BUNDLE_CONTEXT, black_box(&msg), &hybrid_sig)
                .unwrap()
        })
    });
    g.finish();
}

fn encode(b: &Bundle<'_>) -> Vec<u8> {
    let mut out = vec![0u8; MAX_HYBRID_BUNDLE_LEN];
    let n = b.encode(&mut out).unwrap();
    out.truncate(n);
    out
}

fn bundles(c: &mut Criterion) {
    let mut rng = TestRng::new(0x6265_6e63_6802);
    let bob = Identity::generate(&mut rng);
    let bob_pq = PqIdentity::generate(&bob, &mut rng);
    let pool: PrekeyPool<4> =
        PrekeyPool::new(&bob, &mut rng, UnixTime(1_700_000_000), PrekeyConfig::default());
    let kem_pub = [0x42u8; 1184];
    let kem = KemPrekey::sign(&bob, 7, 1, &kem_pub).unwrap();
    let opk = pool.one_time_ids().next();
    let classical = encode(&pool.bundle(opk));
    let classical_kem = encode(&pool.bundle(opk).with_kem(kem).unwrap());
    let (mut s1, mut s2) = (BundlePqStorage::new(), BundlePqStorage::new());
    let hybrid = encode(&pool.bundle(opk).sign_pq(&bob_pq, &mut rng, &mut s1).unwrap());
    let hybrid_kem =
        encode(&pool.bundle(opk).with_kem(kem).unwrap().sign_pq(&bob_pq, &mut rng, &mut s2).unwrap());
    println!(
        "sizes: bundle classical={} hybrid={} | with a KEM prekey: classical={} hybrid={} | public key ed25519=32 hybrid={} | signature ed25519=64 hybrid={}",
        classical.len(),
        hybrid.len(),
        classical_kem.len(),
        hybrid_kem.len(),
        HybridEd25519MlDsa65::PUBLIC_KEY_LEN,
        HybridEd25519MlDsa65::SIG_LEN,
    );
    let mut g = c.benchmark_group("bundle-verify");
    for (name, wire) in [
        ("classical", &classical),
        ("hybrid", &hybrid),
        ("classical-kem", &classical_kem),
        ("hybrid-kem", &hybrid_kem),
    ] {
        g.bench_function(name, |b| b.iter(|| Bundle::decode(black_box(wire)).unwrap()));
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(2))
        .warm_up_time(std::time::Duration::from_millis(500));
    targets = signatures, bundles
}
criterion_main!(benches);
