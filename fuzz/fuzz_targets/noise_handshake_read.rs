//! Untrusted bytes into `HandshakeState::read_message`.
//!
//! Input: `situation u8 | message`. The first byte (modulo 7) selects one
//! of `securemesh_fuzz::noise::SITUATIONS`: XX responder before message 0,
//! XX initiator before message 1, XX responder before message 2, IK and NK
//! responder before message 0, IK and NK initiator before message 1. The
//! reader is brought there by an honest, deterministic handshake (fixed
//! static and ephemeral keys), so the genuine message the honest peer
//! writes at that point is known. For speed only the reader is built
//! before the read (it plays its side against the recorded genuine
//! messages); the honest peer is rebuilt when the read succeeds. The rest
//! of the input is read as that message, with a 65535-byte payload buffer
//! (so `BufferTooSmall` cannot happen).
//!
//! Properties checked:
//! - nothing panics;
//! - on `Err`, the error is `Decrypt`, the state is poisoned, the payload
//!   buffer is all zero, and every further call (`read_message` of the
//!   genuine message, `write_message`, `finish`) returns `Poisoned`, still
//!   leaving the buffer zero;
//! - on `Ok(n)`, `n` is the input length minus the message overhead and
//!   nothing beyond `payload[..n]` was written;
//! - keyed messages (every situation but XX message 0: a cipher key is set
//!   before the payload, and everything before the payload is in `h`, its
//!   associated data): `Ok` if and only if the input is the genuine message
//!   byte for byte (a mutation can only pass by forging a Poly1305 tag);
//!   then the payload is the genuine one, the handshake hashes of both
//!   parties agree, a static key carried by the message waits for
//!   `accept_remote_static` (`write_message` is refused meanwhile) and is
//!   the peer's, and the handshake completes into working transports;
//! - XX message 0 (`-> e`, no key): `Ok` exactly for inputs of at least 32
//!   bytes, the payload is the plaintext after the ephemeral key, and
//!   `remote_ephemeral` is the first 32 bytes. Unless the input is the
//!   genuine message (then the handshake completes), the honest initiator
//!   refuses the responder's answer (message 1) with `Decrypt`: tampering
//!   with the unauthenticated first message is caught one message later.
#![no_main]

use libfuzzer_sys::fuzz_target;
use securemesh_fuzz::noise::{
    HANDSHAKE_PAYLOADS, Pair, SITUATIONS, all_zero, drive, exchange, initiator_public, reader_at,
    responder_public, rng, transcript,
};
use securemesh_noise::{DH_LEN, Error, HandshakeState, MAX_MESSAGE_LEN, Role};

/// Put `reader` in place of the reader of message `index` in `pair`.
fn install(pair: &mut Pair, index: usize, reader: HandshakeState) {
    *pair.reader(index) = reader;
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, message)) = data.split_first() else { return };
    let situation = SITUATIONS[usize::from(selector) % SITUATIONS.len()];
    let index = situation.index;
    let pattern = situation.pattern;
    let genuine = &transcript(pattern)[index];
    let overhead = genuine.len() - HANDSHAKE_PAYLOADS[index].len();
    let is_genuine = message == genuine.as_slice();
    let mut reader = reader_at(&situation);

    let mut payload = vec![0u8; MAX_MESSAGE_LEN];
    match reader.read_message(message, &mut payload) {
        Err(e) => {
            assert_eq!(e, Error::Decrypt, "read_message failed with {e:?}");
            assert!(!is_genuine, "{situation:?}: the genuine message was refused");
            if !situation.keyed {
                assert!(message.len() < overhead, "unkeyed message of {} bytes refused", message.len());
            }
            assert!(reader.is_poisoned(), "a failed read did not poison the handshake");
            assert!(all_zero(&payload), "payload buffer not zero after a failed read");
            // Poisoned for good.
            assert_eq!(reader.read_message(genuine, &mut payload), Err(Error::Poisoned));
            let mut out = vec![0u8; MAX_MESSAGE_LEN];
            assert_eq!(reader.write_message(b"x", &mut out, &mut rng()), Err(Error::Poisoned));
            assert!(all_zero(&payload), "payload buffer not zero after reading while poisoned");
            assert!(all_zero(&out));
            assert_eq!(reader.finish().map(|_| ()), Err(Error::Poisoned));
        }
        Ok(n) => {
            assert!(message.len() >= overhead, "accepted a message shorter than its overhead");
            assert_eq!(n, message.len() - overhead, "payload length");
            assert!(all_zero(&payload[n..]), "read_message wrote beyond the payload");
            assert!(!reader.is_poisoned());
            if situation.keyed {
                assert!(is_genuine, "{situation:?}: accepted a message that is not the genuine one");
            } else {
                assert_eq!(&payload[..n], &message[overhead..], "unkeyed payload is the plaintext");
                assert_eq!(reader.remote_ephemeral().map(|k| &k[..]), Some(&message[..DH_LEN]));
            }
            if situation.carries_static {
                assert!(reader.remote_static_pending(), "static key read but not pending");
                let expected = if situation.reader_role() == Role::Initiator {
                    responder_public()
                } else {
                    initiator_public()
                };
                assert_eq!(reader.remote_static(), Some(&expected));
                let mut out = vec![0u8; MAX_MESSAGE_LEN];
                assert_eq!(
                    reader.write_message(b"", &mut out, &mut rng()),
                    Err(Error::RemoteStaticPending),
                    "went on before the remote static key was accepted"
                );
                reader.accept_remote_static();
            } else {
                assert!(!reader.remote_static_pending());
            }

            // The honest peer, right after writing the genuine message.
            let mut step = drive(pattern, index);
            assert_eq!(&step.genuine, genuine);
            install(&mut step.pair, index, reader);
            if is_genuine {
                assert_eq!(&payload[..n], HANDSHAKE_PAYLOADS[index]);
                let (writer, reader) = step.pair.parties(index);
                assert_eq!(reader.handshake_hash(), writer.handshake_hash(), "handshake hashes differ");
                step.pair.run(index + 1, pattern.messages());
                let (mut i, mut r) = step.pair.finish(pattern);
                exchange(&mut i, &mut r);
            } else {
                // Only the unauthenticated XX message 0 gets here. The
                // responder answers; the honest initiator must refuse.
                assert_eq!(index, 0);
                let (initiator, responder) = step.pair.parties(index);
                assert_ne!(initiator.handshake_hash(), responder.handshake_hash());
                let mut out = vec![0u8; MAX_MESSAGE_LEN];
                let m = responder
                    .write_message(HANDSHAKE_PAYLOADS[1], &mut out, &mut rng())
                    .expect("responder answers a well-sized message 0");
                let mut p = vec![0u8; MAX_MESSAGE_LEN];
                assert_eq!(
                    initiator.read_message(&out[..m], &mut p),
                    Err(Error::Decrypt),
                    "the initiator accepted an answer to a tampered message 0"
                );
                assert!(initiator.is_poisoned() && all_zero(&p));
            }
        }
    }
});
