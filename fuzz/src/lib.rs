//! Helpers shared by the securemesh fuzz targets and the seed generator.
//!
//! - [`Sample`]: a small [`Persist`] state type (version 2 that migrates a
//!   version-1 body), so the targets exercise `decode_state` / `open_state`
//!   the way a real state type does;
//! - [`FuzzRng`]: a deterministic `rand_core` 0.10 `CryptoRng` built from
//!   fuzz input (never use it outside the fuzz targets);
//! - [`SealInput`]: the byte layout the `sealed_roundtrip` target decodes its
//!   input into (and that the seed generator encodes);
//! - [`fuzz_key`]: the fixed storage key of the `envelope_decode` target, so
//!   its seed corpus can hold blobs that really open.
//! - [`ML_KEM_SEEDS`]: the ML-KEM key seeds of the `core_ml_kem_expanded_key`
//!   seeds.
//! - [`noise`]: deterministic Noise handshakes and transports (fixed static
//!   and ephemeral keys) for the `noise_*` targets, and the frame layout
//!   their inputs use.
//! - [`ratchet`]: deterministic ratchet fixtures (fixed identities,
//!   `TestRng` prekey pools, bundles, initial messages and sessions with
//!   history) for the `ratchet_*` targets.
//! - [`mls`]: the MLS-lite passive-client vectors (embedded), a minimal
//!   JSON reader and group observation for the `mls_*` targets.

use core::convert::Infallible;

use securemesh_core::Error;
use securemesh_core::codec::{Reader, Writer};
use securemesh_core::crypto::SuiteId;
use securemesh_core::envelope::{Header, Persist, StateKind, StorageKey};

pub mod mesh;
pub mod mls;
pub mod noise;
pub mod ratchet;

/// The fixed storage key of the `envelope_decode` target.
pub const FUZZ_KEY: [u8; 32] = *b"securemesh-fuzz-fixed-storagekey";

/// [`FUZZ_KEY`] as a [`StorageKey`].
pub fn fuzz_key() -> StorageKey {
    StorageKey::new(FUZZ_KEY)
}

/// The ML-KEM seeds `d || z` of the `core_ml_kem_expanded_key` seeds: one
/// for ML-KEM-768, one for ML-KEM-1024 (the target checks that a `dk`
/// expanded from one of them decapsulates its own ciphertexts).
pub const ML_KEM_SEEDS: [[u8; 64]; 2] = {
    let mut s = [[0u8; 64]; 2];
    let mut i = 0;
    while i < 64 {
        s[0][i] = (i as u8).wrapping_mul(37) ^ 0x76;
        s[1][i] = (i as u8).wrapping_mul(101) ^ 0x10;
        i += 1;
    }
    s
};

/// Longest label a [`Sample`] carries (bounds [`Persist::MAX_BODY_LEN`]).
pub const MAX_LABEL: usize = 256;

/// A small persisted state, for fuzzing only.
///
/// - version 1 body: `counter u32`;
/// - version 2 body: `counter u64 | label vec16` (the label at most
///   [`MAX_LABEL`] bytes).
///
/// The suite is kept from the header so a decoded value re-encodes to the
/// same header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    /// Suite of the envelope it came from.
    pub suite: SuiteId,
    /// A counter (32-bit in version 1).
    pub counter: u64,
    /// A label (absent in version 1).
    pub label: Vec<u8>,
}

impl Sample {
    /// Kind used by the fuzz state (not a registered kind).
    pub const FUZZ_KIND: StateKind = StateKind(0xfe);

    /// Write a version-1 body (`counter u32`), as the "old code" did.
    pub fn encode_v1_body(counter: u32, w: &mut Writer<'_>) -> Result<(), Error> {
        w.write_u32(counter)
    }
}

impl Persist for Sample {
    const KIND: StateKind = Sample::FUZZ_KIND;
    const VERSION: u16 = 2;
    const MAX_BODY_LEN: usize = 8 + 2 + MAX_LABEL;

    fn suite(&self) -> SuiteId {
        self.suite
    }

    fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        if self.label.len() > MAX_LABEL {
            return Err(Error::LengthOverflow);
        }
        w.write_u64(self.counter)?;
        w.write_vec16(&self.label)
    }

    fn decode_body(header: &Header, r: &mut Reader<'_>) -> Result<Self, Error> {
        match header.version {
            1 => Ok(Sample { suite: header.suite, counter: u64::from(r.read_u32()?), label: Vec::new() }),
            2 => {
                let counter = r.read_u64()?;
                let label = r.read_vec16()?;
                if label.len() > MAX_LABEL {
                    return Err(Error::LengthOverflow);
                }
                Ok(Sample { suite: header.suite, counter, label: label.to_vec() })
            }
            v => Err(Error::UnknownVersion { found: v }),
        }
    }
}

/// A deterministic RNG for the fuzz targets: it first yields `prefix`
/// (so a target can choose the exact nonce `seal` draws), then a splitmix64
/// stream seeded from the prefix. It counts the bytes drawn.
///
/// Implements `rand_core::TryRng` with `Error = Infallible` and the
/// `TryCryptoRng` marker, which makes it a `CryptoRng`. It is NOT random:
/// fuzzing only.
#[derive(Debug)]
pub struct FuzzRng {
    prefix: [u8; 12],
    state: u64,
    drawn: usize,
}

impl FuzzRng {
    /// A generator that first yields `prefix`.
    pub fn new(prefix: [u8; 12]) -> Self {
        let mut seed = [0u8; 8];
        seed.copy_from_slice(&prefix[..8]);
        let state = u64::from_le_bytes(seed)
            ^ u64::from(u32::from_le_bytes([prefix[8], prefix[9], prefix[10], prefix[11]]));
        FuzzRng { prefix, state, drawn: 0 }
    }

    /// Bytes drawn so far.
    pub fn drawn(&self) -> usize {
        self.drawn
    }

    fn next_byte(&mut self) -> u8 {
        let b = if let Some(b) = self.prefix.get(self.drawn) {
            *b
        } else {
            // splitmix64, one output byte per step (speed does not matter).
            self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)) as u8
        };
        self.drawn += 1;
        b
    }
}

impl rand_core::TryRng for FuzzRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        for b in dst {
            *b = self.next_byte();
        }
        Ok(())
    }
}

impl rand_core::TryCryptoRng for FuzzRng {}

/// Input of the `sealed_roundtrip` target. Layout (big-endian; a shorter
/// input is padded with zeros):
///
/// ```text
/// key [32] | kind u8 | version u16 | suite u16 | generation u64
///   | newest_mode u8 | newest_delta u8 | nonce [12]
///   | flip_index u16 | flip_mask u8 | shortfall u8 | cut u16 | body (rest)
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealInput {
    /// Storage key.
    pub key: [u8; 32],
    /// Header kind.
    pub kind: u8,
    /// Header version (0 is written by `seal` but refused by `open`).
    pub version: u16,
    /// Header suite.
    pub suite: u16,
    /// Generation sealed.
    pub generation: u64,
    /// Bit 0 set: open with `newest_seen = generation + 1 + delta` (expect
    /// rollback); clear: `newest_seen = generation - delta` (saturating).
    pub newest_mode: u8,
    /// See `newest_mode`.
    pub newest_delta: u8,
    /// First 12 bytes the RNG yields: the nonce `seal` must use.
    pub nonce: [u8; 12],
    /// Index of the byte to corrupt (modulo the blob length).
    pub flip_index: u16,
    /// XOR mask of the corruption (0 is taken as 1).
    pub flip_mask: u8,
    /// How many bytes the "too small" output buffer lacks (0 is taken as 1).
    pub shortfall: u8,
    /// Length to truncate the blob to (modulo the blob length).
    pub cut: u16,
    /// Body to seal.
    pub body: Vec<u8>,
}

/// Bytes of [`SealInput`] before the body.
pub const SEAL_INPUT_FIXED: usize = 32 + 1 + 2 + 2 + 8 + 1 + 1 + 12 + 2 + 1 + 1 + 2;

impl SealInput {
    /// Decode from fuzz input (never fails; zero padding).
    pub fn parse(data: &[u8]) -> Self {
        let mut fixed = [0u8; SEAL_INPUT_FIXED];
        let n = data.len().min(SEAL_INPUT_FIXED);
        fixed[..n].copy_from_slice(&data[..n]);
        let body = data.get(SEAL_INPUT_FIXED..).unwrap_or(&[]).to_vec();
        let mut at = 0usize;
        let mut take = |len: usize| {
            let s = &fixed[at..at + len];
            at += len;
            s
        };
        let key: [u8; 32] = take(32).try_into().unwrap_or([0; 32]);
        let kind = take(1)[0];
        let version = u16::from_be_bytes([take(1)[0], take(1)[0]]);
        let suite = u16::from_be_bytes([take(1)[0], take(1)[0]]);
        let generation = u64::from_be_bytes(take(8).try_into().unwrap_or([0; 8]));
        let newest_mode = take(1)[0];
        let newest_delta = take(1)[0];
        let nonce: [u8; 12] = take(12).try_into().unwrap_or([0; 12]);
        let flip_index = u16::from_be_bytes([take(1)[0], take(1)[0]]);
        let flip_mask = take(1)[0];
        let shortfall = take(1)[0];
        let cut = u16::from_be_bytes([take(1)[0], take(1)[0]]);
        SealInput {
            key,
            kind,
            version,
            suite,
            generation,
            newest_mode,
            newest_delta,
            nonce,
            flip_index,
            flip_mask,
            shortfall,
            cut,
            body,
        }
    }

    /// Encode (inverse of [`SealInput::parse`]), for the seed generator.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(SEAL_INPUT_FIXED + self.body.len());
        v.extend_from_slice(&self.key);
        v.push(self.kind);
        v.extend_from_slice(&self.version.to_be_bytes());
        v.extend_from_slice(&self.suite.to_be_bytes());
        v.extend_from_slice(&self.generation.to_be_bytes());
        v.push(self.newest_mode);
        v.push(self.newest_delta);
        v.extend_from_slice(&self.nonce);
        v.extend_from_slice(&self.flip_index.to_be_bytes());
        v.push(self.flip_mask);
        v.push(self.shortfall);
        v.extend_from_slice(&self.cut.to_be_bytes());
        v.extend_from_slice(&self.body);
        v
    }
}

/// Operations of the `codec_reader` program. Input layout:
///
/// ```text
/// n_ops u8 | ops [n_ops] | cap u16 | data (rest: what the Reader reads)
/// ```
///
/// Each op byte: low 4 bits select the operation, high 4 bits are its
/// argument (array size index, or byte count for `read_bytes`).
pub mod codec_ops {
    /// `read_u8`
    pub const U8: u8 = 0;
    /// `read_u16`
    pub const U16: u8 = 1;
    /// `read_u32`
    pub const U32: u8 = 2;
    /// `read_u64`
    pub const U64: u8 = 3;
    /// `read_varint`
    pub const VARINT: u8 = 4;
    /// `read_vec8`
    pub const VEC8: u8 = 5;
    /// `read_vec16`
    pub const VEC16: u8 = 6;
    /// `read_vec32`
    pub const VEC32: u8 = 7;
    /// `read_vec_varint`
    pub const VEC_VARINT: u8 = 8;
    /// `read_array::<N>` with N = `ARRAY_SIZES[arg % 8]`
    pub const ARRAY: u8 = 9;
    /// `read_bytes(arg)`
    pub const BYTES: u8 = 10;
    /// `finish` / `is_empty` / `remaining` / `rest` consistency
    pub const FINISH: u8 = 11;
    /// Array sizes reachable through [`ARRAY`].
    pub const ARRAY_SIZES: [usize; 8] = [0, 1, 2, 3, 4, 12, 16, 32];

    /// Build an op byte.
    pub const fn op(kind: u8, arg: u8) -> u8 {
        (arg << 4) | (kind & 0x0f)
    }
}
