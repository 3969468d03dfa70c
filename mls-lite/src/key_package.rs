//! KeyPackages (RFC 9420 §10): making our own, and validating one received.
//!
//! A KeyPackage is how a member is added while offline: it publishes one
//! (to a delivery service), keeps its private keys, and joins from the
//! Welcome a committer makes for it. [`create_key_package`] writes a
//! signed KeyPackage of this profile (ciphersuite 0x0003, a basic
//! credential, the lifetime the caller gives, optionally the
//! `last_resort` extension of RFC 9420 §17.3) and returns its two HPKE
//! private keys as [`KeyPackageSecrets`], which the caller keeps (e.g. in
//! a store keyed by the KeyPackage's reference) until the Welcome comes.
//! The signature key is the caller's: it is the member's identity key in
//! every group it joins with this KeyPackage.
//!
//! [`KeyPackage::validate`] is what a committer runs on a KeyPackage it
//! received before adding it: [`KeyPackage::verify`] (both signatures,
//! the source, distinct keys) plus the lifetime at the caller's `now` and
//! the capabilities this profile needs (with feature `ml-dsa`, a hybrid
//! credential and its ML-DSA signature too: `create_hybrid_key_package_in`
//! makes such a KeyPackage).

use crate::crypto::suite::Suite;
use crate::crypto::{Secret32, sign_with_label};
use crate::error::Error;
use crate::messages::{KeyPackage, MLS10};
use crate::tree::node::{Credential, HybridLeafSigner, LeafNodeParams, LeafNodeSource, write_leaf};
use securemesh_core::CryptoRng;
use securemesh_core::codec::Writer;
use securemesh_core::crypto::{Ed25519, Signature};

/// Extension type of `last_resort` (RFC 9420 §17.3): a KeyPackage that may
/// be used more than once, when no other is left.
pub const LAST_RESORT_EXTENSION: u16 = 0x000A;

/// Most bytes [`create_key_package`] writes for an identity of
/// `identity_len` bytes.
pub const fn key_package_len(identity_len: usize) -> usize {
    identity_len.saturating_add(300)
}

/// Most bytes [`create_key_package_in`] writes in `suite` for an identity
/// of `identity_len` bytes (two HPKE public keys of the suite's length).
pub const fn key_package_len_in(suite: Suite, identity_len: usize) -> usize {
    let npk = suite.hpke_public_len();
    let per_key = npk.saturating_sub(32).saturating_add(if npk > 63 { 1 } else { 0 });
    key_package_len(identity_len).saturating_add(per_key.saturating_mul(2))
}

/// What a new KeyPackage says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyPackageParams<'a> {
    /// The identity of the basic credential.
    pub identity: &'a [u8],
    /// Not valid before (Unix seconds).
    pub not_before: u64,
    /// Not valid after (Unix seconds).
    pub not_after: u64,
    /// Carry the `last_resort` extension.
    pub last_resort: bool,
}

/// The private keys of a KeyPackage: the `init_key`'s (it opens the
/// Welcome) and the leaf's encryption key (the member's leaf key in the
/// group). Zeroized on drop; not `Clone`, not `Debug`.
pub struct KeyPackageSecrets {
    /// Private key of `init_key`.
    pub init_priv: Secret32,
    /// Private key of the leaf node's `encryption_key`.
    pub encryption_priv: Secret32,
}

/// Write a new signed KeyPackage into `out` and return its length and
/// private keys: fresh `init_key` and leaf encryption key from `rng`, the
/// leaf node of `params` (source `key_package`) signed with the Ed25519
/// seed `signature_priv`, then the KeyPackage signature. `out` needs
/// [`key_package_len`]`(identity.len())` bytes, `scratch` twice that.
/// Nothing is drawn from `rng` if a buffer is too small.
///
/// ```
/// use securemesh_core::crypto::{Ed25519, Signature};
/// use securemesh_core::testing::TestRng;
/// use securemesh_mls_lite::key_package::{KeyPackageParams, create_key_package, key_package_len};
/// use securemesh_mls_lite::messages::KeyPackage;
/// let mut rng = TestRng::new(1);
/// let identity_key = Ed25519::generate(&mut rng);
/// let params = KeyPackageParams {
///     identity: b"agent-7",
///     not_before: 1_700_000_000,
///     not_after: 1_700_000_000 + 90 * 86_400,
///     last_resort: false,
/// };
/// let mut out = vec![0u8; key_package_len(params.identity.len())];
/// let mut scratch = vec![0u8; 2 * out.len()];
/// let (n, secrets) = create_key_package(&params, &identity_key, &mut rng, &mut out, &mut scratch)?;
/// let kp = KeyPackage::from_bytes(&out[..n])?;
/// kp.validate(1_700_000_000 + 86_400, &mut scratch)?;
/// // Publish `kp`; keep `secrets` under its reference until the Welcome.
/// let reference = kp.reference()?;
/// # let _ = (reference, secrets);
/// # Ok::<(), securemesh_mls_lite::Error>(())
/// ```
pub fn create_key_package<R: CryptoRng + ?Sized>(
    params: &KeyPackageParams<'_>,
    signature_priv: &Secret32,
    rng: &mut R,
    out: &mut [u8],
    scratch: &mut [u8],
) -> Result<(usize, KeyPackageSecrets), Error> {
    create_key_package_in(Suite::Mls128X25519, params, signature_priv, rng, out, scratch)
}

/// [`create_key_package`] in ciphersuite `suite`: `out` needs
/// [`key_package_len_in`]`(suite, identity.len())` bytes, `scratch` twice
/// that.
///
/// ```
/// use securemesh_core::crypto::{Ed25519, Signature};
/// use securemesh_core::testing::TestRng;
/// use securemesh_mls_lite::crypto::suite::Suite;
/// use securemesh_mls_lite::key_package::{KeyPackageParams, create_key_package_in, key_package_len_in};
/// use securemesh_mls_lite::messages::KeyPackage;
/// let mut rng = TestRng::new(1);
/// let identity_key = Ed25519::generate(&mut rng);
/// let params = KeyPackageParams { identity: b"agent-7", not_before: 0, not_after: 10, last_resort: false };
/// let suite = Suite::Mls128X25519;
/// let mut out = vec![0u8; key_package_len_in(suite, params.identity.len())];
/// let mut scratch = vec![0u8; 2 * out.len()];
/// let (n, _secrets) = create_key_package_in(suite, &params, &identity_key, &mut rng, &mut out, &mut scratch)?;
/// assert_eq!(KeyPackage::from_bytes(&out[..n])?.cipher_suite, suite.id());
/// # Ok::<(), securemesh_mls_lite::Error>(())
/// ```
pub fn create_key_package_in<R: CryptoRng + ?Sized>(
    suite: Suite,
    params: &KeyPackageParams<'_>,
    signature_priv: &Secret32,
    rng: &mut R,
    out: &mut [u8],
    scratch: &mut [u8],
) -> Result<(usize, KeyPackageSecrets), Error> {
    check_buffers(key_package_len_in(suite, params.identity.len()), params, out, scratch)?;
    let secrets = KeyPackageSecrets { init_priv: suite.generate(rng), encryption_priv: suite.generate(rng) };
    let len = write_key_package(suite, params, signature_priv, &secrets, None, out, scratch)?;
    Ok((len, secrets))
}

/// Most bytes [`create_hybrid_key_package_in`] writes in `suite` for an
/// identity of `identity_len` bytes. Feature `ml-dsa`.
#[cfg(feature = "ml-dsa")]
pub const fn hybrid_key_package_len_in(suite: Suite, identity_len: usize) -> usize {
    key_package_len_in(suite, identity_len).saturating_add(crate::hybrid_credential::HYBRID_LEAF_OVERHEAD)
}

/// [`create_key_package_in`] with a hybrid credential
/// ([`crate::hybrid_credential`]): the leaf's credential carries the
/// ML-DSA-65 public key of the seed `ml_dsa_seed` and the leaf its
/// ML-DSA-65 signature (hedged, from `rng`) beside the Ed25519 one. `out`
/// needs [`hybrid_key_package_len_in`]`(suite, identity.len())` bytes,
/// `scratch` twice that. Feature `ml-dsa`.
///
/// ```
/// use securemesh_core::crypto::{Ed25519, MlDsa65, Signature};
/// use securemesh_core::testing::TestRng;
/// use securemesh_mls_lite::crypto::suite::Suite;
/// use securemesh_mls_lite::key_package::{KeyPackageParams, create_hybrid_key_package_in, hybrid_key_package_len_in};
/// use securemesh_mls_lite::messages::KeyPackage;
/// use securemesh_mls_lite::tree::node::Credential;
/// # std::thread::Builder::new().stack_size(8 << 20).spawn(|| {
/// let mut rng = TestRng::new(1);
/// let (identity_key, ml_dsa_seed) = (Ed25519::generate(&mut rng), MlDsa65::generate(&mut rng));
/// let params = KeyPackageParams { identity: b"agent-7", not_before: 0, not_after: 10, last_resort: false };
/// let suite = Suite::Mls128X25519;
/// let mut out = vec![0u8; hybrid_key_package_len_in(suite, params.identity.len())];
/// let mut scratch = vec![0u8; 2 * out.len()];
/// let (n, _secrets) =
///     create_hybrid_key_package_in(suite, &params, &identity_key, &ml_dsa_seed, &mut rng, &mut out, &mut scratch)?;
/// let kp = KeyPackage::from_bytes(&out[..n])?;
/// kp.validate(5, &mut scratch)?; // both signatures
/// let Credential::Hybrid(c) = kp.leaf_node.credential else { unreachable!() };
/// assert_eq!(*c.ml_dsa_public_key, MlDsa65::public_key(&ml_dsa_seed));
/// # Ok::<(), securemesh_mls_lite::Error>(())
/// # }).unwrap().join().unwrap().unwrap();
/// ```
#[cfg(feature = "ml-dsa")]
pub fn create_hybrid_key_package_in<R: CryptoRng + ?Sized>(
    suite: Suite,
    params: &KeyPackageParams<'_>,
    signature_priv: &Secret32,
    ml_dsa_seed: &Secret32,
    rng: &mut R,
    out: &mut [u8],
    scratch: &mut [u8],
) -> Result<(usize, KeyPackageSecrets), Error> {
    check_buffers(hybrid_key_package_len_in(suite, params.identity.len()), params, out, scratch)?;
    let secrets = KeyPackageSecrets { init_priv: suite.generate(rng), encryption_priv: suite.generate(rng) };
    let mut signer = crate::hybrid_credential::MlDsaLeafSigner::new(ml_dsa_seed, rng);
    let len = write_key_package(suite, params, signature_priv, &secrets, Some(&mut signer), out, scratch)?;
    Ok((len, secrets))
}

/// `out` of `needed` bytes, `scratch` of twice that, a lifetime in order.
fn check_buffers(
    needed: usize,
    params: &KeyPackageParams<'_>,
    out: &[u8],
    scratch: &[u8],
) -> Result<(), Error> {
    if out.len() < needed {
        return Err(Error::BufferTooSmall { needed });
    }
    let scratch_needed = needed.saturating_mul(2);
    if scratch.len() < scratch_needed {
        return Err(Error::BufferTooSmall { needed: scratch_needed });
    }
    if params.not_before > params.not_after {
        return Err(Error::Malformed);
    }
    Ok(())
}

/// Write and sign the KeyPackage of `secrets` (its leaf hybrid if
/// `hybrid` is given).
fn write_key_package(
    suite: Suite,
    params: &KeyPackageParams<'_>,
    signature_priv: &Secret32,
    secrets: &KeyPackageSecrets,
    hybrid: Option<&mut dyn HybridLeafSigner>,
    out: &mut [u8],
    scratch: &mut [u8],
) -> Result<usize, Error> {
    let signing = Ed25519::signing_key(signature_priv);
    let encryption_key = suite.public_key(&secrets.encryption_priv)?;
    let leaf_params = LeafNodeParams {
        encryption_key: &encryption_key,
        identity: params.identity,
        source: LeafNodeSource::KeyPackage { not_before: params.not_before, not_after: params.not_after },
        extensions: &[],
    };
    // version, cipher_suite, init_key<V>, then the leaf in place.
    let mut w = Writer::new(out);
    w.write_u16(MLS10)?;
    w.write_u16(suite.id())?;
    w.write_vec_varint(&suite.public_key(&secrets.init_priv)?)?;
    let head = w.finish()?;
    let leaf_out = out.get_mut(head..).ok_or(Error::Capacity)?;
    let leaf_len = write_leaf(leaf_out, &leaf_params, &signing, hybrid, &[], 0, scratch)?;
    let at = head.checked_add(leaf_len).ok_or(Error::Capacity)?;
    let mut w = Writer::new(out.get_mut(at..).ok_or(Error::Capacity)?);
    if params.last_resort {
        // One extension: type, empty data.
        let mut ext = [0u8; 3];
        ext[..2].copy_from_slice(&LAST_RESORT_EXTENSION.to_be_bytes());
        w.write_vec_varint(&ext)?;
    } else {
        w.write_vec_varint(&[])?;
    }
    let tbs_len = at.checked_add(w.finish()?).ok_or(Error::Capacity)?;
    let signature =
        sign_with_label(&signing, b"KeyPackageTBS", out.get(..tbs_len).ok_or(Error::Capacity)?, scratch)?;
    let mut w = Writer::new(out.get_mut(tbs_len..).ok_or(Error::Capacity)?);
    w.write_vec_varint(&signature)?;
    tbs_len.checked_add(w.finish()?).ok_or(Error::Capacity)
}

impl KeyPackage<'_> {
    /// Whether it carries the `last_resort` extension.
    pub fn is_last_resort(&self) -> Result<bool, Error> {
        Ok(crate::welcome::find_extension(self.extensions, LAST_RESORT_EXTENSION)?.is_some())
    }

    /// Validate a received KeyPackage before adding its member (§10.1,
    /// §7.3): [`verify`](Self::verify), then the leaf's lifetime must hold
    /// `now` (Unix seconds, the caller's clock), its credential must be
    /// basic (or, with feature `ml-dsa`, hybrid: both signatures of the
    /// leaf verified), and its capabilities must list version mls10, the
    /// KeyPackage's ciphersuite and the credential's type. `scratch` as for `verify`.
    /// A lifetime that does not hold `now` is [`Error::Expired`].
    pub fn validate(&self, now: u64, scratch: &mut [u8]) -> Result<(), Error> {
        self.verify(scratch)?;
        let leaf = &self.leaf_node;
        let LeafNodeSource::KeyPackage { not_before, not_after } = leaf.source else {
            return Err(Error::Malformed);
        };
        if now < not_before || now > not_after {
            return Err(Error::Expired);
        }
        // The credential's type, which the capabilities must list.
        let credential_type = match leaf.credential {
            Credential::Basic { .. } => 1,
            #[cfg(feature = "ml-dsa")]
            Credential::Hybrid(_) => crate::hybrid_credential::HYBRID_CREDENTIAL_TYPE,
            _ => return Err(Error::Unsupported),
        };
        let caps = &leaf.capabilities;
        if !caps.versions().any(|v| v == MLS10)
            || !caps.cipher_suites().any(|s| s == self.cipher_suite)
            || !caps.credentials().any(|c| c == credential_type)
        {
            return Err(Error::Unsupported);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use securemesh_core::crypto::{Dh, X25519};
    use securemesh_core::testing::TestRng;
    use std::vec;

    fn make(last_resort: bool) -> (std::vec::Vec<u8>, KeyPackageSecrets, Secret32) {
        let mut rng = TestRng::new(3);
        let sig = Ed25519::generate(&mut rng);
        let params = KeyPackageParams { identity: b"bob", not_before: 100, not_after: 200, last_resort };
        let mut out = vec![0u8; key_package_len(3)];
        let mut scratch = vec![0u8; 2 * out.len()];
        let (n, secrets) = create_key_package(&params, &sig, &mut rng, &mut out, &mut scratch).unwrap();
        out.truncate(n);
        (out, secrets, sig)
    }

    #[test]
    fn a_new_key_package_validates_within_its_lifetime_only() {
        let (kp, secrets, sig) = make(false);
        let parsed = KeyPackage::from_bytes(&kp).unwrap();
        let mut scratch = vec![0u8; 1024];
        parsed.validate(150, &mut scratch).unwrap();
        assert_eq!(parsed.validate(99, &mut scratch), Err(Error::Expired));
        assert_eq!(parsed.validate(201, &mut scratch), Err(Error::Expired));
        assert!(!parsed.is_last_resort().unwrap());
        assert_eq!(*parsed.init_key, X25519::public_key(&secrets.init_priv));
        assert_eq!(*parsed.leaf_node.encryption_key, X25519::public_key(&secrets.encryption_priv));
        assert_eq!(*parsed.leaf_node.signature_key, Ed25519::verifying_key(&Ed25519::signing_key(&sig)));
        assert_eq!(parsed.leaf_node.credential, Credential::Basic { identity: b"bob" });
    }

    #[test]
    fn last_resort_is_carried() {
        let (kp, _, _) = make(true);
        let parsed = KeyPackage::from_bytes(&kp).unwrap();
        assert!(parsed.is_last_resort().unwrap());
        parsed.validate(100, &mut vec![0u8; 1024]).unwrap();
    }

    #[test]
    fn every_byte_of_a_key_package_is_bound() {
        let (kp, _, _) = make(false);
        let mut scratch = vec![0u8; 1024];
        for i in 0..kp.len() {
            let mut bad = kp.clone();
            bad[i] ^= 0x01;
            let ok = KeyPackage::from_bytes(&bad).and_then(|p| p.validate(150, &mut scratch));
            assert!(ok.is_err(), "byte {i}");
        }
    }

    #[test]
    fn short_buffers_are_refused_before_any_randomness() {
        let mut rng = TestRng::new(3);
        let sig = Ed25519::generate(&mut rng);
        let params = KeyPackageParams { identity: b"bob", not_before: 0, not_after: 1, last_resort: false };
        let mut out = vec![0u8; 10];
        let mut scratch = vec![0u8; 1024];
        assert!(matches!(
            create_key_package(&params, &sig, &mut rng, &mut out, &mut scratch),
            Err(Error::BufferTooSmall { .. })
        ));
        let bad = KeyPackageParams { not_before: 2, ..params };
        let mut out = vec![0u8; key_package_len(3)];
        assert!(create_key_package(&bad, &sig, &mut rng, &mut out, &mut scratch).is_err());
    }
}
