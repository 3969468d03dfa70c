//! Untrusted Welcomes into `Group::join_into`.
//!
//! Input: `flags u8 | MLSMessage`. Bit 0 picks the joiner
//! (`securemesh_fuzz::mls::welcome_members`: entry 0 of
//! `passive-client-welcome.json`, ratchet tree in the GroupInfo; entry 6,
//! ratchet tree out of band and an external PSK), bit 1 whether the slot
//! starts empty or already holds that joiner's genuine group. The message
//! is joined (if it is a Welcome) with the joiner's keys, tree and PSKs.
//! The slot is a `static` (the group is ~60 KB, never on the stack).
//!
//! Properties checked:
//! - nothing panics;
//! - the genuine Welcome is accepted (into an empty or a joined slot), and
//!   the slot then holds exactly the genuine group (epoch authenticator of
//!   the vector, tree, hashes, path keys: `Observed`);
//! - for the genuine Welcome, a 64-byte scratch gives `BufferTooSmall {
//!   needed }` and leaves the slot as it was, and `needed` bytes are enough;
//! - `Ok` only for the genuine Welcome: same ciphersuite, same
//!   `encrypted_group_info` and our `EncryptedGroupSecrets` entry byte for
//!   byte (the entries of other new members are not ours to authenticate,
//!   so they may differ);
//! - on `Err` the slot is empty (exactly as `Group::new`), or, if it
//!   held the genuine group, still holds it unchanged: never a half-built
//!   or different group.
#![no_main]

use std::sync::{Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use securemesh_fuzz::mls::{Group, Member, Observed, observe, welcome_members, welcome_of};
use securemesh_mls_lite::Error;

struct Fixture {
    members: [Member; 2],
    genuine: [Observed; 2],
    empty: Observed,
}

/// The slot, and which joiner's genuine group it holds (`None`: empty).
static SLOT: Mutex<(Group, Option<usize>)> = Mutex::new((Group::new(), None));
static FIXTURE: OnceLock<Fixture> = OnceLock::new();

fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(|| {
        let members = welcome_members();
        let mut s = SLOT.lock().expect("slot");
        let slot = &mut s.0;
        let empty = observe(slot);
        let genuine = [0, 1].map(|i| {
            let m = &members[i];
            slot.clear();
            m.join(slot, &m.welcome).expect("the genuine welcome joins");
            assert_eq!(slot.epoch_authenticator().expose()[..], m.initial_epoch_authenticator[..]);
            observe(slot)
        });
        slot.clear();
        s.1 = None;
        Fixture { members, genuine, empty }
    })
}

fuzz_target!(|data: &[u8]| {
    let fx = fixture();
    let Some((&flags, msg)) = data.split_first() else { return };
    let i = usize::from(flags & 1);
    let prejoined = flags & 2 != 0;
    let m = &fx.members[i];

    let mut s = SLOT.lock().expect("slot");
    let (slot, holds) = &mut *s;
    if prejoined {
        if *holds != Some(i) {
            slot.clear();
            m.join(slot, &m.welcome).expect("the genuine welcome joins");
            *holds = Some(i);
        }
    } else if holds.is_some() {
        slot.clear();
        *holds = None;
    }

    if msg == &m.welcome[..] {
        // The genuine Welcome with too small a scratch: `BufferTooSmall`
        // with a `needed` that is enough, and the slot is unchanged.
        let before = observe(slot);
        let w = m.genuine_welcome();
        let psks = m.external_psks();
        let tree = m.ratchet_tree.as_deref();
        let mut tiny = [0u8; 64];
        let needed = match slot.join_into(&w, &m.keys(), tree, &psks, &mut tiny) {
            Err(Error::BufferTooSmall { needed }) => needed,
            other => panic!("a 64-byte scratch gave {other:?}"),
        };
        assert!(needed > tiny.len() && needed <= Group::scratch_len(msg.len()));
        assert!(observe(slot) == before, "a too small scratch changed the slot");
        let mut scratch = vec![0u8; needed];
        slot.join_into(&w, &m.keys(), tree, &psks, &mut scratch).expect("`needed` scratch bytes are enough");
        assert!(observe(slot) == fx.genuine[i]);
    }

    match m.join(slot, msg) {
        Ok(()) => {
            let w = welcome_of(msg).expect("joined from a Welcome");
            let g = m.genuine_welcome();
            assert_eq!(w.cipher_suite, g.cipher_suite);
            assert_eq!(w.encrypted_group_info, g.encrypted_group_info, "joined from a forged GroupInfo");
            let r = m.key_package().reference().expect("reference");
            let ours = w.secrets_for(&r).expect("entries parse").expect("our entry");
            let genuine = g.secrets_for(&r).expect("entries parse").expect("our entry");
            assert_eq!(ours.as_bytes(), genuine.as_bytes(), "joined from forged group secrets");
            assert!(observe(slot) == fx.genuine[i], "joined into a group other than the genuine one");
            *holds = Some(i);
        }
        Err(e) => {
            assert_ne!(msg, &m.welcome[..], "the genuine welcome was refused: {e:?}");
            let o = observe(slot);
            if o == fx.empty {
                *holds = None;
            } else {
                assert!(prejoined, "a failed join into an empty slot left it non-empty ({e:?})");
                assert!(o == fx.genuine[i], "a failed join changed the group ({e:?})");
            }
        }
    }
});
