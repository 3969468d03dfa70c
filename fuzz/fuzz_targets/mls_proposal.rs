//! Proposals: `Group::propose`, `Group::process_proposal`, and the commit
//! that covers them by reference (`Group::commit_with`, `process_commit`).
//!
//! Setup (`securemesh_fuzz::mls::proposal_fixture`, built once): leaves 0
//! (A), 1 (B) and 2 (C) of one `Group<8, 384, 32, 64>` at epoch 1, all
//! knowing one external PSK and the resumption PSK of epoch 0. Every run
//! restores A and B from their encoded states, with empty caches.
//!
//! Input: `flags u8 | frames` (`len u16 BE | bytes`,
//! `securemesh_fuzz::noise::split_frames`, at most 24). Each frame is
//! `kind u8 | rest` (`securemesh_fuzz::mls::proposal_frame`): kind & 7 =
//! 1..=5 makes B send a proposal with `propose` (Remove of the leaf in
//! `rest`, GroupContextExtensions with `rest` as extensions, an external
//! PSK with `rest` as id, a resumption PSK `usage | epoch | group id`, Add
//! of one of four KeyPackages), as a PrivateMessage if bit 7 is set; any
//! other kind gives `rest` to B's `process_proposal` (seeds: genuine
//! proposals of C and A). If B cached anything, A commits its cache with
//! `commit_with` (flags bit 0: PrivateMessage; bit 1: `update_path`), and
//! B processes the commit.
//!
//! Properties checked:
//! - nothing panics;
//! - `process_proposal` at B: on `Err` B's `encode_state` and its cache
//!   (the references, in order) are unchanged; on `Ok(r)` the cache holds
//!   `r` (one more entry, or none if `r` was there), and A's
//!   `process_proposal` of the same message gives `Ok(r)`;
//! - `propose` at B is `Ok` exactly when the proposal is valid for the
//!   group (a Remove of a member's leaf, extensions of at most 64 bytes, a
//!   PSK all members know; an Add of a KeyPackage that verifies and
//!   whose keys no member uses) and
//!   the cache has room; on `Err` B's state and cache are unchanged; on
//!   `Ok` the message is cached under the returned reference at B and
//!   processed by A with the same one;
//! - `commit_with` at A never fails (invalid cached proposals are left
//!   out; a commit that removes B and C leaves A alone, which is allowed;
//!   on `Err` A's state would be unchanged and `pending` empty): `pending`
//!   is epoch 2, and B
//!   either follows (`NewEpoch { epoch: 2 }`, with A's epoch
//!   authenticator, tree hash and extensions, its cache emptied) or is
//!   removed (`Removed`, state unchanged, exactly when B's leaf is gone
//!   from A's new epoch: blank, or taken by a member the commit adds);
//!   B refusing the genuine commit of a member with the same cache and PSKs
//!   is a failure;
//! - a new member the commit added (dave, erin) joins from the Welcome
//!   into the same epoch with the same epoch authenticator (or, if a
//!   resumption PSK was committed, which a joiner cannot know, the join is
//!   refused with `Unsupported`).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use securemesh_core::testing::TestRng;
use securemesh_fuzz::mls::{
    PROPOSAL_EXTERNAL_PSKS, PROPOSAL_GROUP_ID, PROPOSAL_PSK_ID, ProposalFixture, ProposalGroup as G,
    proposal_fixture, proposal_frame, welcome_of,
};
use securemesh_fuzz::noise::{encode_state, split_frames};
use securemesh_mls_lite::messages::{ProposalBody, Psk, ResumptionPskUsage, WireFormat};
use securemesh_mls_lite::pending_commit::{CommitOptions, Proposals};
use securemesh_mls_lite::proposal::OutgoingProposal;
use securemesh_mls_lite::{CommitEvent, Error, ProposalCache, PskStore};

/// Extension bytes the group's GroupContext may hold (`E`).
const EXTENSION_BYTES: usize = 64;
/// Proposals a default cache holds.
const CACHE_ENTRIES: usize = 16;

fn fixture() -> &'static ProposalFixture {
    static F: OnceLock<ProposalFixture> = OnceLock::new();
    F.get_or_init(proposal_fixture)
}

fn references(cache: &ProposalCache, epoch: u64) -> Vec<[u8; 32]> {
    cache.references(epoch).collect()
}

/// After an `Ok(r)` of a proposal: `r` is cached, as one new entry or as
/// one that was there.
fn check_cached(before: &[[u8; 32]], after: &[[u8; 32]], r: &[u8; 32], what: &str) {
    if before.contains(r) {
        assert_eq!(before, after, "{what}: a repeated proposal changed the cache");
    } else {
        assert_eq!(&after[..before.len()], before, "{what}: the cache lost or reordered proposals");
        assert_eq!(&after[before.len()..], &[*r], "{what}: not cached as one new entry");
    }
}

/// Whether `body` is a well-formed `extensions<V>` body (RFC 9420 §7.2:
/// `uint16 extension_type; opaque extension_data<V>` repeated, the
/// length a minimal QUIC varint, no type twice); at most 16 extensions
/// (what the crate's check holds).
fn well_formed_extensions(body: &[u8]) -> bool {
    let mut rest = body;
    let mut seen = Vec::new();
    while !rest.is_empty() {
        let Some((ty, tail)) = rest.split_first_chunk::<2>() else { return false };
        let Some(&first) = tail.first() else { return false };
        let (prefix, min) = match first >> 6 {
            0 => (1, 0),
            1 => (2, 1 << 6),
            2 => (4, 1 << 14),
            _ => return false,
        };
        let Some(len_bytes) = tail.get(..prefix) else { return false };
        let len = len_bytes[1..].iter().fold(usize::from(first & 0x3f), |n, b| (n << 8) | usize::from(*b));
        if len < min || tail.len() - prefix < len {
            return false;
        }
        if seen.contains(ty) {
            return false;
        }
        seen.push(*ty);
        rest = &tail[prefix + len..];
    }
    seen.len() <= 16
}

fn be_u32(rest: &[u8]) -> u32 {
    rest.iter().take(4).fold(0u32, |n, b| (n << 8) | u32::from(*b))
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, frames)) = data.split_first() else { return };
    let fx = fixture();
    let resumption = fx.resumption_psks();
    let store = PskStore { external: &PROPOSAL_EXTERNAL_PSKS, resumption: &resumption };
    let mut a: Box<G> = Box::default();
    let mut b: Box<G> = Box::default();
    fx.restore(0, &mut a);
    fx.restore(1, &mut b);
    let epoch = b.epoch();
    let mut cache_a: Box<ProposalCache> = Box::default();
    let mut cache_b: Box<ProposalCache> = Box::default();
    let mut rng = TestRng::new(0x9b00 ^ u64::from(flags));

    for frame in split_frames(frames) {
        let Some((&kind, rest)) = frame.split_first() else { continue };
        let state_before = encode_state(&*b);
        let refs_before = references(&cache_b, epoch);
        let full = refs_before.len() >= CACHE_ENTRIES;

        // The message A processes next, and the reference B cached it under.
        let (message, reference): (Vec<u8>, [u8; 32]);
        match kind & 7 {
            k @ 1..=5 => {
                let wire_format = if kind & proposal_frame::PRIVATE != 0 {
                    WireFormat::PrivateMessage
                } else {
                    WireFormat::PublicMessage
                };
                let (proposal, valid) = match k {
                    proposal_frame::REMOVE => {
                        let leaf = be_u32(rest);
                        (OutgoingProposal::Remove(leaf), leaf <= 2)
                    }
                    proposal_frame::GCE => (
                        OutgoingProposal::GroupContextExtensions(rest),
                        rest.len() <= EXTENSION_BYTES && well_formed_extensions(rest),
                    ),
                    proposal_frame::PSK_EXTERNAL => {
                        let psk = Psk::External { psk_id: rest };
                        (OutgoingProposal::PreSharedKey(psk), rest == PROPOSAL_PSK_ID)
                    }
                    proposal_frame::PSK_RESUMPTION => {
                        let usage = match rest.first().copied().unwrap_or(1) % 3 {
                            1 => ResumptionPskUsage::Application,
                            2 => ResumptionPskUsage::Reinit,
                            _ => ResumptionPskUsage::Branch,
                        };
                        let psk_epoch = u64::from(rest.get(1).copied().unwrap_or(1));
                        let psk_group_id = rest.get(2..).unwrap_or(&[]);
                        let psk = Psk::Resumption { usage, psk_group_id, psk_epoch };
                        let valid = usage == ResumptionPskUsage::Application
                            && psk_group_id == PROPOSAL_GROUP_ID
                            && psk_epoch <= 1;
                        (OutgoingProposal::PreSharedKey(psk), valid)
                    }
                    _ => {
                        // Candidates 0 and 1 (`which % 4`, as in `add_candidate`)
                        // are new; 2 and 3 are members (keys in use: not a
                        // valid Add).
                        let which = rest.first().copied().unwrap_or(0);
                        let c = fx.add_candidate(which);
                        (OutgoingProposal::Add(c.key_package().expect("candidate")), which % 4 <= 1)
                    }
                };
                let mut out = vec![0u8; rest.len() + 2048];
                let mut scratch = vec![0u8; G::propose_scratch_len(rest.len().max(512))];
                let result =
                    b.propose(&proposal, wire_format, &store, &mut cache_b, &mut rng, &mut out, &mut scratch);
                let refs = references(&cache_b, epoch);
                match result {
                    Err(e) => {
                        assert!(encode_state(&*b) == state_before, "refused {proposal:?} changed B ({e:?})");
                        assert_eq!(refs, refs_before, "refused {proposal:?} changed B's cache ({e:?})");
                        assert!(
                            !valid || (full && e == Error::Capacity),
                            "valid {proposal:?} ({wire_format:?}) refused: {e:?}"
                        );
                        continue;
                    }
                    Ok(sent) => {
                        assert!(valid, "invalid {proposal:?} was sent");
                        check_cached(&refs_before, &refs, &sent.reference, "propose");
                        out.truncate(sent.len);
                        (message, reference) = (out, sent.reference);
                    }
                }
            }
            _ => {
                let mut scratch = vec![0u8; G::commit_scratch_len(rest.len())];
                let result = b.process_proposal(rest, &mut cache_b, &mut scratch);
                let refs = references(&cache_b, epoch);
                match result {
                    Err(e) => {
                        assert!(encode_state(&*b) == state_before, "a refused proposal changed B ({e:?})");
                        assert_eq!(refs, refs_before, "a refused proposal changed B's cache ({e:?})");
                        continue;
                    }
                    Ok(r) => {
                        check_cached(&refs_before, &refs, &r, "process_proposal");
                        (message, reference) = (rest.to_vec(), r);
                    }
                }
            }
        }
        let mut scratch = vec![0u8; G::commit_scratch_len(message.len())];
        let at_a = a.process_proposal(&message, &mut cache_a, &mut scratch);
        assert_eq!(at_a, Ok(reference), "A does not cache what B cached");
    }

    if cache_b.is_empty() {
        return;
    }
    assert_eq!(references(&cache_a, epoch), references(&cache_b, epoch), "A and B cache differently");

    // Whether the cache holds a resumption PSK (a joiner cannot know it).
    let mut resumption_psk = false;
    for r in cache_a.references(epoch) {
        let (_, p) = cache_a.get(epoch, &r).expect("cached");
        if let ProposalBody::PreSharedKey(id) = p.body {
            resumption_psk |= matches!(id.psk, Psk::Resumption { .. });
        }
    }

    let wire_format = if flags & 1 != 0 { WireFormat::PrivateMessage } else { WireFormat::PublicMessage };
    let options = CommitOptions { wire_format, update_path: flags & 2 != 0, ..CommitOptions::default() };
    let total = cache_a.encoded_len(epoch);
    let mut pending: Box<G> = Box::default();
    let mut commit = vec![0u8; total + 8192];
    let mut welcome = vec![0u8; G::welcome_len(CACHE_ENTRIES, true) + total];
    let mut scratch = vec![0u8; G::send_commit_scratch_len(total)];
    let a_before = encode_state(&*a);
    let result = a.commit_with(
        &Proposals::default(),
        &cache_a,
        &store,
        &options,
        &mut rng,
        &mut pending,
        &mut commit,
        &mut welcome,
        &mut scratch,
    );
    let out = match result {
        Err(e) => {
            assert!(encode_state(&*a) == a_before, "a refused commit changed A ({e:?})");
            assert!(!pending.is_joined(), "a refused commit left a pending epoch ({e:?})");
            // Invalid cached proposals are left out, so committing a cache
            // never fails.
            panic!("A cannot commit its cache: {e:?}");
        }
        Ok(out) => out,
    };
    assert_eq!((out.epoch, pending.epoch()), (epoch + 1, epoch + 1));
    // B is removed when its leaf is gone from the new epoch (blank, or
    // taken by a member added in the same commit).
    let b_key = *b.tree().leaf(1).expect("B's leaf").signature_key;
    let b_removed = pending.tree().leaf(1).is_none_or(|l| *l.signature_key != b_key);

    // B follows A's commit.
    let b_before = encode_state(&*b);
    let mut spare: Box<G> = Box::default();
    let mut scratch = vec![0u8; G::commit_scratch_len(out.commit_len)];
    let result = b.process_commit(&commit[..out.commit_len], &mut cache_b, &store, &mut spare, &mut scratch);
    assert!(!spare.is_joined(), "the spare slot holds a group ({result:?})");
    match result {
        Ok(CommitEvent::NewEpoch { epoch: e }) => {
            assert!(!b_removed, "B moved on to an epoch without it");
            assert_eq!(e, epoch + 1);
            assert_eq!(b.epoch(), epoch + 1);
            assert_eq!(b.epoch_authenticator().expose(), pending.epoch_authenticator().expose());
            assert_eq!(b.tree_hash(), pending.tree_hash());
            assert_eq!(b.extensions(), pending.extensions());
            assert!(cache_b.is_empty(), "the old epoch's proposals stayed cached");
        }
        Ok(CommitEvent::Removed) => {
            assert!(b_removed, "B was told it is removed, but its leaf is in the new epoch");
            assert!(encode_state(&*b) == b_before, "a commit removing B changed it");
        }
        Err(e) => {
            assert!(encode_state(&*b) == b_before, "a refused commit changed B ({e:?})");
            panic!("B refused A's commit of their common cache: {e:?} ({wire_format:?})");
        }
    }

    // The members it added join.
    if out.welcome_len == 0 {
        return;
    }
    let w = welcome_of(&welcome[..out.welcome_len]).expect("the Welcome parses");
    for c in &fx.candidates {
        let kp = c.key_package().expect("candidate");
        if !pending.members().any(|(_, l)| l.encryption_key == kp.leaf_node.encryption_key) {
            continue;
        }
        let mut joiner: Box<G> = Box::default();
        let mut scratch = vec![0u8; G::scratch_len(out.welcome_len)];
        match joiner.join_into(&w, &c.keys().expect("keys"), None, &PROPOSAL_EXTERNAL_PSKS, &mut scratch) {
            Ok(()) => {
                assert_eq!(joiner.epoch(), epoch + 1);
                assert_eq!(joiner.epoch_authenticator().expose(), pending.epoch_authenticator().expose());
            }
            Err(e) => {
                assert!(resumption_psk && e == Error::Unsupported, "a new member cannot join: {e:?}");
                assert!(!joiner.is_joined());
            }
        }
    }
});
