//! The hybrid signature Ed25519 + ML-DSA-65: both signatures over one
//! domain-separated message, and both must verify.
//!
//! ```text
//! M'  = LABEL || SHA-512(ed25519_pub 32 || ml_dsa_pub 1952 || u8(len(ctx)) || ctx || msg)
//! sig = Ed25519(ed25519_key, M') 64 || ML-DSA-65.Sign(ml_dsa_key, M', ctx = LABEL) 3309
//! LABEL = "securemesh-hybrid-sig-v1/Ed25519+ML-DSA-65"
//! ```
//!
//! Modelled on the composite signatures of draft-ietf-lamps-pq-composite-sigs
//! (a prefix, a label, the context and a SHA-512 pre-hash signed by both
//! components) but not wire-compatible with it. Choices:
//!
//! - **Non-separable.** Neither half signs `msg` itself, so the Ed25519
//!   half of a hybrid signature is not a valid classical Ed25519 signature
//!   of `msg`, and the ML-DSA half is bound to the label by its FIPS 204
//!   context: stripping one half leaves nothing another verifier accepts.
//! - **Key binding.** The hash covers the whole hybrid public key, so the
//!   Ed25519 half also commits to the ML-DSA key (a signature cannot be
//!   moved under a swapped ML-DSA key without forging Ed25519) and the
//!   ML-DSA half to the Ed25519 key (FIPS 204 already binds its own key).
//! - **Bounded, no heap.** The pre-hash makes `M'` 106 bytes whatever the
//!   message length, so it lives on the stack and Ed25519 (which cannot
//!   stream a message) signs it directly.
//! - **No downgrade.** [`HybridEd25519MlDsa65::verify`] checks both halves
//!   and fails if either fails; [`HybridEd25519MlDsa65::verify_slice`]
//!   refuses a signature without its ML-DSA half (a 64-byte Ed25519
//!   signature is [`Error::Truncated`]).

use super::{Ed25519, Ed25519SigningKey, Hash, MlDsa65, Sha512, Signature};
use crate::{Error, Secret};
use core::fmt;
use rand_core::CryptoRng;

/// A hybrid public key: an Ed25519 key and an ML-DSA-65 key, encoded as
/// `ed25519 32 || ml_dsa 1952`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HybridPublicKey {
    /// The Ed25519 public key.
    pub ed25519: [u8; 32],
    /// The ML-DSA-65 public key.
    pub ml_dsa: [u8; 1952],
}

impl HybridPublicKey {
    /// Encoded length (1984).
    pub const LEN: usize = 32 + MlDsa65::PUBLIC_KEY_LEN;

    /// Encode as `ed25519 || ml_dsa`.
    pub fn to_bytes(&self) -> [u8; 1984] {
        let mut out = [0u8; 1984];
        let (a, b) = out.split_at_mut(32);
        a.copy_from_slice(&self.ed25519);
        b.copy_from_slice(&self.ml_dsa);
        out
    }

    /// Split an encoding (any 1984 bytes; keys are checked when used).
    ///
    /// ```
    /// use securemesh_core::crypto::HybridPublicKey;
    /// let key = HybridPublicKey { ed25519: [1; 32], ml_dsa: [2; 1952] };
    /// assert_eq!(HybridPublicKey::from_bytes(&key.to_bytes()), key);
    /// ```
    pub fn from_bytes(bytes: &[u8; 1984]) -> Self {
        let (a, b) = bytes.split_at(32);
        let mut key = HybridPublicKey { ed25519: [0; 32], ml_dsa: [0; 1952] };
        key.ed25519.copy_from_slice(a);
        key.ml_dsa.copy_from_slice(b);
        key
    }
}

/// A hybrid signature: the Ed25519 half and the ML-DSA-65 half, encoded as
/// `ed25519 64 || ml_dsa 3309`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HybridSignature {
    /// The Ed25519 signature of `M'`.
    pub ed25519: [u8; 64],
    /// The ML-DSA-65 signature of `M'` under the context `LABEL`.
    pub ml_dsa: [u8; 3309],
}

impl HybridSignature {
    /// Encoded length (3373).
    pub const LEN: usize = 64 + MlDsa65::SIG_LEN;

    /// Encode as `ed25519 || ml_dsa`.
    pub fn to_bytes(&self) -> [u8; 3373] {
        let mut out = [0u8; 3373];
        let (a, b) = out.split_at_mut(64);
        a.copy_from_slice(&self.ed25519);
        b.copy_from_slice(&self.ml_dsa);
        out
    }

    /// Decode wire bytes: [`Error::Truncated`] if shorter than
    /// [`Self::LEN`] (an Ed25519 signature alone is refused),
    /// [`Error::TrailingBytes`] if longer.
    ///
    /// ```
    /// use securemesh_core::{Error, crypto::HybridSignature};
    /// let sig = HybridSignature { ed25519: [1; 64], ml_dsa: [2; 3309] };
    /// assert_eq!(HybridSignature::from_slice(&sig.to_bytes()), Ok(sig));
    /// assert_eq!(HybridSignature::from_slice(&[1; 64]), Err(Error::Truncated));
    /// ```
    pub fn from_slice(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() < Self::LEN {
            return Err(Error::Truncated);
        }
        let (ed25519, rest) = bytes.split_first_chunk::<64>().ok_or(Error::Truncated)?;
        let ml_dsa: [u8; 3309] = rest.try_into().map_err(|_| Error::TrailingBytes)?;
        Ok(HybridSignature { ed25519: *ed25519, ml_dsa })
    }
}

/// A hybrid signing key: the loaded Ed25519 key, the ML-DSA-65 seed
/// (expanded at each signature, as [`MlDsa65`] does) and the hybrid public
/// key. Zeroized on drop; `Debug` shows only the Ed25519 public key.
pub struct HybridSigningKey {
    ed25519: Ed25519SigningKey,
    ml_dsa: Secret<[u8; 32]>,
    public: HybridPublicKey,
}

impl HybridSigningKey {
    /// Load a hybrid key from its two seeds (one Ed25519 base-point
    /// multiplication and one ML-DSA key expansion).
    ///
    /// ```
    /// use securemesh_core::{Secret, crypto::{HybridSigningKey, MlDsa65}};
    /// let key = HybridSigningKey::new(&Secret::new([1; 32]), &Secret::new([2; 32]));
    /// assert_eq!(key.public().ml_dsa, MlDsa65::public_key(&Secret::new([2; 32])));
    /// ```
    pub fn new(ed25519_seed: &Secret<[u8; 32]>, ml_dsa_seed: &Secret<[u8; 32]>) -> Self {
        let ed25519 = Ed25519::signing_key(ed25519_seed);
        let public = HybridPublicKey {
            ed25519: Ed25519::verifying_key(&ed25519),
            ml_dsa: MlDsa65::public_key(ml_dsa_seed),
        };
        HybridSigningKey { ed25519, ml_dsa: ml_dsa_seed.duplicate(), public }
    }

    /// The hybrid public key.
    pub fn public(&self) -> &HybridPublicKey {
        &self.public
    }
}

impl fmt::Debug for HybridSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HybridSigningKey").field("ed25519", &self.public.ed25519).finish_non_exhaustive()
    }
}

/// Ed25519 + ML-DSA-65 hybrid signatures (see the module text for `M'`).
/// Feature `ml-dsa`.
///
/// ```
/// use securemesh_core::{Error, Secret, crypto::{HybridEd25519MlDsa65 as Hybrid, HybridSigningKey}};
/// # struct Rng(u64);
/// # impl rand_core::TryRng for Rng { type Error = core::convert::Infallible;
/// #   fn try_next_u32(&mut self) -> Result<u32, Self::Error> { Ok(self.try_next_u64()? as u32) }
/// #   fn try_next_u64(&mut self) -> Result<u64, Self::Error> { self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1); Ok(self.0 >> 11) }
/// #   fn try_fill_bytes(&mut self, d: &mut [u8]) -> Result<(), Self::Error> { for b in d { *b = self.try_next_u64()? as u8; } Ok(()) } }
/// # impl rand_core::TryCryptoRng for Rng {}
/// # let mut rng = Rng(3);
/// let key = HybridSigningKey::new(&Secret::new([1; 32]), &Secret::new([2; 32]));
/// let sig = Hybrid::sign(&key, b"spk", b"prekey 7", &mut rng)?;
/// assert_eq!(Hybrid::verify(key.public(), b"spk", b"prekey 7", &sig), Ok(()));
/// // Both halves must verify: a bad ML-DSA half fails ...
/// let mut bad = sig;
/// bad.ml_dsa[10] ^= 1;
/// assert_eq!(Hybrid::verify(key.public(), b"spk", b"prekey 7", &bad), Err(Error::BadSignature));
/// // ... and a missing one is refused.
/// assert_eq!(Hybrid::verify_slice(key.public(), b"spk", b"prekey 7", &sig.ed25519), Err(Error::Truncated));
/// # Ok::<(), securemesh_core::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct HybridEd25519MlDsa65;

/// Length of `M'`: the label and a SHA-512 digest.
const SIGNED_LEN: usize = HybridEd25519MlDsa65::LABEL.len() + 64;

impl HybridEd25519MlDsa65 {
    /// Name.
    pub const NAME: &'static str = "Ed25519+ML-DSA-65";
    /// The prefix of `M'` and the FIPS 204 context of the ML-DSA half.
    pub const LABEL: &'static [u8] = b"securemesh-hybrid-sig-v1/Ed25519+ML-DSA-65";
    /// Encoded public key length ([`HybridPublicKey::LEN`]).
    pub const PUBLIC_KEY_LEN: usize = HybridPublicKey::LEN;
    /// Encoded signature length ([`HybridSignature::LEN`]).
    pub const SIG_LEN: usize = HybridSignature::LEN;
    /// Longest caller context.
    pub const MAX_CONTEXT_LEN: usize = 255;

    /// `M'` for `public`, `ctx` and `msg`; [`Error::InvalidLength`] if
    /// `ctx` is longer than [`Self::MAX_CONTEXT_LEN`].
    ///
    /// ```
    /// use securemesh_core::crypto::{HybridEd25519MlDsa65 as Hybrid, HybridPublicKey};
    /// let key = HybridPublicKey { ed25519: [1; 32], ml_dsa: [2; 1952] };
    /// let m = Hybrid::signed_message(&key, b"ctx", b"msg")?;
    /// assert!(m.starts_with(Hybrid::LABEL));
    /// assert_ne!(m, Hybrid::signed_message(&key, b"ctx", b"msG")?);
    /// assert_ne!(m, Hybrid::signed_message(&key, b"ct", b"xmsg")?);
    /// # Ok::<(), securemesh_core::Error>(())
    /// ```
    pub fn signed_message(
        public: &HybridPublicKey,
        ctx: &[u8],
        msg: &[u8],
    ) -> Result<[u8; SIGNED_LEN], Error> {
        let ctx_len = u8::try_from(ctx.len()).map_err(|_| Error::InvalidLength)?;
        let digest = Sha512::digest(&[&public.ed25519, &public.ml_dsa, &[ctx_len], ctx, msg]);
        let mut out = [0u8; SIGNED_LEN];
        for (d, s) in out.iter_mut().zip(Self::LABEL.iter().chain(digest.iter())) {
            *d = *s;
        }
        Ok(out)
    }

    /// Sign `msg` under `ctx` with both keys (hedged ML-DSA: it draws 32
    /// bytes from `rng`). [`Error::InvalidLength`] for a context longer
    /// than [`Self::MAX_CONTEXT_LEN`].
    pub fn sign<R: CryptoRng + ?Sized>(
        key: &HybridSigningKey,
        ctx: &[u8],
        msg: &[u8],
        rng: &mut R,
    ) -> Result<HybridSignature, Error> {
        let m = Self::signed_message(&key.public, ctx, msg)?;
        let ml_dsa = MlDsa65::sign(&key.ml_dsa, &m, Self::LABEL, rng)?;
        Ok(HybridSignature { ed25519: Ed25519::sign(&key.ed25519, &m), ml_dsa })
    }

    /// Verify both halves (strict Ed25519, FIPS 204 ML-DSA); the error is
    /// the opaque [`Error::BadSignature`] if either fails ([`Error::InvalidKey`]
    /// for an Ed25519 key that does not decode, [`Error::InvalidLength`]
    /// for an overlong context).
    pub fn verify(
        public: &HybridPublicKey,
        ctx: &[u8],
        msg: &[u8],
        sig: &HybridSignature,
    ) -> Result<(), Error> {
        let m = Self::signed_message(public, ctx, msg)?;
        Ed25519::verify(&public.ed25519, &m, &sig.ed25519)?;
        MlDsa65::verify(&public.ml_dsa, &m, Self::LABEL, &sig.ml_dsa)
    }

    /// [`Self::verify`] of a signature received as bytes: a signature
    /// shorter than [`Self::SIG_LEN`] (e.g. the Ed25519 half alone) is
    /// [`Error::Truncated`], a longer one [`Error::TrailingBytes`].
    pub fn verify_slice(public: &HybridPublicKey, ctx: &[u8], msg: &[u8], sig: &[u8]) -> Result<(), Error> {
        Self::verify(public, ctx, msg, &HybridSignature::from_slice(sig)?)
    }

    /// **For vectors only.** [`Self::sign`] with the deterministic variant
    /// of ML-DSA ([`MlDsa65::dangerous_sign_deterministic`]), so that a
    /// published vector does not depend on an RNG stream. Feature `testing`.
    ///
    /// ```
    /// use securemesh_core::{Secret, crypto::{HybridEd25519MlDsa65 as Hybrid, HybridSigningKey}};
    /// let key = HybridSigningKey::new(&Secret::new([1; 32]), &Secret::new([2; 32]));
    /// let a = Hybrid::dangerous_sign_deterministic(&key, b"", b"m")?;
    /// assert_eq!(a, Hybrid::dangerous_sign_deterministic(&key, b"", b"m")?);
    /// assert!(Hybrid::verify(key.public(), b"", b"m", &a).is_ok());
    /// # Ok::<(), securemesh_core::Error>(())
    /// ```
    #[cfg(any(test, feature = "testing"))]
    pub fn dangerous_sign_deterministic(
        key: &HybridSigningKey,
        ctx: &[u8],
        msg: &[u8],
    ) -> Result<HybridSignature, Error> {
        let m = Self::signed_message(&key.public, ctx, msg)?;
        let ml_dsa = MlDsa65::dangerous_sign_deterministic(&key.ml_dsa, &m, Self::LABEL)?;
        Ok(HybridSignature { ed25519: Ed25519::sign(&key.ed25519, &m), ml_dsa })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::testing::TestRng;

    fn key() -> HybridSigningKey {
        HybridSigningKey::new(&Secret::new([0x11; 32]), &Secret::new([0x22; 32]))
    }

    #[test]
    fn neither_half_is_a_signature_of_the_message_itself() {
        let mut rng = TestRng::new(0x6879_6272_0001);
        let key = key();
        let public = *key.public();
        let sig = HybridEd25519MlDsa65::sign(&key, b"", b"msg", &mut rng).unwrap();
        assert_eq!(HybridEd25519MlDsa65::verify(&public, b"", b"msg", &sig), Ok(()));
        // Stripped halves are not classical / plain ML-DSA signatures of msg.
        assert!(Ed25519::verify(&public.ed25519, b"msg", &sig.ed25519).is_err());
        assert!(MlDsa65::verify(&public.ml_dsa, b"msg", b"", &sig.ml_dsa).is_err());
        // Another context or message fails.
        assert!(HybridEd25519MlDsa65::verify(&public, b"x", b"msg", &sig).is_err());
        assert!(HybridEd25519MlDsa65::verify(&public, b"", b"msh", &sig).is_err());
    }

    #[test]
    fn each_half_is_required_and_bound_to_the_whole_key() {
        let key = key();
        let public = *key.public();
        let sig = HybridEd25519MlDsa65::dangerous_sign_deterministic(&key, b"c", b"m").unwrap();
        let mut bad = sig;
        bad.ed25519[0] ^= 1;
        assert_eq!(HybridEd25519MlDsa65::verify(&public, b"c", b"m", &bad), Err(Error::BadSignature));
        let mut bad = sig;
        bad.ml_dsa[3308] ^= 1;
        assert_eq!(HybridEd25519MlDsa65::verify(&public, b"c", b"m", &bad), Err(Error::BadSignature));
        // Swapping the ML-DSA key (and re-signing that half with it) breaks the Ed25519 half.
        let other = HybridSigningKey::new(&Secret::new([0x11; 32]), &Secret::new([0x33; 32]));
        let swapped = HybridPublicKey { ml_dsa: other.public().ml_dsa, ..public };
        let m = HybridEd25519MlDsa65::signed_message(&swapped, b"c", b"m").unwrap();
        let pq =
            MlDsa65::dangerous_sign_deterministic(&Secret::new([0x33; 32]), &m, HybridEd25519MlDsa65::LABEL)
                .unwrap();
        let forged = HybridSignature { ed25519: sig.ed25519, ml_dsa: pq };
        assert_eq!(HybridEd25519MlDsa65::verify(&swapped, b"c", b"m", &forged), Err(Error::BadSignature));
        // Wire forms: the Ed25519 half alone, or extra bytes, are refused.
        let bytes = sig.to_bytes();
        assert_eq!(HybridEd25519MlDsa65::verify_slice(&public, b"c", b"m", &bytes), Ok(()));
        assert_eq!(
            HybridEd25519MlDsa65::verify_slice(&public, b"c", b"m", &bytes[..64]),
            Err(Error::Truncated)
        );
        let mut long = [0u8; 3374];
        long[..3373].copy_from_slice(&bytes);
        assert_eq!(HybridEd25519MlDsa65::verify_slice(&public, b"c", b"m", &long), Err(Error::TrailingBytes));
        assert_eq!(HybridPublicKey::from_bytes(&public.to_bytes()), public);
        assert_eq!(HybridEd25519MlDsa65::signed_message(&public, &[0; 256], b"m"), Err(Error::InvalidLength));
    }

    #[test]
    fn sizes_for_firmware_budgets() {
        use core::mem::size_of;
        assert_eq!(size_of::<HybridPublicKey>(), HybridPublicKey::LEN);
        assert_eq!(size_of::<HybridSignature>(), HybridSignature::LEN);
        // The loaded Ed25519 key, the ML-DSA seed and the public key: the
        // expanded ML-DSA key is never stored.
        assert!(size_of::<HybridSigningKey>() <= 256 + 32 + HybridPublicKey::LEN);
    }
}
