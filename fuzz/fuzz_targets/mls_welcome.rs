//! Untrusted Welcomes into `Group::join_into`.
//!
//! Input: `flags u8 | MLSMessage`. Bit 2 set picks the ciphersuite 0x004D
//! (X-Wing) joiner (`securemesh_fuzz::mls::xwing_add`: bob, added to a
//! two-member `Group<8, 1536, 32, 64>` by a commit with an UpdatePath,
//! ratchet tree in the GroupInfo), bit 2 clear a 0x0003 joiner picked by
//! bit 0 (`securemesh_fuzz::mls::welcome_members`: entry 0 of
//! `passive-client-welcome.json`, ratchet tree in the GroupInfo; entry 6,
//! ratchet tree out of band and an external PSK); bit 1 whether the slot
//! starts empty or already holds that joiner's genuine group. The message
//! is joined (if it is a Welcome) with the joiner's keys, tree and PSKs.
//! The slots (one per group type) are `static`s (a group is ~60 KB, never
//! on the stack).
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
use securemesh_fuzz::mls::{
    Group, Member, Observed, XWingAdd, XWingGroup, observe, welcome_members, welcome_of, xwing_add,
};
use securemesh_mls_lite::Error;
use securemesh_mls_lite::welcome::{ExternalPsk, JoinKeys};

struct Fixture {
    members: [Member; 2],
    xwing: XWingAdd,
    /// The genuine groups of joiners 0, 1 (0x0003) and 2 (0x004D).
    genuine: [Observed; 3],
    /// An empty slot of each type.
    empty: [Observed; 2],
}

/// The slots, and which joiner's genuine group each holds (`None`: empty).
static SLOT: Mutex<(Group, Option<usize>)> = Mutex::new((Group::new(), None));
static XSLOT: Mutex<(XWingGroup, Option<usize>)> = Mutex::new((XWingGroup::new(), None));
static FIXTURE: OnceLock<Fixture> = OnceLock::new();

/// What one joiner brings to `join_into`.
struct Joiner<'a> {
    keys: JoinKeys<'a>,
    welcome: &'a [u8],
    tree: Option<&'a [u8]>,
    psks: Vec<ExternalPsk<'a>>,
}

impl<'a> Joiner<'a> {
    fn member(m: &'a Member) -> Self {
        Joiner {
            keys: m.keys(),
            welcome: &m.welcome,
            tree: m.ratchet_tree.as_deref(),
            psks: m.external_psks(),
        }
    }

    fn xwing(x: &'a XWingAdd) -> Self {
        Joiner { keys: x.joiner.keys().expect("keys"), welcome: &x.welcome, tree: None, psks: Vec::new() }
    }

    /// Join `slot` from `msg` (an `MLSMessage`; not a Welcome: `Malformed`).
    fn join<const L: usize, const B: usize, const G: usize, const E: usize>(
        &self,
        slot: &mut securemesh_mls_lite::Group<L, B, G, E>,
        msg: &[u8],
    ) -> Result<(), Error> {
        let w = welcome_of(msg)?;
        let mut scratch = vec![0u8; securemesh_mls_lite::Group::<L, B, G, E>::scratch_len(msg.len())];
        slot.join_into(&w, &self.keys, self.tree, &self.psks, &mut scratch)
    }
}

/// Observe the genuine group of `j` (joined into `slot`, cleared again).
fn genuine<const L: usize, const B: usize, const G: usize, const E: usize>(
    j: &Joiner<'_>,
    slot: &mut securemesh_mls_lite::Group<L, B, G, E>,
) -> Observed {
    slot.clear();
    j.join(slot, j.welcome).expect("the genuine welcome joins");
    let o = observe(slot);
    slot.clear();
    o
}

fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(|| {
        let members = welcome_members();
        let xwing = xwing_add();
        let mut s = SLOT.lock().expect("slot");
        let mut x = XSLOT.lock().expect("slot");
        let empty = [observe(&s.0), observe(&x.0)];
        let g0 = genuine(&Joiner::member(&members[0]), &mut s.0);
        let g1 = genuine(&Joiner::member(&members[1]), &mut s.0);
        let g2 = genuine(&Joiner::xwing(&xwing), &mut x.0);
        for (m, g) in members.iter().zip([&g0, &g1]) {
            assert_eq!(g.epoch_authenticator[..], m.initial_epoch_authenticator[..]);
        }
        (s.1, x.1) = (None, None);
        drop((s, x));
        Fixture { members, xwing, genuine: [g0, g1, g2], empty }
    })
}

fuzz_target!(|data: &[u8]| {
    let fx = fixture();
    let Some((&flags, msg)) = data.split_first() else { return };
    let prejoined = flags & 2 != 0;
    if flags & 4 != 0 {
        let mut s = XSLOT.lock().expect("slot");
        let (slot, holds) = &mut *s;
        check(&Joiner::xwing(&fx.xwing), 2, &fx.genuine[2], &fx.empty[1], slot, holds, prejoined, msg);
    } else {
        let i = usize::from(flags & 1);
        let mut s = SLOT.lock().expect("slot");
        let (slot, holds) = &mut *s;
        check(&Joiner::member(&fx.members[i]), i, &fx.genuine[i], &fx.empty[0], slot, holds, prejoined, msg);
    }
});

/// Join `msg` as joiner `j` (number `me`) into `slot`, which holds the
/// genuine group of joiner `holds` (`None`: empty); with `prejoined`, the
/// slot first holds `j`'s genuine group, otherwise it starts empty.
#[allow(clippy::too_many_arguments)]
fn check<const L: usize, const B: usize, const G: usize, const E: usize>(
    j: &Joiner<'_>,
    me: usize,
    genuine: &Observed,
    empty: &Observed,
    slot: &mut securemesh_mls_lite::Group<L, B, G, E>,
    holds: &mut Option<usize>,
    prejoined: bool,
    msg: &[u8],
) {
    if prejoined {
        if *holds != Some(me) {
            slot.clear();
            j.join(slot, j.welcome).expect("the genuine welcome joins");
            *holds = Some(me);
        }
    } else if holds.is_some() {
        slot.clear();
        *holds = None;
    }

    if msg == j.welcome {
        // The genuine Welcome with too small a scratch: `BufferTooSmall`
        // with a `needed` that is enough, and the slot is unchanged.
        let before = observe(slot);
        let w = welcome_of(j.welcome).expect("genuine welcome");
        let mut tiny = [0u8; 64];
        let needed = match slot.join_into(&w, &j.keys, j.tree, &j.psks, &mut tiny) {
            Err(Error::BufferTooSmall { needed }) => needed,
            other => panic!("a 64-byte scratch gave {other:?}"),
        };
        assert!(
            needed > tiny.len() && needed <= securemesh_mls_lite::Group::<L, B, G, E>::scratch_len(msg.len())
        );
        assert!(observe(slot) == before, "a too small scratch changed the slot");
        let mut scratch = vec![0u8; needed];
        slot.join_into(&w, &j.keys, j.tree, &j.psks, &mut scratch)
            .expect("`needed` scratch bytes are enough");
        assert!(observe(slot) == *genuine);
    }

    match j.join(slot, msg) {
        Ok(()) => {
            let w = welcome_of(msg).expect("joined from a Welcome");
            let g = welcome_of(j.welcome).expect("genuine welcome");
            assert_eq!(w.cipher_suite, g.cipher_suite);
            assert_eq!(w.encrypted_group_info, g.encrypted_group_info, "joined from a forged GroupInfo");
            let r = j.keys.key_package.reference().expect("reference");
            let ours = w.secrets_for(&r).expect("entries parse").expect("our entry");
            let genuine_entry = g.secrets_for(&r).expect("entries parse").expect("our entry");
            assert_eq!(ours.as_bytes(), genuine_entry.as_bytes(), "joined from forged group secrets");
            assert!(observe(slot) == *genuine, "joined into a group other than the genuine one");
            *holds = Some(me);
        }
        Err(e) => {
            assert_ne!(msg, j.welcome, "the genuine welcome was refused: {e:?}");
            let o = observe(slot);
            if o == *empty {
                *holds = None;
            } else {
                assert!(prejoined, "a failed join into an empty slot left it non-empty ({e:?})");
                assert!(o == *genuine, "a failed join changed the group ({e:?})");
            }
        }
    }
}
