//! OS randomness for the agent: `getrandom`'s [`SysRng`] (rand_core 0.10).

use getrandom::SysRng;
use rand_core::{TryCryptoRng, TryRng, UnwrapErr};

/// The operating system's generator, checked once when made.
///
/// The mesh takes an infallible [`rand_core::CryptoRng`], so a failure of
/// the OS generator *after* this check stops the process (through
/// [`UnwrapErr`]): there is no safe way to go on without randomness.
#[derive(Clone, Copy, Debug)]
pub struct OsRng(UnwrapErr<SysRng>);

impl OsRng {
    /// The OS generator, if it answers.
    pub fn new() -> Result<Self, getrandom::Error> {
        let mut probe = [0u8; 8];
        SysRng.try_fill_bytes(&mut probe)?;
        Ok(OsRng(UnwrapErr(SysRng)))
    }
}

impl TryRng for OsRng {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        self.0.try_next_u32()
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        self.0.try_next_u64()
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        self.0.try_fill_bytes(dst)
    }
}

impl TryCryptoRng for OsRng {}
