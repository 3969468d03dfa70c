//! Zero-copy views of the tree's nodes (RFC 9420 §7.1–7.2): `LeafNode`
//! with its credential, capabilities and source, and `ParentNode`. Parsing
//! checks every length and value; a view keeps the exact bytes it was
//! parsed from, so re-encoding is byte-exact.

use crate::error::Error;
use securemesh_core::codec::Reader;

/// Length of an X25519 HPKE public key (suite 0x0003).
pub const HPKE_KEY_LEN: usize = 32;
/// Length of an Ed25519 public key.
pub const SIGNATURE_KEY_LEN: usize = 32;

/// A credential (§5.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Credential<'a> {
    /// `basic`: an opaque identity.
    Basic {
        /// The identity bytes.
        identity: &'a [u8],
    },
    /// `x509`: a chain of certificates, kept as its encoded vector body.
    X509 {
        /// The `certificates<V>` body.
        certificates: &'a [u8],
    },
    /// A hybrid credential: identity and ML-DSA-65 key (feature `ml-dsa`,
    /// [`crate::hybrid_credential`]).
    #[cfg(feature = "ml-dsa")]
    Hybrid(crate::hybrid_credential::HybridCredential<'a>),
}

impl<'a> Credential<'a> {
    /// The identity bytes of a basic credential (or, with feature
    /// `ml-dsa`, of a hybrid one); `None` for X.509.
    ///
    /// ```
    /// use securemesh_mls_lite::tree::node::Credential;
    /// assert_eq!(Credential::Basic { identity: b"bob" }.identity(), Some(&b"bob"[..]));
    /// assert_eq!(Credential::X509 { certificates: &[] }.identity(), None);
    /// ```
    pub fn identity(&self) -> Option<&'a [u8]> {
        match self {
            Credential::Basic { identity } => Some(identity),
            #[cfg(feature = "ml-dsa")]
            Credential::Hybrid(c) => Some(c.identity),
            Credential::X509 { .. } => None,
        }
    }

    fn parse(r: &mut Reader<'a>) -> Result<Self, Error> {
        match r.read_u16()? {
            1 => Ok(Credential::Basic { identity: r.read_vec_varint()? }),
            2 => {
                let certificates = r.read_vec_varint()?;
                // Each certificate is `opaque cert_data<V>`.
                let mut c = Reader::new(certificates);
                while !c.is_empty() {
                    c.read_vec_varint()?;
                }
                Ok(Credential::X509 { certificates })
            }
            #[cfg(feature = "ml-dsa")]
            crate::hybrid_credential::HYBRID_CREDENTIAL_TYPE => {
                Ok(Credential::Hybrid(crate::hybrid_credential::HybridCredential::parse(r)?))
            }
            _ => Err(Error::Unsupported),
        }
    }
}

/// Read a `T list<V>` of u16 values and return its body.
fn u16_list<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], Error> {
    let body = r.read_vec_varint()?;
    if body.len() % 2 != 0 {
        return Err(Error::Malformed);
    }
    Ok(body)
}

fn u16s(body: &[u8]) -> impl Iterator<Item = u16> + '_ {
    body.chunks_exact(2)
        .map(|c| u16::from_be_bytes([c.first().copied().unwrap_or(0), c.get(1).copied().unwrap_or(0)]))
}

/// Capabilities (§7.2), as the bodies of their u16 lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities<'a> {
    versions: &'a [u8],
    cipher_suites: &'a [u8],
    extensions: &'a [u8],
    proposals: &'a [u8],
    credentials: &'a [u8],
}

impl<'a> Capabilities<'a> {
    fn parse(r: &mut Reader<'a>) -> Result<Self, Error> {
        Ok(Capabilities {
            versions: u16_list(r)?,
            cipher_suites: u16_list(r)?,
            extensions: u16_list(r)?,
            proposals: u16_list(r)?,
            credentials: u16_list(r)?,
        })
    }

    /// Supported protocol versions.
    pub fn versions(&self) -> impl Iterator<Item = u16> + '_ {
        u16s(self.versions)
    }
    /// Supported ciphersuites.
    pub fn cipher_suites(&self) -> impl Iterator<Item = u16> + '_ {
        u16s(self.cipher_suites)
    }
    /// Supported extension types (beyond the defaults).
    pub fn extensions(&self) -> impl Iterator<Item = u16> + '_ {
        u16s(self.extensions)
    }
    /// Supported proposal types (beyond the defaults).
    pub fn proposals(&self) -> impl Iterator<Item = u16> + '_ {
        u16s(self.proposals)
    }
    /// Supported credential types.
    pub fn credentials(&self) -> impl Iterator<Item = u16> + '_ {
        u16s(self.credentials)
    }
}

/// Where a leaf node came from (§7.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeafNodeSource<'a> {
    /// In a KeyPackage, with its lifetime.
    KeyPackage {
        /// Not valid before (Unix seconds).
        not_before: u64,
        /// Not valid after (Unix seconds).
        not_after: u64,
    },
    /// In an Update proposal.
    Update,
    /// In a Commit's UpdatePath, with the parent hash it commits to.
    Commit {
        /// `parent_hash<V>`.
        parent_hash: &'a [u8],
    },
}

/// Check that an `Extension extensions<V>` body is well formed (type u16,
/// data<V>, no duplicate type) and return it.
pub(crate) fn extensions_body<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], Error> {
    let body = r.read_vec_varint()?;
    check_extensions(body)?;
    Ok(body)
}

/// Check that an `extensions<V>` body (without its length) is well formed:
/// type u16 and data<V> each, no duplicate type.
pub(crate) fn check_extensions(body: &[u8]) -> Result<(), Error> {
    let mut e = Reader::new(body);
    let mut seen: heapless::Vec<u16, 16> = heapless::Vec::new();
    while !e.is_empty() {
        let ty = e.read_u16()?;
        e.read_vec_varint()?;
        if seen.contains(&ty) {
            return Err(Error::Malformed);
        }
        seen.push(ty).map_err(|_| Error::Capacity)?;
    }
    Ok(())
}

/// A parsed `LeafNode`, borrowing the bytes it was parsed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeafNode<'a> {
    raw: &'a [u8],
    tbs_len: usize,
    /// HPKE public key (32 bytes; 1216 in suite 0x004D).
    pub encryption_key: &'a [u8],
    /// Ed25519 public key (32 bytes).
    pub signature_key: &'a [u8; SIGNATURE_KEY_LEN],
    /// The credential.
    pub credential: Credential<'a>,
    /// The capabilities.
    pub capabilities: Capabilities<'a>,
    /// The source.
    pub source: LeafNodeSource<'a>,
    /// The `extensions<V>` body.
    pub extensions: &'a [u8],
    /// The signature (64 bytes for Ed25519).
    pub signature: &'a [u8],
}

fn key32<'a>(r: &mut Reader<'a>) -> Result<&'a [u8; 32], Error> {
    r.read_vec_varint()?.try_into().map_err(|_| Error::Unsupported)
}

/// Read an `HPKEPublicKey<V>`: 32 bytes (X25519) or, with feature
/// `x-wing`, X-Wing's 1216; any other length is [`Error::Unsupported`].
pub(crate) fn hpke_key<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], Error> {
    let key = r.read_vec_varint()?;
    #[cfg(feature = "x-wing")]
    if key.len() == crate::crypto::xwing::NPK {
        return Ok(key);
    }
    if key.len() == HPKE_KEY_LEN { Ok(key) } else { Err(Error::Unsupported) }
}

impl<'a> LeafNode<'a> {
    /// Parse one `LeafNode` from `r`.
    pub fn parse(r: &mut Reader<'a>) -> Result<Self, Error> {
        let start = r.rest();
        let before = r.position();
        let encryption_key = hpke_key(r)?;
        let signature_key = key32(r)?;
        let credential = Credential::parse(r)?;
        let capabilities = Capabilities::parse(r)?;
        let source = match r.read_u8()? {
            1 => LeafNodeSource::KeyPackage { not_before: r.read_u64()?, not_after: r.read_u64()? },
            2 => LeafNodeSource::Update,
            3 => LeafNodeSource::Commit { parent_hash: r.read_vec_varint()? },
            _ => return Err(Error::Malformed),
        };
        let extensions = extensions_body(r)?;
        // A reader's position only moves forward.
        let tbs_len = r.position().checked_sub(before).ok_or(Error::Malformed)?;
        let signature = r.read_vec_varint()?;
        let len = r.position().checked_sub(before).ok_or(Error::Malformed)?;
        let raw = start.get(..len).ok_or(Error::Malformed)?;
        Ok(LeafNode {
            raw,
            tbs_len,
            encryption_key,
            signature_key,
            credential,
            capabilities,
            source,
            extensions,
            signature,
        })
    }

    /// Parse a whole buffer as one `LeafNode`.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes);
        let leaf = Self::parse(&mut r)?;
        r.finish()?;
        Ok(leaf)
    }

    /// The exact encoding.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// The encoding without the signature (the start of `LeafNodeTBS`).
    pub fn tbs_prefix(&self) -> &'a [u8] {
        self.raw.get(..self.tbs_len).unwrap_or(&[])
    }

    /// The encoding up to (without) `extensions<V>`.
    #[cfg_attr(not(feature = "ml-dsa"), allow(dead_code))]
    pub(crate) fn pre_extensions(&self) -> &'a [u8] {
        // `extensions<V>` ends the TBS prefix.
        let ext_field = crate::crypto::varint(self.extensions.len())
            .map_or(usize::MAX, |(_, n)| n.saturating_add(self.extensions.len()));
        let at = self.tbs_len.saturating_sub(ext_field);
        self.raw.get(..at).unwrap_or(&[])
    }

    /// Verify the leaf's signature over `LeafNodeTBS` (§7.2): for update
    /// and commit sources the group id and leaf index are appended.
    /// `scratch` is split in two halves, one for the TBS and one for the
    /// labelled content: `2 * (leaf size + group_id.len() + 48)` bytes are
    /// enough. With feature `ml-dsa`, a leaf with a hybrid credential must
    /// also carry a valid ML-DSA-65 signature by the credential's key
    /// (`hybrid_credential`): both must verify.
    pub fn verify(&self, group_id: &[u8], leaf_index: u32, scratch: &mut [u8]) -> Result<(), Error> {
        let sig: &[u8; 64] = self.signature.try_into().map_err(|_| Error::BadSignature)?;
        let (content, rest) = scratch.split_at_mut_checked(scratch.len() / 2).ok_or(Error::Capacity)?;
        let mut w = securemesh_core::codec::Writer::new(content);
        w.write_bytes(self.tbs_prefix())?;
        if !matches!(self.source, LeafNodeSource::KeyPackage { .. }) {
            w.write_vec_varint(group_id)?;
            w.write_u32(leaf_index)?;
        }
        let n = w.finish()?;
        let content = content.get(..n).ok_or(Error::Capacity)?;
        crate::crypto::verify_with_label(self.signature_key, b"LeafNodeTBS", content, sig, rest)?;
        #[cfg(feature = "ml-dsa")]
        crate::hybrid_credential::verify_leaf(self, group_id, leaf_index, scratch)?;
        Ok(())
    }
}

/// A parsed `ParentNode`, borrowing its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParentNode<'a> {
    /// HPKE public key.
    pub encryption_key: &'a [u8],
    /// `parent_hash<V>` (empty or 32 bytes).
    pub parent_hash: &'a [u8],
    unmerged: &'a [u8],
}

impl<'a> ParentNode<'a> {
    /// Parse one `ParentNode` from `r`.
    pub fn parse(r: &mut Reader<'a>) -> Result<Self, Error> {
        let encryption_key = hpke_key(r)?;
        let parent_hash = r.read_vec_varint()?;
        if !parent_hash.is_empty() && parent_hash.len() != crate::crypto::NH {
            return Err(Error::Malformed);
        }
        let unmerged = r.read_vec_varint()?;
        if unmerged.len() % 4 != 0 {
            return Err(Error::Malformed);
        }
        let p = ParentNode { encryption_key, parent_hash, unmerged };
        // Unmerged leaves are listed in increasing order, without repeats.
        let mut prev: Option<u32> = None;
        for l in p.unmerged_leaves() {
            if prev.is_some_and(|p| p >= l) {
                return Err(Error::Malformed);
            }
            prev = Some(l);
        }
        Ok(p)
    }

    /// The unmerged leaves.
    pub fn unmerged_leaves(&self) -> impl Iterator<Item = u32> + '_ {
        self.unmerged.chunks_exact(4).map(|c| {
            u32::from_be_bytes([
                c.first().copied().unwrap_or(0),
                c.get(1).copied().unwrap_or(0),
                c.get(2).copied().unwrap_or(0),
                c.get(3).copied().unwrap_or(0),
            ])
        })
    }
}

/// What a leaf node this member makes says (§7.2), for [`write_leaf_node`]:
/// a basic credential, the capabilities of this profile (version mls10,
/// ciphersuite 0x0003, basic credentials, no other extension or proposal
/// type), the source and the leaf's extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeafNodeParams<'a> {
    /// HPKE public key of the leaf.
    pub encryption_key: &'a [u8],
    /// The identity of the basic credential.
    pub identity: &'a [u8],
    /// The source: a KeyPackage (with its lifetime), an Update or a
    /// Commit (with the parent hash).
    pub source: LeafNodeSource<'a>,
    /// The `extensions<V>` body (usually empty).
    pub extensions: &'a [u8],
}

/// Encode and sign a `LeafNode` (§7.2) into `out`, returning its length:
/// the fields of `params`, the signature key of `signing`, and
/// `SignWithLabel(signing, "LeafNodeTBS", LeafNodeTBS)`, where the TBS of
/// an update or commit source ends with `group_id` and `leaf_index` (both
/// ignored for a KeyPackage source). `scratch` holds the labelled TBS: the
/// leaf plus `group_id.len()` plus 48 bytes.
///
/// ```
/// use securemesh_core::crypto::{Dh, Ed25519, Signature, X25519};
/// use securemesh_core::testing::TestRng;
/// use securemesh_mls_lite::tree::node::{LeafNode, LeafNodeParams, LeafNodeSource, write_leaf_node};
/// let mut rng = TestRng::new(1);
/// let signing = Ed25519::signing_key(&Ed25519::generate(&mut rng));
/// let encryption_key = X25519::public_key(&X25519::generate(&mut rng));
/// let params = LeafNodeParams {
///     encryption_key: &encryption_key,
///     identity: b"agent-7",
///     source: LeafNodeSource::Update,
///     extensions: &[],
/// };
/// let (mut out, mut scratch) = ([0u8; 256], [0u8; 512]);
/// let n = write_leaf_node(&mut out, &params, &signing, b"fleet", 3, &mut scratch)?;
/// let leaf = LeafNode::from_bytes(&out[..n])?;
/// leaf.verify(b"fleet", 3, &mut scratch)?;
/// assert!(leaf.verify(b"fleet", 4, &mut scratch).is_err());
/// # Ok::<(), securemesh_mls_lite::Error>(())
/// ```
pub fn write_leaf_node(
    out: &mut [u8],
    params: &LeafNodeParams<'_>,
    signing: &securemesh_core::crypto::Ed25519SigningKey,
    group_id: &[u8],
    leaf_index: u32,
    scratch: &mut [u8],
) -> Result<usize, Error> {
    write_leaf(out, params, signing, None, group_id, leaf_index, scratch)
}

/// The second signer of a hybrid leaf ([`crate::hybrid_credential`]):
/// its ML-DSA-65 public key and signing of `HybridLeafTBS`.
#[cfg_attr(not(feature = "ml-dsa"), allow(dead_code))]
pub(crate) trait HybridLeafSigner {
    /// The ML-DSA-65 public key (1952 bytes).
    fn ml_dsa_public_key(&self) -> &[u8];
    /// Sign `tbs` into `signature` (3309 bytes).
    fn sign(&mut self, tbs: &[u8], signature: &mut [u8]) -> Result<(), Error>;
}

/// [`write_leaf_node`], with a hybrid credential (and the ML-DSA
/// signature extension) when `hybrid` is given.
#[cfg_attr(not(feature = "ml-dsa"), allow(clippy::match_single_binding))]
pub(crate) fn write_leaf(
    out: &mut [u8],
    params: &LeafNodeParams<'_>,
    signing: &securemesh_core::crypto::Ed25519SigningKey,
    hybrid: Option<&mut dyn HybridLeafSigner>,
    group_id: &[u8],
    leaf_index: u32,
    scratch: &mut [u8],
) -> Result<usize, Error> {
    use securemesh_core::codec::Writer;
    use securemesh_core::crypto::{Ed25519, Signature};
    #[cfg(not(feature = "ml-dsa"))]
    if hybrid.is_some() {
        return Err(Error::Unsupported);
    }
    let verifying = Ed25519::verifying_key(signing);
    let mut w = Writer::new(out);
    w.write_vec_varint(params.encryption_key)?;
    w.write_vec_varint(&verifying)?;
    match &hybrid {
        #[cfg(feature = "ml-dsa")]
        Some(h) => {
            let ml_dsa_public_key = h.ml_dsa_public_key().try_into().map_err(|_| Error::Malformed)?;
            crate::hybrid_credential::HybridCredential { identity: params.identity, ml_dsa_public_key }
                .write(&mut w)?;
        }
        _ => {
            // Credential: basic (1), the identity.
            w.write_u16(1)?;
            w.write_vec_varint(params.identity)?;
        }
    }
    // Capabilities: mls10, suite 3, no extensions or proposals, basic
    // (a hybrid leaf: its extension type, basic and hybrid credentials).
    w.write_vec_varint(&crate::messages::MLS10.to_be_bytes())?;
    // The one suite the leaf supports: the suite of its key.
    let suite = crate::crypto::suite::Suite::of_hpke_public_len(params.encryption_key.len())?;
    w.write_vec_varint(&suite.id().to_be_bytes())?;
    match &hybrid {
        #[cfg(feature = "ml-dsa")]
        Some(_) => {
            use crate::hybrid_credential::{HYBRID_CREDENTIAL_TYPE, ML_DSA_LEAF_SIGNATURE_EXTENSION};
            w.write_vec_varint(&ML_DSA_LEAF_SIGNATURE_EXTENSION.to_be_bytes())?;
            w.write_vec_varint(&[])?;
            let [a, b] = HYBRID_CREDENTIAL_TYPE.to_be_bytes();
            w.write_vec_varint(&[0, 1, a, b])?;
        }
        _ => {
            w.write_vec_varint(&[])?;
            w.write_vec_varint(&[])?;
            w.write_vec_varint(&1u16.to_be_bytes())?;
        }
    }
    match params.source {
        LeafNodeSource::KeyPackage { not_before, not_after } => {
            w.write_u8(1)?;
            w.write_u64(not_before)?;
            w.write_u64(not_after)?;
        }
        LeafNodeSource::Update => w.write_u8(2)?,
        LeafNodeSource::Commit { parent_hash } => {
            w.write_u8(3)?;
            w.write_vec_varint(parent_hash)?;
        }
    }
    let tbs_len = match hybrid {
        #[cfg(feature = "ml-dsa")]
        Some(h) => {
            // HybridLeafTBS in scratch, its ML-DSA signature in the
            // extensions.
            let prefix_len = w.finish()?;
            let prefix = out.get(..prefix_len).ok_or(Error::Capacity)?;
            let n = crate::hybrid_credential::write_hybrid_leaf_tbs(
                scratch,
                prefix,
                params.extensions,
                &params.source,
                group_id,
                leaf_index,
            )?;
            let mut signature = [0u8; crate::hybrid_credential::ML_DSA_SIGNATURE_LEN];
            h.sign(scratch.get(..n).ok_or(Error::Capacity)?, &mut signature)?;
            let mut w = Writer::new(out.get_mut(prefix_len..).ok_or(Error::Capacity)?);
            crate::hybrid_credential::write_extensions(&mut w, params.extensions, Some(&signature))?;
            prefix_len.checked_add(w.finish()?).ok_or(Error::Capacity)?
        }
        _ => {
            w.write_vec_varint(params.extensions)?;
            w.finish()?
        }
    };
    let (tbs_and_sig, _) = out.split_at_mut_checked(tbs_len).ok_or(Error::Capacity)?;
    let tbs_needed =
        tbs_len.checked_add(group_id.len()).and_then(|n| n.checked_add(8)).ok_or(Error::Capacity)?;
    let (content, rest) =
        scratch.split_at_mut_checked(tbs_needed).ok_or(Error::BufferTooSmall { needed: tbs_needed })?;
    let mut c = Writer::new(content);
    c.write_bytes(tbs_and_sig)?;
    if !matches!(params.source, LeafNodeSource::KeyPackage { .. }) {
        c.write_vec_varint(group_id)?;
        c.write_u32(leaf_index)?;
    }
    let n = c.finish()?;
    let signature = crate::crypto::sign_with_label(
        signing,
        b"LeafNodeTBS",
        content.get(..n).ok_or(Error::Capacity)?,
        rest,
    )?;
    let needed = tbs_len.checked_add(65).ok_or(Error::Capacity)?;
    let mut w = Writer::new(out.get_mut(tbs_len..).ok_or(Error::BufferTooSmall { needed })?);
    w.write_vec_varint(&signature)?;
    tbs_len.checked_add(w.finish()?).ok_or(Error::Capacity)
}
