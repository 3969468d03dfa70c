//! Untrusted handshake messages into a joined group of ciphersuite 0x004D
//! (X-Wing): `Group::process_proposal` and `process_commit`, exactly as
//! `mls_commit` (same run: `securemesh_fuzz::mls::commit_run`, same
//! input layout and properties) with another passive client.
//!
//! The group is `securemesh_fuzz::mls::xwing_member` (the mlswg vectors
//! have no 0x004D): bob, joined at epoch 1 from the Welcome of
//! `xwing_add` into a `Group<8, 1536, 32, 64>`; its genuine messages are
//! alice's PublicMessage commits of epoch 1 (empty, with an UpdatePath:
//! the path secret is HPKE-encrypted to bob's X-Wing leaf key) and epoch 2
//! (adding carol, 0x004D, with an UpdatePath). So the mutations reach the
//! 0x004D UpdatePath (1216-byte keys, 1120-byte X-Wing `kem_output`s), its
//! decryption and the tree of X-Wing leaves.
//!
//! Input: frames (`len u16 BE | bytes`, at most 24), as `mls_commit`.
//!
//! Properties checked: those of `mls_commit` (nothing panics; only
//! genuine messages of the current epoch are accepted, with the expected
//! epoch authenticator; a refused message changes nothing; the genuine
//! messages still go through after the frames).
#![no_main]

use std::sync::{Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use securemesh_fuzz::mls::{CommitState, Member, Observed, commit_fixture, commit_run, xwing_member};

struct Fixture {
    member: Member,
    joined: Observed,
}

/// Group, spare slot and cache (`Group<8, 1536, 32, 64>`).
static STATE: Mutex<CommitState<8, 1536, 32, 64>> = Mutex::new(CommitState::new());
static FIXTURE: OnceLock<Fixture> = OnceLock::new();

fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(|| {
        let member = xwing_member();
        let joined = commit_fixture(&member, &mut STATE.lock().expect("state"));
        Fixture { member, joined }
    })
}

fuzz_target!(|data: &[u8]| {
    let fx = fixture();
    commit_run(&fx.member, &fx.joined, &mut STATE.lock().expect("state"), data);
});
