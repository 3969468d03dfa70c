//! Untrusted bytes into the mesh wire envelope (`mesh/src/envelope.rs`).
//!
//! Properties checked:
//! - `Envelope::parse` never panics, and is `Ok` exactly when the input is
//!   `0x6D | 0x01 | known channel tag | sender 32 | session 8 | len u16 |
//!   body[len]` with nothing after (the format in the module docs);
//! - a parsed envelope re-encodes to the input byte for byte, and encodes
//!   into a buffer one byte short (and into one of a size the input picks)
//!   with `BufferTooSmall { needed: input length }`, writing nothing;
//! - an envelope built from the input (tag, sender, session from its first
//!   bytes, the rest as body) encodes and parses back to itself, and a
//!   too-small buffer again gives `BufferTooSmall` with nothing written.
#![no_main]

use libfuzzer_sys::fuzz_target;
use securemesh::PeerId;
use securemesh::envelope::{
    ChannelKind, Envelope, EnvelopeError, HEADER_LEN, MAGIC, MAX_BODY_LEN, SessionId, VERSION,
};

const SENTINEL: u8 = 0xA5;

fn reference_ok(data: &[u8]) -> bool {
    data.len() >= HEADER_LEN
        && data[0] == MAGIC
        && data[1] == VERSION
        && ChannelKind::from_tag(data[2]).is_some()
        && usize::from(u16::from_be_bytes([data[43], data[44]])) + HEADER_LEN == data.len()
}

/// Encode `env` into a buffer of `cap` bytes filled with the sentinel.
fn encode_into(env: &Envelope<'_>, cap: usize) -> (Result<usize, EnvelopeError>, Vec<u8>) {
    let mut buf = vec![SENTINEL; cap];
    let r = env.encode(&mut buf);
    (r, buf)
}

fn check_encode(env: &Envelope<'_>, expected: &[u8], small: usize) {
    let n = expected.len();
    let (r, buf) = encode_into(env, n);
    assert_eq!(r, Ok(n));
    assert_eq!(&buf[..], expected, "re-encoding differs");
    let (r, buf) = encode_into(env, n + 7);
    assert_eq!(r, Ok(n));
    assert!(buf[n..].iter().all(|b| *b == SENTINEL), "wrote past the envelope");
    for cap in [n - 1, small % n] {
        let (r, buf) = encode_into(env, cap);
        assert_eq!(r, Err(EnvelopeError::BufferTooSmall { needed: n }), "cap {cap}");
        assert!(buf.iter().all(|b| *b == SENTINEL), "a failed encode wrote");
    }
}

fuzz_target!(|data: &[u8]| {
    let parsed = Envelope::parse(data);
    assert_eq!(parsed.is_ok(), reference_ok(data), "{parsed:?}");
    if let Ok(env) = parsed {
        assert_eq!(env.channel.tag(), data[2]);
        assert_eq!(env.sender.0[..], data[3..35]);
        assert_eq!(env.session.0.to_be_bytes()[..], data[35..43]);
        assert_eq!(env.body, &data[HEADER_LEN..]);
        check_encode(&env, data, usize::from(data[3]));
    }

    // Built from the input: tag | sender 32 | session 8 | body.
    if data.len() >= 41 {
        let Some(channel) = ChannelKind::from_tag(data[0]) else { return };
        let env = Envelope {
            channel,
            sender: PeerId(data[1..33].try_into().unwrap_or([0; 32])),
            session: SessionId(u64::from_be_bytes(data[33..41].try_into().unwrap_or([0; 8]))),
            body: &data[41..],
        };
        let n = HEADER_LEN + env.body.len();
        if env.body.len() > MAX_BODY_LEN {
            let (r, buf) = encode_into(&env, n);
            assert_eq!(r, Err(EnvelopeError::BodyTooLong { len: env.body.len() }));
            assert!(buf.iter().all(|b| *b == SENTINEL));
            return;
        }
        let (r, buf) = encode_into(&env, n);
        assert_eq!(r, Ok(n));
        assert_eq!(Envelope::parse(&buf), Ok(env));
        check_encode(&env, &buf, usize::from(data[1]));
    }
});
