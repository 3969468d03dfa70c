//! PQXDH (Signal's PQXDH key agreement, revision 3): the KEM half.
//!
//! PQXDH is X3DH with one more input: the initiator encapsulates to a
//! signed KEM prekey of the responder (a one-time one if the bundle has
//! one, else the last-resort one) and the KEM shared secret `SS` follows
//! the DH outputs in the KDF input, `F || DH1 || DH2 || DH3 [|| DH4] || SS`
//! (see [`crate::kdf::x3dh`]). The KDF `info` names the protocol, curve,
//! hash and KEM as the specification asks
//! (`"securemesh-PQXDH_CURVE25519_SHA-256_ML-KEM-768"`), followed by the
//! initial message's prefix, which carries the KEM ciphertext, so the
//! ciphertext is bound into `SK` like every other prefix field.
//!
//! The KEM type is explicit wherever a KEM key or ciphertext is encoded:
//! the 2-byte algorithm code ([`KemAlgorithm::code`]) precedes the key in
//! the bundle (and is covered by the KEM prekey's signature, the
//! specification's `Sig(IK_B, Encode_KEM(PQPK_B))`) and precedes the
//! ciphertext in the initial message. The KEMs are the `securemesh-core`
//! [`Kem`](securemesh_core::crypto::Kem)s, ML-KEM-768 and ML-KEM-1024
//! (the specification's example, Kyber-1024, is ML-KEM-1024's
//! predecessor), behind the feature `pq`.

use crate::error::Error;
use crate::kdf::Key32;
use securemesh_core::{CryptoRng, Secret};

/// Algorithm code of ML-KEM-768 (FIPS 203) in bundles and initial messages.
pub const KEM_ML_KEM_768: u16 = 1;
/// Algorithm code reserved for X-Wing (not used by PQXDH here).
pub const KEM_X_WING: u16 = 2;
/// Algorithm code of ML-KEM-1024 (FIPS 203).
pub const KEM_ML_KEM_1024: u16 = 3;
/// Largest KEM ciphertext an initial message may carry (ML-KEM-1024).
pub const MAX_KEM_CIPHERTEXT_LEN: usize = 1568;

/// KDF `info` label of PQXDH with ML-KEM-768 (followed by the prefix).
pub const PQXDH_INFO_768: &[u8] = b"securemesh-PQXDH_CURVE25519_SHA-256_ML-KEM-768";
/// KDF `info` label of PQXDH with ML-KEM-1024.
pub const PQXDH_INFO_1024: &[u8] = b"securemesh-PQXDH_CURVE25519_SHA-256_ML-KEM-1024";
/// KDF `info` label of PQXDH with ML-KEM-768 and encrypted headers (96 bytes out).
pub const PQXDH_HE_INFO_768: &[u8] = b"securemesh-PQXDH-HE_CURVE25519_SHA-256_ML-KEM-768";
/// KDF `info` label of PQXDH with ML-KEM-1024 and encrypted headers.
pub const PQXDH_HE_INFO_1024: &[u8] = b"securemesh-PQXDH-HE_CURVE25519_SHA-256_ML-KEM-1024";

/// A KEM that PQXDH runs with.
///
/// ```
/// use securemesh_ratchet::KemAlgorithm;
/// let alg = KemAlgorithm::from_code(1).unwrap();
/// assert_eq!(alg, KemAlgorithm::MlKem768);
/// assert_eq!((alg.public_len(), alg.ciphertext_len()), (1184, 1088));
/// assert_eq!(KemAlgorithm::from_code(2), None); // X-Wing: reserved
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KemAlgorithm {
    /// ML-KEM-768 (code 1).
    MlKem768,
    /// ML-KEM-1024 (code 3).
    MlKem1024,
}

impl KemAlgorithm {
    /// The algorithm code on the wire.
    pub const fn code(self) -> u16 {
        match self {
            KemAlgorithm::MlKem768 => KEM_ML_KEM_768,
            KemAlgorithm::MlKem1024 => KEM_ML_KEM_1024,
        }
    }

    /// The algorithm of a wire code, if PQXDH runs with it.
    pub const fn from_code(code: u16) -> Option<Self> {
        match code {
            KEM_ML_KEM_768 => Some(KemAlgorithm::MlKem768),
            KEM_ML_KEM_1024 => Some(KemAlgorithm::MlKem1024),
            _ => None,
        }
    }

    /// Length of an encapsulation key.
    pub const fn public_len(self) -> usize {
        match self {
            KemAlgorithm::MlKem768 => 1184,
            KemAlgorithm::MlKem1024 => 1568,
        }
    }

    /// Length of a ciphertext.
    pub const fn ciphertext_len(self) -> usize {
        match self {
            KemAlgorithm::MlKem768 => 1088,
            KemAlgorithm::MlKem1024 => 1568,
        }
    }

    /// The KDF `info` label (clear or encrypted headers).
    pub(crate) const fn info(self, he: bool) -> &'static [u8] {
        match (self, he) {
            (KemAlgorithm::MlKem768, false) => PQXDH_INFO_768,
            (KemAlgorithm::MlKem1024, false) => PQXDH_INFO_1024,
            (KemAlgorithm::MlKem768, true) => PQXDH_HE_INFO_768,
            (KemAlgorithm::MlKem1024, true) => PQXDH_HE_INFO_1024,
        }
    }
}

/// A KEM decapsulation key as stored: the 64-byte ML-KEM seed `d || z`.
pub(crate) type KemSeed = Secret<[u8; 64]>;

#[cfg(feature = "pq")]
mod ops {
    use super::{Error, KemAlgorithm, KemSeed, Key32};
    use securemesh_core::crypto::{Kem, MlKem768, MlKem1024};
    use securemesh_core::{ByteArray, CryptoRng};

    /// The operations of one KEM, written once for every [`Kem`] with
    /// 64-byte seeds and 32-byte shared secrets.
    fn public_of<K: Kem<DecapsulationKey = [u8; 64]>>(
        seed: &KemSeed,
        out: &mut [u8],
    ) -> Result<usize, Error> {
        let ek = K::encapsulation_key(seed);
        let ek = ek.as_ref();
        out.get_mut(..ek.len()).ok_or(Error::BufferTooSmall { needed: ek.len() })?.copy_from_slice(ek);
        Ok(ek.len())
    }

    fn encapsulate<K: Kem<SharedSecret = [u8; 32]>, R: CryptoRng + ?Sized>(
        ek: &[u8],
        rng: &mut R,
        ct_out: &mut [u8],
    ) -> Result<(usize, Key32), Error> {
        let want = <K::Ciphertext as ByteArray>::LEN;
        let dst = ct_out.get_mut(..want).ok_or(Error::BufferTooSmall { needed: want })?;
        // A key of the wrong length or failing the FIPS 203 key check is
        // the bundle owner's fault: refused as malformed.
        let (ct, ss) = K::encapsulate_slice(ek, rng).map_err(|_| Error::Malformed)?;
        dst.copy_from_slice(ct.as_ref());
        Ok((want, Key32::new(*ss.expose())))
    }

    fn decapsulate<K: Kem<DecapsulationKey = [u8; 64], SharedSecret = [u8; 32]>>(
        seed: &KemSeed,
        ct: &[u8],
    ) -> Result<Key32, Error> {
        let ss = K::decapsulate_slice(seed, ct).map_err(|_| Error::Malformed)?;
        Ok(Key32::new(*ss.expose()))
    }

    pub(crate) fn generate<R: CryptoRng + ?Sized>(alg: KemAlgorithm, rng: &mut R) -> KemSeed {
        match alg {
            KemAlgorithm::MlKem768 => MlKem768::generate(rng).0,
            KemAlgorithm::MlKem1024 => MlKem1024::generate(rng).0,
        }
    }

    pub(crate) fn public(alg: KemAlgorithm, seed: &KemSeed, out: &mut [u8]) -> Result<usize, Error> {
        match alg {
            KemAlgorithm::MlKem768 => public_of::<MlKem768>(seed, out),
            KemAlgorithm::MlKem1024 => public_of::<MlKem1024>(seed, out),
        }
    }

    pub(crate) fn encaps<R: CryptoRng + ?Sized>(
        alg: KemAlgorithm,
        ek: &[u8],
        rng: &mut R,
        ct_out: &mut [u8],
    ) -> Result<(usize, Key32), Error> {
        match alg {
            KemAlgorithm::MlKem768 => encapsulate::<MlKem768, R>(ek, rng, ct_out),
            KemAlgorithm::MlKem1024 => encapsulate::<MlKem1024, R>(ek, rng, ct_out),
        }
    }

    pub(crate) fn decaps(alg: KemAlgorithm, seed: &KemSeed, ct: &[u8]) -> Result<Key32, Error> {
        match alg {
            KemAlgorithm::MlKem768 => decapsulate::<MlKem768>(seed, ct),
            KemAlgorithm::MlKem1024 => decapsulate::<MlKem1024>(seed, ct),
        }
    }
}

/// Without the feature `pq` no KEM runs: every operation is
/// [`Error::UnsupportedKem`] (a pool then never holds KEM prekeys).
#[cfg(not(feature = "pq"))]
mod ops {
    use super::{Error, KemAlgorithm, KemSeed, Key32};
    use securemesh_core::CryptoRng;

    pub(crate) fn public(_: KemAlgorithm, _: &KemSeed, _: &mut [u8]) -> Result<usize, Error> {
        Err(Error::UnsupportedKem)
    }

    pub(crate) fn encaps<R: CryptoRng + ?Sized>(
        _: KemAlgorithm,
        _: &[u8],
        _: &mut R,
        _: &mut [u8],
    ) -> Result<(usize, Key32), Error> {
        Err(Error::UnsupportedKem)
    }

    pub(crate) fn decaps(_: KemAlgorithm, _: &KemSeed, _: &[u8]) -> Result<Key32, Error> {
        Err(Error::UnsupportedKem)
    }
}

#[cfg(feature = "pq")]
pub(crate) use ops::generate;
pub(crate) use ops::{decaps, public};

/// Encapsulate to `ek` (the bundle's KEM prekey) into `ct_out`: the
/// ciphertext length and `SS`.
pub(crate) fn encapsulate<R: CryptoRng + ?Sized>(
    alg: KemAlgorithm,
    ek: &[u8],
    rng: &mut R,
    ct_out: &mut [u8],
) -> Result<(usize, Key32), Error> {
    if ek.len() != alg.public_len() {
        return Err(Error::Malformed);
    }
    ops::encaps(alg, ek, rng, ct_out)
}
