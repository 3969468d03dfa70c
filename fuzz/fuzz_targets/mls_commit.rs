//! Untrusted handshake messages into a joined group:
//! `Group::process_proposal` and `process_commit`.
//!
//! The group is the joiner of `securemesh_fuzz::mls::commit_member`
//! (`passive-client-handling-commit.json` entry 12), joined at epoch 0 of
//! the vector; its genuine messages are the epoch-0 commit, then the six
//! epoch-1 proposals and the epoch-1 commit that lists them by reference.
//! Group, spare slot and proposal cache are `static`s (never on the stack).
//! A run starts from the freshly joined group: the slot is re-joined only
//! when an earlier run moved it to another epoch (a refused message leaves
//! it as it was, which is checked).
//!
//! Input: frames (`len u16 BE | bytes`, `securemesh_fuzz::noise::split_frames`,
//! at most 24). Each frame goes to `process_proposal`, then to
//! `process_commit` (with the vector's external PSK and the resumption PSKs
//! of the epochs passed).
//!
//! Properties checked:
//! - nothing panics;
//! - `process_proposal` is `Ok` iff the frame is a genuine proposal of the
//!   current epoch (a repeat is `Ok` again, idempotent); on `Err` the cache
//!   is unchanged;
//! - `process_commit` is `Ok` iff the frame is the genuine commit of the
//!   current epoch and every proposal of that epoch is cached; then it is
//!   `NewEpoch` with the next epoch, the vector's epoch authenticator, an
//!   empty cache and an empty spare slot;
//! - on `Err` nothing changes: epoch, epoch authenticator, tree hash, both
//!   transcript hashes, encoded tree, path keys, own leaf (`Observed`), the
//!   cache length, and the spare slot stays empty;
//! - after the frames, the genuine messages of the current epoch (its
//!   proposals, then its commit) are still accepted, with the vector's
//!   epoch authenticator (a refused frame spoiled neither the state nor the
//!   cache).
#![no_main]

use std::sync::{Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use securemesh_fuzz::mls::{Group, History, Member, Observed, commit_member, genuine_epoch, observe};
use securemesh_fuzz::noise::split_frames;
use securemesh_mls_lite::commit::{CommitEvent, ProposalCache, PskStore};

struct Fixture {
    member: Member,
    joined: Observed,
}

struct State {
    group: Group,
    spare: Group,
    cache: ProposalCache,
    /// The group is not the freshly joined one.
    dirty: bool,
}

static STATE: Mutex<State> =
    Mutex::new(State { group: Group::new(), spare: Group::new(), cache: ProposalCache::new(), dirty: true });
static FIXTURE: OnceLock<Fixture> = OnceLock::new();

fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(|| {
        let member = commit_member();
        let mut s = STATE.lock().expect("state");
        let State { group, spare, cache, dirty } = &mut *s;
        group.clear();
        member.join(group, &member.welcome).expect("the genuine welcome joins");
        assert_eq!(group.epoch_authenticator().expose()[..], member.initial_epoch_authenticator[..]);
        let joined = observe(group);
        // The whole vector goes through (and leaves the group dirty).
        let mut history = History::default();
        for ep in &member.epochs {
            let event = genuine_epoch(&member, ep, group, cache, spare, &mut history);
            assert_eq!(event, CommitEvent::NewEpoch { epoch: group.epoch() });
            assert_eq!(group.epoch_authenticator().expose()[..], ep.epoch_authenticator[..]);
        }
        *dirty = true;
        Fixture { member, joined }
    })
}

fuzz_target!(|data: &[u8]| {
    let fx = fixture();
    let m = &fx.member;
    let mut s = STATE.lock().expect("state");
    let State { group, spare, cache, dirty } = &mut *s;
    if *dirty {
        group.clear();
        m.join(group, &m.welcome).expect("the genuine welcome joins");
        *dirty = false;
    }
    assert!(observe(group) == fx.joined, "the run does not start from the joined group");
    assert!(!spare.is_joined());
    cache.clear();

    let psks = m.external_psks();
    let mut history = History::default();
    // Current epoch index into `m.epochs`, and which of its proposals are cached.
    let mut k = 0usize;
    let mut cached = vec![false; m.epochs[0].proposals.len()];

    for frame in split_frames(data) {
        let mut scratch = vec![0u8; Group::commit_scratch_len(frame.len())];
        let genuine_proposal = m.epochs.get(k).and_then(|ep| ep.proposals.iter().position(|p| p == frame));
        let cache_len = cache.len();
        match group.process_proposal(frame, cache, &mut scratch) {
            Ok(_) => {
                let j = genuine_proposal.expect("a forged proposal was accepted");
                cached[j] = true;
            }
            Err(e) => {
                assert!(genuine_proposal.is_none(), "a genuine proposal was refused: {e:?}");
                assert_eq!(cache.len(), cache_len, "a refused proposal changed the cache");
            }
        }

        history.push(group);
        let resumption = history.resumption();
        let store = PskStore { external: &psks, resumption: &resumption };
        let before = observe(group);
        let cache_len = cache.len();
        let genuine_commit = m.epochs.get(k).is_some_and(|ep| ep.commit == frame);
        match group.process_commit(frame, cache, &store, spare, &mut scratch) {
            Ok(event) => {
                assert!(genuine_commit, "a forged commit was accepted: {event:?}");
                assert!(cached.iter().all(|&c| c), "a commit was accepted without its proposals");
                assert_eq!(event, CommitEvent::NewEpoch { epoch: before.epoch + 1 });
                assert_eq!(group.epoch(), before.epoch + 1);
                assert_eq!(group.epoch_authenticator().expose()[..], m.epochs[k].epoch_authenticator[..]);
                assert!(cache.is_empty());
                *dirty = true;
                k += 1;
                cached = vec![false; m.epochs.get(k).map_or(0, |ep| ep.proposals.len())];
            }
            Err(e) => {
                assert!(
                    !(genuine_commit && cached.iter().all(|&c| c)),
                    "the genuine commit was refused with its proposals cached: {e:?}"
                );
                assert!(observe(group) == before, "a refused commit changed the group ({e:?})");
                assert_eq!(cache.len(), cache_len, "a refused commit changed the cache");
            }
        }
        assert!(!spare.is_joined(), "the spare slot was left joined");
    }

    // The genuine messages of the current epoch still go through after the
    // garbage (only those: every genuine commit costs signature checks and
    // path decryption, and the next run starts from a fresh join anyway).
    if let Some(ep) = m.epochs.get(k) {
        let event = genuine_epoch(m, ep, group, cache, spare, &mut history);
        assert_eq!(event, CommitEvent::NewEpoch { epoch: group.epoch() });
        assert_eq!(group.epoch_authenticator().expose()[..], ep.epoch_authenticator[..]);
        assert!(!spare.is_joined());
        *dirty = true;
    }
});
