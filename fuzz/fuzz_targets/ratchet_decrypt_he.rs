//! Untrusted messages into an established Double Ratchet session with
//! header encryption: `Session::decrypt`. The same checks as
//! `ratchet_decrypt`, on a session whose headers are encrypted (XChaCha20-
//! Poly1305 under the header keys, random nonces): a header is found by
//! trial decryption with the skipped keys' header keys, the current and the
//! next receiving header key.
//!
//! Setup (`securemesh_fuzz::ratchet::decrypt_fixture`, built once): fixed
//! identities, a deterministic X3DH and conversation, so the session has
//! history: three of the sender's chains, skipped keys stored for the first
//! two, the third not seen yet. The receiver's state is restored with
//! `decode_state` on every run. Input: `receiver u8 | frames`; bit 0 of the
//! first byte picks who receives (0: Alice, 1: Bob, whose session also
//! accepts Alice's X3DH prefix in front of her messages); frames are
//! `len u16 (big-endian) | bytes` (`securemesh_fuzz::noise::split_frames`),
//! each decrypted in turn.
//!
//! Properties checked (`securemesh_fuzz::ratchet::run_decrypt`):
//! - nothing panics;
//! - a frame is accepted iff it is a genuine message not yet received (up
//!   to Bob's X3DH prefix, which is checked but not authenticated), in any
//!   order: then it yields its payload (a buffer one byte short gives
//!   `BufferTooSmall` and changes nothing) and the state changes;
//! - anything else (forgeries, truncations, replays, messages received
//!   before the snapshot) fails, leaves the output all zero and the whole
//!   `encode_state` byte for byte as it was;
//! - afterwards every pending genuine message not yet accepted still
//!   decrypts (a refused frame used up no key), and a second delivery of
//!   each then fails and changes nothing.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use securemesh_fuzz::ratchet::{DecryptFixture, decrypt_fixtures, run_decrypt};

fn fixtures() -> &'static [DecryptFixture; 2] {
    static F: OnceLock<[DecryptFixture; 2]> = OnceLock::new();
    F.get_or_init(|| decrypt_fixtures(true))
}

fuzz_target!(|data: &[u8]| {
    run_decrypt(fixtures(), data);
});
