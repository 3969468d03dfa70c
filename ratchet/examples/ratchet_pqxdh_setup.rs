//! PQXDH against X3DH without criterion: session setup time (the median of
//! interleaved runs, so a loaded machine slows all variants alike) and the
//! sizes on the wire. `cargo run --release -p securemesh-ratchet --example
//! ratchet_pqxdh_setup [ROUNDS]` (default 300).
//!
//! One setup is what a session costs from Bob's published keys to both
//! sides holding a session: Alice decodes and verifies the bundle, starts
//! the session and encrypts a 2-byte first message, Bob responds (decrypts
//! it). The pools (and their ML-KEM key generation) are made outside the
//! measurement, one per setup.
//!
//! ```text
//! variant          median    ratio   bundle  first message (2-byte payload)
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use securemesh_core::testing::TestRng;
use securemesh_core::{Instant, UnixTime};
use securemesh_ratchet::{
    Bundle, Identity, KemAlgorithm, MAX_BUNDLE_LEN, MAX_KEM_PUBLIC_LEN, PqxdhSession, PrekeyConfig,
    PrekeyPool, Session, SessionConfig,
};
use std::hint::black_box;
use std::time::{Duration, Instant as Clock};

const NOW: Instant = Instant(0);

/// A fresh pool of Bob and the bundle bytes it publishes (with a one-time
/// prekey, and with `kem` a one-time KEM prekey).
fn published(bob: &Identity, kem: Option<KemAlgorithm>, rng: &mut TestRng) -> (PrekeyPool<1, 1>, Vec<u8>) {
    let mut wire = vec![0u8; MAX_BUNDLE_LEN];
    let mut kem_buf = [0u8; MAX_KEM_PUBLIC_LEN];
    let (pool, n) = match kem {
        Some(alg) => {
            let pool = PrekeyPool::new_pq(bob, rng, UnixTime(0), PrekeyConfig::default(), alg).unwrap();
            let bundle = pool
                .bundle_pq(pool.one_time_ids().next(), pool.kem_one_time_ids().next(), &mut kem_buf)
                .unwrap();
            let n = bundle.encode(&mut wire).unwrap();
            (pool, n)
        }
        None => {
            let pool = PrekeyPool::new(bob, rng, UnixTime(0), PrekeyConfig::default());
            let n = pool.bundle(pool.one_time_ids().next()).encode(&mut wire).unwrap();
            (pool, n)
        }
    };
    wire.truncate(n);
    (pool, wire)
}

/// One setup; returns its duration and the first message's length.
fn setup(
    alice: &Identity,
    bob: &Identity,
    kem: Option<KemAlgorithm>,
    rng: &mut TestRng,
) -> (Duration, usize) {
    let (mut pool, bundle_bytes) = published(bob, kem, rng);
    let (mut wire, mut out) = ([0u8; 2048], [0u8; 2048]);
    let start = Clock::now();
    let bundle = Bundle::decode(&bundle_bytes).unwrap();
    let n = if kem.is_some() {
        let mut a = PqxdhSession::initiate_pq(alice, &bundle, SessionConfig::default(), rng, NOW).unwrap();
        a.encrypt(b"hi", &mut wire, rng, NOW).unwrap()
    } else {
        let mut a: Session = Session::initiate(alice, &bundle, SessionConfig::default(), rng, NOW).unwrap();
        a.encrypt(b"hi", &mut wire, rng, NOW).unwrap()
    };
    let b: (Session, usize) =
        Session::respond(bob, &mut pool, &wire[..n], &mut out, SessionConfig::default(), NOW).unwrap();
    let elapsed = start.elapsed();
    black_box(b);
    (elapsed, n)
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

fn main() {
    let rounds: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(300);
    let mut rng = TestRng::new(0x5e7);
    let alice = Identity::generate(&mut rng);
    let bob = Identity::generate(&mut rng);
    let variants = [
        ("X3DH", None),
        ("PQXDH ML-KEM-768", Some(KemAlgorithm::MlKem768)),
        ("PQXDH ML-KEM-1024", Some(KemAlgorithm::MlKem1024)),
    ];
    let mut times: Vec<Vec<Duration>> = vec![Vec::with_capacity(rounds); variants.len()];
    let mut first = [0usize; 3];
    for _ in 0..rounds {
        for (i, (_, kem)) in variants.iter().enumerate() {
            let (t, n) = setup(&alice, &bob, *kem, &mut rng);
            times[i].push(t);
            first[i] = n;
        }
    }
    let medians: Vec<Duration> = times.iter_mut().map(|t| median(t)).collect();
    println!("{rounds} interleaved rounds; setup = bundle decode + initiate + first encrypt + respond");
    println!("{:<18} {:>10} {:>7} {:>8} {:>14}", "variant", "median", "ratio", "bundle", "first message");
    for (i, (name, kem)) in variants.iter().enumerate() {
        let bundle = published(&bob, *kem, &mut rng).1.len();
        println!(
            "{:<18} {:>8.1} µs {:>6.2}x {:>6} B {:>12} B",
            name,
            medians[i].as_secs_f64() * 1e6,
            medians[i].as_secs_f64() / medians[0].as_secs_f64(),
            bundle,
            first[i],
        );
    }
}
