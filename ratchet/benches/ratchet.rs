//! securemesh-ratchet against vodozemac (Olm) in the same run, with the
//! X25519 floor. `cargo bench -p securemesh-ratchet --bench ratchet`, then
//! `python3 ratchet/benches/ratios.py`.
//!
//! Groups: `setup/{securemesh,vodozemac}` (session from published keys to
//! both sides holding a session, first message included; bundle signature
//! checks excluded and measured apart as `setup/bundle-verify`),
//! `setup/securemesh-pqxdh-{768,1024}` (the same with PQXDH: Alice
//! encapsulates to a one-time ML-KEM prekey, Bob decapsulates; the KEM key
//! generation is the pool's, outside the measurement like the X25519
//! prekeys; their bundle decoding is inside, measured apart as
//! `setup/bundle-verify-pqxdh-768`),
//! `burst/{64,1024}/..` (encrypt + decrypt in one direction: symmetric
//! step), `pingpong/{64,1024}/..` (alternating directions: a DH step per
//! message), `floor/{x25519-dh,x25519-base}`, and
//! `skipped-he/{0,128}` (an in-order 64-byte message with encrypted
//! headers, encrypt + decrypt, while the receiver holds 0 or 128 skipped
//! keys of one chain: the store's header keys are tried once each, so the
//! two should cost about the same).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use securemesh_core::crypto::{Dh, X25519};
use securemesh_core::testing::TestRng;
use securemesh_core::{Secret, UnixTime};
use securemesh_ratchet::{
    Bundle, Identity, MAX_BUNDLE_LEN, PrekeyConfig, PrekeyPool, Session, SessionConfig,
};
#[cfg(feature = "pq")]
use securemesh_ratchet::{KemAlgorithm, MAX_KEM_PUBLIC_LEN, PqxdhSession};
use std::hint::black_box;
use vodozemac::olm::{Account, OlmMessage, SessionConfig as OlmConfig};

mod common;
use common::{NOW, olm_pair, ours_pair};

fn setup(c: &mut Criterion) {
    let mut g = c.benchmark_group("setup");
    let mut rng = TestRng::new(1);
    let alice = Identity::generate(&mut rng);
    let bob = Identity::generate(&mut rng);
    g.bench_function("securemesh", |b| {
        b.iter_batched(
            || {
                let pool: PrekeyPool<1> =
                    PrekeyPool::new(&bob, &mut rng, UnixTime(0), PrekeyConfig::default());
                let bundle = pool.bundle(pool.one_time_ids().next());
                (pool, bundle)
            },
            |(mut pool, bundle)| {
                let mut r = TestRng::new(2);
                let mut a: Session =
                    Session::initiate(&alice, &bundle, SessionConfig::default(), &mut r, NOW).unwrap();
                let (mut wire, mut out) = ([0u8; 512], [0u8; 512]);
                let n = a.encrypt(b"hi", &mut wire, &mut r, NOW).unwrap();
                let s: (Session, usize) =
                    Session::respond(&bob, &mut pool, &wire[..n], &mut out, SessionConfig::default(), NOW)
                        .unwrap();
                black_box((a, s))
            },
            BatchSize::SmallInput,
        )
    });
    #[cfg(feature = "pq")]
    for (name, alg) in
        [("securemesh-pqxdh-768", KemAlgorithm::MlKem768), ("securemesh-pqxdh-1024", KemAlgorithm::MlKem1024)]
    {
        g.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let pool: PrekeyPool<1, 1> =
                        PrekeyPool::new_pq(&bob, &mut rng, UnixTime(0), PrekeyConfig::default(), alg)
                            .unwrap();
                    let mut kem = vec![0u8; MAX_KEM_PUBLIC_LEN];
                    let n = {
                        let bundle = pool
                            .bundle_pq(pool.one_time_ids().next(), pool.kem_one_time_ids().next(), &mut kem)
                            .unwrap();
                        let mut wire = vec![0u8; MAX_BUNDLE_LEN];
                        let n = bundle.encode(&mut wire).unwrap();
                        kem = wire;
                        n
                    };
                    kem.truncate(n);
                    (pool, kem)
                },
                |(mut pool, bundle_bytes)| {
                    let bundle = Bundle::decode(&bundle_bytes).unwrap();
                    let mut r = TestRng::new(2);
                    let mut a =
                        PqxdhSession::initiate_pq(&alice, &bundle, SessionConfig::default(), &mut r, NOW)
                            .unwrap();
                    let (mut wire, mut out) = ([0u8; 2048], [0u8; 2048]);
                    let n = a.encrypt(b"hi", &mut wire, &mut r, NOW).unwrap();
                    let s: (Session, usize) = Session::respond(
                        &bob,
                        &mut pool,
                        &wire[..n],
                        &mut out,
                        SessionConfig::default(),
                        NOW,
                    )
                    .unwrap();
                    black_box((a, s))
                },
                BatchSize::SmallInput,
            )
        });
    }
    let olm_alice = Account::new();
    g.bench_function("vodozemac", |b| {
        b.iter_batched(
            || {
                let mut bob = Account::new();
                bob.generate_one_time_keys(1);
                let otk = *bob.one_time_keys().values().next().unwrap();
                (bob, otk)
            },
            |(mut bob, otk)| {
                let mut a = olm_alice
                    .create_outbound_session(OlmConfig::version_1(), bob.curve25519_key(), otk)
                    .unwrap();
                let OlmMessage::PreKey(m) = a.encrypt(b"hi").unwrap() else { panic!() };
                let r = bob
                    .create_inbound_session(OlmConfig::version_1(), olm_alice.curve25519_key(), &m)
                    .unwrap();
                black_box((a, r))
            },
            BatchSize::SmallInput,
        )
    });
    let pool: PrekeyPool<1> = PrekeyPool::new(&bob, &mut rng, UnixTime(0), PrekeyConfig::default());
    let mut buf = [0u8; MAX_BUNDLE_LEN];
    let n = pool.bundle(pool.one_time_ids().next()).encode(&mut buf).unwrap();
    g.bench_function("bundle-verify", |b| {
        b.iter(|| black_box(Bundle::decode(black_box(&buf[..n])).unwrap()))
    });
    // The PQXDH setups above include decoding their bundle (the KEM slot
    // borrows the bytes); subtract this to compare with `securemesh`.
    #[cfg(feature = "pq")]
    {
        let pool: PrekeyPool<1, 1> =
            PrekeyPool::new_pq(&bob, &mut rng, UnixTime(0), PrekeyConfig::default(), KemAlgorithm::MlKem768)
                .unwrap();
        let mut kem = [0u8; MAX_KEM_PUBLIC_LEN];
        let mut buf = [0u8; MAX_BUNDLE_LEN];
        let bundle =
            pool.bundle_pq(pool.one_time_ids().next(), pool.kem_one_time_ids().next(), &mut kem).unwrap();
        let n = bundle.encode(&mut buf).unwrap();
        g.bench_function("bundle-verify-pqxdh-768", |b| {
            b.iter(|| black_box(Bundle::decode(black_box(&buf[..n])).unwrap()))
        });
    }
    g.finish();
}

fn messages(c: &mut Criterion) {
    let mut rng = TestRng::new(3);
    for (group, alternate) in [("burst", false), ("pingpong", true)] {
        let mut g = c.benchmark_group(group);
        for size in [64usize, 1024] {
            let payload = vec![0x5au8; size];
            let (mut a, mut b) = ours_pair(&mut rng);
            let (mut wire, mut out) = (vec![0u8; size + 512], vec![0u8; size + 512]);
            let mut turn = false;
            g.bench_function(BenchmarkId::new("securemesh", size), |bch| {
                bch.iter(|| {
                    let (s, r) = if alternate && turn { (&mut b, &mut a) } else { (&mut a, &mut b) };
                    turn = !turn;
                    let n = s.encrypt(&payload, &mut wire, &mut rng, NOW).unwrap();
                    black_box(r.decrypt(&wire[..n], &mut out, NOW).unwrap())
                })
            });
            let (mut a, mut b) = olm_pair();
            let mut turn = false;
            g.bench_function(BenchmarkId::new("vodozemac", size), |bch| {
                bch.iter(|| {
                    let (s, r) = if alternate && turn { (&mut b, &mut a) } else { (&mut a, &mut b) };
                    turn = !turn;
                    let m = s.encrypt(&payload).unwrap();
                    black_box(r.decrypt(&m).unwrap())
                })
            });
        }
        g.finish();
    }
}

/// Alice and Bob with encrypted headers after Alice's first `skip + 1`
/// messages, of which Bob received only the last, and one reply: Bob holds
/// `skip` skipped keys of Alice's first chain.
fn he_pair_with_skipped(skip: usize, rng: &mut TestRng) -> (Session, Session) {
    let (alice, bob) = (Identity::generate(rng), Identity::generate(rng));
    let mut pool: PrekeyPool<1> = PrekeyPool::new(&bob, rng, UnixTime(0), PrekeyConfig::default());
    let bundle = pool.bundle(pool.one_time_ids().next());
    let cfg = SessionConfig { header_encryption: true, ..SessionConfig::default() };
    let mut a: Session = Session::initiate(&alice, &bundle, cfg, rng, NOW).unwrap();
    let (mut wire, mut out) = ([0u8; 512], [0u8; 512]);
    let mut n = 0;
    for _ in 0..=skip {
        n = a.encrypt(b"x", &mut wire, rng, NOW).unwrap();
    }
    let (mut b, _): (Session, usize) =
        Session::respond(&bob, &mut pool, &wire[..n], &mut out, SessionConfig::default(), NOW).unwrap();
    assert_eq!(b.skipped_keys(), skip);
    let n = b.encrypt(b"y", &mut wire, rng, NOW).unwrap();
    a.decrypt(&wire[..n], &mut out, NOW).unwrap();
    (a, b)
}

fn skipped(c: &mut Criterion) {
    let mut g = c.benchmark_group("skipped-he");
    let mut rng = TestRng::new(4);
    for skip in [0usize, 128] {
        let (mut a, mut b) = he_pair_with_skipped(skip, &mut rng);
        let (mut wire, mut out) = ([0u8; 512], [0u8; 512]);
        let payload = [0x5au8; 64];
        g.bench_function(BenchmarkId::from_parameter(skip), |bch| {
            bch.iter(|| {
                let n = a.encrypt(&payload, &mut wire, &mut rng, NOW).unwrap();
                black_box(b.decrypt(&wire[..n], &mut out, NOW).unwrap())
            })
        });
    }
    g.finish();
}

fn floor(c: &mut Criterion) {
    let mut g = c.benchmark_group("floor");
    let a = Secret::new([0x41u8; 32]);
    let b_pub = X25519::public_key(&Secret::new([0x42u8; 32]));
    g.bench_function("x25519-dh", |b| b.iter(|| black_box(X25519::dh(black_box(&a), black_box(&b_pub)))));
    g.bench_function("x25519-base", |b| b.iter(|| black_box(X25519::public_key(black_box(&a)))));
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(2))
        .warm_up_time(std::time::Duration::from_millis(500));
    targets = floor, setup, messages, skipped
}
criterion_main!(benches);
