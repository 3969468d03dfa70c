//! Protocol properties of Double Ratchet sessions under random schedules:
//!
//! (a) over a lossy, reordering, duplicating link, every message within the
//!     bounds decrypts exactly once to its plaintext and every duplicate is
//!     rejected with a precise error, in both header modes;
//! (b) any flipped bit of a message is rejected and leaves the encoded state
//!     byte-identical, and the genuine message still decrypts;
//! (c) persisting and restoring either side at random points changes nothing;
//! (d) a snapshot of Bob's state stops decrypting Alice's messages once both
//!     sides have stepped with keys generated after the snapshot.
//!
//! The model: the link keeps every message ever sent; a delivery picks any
//! of them (an undelivered one is a first delivery, a delivered one a
//! duplicate); messages never picked are lost. Each side sends at most
//! `MAX_SENDS` messages, below `MAX_SKIP`, and the skipped-key store is
//! large enough that nothing is evicted, so every first delivery is within
//! the bounds and must succeed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use proptest::prelude::*;
use proptest::sample::Index;
use securemesh_core::envelope::Persist;
use securemesh_core::testing::TestRng;
use securemesh_core::{Instant, UnixTime};
use securemesh_ratchet::{
    Error, Identity, MSG_INITIAL, PrekeyConfig, PrekeyPool, Session, SessionConfig, SessionEvent,
};

const MAX_SKIP: usize = 64;
const CAP: usize = 256;
type S = Session<MAX_SKIP, CAP>;
/// Messages each side may send in the random phase; a few more are
/// reserved for the final exchanges.
const MAX_SENDS: u32 = 48;
const _: () = assert!((MAX_SENDS as usize) + 12 < MAX_SKIP && 2 * (MAX_SENDS as usize + 12) < CAP);

#[derive(Clone, Debug)]
enum Op {
    Send { from_a: bool, empty: bool },
    Deliver { to_b: bool, pick: Index },
    Persist { a: bool },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<bool>(), prop::bool::weighted(0.15)).prop_map(|(from_a, empty)| Op::Send { from_a, empty }),
        5 => (any::<bool>(), any::<Index>()).prop_map(|(to_b, pick)| Op::Deliver { to_b, pick }),
        1 => any::<bool>().prop_map(|a| Op::Persist { a }),
    ]
}

struct Msg {
    wire: Vec<u8>,
    plain: Vec<u8>,
    /// The sender's sending chain (1 = its first DH ratchet key).
    chain: u32,
    delivered: bool,
}

struct Side {
    s: S,
    /// Sending chains started (sending ratchet steps taken).
    chain: u32,
    /// Newest chain of the peer received.
    recv_chain: u32,
    sent: u32,
}

struct World {
    a: Side,
    b: Side,
    to_b: Vec<Msg>,
    to_a: Vec<Msg>,
    rng: TestRng,
    now: u64,
}

fn encode(s: &S) -> Vec<u8> {
    let mut buf = vec![0u8; S::MAX_ENCODED_LEN];
    let n = s.encode_state(&mut buf).unwrap();
    buf.truncate(n);
    buf
}

fn roundtrip(s: &S) -> S {
    let bytes = encode(s);
    let back = S::decode_state(&bytes).unwrap();
    assert_eq!(encode(&back), bytes, "re-encoding differs");
    back
}

fn decrypt(s: &mut S, wire: &[u8], now: u64) -> Result<Vec<u8>, Error> {
    let mut out = vec![0u8; wire.len()];
    let n = s.decrypt(wire, &mut out, Instant(now))?;
    out.truncate(n);
    Ok(out)
}

impl World {
    fn new(he: bool, seed: u64) -> World {
        let mut rng = TestRng::new(seed);
        let alice = Identity::generate(&mut rng);
        let bob = Identity::generate(&mut rng);
        let mut pool: PrekeyPool<2> =
            PrekeyPool::new(&bob, &mut rng, UnixTime(1_700_000_000), PrekeyConfig::default());
        let opk = if seed & 1 == 0 { pool.one_time_ids().next() } else { None };
        let bundle = pool.bundle(opk);
        let cfg = SessionConfig { header_encryption: he, ..SessionConfig::default() };
        let mut a = S::initiate(&alice, &bundle, cfg, &mut rng, Instant(0)).unwrap();
        let plain = b"A->B first".to_vec();
        let mut wire = vec![0u8; a.encrypted_len(plain.len())];
        let n = a.encrypt(&plain, &mut wire, &mut rng, Instant(0)).unwrap();
        wire.truncate(n);
        assert_eq!(a.poll_event(), Some(SessionEvent::RatchetStepped { sending: true }));
        let mut out = vec![0u8; wire.len()];
        let (b, n) =
            S::respond(&bob, &mut pool, &wire, &mut out, SessionConfig::default(), Instant(1)).unwrap();
        assert_eq!(&out[..n], &plain[..]);
        World {
            a: Side { s: a, chain: 1, recv_chain: 0, sent: 1 },
            b: Side { s: b, chain: 0, recv_chain: 1, sent: 0 },
            to_b: vec![Msg { wire, plain, chain: 1, delivered: true }],
            to_a: Vec::new(),
            rng,
            now: 1,
        }
    }

    fn side(&mut self, a: bool) -> &mut Side {
        if a { &mut self.a } else { &mut self.b }
    }

    /// Send from one side; returns the index of the message on the link and
    /// whether the sender took a DH ratchet step. `None` past `limit`.
    fn send_limited(&mut self, from_a: bool, empty: bool, limit: u32) -> Option<(usize, bool)> {
        self.now += 1;
        let now = self.now;
        let mut rng = self.rng.clone();
        let side = self.side(from_a);
        if side.sent >= limit {
            return None;
        }
        while side.s.poll_event().is_some() {}
        let plain: Vec<u8> = if empty {
            Vec::new()
        } else {
            format!(
                "{} #{} {}",
                if from_a { "A->B" } else { "B->A" },
                side.sent,
                "x".repeat(side.sent as usize % 7)
            )
            .into_bytes()
        };
        let mut wire = vec![0u8; side.s.encrypted_len(plain.len())];
        let n = side.s.encrypt(&plain, &mut wire, &mut rng, Instant(now)).unwrap();
        wire.truncate(n);
        side.sent += 1;
        let stepped = match side.s.poll_event() {
            Some(SessionEvent::RatchetStepped { sending: true }) => true,
            None => false,
            other => panic!("unexpected event after encrypt: {other:?}"),
        };
        assert_eq!(side.s.poll_event(), None);
        side.chain += u32::from(stepped);
        let chain = side.chain;
        self.rng = rng;
        let link = if from_a { &mut self.to_b } else { &mut self.to_a };
        link.push(Msg { wire, plain, chain, delivered: false });
        Some((link.len() - 1, stepped))
    }

    fn send(&mut self, from_a: bool, empty: bool) -> Option<(usize, bool)> {
        self.send_limited(from_a, empty, MAX_SENDS)
    }

    /// Deliver message `i` of a direction and check the outcome against the
    /// model: a first delivery decrypts to its plaintext; a duplicate is
    /// `Duplicate` when it belongs to the receiver's current or previous
    /// receiving chain (the session still knows those chains), and
    /// `Decrypt` when it is older (it then looks like a new chain whose
    /// keys do not authenticate).
    fn deliver(&mut self, to_b: bool, i: usize) {
        self.now += 1;
        let now = self.now;
        let (link, rx) = if to_b { (&mut self.to_b, &mut self.b) } else { (&mut self.to_a, &mut self.a) };
        let msg = &mut link[i];
        let result = decrypt(&mut rx.s, &msg.wire, now);
        if msg.delivered {
            let expected = if msg.chain + 1 >= rx.recv_chain { Error::Duplicate } else { Error::Decrypt };
            assert_eq!(
                result,
                Err(expected),
                "duplicate of chain {} at receiver chain {}",
                msg.chain,
                rx.recv_chain
            );
        } else {
            assert!(msg.chain <= rx.recv_chain + 1, "model: a chain was skipped");
            assert_eq!(result.as_deref(), Ok(&msg.plain[..]), "first delivery of chain {}", msg.chain);
            msg.delivered = true;
            rx.recv_chain = rx.recv_chain.max(msg.chain);
        }
    }

    fn run(&mut self, ops: &[Op], persist: bool) {
        for op in ops {
            match op {
                Op::Send { from_a, empty } => {
                    self.send(*from_a, *empty);
                }
                Op::Deliver { to_b, pick } => {
                    let len = if *to_b { self.to_b.len() } else { self.to_a.len() };
                    if len > 0 {
                        self.deliver(*to_b, pick.index(len));
                    }
                }
                Op::Persist { a } => {
                    if persist {
                        let side = self.side(*a);
                        side.s = roundtrip(&side.s);
                    }
                }
            }
        }
    }

    /// Deliver everything not yet delivered (in a shuffled order), then
    /// every message once more (all duplicates), then check that both
    /// directions still work.
    fn flush_and_replay(&mut self, seed: u64) {
        let mut order: Vec<(bool, usize)> =
            (0..self.to_b.len()).map(|i| (true, i)).chain((0..self.to_a.len()).map(|i| (false, i))).collect();
        let mut shuffle = TestRng::new(seed);
        for i in (1..order.len()).rev() {
            let j = (u64::from_le_bytes(shuffle.bytes::<8>()) % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        for &(to_b, i) in &order {
            let link = if to_b { &self.to_b } else { &self.to_a };
            if !link[i].delivered {
                self.deliver(to_b, i);
            }
        }
        assert!(self.to_b.iter().chain(&self.to_a).all(|m| m.delivered));
        assert_eq!(self.a.s.skipped_keys(), 0);
        assert_eq!(self.b.s.skipped_keys(), 0);
        for &(to_b, i) in &order {
            self.deliver(to_b, i);
        }
        for from_a in [true, false, true] {
            let (i, _) = self.send_limited(from_a, false, MAX_SENDS + 6).unwrap();
            self.deliver(from_a, i);
        }
    }

    /// The undelivered messages of both directions: (to_b, index).
    fn undelivered(&self) -> Vec<(bool, usize)> {
        let b = self.to_b.iter().enumerate().filter(|(_, m)| !m.delivered).map(|(i, _)| (true, i));
        let a = self.to_a.iter().enumerate().filter(|(_, m)| !m.delivered).map(|(i, _)| (false, i));
        b.chain(a).collect()
    }
}

/// The X3DH prefix fields of a repeated initial message that are not in the
/// AEAD's associated data (spk_id, opk_id, header-encryption flag): the
/// session must check them itself. See
/// `repeated_initial_prefix_fields_are_checked`.
fn prefix_only_bits(wire: &[u8]) -> Vec<(usize, u8)> {
    if wire[0] != MSG_INITIAL {
        return Vec::new();
    }
    let mut v: Vec<(usize, u8)> = (161..165).flat_map(|i| (0..8).map(move |b| (i, b))).collect();
    let he_at = if wire[165] == 1 {
        v.extend((166..170).flat_map(|i| (0..8).map(move |b| (i, b))));
        171
    } else {
        167
    };
    v.push((he_at, 0));
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// (a) Every message within the bounds decrypts exactly once; every
    /// duplicate is rejected precisely. Both header modes on the same schedule.
    #[test]
    fn delivered_once_and_only_once(ops in prop::collection::vec(op(), 0..120), seed in any::<u64>()) {
        for he in [false, true] {
            let mut w = World::new(he, seed);
            w.run(&ops, false);
            w.flush_and_replay(seed);
        }
    }

    /// (c) Persisting and restoring either side at random points (the
    /// `Persist` ops) leaves the conversation and every property intact.
    #[test]
    fn restored_sessions_continue(ops in prop::collection::vec(op(), 0..120), seed in any::<u64>(), he in any::<bool>()) {
        let mut w = World::new(he, seed);
        w.run(&ops, true);
        w.a.s = roundtrip(&w.a.s);
        w.b.s = roundtrip(&w.b.s);
        w.flush_and_replay(seed);
    }

    /// (b) Any flipped bit of any message in flight is rejected and leaves
    /// the receiver's encoded state byte-identical; the genuine message
    /// then decrypts.
    #[test]
    fn tampered_message_rejected_state_unchanged(
        ops in prop::collection::vec(op(), 0..60),
        seed in any::<u64>(),
        he in any::<bool>(),
        from_a in any::<bool>(),
        which in any::<Index>(),
        pos in any::<Index>(),
        bit in 0u8..8,
    ) {
        let mut w = World::new(he, seed);
        w.run(&ops, false);
        w.send_limited(from_a, false, MAX_SENDS + 1).unwrap();
        let candidates = w.undelivered();
        let (to_b, i) = *which.get(&candidates);
        let wire = if to_b { &w.to_b[i].wire } else { &w.to_a[i].wire };
        let positions: Vec<(usize, u8)> = (0..wire.len()).map(|p| (p, bit)).collect();
        let (p, bit) = *pos.get(&positions);
        let mut bad = wire.clone();
        bad[p] ^= 1 << bit;
        let rx = if to_b { &mut w.b.s } else { &mut w.a.s };
        let before = encode(rx);
        let result = decrypt(rx, &bad, 99_999);
        prop_assert!(result.is_err(), "flip at byte {} bit {} accepted", p, bit);
        prop_assert_eq!(encode(rx), before);
        w.deliver(to_b, i);
    }

    /// (d) A snapshot of Bob's state decrypts Alice's next message, but not
    /// her messages after the exchange that heals the session: Bob steps
    /// with a ratchet key generated after the snapshot, Alice receives it
    /// and steps with a key generated after it, so her chains come from
    /// DH(a_new, B_new) under a root key the snapshot cannot follow.
    ///
    /// One round trip (A->B, B->A, A->B) is enough when Alice or Bob has a
    /// pending sending step at the snapshot; when neither has (Bob's newest
    /// ratchet key has not reached Alice yet), Bob's next message uses a key
    /// in the snapshot, and five messages are needed.
    #[test]
    fn snapshot_fails_after_both_sides_step(
        ops in prop::collection::vec(op(), 0..60),
        seed in any::<u64>(),
    ) {
        for he in [false, true] {
            let mut w = World::new(he, seed);
            w.run(&ops, false);
            let snapshot = encode(&w.b.s);
            let mut follower = S::decode_state(&snapshot).unwrap();
            // On the chains of the snapshot: the snapshot decrypts.
            let (i, _) = w.send_limited(true, false, MAX_SENDS + 12).unwrap();
            let pre = w.to_b[i].wire.clone();
            prop_assert_eq!(decrypt(&mut follower, &pre, 0), Ok(w.to_b[i].plain.clone()));
            w.deliver(true, i);
            // The heartbeat exchange: empty messages, each delivered at once.
            let mut messages = 0;
            let mut bob_fresh_delivered = false;
            let healing = loop {
                let (i, alice_stepped) = w.send_limited(true, true, MAX_SENDS + 12).unwrap();
                messages += 1;
                w.deliver(true, i);
                if alice_stepped && bob_fresh_delivered {
                    break i;
                }
                // Before healing, the follower (the snapshot fed with every
                // message Alice sends) still decrypts.
                prop_assert_eq!(decrypt(&mut follower, &w.to_b[i].wire, 0), Ok(Vec::new()));
                let (j, bob_stepped) = w.send_limited(false, true, MAX_SENDS + 12).unwrap();
                messages += 1;
                w.deliver(false, j);
                bob_fresh_delivered |= bob_stepped;
                prop_assert!(messages < 5, "no healing after {} messages", messages);
            };
            prop_assert!(messages == 3 || messages == 5, "{} messages", messages);
            let mut after = vec![healing];
            for _ in 0..3 {
                let (i, stepped) = w.send_limited(true, false, MAX_SENDS + 12).unwrap();
                prop_assert!(!stepped);
                after.push(i);
            }
            for i in after {
                let wire = w.to_b[i].wire.clone();
                let fresh_copy = &mut S::decode_state(&snapshot).unwrap();
                for snap in [&mut follower, fresh_copy] {
                    let before = encode(snap);
                    prop_assert!(decrypt(snap, &wire, 0).is_err());
                    prop_assert_eq!(encode(snap), before);
                }
                w.deliver(true, i);
            }
        }
    }
}

/// Bob's newest ratchet key is lost on the way to Alice and neither side
/// has a pending step when the snapshot is taken: after one round trip the
/// snapshot still decrypts Alice's third message (her new key met Bob's
/// key from the snapshot); after two, it no longer does.
#[test]
fn one_round_trip_is_not_always_enough() {
    for he in [false, true] {
        let mut w = World::new(he, 7);
        let (i, _) = w.send(false, false).unwrap(); // Bob answers: Bob steps (chain 1)
        w.deliver(false, i);
        let (i, _) = w.send(true, false).unwrap(); // Alice steps (chain 2)
        w.deliver(true, i);
        let (_lost, stepped) = w.send(false, false).unwrap(); // Bob steps (chain 2), lost
        assert!(stepped);
        let snapshot = encode(&w.b.s);
        let mut follower = S::decode_state(&snapshot).unwrap();
        let mut results = Vec::new();
        for from_a in [true, false, true, false, true] {
            let (i, _) = w.send(from_a, true).unwrap();
            if from_a {
                results.push(decrypt(&mut follower, &w.to_b[i].wire, 0).is_ok());
            }
            w.deliver(from_a, i);
        }
        assert_eq!(results, [true, true, false], "header encryption: {he}");
    }
}

/// Known issue (ignored until fixed): an established session accepts
/// Regression: Alice's repeated initial message with a modified `spk_id`,
/// `opk_id` or header-encryption flag was accepted, because the session
/// checked only the identity and the ephemeral key of the X3DH prefix (which
/// is not in the AEAD's associated data). Every field is compared now.
#[test]
fn repeated_initial_prefix_fields_are_checked() {
    let mut w = World::new(false, 2);
    let (i, _) = w.send(true, false).unwrap();
    let wire = w.to_b[i].wire.clone();
    assert_eq!(wire[0], MSG_INITIAL);
    let mut accepted = Vec::new();
    let bits = prefix_only_bits(&wire);
    assert!(bits.len() >= 33);
    for (p, bit) in bits {
        let mut bad = wire.clone();
        bad[p] ^= 1 << bit;
        let mut copy = roundtrip(&w.b.s);
        if decrypt(&mut copy, &bad, 0).is_ok() {
            accepted.push((p, bit));
        }
    }
    assert!(accepted.is_empty(), "accepted flips (byte, bit): {accepted:?}");
}
