//! Deterministic RNGs for tests, examples, benchmarks and test vectors
//! (feature `testing`). **They are not random.** Never use them to make
//! keys that protect anything.

use rand_core::{TryCryptoRng, TryRng};

/// A seeded xorshift64* generator: reproducible runs from a seed.
///
/// ```
/// use securemesh_core::testing::TestRng;
/// let (mut a, mut b) = (TestRng::new(7), TestRng::new(7));
/// assert_eq!(a.bytes::<16>(), b.bytes::<16>());
/// ```
#[derive(Clone, Debug)]
pub struct TestRng(u64);

impl TestRng {
    /// A generator from `seed` (any value, zero included).
    pub const fn new(seed: u64) -> Self {
        TestRng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    /// `N` bytes from the stream.
    pub fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        self.fill(&mut out);
        out
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0 | 1;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn fill(&mut self, dst: &mut [u8]) {
        for chunk in dst.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            let n = chunk.len();
            chunk.copy_from_slice(v.get(..n).unwrap_or(&[]));
        }
    }
}

impl TryRng for TestRng {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(self.next() as u32)
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(self.next())
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        self.fill(dst);
        Ok(())
    }
}
impl TryCryptoRng for TestRng {}

/// Replays fixed bytes, then zeros: pins the "random" values of a test
/// vector (nonces, ephemeral keys). Counts what was drawn.
///
/// ```
/// use securemesh_core::testing::ReplayRng;
/// use rand_core::Rng;
/// let mut r = ReplayRng::new(&[1, 2, 3]);
/// let mut out = [9u8; 4];
/// r.fill_bytes(&mut out);
/// assert_eq!((out, r.drawn()), ([1, 2, 3, 0], 4));
/// ```
#[derive(Clone, Debug)]
pub struct ReplayRng<'a> {
    rest: &'a [u8],
    drawn: usize,
}

impl<'a> ReplayRng<'a> {
    /// Replay `bytes`.
    pub const fn new(bytes: &'a [u8]) -> Self {
        ReplayRng { rest: bytes, drawn: 0 }
    }

    /// Bytes drawn so far.
    pub const fn drawn(&self) -> usize {
        self.drawn
    }
}

impl TryRng for ReplayRng<'_> {
    type Error = core::convert::Infallible;
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
        for d in dst {
            let (first, rest) = self.rest.split_first().map_or((0, &[][..]), |(f, r)| (*f, r));
            *d = first;
            self.rest = rest;
            self.drawn += 1;
        }
        Ok(())
    }
}
impl TryCryptoRng for ReplayRng<'_> {}
