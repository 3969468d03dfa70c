//! X-Wing (draft-connolly-cfrg-xwing-kem-10: ML-KEM-768 + X25519, SHA3-256
//! combiner) on RustCrypto's `x-wing`.
//!
//! `x-wing` is built without its `zeroize` feature: that feature turns on
//! zeroize's default `alloc`, which the firmware cannot link. The stored
//! secret (the 32-byte seed) lives in this crate's zeroizing [`Secret`]; the
//! encapsulation randomness is drawn into a `Secret` too. What `x-wing`
//! derives inside a call is wiped where its dependencies do it (the ML-KEM
//! key by `ml-kem`'s `zeroize` feature, the X25519 secret by x25519-dalek's);
//! the copy of the seed inside `x_wing::DecapsulationKey` and the SHAKE-256
//! output it expands are left on the stack of that call.

use super::Kem;
use crate::{Error, Secret};
use ml_kem::array::Array;
use rand_core::CryptoRng;
use x_wing::{Decapsulate, Decapsulator, KeyExport, TryKeyInit};
use zeroize::Zeroize;

/// X-Wing, the general-purpose hybrid KEM of ML-KEM-768 and X25519
/// (draft-connolly-cfrg-xwing-kem-10): 1216-byte encapsulation keys
/// (`pk_M || pk_X`), 1120-byte ciphertexts (`ct_M || ct_X`), 32-byte shared
/// secrets; the decapsulation key is its 32-byte seed, expanded with
/// SHAKE-256 on each use. Feature `x-wing`.
///
/// As in the draft, decapsulation does not refuse a low-order X25519
/// ciphertext (the all-zero X25519 result enters the combiner; ML-KEM-768
/// still protects the secret), and a malformed ML-KEM part is implicitly
/// rejected: a pseudo-random secret, no error.
///
/// ```
/// use securemesh_core::crypto::{Kem, XWing};
/// # struct Rng(u64);
/// # impl rand_core::TryRng for Rng { type Error = core::convert::Infallible;
/// #   fn try_next_u32(&mut self) -> Result<u32, Self::Error> { Ok(self.try_next_u64()? as u32) }
/// #   fn try_next_u64(&mut self) -> Result<u64, Self::Error> { self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1); Ok(self.0 >> 11) }
/// #   fn try_fill_bytes(&mut self, d: &mut [u8]) -> Result<(), Self::Error> { for b in d { *b = self.try_next_u64()? as u8; } Ok(()) } }
/// # impl rand_core::TryCryptoRng for Rng {}
/// # let mut rng = Rng(3);
/// let (dk, ek) = XWing::generate(&mut rng);
/// let (ct, sent) = XWing::encapsulate(&ek, &mut rng)?;
/// assert_eq!((ek.len(), ct.len(), dk.len()), (XWing::EK_LEN, XWing::CT_LEN, XWing::SEED_LEN));
/// assert_eq!(XWing::decapsulate(&dk, &ct)?.expose(), sent.expose());
/// let mut bad = ct;
/// bad[5] ^= 0x40; // inside ct_M
/// assert_ne!(XWing::decapsulate(&dk, &bad)?.expose(), sent.expose());
/// assert_eq!(XWing::encapsulate_slice(&ek[..100], &mut rng).err(), Some(securemesh_core::Error::InvalidKey));
/// # Ok::<(), securemesh_core::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct XWing;

impl XWing {
    /// Length of an encoded encapsulation key (`pk_M || pk_X`).
    pub const EK_LEN: usize = x_wing::ENCAPSULATION_KEY_SIZE;
    /// Length of a ciphertext (`ct_M || ct_X`).
    pub const CT_LEN: usize = x_wing::CIPHERTEXT_SIZE;
    /// Length of the shared secret.
    pub const SS_LEN: usize = 32;
    /// Length of the stored decapsulation key (the seed `sk`).
    pub const SEED_LEN: usize = x_wing::DECAPSULATION_KEY_SIZE;
    /// Bytes of randomness one encapsulation draws (`eseed`).
    pub const ESEED_LEN: usize = x_wing::ENCAPSULATION_RANDOMNESS_SIZE;

    fn load_ek(ek: &[u8; 1216]) -> Result<x_wing::EncapsulationKey, Error> {
        x_wing::EncapsulationKey::new(&Array::from(*ek)).map_err(|_| Error::InvalidKey)
    }

    fn encapsulate_with(ek: &[u8; 1216], eseed: &[u8; 64]) -> Result<([u8; 1120], Secret<[u8; 32]>), Error> {
        let ek = Self::load_ek(ek)?;
        let mut r = Array::from(*eseed);
        let (ct, mut k) = ek.encapsulate_deterministic(&r);
        r.zeroize();
        let ss = Secret::new(k.into());
        k.zeroize();
        Ok((ct.into(), ss))
    }

    /// **For known-answer tests only.** The key pair of the seed `sk`
    /// (the draft's `GenerateKeyPairDerand(sk)`). A real seed must come from
    /// a CSPRNG: use [`Kem::generate`]. Feature `testing`.
    ///
    /// ```
    /// use securemesh_core::crypto::{Kem, XWing};
    /// let (dk, ek) = XWing::dangerous_keygen_from_seed([1; 32]);
    /// assert_eq!(dk.expose(), &[1; 32]);
    /// assert_eq!(XWing::encapsulation_key(&dk), ek);
    /// ```
    #[cfg(any(test, feature = "testing"))]
    pub fn dangerous_keygen_from_seed(seed: [u8; 32]) -> (Secret<[u8; 32]>, [u8; 1216]) {
        let dk = Secret::new(seed);
        let ek = <Self as Kem>::encapsulation_key(&dk);
        (dk, ek)
    }

    /// **For known-answer tests only.** Encapsulation with the caller's 64
    /// bytes `eseed` in place of fresh randomness (the draft's
    /// `EncapsulateDerand(pk, eseed)`: `eseed[0..32]` is ML-KEM's `m`,
    /// `eseed[32..64]` the ephemeral X25519 secret). Reusing or choosing
    /// `eseed` breaks the scheme: use [`Kem::encapsulate`]. Feature `testing`.
    ///
    /// ```
    /// use securemesh_core::crypto::{Kem, XWing};
    /// let (dk, ek) = XWing::dangerous_keygen_from_seed([1; 32]);
    /// let (ct, ss) = XWing::dangerous_encapsulate_deterministic(&ek, &[2; 64])?;
    /// assert_eq!(XWing::decapsulate(&dk, &ct)?.expose(), ss.expose());
    /// # Ok::<(), securemesh_core::Error>(())
    /// ```
    #[cfg(any(test, feature = "testing"))]
    pub fn dangerous_encapsulate_deterministic(
        ek: &[u8; 1216],
        eseed: &[u8; 64],
    ) -> Result<([u8; 1120], Secret<[u8; 32]>), Error> {
        Self::encapsulate_with(ek, eseed)
    }
}

impl Kem for XWing {
    const NAME: &'static str = "X-Wing";
    type EncapsulationKey = [u8; 1216];
    type DecapsulationKey = [u8; 32];
    type Ciphertext = [u8; 1120];
    type SharedSecret = [u8; 32];

    fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> (Secret<[u8; 32]>, [u8; 1216]) {
        let dk = Secret::random(rng);
        let ek = Self::encapsulation_key(&dk);
        (dk, ek)
    }

    fn encapsulation_key(dk: &Secret<[u8; 32]>) -> [u8; 1216] {
        x_wing::DecapsulationKey::from(*dk.expose()).encapsulation_key().to_bytes().into()
    }

    fn encapsulate<R: CryptoRng + ?Sized>(
        ek: &[u8; 1216],
        rng: &mut R,
    ) -> Result<([u8; 1120], Secret<[u8; 32]>), Error> {
        let eseed = Secret::<[u8; 64]>::random(rng);
        Self::encapsulate_with(ek, eseed.expose())
    }

    fn decapsulate(dk: &Secret<[u8; 32]>, ct: &[u8; 1120]) -> Result<Secret<[u8; 32]>, Error> {
        let key = x_wing::DecapsulationKey::from(*dk.expose());
        let mut k = key.decapsulate(&Array::from(*ct));
        let ss = Secret::new(k.into());
        k.zeroize();
        Ok(ss)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::testing::TestRng;
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        for seed in 0..4 {
            let mut rng = TestRng::new(seed);
            let (dk, ek) = XWing::generate(&mut rng);
            assert_eq!(XWing::encapsulation_key(&dk), ek);
            let (ct, sent) = XWing::encapsulate(&ek, &mut rng).unwrap();
            assert_eq!(XWing::decapsulate(&dk, &ct).unwrap().expose(), sent.expose());
            assert_eq!(XWing::decapsulate_slice(&dk, &ct).unwrap().expose(), sent.expose());
            let (other, _) = XWing::generate(&mut rng);
            assert_ne!(XWing::decapsulate(&other, &ct).unwrap().expose(), sent.expose());
        }
    }

    #[test]
    fn wrong_lengths_are_typed_errors() {
        let mut rng = TestRng::new(5);
        let (dk, ek) = XWing::generate(&mut rng);
        let (ct, _) = XWing::encapsulate(&ek, &mut rng).unwrap();
        assert_eq!(XWing::decapsulate_slice(&dk, &ct[..1119]).err(), Some(Error::Truncated));
        assert_eq!(
            XWing::decapsulate_slice(&dk, &[ct.as_slice(), &[0]].concat()).err(),
            Some(Error::TrailingBytes)
        );
        assert_eq!(XWing::encapsulate_slice(&ek[..1184], &mut rng).err(), Some(Error::InvalidKey));
        assert_eq!(
            XWing::encapsulate_slice(&[ek.as_slice(), &[0]].concat(), &mut rng).err(),
            Some(Error::InvalidKey)
        );
        // The ML-KEM-768 part must pass the FIPS 203 §7.2 modulus check.
        let mut bad = ek;
        bad[0] = 0xff;
        bad[1] |= 0x0f;
        assert_eq!(XWing::encapsulate(&bad, &mut rng).err(), Some(Error::InvalidKey));
    }

    #[test]
    fn flipped_ciphertext_byte_is_implicitly_rejected() {
        let mut rng = TestRng::new(6);
        let (dk, ek) = XWing::generate(&mut rng);
        let (ct, sent) = XWing::encapsulate(&ek, &mut rng).unwrap();
        // In ct_M (implicit rejection) and in ct_X (another X25519 result).
        for at in [0, 700, 1087, 1088, 1119] {
            let mut bad = ct;
            bad[at] ^= 0x02;
            let got = XWing::decapsulate(&dk, &bad).unwrap();
            assert_ne!(got.expose(), sent.expose(), "byte {at}");
            assert_eq!(XWing::decapsulate(&dk, &bad).unwrap().expose(), got.expose());
        }
    }

    #[test]
    fn low_order_x25519_ciphertext_is_accepted_as_in_the_draft() {
        let mut rng = TestRng::new(7);
        let (dk, ek) = XWing::generate(&mut rng);
        let (mut ct, sent) = XWing::encapsulate(&ek, &mut rng).unwrap();
        ct[1088..].fill(0);
        let got = XWing::decapsulate(&dk, &ct).unwrap();
        assert_ne!(got.expose(), sent.expose());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn encapsulate_decapsulate_round_trip(seed in prop::array::uniform32(any::<u8>()),
                                              m in prop::array::uniform32(any::<u8>()),
                                              x in prop::array::uniform32(any::<u8>()),
                                              flip in 0usize..1120) {
            let (dk, ek) = XWing::dangerous_keygen_from_seed(seed);
            let mut eseed = [0u8; 64];
            eseed[..32].copy_from_slice(&m);
            eseed[32..].copy_from_slice(&x);
            let (ct, ss) = XWing::dangerous_encapsulate_deterministic(&ek, &eseed).unwrap();
            prop_assert_eq!(*XWing::decapsulate(&dk, &ct).unwrap().expose(), *ss.expose());
            let mut bad = ct;
            bad[flip] ^= 0x10;
            prop_assert_ne!(*XWing::decapsulate(&dk, &bad).unwrap().expose(), *ss.expose());
        }
    }
}
