//! The file state store with the real agent: records survive a restart,
//! and a corrupted, rolled-back or unchecked state is refused with a
//! clear error that changes and deletes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use securemesh::{MessageKind, Permissions, RecordId, Role};
use securemesh_core::UnixTime;
use securemesh_core::envelope::StorageKey;
use securemesh_core::testing::TestRng;
use securemesh_host::state::{flush, restore};
use securemesh_host::store::{FileStore, StateStore, StoreError};
use securemesh_host::{HostAgent, HostError};
use securemesh_ratchet::Identity;
use std::path::PathBuf;

struct TempDir(PathBuf);
impl TempDir {
    fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("securemesh-host-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        TempDir(p)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn key() -> StorageKey {
    StorageKey::new([0x3c; 32])
}

fn new_agent(rng: &mut TestRng) -> Box<HostAgent> {
    let mut a = securemesh_host::state::on_agent_stack(|| {
        Box::new(HostAgent::new(
            Identity::generate(rng),
            securemesh::Config::default(),
            rng,
            UnixTime(1_700_000_000),
        ))
    })
    .unwrap();
    a.enable_persistence(key());
    a
}

fn restored(store: &FileStore) -> Result<Option<Box<HostAgent>>, HostError> {
    restore(store, key(), securemesh::Config::default())
}

#[test]
fn records_survive_a_restart() {
    let dir = TempDir::new("survive");
    let mut rng = TestRng::new(0x5107_0001);
    let mut store = FileStore::open(&dir.0, None).unwrap();
    assert!(restored(&store).unwrap().is_none(), "empty store: a new agent");
    let mut a = new_agent(&mut rng);
    a.policy_mut().define_role(Role(3), Permissions::of(&[MessageKind(7)])).unwrap();
    assert_eq!(flush(&mut a, &mut store, &mut rng).unwrap(), 1);
    assert_eq!(flush(&mut a, &mut store, &mut rng).unwrap(), 0, "nothing pending twice");

    let reopened = FileStore::open(&dir.0, None).unwrap();
    let b = restored(&reopened).unwrap().unwrap();
    assert_eq!(b.peer_id(), a.peer_id());
    assert_eq!(b.policy().role(Role(3)), Permissions::of(&[MessageKind(7)]));
    assert!(!dir.0.join("agent.rec.tmp").exists(), "no temporary file left");
    let ledger = std::fs::read_to_string(dir.0.join("generations")).unwrap();
    assert_eq!(ledger, "agent 0\n");
    assert_eq!(securemesh_host::store::record_name(RecordId::Session(3)), "session-3");
}

#[test]
fn a_corrupted_file_is_refused_and_left_alone() {
    let dir = TempDir::new("corrupt");
    let mut rng = TestRng::new(0x5107_0002);
    let mut store = FileStore::open(&dir.0, None).unwrap();
    let mut a = new_agent(&mut rng);
    flush(&mut a, &mut store, &mut rng).unwrap();
    let path = store.path_of(RecordId::Agent);
    let good = std::fs::read(&path).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x40;
    std::fs::write(&path, &bad).unwrap();

    let err = restored(&store).unwrap_err();
    assert!(
        matches!(
            err,
            HostError::Restore {
                record: _,
                error: securemesh::Error::Storage(securemesh_core::Error::Decrypt)
            }
        ),
        "{err:?}"
    );
    assert!(matches!(&err, HostError::Restore { record, .. } if record == "agent"));
    let text = err.to_string();
    assert!(text.contains("corrupted") && text.contains("nothing was changed"), "{text}");
    assert_eq!(std::fs::read(&path).unwrap(), bad, "the file is kept for inspection");
    // Nothing lost: the good copy restores.
    std::fs::write(&path, &good).unwrap();
    assert_eq!(restored(&store).unwrap().unwrap().peer_id(), a.peer_id());
}

#[test]
fn a_rolled_back_file_is_refused() {
    let dir = TempDir::new("rollback");
    let mut rng = TestRng::new(0x5107_0003);
    let mut store = FileStore::open(&dir.0, None).unwrap();
    let mut a = new_agent(&mut rng);
    flush(&mut a, &mut store, &mut rng).unwrap();
    let path = store.path_of(RecordId::Agent);
    let old = std::fs::read(&path).unwrap();
    a.policy_mut().define_role(Role(1), Permissions::ALL).unwrap();
    flush(&mut a, &mut store, &mut rng).unwrap();
    let new = std::fs::read(&path).unwrap();

    std::fs::write(&path, &old).unwrap();
    let err = restored(&FileStore::open(&dir.0, None).unwrap()).unwrap_err();
    assert!(
        matches!(
            err,
            HostError::Restore {
                record: _,
                error: securemesh::Error::Storage(securemesh_core::Error::Rollback { .. })
            }
        ),
        "{err:?}"
    );
    assert!(matches!(&err, HostError::Restore { record, .. } if record == "agent"));
    assert!(err.to_string().contains("rolled-back"), "{err}");
    std::fs::write(&path, &new).unwrap();
    let b = restored(&FileStore::open(&dir.0, None).unwrap()).unwrap().unwrap();
    assert_eq!(b.policy().role(Role(1)), Permissions::ALL);
}

#[test]
fn an_unchecked_or_broken_ledger_is_refused() {
    let dir = TempDir::new("ledger");
    let mut rng = TestRng::new(0x5107_0004);
    let mut store = FileStore::open(&dir.0, None).unwrap();
    let mut a = new_agent(&mut rng);
    flush(&mut a, &mut store, &mut rng).unwrap();
    // A store refuses a generation that is not newer.
    let err = store.save(RecordId::Agent, 0, b"x").unwrap_err();
    assert!(matches!(err, StoreError::NotNewer { stored: 0, offered: 0, .. }), "{err:?}");

    let ledger = dir.0.join("generations");
    std::fs::write(&ledger, "agent 0\nsession x 3\n").unwrap();
    let err = FileStore::open(&dir.0, None).unwrap_err();
    assert!(matches!(err, StoreError::BadLedger { line: 2, .. }), "{err:?}");

    std::fs::remove_file(&ledger).unwrap();
    let err = FileStore::open(&dir.0, None).unwrap().load().unwrap_err();
    assert!(matches!(err, StoreError::LedgerMissing(_)), "{err:?}");

    std::fs::write(&ledger, "agent 0\nsession-2 4\n").unwrap();
    let err = FileStore::open(&dir.0, None).unwrap().load().unwrap_err();
    assert!(matches!(err, StoreError::RecordMissing(_)), "{err:?}");
}

/// A crash after the state was stored but before the mailbox message
/// was acknowledged: the message is fetched again after the restart and
/// refused by the restored session (its key is spent), so it is
/// delivered once; a crash before the state was stored delivers it
/// after the restart.
#[test]
fn a_crash_around_the_acknowledgement_delivers_once() {
    use securemesh::{Delivery, Roles};
    use securemesh_core::Instant;
    let dir = TempDir::new("ack");
    let mut rng = TestRng::new(0x5107_0005);
    let now = Instant::from_millis(1_000);
    const TASK: MessageKind = MessageKind(1);
    let mut alice = new_agent(&mut rng);
    let mut bob = new_agent(&mut rng);
    let mut bob_store = FileStore::open(&dir.0.join("bob"), None).unwrap();
    let mut alice_store = FileStore::open(&dir.0.join("alice"), None).unwrap();
    let (a_pub, b_pub) = (*alice.public_identity(), *bob.public_identity());
    for (me, other) in [(&mut alice, b_pub), (&mut bob, a_pub)] {
        let id = me.add_peer_identity(&other).unwrap();
        me.set_reachable(&id, false).unwrap();
        me.policy_mut().define_role(Role(0), Permissions::of(&[TASK])).unwrap();
        me.policy_mut().grant(id, Roles::of(&[Role(0)])).unwrap();
    }
    let mut bundle = [0u8; securemesh_ratchet::MAX_BUNDLE_LEN];
    let n = bob.bundle(&mut bundle).unwrap();
    alice.set_peer_bundle(&bundle[..n]).unwrap();
    flush(&mut bob, &mut bob_store, &mut rng).unwrap();

    let mut mailbox = Vec::new();
    for text in [&b"first"[..], b"second"] {
        alice.send(&bob.peer_id(), TASK, text, now, &mut rng).unwrap();
        flush(&mut alice, &mut alice_store, &mut rng).unwrap();
        let mut wire = [0u8; 2048];
        let t = alice.poll_transmit(&mut wire).unwrap().unwrap();
        assert_eq!(t.delivery, Delivery::Mailbox);
        mailbox.push(wire[..t.len].to_vec());
    }
    let mut out = [0u8; 2048];
    // "first" handled and stored, then the crash (no acknowledgement).
    let r = bob.handle_input(&mailbox[0], &mut out, now, &mut rng).unwrap().unwrap();
    assert_eq!(&out[..r.len], b"first");
    flush(&mut bob, &mut bob_store, &mut rng).unwrap();
    // "second" handled but not stored: the crash comes first.
    bob.handle_input(&mailbox[1], &mut out, now, &mut rng).unwrap().unwrap();
    drop(bob);

    let mut bob = restored(&bob_store).unwrap().unwrap();
    // Both are fetched again. "first" is refused (already delivered and
    // stored), "second" is delivered by the restored session.
    assert!(bob.handle_input(&mailbox[0], &mut out, now, &mut rng).is_err(), "first delivered once");
    let r = bob.handle_input(&mailbox[1], &mut out, now, &mut rng).unwrap().unwrap();
    assert_eq!(&out[..r.len], b"second");
}

/// Alice with one ratchet session stored (to a peer offline, through
/// its bundle): her store holds `agent.rec` and one `session-N.rec`.
fn agent_with_a_session(dir: &std::path::Path, rng: &mut TestRng) -> (FileStore, Box<HostAgent>, String) {
    use securemesh::Roles;
    let now = securemesh_core::Instant::from_millis(1_000);
    let mut alice = new_agent(rng);
    let bob = new_agent(rng);
    let mut store = FileStore::open(dir, None).unwrap();
    let id = alice.add_peer_identity(bob.public_identity()).unwrap();
    alice.set_reachable(&id, false).unwrap();
    alice.policy_mut().define_role(Role(0), Permissions::of(&[MessageKind(1)])).unwrap();
    alice.policy_mut().grant(id, Roles::of(&[Role(0)])).unwrap();
    let mut bundle = [0u8; securemesh_ratchet::MAX_BUNDLE_LEN];
    let n = bob.bundle(&mut bundle).unwrap();
    alice.set_peer_bundle(&bundle[..n]).unwrap();
    alice.send(&bob.peer_id(), MessageKind(1), b"hello", now, rng).unwrap();
    flush(&mut alice, &mut store, rng).unwrap();
    let session = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .find_map(|f| {
            f.strip_prefix("session-").and_then(|f| f.strip_suffix(".rec")).map(|n| format!("session-{n}"))
        })
        .expect("a session record");
    (store, alice, session)
}

/// A record's blob stored under another record's name (and checked
/// against that name's generation) is refused, naming the file.
#[test]
fn a_blob_under_another_records_name_is_refused() {
    let dir = TempDir::new("renamed");
    let mut rng = TestRng::new(0x5107_0106);
    let (_store, _alice, session) = agent_with_a_session(&dir.0, &mut rng);
    assert!(restored(&FileStore::open(&dir.0, None).unwrap()).unwrap().is_some());
    // The session's blob moved to another session's name, the ledger
    // listing that name with the same generation.
    let other = if session == "session-1" { "session-2" } else { "session-1" };
    std::fs::rename(dir.0.join(format!("{session}.rec")), dir.0.join(format!("{other}.rec"))).unwrap();
    let ledger = dir.0.join("generations");
    let text =
        std::fs::read_to_string(&ledger).unwrap().replace(&format!("{session} "), &format!("{other} "));
    std::fs::write(&ledger, text).unwrap();
    let err = restored(&FileStore::open(&dir.0, None).unwrap()).unwrap_err();
    assert!(
        matches!(&err, HostError::Restore { record, error: securemesh::Error::WrongRecord } if record == other),
        "{err:?}"
    );
    assert!(err.to_string().contains(other), "{err}");
}

/// With a ledger present, a record file it does not list (an empty
/// ledger, or a file dropped in) is refused naming the file, not
/// restored with its rollback check skipped.
#[test]
fn a_record_the_ledger_does_not_list_is_refused() {
    let dir = TempDir::new("unlisted");
    let mut rng = TestRng::new(0x5107_0107);
    let (_store, _alice, session) = agent_with_a_session(&dir.0, &mut rng);
    let ledger = dir.0.join("generations");
    let full = std::fs::read_to_string(&ledger).unwrap();

    std::fs::write(&ledger, "").unwrap();
    let err = FileStore::open(&dir.0, None).unwrap().load().unwrap_err();
    assert!(matches!(&err, StoreError::Unlisted(p) if p.ends_with("agent.rec")), "{err:?}");

    let without: String =
        full.lines().filter(|l| !l.starts_with(&session)).map(|l| format!("{l}\n")).collect();
    std::fs::write(&ledger, without).unwrap();
    let err = FileStore::open(&dir.0, None).unwrap().load().unwrap_err();
    let file = format!("{session}.rec");
    assert!(matches!(&err, StoreError::Unlisted(p) if p.ends_with(&file)), "{err:?}");
    assert!(err.to_string().contains(&file), "{err}");

    // The full ledger restores.
    std::fs::write(&ledger, full).unwrap();
    assert!(restored(&FileStore::open(&dir.0, None).unwrap()).unwrap().is_some());
}
