//! Persistence, key lifecycle and metrics of the agent (issue #9, slice
//! 2): sealed records handed out before transmits, restore, rollback,
//! crashes after every call, prekey refill and rotation, ratchet
//! heartbeats, and the metrics struct.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use common::{T0, TASK, WALL, WORKER};
use securemesh::envelope::Envelope;
use securemesh::{
    ChannelKind, Config, DefaultAgent, Delivery, Error, Event, PeerId, Permissions, PqStatus, RecordId,
    Roles, SessionId, SessionKind,
};
use securemesh_core::envelope::StorageKey;
use securemesh_core::testing::TestRng;
use securemesh_core::{Instant, UnixTime};
use securemesh_ratchet::{Identity, PrekeyConfig, SessionConfig};
use std::collections::{BTreeMap, HashSet};

const REC: usize = DefaultAgent::MAX_RECORD_LEN;

fn key(b: u8) -> StorageKey {
    StorageKey::new([b; 32])
}

fn agent_with(seed: u64, config: Config, storage: Option<StorageKey>) -> (Box<DefaultAgent>, TestRng) {
    let mut rng = TestRng::new(seed);
    let identity = Identity::generate(&mut rng);
    let mut a = Box::new(DefaultAgent::new(identity, config, &mut rng, WALL));
    if let Some(k) = storage {
        a.enable_persistence(k);
    }
    a.policy_mut().define_role(WORKER, Permissions::of(&[TASK])).unwrap();
    (a, rng)
}

fn agent(seed: u64, storage: Option<StorageKey>) -> (Box<DefaultAgent>, TestRng) {
    agent_with(seed, Config::default(), storage)
}

fn know(a: &mut DefaultAgent, b: &DefaultAgent, reachable: bool) -> PeerId {
    let id = a.add_peer_identity(b.public_identity()).unwrap();
    a.policy_mut().grant(id, Roles::of(&[WORKER])).unwrap();
    a.set_reachable(&id, reachable).unwrap();
    id
}

/// The host's store: the newest blob and generation of each record, and
/// every blob ever written (to try rollbacks with).
#[derive(Default, Clone)]
struct Store {
    records: BTreeMap<RecordId, (Vec<u8>, u64)>,
    history: Vec<(RecordId, u64, Vec<u8>)>,
}

impl Store {
    /// Store every pending record (generations strictly increasing per record).
    fn drain(&mut self, a: &mut DefaultAgent, rng: &mut TestRng) -> usize {
        let mut buf = vec![0u8; REC];
        let mut n = 0;
        while let Some(r) = a.poll_persist(&mut buf, rng).unwrap() {
            if let Some((_, g)) = self.records.get(&r.id) {
                assert!(r.generation > *g, "{:?}: generation {} after {}", r.id, r.generation, g);
            }
            self.records.insert(r.id, (buf[..r.len].to_vec(), r.generation));
            self.history.push((r.id, r.generation, buf[..r.len].to_vec()));
            n += 1;
        }
        n
    }

    /// A new process: the agent rebuilt from the records alone.
    fn restore(&self, k: u8) -> Box<DefaultAgent> {
        let mut scratch = vec![0u8; REC];
        let (blob, g) = &self.records[&RecordId::Agent];
        let mut a =
            Box::new(DefaultAgent::restore(key(k), Config::default(), blob, *g, &mut scratch).unwrap());
        for (id, (blob, g)) in &self.records {
            if *id != RecordId::Agent {
                assert_eq!(a.restore_record(blob, *g, &mut scratch).unwrap(), *id);
            }
        }
        assert!(scratch.iter().all(|b| *b == 0), "scratch wiped");
        a
    }
}

fn transmits(a: &mut DefaultAgent) -> Vec<(PeerId, Delivery, Vec<u8>)> {
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    while let Some(t) = a.poll_transmit(&mut buf).unwrap() {
        out.push((t.to, t.delivery, buf[..t.len].to_vec()));
    }
    out
}

fn events(a: &mut DefaultAgent) -> Vec<Event> {
    core::iter::from_fn(|| a.poll_event()).collect()
}

/// Alice (persistent under key 1) and Bob (key 2): Alice holds Bob's
/// bundle, both grant each other, both see each other offline.
fn mailbox_pair(seed: u64) -> (Box<DefaultAgent>, TestRng, Box<DefaultAgent>, TestRng) {
    let (mut alice, ra) = agent(seed, Some(key(1)));
    let (mut bob, rb) = agent(seed ^ 0xB0B, Some(key(2)));
    let mut bundle = [0u8; securemesh_ratchet::MAX_BUNDLE_LEN];
    let n = bob.bundle(&mut bundle).unwrap();
    let bob_id = alice.set_peer_bundle(&bundle[..n]).unwrap();
    alice.policy_mut().grant(bob_id, Roles::of(&[WORKER])).unwrap();
    know(&mut bob, &alice, false);
    (alice, ra, bob, rb)
}

/// What a call produced is released only after its records were handed
/// out: `poll_transmit` gives nothing while a record is pending, and the
/// events name each record with its generation.
#[test]
fn transmits_wait_for_the_records() {
    let (mut alice, mut ra, bob, _) = mailbox_pair(0x5101);
    let mut store = Store::default();
    store.drain(&mut alice, &mut ra);
    events(&mut alice);
    alice.send(&bob.peer_id(), TASK, b"run task 42", T0, &mut ra).unwrap();
    assert!(alice.persist_pending());
    let mut buf = [0u8; 2048];
    assert_eq!(alice.poll_transmit(&mut buf).unwrap(), None, "held back until persisted");
    let persist: Vec<_> =
        events(&mut alice).into_iter().filter(|e| matches!(e, Event::Persist { .. })).collect();
    let agent_gen = store.records[&RecordId::Agent].1 + 1;
    assert_eq!(
        persist,
        [
            Event::Persist { record: RecordId::Agent, generation: agent_gen },
            Event::Persist { record: RecordId::Session(0), generation: 0 },
        ]
    );
    // A buffer too small changes nothing.
    let mut small = [0u8; 64];
    assert!(matches!(alice.poll_persist(&mut small, &mut ra), Err(Error::BufferTooSmall { .. })));
    assert!(alice.persist_pending());
    // Session records first, then the agent record.
    let mut big = vec![0u8; REC];
    let r1 = alice.poll_persist(&mut big, &mut ra).unwrap().unwrap();
    let r2 = alice.poll_persist(&mut big, &mut ra).unwrap().unwrap();
    assert_eq!((r1.id, r1.generation), (RecordId::Session(0), 0));
    assert_eq!((r2.id, r2.generation), (RecordId::Agent, agent_gen));
    assert_eq!(alice.poll_persist(&mut big, &mut ra).unwrap(), None);
    let t = alice.poll_transmit(&mut buf).unwrap().unwrap();
    assert_eq!((t.to, t.delivery), (bob.peer_id(), Delivery::Mailbox));
    // Without persistence nothing is held back.
    let (mut plain, mut rp) = agent(0x5102, None);
    let mut bundle = [0u8; securemesh_ratchet::MAX_BUNDLE_LEN];
    let n = bob.bundle(&mut bundle).unwrap();
    let id = plain.set_peer_bundle(&bundle[..n]).unwrap();
    plain.policy_mut().grant(id, Roles::of(&[WORKER])).unwrap();
    plain.send(&id, TASK, b"x", T0, &mut rp).unwrap();
    assert!(!plain.persist_pending());
    assert_eq!(plain.poll_persist(&mut big, &mut rp).unwrap(), None);
    assert_eq!(transmits(&mut plain).len(), 1);
}

/// The ratchet header of one of `from`'s envelopes: (ratchet key, n).
fn ratchet_key_and_n(envelope: &[u8]) -> ([u8; 32], u32) {
    let env = Envelope::parse(envelope).unwrap();
    let body = env.body;
    let off =
        if env.channel == ChannelKind::RatchetInitial { securemesh_ratchet::INITIAL_PREFIX_LEN } else { 0 };
    common::ratchet_key_and_n(&body[off..])
}

/// Alice and Bob exchange through mailboxes, and each crashes after every
/// call: once before storing what the call produced (the call is lost:
/// nothing was released, the mailbox message is delivered again) and once
/// after (the restore continues from it). Every message is delivered
/// exactly once, in order; every envelope released decrypts; no message
/// key is used twice (no (ratchet key, n) pair repeats on the wire).
#[test]
fn a_crash_after_any_call_loses_nothing_and_reuses_no_key() {
    let (mut alice, mut ra, mut bob, mut rb) = mailbox_pair(0x5201);
    let (alice_id, bob_id) = (alice.peer_id(), bob.peer_id());
    let (mut sa, mut sb) = (Store::default(), Store::default());
    sa.drain(&mut alice, &mut ra);
    sb.drain(&mut bob, &mut rb);
    let mut to_bob: Vec<Vec<u8>> = Vec::new();
    let mut to_alice: Vec<Vec<u8>> = Vec::new();
    let (mut at_bob, mut at_alice) = (Vec::new(), Vec::new());
    let mut wire_keys = HashSet::new();

    // The sender's host: send, crash before storing (nothing released),
    // restore, send again, store, release, crash after.
    #[allow(clippy::too_many_arguments)]
    fn send_with_crashes(
        who: &mut Box<DefaultAgent>,
        store: &mut Store,
        k: u8,
        rng: &mut TestRng,
        to: &PeerId,
        msg: &[u8],
        mailbox: &mut Vec<Vec<u8>>,
        wire_keys: &mut HashSet<([u8; 32], u32)>,
    ) {
        who.send(to, TASK, msg, T0, rng).unwrap();
        assert!(transmits(who).is_empty(), "released before persisted");
        *who = store.restore(k);
        who.send(to, TASK, msg, T0, rng).unwrap();
        store.drain(who, rng);
        for (_, d, bytes) in transmits(who) {
            assert_eq!(d, Delivery::Mailbox);
            assert!(wire_keys.insert(ratchet_key_and_n(&bytes)), "a message key used twice");
            mailbox.push(bytes);
        }
        *who = store.restore(k);
    }

    // The receiver's host: take the oldest mailbox message, crash before
    // storing (the message stays in the mailbox), restore, take it again,
    // store, then act on it and acknowledge it, crash after.
    fn read_with_crashes(
        who: &mut Box<DefaultAgent>,
        store: &mut Store,
        k: u8,
        rng: &mut TestRng,
        mailbox: &mut Vec<Vec<u8>>,
        delivered: &mut Vec<Vec<u8>>,
    ) {
        let msg = mailbox.remove(0);
        let mut out = [0u8; 2048];
        let first = who.handle_input(&msg, &mut out, T0, rng).unwrap().unwrap();
        let first = out[..first.len].to_vec();
        *who = store.restore(k);
        let r = who.handle_input(&msg, &mut out, T0, rng).unwrap().unwrap();
        assert_eq!(out[..r.len], first[..]);
        store.drain(who, rng);
        delivered.push(out[..r.len].to_vec());
        *who = store.restore(k);
        // Delivered again after the acknowledged state: refused.
        assert!(who.handle_input(&msg, &mut out, T0, rng).is_err(), "decrypted twice");
    }

    let script: &[(bool, &str)] = &[
        (true, "task 1"),
        (true, "task 2"),
        (false, "ack 1"),
        (true, "task 3"),
        (false, "ack 2"),
        (false, "ack 3"),
        (true, "task 4"),
    ];
    for (i, (from_alice, msg)) in script.iter().enumerate() {
        if *from_alice {
            send_with_crashes(
                &mut alice,
                &mut sa,
                1,
                &mut ra,
                &bob_id,
                msg.as_bytes(),
                &mut to_bob,
                &mut wire_keys,
            );
        } else {
            send_with_crashes(
                &mut bob,
                &mut sb,
                2,
                &mut rb,
                &alice_id,
                msg.as_bytes(),
                &mut to_alice,
                &mut wire_keys,
            );
        }
        // The mailboxes are read after every other step (so some messages
        // wait, and the sessions step in both directions).
        if i % 2 == 1 || i + 1 == script.len() {
            while !to_bob.is_empty() {
                read_with_crashes(&mut bob, &mut sb, 2, &mut rb, &mut to_bob, &mut at_bob);
            }
            while !to_alice.is_empty() {
                read_with_crashes(&mut alice, &mut sa, 1, &mut ra, &mut to_alice, &mut at_alice);
            }
        }
    }
    let want_bob: Vec<_> = script.iter().filter(|(a, _)| *a).map(|(_, m)| m.as_bytes().to_vec()).collect();
    let want_alice: Vec<_> = script.iter().filter(|(a, _)| !*a).map(|(_, m)| m.as_bytes().to_vec()).collect();
    assert_eq!(at_bob, want_bob);
    assert_eq!(at_alice, want_alice);
    assert_eq!(wire_keys.len(), script.len());
    // One session each: the crashes never opened a second one.
    assert_eq!(alice.sessions().count(), 1);
    assert_eq!(bob.sessions().count(), 1);
}

/// A restore refuses: an older blob of a record (rollback), another
/// storage key, a changed byte, a record of the wrong kind, another
/// agent's record, and a record already restored. Nothing changes.
#[test]
fn an_older_record_is_refused_as_rollback() {
    let (mut alice, mut ra, mut bob, mut rb) = mailbox_pair(0x5301);
    let (mut sa, mut sb) = (Store::default(), Store::default());
    sa.drain(&mut alice, &mut ra);
    sb.drain(&mut bob, &mut rb);
    for m in [&b"one"[..], b"two", b"three"] {
        alice.send(&bob.peer_id(), TASK, m, T0, &mut ra).unwrap();
        sa.drain(&mut alice, &mut ra);
        for (_, _, bytes) in transmits(&mut alice) {
            let mut out = [0u8; 2048];
            bob.handle_input(&bytes, &mut out, T0, &mut rb).unwrap().unwrap();
            sb.drain(&mut bob, &mut rb);
        }
    }
    let mut scratch = vec![0u8; REC];
    let (agent_blob, agent_gen) = sb.records[&RecordId::Agent].clone();
    let (session_blob, session_gen) = sb.records[&RecordId::Session(0)].clone();
    assert_eq!(session_gen, 2, "one save per message");
    let old = sb.history.iter().find(|(id, g, _)| *id == RecordId::Session(0) && *g == 0).unwrap().2.clone();

    let mut restored = Box::new(
        DefaultAgent::restore(key(2), Config::default(), &agent_blob, agent_gen, &mut scratch).unwrap(),
    );
    // Rollback: the first save of the session, with generation 2 recorded.
    assert_eq!(
        restored.restore_record(&old, session_gen, &mut scratch),
        Err(Error::Storage(securemesh_core::Error::Rollback { found: 0, newest: 2 }))
    );
    assert!(scratch.iter().all(|b| *b == 0));
    // An older agent record too.
    let old_agent = sb.history.iter().find(|(id, _, _)| *id == RecordId::Agent).unwrap();
    assert!(old_agent.1 < agent_gen);
    assert!(matches!(
        DefaultAgent::restore(key(2), Config::default(), &old_agent.2, agent_gen, &mut scratch),
        Err(Error::Storage(securemesh_core::Error::Rollback { .. }))
    ));
    // Another key, a flipped byte.
    assert!(matches!(
        DefaultAgent::restore(key(9), Config::default(), &agent_blob, agent_gen, &mut scratch),
        Err(Error::Storage(securemesh_core::Error::Decrypt))
    ));
    let mut bad = session_blob.clone();
    let last = bad.len() - 20;
    bad[last] ^= 1;
    assert_eq!(
        restored.restore_record(&bad, session_gen, &mut scratch),
        Err(Error::Storage(securemesh_core::Error::Decrypt))
    );
    // The wrong kind of record in each place.
    assert!(matches!(
        DefaultAgent::restore(key(2), Config::default(), &session_blob, session_gen, &mut scratch),
        Err(Error::WrongRecord)
    ));
    assert_eq!(restored.restore_record(&agent_blob, agent_gen, &mut scratch), Err(Error::WrongRecord));
    // Alice's record under Bob's key: another agent's.
    let (alice_session, g) = sa.records[&RecordId::Session(0)].clone();
    let mut alice_under_2 = Box::new(
        DefaultAgent::restore(
            key(1),
            Config::default(),
            &sa.records[&RecordId::Agent].0,
            sa.records[&RecordId::Agent].1,
            &mut scratch,
        )
        .unwrap(),
    );
    assert_eq!(alice_under_2.restore_record(&alice_session, g, &mut scratch), Ok(RecordId::Session(0)));
    let (mut carol, mut rc) = agent(0x5302, Some(key(1)));
    assert_eq!(carol.restore_record(&alice_session, g, &mut scratch), Err(Error::WrongRecord));
    carol.poll_persist(&mut vec![0u8; REC], &mut rc).unwrap();
    // Nothing changed by the refusals: the genuine record restores, once.
    assert_eq!(restored.sessions().count(), 0);
    assert_eq!(restored.restore_record(&session_blob, session_gen, &mut scratch), Ok(RecordId::Session(0)));
    assert_eq!(restored.restore_record(&session_blob, session_gen, &mut scratch), Err(Error::WrongRecord));
    assert_eq!(restored.sessions().next().unwrap().kind, SessionKind::Ratchet);
    // And the next save continues the generations.
    restored.send(&alice.peer_id(), TASK, b"four", T0, &mut rb).unwrap();
    let mut buf = vec![0u8; REC];
    let r = restored.poll_persist(&mut buf, &mut rb).unwrap().unwrap();
    assert_eq!((r.id, r.generation), (RecordId::Session(0), session_gen + 1));
    drop(alice_under_2);
}

/// Noise transports are not persisted: after Bob's restart Alice's
/// message on the old session is refused (UnknownSession, counted as a
/// failure), and Bob's next message opens a new IK handshake that Alice
/// lets supersede the old session; her reply goes over the new one.
#[test]
fn noise_sessions_are_reestablished_after_a_restart() {
    let (mut alice, mut ra) = agent(0x5401, None);
    let (mut bob, mut rb) = agent(0x5402, Some(key(2)));
    let bob_id = know(&mut alice, &bob, true);
    let alice_id = know(&mut bob, &alice, true);
    let mut sb = Store::default();
    let mut out = [0u8; 2048];
    let pump =
        |a: &mut DefaultAgent, ra: &mut TestRng, b: &mut DefaultAgent, rb: &mut TestRng, sb: &mut Store| {
            let mut got = Vec::new();
            loop {
                sb.drain(b, rb);
                let (ab, ba) = (transmits(a), transmits(b));
                if ab.is_empty() && ba.is_empty() {
                    return got;
                }
                let mut out = [0u8; 2048];
                for (_, _, m) in ab {
                    if let Some(r) = b.handle_input(&m, &mut out, T0, rb).unwrap() {
                        got.push(out[..r.len].to_vec());
                    }
                }
                for (_, _, m) in ba {
                    if let Some(r) = a.handle_input(&m, &mut out, T0, ra).unwrap() {
                        got.push(out[..r.len].to_vec());
                    }
                }
            }
        };
    alice.send(&bob_id, TASK, b"before", T0, &mut ra).unwrap();
    assert_eq!(pump(&mut alice, &mut ra, &mut bob, &mut rb, &mut sb), [b"before".to_vec()]);
    // Bob restarts: his Noise session is gone.
    bob = sb.restore(2);
    assert_eq!(bob.sessions().count(), 0);
    bob.set_reachable(&alice_id, true).unwrap();
    alice.send(&bob_id, TASK, b"lost", T0, &mut ra).unwrap();
    let stale = transmits(&mut alice);
    assert_eq!(bob.handle_input(&stale[0].2, &mut out, T0, &mut rb), Err(Error::UnknownSession));
    assert_eq!(bob.metrics().noise.failures, 1);
    bob.send(&alice_id, TASK, b"back", T0, &mut rb).unwrap();
    assert_eq!(pump(&mut alice, &mut ra, &mut bob, &mut rb, &mut sb), [b"back".to_vec()]);
    alice.send(&bob_id, TASK, b"welcome back", T0, &mut ra).unwrap();
    assert_eq!(pump(&mut alice, &mut ra, &mut bob, &mut rb, &mut sb), [b"welcome back".to_vec()]);
}

/// Bob's pool refills itself once the threshold is crossed (10 % of 16:
/// after the second one-time prekey), raising `PrekeysRefilled` and a
/// `Persist` of the agent record; the metrics show the utilization.
#[test]
fn the_prekey_pool_refills_at_its_threshold() {
    let config = Config {
        prekeys: PrekeyConfig { refill_threshold_percent: 10, ..PrekeyConfig::default() },
        ..Config::default()
    };
    let (mut bob, mut rb) = agent_with(0x5501, config, Some(key(2)));
    let mut sb = Store::default();
    sb.drain(&mut bob, &mut rb);
    let m = bob.metrics();
    assert_eq!((m.prekeys_available, m.prekeys_capacity, m.prekeys_consumed_total), (16, 16, 0));
    let ids: Vec<u32> = bob.one_time_prekey_ids().take(2).collect();
    for (i, id) in ids.iter().enumerate() {
        let (mut peer, mut rp) = agent(0x5510 + 2 * i as u64, None);
        let mut bundle = [0u8; securemesh_ratchet::MAX_BUNDLE_LEN];
        let n = bob.bundle_with(Some(*id), &mut bundle).unwrap();
        let bob_id = peer.set_peer_bundle(&bundle[..n]).unwrap();
        peer.policy_mut().grant(bob_id, Roles::of(&[WORKER])).unwrap();
        know(&mut bob, &peer, false);
        peer.send(&bob_id, TASK, b"hello", T0, &mut rp).unwrap();
        let mut out = [0u8; 2048];
        for (_, _, m) in transmits(&mut peer) {
            assert!(bob.handle_input(&m, &mut out, T0, &mut rb).unwrap().is_some());
        }
        let ev = events(&mut bob);
        let refilled: Vec<_> = ev.iter().filter(|e| matches!(e, Event::PrekeysRefilled { .. })).collect();
        if i == 0 {
            assert!(refilled.is_empty());
            assert_eq!(bob.metrics().prekeys_available, 15);
        } else {
            assert_eq!(refilled, [&Event::PrekeysRefilled { added: 2, available: 16 }]);
            assert!(ev.iter().any(|e| matches!(e, Event::Persist { record: RecordId::Agent, .. })));
        }
        sb.drain(&mut bob, &mut rb);
    }
    let m = bob.metrics();
    assert_eq!((m.prekeys_available, m.prekeys_consumed_total, m.prekey_refills), (16, 2, 1));
    assert!(bob.one_time_prekey_ids().all(|id| !ids.contains(&id)), "used prekeys never come back");
    // The refilled pool is what a restart restores.
    let restored = sb.restore(2);
    let mut a: Vec<u32> = restored.one_time_prekey_ids().collect();
    let mut b: Vec<u32> = bob.one_time_prekey_ids().collect();
    a.sort_unstable();
    b.sort_unstable();
    assert_eq!(a, b);
}

/// The signed prekey rotates at `poll_prekey_timeout` (wall time): a new
/// bundle to publish, the agent record persisted. A bundle fetched before
/// the rotation still opens a session during the grace period; after it
/// the previous key is erased.
#[test]
fn the_signed_prekey_rotates_on_its_timeout() {
    let (mut bob, mut rb) = agent(0x5601, Some(key(2)));
    let mut sb = Store::default();
    sb.drain(&mut bob, &mut rb);
    let (mut alice, mut ra) = agent(0x5602, None);
    let mut old_bundle = [0u8; securemesh_ratchet::MAX_BUNDLE_LEN];
    let n_old = bob.bundle(&mut old_bundle).unwrap();
    let due = bob.poll_prekey_timeout().unwrap();
    assert_eq!(due.as_secs(), WALL.as_secs() + 720 * 3600);
    bob.handle_prekey_timeout(UnixTime(due.as_secs() - 1), &mut rb).unwrap();
    assert!(!bob.persist_pending(), "nothing due yet");
    bob.handle_prekey_timeout(due, &mut rb).unwrap();
    let ev = events(&mut bob);
    assert!(ev.iter().any(|e| matches!(e, Event::SignedPrekeyRotated { id: 18 })), "{ev:?}");
    assert!(ev.iter().any(|e| matches!(e, Event::Persist { record: RecordId::Agent, .. })));
    let mut new_bundle = [0u8; securemesh_ratchet::MAX_BUNDLE_LEN];
    let n_new = bob.bundle(&mut new_bundle).unwrap();
    assert_ne!(old_bundle[..n_old], new_bundle[..n_new]);
    sb.drain(&mut bob, &mut rb);
    assert_eq!(bob.metrics().signed_prekey_rotations, 1);
    // Alice still uses the old bundle, within the grace period.
    let bob_id = alice.set_peer_bundle(&old_bundle[..n_old]).unwrap();
    alice.policy_mut().grant(bob_id, Roles::of(&[WORKER])).unwrap();
    know(&mut bob, &alice, false);
    alice.send(&bob_id, TASK, b"old bundle", T0, &mut ra).unwrap();
    let mut out = [0u8; 2048];
    let m = transmits(&mut alice).remove(0).2;
    assert!(bob.handle_input(&m, &mut out, T0, &mut rb).unwrap().is_some());
    // Then the grace period ends (the restored agent keeps the schedule).
    sb.drain(&mut bob, &mut rb);
    let mut bob = sb.restore(2);
    let erase = bob.poll_prekey_timeout().unwrap();
    assert_eq!(erase.as_secs(), due.as_secs() + 168 * 3600);
    bob.handle_prekey_timeout(erase, &mut rb).unwrap();
    assert!(events(&mut bob).iter().any(|e| matches!(e, Event::SignedPrekeyErased { .. })));
}

/// A ratchet session that has not stepped for the heartbeat interval
/// sends an empty message by itself (`poll_timeout`/`handle_timeout`);
/// the peer counts it, delivers nothing, and steps its ratchet.
#[test]
fn a_heartbeat_steps_the_ratchet() {
    let config = Config {
        ratchet: SessionConfig { heartbeat_ms: 60_000, ..SessionConfig::default() },
        ..Config::default()
    };
    let (mut alice, mut ra) = agent_with(0x5701, config, None);
    let (mut bob, mut rb) = agent_with(0x5702, config, None);
    let mut bundle = [0u8; securemesh_ratchet::MAX_BUNDLE_LEN];
    let n = bob.bundle(&mut bundle).unwrap();
    let bob_id = alice.set_peer_bundle(&bundle[..n]).unwrap();
    alice.policy_mut().grant(bob_id, Roles::of(&[WORKER])).unwrap();
    let alice_id = know(&mut bob, &alice, false);
    let mut out = [0u8; 2048];
    alice.send(&bob_id, TASK, b"task", T0, &mut ra).unwrap();
    for (_, _, m) in transmits(&mut alice) {
        bob.handle_input(&m, &mut out, T0, &mut rb).unwrap();
    }
    bob.send(&alice_id, TASK, b"ack", T0, &mut rb).unwrap();
    for (_, _, m) in transmits(&mut bob) {
        alice.handle_input(&m, &mut out, T0, &mut ra).unwrap();
    }
    let steps = alice.metrics().ratchet_steps;
    let due = alice.poll_timeout().unwrap();
    assert_eq!(due, Instant(T0.0 + 60_000));
    alice.handle_timeout(Instant(due.0 - 1), &mut ra);
    assert!(transmits(&mut alice).is_empty());
    assert_eq!(alice.metrics().ratchet_state_age_max_ms, Some(59_999));
    alice.handle_timeout(due, &mut ra);
    assert!(
        events(&mut alice)
            .contains(&Event::HeartbeatSent { peer: bob_id, session: alice.sessions().next().unwrap().id })
    );
    let hb = transmits(&mut alice);
    assert_eq!(hb.len(), 1);
    assert_eq!(hb[0].1, Delivery::Mailbox);
    assert!(alice.metrics().ratchet_steps > steps, "the heartbeat stepped Alice's sending ratchet");
    assert_eq!(alice.metrics().ratchet.heartbeats_sent, 1);
    assert_eq!(
        alice.poll_timeout(),
        Some(Instant(due.0 + 60_000)),
        "the next deadline counts from this step"
    );
    events(&mut bob);
    assert_eq!(bob.handle_input(&hb[0].2, &mut out, due, &mut rb).unwrap(), None);
    let m = bob.metrics();
    assert_eq!((m.ratchet.heartbeats_received, m.ratchet.denied, m.ratchet.received), (1, 0, 1));
    assert!(events(&mut bob).iter().all(|e| !matches!(e, Event::Denied { .. } | Event::Received { .. })));
}

/// The metrics: per channel sent/received/failures/denials, handshake
/// latency from the caller's clock, post-quantum status.
#[test]
fn metrics_count_per_channel() {
    let (mut alice, mut ra) = agent(0x5801, None);
    let (mut bob, mut rb) = agent(0x5802, None);
    let bob_id = know(&mut alice, &bob, true);
    know(&mut bob, &alice, true);
    bob.policy_mut().define_role(WORKER, Permissions::NONE).unwrap(); // Bob denies everything
    let mut out = [0u8; 2048];
    alice.send(&bob_id, TASK, b"one", T0, &mut ra).unwrap();
    alice.send(&bob_id, TASK, b"two", T0, &mut ra).unwrap();
    // IK: Alice's first message at T0, Bob answers at T0+30, Alice completes at T0+70.
    let m1 = transmits(&mut alice);
    bob.handle_input(&m1[0].2, &mut out, Instant(T0.0 + 30), &mut rb).unwrap();
    let m2 = transmits(&mut bob);
    alice.handle_input(&m2[0].2, &mut out, Instant(T0.0 + 70), &mut ra).unwrap();
    let data = transmits(&mut alice);
    assert_eq!(data.len(), 2);
    assert_eq!(bob.handle_input(&data[0].2, &mut out, T0, &mut rb).unwrap(), None);
    let mut bad = data[1].2.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(bob.handle_input(&bad, &mut out, T0, &mut rb).is_err());
    let a = alice.metrics();
    assert_eq!((a.noise.sent, a.handshakes_completed), (2, 1));
    assert_eq!((a.handshake_latency_last_ms, a.handshake_latency_max_ms), (Some(70), 70));
    let b = bob.metrics();
    assert_eq!((b.noise.received, b.noise.denied, b.noise.failures), (0, 1, 1));
    assert_eq!(b.handshake_latency_last_ms, Some(0), "the IK responder completes as it answers");
    assert_eq!(b.ratchet, Default::default());
    assert_eq!((a.noise_pq, a.ratchet_pq), (PqStatus::Classical, PqStatus::Classical));
    assert_eq!(a.ratchet_state_age_max_ms, None);
    assert_eq!((a.prekeys_available, a.prekeys_capacity), (16, 16));
}

/// Sizes, printed for the report and bounded so growth is a decision.
#[test]
fn record_sizes() {
    let (mut alice, mut ra, bob, _) = mailbox_pair(0x5901);
    alice.send(&bob.peer_id(), TASK, b"x", T0, &mut ra).unwrap();
    let mut store = Store::default();
    store.drain(&mut alice, &mut ra);
    let agent_len = store.records[&RecordId::Agent].0.len();
    let session_len = store.records[&RecordId::Session(0)].0.len();
    println!(
        "size_of::<DefaultAgent>() = {}, MAX_AGENT_RECORD_LEN = {}, MAX_SESSION_RECORD_LEN = {}, \
         agent record (1 peer) = {agent_len}, session record (fresh) = {session_len}",
        core::mem::size_of::<DefaultAgent>(),
        DefaultAgent::MAX_AGENT_RECORD_LEN,
        DefaultAgent::MAX_SESSION_RECORD_LEN,
    );
    assert!(agent_len <= DefaultAgent::MAX_AGENT_RECORD_LEN);
    assert!(session_len <= DefaultAgent::MAX_SESSION_RECORD_LEN);
    // The group record (a group state, a pending commit's next state, its
    // Welcome and the commit envelope) is the largest since the groups
    // slice: 33 KB, or 76 KB where mls-lite's X-Wing suite is on (1216-byte
    // HPKE keys; the workspace's build, where test-vectors turns it on).
    const { assert!(DefaultAgent::MAX_RECORD_LEN <= if common::XWING_KEY_ROOM { 76 * 1024 } else { 33 * 1024 }) };
    // With the feature `pq` the directory holds PQXDH bundles (1.5 KB
    // each), the pool its KEM prekeys, the queue 2 KB slots and a ratchet
    // session the ML-KEM-768 ciphertext of its initial messages.
    const {
        assert!(DefaultAgent::MAX_AGENT_RECORD_LEN <= if cfg!(feature = "pq") { 16 * 1024 } else { 8 * 1024 })
    };
    assert!(core::mem::size_of::<DefaultAgent>() <= common::DEFAULT_AGENT_CEILING);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
    /// `restore(persist(x))` behaves as `x`: after any exchange through
    /// the mailboxes (messages held back and delivered late), Bob restored
    /// from his records decrypts Alice's next messages as Bob does, and
    /// with the same randomness encrypts the same envelope.
    #[test]
    fn a_restored_agent_behaves_as_the_original(
        steps in proptest::collection::vec((proptest::bool::ANY, 0usize..3, proptest::bool::ANY), 1..10),
        seed in 0u64..1_000_000,
    ) {
        let (mut alice, mut ra, mut bob, mut rb) = mailbox_pair(0x6000 + seed * 2);
        let (alice_id, bob_id) = (alice.peer_id(), bob.peer_id());
        let mut sb = Store::default();
        let mut sa = Store::default();
        let mut out = [0u8; 2048];
        // Alice always opens, so Bob has a session.
        alice.send(&bob_id, TASK, b"open", T0, &mut ra).unwrap();
        sa.drain(&mut alice, &mut ra);
        let mut to_bob: Vec<Vec<u8>> = transmits(&mut alice).into_iter().map(|t| t.2).collect();
        let mut to_alice: Vec<Vec<u8>> = Vec::new();
        for (i, (from_alice, count, deliver)) in steps.iter().enumerate() {
            for j in 0..*count {
                let msg = format!("m{i}.{j}");
                if *from_alice {
                    alice.send(&bob_id, TASK, msg.as_bytes(), T0, &mut ra).unwrap();
                    sa.drain(&mut alice, &mut ra);
                    to_bob.extend(transmits(&mut alice).into_iter().map(|t| t.2));
                } else if bob.sessions().count() > 0 {
                    bob.send(&alice_id, TASK, msg.as_bytes(), T0, &mut rb).unwrap();
                    sb.drain(&mut bob, &mut rb);
                    to_alice.extend(transmits(&mut bob).into_iter().map(|t| t.2));
                }
            }
            if *deliver {
                // Newest first: the mailbox reorders.
                for m in to_bob.drain(..).rev() {
                    bob.handle_input(&m, &mut out, T0, &mut rb).unwrap();
                    sb.drain(&mut bob, &mut rb);
                }
                for m in to_alice.drain(..).rev() {
                    alice.handle_input(&m, &mut out, T0, &mut ra).unwrap();
                    sa.drain(&mut alice, &mut ra);
                }
            }
        }
        for m in to_bob.drain(..) {
            bob.handle_input(&m, &mut out, T0, &mut rb).unwrap();
            sb.drain(&mut bob, &mut rb);
        }
        let mut twin = sb.restore(2);
        proptest::prop_assert_eq!(twin.sessions().collect::<Vec<_>>(), bob.sessions().collect::<Vec<_>>());
        // Alice's next messages (and the ones still in Bob's mailbox) decrypt alike.
        alice.send(&bob_id, TASK, b"next", T0, &mut ra).unwrap();
        sa.drain(&mut alice, &mut ra);
        for m in transmits(&mut alice).into_iter().map(|t| t.2) {
            let mut o1 = [0u8; 2048];
            let mut o2 = [0u8; 2048];
            let r1 = bob.handle_input(&m, &mut o1, T0, &mut rb).unwrap().unwrap();
            let r2 = twin.handle_input(&m, &mut o2, T0, &mut rb.clone()).unwrap().unwrap();
            proptest::prop_assert_eq!((r1.from, r1.kind, &o1[..r1.len]), (r2.from, r2.kind, &o2[..r2.len]));
        }
        // Same randomness, same envelope.
        let (mut r1, mut r2) = (rb.clone(), rb.clone());
        bob.send(&alice_id, TASK, b"reply", T0, &mut r1).unwrap();
        twin.send(&alice_id, TASK, b"reply", T0, &mut r2).unwrap();
        sb.clone().drain(&mut bob, &mut rb);
        sb.clone().drain(&mut twin, &mut rb.clone());
        let (e1, e2) = (transmits(&mut bob), transmits(&mut twin));
        proptest::prop_assert_eq!(&e1, &e2);
        // And Alice reads it.
        alice.handle_input(&e1[0].2, &mut out, T0, &mut ra).unwrap().unwrap();
        proptest::prop_assert_eq!(&out[..5], b"reply");
    }
}

/// A ratchet envelope from `sender` on session `session` whose body no
/// session decrypts (what a forger can send: the sender is not
/// authenticated before decryption).
fn forged(sender: PeerId, session: u64) -> Vec<u8> {
    let body = [securemesh_ratchet::MSG_INITIAL ^ 0x80; 96];
    let env =
        Envelope { channel: ChannelKind::RatchetMessage, sender, session: SessionId(session), body: &body };
    let mut out = vec![0u8; env.encoded_len()];
    let n = env.encode(&mut out).unwrap();
    out.truncate(n);
    out
}

/// Alice's encoded bundle.
fn bundle_of(a: &DefaultAgent) -> Vec<u8> {
    let mut b = [0u8; securemesh_ratchet::MAX_BUNDLE_LEN];
    let n = a.bundle(&mut b).unwrap();
    b[..n].to_vec()
}

/// Bob loses his ratchet session with Alice (restored from his agent
/// record alone): Alice's next message fails at his end, so he opens a
/// new session from her bundle with a control message; Alice moves to
/// it, and the conversation goes on both ways. Neither side delivers the
/// control message; both report the re-establishment.
#[test]
fn a_lost_ratchet_session_is_reestablished() {
    let (mut alice, mut ra, mut bob, mut rb) = mailbox_pair(0x5b01);
    let (alice_id, bob_id) = (alice.peer_id(), bob.peer_id());
    let (mut sa, mut sb) = (Store::default(), Store::default());
    let mut out = [0u8; 2048];
    bob.set_peer_bundle(&bundle_of(&alice)).unwrap();
    alice.send(&bob_id, TASK, b"first", T0, &mut ra).unwrap();
    sa.drain(&mut alice, &mut ra);
    let m = transmits(&mut alice);
    let r = bob.handle_input(&m[0].2, &mut out, T0, &mut rb).unwrap().unwrap();
    assert_eq!(&out[..r.len], b"first");
    bob.send(&alice_id, TASK, b"ack", T0, &mut rb).unwrap();
    sb.drain(&mut bob, &mut rb);
    let m = transmits(&mut bob);
    assert!(alice.handle_input(&m[0].2, &mut out, T0, &mut ra).unwrap().is_some());
    let old = alice.sessions().find(|s| s.kind == SessionKind::Ratchet).unwrap().id;

    // Bob's session record is lost; his agent record (with Alice's bundle) is not.
    let mut lost = sb.clone();
    lost.records.retain(|id, _| *id == RecordId::Agent);
    bob = lost.restore(2);
    assert_eq!(bob.sessions().count(), 0);
    events(&mut alice);

    alice.send(&bob_id, TASK, b"lost", T0, &mut ra).unwrap();
    sa.drain(&mut alice, &mut ra);
    let stale = transmits(&mut alice).remove(0).2;
    assert_eq!(Envelope::parse(&stale).unwrap().session, old);
    assert_eq!(bob.handle_input(&stale, &mut out, T0, &mut rb), Ok(None));
    let ev = events(&mut bob);
    let new = bob.sessions().find(|s| s.kind == SessionKind::Ratchet).unwrap().id;
    assert_ne!(new, old);
    assert!(ev.contains(&Event::ReestablishRequested { peer: alice_id, session: new, unknown: old }));
    assert!(!ev.iter().any(|e| matches!(e, Event::Received { .. })));
    // Persisted before it is released.
    assert_eq!(transmits(&mut bob), []);
    assert!(lost.drain(&mut bob, &mut rb) > 0);
    let control = transmits(&mut bob);
    assert_eq!(control.len(), 1);
    assert_eq!((control[0].0, control[0].1), (alice_id, Delivery::Mailbox));
    let env = Envelope::parse(&control[0].2).unwrap();
    assert_eq!((env.channel, env.session), (ChannelKind::RatchetInitial, new));

    assert_eq!(alice.handle_input(&control[0].2, &mut out, T0, &mut ra), Ok(None));
    let ev = events(&mut alice);
    assert!(ev.contains(&Event::SessionReestablished { peer: bob_id, session: new }));
    assert!(!ev.iter().any(|e| matches!(e, Event::Received { .. })));

    // Alice sends on the new session from now on, and Bob answers on it.
    for text in [&b"again"[..], b"and again"] {
        alice.send(&bob_id, TASK, text, T0, &mut ra).unwrap();
        sa.drain(&mut alice, &mut ra);
        let m = transmits(&mut alice);
        assert_eq!(Envelope::parse(&m[0].2).unwrap().session, new);
        let r = bob.handle_input(&m[0].2, &mut out, T0, &mut rb).unwrap().unwrap();
        assert_eq!((r.from, &out[..r.len]), (alice_id, text));
    }
    bob.send(&alice_id, TASK, b"reply", T0, &mut rb).unwrap();
    lost.drain(&mut bob, &mut rb);
    let m = transmits(&mut bob);
    let r = alice.handle_input(&m[0].2, &mut out, T0, &mut ra).unwrap().unwrap();
    assert_eq!((r.from, &out[..r.len]), (bob_id, &b"reply"[..]));

    // The stale message again (the mailbox duplicated it): Bob holds a
    // session with Alice now, so it only fails, changing nothing.
    events(&mut bob);
    assert_eq!(bob.handle_input(&stale, &mut out, T0, &mut rb), Err(Error::UnknownSession));
    assert!(events(&mut bob).is_empty() && !bob.persist_pending() && bob.queued() == 0);

    let (mb, ma) = (bob.metrics(), alice.metrics());
    assert_eq!((mb.reestablish_requested, mb.reestablish_accepted), (1, 0));
    assert_eq!((ma.reestablish_requested, ma.reestablish_accepted), (0, 1));
    assert_eq!(mb.ratchet.failures, 2, "the stale message, twice");
    assert_eq!(mb.ratchet.sent, 1, "the control message is not an application message");
    assert_eq!(ma.ratchet.received, 2, "ack and reply");
}

/// An envelope naming an unknown session, claiming a peer Bob holds a
/// ratchet session with, is a forgery or an old session: it fails and
/// changes nothing (the bundle stays, no session, no transmit).
#[test]
fn an_unknown_session_with_a_live_session_changes_nothing() {
    let (mut alice, mut ra, mut bob, mut rb) = mailbox_pair(0x5b02);
    let alice_id = alice.peer_id();
    let mut out = [0u8; 2048];
    bob.set_peer_bundle(&bundle_of(&alice)).unwrap();
    alice.send(&bob.peer_id(), TASK, b"hello", T0, &mut ra).unwrap();
    let mut sa = Store::default();
    sa.drain(&mut alice, &mut ra);
    let m = transmits(&mut alice);
    assert!(bob.handle_input(&m[0].2, &mut out, T0, &mut rb).unwrap().is_some());
    let mut sb = Store::default();
    sb.drain(&mut bob, &mut rb);
    events(&mut bob);
    let sessions: Vec<_> = bob.sessions().collect();
    for id in [7, 8] {
        assert_eq!(
            bob.handle_input(&forged(alice_id, id), &mut out, T0, &mut rb),
            Err(Error::UnknownSession)
        );
    }
    assert!(events(&mut bob).is_empty() && !bob.persist_pending() && bob.queued() == 0);
    assert_eq!(bob.sessions().collect::<Vec<_>>(), sessions);
    assert!(bob.directory().get(&alice_id).unwrap().bundle().is_some());
    assert_eq!(bob.metrics().reestablish_requested, 0);
}

/// Forged unknown-session envelopes re-establish at most once per lost
/// state: none without the claimed peer's bundle, one for the first
/// forgery, none for the next ones (Bob holds a session with the peer
/// now), none after a restart (that session was persisted before its
/// message left). Alice's one-time prekeys are spent once.
#[test]
fn forgeries_reestablish_once() {
    let (mut alice, mut ra, mut bob, mut rb) = mailbox_pair(0x5b03);
    let (alice_id, bob_id) = (alice.peer_id(), bob.peer_id());
    let mut sb = Store::default();
    let mut out = [0u8; 2048];
    sb.drain(&mut bob, &mut rb);
    events(&mut bob);
    // No bundle of Alice's: nothing to re-establish from.
    assert_eq!(bob.handle_input(&forged(alice_id, 5), &mut out, T0, &mut rb), Err(Error::UnknownSession));
    assert!(events(&mut bob).is_empty() && !bob.persist_pending() && bob.queued() == 0);

    bob.set_peer_bundle(&bundle_of(&alice)).unwrap();
    sb.drain(&mut bob, &mut rb);
    assert_eq!(bob.handle_input(&forged(alice_id, 6), &mut out, T0, &mut rb), Ok(None));
    let later = T0.saturating_add(core::time::Duration::from_millis(1));
    assert_eq!(bob.handle_input(&forged(alice_id, 7), &mut out, later, &mut rb), Err(Error::UnknownSession));
    let requested: Vec<_> =
        events(&mut bob).into_iter().filter(|e| matches!(e, Event::ReestablishRequested { .. })).collect();
    assert_eq!(requested.len(), 1);
    assert!(bob.directory().get(&alice_id).unwrap().bundle().is_none(), "the bundle is spent");
    sb.drain(&mut bob, &mut rb);
    let control = transmits(&mut bob);
    assert_eq!(control.len(), 1);

    // A restart does not reopen it.
    let mut bob = sb.restore(2);
    assert_eq!(bob.handle_input(&forged(alice_id, 8), &mut out, later, &mut rb), Err(Error::UnknownSession));
    assert!(!bob.persist_pending() && bob.queued() == 0);

    // Alice takes the session (one one-time prekey spent) and sends on it.
    let before = alice.metrics().prekeys_consumed_total;
    assert_eq!(alice.handle_input(&control[0].2, &mut out, T0, &mut ra), Ok(None));
    assert_eq!(alice.metrics().prekeys_consumed_total, before + 1);
    assert!(
        events(&mut alice)
            .iter()
            .any(|e| matches!(e, Event::SessionReestablished { peer, .. } if *peer == bob_id))
    );
}
