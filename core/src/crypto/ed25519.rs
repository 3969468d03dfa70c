//! Ed25519 (RFC 8032) on ed25519-dalek with strict verification.

use super::Signature;
use crate::{Error, Secret};
use core::fmt;
use ed25519_dalek::{SigningKey, VerifyingKey};

/// Ed25519 signatures (RFC 8032 §5.1, pure). Verification is strict: it
/// rejects non-canonical encodings and small-order public keys and `R`
/// (`verify_strict`).
///
/// ```
/// use securemesh_core::{Secret, crypto::{Ed25519, Signature}};
/// let key = Ed25519::signing_key(&Secret::new([1u8; 32]));
/// let public = Ed25519::verifying_key(&key);
/// let sig = Ed25519::sign(&key, b"task: measure");
/// assert!(Ed25519::verify(&public, b"task: measure", &sig).is_ok());
/// assert!(Ed25519::verify(&public, b"task: measurE", &sig).is_err());
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Ed25519;

/// A loaded Ed25519 signing key (the expanded secret and its public key).
/// Zeroized on drop; `Debug` shows only the public key.
pub struct Ed25519SigningKey(SigningKey);

impl Ed25519SigningKey {
    /// A copy, made on purpose (the type is not `Clone`): for a state that
    /// is copied into a spare slot, so the next signature need not load the
    /// key from its seed again (a base-point multiplication).
    ///
    /// ```
    /// use securemesh_core::crypto::{Ed25519, Signature};
    /// use securemesh_core::Secret;
    /// let key = Ed25519::signing_key(&Secret::new([7; 32]));
    /// let copy = key.duplicate();
    /// assert_eq!(Ed25519::verifying_key(&copy), Ed25519::verifying_key(&key));
    /// ```
    pub fn duplicate(&self) -> Self {
        Ed25519SigningKey(self.0.clone())
    }
}

impl fmt::Debug for Ed25519SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Ed25519SigningKey").field(self.0.verifying_key().as_bytes()).finish()
    }
}

impl Signature for Ed25519 {
    const NAME: &'static str = "Ed25519";
    type PublicKey = [u8; 32];
    type Seed = [u8; 32];
    type Sig = [u8; 64];
    type SigningKey = Ed25519SigningKey;

    fn signing_key(seed: &Secret<[u8; 32]>) -> Ed25519SigningKey {
        Ed25519SigningKey(SigningKey::from_bytes(seed.expose()))
    }

    fn verifying_key(key: &Ed25519SigningKey) -> [u8; 32] {
        key.0.verifying_key().to_bytes()
    }

    fn sign(key: &Ed25519SigningKey, msg: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer;
        key.0.sign(msg).to_bytes()
    }

    fn verify(public: &[u8; 32], msg: &[u8], sig: &[u8; 64]) -> Result<(), Error> {
        let vk = VerifyingKey::from_bytes(public).map_err(|_| Error::InvalidKey)?;
        let sig = ed25519_dalek::Signature::from_bytes(sig);
        vk.verify_strict(msg, &sig).map_err(|_| Error::BadSignature)
    }
}
