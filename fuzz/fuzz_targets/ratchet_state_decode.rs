//! Untrusted bytes into the persisted ratchet states
//! (`ratchet/src/persist.rs`, plain envelopes): `Session::<128, 128>`,
//! `Session::<128, 4>` (a smaller skipped-key store), `PrekeyPool::<200>`,
//! `PrekeyPool::<4>` and `Identity` `decode_state`.
//!
//! Seeds: mid-conversation sessions of both sides in both header modes
//! (with skipped keys and events), Alice's sessions awaiting Bob's answer,
//! Bob's sessions just after `respond`, and pools after consumption,
//! rotation, erasure of the previous signed prekey and refill.
//!
//! Properties checked:
//! - nothing panics;
//! - on `Ok`, `encode_state` reproduces the input byte for byte (every
//!   accepted encoding is canonical) for both pools, and for both sessions
//!   except the `cap` field: a session state records its writer's skipped
//!   key capacity and is accepted by any reader whose capacity holds its
//!   stored keys (`persist.rs`), so the reader writes its own `CAP` there;
//!   the input is within `MAX_ENCODED_LEN`; a session of body version 1
//!   (migrated, `persist.rs`) re-encodes as version 2 of the same length
//!   (its `since_step` set to 0), or 64 bytes shorter where the migration
//!   dropped a responder's signed-prekey key pair (`dhs`), is never a
//!   session awaiting its first reply, and its re-encoding is a fixed
//!   point;
//! - `Session::<128, 4>` accepts exactly the states `Session::<128, 128>`
//!   accepts that hold at most 4 skipped keys; a state of another
//!   `MAX_SKIP` (`Session::<64, 128>`) is refused;
//! - the kinds do not mix (no input is both a session and a pool), and a
//!   pool state only decodes with its own capacity;
//! - PQXDH state (body version 3): `PrekeyPool::<4, 2>` (with one-time KEM
//!   prekeys) and `Session::<128, 128, 1568>` (room for Alice's pending
//!   ciphertext) decode only canonical encodings (re-encoding gives the
//!   input; a version-3 body without PQXDH state is refused); the
//!   PQXDH-capable session accepts every state `Session::<128, 128>`
//!   accepts, and more only for a session awaiting its reply with a
//!   ciphertext.
#![no_main]

use libfuzzer_sys::fuzz_target;
use securemesh_core::envelope::{HEADER_LEN, Persist};
use securemesh_fuzz::noise::encode_state;
use securemesh_fuzz::ratchet::{FuzzPqSession, FuzzSession, LargePool, PqPool, SmallPool};
use securemesh_ratchet::{Identity, Session};

/// `Session::<128, 4>`.
type SmallSession = Session<128, 4>;

/// `data` (a session state) with the `cap u16` field, after `max_skip u16`
/// at the start of the body, set to `cap`.
fn with_cap(data: &[u8], cap: u16) -> Vec<u8> {
    let mut v = data.to_vec();
    v[HEADER_LEN + 2..HEADER_LEN + 4].copy_from_slice(&cap.to_be_bytes());
    v
}

/// Bytes 5..7 of the envelope: the body version.
const VERSION: core::ops::Range<usize> = 5..7;

/// Check a session decoded from `data` against its re-encoding `got`,
/// `data` with the `cap` field set to the reader's.
fn same_session<const CAP: usize, const K: usize>(s: &Session<128, CAP, K>, data: &[u8], got: &[u8]) {
    if data.get(VERSION) == Some(&[0, 1][..]) {
        assert!(!s.awaiting_reply(), "a version-1 session awaiting its reply was accepted");
        assert_eq!(got.get(VERSION), Some(&[0, 2][..]));
        // The body is the same but for `since_step` (0: the version-1
        // value was an Instant of another clock) and, for a responder that
        // had not sent, the 64 bytes of its signed-prekey key pair.
        assert!(got.len() == data.len() || got.len() + 64 == data.len(), "migration");
        let again = Session::<128, CAP, K>::decode_state(got).expect("a migrated state decodes");
        assert_eq!(encode_state(&again), got, "a migrated state is not a fixed point");
    } else {
        assert_eq!(got, with_cap(data, CAP as u16), "session state does not re-encode to its input");
    }
}

fuzz_target!(|data: &[u8]| {
    let s128 = FuzzSession::decode_state(data);
    let s4 = SmallSession::decode_state(data);
    let p200 = LargePool::decode_state(data);
    let p4 = SmallPool::decode_state(data);
    let identity = Identity::decode_state(data);
    let pq_session = FuzzPqSession::decode_state(data);
    let pq_pool = PqPool::decode_state(data);

    if let Ok(s) = &pq_session {
        assert!(data.len() <= FuzzPqSession::MAX_ENCODED_LEN);
        same_session(s, data, &encode_state(s));
        assert!(s128.is_ok() || s.awaiting_reply(), "only a pending ciphertext needs the PQXDH session");
    }
    if s128.is_ok() {
        assert!(pq_session.is_ok(), "a state the PQXDH-capable session refuses");
    }
    if let Ok(p) = &pq_pool {
        assert!(data.len() <= PqPool::MAX_ENCODED_LEN);
        assert_eq!(encode_state(p), data, "PQXDH pool state does not re-encode to its input");
        assert!(pq_session.is_err(), "a state decodes as two kinds");
    }

    if let Ok(s) = &s128 {
        assert!(data.len() <= FuzzSession::MAX_ENCODED_LEN);
        same_session(s, data, &encode_state(s));
        assert!(Session::<64, 128>::decode_state(data).is_err(), "MAX_SKIP not checked");
        assert_eq!(s4.is_ok(), s.skipped_keys() <= 4, "small session accepts a different set of states");
    }
    if let Ok(s) = &s4 {
        assert!(s128.is_ok(), "a state only the small session accepts");
        assert!(s.skipped_keys() <= 4);
        same_session(s, data, &encode_state(s));
    }
    if let Ok(p) = &p200 {
        assert!(data.len() <= LargePool::MAX_ENCODED_LEN);
        assert!(p.available() <= 200);
        assert_eq!(encode_state(p), data, "pool state does not re-encode to its input");
    }
    if let Ok(p) = &p4 {
        assert!(data.len() <= SmallPool::MAX_ENCODED_LEN);
        assert!(p.available() <= 4);
        assert_eq!(encode_state(p), data, "small pool state does not re-encode to its input");
    }
    if let Ok(id) = &identity {
        assert_eq!(encode_state(id), data, "identity state does not re-encode to its input");
        assert!(s128.is_err() && p4.is_err() && p200.is_err(), "an identity state decodes as another kind");
    }
    assert!(!(p200.is_ok() && p4.is_ok()), "a pool state decodes with two capacities");
    assert!(!((s128.is_ok() || s4.is_ok()) && (p200.is_ok() || p4.is_ok())), "a state decodes as two kinds");
});
