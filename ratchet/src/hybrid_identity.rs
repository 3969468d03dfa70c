//! The ML-DSA-65 half of a hybrid identity and the post-quantum section of
//! a version-3 bundle (spec §3.1, feature `ml-dsa`).
//!
//! An [`Identity`] stays what it is (Ed25519 + X25519); a [`PqIdentity`]
//! adds an ML-DSA-65 key. A hybrid bundle carries its public key and, for
//! the signed prekey and the KEM prekey, an Ed25519 + ML-DSA-65 hybrid
//! signature (`securemesh_core::crypto::HybridEd25519MlDsa65`) by the
//! identity's Ed25519 key and the ML-DSA key, both of which must verify.

use crate::bundle::{KemPrekey, SignedPrekeyPublic, kem_signed_bytes, spk_signed_bytes};
use crate::error::Error;
use crate::identity::{Identity, PublicIdentity, signed_bytes};
use securemesh_core::crypto::{
    HybridEd25519MlDsa65, HybridPublicKey, HybridSignature, HybridSigningKey, MlDsa65,
};
use securemesh_core::{CryptoRng, Secret};

/// The context of every bundle hybrid signature (spec §3.1).
pub const HYBRID_BUNDLE_CONTEXT: &[u8] = b"securemesh-bundle-v2";
/// Length of an ML-DSA-65 public key in a bundle.
pub const PQ_PUBLIC_LEN: usize = MlDsa65::PUBLIC_KEY_LEN;
/// Length of a hybrid signature in a bundle.
pub const HYBRID_SIG_LEN: usize = HybridSignature::LEN;

/// Bytes the hybrid signature of a signed prekey covers: `dh_pub || spk
/// signed bytes` (85).
const SPK_HYBRID_LEN: usize = 32 + crate::bundle::SPK_SIGNED_LEN;
/// Bytes the hybrid signature of a KEM prekey covers (94).
const KEM_HYBRID_LEN: usize = 32 + crate::bundle::KEM_SIGNED_LEN;

/// `dh_pub || "securemesh-spk-v1" || u32(spk_id) || spk_pub` (spec §3.1).
fn spk_hybrid_bytes(identity: &PublicIdentity, spk: &SignedPrekeyPublic) -> [u8; SPK_HYBRID_LEN] {
    signed_bytes(&[&identity.dh, &spk_signed_bytes(spk.id, &spk.public)])
}

/// `dh_pub || "securemesh-kem-prekey-v1" || u32(kem_id) || u16(kem_alg) || SHA-256(kem_pub)`.
fn kem_hybrid_bytes(identity: &PublicIdentity, kem: &KemPrekey<'_>) -> [u8; KEM_HYBRID_LEN] {
    signed_bytes(&[&identity.dh, &kem_signed_bytes(kem.id, kem.alg, kem.public)])
}

/// The ML-DSA-65 key of an identity, loaded with the identity's Ed25519
/// key into a hybrid signing key. Zeroized on drop, no secret in `Debug`.
///
/// ```
/// use securemesh_ratchet::{Identity, PqIdentity};
/// # let mut rng = securemesh_core::testing::TestRng::new(0x5eed_0001);
/// let bob = Identity::generate(&mut rng);
/// let pq = PqIdentity::generate(&bob, &mut rng);
/// // Persist `pq.seed()` beside the identity's secrets; rebuild with from_seed.
/// let again = PqIdentity::from_seed(&bob, pq.seed());
/// assert_eq!(again.public(), pq.public());
/// ```
pub struct PqIdentity {
    seed: Secret<[u8; 32]>,
    key: HybridSigningKey,
}

impl core::fmt::Debug for PqIdentity {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PqIdentity").field("ed25519", &self.key.public().ed25519).finish_non_exhaustive()
    }
}

impl PqIdentity {
    /// A fresh ML-DSA-65 key for `identity`.
    pub fn generate<R: CryptoRng + ?Sized>(identity: &Identity, rng: &mut R) -> Self {
        Self::from_seed(identity, &MlDsa65::generate(rng))
    }

    /// Rebuild from the stored ML-DSA seed.
    pub fn from_seed(identity: &Identity, seed: &Secret<[u8; 32]>) -> Self {
        let key = HybridSigningKey::new(identity.signing_seed(), seed);
        PqIdentity { seed: seed.duplicate(), key }
    }

    /// The ML-DSA seed (to persist the key).
    pub fn seed(&self) -> &Secret<[u8; 32]> {
        &self.seed
    }

    /// The ML-DSA-65 public key.
    pub fn public(&self) -> &[u8; PQ_PUBLIC_LEN] {
        &self.key.public().ml_dsa
    }

    /// The hybrid public key (the identity's Ed25519 key and the ML-DSA key).
    pub fn hybrid_public(&self) -> &HybridPublicKey {
        self.key.public()
    }
}

/// Room for the post-quantum section of one of our own bundles (the
/// ML-DSA public key and the hybrid signatures, 8.7 KB), lent to
/// [`Bundle::sign_pq`](crate::Bundle::sign_pq) so that the bundle can
/// borrow it: no heap, and no bundle type that is 8.7 KB larger for
/// everyone.
pub struct BundlePqStorage {
    public: [u8; PQ_PUBLIC_LEN],
    spk_sig: [u8; HYBRID_SIG_LEN],
    kem_sig: [u8; HYBRID_SIG_LEN],
}

impl BundlePqStorage {
    /// Empty storage (overwritten by `sign_pq`).
    pub const fn new() -> Self {
        BundlePqStorage {
            public: [0; PQ_PUBLIC_LEN],
            spk_sig: [0; HYBRID_SIG_LEN],
            kem_sig: [0; HYBRID_SIG_LEN],
        }
    }
}

impl Default for BundlePqStorage {
    fn default() -> Self {
        Self::new()
    }
}

/// The post-quantum section of a version-3 bundle, verified: the identity's
/// ML-DSA-65 public key and the hybrid signatures of the signed prekey and
/// (if the bundle has one) the KEM prekey.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BundlePq<'a> {
    pub(crate) public: &'a [u8; PQ_PUBLIC_LEN],
    pub(crate) spk_sig: &'a [u8; HYBRID_SIG_LEN],
    pub(crate) kem_sig: Option<&'a [u8; HYBRID_SIG_LEN]>,
}

impl<'a> BundlePq<'a> {
    /// The identity's ML-DSA-65 public key.
    pub fn public(&self) -> &'a [u8; PQ_PUBLIC_LEN] {
        self.public
    }

    /// The hybrid signature of the signed prekey (`ed25519 64 || ml_dsa 3309`).
    pub fn spk_sig(&self) -> &'a [u8; HYBRID_SIG_LEN] {
        self.spk_sig
    }

    /// The hybrid signature of the KEM prekey, if the bundle has one.
    pub fn kem_sig(&self) -> Option<&'a [u8; HYBRID_SIG_LEN]> {
        self.kem_sig
    }

    /// The section as read from the wire, verified against the bundle's
    /// identity, signed prekey and KEM prekey (`BadSignature` if either
    /// half of a hybrid signature fails).
    pub(crate) fn verify(
        &self,
        identity: &PublicIdentity,
        spk: &SignedPrekeyPublic,
        kem: Option<&KemPrekey<'_>>,
    ) -> Result<(), Error> {
        let key = HybridPublicKey { ed25519: identity.sign, ml_dsa: *self.public };
        let check = |msg: &[u8], sig: &[u8; HYBRID_SIG_LEN]| {
            HybridEd25519MlDsa65::verify_slice(&key, HYBRID_BUNDLE_CONTEXT, msg, sig)
                .map_err(|_| Error::BadSignature)
        };
        check(&spk_hybrid_bytes(identity, spk), self.spk_sig)?;
        match (kem, self.kem_sig) {
            (Some(k), Some(sig)) => check(&kem_hybrid_bytes(identity, k), sig),
            (None, None) => Ok(()),
            _ => Err(Error::Malformed),
        }
    }

    /// Sign the section of one of our bundles into `out` (the identity must
    /// be the bundle's: `WrongIdentity` otherwise).
    pub(crate) fn sign<'b, R: CryptoRng + ?Sized>(
        pq: &PqIdentity,
        identity: &PublicIdentity,
        spk: &SignedPrekeyPublic,
        kem: Option<&KemPrekey<'_>>,
        rng: &mut R,
        out: &'b mut BundlePqStorage,
    ) -> Result<BundlePq<'b>, Error> {
        if pq.key.public().ed25519 != identity.sign {
            return Err(Error::WrongIdentity);
        }
        let sign = |msg: &[u8], rng: &mut R| {
            HybridEd25519MlDsa65::sign(&pq.key, HYBRID_BUNDLE_CONTEXT, msg, rng)
                .map(|s| s.to_bytes())
                .map_err(|_| Error::BadSignature)
        };
        let spk_sig = sign(&spk_hybrid_bytes(identity, spk), rng)?;
        let kem_sig = match kem {
            Some(k) => Some(sign(&kem_hybrid_bytes(identity, k), rng)?),
            None => None,
        };
        out.public = *pq.public();
        out.spk_sig = spk_sig;
        let BundlePqStorage { public, spk_sig, kem_sig: kem_room } = out;
        let kem_sig = match kem_sig {
            Some(s) => {
                *kem_room = s;
                Some(&*kem_room)
            }
            None => None,
        };
        Ok(BundlePq { public, spk_sig, kem_sig })
    }
}
