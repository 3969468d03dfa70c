//! Zero-copy views of the MLS messages (RFC 9420): `KeyPackage` (§10),
//! the proposals and `ProposalOrRef` (§12.1), `Commit` (§12.4),
//! `PreSharedKeyID` (§8.4), `GroupInfo` (§12.4.3), `GroupSecrets` and
//! `Welcome` (§12.4.3.1), and the `WireFormat` of the `MLSMessage`
//! envelope (§6; the envelope itself is [`crate::mls_message`]).
//!
//! Every view borrows the bytes it was parsed from, checks every length and
//! enumerated value while parsing, and keeps its exact encoding
//! ([`KeyPackage::as_bytes`] …), so forwarding or hashing a parsed object is
//! byte-exact. Each view can also write itself field by field
//! (`write_to`), which the conformance run uses to prove that nothing was
//! lost in parsing.
//!
//! Values the protocol registers in extensible IANA registries (protocol
//! version, ciphersuite, wire format, proposal type) that this profile does
//! not know are [`Error::Unsupported`]; values outside a closed
//! enumeration (sender type, PSK type, `optional` presence byte …) are
//! [`Error::Malformed`].

use crate::crypto::{self, NH};
use crate::error::Error;
use crate::key_schedule::GroupContext;
use crate::tree::node::{LeafNode, extensions_body};
use crate::treekem::UpdatePath;
use securemesh_core::codec::{Reader, Writer};

/// `ProtocolVersion mls10`.
pub const MLS10: u16 = 1;

/// Label of a KeyPackage reference (`RefHash`, §5.2).
pub const KEY_PACKAGE_REF_LABEL: &[u8] = b"MLS 1.0 KeyPackage Reference";
/// Label of a proposal reference (`RefHash`, §5.2).
pub const PROPOSAL_REF_LABEL: &[u8] = b"MLS 1.0 Proposal Reference";

// ---------------------------------------------------------------------------
// Parsing and writing helpers shared with `framing`.

/// Run `f` on `r` and return the bytes it consumed with its result; on
/// error the reader is rewound (all-or-nothing, like every `Reader` read).
pub(crate) fn parse_raw<'a, T>(
    r: &mut Reader<'a>,
    f: impl FnOnce(&mut Reader<'a>) -> Result<T, Error>,
) -> Result<(&'a [u8], T), Error> {
    let saved = r.clone();
    let start = r.rest();
    let before = r.position();
    let out = f(r).and_then(|v| {
        let len = r.position().saturating_sub(before);
        start.get(..len).map(|raw| (raw, v)).ok_or(Error::Malformed)
    });
    if out.is_err() {
        *r = saved;
    }
    out
}

/// Parse all of `bytes` with `f`; trailing bytes are an error.
pub(crate) fn parse_all<'a, T>(
    bytes: &'a [u8],
    f: impl FnOnce(&mut Reader<'a>) -> Result<T, Error>,
) -> Result<T, Error> {
    let mut r = Reader::new(bytes);
    let v = f(&mut r)?;
    r.finish()?;
    Ok(v)
}

/// The presence byte of `optional<T>` (§2.1.2 of the TLS presentation
/// language as used by MLS).
pub(crate) fn read_optional(r: &mut Reader<'_>) -> Result<bool, Error> {
    match r.read_u8()? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(Error::Malformed),
    }
}

/// Number of bytes `f` writes.
pub(crate) fn encoded_len(f: impl FnOnce(&mut Writer<'_>) -> Result<(), Error>) -> Result<usize, Error> {
    let mut empty: [u8; 0] = [];
    let mut w = Writer::new(&mut empty);
    f(&mut w)?;
    Ok(w.len())
}

/// Write a `<V>` vector whose contents `f` writes (run twice: once to
/// count, once to write).
pub(crate) fn write_vec_with(
    w: &mut Writer<'_>,
    f: impl Fn(&mut Writer<'_>) -> Result<(), Error>,
) -> Result<(), Error> {
    let n = encoded_len(&f)?;
    w.write_varint(u32::try_from(n).map_err(|_| Error::Capacity)?)?;
    f(w)
}

/// Iterate over the items of a vector body already checked at parse time.
/// Stops after the first error.
pub(crate) fn items<'a, T: 'a>(
    body: &'a [u8],
    parse: fn(&mut Reader<'a>) -> Result<T, Error>,
) -> impl Iterator<Item = Result<T, Error>> + 'a {
    let mut r = Reader::new(body);
    let mut failed = false;
    core::iter::from_fn(move || {
        if failed || r.is_empty() {
            return None;
        }
        let item = parse(&mut r);
        failed = item.is_err();
        Some(item)
    })
}

/// Check that every item of a vector body parses.
fn check_items<'a, T: 'a>(
    body: &'a [u8],
    parse: fn(&mut Reader<'a>) -> Result<T, Error>,
) -> Result<(), Error> {
    for item in items(body, parse) {
        item?;
    }
    Ok(())
}

/// Parse a `GroupContext` (§8.1). Protocol version and ciphersuite must be
/// mls10 and 0x0003 ([`Error::Unsupported`] otherwise), so
/// [`GroupContext::encode`] reproduces the input exactly.
pub fn parse_group_context<'a>(r: &mut Reader<'a>) -> Result<GroupContext<'a>, Error> {
    let (_, gc) = parse_raw(r, |r| {
        let version = r.read_u16()?;
        let suite = r.read_u16()?;
        if version != MLS10 {
            return Err(Error::Unsupported);
        }
        let cipher_suite = crate::crypto::suite::Suite::from_id(suite)?.id();
        let group_id = r.read_vec_varint()?;
        let epoch = r.read_u64()?;
        let tree_hash = r.read_vec_varint()?;
        let confirmed_transcript_hash = r.read_vec_varint()?;
        let extensions = extensions_body(r)?;
        Ok(GroupContext { cipher_suite, group_id, epoch, tree_hash, confirmed_transcript_hash, extensions })
    })?;
    Ok(gc)
}

/// Pass the encoding of `gc` to `f` in pieces (for hashing and signing
/// without a buffer).
pub(crate) fn group_context_parts(
    gc: &GroupContext<'_>,
    f: &mut dyn FnMut(&[u8]) -> Result<(), Error>,
) -> Result<(), Error> {
    f(&MLS10.to_be_bytes())?;
    f(&gc.cipher_suite.to_be_bytes())?;
    vec_part(gc.group_id, f)?;
    f(&gc.epoch.to_be_bytes())?;
    vec_part(gc.tree_hash, f)?;
    vec_part(gc.confirmed_transcript_hash, f)?;
    vec_part(gc.extensions, f)
}

/// `bytes<V>` in two pieces.
pub(crate) fn vec_part(bytes: &[u8], f: &mut dyn FnMut(&[u8]) -> Result<(), Error>) -> Result<(), Error> {
    let (v, n) = crypto::varint(bytes.len())?;
    f(v.get(..n).unwrap_or(&[]))?;
    f(bytes)
}

fn write_group_context(w: &mut Writer<'_>, gc: &GroupContext<'_>) -> Result<(), Error> {
    group_context_parts(gc, &mut |p| Ok(w.write_bytes(p)?))
}

// ---------------------------------------------------------------------------
// KeyPackage (§10).

/// A parsed `KeyPackage`:
///
/// ```text
/// struct {
///     ProtocolVersion version;
///     CipherSuite cipher_suite;
///     HPKEPublicKey init_key;
///     LeafNode leaf_node;
///     Extension extensions<V>;
///     opaque signature<V>;   /* SignWithLabel(., "KeyPackageTBS", KeyPackageTBS) */
/// } KeyPackage;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyPackage<'a> {
    raw: &'a [u8],
    tbs_len: usize,
    /// Protocol version (always mls10 here).
    pub version: u16,
    /// Ciphersuite (always 0x0003 here).
    pub cipher_suite: u16,
    /// HPKE public key for the Welcome (32 bytes; 1216 in suite 0x004D).
    pub init_key: &'a [u8],
    /// The member's leaf node (source `key_package`).
    pub leaf_node: LeafNode<'a>,
    /// The `extensions<V>` body.
    pub extensions: &'a [u8],
    /// The signature by `leaf_node.signature_key`.
    pub signature: &'a [u8],
}

impl<'a> KeyPackage<'a> {
    /// Parse one `KeyPackage` from `r`. Another version or ciphersuite
    /// than this profile's is [`Error::Unsupported`].
    pub fn parse(r: &mut Reader<'a>) -> Result<Self, Error> {
        let start = r.position();
        let (raw, (kp_fields, tbs_len)) = parse_raw(r, |r| {
            let version = r.read_u16()?;
            let cipher_suite = r.read_u16()?;
            if version != MLS10 {
                return Err(Error::Unsupported);
            }
            let suite = crate::crypto::suite::Suite::from_id(cipher_suite)?;
            let init_key = crate::tree::node::hpke_key(r)?;
            let leaf_node = LeafNode::parse(r)?;
            if init_key.len() != suite.hpke_public_len()
                || leaf_node.encryption_key.len() != suite.hpke_public_len()
            {
                return Err(Error::Unsupported);
            }
            let extensions = extensions_body(r)?;
            let tbs_len = r.position().saturating_sub(start);
            let signature = r.read_vec_varint()?;
            Ok(((version, cipher_suite, init_key, leaf_node, extensions, signature), tbs_len))
        })?;
        let (version, cipher_suite, init_key, leaf_node, extensions, signature) = kp_fields;
        Ok(KeyPackage { raw, tbs_len, version, cipher_suite, init_key, leaf_node, extensions, signature })
    }

    /// Parse a whole buffer as one `KeyPackage`.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, Error> {
        parse_all(bytes, Self::parse)
    }

    /// The exact encoding.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// The `KeyPackageTBS` (the encoding without the signature).
    pub fn tbs(&self) -> &'a [u8] {
        self.raw.get(..self.tbs_len).unwrap_or(&[])
    }

    /// Write the encoding field by field.
    pub fn write_to(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        w.write_u16(self.version)?;
        w.write_u16(self.cipher_suite)?;
        w.write_vec_varint(self.init_key)?;
        w.write_bytes(self.leaf_node.as_bytes())?;
        w.write_vec_varint(self.extensions)?;
        Ok(w.write_vec_varint(self.signature)?)
    }

    /// `KeyPackageRef = RefHash("MLS 1.0 KeyPackage Reference", KeyPackage)`.
    pub fn reference(&self) -> Result<[u8; NH], Error> {
        crypto::ref_hash(KEY_PACKAGE_REF_LABEL, self.raw)
    }

    /// Verify the KeyPackage as §10.1 asks: its signature over
    /// `KeyPackageTBS` by the leaf's signature key, the leaf node's own
    /// signature and `key_package` source, and `init_key` distinct from the
    /// leaf's encryption key. Lifetime and capability checks are the
    /// caller's policy. `scratch` must hold twice the KeyPackage plus 100
    /// bytes.
    pub fn verify(&self, scratch: &mut [u8]) -> Result<(), Error> {
        if !matches!(self.leaf_node.source, crate::tree::node::LeafNodeSource::KeyPackage { .. }) {
            return Err(Error::Malformed);
        }
        if self.init_key == self.leaf_node.encryption_key {
            return Err(Error::Malformed);
        }
        self.leaf_node.verify(&[], 0, scratch)?;
        let sig: &[u8; 64] = self.signature.try_into().map_err(|_| Error::BadSignature)?;
        crypto::verify_with_label(self.leaf_node.signature_key, b"KeyPackageTBS", self.tbs(), sig, scratch)
    }
}

// ---------------------------------------------------------------------------
// PreSharedKeyID (§8.4).

/// `ResumptionPSKUsage`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResumptionPskUsage {
    /// `application(1)`.
    Application,
    /// `reinit(2)`.
    Reinit,
    /// `branch(3)`.
    Branch,
}

impl ResumptionPskUsage {
    fn from_u8(v: u8) -> Result<Self, Error> {
        match v {
            1 => Ok(Self::Application),
            2 => Ok(Self::Reinit),
            3 => Ok(Self::Branch),
            _ => Err(Error::Malformed),
        }
    }

    /// The wire value.
    pub fn to_u8(self) -> u8 {
        match self {
            Self::Application => 1,
            Self::Reinit => 2,
            Self::Branch => 3,
        }
    }
}

/// Which PSK a `PreSharedKeyID` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Psk<'a> {
    /// `external(1)`: an application-provisioned PSK.
    External {
        /// `psk_id<V>`.
        psk_id: &'a [u8],
    },
    /// `resumption(2)`: the resumption PSK of an epoch of a group.
    Resumption {
        /// The usage.
        usage: ResumptionPskUsage,
        /// `psk_group_id<V>`.
        psk_group_id: &'a [u8],
        /// `psk_epoch`.
        psk_epoch: u64,
    },
}

/// A parsed `PreSharedKeyID`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PreSharedKeyId<'a> {
    raw: &'a [u8],
    /// The PSK named.
    pub psk: Psk<'a>,
    /// `psk_nonce<V>` (must be `Nh` bytes when the PSK is used, §8.4).
    pub psk_nonce: &'a [u8],
}

impl<'a> PreSharedKeyId<'a> {
    /// Parse one `PreSharedKeyID`.
    pub fn parse(r: &mut Reader<'a>) -> Result<Self, Error> {
        let (raw, (psk, psk_nonce)) = parse_raw(r, |r| {
            let psk = match r.read_u8()? {
                1 => Psk::External { psk_id: r.read_vec_varint()? },
                2 => {
                    let usage = ResumptionPskUsage::from_u8(r.read_u8()?)?;
                    Psk::Resumption { usage, psk_group_id: r.read_vec_varint()?, psk_epoch: r.read_u64()? }
                }
                _ => return Err(Error::Malformed),
            };
            Ok((psk, r.read_vec_varint()?))
        })?;
        Ok(PreSharedKeyId { raw, psk, psk_nonce })
    }

    /// Parse a whole buffer.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, Error> {
        parse_all(bytes, Self::parse)
    }

    /// The exact encoding (what `key_schedule::PskInput::id` takes).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// Write the encoding field by field.
    pub fn write_to(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        self.psk.write_to(w, self.psk_nonce)
    }
}

impl Psk<'_> {
    /// Write the `PreSharedKeyID` that names this PSK with `psk_nonce`.
    pub fn write_to(&self, w: &mut Writer<'_>, psk_nonce: &[u8]) -> Result<(), Error> {
        match *self {
            Psk::External { psk_id } => {
                w.write_u8(1)?;
                w.write_vec_varint(psk_id)?;
            }
            Psk::Resumption { usage, psk_group_id, psk_epoch } => {
                w.write_u8(2)?;
                w.write_u8(usage.to_u8())?;
                w.write_vec_varint(psk_group_id)?;
                w.write_u64(psk_epoch)?;
            }
        }
        Ok(w.write_vec_varint(psk_nonce)?)
    }
}

// ---------------------------------------------------------------------------
// Proposals (§12.1).

/// `ProposalType` values of RFC 9420.
pub mod proposal_type {
    /// `add`.
    pub const ADD: u16 = 1;
    /// `update`.
    pub const UPDATE: u16 = 2;
    /// `remove`.
    pub const REMOVE: u16 = 3;
    /// `psk`.
    pub const PSK: u16 = 4;
    /// `reinit`.
    pub const REINIT: u16 = 5;
    /// `external_init`.
    pub const EXTERNAL_INIT: u16 = 6;
    /// `group_context_extensions`.
    pub const GROUP_CONTEXT_EXTENSIONS: u16 = 7;
}

/// A parsed `ReInit` proposal body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReInit<'a> {
    raw: &'a [u8],
    /// `group_id<V>` of the new group.
    pub group_id: &'a [u8],
    /// Protocol version of the new group.
    pub version: u16,
    /// Ciphersuite of the new group (any value: it names the target).
    pub cipher_suite: u16,
    /// The `extensions<V>` body.
    pub extensions: &'a [u8],
}

impl<'a> ReInit<'a> {
    /// Parse a `ReInit`.
    pub fn parse(r: &mut Reader<'a>) -> Result<Self, Error> {
        let (raw, (group_id, version, cipher_suite, extensions)) = parse_raw(r, |r| {
            let group_id = r.read_vec_varint()?;
            let version = r.read_u16()?;
            let cipher_suite = r.read_u16()?;
            Ok((group_id, version, cipher_suite, extensions_body(r)?))
        })?;
        Ok(ReInit { raw, group_id, version, cipher_suite, extensions })
    }

    /// The exact encoding.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }
}

/// The body of a proposal, by type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProposalBody<'a> {
    /// `Add { KeyPackage key_package; }`.
    Add(KeyPackage<'a>),
    /// `Update { LeafNode leaf_node; }`.
    Update(LeafNode<'a>),
    /// `Remove { uint32 removed; }`.
    Remove {
        /// Leaf index of the member to remove.
        removed: u32,
    },
    /// `PreSharedKey { PreSharedKeyID psk; }`.
    PreSharedKey(PreSharedKeyId<'a>),
    /// `ReInit`.
    ReInit(ReInit<'a>),
    /// `ExternalInit { opaque kem_output<V>; }`.
    ExternalInit {
        /// The HPKE KEM output.
        kem_output: &'a [u8],
    },
    /// `GroupContextExtensions { Extension extensions<V>; }`.
    GroupContextExtensions {
        /// The `extensions<V>` body.
        extensions: &'a [u8],
    },
}

impl<'a> ProposalBody<'a> {
    /// Parse the body of a proposal of type `ty` (the type itself
    /// not included). An unknown type is [`Error::Unsupported`] (its body
    /// has no length, so it cannot be skipped); the reserved 0 is
    /// [`Error::Malformed`].
    pub fn parse(ty: u16, r: &mut Reader<'a>) -> Result<Self, Error> {
        use self::proposal_type as t;
        Ok(match ty {
            t::ADD => ProposalBody::Add(KeyPackage::parse(r)?),
            t::UPDATE => ProposalBody::Update(LeafNode::parse(r)?),
            t::REMOVE => ProposalBody::Remove { removed: r.read_u32()? },
            t::PSK => ProposalBody::PreSharedKey(PreSharedKeyId::parse(r)?),
            t::REINIT => ProposalBody::ReInit(ReInit::parse(r)?),
            t::EXTERNAL_INIT => ProposalBody::ExternalInit { kem_output: r.read_vec_varint()? },
            t::GROUP_CONTEXT_EXTENSIONS => {
                ProposalBody::GroupContextExtensions { extensions: extensions_body(r)? }
            }
            0 => return Err(Error::Malformed),
            _ => return Err(Error::Unsupported),
        })
    }

    /// Parse a whole buffer as the body of a proposal of type `ty`.
    pub fn from_bytes(ty: u16, bytes: &'a [u8]) -> Result<Self, Error> {
        parse_all(bytes, |r| Self::parse(ty, r))
    }

    /// The proposal type.
    pub fn proposal_type(&self) -> u16 {
        use self::proposal_type as t;
        match self {
            ProposalBody::Add(_) => t::ADD,
            ProposalBody::Update(_) => t::UPDATE,
            ProposalBody::Remove { .. } => t::REMOVE,
            ProposalBody::PreSharedKey(_) => t::PSK,
            ProposalBody::ReInit(_) => t::REINIT,
            ProposalBody::ExternalInit { .. } => t::EXTERNAL_INIT,
            ProposalBody::GroupContextExtensions { .. } => t::GROUP_CONTEXT_EXTENSIONS,
        }
    }

    /// Write the body field by field.
    pub fn write_to(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        match self {
            ProposalBody::Add(kp) => kp.write_to(w),
            ProposalBody::Update(leaf) => Ok(w.write_bytes(leaf.as_bytes())?),
            ProposalBody::Remove { removed } => Ok(w.write_u32(*removed)?),
            ProposalBody::PreSharedKey(psk) => psk.write_to(w),
            ProposalBody::ReInit(ri) => {
                w.write_vec_varint(ri.group_id)?;
                w.write_u16(ri.version)?;
                w.write_u16(ri.cipher_suite)?;
                Ok(w.write_vec_varint(ri.extensions)?)
            }
            ProposalBody::ExternalInit { kem_output } => Ok(w.write_vec_varint(kem_output)?),
            ProposalBody::GroupContextExtensions { extensions } => Ok(w.write_vec_varint(extensions)?),
        }
    }
}

/// A parsed `Proposal` (`ProposalType proposal_type` and its body).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proposal<'a> {
    raw: &'a [u8],
    /// The body.
    pub body: ProposalBody<'a>,
}

impl<'a> Proposal<'a> {
    /// Parse one `Proposal`.
    pub fn parse(r: &mut Reader<'a>) -> Result<Self, Error> {
        let (raw, body) = parse_raw(r, |r| {
            let ty = r.read_u16()?;
            ProposalBody::parse(ty, r)
        })?;
        Ok(Proposal { raw, body })
    }

    /// Parse a whole buffer.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, Error> {
        parse_all(bytes, Self::parse)
    }

    /// The exact encoding.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// The proposal type.
    pub fn proposal_type(&self) -> u16 {
        self.body.proposal_type()
    }

    /// Write the encoding field by field. (A `ProposalRef` is computed over
    /// the whole `AuthenticatedContent` that carried the proposal: see
    /// [`crate::framing::AuthenticatedContent::proposal_ref`].)
    pub fn write_to(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        w.write_u16(self.proposal_type())?;
        self.body.write_to(w)
    }
}

/// A parsed `ProposalOrRef`.
// Views are short-lived stack values and there is no heap to box into: the
// size difference between variants is accepted.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProposalOrRef<'a> {
    /// `proposal(1)`: the proposal inline.
    Proposal {
        /// The exact encoding, type byte included.
        raw: &'a [u8],
        /// The proposal.
        proposal: Proposal<'a>,
    },
    /// `reference(2)`: a `ProposalRef` to a proposal sent before.
    Reference {
        /// The exact encoding, type byte included.
        raw: &'a [u8],
        /// The reference (`Nh` bytes).
        reference: &'a [u8],
    },
}

impl<'a> ProposalOrRef<'a> {
    /// Parse one `ProposalOrRef`. A reference must be `Nh` bytes.
    pub fn parse(r: &mut Reader<'a>) -> Result<Self, Error> {
        let (raw, v) = parse_raw(r, |r| match r.read_u8()? {
            1 => Ok(Ok(Proposal::parse(r)?)),
            2 => {
                let reference = r.read_vec_varint()?;
                if reference.len() != NH {
                    return Err(Error::Malformed);
                }
                Ok(Err(reference))
            }
            _ => Err(Error::Malformed),
        })?;
        Ok(match v {
            Ok(proposal) => ProposalOrRef::Proposal { raw, proposal },
            Err(reference) => ProposalOrRef::Reference { raw, reference },
        })
    }

    /// The exact encoding.
    pub fn as_bytes(&self) -> &'a [u8] {
        match self {
            ProposalOrRef::Proposal { raw, .. } | ProposalOrRef::Reference { raw, .. } => raw,
        }
    }

    /// Write the encoding field by field.
    pub fn write_to(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        match self {
            ProposalOrRef::Proposal { proposal, .. } => {
                w.write_u8(1)?;
                proposal.write_to(w)
            }
            ProposalOrRef::Reference { reference, .. } => {
                w.write_u8(2)?;
                Ok(w.write_vec_varint(reference)?)
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Commit (§12.4).

/// A parsed `Commit`:
///
/// ```text
/// struct {
///     ProposalOrRef proposals<V>;
///     optional<UpdatePath> path;
/// } Commit;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Commit<'a> {
    raw: &'a [u8],
    proposals: &'a [u8],
    /// The committer's UpdatePath, if any.
    pub path: Option<UpdatePath<'a>>,
}

impl<'a> Commit<'a> {
    /// Parse one `Commit`; every proposal is checked.
    pub fn parse(r: &mut Reader<'a>) -> Result<Self, Error> {
        let (raw, (proposals, path)) = parse_raw(r, |r| {
            let proposals = r.read_vec_varint()?;
            check_items(proposals, ProposalOrRef::parse)?;
            let path = if read_optional(r)? { Some(UpdatePath::parse(r)?) } else { None };
            Ok((proposals, path))
        })?;
        Ok(Commit { raw, proposals, path })
    }

    /// Parse a whole buffer.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, Error> {
        parse_all(bytes, Self::parse)
    }

    /// The exact encoding.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// The proposals, in order.
    pub fn proposals(&self) -> impl Iterator<Item = Result<ProposalOrRef<'a>, Error>> + 'a {
        items(self.proposals, ProposalOrRef::parse)
    }

    /// Write the encoding field by field (the UpdatePath too).
    pub fn write_to(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        write_vec_with(w, |w| {
            for p in self.proposals() {
                p?.write_to(w)?;
            }
            Ok(())
        })?;
        match &self.path {
            None => Ok(w.write_u8(0)?),
            Some(path) => {
                w.write_u8(1)?;
                write_update_path(w, path)
            }
        }
    }
}

/// Write an `UpdatePath` field by field.
pub fn write_update_path(w: &mut Writer<'_>, path: &UpdatePath<'_>) -> Result<(), Error> {
    w.write_bytes(path.leaf_node.as_bytes())?;
    write_vec_with(w, |w| {
        for node in path.nodes() {
            let node = node?;
            w.write_vec_varint(node.encryption_key)?;
            write_vec_with(w, |w| {
                for c in node.ciphertexts() {
                    let (kem_output, ciphertext) = c?;
                    w.write_vec_varint(kem_output)?;
                    w.write_vec_varint(ciphertext)?;
                }
                Ok(())
            })?;
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------
// GroupInfo, GroupSecrets, Welcome (§12.4.3).

/// A parsed `GroupInfo`:
///
/// ```text
/// struct {
///     GroupContext group_context;
///     Extension extensions<V>;
///     MAC confirmation_tag;
///     uint32 signer;
///     opaque signature<V>;   /* SignWithLabel(., "GroupInfoTBS", GroupInfoTBS) */
/// } GroupInfo;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupInfo<'a> {
    raw: &'a [u8],
    tbs_len: usize,
    /// The group's context.
    pub group_context: GroupContext<'a>,
    /// The `extensions<V>` body.
    pub extensions: &'a [u8],
    /// `confirmation_tag<V>`.
    pub confirmation_tag: &'a [u8],
    /// Leaf index of the signer.
    pub signer: u32,
    /// The signature.
    pub signature: &'a [u8],
}

impl<'a> GroupInfo<'a> {
    /// Parse one `GroupInfo`.
    pub fn parse(r: &mut Reader<'a>) -> Result<Self, Error> {
        let start = r.position();
        let (raw, (group_context, extensions, confirmation_tag, signer, tbs_len, signature)) =
            parse_raw(r, |r| {
                let gc = parse_group_context(r)?;
                let extensions = extensions_body(r)?;
                let tag = r.read_vec_varint()?;
                let signer = r.read_u32()?;
                let tbs_len = r.position().saturating_sub(start);
                Ok((gc, extensions, tag, signer, tbs_len, r.read_vec_varint()?))
            })?;
        Ok(GroupInfo { raw, tbs_len, group_context, extensions, confirmation_tag, signer, signature })
    }

    /// Parse a whole buffer.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, Error> {
        parse_all(bytes, Self::parse)
    }

    /// The exact encoding.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// The `GroupInfoTBS` (the encoding without the signature).
    pub fn tbs(&self) -> &'a [u8] {
        self.raw.get(..self.tbs_len).unwrap_or(&[])
    }

    /// Verify the signature with the signer's public key (from leaf
    /// `signer` of the group's tree); `scratch` holds the GroupInfo plus 40
    /// bytes.
    pub fn verify(&self, signer_key: &[u8; 32], scratch: &mut [u8]) -> Result<(), Error> {
        let sig: &[u8; 64] = self.signature.try_into().map_err(|_| Error::BadSignature)?;
        crypto::verify_with_label(signer_key, b"GroupInfoTBS", self.tbs(), sig, scratch)
    }

    /// Write the encoding field by field.
    pub fn write_to(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        write_group_context(w, &self.group_context)?;
        w.write_vec_varint(self.extensions)?;
        w.write_vec_varint(self.confirmation_tag)?;
        w.write_u32(self.signer)?;
        Ok(w.write_vec_varint(self.signature)?)
    }
}

/// A parsed `GroupSecrets` (the plaintext of an `EncryptedGroupSecrets`):
///
/// ```text
/// struct {
///   opaque joiner_secret<V>;
///   optional<PathSecret> path_secret;   /* PathSecret = opaque path_secret<V> */
///   PreSharedKeyID psks<V>;
/// } GroupSecrets;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupSecrets<'a> {
    raw: &'a [u8],
    /// `joiner_secret<V>`.
    pub joiner_secret: &'a [u8],
    /// The path secret of the joiner's lowest common ancestor with the
    /// committer, if the commit had a path.
    pub path_secret: Option<&'a [u8]>,
    psks: &'a [u8],
}

impl<'a> GroupSecrets<'a> {
    /// Parse one `GroupSecrets`.
    pub fn parse(r: &mut Reader<'a>) -> Result<Self, Error> {
        let (raw, (joiner_secret, path_secret, psks)) = parse_raw(r, |r| {
            let joiner = r.read_vec_varint()?;
            let path = if read_optional(r)? { Some(r.read_vec_varint()?) } else { None };
            let psks = r.read_vec_varint()?;
            check_items(psks, PreSharedKeyId::parse)?;
            Ok((joiner, path, psks))
        })?;
        Ok(GroupSecrets { raw, joiner_secret, path_secret, psks })
    }

    /// Parse a whole buffer.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, Error> {
        parse_all(bytes, Self::parse)
    }

    /// The exact encoding.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// The PSKs to mix into the key schedule, in order.
    pub fn psks(&self) -> impl Iterator<Item = Result<PreSharedKeyId<'a>, Error>> + 'a {
        items(self.psks, PreSharedKeyId::parse)
    }

    /// Write the encoding field by field.
    pub fn write_to(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        w.write_vec_varint(self.joiner_secret)?;
        match self.path_secret {
            None => w.write_u8(0)?,
            Some(p) => {
                w.write_u8(1)?;
                w.write_vec_varint(p)?;
            }
        }
        write_vec_with(w, |w| {
            for p in self.psks() {
                p?.write_to(w)?;
            }
            Ok(())
        })
    }
}

/// One `EncryptedGroupSecrets` of a Welcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncryptedGroupSecrets<'a> {
    raw: &'a [u8],
    /// `KeyPackageRef new_member` (`Nh` bytes).
    pub new_member: &'a [u8],
    /// HPKE `kem_output<V>`.
    pub kem_output: &'a [u8],
    /// HPKE `ciphertext<V>` (the sealed `GroupSecrets` and its tag).
    pub ciphertext: &'a [u8],
}

impl<'a> EncryptedGroupSecrets<'a> {
    /// Parse one `EncryptedGroupSecrets`.
    pub fn parse(r: &mut Reader<'a>) -> Result<Self, Error> {
        let (raw, (new_member, kem_output, ciphertext)) = parse_raw(r, |r| {
            let new_member = r.read_vec_varint()?;
            if new_member.len() != NH {
                return Err(Error::Malformed);
            }
            Ok((new_member, r.read_vec_varint()?, r.read_vec_varint()?))
        })?;
        Ok(EncryptedGroupSecrets { raw, new_member, kem_output, ciphertext })
    }

    /// The exact encoding.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }
}

/// A parsed `Welcome`:
///
/// ```text
/// struct {
///   CipherSuite cipher_suite;
///   EncryptedGroupSecrets secrets<V>;
///   opaque encrypted_group_info<V>;
/// } Welcome;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Welcome<'a> {
    raw: &'a [u8],
    /// Ciphersuite (always 0x0003 here).
    pub cipher_suite: u16,
    secrets: &'a [u8],
    /// The encrypted `GroupInfo`.
    pub encrypted_group_info: &'a [u8],
}

impl<'a> Welcome<'a> {
    /// Parse one `Welcome`; another ciphersuite is [`Error::Unsupported`].
    pub fn parse(r: &mut Reader<'a>) -> Result<Self, Error> {
        let (raw, (cipher_suite, secrets, encrypted_group_info)) = parse_raw(r, |r| {
            let suite = r.read_u16()?;
            crate::crypto::suite::Suite::from_id(suite)?;
            let secrets = r.read_vec_varint()?;
            check_items(secrets, EncryptedGroupSecrets::parse)?;
            Ok((suite, secrets, r.read_vec_varint()?))
        })?;
        Ok(Welcome { raw, cipher_suite, secrets, encrypted_group_info })
    }

    /// Parse a whole buffer.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, Error> {
        parse_all(bytes, Self::parse)
    }

    /// The exact encoding.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// The encrypted group secrets, one per new member.
    pub fn secrets(&self) -> impl Iterator<Item = Result<EncryptedGroupSecrets<'a>, Error>> + 'a {
        items(self.secrets, EncryptedGroupSecrets::parse)
    }

    /// The entry for the KeyPackage with reference `key_package_ref`.
    pub fn secrets_for(&self, key_package_ref: &[u8]) -> Result<Option<EncryptedGroupSecrets<'a>>, Error> {
        for s in self.secrets() {
            let s = s?;
            if s.new_member == key_package_ref {
                return Ok(Some(s));
            }
        }
        Ok(None)
    }

    /// Write the encoding field by field.
    pub fn write_to(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        w.write_u16(self.cipher_suite)?;
        write_vec_with(w, |w| {
            for s in self.secrets() {
                let s = s?;
                w.write_vec_varint(s.new_member)?;
                w.write_vec_varint(s.kem_output)?;
                w.write_vec_varint(s.ciphertext)?;
            }
            Ok(())
        })?;
        Ok(w.write_vec_varint(self.encrypted_group_info)?)
    }
}

// ---------------------------------------------------------------------------
// MLSMessage (§6).

/// `WireFormat` (§6, IANA registry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireFormat {
    /// `mls_public_message(1)`.
    PublicMessage,
    /// `mls_private_message(2)`.
    PrivateMessage,
    /// `mls_welcome(3)`.
    Welcome,
    /// `mls_group_info(4)`.
    GroupInfo,
    /// `mls_key_package(5)`.
    KeyPackage,
}

impl WireFormat {
    /// From the wire value; an unregistered one is [`Error::Unsupported`],
    /// the reserved 0 [`Error::Malformed`].
    pub fn from_u16(v: u16) -> Result<Self, Error> {
        Ok(match v {
            1 => WireFormat::PublicMessage,
            2 => WireFormat::PrivateMessage,
            3 => WireFormat::Welcome,
            4 => WireFormat::GroupInfo,
            5 => WireFormat::KeyPackage,
            0 => return Err(Error::Malformed),
            _ => return Err(Error::Unsupported),
        })
    }

    /// The wire value.
    pub fn to_u16(self) -> u16 {
        match self {
            WireFormat::PublicMessage => 1,
            WireFormat::PrivateMessage => 2,
            WireFormat::Welcome => 3,
            WireFormat::GroupInfo => 4,
            WireFormat::KeyPackage => 5,
        }
    }
}
