//! KEM functions of the `hfs` extension ("KEM-based Hybrid Forward Secrecy
//! for Noise", revision 1, §3): `GENERATE_KEM_KEYPAIR`,
//! `GENERATE_KEM_CIPHERTEXT` and `KEM`, on the `Kem` suites of
//! `securemesh-core`. Feature `hfs` (ML-KEM-768, ML-KEM-1024) and
//! `hfs-x-wing` (X-Wing).
//!
//! The local KEM key pair lives only as its decapsulation seed (64 bytes for
//! ML-KEM, 32 for X-Wing) in a zeroizing [`Secret`]; its public key is
//! written straight into the outgoing message and not kept.

use crate::error::Error;
use securemesh_core::crypto::{Kem, MlKem768, MlKem1024};
use securemesh_core::{ByteArray, CryptoRng, Secret};

/// The KEM of an `hfs` protocol, named after the DH function with a `+`
/// (`Noise_XXhfs_25519+MLKEM768_ChaChaPoly_SHA256`).
///
/// ```
/// use securemesh_noise::{KemChoice, Protocol};
/// let p = Protocol::parse("Noise_XXhfs_25519+MLKEM768_ChaChaPoly_SHA256")?;
/// assert_eq!(p.kem(), Some(KemChoice::MlKem768));
/// assert_eq!(KemChoice::MlKem768.public_key_len(), 1184);
/// assert_eq!(KemChoice::MlKem768.ciphertext_len(), 1088);
/// # Ok::<(), securemesh_noise::NameError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KemChoice {
    /// ML-KEM-768 (FIPS 203), name `MLKEM768`: 1184-byte public keys,
    /// 1088-byte ciphertexts.
    MlKem768,
    /// ML-KEM-1024 (FIPS 203), name `MLKEM1024`: 1568-byte public keys and
    /// ciphertexts.
    MlKem1024,
    /// X-Wing (draft-connolly-cfrg-xwing-kem-10), name `XWING`: 1216-byte
    /// public keys, 1120-byte ciphertexts. Feature `hfs-x-wing`.
    #[cfg(feature = "hfs-x-wing")]
    XWing,
}

/// Longest KEM public key of the compiled-in KEMs (ML-KEM-1024).
pub const MAX_KEM_PUBLIC_KEY_LEN: usize = MlKem1024::EK_LEN;
/// Longest KEM ciphertext of the compiled-in KEMs (ML-KEM-1024).
pub const MAX_KEM_CIPHERTEXT_LEN: usize = MlKem1024::CT_LEN;
/// Longest stored decapsulation seed (ML-KEM's `d || z`).
const SEED_LEN: usize = 64;

/// A local KEM decapsulation key: the seed of the scheme in the first bytes.
pub(crate) type KemSecret = Secret<[u8; SEED_LEN]>;

/// A KEM public key received in an `e1` token.
#[derive(Clone, Copy)]
pub(crate) struct KemPublic([u8; MAX_KEM_PUBLIC_KEY_LEN]);

impl KemPublic {
    pub(crate) const fn empty() -> Self {
        KemPublic([0; MAX_KEM_PUBLIC_KEY_LEN])
    }

    /// The first `len` bytes, to be filled or used.
    pub(crate) fn bytes_mut(&mut self, len: usize) -> Result<&mut [u8], Error> {
        self.0.get_mut(..len).ok_or(Error::Decrypt)
    }

    pub(crate) fn bytes(&self, len: usize) -> Result<&[u8], Error> {
        self.0.get(..len).ok_or(Error::MissingKey)
    }
}

fn generate<K: Kem, R: CryptoRng + ?Sized>(rng: &mut R, public: &mut [u8]) -> Result<KemSecret, Error> {
    let (dk, ek) = K::generate(rng);
    public.get_mut(..K::EncapsulationKey::LEN).ok_or(Error::MessageTooLong)?.copy_from_slice(ek.as_ref());
    let mut seed = KemSecret::zeroed();
    let n = K::DecapsulationKey::LEN;
    seed.expose_mut().get_mut(..n).ok_or(Error::InvalidLength)?.copy_from_slice(dk.expose().as_ref());
    Ok(seed)
}

fn encapsulate<K: Kem, R: CryptoRng + ?Sized>(
    public: &[u8],
    rng: &mut R,
    ciphertext: &mut [u8],
) -> Result<Secret<[u8; 32]>, Error> {
    let (ct, ss) = K::encapsulate_slice(public, rng).map_err(|_| Error::InvalidKemKey)?;
    ciphertext.get_mut(..K::Ciphertext::LEN).ok_or(Error::MessageTooLong)?.copy_from_slice(ct.as_ref());
    shared(&ss)
}

fn decapsulate<K: Kem>(seed: &KemSecret, ciphertext: &[u8]) -> Result<Secret<[u8; 32]>, Error> {
    let mut dk = Secret::<K::DecapsulationKey>::zeroed();
    let n = K::DecapsulationKey::LEN;
    dk.expose_mut().as_mut().copy_from_slice(seed.expose().get(..n).ok_or(Error::InvalidLength)?);
    // The length was checked by the caller: only the AEAD or a wrong
    // length could fail here, and both are a malformed message.
    shared(&K::decapsulate_slice(&dk, ciphertext).map_err(|_| Error::Decrypt)?)
}

/// Every KEM here has a 32-byte output (`KEMOUTPUTLEN`).
fn shared<A: ByteArray>(ss: &Secret<A>) -> Result<Secret<[u8; 32]>, Error> {
    let mut out = Secret::new([0u8; 32]);
    out.expose_mut().copy_from_slice(ss.expose().as_ref().get(..32).ok_or(Error::InvalidLength)?);
    Ok(out)
}

impl KemChoice {
    /// The KEM's name in a protocol name (`MLKEM768`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            KemChoice::MlKem768 => "MLKEM768",
            KemChoice::MlKem1024 => "MLKEM1024",
            #[cfg(feature = "hfs-x-wing")]
            KemChoice::XWing => "XWING",
        }
    }

    /// `KEMPUBLICKEYLEN`: bytes of a public key (an `e1` token before
    /// encryption).
    pub const fn public_key_len(self) -> usize {
        match self {
            KemChoice::MlKem768 => MlKem768::EK_LEN,
            KemChoice::MlKem1024 => MlKem1024::EK_LEN,
            #[cfg(feature = "hfs-x-wing")]
            KemChoice::XWing => <<securemesh_core::crypto::XWing as Kem>::EncapsulationKey as ByteArray>::LEN,
        }
    }

    /// `KEMCIPHERTEXTLEN`: bytes of a ciphertext (an `ekem1` token before
    /// encryption).
    pub const fn ciphertext_len(self) -> usize {
        match self {
            KemChoice::MlKem768 => MlKem768::CT_LEN,
            KemChoice::MlKem1024 => MlKem1024::CT_LEN,
            #[cfg(feature = "hfs-x-wing")]
            KemChoice::XWing => <<securemesh_core::crypto::XWing as Kem>::Ciphertext as ByteArray>::LEN,
        }
    }

    pub(crate) const fn from_name(name: &[u8]) -> Option<KemChoice> {
        match name {
            b"MLKEM768" => Some(KemChoice::MlKem768),
            b"MLKEM1024" => Some(KemChoice::MlKem1024),
            #[cfg(feature = "hfs-x-wing")]
            b"XWING" => Some(KemChoice::XWing),
            _ => None,
        }
    }

    /// `GENERATE_KEM_KEYPAIR()`: the public key into `public` (at least
    /// [`Self::public_key_len`] bytes), the decapsulation seed returned.
    /// Draws the seed from `rng` (ML-KEM: 64 bytes `d || z`; X-Wing: 32).
    pub(crate) fn generate<R: CryptoRng + ?Sized>(
        self,
        rng: &mut R,
        public: &mut [u8],
    ) -> Result<KemSecret, Error> {
        match self {
            KemChoice::MlKem768 => generate::<MlKem768, R>(rng, public),
            KemChoice::MlKem1024 => generate::<MlKem1024, R>(rng, public),
            #[cfg(feature = "hfs-x-wing")]
            KemChoice::XWing => generate::<securemesh_core::crypto::XWing, R>(rng, public),
        }
    }

    /// `GENERATE_KEM_CIPHERTEXT(public_key)`: the ciphertext into
    /// `ciphertext`, `kem_output` returned. [`Error::InvalidKemKey`] if the
    /// peer's public key fails the scheme's key check (FIPS 203 §7.2).
    pub(crate) fn encapsulate<R: CryptoRng + ?Sized>(
        self,
        public: &[u8],
        rng: &mut R,
        ciphertext: &mut [u8],
    ) -> Result<Secret<[u8; 32]>, Error> {
        match self {
            KemChoice::MlKem768 => encapsulate::<MlKem768, R>(public, rng, ciphertext),
            KemChoice::MlKem1024 => encapsulate::<MlKem1024, R>(public, rng, ciphertext),
            #[cfg(feature = "hfs-x-wing")]
            KemChoice::XWing => encapsulate::<securemesh_core::crypto::XWing, R>(public, rng, ciphertext),
        }
    }

    /// `KEM(key_pair, ciphertext)`: `kem_output` (implicit rejection: a
    /// ciphertext not made for this key gives an unrelated secret).
    pub(crate) fn decapsulate(self, seed: &KemSecret, ciphertext: &[u8]) -> Result<Secret<[u8; 32]>, Error> {
        match self {
            KemChoice::MlKem768 => decapsulate::<MlKem768>(seed, ciphertext),
            KemChoice::MlKem1024 => decapsulate::<MlKem1024>(seed, ciphertext),
            #[cfg(feature = "hfs-x-wing")]
            KemChoice::XWing => decapsulate::<securemesh_core::crypto::XWing>(seed, ciphertext),
        }
    }
}
