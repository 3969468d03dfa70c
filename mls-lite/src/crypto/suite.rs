//! The ciphersuite as a value: [`Suite`] names one of the suites this
//! build has (0x0003 always, 0x004D with feature `x-wing`) and dispatches
//! the operations in which they differ, the HPKE ones: `DeriveKeyPair`,
//! `EncryptWithLabel` / `DecryptWithLabel` and the external-init export.
//! Everything else (hash, KDF, AEAD, signatures, hence the labelled
//! derivations and the key schedule) is the same in both suites and stays
//! in [`crate::crypto`].
//!
//! Keys and `kem_output`s of any suite fit the bounded vectors
//! [`HpkePublicKey`] and [`KemOutput`], whose capacities
//! [`MAX_HPKE_PUBLIC_LEN`] and [`MAX_KEM_OUTPUT_LEN`] are those of the
//! largest suite the build has: 32 bytes without `x-wing`, so a suite-3
//! build does not grow.
//!
//! ```
//! use securemesh_core::testing::TestRng;
//! use securemesh_mls_lite::crypto::suite::Suite;
//!
//! let suite = Suite::from_id(0x0003)?;
//! let (private, public) = suite.derive_key_pair(b"node secret")?;
//! assert_eq!(public.len(), suite.hpke_public_len());
//! let mut buf = *b"path secret";
//! let mut scratch = [0u8; 64];
//! let (kem_output, tag) =
//!     suite.encrypt_with_label(&public, b"UpdatePathNode", b"ctx", &mut buf, &mut scratch, &mut TestRng::new(7))?;
//! assert_eq!(kem_output.len(), suite.kem_output_len());
//! suite.decrypt_with_label(&private, b"UpdatePathNode", b"ctx", &kem_output, &mut buf, &tag, &mut scratch)?;
//! assert_eq!(&buf, b"path secret");
//! # Ok::<(), securemesh_mls_lite::Error>(())
//! ```

use super::Secret32;
use crate::error::Error;
use securemesh_core::CryptoRng;
use securemesh_core::crypto::{Dh, X25519};

/// The longest HPKE public key of the suites of this build: 32 bytes
/// (X25519), 1216 with feature `x-wing` (X-Wing's `Npk`).
#[cfg(not(feature = "x-wing"))]
pub const MAX_HPKE_PUBLIC_LEN: usize = 32;
/// The longest HPKE public key of the suites of this build: 32 bytes
/// (X25519), 1216 with feature `x-wing` (X-Wing's `Npk`).
#[cfg(feature = "x-wing")]
pub const MAX_HPKE_PUBLIC_LEN: usize = super::xwing::NPK;

/// The longest HPKE `kem_output` of the suites of this build: 32 bytes
/// (X25519), 1120 with feature `x-wing` (X-Wing's `Nenc`).
#[cfg(not(feature = "x-wing"))]
pub const MAX_KEM_OUTPUT_LEN: usize = 32;
/// The longest HPKE `kem_output` of the suites of this build: 32 bytes
/// (X25519), 1120 with feature `x-wing` (X-Wing's `Nenc`).
#[cfg(feature = "x-wing")]
pub const MAX_KEM_OUTPUT_LEN: usize = super::xwing::NENC;

/// An HPKE public key of any suite of this build, as the tree stores it:
/// exactly 32 bytes without feature `x-wing` (so a suite-3 build does not
/// grow), up to [`MAX_HPKE_PUBLIC_LEN`] bytes and their length with it.
/// Derefs to the key's bytes.
///
/// ```
/// use securemesh_mls_lite::crypto::suite::HpkePublicKey;
/// let key = HpkePublicKey::from_slice(&[7; 32])?;
/// assert_eq!(&key[..], &[7; 32]);
/// assert!(HpkePublicKey::from_slice(&[7; 31]).is_err());
/// # Ok::<(), securemesh_mls_lite::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HpkePublicKey {
    bytes: [u8; MAX_HPKE_PUBLIC_LEN],
    #[cfg(feature = "x-wing")]
    len: u16,
}

impl HpkePublicKey {
    /// The key `bytes`: 32 bytes (X25519) or, with feature `x-wing`,
    /// X-Wing's `Npk`; any other length is [`Error::Unsupported`].
    pub fn from_slice(bytes: &[u8]) -> Result<Self, Error> {
        #[cfg(not(feature = "x-wing"))]
        {
            Ok(HpkePublicKey { bytes: bytes.try_into().map_err(|_| Error::Unsupported)? })
        }
        #[cfg(feature = "x-wing")]
        {
            if bytes.len() != 32 && bytes.len() != super::xwing::NPK {
                return Err(Error::Unsupported);
            }
            let mut key = HpkePublicKey { bytes: [0; MAX_HPKE_PUBLIC_LEN], len: 0 };
            key.bytes.get_mut(..bytes.len()).ok_or(Error::Unsupported)?.copy_from_slice(bytes);
            key.len = u16::try_from(bytes.len()).map_err(|_| Error::Unsupported)?;
            Ok(key)
        }
    }

    /// The key's bytes.
    pub fn as_slice(&self) -> &[u8] {
        #[cfg(not(feature = "x-wing"))]
        {
            &self.bytes
        }
        #[cfg(feature = "x-wing")]
        {
            self.bytes.get(..usize::from(self.len)).unwrap_or(&[])
        }
    }
}

impl core::ops::Deref for HpkePublicKey {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl AsRef<[u8]> for HpkePublicKey {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

/// An HPKE `kem_output` (encapsulated key) of any suite of this build.
pub type KemOutput = heapless::Vec<u8, MAX_KEM_OUTPUT_LEN>;

/// A ciphersuite this build implements.
///
/// ```
/// use securemesh_mls_lite::crypto::suite::Suite;
/// assert_eq!(Suite::from_id(3)?, Suite::Mls128X25519);
/// assert_eq!(Suite::Mls128X25519.id(), 0x0003);
/// assert!(Suite::from_id(0x0001).is_err());
/// # Ok::<(), securemesh_mls_lite::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Suite {
    /// 0x0003, MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519.
    #[default]
    Mls128X25519,
    /// 0x004D, MLS_256_XWING_CHACHA20POLY1305_SHA256_Ed25519 (feature
    /// `x-wing`, [`crate::crypto::xwing`]).
    #[cfg(feature = "x-wing")]
    Mls256XWing,
}

impl Suite {
    /// The suite of a `CipherSuite` id; one this build does not have is
    /// [`Error::Unsupported`].
    pub const fn from_id(id: u16) -> Result<Self, Error> {
        match id {
            super::CIPHERSUITE => Ok(Suite::Mls128X25519),
            #[cfg(feature = "x-wing")]
            super::xwing::CIPHERSUITE => Ok(Suite::Mls256XWing),
            _ => Err(Error::Unsupported),
        }
    }

    /// The `CipherSuite` id.
    pub const fn id(self) -> u16 {
        match self {
            Suite::Mls128X25519 => super::CIPHERSUITE,
            #[cfg(feature = "x-wing")]
            Suite::Mls256XWing => super::xwing::CIPHERSUITE,
        }
    }

    /// The suite whose HPKE public keys are `len` bytes long (32: 0x0003;
    /// 1216: 0x004D with feature `x-wing`); [`Error::Unsupported`] else.
    pub const fn of_hpke_public_len(len: usize) -> Result<Self, Error> {
        match len {
            32 => Ok(Suite::Mls128X25519),
            #[cfg(feature = "x-wing")]
            super::xwing::NPK => Ok(Suite::Mls256XWing),
            _ => Err(Error::Unsupported),
        }
    }

    /// `Npk`: the length of an HPKE public key.
    pub const fn hpke_public_len(self) -> usize {
        match self {
            Suite::Mls128X25519 => 32,
            #[cfg(feature = "x-wing")]
            Suite::Mls256XWing => super::xwing::NPK,
        }
    }

    /// `Nenc`: the length of a `kem_output`.
    pub const fn kem_output_len(self) -> usize {
        match self {
            Suite::Mls128X25519 => 32,
            #[cfg(feature = "x-wing")]
            Suite::Mls256XWing => super::xwing::NENC,
        }
    }

    /// `DeriveKeyPair(ikm)` of the suite's HPKE KEM: the private key and
    /// its public key.
    pub fn derive_key_pair(self, ikm: &[u8]) -> Result<(Secret32, HpkePublicKey), Error> {
        let (private, public) = match self {
            Suite::Mls128X25519 => {
                let (s, p) = super::derive_key_pair(ikm);
                (s, HpkePublicKey::from_slice(&p))
            }
            #[cfg(feature = "x-wing")]
            Suite::Mls256XWing => {
                let (s, p) = super::xwing::derive_key_pair(ikm);
                (s, HpkePublicKey::from_slice(&p))
            }
        };
        Ok((private, public?))
    }

    /// A new HPKE private key (X25519: a random scalar; X-Wing: a random
    /// 32-byte seed).
    pub fn generate<R: CryptoRng + ?Sized>(self, rng: &mut R) -> Secret32 {
        match self {
            Suite::Mls128X25519 => <X25519 as Dh>::generate(rng),
            #[cfg(feature = "x-wing")]
            Suite::Mls256XWing => Secret32::random(rng),
        }
    }

    /// The HPKE public key of `private`.
    pub fn public_key(self, private: &Secret32) -> Result<HpkePublicKey, Error> {
        match self {
            Suite::Mls128X25519 => HpkePublicKey::from_slice(&<X25519 as Dh>::public_key(private)),
            #[cfg(feature = "x-wing")]
            Suite::Mls256XWing => HpkePublicKey::from_slice(
                &<securemesh_core::crypto::XWing as securemesh_core::crypto::Kem>::encapsulation_key(private),
            ),
        }
    }

    /// `EncryptWithLabel(public, label, context, plaintext)` (see
    /// [`crate::crypto::encrypt_with_label`]): encrypts `buf` in place and
    /// returns `(kem_output, tag)`. A key of another length than the
    /// suite's is [`Error::Malformed`].
    pub fn encrypt_with_label<R: CryptoRng + ?Sized>(
        self,
        public: &[u8],
        label: &[u8],
        context: &[u8],
        buf: &mut [u8],
        scratch: &mut [u8],
        rng: &mut R,
    ) -> Result<(KemOutput, [u8; 16]), Error> {
        let (kem_output, tag) = match self {
            Suite::Mls128X25519 => {
                let public: &[u8; 32] = public.try_into().map_err(|_| Error::Malformed)?;
                let (k, t) = super::encrypt_with_label(public, label, context, buf, scratch, rng)?;
                (KemOutput::from_slice(&k), t)
            }
            #[cfg(feature = "x-wing")]
            Suite::Mls256XWing => {
                let (k, t) = super::xwing::encrypt_with_label(public, label, context, buf, scratch, rng)?;
                (KemOutput::from_slice(&k), t)
            }
        };
        Ok((kem_output.map_err(|_| Error::Capacity)?, tag))
    }

    /// `DecryptWithLabel(private, label, context, kem_output, ciphertext)`
    /// (see [`crate::crypto::decrypt_with_label`]): decrypts `buf` in
    /// place; one opaque [`Error::Decrypt`] for any failure.
    #[allow(clippy::too_many_arguments)]
    pub fn decrypt_with_label(
        self,
        private: &Secret32,
        label: &[u8],
        context: &[u8],
        kem_output: &[u8],
        buf: &mut [u8],
        tag: &[u8; 16],
        scratch: &mut [u8],
    ) -> Result<(), Error> {
        match self {
            Suite::Mls128X25519 => {
                super::decrypt_with_label(private, label, context, kem_output, buf, tag, scratch)
            }
            #[cfg(feature = "x-wing")]
            Suite::Mls256XWing => {
                super::xwing::decrypt_with_label(private, label, context, kem_output, buf, tag, scratch)
            }
        }
    }

    /// The epoch's external public key (§8: the public half of
    /// `DeriveKeyPair(external_secret)`).
    pub fn external_public(self, external_secret: &Secret32) -> Result<HpkePublicKey, Error> {
        Ok(self.derive_key_pair(external_secret.expose())?.1)
    }

    /// `init_secret` of an external commit, the joiner's side (see
    /// [`crate::crypto::external_init_send`]): the `kem_output` and the
    /// `init_secret`.
    pub fn external_init_send<R: CryptoRng + ?Sized>(
        self,
        external_pub: &[u8],
        rng: &mut R,
    ) -> Result<(KemOutput, Secret32), Error> {
        let (kem_output, init_secret) = match self {
            Suite::Mls128X25519 => {
                let public: &[u8; 32] = external_pub.try_into().map_err(|_| Error::Malformed)?;
                let (k, s) = super::external_init_send(public, rng)?;
                (KemOutput::from_slice(&k), s)
            }
            #[cfg(feature = "x-wing")]
            Suite::Mls256XWing => {
                let (k, s) = super::xwing::external_init_send(external_pub, rng)?;
                (KemOutput::from_slice(&k), s)
            }
        };
        Ok((kem_output.map_err(|_| Error::Capacity)?, init_secret))
    }

    /// `init_secret` of an external commit, a member's side, with the
    /// epoch's `external_secret`.
    pub fn external_init_receive(
        self,
        external_secret: &Secret32,
        kem_output: &[u8],
    ) -> Result<Secret32, Error> {
        match self {
            Suite::Mls128X25519 => super::external_init_receive(external_secret, kem_output),
            #[cfg(feature = "x-wing")]
            Suite::Mls256XWing => super::xwing::external_init_receive(external_secret, kem_output),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use securemesh_core::testing::TestRng;

    fn suites() -> impl Iterator<Item = Suite> {
        [
            Suite::Mls128X25519,
            #[cfg(feature = "x-wing")]
            Suite::Mls256XWing,
        ]
        .into_iter()
    }

    #[test]
    fn each_suite_round_trips_and_agrees_with_its_module() {
        for suite in suites() {
            assert_eq!(Suite::from_id(suite.id()), Ok(suite));
            let (sk, pk) = suite.derive_key_pair(b"ikm").unwrap();
            assert_eq!(pk.len(), suite.hpke_public_len());
            assert_eq!(suite.public_key(&sk).unwrap(), pk);
            let fresh = suite.generate(&mut TestRng::new(0x1234));
            assert_ne!(suite.public_key(&fresh).unwrap(), pk);
            let mut scratch = [0u8; 64];
            let mut buf = [0x42u8; 24];
            let (enc, tag) = suite
                .encrypt_with_label(
                    &pk,
                    b"Welcome",
                    b"egi",
                    &mut buf,
                    &mut scratch,
                    &mut TestRng::new(0x3c3c),
                )
                .unwrap();
            assert_eq!(enc.len(), suite.kem_output_len());
            assert_ne!(buf, [0x42u8; 24]);
            let sealed = buf;
            // Another suite's key or kem_output length is refused.
            assert!(
                suite
                    .decrypt_with_label(
                        &sk,
                        b"Welcome",
                        b"egi",
                        &enc[..enc.len() - 1],
                        &mut buf,
                        &tag,
                        &mut scratch
                    )
                    .is_err()
            );
            assert_eq!(buf, sealed);
            suite.decrypt_with_label(&sk, b"Welcome", b"egi", &enc, &mut buf, &tag, &mut scratch).unwrap();
            assert_eq!(buf, [0x42u8; 24]);
            assert_eq!(
                suite.encrypt_with_label(
                    &pk[..31],
                    b"Welcome",
                    b"",
                    &mut buf,
                    &mut scratch,
                    &mut TestRng::new(1)
                ),
                Err(Error::Malformed)
            );

            let external = Secret32::new([0x61; 32]);
            let public = suite.external_public(&external).unwrap();
            let (kem_output, sent) = suite.external_init_send(&public, &mut TestRng::new(0x7a7a)).unwrap();
            let received = suite.external_init_receive(&external, &kem_output).unwrap();
            assert_eq!(sent.expose(), received.expose());
        }
        // Suite 3 is the module's functions.
        let (sk, pk) = crate::crypto::derive_key_pair(b"ikm");
        let (s, p) = Suite::Mls128X25519.derive_key_pair(b"ikm").unwrap();
        assert_eq!((sk.expose(), &pk[..]), (s.expose(), &p[..]));
    }

    #[cfg(feature = "x-wing")]
    #[test]
    fn x_wing_is_the_xwing_module() {
        let suite = Suite::from_id(0x004D).unwrap();
        assert_eq!(suite, Suite::Mls256XWing);
        let (sk, pk) = crate::crypto::xwing::derive_key_pair(b"ikm");
        let (s, p) = suite.derive_key_pair(b"ikm").unwrap();
        assert_eq!((sk.expose(), &pk[..]), (s.expose(), &p[..]));
        assert_eq!((MAX_HPKE_PUBLIC_LEN, MAX_KEM_OUTPUT_LEN), (1216, 1120));
    }

    #[cfg(not(feature = "x-wing"))]
    #[test]
    fn without_x_wing_0x004d_is_unsupported_and_bounds_stay_32() {
        assert_eq!(Suite::from_id(0x004D), Err(Error::Unsupported));
        assert_eq!((MAX_HPKE_PUBLIC_LEN, MAX_KEM_OUTPUT_LEN), (32, 32));
    }
}
