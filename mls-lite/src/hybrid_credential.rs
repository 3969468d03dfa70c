//! Hybrid credentials: an ML-DSA-65 key in the member's credential and
//! an ML-DSA-65 signature on its leaf, beside the suite's Ed25519
//! signature (feature `ml-dsa`). Both signatures must verify.
//!
//! Everything here uses RFC 9420's extension points (§13), with code
//! points from the private-use ranges (0xF000–0xFFFF), so another MLS
//! implementation carries such leaves unchanged when its leaves list the
//! two types in their capabilities (§7.2, §13.4).
//!
//! ## Credential type [`HYBRID_CREDENTIAL_TYPE`] (0xF0A5)
//!
//! ```text
//! struct {
//!     opaque identity<V>;
//!     opaque ml_dsa_public_key[1952];   // FIPS 204 pkEncode, ML-DSA-65
//! } HybridCredential;
//! ```
//!
//! It sits in `Credential` (§5.3) as the `credential_type` 0xF0A5 arm,
//! as one `opaque credential_data<V>` (the form OpenMLS and mls-rs give a
//! credential type they do not know, so they carry it):
//! `credential_type u16 | <V>(identity<V> | ml_dsa_public_key[1952])`.
//! The Ed25519 key stays the leaf's `signature_key`.
//!
//! ## LeafNode extension [`ML_DSA_LEAF_SIGNATURE_EXTENSION`] (0xF0A6)
//!
//! `extension_data` is `opaque ml_dsa_signature[3309]`: the ML-DSA-65
//! signature (`ML-DSA.Sign`, FIPS 204 Algorithm 2, hedged) by the
//! credential's key, with the FIPS 204 context string
//! [`HYBRID_LEAF_CONTEXT`] (`"MLS 1.0 securemesh hybrid leaf"`, the
//! label, as `SignWithLabel` has it), over `HybridLeafTBS`:
//!
//! ```text
//! struct {
//!     HPKEPublicKey encryption_key;
//!     SignaturePublicKey signature_key;
//!     Credential credential;
//!     Capabilities capabilities;
//!     LeafNodeSource leaf_node_source;
//!     select (leaf_node_source) {
//!         case key_package: Lifetime lifetime;
//!         case update:      struct{};
//!         case commit:      opaque parent_hash<V>;
//!     };
//!     Extension other_extensions<V>;  // the leaf's extensions, in order,
//!                                     // without the 0xF0A6 one
//!     select (leaf_node_source) {
//!         case key_package: struct{};
//!         case update:      opaque group_id<V>; uint32 leaf_index;
//!         case commit:      opaque group_id<V>; uint32 leaf_index;
//!     };
//! } HybridLeafTBS;
//! ```
//!
//! i.e. `LeafNodeTBS` (§7.2) with the signature extension left out of
//! `extensions` (it cannot sign itself). The Ed25519 signature of the leaf
//! (`LeafNodeTBS`) covers the ML-DSA signature in turn.
//!
//! ## Rules
//!
//! A leaf whose credential is hybrid must (checked wherever a leaf is
//! verified, [`LeafNode::verify`]: KeyPackages, Add, Update, UpdatePath
//! leaves, the ratchet tree of a Welcome or GroupInfo, external joins):
//! list [`HYBRID_CREDENTIAL_TYPE`] in `capabilities.credentials` and
//! [`ML_DSA_LEAF_SIGNATURE_EXTENSION`] in `capabilities.extensions`
//! ([`Error::Unsupported`] otherwise), carry the extension exactly once,
//! and both signatures must verify ([`Error::BadSignature`] otherwise,
//! also for a missing extension). Leaves this crate writes list both the
//! basic and the hybrid credential types, so classical and hybrid members
//! can share a group.
//!
//! A group requires hybrid credentials of every member through the
//! `required_capabilities` GroupContext extension (RFC 9420 §11.1, type
//! 3) listing [`HYBRID_CREDENTIAL_TYPE`] in `credential_types`: every
//! leaf must then list each required type in its capabilities (RFC
//! 9420), and, the rule of this profile, use the hybrid credential
//! ([`check_required_capabilities`]). A commit, Welcome or external join
//! that leaves a leaf breaking this is refused with [`Error::Unsupported`].
//!
//! What the ML-DSA signature does not cover: a KeyPackage's `init_key`
//! and extensions (signed by the KeyPackage's Ed25519 signature only),
//! and handshake and application content (Ed25519 framing signatures).

use crate::error::Error;
use crate::tree::node::{Capabilities, LeafNode, LeafNodeSource};
use securemesh_core::codec::{Reader, Writer};
use securemesh_core::crypto::MlDsa65;

/// Credential type of [`HybridCredential`] (private use, RFC 9420 §17.1).
pub const HYBRID_CREDENTIAL_TYPE: u16 = 0xF0A5;
/// LeafNode extension type carrying the leaf's ML-DSA-65 signature
/// (private use, RFC 9420 §17.3).
pub const ML_DSA_LEAF_SIGNATURE_EXTENSION: u16 = 0xF0A6;
// Both code points are in the private-use range.
const _: () = assert!(HYBRID_CREDENTIAL_TYPE >= 0xF000 && ML_DSA_LEAF_SIGNATURE_EXTENSION >= 0xF000);
/// Extension type of `required_capabilities` (RFC 9420 §11.1).
pub const REQUIRED_CAPABILITIES_EXTENSION: u16 = 0x0003;
/// FIPS 204 context string of the leaf's ML-DSA signature (its label).
pub const HYBRID_LEAF_CONTEXT: &[u8] = b"MLS 1.0 securemesh hybrid leaf";
/// Length of an ML-DSA-65 public key.
pub const ML_DSA_PUBLIC_KEY_LEN: usize = MlDsa65::PUBLIC_KEY_LEN;
/// Length of an ML-DSA-65 signature.
pub const ML_DSA_SIGNATURE_LEN: usize = MlDsa65::SIG_LEN;
/// Most bytes a hybrid credential and the signature extension add to a
/// leaf of this crate (key, signature, their headers, the two types in
/// the capabilities).
pub const HYBRID_LEAF_OVERHEAD: usize = ML_DSA_PUBLIC_KEY_LEN + ML_DSA_SIGNATURE_LEN + 32;
/// `LEAF_BYTES` for a group of hybrid members: a hybrid leaf of a
/// 0x0003 or 0x004D (X-Wing) group with an identity of up to 256 bytes.
pub const HYBRID_LEAF_BYTES: usize = 384 + 1216 + HYBRID_LEAF_OVERHEAD + 256;

/// A hybrid credential: the identity and the member's ML-DSA-65 key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HybridCredential<'a> {
    /// The identity bytes (as a basic credential's).
    pub identity: &'a [u8],
    /// The ML-DSA-65 public key.
    pub ml_dsa_public_key: &'a [u8; ML_DSA_PUBLIC_KEY_LEN],
}

impl<'a> HybridCredential<'a> {
    /// Parse the body of a hybrid credential (after its
    /// `credential_type`): `credential_data<V>` holding exactly
    /// `identity<V> | ml_dsa_public_key[1952]`.
    ///
    /// ```
    /// use securemesh_core::codec::Reader;
    /// use securemesh_mls_lite::hybrid_credential::HybridCredential;
    /// // credential_data<V> of 1956 bytes (a 2-byte varint), identity<V>, key.
    /// let mut bytes = vec![0x47, 0xa4, 3, b'b', b'o', b'b'];
    /// bytes.extend_from_slice(&[7u8; 1952]);
    /// let c = HybridCredential::parse(&mut Reader::new(&bytes))?;
    /// assert_eq!(c.identity, b"bob");
    /// assert!(HybridCredential::parse(&mut Reader::new(&bytes[..100])).is_err());
    /// # Ok::<(), securemesh_mls_lite::Error>(())
    /// ```
    pub fn parse(r: &mut Reader<'a>) -> Result<Self, Error> {
        let mut data = Reader::new(r.read_vec_varint()?);
        let identity = data.read_vec_varint()?;
        let ml_dsa_public_key =
            data.read_bytes(ML_DSA_PUBLIC_KEY_LEN)?.try_into().map_err(|_| Error::Malformed)?;
        data.finish()?;
        Ok(HybridCredential { identity, ml_dsa_public_key })
    }

    /// Write the whole `Credential` (type and body).
    pub(crate) fn write(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        w.write_u16(HYBRID_CREDENTIAL_TYPE)?;
        let (v, n) = crate::crypto::varint(self.identity.len())?;
        let data_len = n.saturating_add(self.identity.len()).saturating_add(ML_DSA_PUBLIC_KEY_LEN);
        w.write_varint(u32::try_from(data_len).map_err(|_| Error::Capacity)?)?;
        w.write_bytes(v.get(..n).ok_or(Error::Capacity)?)?;
        w.write_bytes(self.identity)?;
        Ok(w.write_bytes(self.ml_dsa_public_key)?)
    }
}

/// Parse the data of a [`ML_DSA_LEAF_SIGNATURE_EXTENSION`]: exactly one
/// ML-DSA-65 signature.
///
/// ```
/// use securemesh_mls_lite::hybrid_credential::parse_leaf_signature;
/// assert!(parse_leaf_signature(&[0u8; 3309]).is_ok());
/// assert!(parse_leaf_signature(&[0u8; 3308]).is_err());
/// ```
pub fn parse_leaf_signature(data: &[u8]) -> Result<&[u8; ML_DSA_SIGNATURE_LEN], Error> {
    data.try_into().map_err(|_| Error::Malformed)
}

/// The entries of an `extensions<V>` body other than the ML-DSA leaf
/// signature, as their raw encodings, and how many of the latter there were.
fn other_extensions(body: &[u8], mut f: impl FnMut(&[u8]) -> Result<(), Error>) -> Result<usize, Error> {
    let mut r = Reader::new(body);
    let mut found = 0usize;
    while !r.is_empty() {
        let before = r.rest();
        let at = r.position();
        let ty = r.read_u16()?;
        r.read_vec_varint()?;
        let len = r.position().checked_sub(at).ok_or(Error::Malformed)?;
        if ty == ML_DSA_LEAF_SIGNATURE_EXTENSION {
            found = found.checked_add(1).ok_or(Error::Malformed)?;
        } else {
            f(before.get(..len).ok_or(Error::Malformed)?)?;
        }
    }
    Ok(found)
}

/// Write `extensions<V>`: the entries of `body` other than an ML-DSA leaf
/// signature, then (if given) the ML-DSA leaf signature `signature`.
pub(crate) fn write_extensions(
    w: &mut Writer<'_>,
    body: &[u8],
    signature: Option<&[u8; ML_DSA_SIGNATURE_LEN]>,
) -> Result<(), Error> {
    let mut len = 0usize;
    other_extensions(body, |e| {
        len = len.checked_add(e.len()).ok_or(Error::Capacity)?;
        Ok(())
    })?;
    if signature.is_some() {
        // type, the varint length (2 bytes for 3309), the signature.
        len = len.checked_add(2 + 2 + ML_DSA_SIGNATURE_LEN).ok_or(Error::Capacity)?;
    }
    w.write_varint(u32::try_from(len).map_err(|_| Error::Capacity)?)?;
    other_extensions(body, |e| Ok(w.write_bytes(e)?))?;
    if let Some(sig) = signature {
        w.write_u16(ML_DSA_LEAF_SIGNATURE_EXTENSION)?;
        w.write_vec_varint(sig)?;
    }
    Ok(())
}

/// Write `HybridLeafTBS` into `out` and return its length: `prefix` (the
/// leaf's encoding up to its `extensions`), the extensions of `extensions`
/// other than the ML-DSA signature, and for an update or commit source
/// `group_id<V> | leaf_index`.
pub(crate) fn write_hybrid_leaf_tbs(
    out: &mut [u8],
    prefix: &[u8],
    extensions: &[u8],
    source: &LeafNodeSource<'_>,
    group_id: &[u8],
    leaf_index: u32,
) -> Result<usize, Error> {
    let mut w = Writer::new(out);
    w.write_bytes(prefix)?;
    write_extensions(&mut w, extensions, None)?;
    if !matches!(source, LeafNodeSource::KeyPackage { .. }) {
        w.write_vec_varint(group_id)?;
        w.write_u32(leaf_index)?;
    }
    Ok(w.finish()?)
}

fn lists(caps: &Capabilities<'_>) -> bool {
    caps.credentials().any(|c| c == HYBRID_CREDENTIAL_TYPE)
        && caps.extensions().any(|e| e == ML_DSA_LEAF_SIGNATURE_EXTENSION)
}

/// The hybrid part of [`LeafNode::verify`]: for a leaf with a hybrid
/// credential, its capabilities list both types ([`Error::Unsupported`]
/// otherwise) and it carries exactly one ML-DSA signature that verifies
/// over `HybridLeafTBS` ([`Error::BadSignature`] otherwise). Other leaves
/// pass. `scratch` holds `HybridLeafTBS` (less than the leaf plus
/// `group_id.len()` plus 16 bytes).
pub(crate) fn verify_leaf(
    leaf: &LeafNode<'_>,
    group_id: &[u8],
    leaf_index: u32,
    scratch: &mut [u8],
) -> Result<(), Error> {
    let crate::tree::node::Credential::Hybrid(credential) = leaf.credential else { return Ok(()) };
    if !lists(&leaf.capabilities) {
        return Err(Error::Unsupported);
    }
    let mut signature = None;
    let mut count = 0usize;
    let mut r = Reader::new(leaf.extensions);
    while !r.is_empty() {
        let ty = r.read_u16()?;
        let data = r.read_vec_varint()?;
        if ty == ML_DSA_LEAF_SIGNATURE_EXTENSION {
            count = count.saturating_add(1);
            signature = Some(parse_leaf_signature(data).map_err(|_| Error::BadSignature)?);
        }
    }
    let (Some(signature), 1) = (signature, count) else { return Err(Error::BadSignature) };
    let n = write_hybrid_leaf_tbs(
        scratch,
        leaf.pre_extensions(),
        leaf.extensions,
        &leaf.source,
        group_id,
        leaf_index,
    )?;
    let tbs = scratch.get(..n).ok_or(Error::Capacity)?;
    let result = MlDsa65::verify(credential.ml_dsa_public_key, tbs, HYBRID_LEAF_CONTEXT, signature)
        .map_err(|_| Error::BadSignature);
    scratch.get_mut(..n).unwrap_or(&mut []).fill(0);
    result
}

/// The `required_capabilities` of GroupContext `extensions` (an
/// `extensions<V>` body), as the bodies of its three u16 lists:
/// extension, proposal and credential types. `None` without one.
fn required_capabilities(extensions: &[u8]) -> Result<Option<[&[u8]; 3]>, Error> {
    let Some(data) = crate::welcome::find_extension(extensions, REQUIRED_CAPABILITIES_EXTENSION)? else {
        return Ok(None);
    };
    let mut r = Reader::new(data);
    let mut lists = [&[][..]; 3];
    for l in &mut lists {
        *l = r.read_vec_varint()?;
        if l.len() % 2 != 0 {
            return Err(Error::Malformed);
        }
    }
    r.finish()?;
    Ok(Some(lists))
}

fn u16s(body: &[u8]) -> impl Iterator<Item = u16> + '_ {
    body.chunks_exact(2)
        .map(|c| u16::from_be_bytes([c.first().copied().unwrap_or(0), c.get(1).copied().unwrap_or(0)]))
}

/// Whether GroupContext `extensions` require hybrid credentials of every
/// member (`required_capabilities` lists [`HYBRID_CREDENTIAL_TYPE`]).
///
/// ```
/// use securemesh_mls_lite::hybrid_credential::{require_hybrid_extension, requires_hybrid};
/// let ext = require_hybrid_extension();
/// assert!(requires_hybrid(&ext)?);
/// assert!(!requires_hybrid(&[])?);
/// # Ok::<(), securemesh_mls_lite::Error>(())
/// ```
pub fn requires_hybrid(extensions: &[u8]) -> Result<bool, Error> {
    Ok(required_capabilities(extensions)?
        .is_some_and(|[_, _, c]| u16s(c).any(|t| t == HYBRID_CREDENTIAL_TYPE)))
}

/// GroupContext extensions (an `extensions<V>` body) that require hybrid
/// credentials: `required_capabilities` with no extension or proposal
/// type and the credential type [`HYBRID_CREDENTIAL_TYPE`], for
/// [`Group::create_into`](crate::Group::create_into) or a
/// GroupContextExtensions proposal.
pub const fn require_hybrid_extension() -> [u8; 8] {
    let t = HYBRID_CREDENTIAL_TYPE.to_be_bytes();
    // type 3 | data<V> of 5 bytes: extension_types<V> (empty) |
    // proposal_types<V> (empty) | credential_types<V> (2 bytes: the type)
    [0, 3, 5, 0, 0, 2, t[0], t[1]]
}

/// Check `leaf` against the `required_capabilities` of GroupContext
/// `extensions` (RFC 9420 §11.1): every required extension and proposal
/// type that is not a default one (§7.2), and every required credential
/// type, is listed in its capabilities; if the hybrid credential type is
/// required, the leaf's credential is hybrid. [`Error::Unsupported`]
/// otherwise.
pub fn check_required_capabilities(leaf: &LeafNode<'_>, extensions: &[u8]) -> Result<(), Error> {
    let Some([ext, prop, cred]) = required_capabilities(extensions)? else { return Ok(()) };
    let caps = &leaf.capabilities;
    let ok = u16s(ext).all(|t| (1..=5).contains(&t) || caps.extensions().any(|e| e == t))
        && u16s(prop).all(|t| (1..=7).contains(&t) || caps.proposals().any(|p| p == t))
        && u16s(cred).all(|t| caps.credentials().any(|c| c == t))
        && (!u16s(cred).any(|t| t == HYBRID_CREDENTIAL_TYPE)
            || matches!(leaf.credential, crate::tree::node::Credential::Hybrid(_)));
    if ok { Ok(()) } else { Err(Error::Unsupported) }
}

/// The ML-DSA-65 signer of a hybrid leaf: the seed, its public key (the
/// seed expanded once) and the caller's RNG for hedged signing.
pub(crate) struct MlDsaLeafSigner<'a, R: securemesh_core::CryptoRng + ?Sized> {
    seed: &'a crate::crypto::Secret32,
    public: [u8; ML_DSA_PUBLIC_KEY_LEN],
    rng: &'a mut R,
}

impl<'a, R: securemesh_core::CryptoRng + ?Sized> MlDsaLeafSigner<'a, R> {
    /// The signer of `seed`, drawing its hedging randomness from `rng`.
    pub(crate) fn new(seed: &'a crate::crypto::Secret32, rng: &'a mut R) -> Self {
        MlDsaLeafSigner { seed, public: MlDsa65::public_key(seed), rng }
    }
}

impl<R: securemesh_core::CryptoRng + ?Sized> crate::tree::node::HybridLeafSigner for MlDsaLeafSigner<'_, R> {
    fn ml_dsa_public_key(&self) -> &[u8] {
        &self.public
    }

    fn sign(&mut self, tbs: &[u8], signature: &mut [u8]) -> Result<(), Error> {
        let sig = MlDsa65::sign(self.seed, tbs, HYBRID_LEAF_CONTEXT, self.rng)?;
        signature.copy_from_slice(&sig);
        Ok(())
    }
}

impl<const L: usize, const B: usize, const G: usize, const E: usize> crate::Group<L, B, G, E> {
    /// Give the group our ML-DSA-65 seed, after [`create_into`](Self::create_into),
    /// [`join_into`](Self::join_into) or a restore from an older state: the
    /// key that re-signs our hybrid leaf in Updates and UpdatePaths. It
    /// must be the key of our leaf's hybrid credential: [`Error::Unsupported`]
    /// if our credential is not hybrid, [`Error::Malformed`] if the key
    /// is another (the group unchanged either way). Persisted with the
    /// state.
    pub fn set_ml_dsa_key(&mut self, seed: &crate::crypto::Secret32) -> Result<(), Error> {
        if !self.joined {
            return Err(Error::Malformed);
        }
        let leaf = self.tree.leaf(self.own_leaf).ok_or(Error::Malformed)?;
        let crate::tree::node::Credential::Hybrid(c) = leaf.credential else {
            return Err(Error::Unsupported);
        };
        if !securemesh_core::ct_eq(&MlDsa65::public_key(seed), c.ml_dsa_public_key) {
            return Err(Error::Malformed);
        }
        self.ml_dsa_private_key = Some(seed.duplicate());
        Ok(())
    }

    /// Whether we hold the ML-DSA-65 key of our hybrid credential.
    pub fn has_ml_dsa_key(&self) -> bool {
        self.ml_dsa_private_key.is_some()
    }

    /// Whether the group requires hybrid credentials of every member
    /// ([`requires_hybrid`] of its GroupContext extensions).
    pub fn requires_hybrid_credentials(&self) -> Result<bool, Error> {
        requires_hybrid(&self.extensions)
    }

    /// Every leaf of the tree meets the `required_capabilities` of the
    /// GroupContext extensions ([`check_required_capabilities`]).
    pub(crate) fn check_required_capabilities(&self) -> Result<(), Error> {
        if required_capabilities(&self.extensions)?.is_none() {
            return Ok(());
        }
        for i in 0..self.tree.leaf_count() {
            if let Some(leaf) = self.tree.leaf(i) {
                check_required_capabilities(&leaf, &self.extensions)?;
            }
        }
        Ok(())
    }
}
