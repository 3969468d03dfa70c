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

/// A verified public identity: it comes only from [`Identity::public`],
/// [`PublicIdentity::from_bytes`] (which verifies the binding signature)
/// or a verified bundle or message, never from unchecked parts:
///
/// ```compile_fail
/// let forged = securemesh_ratchet::PublicIdentity { sign: [0; 32], dh: [9; 32], sig: [0; 64] };
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublicIdentity {
    pub(crate) sign: [u8; 32],
    pub(crate) dh: [u8; 32],
    pub(crate) sig: [u8; 64],
}

impl PublicIdentity {
    /// Encoded length.
    pub const LEN: usize = 128;

    /// The Ed25519 public key.
    pub fn sign_public(&self) -> &[u8; 32] {
        &self.sign
    }

    /// The X25519 public key.
    pub fn dh_public(&self) -> &[u8; 32] {
        &self.dh
    }

    /// The Ed25519 signature binding the X25519 key to the Ed25519 key.
    pub fn binding_signature(&self) -> &[u8; 64] {
        &self.sig
    }

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
        verify_signed(&self.sign, &identity_signed_bytes(&self.dh), &self.sig)
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

/// `N` bytes from `parts`, which must fill them exactly: callers pass
/// fixed-size arrays, and a `const` assertion beside each caller checks
/// at compile time that their lengths add up to `N` (so nothing is ever
/// truncated, padded or signed short).
pub(crate) fn signed_bytes<const N: usize>(parts: &[&[u8]]) -> [u8; N] {
    let mut out = [0u8; N];
    for (d, s) in out.iter_mut().zip(parts.iter().flat_map(|p| p.iter())) {
        *d = *s;
    }
    out
}

/// Bytes the identity binding signature covers (54).
pub(crate) const IDENTITY_SIGNED_LEN: usize = 54;
const _: () = assert!(IDENTITY_LABEL.len() + 32 == IDENTITY_SIGNED_LEN);

/// `"securemesh-identity-v1" || dh_pub` (spec §2).
fn identity_signed_bytes(dh_pub: &[u8; 32]) -> [u8; IDENTITY_SIGNED_LEN] {
    signed_bytes(&[IDENTITY_LABEL, dh_pub])
}

/// Strict Ed25519 verification of `sig` by `key` over `msg`.
pub(crate) fn verify_signed(key: &[u8; 32], msg: &[u8], sig: &[u8; 64]) -> Result<(), Error> {
    Ed25519::verify(key, msg, sig).map_err(|_| Error::BadSignature)
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
        let sig = Ed25519::sign(&signing, &identity_signed_bytes(&dh_pub));
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

    /// Sign `msg` (the signed bytes of one object of the format, from its
    /// fixed-size encoder).
    pub(crate) fn sign(&self, msg: &[u8]) -> [u8; 64] {
        Ed25519::sign(&self.signing, msg)
    }
}
