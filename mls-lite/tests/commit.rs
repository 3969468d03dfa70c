//! Processing commits (`Group::process_commit`) on the mlswg
//! passive-client vectors:
//!
//! - a PublicMessage commit (`passive-client-handling-commit.json`, entry 0)
//!   and a PrivateMessage commit (the first one of
//!   `interop-passive/commit.json`) give the published epoch authenticators;
//! - every single flipped byte of those commits is rejected, without
//!   panicking, and leaves the observable state (epoch, epoch
//!   authenticator, tree hash, both transcript hashes, encoded tree, path
//!   keys) exactly as it was; the intact commit is then accepted;
//! - a too-small scratch buffer is `BufferTooSmall` and changes nothing;
//!   a replayed commit is rejected;
//! - random corruptions and random bytes never panic and change nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use securemesh_mls_lite::Error;
use securemesh_mls_lite::commit::{CommitEvent, ProposalCache, PskStore, ResumptionPsk};
use securemesh_mls_lite::crypto::Secret32;
use securemesh_mls_lite::messages::WireFormat;
use securemesh_mls_lite::mls_message::MlsMessage;

mod common;
use common::*;

/// Everything observable about the state.
#[derive(Debug, PartialEq, Eq)]
struct Observed {
    epoch: u64,
    epoch_authenticator: Vec<u8>,
    tree_hash: Vec<u8>,
    confirmed: Vec<u8>,
    interim: Vec<u8>,
    tree: Vec<u8>,
    path_keys: Vec<(u32, Vec<u8>)>,
    own_leaf: u32,
}

fn observe(g: &Group) -> Observed {
    let mut tree = vec![0u8; 64 * 1024];
    let n = g.tree().encode(&mut tree).unwrap();
    tree.truncate(n);
    Observed {
        epoch: g.epoch(),
        epoch_authenticator: g.epoch_authenticator().expose().to_vec(),
        tree_hash: g.tree_hash().to_vec(),
        confirmed: g.confirmed_transcript_hash().to_vec(),
        interim: g.interim_transcript_hash().to_vec(),
        tree,
        path_keys: g.path_keys().iter().map(|k| (k.node, k.private_key.expose().to_vec())).collect(),
        own_leaf: g.own_leaf(),
    }
}

/// Join as entry `e`, process its epochs before `target`, then check that
/// every flipped byte of epoch `target`'s commit is rejected and changes
/// nothing, and that the intact commit gives the published authenticator.
fn flip_test(e: &Json, target: usize) {
    let psk_bytes = external_psks(e);
    let psks = psk_refs(&psk_bytes);
    let mut group = join(e, &psk_bytes);
    let mut spare: Box<Group> = Box::default();
    let mut cache: Box<ProposalCache> = Box::default();

    let mut history: Vec<(Vec<u8>, u64, Secret32)> = Vec::new();
    for (i, epoch) in e.get("epochs").arr().iter().enumerate().take(target + 1) {
        for p in epoch.get("proposals").arr() {
            let bytes = p.hex();
            let mut scratch = vec![0u8; Group::commit_scratch_len(bytes.len())];
            group.process_proposal(&bytes, &mut cache, &mut scratch).unwrap();
        }
        let commit = epoch.get("commit").hex();
        history.push((group.group_id().to_vec(), group.epoch(), group.secrets().resumption_psk.duplicate()));
        let resumption: Vec<ResumptionPsk<'_>> =
            history.iter().map(|(g, ep, psk)| ResumptionPsk { group_id: g, epoch: *ep, psk }).collect();
        let store = PskStore { external: &psks, resumption: &resumption };
        let mut scratch = vec![0u8; Group::commit_scratch_len(commit.len())];
        if i == target {
            let before = observe(&group);
            // Too small a scratch changes nothing.
            let needed = Group::commit_scratch_len(commit.len());
            let mut small = vec![0u8; needed - 1];
            assert_eq!(
                group.process_commit(&commit, &mut cache, &store, &mut spare, &mut small),
                Err(Error::BufferTooSmall { needed })
            );
            assert_eq!(observe(&group), before);
            for at in 0..commit.len() {
                for bit in [0x01u8, 0x80] {
                    let mut bad = commit.clone();
                    bad[at] ^= bit;
                    let r = group.process_commit(&bad, &mut cache, &store, &mut spare, &mut scratch);
                    assert!(r.is_err(), "byte {at} ^ {bit:#x} accepted: {r:?}");
                    assert_eq!(observe(&group), before, "byte {at} ^ {bit:#x} changed the state");
                    assert!(!spare.is_joined());
                }
            }
        }
        let event = group.process_commit(&commit, &mut cache, &store, &mut spare, &mut scratch).unwrap();
        assert_eq!(event, CommitEvent::NewEpoch { epoch: group.epoch() });
        assert_eq!(group.epoch_authenticator().expose()[..], epoch.get("epoch_authenticator").hex()[..]);
        assert!(cache.is_empty());
        assert!(!spare.is_joined());
        if i == target {
            // A replay (now of a past epoch) is rejected and changes nothing.
            let after = observe(&group);
            assert!(group.process_commit(&commit, &mut cache, &store, &mut spare, &mut scratch).is_err());
            assert_eq!(observe(&group), after);
            return;
        }
    }
    panic!("no epoch {target}");
}

fn load(name: &str) -> Json {
    parse(&std::fs::read_to_string(format!("{DIR}{name}")).unwrap())
}

#[test]
fn flipped_public_message_commit_bytes_are_rejected_without_change() {
    let all = load("passive-client-handling-commit.json");
    let e = &all.arr()[0];
    // Both epochs: the second builds on the state the first produced.
    flip_test(e, 0);
    flip_test(e, 1);
}

#[test]
fn flipped_private_message_commit_bytes_are_rejected_without_change() {
    let all = load("interop-passive/commit.json");
    let (e, target) = all
        .arr()
        .iter()
        .find_map(|e| {
            e.get("epochs").arr().iter().position(|ep| ep.get("commit").hex()[2..4] == [0, 2]).map(|i| (e, i))
        })
        .expect("a PrivateMessage commit");
    flip_test(e, target);
}

#[test]
fn proposal_cache_capacity_and_epochs() {
    let all = load("interop-passive/commit.json");
    for wire_format in [WireFormat::PublicMessage, WireFormat::PrivateMessage] {
        // An entry whose first epoch starts with a proposal in this framing.
        let first = |e: &Json| {
            e.get("epochs").arr().first().and_then(|ep| ep.get("proposals").arr().first().map(Json::hex))
        };
        let e = all
            .arr()
            .iter()
            .find(|e| {
                first(e).is_some_and(|p| MlsMessage::from_bytes(&p).unwrap().wire_format() == wire_format)
            })
            .expect("an entry with proposals");
        let mut group = join(e, &external_psks(e));
        let proposal = first(e).unwrap();
        let mut scratch = vec![0u8; Group::commit_scratch_len(proposal.len())];
        // A one-byte cache cannot hold it and stays empty.
        let mut tiny: ProposalCache<4, 1> = ProposalCache::new();
        assert_eq!(group.process_proposal(&proposal, &mut tiny, &mut scratch), Err(Error::Capacity));
        assert!(tiny.is_empty());
        // A PublicMessage proposal may be cached twice (idempotent); a
        // PrivateMessage one uses up its handshake key, so the replay is
        // refused. A flipped byte is rejected.
        let mut cache: ProposalCache = ProposalCache::new();
        let r1 = group.process_proposal(&proposal, &mut cache, &mut scratch).unwrap();
        let again = group.process_proposal(&proposal, &mut cache, &mut scratch);
        if wire_format == WireFormat::PrivateMessage {
            assert_eq!(again, Err(Error::Decrypt));
        } else {
            assert_eq!(again, Ok(r1));
        }
        assert_eq!(cache.len(), 1);
        assert!(cache.get(group.epoch(), &r1).is_some());
        assert!(cache.get(group.epoch() + 1, &r1).is_none());
        let mut bad = proposal.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(group.process_proposal(&bad, &mut cache, &mut scratch).is_err());
        assert_eq!(cache.len(), 1);
    }
}

/// Random multi-byte corruptions and truncations of a commit (and random
/// bytes) never panic, are rejected, and never change the state.
#[test]
fn random_corruptions_never_panic_or_change_state() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    use std::cell::RefCell;

    let all = load("passive-client-handling-commit.json");
    let e = &all.arr()[0];
    let psk_bytes = external_psks(e);
    let psks = psk_refs(&psk_bytes);
    let group = join(e, &psk_bytes);
    let commit = e.get("epochs").arr()[0].get("commit").hex();
    let before = observe(&group);
    let state = RefCell::new((group, Box::<Group>::default(), Box::<ProposalCache>::default()));
    let store = PskStore { external: &psks, resumption: &[] };
    let len = commit.len();
    let strategy = (
        proptest::collection::vec((0..len, 1u8..=255), 1..8),
        0..=len,
        proptest::collection::vec(any::<u8>(), 0..64),
    );
    let mut runner = TestRunner::new(Config { cases: 256, ..Config::default() });
    runner
        .run(&strategy, |(flips, cut, noise)| {
            let mut s = state.borrow_mut();
            let (group, spare, cache) = &mut *s;
            let mut bad = commit.clone();
            for (at, x) in flips {
                bad[at] ^= x;
            }
            bad.truncate(cut.max(1));
            for input in [&bad[..], &noise[..]] {
                let mut scratch = vec![0u8; Group::commit_scratch_len(input.len())];
                prop_assert!(group.process_commit(input, cache, &store, spare, &mut scratch).is_err());
                prop_assert!(group.process_proposal(input, cache, &mut scratch).is_err());
                prop_assert_eq!(&observe(group), &before);
                prop_assert!(cache.is_empty());
            }
            Ok(())
        })
        .unwrap();
}
