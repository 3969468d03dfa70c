//! Session pairs shared by the criterion bench (`benches/ratchet.rs`) and
//! the instruction-count example (`examples/cost.rs`).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use securemesh_core::testing::TestRng;
use securemesh_core::{Instant, UnixTime};
use securemesh_ratchet::{Identity, PrekeyConfig, PrekeyPool, Session, SessionConfig};
use vodozemac::olm::{Account, OlmMessage, SessionConfig as OlmConfig};

pub const NOW: Instant = Instant(0);

pub fn ours_pair(rng: &mut TestRng) -> (Session, Session) {
    let (alice, bob) = (Identity::generate(rng), Identity::generate(rng));
    let mut pool: PrekeyPool<1> = PrekeyPool::new(&bob, rng, UnixTime(0), PrekeyConfig::default());
    let bundle = pool.bundle(pool.one_time_ids().next());
    let mut a: Session = Session::initiate(&alice, &bundle, SessionConfig::default(), rng, NOW).unwrap();
    let (mut wire, mut out) = ([0u8; 512], [0u8; 512]);
    let n = a.encrypt(b"hi", &mut wire, rng, NOW).unwrap();
    let (mut b, _) =
        Session::respond(&bob, &mut pool, &wire[..n], &mut out, SessionConfig::default(), NOW).unwrap();
    let n = b.encrypt(b"ok", &mut wire, rng, NOW).unwrap();
    a.decrypt(&wire[..n], &mut out, NOW).unwrap();
    (a, b)
}

pub fn olm_pair() -> (vodozemac::olm::Session, vodozemac::olm::Session) {
    let alice = Account::new();
    let mut bob = Account::new();
    bob.generate_one_time_keys(1);
    let otk = *bob.one_time_keys().values().next().unwrap();
    let mut a = alice.create_outbound_session(OlmConfig::version_1(), bob.curve25519_key(), otk).unwrap();
    let OlmMessage::PreKey(m) = a.encrypt(b"hi").unwrap() else { panic!("pre-key message expected") };
    let mut b =
        bob.create_inbound_session(OlmConfig::version_1(), alice.curve25519_key(), &m).unwrap().session;
    let reply = b.encrypt(b"ok").unwrap();
    a.decrypt(&reply).unwrap();
    (a, b)
}
