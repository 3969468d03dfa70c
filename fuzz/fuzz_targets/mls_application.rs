//! Untrusted application messages into a joined group:
//! `Group::open_application`.
//!
//! Setup (`securemesh_fuzz::mls::application_fixture`, built once): two
//! members of one group; leaf 0 sealed eight application messages
//! (generations 0 to 7). The receiver (leaf 1) is kept between runs and
//! restored from the fixture when a run changed it.
//!
//! Input: frames (`len u16 BE | bytes`, `securemesh_fuzz::noise::split_frames`).
//! Each frame goes to `open_application`.
//!
//! Properties checked:
//! - nothing panics;
//! - `Ok` exactly for a genuine message whose key is still there: before
//!   any message of the run opened, every genuine one; after, one of a
//!   later generation than the newest opened, or one of the five before it
//!   (`OUT_OF_ORDER_TOLERANCE`) not opened yet; then its data, authenticated
//!   data, sender and generation are the genuine ones;
//! - on `Err`, the encoded group state is unchanged byte for byte and the
//!   scratch is all zero.
#![no_main]

use std::cell::RefCell;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use securemesh_fuzz::mls::{ApplicationFixture, Group, application_fixture};
use securemesh_fuzz::noise::{all_zero, encode_state, split_frames};
use securemesh_mls_lite::sender_ratchets::OUT_OF_ORDER_TOLERANCE;

fn fixture() -> &'static ApplicationFixture {
    static F: OnceLock<ApplicationFixture> = OnceLock::new();
    F.get_or_init(application_fixture)
}

thread_local! {
    /// The receiver; (whether a run changed it).
    static RECEIVER: RefCell<Option<(Box<Group>, bool)>> = const { RefCell::new(None) };
}

fuzz_target!(|data: &[u8]| {
    let fx = fixture();
    RECEIVER.with_borrow_mut(|slot| {
        if slot.as_ref().is_none_or(|(_, dirty)| *dirty) {
            let mut g: Box<Group> = Box::default();
            g.decode_state_into(&fx.receiver).expect("fixture receiver decodes");
            *slot = Some((g, false));
        }
        let Some((group, dirty)) = slot.as_mut() else { unreachable!() };
        let mut opened = [false; 8];
        let mut newest: Option<u32> = None;

        for frame in split_frames(data) {
            let genuine = fx.messages.iter().position(|(m, _, _)| m == frame);
            let openable = genuine.is_some_and(|g| {
                let g = g as u32;
                !opened[g as usize]
                    && match newest {
                        None => true,
                        Some(n) => g > n || (g < n && n - g <= OUT_OF_ORDER_TOLERANCE),
                    }
            });
            let before = encode_state(&**group);
            let mut scratch = vec![0x5au8; Group::application_scratch_len(frame.len())];
            match group.open_application(frame, &mut scratch) {
                Ok(m) => {
                    let g = genuine.expect("a forged application message was accepted");
                    assert!(openable, "generation {g} opened although its key is gone");
                    let (_, want_data, want_ad) = &fx.messages[g];
                    assert_eq!((m.sender, m.generation), (0, g as u32));
                    assert_eq!(m.data, &want_data[..]);
                    assert_eq!(m.authenticated_data, &want_ad[..]);
                    opened[g] = true;
                    newest = Some(newest.map_or(g as u32, |n| n.max(g as u32)));
                    *dirty = true;
                }
                Err(e) => {
                    assert!(!openable, "genuine generation {genuine:?} refused: {e:?}");
                    assert!(encode_state(&**group) == before, "a refused message changed the group ({e:?})");
                    assert!(all_zero(&scratch), "the scratch was not wiped ({e:?})");
                }
            }
        }
    });
});
