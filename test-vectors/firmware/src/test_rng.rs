//! A deterministic, NOT random, byte stream for this test firmware only.

use rand_core::{Infallible, TryCryptoRng, TryRng};

/// **Not a random number generator.** An xorshift32 stream from a fixed
/// seed, so that every run seals the same envelope and the instruction
/// counts are reproducible.
///
/// It implements [`TryCryptoRng`] only because `envelope::seal` asks for a
/// `CryptoRng` to draw its nonce. Real firmware must pass a hardware TRNG
/// (or a DRBG seeded from one); never copy this type into product code.
pub struct NotRandomTestRng {
    state: u32,
}

impl NotRandomTestRng {
    /// A stream that starts from `seed` (zero is replaced: xorshift's fixed point).
    pub const fn new(seed: u32) -> Self {
        NotRandomTestRng { state: if seed == 0 { 0x9E37_79B9 } else { seed } }
    }

    fn step(&mut self) -> u32 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.state = x;
        x
    }
}

impl TryRng for NotRandomTestRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(self.step())
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let lo = u64::from(self.step());
        Ok((u64::from(self.step()) << 32) | lo)
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for chunk in dst.chunks_mut(4) {
            let word = self.step().to_le_bytes();
            for (d, s) in chunk.iter_mut().zip(word) {
                *d = s;
            }
        }
        Ok(())
    }
}

/// Deliberately false claim, confined to this test firmware (see the type docs).
impl TryCryptoRng for NotRandomTestRng {}
