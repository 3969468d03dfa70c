//! One operation repeated `n` times, for instruction counting under
//! callgrind (`ratchet/benches/instructions.sh`): instructions per
//! operation are `(count(n) - count(0)) / n`. The operations of
//! `benches/ratchet.rs`, ours and vodozemac's (Olm).
//!
//! `cargo run --release -p securemesh-ratchet --example cost -- <op> <n>`,
//! `<op>`: `x25519-dh`, `x25519-base`, `ed25519-verify`, `{ours,olm}-setup`,
//! `ours-bundle-verify`, `{ours,olm}-{burst,pingpong}-{64,1024}`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use securemesh_core::crypto::{Dh, Ed25519, Signature, X25519};
use securemesh_core::testing::TestRng;
use securemesh_core::{Secret, UnixTime};
use securemesh_ratchet::{
    Bundle, Identity, MAX_BUNDLE_LEN, PrekeyConfig, PrekeyPool, Session, SessionConfig,
};
use std::hint::black_box;
use vodozemac::olm::{Account, OlmMessage, SessionConfig as OlmConfig};

#[path = "../benches/common/mod.rs"]
mod common;
use common::{NOW, olm_pair, ours_pair};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let op = args.get(1).map(String::as_str).unwrap_or("x25519-dh");
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    let mut rng = TestRng::new(3);
    let size = op.rsplit('-').next().and_then(|s| s.parse::<usize>().ok()).unwrap_or(0);
    let payload = vec![0x5au8; size];
    let (mut wire, mut out) = (vec![0u8; size + 512], vec![0u8; size + 512]);
    match op {
        "x25519-dh" => {
            let (a, b) = (Secret::new([0x41u8; 32]), X25519::public_key(&Secret::new([0x42u8; 32])));
            for _ in 0..n {
                black_box(X25519::dh(black_box(&a), black_box(&b)));
            }
        }
        "x25519-base" => {
            let a = Secret::new([0x41u8; 32]);
            for _ in 0..n {
                black_box(X25519::public_key(black_box(&a)));
            }
        }
        "ed25519-verify" => {
            let key = Ed25519::signing_key(&Secret::new([7u8; 32]));
            let (public, sig) = (Ed25519::verifying_key(&key), Ed25519::sign(&key, b"m"));
            for _ in 0..n {
                black_box(Ed25519::verify(&public, b"m", &sig)).unwrap();
            }
        }
        "ours-bundle-verify" => {
            let bob = Identity::generate(&mut rng);
            let pool: PrekeyPool<1> = PrekeyPool::new(&bob, &mut rng, UnixTime(0), PrekeyConfig::default());
            let mut buf = [0u8; MAX_BUNDLE_LEN];
            let len = pool.bundle(pool.one_time_ids().next()).encode(&mut buf).unwrap();
            for _ in 0..n {
                black_box(Bundle::decode(&buf[..len]).unwrap());
            }
        }
        "ours-setup" => {
            let (alice, bob) = (Identity::generate(&mut rng), Identity::generate(&mut rng));
            let mut pool: PrekeyPool<64> =
                PrekeyPool::new(&bob, &mut rng, UnixTime(0), PrekeyConfig::default());
            let ids: Vec<u32> = pool.one_time_ids().collect();
            for id in ids.iter().take(n) {
                let bundle = pool.bundle(Some(*id));
                let mut a: Session =
                    Session::initiate(&alice, &bundle, SessionConfig::default(), &mut rng, NOW).unwrap();
                let m = a.encrypt(b"hi", &mut wire, &mut rng, NOW).unwrap();
                let s: (Session, usize) =
                    Session::respond(&bob, &mut pool, &wire[..m], &mut out, SessionConfig::default(), NOW)
                        .unwrap();
                black_box((a, s));
            }
        }
        "olm-setup" => {
            let alice = Account::new();
            let mut bob = Account::new();
            bob.generate_one_time_keys(64);
            let otks: Vec<_> = bob.one_time_keys().values().copied().collect();
            for otk in otks.iter().take(n) {
                let mut a = alice
                    .create_outbound_session(OlmConfig::version_1(), bob.curve25519_key(), *otk)
                    .unwrap();
                let OlmMessage::PreKey(m) = a.encrypt(b"hi").unwrap() else { panic!() };
                black_box(
                    bob.create_inbound_session(OlmConfig::version_1(), alice.curve25519_key(), &m).unwrap(),
                );
            }
        }
        _ if op.starts_with("ours-") => {
            let (mut a, mut b) = ours_pair(&mut rng);
            let alternate = op.contains("pingpong");
            for i in 0..n {
                let (s, r) = if alternate && i % 2 == 1 { (&mut b, &mut a) } else { (&mut a, &mut b) };
                let m = s.encrypt(&payload, &mut wire, &mut rng, NOW).unwrap();
                black_box(r.decrypt(&wire[..m], &mut out, NOW).unwrap());
            }
        }
        _ if op.starts_with("olm-") => {
            let (mut a, mut b) = olm_pair();
            let alternate = op.contains("pingpong");
            for i in 0..n {
                let (s, r) = if alternate && i % 2 == 1 { (&mut b, &mut a) } else { (&mut a, &mut b) };
                let m = s.encrypt(&payload).unwrap();
                black_box(r.decrypt(&m).unwrap());
            }
        }
        _ => panic!("unknown op {op}"),
    }
}
