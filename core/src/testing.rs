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
    /// A generator from `seed` (any value, zero included). Seeds that
    /// differ only in their lowest bit give the same stream (the state is
    /// made odd before each step; kept so that every vector and seed made
    /// from this generator stays reproducible): give two parties seeds that
    /// differ elsewhere.
    ///
    /// ```
    /// use securemesh_core::testing::TestRng;
    /// assert_eq!(TestRng::new(2).bytes::<8>(), TestRng::new(3).bytes::<8>());
    /// assert_ne!(TestRng::new(2).bytes::<8>(), TestRng::new(4).bytes::<8>());
    /// ```
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
            self.drawn = self.drawn.saturating_add(1);
        }
        Ok(())
    }
}
impl TryCryptoRng for ReplayRng<'_> {}

/// A point of order 8 on edwards25519 (compressed; the first of the
/// well-known list of small-order Ed25519 encodings).
const EDWARDS_ORDER_8: [u8; 32] = [
    0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67, 0x0f, 0x2a,
    0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac, 0x03, 0x7a,
];

/// The 7 other canonical X25519 encodings that act like `u` for every
/// private key: the u-coordinates of `P + k * T` for `k = 1..8`, where `P`
/// is the point of `u` and `T` a point of order 8. X25519 clamps private
/// keys to multiples of the cofactor 8, so `X25519(k, v) == X25519(k, u)`
/// for each of them; a protocol that does not bind the exact bytes of a
/// public key cannot tell them apart. `None` if `u` is not the
/// u-coordinate of a point of the curve (a twist point) or is itself of
/// small order.
///
/// ```
/// use securemesh_core::crypto::{Dh, X25519};
/// use securemesh_core::{Secret, testing::x25519_small_order_variants};
/// let (a, b) = (Secret::new([1u8; 32]), Secret::new([2u8; 32]));
/// let pa = X25519::public_key(&a);
/// let want = X25519::dh(&b, &pa).require_contributory()?;
/// for v in x25519_small_order_variants(&pa).unwrap() {
///     assert_ne!(v, pa);
///     assert_eq!(X25519::dh(&b, &v).require_contributory()?.expose(), want.expose());
/// }
/// # Ok::<(), securemesh_core::Error>(())
/// ```
pub fn x25519_small_order_variants(u: &[u8; 32]) -> Option<[[u8; 32]; 7]> {
    use curve25519_dalek::edwards::CompressedEdwardsY;
    use curve25519_dalek::montgomery::MontgomeryPoint;
    let p = MontgomeryPoint(*u).to_edwards(0)?;
    if p.is_small_order() {
        return None;
    }
    let t = CompressedEdwardsY(EDWARDS_ORDER_8).decompress()?;
    let mut out = [[0u8; 32]; 7];
    let mut q = p;
    for v in &mut out {
        // Edwards point addition: a group operation, no integer overflow.
        #[allow(clippy::arithmetic_side_effects)]
        let next = q + t;
        q = next;
        *v = q.to_montgomery().to_bytes();
    }
    Some(out)
}

/// The canonical X25519 public keys of small order (`u < p`): 0, 1, the
/// two points of order 8 and `p - 1`. X25519 with any of them gives the
/// all-zero output that a contributory check refuses.
///
/// ```
/// use securemesh_core::crypto::{Dh, X25519};
/// use securemesh_core::{Secret, testing::X25519_SMALL_ORDER};
/// for u in X25519_SMALL_ORDER {
///     assert!(X25519::is_canonical(&u));
///     assert!(X25519::dh(&Secret::new([9u8; 32]), &u).require_contributory().is_err());
/// }
/// ```
pub const X25519_SMALL_ORDER: [[u8; 32]; 5] = {
    let mut one = [0u8; 32];
    one[0] = 1;
    let mut p_minus_1 = [0xffu8; 32];
    p_minus_1[0] = 0xec;
    p_minus_1[31] = 0x7f;
    [
        [0u8; 32],
        one,
        // 325606250916557431795983626356110631294008115727848805560023387167927233504
        [
            0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f, 0xc4, 0x6a,
            0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49, 0xb8, 0x00,
        ],
        // 39382357235489614581723060781553021112529911719440698176882885853963445705823
        [
            0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1, 0x55, 0x9c, 0x83, 0xef, 0x5b,
            0x04, 0x44, 0x5c, 0xc4, 0x58, 0x1c, 0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd, 0xd0, 0x9f, 0x11, 0x57,
        ],
        p_minus_1,
    ]
};
