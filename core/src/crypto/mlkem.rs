//! ML-KEM-768 and ML-KEM-1024 (FIPS 203) on RustCrypto's `ml-kem`.
//!
//! The decapsulation key is the 64-byte seed `d || z` of
//! `ML-KEM.KeyGen_internal` (FIPS 203 §3.3 recommends storing the seed);
//! every call expands it again and the expanded key (zeroized on drop by
//! `ml-kem`'s `zeroize` feature) lives only for that call. Hybrid-array types
//! stay inside this module: the API is byte arrays.
//!
//! A caller that decapsulates many ciphertexts with one key (a prekey
//! server, a gateway) can expand the seed once: [`MlKem768::expand`] gives a
//! [`MlKem768ExpandedKey`] (the FIPS 203 expanded decapsulation key, loaded;
//! zeroized on drop) and [`MlKem768::decapsulate_expanded`] uses it without
//! re-expanding (on the Cortex-M4 firmware: 3.96 M instructions instead of
//! 6.09 M from the seed). A FIPS 203 `dk` that comes from outside (2400 bytes
//! for ML-KEM-768, 3168 for ML-KEM-1024) is loaded with
//! [`MlKem768ExpandedKey::from_bytes`], which makes the §7.3 input checks.
//! The loaded key is plain data, no heap: `size_of` is 3,202 bytes for
//! `MlKem768ExpandedKey` and 4,226 for `MlKem1024ExpandedKey` (x86_64 build),
//! against 64 for the seed, which is what should be stored.

use super::Kem;
use crate::{Error, Secret};
use ml_kem::array::Array;
use ml_kem::kem::{Decapsulate, Encapsulate, KeyExport};
use rand_core::CryptoRng;
use zeroize::Zeroize;

/// One FIPS 203 parameter set as a [`Kem`].
macro_rules! ml_kem_suite {
    (
        $(#[$meta:meta])*
        $name:ident, $params:ty, $label:literal,
        ek = $ek:literal, ct = $ct:literal, dk_expanded = $dkx:literal,
        expanded = $xname:ident
    ) => {
        #[doc = concat!("A loaded ", $label, " decapsulation key in the FIPS 203 expanded form")]
        #[doc = concat!("(`dk_PKE || ek || H(ek) || z`, [`", stringify!($name), "::DK_EXPANDED_LEN`] bytes encoded),")]
        /// for a caller that decapsulates many ciphertexts with one key: the
        /// seed is expanded once instead of on every call.
        ///
        #[doc = concat!("Made by [`", stringify!($name), "::expand`] from a stored seed, or by")]
        #[doc = concat!("[`", stringify!($name), "ExpandedKey::from_bytes`] from a FIPS 203 `dk` received")]
        /// from elsewhere (with the §7.3 input checks). Secret: zeroized on
        /// drop, no `Debug`, not `Clone`. It is larger in memory than the seed
        /// (the matrix and vectors are kept decoded); keep it only while it
        /// serves decapsulations, and store the seed.
        ///
        /// ```
        #[doc = concat!("use securemesh_core::crypto::{Kem, ", stringify!($name), "};")]
        /// # struct Rng(u64);
        /// # impl rand_core::TryRng for Rng { type Error = core::convert::Infallible;
        /// #   fn try_next_u32(&mut self) -> Result<u32, Self::Error> { Ok(self.try_next_u64()? as u32) }
        /// #   fn try_next_u64(&mut self) -> Result<u64, Self::Error> { self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1); Ok(self.0 >> 11) }
        /// #   fn try_fill_bytes(&mut self, d: &mut [u8]) -> Result<(), Self::Error> { for b in d { *b = self.try_next_u64()? as u8; } Ok(()) } }
        /// # impl rand_core::TryCryptoRng for Rng {}
        /// # let mut rng = Rng(3);
        #[doc = concat!("let (seed, ek) = ", stringify!($name), "::generate(&mut rng);")]
        /// // Expand once...
        #[doc = concat!("let key = ", stringify!($name), "::expand(&seed);")]
        /// assert_eq!(key.encapsulation_key(), ek);
        /// // ...then decapsulate many ciphertexts without re-expanding.
        /// for _ in 0..3 {
        #[doc = concat!("    let (ct, sent) = ", stringify!($name), "::encapsulate(&ek, &mut rng)?;")]
        #[doc = concat!("    let got = ", stringify!($name), "::decapsulate_expanded(&key, &ct);")]
        ///     assert_eq!(got.expose(), sent.expose());
        /// }
        /// // The FIPS 203 encoding round-trips through the checked loader.
        /// let dk = key.to_bytes();
        #[doc = concat!("let again = securemesh_core::crypto::", stringify!($name), "ExpandedKey::from_bytes(dk.expose())?;")]
        /// assert_eq!(again.encapsulation_key(), ek);
        /// # Ok::<(), securemesh_core::Error>(())
        /// ```
        pub struct $xname(ml_kem::DecapsulationKey<$params>);

        impl $xname {
            /// Load a FIPS 203 expanded decapsulation key `dk` received from
            /// outside, with the input checks of FIPS 203 §7.3:
            /// [`Error::InvalidLength`] if `dk` is not
            #[doc = concat!("[`", stringify!($name), "::DK_EXPANDED_LEN`] bytes; [`Error::InvalidKey`] if")]
            /// the `H(ek)` inside `dk` is not the hash of the `ek` inside it
            /// (the hash check), or if that `ek` does not decode.
            ///
            /// ```
            #[doc = concat!("use securemesh_core::crypto::{", stringify!($name), ", ", stringify!($xname), "};")]
            /// use securemesh_core::{Error, Secret};
            #[doc = concat!("let key = ", stringify!($name), "::expand(&Secret::new([7; 64]));")]
            /// let mut dk = *key.to_bytes().expose();
            #[doc = concat!("assert_eq!(", stringify!($xname), "::from_bytes(&dk[1..]).err(), Some(Error::InvalidLength));")]
            /// // H(ek) sits 64 bytes from the end (before z).
            /// dk[dk.len() - 64] ^= 1;
            #[doc = concat!("assert_eq!(", stringify!($xname), "::from_bytes(&dk).err(), Some(Error::InvalidKey));")]
            /// ```
            #[allow(deprecated)] // ml-kem deprecates the expanded form in favour of seeds; FIPS 203 defines it
            pub fn from_bytes(dk: &[u8]) -> Result<Self, Error> {
                let mut x = ml_kem::ExpandedDecapsulationKey::<$params>::try_from(dk)
                    .map_err(|_| Error::InvalidLength)?;
                let key = ml_kem::DecapsulationKey::<$params>::from_expanded(&x);
                x.zeroize();
                key.map(Self).map_err(|_| Error::InvalidKey)
            }

            /// The FIPS 203 encoding `dk_PKE || ek || H(ek) || z`
            #[doc = concat!("([`", stringify!($name), "::DK_EXPANDED_LEN`] bytes). Secret.")]
            ///
            /// ```
            #[doc = concat!("use securemesh_core::crypto::", stringify!($name), ";")]
            #[doc = concat!("let key = ", stringify!($name), "::expand(&securemesh_core::Secret::new([7; 64]));")]
            #[doc = concat!("assert_eq!(key.to_bytes().len(), ", stringify!($name), "::DK_EXPANDED_LEN);")]
            /// ```
            #[allow(deprecated)] // see `from_bytes`
            pub fn to_bytes(&self) -> Secret<[u8; $dkx]> {
                use ml_kem::ExpandedKeyEncoding;
                let mut x = self.0.to_expanded_bytes();
                let out = Secret::new(x.into());
                x.zeroize();
                out
            }

            /// The encapsulation key inside this key.
            ///
            /// ```
            #[doc = concat!("use securemesh_core::crypto::{Kem, ", stringify!($name), "};")]
            #[doc = concat!("let (seed, ek) = ", stringify!($name), "::dangerous_keygen_from_seed([7; 64]);")]
            #[doc = concat!("assert_eq!(", stringify!($name), "::expand(&seed).encapsulation_key(), ek);")]
            /// ```
            pub fn encapsulation_key(&self) -> [u8; $ek] {
                self.0.encapsulation_key().to_bytes().into()
            }
        }

        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Default)]
        pub struct $name;

        impl $name {
            /// Length of an encoded encapsulation (public) key.
            pub const EK_LEN: usize = $ek;
            /// Length of a ciphertext.
            pub const CT_LEN: usize = $ct;
            /// Length of the shared secret.
            pub const SS_LEN: usize = 32;
            /// Length of the stored decapsulation key: the seed `d || z`.
            pub const SEED_LEN: usize = 64;
            /// Length of the FIPS 203 expanded decapsulation key
            /// (`dk_PKE || ek || H(ek) || z`), the form of the NIST ACVP
            /// vectors and of the expanded-key entries
            #[doc = concat!("([`", stringify!($xname), "`]); keys are stored as seeds.")]
            pub const DK_EXPANDED_LEN: usize = $dkx;

            fn expand_seed(seed: &Secret<[u8; 64]>) -> ml_kem::DecapsulationKey<$params> {
                let mut s = Array::from(*seed.expose());
                let dk = ml_kem::DecapsulationKey::<$params>::from_seed(s);
                s.zeroize();
                dk
            }

            /// Expand a stored seed `d || z` once (FIPS 203
            /// `ML-KEM.KeyGen_internal`, Algorithm 16) into a loaded key for
            #[doc = concat!("[`", stringify!($name), "::decapsulate_expanded`]. Costs one key generation.")]
            ///
            /// ```
            #[doc = concat!("use securemesh_core::crypto::{Kem, ", stringify!($name), "};")]
            #[doc = concat!("let (seed, ek) = ", stringify!($name), "::dangerous_keygen_from_seed([7; 64]);")]
            #[doc = concat!("let key = ", stringify!($name), "::expand(&seed);")]
            #[doc = concat!("let (ct, sent) = ", stringify!($name), "::dangerous_encapsulate_deterministic(&ek, &[9; 32])?;")]
            #[doc = concat!("assert_eq!(", stringify!($name), "::decapsulate_expanded(&key, &ct).expose(), sent.expose());")]
            /// # Ok::<(), securemesh_core::Error>(())
            /// ```
            pub fn expand(seed: &Secret<[u8; 64]>) -> $xname {
                $xname(Self::expand_seed(seed))
            }

            /// [`Kem::decapsulate`] with an expanded key: the same secret as
            /// from the seed (implicit rejection included: a ciphertext not
            /// made for the key gives a pseudo-random secret, no error),
            /// without expanding the seed again.
            ///
            /// ```
            #[doc = concat!("use securemesh_core::crypto::{Kem, ", stringify!($name), "};")]
            #[doc = concat!("let (seed, ek) = ", stringify!($name), "::dangerous_keygen_from_seed([7; 64]);")]
            #[doc = concat!("let (ct, _) = ", stringify!($name), "::dangerous_encapsulate_deterministic(&ek, &[9; 32])?;")]
            /// let mut bad = ct;
            /// bad[0] ^= 1;
            #[doc = concat!("let key = ", stringify!($name), "::expand(&seed);")]
            #[doc = concat!("let rejected = ", stringify!($name), "::decapsulate_expanded(&key, &bad);")]
            #[doc = concat!("assert_eq!(rejected.expose(), ", stringify!($name), "::decapsulate(&seed, &bad)?.expose());")]
            /// # Ok::<(), securemesh_core::Error>(())
            /// ```
            pub fn decapsulate_expanded(key: &$xname, ct: &[u8; $ct]) -> Secret<[u8; 32]> {
                Self::decapsulate_with(&key.0, ct)
            }

            /// [`Self::decapsulate_expanded`] of a ciphertext received as
            /// bytes: [`Error::Truncated`] if shorter than [`Self::CT_LEN`],
            /// [`Error::TrailingBytes`] if longer (as [`Kem::decapsulate_slice`]).
            ///
            /// ```
            #[doc = concat!("use securemesh_core::crypto::{Kem, ", stringify!($name), "};")]
            #[doc = concat!("let (seed, ek) = ", stringify!($name), "::dangerous_keygen_from_seed([7; 64]);")]
            #[doc = concat!("let (ct, _) = ", stringify!($name), "::dangerous_encapsulate_deterministic(&ek, &[9; 32])?;")]
            #[doc = concat!("let key = ", stringify!($name), "::expand(&seed);")]
            #[doc = concat!("assert!(", stringify!($name), "::decapsulate_expanded_slice(&key, &ct[1..]).is_err());")]
            /// # Ok::<(), securemesh_core::Error>(())
            /// ```
            pub fn decapsulate_expanded_slice(key: &$xname, ct: &[u8]) -> Result<Secret<[u8; 32]>, Error> {
                if ct.len() < $ct {
                    return Err(Error::Truncated);
                }
                let ct: &[u8; $ct] = ct.try_into().map_err(|_| Error::TrailingBytes)?;
                Ok(Self::decapsulate_with(&key.0, ct))
            }

            fn decapsulate_with(key: &ml_kem::DecapsulationKey<$params>, ct: &[u8; $ct]) -> Secret<[u8; 32]> {
                let mut k = key.decapsulate(&Array::from(*ct));
                let ss = Secret::new(k.into());
                k.zeroize();
                ss
            }

            fn load_ek(ek: &[u8; $ek]) -> Result<ml_kem::EncapsulationKey<$params>, Error> {
                ml_kem::EncapsulationKey::<$params>::new(&Array::from(*ek)).map_err(|_| Error::InvalidKey)
            }

            fn finish(ct: ml_kem::Ciphertext<$params>, mut k: ml_kem::SharedKey) -> ([u8; $ct], Secret<[u8; 32]>) {
                let ss = Secret::new(k.into());
                k.zeroize();
                (ct.into(), ss)
            }

            /// **For known-answer tests only.** The key pair of the seed
            /// `d || z` (FIPS 203 `ML-KEM.KeyGen_internal(d, z)`, Algorithm
            /// 16). A real key's seed must come from a CSPRNG: use
            /// [`Kem::generate`]. Feature `testing`.
            ///
            /// ```
            #[doc = concat!("use securemesh_core::crypto::{Kem, ", stringify!($name), "};")]
            #[doc = concat!("let (dk, ek) = ", stringify!($name), "::dangerous_keygen_from_seed([7; 64]);")]
            #[doc = concat!("assert_eq!(ek, ", stringify!($name), "::encapsulation_key(&dk));")]
            #[doc = concat!("assert_eq!(ek.len(), ", stringify!($name), "::EK_LEN);")]
            /// ```
            #[cfg(any(test, feature = "testing"))]
            pub fn dangerous_keygen_from_seed(seed: [u8; 64]) -> (Secret<[u8; 64]>, [u8; $ek]) {
                let dk = Secret::new(seed);
                let ek = <Self as Kem>::encapsulation_key(&dk);
                (dk, ek)
            }

            /// **For known-answer tests only.** Encapsulation with the
            /// caller's 32 bytes `m` in place of fresh randomness (FIPS 203
            /// `ML-KEM.Encaps_internal(ek, m)`, Algorithm 17, after the
            /// §7.2 key check). Reusing or choosing `m` breaks the scheme:
            /// use [`Kem::encapsulate`]. Feature `testing`.
            ///
            /// ```
            #[doc = concat!("use securemesh_core::crypto::{Kem, ", stringify!($name), "};")]
            #[doc = concat!("let (dk, ek) = ", stringify!($name), "::dangerous_keygen_from_seed([7; 64]);")]
            #[doc = concat!("let (ct, ss) = ", stringify!($name), "::dangerous_encapsulate_deterministic(&ek, &[9; 32])?;")]
            #[doc = concat!("let again = ", stringify!($name), "::dangerous_encapsulate_deterministic(&ek, &[9; 32])?;")]
            /// assert_eq!(ct, again.0);
            #[doc = concat!("assert_eq!(", stringify!($name), "::decapsulate(&dk, &ct)?.expose(), ss.expose());")]
            /// # Ok::<(), securemesh_core::Error>(())
            /// ```
            #[cfg(any(test, feature = "testing"))]
            pub fn dangerous_encapsulate_deterministic(
                ek: &[u8; $ek],
                m: &[u8; 32],
            ) -> Result<([u8; $ct], Secret<[u8; 32]>), Error> {
                let ek = Self::load_ek(ek)?;
                let mut m = Array::from(*m);
                let (ct, k) = ek.encapsulate_deterministic(&m);
                m.zeroize();
                Ok(Self::finish(ct, k))
            }

            /// **For known-answer tests only.** The FIPS 203 expanded
            /// decapsulation key of a seed (the `dk` output of
            /// `ML-KEM.KeyGen_internal`), to compare with published vectors.
            /// Feature `testing`.
            ///
            /// ```
            #[doc = concat!("use securemesh_core::crypto::", stringify!($name), ";")]
            #[doc = concat!("let (dk, ek) = ", stringify!($name), "::dangerous_keygen_from_seed([7; 64]);")]
            #[doc = concat!("let expanded = ", stringify!($name), "::dangerous_expanded_decapsulation_key(&dk);")]
            /// // dk_PKE || ek || H(ek) || z
            /// let (_, rest) = expanded.expose().split_at(expanded.len() - 64 - ek.len());
            /// assert_eq!(&rest[..ek.len()], &ek[..]);
            /// assert_eq!(&rest[rest.len() - 32..], &[7; 32]);
            /// ```
            #[cfg(any(test, feature = "testing"))]
            pub fn dangerous_expanded_decapsulation_key(seed: &Secret<[u8; 64]>) -> Secret<[u8; $dkx]> {
                Self::expand(seed).to_bytes()
            }

            /// **For known-answer tests only.** Decapsulation with a FIPS
            /// 203 expanded decapsulation key (the form of the NIST ACVP
            /// vectors), with implicit rejection: [`Self::decapsulate_expanded`]
            #[doc = concat!("after [`", stringify!($xname), "::from_bytes`] (its §7.3 checks and errors).")]
            /// Feature `testing`.
            ///
            /// ```
            #[doc = concat!("use securemesh_core::crypto::{Kem, ", stringify!($name), "};")]
            #[doc = concat!("let (dk, ek) = ", stringify!($name), "::dangerous_keygen_from_seed([7; 64]);")]
            #[doc = concat!("let (ct, ss) = ", stringify!($name), "::dangerous_encapsulate_deterministic(&ek, &[9; 32])?;")]
            #[doc = concat!("let expanded = ", stringify!($name), "::dangerous_expanded_decapsulation_key(&dk);")]
            #[doc = concat!("let got = ", stringify!($name), "::dangerous_decapsulate_expanded(expanded.expose(), &ct)?;")]
            /// assert_eq!(got.expose(), ss.expose());
            /// # Ok::<(), securemesh_core::Error>(())
            /// ```
            #[cfg(any(test, feature = "testing"))]
            pub fn dangerous_decapsulate_expanded(dk: &[u8], ct: &[u8; $ct]) -> Result<Secret<[u8; 32]>, Error> {
                Ok(Self::decapsulate_expanded(&$xname::from_bytes(dk)?, ct))
            }
        }

        impl Kem for $name {
            const NAME: &'static str = $label;
            type EncapsulationKey = [u8; $ek];
            type DecapsulationKey = [u8; 64];
            type Ciphertext = [u8; $ct];
            type SharedSecret = [u8; 32];

            fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> (Secret<[u8; 64]>, [u8; $ek]) {
                let dk = Secret::random(rng);
                let ek = Self::encapsulation_key(&dk);
                (dk, ek)
            }

            fn encapsulation_key(dk: &Secret<[u8; 64]>) -> [u8; $ek] {
                Self::expand_seed(dk).encapsulation_key().to_bytes().into()
            }

            fn encapsulate<R: CryptoRng + ?Sized>(
                ek: &[u8; $ek],
                rng: &mut R,
            ) -> Result<([u8; $ct], Secret<[u8; 32]>), Error> {
                let ek = Self::load_ek(ek)?;
                let (ct, k) = ek.encapsulate_with_rng(rng);
                Ok(Self::finish(ct, k))
            }

            fn decapsulate(dk: &Secret<[u8; 64]>, ct: &[u8; $ct]) -> Result<Secret<[u8; 32]>, Error> {
                Ok(Self::decapsulate_with(&Self::expand_seed(dk), ct))
            }
        }
    };
}

ml_kem_suite! {
    /// ML-KEM-768 (FIPS 203, security category 3): 1184-byte encapsulation
    /// keys, 1088-byte ciphertexts, 32-byte shared secrets; the decapsulation
    /// key is stored as its 64-byte seed. Feature `ml-kem`.
    ///
    /// ```
    /// use securemesh_core::crypto::{Kem, MlKem768};
    /// # struct Rng(u64);
    /// # impl rand_core::TryRng for Rng { type Error = core::convert::Infallible;
    /// #   fn try_next_u32(&mut self) -> Result<u32, Self::Error> { Ok(self.try_next_u64()? as u32) }
    /// #   fn try_next_u64(&mut self) -> Result<u64, Self::Error> { self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1); Ok(self.0 >> 11) }
    /// #   fn try_fill_bytes(&mut self, d: &mut [u8]) -> Result<(), Self::Error> { for b in d { *b = self.try_next_u64()? as u8; } Ok(()) } }
    /// # impl rand_core::TryCryptoRng for Rng {}
    /// # let mut rng = Rng(1);
    /// let (dk, ek) = MlKem768::generate(&mut rng);
    /// let (ct, sent) = MlKem768::encapsulate(&ek, &mut rng)?;
    /// assert_eq!((ek.len(), ct.len()), (MlKem768::EK_LEN, MlKem768::CT_LEN));
    /// let received = MlKem768::decapsulate(&dk, &ct)?;
    /// assert_eq!(received.expose(), sent.expose());
    /// // A changed ciphertext is implicitly rejected: another secret, no error.
    /// let mut bad = ct;
    /// bad[0] ^= 1;
    /// assert_ne!(MlKem768::decapsulate(&dk, &bad)?.expose(), sent.expose());
    /// // Wire bytes of the wrong length are refused.
    /// assert!(MlKem768::decapsulate_slice(&dk, &ct[1..]).is_err());
    /// # Ok::<(), securemesh_core::Error>(())
    /// ```
    MlKem768, ml_kem::MlKem768, "ML-KEM-768", ek = 1184, ct = 1088, dk_expanded = 2400,
    expanded = MlKem768ExpandedKey
}

ml_kem_suite! {
    /// ML-KEM-1024 (FIPS 203, security category 5): 1568-byte encapsulation
    /// keys, 1568-byte ciphertexts, 32-byte shared secrets; the decapsulation
    /// key is stored as its 64-byte seed. Feature `ml-kem`.
    ///
    /// ```
    /// use securemesh_core::crypto::{Kem, MlKem1024};
    /// # struct Rng(u64);
    /// # impl rand_core::TryRng for Rng { type Error = core::convert::Infallible;
    /// #   fn try_next_u32(&mut self) -> Result<u32, Self::Error> { Ok(self.try_next_u64()? as u32) }
    /// #   fn try_next_u64(&mut self) -> Result<u64, Self::Error> { self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1); Ok(self.0 >> 11) }
    /// #   fn try_fill_bytes(&mut self, d: &mut [u8]) -> Result<(), Self::Error> { for b in d { *b = self.try_next_u64()? as u8; } Ok(()) } }
    /// # impl rand_core::TryCryptoRng for Rng {}
    /// # let mut rng = Rng(2);
    /// let (dk, ek) = MlKem1024::generate(&mut rng);
    /// assert_eq!(MlKem1024::encapsulation_key(&dk), ek);
    /// let (ct, sent) = MlKem1024::encapsulate(&ek, &mut rng)?;
    /// assert_eq!(MlKem1024::decapsulate(&dk, &ct)?.expose(), sent.expose());
    /// // An encapsulation key with a coefficient >= q fails the FIPS 203 §7.2 check.
    /// let mut bad = ek;
    /// bad[0] = 0xff;
    /// bad[1] |= 0x0f;
    /// assert_eq!(MlKem1024::encapsulate(&bad, &mut rng).err(), Some(securemesh_core::Error::InvalidKey));
    /// # Ok::<(), securemesh_core::Error>(())
    /// ```
    MlKem1024, ml_kem::MlKem1024, "ML-KEM-1024", ek = 1568, ct = 1568, dk_expanded = 3168,
    expanded = MlKem1024ExpandedKey
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::testing::TestRng;
    use crate::{ByteArray, ct_eq};
    use proptest::prelude::*;

    fn round_trip<K: Kem>(seed: u64) {
        let mut rng = TestRng::new(seed);
        let (dk, ek) = K::generate(&mut rng);
        assert_eq!(K::encapsulation_key(&dk).as_ref(), ek.as_ref());
        let (ct, sent) = K::encapsulate(&ek, &mut rng).unwrap();
        let received = K::decapsulate(&dk, &ct).unwrap();
        assert!(ct_eq(received.expose().as_ref(), sent.expose().as_ref()));
        // The slice entries agree with the array ones.
        let again = K::decapsulate_slice(&dk, ct.as_ref()).unwrap();
        assert!(ct_eq(again.expose().as_ref(), sent.expose().as_ref()));
        let (ct2, sent2) = K::encapsulate_slice(ek.as_ref(), &mut rng).unwrap();
        assert_ne!(ct2.as_ref(), ct.as_ref(), "fresh randomness per encapsulation");
        assert!(ct_eq(K::decapsulate(&dk, &ct2).unwrap().expose().as_ref(), sent2.expose().as_ref()));
        // Another key pair does not get the secret.
        let (other, _) = K::generate(&mut rng);
        assert!(!ct_eq(K::decapsulate(&other, &ct).unwrap().expose().as_ref(), sent.expose().as_ref()));
    }

    #[test]
    fn round_trips() {
        for seed in 0..4 {
            round_trip::<MlKem768>(seed);
            round_trip::<MlKem1024>(seed);
        }
    }

    fn wrong_lengths_refused<K: Kem>() {
        let mut rng = TestRng::new(9);
        let (dk, ek) = K::generate(&mut rng);
        let (ct, _) = K::encapsulate(&ek, &mut rng).unwrap();
        let ct = ct.as_ref();
        let long = [ct, &[0u8][..]].concat();
        assert_eq!(K::decapsulate_slice(&dk, &ct[..ct.len() - 1]).err(), Some(Error::Truncated));
        assert_eq!(K::decapsulate_slice(&dk, &[]).err(), Some(Error::Truncated));
        assert_eq!(K::decapsulate_slice(&dk, &long).err(), Some(Error::TrailingBytes));
        let ek = ek.as_ref();
        let long = [ek, &[0u8][..]].concat();
        assert_eq!(K::encapsulate_slice(&ek[..ek.len() - 1], &mut rng).err(), Some(Error::InvalidKey));
        assert_eq!(K::encapsulate_slice(&long, &mut rng).err(), Some(Error::InvalidKey));
    }

    #[test]
    fn wrong_lengths_are_typed_errors() {
        wrong_lengths_refused::<MlKem768>();
        wrong_lengths_refused::<MlKem1024>();
        let (dk, ek) = MlKem768::dangerous_keygen_from_seed([3; 64]);
        let (ct, _) = MlKem768::dangerous_encapsulate_deterministic(&ek, &[4; 32]).unwrap();
        let x = MlKem768::dangerous_expanded_decapsulation_key(&dk);
        assert_eq!(x.len(), MlKem768::DK_EXPANDED_LEN);
        assert_eq!(
            MlKem768::dangerous_decapsulate_expanded(&x.expose()[1..], &ct).err(),
            Some(Error::InvalidLength)
        );
        // A changed H(ek) inside the expanded key fails the FIPS 203 §7.3 hash check.
        let mut bad = *x.expose();
        bad[MlKem768::DK_EXPANDED_LEN - 40] ^= 1;
        assert_eq!(MlKem768::dangerous_decapsulate_expanded(&bad, &ct).err(), Some(Error::InvalidKey));
    }

    fn implicit_rejection<K: Kem>() {
        let mut rng = TestRng::new(11);
        let (dk, ek) = K::generate(&mut rng);
        let (ct, sent) = K::encapsulate(&ek, &mut rng).unwrap();
        for at in [0, 1, 500, <K::Ciphertext as ByteArray>::LEN - 1] {
            let mut bad = ct;
            bad.as_mut()[at] ^= 0x01;
            let rejected = K::decapsulate(&dk, &bad).unwrap();
            assert!(!ct_eq(rejected.expose().as_ref(), sent.expose().as_ref()), "byte {at}");
            // Implicit rejection is deterministic: K' = J(z || c).
            let again = K::decapsulate(&dk, &bad).unwrap();
            assert!(ct_eq(rejected.expose().as_ref(), again.expose().as_ref()));
        }
    }

    #[test]
    fn flipped_ciphertext_byte_is_implicitly_rejected() {
        implicit_rejection::<MlKem768>();
        implicit_rejection::<MlKem1024>();
    }

    #[test]
    fn encapsulation_key_modulus_check() {
        let (_, ek) = MlKem768::dangerous_keygen_from_seed([5; 64]);
        let mut bad = ek;
        // The first 12-bit coefficient set to 4095 >= q = 3329.
        bad[0] = 0xff;
        bad[1] |= 0x0f;
        assert_eq!(MlKem768::encapsulate(&bad, &mut TestRng::new(1)).err(), Some(Error::InvalidKey));
        assert_eq!(
            MlKem768::dangerous_encapsulate_deterministic(&bad, &[0; 32]).err(),
            Some(Error::InvalidKey)
        );
        // rho (the last 32 bytes) is not range-checked: any value is a key.
        let mut rho = ek;
        rho[MlKem768::EK_LEN - 1] ^= 0xff;
        assert!(MlKem768::encapsulate(&rho, &mut TestRng::new(1)).is_ok());
    }

    #[test]
    fn seed_layout_is_d_then_z() {
        // dk expanded = dk_PKE || ek || H(ek) || z: z is the second half of the seed.
        let mut seed = [0u8; 64];
        seed[..32].fill(0xd0);
        seed[32..].fill(0x2a);
        let (dk, ek) = MlKem1024::dangerous_keygen_from_seed(seed);
        let x = MlKem1024::dangerous_expanded_decapsulation_key(&dk);
        let x = x.expose();
        assert_eq!(&x[x.len() - 32..], &[0x2a; 32]);
        assert_eq!(&x[1536..1536 + MlKem1024::EK_LEN], &ek[..]);
        // d alone determines ek: a different z, the same ek.
        seed[63] ^= 1;
        assert_eq!(MlKem1024::dangerous_keygen_from_seed(seed).1, ek);
    }

    macro_rules! expanded_key_checks {
        ($name:ident, $kem:ty, $xname:ty, $seed:expr) => {
            #[test]
            fn $name() {
                let mut rng = TestRng::new($seed);
                let (seed, ek) = <$kem>::generate(&mut rng);
                let key = <$kem>::expand(&seed);
                assert_eq!(key.encapsulation_key(), ek);
                // The same secrets as from the seed: valid and implicitly rejected ciphertexts.
                for _ in 0..3 {
                    let (ct, sent) = <$kem>::encapsulate(&ek, &mut rng).unwrap();
                    assert_eq!(<$kem>::decapsulate_expanded(&key, &ct).expose(), sent.expose());
                    let mut bad = ct;
                    bad[7] ^= 0x10;
                    let rejected = <$kem>::decapsulate_expanded(&key, &bad);
                    assert_ne!(rejected.expose(), sent.expose());
                    assert_eq!(rejected.expose(), <$kem>::decapsulate(&seed, &bad).unwrap().expose());
                    assert_eq!(
                        <$kem>::decapsulate_expanded_slice(&key, &ct).unwrap().expose(),
                        sent.expose()
                    );
                    assert_eq!(
                        <$kem>::decapsulate_expanded_slice(&key, &ct[1..]).err(),
                        Some(Error::Truncated)
                    );
                    let long = [&ct[..], &[0u8][..]].concat();
                    assert_eq!(
                        <$kem>::decapsulate_expanded_slice(&key, &long).err(),
                        Some(Error::TrailingBytes)
                    );
                }
                // The FIPS 203 encoding: what the seed's KeyGen_internal gives, and it loads back.
                let dk = key.to_bytes();
                assert_eq!(dk.len(), <$kem>::DK_EXPANDED_LEN);
                assert_eq!(dk.expose(), <$kem>::dangerous_expanded_decapsulation_key(&seed).expose());
                let loaded = <$xname>::from_bytes(dk.expose()).unwrap();
                assert_eq!(loaded.encapsulation_key(), ek);
                assert_eq!(loaded.to_bytes().expose(), dk.expose());
                let (ct, sent) = <$kem>::encapsulate(&ek, &mut rng).unwrap();
                assert_eq!(<$kem>::decapsulate_expanded(&loaded, &ct).expose(), sent.expose());
                // §7.3 input checks: lengths, then the hash check on H(ek) (each of its bytes).
                let dk = *dk.expose();
                for len in [0, 1, 64, <$kem>::DK_EXPANDED_LEN - 1, <$kem>::DK_EXPANDED_LEN + 1] {
                    let mut v = dk.to_vec();
                    v.resize(len, 0);
                    assert_eq!(<$xname>::from_bytes(&v).err(), Some(Error::InvalidLength), "length {len}");
                }
                let h_at = <$kem>::DK_EXPANDED_LEN - 64;
                for i in h_at..h_at + 32 {
                    let mut bad = dk;
                    bad[i] ^= 0x01;
                    assert_eq!(<$xname>::from_bytes(&bad).err(), Some(Error::InvalidKey), "H(ek) byte {i}");
                }
                // A changed byte of the embedded ek no longer matches H(ek).
                let ek_at = h_at - <$kem>::EK_LEN;
                let mut bad = dk;
                bad[ek_at + 5] ^= 0x01;
                assert_eq!(<$xname>::from_bytes(&bad).err(), Some(Error::InvalidKey));
                // z is not checked (it only feeds implicit rejection): a changed z
                // loads and changes only rejected secrets.
                let mut other_z = dk;
                other_z[<$kem>::DK_EXPANDED_LEN - 1] ^= 0x01;
                let other = <$xname>::from_bytes(&other_z).unwrap();
                assert_eq!(<$kem>::decapsulate_expanded(&other, &ct).expose(), sent.expose());
                let mut bad_ct = ct;
                bad_ct[0] ^= 1;
                assert_ne!(
                    <$kem>::decapsulate_expanded(&other, &bad_ct).expose(),
                    <$kem>::decapsulate_expanded(&loaded, &bad_ct).expose()
                );
            }
        };
    }

    expanded_key_checks!(expanded_key_768, MlKem768, MlKem768ExpandedKey, 0x5a5a_0768);
    expanded_key_checks!(expanded_key_1024, MlKem1024, MlKem1024ExpandedKey, 0xa5a5_1024);

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn encapsulate_decapsulate_round_trip(seed in prop::array::uniform32(any::<u8>()),
                                              z in prop::array::uniform32(any::<u8>()),
                                              m in prop::array::uniform32(any::<u8>()),
                                              flip in 0usize..1088) {
            let mut s = [0u8; 64];
            s[..32].copy_from_slice(&seed);
            s[32..].copy_from_slice(&z);
            let (dk, ek) = MlKem768::dangerous_keygen_from_seed(s);
            let (ct, ss) = MlKem768::dangerous_encapsulate_deterministic(&ek, &m).unwrap();
            prop_assert_eq!(*MlKem768::decapsulate(&dk, &ct).unwrap().expose(), *ss.expose());
            let mut bad = ct;
            bad[flip] ^= 0x80;
            prop_assert_ne!(*MlKem768::decapsulate(&dk, &bad).unwrap().expose(), *ss.expose());

            let (dk, ek) = MlKem1024::dangerous_keygen_from_seed(s);
            let (ct, ss) = MlKem1024::dangerous_encapsulate_deterministic(&ek, &m).unwrap();
            prop_assert_eq!(*MlKem1024::decapsulate(&dk, &ct).unwrap().expose(), *ss.expose());
        }

        /// Untrusted FIPS 203 `dk` bytes: any length and content gives a
        /// key or a typed error, never a panic; one changed byte of a valid
        /// `dk` is refused exactly when it falls in `ek || H(ek)` (the hash
        /// check), and loads otherwise (`dk_PKE` and `z` are not checkable).
        #[test]
        fn expanded_key_from_untrusted_bytes(bytes in prop::collection::vec(any::<u8>(), 0..3300),
                                             seed in prop::array::uniform32(any::<u8>()),
                                             at in 0usize..MlKem768::DK_EXPANDED_LEN,
                                             xor in 1u8..=255) {
            match MlKem768ExpandedKey::from_bytes(&bytes) {
                Ok(_) => prop_assert_eq!(bytes.len(), MlKem768::DK_EXPANDED_LEN),
                Err(e) => prop_assert!(matches!(e, Error::InvalidLength | Error::InvalidKey)),
            }
            let _ = MlKem1024ExpandedKey::from_bytes(&bytes);
            let mut s = [0u8; 64];
            s[..32].copy_from_slice(&seed);
            let key = MlKem768::expand(&Secret::new(s));
            let mut dk = *key.to_bytes().expose();
            dk[at] ^= xor;
            let ek_start = MlKem768::DK_EXPANDED_LEN - 64 - MlKem768::EK_LEN;
            let checked = (ek_start..MlKem768::DK_EXPANDED_LEN - 32).contains(&at);
            let got = MlKem768ExpandedKey::from_bytes(&dk);
            if checked {
                prop_assert_eq!(got.err(), Some(Error::InvalidKey));
            } else {
                prop_assert!(got.is_ok());
            }
        }
    }
}
