//! X25519 (RFC 7748) on x25519-dalek.

use super::{Dh, DhOutput};
use crate::Secret;
use rand_core::CryptoRng;
use x25519_dalek::{PublicKey, StaticSecret};

/// X25519 key agreement (RFC 7748). Private keys are 32 random bytes,
/// clamped inside the scalar multiplication.
///
/// ```
/// use securemesh_core::crypto::{Dh, X25519};
/// # struct Rng(u64);
/// # impl rand_core::TryRng for Rng { type Error = core::convert::Infallible;
/// #   fn try_next_u32(&mut self) -> Result<u32, Self::Error> { Ok(self.try_next_u64()? as u32) }
/// #   fn try_next_u64(&mut self) -> Result<u64, Self::Error> { self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1); Ok(self.0) }
/// #   fn try_fill_bytes(&mut self, d: &mut [u8]) -> Result<(), Self::Error> { for b in d { *b = self.try_next_u64()? as u8; } Ok(()) } }
/// # impl rand_core::TryCryptoRng for Rng {}
/// # let mut rng = Rng(1);
/// let a = X25519::generate(&mut rng);
/// let b = X25519::generate(&mut rng);
/// let ab = X25519::dh(&a, &X25519::public_key(&b)).require_contributory().unwrap();
/// let ba = X25519::dh(&b, &X25519::public_key(&a)).require_contributory().unwrap();
/// assert_eq!(ab.expose(), ba.expose());
/// // A low-order peer key gives an all-zero result, which can be refused.
/// assert!(!X25519::dh(&a, &[0u8; 32]).is_contributory());
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct X25519;

impl X25519 {
    /// Whether `public` is the canonical encoding of a u-coordinate:
    /// `u < 2^255 - 19`, so bit 255 is clear and the value is reduced.
    ///
    /// RFC 7748 §5 has receivers mask bit 255 and accept unreduced values,
    /// so every key has a second encoding (bit 255 set) and the nineteen
    /// smallest a third (`u + p`); all of them give the same shared secret.
    /// A protocol that does not authenticate the public key's bytes (the
    /// X3DH prefix of an initial message, for one) must refuse the other
    /// encodings, or a flipped bit 255 goes through unnoticed. Keys this
    /// crate produces are always canonical.
    ///
    /// ```
    /// use securemesh_core::crypto::X25519;
    /// let mut u = [0u8; 32];
    /// u[0] = 9;
    /// assert!(X25519::is_canonical(&u));
    /// u[31] |= 0x80; // bit 255: ignored by X25519, refused here
    /// assert!(!X25519::is_canonical(&u));
    /// // p = 2^255 - 19 itself is the unreduced encoding of 0.
    /// let mut p = [0xffu8; 32];
    /// p[0] = 0xed;
    /// p[31] = 0x7f;
    /// assert!(!X25519::is_canonical(&p));
    /// p[0] = 0xec; // p - 1
    /// assert!(X25519::is_canonical(&p));
    /// ```
    #[must_use]
    pub fn is_canonical(public: &[u8; 32]) -> bool {
        // Compare little-endian `public` with p = 2^255 - 19 from the most
        // significant byte down. Public keys are public: no constant time.
        const P: [u8; 32] = {
            let mut p = [0xffu8; 32];
            p[0] = 0xed;
            p[31] = 0x7f;
            p
        };
        for (a, b) in public.iter().rev().zip(P.iter().rev()) {
            if a != b {
                return a < b;
            }
        }
        false
    }
}

impl Dh for X25519 {
    const NAME: &'static str = "25519";
    type PublicKey = [u8; 32];
    type SecretKey = [u8; 32];
    type SharedSecret = [u8; 32];

    fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Secret<[u8; 32]> {
        Secret::random(rng)
    }

    fn public_key(secret: &Secret<[u8; 32]>) -> [u8; 32] {
        let sk = StaticSecret::from(*secret.expose());
        PublicKey::from(&sk).to_bytes()
    }

    fn dh(secret: &Secret<[u8; 32]>, public: &[u8; 32]) -> DhOutput<[u8; 32]> {
        let sk = StaticSecret::from(*secret.expose());
        let shared = sk.diffie_hellman(&PublicKey::from(*public));
        DhOutput::new(Secret::new(shared.to_bytes()))
    }
}
