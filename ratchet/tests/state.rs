//! Persisted sessions and prekey pools: byte-identical round trips, restored
//! sessions that continue the conversation exactly, sealing with
//! generations, corrupt encodings, capacities and `size_of` ceilings.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use securemesh_core::Error as CoreError;
use securemesh_core::envelope::{self, HEADER_LEN, Persist, StateKind, StorageKey};
use securemesh_core::testing::TestRng;
use securemesh_core::{Instant, UnixTime};
use securemesh_ratchet::{
    Bundle, Error, Identity, MAX_BUNDLE_LEN, MSG_INITIAL, PrekeyConfig, PrekeyEvent, PrekeyPool, Session,
    SessionConfig, SessionEvent,
};

const T0: UnixTime = UnixTime(1_700_000_000);

fn encode<T: Persist>(x: &T) -> Vec<u8> {
    let mut buf = vec![0u8; T::MAX_ENCODED_LEN];
    let n = x.encode_state(&mut buf).unwrap();
    buf.truncate(n);
    buf
}

/// decode(encode(x)) re-encodes byte-identically; returns the decoded copy.
fn roundtrip<T: Persist>(x: &T) -> T {
    let bytes = encode(x);
    let y = T::decode_state(&bytes).unwrap();
    assert_eq!(encode(&y), bytes, "re-encoding differs");
    y
}

fn drain(s: &mut Session) -> Vec<SessionEvent> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

struct Setup {
    alice: Identity,
    bob: Identity,
    pool: PrekeyPool<8>,
    rng: TestRng,
}

fn setup(seed: u64) -> Setup {
    let mut rng = TestRng::new(seed);
    let alice = Identity::generate(&mut rng);
    let bob = Identity::generate(&mut rng);
    let pool = PrekeyPool::new(&bob, &mut rng, T0, PrekeyConfig::default());
    Setup { alice, bob, pool, rng }
}

impl Setup {
    fn initiate(&mut self, he: bool) -> Session {
        let mut buf = [0u8; MAX_BUNDLE_LEN];
        let n = self.pool.bundle(self.pool.one_time_ids().next()).encode(&mut buf).unwrap();
        let bundle = Bundle::decode(&buf[..n]).unwrap();
        let cfg = SessionConfig { header_encryption: he, heartbeat_ms: 60_000 };
        Session::initiate(&self.alice, &bundle, cfg, &mut self.rng, Instant(0)).unwrap()
    }

    fn respond(&mut self, initial: &[u8]) -> (Session, Vec<u8>) {
        let mut out = vec![0u8; initial.len()];
        let cfg = SessionConfig { heartbeat_ms: 60_000, ..SessionConfig::default() };
        let (s, n) = Session::respond(&self.bob, &mut self.pool, initial, &mut out, cfg, Instant(1)).unwrap();
        out.truncate(n);
        (s, out)
    }
}

std::thread_local! {
    /// The time of sends and receives: a session's clock must be monotonic
    /// (a restored session takes its clock from its first call), so a test
    /// that checks a heartbeat at some time moves this past it first.
    static NOW: std::cell::Cell<Instant> = const { std::cell::Cell::new(Instant(5)) };
}

/// Move the test's clock to `t` (never back).
fn advance(t: Instant) {
    NOW.with(|n| n.set(n.get().max(t)));
}

fn send(s: &mut Session, rng: &mut TestRng, text: &[u8]) -> Vec<u8> {
    // encrypted_len counts an opk_id even when the bundle had no one-time
    // prekey (4 bytes over for such initial messages): an upper bound.
    let mut wire = vec![0u8; s.encrypted_len(text.len())];
    let n = s.encrypt(text, &mut wire, rng, NOW.with(|n| n.get())).unwrap();
    assert!(n == wire.len() || (wire[0] == MSG_INITIAL && n + 4 == wire.len()));
    wire.truncate(n);
    wire
}

fn recv(s: &mut Session, msg: &[u8]) -> Result<Vec<u8>, Error> {
    let mut out = vec![0u8; msg.len()];
    let n = s.decrypt(msg, &mut out, NOW.with(|n| n.get()))?;
    out.truncate(n);
    Ok(out)
}

/// Runs the same encrypt (same randomness) and decrypt on a session and
/// its restored copy: outputs and resulting states must be identical.
/// `rng` advances as for one encryption (reusing its state for a later
/// ratchet key would make both sides draw the same key).
fn assert_twins(orig: &mut Session, copy: &mut Session, rng: &mut TestRng, incoming: Option<&[u8]>) {
    let mut r1 = rng.clone();
    assert_eq!(send(orig, &mut r1, b"twin"), send(copy, rng, b"twin"));
    if let Some(m) = incoming {
        assert_eq!(recv(orig, m), recv(copy, m));
    }
    assert_eq!(drain(orig), drain(copy));
    assert_eq!(encode(orig), encode(copy));
}

fn conversation_states(he: bool) {
    let mut st = setup(if he { 11 } else { 10 });
    let mut rng = TestRng::new(99);
    // Alice before her first message: no sending chain yet.
    let mut a = st.initiate(he);
    let a_copy = roundtrip(&a);
    assert!(a_copy.awaiting_reply());
    assert_eq!(a_copy.remote_identity(), st.bob.public());
    // Alice after it, still awaiting Bob's answer.
    let first = send(&mut a, &mut rng, b"first");
    let mut a_copy = roundtrip(&a);
    assert!(a_copy.awaiting_reply());
    assert_eq!(a_copy.associated_data(), a.associated_data());
    // Bob after responding.
    let (mut b, pt) = st.respond(&first);
    assert_eq!(pt, b"first");
    let mut b_copy = roundtrip(&b);
    // The restored Alice sends what the original would (same randomness);
    // the conversation goes on with the restored copies, and the restored
    // Bob accepts Alice's repeated initial messages.
    assert_twins(&mut a, &mut a_copy, &mut rng, None);
    let mut a = a_copy;
    let a2 = send(&mut a, &mut rng, b"a2");
    assert_eq!(a2[0], MSG_INITIAL);
    assert_twins(&mut b, &mut b_copy, &mut rng, Some(&a2));
    let mut b = b_copy;
    assert_eq!(recv(&mut b, &send(&mut a, &mut rng, b"a3")).unwrap(), b"a3");
    let mut a = roundtrip(&a);
    // Alice after acknowledgment.
    let b1 = send(&mut b, &mut rng, b"b1");
    assert_eq!(recv(&mut a, &b1).unwrap(), b"b1");
    assert!(!a.awaiting_reply());
    let mut a_copy = roundtrip(&a);
    assert!(!a_copy.awaiting_reply());
    assert_twins(&mut a, &mut a_copy, &mut rng, None);
    // Mid-conversation with skipped keys on Bob (the two lost "twin"
    // messages of Alice are skipped keys too).
    let burst: Vec<Vec<u8>> =
        (0..6).map(|i| send(&mut a, &mut rng, format!("burst {i}").as_bytes())).collect();
    for i in [4, 1] {
        assert_eq!(recv(&mut b, &burst[i]).unwrap(), format!("burst {i}").as_bytes());
    }
    assert_eq!(b.skipped_keys(), 5);
    let mut b_copy = roundtrip(&b);
    assert_eq!(b_copy.skipped_keys(), 5);
    assert_eq!(b_copy.sending_index(), b.sending_index());
    // Pending events: a heartbeat and ratchet steps.
    advance(Instant(10_000_000));
    b.handle_timeout(Instant(10_000_000));
    b_copy.handle_timeout(Instant(10_000_000));
    let mut b_copy2 = roundtrip(&b);
    // Restored, it knows no clock until a call passes `now`: due at once.
    assert_eq!(b_copy2.poll_timeout(), Some(Instant::ZERO));
    b_copy2.handle_timeout(Instant(10_000_000));
    assert_eq!(b_copy2.poll_timeout(), b.poll_timeout());
    assert_twins(&mut b, &mut b_copy2, &mut rng, Some(&burst[0]));
    assert_eq!(b_copy.skipped_keys(), 5);
    // The restored Bob decrypts a skipped message, then the rest.
    assert_eq!(recv(&mut b_copy, &burst[2]).unwrap(), b"burst 2");
    assert_eq!(recv(&mut b_copy, &burst[2]).unwrap_err(), Error::Duplicate);
    let mut b = roundtrip(&b_copy);
    for i in [5, 0, 3] {
        assert_eq!(recv(&mut b, &burst[i]).unwrap(), format!("burst {i}").as_bytes());
    }
    assert_eq!(b.skipped_keys(), 2, "the lost twins");
    // Both directions after restores, across DH steps.
    let mut a = roundtrip(&a);
    for round in 0..3 {
        let m = send(&mut b, &mut rng, format!("b{round}").as_bytes());
        let mut a2 = roundtrip(&a);
        assert_eq!(recv(&mut a2, &m).unwrap(), format!("b{round}").as_bytes());
        a = roundtrip(&a2);
        let m = send(&mut a, &mut rng, format!("a{round}").as_bytes());
        b = roundtrip(&b);
        assert_eq!(recv(&mut b, &m).unwrap(), format!("a{round}").as_bytes());
    }
}

#[test]
fn session_roundtrip_and_continue_clear_headers() {
    conversation_states(false);
}

#[test]
fn session_roundtrip_and_continue_encrypted_headers() {
    conversation_states(true);
}

#[test]
fn skipped_message_across_a_dh_step_opens_after_restore() {
    for he in [false, true] {
        let mut st = setup(20 + u64::from(he));
        let mut rng = TestRng::new(5);
        let mut a = st.initiate(he);
        let first = send(&mut a, &mut rng, b"first");
        let (mut b, _) = st.respond(&first);
        let b1 = send(&mut b, &mut rng, b"b1");
        recv(&mut a, &b1).unwrap();
        let lost: Vec<Vec<u8>> = (0..3).map(|i| send(&mut a, &mut rng, &[i; 3])).collect();
        recv(&mut b, &lost[2]).unwrap();
        // Bob steps, Alice steps: the two lost messages belong to an old chain.
        let b2 = send(&mut b, &mut rng, b"b2");
        recv(&mut a, &b2).unwrap();
        let a4 = send(&mut a, &mut rng, b"a4");
        recv(&mut b, &a4).unwrap();
        assert_eq!(b.skipped_keys(), 2);
        let mut b = roundtrip(&b);
        assert_eq!(recv(&mut b, &lost[1]).unwrap(), [1; 3]);
        let mut b = roundtrip(&b);
        assert_eq!(recv(&mut b, &lost[0]).unwrap(), [0; 3]);
        assert_eq!(recv(&mut b, &lost[0]).unwrap_err(), Error::Duplicate);
        assert_eq!(b.skipped_keys(), 0);
    }
}

#[test]
fn pool_roundtrips() {
    let mut st = setup(30);
    let mut rng = TestRng::new(31);
    let fresh = roundtrip(&st.pool);
    assert_eq!(fresh.one_time_ids().collect::<Vec<_>>(), st.pool.one_time_ids().collect::<Vec<_>>());
    // Consume 6 of 8 one-time prekeys (PoolLow at 70 %: pending).
    let ids: Vec<u32> = st.pool.one_time_ids().collect();
    for id in [ids[1], ids[3], ids[4], ids[5], ids[6], ids[7]] {
        let bundle = st.pool.bundle(Some(id));
        let mut a: Session =
            Session::initiate(&st.alice, &bundle, SessionConfig::default(), &mut rng, Instant(0)).unwrap();
        let m = send(&mut a, &mut rng, b"hi");
        st.respond(&m);
    }
    assert_eq!(st.pool.available(), 2);
    let mut copy = roundtrip(&st.pool);
    assert_eq!(copy.metrics(T0), st.pool.metrics(T0));
    // Rotation: a previous signed prekey within its grace period, more events.
    let old_bundle = st.pool.bundle(None);
    st.pool.rotate(&st.bob, &mut rng.clone(), UnixTime(T0.0 + 10)).unwrap();
    copy.rotate(&st.bob, &mut rng, UnixTime(T0.0 + 10)).unwrap();
    let mut copy = roundtrip(&copy);
    assert_eq!(encode(&copy), encode(&st.pool));
    assert_eq!(copy.poll_timeout(), st.pool.poll_timeout());
    let events: Vec<PrekeyEvent> = std::iter::from_fn(|| copy.poll_event()).collect();
    assert_eq!(events, std::iter::from_fn(|| st.pool.poll_event()).collect::<Vec<_>>());
    assert_eq!(
        events,
        [
            PrekeyEvent::PoolLow { available: 2, capacity: 8 },
            PrekeyEvent::SignedPrekeyRotated { id: copy.signed_public().id }
        ]
    );
    // Refill after restore uses the same slots in the same order.
    let mut r1 = TestRng::new(32);
    assert_eq!(copy.refill(&mut r1.clone()), st.pool.refill(&mut r1));
    assert_eq!(copy.one_time_ids().collect::<Vec<_>>(), st.pool.one_time_ids().collect::<Vec<_>>());
    assert_eq!(encode(&copy), encode(&st.pool));
    // The restored pool answers the old bundle (previous signed prekey) and
    // a one-time prekey, and consumes it exactly once.
    let mut restored = roundtrip(&copy);
    let mut a: Session =
        Session::initiate(&st.alice, &old_bundle, SessionConfig::default(), &mut rng, Instant(0)).unwrap();
    let m = send(&mut a, &mut rng, b"late");
    let mut out = [0u8; 64];
    let (_, n) = Session::<128, 128>::respond(
        &st.bob,
        &mut restored,
        &m,
        &mut out,
        SessionConfig::default(),
        Instant(0),
    )
    .unwrap();
    assert_eq!(&out[..n], b"late");
    let id = restored.one_time_ids().last().unwrap();
    let mut a: Session = Session::initiate(
        &st.alice,
        &restored.bundle(Some(id)),
        SessionConfig::default(),
        &mut rng,
        Instant(0),
    )
    .unwrap();
    let m = send(&mut a, &mut rng, b"otk");
    let mut restored = roundtrip(&restored);
    Session::<128, 128>::respond(&st.bob, &mut restored, &m, &mut out, SessionConfig::default(), Instant(0))
        .unwrap();
    let mut restored = roundtrip(&restored);
    assert_eq!(
        Session::<128, 128>::respond(
            &st.bob,
            &mut restored,
            &m,
            &mut out,
            SessionConfig::default(),
            Instant(0)
        )
        .unwrap_err(),
        Error::UnknownPrekey
    );
    // Grace period over: the previous key is erased, in the restored copy too.
    restored.handle_timeout(&st.bob, &mut rng, UnixTime(T0.0 + 10 + 168 * 3600)).unwrap();
    let mut restored = roundtrip(&restored);
    assert!(matches!(restored.poll_event(), Some(PrekeyEvent::PreviousSignedPrekeyErased { .. })));
}

#[test]
fn default_pool_roundtrip() {
    let mut rng = TestRng::new(40);
    let bob = Identity::generate(&mut rng);
    let pool: PrekeyPool = PrekeyPool::new(&bob, &mut rng, T0, PrekeyConfig::default());
    let bytes = encode(&pool);
    assert!(bytes.len() <= PrekeyPool::<200>::MAX_ENCODED_LEN);
    let back = roundtrip(&pool);
    assert_eq!(back.available(), 200);
    println!(
        "default pool: {} bytes encoded, MAX_ENCODED_LEN {}",
        bytes.len(),
        PrekeyPool::<200>::MAX_ENCODED_LEN
    );
}

#[test]
fn sealed_with_generations() {
    let mut st = setup(50);
    let mut rng = TestRng::new(51);
    let mut a = st.initiate(true);
    let first = send(&mut a, &mut rng, b"first");
    let (mut b, _) = st.respond(&first);
    let key = StorageKey::new([0x42; 32]);
    let mut blob5 = vec![0u8; Session::<128, 128>::MAX_SEALED_LEN];
    let n = b.seal_state(&key, 5, &mut rng, &mut blob5).unwrap();
    blob5.truncate(n);
    assert_eq!(envelope::peek_sealed(&blob5).unwrap().0.kind, StateKind::RATCHET_SESSION);
    // The conversation goes on; the caller saves generation 6.
    let a2 = send(&mut a, &mut rng, b"a2");
    recv(&mut b, &a2).unwrap();
    let mut blob6 = vec![0u8; Session::<128, 128>::MAX_SEALED_LEN];
    let n = b.seal_state(&key, 6, &mut rng, &mut blob6).unwrap();
    blob6.truncate(n);
    let mut scratch = vec![0u8; Session::<128, 128>::MAX_BODY_LEN];
    let (mut b6, g) = Session::<128, 128>::open_state(&key, &blob6, 6, &mut scratch).unwrap();
    assert_eq!(g, 6);
    assert!(scratch.iter().all(|x| *x == 0), "scratch wiped");
    assert_eq!(encode(&b6), encode(&b));
    // The older blob is a rollback once generation 6 was seen...
    assert_eq!(
        Session::<128, 128>::open_state(&key, &blob5, 6, &mut scratch).unwrap_err(),
        CoreError::Rollback { found: 5, newest: 6 }
    );
    // ...and would indeed accept a2 a second time.
    let (mut b5, _) = Session::<128, 128>::open_state(&key, &blob5, 5, &mut scratch).unwrap();
    assert_eq!(recv(&mut b5, &a2).unwrap(), b"a2");
    assert_eq!(recv(&mut b6, &a2).unwrap_err(), Error::Duplicate);
    // Wrong key, wrong kind.
    let other = StorageKey::new([0x43; 32]);
    assert_eq!(
        Session::<128, 128>::open_state(&other, &blob6, 0, &mut scratch).unwrap_err(),
        CoreError::Decrypt
    );
    assert_eq!(
        PrekeyPool::<8>::open_state(&key, &blob6, 0, &mut scratch).unwrap_err(),
        CoreError::WrongKind { found: 2, expected: 3 }
    );
    // A pool seals and opens the same way.
    let mut blob = vec![0u8; PrekeyPool::<8>::MAX_SEALED_LEN];
    let n = st.pool.seal_state(&key, 9, &mut rng, &mut blob).unwrap();
    let mut scratch = vec![0u8; PrekeyPool::<8>::MAX_BODY_LEN];
    let (p, g) = PrekeyPool::<8>::open_state(&key, &blob[..n], 9, &mut scratch).unwrap();
    assert_eq!((encode(&p), g), (encode(&st.pool), 9));
    assert_eq!(
        PrekeyPool::<8>::open_state(&key, &blob[..n], 10, &mut scratch).unwrap_err(),
        CoreError::Rollback { found: 9, newest: 10 }
    );
}

#[test]
fn wrong_kind_version_and_suite_refused() {
    let mut st = setup(60);
    let a = st.initiate(false);
    let pool = encode(&st.pool);
    let session = encode(&a);
    assert_eq!(
        Session::<128, 128>::decode_state(&pool).unwrap_err(),
        CoreError::WrongKind { found: 3, expected: 2 }
    );
    assert_eq!(
        PrekeyPool::<8>::decode_state(&session).unwrap_err(),
        CoreError::WrongKind { found: 2, expected: 3 }
    );
    let mut v4 = session.clone();
    v4[6] = 4; // version u16 at 5..7
    assert_eq!(Session::<128, 128>::decode_state(&v4).unwrap_err(), CoreError::UnknownVersion { found: 4 });
    // Version 3 (PQXDH slots) has a section after the events that a
    // version-2 body lacks.
    let mut v3 = session.clone();
    v3[6] = 3;
    assert_eq!(Session::<128, 128>::decode_state(&v3).unwrap_err(), CoreError::Truncated);
    let mut v0 = session.clone();
    v0[6] = 0;
    assert_eq!(Session::<128, 128>::decode_state(&v0).unwrap_err(), CoreError::UnknownVersion { found: 0 });
    let mut suite = session.clone();
    suite[8] = 9; // suite u16 at 7..9
    assert_eq!(Session::<128, 128>::decode_state(&suite).unwrap_err(), CoreError::SuiteMismatch { found: 9 });
}

/// A session body at HEADER_LEN: max_skip 0..2, cap 2..4, ad 4..132,
/// remote 132..260, rk 260..292, dhs flag 292.
const BODY: usize = HEADER_LEN;

#[test]
fn invalid_fields_refused() {
    let mut st = setup(70);
    let mut rng = TestRng::new(71);
    let mut a = st.initiate(true);
    let first = send(&mut a, &mut rng, b"first");
    let bytes = encode(&a);
    let dec = Session::<128, 128>::decode_state;
    let with = |i: usize, v: u8| {
        let mut b = bytes.clone();
        b[i] = v;
        b
    };
    assert_eq!(dec(&with(BODY + 1, 127)).unwrap_err(), CoreError::InvalidValue, "max_skip");
    assert_eq!(
        dec(&with(BODY + 4 + 128 + 40, bytes[BODY + 4 + 128 + 40] ^ 1)).unwrap_err(),
        CoreError::BadSignature
    );
    assert_eq!(bytes[BODY + 292], 1);
    assert_eq!(dec(&with(BODY + 292, 2)).unwrap_err(), CoreError::InvalidValue, "flag");
    let dhs_public = BODY + 292 + 1 + 32;
    assert_eq!(
        dec(&with(dhs_public, bytes[dhs_public] ^ 4)).unwrap_err(),
        CoreError::InvalidValue,
        "dhs public"
    );
    // A body longer than MAX_BODY_LEN is refused before parsing.
    let header = envelope::Header { kind: StateKind::RATCHET_SESSION, version: 1, suite: a.header().suite };
    let mut big = vec![0u8; Session::<128, 128>::MAX_ENCODED_LEN + 1];
    let n =
        envelope::encode(&header, &mut big, |w| w.write_bytes(&[0u8; Session::<128, 128>::MAX_BODY_LEN + 1]))
            .unwrap();
    assert_eq!(dec(&big[..n]).unwrap_err(), CoreError::LengthOverflow);

    // Capacities: MAX_SKIP must match; CAP is accepted when the keys fit.
    let (mut b, _) = st.respond(&first);
    let burst: Vec<Vec<u8>> = (0..4).map(|i| send(&mut a, &mut rng, &[i])).collect();
    recv(&mut b, &burst[3]).unwrap();
    assert_eq!(b.skipped_keys(), 3);
    let bytes = encode(&b);
    assert_eq!(Session::<64, 128>::decode_state(&bytes).unwrap_err(), CoreError::InvalidValue);
    assert_eq!(Session::<128, 2>::decode_state(&bytes).unwrap_err(), CoreError::InvalidValue);
    let mut small = Session::<128, 3>::decode_state(&bytes).unwrap();
    assert_eq!(small.skipped_keys(), 3);
    let mut big = Session::<128, 300>::decode_state(&bytes).unwrap();
    for (i, m) in burst.iter().enumerate().take(3) {
        let mut out = [0u8; 8];
        assert_eq!(small.decrypt(m, &mut out, Instant(9)).unwrap(), 1);
        assert_eq!(out[0], i as u8);
        assert_eq!(big.decrypt(m, &mut out, Instant(9)).unwrap(), 1);
    }
    // Pools: CAP must match exactly.
    let pool = encode(&st.pool);
    assert_eq!(PrekeyPool::<9>::decode_state(&pool).unwrap_err(), CoreError::InvalidValue);
    assert_eq!(PrekeyPool::<7>::decode_state(&pool).unwrap_err(), CoreError::InvalidValue);
    // A one-time prekey twice, or slots out of order, are refused.
    // Pool body: cap 0..2, owner 2..130, count 130..132, entries of 38
    // bytes (slot u16 | id u32 | secret 32).
    let mut dup = pool.clone();
    let (e0, e1) = (BODY + 132, BODY + 132 + 38);
    let id0: Vec<u8> = dup[e0 + 2..e0 + 6].to_vec();
    dup[e1 + 2..e1 + 6].copy_from_slice(&id0);
    assert_eq!(PrekeyPool::<8>::decode_state(&dup).unwrap_err(), CoreError::InvalidValue, "duplicate id");
    let mut order = pool.clone();
    order[e1 + 1] = 0; // second entry claims slot 0 again
    assert_eq!(PrekeyPool::<8>::decode_state(&order).unwrap_err(), CoreError::InvalidValue, "slot order");
    let mut slot = pool.clone();
    slot[e1 + 1] = 8; // slot out of range
    assert_eq!(PrekeyPool::<8>::decode_state(&slot).unwrap_err(), CoreError::InvalidValue, "slot range");
}

/// Every truncation is refused; every single-bit flip and every byte
/// inverted either decodes or is refused, never panics.
/// Bytes in `noncanonical` may decode to a state that re-encodes
/// differently (the session's recorded CAP is rewritten as the reader's).
fn corrupt_never_panics<T: Persist>(bytes: &[u8], noncanonical: core::ops::Range<usize>) -> (usize, usize) {
    for n in 0..bytes.len() {
        assert!(T::decode_state(&bytes[..n]).is_err(), "truncated to {n}");
    }
    let mut accepted = 0;
    let mut tried = 0;
    for i in 0..bytes.len() {
        for mask in [1u8 << (i % 8), 0xff] {
            let mut b = bytes.to_vec();
            b[i] ^= mask;
            tried += 1;
            if let Ok(x) = T::decode_state(&b) {
                // Whatever decodes re-encodes to exactly what was read.
                if !noncanonical.contains(&i) {
                    assert_eq!(encode(&x), b, "byte {i} mask {mask:#x}");
                }
                accepted += 1;
            }
        }
    }
    (accepted, tried)
}

#[test]
fn corrupt_encodings_never_panic() {
    let mut st = setup(80);
    let mut rng = TestRng::new(81);
    let mut a = st.initiate(true);
    let first = send(&mut a, &mut rng, b"first");
    let (mut b, _) = st.respond(&first);
    let burst: Vec<Vec<u8>> = (0..4).map(|i| send(&mut a, &mut rng, &[i])).collect();
    recv(&mut b, &burst[3]).unwrap();
    b.handle_timeout(Instant(u64::MAX / 2));
    let (acc_a, tried_a) = corrupt_never_panics::<Session>(&encode(&a), BODY + 2..BODY + 4);
    let (acc_b, tried_b) = corrupt_never_panics::<Session>(&encode(&b), BODY + 2..BODY + 4);
    let mut small: PrekeyPool<3> = PrekeyPool::new(&st.bob, &mut rng, T0, PrekeyConfig::default());
    small.rotate(&st.bob, &mut rng, T0).unwrap();
    let (acc_p, tried_p) = corrupt_never_panics::<PrekeyPool<3>>(&encode(&small), 0..0);
    println!(
        "corrupt encodings accepted (key bytes, counters): alice {acc_a}/{tried_a}, bob {acc_b}/{tried_b}, pool {acc_p}/{tried_p}"
    );
}

#[test]
fn sizes_of_state_types() {
    use core::mem::size_of;
    let session = size_of::<Session>();
    let pool = size_of::<PrekeyPool>();
    let session_body = Session::<128, 128>::MAX_BODY_LEN;
    let pool_body = PrekeyPool::<200>::MAX_BODY_LEN;
    // Measured (x86_64): Session 12296 (12176 before PQXDH: the KEM slots
    // of the two X3DH headers, 2 * 60), PrekeyPool 15184 (its owner: 128
    // bytes; the last-resort KEM slots of the signed prekeys: 2 * 136).
    // With `KEM_CT = 0` (the default) no room for a ciphertext. Ceilings
    // ~10 % above.
    println!("size_of::<Session>() = {session}, size_of::<PrekeyPool>() = {pool}");
    println!("Session MAX_BODY_LEN = {session_body}, PrekeyPool MAX_BODY_LEN = {pool_body}");
    // The version-3 PQXDH sections (with `pq`): flags, KEM slots, no ciphertext.
    let (pq_body, pq_pool_body) =
        if cfg!(feature = "pq") { (1 + 8 + 1 + 38, 2 + 2 * (1 + 134)) } else { (0, 0) };
    assert!(session <= 13_600, "Session grew: {session}");
    assert!(pool <= 16_700, "PrekeyPool grew: {pool}");
    assert!(size_of::<securemesh_ratchet::PqxdhSession>() <= session + 1600);
    assert_eq!(session_body, 916 + pq_body + 128 * 76);
    assert_eq!(pool_body, 296 + 128 + 200 * 38 + pq_pool_body);
}

#[test]
fn identities_persist_as_their_two_secrets() {
    let mut rng = TestRng::new(90);
    let alice = Identity::generate(&mut rng);
    let bytes = encode(&alice);
    assert_eq!(bytes.len(), HEADER_LEN + 64);
    assert_eq!(&bytes[HEADER_LEN..HEADER_LEN + 32], alice.signing_seed().expose());
    assert_eq!(&bytes[HEADER_LEN + 32..], alice.dh_secret().expose());
    let back = roundtrip(&alice);
    assert_eq!(back.public(), alice.public());
    // The restored identity signs what the original signs (its prekeys).
    let pool: PrekeyPool<2> = PrekeyPool::new(&back, &mut rng, T0, PrekeyConfig::default());
    let mut buf = [0u8; MAX_BUNDLE_LEN];
    let n = pool.bundle(None).encode(&mut buf).unwrap();
    assert_eq!(Bundle::decode(&buf[..n]).unwrap().identity(), alice.public());
    // Other kinds, a short body, and trailing bytes are refused.
    assert!(matches!(Identity::decode_state(&encode(&pool)), Err(CoreError::WrongKind { .. })));
    assert!(Identity::decode_state(&bytes[..bytes.len() - 1]).is_err());
    let mut long = bytes.clone();
    long.push(0);
    assert!(Identity::decode_state(&long).is_err());
}
