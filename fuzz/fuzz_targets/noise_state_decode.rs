//! Untrusted bytes into the persisted Noise transport states:
//! `Transport::decode_state` and `DatagramTransport::<33>::decode_state`
//! (plain envelopes, kind `NOISE_TRANSPORT`, `noise/src/persist.rs`).
//!
//! Properties checked:
//! - nothing panics;
//! - on `Ok`, `encode_state` reproduces the input byte for byte (so every
//!   accepted encoding is canonical), within `MAX_ENCODED_LEN`, and the
//!   handshake hash is 32 or 64 bytes;
//! - the same bytes never decode as both a stream and a datagram state (the
//!   mode byte differs), and a datagram state with 33 window words does not
//!   decode as one with a different number of words.
#![no_main]

use libfuzzer_sys::fuzz_target;
use securemesh_core::envelope::Persist;
use securemesh_fuzz::noise::encode_state;
use securemesh_noise::{DatagramTransport, Transport};

fuzz_target!(|data: &[u8]| {
    let stream = Transport::decode_state(data);
    let datagram = DatagramTransport::<33>::decode_state(data);
    assert!(!(stream.is_ok() && datagram.is_ok()), "decoded as both a stream and a datagram state");

    if let Ok(t) = &stream {
        assert!(data.len() <= Transport::MAX_ENCODED_LEN);
        assert!(matches!(t.handshake_hash().len(), 32 | 64));
        assert_eq!(encode_state(t), data, "stream state does not re-encode to its input");
    }
    if let Ok(d) = &datagram {
        assert!(data.len() <= DatagramTransport::<33>::MAX_ENCODED_LEN);
        assert!(matches!(d.handshake_hash().len(), 32 | 64));
        assert_eq!(encode_state(d), data, "datagram state does not re-encode to its input");
        assert!(DatagramTransport::<2>::decode_state(data).is_err(), "window size not checked");
    }
});
