//! Structure-aware seal / open round trip.
//!
//! The input is decoded into a key, a header (kind, version, suite), a
//! generation, a `newest_seen` probe, a nonce, a corruption (index, mask), a
//! buffer shortfall, a truncation length and a body (layout:
//! `securemesh_fuzz::SealInput`). The nonce comes from a deterministic
//! `rand_core` 0.10 RNG built from the input.
//!
//! Properties checked:
//! - `seal` into a buffer too small by `shortfall` bytes reports
//!   `BufferTooSmall` with the exact size and draws no randomness;
//! - `seal` writes the documented layout (magic, header, generation, the
//!   RNG's first 12 bytes as nonce, length, ciphertext, tag) of exactly
//!   `SEAL_OVERHEAD + body.len()` bytes and draws exactly 12 bytes;
//! - `peek_sealed` returns the sealed header and generation;
//! - `seal` refuses version 0 (`UnknownVersion { found: 0 }`, no
//!   randomness drawn); `open` returns the header, generation and body,
//!   or `Rollback` when `newest_seen > generation`, with a zero scratch;
//! - under a key with one bit flipped, `open` fails with `Decrypt`;
//! - flipping any one byte (index and mask chosen by the input), truncating,
//!   or appending a byte makes `open` fail and leaves the scratch without
//!   plaintext (all zero);
//! - the same through the `Persist` path: `Sample::seal_state` then
//!   `Sample::open_state` returns the value and wipes the scratch.
#![no_main]

use libfuzzer_sys::fuzz_target;
use securemesh_core::Error;
use securemesh_core::crypto::SuiteId;
use securemesh_core::envelope::{
    self, Header, Persist, SEAL_OVERHEAD, SEALED_HEADER_LEN, SEALED_MAGIC, StateKind, StorageKey,
};
use securemesh_fuzz::{FuzzRng, MAX_LABEL, Sample, SealInput};

/// Bodies above this are cut (keeps executions fast; the format limit of
/// 1 MiB is far above anything libFuzzer generates by default anyway).
const MAX_BODY: usize = 8192;

fn all_zero(b: &[u8]) -> bool {
    b.iter().all(|x| *x == 0)
}

fuzz_target!(|data: &[u8]| {
    let input = SealInput::parse(data);
    let body = &input.body[..input.body.len().min(MAX_BODY)];
    let key = StorageKey::new(input.key);
    let header = Header { kind: StateKind(input.kind), version: input.version, suite: SuiteId(input.suite) };
    let generation = input.generation;
    let total = SEAL_OVERHEAD + body.len();

    // Version 0 is refused by writers and readers alike, whatever the buffer.
    if input.version == 0 {
        let mut blob = vec![0u8; total];
        let mut rng = FuzzRng::new(input.nonce);
        let r = envelope::seal(&key, &header, generation, &mut rng, &mut blob, |w| w.write_bytes(body));
        assert_eq!(r, Err(Error::UnknownVersion { found: 0 }));
        assert_eq!(rng.drawn(), 0);
        return;
    }

    // Too small: exact size, no randomness drawn.
    let shortfall = usize::from(input.shortfall.max(1)).min(total);
    let mut small = vec![0u8; total - shortfall];
    let mut rng = FuzzRng::new(input.nonce);
    assert_eq!(
        envelope::seal(&key, &header, generation, &mut rng, &mut small, |w| w.write_bytes(body)),
        Err(Error::BufferTooSmall { needed: total })
    );
    assert_eq!(rng.drawn(), 0, "seal drew randomness before knowing the buffer fits");

    // Seal.
    let mut blob = vec![0u8; total];
    let mut rng = FuzzRng::new(input.nonce);
    let n = envelope::seal(&key, &header, generation, &mut rng, &mut blob, |w| w.write_bytes(body))
        .expect("seal");
    assert_eq!(n, total);
    assert_eq!(rng.drawn(), 12, "seal draws exactly one 96-bit nonce");

    // Layout.
    assert_eq!(&blob[..4], &SEALED_MAGIC);
    assert_eq!(blob[4], input.kind);
    assert_eq!(&blob[5..7], &input.version.to_be_bytes());
    assert_eq!(&blob[7..9], &input.suite.to_be_bytes());
    assert_eq!(&blob[9..17], &generation.to_be_bytes());
    assert_eq!(&blob[17..29], &input.nonce);
    assert_eq!(&blob[29..33], &(body.len() as u32).to_be_bytes());
    if body.len() >= 16 {
        assert_ne!(&blob[SEALED_HEADER_LEN..SEALED_HEADER_LEN + body.len()], body, "body not encrypted");
    }

    let mut scratch = vec![0u8; total];

    assert_eq!(envelope::peek_sealed(&blob), Ok((header, generation)));

    // Open with the newest_seen probe.
    let delta = u64::from(input.newest_delta);
    let newest = if input.newest_mode & 1 == 1 {
        generation.checked_add(1 + delta).unwrap_or(generation)
    } else {
        generation.saturating_sub(delta)
    };
    {
        let r = envelope::open(&key, &blob, newest, &mut scratch)
            .map(|o| (o.header, o.generation, o.body.to_vec()));
        if newest > generation {
            assert_eq!(r, Err(Error::Rollback { found: generation, newest }));
            assert!(all_zero(&scratch), "scratch holds plaintext after a rollback");
        } else {
            assert_eq!(r, Ok((header, generation, body.to_vec())), "seal/open round trip");
        }
    }
    scratch.fill(0);

    // Wrong key (one bit flipped, chosen by the input).
    {
        let mut k = input.key;
        let bit = usize::from(input.flip_mask);
        k[(bit >> 3) % 32] ^= 1 << (bit & 7);
        let r = envelope::open(&StorageKey::new(k), &blob, 0, &mut scratch).map(|_| ());
        assert_eq!(r, Err(Error::Decrypt), "opened under the wrong key");
        assert!(all_zero(&scratch));
    }

    // One corrupted byte.
    {
        let mut t = blob.clone();
        let i = usize::from(input.flip_index) % t.len();
        t[i] ^= input.flip_mask.max(1);
        let r = envelope::open(&key, &t, 0, &mut scratch).map(|_| ());
        assert!(r.is_err(), "open accepted a blob with byte {i} corrupted");
        assert!(all_zero(&scratch), "scratch holds plaintext after a failed open");
        let mut s = vec![0u8; total];
        assert!(Sample::open_state(&key, &t, 0, &mut s).is_err());
        assert!(all_zero(&s));
    }

    // Truncated and extended.
    {
        let cut = usize::from(input.cut) % blob.len();
        assert!(envelope::open(&key, &blob[..cut], 0, &mut scratch).is_err(), "opened a truncated blob");
        assert!(all_zero(&scratch));
        let mut longer = blob.clone();
        longer.push(input.flip_mask);
        assert_eq!(envelope::open(&key, &longer, 0, &mut scratch).map(|_| ()), Err(Error::TrailingBytes));
        assert!(all_zero(&scratch));
    }

    // Persist path: a Sample built from the input.
    let sample = Sample {
        suite: SuiteId(input.suite),
        counter: generation,
        label: body[..body.len().min(MAX_LABEL)].to_vec(),
    };
    let mut out = vec![0u8; Sample::MAX_SEALED_LEN];
    let mut rng = FuzzRng::new(input.nonce);
    let m = sample.seal_state(&key, generation, &mut rng, &mut out).expect("seal_state");
    assert!(m <= Sample::MAX_SEALED_LEN);
    let mut s = vec![0u8; Sample::MAX_BODY_LEN];
    assert_eq!(Sample::open_state(&key, &out[..m], generation, &mut s), Ok((sample.clone(), generation)));
    assert!(all_zero(&s), "open_state did not wipe the scratch");
    // The plain envelope of the same value decodes to it too.
    let mut plain = vec![0u8; Sample::MAX_ENCODED_LEN];
    let p = sample.encode_state(&mut plain).expect("encode_state");
    assert_eq!(Sample::decode_state(&plain[..p]), Ok(sample));
});
