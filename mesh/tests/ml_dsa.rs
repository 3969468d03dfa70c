//! Hybrid identities (feature `ml-dsa`): version-3 bundles signed by the
//! Ed25519 identity key and the agent's ML-DSA-65 key, exchanged between
//! two agents and a PQXDH session made from one; the peer's ML-DSA key
//! pinned by its introduction or on first use; a stripped (classical)
//! bundle and another ML-DSA key refused with the state unchanged;
//! persist/restore of the seed and the pins (and a record without them);
//! `Require` refusing classical bundles.
//!
//! Every test runs on a thread with a 64 MiB stack: ML-DSA-65 expands its
//! keys on the stack (64 KiB to sign, more unoptimised), and agents are
//! moved by value through several frames of a debug build.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use securemesh::peer::{DirectoryError, MlDsaPin, PeerInfo};
use securemesh::{
    Channel, Config, DefaultAgent, Delivery, Error, PeerId, Permissions, PqMode, PqStatus, RecordId, Roles,
    SessionKind,
};
use securemesh_core::envelope::{self, StorageKey};
use securemesh_core::testing::TestRng;
use securemesh_ratchet::{
    Bundle, Error as RatchetError, HYBRID_SIG_LEN, Identity, MAX_BUNDLE_LEN, MAX_HYBRID_BUNDLE_LEN,
    PQ_PUBLIC_LEN,
};

mod common;
use common::{T0, TASK, WALL, WORKER, transmits};

/// Run `f` on a thread with a 64 MiB stack.
fn on_big_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
}

/// An agent of mode `pq` whose identity comes from `identity_seed` and the
/// rest (prekeys, ML-DSA key) from `seed`, with `WORKER` defined.
fn agent_with(identity_seed: u64, seed: u64, pq: PqMode) -> (Box<DefaultAgent>, TestRng) {
    let identity = Identity::generate(&mut TestRng::new(identity_seed));
    let mut rng = TestRng::new(seed);
    let mut a = Box::new(DefaultAgent::new_pq(identity, Config::default(), pq, &mut rng, WALL));
    a.policy_mut().define_role(WORKER, Permissions::of(&[TASK])).unwrap();
    (a, rng)
}

fn agent(seed: u64, pq: PqMode) -> (Box<DefaultAgent>, TestRng) {
    agent_with(seed, seed.rotate_left(17) ^ 0x5a5a_0000_0000, pq)
}

fn hybrid_bundle(a: &DefaultAgent, rng: &mut TestRng) -> Vec<u8> {
    let mut buf = vec![0u8; MAX_HYBRID_BUNDLE_LEN];
    let n = a.bundle_hybrid(&mut buf, rng).unwrap();
    buf.truncate(n);
    buf
}

fn classical_bundle(a: &DefaultAgent) -> Vec<u8> {
    let mut buf = [0u8; MAX_BUNDLE_LEN];
    let n = a.bundle(&mut buf).unwrap();
    buf[..n].to_vec()
}

/// `hybrid` with its ML-DSA section cut off and the version set to 1: a
/// well-formed classical bundle of the same prekeys (what an attacker
/// who strips the section would hand over).
fn stripped(hybrid: &[u8]) -> Vec<u8> {
    let b = Bundle::decode(hybrid).unwrap();
    let sigs = if b.kem().is_some() { 2 } else { 1 };
    let mut s = hybrid[..hybrid.len() - PQ_PUBLIC_LEN - sigs * HYBRID_SIG_LEN].to_vec();
    s[0] = securemesh_ratchet::BUNDLE_VERSION;
    let c = Bundle::decode(&s).expect("a valid classical bundle");
    assert_eq!((c.identity(), c.signed(), c.kem()), (b.identity(), b.signed(), b.kem()));
    assert!(c.pq().is_none());
    s
}

/// What a refused bundle must leave as it was: the directory entry, a
/// record pending, the pinned peers and accepted hybrid bundles.
type Snapshot = (Option<PeerInfo>, bool, u32, u64);

fn snapshot(a: &DefaultAgent, peer: &PeerId) -> Snapshot {
    let m = a.metrics();
    (a.directory().get(peer).copied(), a.persist_pending(), m.ml_dsa_pinned, m.hybrid_bundles)
}

/// Store `bundle` at `a` and expect it refused with `err`, the state
/// unchanged and one more post-quantum refusal counted.
fn refused(a: &mut DefaultAgent, peer: &PeerId, bundle: &[u8], err: Error) {
    let before = snapshot(a, peer);
    let refusals = a.metrics().pq_refused;
    assert_eq!(a.set_peer_bundle(bundle), Err(err));
    assert_eq!(snapshot(a, peer), before);
    assert_eq!(a.metrics().pq_refused, refusals + 1);
}

fn downgrade() -> Error {
    Error::Directory(DirectoryError::BadBundle(RatchetError::Downgrade))
}

fn other_key() -> Error {
    Error::Directory(DirectoryError::BadBundle(RatchetError::WrongIdentity))
}

/// Persistence on, every pending record handed out; returns the agent
/// record (blob, generation) if it was among them.
fn drain(a: &mut DefaultAgent, rng: &mut TestRng) -> Option<(Vec<u8>, u64)> {
    let mut rec = vec![0u8; DefaultAgent::MAX_RECORD_LEN];
    let mut agent = None;
    while let Some(r) = a.poll_persist(&mut rec, rng).unwrap() {
        if r.id == RecordId::Agent {
            agent = Some((rec[..r.len].to_vec(), r.generation));
        }
    }
    agent
}

fn restore(key: [u8; 32], blob: &[u8], generation: u64) -> Box<DefaultAgent> {
    let mut scratch = vec![0u8; DefaultAgent::MAX_RECORD_LEN];
    Box::new(
        DefaultAgent::restore(StorageKey::new(key), Config::default(), blob, generation, &mut scratch)
            .unwrap(),
    )
}

/// Two agents in `Prefer`: Bob publishes a hybrid bundle (version 3, with
/// the ML-KEM-768 prekey); Alice verifies it and pins Bob's ML-DSA key on
/// first use, keeps the bundle without its ML-DSA section, and opens a
/// PQXDH session from it through Bob's mailbox; Bob, who was introduced
/// to Alice with her pin, reads it. Both report the session hybrid.
#[test]
fn hybrid_bundles_pin_on_first_use_and_open_a_pqxdh_session() {
    on_big_stack(|| {
        let (mut alice, mut ra) = agent(0x7A11_0001, PqMode::Prefer);
        let (mut bob, mut rb) = agent(0x7B0B_0001, PqMode::Prefer);
        let wire = hybrid_bundle(&bob, &mut rb);
        assert_eq!(wire[0], securemesh_ratchet::BUNDLE_VERSION_HYBRID);
        let decoded = Bundle::decode(&wire).unwrap();
        assert!(decoded.kem().is_some());
        assert_eq!(Some(MlDsaPin::of(decoded.pq().unwrap().public())), bob.ml_dsa_pin());

        let bob_id = alice.set_peer_bundle(&wire).unwrap();
        assert_eq!(bob_id, bob.peer_id());
        let info = alice.directory().get(&bob_id).unwrap();
        assert_eq!(info.ml_dsa_pin().copied(), bob.ml_dsa_pin());
        let stored = info.bundle().unwrap();
        assert!(stored.is_hybrid_signed() && stored.has_kem() && info.is_hybrid());
        assert!(stored.as_bytes().len() <= securemesh::peer::MAX_STORED_BUNDLE_LEN);
        assert_eq!(stored.as_bytes(), stripped(&wire).as_slice());
        let m = alice.metrics();
        assert_eq!((m.hybrid_bundles, m.ml_dsa_pinned, m.pq_refused), (1, 1, 0));

        alice.policy_mut().grant(bob_id, Roles::of(&[WORKER])).unwrap();
        let alice_id =
            bob.add_peer_identity_pinned(alice.public_identity(), &alice.ml_dsa_pin().unwrap()).unwrap();
        bob.policy_mut().grant(alice_id, Roles::of(&[WORKER])).unwrap();
        assert_eq!(bob.metrics().ml_dsa_pinned, 1);

        let route = alice.send(&bob_id, TASK, b"inspect valve 7", T0, &mut ra).unwrap();
        assert_eq!(route.channel, Channel::RatchetX3dh);
        let out = transmits(&mut alice);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].1, Delivery::Mailbox);
        let mut buf = [0u8; 2048];
        let r = bob.handle_input(&out[0].2, &mut buf, T0, &mut rb).unwrap().unwrap();
        assert_eq!((r.from, &buf[..r.len]), (alice_id, &b"inspect valve 7"[..]));
        for a in [&alice, &bob] {
            let s: Vec<_> = a.sessions().filter(|s| s.kind == SessionKind::Ratchet).map(|s| s.pq).collect();
            assert_eq!(s, [PqStatus::Hybrid]);
            assert_eq!(a.metrics().pqxdh_sessions, 1);
        }
        // The bundle's one-time prekeys are spent; the pin stays.
        let info = alice.directory().get(&bob_id).unwrap();
        assert!(info.bundle().is_none());
        assert_eq!(info.ml_dsa_pin().copied(), bob.ml_dsa_pin());

        // Bob answers through Alice's mailbox.
        bob.send(&alice_id, TASK, b"valve 7 shut", T0, &mut rb).unwrap();
        let (at_alice, _) = common::pump(&mut alice, &mut ra, &mut bob, &mut rb, false);
        assert_eq!(at_alice.len(), 1);
        assert_eq!(at_alice[0].1, b"valve 7 shut");
    });
}

/// A peer pinned by its introduction: its stripped bundle is a downgrade
/// and a bundle with another ML-DSA key (same Ed25519 identity) is
/// refused, each with the state unchanged, in every mode (under
/// `Require` the classical bundle is refused before the pin is looked at,
/// as every classical bundle is). A stored classical bundle is dropped
/// when the pin arrives, and another pin is refused.
#[test]
fn a_pin_by_introduction_refuses_stripped_bundles_and_other_keys() {
    on_big_stack(|| {
        for (i, mode) in [PqMode::Off, PqMode::Prefer, PqMode::Require].into_iter().enumerate() {
            let i = i as u64;
            let (mut alice, _) = agent(0x7A11_1000 + 0x100 * i, mode);
            // Bob, and "Bob" with the same identity and another ML-DSA key.
            let bob_mode = if mode == PqMode::Off { PqMode::Off } else { PqMode::Prefer };
            let (bob, mut rb) = agent_with(0x7B0B_1000 + 0x100 * i, 0x5EED_1000 + 0x100 * i, bob_mode);
            let (forger, mut rf) =
                agent_with(0x7B0B_1000 + 0x100 * i, 0xF0F0_1000 + 0x100 * i, PqMode::Prefer);
            assert_eq!(forger.peer_id(), bob.peer_id());
            assert_ne!(forger.ml_dsa_pin(), bob.ml_dsa_pin());

            // A classical bundle stored before the pin is dropped by it.
            let classical = classical_bundle(&bob);
            if mode != PqMode::Require {
                alice.set_peer_bundle(&classical).unwrap();
                assert!(alice.directory().get(&bob.peer_id()).unwrap().bundle().is_some());
            }
            let pin = bob.ml_dsa_pin().unwrap();
            let bob_id = alice.add_peer_identity_pinned(bob.public_identity(), &pin).unwrap();
            let info = alice.directory().get(&bob_id).unwrap();
            assert!(info.bundle().is_none());
            assert_eq!(info.ml_dsa_pin(), Some(&pin));
            assert_eq!(
                alice.add_peer_identity_pinned(bob.public_identity(), &forger.ml_dsa_pin().unwrap()),
                Err(Error::Directory(DirectoryError::PinMismatch))
            );
            alice.add_peer_identity_pinned(bob.public_identity(), &pin).unwrap();

            alice.enable_persistence(StorageKey::new([0x33; 32]));
            let mut rng = TestRng::new(0x1234_5678);
            drain(&mut alice, &mut rng);

            match mode {
                PqMode::Off => {
                    // Bob's X3DH bundle: the pin makes it a downgrade.
                    refused(&mut alice, &bob_id, &classical, downgrade());
                    // A hybrid bundle is not run in Off at all.
                    let forged = hybrid_bundle(&forger, &mut rf);
                    refused(&mut alice, &bob_id, &forged, Error::PqUnavailable);
                }
                _ => {
                    let hybrid = hybrid_bundle(&bob, &mut rb);
                    let classical_err = if mode == PqMode::Require { Error::PqRequired } else { downgrade() };
                    refused(&mut alice, &bob_id, &stripped(&hybrid), classical_err);
                    refused(&mut alice, &bob_id, &classical, classical_err);
                    refused(&mut alice, &bob_id, &hybrid_bundle(&forger, &mut rf), other_key());
                    // Bob's own hybrid bundle is taken.
                    alice.set_peer_bundle(&hybrid).unwrap();
                    let info = alice.directory().get(&bob_id).unwrap();
                    assert!(info.bundle().unwrap().is_hybrid_signed());
                    assert_eq!(info.ml_dsa_pin(), Some(&pin));
                    assert_eq!(alice.metrics().hybrid_bundles, 1);
                }
            }
        }
    });
}

/// Trust on first use: the first verified hybrid bundle pins the key;
/// afterwards the stripped bundle and another key are refused with the
/// state unchanged, and a newer hybrid bundle of the same key replaces
/// the stored one.
#[test]
fn a_pin_on_first_use_refuses_stripped_bundles_and_other_keys() {
    on_big_stack(|| {
        let (mut alice, mut ra) = agent(0x7A11_2001, PqMode::Prefer);
        let (bob, mut rb) = agent_with(0x7B0B_2001, 0x5EED_2001, PqMode::Prefer);
        let (forger, mut rf) = agent_with(0x7B0B_2001, 0xF0F0_2001, PqMode::Prefer);
        // Before any pin, a classical bundle is taken as before.
        let bob_id = alice.set_peer_bundle(&classical_bundle(&bob)).unwrap();
        assert!(alice.directory().get(&bob_id).unwrap().ml_dsa_pin().is_none());

        let first = hybrid_bundle(&bob, &mut rb);
        alice.set_peer_bundle(&first).unwrap();
        assert_eq!(alice.directory().get(&bob_id).unwrap().ml_dsa_pin().copied(), bob.ml_dsa_pin());
        alice.enable_persistence(StorageKey::new([0x44; 32]));
        drain(&mut alice, &mut ra);

        refused(&mut alice, &bob_id, &stripped(&first), downgrade());
        refused(&mut alice, &bob_id, &classical_bundle(&bob), downgrade());
        refused(&mut alice, &bob_id, &hybrid_bundle(&forger, &mut rf), other_key());
        assert_eq!(alice.metrics().pq_refused, 3);

        // A tampered ML-DSA signature fails to decode, as any bad bundle.
        let mut tampered = first.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        let before = snapshot(&alice, &bob_id);
        assert!(matches!(
            alice.set_peer_bundle(&tampered),
            Err(Error::Directory(DirectoryError::BadBundle(
                RatchetError::BadSignature | RatchetError::Malformed
            )))
        ));
        assert_eq!(snapshot(&alice, &bob_id), before);

        let next = hybrid_bundle(&bob, &mut rb);
        alice.set_peer_bundle(&next).unwrap();
        assert_eq!(alice.directory().get(&bob_id).unwrap().bundle().unwrap().as_bytes(), stripped(&next));
        assert_eq!(alice.metrics().hybrid_bundles, 2);
        assert!(alice.persist_pending());
    });
}

/// The ML-DSA seed and the pins are in the agent record: the restored
/// agent has the same ML-DSA key (its hybrid bundles carry the pin its
/// peers hold), the same pins and the stored hybrid bundle, and still
/// refuses the stripped bundle; it opens PQXDH from the stored bundle.
#[test]
fn persist_and_restore_keep_the_seed_and_the_pins() {
    on_big_stack(|| {
        let key = [0x55; 32];
        let (mut alice, mut ra) = agent(0x7A11_3001, PqMode::Prefer);
        let (mut bob, mut rb) = agent(0x7B0B_3001, PqMode::Prefer);
        let (carol, _) = agent(0x7CA7_3001, PqMode::Prefer);
        alice.enable_persistence(StorageKey::new(key));
        let bob_bundle = hybrid_bundle(&bob, &mut rb);
        let bob_id = alice.set_peer_bundle(&bob_bundle).unwrap();
        alice.policy_mut().grant(bob_id, Roles::of(&[WORKER])).unwrap();
        let carol_pin = carol.ml_dsa_pin().unwrap();
        let carol_id = alice.add_peer_identity_pinned(carol.public_identity(), &carol_pin).unwrap();
        let (blob, generation) = drain(&mut alice, &mut ra).unwrap();
        assert!(blob.len() <= DefaultAgent::MAX_AGENT_RECORD_LEN);

        let mut back = restore(key, &blob, generation);
        assert_eq!(back.ml_dsa_pin(), alice.ml_dsa_pin());
        // Reachability is not persisted (false in both here).
        assert_eq!(back.directory().get(&bob_id), alice.directory().get(&bob_id));
        assert_eq!(back.directory().get(&carol_id).unwrap().ml_dsa_pin(), Some(&carol_pin));
        assert!(back.directory().get(&bob_id).unwrap().bundle().unwrap().is_hybrid_signed());
        assert_eq!(back.metrics().ml_dsa_pinned, 2);
        let again = hybrid_bundle(&back, &mut ra);
        let pq = *Bundle::decode(&again).unwrap().pq().unwrap().public();
        assert_eq!(Some(MlDsaPin::of(&pq)), alice.ml_dsa_pin());
        refused(&mut back, &bob_id, &stripped(&bob_bundle), downgrade());

        // PQXDH from the restored bundle.
        let alice_id =
            bob.add_peer_identity_pinned(back.public_identity(), &back.ml_dsa_pin().unwrap()).unwrap();
        bob.policy_mut().grant(alice_id, Roles::of(&[WORKER])).unwrap();
        back.send(&bob_id, TASK, b"after restart", T0, &mut ra).unwrap();
        drain(&mut back, &mut ra);
        let (_, at_bob) = common::pump(&mut back, &mut ra, &mut bob, &mut rb, false);
        assert_eq!(at_bob.len(), 1);
        assert_eq!(at_bob[0].1, b"after restart");
        assert_eq!(back.metrics().ratchet_pq, PqStatus::Hybrid);
    });
}

/// An agent record written without the ML-DSA section (before the
/// feature, or by an agent without the key) restores as before: no
/// ML-DSA key (no hybrid bundle: `PqUnavailable`), its mode, its
/// directory; the record it writes again has no section either.
#[test]
fn a_record_without_the_ml_dsa_seed_restores_as_before() {
    on_big_stack(|| {
        let key = [0x66; 32];
        let (mut alice, mut ra) = agent(0x7A11_4001, PqMode::Require);
        let (bob, mut rb) = agent(0x7B0B_4001, PqMode::Prefer);
        alice.enable_persistence(StorageKey::new(key));
        alice.set_peer_bundle(&hybrid_bundle(&bob, &mut rb)).unwrap();
        let (blob, generation) = drain(&mut alice, &mut ra).unwrap();

        // The same record without its last 33 bytes (tag 1, seed).
        let mut scratch = vec![0u8; blob.len()];
        let opened = envelope::open(&StorageKey::new(key), &blob, 0, &mut scratch).unwrap();
        let (header, body) = (opened.header, opened.body.to_vec());
        assert_eq!(body[body.len() - 33], 1);
        let mut old = vec![0u8; blob.len()];
        let n = envelope::seal(&StorageKey::new(key), &header, generation, &mut ra, &mut old, |w| {
            w.write_bytes(&body[..body.len() - 33])
        })
        .unwrap();

        let mut back = restore(key, &old[..n], generation);
        assert_eq!(back.pq_mode(), PqMode::Require);
        assert_eq!(back.ml_dsa_pin(), None);
        let mut buf = vec![0u8; MAX_HYBRID_BUNDLE_LEN];
        assert_eq!(back.bundle_hybrid(&mut buf, &mut ra), Err(Error::PqUnavailable));
        assert_eq!(back.directory().get(&bob.peer_id()).unwrap().ml_dsa_pin().copied(), bob.ml_dsa_pin());
        // Its next record has no ML-DSA section: the same body.
        back.set_pq_mode(PqMode::Prefer);
        back.set_pq_mode(PqMode::Require);
        let (blob2, g2) = drain(&mut back, &mut ra).unwrap();
        let mut scratch = vec![0u8; blob2.len()];
        let reopened = envelope::open(&StorageKey::new(key), &blob2, g2, &mut scratch).unwrap();
        assert_eq!(reopened.body, &body[..body.len() - 33]);
    });
}

/// `Require` refuses a bundle without the ML-DSA section (`PqRequired`,
/// state unchanged, counted) and a classical handshake, as it did;
/// `Off` refuses a hybrid one
/// (`PqUnavailable`), as it refuses every hybrid input.
#[test]
fn require_refuses_classical_bundles_and_off_refuses_hybrid_ones() {
    on_big_stack(|| {
        let (mut strict, _) = agent(0x7A11_5001, PqMode::Require);
        let (mut off, _) = agent(0x0FF0_5001, PqMode::Off);
        let (bob, mut rb) = agent(0x7B0B_5001, PqMode::Prefer);
        let (dave, _) = agent(0xDA7E_5001, PqMode::Off);
        let bob_id = bob.peer_id();
        refused(&mut strict, &bob_id, &classical_bundle(&bob), Error::PqRequired);
        refused(&mut strict, &dave.peer_id(), &classical_bundle(&dave), Error::PqRequired);
        assert!(strict.directory().is_empty());
        strict.set_peer_bundle(&hybrid_bundle(&bob, &mut rb)).unwrap();
        assert_eq!(strict.metrics().hybrid_bundles, 1);

        // A classical IK handshake of a known peer is refused as without
        // the feature.
        let (mut dave, mut rd) = (dave, TestRng::new(0xDA7E_5002));
        let dave_id = strict.add_peer_identity(dave.public_identity()).unwrap();
        strict.policy_mut().grant(dave_id, Roles::of(&[WORKER])).unwrap();
        let strict_id = dave.add_peer_identity(strict.public_identity()).unwrap();
        dave.set_reachable(&strict_id, true).unwrap();
        dave.send(&strict_id, TASK, b"classical hello", T0, &mut rd).unwrap();
        let ik = transmits(&mut dave);
        let refusals = strict.metrics().pq_refused;
        let mut out = [0u8; 2048];
        let mut rs = TestRng::new(0x7A11_5002);
        assert_eq!(strict.handle_input(&ik[0].2, &mut out, T0, &mut rs), Err(Error::PqRequired));
        assert_eq!(strict.metrics().pq_refused, refusals + 1);
        assert!(strict.sessions().next().is_none());

        refused(&mut off, &bob_id, &hybrid_bundle(&bob, &mut rb), Error::PqUnavailable);
        let mut buf = vec![0u8; MAX_HYBRID_BUNDLE_LEN];
        let mut r = TestRng::new(0x0FF0_5002);
        assert_eq!(off.bundle_hybrid(&mut buf, &mut r), Err(Error::PqUnavailable));
        // Off keeps taking classical bundles of unpinned peers.
        let (carol, _) = agent(0xCA70_5001, PqMode::Off);
        off.set_peer_bundle(&classical_bundle(&carol)).unwrap();
    });
}

/// The figures the report quotes (with `--nocapture`).
#[test]
fn size_figures() {
    on_big_stack(|| {
        let (a, mut ra) = agent(0x5123_6001, PqMode::Prefer);
        let (b, mut rb) = agent(0x5123_6002, PqMode::Off);
        let with_kem = hybrid_bundle(&a, &mut ra).len();
        let mut no_kem = vec![0u8; MAX_HYBRID_BUNDLE_LEN];
        let mut b = b;
        b.set_pq_mode(PqMode::Prefer);
        let no_kem = b.bundle_hybrid(&mut no_kem, &mut rb).unwrap();
        println!(
            "ml-dsa size_of::<DefaultAgent>()={} MAX_AGENT_RECORD_LEN={} MAX_STORED_BUNDLE_LEN={} hybrid bundle={no_kem} (with ML-KEM-768 prekey {with_kem})",
            core::mem::size_of::<DefaultAgent>(),
            DefaultAgent::MAX_AGENT_RECORD_LEN,
            securemesh::peer::MAX_STORED_BUNDLE_LEN,
        );
        assert!(with_kem <= MAX_HYBRID_BUNDLE_LEN && no_kem < with_kem);
    });
}
