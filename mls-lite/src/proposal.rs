//! Sending proposals (RFC 9420 §12.1) for a later commit to cover by
//! reference.
//!
//! [`Group::propose`] writes an Add, Update, Remove, PreSharedKey or
//! GroupContextExtensions proposal as a PublicMessage or PrivateMessage
//! of the current epoch and caches it under its `ProposalRef` in the
//! caller's [`ProposalCache`], the one [`Group::process_proposal`] fills
//! with the other members' proposals. Any member's commit of this epoch
//! may then cover it: ours with [`Group::commit_with`] (every cached
//! proposal that is valid goes by reference), another member's through
//! [`Group::process_commit`]. A commit moves the group to a new epoch and
//! the proposals of the old one are void.
//!
//! An Update gives our leaf a new HPKE key (post-compromise security
//! without committing ourselves): its private key is kept in the group
//! state (persisted) until another member's commit covers the Update,
//! which [`Group::process_commit`] then makes our leaf key, or until the
//! epoch ends without it. One Update per epoch ([`Error::Capacity`] for a
//! second one).

use crate::commit::{ProposalCache, PskStore};
use crate::crypto::{NH, Secret32};
use crate::error::Error;
use crate::framing::{AuthenticatedContent, Content, FramedContentAuthData, Sender, sign, sign_scratch_len};
use crate::group::Group;
use crate::messages::{KeyPackage, Proposal, Psk, WireFormat, encoded_len, proposal_type};
use crate::secret_tree::RatchetKind;
use crate::tree::node::LeafNodeSource;
use securemesh_core::CryptoRng;
use securemesh_core::codec::Writer;

/// A proposal we send ([`Group::propose`]).
// A short-lived view on the stack and no heap to box into: the size
// difference between variants is accepted (as for `ProposalOrRef`).
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutgoingProposal<'a> {
    /// Add the member of this KeyPackage (verified before it is sent).
    Add(KeyPackage<'a>),
    /// Replace our leaf by one with a fresh HPKE key (same credential and
    /// extensions), drawn from the rng.
    Update,
    /// Remove the member at this leaf (ours too: a member may ask to
    /// leave, another member commits it).
    Remove(u32),
    /// Inject this PSK into the next epoch's key schedule (a fresh
    /// `psk_nonce` is drawn); its value must be known to us now.
    PreSharedKey(Psk<'a>),
    /// Replace the GroupContext extensions with this `extensions<V>` body.
    GroupContextExtensions(&'a [u8]),
}

impl OutgoingProposal<'_> {
    /// Write the `Proposal` (type and body), with `psk_nonce` for a PSK
    /// and `leaf` (our new LeafNode) for an Update.
    fn write_to(&self, w: &mut Writer<'_>, psk_nonce: &[u8; NH], leaf: &[u8]) -> Result<(), Error> {
        match self {
            OutgoingProposal::Update => {
                w.write_u16(proposal_type::UPDATE)?;
                Ok(w.write_bytes(leaf)?)
            }
            OutgoingProposal::Add(kp) => {
                w.write_u16(proposal_type::ADD)?;
                Ok(w.write_bytes(kp.as_bytes())?)
            }
            OutgoingProposal::Remove(leaf) => {
                w.write_u16(proposal_type::REMOVE)?;
                Ok(w.write_u32(*leaf)?)
            }
            OutgoingProposal::PreSharedKey(psk) => {
                w.write_u16(proposal_type::PSK)?;
                psk.write_to(w, psk_nonce)
            }
            OutgoingProposal::GroupContextExtensions(extensions) => {
                w.write_u16(proposal_type::GROUP_CONTEXT_EXTENSIONS)?;
                Ok(w.write_vec_varint(extensions)?)
            }
        }
    }
}

/// What [`Group::propose`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProposalOutput {
    /// Length of the proposal `MLSMessage` in `out`.
    pub len: usize,
    /// Its `ProposalRef`, under which it is cached.
    pub reference: [u8; NH],
}

impl<const L: usize, const B: usize, const G: usize, const E: usize> Group<L, B, G, E> {
    /// Scratch bytes [`propose`](Self::propose) needs at most for a
    /// proposal whose variable part (KeyPackage, extensions or PSK id) is
    /// `len` bytes.
    pub const fn propose_scratch_len(len: usize) -> usize {
        len.saturating_mul(3)
            .saturating_add(B.saturating_mul(4))
            .saturating_add(G.saturating_add(E).saturating_mul(2))
            .saturating_add(4096)
    }

    /// Send `proposal` as a `wire_format` message of the current epoch into
    /// `out` and cache it in `cache` under its `ProposalRef` (module
    /// documentation). The proposal is checked first as a commit would
    /// check it ([`Error::Malformed`] for a Remove of a blank leaf, an Add
    /// whose KeyPackage does not verify or whose keys are in use is refused
    /// by the commit; [`Error::Unsupported`] for a PSK not in `psk_store`;
    /// [`Error::Capacity`] for extensions longer than `E`). `scratch`:
    /// [`propose_scratch_len`](Self::propose_scratch_len). On error
    /// nothing changed (group and cache); on success a PrivateMessage used
    /// up one handshake generation of ours.
    ///
    /// ```
    /// # use securemesh_core::testing::TestRng;
    /// use securemesh_mls_lite::messages::WireFormat;
    /// use securemesh_mls_lite::pending_commit::{CommitOptions, Proposals};
    /// use securemesh_mls_lite::proposal::OutgoingProposal;
    /// use securemesh_mls_lite::testing::member_pair;
    /// use securemesh_mls_lite::{DefaultGroup, DefaultProposalCache, Error, PskStore};
    /// let mut rng = TestRng::new(1);
    /// let (mut a, mut b): (Box<DefaultGroup>, Box<DefaultGroup>) = (Box::default(), Box::default());
    /// member_pair(b"agents", &mut rng, [&mut *a, &mut *b])?;
    /// let (mut cache_a, mut cache_b) = (Box::<DefaultProposalCache>::default(), Box::<DefaultProposalCache>::default());
    /// let mut spare = Box::<DefaultGroup>::default();
    ///
    /// // B proposes new (empty) GroupContext extensions; A caches it.
    /// let (mut msg, mut scratch) = (vec![0u8; 1024], vec![0u8; DefaultGroup::propose_scratch_len(0)]);
    /// let store = PskStore::default();
    /// let proposal = OutgoingProposal::GroupContextExtensions(&[]);
    /// let sent = b.propose(&proposal, WireFormat::PrivateMessage, &store, &mut cache_b, &mut rng, &mut msg, &mut scratch)?;
    /// let mut scratch = vec![0u8; DefaultGroup::commit_scratch_len(sent.len)];
    /// assert_eq!(a.process_proposal(&msg[..sent.len], &mut cache_a, &mut scratch)?, sent.reference);
    ///
    /// // A commits it by reference; B follows.
    /// let mut commit = vec![0u8; 4096];
    /// let mut scratch = vec![0u8; DefaultGroup::send_commit_scratch_len(cache_a.encoded_len(a.epoch()))];
    /// let out = a.commit_with(
    ///     &Proposals::default(), &cache_a, &store, &CommitOptions::default(), &mut rng,
    ///     &mut spare, &mut commit, &mut [], &mut scratch,
    /// )?;
    /// a.merge_pending_commit(&mut spare)?;
    /// let mut scratch = vec![0u8; DefaultGroup::commit_scratch_len(out.commit_len)];
    /// b.process_commit(&commit[..out.commit_len], &mut cache_b, &store, &mut spare, &mut scratch)?;
    /// assert_eq!(a.epoch_authenticator().expose(), b.epoch_authenticator().expose());
    /// # Ok::<(), Error>(())
    /// ```
    #[allow(clippy::too_many_arguments)]
    pub fn propose<R: CryptoRng + ?Sized, const N: usize, const PB: usize>(
        &mut self,
        proposal: &OutgoingProposal<'_>,
        wire_format: WireFormat,
        psk_store: &PskStore<'_>,
        cache: &mut ProposalCache<N, PB>,
        rng: &mut R,
        out: &mut [u8],
        scratch: &mut [u8],
    ) -> Result<ProposalOutput, Error> {
        let mut send = || -> Result<ProposalOutput, Error> {
            self.ready_to_sign()?;
            let too_small = Error::BufferTooSmall { needed: Self::propose_scratch_len(B) };
            let (leaf_buf, rest) = scratch.split_at_mut_checked(B).ok_or(too_small)?;
            let mut psk_nonce = [0u8; NH];
            let mut leaf: &[u8] = &[];
            let mut update_key: Option<Secret32> = None;
            match proposal {
                OutgoingProposal::PreSharedKey(_) => rng.fill_bytes(&mut psk_nonce),
                OutgoingProposal::Update => {
                    if self.pending_update.is_some() {
                        return Err(Error::Capacity);
                    }
                    let key = self.suite.generate(rng);
                    let n = self.write_own_leaf(
                        &self.suite.public_key(&key)?,
                        LeafNodeSource::Update,
                        rng,
                        leaf_buf,
                        rest,
                    )?;
                    leaf = leaf_buf.get(..n).ok_or(Error::Capacity)?;
                    update_key = Some(key);
                }
                _ => {}
            }
            let len = encoded_len(|w| proposal.write_to(w, &psk_nonce, leaf))?;
            let too_small = Error::BufferTooSmall { needed: Self::propose_scratch_len(len) };
            let (buf, work) = rest.split_at_mut_checked(len).ok_or(too_small)?;
            let mut w = Writer::new(buf);
            proposal.write_to(&mut w, &psk_nonce, leaf)?;
            w.finish()?;
            let p = Proposal::from_bytes(buf)?;

            // Checked as a commit checks it, by a committer yet unknown (not
            // our own Update: we built it, and the check wants its key kept).
            let own = Sender::Member(self.own_leaf);
            if update_key.is_none() {
                let alone = || core::iter::once(Ok((p.as_bytes(), own)));
                self.check_proposals(&alone, None, false, psk_store, work)?;
            }

            let gc = self.group_context();
            let content = self.own_content(&[], Content::Proposal(p));
            let sign_len = sign_scratch_len(wire_format, &content, &gc)?;
            let (sign_buf, _) = work.split_at_mut_checked(sign_len).ok_or(too_small)?;
            let key = self.signing_key.as_ref().ok_or(Error::Malformed)?;
            let signature = sign(wire_format, &content, key, &gc, sign_buf)?;
            let ac = AuthenticatedContent {
                wire_format,
                content,
                auth: FramedContentAuthData { signature: &signature, confirmation_tag: None },
            };
            let reference = ac.proposal_ref()?;
            let (len, generation) = self.protect_own(&ac, 0, rng, out)?;
            cache.insert(self.epoch, reference, own, p.as_bytes())?;
            if update_key.is_some() {
                self.pending_update = update_key;
            }
            if let Some(generation) = generation {
                // Cannot fail: `protect_own` just derived this key.
                self.ratchets.consume(self.own_leaf, generation, RatchetKind::Handshake)?;
            }
            Ok(ProposalOutput { len, reference })
        };
        let result = send();
        scratch.fill(0);
        result
    }
}
