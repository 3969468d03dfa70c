//! The persisted-state envelope: one encoding for every state that must
//! survive a restart (Noise transport counters, ratchet sessions, prekey
//! pools, MLS groups).
//!
//! ## Plain envelope
//!
//! ```text
//! magic "SMst" (4) | kind u8 | version u16 | suite u16 | len u32 | body (len bytes)
//! ```
//!
//! ## Sealed envelope
//!
//! ```text
//! magic "SMsl" (4) | kind u8 | version u16 | suite u16 | generation u64 | nonce [12]
//!   | len u32 | ChaCha20-Poly1305(storage key, nonce, ad = the 33 header bytes, body) | tag [16]
//! ```
//!
//! All integers are big-endian. The body is encoded field by field by the
//! state type ([`Persist::encode_body`]), never from the in-memory layout.
//! The nonce is 96 random bits from the caller's RNG, so one storage key can
//! seal many states. The header is authenticated, so kind, version, suite and
//! generation cannot be swapped.
//!
//! ## Generations and rollback
//!
//! Every sealed blob carries a `generation` the caller increments on every
//! save. [`open`] refuses a blob whose generation is *below* the newest
//! generation the caller has seen ([`Error::Rollback`]): restoring an older
//! ratchet or transport state would reuse keys and nonces. The caller keeps
//! the newest generation in storage it trusts to be monotonic (a counter in
//! secure flash, a TPM NV index, a database row).
//!
//! **The rule, per state.** Each persisted *instance* (one ratchet
//! session, one prekey pool, one MLS group, one Noise transport) has its
//! own generation sequence: the first save is generation 0 (or any start
//! the caller records) and every later save of that instance is the
//! previous generation plus one; never reuse a number for different
//! contents. The newest generation written is recorded, keyed by the
//! instance, in the monotonic store *before* the blob replaces the old one,
//! and every restore passes it as `newest_seen`. A blob at `newest_seen` is
//! accepted (the current state, read again); a blob below it is refused.
//! One counter for all instances also works (it only has to increase), but
//! then a restore must compare against the value recorded for that
//! instance's last save.
//!
//! ```
//! use securemesh_core::codec::{Reader, Writer};
//! use securemesh_core::crypto::SuiteId;
//! use securemesh_core::envelope::{Header, Persist, StateKind, StorageKey};
//! use securemesh_core::{Error, testing::TestRng};
//! # #[derive(Debug, PartialEq)]
//! # struct Counter { sent: u64 }
//! # impl Persist for Counter {
//! #     const KIND: StateKind = StateKind::NOISE_TRANSPORT;
//! #     const VERSION: u16 = 1;
//! #     const MAX_BODY_LEN: usize = 8;
//! #     fn suite(&self) -> SuiteId { SuiteId::DEFAULT }
//! #     fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), Error> { w.write_u64(self.sent) }
//! #     fn decode_body(_h: &Header, r: &mut Reader<'_>) -> Result<Self, Error> {
//! #         Ok(Counter { sent: r.read_u64()? })
//! #     }
//! # }
//! let key = StorageKey::new([7u8; 32]);
//! let mut rng = TestRng::new(1); // a real store lends its CSPRNG
//! let (mut old, mut new) = ([0u8; Counter::MAX_SEALED_LEN], [0u8; Counter::MAX_SEALED_LEN]);
//! // Save 0, then save 1 of the same instance; the store records 1 first.
//! let n0 = Counter { sent: 10 }.seal_state(&key, 0, &mut rng, &mut old)?;
//! let n1 = Counter { sent: 11 }.seal_state(&key, 1, &mut rng, &mut new)?;
//! let newest_seen = 1;
//! let mut scratch = [0u8; Counter::MAX_BODY_LEN];
//! let (restored, generation) = Counter::open_state(&key, &new[..n1], newest_seen, &mut scratch)?;
//! assert_eq!((restored, generation), (Counter { sent: 11 }, 1));
//! // The older blob would restore a state whose keys were already used.
//! assert_eq!(
//!     Counter::open_state(&key, &old[..n0], newest_seen, &mut scratch).unwrap_err(),
//!     Error::Rollback { found: 0, newest: 1 }
//! );
//! # Ok::<(), Error>(())
//! ```
//!
//! ## The persistence rule
//!
//! A caller **MUST** persist the new state (and durably record its
//! generation) **before** it transmits anything the call that changed the
//! state produced. A crash after transmitting but before persisting would
//! restore a state that reuses the keys of the transmitted message.

use crate::codec::{Reader, Writer};
use crate::crypto::{Aead, ChaChaPoly, SuiteId};
use crate::{Error, Secret};
use rand_core::CryptoRng;

/// Magic of a plain envelope.
pub const MAGIC: [u8; 4] = *b"SMst";
/// Magic of a sealed envelope.
pub const SEALED_MAGIC: [u8; 4] = *b"SMsl";
/// Length of the plain header.
pub const HEADER_LEN: usize = 4 + 1 + 2 + 2 + 4;
/// Length of the sealed header (the associated data of the seal).
pub const SEALED_HEADER_LEN: usize = 4 + 1 + 2 + 2 + 8 + NONCE_LEN + 4;
/// Bytes a sealed envelope adds to the body.
pub const SEAL_OVERHEAD: usize = SEALED_HEADER_LEN + TAG_LEN;
/// Largest body any envelope may carry; state types declare smaller bounds
/// ([`Persist::MAX_BODY_LEN`]).
pub const MAX_ENCODED_LEN: usize = 1 << 20;

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// A key that seals persisted state (32 bytes, held by the caller).
pub type StorageKey = Secret<[u8; 32]>;

/// What a state envelope holds. The numbers are a registry: a number never
/// changes meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StateKind(pub u8);

impl StateKind {
    /// A Noise transport (keys, counters, replay window).
    pub const NOISE_TRANSPORT: StateKind = StateKind(1);
    /// A Double Ratchet session.
    pub const RATCHET_SESSION: StateKind = StateKind(2);
    /// A prekey pool (signed prekeys and one-time prekeys).
    pub const PREKEY_POOL: StateKind = StateKind(3);
    /// An MLS group.
    pub const MLS_GROUP: StateKind = StateKind(4);
    /// Mesh router tables.
    pub const MESH_ROUTER: StateKind = StateKind(5);
    /// An agent identity (its private keys; seal it).
    pub const IDENTITY: StateKind = StateKind(6);
}

/// The clear header of an envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// What the body holds.
    pub kind: StateKind,
    /// Version of the body encoding (starts at 1).
    pub version: u16,
    /// Crypto suite the state belongs to.
    pub suite: SuiteId,
}

/// Encode a plain envelope into `out`; `body` writes the body. Returns the
/// total length, or [`Error::BufferTooSmall`] with the exact size needed.
///
/// ```
/// use securemesh_core::envelope::{self, Header, StateKind};
/// use securemesh_core::crypto::SuiteId;
/// let h = Header { kind: StateKind::NOISE_TRANSPORT, version: 1, suite: SuiteId::DEFAULT };
/// let mut buf = [0u8; 32];
/// let n = envelope::encode(&h, &mut buf, |w| w.write_u64(7))?;
/// let (h2, body) = envelope::decode(&buf[..n])?;
/// assert_eq!(h2, h);
/// assert_eq!(body, &7u64.to_be_bytes());
/// # Ok::<(), securemesh_core::Error>(())
/// ```
pub fn encode(
    header: &Header,
    out: &mut [u8],
    body: impl FnOnce(&mut Writer<'_>) -> Result<(), Error>,
) -> Result<usize, Error> {
    let mut w = Writer::new(out);
    w.write_bytes(&MAGIC)?;
    write_fields(&mut w, header)?;
    let mut body_len = 0;
    w.write_nested32(|w| {
        let start = w.len();
        body(w)?;
        body_len = w.len().saturating_sub(start);
        Ok(())
    })?;
    if body_len > MAX_ENCODED_LEN {
        return Err(Error::LengthOverflow);
    }
    w.finish()
}

/// Decode a plain envelope: its header and a borrowed body. The length must
/// match the input exactly.
pub fn decode(bytes: &[u8]) -> Result<(Header, &[u8]), Error> {
    let mut r = Reader::new(bytes);
    if r.read_array::<4>()? != MAGIC {
        return Err(Error::BadMagic);
    }
    let header = read_fields(&mut r)?;
    let body = r.read_vec32()?;
    if body.len() > MAX_ENCODED_LEN {
        return Err(Error::LengthOverflow);
    }
    r.finish()?;
    Ok((header, body))
}

/// Seal a state under `key` with `generation`; `body` writes the body.
/// Returns the total length, or [`Error::BufferTooSmall`] with the exact
/// size needed (nothing is drawn from `rng` in that case). On any error
/// `out` is zeroed: the body is written in the clear before it is
/// encrypted in place, and none of it may stay behind.
pub fn seal<R: CryptoRng + ?Sized>(
    key: &StorageKey,
    header: &Header,
    generation: u64,
    rng: &mut R,
    out: &mut [u8],
    body: impl FnOnce(&mut Writer<'_>) -> Result<(), Error>,
) -> Result<usize, Error> {
    let sealed = write_clear(header, generation, out, body)
        .and_then(|body_len| encrypt_in_place(key, rng, out, body_len));
    if sealed.is_err() {
        zeroize::Zeroize::zeroize(out);
    }
    sealed
}

/// The first pass of [`seal`]: header (zero nonce and length) and the body
/// in the clear, with room for the tag; returns the body length.
fn write_clear(
    header: &Header,
    generation: u64,
    out: &mut [u8],
    body: impl FnOnce(&mut Writer<'_>) -> Result<(), Error>,
) -> Result<usize, Error> {
    // What needs no body first: the header (`write_fields` refuses version
    // 0; into an empty writer it writes nothing), and whether the fixed
    // part fits (if not, the body is only counted, never written to `out`).
    write_fields(&mut Writer::new(&mut []), header)?;
    if out.len() < SEAL_OVERHEAD {
        let mut count = Writer::new(&mut []);
        body(&mut count)?;
        let needed = SEAL_OVERHEAD.checked_add(count.len()).ok_or(Error::LengthOverflow)?;
        return Err(Error::BufferTooSmall { needed });
    }
    let mut w = Writer::new(out);
    w.write_bytes(&SEALED_MAGIC)?;
    write_fields(&mut w, header)?;
    w.write_u64(generation)?;
    w.write_bytes(&[0u8; NONCE_LEN])?;
    w.write_u32(0)?;
    body(&mut w)?;
    let body_len = w.len().saturating_sub(SEALED_HEADER_LEN);
    w.reserve(TAG_LEN)?;
    w.finish()?;
    if body_len > MAX_ENCODED_LEN {
        return Err(Error::LengthOverflow);
    }
    Ok(body_len)
}

/// The second pass of [`seal`]: draw the nonce, fill in nonce and length,
/// encrypt the body in place and append the tag.
fn encrypt_in_place<R: CryptoRng + ?Sized>(
    key: &StorageKey,
    rng: &mut R,
    out: &mut [u8],
    body_len: usize,
) -> Result<usize, Error> {
    let len32 = u32::try_from(body_len).map_err(|_| Error::LengthOverflow)?;
    let sealed_len = SEALED_HEADER_LEN
        .checked_add(body_len)
        .and_then(|n| n.checked_add(TAG_LEN))
        .ok_or(Error::LengthOverflow)?;
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    let (head, rest) = out.split_at_mut_checked(SEALED_HEADER_LEN).ok_or(Error::LengthOverflow)?;
    let nonce_at = SEALED_HEADER_LEN - 4 - NONCE_LEN;
    head.get_mut(nonce_at..nonce_at + NONCE_LEN).ok_or(Error::LengthOverflow)?.copy_from_slice(&nonce);
    head.get_mut(SEALED_HEADER_LEN - 4..).ok_or(Error::LengthOverflow)?.copy_from_slice(&len32.to_be_bytes());
    let (msg, tail) = rest.split_at_mut_checked(body_len).ok_or(Error::LengthOverflow)?;
    let tag = ChaChaPoly::seal_detached(key, &nonce, head, msg)?;
    tail.get_mut(..TAG_LEN).ok_or(Error::LengthOverflow)?.copy_from_slice(&tag);
    Ok(sealed_len)
}

/// A sealed envelope after [`open`].
#[derive(Debug)]
pub struct Opened<'a> {
    /// The authenticated header.
    pub header: Header,
    /// The authenticated generation.
    pub generation: u64,
    /// The decrypted body (in the caller's scratch buffer).
    pub body: &'a [u8],
}

/// Read the clear header and generation of a sealed blob without the key
/// (they are authenticated only by [`open`]).
pub fn peek_sealed(blob: &[u8]) -> Result<(Header, u64), Error> {
    let mut r = Reader::new(blob);
    if r.read_array::<4>()? != SEALED_MAGIC {
        return Err(Error::BadMagic);
    }
    let header = read_fields(&mut r)?;
    Ok((header, r.read_u64()?))
}

/// Open a sealed blob: authenticate it, refuse it if its generation is
/// below `newest_seen` ([`Error::Rollback`]), and decrypt the body into
/// `scratch`. `blob` is never modified; on any error `scratch` holds no
/// plaintext.
///
/// ```
/// use securemesh_core::envelope::{self, Header, StateKind, StorageKey};
/// use securemesh_core::{Error, crypto::SuiteId};
/// # struct Rng(u8);
/// # impl rand_core::TryRng for Rng { type Error = core::convert::Infallible;
/// #   fn try_next_u32(&mut self) -> Result<u32, Self::Error> { Ok(7) }
/// #   fn try_next_u64(&mut self) -> Result<u64, Self::Error> { Ok(7) }
/// #   fn try_fill_bytes(&mut self, d: &mut [u8]) -> Result<(), Self::Error> { for b in d { self.0 = self.0.wrapping_add(1); *b = self.0; } Ok(()) } }
/// # impl rand_core::TryCryptoRng for Rng {}
/// # let mut rng = Rng(0);
/// let key = StorageKey::new([9u8; 32]);
/// let h = Header { kind: StateKind::RATCHET_SESSION, version: 1, suite: SuiteId::DEFAULT };
/// let mut blob = [0u8; 64];
/// let n = envelope::seal(&key, &h, 5, &mut rng, &mut blob, |w| w.write_bytes(b"state"))?;
/// let mut scratch = [0u8; 64];
/// let opened = envelope::open(&key, &blob[..n], 5, &mut scratch)?;
/// assert_eq!((opened.generation, opened.body), (5, &b"state"[..]));
/// // A caller that has already seen generation 6 detects the rollback.
/// assert_eq!(envelope::open(&key, &blob[..n], 6, &mut scratch).unwrap_err(),
///            Error::Rollback { found: 5, newest: 6 });
/// # Ok::<(), Error>(())
/// ```
pub fn open<'a>(
    key: &StorageKey,
    blob: &[u8],
    newest_seen: u64,
    scratch: &'a mut [u8],
) -> Result<Opened<'a>, Error> {
    let mut r = Reader::new(blob);
    if r.read_array::<4>()? != SEALED_MAGIC {
        return Err(Error::BadMagic);
    }
    let header = read_fields(&mut r)?;
    let generation = r.read_u64()?;
    let nonce = r.read_array::<NONCE_LEN>()?;
    let ct = r.read_vec32()?;
    if ct.len() > MAX_ENCODED_LEN {
        return Err(Error::LengthOverflow);
    }
    let tag = r.read_array::<TAG_LEN>()?;
    r.finish()?;
    let ad = blob.get(..SEALED_HEADER_LEN).ok_or(Error::Truncated)?;
    let out = scratch.get_mut(..ct.len()).ok_or(Error::BufferTooSmall { needed: ct.len() })?;
    out.copy_from_slice(ct);
    if let Err(e) = ChaChaPoly::open_detached(key, &nonce, ad, out, &tag) {
        out.fill(0);
        return Err(e);
    }
    if generation < newest_seen {
        out.fill(0);
        return Err(Error::Rollback { found: generation, newest: newest_seen });
    }
    Ok(Opened { header, generation, body: out })
}

fn write_fields(w: &mut Writer<'_>, h: &Header) -> Result<(), Error> {
    // Versions start at 1; 0 is refused on both sides so nothing is written
    // that could not be read back.
    if h.version == 0 {
        return Err(Error::UnknownVersion { found: 0 });
    }
    w.write_u8(h.kind.0)?;
    w.write_u16(h.version)?;
    w.write_u16(h.suite.0)
}

fn read_fields(r: &mut Reader<'_>) -> Result<Header, Error> {
    let kind = StateKind(r.read_u8()?);
    let version = r.read_u16()?;
    if version == 0 {
        return Err(Error::UnknownVersion { found: 0 });
    }
    let suite = SuiteId(r.read_u16()?);
    Ok(Header { kind, version, suite })
}

/// A state type that persists through the envelope.
///
/// Implementors write their body field by field and read every version
/// they ever released (migrating forward); the provided methods add the
/// envelope, the kind and version checks, and sealing.
///
/// ```
/// use securemesh_core::codec::{Reader, Writer};
/// use securemesh_core::crypto::SuiteId;
/// use securemesh_core::envelope::{Header, Persist, StateKind};
/// use securemesh_core::Error;
///
/// #[derive(Debug, PartialEq)]
/// struct Counter { sent: u64 }
///
/// impl Persist for Counter {
///     const KIND: StateKind = StateKind::NOISE_TRANSPORT;
///     const VERSION: u16 = 1;
///     const MAX_BODY_LEN: usize = 8;
///     fn suite(&self) -> SuiteId { SuiteId::DEFAULT }
///     fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), Error> { w.write_u64(self.sent) }
///     fn decode_body(_h: &Header, r: &mut Reader<'_>) -> Result<Self, Error> {
///         Ok(Counter { sent: r.read_u64()? })
///     }
/// }
///
/// let mut buf = [0u8; Counter::MAX_ENCODED_LEN];
/// let n = Counter { sent: 3 }.encode_state(&mut buf)?;
/// assert_eq!(Counter::decode_state(&buf[..n])?, Counter { sent: 3 });
/// # Ok::<(), Error>(())
/// ```
pub trait Persist: Sized {
    /// The kind written into the envelope.
    const KIND: StateKind;
    /// The body version this code writes (the newest it reads).
    const VERSION: u16;
    /// Upper bound of the encoded body.
    const MAX_BODY_LEN: usize;
    /// Upper bound of the plain envelope; reserve this much to save.
    const MAX_ENCODED_LEN: usize = HEADER_LEN + Self::MAX_BODY_LEN;
    /// Upper bound of the sealed envelope.
    const MAX_SEALED_LEN: usize = SEAL_OVERHEAD + Self::MAX_BODY_LEN;

    /// The crypto suite of this state.
    fn suite(&self) -> SuiteId;
    /// Write the body, field by field.
    fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), Error>;
    /// Read a body of `header.version` (never above [`Persist::VERSION`]),
    /// migrating older versions forward.
    fn decode_body(header: &Header, r: &mut Reader<'_>) -> Result<Self, Error>;

    /// The header this state is written with.
    fn header(&self) -> Header {
        Header { kind: Self::KIND, version: Self::VERSION, suite: self.suite() }
    }

    /// Encode into a plain envelope.
    fn encode_state(&self, out: &mut [u8]) -> Result<usize, Error> {
        encode(&self.header(), out, |w| self.encode_body(w))
    }

    /// Decode from a plain envelope.
    fn decode_state(bytes: &[u8]) -> Result<Self, Error> {
        let (header, body) = decode(bytes)?;
        decode_checked(&header, body)
    }

    /// Seal under `key` at `generation`.
    fn seal_state<R: CryptoRng + ?Sized>(
        &self,
        key: &StorageKey,
        generation: u64,
        rng: &mut R,
        out: &mut [u8],
    ) -> Result<usize, Error> {
        seal(key, &self.header(), generation, rng, out, |w| self.encode_body(w))
    }

    /// Open a sealed state; returns it with its generation. `scratch` must
    /// hold the body ([`Persist::MAX_BODY_LEN`] is enough) and is wiped
    /// before returning.
    fn open_state(
        key: &StorageKey,
        blob: &[u8],
        newest_seen: u64,
        scratch: &mut [u8],
    ) -> Result<(Self, u64), Error> {
        let opened = open(key, blob, newest_seen, scratch)?;
        let generation = opened.generation;
        let result = decode_checked(&opened.header, opened.body);
        let len = opened.body.len();
        if let Some(s) = scratch.get_mut(..len) {
            zeroize::Zeroize::zeroize(s);
        }
        Ok((result?, generation))
    }
}

fn decode_checked<T: Persist>(header: &Header, body: &[u8]) -> Result<T, Error> {
    if header.kind != T::KIND {
        return Err(Error::WrongKind { found: header.kind.0, expected: T::KIND.0 });
    }
    if header.version > T::VERSION {
        return Err(Error::UnknownVersion { found: header.version });
    }
    if body.len() > T::MAX_BODY_LEN {
        return Err(Error::LengthOverflow);
    }
    let mut r = Reader::new(body);
    let value = T::decode_body(header, &mut r)?;
    r.finish()?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    /// Deterministic RNG for tests: a counter.
    struct CountingRng(u8);
    impl rand_core::TryRng for CountingRng {
        type Error = core::convert::Infallible;
        fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
            Ok(u32::from(self.next()))
        }
        fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
            Ok(u64::from(self.next()))
        }
        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
            for b in dst {
                *b = self.next();
            }
            Ok(())
        }
    }
    impl rand_core::TryCryptoRng for CountingRng {}
    impl CountingRng {
        fn next(&mut self) -> u8 {
            self.0 = self.0.wrapping_add(1);
            self.0
        }
    }

    #[derive(Debug, PartialEq, Clone)]
    struct Sample {
        counter: u64,
        label: Vec<u8>,
    }

    impl Persist for Sample {
        const KIND: StateKind = StateKind::RATCHET_SESSION;
        const VERSION: u16 = 2;
        const MAX_BODY_LEN: usize = 8 + 2 + 200;
        fn suite(&self) -> SuiteId {
            SuiteId::DEFAULT
        }
        fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), Error> {
            w.write_u64(self.counter)?;
            w.write_vec16(&self.label)
        }
        fn decode_body(h: &Header, r: &mut Reader<'_>) -> Result<Self, Error> {
            match h.version {
                // Version 1 had a 32-bit counter and no label.
                1 => Ok(Sample { counter: u64::from(r.read_u32()?), label: Vec::new() }),
                2 => Ok(Sample { counter: r.read_u64()?, label: r.read_vec16()?.to_vec() }),
                v => Err(Error::UnknownVersion { found: v }),
            }
        }
    }

    fn sample() -> Sample {
        Sample { counter: 0x0102030405060708, label: b"peer-7".to_vec() }
    }

    #[test]
    fn plain_roundtrip_and_exact_size() {
        let s = sample();
        let mut buf = [0u8; Sample::MAX_ENCODED_LEN];
        let n = s.encode_state(&mut buf).unwrap();
        assert_eq!(n, HEADER_LEN + 8 + 2 + 6);
        assert_eq!(Sample::decode_state(&buf[..n]).unwrap(), s);
        let mut small = [0u8; 10];
        assert_eq!(s.encode_state(&mut small), Err(Error::BufferTooSmall { needed: n }));
    }

    #[test]
    fn migrates_version_1() {
        let h = Header { kind: StateKind::RATCHET_SESSION, version: 1, suite: SuiteId::DEFAULT };
        let mut buf = [0u8; 64];
        let n = encode(&h, &mut buf, |w| w.write_u32(9)).unwrap();
        assert_eq!(Sample::decode_state(&buf[..n]).unwrap(), Sample { counter: 9, label: Vec::new() });
    }

    #[test]
    fn rejects_unknown_version_kind_and_trailing() {
        let mut buf = [0u8; 64];
        let h3 = Header { kind: StateKind::RATCHET_SESSION, version: 3, suite: SuiteId::DEFAULT };
        let n = encode(&h3, &mut buf, |w| w.write_u64(1)).unwrap();
        assert_eq!(Sample::decode_state(&buf[..n]), Err(Error::UnknownVersion { found: 3 }));
        let hk = Header { kind: StateKind::MLS_GROUP, version: 1, suite: SuiteId::DEFAULT };
        let n = encode(&hk, &mut buf, |w| w.write_u32(1)).unwrap();
        assert_eq!(Sample::decode_state(&buf[..n]), Err(Error::WrongKind { found: 4, expected: 2 }));
        let h1 = Header { kind: StateKind::RATCHET_SESSION, version: 1, suite: SuiteId::DEFAULT };
        let n = encode(&h1, &mut buf, |w| w.write_u64(1)).unwrap();
        assert_eq!(Sample::decode_state(&buf[..n]), Err(Error::TrailingBytes));
        let mut bad = buf;
        bad[0] ^= 1;
        assert_eq!(Sample::decode_state(&bad[..n]), Err(Error::BadMagic));
        let h0 = Header { kind: StateKind::RATCHET_SESSION, version: 0, suite: SuiteId::DEFAULT };
        assert_eq!(encode(&h0, &mut buf, |_| Ok(())), Err(Error::UnknownVersion { found: 0 }));
    }

    fn sealed(generation: u64) -> (StorageKey, Vec<u8>) {
        let key = StorageKey::new([0x5au8; 32]);
        let mut out = [0u8; Sample::MAX_SEALED_LEN];
        let n = sample().seal_state(&key, generation, &mut CountingRng(0), &mut out).unwrap();
        (key, out[..n].to_vec())
    }

    #[test]
    fn sealed_roundtrip_and_generation() {
        let (key, blob) = sealed(41);
        let mut scratch = [0u8; Sample::MAX_BODY_LEN];
        let (s, g) = Sample::open_state(&key, &blob, 41, &mut scratch).unwrap();
        assert_eq!((s, g), (sample(), 41));
        assert!(scratch.iter().all(|b| *b == 0), "scratch wiped");
        assert_eq!(peek_sealed(&blob).unwrap().1, 41);
        assert_eq!(
            Sample::open_state(&key, &blob, 42, &mut scratch).unwrap_err(),
            Error::Rollback { found: 41, newest: 42 }
        );
        let wrong = StorageKey::new([0x5bu8; 32]);
        assert_eq!(Sample::open_state(&wrong, &blob, 0, &mut scratch).unwrap_err(), Error::Decrypt);
    }

    #[test]
    fn sealed_buffer_too_small_reports_exact_size_and_draws_no_randomness() {
        let key = StorageKey::new([1u8; 32]);
        let mut rng = CountingRng(0);
        let mut out = [0u8; 20];
        let needed = SEAL_OVERHEAD + 8 + 2 + 6;
        assert_eq!(sample().seal_state(&key, 1, &mut rng, &mut out), Err(Error::BufferTooSmall { needed }));
        assert_eq!(rng.0, 0);
    }

    /// Whether any 6-byte window of `secret` appears in `buf`.
    fn holds_plaintext(buf: &[u8], secret: &[u8]) -> bool {
        secret.windows(6).any(|w| buf.windows(6).any(|b| b == w))
    }

    #[test]
    fn seal_leaves_no_plaintext_in_out_on_any_error() {
        let key = StorageKey::new([1u8; 32]);
        let secret: Vec<u8> = b"SECRET-STATE-".iter().copied().cycle().take(100).collect();
        let header = sample().header();
        let needed = SEAL_OVERHEAD + secret.len();
        // BufferTooSmall at every size, including those that hold the
        // header and part (or all) of the body but not the tag.
        for len in 0..needed {
            let mut out = std::vec![0u8; len];
            let mut rng = CountingRng(0);
            let r = seal(&key, &header, 1, &mut rng, &mut out, |w| w.write_bytes(&secret));
            assert_eq!(r, Err(Error::BufferTooSmall { needed }), "len {len}");
            assert_eq!(rng.0, 0);
            assert!(!holds_plaintext(&out, &secret), "len {len}: plaintext left in out");
            assert!(out.iter().all(|b| *b == 0), "len {len}: out not wiped");
        }
        // The body writer fails after writing part of the body.
        let mut out = std::vec![0u8; needed];
        let r = seal(&key, &header, 1, &mut CountingRng(0), &mut out, |w| {
            w.write_bytes(&secret)?;
            Err(Error::InvalidValue)
        });
        assert_eq!(r, Err(Error::InvalidValue));
        assert!(!holds_plaintext(&out, &secret) && out.iter().all(|b| *b == 0));
        // A body over MAX_ENCODED_LEN in a buffer large enough for it.
        let big: Vec<u8> = secret.iter().copied().cycle().take(MAX_ENCODED_LEN + 1).collect();
        let mut out = std::vec![0u8; SEAL_OVERHEAD + big.len()];
        let r = seal(&key, &header, 1, &mut CountingRng(0), &mut out, |w| w.write_bytes(&big));
        assert_eq!(r, Err(Error::LengthOverflow));
        assert!(!holds_plaintext(&out[..4096], &secret) && out.iter().all(|b| *b == 0));
        // Version 0 is refused before anything is written.
        let mut out = std::vec![0u8; needed];
        let v0 = Header { version: 0, ..header };
        let r = seal(&key, &v0, 1, &mut CountingRng(0), &mut out, |w| w.write_bytes(&secret));
        assert_eq!(r, Err(Error::UnknownVersion { found: 0 }));
        assert!(out.iter().all(|b| *b == 0));
        // And a seal that fits still works and holds no plaintext either.
        let n = seal(&key, &header, 1, &mut CountingRng(0), &mut out, |w| w.write_bytes(&secret)).unwrap();
        assert_eq!(n, needed);
        assert!(!holds_plaintext(&out, &secret));
    }

    #[test]
    fn every_flipped_bit_of_a_sealed_blob_is_rejected() {
        let (key, blob) = sealed(7);
        let mut scratch = [0u8; Sample::MAX_BODY_LEN];
        for i in 0..blob.len() {
            for bit in 0..8 {
                let mut t = blob.clone();
                t[i] ^= 1 << bit;
                assert!(Sample::open_state(&key, &t, 0, &mut scratch).is_err(), "byte {i} bit {bit}");
                assert!(scratch.iter().all(|b| *b == 0));
            }
        }
        // Truncations and extensions too.
        for n in 0..blob.len() {
            assert!(Sample::open_state(&key, &blob[..n], 0, &mut scratch).is_err());
        }
        let mut longer = blob.clone();
        longer.push(0);
        assert!(Sample::open_state(&key, &longer, 0, &mut scratch).is_err());
    }

    proptest! {
        #[test]
        fn decode_encode_roundtrip(counter in any::<u64>(), label in proptest::collection::vec(any::<u8>(), 0..200)) {
            let s = Sample { counter, label };
            let mut buf = [0u8; Sample::MAX_ENCODED_LEN];
            let n = s.encode_state(&mut buf).unwrap();
            prop_assert_eq!(Sample::decode_state(&buf[..n]).unwrap(), s.clone());
            let key = StorageKey::new([3u8; 32]);
            let mut out = [0u8; Sample::MAX_SEALED_LEN];
            let m = s.seal_state(&key, counter, &mut CountingRng(9), &mut out).unwrap();
            let mut scratch = [0u8; Sample::MAX_BODY_LEN];
            prop_assert_eq!(Sample::open_state(&key, &out[..m], counter, &mut scratch).unwrap(), (s, counter));
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = Sample::decode_state(&bytes);
            let mut scratch = [0u8; 80];
            let _ = open(&StorageKey::new([0u8; 32]), &bytes, 0, &mut scratch);
        }
    }
}
