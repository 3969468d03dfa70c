//! Prekey bundles (X3DH §3.3, §4.1), bounded and versioned, with a slot
//! for a KEM prekey (PQXDH) so the format need not break when post-quantum
//! prekeys arrive.
//!
//! ```text
//! bundle v1 = version u8 (1)
//!           | identity (128: sign_pub | dh_pub | binding sig)
//!           | spk_id u32 | spk_pub 32 | spk_sig 64
//!           | opk_count u8 (0 or 1) [ opk_id u32 | opk_pub 32 ]
//!           | kem_count u8 (0 or 1) [ kem_id u32 | kem_alg u16 | kem_pub <u16 length> | kem_sig 64 ]
//! spk_sig = Ed25519(identity, "securemesh-spk-v1" || spk_id || spk_pub)
//! kem_sig = Ed25519(identity, "securemesh-kem-prekey-v1" || kem_id || kem_alg || SHA-256(kem_pub))
//!
//! bundle v3 (feature `ml-dsa`) = version u8 (3) | the fields of v1 after the version
//!           | pq_pub 1952 | spk_pq_sig 3373 | [ kem_pq_sig 3373, only if kem_count = 1 ]
//! spk_pq_sig = Hybrid((sign_pub, pq_pub), "securemesh-bundle-v2", dh_pub || spk signed bytes)
//! kem_pq_sig = Hybrid((sign_pub, pq_pub), "securemesh-bundle-v2", dh_pub || kem signed bytes)
//! ```

use crate::error::Error;
#[cfg(feature = "ml-dsa")]
use crate::hybrid_identity::{BundlePq, BundlePqStorage, HYBRID_SIG_LEN, PQ_PUBLIC_LEN, PqIdentity};
use crate::identity::{Identity, PublicIdentity, canonical_dh, signed_bytes, verify_signed};
use securemesh_core::codec::{Reader, Writer};
use securemesh_core::crypto::{Hash, Sha256};

/// Bundle format version (classical bundles).
pub const BUNDLE_VERSION: u8 = 1;
/// Bundle format version of hybrid bundles: a version-1 bundle followed by
/// the ML-DSA-65 section (spec §3.1). Decoded only with the feature
/// `ml-dsa` (`UnknownVersion` without it). Not 2: the published vectors
/// (`test-vectors/ratchet/v2/bundles.json`) refuse version 2 as unknown.
pub const BUNDLE_VERSION_HYBRID: u8 = 3;
/// Signature label of signed prekeys.
pub const SPK_LABEL: &[u8] = b"securemesh-spk-v1";
/// Bytes a signed-prekey signature covers (53).
pub(crate) const SPK_SIGNED_LEN: usize = 53;
/// Bytes a KEM-prekey signature covers (62).
pub(crate) const KEM_SIGNED_LEN: usize = 62;
const _: () = assert!(SPK_LABEL.len() + 4 + 32 == SPK_SIGNED_LEN);
const _: () = assert!(KEM_LABEL.len() + 4 + 2 + 32 == KEM_SIGNED_LEN);

/// `"securemesh-spk-v1" || u32(id) || public` (spec §3).
pub(crate) fn spk_signed_bytes(id: u32, public: &[u8; 32]) -> [u8; SPK_SIGNED_LEN] {
    signed_bytes(&[SPK_LABEL, &id.to_be_bytes(), public])
}

/// `"securemesh-kem-prekey-v1" || u32(id) || u16(alg) || SHA-256(public)` (spec §3).
pub(crate) fn kem_signed_bytes(id: u32, alg: u16, public: &[u8]) -> [u8; KEM_SIGNED_LEN] {
    signed_bytes(&[KEM_LABEL, &id.to_be_bytes(), &alg.to_be_bytes(), &Sha256::digest(&[public])])
}

/// Signature label of KEM prekeys.
pub const KEM_LABEL: &[u8] = b"securemesh-kem-prekey-v1";
/// Largest KEM public key a bundle may carry (ML-KEM-1024 is 1568 bytes).
pub const MAX_KEM_PUBLIC_LEN: usize = 1568;
/// Largest encoded classical (version 1) bundle.
pub const MAX_BUNDLE_LEN: usize =
    1 + 128 + (4 + 32 + 64) + (1 + 36) + (1 + 4 + 2 + 2 + MAX_KEM_PUBLIC_LEN + 64);
/// Largest encoded hybrid (version 3) bundle: a classical one, the ML-DSA-65
/// public key (1952) and two hybrid signatures (3373 each).
pub const MAX_HYBRID_BUNDLE_LEN: usize = MAX_BUNDLE_LEN + 1952 + 2 * 3373;

/// A signed prekey as published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignedPrekeyPublic {
    /// Identifier.
    pub id: u32,
    /// X25519 public key.
    pub public: [u8; 32],
    /// Ed25519 signature by the identity.
    pub sig: [u8; 64],
}

impl SignedPrekeyPublic {
    pub(crate) fn sign(identity: &Identity, id: u32, public: [u8; 32]) -> Self {
        let sig = identity.sign(&spk_signed_bytes(id, &public));
        SignedPrekeyPublic { id, public, sig }
    }

    pub(crate) fn verify(&self, identity: &PublicIdentity) -> Result<(), Error> {
        verify_signed(&identity.sign, &spk_signed_bytes(self.id, &self.public), &self.sig)
    }
}

/// A one-time prekey as published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OneTimePrekeyPublic {
    /// Identifier.
    pub id: u32,
    /// X25519 public key.
    pub public: [u8; 32],
}

/// A KEM prekey (the PQXDH slot), carried and verified; PQXDH
/// ([`Session::initiate_pq`](crate::Session::initiate_pq)) encapsulates to
/// it when its algorithm is one of [`KemAlgorithm`](crate::KemAlgorithm)'s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KemPrekey<'a> {
    /// Identifier.
    pub id: u32,
    /// Algorithm, the explicit KEM type (registry: 1 = ML-KEM-768, 2 =
    /// X-Wing (reserved), 3 = ML-KEM-1024), covered by the signature.
    pub alg: u16,
    /// Encapsulation key.
    pub public: &'a [u8],
    /// Ed25519 signature by the identity.
    pub sig: [u8; 64],
}

impl<'a> KemPrekey<'a> {
    /// A KEM prekey of ours: `public` (at most [`MAX_KEM_PUBLIC_LEN`]
    /// bytes, else [`Error::Malformed`]) signed by `identity` as the bundle
    /// format specifies, ready for [`Bundle::with_kem`].
    pub fn sign(identity: &Identity, id: u32, alg: u16, public: &'a [u8]) -> Result<Self, Error> {
        if public.len() > MAX_KEM_PUBLIC_LEN {
            return Err(Error::Malformed);
        }
        let sig = identity.sign(&kem_signed_bytes(id, alg, public));
        Ok(KemPrekey { id, alg, public, sig })
    }

    fn verify(&self, identity: &PublicIdentity) -> Result<(), Error> {
        if self.public.len() > MAX_KEM_PUBLIC_LEN {
            return Err(Error::Malformed);
        }
        verify_signed(&identity.sign, &kem_signed_bytes(self.id, self.alg, self.public), &self.sig)
    }
}

/// Check a KEM prekey's signature by `identity` (for restored pools).
pub(crate) fn verify_kem(kem: &KemPrekey<'_>, identity: &PublicIdentity) -> Result<(), Error> {
    kem.verify(identity)
}

/// A verified prekey bundle.
///
/// Verified by construction, so [`Session::initiate`](crate::Session::initiate)
/// can trust it: [`Bundle::decode`] checks every signature,
/// [`PrekeyPool::bundle`](crate::PrekeyPool::bundle) builds our own from
/// keys we signed, [`Bundle::with_kem`] checks the KEM prekey's signature,
/// and the fields are read through accessors (no bundle can be assembled
/// from unchecked parts).
///
/// ```
/// use securemesh_ratchet::{Bundle, Identity, PrekeyPool, PrekeyConfig};
/// use securemesh_core::UnixTime;
/// # let mut rng = securemesh_core::testing::TestRng::new(1);
/// let bob = Identity::generate(&mut rng);
/// let pool: PrekeyPool<8> = PrekeyPool::new(&bob, &mut rng, UnixTime(1_700_000_000), PrekeyConfig::default());
/// let mut buf = [0u8; securemesh_ratchet::MAX_BUNDLE_LEN];
/// let n = pool.bundle(pool.one_time_ids().next()).encode(&mut buf)?;
/// let bundle = Bundle::decode(&buf[..n])?; // verifies both signatures
/// assert_eq!(bundle.identity(), bob.public());
/// # Ok::<(), securemesh_ratchet::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bundle<'a> {
    pub(crate) identity: PublicIdentity,
    pub(crate) signed: SignedPrekeyPublic,
    pub(crate) one_time: Option<OneTimePrekeyPublic>,
    pub(crate) kem: Option<KemPrekey<'a>>,
    #[cfg(feature = "ml-dsa")]
    pub(crate) pq: Option<BundlePq<'a>>,
}

impl<'a> Bundle<'a> {
    /// The owner's identity.
    pub fn identity(&self) -> &PublicIdentity {
        &self.identity
    }

    /// The signed prekey.
    pub fn signed(&self) -> &SignedPrekeyPublic {
        &self.signed
    }

    /// The one-time prekey, if the pool had one.
    pub fn one_time(&self) -> Option<&OneTimePrekeyPublic> {
        self.one_time.as_ref()
    }

    /// The KEM prekey, if present.
    pub fn kem(&self) -> Option<&KemPrekey<'a>> {
        self.kem.as_ref()
    }

    /// This bundle with `kem` in its KEM slot, after checking its signature
    /// by the bundle's identity and its length ([`Error::BadSignature`],
    /// [`Error::Malformed`]). A hybrid bundle (one with its ML-DSA section)
    /// is refused with [`Error::Malformed`]: its section has no signature
    /// of the new KEM prekey; add the KEM prekey first, then
    /// [`Bundle::sign_pq`].
    pub fn with_kem(self, kem: KemPrekey<'a>) -> Result<Self, Error> {
        #[cfg(feature = "ml-dsa")]
        if self.pq.is_some() {
            return Err(Error::Malformed);
        }
        kem.verify(&self.identity)?;
        Ok(Bundle { kem: Some(kem), ..self })
    }

    /// The ML-DSA-65 section, verified, if this is a hybrid bundle.
    #[cfg(feature = "ml-dsa")]
    pub fn pq(&self) -> Option<&BundlePq<'a>> {
        self.pq.as_ref()
    }

    /// This bundle as a hybrid one: the ML-DSA-65 public key of `pq` and
    /// hybrid signatures (Ed25519 + ML-DSA-65, hedged: `rng` is drawn from)
    /// of the signed prekey and the KEM prekey, written into `storage`,
    /// which the returned bundle borrows. [`Error::WrongIdentity`] if `pq`
    /// is not the bundle identity's.
    ///
    /// ```
    /// use securemesh_ratchet::{Bundle, BundlePqStorage, Identity, PqIdentity, PrekeyPool, PrekeyConfig};
    /// use securemesh_core::UnixTime;
    /// # let mut rng = securemesh_core::testing::TestRng::new(0x5eed_0002);
    /// let bob = Identity::generate(&mut rng);
    /// let bob_pq = PqIdentity::generate(&bob, &mut rng);
    /// let pool: PrekeyPool<8> = PrekeyPool::new(&bob, &mut rng, UnixTime(1_700_000_000), PrekeyConfig::default());
    /// let mut storage = BundlePqStorage::new();
    /// let hybrid = pool.bundle(None).sign_pq(&bob_pq, &mut rng, &mut storage)?;
    /// let mut wire = vec![0u8; securemesh_ratchet::MAX_HYBRID_BUNDLE_LEN];
    /// let n = hybrid.encode(&mut wire)?;
    /// let decoded = Bundle::decode(&wire[..n])?; // both halves of both signatures verified
    /// decoded.require_pq(bob_pq.public())?;
    /// assert_eq!(decoded, hybrid);
    /// // A classical bundle of the same identity fails the pinned check.
    /// assert!(pool.bundle(None).require_pq(bob_pq.public()).is_err());
    /// # Ok::<(), securemesh_ratchet::Error>(())
    /// ```
    #[cfg(feature = "ml-dsa")]
    pub fn sign_pq<'b, R: securemesh_core::CryptoRng + ?Sized>(
        self,
        pq: &PqIdentity,
        rng: &mut R,
        storage: &'b mut BundlePqStorage,
    ) -> Result<Bundle<'b>, Error>
    where
        'a: 'b,
    {
        let section = BundlePq::sign(pq, &self.identity, &self.signed, self.kem.as_ref(), rng, storage)?;
        Ok(Bundle {
            identity: self.identity,
            signed: self.signed,
            one_time: self.one_time,
            kem: self.kem,
            pq: Some(section),
        })
    }

    /// The caller's policy check for a peer whose ML-DSA-65 key it has
    /// pinned: `Ok` only for a hybrid bundle with exactly that key.
    /// [`Error::Downgrade`] for a classical bundle (a version-1 bundle of a
    /// hybrid identity, e.g. one whose ML-DSA section was stripped),
    /// [`Error::WrongIdentity`] for another ML-DSA key.
    #[cfg(feature = "ml-dsa")]
    pub fn require_pq(&self, pinned: &[u8; PQ_PUBLIC_LEN]) -> Result<(), Error> {
        match &self.pq {
            None => Err(Error::Downgrade),
            Some(pq) if securemesh_core::ct_eq(pq.public, pinned) => Ok(()),
            Some(_) => Err(Error::WrongIdentity),
        }
    }

    /// Decode and verify (identity binding, signed prekey and KEM prekey
    /// signatures, strict Ed25519; with the feature `ml-dsa`, a version-3
    /// bundle's ML-DSA section: both halves of each hybrid signature).
    pub fn decode(bytes: &'a [u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes);
        let version = r.read_u8()?;
        #[cfg(feature = "ml-dsa")]
        let hybrid = version == BUNDLE_VERSION_HYBRID;
        #[cfg(not(feature = "ml-dsa"))]
        let hybrid = false;
        if version != BUNDLE_VERSION && !hybrid {
            return Err(Error::UnknownVersion);
        }
        let identity = PublicIdentity::from_bytes(&r.read_array()?)?;
        let signed = SignedPrekeyPublic {
            id: r.read_u32()?,
            public: canonical_dh(r.read_array()?)?,
            sig: r.read_array()?,
        };
        signed.verify(&identity)?;
        let one_time = match r.read_u8()? {
            0 => None,
            1 => Some(OneTimePrekeyPublic { id: r.read_u32()?, public: canonical_dh(r.read_array()?)? }),
            _ => return Err(Error::Malformed),
        };
        let kem = match r.read_u8()? {
            0 => None,
            1 => {
                let id = r.read_u32()?;
                let alg = r.read_u16()?;
                let public = r.read_vec16()?;
                if public.len() > MAX_KEM_PUBLIC_LEN {
                    return Err(Error::Malformed);
                }
                let kem = KemPrekey { id, alg, public, sig: r.read_array()? };
                kem.verify(&identity)?;
                Some(kem)
            }
            _ => return Err(Error::Malformed),
        };
        #[cfg(feature = "ml-dsa")]
        let pq = if hybrid {
            let pq = BundlePq {
                public: r.read_bytes(PQ_PUBLIC_LEN)?.try_into().map_err(|_| Error::Malformed)?,
                spk_sig: r.read_bytes(HYBRID_SIG_LEN)?.try_into().map_err(|_| Error::Malformed)?,
                kem_sig: match kem {
                    Some(_) => Some(r.read_bytes(HYBRID_SIG_LEN)?.try_into().map_err(|_| Error::Malformed)?),
                    None => None,
                },
            };
            r.finish()?;
            pq.verify(&identity, &signed, kem.as_ref())?;
            Some(pq)
        } else {
            None
        };
        r.finish()?;
        Ok(Bundle {
            identity,
            signed,
            one_time,
            kem,
            #[cfg(feature = "ml-dsa")]
            pq,
        })
    }

    /// Encode; returns the length.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, Error> {
        let mut w = Writer::new(out);
        #[cfg(feature = "ml-dsa")]
        w.write_u8(if self.pq.is_some() { BUNDLE_VERSION_HYBRID } else { BUNDLE_VERSION })?;
        #[cfg(not(feature = "ml-dsa"))]
        w.write_u8(BUNDLE_VERSION)?;
        w.write_bytes(&self.identity.to_bytes())?;
        w.write_u32(self.signed.id)?;
        w.write_bytes(&self.signed.public)?;
        w.write_bytes(&self.signed.sig)?;
        match &self.one_time {
            Some(o) => {
                w.write_u8(1)?;
                w.write_u32(o.id)?;
                w.write_bytes(&o.public)?;
            }
            None => w.write_u8(0)?,
        }
        match &self.kem {
            Some(k) => {
                w.write_u8(1)?;
                w.write_u32(k.id)?;
                w.write_u16(k.alg)?;
                w.write_vec16(k.public)?;
                w.write_bytes(&k.sig)?;
            }
            None => w.write_u8(0)?,
        }
        #[cfg(feature = "ml-dsa")]
        if let Some(pq) = &self.pq {
            w.write_bytes(pq.public)?;
            w.write_bytes(pq.spk_sig)?;
            if let Some(sig) = pq.kem_sig {
                w.write_bytes(sig)?;
            }
        }
        Ok(w.finish()?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing)]
    use super::*;

    /// The signed bytes of each object are `label || parts`, of exactly
    /// the length spec §2-§3 gives (no buffer that could sign a short or
    /// empty message: the lengths are checked at compile time).
    #[test]
    fn signed_bytes_are_label_and_fields_exactly() {
        let spk = spk_signed_bytes(0x0102_0304, &[7u8; 32]);
        assert_eq!(spk.len(), 53);
        assert_eq!(&spk[..17], SPK_LABEL);
        assert_eq!(&spk[17..21], &[1, 2, 3, 4]);
        assert_eq!(&spk[21..], &[7u8; 32]);
        let kem = kem_signed_bytes(9, 2, b"kem key");
        assert_eq!(kem.len(), 62);
        assert_eq!(&kem[..24], KEM_LABEL);
        assert_eq!(&kem[24..30], &[0, 0, 0, 9, 0, 2]);
        assert_eq!(&kem[30..], &Sha256::digest(&[b"kem key"]));
    }
}
