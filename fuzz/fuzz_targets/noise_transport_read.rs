//! Untrusted bytes into the stream transport: `Transport::read_message`
//! and `Transport::decrypt_in_place`.
//!
//! Setup: a deterministic XX handshake (fixed keys and ephemerals), done
//! once; the receiving transport is kept as its persisted state and
//! restored with `decode_state` on every run, and the sender's first four
//! messages (nonces 0 to 3, payloads of 0, 19, 100 and 19 bytes) are the
//! genuine messages. Input: `direction u8 | frames`, bit 0 of the first
//! byte picks who receives (0: the responder, 1: the initiator); frames are
//! `len u16 (big-endian) | bytes` (`securemesh_fuzz::noise::split_frames`).
//! Each frame goes to two copies of the receiver: one through
//! `read_message`, one through `decrypt_in_place`.
//!
//! Properties checked:
//! - nothing panics;
//! - both paths agree (result, plaintext, and the whole persisted state
//!   afterwards);
//! - a frame is accepted only if it is the genuine message for the current
//!   receiving nonce, byte for byte (so replays, reorderings and any
//!   mutation are refused), and then yields its payload and advances the
//!   nonce by one;
//! - any other frame gives `Decrypt` and changes nothing: the receiving
//!   nonce and the whole persisted state are unchanged, `read_message`'s
//!   output is all zero, and `decrypt_in_place` leaves the buffer as it was;
//! - `read_message` needs an output buffer of the payload length only
//!   (`frame.len() - 16`, the exact size is used); one byte less gives
//!   `BufferTooSmall` with that size and changes nothing;
//! - afterwards, every genuine message not yet received still decrypts, in
//!   order, on both copies.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use securemesh_core::envelope::Persist;
use securemesh_fuzz::noise::{StreamFixture, all_zero, encode_state, split_frames, stream_fixture};
use securemesh_noise::{Error, OVERHEAD, Transport};

fn fixtures() -> &'static [StreamFixture; 2] {
    static F: OnceLock<[StreamFixture; 2]> = OnceLock::new();
    F.get_or_init(|| [stream_fixture(0), stream_fixture(1)])
}

fuzz_target!(|data: &[u8]| {
    let Some((&direction, rest)) = data.split_first() else { return };
    let fx = &fixtures()[usize::from(direction & 1)];
    let mut a = Transport::decode_state(&fx.receiver).expect("fixture state decodes");
    let mut b = Transport::decode_state(&fx.receiver).expect("fixture state decodes");

    for frame in split_frames(rest) {
        let nonce = a.receiving_nonce();
        assert_eq!(b.receiving_nonce(), nonce);
        let before = encode_state(&a);
        assert_eq!(encode_state(&b), before, "read_message and decrypt_in_place copies diverged");
        let expected = fx.messages.get(nonce as usize).filter(|(m, _)| m.as_slice() == frame);

        // `read_message` needs room for the payload only.
        let payload_len = frame.len().saturating_sub(OVERHEAD);
        if payload_len > 0 {
            let mut short = vec![0u8; payload_len - 1];
            assert_eq!(a.read_message(frame, &mut short), Err(Error::BufferTooSmall { needed: payload_len }));
            assert!(all_zero(&short));
            assert_eq!(encode_state(&a), before, "BufferTooSmall changed the state");
        }

        let mut out = vec![0u8; payload_len];
        let ra = a.read_message(frame, &mut out);
        let mut buf = frame.to_vec();
        let rb = b.decrypt_in_place(&mut buf);
        match expected {
            Some((_, plain)) => {
                assert_eq!(ra, Ok(plain.len()), "genuine message {nonce} refused by read_message");
                assert_eq!(rb, Ok(plain.len()), "genuine message {nonce} refused by decrypt_in_place");
                assert_eq!(&out[..plain.len()], plain.as_slice());
                assert_eq!(&buf[..plain.len()], plain.as_slice());
                assert_eq!(a.receiving_nonce(), nonce + 1);
                assert_eq!(b.receiving_nonce(), nonce + 1);
            }
            None => {
                assert_eq!(
                    ra,
                    Err(Error::Decrypt),
                    "read_message accepted a non-genuine frame at nonce {nonce}"
                );
                assert_eq!(rb, Err(Error::Decrypt), "decrypt_in_place accepted a non-genuine frame");
                assert!(all_zero(&out), "read_message left plaintext in the output");
                assert_eq!(buf, frame, "decrypt_in_place changed the buffer on failure");
                assert_eq!(a.receiving_nonce(), nonce, "a failed read consumed the nonce");
                assert_eq!(encode_state(&a), before, "a failed read changed the state");
                assert_eq!(encode_state(&b), before, "a failed decrypt_in_place changed the state");
            }
        }
    }

    // The genuine messages not yet received still go through, in order.
    let nonce = a.receiving_nonce() as usize;
    for (msg, plain) in fx.messages.iter().skip(nonce) {
        let mut out = vec![0u8; plain.len()];
        assert_eq!(a.read_message(msg, &mut out), Ok(plain.len()), "genuine message refused after forgeries");
        assert_eq!(&out[..plain.len()], plain.as_slice());
        let mut buf = msg.clone();
        assert_eq!(b.decrypt_in_place(&mut buf), Ok(plain.len()));
        assert_eq!(&buf[..plain.len()], plain.as_slice());
    }
    assert_eq!(encode_state(&a), encode_state(&b));
});
