//! Untrusted sealed records into `Agent::restore` and
//! `Agent::restore_record` (`mesh/src/persist.rs`).
//!
//! Input: `mode u8 | bytes`.
//!
//! | mode % 4 | what |
//! | --- | --- |
//! | 0 | `bytes` sealed as a record body (kind `MESH_ROUTER`, version 1, default suite) under the storage key, to `restore` |
//! | 1 | the same, to `restore_record` of Bob (restored, no session) |
//! | 2 | `kind u8 \| version u16 \| suite u16 \| body`: sealed with that header, to both |
//! | 3 | `bytes` as the sealed blob itself, to both |
//!
//! Sealing with the right key takes the fuzz bytes past the AEAD, so the
//! body decoders (identity, prekey pool, directory, policy, ratchet
//! session) are what is fuzzed.
//!
//! Properties checked:
//! - nothing panics; the scratch buffer is all zero afterwards;
//! - a restored agent is consistent: its peer id is the hash of its
//!   identity, it has no session, and its agent record, handed out again
//!   (`enable_persistence`), restores to an agent whose record has the
//!   same body (a fixed point);
//! - `restore_record` refused: Bob's sessions, counters, pending records
//!   and events are unchanged, and his genuine session record still
//!   restores into the slot, after which Alice's next ratchet message
//!   delivers. Accepted: it returns `Session(n)` for a slot within the
//!   table, at most one session more, and a second `restore_record` of
//!   the same blob is refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use securemesh::{Config, DefaultAgent, RecordId, SessionInfo};
use securemesh_core::crypto::SuiteId;
use securemesh_core::envelope::{self, Header, StateKind};
use securemesh_core::testing::TestRng;
use securemesh_fuzz::mesh::{self, Fixture, T0, drain_persist, events, fixture};

fn seal(h: &Header, body: &[u8]) -> Option<Vec<u8>> {
    let mut out = vec![0u8; envelope::SEAL_OVERHEAD + body.len()];
    let n =
        envelope::seal(&mesh::key(), h, 0, &mut TestRng::new(7), &mut out, |w| w.write_bytes(body)).ok()?;
    out.truncate(n);
    Some(out)
}

/// The body of `a`'s agent record, handed out again.
fn agent_body(a: &mut DefaultAgent) -> (Vec<u8>, Vec<u8>) {
    a.enable_persistence(mesh::key());
    let recs = drain_persist(a, &mut TestRng::new(9));
    let blob = recs.into_iter().find(|r| r.id == RecordId::Agent).expect("agent record").bytes;
    let mut scratch = vec![0u8; blob.len()];
    let body = envelope::open(&mesh::key(), &blob, 0, &mut scratch).expect("opens").body.to_vec();
    (blob, body)
}

fn try_restore(blob: &[u8]) {
    let mut scratch = vec![0u8; DefaultAgent::MAX_RECORD_LEN];
    let r = DefaultAgent::restore(mesh::key(), Config::default(), blob, 0, &mut scratch);
    assert!(scratch.iter().all(|b| *b == 0), "scratch not wiped");
    let Ok(a) = r else { return };
    let mut a = Box::new(a);
    assert_eq!(a.peer_id(), securemesh::PeerId::of(a.public_identity()));
    assert_eq!(a.sessions().count(), 0);
    let (blob2, body2) = agent_body(&mut a);
    let mut b = Box::new(
        DefaultAgent::restore(mesh::key(), Config::default(), &blob2, 0, &mut scratch)
            .expect("a re-persisted agent record restores"),
    );
    assert_eq!(b.peer_id(), a.peer_id());
    let (_, body3) = agent_body(&mut b);
    assert_eq!(body2, body3, "agent record not a fixed point");
}

fn try_restore_record(fx: &Fixture, blob: &[u8]) {
    let (mut bob, mut rng) = mesh::bob_fresh_after_initial(fx);
    let sessions: Vec<SessionInfo> = bob.sessions().collect();
    let counters = bob.counters();
    let mut scratch = vec![0u8; DefaultAgent::MAX_RECORD_LEN];
    let r = bob.restore_record(blob, 0, &mut scratch);
    assert!(scratch.iter().all(|b| *b == 0), "scratch not wiped");
    match r {
        Err(_) => {
            assert_eq!(bob.sessions().collect::<Vec<_>>(), sessions, "a refused record changed the sessions");
            assert_eq!(bob.counters(), counters);
            assert!(!bob.persist_pending(), "a refused record marked a record");
            assert!(events(&mut bob).is_empty(), "a refused record raised events");
            let s = &fx.bob_ratchet[1];
            bob.restore_record(&s.bytes, s.generation, &mut scratch)
                .expect("the genuine session record restores after a refused one");
            let mut out = vec![0u8; 2048];
            let got = bob.handle_input(&fx.ratchet[1], &mut out, T0, &mut rng).expect("next message");
            assert_eq!(got.map(|g| out[..g.len].to_vec()), Some(mesh::PAYLOADS[1].to_vec()));
        }
        Ok(id) => {
            let RecordId::Session(n) = id else { panic!("restore_record returned {id:?}") };
            assert!(usize::from(n) < 4, "slot {n} beyond the table");
            let count = bob.sessions().count();
            assert!(count <= sessions.len() + 1);
            assert!(bob.restore_record(blob, 0, &mut scratch).is_err(), "a record restored twice");
            assert_eq!(bob.sessions().count(), count);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let fx = fixture();
    let record = Header { kind: StateKind::MESH_ROUTER, version: 1, suite: SuiteId::DEFAULT };
    match mode % 4 {
        0 => {
            if let Some(blob) = seal(&record, rest) {
                try_restore(&blob);
            }
        }
        1 => {
            if let Some(blob) = seal(&record, rest) {
                try_restore_record(fx, &blob);
            }
        }
        2 => {
            if rest.len() < 5 {
                return;
            }
            let h = Header {
                kind: StateKind(rest[0]),
                version: u16::from_be_bytes([rest[1], rest[2]]),
                suite: SuiteId(u16::from_be_bytes([rest[3], rest[4]])),
            };
            if let Some(blob) = seal(&h, &rest[5..]) {
                try_restore(&blob);
                try_restore_record(fx, &blob);
            }
        }
        _ => {
            try_restore(rest);
            try_restore_record(fx, rest);
        }
    }
});
