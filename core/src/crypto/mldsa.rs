//! ML-DSA-65 (FIPS 204) on RustCrypto's `ml-dsa`, without `alloc`.
//!
//! The signing key is stored as its 32-byte seed `ξ` (FIPS 204 §3.6.3
//! and the `ml-dsa` crate recommend the seed as the private key form); each
//! call expands it again (`ML-DSA.KeyGen_internal`, Algorithm 6) and the
//! expanded key, zeroized on drop by `ml-dsa`'s `zeroize` feature, lives
//! only for that call, as the ML-KEM decapsulation keys do. Hybrid-array
//! types stay inside this module: the API is byte arrays.
//!
//! ML-DSA does not implement the [`Signature`](super::Signature) trait: its
//! signing is hedged (it takes the caller's RNG), takes a FIPS 204 context
//! string and can fail (a context longer than 255 bytes, a rejection loop
//! that runs out), none of which that trait's `sign` can express.

use crate::{Error, Secret};
use ml_dsa::{B32, EncodedSignature, EncodedVerifyingKey, ExpandedSigningKey, VerifyingKey};
use rand_core::CryptoRng;
use zeroize::Zeroize;

type Params = ml_dsa::MlDsa65;

/// ML-DSA-65 (FIPS 204, security category 3): 1952-byte public keys,
/// 3309-byte signatures, 32-byte seeds as private keys. Signing is the
/// hedged `ML-DSA.Sign` (Algorithm 2: 32 fresh bytes from the caller's RNG
/// mixed with the key) with a context string of at most 255 bytes;
/// verification is `ML-DSA.Verify` (Algorithm 3). Feature `ml-dsa`.
///
/// ```
/// use securemesh_core::crypto::MlDsa65;
/// # struct Rng(u64);
/// # impl rand_core::TryRng for Rng { type Error = core::convert::Infallible;
/// #   fn try_next_u32(&mut self) -> Result<u32, Self::Error> { Ok(self.try_next_u64()? as u32) }
/// #   fn try_next_u64(&mut self) -> Result<u64, Self::Error> { self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1); Ok(self.0 >> 11) }
/// #   fn try_fill_bytes(&mut self, d: &mut [u8]) -> Result<(), Self::Error> { for b in d { *b = self.try_next_u64()? as u8; } Ok(()) } }
/// # impl rand_core::TryCryptoRng for Rng {}
/// # let mut rng = Rng(1);
/// let seed = MlDsa65::generate(&mut rng);
/// let public = MlDsa65::public_key(&seed);
/// let sig = MlDsa65::sign(&seed, b"bundle", b"ctx", &mut rng)?;
/// assert_eq!((public.len(), sig.len()), (MlDsa65::PUBLIC_KEY_LEN, MlDsa65::SIG_LEN));
/// assert!(MlDsa65::verify(&public, b"bundle", b"ctx", &sig).is_ok());
/// // Another message or another context does not verify.
/// assert!(MlDsa65::verify(&public, b"bundlE", b"ctx", &sig).is_err());
/// assert!(MlDsa65::verify(&public, b"bundle", b"", &sig).is_err());
/// # Ok::<(), securemesh_core::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct MlDsa65;

impl MlDsa65 {
    /// Name, as FIPS 204 writes it.
    pub const NAME: &'static str = "ML-DSA-65";
    /// Length of an encoded public (verifying) key.
    pub const PUBLIC_KEY_LEN: usize = 1952;
    /// Length of an encoded signature.
    pub const SIG_LEN: usize = 3309;
    /// Length of the stored private key: the seed `ξ`.
    pub const SEED_LEN: usize = 32;
    /// Longest FIPS 204 context string.
    pub const MAX_CONTEXT_LEN: usize = 255;

    /// A fresh private key (its seed) from the caller's CSPRNG.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Secret<[u8; 32]> {
        Secret::random(rng)
    }

    fn expand(seed: &Secret<[u8; 32]>) -> ExpandedSigningKey<Params> {
        let mut s = B32::from(*seed.expose());
        let key = ExpandedSigningKey::<Params>::from_seed(&s);
        s.zeroize();
        key
    }

    /// The public key of a seed (the seed expanded, `pkEncode`).
    pub fn public_key(seed: &Secret<[u8; 32]>) -> [u8; 1952] {
        Self::expand(seed).verifying_key().encode().into()
    }

    fn check_context(ctx: &[u8]) -> Result<(), Error> {
        if ctx.len() > Self::MAX_CONTEXT_LEN { Err(Error::InvalidLength) } else { Ok(()) }
    }

    /// Sign `msg` under the context string `ctx` (hedged `ML-DSA.Sign`).
    /// [`Error::InvalidLength`] if `ctx` is longer than
    /// [`Self::MAX_CONTEXT_LEN`]; [`Error::BadSignature`] in the
    /// (negligibly likely) case that the rejection loop runs out.
    pub fn sign<R: CryptoRng + ?Sized>(
        seed: &Secret<[u8; 32]>,
        msg: &[u8],
        ctx: &[u8],
        rng: &mut R,
    ) -> Result<[u8; 3309], Error> {
        Self::check_context(ctx)?;
        let sig = Self::expand(seed).sign_randomized(msg, ctx, rng).map_err(|_| Error::BadSignature)?;
        Ok(sig.encode().into())
    }

    /// Verify `sig` by `public` over `msg` under `ctx` (`ML-DSA.Verify`).
    /// The error is the opaque [`Error::BadSignature`] (also for a signature
    /// whose hint encoding is malformed), or [`Error::InvalidLength`] for a
    /// context longer than [`Self::MAX_CONTEXT_LEN`].
    pub fn verify(public: &[u8; 1952], msg: &[u8], ctx: &[u8], sig: &[u8; 3309]) -> Result<(), Error> {
        Self::check_context(ctx)?;
        let sig = EncodedSignature::<Params>::from(*sig);
        let sig = ml_dsa::Signature::<Params>::decode(&sig).ok_or(Error::BadSignature)?;
        let vk = VerifyingKey::<Params>::decode(&EncodedVerifyingKey::<Params>::from(*public));
        if vk.verify_with_context(msg, ctx, &sig) { Ok(()) } else { Err(Error::BadSignature) }
    }

    /// [`MlDsa65::verify`] of a key and a signature received as bytes:
    /// [`Error::InvalidKey`] if `public` is not [`Self::PUBLIC_KEY_LEN`]
    /// bytes, [`Error::Truncated`] / [`Error::TrailingBytes`] if `sig` is
    /// shorter / longer than [`Self::SIG_LEN`].
    ///
    /// ```
    /// use securemesh_core::{Error, Secret, crypto::MlDsa65};
    /// # struct Rng(u64);
    /// # impl rand_core::TryRng for Rng { type Error = core::convert::Infallible;
    /// #   fn try_next_u32(&mut self) -> Result<u32, Self::Error> { Ok(self.try_next_u64()? as u32) }
    /// #   fn try_next_u64(&mut self) -> Result<u64, Self::Error> { self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1); Ok(self.0 >> 11) }
    /// #   fn try_fill_bytes(&mut self, d: &mut [u8]) -> Result<(), Self::Error> { for b in d { *b = self.try_next_u64()? as u8; } Ok(()) } }
    /// # impl rand_core::TryCryptoRng for Rng {}
    /// # let mut rng = Rng(4);
    /// let seed = Secret::new([3; 32]);
    /// let public = MlDsa65::public_key(&seed);
    /// let sig = MlDsa65::sign(&seed, b"m", b"", &mut rng)?;
    /// assert_eq!(MlDsa65::verify_slice(&public, b"m", b"", &sig), Ok(()));
    /// assert_eq!(MlDsa65::verify_slice(&public, b"m", b"", &sig[1..]), Err(Error::Truncated));
    /// assert_eq!(MlDsa65::verify_slice(&public[1..], b"m", b"", &sig), Err(Error::InvalidKey));
    /// # Ok::<(), securemesh_core::Error>(())
    /// ```
    pub fn verify_slice(public: &[u8], msg: &[u8], ctx: &[u8], sig: &[u8]) -> Result<(), Error> {
        let public: &[u8; 1952] = public.try_into().map_err(|_| Error::InvalidKey)?;
        if sig.len() < Self::SIG_LEN {
            return Err(Error::Truncated);
        }
        let sig: &[u8; 3309] = sig.try_into().map_err(|_| Error::TrailingBytes)?;
        Self::verify(public, msg, ctx, sig)
    }

    /// **For known-answer tests only.** The key pair of the seed `ξ`
    /// (FIPS 204 `ML-DSA.KeyGen_internal(ξ)`, Algorithm 6). A real key's
    /// seed must come from a CSPRNG: use [`MlDsa65::generate`]. Feature
    /// `testing`.
    ///
    /// ```
    /// use securemesh_core::crypto::MlDsa65;
    /// let (seed, public) = MlDsa65::dangerous_keygen_from_seed([7; 32]);
    /// assert_eq!(public, MlDsa65::public_key(&seed));
    /// ```
    #[cfg(any(test, feature = "testing"))]
    pub fn dangerous_keygen_from_seed(seed: [u8; 32]) -> (Secret<[u8; 32]>, [u8; 1952]) {
        let seed = Secret::new(seed);
        let public = Self::public_key(&seed);
        (seed, public)
    }

    /// **For known-answer tests only.** The deterministic variant of
    /// `ML-DSA.Sign` (FIPS 204 Algorithm 2 with `rnd` = 32 zero bytes), the
    /// form of published signing vectors. Real signatures are hedged: use
    /// [`MlDsa65::sign`] (the deterministic variant gives up the protection
    /// of fresh randomness against fault and side-channel attacks).
    /// Feature `testing`.
    ///
    /// ```
    /// use securemesh_core::crypto::MlDsa65;
    /// let (seed, public) = MlDsa65::dangerous_keygen_from_seed([7; 32]);
    /// let a = MlDsa65::dangerous_sign_deterministic(&seed, b"m", b"c")?;
    /// assert_eq!(a, MlDsa65::dangerous_sign_deterministic(&seed, b"m", b"c")?);
    /// assert!(MlDsa65::verify(&public, b"m", b"c", &a).is_ok());
    /// # Ok::<(), securemesh_core::Error>(())
    /// ```
    #[cfg(any(test, feature = "testing"))]
    pub fn dangerous_sign_deterministic(
        seed: &Secret<[u8; 32]>,
        msg: &[u8],
        ctx: &[u8],
    ) -> Result<[u8; 3309], Error> {
        Self::check_context(ctx)?;
        let sig = Self::expand(seed).sign_deterministic(msg, ctx).map_err(|_| Error::BadSignature)?;
        Ok(sig.encode().into())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::testing::TestRng;

    #[test]
    fn hedged_signatures_differ_and_verify() {
        let mut rng = TestRng::new(0x6d6c_6473_0001);
        let seed = MlDsa65::generate(&mut rng);
        let public = MlDsa65::public_key(&seed);
        let a = MlDsa65::sign(&seed, b"msg", b"", &mut rng).unwrap();
        let b = MlDsa65::sign(&seed, b"msg", b"", &mut rng).unwrap();
        assert_ne!(a, b, "hedged signing draws fresh randomness");
        assert_eq!(MlDsa65::verify(&public, b"msg", b"", &a), Ok(()));
        assert_eq!(MlDsa65::verify(&public, b"msg", b"", &b), Ok(()));
    }

    #[test]
    fn context_longer_than_255_is_refused() {
        let mut rng = TestRng::new(0x6d6c_6473_0102);
        let (seed, public) = MlDsa65::dangerous_keygen_from_seed([5; 32]);
        let long = [0u8; 256];
        assert_eq!(MlDsa65::sign(&seed, b"m", &long, &mut rng), Err(Error::InvalidLength));
        let sig = MlDsa65::sign(&seed, b"m", &long[..255], &mut rng).unwrap();
        assert_eq!(MlDsa65::verify(&public, b"m", &long[..255], &sig), Ok(()));
        assert_eq!(MlDsa65::verify(&public, b"m", &long, &sig), Err(Error::InvalidLength));
    }

    #[test]
    fn every_flipped_byte_region_is_refused() {
        let (seed, public) = MlDsa65::dangerous_keygen_from_seed([9; 32]);
        let sig = MlDsa65::dangerous_sign_deterministic(&seed, b"m", b"c").unwrap();
        for i in [0, 31, 32, 1000, 3000, MlDsa65::SIG_LEN - 1] {
            let mut bad = sig;
            bad[i] ^= 0x01;
            assert_eq!(MlDsa65::verify(&public, b"m", b"c", &bad), Err(Error::BadSignature), "byte {i}");
        }
        let mut bad_key = public;
        bad_key[100] ^= 0x01;
        assert_eq!(MlDsa65::verify(&bad_key, b"m", b"c", &sig), Err(Error::BadSignature));
    }
}
