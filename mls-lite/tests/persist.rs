//! Persisted group state (`Persist for Group`) on the mlswg
//! passive-client vectors:
//!
//! - a group saved after any number of epochs of a vector (plain or
//!   sealed), restored (by value or in place into a slot), re-encodes
//!   byte-identically and processes the remaining epochs with the published
//!   epoch authenticators;
//! - a sealed group opens only at its generation or later (`Rollback`
//!   otherwise) and with its key;
//! - truncated and bit-flipped encodings never panic, and whatever still
//!   decodes re-encodes to the same bytes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use securemesh_core::Error as StateError;
use securemesh_core::envelope::{Persist, StorageKey};
use securemesh_core::testing::TestRng;
use securemesh_mls_lite::commit::{CommitEvent, ProposalCache, PskStore, ResumptionPsk};
use securemesh_mls_lite::crypto::Secret32;
use securemesh_mls_lite::welcome::ExternalPsk;

mod common;
use common::*;

fn encode(g: &Group) -> Vec<u8> {
    let mut out = vec![0u8; Group::MAX_ENCODED_LEN];
    let n = g.encode_state(&mut out).unwrap();
    out.truncate(n);
    out
}

/// A vector entry being followed: its PSKs and the resumption PSKs kept.
struct Follow<'e> {
    e: &'e Json,
    psk_bytes: Vec<(Vec<u8>, Vec<u8>)>,
    history: Vec<(Vec<u8>, u64, Secret32)>,
}

impl<'e> Follow<'e> {
    fn join(e: &'e Json) -> (Self, Box<Group>) {
        let psk_bytes = external_psks(e);
        let group = join(e, &psk_bytes);
        (Follow { e, psk_bytes, history: Vec::new() }, group)
    }

    /// Process epoch `i` (its proposals, then its commit) and check its
    /// epoch authenticator.
    fn epoch(&mut self, i: usize, group: &mut Group) {
        let epoch = &self.e.get("epochs").arr()[i];
        let mut cache: Box<ProposalCache> = Box::default();
        let mut spare: Box<Group> = Box::default();
        for p in epoch.get("proposals").arr() {
            let bytes = p.hex();
            let mut scratch = vec![0u8; Group::commit_scratch_len(bytes.len())];
            group.process_proposal(&bytes, &mut cache, &mut scratch).unwrap();
        }
        let commit = epoch.get("commit").hex();
        self.history.push((
            group.group_id().to_vec(),
            group.epoch(),
            group.secrets().resumption_psk.duplicate(),
        ));
        let resumption: Vec<ResumptionPsk<'_>> =
            self.history.iter().map(|(g, ep, psk)| ResumptionPsk { group_id: g, epoch: *ep, psk }).collect();
        let psks: Vec<ExternalPsk<'_>> = psk_refs(&self.psk_bytes);
        let store = PskStore { external: &psks, resumption: &resumption };
        let mut scratch = vec![0u8; Group::commit_scratch_len(commit.len())];
        let before = group.epoch();
        let event = group.process_commit(&commit, &mut cache, &store, &mut spare, &mut scratch).unwrap();
        assert_eq!(event, CommitEvent::NewEpoch { epoch: before + 1 });
        assert_eq!(
            group.epoch_authenticator().expose()[..],
            epoch.get("epoch_authenticator").hex()[..],
            "epoch {i}"
        );
    }
}

fn vector(file: &str) -> Json {
    parse(&std::fs::read_to_string(format!("{DIR}{file}")).unwrap())
}

/// Save after `k` epochs, restore, and finish the vector from the restored
/// state, for every `k` and every entry with epochs.
#[test]
fn restored_groups_continue_the_passive_client_vectors() {
    let mut restores = 0;
    for file in ["passive-client-handling-commit.json", "interop-passive/commit.json"] {
        let v = vector(file);
        for e in v.arr().iter().filter(|e| !e.get("epochs").arr().is_empty()) {
            let epochs = e.get("epochs").arr().len();
            for k in 0..=epochs {
                let (mut follow, mut group) = Follow::join(e);
                for i in 0..k {
                    follow.epoch(i, &mut group);
                }
                let bytes = encode(&group);
                assert!(bytes.len() <= Group::MAX_ENCODED_LEN);
                drop(group);
                // Alternate between the by-value and the in-place restore.
                let mut restored: Box<Group> = if k % 2 == 0 {
                    Box::new(Group::decode_state(&bytes).unwrap())
                } else {
                    let mut slot: Box<Group> = Box::default();
                    slot.decode_state_into(&bytes).unwrap();
                    slot
                };
                assert_eq!(encode(&restored), bytes, "{file}: re-encoding after {k} epochs");
                for i in k..epochs {
                    follow.epoch(i, &mut restored);
                }
                restores += 1;
            }
        }
    }
    // 13 entries of 2 epochs (3 save points each) and 6 of 1 epoch (2 each).
    assert!(restores >= 13 * 3, "{restores}");
}

#[test]
fn sealed_group_generation_rollback_and_key() {
    // `Group::open_state` returns a group by value: with feature `x-wing`
    // (room for X-Wing keys in the tree) more than a test thread's stack.
    std::thread::Builder::new()
        .stack_size(32 << 20)
        .spawn(sealed_group_generation_rollback_and_key_body)
        .unwrap()
        .join()
        .unwrap();
}

fn sealed_group_generation_rollback_and_key_body() {
    let v = vector("passive-client-handling-commit.json");
    let e = &v.arr()[0];
    let (mut follow, mut group) = Follow::join(e);
    follow.epoch(0, &mut group);
    let plain = encode(&group);
    let key = StorageKey::new([0x42; 32]);
    let mut blob = vec![0u8; Group::MAX_SEALED_LEN];
    let n = group.seal_state(&key, 7, &mut TestRng::new(1), &mut blob).unwrap();
    blob.truncate(n);
    assert_eq!(
        n,
        plain.len() - securemesh_core::envelope::HEADER_LEN + securemesh_core::envelope::SEAL_OVERHEAD
    );

    let mut scratch = vec![0u8; Group::MAX_BODY_LEN];
    let mut slot: Box<Group> = Box::default();
    assert_eq!(slot.open_state_into(&key, &blob, 7, &mut scratch), Ok(7));
    assert!(scratch.iter().all(|b| *b == 0), "scratch wiped");
    assert_eq!(encode(&slot), plain);
    // Continue the vector from the opened state.
    follow.epoch(1, &mut slot);

    let (by_value, generation) = Group::open_state(&key, &blob, 3, &mut scratch).unwrap();
    assert_eq!((encode(&by_value), generation), (plain.clone(), 7));
    // A caller that has seen generation 8 refuses the older blob, and the slot is left empty.
    assert_eq!(
        slot.open_state_into(&key, &blob, 8, &mut scratch),
        Err(StateError::Rollback { found: 7, newest: 8 })
    );
    assert!(!slot.is_joined());
    assert!(matches!(Group::open_state(&key, &blob, 8, &mut scratch), Err(StateError::Rollback { .. })));
    let wrong = StorageKey::new([0x43; 32]);
    assert_eq!(slot.open_state_into(&wrong, &blob, 0, &mut scratch), Err(StateError::Decrypt));
    // Flipped bits anywhere in the sealed blob are rejected.
    for i in (0..blob.len()).step_by(7) {
        let mut bad = blob.clone();
        bad[i] ^= 1 << (i % 8);
        assert!(slot.open_state_into(&key, &bad, 0, &mut scratch).is_err(), "byte {i}");
        assert!(!slot.is_joined());
    }
    // A plain envelope is not a sealed one, and the reverse.
    assert!(slot.open_state_into(&key, &plain, 0, &mut scratch).is_err());
    assert!(Group::decode_state(&blob).is_err());
}

#[test]
fn truncated_and_flipped_encodings_never_panic() {
    let v = vector("passive-client-handling-commit.json");
    let (mut follow, mut group) = Follow::join(&v.arr()[1]);
    follow.epoch(0, &mut group);
    let good = encode(&group);
    let mut slot: Box<Group> = Box::default();
    for n in 0..good.len() {
        assert!(slot.decode_state_into(&good[..n]).is_err());
        assert!(!slot.is_joined());
    }
    let mut longer = good.clone();
    longer.push(0);
    assert!(slot.decode_state_into(&longer).is_err());
    let mut decoded = 0;
    for i in 0..good.len() {
        for bit in [i % 8, (i + 3) % 8] {
            let mut bad = good.clone();
            bad[i] ^= 1 << bit;
            match slot.decode_state_into(&bad) {
                Ok(()) => {
                    // Only bytes without structure (secrets, transcript hashes,
                    // opaque leaf bytes the tree hash covers are not among them).
                    decoded += 1;
                    assert_eq!(encode(&slot), bad, "byte {i} bit {bit}");
                }
                Err(_) => assert!(!slot.is_joined()),
            }
        }
    }
    assert!(decoded > 0 && decoded < 2 * good.len(), "{decoded}");
}
