//! Untrusted packets into `DatagramTransport::open` (replay window of
//! 2048 packets, `DatagramTransport<33>`).
//!
//! Setup: a deterministic XX handshake (fixed keys and ephemerals), done
//! once; the receiver is kept as its persisted state and restored with
//! `decode_state` on every run, and the sender seals packets up to counter
//! 5000, of which those with the counters in
//! `securemesh_fuzz::noise::DATAGRAM_COUNTERS` (around word and window
//! edges) are the genuine packets. Input: `direction u8 | frames`, bit 0 of
//! the first byte picks who receives; frames (`len u16 (big-endian) |
//! bytes`, `split_frames`) are opened in order.
//!
//! A reference model tracks the accepted counters: a counter is acceptable
//! iff it is not `u64::MAX`, was not accepted before, and either nothing
//! was received yet, or it is above the highest counter, or at most 2047
//! below it (RFC 6479 with `(33 - 1) * 64` tracked counters).
//!
//! Properties checked:
//! - nothing panics; `window().check(counter)` agrees with the model;
//! - a frame shorter than counter and tag gives `Decrypt`; a frame whose
//!   counter the model refuses gives `Replay` (genuine or not); otherwise a
//!   genuine packet is accepted with its payload and any other frame gives
//!   `Decrypt`. So each genuine packet is accepted at most once (a replay
//!   is `Replay`), and only genuine packets are accepted;
//! - after an accepted packet, `window().highest()` is the highest
//!   accepted counter;
//! - a refused frame changes nothing: the whole persisted state (keys,
//!   counters, replay bitmap) is byte for byte what it was, and the output
//!   buffer is all zero;
//! - afterwards every genuine packet is opened once more, in counter
//!   order: exactly those the model still accepts go through (a forged
//!   packet never used up a counter), and a second pass gives `Replay` for
//!   all of them.
#![no_main]

use std::collections::BTreeSet;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use securemesh_core::envelope::Persist;
use securemesh_fuzz::noise::{
    DATAGRAM_WORDS, DatagramFixture, all_zero, datagram_fixture, encode_state, split_frames,
};
use securemesh_noise::{DATAGRAM_OVERHEAD, DatagramTransport, Error, ReplayWindow};

type Datagram = DatagramTransport<DATAGRAM_WORDS>;

fn fixtures() -> &'static [DatagramFixture; 2] {
    static F: OnceLock<[DatagramFixture; 2]> = OnceLock::new();
    F.get_or_init(|| [datagram_fixture(0), datagram_fixture(1)])
}

/// Reference replay window.
#[derive(Default)]
struct Model {
    accepted: BTreeSet<u64>,
}

impl Model {
    fn highest(&self) -> Option<u64> {
        self.accepted.last().copied()
    }

    fn acceptable(&self, counter: u64) -> bool {
        counter != u64::MAX
            && !self.accepted.contains(&counter)
            && match self.highest() {
                None => true,
                Some(h) => counter > h || h - counter < ReplayWindow::<DATAGRAM_WORDS>::WINDOW,
            }
    }
}

/// Open `frame` and check the outcome against the model.
fn open_checked(d: &mut Datagram, model: &mut Model, fx: &DatagramFixture, frame: &[u8]) {
    let before = encode_state(d);
    let genuine = fx.packets.iter().find(|(_, p, _)| p.as_slice() == frame);
    let expected = match frame.split_first_chunk::<8>() {
        Some((c, _)) if frame.len() >= DATAGRAM_OVERHEAD => {
            let counter = u64::from_be_bytes(*c);
            assert_eq!(d.window().check(counter), model.acceptable(counter), "window disagrees on {counter}");
            if !model.acceptable(counter) {
                Err(Error::Replay)
            } else if let Some((gc, _, plain)) = genuine {
                assert_eq!(*gc, counter);
                Ok(plain)
            } else {
                Err(Error::Decrypt)
            }
        }
        _ => Err(Error::Decrypt),
    };
    let mut out = vec![0u8; frame.len()];
    let r = d.open(frame, &mut out);
    match expected {
        Ok(plain) => {
            assert_eq!(r, Ok(plain.len()), "genuine packet refused");
            assert_eq!(&out[..plain.len()], plain.as_slice());
            let (counter, _, _) = genuine.expect("genuine");
            model.accepted.insert(*counter);
            assert_eq!(d.window().highest(), model.highest(), "highest counter after accepting {counter}");
            assert!(!d.window().check(*counter));
        }
        Err(e) => {
            assert_eq!(r, Err(e), "open of a {}-byte frame", frame.len());
            assert!(all_zero(&out), "plaintext left in the output after a refused packet");
            assert_eq!(encode_state(d), before, "a refused packet changed the state");
            assert_eq!(d.window().highest(), model.highest());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&direction, rest)) = data.split_first() else { return };
    let fx = &fixtures()[usize::from(direction & 1)];
    let mut d = Datagram::decode_state(&fx.receiver).expect("fixture state decodes");
    let mut model = Model::default();

    for frame in split_frames(rest) {
        open_checked(&mut d, &mut model, fx, frame);
    }

    // Every genuine packet: accepted iff the model still accepts it, then
    // never again.
    for pass in 0..2 {
        for (counter, packet, _) in &fx.packets {
            let acceptable = model.acceptable(*counter);
            assert!(pass == 0 || !acceptable);
            open_checked(&mut d, &mut model, fx, packet);
        }
    }
});
