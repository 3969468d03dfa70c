//! Datagram transport for UDP and other lossy, reordering links: every
//! packet carries its 8-byte counter, and a sliding replay window (the
//! bitmap of RFC 6479) accepts each counter at most once.
//!
//! Packet: `counter u64 (big-endian) | ciphertext | tag`. The counter is the
//! AEAD nonce, so it is authenticated; the window is checked before
//! decryption and updated only after authentication succeeds.

use crate::cipher::{CipherState, TAG_LEN};
use crate::error::Error;
use crate::message::MAX_MESSAGE_LEN;
use crate::symmetric::MAX_HASH_LEN;
use crate::transport::Transport;

/// Bytes a datagram adds to its payload (counter and tag).
pub const DATAGRAM_OVERHEAD: usize = 8 + TAG_LEN;
/// Largest datagram payload.
pub const MAX_DATAGRAM_PAYLOAD: usize = MAX_MESSAGE_LEN - DATAGRAM_OVERHEAD;
/// Default number of 64-bit words in the replay bitmap: a window of
/// (33 - 1) * 64 = 2048 packets.
pub const DEFAULT_WINDOW_WORDS: usize = 33;

/// The RFC 6479 replay window: `WORDS` 64-bit words, of which one is the
/// word being filled, so `(WORDS - 1) * 64` counters below the highest are
/// tracked exactly.
#[derive(Debug, PartialEq, Eq)]
pub struct ReplayWindow<const WORDS: usize> {
    pub(crate) bitmap: [u64; WORDS],
    pub(crate) last: u64,
    pub(crate) seen_any: bool,
}

impl<const WORDS: usize> Default for ReplayWindow<WORDS> {
    fn default() -> Self {
        ReplayWindow { bitmap: [0; WORDS], last: 0, seen_any: false }
    }
}

impl<const WORDS: usize> ReplayWindow<WORDS> {
    /// Counters tracked below the highest one received.
    /// (A `WORDS` so large that this exceeds `u64::MAX` cannot be allocated;
    /// the value saturates rather than fail to compile.)
    pub const WINDOW: u64 = (WORDS as u64).saturating_sub(1).saturating_mul(64);

    /// The bitmap word that holds counters `64 * block ..= 64 * block + 63`:
    /// blocks go round the bitmap, so the index is `block mod WORDS`
    /// (`None` only for `WORDS == 0`, which has no slot).
    fn word_index(block: u64) -> Option<usize> {
        // The remainder is below WORDS, so it fits a usize.
        block.checked_rem(WORDS as u64).map(|w| w as usize)
    }

    /// The bitmap word index and bit of `counter`.
    fn slot(counter: u64) -> Option<(usize, u64)> {
        Some((Self::word_index(counter / 64)?, 1u64 << (counter % 64)))
    }

    /// Whether `counter` would be accepted (new and within the window).
    pub fn check(&self, counter: u64) -> bool {
        if WORDS < 2 || counter == u64::MAX {
            return false;
        }
        if !self.seen_any {
            return true;
        }
        // `None`: above the highest counter, so new.
        let Some(age) = self.last.checked_sub(counter) else { return true };
        if age >= Self::WINDOW {
            return false;
        }
        Self::slot(counter)
            .and_then(|(w, bit)| self.bitmap.get(w).map(|word| word & bit == 0))
            .unwrap_or(false)
    }

    /// Record `counter` as received (call only after `check` and
    /// authentication succeeded).
    pub fn update(&mut self, counter: u64) {
        if !self.seen_any || counter > self.last {
            if self.seen_any {
                // Clear the blocks after the current one up to the new one;
                // after WORDS of them every word is clear.
                for block in (self.last / 64..=counter / 64).skip(1).take(WORDS) {
                    if let Some(word) = Self::word_index(block).and_then(|w| self.bitmap.get_mut(w)) {
                        *word = 0;
                    }
                }
            } else {
                self.bitmap = [0; WORDS];
            }
            self.last = counter;
            self.seen_any = true;
        }
        if let Some((w, bit)) = Self::slot(counter)
            && let Some(word) = self.bitmap.get_mut(w)
        {
            *word |= bit;
        }
    }

    /// The highest counter received, if any.
    pub fn highest(&self) -> Option<u64> {
        self.seen_any.then_some(self.last)
    }
}

/// A completed Noise session for datagrams: explicit counters and a replay
/// window of `(WORDS - 1) * 64` packets (default 2048).
///
/// ```
/// # use securemesh_noise::{Builder, protocol, Protocol, DatagramTransport};
/// # struct Rng(u64);
/// # impl rand_core::TryRng for Rng { type Error = core::convert::Infallible;
/// #   fn try_next_u32(&mut self) -> Result<u32, Self::Error> { Ok(self.try_next_u64()? as u32) }
/// #   fn try_next_u64(&mut self) -> Result<u64, Self::Error> { self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); Ok(self.0 >> 11) }
/// #   fn try_fill_bytes(&mut self, d: &mut [u8]) -> Result<(), Self::Error> { for b in d { *b = self.try_next_u64()? as u8; } Ok(()) } }
/// # impl rand_core::TryCryptoRng for Rng {}
/// # let mut rng = Rng(1);
/// const NN: Protocol = protocol!("Noise_NN_25519_ChaChaPoly_SHA256");
/// let mut a = Builder::new(&NN).build_initiator()?;
/// let mut b = Builder::new(&NN).build_responder()?;
/// let (mut m, mut p) = ([0u8; 128], [0u8; 128]);
/// let n = a.write_message(&[], &mut m, &mut rng)?; b.read_message(&m[..n], &mut p)?;
/// let n = b.write_message(&[], &mut m, &mut rng)?; a.read_message(&m[..n], &mut p)?;
/// let mut a = a.finish()?.into_datagram(); // the default window: no annotation
/// let mut b = b.finish()?.into_datagram();
///
/// let (mut d1, mut d2) = ([0u8; 64], [0u8; 64]);
/// let n1 = a.seal(b"one", &mut d1)?;
/// let n2 = a.seal(b"two", &mut d2)?;
/// assert_eq!(b.open(&d2[..n2], &mut p)?, 3); // reordered: accepted
/// assert_eq!(b.open(&d1[..n1], &mut p)?, 3);
/// assert!(b.open(&d1[..n1], &mut p).is_err()); // replayed: rejected
/// # Ok::<(), securemesh_noise::Error>(())
/// ```
///
/// `WORDS` defaults to [`DEFAULT_WINDOW_WORDS`], so `DatagramTransport` in a
/// type (a field, a `let` annotation, a signature) is the 2048-packet
/// window. Rust does not apply that default to a path in an expression, so
/// `DatagramTransport::decode_state(..)` alone asks for annotations: name
/// [`DefaultDatagramTransport`] there, and
/// [`Transport::into_datagram`](crate::Transport::into_datagram) returns it.
/// For another window, write `DatagramTransport<W>` and use
/// [`Transport::into_datagram_with_window`](crate::Transport::into_datagram_with_window).
pub struct DatagramTransport<const WORDS: usize = DEFAULT_WINDOW_WORDS> {
    pub(crate) send: CipherState,
    pub(crate) recv: CipherState,
    pub(crate) window: ReplayWindow<WORDS>,
    pub(crate) handshake_hash: [u8; MAX_HASH_LEN],
    pub(crate) hash_len: u8,
    pub(crate) initiator: bool,
    pub(crate) remote_static: Option<[u8; 32]>,
}

/// [`DatagramTransport`] with the default replay window of 2048 packets
/// ([`DEFAULT_WINDOW_WORDS`]), for paths in expressions where the default
/// generic is not applied.
///
/// ```
/// # use securemesh_noise::{Builder, protocol, Protocol};
/// # struct Rng(u64);
/// # impl rand_core::TryRng for Rng { type Error = core::convert::Infallible;
/// #   fn try_next_u32(&mut self) -> Result<u32, Self::Error> { Ok(self.try_next_u64()? as u32) }
/// #   fn try_next_u64(&mut self) -> Result<u64, Self::Error> { self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); Ok(self.0 >> 11) }
/// #   fn try_fill_bytes(&mut self, d: &mut [u8]) -> Result<(), Self::Error> { for b in d { *b = self.try_next_u64()? as u8; } Ok(()) } }
/// # impl rand_core::TryCryptoRng for Rng {}
/// # let mut rng = Rng(2);
/// use securemesh_core::envelope::Persist;
/// use securemesh_noise::DefaultDatagramTransport;
/// # const NN: Protocol = protocol!("Noise_NN_25519_ChaChaPoly_SHA256");
/// # let mut a = Builder::new(&NN).build_initiator()?;
/// # let mut b = Builder::new(&NN).build_responder()?;
/// # let (mut m, mut p) = ([0u8; 128], [0u8; 128]);
/// # let n = a.write_message(&[], &mut m, &mut rng)?; b.read_message(&m[..n], &mut p)?;
/// # let n = b.write_message(&[], &mut m, &mut rng)?; a.read_message(&m[..n], &mut p)?;
/// let d = a.finish()?.into_datagram();
/// let mut blob = [0u8; DefaultDatagramTransport::MAX_ENCODED_LEN];
/// let n = d.encode_state(&mut blob)?;
/// let restored = DefaultDatagramTransport::decode_state(&blob[..n])?;
/// assert_eq!(restored.next_counter(), d.next_counter());
/// # Ok::<(), securemesh_noise::Error>(())
/// ```
pub type DefaultDatagramTransport = DatagramTransport<DEFAULT_WINDOW_WORDS>;

impl<const WORDS: usize> core::fmt::Debug for DatagramTransport<WORDS> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DatagramTransport")
            .field("initiator", &self.initiator)
            .field("next_counter", &self.send.n)
            .field("highest_received", &self.window.highest())
            .finish_non_exhaustive()
    }
}

impl<const WORDS: usize> DatagramTransport<WORDS> {
    pub(crate) fn from_transport(t: Transport) -> Self {
        // One word is the word being filled: a useful window needs two.
        const { assert!(WORDS >= 2, "DatagramTransport needs at least 2 window words") };
        DatagramTransport {
            send: t.send,
            recv: t.recv,
            window: ReplayWindow::default(),
            handshake_hash: t.handshake_hash,
            hash_len: t.hash_len,
            initiator: t.initiator,
            remote_static: t.remote_static,
        }
    }

    /// The handshake hash (channel binding).
    pub fn handshake_hash(&self) -> &[u8] {
        self.handshake_hash.get(..usize::from(self.hash_len)).unwrap_or(&[])
    }

    /// The peer's static public key, if the pattern had one.
    pub fn remote_static(&self) -> Option<&[u8; 32]> {
        self.remote_static.as_ref()
    }

    /// The counter the next sealed packet carries.
    pub fn next_counter(&self) -> u64 {
        self.send.n
    }

    /// The replay window.
    pub fn window(&self) -> &ReplayWindow<WORDS> {
        &self.window
    }

    /// Seal `payload` into a packet in `out`; returns its length.
    pub fn seal(&mut self, payload: &[u8], out: &mut [u8]) -> Result<usize, Error> {
        let needed = payload.len().checked_add(DATAGRAM_OVERHEAD).ok_or(Error::MessageTooLong)?;
        if needed > MAX_MESSAGE_LEN {
            return Err(Error::MessageTooLong);
        }
        let Some(k) = &self.send.k else { return Err(Error::OneWay) };
        // Counter 2^64-1 is never sent (the window refuses it too).
        let next = CipherState::next_nonce(self.send.n)?;
        let out = out.get_mut(..needed).ok_or(Error::BufferTooSmall { needed })?;
        let (counter, rest) = out.split_at_mut(8);
        let (body, tag_dst) = rest.split_at_mut(payload.len());
        counter.copy_from_slice(&self.send.n.to_be_bytes());
        body.copy_from_slice(payload);
        let tag = crate::cipher::seal(self.send.cipher, k, self.send.n, &[], body)?;
        tag_dst.copy_from_slice(&tag);
        self.send.n = next;
        Ok(needed)
    }

    /// Open a packet into `out`; returns the payload length. A replayed or
    /// too old counter is [`Error::Replay`]; a forged packet
    /// [`Error::Decrypt`]. On failure nothing changes and `out` holds no
    /// plaintext.
    pub fn open(&mut self, packet: &[u8], out: &mut [u8]) -> Result<usize, Error> {
        if packet.len() > MAX_MESSAGE_LEN {
            return Err(Error::MessageTooLong);
        }
        let Some(k) = &self.recv.k else { return Err(Error::OneWay) };
        let (counter, rest) = packet.split_first_chunk::<8>().ok_or(Error::Decrypt)?;
        let len = rest.len().checked_sub(TAG_LEN).ok_or(Error::Decrypt)?;
        let (ct, tag) = rest.split_at(len);
        let counter = u64::from_be_bytes(*counter);
        if !self.window.check(counter) {
            return Err(Error::Replay);
        }
        let dst = out.get_mut(..len).ok_or(Error::BufferTooSmall { needed: len })?;
        dst.copy_from_slice(ct);
        let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| Error::Decrypt)?;
        if let Err(e) = crate::cipher::open(self.recv.cipher, k, counter, &[], dst, &tag) {
            dst.fill(0);
            return Err(e);
        }
        self.window.update(counter);
        Ok(len)
    }
}

/// The switch from the stream transport. It lives here, beside the type it
/// builds, so that `datagram` depends on `transport` and never the reverse.
impl Transport {
    /// Switch to the datagram transport (explicit counters, replay window)
    /// for an unreliable, reordering link such as UDP, with the default
    /// window of 2048 packets ([`DEFAULT_WINDOW_WORDS`]).
    /// No type annotation is needed; for another window size use
    /// [`into_datagram_with_window`](Self::into_datagram_with_window).
    pub fn into_datagram(self) -> DatagramTransport {
        DatagramTransport::from_transport(self)
    }

    /// [`into_datagram`](Self::into_datagram) with a replay window of
    /// `(WORDS - 1) * 64` packets; `WORDS` below 2 does not compile.
    ///
    /// ```
    /// # use securemesh_noise::{Builder, protocol, Protocol, Transport};
    /// # fn demo(t: Transport) {
    /// let small = t.into_datagram_with_window::<5>(); // 256 packets, 40 bytes of bitmap
    /// assert_eq!(small.window().highest(), None);
    /// # }
    /// ```
    pub fn into_datagram_with_window<const WORDS: usize>(self) -> DatagramTransport<WORDS> {
        DatagramTransport::from_transport(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_accepts_each_counter_once_within_range() {
        let mut w = ReplayWindow::<33>::default();
        assert_eq!(ReplayWindow::<33>::WINDOW, 2048);
        for c in [5u64, 3, 4, 0, 1000, 6] {
            assert!(w.check(c), "{c}");
            w.update(c);
            assert!(!w.check(c));
        }
        assert!(w.check(2));
        w.update(5000);
        assert!(!w.check(5000 - 2048), "too old");
        assert!(w.check(5000 - 2047));
        assert!(!w.check(1000), "too old now");
        assert!(!w.check(u64::MAX));
        // A jump far beyond the window clears everything.
        w.update(1_000_000);
        assert!(w.check(1_000_000 - 1));
        assert!(!w.check(1_000_000));
    }

    /// The window as it was written before issue 13 replaced its plain
    /// arithmetic: the reference the current code must match.
    struct Reference<const WORDS: usize>(ReplayWindow<WORDS>);

    impl<const WORDS: usize> Reference<WORDS> {
        fn slot(counter: u64) -> (usize, u64) {
            let word = (counter / 64) % (WORDS as u64).max(1);
            (word as usize, 1u64 << (counter % 64))
        }

        fn check(&self, counter: u64) -> bool {
            let w = &self.0;
            if WORDS < 2 || counter == u64::MAX {
                return false;
            }
            if !w.seen_any || counter > w.last {
                return true;
            }
            if w.last - counter >= ReplayWindow::<WORDS>::WINDOW {
                return false;
            }
            let (i, bit) = Self::slot(counter);
            w.bitmap.get(i).is_some_and(|word| word & bit == 0)
        }

        fn update(&mut self, counter: u64) {
            let w = &mut self.0;
            if !w.seen_any || counter > w.last {
                if w.seen_any {
                    let cur = w.last / 64;
                    let new = counter / 64;
                    let steps = (new - cur).min(WORDS as u64);
                    for i in 1..=steps {
                        let (j, _) = Self::slot((cur + i) * 64);
                        if let Some(word) = w.bitmap.get_mut(j) {
                            *word = 0;
                        }
                    }
                } else {
                    w.bitmap = [0; WORDS];
                }
                w.last = counter;
                w.seen_any = true;
            }
            let (j, bit) = Self::slot(counter);
            if let Some(word) = w.bitmap.get_mut(j) {
                *word |= bit;
            }
        }
    }

    fn same_as_reference<const WORDS: usize>(base: u64, steps: &[(bool, u64)]) {
        let mut w = ReplayWindow::<WORDS>::default();
        let mut r = Reference::<WORDS>(ReplayWindow::default());
        for &(forward, delta) in steps {
            let top = w.highest().unwrap_or(base);
            let c = if forward { top.saturating_add(delta) } else { top.saturating_sub(delta) };
            assert_eq!(w.check(c), r.check(c), "check({c})");
            if r.check(c) {
                w.update(c);
                r.update(c);
            }
            assert_eq!(w, r.0, "after {c}");
        }
    }

    proptest::proptest! {
        #[test]
        fn window_matches_the_reference(
            near_max in proptest::bool::ANY,
            steps in proptest::collection::vec((proptest::bool::ANY, 0u64..5000), 1..200),
        ) {
            let base = if near_max { u64::MAX - 4000 } else { 0 };
            same_as_reference::<2>(base, &steps);
            same_as_reference::<3>(base, &steps);
            same_as_reference::<DEFAULT_WINDOW_WORDS>(base, &steps);
        }
    }
}
