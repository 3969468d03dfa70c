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
use securemesh_fuzz::mls::{CommitState, Member, Observed, commit_fixture, commit_member, commit_run};

struct Fixture {
    member: Member,
    joined: Observed,
}

/// Group, spare slot and cache (the default capacities).
static STATE: Mutex<CommitState> = Mutex::new(CommitState::new());
static FIXTURE: OnceLock<Fixture> = OnceLock::new();

fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(|| {
        let member = commit_member();
        let joined = commit_fixture(&member, &mut STATE.lock().expect("state"));
        Fixture { member, joined }
    })
}

fuzz_target!(|data: &[u8]| {
    let fx = fixture();
    commit_run(&fx.member, &fx.joined, &mut STATE.lock().expect("state"), data);
});
