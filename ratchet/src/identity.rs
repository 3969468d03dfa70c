//! Agent identities: an Ed25519 signing key and an X25519 key-agreement key,
//! the latter signed by the former.
//!
//! securemesh does not use XEdDSA: instead of converting one key between
//! curve forms, an identity carries two keys and a signature binding them.
//! Public encoding (128 bytes): `sign_pub 32 | dh_pub 32 | sig 64`, where
//! `sig = Ed25519(sign, "securemesh-identity-v1" || dh_pub)`.

use crate::error::Error;
use securemesh_core::crypto::{Dh, Ed25519, Ed25519SigningKey, Signature, X25519};
use securemesh_core::{CryptoRng, Secret};

/// Domain-separation label of the identity binding signature.
pub const IDENTITY_LABEL: &[u8] = b"securemesh-identity-v1";

/// A verified public identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublicIdentity {
    /// Ed25519 public key.
    pub sign: [u8; 32],
    /// X25519 public key.
    pub dh: [u8; 32],
    /// Ed25519 signature binding `dh` to `sign`.
    pub sig: [u8; 64],
}

impl PublicIdentity {
    /// Encoded length.
    pub const LEN: usize = 128;

    /// Encode as `sign | dh | sig`.
    pub fn to_bytes(&self) -> [u8; 128] {
        let mut out = [0u8; 128];
        let (a, rest) = out.split_at_mut(32);
        let (b, c) = rest.split_at_mut(32);
        a.copy_from_slice(&self.sign);
        b.copy_from_slice(&self.dh);
        c.copy_from_slice(&self.sig);
        out
    }

    /// Decode and verify the binding signature (strict Ed25519).
    pub fn from_bytes(bytes: &[u8; 128]) -> Result<Self, Error> {
        let id = Self::from_bytes_unverified(bytes)?;
        id.verify()?;
        Ok(id)
    }

    /// Split the encoding without checking the binding signature; callers
    /// must [`verify`](Self::verify) before trusting it.
    pub(crate) fn from_bytes_unverified(bytes: &[u8; 128]) -> Result<Self, Error> {
        let (sign, rest) = bytes.split_first_chunk::<32>().ok_or(Error::Malformed)?;
        let (dh, sig) = rest.split_first_chunk::<32>().ok_or(Error::Malformed)?;
        let sig: [u8; 64] = sig.try_into().map_err(|_| Error::Malformed)?;
        Ok(PublicIdentity { sign: *sign, dh: canonical_dh(*dh)?, sig })
    }

    /// Check the signature binding `dh` to `sign` (strict Ed25519).
    pub(crate) fn verify(&self) -> Result<(), Error> {
        verify_labeled(&self.sign, IDENTITY_LABEL, &[&self.dh], &self.sig)
    }

    /// The 64 bytes X3DH encodes into the associated data: `sign | dh`.
    pub fn ad_bytes(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        let (a, b) = out.split_at_mut(32);
        a.copy_from_slice(&self.sign);
        b.copy_from_slice(&self.dh);
        out
    }
}

/// `public` if it is a canonical X25519 public key (bit 255 clear, `u < p`),
/// else `Malformed`. Every X25519 key read from the wire goes through this:
/// X25519 ignores bit 255, so without it a key has two encodings and a
/// field that is not authenticated byte for byte (the initial message's
/// `ek_pub`) could be changed unnoticed.
pub(crate) fn canonical_dh(public: [u8; 32]) -> Result<[u8; 32], Error> {
    if X25519::is_canonical(&public) { Ok(public) } else { Err(Error::Malformed) }
}

/// Verify `sig` over `label || parts...` with a bounded stack buffer.
pub(crate) fn verify_labeled(
    key: &[u8; 32],
    label: &[u8],
    parts: &[&[u8]],
    sig: &[u8; 64],
) -> Result<(), Error> {
    let mut buf = [0u8; 96];
    let n = concat(&mut buf, label, parts)?;
    Ed25519::verify(key, buf.get(..n).ok_or(Error::Malformed)?, sig).map_err(|_| Error::BadSignature)
}

fn concat(buf: &mut [u8; 96], label: &[u8], parts: &[&[u8]]) -> Result<usize, Error> {
    let mut n = 0;
    for p in core::iter::once(&label).chain(parts.iter()) {
        let end = n + p.len();
        buf.get_mut(n..end).ok_or(Error::MessageTooLong)?.copy_from_slice(p);
        n = end;
    }
    Ok(n)
}

/// A private agent identity.
///
/// ```
/// use securemesh_ratchet::Identity;
/// # let mut rng = securemesh_core::testing::TestRng::new(1);
/// let alice = Identity::generate(&mut rng);
/// let public = alice.public();
/// let decoded = securemesh_ratchet::PublicIdentity::from_bytes(&public.to_bytes())?;
/// assert_eq!(decoded, *public);
/// # Ok::<(), securemesh_ratchet::Error>(())
/// ```
pub struct Identity {
    seed: Secret<[u8; 32]>,
    signing: Ed25519SigningKey,
    dh: Secret<[u8; 32]>,
    public: PublicIdentity,
}

impl core::fmt::Debug for Identity {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Identity").field("public", &self.public).finish_non_exhaustive()
    }
}

impl Identity {
    /// A fresh identity.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let seed = Ed25519::generate(rng);
        let dh = X25519::generate(rng);
        Self::from_secrets(seed, dh)
    }

    /// Rebuild an identity from its two stored secrets.
    pub fn from_secrets(seed: Secret<[u8; 32]>, dh: Secret<[u8; 32]>) -> Self {
        let signing = Ed25519::signing_key(&seed);
        let dh_pub = X25519::public_key(&dh);
        let sign = Ed25519::verifying_key(&signing);
        let sig = sign_labeled(&signing, IDENTITY_LABEL, &[&dh_pub]);
        Identity { seed, signing, dh, public: PublicIdentity { sign, dh: dh_pub, sig } }
    }

    /// The public identity.
    pub fn public(&self) -> &PublicIdentity {
        &self.public
    }

    /// The Ed25519 seed (to persist the identity).
    pub fn signing_seed(&self) -> &Secret<[u8; 32]> {
        &self.seed
    }

    /// The X25519 private key (to persist the identity).
    pub fn dh_secret(&self) -> &Secret<[u8; 32]> {
        &self.dh
    }

    /// Sign `label || parts` (at most 96 bytes in all).
    pub(crate) fn sign(&self, label: &[u8], parts: &[&[u8]]) -> [u8; 64] {
        sign_labeled(&self.signing, label, parts)
    }
}

fn sign_labeled(key: &Ed25519SigningKey, label: &[u8], parts: &[&[u8]]) -> [u8; 64] {
    let mut buf = [0u8; 96];
    let n = concat(&mut buf, label, parts).unwrap_or(0);
    Ed25519::sign(key, buf.get(..n).unwrap_or(&[]))
}
