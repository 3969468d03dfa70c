//! Message framing (RFC 9420 §6): `FramedContent` and its sender, the
//! content signature over `FramedContentTBS` (§6.1), `PublicMessage` with
//! its membership tag (§6.2) and `PrivateMessage` with content and sender
//! data encryption (§6.3).
//!
//! Receiving is parse, then verify (or open, then verify): a parsed
//! [`PublicMessage`] becomes an [`AuthenticatedContent`] only through
//! [`PublicMessage::verify`]; a [`PrivateMessage`] is decrypted by
//! [`PrivateMessage::open`] into an [`OpenedPrivateMessage`] that exposes
//! only its sender until [`OpenedPrivateMessage::verify`] checks the
//! signature.
//!
//! Sending is sign, then protect: [`sign`] gives the signature over
//! `FramedContentTBS`; the caller builds the [`AuthenticatedContent`]
//! (adding the confirmation tag of a commit, which depends on the
//! signature through the transcript hash) and frames it with
//! [`protect_public`] or [`protect_private`].
//!
//! Nothing here allocates: the signature input is assembled in a
//! caller-lent `scratch` (the content plus about 100 bytes), MACs and
//! hashes are streamed, the AEADs work in place in the caller's buffers.
//! Group-level policy (which signature key a sender has, which epochs are
//! still accepted, which generations were consumed) stays with the caller.

use crate::crypto::{self, LABEL_PREFIX, NH, Secret32};
use crate::error::Error;
use crate::key_schedule::GroupContext;
use crate::messages::{
    Commit, MLS10, PROPOSAL_REF_LABEL, Proposal, WireFormat, encoded_len, group_context_parts, parse_all,
    parse_raw, vec_part,
};
use crate::secret_tree::{self, KeyNonce, Ratchet, RatchetKind};
use securemesh_core::codec::{Reader, Writer};
use securemesh_core::crypto::{Aead, ChaChaPoly, Ed25519, Hash, Sha256, Signature};
use securemesh_core::{CryptoRng, ct_eq};

/// An Ed25519 signing key.
pub type SigningKey = <Ed25519 as Signature>::SigningKey;

/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Length of the AEAD tag (ChaCha20-Poly1305).
pub const TAG_LEN: usize = 16;
/// Length of the `SenderData` plaintext.
pub const SENDER_DATA_LEN: usize = 12;
/// Length of `encrypted_sender_data`.
pub const ENCRYPTED_SENDER_DATA_LEN: usize = SENDER_DATA_LEN + TAG_LEN;
/// Scratch bytes [`sign`] and the verifications need beyond the encoded
/// `FramedContent` (label, lengths, header and a GroupContext with a
/// 255-byte group id and 255 bytes of extensions).
pub const SIGN_SCRATCH_OVERHEAD: usize = 32 + 4 + 96 + 2 * 260;

pub(crate) type Parts<'f> = &'f mut dyn FnMut(&[u8]) -> Result<(), Error>;

// ---------------------------------------------------------------------------
// Sender, content type, content.

/// The sender of a message (§6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sender {
    /// `member(1)`: the member at this leaf index.
    Member(u32),
    /// `external(2)`: this index of the `external_senders` extension.
    External(u32),
    /// `new_member_proposal(3)`: a non-member proposing to be added.
    NewMemberProposal,
    /// `new_member_commit(4)`: a non-member joining by external commit.
    NewMemberCommit,
}

impl Sender {
    /// Parse a `Sender`.
    pub fn parse(r: &mut Reader<'_>) -> Result<Self, Error> {
        let (_, s) = parse_raw(r, |r| {
            Ok(match r.read_u8()? {
                1 => Sender::Member(r.read_u32()?),
                2 => Sender::External(r.read_u32()?),
                3 => Sender::NewMemberProposal,
                4 => Sender::NewMemberCommit,
                _ => return Err(Error::Malformed),
            })
        })?;
        Ok(s)
    }

    fn encode(&self) -> ([u8; 5], usize) {
        let (ty, index) = match self {
            Sender::Member(i) => (1u8, Some(*i)),
            Sender::External(i) => (2, Some(*i)),
            Sender::NewMemberProposal => (3, None),
            Sender::NewMemberCommit => (4, None),
        };
        let mut out = [ty, 0, 0, 0, 0];
        match index {
            Some(i) => {
                for (o, b) in out.iter_mut().skip(1).zip(i.to_be_bytes()) {
                    *o = b;
                }
                (out, 5)
            }
            None => (out, 1),
        }
    }

    /// Whether `FramedContentTBS` includes the GroupContext (member and
    /// new-member-commit senders).
    pub fn signs_group_context(&self) -> bool {
        matches!(self, Sender::Member(_) | Sender::NewMemberCommit)
    }
}

/// `ContentType` (§6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentType {
    /// `application(1)`.
    Application,
    /// `proposal(2)`.
    Proposal,
    /// `commit(3)`.
    Commit,
}

impl ContentType {
    /// From the wire value.
    pub fn from_u8(v: u8) -> Result<Self, Error> {
        match v {
            1 => Ok(ContentType::Application),
            2 => Ok(ContentType::Proposal),
            3 => Ok(ContentType::Commit),
            _ => Err(Error::Malformed),
        }
    }

    /// The wire value.
    pub fn to_u8(self) -> u8 {
        match self {
            ContentType::Application => 1,
            ContentType::Proposal => 2,
            ContentType::Commit => 3,
        }
    }

    /// The secret-tree ratchet that protects this content in a
    /// PrivateMessage.
    pub fn ratchet_kind(self) -> RatchetKind {
        match self {
            ContentType::Application => RatchetKind::Application,
            ContentType::Proposal | ContentType::Commit => RatchetKind::Handshake,
        }
    }
}

/// The body of a `FramedContent`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Content<'a> {
    /// `application_data<V>`.
    Application(&'a [u8]),
    /// A proposal.
    Proposal(Proposal<'a>),
    /// A commit.
    Commit(Commit<'a>),
}

impl<'a> Content<'a> {
    /// Parse the body of content type `content_type`.
    pub fn parse(content_type: ContentType, r: &mut Reader<'a>) -> Result<Self, Error> {
        Ok(match content_type {
            ContentType::Application => Content::Application(r.read_vec_varint()?),
            ContentType::Proposal => Content::Proposal(Proposal::parse(r)?),
            ContentType::Commit => Content::Commit(Commit::parse(r)?),
        })
    }

    /// Its content type.
    pub fn content_type(&self) -> ContentType {
        match self {
            Content::Application(_) => ContentType::Application,
            Content::Proposal(_) => ContentType::Proposal,
            Content::Commit(_) => ContentType::Commit,
        }
    }

    fn parts(&self, f: Parts<'_>) -> Result<(), Error> {
        match self {
            Content::Application(data) => vec_part(data, f),
            Content::Proposal(p) => f(p.as_bytes()),
            Content::Commit(c) => f(c.as_bytes()),
        }
    }
}

fn write_parts(w: &mut Writer<'_>, parts: impl FnOnce(Parts<'_>) -> Result<(), Error>) -> Result<(), Error> {
    parts(&mut |p| Ok(w.write_bytes(p)?))
}

fn parts_len(parts: impl FnOnce(Parts<'_>) -> Result<(), Error>) -> Result<usize, Error> {
    let mut n = 0usize;
    parts(&mut |p| {
        n = n.checked_add(p.len()).ok_or(Error::Capacity)?;
        Ok(())
    })?;
    Ok(n)
}

// ---------------------------------------------------------------------------
// FramedContent and its authentication data.

/// A `FramedContent` (§6):
///
/// ```text
/// struct {
///     opaque group_id<V>;
///     uint64 epoch;
///     Sender sender;
///     opaque authenticated_data<V>;
///     ContentType content_type;
///     select (FramedContent.content_type) { ... };
/// } FramedContent;
/// ```
///
/// It borrows its fields, which for a PrivateMessage come from the
/// message header and the decrypted plaintext; its encoding is produced in
/// pieces ([`FramedContent::write_to`]) for signing and hashing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FramedContent<'a> {
    /// The group.
    pub group_id: &'a [u8],
    /// The epoch.
    pub epoch: u64,
    /// The sender.
    pub sender: Sender,
    /// Application-chosen data, authenticated but not encrypted.
    pub authenticated_data: &'a [u8],
    /// The body.
    pub content: Content<'a>,
}

impl<'a> FramedContent<'a> {
    /// Parse one `FramedContent`.
    pub fn parse(r: &mut Reader<'a>) -> Result<Self, Error> {
        let (_, c) = parse_raw(r, |r| {
            let group_id = r.read_vec_varint()?;
            let epoch = r.read_u64()?;
            let sender = Sender::parse(r)?;
            let authenticated_data = r.read_vec_varint()?;
            let content = Content::parse(ContentType::from_u8(r.read_u8()?)?, r)?;
            Ok(FramedContent { group_id, epoch, sender, authenticated_data, content })
        })?;
        Ok(c)
    }

    /// The content type.
    pub fn content_type(&self) -> ContentType {
        self.content.content_type()
    }

    pub(crate) fn parts(&self, f: Parts<'_>) -> Result<(), Error> {
        vec_part(self.group_id, f)?;
        f(&self.epoch.to_be_bytes())?;
        let (s, n) = self.sender.encode();
        f(s.get(..n).unwrap_or(&[]))?;
        vec_part(self.authenticated_data, f)?;
        f(&[self.content_type().to_u8()])?;
        self.content.parts(f)
    }

    /// Write the encoding.
    pub fn write_to(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        write_parts(w, |f| self.parts(f))
    }

    /// Length of the encoding.
    pub fn encoded_len(&self) -> Result<usize, Error> {
        parts_len(|f| self.parts(f))
    }

    /// The GroupContext must be this content's group and epoch.
    fn check_context(&self, gc: &GroupContext<'_>) -> Result<(), Error> {
        if self.group_id != gc.group_id || self.epoch != gc.epoch {
            return Err(Error::Malformed);
        }
        Ok(())
    }
}

/// `FramedContentAuthData` (§6.1): the signature and, for a commit, the
/// confirmation tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FramedContentAuthData<'a> {
    /// `signature<V>`.
    pub signature: &'a [u8],
    /// `confirmation_tag<V>`: present exactly for commits.
    pub confirmation_tag: Option<&'a [u8]>,
}

impl<'a> FramedContentAuthData<'a> {
    /// Parse the auth data of content of `content_type`.
    pub fn parse(content_type: ContentType, r: &mut Reader<'a>) -> Result<Self, Error> {
        let (_, a) = parse_raw(r, |r| {
            let signature = r.read_vec_varint()?;
            let confirmation_tag =
                if content_type == ContentType::Commit { Some(r.read_vec_varint()?) } else { None };
            Ok(FramedContentAuthData { signature, confirmation_tag })
        })?;
        Ok(a)
    }

    fn parts(&self, f: Parts<'_>) -> Result<(), Error> {
        vec_part(self.signature, f)?;
        match self.confirmation_tag {
            Some(tag) => vec_part(tag, f),
            None => Ok(()),
        }
    }

    /// Write the encoding.
    pub fn write_to(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        write_parts(w, |f| self.parts(f))
    }

    /// The confirmation tag must be present exactly for commits.
    fn check(&self, content_type: ContentType) -> Result<(), Error> {
        if self.confirmation_tag.is_some() != (content_type == ContentType::Commit) {
            return Err(Error::Malformed);
        }
        Ok(())
    }
}

/// `AuthenticatedContent` (§6.1): what a message carries once its framing
/// is removed and checked.
///
/// ```text
/// struct {
///     WireFormat wire_format;
///     FramedContent content;
///     FramedContentAuthData auth;
/// } AuthenticatedContent;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthenticatedContent<'a> {
    /// The wire format it was (or will be) sent in.
    pub wire_format: WireFormat,
    /// The content.
    pub content: FramedContent<'a>,
    /// Signature and confirmation tag.
    pub auth: FramedContentAuthData<'a>,
}

impl<'a> AuthenticatedContent<'a> {
    /// Parse an encoded `AuthenticatedContent` (wire format public or
    /// private message).
    pub fn parse(r: &mut Reader<'a>) -> Result<Self, Error> {
        let (_, ac) = parse_raw(r, |r| {
            let wire_format = WireFormat::from_u16(r.read_u16()?)?;
            if !matches!(wire_format, WireFormat::PublicMessage | WireFormat::PrivateMessage) {
                return Err(Error::Malformed);
            }
            let content = FramedContent::parse(r)?;
            let auth = FramedContentAuthData::parse(content.content_type(), r)?;
            Ok(AuthenticatedContent { wire_format, content, auth })
        })?;
        Ok(ac)
    }

    /// Parse a whole buffer.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, Error> {
        parse_all(bytes, Self::parse)
    }

    fn parts(&self, f: Parts<'_>) -> Result<(), Error> {
        f(&self.wire_format.to_u16().to_be_bytes())?;
        self.content.parts(f)?;
        self.auth.parts(f)
    }

    /// Write the encoding.
    pub fn write_to(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        write_parts(w, |f| self.parts(f))
    }

    /// Length of the encoding.
    pub fn encoded_len(&self) -> Result<usize, Error> {
        parts_len(|f| self.parts(f))
    }

    /// `ProposalRef = RefHash("MLS 1.0 Proposal Reference", AuthenticatedContent)`
    /// (§5.2), streamed.
    pub fn proposal_ref(&self) -> Result<[u8; NH], Error> {
        let len = self.encoded_len()?;
        let mut h = Sha256::default();
        let mut hash = |p: &[u8]| {
            h.update(p);
            Ok(())
        };
        vec_part(PROPOSAL_REF_LABEL, &mut hash)?;
        let (v, n) = crypto::varint(len)?;
        hash(v.get(..n).unwrap_or(&[]))?;
        self.parts(&mut hash)?;
        Ok(h.finalize())
    }

    /// Check the framing rules of §6: a sender may send only what its type
    /// allows, application data only in a PrivateMessage, a PrivateMessage
    /// only from a member, and the confirmation tag exactly for commits.
    fn check_rules(&self) -> Result<(), Error> {
        let ct = self.content.content_type();
        self.auth.check(ct)?;
        let sender_ok = match self.content.sender {
            Sender::Member(_) => true,
            Sender::External(_) | Sender::NewMemberProposal => ct == ContentType::Proposal,
            Sender::NewMemberCommit => ct == ContentType::Commit,
        };
        let wire_ok = match self.wire_format {
            WireFormat::PublicMessage => ct != ContentType::Application,
            WireFormat::PrivateMessage => matches!(self.content.sender, Sender::Member(_)),
            _ => false,
        };
        if sender_ok && wire_ok { Ok(()) } else { Err(Error::Malformed) }
    }
}

// ---------------------------------------------------------------------------
// Signatures (§6.1).

/// `FramedContentTBS`, in pieces.
fn tbs_parts(
    wire_format: WireFormat,
    content: &FramedContent<'_>,
    gc: &GroupContext<'_>,
    f: Parts<'_>,
) -> Result<(), Error> {
    f(&MLS10.to_be_bytes())?;
    f(&wire_format.to_u16().to_be_bytes())?;
    content.parts(f)?;
    if content.sender.signs_group_context() {
        group_context_parts(gc, f)?;
    }
    Ok(())
}

/// The label of the signature over a `FramedContentTBS`.
const TBS_LABEL: &[u8] = b"FramedContentTBS";

/// Write `SignContent { "MLS 1.0 FramedContentTBS"<V>, FramedContentTBS<V> }`
/// into `scratch`.
fn sign_content<'s>(
    scratch: &'s mut [u8],
    wire_format: WireFormat,
    content: &FramedContent<'_>,
    gc: &GroupContext<'_>,
) -> Result<&'s [u8], Error> {
    let tbs_len = parts_len(|f| tbs_parts(wire_format, content, gc, f))?;
    let mut w = Writer::new(scratch);
    w.write_varint(u32::try_from(crypto::full_label_len(TBS_LABEL)?).map_err(|_| Error::Capacity)?)?;
    w.write_bytes(LABEL_PREFIX)?;
    w.write_bytes(TBS_LABEL)?;
    w.write_varint(u32::try_from(tbs_len).map_err(|_| Error::Capacity)?)?;
    write_parts(&mut w, |f| tbs_parts(wire_format, content, gc, f))?;
    let n = w.finish()?;
    scratch.get(..n).ok_or(Error::Capacity)
}

/// The exact number of `scratch` bytes [`sign`] and the signature
/// verifications need for `content` in `gc`.
pub fn sign_scratch_len(
    wire_format: WireFormat,
    content: &FramedContent<'_>,
    gc: &GroupContext<'_>,
) -> Result<usize, Error> {
    let tbs_len = parts_len(|f| tbs_parts(wire_format, content, gc, f))?;
    encoded_len(|w| {
        w.write_varint(u32::try_from(crypto::full_label_len(TBS_LABEL)?).map_err(|_| Error::Capacity)?)?;
        w.write_bytes(LABEL_PREFIX)?;
        w.write_bytes(TBS_LABEL)?;
        w.write_varint(u32::try_from(tbs_len).map_err(|_| Error::Capacity)?)?;
        Ok(w.write_bytes(&[])?)
    })?
    .checked_add(tbs_len)
    .ok_or(Error::Capacity)
}

/// Sign `content` for sending as `wire_format`:
/// `SignWithLabel(key, "FramedContentTBS", FramedContentTBS)`. `gc` is the
/// group's current context (its group id and epoch must be the content's);
/// `scratch` holds the content plus [`SIGN_SCRATCH_OVERHEAD`] bytes.
pub fn sign(
    wire_format: WireFormat,
    content: &FramedContent<'_>,
    key: &SigningKey,
    gc: &GroupContext<'_>,
    scratch: &mut [u8],
) -> Result<[u8; SIGNATURE_LEN], Error> {
    content.check_context(gc)?;
    Ok(Ed25519::sign(key, sign_content(scratch, wire_format, content, gc)?))
}

/// Verify the signature of `content` sent as `wire_format` (strict
/// Ed25519). Same `gc` and `scratch` as [`sign`].
pub fn verify_signature(
    wire_format: WireFormat,
    content: &FramedContent<'_>,
    signature: &[u8],
    public: &[u8; 32],
    gc: &GroupContext<'_>,
    scratch: &mut [u8],
) -> Result<(), Error> {
    content.check_context(gc)?;
    let sig: &[u8; SIGNATURE_LEN] = signature.try_into().map_err(|_| Error::BadSignature)?;
    Ed25519::verify(public, sign_content(scratch, wire_format, content, gc)?, sig)
        .map_err(|_| Error::BadSignature)
}

/// `membership_tag = MAC(membership_key, AuthenticatedContentTBM)` (§6.2),
/// with `AuthenticatedContentTBM = FramedContentTBS || FramedContentAuthData`.
pub fn membership_tag(
    membership_key: &Secret32,
    content: &FramedContent<'_>,
    auth: &FramedContentAuthData<'_>,
    gc: &GroupContext<'_>,
) -> Result<[u8; NH], Error> {
    Sha256::hmac_with(membership_key.expose(), |sink| {
        let mut feed = |p: &[u8]| {
            sink(p);
            Ok(())
        };
        tbs_parts(WireFormat::PublicMessage, content, gc, &mut feed)?;
        auth.parts(&mut feed)
    })
}

// ---------------------------------------------------------------------------
// PublicMessage (§6.2).

/// A parsed `PublicMessage`:
///
/// ```text
/// struct {
///     FramedContent content;
///     FramedContentAuthData auth;
///     select (PublicMessage.content.sender.sender_type) {
///         case member: MAC membership_tag;
///         case external: case new_member_commit: case new_member_proposal: struct{};
///     };
/// } PublicMessage;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublicMessage<'a> {
    raw: &'a [u8],
    /// The content (not yet authenticated).
    pub content: FramedContent<'a>,
    /// Signature and confirmation tag (not yet checked).
    pub auth: FramedContentAuthData<'a>,
    /// The membership tag, present exactly for member senders.
    pub membership_tag: Option<&'a [u8]>,
}

impl<'a> PublicMessage<'a> {
    /// Parse a `PublicMessage` (without the `MLSMessage` header).
    pub fn parse(r: &mut Reader<'a>) -> Result<Self, Error> {
        let (raw, (content, auth, membership_tag)) = parse_raw(r, |r| {
            let content = FramedContent::parse(r)?;
            let auth = FramedContentAuthData::parse(content.content_type(), r)?;
            let tag =
                if matches!(content.sender, Sender::Member(_)) { Some(r.read_vec_varint()?) } else { None };
            Ok((content, auth, tag))
        })?;
        Ok(PublicMessage { raw, content, auth, membership_tag })
    }

    /// Parse a whole buffer (without the `MLSMessage` header).
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, Error> {
        parse_all(bytes, Self::parse)
    }

    /// The exact encoding.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// Write the encoding field by field.
    pub fn write_to(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        self.content.write_to(w)?;
        self.auth.write_to(w)?;
        if let Some(tag) = self.membership_tag {
            w.write_vec_varint(tag)?;
        }
        Ok(())
    }

    /// Authenticate the message (§6.2, §6.1): the framing rules of §6, the
    /// group id and epoch against `gc` (the context of the epoch the
    /// message claims), the membership tag for a member sender (constant
    /// time), then the signature by `signature_key` (the sender's key, which
    /// the caller looks up from `content.sender`). `scratch` as for
    /// [`sign`]. Any failure of the tag or signature is
    /// [`Error::BadSignature`].
    pub fn verify(
        &self,
        signature_key: &[u8; 32],
        gc: &GroupContext<'_>,
        membership_key: &Secret32,
        scratch: &mut [u8],
    ) -> Result<AuthenticatedContent<'a>, Error> {
        let ac = AuthenticatedContent {
            wire_format: WireFormat::PublicMessage,
            content: self.content,
            auth: self.auth,
        };
        ac.check_rules()?;
        self.content.check_context(gc)?;
        if let Sender::Member(_) = self.content.sender {
            let want = membership_tag(membership_key, &self.content, &self.auth, gc)?;
            let got = self.membership_tag.ok_or(Error::Malformed)?;
            if !ct_eq(&want, got) {
                return Err(Error::BadSignature);
            }
        }
        verify_signature(
            WireFormat::PublicMessage,
            &self.content,
            self.auth.signature,
            signature_key,
            gc,
            scratch,
        )?;
        Ok(ac)
    }
}

/// Frame signed content as an `MLSMessage` holding a `PublicMessage`
/// (§6.2), adding the membership tag for a member sender. The wire format
/// of `ac` must be PublicMessage and its content not application data.
/// Returns the length written to `out`; [`Error::BufferTooSmall`] (with
/// nothing written) if it does not fit.
pub fn protect_public(
    ac: &AuthenticatedContent<'_>,
    gc: &GroupContext<'_>,
    membership_key: &Secret32,
    out: &mut [u8],
) -> Result<usize, Error> {
    if ac.wire_format != WireFormat::PublicMessage {
        return Err(Error::Malformed);
    }
    ac.check_rules()?;
    ac.content.check_context(gc)?;
    let tag = match ac.content.sender {
        Sender::Member(_) => Some(membership_tag(membership_key, &ac.content, &ac.auth, gc)?),
        _ => None,
    };
    let write = |w: &mut Writer<'_>| -> Result<(), Error> {
        w.write_u16(MLS10)?;
        w.write_u16(WireFormat::PublicMessage.to_u16())?;
        ac.content.write_to(w)?;
        ac.auth.write_to(w)?;
        if let Some(t) = &tag {
            w.write_vec_varint(t)?;
        }
        Ok(())
    };
    let needed = encoded_len(write)?;
    if out.len() < needed {
        return Err(Error::BufferTooSmall { needed });
    }
    let mut w = Writer::new(out);
    write(&mut w)?;
    Ok(w.finish()?)
}

// ---------------------------------------------------------------------------
// PrivateMessage (§6.3).

/// A parsed `PrivateMessage`:
///
/// ```text
/// struct {
///     opaque group_id<V>;
///     uint64 epoch;
///     ContentType content_type;
///     opaque authenticated_data<V>;
///     opaque encrypted_sender_data<V>;
///     opaque ciphertext<V>;
/// } PrivateMessage;
/// ```
///
/// `SenderDataAAD` and `PrivateContentAAD` are prefixes of this encoding,
/// so decryption needs no copy of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrivateMessage<'a> {
    raw: &'a [u8],
    sender_data_aad_len: usize,
    content_aad_len: usize,
    /// The group.
    pub group_id: &'a [u8],
    /// The epoch.
    pub epoch: u64,
    /// The content type.
    pub content_type: ContentType,
    /// Application-chosen data, authenticated but not encrypted.
    pub authenticated_data: &'a [u8],
    /// The encrypted `SenderData`.
    pub encrypted_sender_data: &'a [u8],
    /// The encrypted `PrivateMessageContent` and its tag.
    pub ciphertext: &'a [u8],
}

/// The decrypted `SenderData` (§6.3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SenderData {
    /// The sender's leaf.
    pub leaf_index: u32,
    /// The generation of the sender's ratchet.
    pub generation: u32,
    /// XORed into the first four bytes of the content nonce.
    pub reuse_guard: [u8; 4],
}

/// Where [`PrivateMessage::open`] gets content keys: the key and nonce
/// (before the reuse guard) of `generation` of `leaf`'s `kind` ratchet of
/// the secret tree (§9). Deliberately read-only: the caller marks the
/// generation consumed (and erases its key) only after the whole message
/// verified. An error (unknown leaf, consumed or too distant generation)
/// is returned as is.
pub trait SenderKeys {
    /// Key and nonce of `(leaf, generation, kind)`.
    fn key_nonce(&self, leaf: u32, generation: u32, kind: RatchetKind) -> Result<KeyNonce, Error>;
}

impl<F: Fn(u32, u32, RatchetKind) -> Result<KeyNonce, Error>> SenderKeys for F {
    fn key_nonce(&self, leaf: u32, generation: u32, kind: RatchetKind) -> Result<KeyNonce, Error> {
        self(leaf, generation, kind)
    }
}

/// Stateless [`SenderKeys`]: derives every key from the epoch's
/// `encryption_secret` (leaf secret, then the ratchet up to the
/// generation), refusing generations above `max_generation` so a forged
/// generation cannot cost more than that many derivations. It keeps no
/// record of used keys (no forward secrecy within the epoch), so it suits
/// tests and one-shot checks; a group keeps ratchet state instead.
pub struct SecretTreeKeys<'s> {
    encryption_secret: &'s Secret32,
    n_leaves: u32,
    max_generation: u32,
}

impl<'s> SecretTreeKeys<'s> {
    /// Keys of a tree of `n_leaves` rooted at `encryption_secret`.
    pub fn new(encryption_secret: &'s Secret32, n_leaves: u32, max_generation: u32) -> Self {
        SecretTreeKeys { encryption_secret, n_leaves, max_generation }
    }
}

impl SenderKeys for SecretTreeKeys<'_> {
    fn key_nonce(&self, leaf: u32, generation: u32, kind: RatchetKind) -> Result<KeyNonce, Error> {
        if generation > self.max_generation {
            return Err(Error::Capacity);
        }
        let leaf_secret = secret_tree::leaf_secret(self.encryption_secret, leaf, self.n_leaves)?;
        let mut ratchet = Ratchet::new(&leaf_secret, kind)?;
        ratchet.advance_to(generation)?;
        ratchet.current()
    }
}

fn apply_reuse_guard(nonce: &mut [u8; crypto::NN], guard: &[u8; 4]) {
    for (n, g) in nonce.iter_mut().zip(guard) {
        *n ^= g;
    }
}

impl<'a> PrivateMessage<'a> {
    /// Parse a `PrivateMessage` (without the `MLSMessage` header).
    pub fn parse(r: &mut Reader<'a>) -> Result<Self, Error> {
        let start = r.position();
        let (raw, m) = parse_raw(r, |r| {
            let group_id = r.read_vec_varint()?;
            let epoch = r.read_u64()?;
            let content_type = ContentType::from_u8(r.read_u8()?)?;
            let sender_data_aad_len = r.position().saturating_sub(start);
            let authenticated_data = r.read_vec_varint()?;
            let content_aad_len = r.position().saturating_sub(start);
            let encrypted_sender_data = r.read_vec_varint()?;
            let ciphertext = r.read_vec_varint()?;
            Ok(PrivateMessage {
                raw: &[],
                sender_data_aad_len,
                content_aad_len,
                group_id,
                epoch,
                content_type,
                authenticated_data,
                encrypted_sender_data,
                ciphertext,
            })
        })?;
        Ok(PrivateMessage { raw, ..m })
    }

    /// Parse a whole buffer (without the `MLSMessage` header).
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, Error> {
        parse_all(bytes, Self::parse)
    }

    /// The exact encoding.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// Write the encoding field by field.
    pub fn write_to(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        w.write_vec_varint(self.group_id)?;
        w.write_u64(self.epoch)?;
        w.write_u8(self.content_type.to_u8())?;
        w.write_vec_varint(self.authenticated_data)?;
        w.write_vec_varint(self.encrypted_sender_data)?;
        Ok(w.write_vec_varint(self.ciphertext)?)
    }

    /// Decrypt the sender data (§6.3.2) with the epoch's
    /// `sender_data_secret`. Failure is the opaque [`Error::Decrypt`].
    pub fn sender_data(&self, sender_data_secret: &Secret32) -> Result<SenderData, Error> {
        let esd: &[u8; ENCRYPTED_SENDER_DATA_LEN] =
            self.encrypted_sender_data.try_into().map_err(|_| Error::Decrypt)?;
        let (body, tag) = esd.split_at(SENDER_DATA_LEN);
        let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| Error::Decrypt)?;
        let mut sd: [u8; SENDER_DATA_LEN] = body.try_into().map_err(|_| Error::Decrypt)?;
        let kn = secret_tree::sender_data_key_nonce(sender_data_secret, self.ciphertext)?;
        let aad = self.raw.get(..self.sender_data_aad_len).ok_or(Error::Decrypt)?;
        ChaChaPoly::open_detached(&kn.key, &kn.nonce, aad, &mut sd, &tag).map_err(|_| Error::Decrypt)?;
        let [l0, l1, l2, l3, g0, g1, g2, g3, r0, r1, r2, r3] = sd;
        Ok(SenderData {
            leaf_index: u32::from_be_bytes([l0, l1, l2, l3]),
            generation: u32::from_be_bytes([g0, g1, g2, g3]),
            reuse_guard: [r0, r1, r2, r3],
        })
    }

    /// Decrypt (§6.3): the sender data, then the content with the key and
    /// nonce `keys` gives for the sender's leaf and generation (the reuse
    /// guard XORed in), into `plaintext` (at least the ciphertext length
    /// minus 16 bytes). The padding must be all zero. The result still has
    /// to be verified ([`OpenedPrivateMessage::verify`]). AEAD failures
    /// are the opaque [`Error::Decrypt`]; nothing of the caller's state
    /// changes.
    pub fn open<'p, K: SenderKeys + ?Sized>(
        &self,
        sender_data_secret: &Secret32,
        keys: &K,
        plaintext: &'p mut [u8],
    ) -> Result<OpenedPrivateMessage<'p>, Error>
    where
        'a: 'p,
    {
        let sender_data = self.sender_data(sender_data_secret)?;
        let kn =
            keys.key_nonce(sender_data.leaf_index, sender_data.generation, self.content_type.ratchet_kind())?;
        let mut nonce = kn.nonce;
        apply_reuse_guard(&mut nonce, &sender_data.reuse_guard);
        let body_len = self.ciphertext.len().checked_sub(TAG_LEN).ok_or(Error::Decrypt)?;
        let (body, tag) = self.ciphertext.split_at(body_len);
        let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| Error::Decrypt)?;
        let buf = plaintext.get_mut(..body_len).ok_or(Error::BufferTooSmall { needed: body_len })?;
        buf.copy_from_slice(body);
        let aad = self.raw.get(..self.content_aad_len).ok_or(Error::Decrypt)?;
        ChaChaPoly::open_detached(&kn.key, &nonce, aad, buf, &tag).map_err(|_| Error::Decrypt)?;
        let buf: &'p [u8] = buf;
        let mut r = Reader::new(buf);
        let content = Content::parse(self.content_type, &mut r)?;
        let auth = FramedContentAuthData::parse(self.content_type, &mut r)?;
        let padding = r.rest();
        if padding.iter().any(|b| *b != 0) {
            return Err(Error::Malformed);
        }
        Ok(OpenedPrivateMessage {
            sender_data,
            content: FramedContent {
                group_id: self.group_id,
                epoch: self.epoch,
                sender: Sender::Member(sender_data.leaf_index),
                authenticated_data: self.authenticated_data,
                content,
            },
            auth,
            padding_len: padding.len(),
        })
    }

    /// [`PrivateMessage::open`] and [`OpenedPrivateMessage::verify`] in
    /// one call, with `signature_key` giving the public key of a sender
    /// leaf (`None`: not a member, [`Error::BadSignature`]).
    pub fn unprotect<'p, K: SenderKeys + ?Sized>(
        &self,
        sender_data_secret: &Secret32,
        keys: &K,
        signature_key: impl FnOnce(u32) -> Option<[u8; 32]>,
        gc: &GroupContext<'_>,
        plaintext: &'p mut [u8],
        scratch: &mut [u8],
    ) -> Result<(SenderData, AuthenticatedContent<'p>), Error>
    where
        'a: 'p,
    {
        let opened = self.open(sender_data_secret, keys, plaintext)?;
        let sender_data = opened.sender_data();
        let key = signature_key(sender_data.leaf_index).ok_or(Error::BadSignature)?;
        Ok((sender_data, opened.verify(&key, gc, scratch)?))
    }
}

/// A decrypted PrivateMessage whose signature is not checked yet: only its
/// sender is visible, so the caller can look up the signature key.
#[derive(Clone, Copy, Debug)]
pub struct OpenedPrivateMessage<'p> {
    sender_data: SenderData,
    content: FramedContent<'p>,
    auth: FramedContentAuthData<'p>,
    padding_len: usize,
}

impl<'p> OpenedPrivateMessage<'p> {
    /// The decrypted sender data.
    pub fn sender_data(&self) -> SenderData {
        self.sender_data
    }

    /// Number of zero padding bytes after the content.
    pub fn padding_len(&self) -> usize {
        self.padding_len
    }

    /// Check the framing rules, the group id and epoch against `gc` and the
    /// signature with the sender's `signature_key`.
    pub fn verify(
        self,
        signature_key: &[u8; 32],
        gc: &GroupContext<'_>,
        scratch: &mut [u8],
    ) -> Result<AuthenticatedContent<'p>, Error> {
        let ac = AuthenticatedContent {
            wire_format: WireFormat::PrivateMessage,
            content: self.content,
            auth: self.auth,
        };
        ac.check_rules()?;
        verify_signature(
            WireFormat::PrivateMessage,
            &self.content,
            self.auth.signature,
            signature_key,
            gc,
            scratch,
        )?;
        Ok(ac)
    }
}

/// Frame signed content as an `MLSMessage` holding a `PrivateMessage`
/// (§6.3): the content and auth data (plus `padding` zero bytes) sealed
/// with the sender's `key` for `generation` (reuse guard from `rng` XORed
/// into the nonce), and the sender data sealed under the epoch's
/// `sender_data_secret`. The wire format of `ac` must be PrivateMessage and
/// its sender a member. Returns the length written to `out`;
/// [`Error::BufferTooSmall`] (with nothing written and no randomness drawn)
/// if it does not fit.
pub fn protect_private<R: CryptoRng + ?Sized>(
    ac: &AuthenticatedContent<'_>,
    sender_data_secret: &Secret32,
    key: &KeyNonce,
    generation: u32,
    padding: usize,
    rng: &mut R,
    out: &mut [u8],
) -> Result<usize, Error> {
    if ac.wire_format != WireFormat::PrivateMessage {
        return Err(Error::Malformed);
    }
    ac.check_rules()?;
    let Sender::Member(leaf) = ac.content.sender else { return Err(Error::Malformed) };
    let c = &ac.content;
    let content_len = parts_len(|f| c.content.parts(f))?;
    let auth_len = parts_len(|f| ac.auth.parts(f))?;
    let pt_len =
        content_len.checked_add(auth_len).and_then(|n| n.checked_add(padding)).ok_or(Error::Capacity)?;
    let ct_len = pt_len.checked_add(TAG_LEN).ok_or(Error::Capacity)?;
    let ct_len32 = u32::try_from(ct_len).map_err(|_| Error::Capacity)?;

    // Header: MLSMessage version and wire format, then the PrivateMessage
    // fields up to the ciphertext length. Offsets are from the start of `out`.
    let mut sd_aad_end = 0usize;
    let mut content_aad_end = 0usize;
    let mut esd_at = 0usize;
    let mut header = |w: &mut Writer<'_>| -> Result<(), Error> {
        w.write_u16(MLS10)?;
        w.write_u16(WireFormat::PrivateMessage.to_u16())?;
        w.write_vec_varint(c.group_id)?;
        w.write_u64(c.epoch)?;
        w.write_u8(c.content_type().to_u8())?;
        sd_aad_end = w.len();
        w.write_vec_varint(c.authenticated_data)?;
        content_aad_end = w.len();
        w.write_varint(ENCRYPTED_SENDER_DATA_LEN as u32)?;
        esd_at = w.len();
        w.write_bytes(&[0u8; ENCRYPTED_SENDER_DATA_LEN])?;
        Ok(w.write_varint(ct_len32)?)
    };
    let header_len = encoded_len(&mut header)?;
    let needed = header_len.checked_add(ct_len).ok_or(Error::Capacity)?;
    if out.len() < needed {
        return Err(Error::BufferTooSmall { needed });
    }
    let mut w = Writer::new(out);
    header(&mut w)?;
    w.finish()?;

    let (head, tail) = out.split_at_mut_checked(header_len).ok_or(Error::Capacity)?;
    let ciphertext = tail.get_mut(..ct_len).ok_or(Error::Capacity)?;
    let (pt, tag_out) = ciphertext.split_at_mut_checked(pt_len).ok_or(Error::Capacity)?;
    let mut w = Writer::new(pt);
    write_parts(&mut w, |f| c.content.parts(f))?;
    ac.auth.write_to(&mut w)?;
    let used = w.finish()?;
    pt.get_mut(used..).ok_or(Error::Capacity)?.fill(0);

    let mut reuse_guard = [0u8; 4];
    rng.fill_bytes(&mut reuse_guard);
    let mut nonce = key.nonce;
    apply_reuse_guard(&mut nonce, &reuse_guard);
    let (before_esd, esd) = head.split_at_mut_checked(esd_at).ok_or(Error::Capacity)?;
    let content_aad = before_esd.get(4..content_aad_end).ok_or(Error::Capacity)?;
    let tag = ChaChaPoly::seal_detached(&key.key, &nonce, content_aad, pt)?;
    tag_out.copy_from_slice(&tag);

    let sd_kn = secret_tree::sender_data_key_nonce(sender_data_secret, ciphertext)?;
    let mut sd = [0u8; SENDER_DATA_LEN];
    for (o, b) in
        sd.iter_mut().zip(leaf.to_be_bytes().into_iter().chain(generation.to_be_bytes()).chain(reuse_guard))
    {
        *o = b;
    }
    let sd_aad = before_esd.get(4..sd_aad_end).ok_or(Error::Capacity)?;
    let sd_tag = ChaChaPoly::seal_detached(&sd_kn.key, &sd_kn.nonce, sd_aad, &mut sd)?;
    let (esd_body, esd_tag) = esd
        .get_mut(..ENCRYPTED_SENDER_DATA_LEN)
        .and_then(|e| e.split_at_mut_checked(SENDER_DATA_LEN))
        .ok_or(Error::Capacity)?;
    esd_body.copy_from_slice(&sd);
    esd_tag.copy_from_slice(&sd_tag);
    Ok(needed)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn sender_encodings() {
        for (s, enc) in [
            (Sender::Member(0x01020304), &[1u8, 1, 2, 3, 4][..]),
            (Sender::External(7), &[2, 0, 0, 0, 7]),
            (Sender::NewMemberProposal, &[3]),
            (Sender::NewMemberCommit, &[4]),
        ] {
            let (b, n) = s.encode();
            assert_eq!(&b[..n], enc);
            assert_eq!(Sender::parse(&mut Reader::new(enc)).unwrap(), s);
        }
        assert_eq!(Sender::parse(&mut Reader::new(&[5])), Err(Error::Malformed));
        let mut r = Reader::new(&[1, 0, 0]);
        assert!(Sender::parse(&mut r).is_err());
        assert_eq!(r.position(), 0);
    }
}
