//! Untrusted initial messages into `Session::respond` (Bob's side of X3DH
//! and the first Double Ratchet decryption).
//!
//! Setup (`securemesh_fuzz::ratchet::initial_fixture`, built once): Bob has
//! a fixed identity and a deterministic `PrekeyPool<4>`: signed prekey 6
//! (current), signed prekey 1 (previous, in its grace period), one-time
//! prekeys 2 to 5. The genuine messages are Alice's (fixed identity) to
//! his bundles: clear and encrypted headers, with and without a one-time
//! prekey, to the current and to the previous signed prekey, and second
//! messages of a session (Bob skips the first). The whole input is the
//! message; the pool is restored whenever it is not the fixture's.
//!
//! Properties checked:
//! - nothing panics;
//! - `Ok` only for a genuine initial message, byte for byte (wire version
//!   2 binds the whole X3DH prefix into `SK`, so no mutation of a genuine
//!   message is accepted, not even `ek_pub` plus a point of small order,
//!   which leaves every X25519 result the same), and every
//!   genuine message is accepted: the payload is the genuine one and
//!   nothing is written beyond it, the session's remote identity is
//!   Alice's, its one-time prekey (if any) is consumed (only that one, and
//!   a replay then gives `UnknownPrekey` and changes nothing), a message
//!   without one leaves the pool as it was; Bob's session answers and
//!   Alice's session (restored from the fixture) decrypts the answer, in
//!   the header mode she chose;
//! - for a genuine message, an output buffer one byte short gives
//!   `BufferTooSmall` and changes nothing;
//! - on `Err`, the pool is unchanged (`encode_state` byte for byte: no
//!   one-time prekey consumed by a forgery) and the output buffer is all
//!   zero (no plaintext).
//!
//! The same input also goes to Bob's PQXDH pool
//! (`securemesh_fuzz::ratchet::pq_fixture`: ML-KEM-768, one-time and
//! last-resort KEM prekeys; genuine messages with both, clear and
//! encrypted headers). There:
//! - `Ok` only for a genuine PQXDH initial message, byte for byte, with
//!   its payload; its one-time prekey and one-time KEM prekey (if any) are
//!   consumed, the last-resort KEM prekey is kept, and a replay that names
//!   a spent one-time key is `UnknownPrekey` with nothing changed;
//! - a genuine message with its KEM slot stripped is `Downgrade` and
//!   changes nothing;
//! - on `Err` the pool is unchanged and the output all zero.
#![no_main]

use std::cell::RefCell;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use securemesh_core::envelope::Persist;
use securemesh_core::testing::TestRng;
use securemesh_fuzz::noise::{all_zero, encode_state};
use securemesh_fuzz::ratchet::{
    FuzzSession, InitialFixture, NOW, PqFixture, PqPool, SmallPool, alice, bob, decrypt, encrypt,
    initial_fixture, pq_fixture,
};
use securemesh_ratchet::{Error, MSG_RATCHET, MSG_RATCHET_HE, SessionConfig};

fn fixture() -> &'static InitialFixture {
    static F: OnceLock<InitialFixture> = OnceLock::new();
    F.get_or_init(initial_fixture)
}

fn pq() -> &'static PqFixture {
    static F: OnceLock<PqFixture> = OnceLock::new();
    F.get_or_init(pq_fixture)
}

thread_local! {
    /// Bob's pool, kept between runs (a refused message must not change it,
    /// which every run checks) and restored after an accepted one.
    static POOL: RefCell<Option<SmallPool>> = const { RefCell::new(None) };
    /// Bob's PQXDH pool, likewise.
    static PQ_POOL: RefCell<Option<PqPool>> = const { RefCell::new(None) };
}

/// A refused message: it was not a genuine one (`genuine` names it if it
/// was), nothing was written to the output and the pool (`pool`, its
/// state) is the fixture's (`fixture`).
fn refused(e: Error, genuine: Option<&str>, out: &[u8], pool: &[u8], fixture: &[u8]) {
    if let Some(name) = genuine {
        panic!("genuine initial message {name} refused: {e:?}");
    }
    assert!(all_zero(out), "a refused initial message left bytes in the output ({e:?})");
    assert_eq!(pool, fixture, "a refused initial message changed the pool ({e:?})");
}

fn pq_respond(pool: &mut PqPool, message: &[u8], out: &mut [u8]) -> Result<(FuzzSession, usize), Error> {
    FuzzSession::respond(bob(), pool, message, out, SessionConfig::default(), NOW)
}

/// The PQXDH half: `data` to Bob's PQXDH pool.
fn pq_run(data: &[u8]) {
    let fx = pq();
    PQ_POOL.with_borrow_mut(|slot| {
        if slot.as_ref().is_none_or(|p| encode_state(p) != fx.pool) {
            *slot = Some(PqPool::decode_state(&fx.pool).expect("fixture pool decodes"));
        }
        let Some(pool) = slot.as_mut() else { unreachable!() };
        let genuine = fx.messages.iter().find(|m| m.message == data);
        if let Some(g) = genuine {
            let mut out = vec![0u8; data.len()];
            assert_eq!(pq_respond(pool, &g.stripped(), &mut out).map(|(_, n)| n), Err(Error::Downgrade));
            assert!(all_zero(&out));
            assert_eq!(encode_state(pool), fx.pool, "a downgrade changed the pool");
        }
        let mut out = vec![0u8; data.len()];
        match pq_respond(pool, data, &mut out) {
            Err(e) => refused(e, genuine.map(|g| g.name), &out, &encode_state(pool), &fx.pool),
            Ok((b, n)) => {
                let g =
                    genuine.expect("respond accepted a message that is not a genuine PQXDH initial message");
                assert_eq!(&out[..n], g.payload.as_slice(), "payload of {}", g.name);
                assert_eq!(b.remote_identity(), alice().public());
                let before = PqPool::decode_state(&fx.pool).expect("fixture pool decodes");
                let opk_left: Vec<u32> = before.one_time_ids().filter(|&id| Some(id) != g.opk).collect();
                assert!(pool.one_time_ids().eq(opk_left), "{}: wrong one-time prekeys left", g.name);
                let kem_left: Vec<u32> =
                    before.kem_one_time_ids().filter(|&id| Some(id) != g.one_time_kem).collect();
                assert!(pool.kem_one_time_ids().eq(kem_left), "{}: wrong one-time KEM prekeys left", g.name);
                assert_eq!(pool.last_resort_kem_id(), before.last_resort_kem_id());
                if g.opk.is_some() || g.one_time_kem.is_some() {
                    let after = encode_state(pool);
                    let mut again = vec![0u8; data.len()];
                    assert_eq!(pq_respond(pool, data, &mut again).map(|(_, n)| n), Err(Error::UnknownPrekey));
                    assert!(all_zero(&again));
                    assert_eq!(encode_state(pool), after);
                }
                *pool = before;
            }
        }
    });
}

fn respond(pool: &mut SmallPool, message: &[u8], out: &mut [u8]) -> Result<(FuzzSession, usize), Error> {
    FuzzSession::respond(bob(), pool, message, out, SessionConfig::default(), NOW)
}

fuzz_target!(|data: &[u8]| {
    pq_run(data);
    let fx = fixture();
    POOL.with_borrow_mut(|slot| {
        if slot.as_ref().is_none_or(|p| encode_state(p) != fx.pool) {
            *slot = Some(SmallPool::decode_state(&fx.pool).expect("fixture pool decodes"));
        }
        let Some(pool) = slot.as_mut() else { unreachable!() };
        let genuine = fx.messages.iter().find(|m| m.message == data);

        if let Some(g) = genuine
            && let Some(short_len) = g.payload.len().checked_sub(1)
        {
            let mut short = vec![0u8; short_len];
            let r = respond(pool, data, &mut short).map(|(_, n)| n);
            assert_eq!(r, Err(Error::BufferTooSmall { needed: g.payload.len() }));
            assert!(all_zero(&short));
            assert_eq!(encode_state(pool), fx.pool, "BufferTooSmall changed the pool");
        }

        let mut out = vec![0u8; data.len()];
        match respond(pool, data, &mut out) {
            Err(e) => refused(e, genuine.map(|g| g.name), &out, &encode_state(pool), &fx.pool),
            Ok((mut b, n)) => {
                let g = genuine.expect("respond accepted a message that is not a genuine initial message");
                assert_eq!(&out[..n], g.payload.as_slice(), "payload of {}", g.name);
                assert!(all_zero(&out[n..]), "respond wrote past the payload");
                assert_eq!(b.remote_identity(), alice().public());
                assert!(!b.awaiting_reply());

                let before = SmallPool::decode_state(&fx.pool).expect("fixture pool decodes");
                let mut ids: Vec<u32> = before.one_time_ids().collect();
                if let Some(id) = g.opk {
                    ids.retain(|&x| x != id);
                    assert_eq!(
                        pool.available(),
                        before.available() - 1,
                        "{}: one-time prekey not consumed",
                        g.name
                    );
                }
                assert!(
                    pool.one_time_ids().eq(ids.iter().copied()),
                    "{}: wrong one-time prekeys left",
                    g.name
                );
                assert_eq!(pool.signed_public(), before.signed_public());
                if g.opk.is_none() {
                    assert_eq!(
                        encode_state(pool),
                        fx.pool,
                        "{}: pool changed without a one-time prekey",
                        g.name
                    );
                } else {
                    // The one-time prekey is spent: a replay opens no second session.
                    let after = encode_state(pool);
                    let mut again = vec![0u8; data.len()];
                    assert_eq!(respond(pool, data, &mut again).map(|(_, n)| n), Err(Error::UnknownPrekey));
                    assert!(all_zero(&again));
                    assert_eq!(encode_state(pool), after);
                }

                // Bob answers; Alice's session (as she left it) opens the answer.
                let mut rng = TestRng::new(0x7e5);
                let answer = encrypt(&mut b, &mut rng, b"answer from bob");
                assert_eq!(
                    answer[0],
                    if g.he { MSG_RATCHET_HE } else { MSG_RATCHET },
                    "header mode of {}",
                    g.name
                );
                let mut a = FuzzSession::decode_state(&g.alice).expect("fixture session decodes");
                assert!(a.awaiting_reply());
                decrypt(&mut a, &answer, b"answer from bob");
                assert!(!a.awaiting_reply());

                *pool = before;
            }
        }
    });
});
