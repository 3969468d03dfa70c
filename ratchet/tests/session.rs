//! End-to-end sessions: X3DH from a bundle, then the Double Ratchet with
//! and without header encryption.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use securemesh_core::testing::TestRng;
use securemesh_core::{Instant, UnixTime};
use securemesh_ratchet::{
    Bundle, Error, Identity, MAX_BUNDLE_LEN, PrekeyConfig, PrekeyEvent, PrekeyPool, Session, SessionConfig,
    SessionEvent,
};

const T0: UnixTime = UnixTime(1_700_000_000);

struct Pair {
    a: Session,
    b: Session,
    rng: TestRng,
}

/// Bob with his pool, Alice's session and her first message ("first").
fn first_message(he: bool, seed: u64) -> (Identity, PrekeyPool<8>, Session, Vec<u8>, TestRng) {
    let mut rng = TestRng::new(seed);
    let alice = Identity::generate(&mut rng);
    let bob = Identity::generate(&mut rng);
    let pool: PrekeyPool<8> = PrekeyPool::new(&bob, &mut rng, T0, PrekeyConfig::default());
    let mut buf = [0u8; MAX_BUNDLE_LEN];
    let n = pool.bundle(pool.one_time_ids().next()).encode(&mut buf).unwrap();
    let bundle = Bundle::decode(&buf[..n]).unwrap();
    let cfg = SessionConfig { header_encryption: he, ..SessionConfig::default() };
    let mut a: Session = Session::initiate(&alice, &bundle, cfg, &mut rng, Instant(0)).unwrap();
    let mut wire = vec![0u8; 1024];
    let m = a.encrypt(b"first", &mut wire, &mut rng, Instant(0)).unwrap();
    wire.truncate(m);
    (bob, pool, a, wire, rng)
}

fn start(he: bool, seed: u64) -> (Pair, Vec<u8>) {
    let (bob, mut pool, a, initial, rng) = first_message(he, seed);
    let now = Instant(0);
    let mut out = vec![0u8; 1024];
    let (b, k) =
        Session::respond(&bob, &mut pool, &initial, &mut out, SessionConfig::default(), now).unwrap();
    assert_eq!(&out[..k], b"first");
    // Replaying the initial message cannot open a second session: the
    // one-time prekey is gone.
    assert_eq!(
        Session::<128, 128>::respond(&bob, &mut pool, &initial, &mut out, SessionConfig::default(), now)
            .unwrap_err(),
        Error::UnknownPrekey
    );
    (Pair { a, b, rng }, initial)
}

impl Pair {
    fn send(&mut self, from_a: bool, text: &[u8]) -> Vec<u8> {
        let mut wire = vec![0u8; text.len() + 512];
        let s = if from_a { &mut self.a } else { &mut self.b };
        let n = s.encrypt(text, &mut wire, &mut self.rng, Instant(1)).unwrap();
        wire.truncate(n);
        wire
    }

    fn recv(&mut self, to_a: bool, msg: &[u8]) -> Result<Vec<u8>, Error> {
        let mut out = vec![0u8; msg.len()];
        let s = if to_a { &mut self.a } else { &mut self.b };
        let n = s.decrypt(msg, &mut out, Instant(2))?;
        out.truncate(n);
        Ok(out)
    }
}

fn conversation(he: bool) {
    let (mut p, initial) = start(he, if he { 2 } else { 1 });
    // Alice keeps sending before Bob answers: her messages still carry the
    // X3DH header, and Bob's session accepts them.
    let a2 = p.send(true, b"a2");
    assert_eq!(a2[0], securemesh_ratchet::MSG_INITIAL);
    assert_eq!(p.recv(false, &a2).unwrap(), b"a2");
    // Bob answers: a DH step on both sides.
    let b1 = p.send(false, b"b1");
    assert_eq!(p.recv(true, &b1).unwrap(), b"b1");
    assert!(!p.a.awaiting_reply());
    // A burst from Alice delivered out of order, with a duplicate.
    let burst: Vec<Vec<u8>> = (0..6).map(|i| p.send(true, format!("a-burst-{i}").as_bytes())).collect();
    assert_ne!(burst[0][0], securemesh_ratchet::MSG_INITIAL);
    for i in [3usize, 0, 5, 1] {
        assert_eq!(p.recv(false, &burst[i]).unwrap(), format!("a-burst-{i}").as_bytes());
    }
    assert_eq!(p.b.skipped_keys(), 2);
    assert_eq!(p.recv(false, &burst[3]).unwrap_err(), Error::Duplicate);
    // Bob steps, Alice steps; the late messages of the old chains still open.
    let b2 = p.send(false, b"b2");
    assert_eq!(p.recv(true, &b2).unwrap(), b"b2");
    let a3 = p.send(true, b"a3");
    assert_eq!(p.recv(false, &a3).unwrap(), b"a3");
    assert_eq!(p.recv(false, &burst[4]).unwrap(), b"a-burst-4");
    assert_eq!(p.recv(false, &burst[2]).unwrap(), b"a-burst-2");
    assert_eq!(p.b.skipped_keys(), 0);
    assert_eq!(p.recv(false, &burst[2]).unwrap_err(), Error::Duplicate);
    // The old initial message is a duplicate now, never a new session.
    assert!(p.recv(false, &initial).is_err());
    // Tampering: every bit flip of a message is rejected and the genuine
    // message still opens afterwards.
    let m = p.send(true, b"tamper me");
    for i in 0..m.len() {
        let mut bad = m.clone();
        bad[i] ^= 0x01;
        assert!(p.recv(false, &bad).is_err(), "byte {i}");
    }
    assert_eq!(p.recv(false, &m).unwrap(), b"tamper me");
}

#[test]
fn conversation_clear_headers() {
    conversation(false);
}

#[test]
fn conversation_encrypted_headers() {
    conversation(true);
}

#[test]
fn too_many_skipped_is_refused_and_changes_nothing() {
    let (mut p, _) = start(false, 3);
    let b1 = p.send(false, b"b1");
    p.recv(true, &b1).unwrap();
    let msgs: Vec<Vec<u8>> = (0..140).map(|i| p.send(true, format!("{i}").as_bytes())).collect();
    // 129 skipped keys exceed MAX_SKIP = 128.
    assert_eq!(p.recv(false, &msgs[129]).unwrap_err(), Error::TooManySkipped);
    assert_eq!(p.b.skipped_keys(), 0);
    assert_eq!(p.recv(false, &msgs[128]).unwrap(), b"128");
    assert_eq!(p.b.skipped_keys(), 128);
    assert_eq!(p.recv(false, &msgs[0]).unwrap(), b"0");
}

#[test]
fn heartbeat_events() {
    let (mut p, _) = start(false, 4);
    let deadline = p.b.poll_timeout().unwrap();
    assert_eq!(deadline, Instant(3_600_000));
    p.b.handle_timeout(Instant(3_599_999));
    while let Some(e) = p.b.poll_event() {
        assert_ne!(e, SessionEvent::HeartbeatDue);
    }
    p.b.handle_timeout(deadline);
    assert_eq!(p.b.poll_event(), Some(SessionEvent::HeartbeatDue));
    // An empty heartbeat from Bob steps his ratchet (he has Alice's new key).
    let hb = p.send(false, b"");
    assert_eq!(p.b.poll_event(), Some(SessionEvent::RatchetStepped { sending: true }));
    assert_eq!(p.recv(true, &hb).unwrap(), b"");
}

#[test]
fn prekey_pool_lifecycle() {
    let mut rng = TestRng::new(9);
    let bob = Identity::generate(&mut rng);
    let mut pool: PrekeyPool<10> = PrekeyPool::new(&bob, &mut rng, T0, PrekeyConfig::default());
    assert_eq!(pool.available(), 10);
    let alice = Identity::generate(&mut rng);
    let ids: Vec<u32> = pool.one_time_ids().collect();
    for (i, id) in ids.iter().enumerate().take(7) {
        let bundle = pool.bundle(Some(*id));
        let mut a: Session =
            Session::initiate(&alice, &bundle, SessionConfig::default(), &mut rng, Instant(0)).unwrap();
        let mut wire = [0u8; 512];
        let m = a.encrypt(b"x", &mut wire, &mut rng, Instant(0)).unwrap();
        let mut out = [0u8; 64];
        Session::<128, 128>::respond(
            &bob,
            &mut pool,
            &wire[..m],
            &mut out,
            SessionConfig::default(),
            Instant(0),
        )
        .unwrap();
        let event = pool.poll_event();
        if i < 6 {
            assert_eq!(event, None, "after {} used", i + 1);
        } else {
            assert_eq!(event, Some(PrekeyEvent::PoolLow { available: 3, capacity: 10 }));
        }
    }
    assert_eq!(pool.metrics(T0).utilization_percent, 70);
    assert_eq!(pool.refill(&mut rng), 7);
    // Rotation after 720 h keeps the old signed prekey for the grace period.
    let old = pool.signed_public();
    let due = pool.poll_timeout().unwrap();
    assert_eq!(due, UnixTime(T0.0 + 720 * 3600));
    let old_bundle = pool.bundle(None);
    pool.handle_timeout(&bob, &mut rng, due).unwrap();
    assert!(matches!(pool.poll_event(), Some(PrekeyEvent::SignedPrekeyRotated { .. })));
    assert_ne!(pool.signed_public(), old);
    let mut a: Session =
        Session::initiate(&alice, &old_bundle, SessionConfig::default(), &mut rng, Instant(0)).unwrap();
    let mut wire = [0u8; 512];
    let m = a.encrypt(b"late", &mut wire, &mut rng, Instant(0)).unwrap();
    let mut out = [0u8; 64];
    assert!(
        Session::<128, 128>::respond(
            &bob,
            &mut pool,
            &wire[..m],
            &mut out,
            SessionConfig::default(),
            Instant(0)
        )
        .is_ok()
    );
    pool.handle_timeout(&bob, &mut rng, UnixTime(due.0 + 168 * 3600)).unwrap();
    assert_eq!(pool.poll_event(), Some(PrekeyEvent::PreviousSignedPrekeyErased { id: old.id }));
    assert_eq!(
        Session::<128, 128>::respond(
            &bob,
            &mut pool,
            &wire[..m],
            &mut out,
            SessionConfig::default(),
            Instant(0)
        )
        .unwrap_err(),
        Error::UnknownPrekey
    );
}

/// X25519 ignores bit 255 and accepts unreduced u-coordinates, so every key
/// has other encodings with the same shared secret. `ek_pub` in the X3DH
/// prefix is not authenticated byte for byte (found by the
/// `ratchet_initial_message` fuzz target: bit 255 of `ek_pub` flipped was
/// accepted); every X25519 key read from the wire must be canonical.
#[test]
fn non_canonical_x25519_keys_are_refused() {
    use securemesh_core::envelope::Persist;
    let mut rng = TestRng::new(11);
    let alice = Identity::generate(&mut rng);
    let bob = Identity::generate(&mut rng);
    let mut pool: PrekeyPool<8> = PrekeyPool::new(&bob, &mut rng, T0, PrekeyConfig::default());
    let mut buf = [0u8; MAX_BUNDLE_LEN];
    let n = pool.bundle(pool.one_time_ids().next()).encode(&mut buf).unwrap();
    let bundle_bytes = buf[..n].to_vec();
    let now = Instant(0);
    let encode = |p: &PrekeyPool<8>| {
        let mut v = vec![0u8; PrekeyPool::<8>::MAX_ENCODED_LEN];
        let n = p.encode_state(&mut v).unwrap();
        v.truncate(n);
        v
    };

    // Bundle: identity key (offset 1 + 32), signed prekey (1 + 128 + 4).
    for at in [1 + 32 + 31, 1 + 128 + 4 + 31] {
        let mut bad = bundle_bytes.clone();
        bad[at] ^= 0x80;
        assert_eq!(Bundle::decode(&bad).unwrap_err(), Error::Malformed, "bundle byte {at}");
    }

    let bundle = Bundle::decode(&bundle_bytes).unwrap();
    let mut a: Session = Session::initiate(&alice, &bundle, SessionConfig::default(), &mut rng, now).unwrap();
    let mut wire = vec![0u8; 1024];
    let m = a.encrypt(b"first", &mut wire, &mut rng, now).unwrap();
    let initial = wire[..m].to_vec();
    let before = encode(&pool);
    let mut out = vec![0u8; 1024];

    // Initial message: Alice's identity key (offset 1 + 32), `ek_pub` (129)
    // with bit 255 set, and `ek_pub` as u + p for a small u.
    let mut unreduced = initial.clone();
    unreduced[129..161].copy_from_slice(&{
        let mut p = [0xffu8; 32];
        p[0] = 0xed + 9;
        p[31] = 0x7f;
        p
    });
    let mut forgeries = vec![unreduced];
    for at in [1 + 32 + 31, 129 + 31] {
        let mut bad = initial.clone();
        bad[at] ^= 0x80;
        forgeries.push(bad);
    }
    for bad in &forgeries {
        let r = Session::<128, 128>::respond(&bob, &mut pool, bad, &mut out, SessionConfig::default(), now);
        assert_eq!(r.map(|(_, n)| n).unwrap_err(), Error::Malformed);
        assert_eq!(encode(&pool), before, "a refused initial message changed the pool");
    }
    let (mut b, k) =
        Session::<128, 128>::respond(&bob, &mut pool, &initial, &mut out, SessionConfig::default(), now)
            .unwrap();
    assert_eq!(&out[..k], b"first");

    // Ratchet header: Bob's ratchet key with bit 255 set.
    let m = b.encrypt(b"reply", &mut wire, &mut rng, now).unwrap();
    let reply = wire[..m].to_vec();
    let mut bad = reply.clone();
    bad[1 + 31] ^= 0x80;
    assert_eq!(a.decrypt(&bad, &mut out, now).unwrap_err(), Error::Malformed);
    let k = a.decrypt(&reply, &mut out, now).unwrap();
    assert_eq!(&out[..k], b"reply");
}

/// A bundle is verified by construction: a KEM prekey is attached only
/// with a valid signature by the bundle's identity.
#[test]
fn kem_prekeys_are_attached_only_when_signed_by_the_identity() {
    use securemesh_ratchet::{KemPrekey, MAX_KEM_PUBLIC_LEN};
    let mut rng = TestRng::new(12);
    let bob = Identity::generate(&mut rng);
    let mallory = Identity::generate(&mut rng);
    let pool: PrekeyPool<2> = PrekeyPool::new(&bob, &mut rng, T0, PrekeyConfig::default());
    let public = [0x42u8; 1184];
    let genuine = KemPrekey::sign(&bob, 9, 1, &public).unwrap();
    let bundle = pool.bundle(None).with_kem(genuine).unwrap();
    assert_eq!(bundle.kem(), Some(&genuine));
    // Through the wire and back: the same bundle.
    let mut buf = [0u8; MAX_BUNDLE_LEN];
    let n = bundle.encode(&mut buf).unwrap();
    assert_eq!(Bundle::decode(&buf[..n]).unwrap(), bundle);
    // Signed by someone else, or changed after signing: refused.
    let forged = KemPrekey::sign(&mallory, 9, 1, &public).unwrap();
    assert_eq!(pool.bundle(None).with_kem(forged).unwrap_err(), Error::BadSignature);
    let changed = KemPrekey { id: 10, ..genuine };
    assert_eq!(pool.bundle(None).with_kem(changed).unwrap_err(), Error::BadSignature);
    let long = [0u8; MAX_KEM_PUBLIC_LEN + 1];
    assert_eq!(KemPrekey::sign(&bob, 1, 1, &long).unwrap_err(), Error::Malformed);
}

/// Bob's `respond` at time 0.
fn respond<const P: usize>(
    bob: &Identity,
    pool: &mut PrekeyPool<P>,
    msg: &[u8],
    out: &mut [u8],
    cfg: SessionConfig,
) -> Result<(Session, usize), Error> {
    Session::respond(bob, pool, msg, out, cfg, Instant(0))
}

#[test]
fn a_responder_can_require_header_encryption() {
    for (alice_he, bob_requires, ok) in
        [(false, false, true), (true, false, true), (true, true, true), (false, true, false)]
    {
        let (bob, mut pool, mut a, wire, mut rng) = first_message(alice_he, 40);
        let m = wire.len();
        let mut out = vec![0u8; 512];
        let bob_cfg = SessionConfig { header_encryption: bob_requires, ..SessionConfig::default() };
        let r = respond(&bob, &mut pool, &wire[..m], &mut out, bob_cfg);
        if ok {
            let (b, k) = r.unwrap();
            assert_eq!(&out[..k], b"first");
            // The session runs in Alice's mode whatever Bob's setting.
            let mut reply = vec![0u8; 512];
            let mut b = b;
            let n = b.encrypt(b"ok", &mut reply, &mut rng, Instant(0)).unwrap();
            assert_eq!(
                reply[0],
                if alice_he { securemesh_ratchet::MSG_RATCHET_HE } else { securemesh_ratchet::MSG_RATCHET }
            );
            assert_eq!(a.decrypt(&reply[..n], &mut out, Instant(0)).unwrap(), 2);
        } else {
            assert_eq!(r.unwrap_err(), Error::HeaderEncryptionRequired);
            // Nothing consumed: the same message is accepted by a responder
            // that does not require it.
            assert!(respond(&bob, &mut pool, &wire[..m], &mut out, SessionConfig::default()).is_ok());
        }
    }
}
