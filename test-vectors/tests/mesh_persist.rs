//! The mesh agent's sealed records (`state/mesh-records-v1.json`): the
//! golden file passes, a changed byte fails its case, and the ignored
//! writer that made it (run once, never overwrites).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use securemesh::{Config, DefaultAgent, MessageKind, Permissions, RecordId, Role, Roles};
use securemesh_core::envelope::StorageKey;
use securemesh_core::testing::TestRng;
use securemesh_core::{Instant, UnixTime};
use securemesh_ratchet::Identity;
use securemesh_test_vectors::state::{self, MeshNext, MeshRecord, MeshRecordsGolden};
use securemesh_test_vectors::vectors_dir;
use std::collections::BTreeMap;

/// The storage key of the golden records.
const KEY: [u8; 32] = *b"securemesh golden mesh record v1";
const TASK: MessageKind = MessageKind(1);
const WORKER: Role = Role(0);
const T0: Instant = Instant(1_000);
const WALL: UnixTime = UnixTime(1_700_000_000);
/// Seeds of Bob (the recorded agent), Alice and Carol (even: `TestRng`
/// ignores the lowest bit).
const SEEDS: [u64; 3] = [0xB0B0_6000, 0xA11C_6000, 0xCA40_6000];
/// Cases: agent record, two session records, two next messages.
const CASES: usize = 5;

fn golden_path() -> std::path::PathBuf {
    vectors_dir().join("state/mesh-records-v1.json")
}

#[test]
fn mesh_golden_passes_and_a_changed_byte_fails() {
    let r = state::mesh_records_v1(&golden_path());
    assert!(r.is_ok() && r.total == CASES, "{}: {:?}", r.line(), r.failures);
    assert_eq!(r.line(), format!("state mesh-records-v1 {CASES}/{CASES}"));

    let text = std::fs::read_to_string(golden_path()).unwrap();
    let dir = std::env::temp_dir().join(format!("securemesh-mesh-golden-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("mesh-records-v1.json");
    let flip = |s: &mut String, at: usize| {
        let c = if &s[at..at + 1] == "0" { "1" } else { "0" };
        s.replace_range(at..at + 1, c);
    };
    // A byte inside the second session record's ciphertext: that record and
    // the next message of its session fail.
    let mut g: MeshRecordsGolden = serde_json::from_str(&text).unwrap();
    let at = g.records[2].sealed.len() - 40;
    flip(&mut g.records[2].sealed, at);
    std::fs::write(&bad, serde_json::to_string(&g).unwrap()).unwrap();
    let r = state::mesh_records_v1(&bad);
    assert_eq!((r.passed, r.total), (CASES - 2, CASES), "{:?}", r.failures);
    assert!(r.failures[0].starts_with("mesh-records-v1 session"), "{:?}", r.failures);
    assert!(r.failures[1].starts_with("mesh-records-v1 next[1]"), "{:?}", r.failures);
    // A byte of the agent record: everything fails.
    let mut g: MeshRecordsGolden = serde_json::from_str(&text).unwrap();
    flip(&mut g.records[0].sealed, 100);
    std::fs::write(&bad, serde_json::to_string(&g).unwrap()).unwrap();
    let r = state::mesh_records_v1(&bad);
    assert_eq!((r.passed, r.total), (0, CASES), "{:?}", r.failures);
    // A byte of the first next message's envelope: only that case fails.
    let mut g: MeshRecordsGolden = serde_json::from_str(&text).unwrap();
    let at = g.next[0].envelope.len() - 3;
    flip(&mut g.next[0].envelope, at);
    std::fs::write(&bad, serde_json::to_string(&g).unwrap()).unwrap();
    let r = state::mesh_records_v1(&bad);
    assert_eq!((r.passed, r.total), (CASES - 1, CASES), "{:?}", r.failures);
    assert!(r.failures[0].starts_with("mesh-records-v1 next[0]"), "{:?}", r.failures);
    std::fs::remove_dir_all(dir).unwrap();
}

fn agent(seed: u64) -> (Box<DefaultAgent>, TestRng) {
    let mut rng = TestRng::new(seed);
    let identity = Identity::generate(&mut rng);
    let mut a = Box::new(DefaultAgent::new(identity, Config::default(), &mut rng, WALL));
    a.policy_mut().define_role(WORKER, Permissions::of(&[TASK])).unwrap();
    (a, rng)
}

fn transmits(a: &mut DefaultAgent) -> Vec<Vec<u8>> {
    let mut buf = [0u8; 2048];
    let mut v = Vec::new();
    while let Some(t) = a.poll_transmit(&mut buf).unwrap() {
        v.push(buf[..t.len].to_vec());
    }
    v
}

/// Writes the golden file from today's code. Run once per released record
/// version (`cargo test -p securemesh-test-vectors -- --ignored`); it never
/// overwrites an existing file.
#[test]
#[ignore]
fn write_mesh_records_golden() {
    let path = golden_path();
    assert!(!path.exists(), "golden files are never rewritten");
    let (mut bob, mut rb) = agent(SEEDS[0]);
    let (mut alice, mut ra) = agent(SEEDS[1]);
    let (mut carol, mut rc) = agent(SEEDS[2]);
    let bob_id = bob.peer_id();
    bob.enable_persistence(StorageKey::new(KEY));
    let ids: Vec<u32> = bob.one_time_prekey_ids().take(2).collect();
    let mut store: BTreeMap<RecordId, (u64, Vec<u8>)> = BTreeMap::new();
    let mut buf = vec![0u8; DefaultAgent::MAX_RECORD_LEN];
    for (who, one_time) in [(&mut alice, ids[0]), (&mut carol, ids[1])] {
        let id = bob.add_peer_identity(who.public_identity()).unwrap();
        bob.policy_mut().grant(id, Roles::of(&[WORKER])).unwrap();
        let mut bundle = [0u8; securemesh_ratchet::MAX_BUNDLE_LEN];
        let n = bob.bundle_with(Some(one_time), &mut bundle).unwrap();
        who.set_peer_bundle(&bundle[..n]).unwrap();
        who.policy_mut().grant(bob_id, Roles::of(&[WORKER])).unwrap();
    }
    // Alice sends two messages, Carol one; Bob answers Alice (so her
    // session has stepped its DH ratchet) and stores every record.
    let mut out = [0u8; 2048];
    let mut to_bob = Vec::new();
    alice.send(&bob_id, TASK, b"measure tank 3", T0, &mut ra).unwrap();
    alice.send(&bob_id, TASK, b"and tank 4", T0, &mut ra).unwrap();
    to_bob.extend(transmits(&mut alice));
    carol.send(&bob_id, TASK, b"calibrate pump 2", T0, &mut rc).unwrap();
    to_bob.extend(transmits(&mut carol));
    for env in &to_bob {
        bob.handle_input(env, &mut out, T0, &mut rb).unwrap().expect("delivered");
    }
    bob.send(&alice.peer_id(), TASK, b"3.2 m", T0, &mut rb).unwrap();
    while let Some(r) = bob.poll_persist(&mut buf, &mut rb).unwrap() {
        store.insert(r.id, (r.generation, buf[..r.len].to_vec()));
    }
    for env in transmits(&mut bob) {
        alice.handle_input(&env, &mut out, T0, &mut ra).unwrap().expect("delivered");
    }
    assert_eq!(store.len(), 3, "agent record and two session records");

    // The next message of each session, made after the records.
    let mut next = Vec::new();
    for (who, rng, payload, slot) in
        [(&mut alice, &mut ra, &b"level 3.1 m"[..], 0), (&mut carol, &mut rc, &b"pump 2 done"[..], 1)]
    {
        assert!(bob.sessions().nth(slot).is_some_and(|s| s.peer == who.peer_id()), "slot {slot}");
        who.send(&bob_id, TASK, payload, T0, rng).unwrap();
        let env = transmits(who).pop().unwrap();
        next.push(MeshNext {
            record: state::record_name(RecordId::Session(slot as u16)),
            from: hex::encode(who.peer_id().0),
            envelope: hex::encode(env),
            kind: TASK.0,
            payload: hex::encode(payload),
        });
    }
    let mut records: Vec<MeshRecord> = Vec::new();
    for id in [RecordId::Agent, RecordId::Session(0), RecordId::Session(1)] {
        let (generation, sealed) = &store[&id];
        records.push(MeshRecord {
            record: state::record_name(id),
            generation: *generation,
            sealed: hex::encode(sealed),
        });
    }
    let golden = MeshRecordsGolden {
        source: format!(
            "securemesh mesh agent records (DefaultAgent = Agent<8, 4, 8, 1024, 16>, envelope kind \
             MESH_ROUTER 5, record version 1) sealed under the storage key \"securemesh golden mesh record \
             v1\" (ASCII, hex below); Bob ({:#x}) holds ratchet sessions with Alice ({:#x}, slot 0: two \
             messages received, one answered) and Carol ({:#x}, slot 1: one received); identities and \
             everything else from securemesh_core::testing::TestRng with those seeds, time 1000 ms, wall \
             1700000000 s; next: each peer's following message, which the restored agent delivers; \
             written by securemesh (test-vectors/tests/mesh_persist.rs), MIT OR Apache-2.0",
            SEEDS[0], SEEDS[1], SEEDS[2]
        ),
        storage_key: hex::encode(KEY),
        owner: hex::encode(bob_id.0),
        records,
        next,
    };
    std::fs::write(&path, serde_json::to_string_pretty(&golden).unwrap() + "\n").unwrap();
}
